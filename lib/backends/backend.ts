/**
 * Picks and reports the TensorFlow.js backend.
 *
 * Order of preference: an explicit `backend` option, else the `BERT_BACKEND` environment variable, else the
 * first of `tensorflow` (tfjs-node-gpu, then tfjs-node: native libtensorflow, installed on users' machines
 * where its download works), `blas` (the cpu backend with matmuls in a system CBLAS such as OpenBLAS via FFI
 * and fused TypedArray kernels, lib/backends/blas/blas_backend.ts; needs --allow-ffi and a library, e.g. Debian's
 * libopenblas0-pthread), `wasm` (SIMD, works everywhere Deno runs) and `cpu` (pure JavaScript, ~10x slower
 * than wasm) that loads. The choice is printed once.
 *
 * Importing this module also registers every gradient (tfjs-core alone registers none).
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-layers"; // registers the gradients of all ops
import "@tensorflow/tfjs-backend-cpu";
import { setThreadsCount, setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { envVar } from "../io/env.ts";
import { webgpuRequested } from "./exit.ts";

export { tf };

/** Backends this project knows how to start. */
export type BackendName = "tensorflow-gpu" | "tensorflow" | "blas" | "wasm" | "cpu" | "webgpu";

/** Every value `--backend` accepts, in the order `auto` tries them (webgpu only when asked for). */
const BACKEND_NAMES: readonly (BackendName | "auto")[] = [
  "auto",
  "tensorflow-gpu",
  "tensorflow",
  "blas",
  "wasm",
  "cpu",
  "webgpu",
];

/** The `--backend` flag's help line (every command that starts TensorFlow.js uses it). */
export const BACKEND_HELP = `tfjs backend: ${BACKEND_NAMES.join(", ")} (default: auto, or BERT_BACKEND)`;

/** WebGPU adapters that are CPU emulations (Mesa's llvmpipe/lavapipe, Google's SwiftShader, Windows' WARP). */
const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader|softpipe|microsoft basic render|\bwarp\b/i;

/** True when a WebGPU adapter's description names a software (CPU-emulated) implementation. */
export function isSoftwareAdapter(description: string): boolean {
  return SOFTWARE_ADAPTER.test(description);
}

/** Options for {@linkcode initBackend}. */
export interface BackendOptions {
  /** Force a backend; `auto` (the default) tries them in order. Overrides `BERT_BACKEND`. */
  backend?: BackendName | "auto";
  /** Threads for the wasm backend (only used when the threaded build can run) and for the blas backend's BLAS. */
  threads?: number;
  /** Do not print the choice. */
  quiet?: boolean;
}

/** What {@linkcode initBackend} started. */
export interface BackendInfo {
  /** The project's name for it (`wasm`, `cpu`, ...). */
  name: BackendName;
  /** tfjs's own name for it (`tensorflow`, `wasm`, `cpu`, `webgpu`). */
  tfjsName: string;
  /** A human-readable description printed once, e.g. `wasm (SIMD, 1 thread)`. */
  description: string;
}

let current: BackendInfo | undefined;
let announced = false;

/** Why the last backend tried could not start (shown when an explicitly requested one fails). */
let lastFailure: string | undefined;

function failed(why: unknown): undefined {
  lastFailure = why instanceof Error ? why.message : String(why);
  return undefined;
}

async function tryNode(pkg: string): Promise<boolean> {
  try {
    // A variable specifier keeps `deno check` from requiring the optional package.
    await import(pkg);
    if (await tf.setBackend("tensorflow")) return true;
    failed('tf.setBackend("tensorflow") returned false');
    return false;
  } catch (err) {
    failed(err);
    return false;
  }
}

async function tryWasm(threads?: number): Promise<string | undefined> {
  try {
    const dist = new URL("../../node_modules/@tensorflow/tfjs-backend-wasm/dist/", import.meta.url);
    setWasmPaths(dist.href);
    if (threads) setThreadsCount(threads);
    if (!(await tf.setBackend("wasm"))) return failed('tf.setBackend("wasm") returned false');
    const simd = tf.env().getBool("WASM_HAS_SIMD_SUPPORT");
    const mt = tf.env().getBool("WASM_HAS_MULTITHREAD_SUPPORT");
    return `wasm (${simd ? "SIMD" : "no SIMD"}, ${mt ? `${threads ?? "auto"} threads` : "1 thread"})`;
  } catch (err) {
    return failed(err);
  }
}

/**
 * Makes the values of `tensors` readable synchronously (`dataSync()`): on backends that can only read GPU memory
 * asynchronously (webgpu under Deno) this reads them once with `await data()`, which leaves a copy on the CPU;
 * elsewhere it does nothing. Call it before synchronous reads in async code.
 */
export async function readableOnCpu(tensors: tf.Tensor[]): Promise<void> {
  if (tf.getBackend() !== "webgpu") return;
  await Promise.all(tensors.map((t) => t.data()));
}

let adapterName: Promise<string | undefined> | undefined;
/** Why `requestAdapter()` failed, when it threw rather than answering null. */
let adapterError: string | undefined;

/**
 * The WebGPU adapter's description (e.g. `llvmpipe` for Mesa's software rasteriser; "unknown adapter" when it gives
 * none), or undefined when this runtime has no WebGPU adapter. Asked once per process: every adapter requested stays
 * alive until exit. A process that asks should end through `exitProcess` (lib/backends/exit.ts): the libEGL that
 * wgpu's GL backend loads can corrupt the heap in its destructor at exit.
 */
export function webgpuAdapterName(): Promise<string | undefined> {
  adapterName ??= (async () => {
    webgpuRequested();
    try {
      const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
      const adapter = await gpu?.requestAdapter() as { info?: { description?: string; vendor?: string } } | null;
      return adapter ? adapter.info?.description || adapter.info?.vendor || "unknown adapter" : undefined;
    } catch (err) {
      adapterError = err instanceof Error ? err.message : String(err); // a driver's failure: said when webgpu is asked for
      return undefined;
    }
  })();
  return adapterName;
}

/**
 * tfjs's webgpu backend reads tensors synchronously (`dataSync()`, `arraySync()`) by drawing to an OffscreenCanvas's
 * 2d context, which Deno does not provide; it then fails with "Cannot read properties of null (reading 'clearRect')".
 * Say what is wrong instead. Asynchronous reads (`await t.data()`, as the bench uses) work.
 */
function explainSyncReads(): void {
  const backend = tf.backend() as unknown as { readSync(dataId: object): unknown };
  const readSync = backend.readSync.bind(backend);
  backend.readSync = (dataId: object) => {
    try {
      return readSync(dataId);
    } catch (e) {
      if (!(e instanceof TypeError && e.message.includes("clearRect"))) throw e;
      throw new Error(
        "webgpu: this code reads a GPU tensor synchronously (dataSync()/arraySync()), which tfjs's webgpu backend " +
          "cannot do under Deno (it needs a 2d OffscreenCanvas). Classification training, evaluation, predict and " +
          "the bench read asynchronously and run on webgpu; for this command use tensorflow-gpu, blas or wasm.",
        { cause: e },
      );
    }
  };
}

/**
 * Starts the backend (once; later calls return the same choice unless a different one is forced).
 *
 * @example
 * ```ts
 * const info = await initBackend();          // prints "tfjs backend: wasm (SIMD, 1 thread)"
 * const cpu = await initBackend({ backend: "cpu" });
 * ```
 */
export async function initBackend(options: BackendOptions = {}): Promise<BackendInfo> {
  const wanted = (options.backend && options.backend !== "auto" ? options.backend : envVar("BERT_BACKEND")) ?? "auto";
  if (current && (wanted === "auto" || wanted === current.name)) return current;
  const order: BackendName[] = wanted === "auto"
    ? ["tensorflow-gpu", "tensorflow", "blas", "wasm", "cpu"]
    : [wanted as BackendName];
  for (const name of order) {
    let description: string | undefined;
    let warning: string | undefined;
    lastFailure = undefined;
    if (name === "tensorflow-gpu") {
      if (await tryNode("npm:@tensorflow/tfjs-node-gpu")) description = "tensorflow (tfjs-node-gpu, native)";
    } else if (name === "tensorflow") {
      if (await tryNode("npm:@tensorflow/tfjs-node")) description = "tensorflow (tfjs-node, native)";
    } else if (name === "blas") {
      // Loaded lazily: without --allow-ffi or a BLAS library this returns undefined and auto goes on to wasm. It
      // throws only for a bug, which must not hide behind the slower wasm backend.
      const { registerBlasBackend } = await import("./blas/blas_backend.ts");
      const { blasUnavailableReason } = await import("./blas/blas.ts");
      const info = registerBlasBackend({ threads: options.threads });
      if (!info) failed(blasUnavailableReason());
      else if (await tf.setBackend("blas")) description = info.description;
      else failed('tf.setBackend("blas") returned false');
    } else if (name === "wasm") {
      description = await tryWasm(options.threads);
    } else if (name === "cpu") {
      if (await tf.setBackend("cpu")) {
        // Silence tfjs's "install the node backend" banner: the choice is reported below.
        (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
        description = "cpu (pure JavaScript)";
      }
    } else if (name === "webgpu") {
      try {
        const adapter = await webgpuAdapterName();
        if (!adapter) {
          failed(
            adapterError
              ? `navigator.gpu.requestAdapter() failed: ${adapterError}`
              : "this Deno has no WebGPU adapter (navigator.gpu.requestAdapter() gave none: no GPU driver?)",
          );
        } else {
          await import("@tensorflow/tfjs-backend-webgpu");
          if (await tf.setBackend("webgpu")) {
            description = `webgpu (${adapter})`;
            explainSyncReads();
            if (isSoftwareAdapter(adapter)) {
              warning = [
                "!".repeat(100),
                `WARNING: the WebGPU adapter "${adapter}" is a SOFTWARE rasteriser: it emulates a GPU on the CPU,`,
                "so --backend webgpu here is much slower than --backend blas or wasm. Install the GPU's driver",
                "(Vulkan/Metal/D3D12) for a real adapter, or pick another backend.",
                "!".repeat(100),
              ].join("\n");
            }
          } else failed('tf.setBackend("webgpu") returned false');
        }
      } catch (err) {
        failed(err);
      }
    } else {
      throw new Error(
        `unknown backend "${name}" (from ${options.backend ? "the backend option" : "BERT_BACKEND"}); ` +
          `expected one of ${BACKEND_NAMES.join(", ")}`,
      );
    }
    if (description) {
      await tf.ready();
      current = { name, tfjsName: tf.getBackend(), description };
      if (!options.quiet && !announced) console.log(`tfjs backend: ${description}`);
      if (warning) console.warn(warning); // even when quiet: the user must know
      announced = true;
      return current;
    }
    if (wanted !== "auto") {
      throw new Error(
        `backend "${name}" could not be started on this machine: ${lastFailure ?? "unknown reason"}` +
          ` (--backend auto picks the first that starts)`,
      );
    }
  }
  throw new Error("no TensorFlow.js backend could be started");
}
