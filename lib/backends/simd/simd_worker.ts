/**
 * The second thread of the SIMD kernels (started by lib/backends/simd/simd.ts): it instantiates the module over the
 * shared memory, then loops: wait for a job in the control block (spinning briefly, then `Atomics.wait`), join it
 * unless the main thread has closed it, claim chunks of it with {@linkcode claimChunks} and run them with
 * {@linkcode runJob} on region set 1, then store its number in `CTL_DONE` and notify. The arrays of a job belong to
 * the main thread, which keeps them alive and waits while this thread works on them; they are reached through their
 * addresses (FFI pointer views, the `blas` backend's `--allow-ffi`).
 * @module
 */
import { parentPort } from "node:worker_threads";
import {
  claimChunks,
  CONTROL_BYTES,
  CTL_CLAIM,
  CTL_DONE,
  CTL_FAILED,
  CTL_OPEN,
  CTL_PAGES,
  CTL_POSTED,
  CTL_STATE,
  CTL_WORKER_CHUNKS,
  decodeJob,
  LIBRARY_BYTES,
  runJob,
  type Sgemm,
  type SimdFn,
  WORKER_STATE,
} from "./jobs.ts";
import { THREAD_BYTES } from "./kernels.ts";

/** Loads of `CTL_POSTED` before sleeping in `Atomics.wait` (a few microseconds: the next job is often that near). */
const SPIN = 2000;

interface Init {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  control: SharedArrayBuffer;
  functions: string[];
}

const SGEMM = {
  cblas_sgemm: {
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "f32",
      "buffer",
      "i32",
      "buffer",
      "i32",
      "f32",
      "buffer",
      "i32",
    ],
    result: "void",
  },
} as const;

/**
 * `cblas_sgemm` of the library whose path the main thread wrote after the control block, with the defaults of
 * lib/backends/blas/blas.ts's `Blas.sgemm` (row-major; leading dimensions of dense storage; alpha 1, beta 0).
 */
function openSgemm(control: SharedArrayBuffer): Sgemm {
  const length = Atomics.load(new Int32Array(control, CONTROL_BYTES, 1), 0);
  if (!(length > 0 && length + 4 <= LIBRARY_BYTES)) throw new Error("no CBLAS library path in the control block");
  const path = new TextDecoder().decode(new Uint8Array(control, CONTROL_BYTES + 4, length).slice());
  const sgemm = Deno.dlopen(path, SGEMM).symbols.cblas_sgemm;
  return ({ m, n, k, a, b, c, lda, ldb, ldc, alpha, transA, transB }) => {
    if (m === 0 || n === 0) return;
    lda ??= transA ? m : k;
    ldb ??= transB ? k : n;
    sgemm(101, transA ? 112 : 111, transB ? 112 : 111, m, n, k, alpha ?? 1, a, lda, b, ldb, 0, c, ldc ?? n);
  };
}

/**
 * A view of all of `memory` covering at least `pages` pages (the size the main thread posted with the job): `mem`
 * when it does. This thread's `WebAssembly.Memory` object does not see a growth made on the main thread until V8
 * delivers it (an interrupt, handled at some later point of this thread's JavaScript), and never sees one made
 * between the main thread's `postMessage` of the memory and this thread's receiving it: its `buffer`, and the
 * instance's bounds, stay at the old size. `grow(0)` refreshes both to the memory's current size.
 */
function memoryView(memory: WebAssembly.Memory, mem: Float32Array, pages: number): Float32Array {
  const bytes = pages * 65536;
  if (mem.byteLength >= bytes) return mem;
  if (memory.buffer.byteLength < bytes) memory.grow(0);
  if (memory.buffer.byteLength < bytes) {
    throw new Error(
      `lib/backends/simd/simd_worker.ts: the shared memory is ${memory.buffer.byteLength} bytes here after ` +
        `grow(0), the main thread's ${bytes} (expected the same: the engine did not refresh it)`,
    );
  }
  return new Float32Array(memory.buffer);
}

parentPort!.once("message", (init: Init) => {
  const ctl = new Int32Array(init.control), f64 = new Float64Array(init.control);
  let fns: Record<string, SimdFn>, opened: Sgemm | undefined;
  const sgemm: Sgemm = (args) => (opened ??= openSgemm(init.control))(args);
  const view = (address: number, length: number) => {
    const pointer = Deno.UnsafePointer.create(BigInt(address));
    return new Float32Array(Deno.UnsafePointerView.getArrayBuffer(pointer!, length * 4));
  };
  try {
    const inst = new WebAssembly.Instance(init.module, { env: { memory: init.memory } });
    fns = Object.fromEntries(init.functions.map((n) => [n, inst.exports[n] as SimdFn]));
    Deno.UnsafePointer.create(1n); // FFI is permitted (throws otherwise)
  } catch (err) {
    console.error(`lib/backends/simd/simd_worker.ts: the SIMD worker could not start: ${err}`);
    Atomics.store(ctl, CTL_STATE, WORKER_STATE.failed);
    Atomics.notify(ctl, CTL_STATE);
    return;
  }
  // Jobs seen: read before saying ready (the main thread posts its first job as soon as it sees that).
  let seen = Atomics.load(ctl, CTL_POSTED), mem = new Float32Array(init.memory.buffer);
  Atomics.store(ctl, CTL_STATE, WORKER_STATE.ready);
  Atomics.notify(ctl, CTL_STATE);
  for (;;) {
    let posted = seen;
    for (let i = 0; i < SPIN && posted === seen; i++) posted = Atomics.load(ctl, CTL_POSTED);
    if (posted === seen) {
      Atomics.wait(ctl, CTL_POSTED, seen);
      posted = Atomics.load(ctl, CTL_POSTED);
      if (posted === seen) continue;
    }
    seen = posted;
    // Join the job unless the main thread has closed it already (it then ran every chunk itself).
    if (Atomics.compareExchange(ctl, CTL_OPEN, seen, -seen) !== seen) continue;
    try {
      const { job, units, per } = decodeJob(f64, view);
      mem = memoryView(init.memory, mem, Atomics.load(ctl, CTL_PAGES));
      claimChunks(ctl, job, units, per, THREAD_BYTES, (start, end, base) => {
        runJob(fns, mem, base, job, start, end, sgemm);
        Atomics.add(ctl, CTL_WORKER_CHUNKS, 1);
      });
    } catch (err) {
      console.error(`lib/backends/simd/simd_worker.ts: job failed: ${(err as Error)?.stack ?? err}`);
      Atomics.store(ctl, CTL_FAILED, 1);
      Atomics.store(ctl, CTL_CLAIM, 1 << 30); // no more chunks for anyone: the main thread reports the failure
    }
    Atomics.store(ctl, CTL_DONE, seen);
    Atomics.notify(ctl, CTL_DONE);
  }
});
