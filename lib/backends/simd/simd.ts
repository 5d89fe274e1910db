/**
 * The elementwise side of BERT training on the `blas` backend, in WebAssembly SIMD: a small module assembled
 * at load time (no binary blob, no build step) whose functions work in place on 4-float vectors in the module's
 * memory. Kernels copy their inputs into it in chunks (or, for attention, let `sgemm` write there directly through
 * FFI) and copy the results out. V8 does not vectorise JavaScript loops, and `Math.exp` costs ~12 ns per element;
 * these run at 1-5 ns per element including the copies.
 *
 * - `exp`: Cephes `expf` (range reduction by ln 2, degree-6 polynomial), max relative error ~2e-7; exact 0 below
 *   -87.33 (float32 underflow), +Infinity above 88.72, NaN stays NaN. Softmax, erf and GELU's gradient use a
 *   cheaper variant for arguments <= 0 (`expNegBody`).
 * - `erf`: Abramowitz & Stegun 7.1.26, the formula and constants of tfjs's cpu kernel (|error| < 1.5e-7).
 * - `gelu` (exact GELU through Eigen's rational erf), `gelu_grad`.
 * - `dropout`: the mulberry32 mask of fused.ts's `applyDropoutMask`, four draws at a time, bit-identical.
 * - `softmax_rows`, `softmax_grad_rows`: masked row softmax and its gradient (attention).
 * - `adamw`, `layernorm`, `layernorm_grad`: one pass each.
 *
 * Polynomial constants are hoisted into locals, and relaxed SIMD's multiply-add is used where the engine
 * validates it (fused on FMA CPUs; results then differ from the plain build in the last bit).
 *
 * Two threads: the module's memory is shared (where the engine allows it) with one worker
 * (lib/backends/simd/simd_worker.ts, a `node:worker_threads` worker, unref'd) that runs the same module. With
 * {@linkcode setSimdThreads} at 2 (the `blas` backend sets it to its BLAS thread count), a large call (at least
 * 65,536 floats) of the kernels that take whole arrays (GELU and its gradient, dropout, AdamW, LayerNorm and its
 * gradient) or work in module memory (softmax rows, their gradient, attention's blocks with their `sgemm` calls) is
 * cut into chunks that both threads claim one at a time (lib/backends/simd/jobs.ts): the main thread starts at once,
 * the worker joins when it wakes. Each thread copies through its own chunk regions; the worker reaches the arrays by
 * address (FFI, which the `blas` backend has). The maths per element, row or block is the same whichever thread
 * runs it, so the results are the same bits as on one thread. `BERT_NO_SIMD_WORKER` turns the worker off;
 * {@linkcode simdThreadsStatus} says whether it runs, and if not, why.
 *
 * {@linkcode simdMath} returns `undefined` when WebAssembly SIMD is not available; callers fall back to JS, and
 * {@linkcode simdStatus} says why. Files: lib/backends/simd/assembler.ts (encoding, the `Assembler`),
 * math.ts (exp, erf), kernels.ts (the module's functions and memory layout), jobs.ts (the kernels' work on a range,
 * on either thread, and the control block), simd_worker.ts (the second thread), this file (loading, the JS side).
 * @module
 */
import { Worker } from "node:worker_threads";
import { envVar } from "../../io/env.ts";
import {
  CHUNK,
  FUNCTIONS,
  MAX_SHARED_PAGES,
  PARAMS_BYTES,
  SIMD_PAGES,
  simdModuleBytes,
  THREAD_BYTES,
  WORKSPACE_BYTES,
} from "./kernels.ts";
import {
  chunkUnits,
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
  encodeJob,
  JOB,
  type Job,
  LIBRARY_BYTES,
  perPartRegions,
  runJob,
  type Sgemm,
  type SimdFn,
  WORKER_STATE,
} from "./jobs.ts";

/**
 * The module's functions: `exp`, `erf`, `gelu` (exact) and `gelu_grad` (`x` in the chunk buffer, `dy` in the
 * second region; the gradient replaces `x`).
 */
export type SimdFunction = "exp" | "erf" | "gelu" | "gelu_grad";

/** The vectorised functions. */
export interface SimdMath {
  /** `dst[i] = exp(src[i])` (`dst` may be `src`). */
  exp(src: Float32Array, dst: Float32Array): void;
  /** `dst[i] = erf(src[i])` (`dst` may be `src`). */
  erf(src: Float32Array, dst: Float32Array): void;
  /**
   * Chunked in-place transform through the module's memory: `fill(buf, start, len)` writes `len` inputs into
   * `buf[0..len)`, the function named `fn` runs on them in place, then `drain(buf, start, len)` reads them.
   */
  map(
    fn: SimdFunction,
    total: number,
    fill: (buf: Float32Array, start: number, len: number, second: Float32Array) => void,
    drain: (buf: Float32Array, start: number, len: number) => void,
    chunk?: number,
  ): void;
  /** `out[i] = gelu(x[i])` (exact GELU), on two threads when large ({@linkcode setSimdThreads}). */
  gelu(x: Float32Array, out: Float32Array): void;
  /** `out[i] = dy[i] (Phi(x[i]) + x[i] phi(x[i]))`, GELU's gradient, on two threads when large. */
  geluGrad(x: Float32Array, dy: Float32Array, out: Float32Array): void;
  /**
   * Whether a call touching `work` floats is split over two threads now (see {@linkcode setSimdThreads}); with
   * `sgemm`, whether an attention block job is (the worker also needs the library).
   */
  splits(work: number, sgemm?: boolean): boolean;
  /**
   * Units `[0, units)` of `job` (lib/backends/simd/jobs.ts), on both threads when `work` (floats touched) is large
   * enough and two threads are allowed (or as `options.split` says); for kernels that lay out
   * their own blocks in {@linkcode SimdMath.workspace} (attention). The attention block jobs call `options.sgemm`
   * on this thread, and the library given to {@linkcode setSimdThreads} on the worker (without one they are not
   * split); when not split, their elementwise steps may be.
   */
  split(job: Job, units: number, work: number, options?: { sgemm?: Sgemm; split?: boolean }): void;
  /**
   * Inverted dropout through the generator of fused.ts's `applyDropoutMask`, four draws at a time:
   * `out[i] = (src ? src[i] : 1) * (draw i >= threshold (unsigned) ? scale : 0)`, where `state` is the mulberry32
   * state before draw 0. Bit for bit the same values as the scalar loop.
   */
  dropout(out: Float32Array, src: Float32Array | undefined, state: number, threshold: number, scale: number): void;
  /**
   * `floats` floats of the module's memory past the chunk regions, for kernels that keep whole blocks there (the
   * memory grows as needed; growing invalidates views returned earlier). Pointers below are byte offsets into this
   * memory: `view.byteOffset + 4 * index`.
   */
  workspace(floats: number): Float32Array;
  /** In place {@linkcode SimdMath.dropout} of `n` floats at byte `ptr` of the module's memory (`n` rounded up to 4). */
  dropoutAt(ptr: number, n: number, state: number, threshold: number, scale: number): void;
  /** Rows of `cols` floats (a multiple of 4) at `ptr` become `softmax(row + mask)`, the mask row at `maskPtr`. */
  softmaxRowsAt(ptr: number, rows: number, cols: number, maskPtr: number): void;
  /** `ds = p * (ds - rowsum(ds * p))` in place, rows of `cols` floats (a multiple of 4). */
  softmaxGradRowsAt(dsPtr: number, pPtr: number, rows: number, cols: number): void;
  /**
   * One AdamW step in float32: `m' = b1 m + (1 - b1) g`, `v' = b2 v + (1 - b2) g^2`,
   * `p' = p decay - stepSize m' / (sqrt(v') invBc2 + eps)`, written to `out` (`[p', m', v']`).
   */
  adamw(
    inp: { p: Float32Array; g: Float32Array; m: Float32Array; v: Float32Array },
    out: [Float32Array, Float32Array, Float32Array],
    c: { beta1: number; beta2: number; invBc2: number; eps: number; decay: number; stepSize: number },
  ): void;
  /**
   * LayerNorm of rows of `width` floats (float32 arithmetic) of `x`, or of `x + residual` (each sum rounded once, as
   * tfjs's `add`): fills `y`, `xhat` (when given: inference needs no statistics) and `rstd` (one per row). Returns
   * false, doing nothing, when the width is not a multiple of 4 or over 5,460.
   */
  layerNorm(
    inp: { x: Float32Array; gamma: Float32Array; beta: Float32Array; eps: number; residual?: Float32Array },
    out: { y: Float32Array; xhat?: Float32Array; rstd: Float32Array },
  ): boolean;
  /**
   * LayerNorm's gradient: fills `dx`, `dgamma`, `dbeta` (same conditions as {@linkcode SimdMath.layerNorm}). The
   * sums over rows for `dgamma` and `dbeta` are taken over the first `ceil(rows / 2)` rows and over the rest, then
   * added (float32), whether one thread or two run them: the same bits either way.
   */
  layerNormGrad(
    inp: { dy: Float32Array; xhat: Float32Array; rstd: Float32Array; gamma: Float32Array },
    out: { dx: Float32Array; dgamma: Float32Array; dbeta: Float32Array },
  ): boolean;
}

/** Whether {@linkcode simdMath} is in use, and if not, why. */
export type SimdStatus =
  | { available: true; fma: boolean }
  | { available: false; reason: string };

/** Whether the kernels split large calls over two threads, and if not, why (see {@linkcode simdThreadsStatus}). */
export interface SimdThreadsStatus {
  /** Threads allowed by {@linkcode setSimdThreads} now (1 or 2). */
  threads: number;
  /**
   * The worker: `ready` (large calls are split when `threads` is 2), `starting` (started by the first large call
   * with two threads allowed; calls run on one thread until it is ready), `idle` (not started yet), or `unavailable`
   * (`reason` says why: the switch, no shared memory, the worker failed to start).
   */
  worker: "ready" | "starting" | "idle" | "unavailable";
  /** Why the worker is unavailable. */
  reason?: string;
  /** Calls shared with the worker so far. */
  splitCalls: number;
  /** Chunks of them the worker ran (it joins a call when it wakes in time; the main thread claims chunks too). */
  workerChunks: number;
}

/** Options of {@linkcode setSimdThreads}. */
export interface SimdThreadsOptions {
  /** The fewest floats a call must touch to be split (default 65,536: smaller ones cost more to hand over). */
  minWork?: number;
  /** The CBLAS library (path) whose `cblas_sgemm` the worker calls in the attention block jobs. */
  blasLibrary?: string;
  /**
   * Wait (up to a second) for the worker to join each shared call before claiming chunks, so that both threads run
   * some (tests); default false: the main thread starts at once and the worker takes what is left when it wakes.
   */
  waitForWorker?: boolean;
}

let threadSource: () => number = () => 1;
let minSplitWork = 65536;
let blasLibrary: string | undefined;
let waitForWorker = false;

/**
 * How many threads the SIMD kernels may use (1 or 2; more is taken as 2): a number, or a function asked at each
 * call (the `blas` backend passes its BLAS thread count, so that `--threads 1` keeps everything on one thread).
 * The default is 1. Returns the previous setting (to restore it).
 */
export function setSimdThreads(
  threads: number | (() => number),
  options: SimdThreadsOptions = {},
): { threads: () => number; minWork: number } {
  const previous = { threads: threadSource, minWork: minSplitWork };
  threadSource = typeof threads === "number" ? () => threads : threads;
  if (options.minWork !== undefined) minSplitWork = Math.max(0, options.minWork);
  if (options.blasLibrary !== undefined) blasLibrary = options.blasLibrary;
  if (options.waitForWorker !== undefined) waitForWorker = options.waitForWorker;
  return previous;
}

/** Whether `BERT_NO_SIMD_WORKER` turns the second SIMD thread off (the one place that reads it). */
export function simdWorkerDisabled(): boolean {
  return Boolean(envVar("BERT_NO_SIMD_WORKER"));
}

/** Whether large calls run on two threads (loading the kernels if not yet done), or why not. */
export function simdThreadsStatus(): SimdThreadsStatus {
  loaded ??= load();
  const threads = Math.min(2, Math.max(1, threadSource()));
  if (!("math" in loaded)) {
    return { threads, worker: "unavailable", reason: loaded.reason, splitCalls: 0, workerChunks: 0 };
  }
  return { threads, ...loaded.workerStatus() };
}

/**
 * Starts the worker if it is not running and waits (blocking, at most `timeoutMs`) until it is ready; returns
 * whether it is. Calls do not need this (they run on one thread until the worker is ready); tests and benchmarks do.
 */
export function simdWorkerReady(timeoutMs = 10_000): boolean {
  loaded ??= load();
  return "math" in loaded && loaded.waitReady(timeoutMs);
}

interface Loaded {
  math: SimdMath;
  fma: boolean;
  workerStatus(): Omit<SimdThreadsStatus, "threads">;
  waitReady(timeoutMs: number): boolean;
}

let loaded: Loaded | { reason: string } | undefined;

/**
 * The vectorised functions, or undefined when WebAssembly SIMD is unavailable (or disabled by BERT_NO_SIMD):
 * {@linkcode simdStatus} then says why. Only the expected failures (the switch, an engine without WebAssembly or
 * its SIMD, a module the engine cannot compile or instantiate) lead to undefined; anything else is a bug and throws.
 */
export function simdMath(): SimdMath | undefined {
  loaded ??= load();
  return "math" in loaded ? loaded.math : undefined;
}

/** Whether the SIMD kernels are in use (loading them if not yet done), with fused multiply-add or not, or why not. */
export function simdStatus(): SimdStatus {
  loaded ??= load();
  return "math" in loaded ? { available: true, fma: loaded.fma } : { available: false, reason: loaded.reason };
}

/** Whether `err` is one of the expected failures of compiling or instantiating the module. */
function expectedFailure(err: unknown): err is Error {
  return err instanceof WebAssembly.CompileError || err instanceof WebAssembly.LinkError ||
    err instanceof RangeError; // RangeError: the memory could not be allocated
}

function load(): Loaded | { reason: string } {
  if (envVar("BERT_NO_SIMD")) return { reason: "disabled by BERT_NO_SIMD" };
  if (typeof WebAssembly === "undefined") return { reason: "this runtime has no WebAssembly" };
  // Relaxed SIMD's multiply-add where the engine has it (fused on FMA CPUs); plain SIMD otherwise.
  let fma = true;
  let bytes = simdModuleBytes(true);
  if (!WebAssembly.validate(bytes)) {
    fma = false;
    bytes = simdModuleBytes(false);
  }
  if (!WebAssembly.validate(bytes)) return { reason: "this WebAssembly engine does not validate SIMD (v128) code" };
  // The shared-memory module first (two threads), the module with its own memory where that fails.
  let noWorker = simdWorkerDisabled() ? "disabled by BERT_NO_SIMD_WORKER" : undefined;
  if (!noWorker && (typeof SharedArrayBuffer === "undefined" || typeof Atomics === "undefined")) {
    noWorker = "this runtime has no SharedArrayBuffer / Atomics";
  }
  if (!noWorker) {
    try {
      const module = new WebAssembly.Module(simdModuleBytes(fma, true));
      const memory = new WebAssembly.Memory({ initial: SIMD_PAGES, maximum: MAX_SHARED_PAGES, shared: true });
      const inst = new WebAssembly.Instance(module, { env: { memory } });
      return wrap(inst, memory, fma, { module, memory });
    } catch (err) {
      if (!expectedFailure(err)) throw err;
      noWorker = `the shared-memory SIMD module could not be instantiated: ${err.message}`;
    }
  }
  let inst: WebAssembly.Instance;
  try {
    inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
  } catch (err) {
    if (!expectedFailure(err)) throw err;
    return { reason: `the SIMD module could not be instantiated: ${err.message}` };
  }
  return wrap(inst, inst.exports.memory as WebAssembly.Memory, fma, { reason: noWorker! });
}

/** The worker of the shared-memory module, started on first use (see the module notes). */
class SimdWorker {
  #shared: { module: WebAssembly.Module; memory: WebAssembly.Memory } | { reason: string };
  #state: "idle" | "starting" | "ready" | "unavailable";
  #reason: string | undefined;
  #control = new SharedArrayBuffer(CONTROL_BYTES + LIBRARY_BYTES);
  #ctl = new Int32Array(this.#control);
  #f64 = new Float64Array(this.#control);
  #worker: Worker | undefined;
  /** The CBLAS library path written for the worker. */
  #library: string | undefined;
  /** Calls split so far. */
  splitCalls = 0;

  constructor(shared: { module: WebAssembly.Module; memory: WebAssembly.Memory } | { reason: string }) {
    this.#shared = shared;
    this.#state = "module" in shared ? "idle" : "unavailable";
    this.#reason = "reason" in shared ? shared.reason : undefined;
  }

  status(): Omit<SimdThreadsStatus, "threads"> {
    this.#poll();
    return {
      worker: this.#state,
      ...(this.#reason ? { reason: this.#reason } : {}),
      splitCalls: this.splitCalls,
      workerChunks: Atomics.load(this.#ctl, CTL_WORKER_CHUNKS),
    };
  }

  /** Whether a call touching `work` floats goes to both threads now (starting the worker when it could). */
  use(work: number): boolean {
    if (this.#state === "ready") return work >= minSplitWork && threadSource() >= 2;
    if (work < minSplitWork || threadSource() < 2) return false;
    if (this.#state === "idle") this.#start();
    return this.#poll() === "ready";
  }

  waitReady(timeoutMs: number): boolean {
    if (this.#state === "idle") this.#start();
    const until = performance.now() + timeoutMs;
    while (this.#state === "starting" && performance.now() < until) {
      Atomics.wait(this.#ctl, CTL_STATE, WORKER_STATE.starting, Math.max(1, until - performance.now()));
      this.#poll();
    }
    return this.#poll() === "ready";
  }

  /** Whether the worker can run the attention block jobs (it knows a CBLAS library: {@linkcode setSimdThreads}). */
  hasLibrary(): boolean {
    if (!blasLibrary) return false;
    if (this.#library === blasLibrary) return true;
    const bytes = new TextEncoder().encode(blasLibrary);
    if (bytes.length + 4 > LIBRARY_BYTES) return false;
    // Written once (the worker opens the library at its first block job; it is never changed after that).
    if (this.#library !== undefined) return false;
    new Uint8Array(this.#control, CONTROL_BYTES + 4, bytes.length).set(bytes);
    Atomics.store(new Int32Array(this.#control, CONTROL_BYTES, 1), 0, bytes.length);
    this.#library = blasLibrary;
    return true;
  }

  /**
   * Runs `job` over `units` units on both threads: posts it, claims chunks of `per` units with `local(start, end,
   * base)` until none is left, then closes it, waiting for the worker only if it joined.
   */
  run(job: Job, units: number, per: number, local: (start: number, end: number, base: number) => void): void {
    const ctl = this.#ctl;
    encodeJob(this.#f64, job, units, per, address);
    if ("memory" in this.#shared) Atomics.store(ctl, CTL_PAGES, this.#shared.memory.buffer.byteLength / 65536);
    const n = (Atomics.load(ctl, CTL_POSTED) % 0x40000000) + 1;
    Atomics.store(ctl, CTL_CLAIM, 0);
    Atomics.store(ctl, CTL_OPEN, n);
    Atomics.store(ctl, CTL_POSTED, n);
    Atomics.notify(ctl, CTL_POSTED, 1);
    this.splitCalls++;
    if (waitForWorker) {
      const until = performance.now() + 1000;
      while (Atomics.load(ctl, CTL_OPEN) === n && performance.now() < until);
    }
    try {
      claimChunks(ctl, job, units, per, 0, local);
    } finally {
      // Closed before the worker joined: it will leave the job alone. Joined: wait until it is done.
      if (Atomics.compareExchange(ctl, CTL_OPEN, n, 0) !== n) this.#wait(n);
    }
  }

  /** Waits until the worker is done with job `n` (spinning first: it is usually finishing its last chunk). */
  #wait(n: number): void {
    const ctl = this.#ctl;
    for (let i = 0; i < 20000 && Atomics.load(ctl, CTL_DONE) !== n; i++);
    for (;;) {
      const done = Atomics.load(ctl, CTL_DONE);
      if (done === n) break;
      if (Atomics.wait(ctl, CTL_DONE, done, 30_000) === "timed-out") {
        this.#fail("the SIMD worker did not finish a job within 30 s");
        throw new Error(`lib/backends/simd/simd.ts: ${this.#reason} (set BERT_NO_SIMD_WORKER=1 to run on one thread)`);
      }
    }
    if (Atomics.load(ctl, CTL_FAILED)) {
      Atomics.store(ctl, CTL_FAILED, 0);
      throw new Error(
        "lib/backends/simd/simd.ts: a SIMD worker job failed (its error is on stderr); " +
          "set BERT_NO_SIMD_WORKER=1 to run on one thread",
      );
    }
  }

  #start(): void {
    if (!("module" in this.#shared)) return;
    this.#state = "starting";
    try {
      const worker = new Worker(new URL("./simd_worker.ts", import.meta.url));
      worker.unref(); // the worker never keeps the process alive
      worker.on("error", (err: Error) => this.#fail(`the SIMD worker failed: ${err.message}`));
      worker.postMessage({
        module: this.#shared.module,
        memory: this.#shared.memory,
        control: this.#control,
        functions: FUNCTIONS.map(([n]) => n),
      });
      this.#worker = worker;
    } catch (err) {
      this.#fail(`the SIMD worker could not be started: ${(err as Error).message}`);
    }
  }

  /** The state, updated from the control block while the worker starts. */
  #poll(): "idle" | "starting" | "ready" | "unavailable" {
    if (this.#state !== "starting") return this.#state;
    const s = Atomics.load(this.#ctl, CTL_STATE);
    if (s === WORKER_STATE.ready) this.#state = "ready";
    else if (s === WORKER_STATE.failed) this.#fail("the SIMD worker could not start (its error is on stderr)");
    return this.#state;
  }

  #fail(reason: string): void {
    this.#state = "unavailable";
    this.#reason = reason;
    this.#worker?.terminate();
    this.#worker = undefined;
  }
}

/** The address of an array's first element (FFI), for the worker. */
function address(a: Float32Array): number {
  return Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(a)));
}

/** The JavaScript side of the module's functions: copies through the chunk regions, argument checks. */
function wrap(
  inst: WebAssembly.Instance,
  mem: WebAssembly.Memory,
  fma: boolean,
  shared: { module: WebAssembly.Module; memory: WebAssembly.Memory } | { reason: string },
): Loaded {
  const memBuffer = () => mem.buffer as ArrayBuffer;
  const fns = Object.fromEntries(FUNCTIONS.map(([n]) => [n, inst.exports[n] as SimdFn])) as Record<string, SimdFn>;
  const worker = new SimdWorker(shared);
  let views = {
    all: new Float32Array(0),
    buf: new Float32Array(0),
    second: new Float32Array(0),
    buffer: null as ArrayBuffer | null,
  };
  /** Views of the whole memory and of the first two chunk regions, re-made after the memory grows (growing
   * detaches the old buffer). */
  const regions = () => {
    if (views.buffer !== memBuffer()) {
      views = {
        all: new Float32Array(memBuffer()),
        buf: new Float32Array(memBuffer(), 0, CHUNK),
        second: new Float32Array(memBuffer(), CHUNK * 4, CHUNK),
        buffer: memBuffer(),
      };
    }
    return views;
  };
  /**
   * Units `[0, n)` of `job`, in chunks claimed by both threads when `work` is large enough and two threads are allowed
   * (or as `options.split` says), else on this thread (LayerNorm's gradient still in its two parts).
   */
  const run = (job: Job, n: number, work: number, options: { sgemm?: Sgemm; split?: boolean } = {}) => {
    const all = regions().all, sgemm = options.sgemm, per = chunkUnits(job, n);
    const blocks = job.kind === JOB.attentionForwardBlocks || job.kind === JOB.attentionBackwardBlocks;
    if (n > per && (options.split ?? worker.use(work)) && (!blocks || worker.hasLibrary())) {
      worker.run(job, n, per, (start, end, base) => runJob(fns, all, base, job, start, end, sgemm));
    } else if (blocks) {
      runJob(fns, all, 0, job, 0, n, sgemm, (j, units, w) => run(j, units, w));
    } else if (perPartRegions(job)) {
      for (let start = 0, part = 0; start < n; start += per, part++) {
        runJob(fns, all, part * THREAD_BYTES, job, start, Math.min(n, start + per));
      }
    } else {
      runJob(fns, all, 0, job, 0, n);
    }
  };
  const map: SimdMath["map"] = (fn, total, fill, drain, chunk = CHUNK) => {
    const f = fns[fn];
    const { buf, second } = regions();
    const step = Math.max(1, Math.min(chunk, CHUNK));
    for (let start = 0; start < total; start += step) {
      const len = Math.min(step, total - start);
      fill(buf, start, len, second);
      f(0, ((len + 3) >> 2) << 4);
      drain(buf, start, len);
    }
  };
  const unary = (fn: "exp" | "erf") => (src: Float32Array, dst: Float32Array) =>
    map(
      fn,
      src.length,
      (b, s, n) => b.set(src.subarray(s, s + n)),
      (b, s, n) => dst.set(b.subarray(0, n), s),
    );
  const elementwise = (kind: number, arrays: (Float32Array | undefined)[], n: number, nums: number[] = []) =>
    run({ kind, arrays, nums }, n, n);
  const adamw: SimdMath["adamw"] = ({ p, g, m, v }, [pn, mn, vn], c) => {
    const f = regions().all;
    const params = [c.beta1, 1 - c.beta1, c.beta2, 1 - c.beta2, c.invBc2, c.eps, c.decay, c.stepSize];
    for (let t = 0; t < 2; t++) f.set(params, (t * THREAD_BYTES + PARAMS_BYTES) / 4);
    elementwise(JOB.adamw, [p, g, m, v, pn, mn, vn], p.length);
  };
  const layerNorm: SimdMath["layerNorm"] = ({ x, gamma, beta, eps, residual }, { y, xhat, rstd }) => {
    const w = gamma.length;
    if (w === 0 || w % 4 || 3 * w > CHUNK) return false;
    const f = regions().all;
    for (let t = 0; t < 2; t++) {
      const g = (t * THREAD_BYTES) / 4 + 2 * CHUNK;
      f.set(gamma, g);
      f.set(beta, g + w);
    }
    const rows = rstd.length;
    run({ kind: JOB.layerNorm, arrays: [x, y, xhat, rstd, residual], nums: [w, eps] }, rows, rows * w);
    return true;
  };
  const layerNormGrad: SimdMath["layerNormGrad"] = ({ dy, xhat, rstd, gamma }, { dx, dgamma, dbeta }) => {
    const w = gamma.length;
    if (w === 0 || w % 4 || 3 * w > CHUNK) return false;
    const f = regions().all, g0 = 2 * CHUNK, g1 = THREAD_BYTES / 4 + 2 * CHUNK;
    for (const g of [g0, g1]) {
      f.set(gamma, g);
      f.fill(0, g + w, g + 3 * w);
    }
    const rows = rstd.length;
    run({ kind: JOB.layerNormGrad, arrays: [dy, xhat, rstd, dx], nums: [w] }, rows, rows * w);
    for (let j = 0; j < w; j++) {
      dgamma[j] = f[g0 + w + j] + f[g1 + w + j];
      dbeta[j] = f[g0 + 2 * w + j] + f[g1 + 2 * w + j];
    }
    return true;
  };
  const workspace = (floats: number): Float32Array => {
    const need = WORKSPACE_BYTES + floats * 4;
    if (memBuffer().byteLength < need) mem.grow(Math.ceil((need - memBuffer().byteLength) / 65536));
    return new Float32Array(memBuffer(), WORKSPACE_BYTES, floats);
  };
  const math: SimdMath = {
    exp: unary("exp"),
    erf: unary("erf"),
    map,
    gelu: (x, out) => elementwise(JOB.gelu, [x, out], x.length),
    geluGrad: (x, dy, out) => elementwise(JOB.geluGrad, [x, dy, out], x.length),
    splits: (work, sgemm) => worker.use(work) && (!sgemm || worker.hasLibrary()),
    split: (job, units, work, options) => run(job, units, work, options),
    dropout: (out, src, state, threshold, scale) =>
      elementwise(JOB.dropout, [src, out], out.length, [state | 0, threshold | 0, scale]),
    adamw,
    layerNorm,
    layerNormGrad,
    workspace,
    dropoutAt: (ptr, n, state, threshold, scale) =>
      run({ kind: JOB.dropoutAt, arrays: [], nums: [ptr, state | 0, threshold | 0, scale] }, n, n),
    softmaxRowsAt: (ptr, rows, cols, maskPtr) => {
      if (cols % 4) throw new Error(`softmaxRowsAt: ${cols} columns is not a multiple of 4`);
      run({ kind: JOB.softmaxRows, arrays: [], nums: [ptr, cols, maskPtr] }, rows, rows * cols);
    },
    softmaxGradRowsAt: (dsPtr, pPtr, rows, cols) => {
      if (cols % 4) throw new Error(`softmaxGradRowsAt: ${cols} columns is not a multiple of 4`);
      run({ kind: JOB.softmaxGradRows, arrays: [], nums: [dsPtr, pPtr, cols] }, rows, rows * cols);
    },
  };
  return { math, fma, workerStatus: () => worker.status(), waitReady: (ms) => worker.waitReady(ms) };
}
