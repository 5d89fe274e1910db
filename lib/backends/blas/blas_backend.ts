/**
 * The `blas` TensorFlow.js backend: the stock cpu backend (MathBackendCPU, tensors in JavaScript
 * Float32Arrays, so no wasm 4 GB heap cap) with its slow kernels replaced: matrix products go to a CBLAS
 * library through FFI (lib/backends/blas/blas.ts), a dense layer's products and GELU to oneDNN's JIT code where
 * `libdnnl2` loads (lib/backends/blas/dnnl.ts), and the hot elementwise, reduction, layout, softmax and embedding
 * kernels of BERT training are strided TypedArray loops (lib/backends/blas/*.ts), with large same-shape adds and sums
 * handed to the library's `saxpy` and `sgemv`. Every other kernel is the cpu one.
 *
 * @example
 * ```ts
 * import { registerBlasBackend } from "./lib/backends/blas/blas_backend.ts";
 * const info = registerBlasBackend({ threads: 2 });
 * if (info) await tf.setBackend("blas");
 * ```
 * @module
 */
import {
  getKernelsForBackend,
  type KernelConfig,
  type KernelFunc,
  registerBackend,
  registerKernel,
} from "@tensorflow/tfjs-core";
import { type Blas, loadBlas } from "./blas.ts";
import { type DenseSgemm, matMulKernels } from "./matmul.ts";
import { binaryKernels, unaryKernels } from "./elementwise.ts";
import { layoutKernels } from "./layout.ts";
import { reduceKernels } from "./reduce.ts";
import { PooledCpuBackend } from "./pool.ts";
import { fusedKernels } from "./fused.ts";
import { dnnlForDense, loadDnnl } from "./dnnl.ts";
import { attentionKernels } from "./attention.ts";
import { BLAS_BACKEND_NAME } from "./common.ts";

/** Options for {@linkcode registerBlasBackend}. */
export interface BlasBackendOptions {
  /** BLAS threads (default: the library's own default, usually the number of cores). */
  threads?: number;
  /** Open this library instead of searching (see lib/backends/blas/blas.ts). */
  libraryPath?: string;
}

/** What {@linkcode registerBlasBackend} set up. */
export interface BlasBackendInfo {
  /** The loaded library. */
  blas: Blas;
  /** BLAS threads in use, when the library can say. */
  threads?: number;
  /** Kernel names with a fast implementation (the rest are the cpu backend's). */
  fastKernels: string[];
  /** e.g. `blas (OpenBLAS via FFI on cpu kernels, 2 threads; oneDNN avx2 for GELU)`. */
  description: string;
}

let registered: BlasBackendInfo | undefined;

/** Kernel-level timings collected while profiling is on (see {@linkcode setKernelProfiling}). */
export interface KernelTiming {
  /** Calls counted. */
  calls: number;
  /** Total wall time in ms. */
  ms: number;
}

let profile: Map<string, KernelTiming> | undefined;
let profileShapes = false;

/**
 * Starts (true) or stops (false) timing every kernel call on the `blas` backend; returns the timings
 * gathered since the last start (when stopping) and resets them. With `byShape`, entries are keyed by
 * kernel name and input shapes.
 */
export function setKernelProfiling(on: boolean, options: { byShape?: boolean } = {}): Map<string, KernelTiming> {
  const was = profile ?? new Map();
  profile = on ? new Map() : undefined;
  profileShapes = !!options.byShape;
  return was;
}

function timed(kernelName: string, fn: KernelFunc): KernelFunc {
  return ((args: Parameters<KernelFunc>[0]) => {
    if (!profile) return fn(args);
    const t0 = performance.now();
    const out = fn(args);
    const key = profileShapes
      ? `${kernelName} ${Object.values(args.inputs).map((t) => `[${t?.shape}]`).join(" ")}`
      : kernelName;
    const entry = profile.get(key) ?? { calls: 0, ms: 0 };
    entry.calls++;
    entry.ms += performance.now() - t0;
    profile.set(key, entry);
    return out;
  }) as KernelFunc;
}

/**
 * Registers the `blas` backend (once). Returns undefined, registering nothing, when no CBLAS library can be
 * opened (none installed, or no `--allow-ffi`; `blasUnavailableReason()` in blas.ts says which). Calling again only
 * updates the thread count.
 */
export function registerBlasBackend(options: BlasBackendOptions = {}): BlasBackendInfo | undefined {
  if (registered) {
    if (options.threads) {
      registered.blas.setThreads(options.threads);
      registered.threads = registered.blas.getThreads() ?? options.threads;
      registered.description = describe(registered.blas, registered.threads);
    }
    return registered;
  }
  const blas = loadBlas({ path: options.libraryPath, threads: options.threads });
  if (!blas) return undefined;
  const fast: KernelConfig[] = [
    ...matMulKernels(blas, BLAS_BACKEND_NAME, denseSgemm()),
    ...binaryKernels(blas, BLAS_BACKEND_NAME),
    ...unaryKernels(BLAS_BACKEND_NAME),
    ...layoutKernels(BLAS_BACKEND_NAME),
    ...reduceKernels(blas, BLAS_BACKEND_NAME),
    ...fusedKernels(BLAS_BACKEND_NAME, blas),
    ...attentionKernels(blas, BLAS_BACKEND_NAME),
  ];
  const fastNames = new Set(fast.map((k) => k.kernelName));
  registerBackend(BLAS_BACKEND_NAME, () => {
    const backend = new PooledCpuBackend();
    // Silence tfjs's "install the node backend" banner: lib/backends/backend.ts reports the choice.
    (backend as unknown as { firstUse: boolean }).firstUse = false;
    return backend;
  }, 0);
  for (const config of getKernelsForBackend("cpu")) {
    if (fastNames.has(config.kernelName)) continue;
    registerKernel({
      ...config,
      backendName: BLAS_BACKEND_NAME,
      kernelFunc: timed(config.kernelName, config.kernelFunc),
    });
  }
  for (const config of fast) {
    registerKernel({ ...config, kernelFunc: timed(config.kernelName, config.kernelFunc) });
  }
  const threads = blas.getThreads() ?? options.threads;
  registered = { blas, threads, fastKernels: [...fastNames].sort(), description: describe(blas, threads) };
  return registered;
}

function denseSgemm(): DenseSgemm | undefined {
  const dnnl = dnnlForDense();
  if (!dnnl) return undefined;
  return (args, threads) => {
    dnnl.setThreads(threads);
    dnnl.sgemm(args);
  };
}

function describe(blas: Blas, threads: number | undefined): string {
  const t = threads === undefined ? "library threads" : `${threads} thread${threads === 1 ? "" : "s"}`;
  const dnnl = loadDnnl();
  const uses = dnnlForDense() ? "GELU and dense products" : "GELU";
  return `blas (${blas.vendor} via FFI on cpu kernels, ${t}${dnnl ? `; oneDNN ${dnnl.isa} for ${uses}` : ""})`;
}
