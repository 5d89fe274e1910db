/**
 * Reductions (Sum, Mean, Max, Min) over any axes without a transpose for the common layouts, and a
 * last-axis Softmax in one pass per row, for the `blas` backend (float32; other dtypes use the cpu kernels).
 *
 * Large sums are matrix-vector products with a vector of ones through the BLAS library's `sgemv`: a
 * `[rows, cols]` view summed over its rows (bias gradients, `[4096, 128]` over axis 0) is `x^T @ ones`,
 * about 0.1 ns per value against 0.6 for the best JavaScript loop (and `sgemm` with a ones row, 0.2).
 * @module
 */
import { backend_util, type KernelConfig, type KernelFunc, type TensorInfo } from "@tensorflow/tfjs-core";
import type { Blas } from "./blas.ts";
import { allF32, cpuKernel, f32, type KernelArgs, output, parseAxes } from "./common.ts";
import { transposeValues } from "./layout.ts";
import { allocF32 } from "./pool.ts";
import { simdMath } from "../simd/simd.ts";

/** Reduction kinds. */
export type ReduceOp = "sum" | "mean" | "max" | "min";

/** Fewest values per `sgemv` call worth its FFI call (smaller sums stay JavaScript loops). */
const SGEMV_MIN = 4096;

let onesCache = new Float32Array(0);

/** At least `n` ones (shared, never written). */
function ones(n: number): Float32Array {
  if (onesCache.length < n) onesCache = new Float32Array(Math.max(n, 2 * onesCache.length)).fill(1);
  return onesCache;
}

/**
 * Reduces `x` (shape `shape`) over `axes` (sorted, unique); returns the values in the kept dims' order.
 * JavaScript sums accumulate in float64; with `blas` (and its `sgemv`), large sums and means are float32
 * matrix-vector products instead (float32 summation error, as any float32 BLAS reduction).
 */
function reduceF32(op: ReduceOp, x: Float32Array, shape: number[], axes: number[], blas?: Blas): Float32Array {
  const reduced = new Set(axes);
  // Merge runs of kept / reduced dims (size-1 dims are dropped).
  const dims: number[] = [], red: boolean[] = [];
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const r = reduced.has(d);
    if (dims.length && red[red.length - 1] === r) dims[dims.length - 1] *= shape[d];
    else {
      dims.push(shape[d]);
      red.push(r);
    }
  }
  let count = 1;
  for (let d = 0; d < dims.length; d++) if (red[d]) count *= dims[d];
  const outSize = count === 0 ? 0 : x.length / count;
  const out = new Float32Array(count === 0 ? sizeKept(shape, reduced) : outSize);
  if (count === 0) {
    if (op === "sum") return out;
    out.fill(op === "mean" ? NaN : op === "max" ? -Infinity : Infinity);
    return out;
  }
  if (x.length === 0) return out;
  // Patterns: [K, R, K] with optional ends; anything else is transposed to [K, R] first.
  let a = 1, r = 1, k = 1, src = x;
  const firstRed = red.indexOf(true);
  const nRedGroups = red.filter((v) => v).length;
  if (nRedGroups <= 1 && firstRed >= 0) {
    for (let d = 0; d < firstRed; d++) a *= dims[d];
    r = dims[firstRed];
    for (let d = firstRed + 1; d < dims.length; d++) k *= dims[d];
  } else if (firstRed < 0) {
    out.set(x); // nothing (of size > 1) reduced
    return out;
  } else {
    const kept = dims.map((_, d) => d).filter((d) => !red[d]);
    const perm = [...kept, ...dims.map((_, d) => d).filter((d) => red[d])];
    src = transposeValues(x, dims, perm);
    for (const d of kept) a *= dims[d];
    r = count;
  }
  const scale = op === "mean" ? 1 / r : 1;
  const sgemv = blas?.sgemv;
  if (sgemv && (op === "sum" || op === "mean")) {
    // out is a fresh zeroed array, so beta = 0 is safe even where a BLAS computes 0 * y.
    if (k === 1 && a * r >= SGEMV_MIN) {
      sgemv({ m: a, n: r, a: src, x: ones(r), y: out, alpha: scale }); // [a, r] @ ones[r]
      return out;
    }
    if (k > 1 && r * k >= SGEMV_MIN) {
      const block = r * k, o = ones(r);
      for (let i = 0; i < a; i++) {
        // [r, k]^T @ ones[r]: the sum of the block's r rows of k values
        sgemv({
          trans: true,
          m: r,
          n: k,
          a: src.subarray(i * block, (i + 1) * block),
          x: o,
          y: out.subarray(i * k, (i + 1) * k),
          alpha: scale,
        });
      }
      return out;
    }
  }
  if (k === 1) {
    for (let i = 0; i < a; i++) {
      const base = i * r;
      if (op === "sum" || op === "mean") {
        let s = 0;
        for (let j = 0; j < r; j++) s += src[base + j];
        out[i] = s * scale;
      } else if (op === "max") {
        let m = src[base];
        for (let j = 1; j < r; j++) {
          const v = src[base + j];
          if (v > m || v !== v) m = v;
        }
        out[i] = m;
      } else {
        let m = src[base];
        for (let j = 1; j < r; j++) {
          const v = src[base + j];
          if (v < m || v !== v) m = v;
        }
        out[i] = m;
      }
    }
    return out;
  }
  // [a, r, k] reduced over r: row-wise accumulation keeps the inner loop contiguous.
  const acc = new Float64Array(k);
  for (let i = 0; i < a; i++) {
    const base = i * r * k;
    if (op === "sum" || op === "mean") {
      acc.fill(0);
      for (let j = 0; j < r; j++) {
        const row = base + j * k;
        for (let q = 0; q < k; q++) acc[q] += src[row + q];
      }
      for (let q = 0; q < k; q++) out[i * k + q] = acc[q] * scale;
    } else {
      const o = i * k;
      for (let q = 0; q < k; q++) out[o + q] = src[base + q];
      for (let j = 1; j < r; j++) {
        const row = base + j * k;
        if (op === "max") {
          for (let q = 0; q < k; q++) {
            const v = src[row + q];
            if (v > out[o + q] || v !== v) out[o + q] = v;
          }
        } else {
          for (let q = 0; q < k; q++) {
            const v = src[row + q];
            if (v < out[o + q] || v !== v) out[o + q] = v;
          }
        }
      }
    }
  }
  return out;
}

function sizeKept(shape: number[], reduced: Set<number>): number {
  let s = 1;
  for (let d = 0; d < shape.length; d++) if (!reduced.has(d)) s *= shape[d];
  return s;
}

/** Softmax over the last axis of `x` (`rows * cols` values), in a new array. */
function softmaxF32(x: Float32Array, cols: number): Float32Array {
  const out = allocF32(x.length, false);
  softmaxRowsInto(x, out, cols);
  return out;
}

/** Softmax of each row of `cols` values of `x` into `out` (which may be `x`: each value is read before written). */
export function softmaxRowsInto(x: Float32Array, out: Float32Array, cols: number): void {
  if (cols === 0) return;
  const rows = x.length / cols;
  const simd = simdMath();
  const rowsPerChunk = Math.floor(16384 / cols);
  if (simd && rowsPerChunk >= 1) {
    // x - rowmax into the module's buffer, exp there, then normalise on the way out.
    simd.map("exp", x.length, (b, s, n) => {
      for (let r = 0; r < n; r += cols) {
        let m = -Infinity;
        for (let j = 0; j < cols; j++) if (x[s + r + j] > m) m = x[s + r + j];
        for (let j = 0; j < cols; j++) b[r + j] = x[s + r + j] - m;
      }
    }, (b, s, n) => {
      for (let r = 0; r < n; r += cols) {
        let sum = 0;
        for (let j = 0; j < cols; j++) sum += b[r + j];
        const inv = 1 / sum;
        for (let j = 0; j < cols; j++) out[s + r + j] = b[r + j] * inv;
      }
    }, rowsPerChunk * cols);
    return;
  }
  for (let i = 0; i < rows; i++) {
    const base = i * cols, end = base + cols;
    let m = -Infinity;
    for (let j = base; j < end; j++) if (x[j] > m) m = x[j];
    let s = 0;
    for (let j = base; j < end; j++) {
      const e = Math.exp(x[j] - m);
      out[j] = e;
      s += e;
    }
    const inv = 1 / s;
    for (let j = base; j < end; j++) out[j] *= inv;
  }
}

/** Kernel configs for Sum, Mean, Max, Min and Softmax on `backendName`; `blas` (when given) does large sums. */
export function reduceKernels(blas: Blas | undefined, backendName: string): KernelConfig[] {
  const table: [string, ReduceOp, string][] = [
    ["Sum", "sum", "axis"],
    ["Mean", "mean", "axis"],
    ["Max", "max", "reductionIndices"],
    ["Min", "min", "axis"],
  ];
  const configs: KernelConfig[] = table.map(([kernelName, op, axisAttr]) => {
    const fallback = cpuKernel(kernelName);
    const kernelFunc = (args: KernelArgs): TensorInfo => {
      const { inputs, backend, attrs } = args;
      const x = inputs.x!;
      if (!allF32(backend, x)) return fallback(args as never) as TensorInfo;
      const axes = parseAxes(attrs![axisAttr], x.shape);
      const values = reduceF32(op, f32(backend, x), x.shape, axes, blas);
      const kept = x.shape.filter((_, d) => !axes.includes(d));
      const shape = attrs!.keepDims ? backend_util.expandShapeToKeepDim(kept, axes) : kept;
      return output(backend, shape, values);
    };
    return { kernelName, backendName, kernelFunc: kernelFunc as unknown as KernelFunc };
  });
  const cpuSoftmax = cpuKernel("Softmax");
  const softmax = (args: KernelArgs): TensorInfo => {
    const { inputs, backend, attrs } = args;
    const logits = inputs.logits!;
    const rank = logits.shape.length;
    const dim = (attrs!.dim as number) < 0 ? rank + (attrs!.dim as number) : attrs!.dim as number;
    if (!allF32(backend, logits) || dim !== rank - 1) return cpuSoftmax(args as never) as TensorInfo;
    return output(backend, logits.shape, softmaxF32(f32(backend, logits), logits.shape[rank - 1]));
  };
  configs.push({ kernelName: "Softmax", backendName, kernelFunc: softmax as unknown as KernelFunc });
  return configs;
}
