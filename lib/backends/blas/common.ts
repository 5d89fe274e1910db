/**
 * Helpers shared by the `blas` backend's kernels: whether a fast path applies, reading and writing the cpu
 * backend's Float32Array storage, collapsing broadcast shapes, and handing a call back to the stock cpu kernel when
 * a fast path does not apply.
 * @module
 */
import {
  backend_util,
  engine,
  getBackend,
  getKernel,
  type KernelFunc,
  type Tensor,
  type TensorInfo,
  util,
} from "@tensorflow/tfjs-core";
import type { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";

/** The tfjs name of the backend. */
export const BLAS_BACKEND_NAME = "blas";

/** Whether tfjs is recording operations for a gradient (inside `tf.grad`, `variableGrads`, ...). */
export function recordingGradients(): boolean {
  return (engine() as unknown as { state: { gradientDepth: number } }).state.gradientDepth > 0;
}

/**
 * Whether the `blas` backend is the active one and every tensor is float32: the condition of every fused fast path
 * (fused.ts, attention.ts, the dense layer in lib/model/model.ts, AdamW in lib/training/optim.ts). Elsewhere the
 * callers compute the same maths with ordinary tf ops.
 */
export function onBlasF32(...ts: Tensor[]): boolean {
  return getBackend() === BLAS_BACKEND_NAME && ts.every((t) => t.dtype === "float32");
}

/** The arguments every kernel function receives (typed loosely, as tfjs does). */
export interface KernelArgs {
  /** Named input tensors. */
  inputs: Record<string, TensorInfo | undefined>;
  /** The backend instance (a MathBackendCPU). */
  backend: MathBackendCPU;
  /** Kernel attributes. */
  attrs?: Record<string, unknown>;
}

/** The storage of a tensor on the cpu backend (a TypedArray for numeric dtypes). */
export function valuesOf(backend: MathBackendCPU, t: TensorInfo): backend_util.BackendValues {
  return backend.data.get(t.dataId).values as backend_util.BackendValues;
}

/** The Float32Array storage of a float32 tensor. */
export function f32(backend: MathBackendCPU, t: TensorInfo): Float32Array {
  return backend.data.get(t.dataId).values as Float32Array;
}

/** True when every given tensor is float32 with plain (non-complex) storage. */
export function allF32(backend: MathBackendCPU, ...ts: (TensorInfo | undefined)[]): boolean {
  for (const t of ts) {
    if (!t) continue;
    if (t.dtype !== "float32") return false;
    if (!(backend.data.get(t.dataId).values instanceof Float32Array)) return false;
  }
  return true;
}

/** Wraps a Float32Array as a new float32 tensor owned by the backend. */
export function output(backend: MathBackendCPU, shape: number[], values: Float32Array): TensorInfo {
  return backend.makeTensorInfo(shape, "float32", values);
}

/** The cpu backend's own kernel function for `kernelName` (the fallback for cases a fast kernel leaves). */
export function cpuKernel(kernelName: string): KernelFunc {
  const config = getKernel(kernelName, "cpu");
  if (!config) throw new Error(`the cpu backend has no ${kernelName} kernel (is @tensorflow/tfjs-backend-cpu loaded?)`);
  return config.kernelFunc;
}

/** Axes as non-negative ints in increasing order (tfjs's `axis` attribute: number, array, or null = all). */
export function parseAxes(axis: unknown, shape: number[]): number[] {
  const axes = util.parseAxisParam(axis as number | number[], shape);
  return [...new Set(axes)].sort((x, y) => x - y);
}

/** A broadcast plan: the output's dims merged where possible, with each input's stride per merged dim (0 = broadcast). */
export interface BroadcastPlan {
  /** Output shape (unmerged). */
  outShape: number[];
  /** Merged dims, outermost first; their product is the output size. */
  dims: number[];
  /** Element strides of each input along the merged dims. */
  strides: number[][];
}

/** Plans an n-ary broadcast of `shapes` (numpy rules) into as few strided loops as possible. */
export function planBroadcast(shapes: number[][]): BroadcastPlan {
  let outShape: number[] = shapes[0];
  for (let i = 1; i < shapes.length; i++) outShape = backend_util.assertAndGetBroadcastShape(outShape, shapes[i]);
  const rank = outShape.length;
  // Per input: padded shape, then per-dim "real" flag (dim size equals the output's and is > 1).
  const padded = shapes.map((s) => [...new Array(rank - s.length).fill(1), ...s]);
  const dims: number[] = [];
  const strides: number[][] = shapes.map(() => []);
  const flags: boolean[][] = shapes.map(() => []);
  for (let d = 0; d < rank; d++) {
    const size = outShape[d];
    if (size === 1) continue; // contributes nothing
    const real = padded.map((p) => p[d] !== 1);
    const last = dims.length - 1;
    if (last >= 0 && real.every((r, i) => r === flags[i][last])) {
      dims[last] *= size; // same broadcast pattern as the previous dim: merge
    } else {
      dims.push(size);
      real.forEach((r, i) => flags[i].push(r));
    }
  }
  // Strides: for each input, the element stride of each merged dim (0 when broadcast).
  for (let i = 0; i < shapes.length; i++) {
    let s = 1;
    for (let d = dims.length - 1; d >= 0; d--) {
      if (flags[i][d]) {
        strides[i][d] = s;
        s *= dims[d];
      } else {
        strides[i][d] = 0;
      }
    }
  }
  if (dims.length === 0) {
    dims.push(1);
    for (const s of strides) s.push(0);
  }
  return { outShape, dims, strides };
}

/** Fills `c` (a whole number of `row.length`-value rows) with copies of `row`, by doubling memcpys. */
export function fillRows(c: Float32Array, row: Float32Array): void {
  const n = row.length, total = c.length;
  if (total === 0) return;
  c.set(row);
  // copyWithin is a memmove in V8: log2(rows) calls instead of one `set` per row.
  for (let filled = n; filled < total; filled *= 2) c.copyWithin(filled, 0, Math.min(filled, total - filled));
}
