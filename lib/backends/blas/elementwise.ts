/**
 * Elementwise float32 kernels for the `blas` backend: broadcasting binary ops as strided loops (the cpu
 * backend computes an index per element with array allocations when shapes differ), and in-place activations.
 * Same-shape Add and Sub are a copy plus the BLAS library's `saxpy` (vector code, about 3x a JavaScript loop).
 * @module
 */
import { type KernelConfig, type KernelFunc, type TensorInfo, util } from "@tensorflow/tfjs-core";
import type { Blas } from "./blas.ts";
import { allF32, cpuKernel, f32, fillRows, type KernelArgs, output, planBroadcast } from "./common.ts";
import { allocF32 } from "./pool.ts";
import { simdMath } from "../simd/simd.ts";

/** Binary operations with a fast float32 path. */
export type BinaryOp = "add" | "sub" | "mul" | "div" | "max" | "min" | "sqdiff" | "prelu";

const OPS: Record<BinaryOp, number> = { add: 0, sub: 1, mul: 2, div: 3, max: 4, min: 5, sqdiff: 6, prelu: 7 };

// One loop per op keeps each call site monomorphic (a shared `op(a, b)` callback would not inline).
function run(
  op: number,
  out: Float32Array,
  o: number,
  a: Float32Array,
  ai: number,
  sa: number,
  b: Float32Array,
  bi: number,
  sb: number,
  n: number,
): void {
  const end = o + n;
  switch (op) {
    case 0:
      for (; o < end; o++, ai += sa, bi += sb) out[o] = a[ai] + b[bi];
      return;
    case 1:
      for (; o < end; o++, ai += sa, bi += sb) out[o] = a[ai] - b[bi];
      return;
    case 2:
      for (; o < end; o++, ai += sa, bi += sb) out[o] = a[ai] * b[bi];
      return;
    case 3:
      for (; o < end; o++, ai += sa, bi += sb) out[o] = a[ai] / b[bi];
      return;
    case 4:
      for (; o < end; o++, ai += sa, bi += sb) {
        const x = a[ai], y = b[bi];
        out[o] = x !== x || y !== y ? NaN : x > y ? x : y;
      }
      return;
    case 5:
      for (; o < end; o++, ai += sa, bi += sb) {
        const x = a[ai], y = b[bi];
        out[o] = x !== x || y !== y ? NaN : x < y ? x : y;
      }
      return;
    case 6:
      for (; o < end; o++, ai += sa, bi += sb) {
        const d = a[ai] - b[bi];
        out[o] = d * d;
      }
      return;
    case 7:
      for (; o < end; o++, ai += sa, bi += sb) {
        const x = a[ai];
        out[o] = x < 0 ? x * b[bi] : x;
      }
      return;
    default:
      throw new Error(`unknown binary op ${op}`);
  }
}

// The same ops over three unit-stride arrays: one index, so V8 hoists the bounds checks.
function runContiguous(op: number, out: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
  switch (op) {
    case 0:
      for (let i = 0; i < n; i++) out[i] = a[i] + b[i];
      return;
    case 1:
      for (let i = 0; i < n; i++) out[i] = a[i] - b[i];
      return;
    case 2:
      for (let i = 0; i < n; i++) out[i] = a[i] * b[i];
      return;
    case 3:
      for (let i = 0; i < n; i++) out[i] = a[i] / b[i];
      return;
    default:
      run(op, out, 0, a, 0, 1, b, 0, 1, n);
  }
}

// Unit-stride runs at offsets, for a broadcast whose last dim is contiguous in both operands (e.g. `[B, F, D] - [F, D]`):
// 0.67 ms instead of 0.87 through the strided loop of `run` at BERT-Tiny's 32 x 128 x 128.
function runContiguousAt(
  op: number,
  out: Float32Array,
  o: number,
  a: Float32Array,
  ai: number,
  b: Float32Array,
  bi: number,
  n: number,
): void {
  switch (op) {
    case 0:
      for (let i = 0; i < n; i++) out[o + i] = a[ai + i] + b[bi + i];
      return;
    case 1:
      for (let i = 0; i < n; i++) out[o + i] = a[ai + i] - b[bi + i];
      return;
    case 2:
      for (let i = 0; i < n; i++) out[o + i] = a[ai + i] * b[bi + i];
      return;
    default:
      run(op, out, o, a, ai, 1, b, bi, 1, n);
  }
}

function broadcastInto(
  op: number,
  out: Float32Array,
  a: Float32Array,
  aShape: number[],
  b: Float32Array,
  bShape: number[],
): number[] {
  const plan = planBroadcast([aShape, bShape]);
  const dims = plan.dims, [sa, sb] = plan.strides;
  const r = dims.length - 1;
  const inner = dims[r], ia = sa[r], ib = sb[r];
  const outer = out.length / inner;
  if (outer === 1 && ia === 1 && ib === 1) {
    runContiguous(op, out, a, b, inner); // same size: no broadcast at all
    return plan.outShape;
  }
  if (outer === 1) {
    run(op, out, 0, a, 0, ia, b, 0, ib, inner);
    return plan.outShape;
  }
  const idx = new Array(r).fill(0);
  let pa = 0, pb = 0;
  for (let i = 0, o = 0; i < outer; i++, o += inner) {
    if (ia === 1 && ib === 1) runContiguousAt(op, out, o, a, pa, b, pb, inner);
    else run(op, out, o, a, pa, ia, b, pb, ib, inner);
    for (let d = r - 1; d >= 0; d--) {
      idx[d]++;
      pa += sa[d];
      pb += sb[d];
      if (idx[d] < dims[d]) break;
      pa -= sa[d] * dims[d];
      pb -= sb[d] * dims[d];
      idx[d] = 0;
    }
  }
  return plan.outShape;
}

/** `op(a, b)` with numpy broadcasting into a new array. */
function binaryF32(
  op: BinaryOp,
  a: Float32Array,
  aShape: number[],
  b: Float32Array,
  bShape: number[],
): { values: Float32Array; shape: number[] } {
  const plan = planBroadcast([aShape, bShape]);
  const out = allocF32(util.sizeFromShape(plan.outShape), false);
  if (out.length === 0) return { values: out, shape: plan.outShape };
  const shape = broadcastInto(OPS[op], out, a, aShape, b, bShape);
  return { values: out, shape };
}

/** `a = op(a, b)` in place when `b` broadcasts into `a`'s shape, else into a new array (returned either way). */
export function broadcastBinaryInPlace(
  op: BinaryOp,
  a: Float32Array,
  aShape: number[],
  b: Float32Array,
  bShape: number[],
): { values: Float32Array; shape: number[] } {
  const plan = planBroadcast([aShape, bShape]);
  const size = util.sizeFromShape(plan.outShape);
  if (size !== a.length) return binaryF32(op, a, aShape, b, bShape);
  if (size === 0) return { values: a, shape: plan.outShape };
  return { values: a, shape: broadcastInto(OPS[op], a, a, aShape, b, bShape) };
}

/**
 * `out = max(x, 0)`, NaN kept, in place when `out` is `x`. Branch-free on the float bits: with random signs a
 * compare-and-branch mispredicts half the time (about 6 ns per element here, against under 2 ns this way).
 */
function reluF32(x: Float32Array, out: Float32Array): void {
  const n = Math.min(x.length, out.length);
  const xi = new Int32Array(x.buffer, x.byteOffset, n), oi = new Int32Array(out.buffer, out.byteOffset, n);
  for (let i = 0; i < n; i++) {
    const v = xi[i];
    // -1 when |v| encodes a NaN (exponent all ones, mantissa non-zero), else 0: NaNs pass whatever their sign.
    const nan = (0x7f800000 - (v & 0x7fffffff)) >> 31;
    // keep v unless its sign bit is set (negative numbers and -0 become +0)
    oi[i] = v & (~(v >> 31) | nan);
  }
}

/** Applies a tfjs fused activation (`linear`, `relu`, `relu6`, `elu`, `leakyrelu`, `sigmoid`) in place. */
export function applyActivation(activation: string, x: Float32Array, leakyreluAlpha = 0.2): void {
  const n = x.length;
  switch (activation) {
    case "linear":
      return;
    case "relu":
      reluF32(x, x);
      return;
    case "relu6":
      for (let i = 0; i < n; i++) x[i] = x[i] < 0 ? 0 : x[i] > 6 ? 6 : x[i];
      return;
    case "elu":
      for (let i = 0; i < n; i++) if (x[i] < 0) x[i] = Math.exp(x[i]) - 1;
      return;
    case "leakyrelu":
      for (let i = 0; i < n; i++) if (x[i] < 0) x[i] *= leakyreluAlpha;
      return;
    case "sigmoid":
      for (let i = 0; i < n; i++) x[i] = 1 / (1 + Math.exp(-x[i]));
      return;
    default:
      throw new Error(`activation "${activation}" is not supported by the blas backend's fused matMul`);
  }
}

/**
 * Whether `b` broadcasts into `a` by repetition only, leaving `a`'s shape: `b`'s rank is at most `a`'s and its shape,
 * without leading 1s, is the tail of `a`'s (so `a`'s values are whole blocks of `b`'s size, in order).
 */
function repeatsAlongLeadingDims(aShape: number[], bShape: number[]): boolean {
  let lead = 0;
  while (lead < bShape.length && bShape[lead] === 1) lead++;
  const tail = bShape.slice(lead);
  if (tail.length === 0 || bShape.length > aShape.length) return false;
  return util.arraysEqual(aShape.slice(aShape.length - tail.length), tail);
}

/** Below this many values a JavaScript loop beats the FFI call of `saxpy`. */
const SAXPY_MIN = 4096;

/**
 * Kernel configs for the broadcasting binary ops on `backendName` (float32 fast path, else the cpu kernel).
 * With `blas` (and its `saxpy`), large same-shape Add and Sub run as a copy plus `saxpy`.
 */
export function binaryKernels(blas: Blas | undefined, backendName: string): KernelConfig[] {
  const saxpy = blas?.saxpy;
  const table: [string, BinaryOp][] = [
    ["Add", "add"],
    ["Sub", "sub"],
    ["Multiply", "mul"],
    ["RealDiv", "div"],
    ["Maximum", "max"],
    ["Minimum", "min"],
    ["SquaredDifference", "sqdiff"],
  ];
  return table.map(([kernelName, op]) => {
    const fallback = cpuKernel(kernelName);
    const kernelFunc = (args: KernelArgs): TensorInfo => {
      const { inputs, backend } = args;
      const a = inputs.a!, b = inputs.b!;
      if (!allF32(backend, a, b)) return fallback(args as never) as TensorInfo;
      const av = f32(backend, a), bv = f32(backend, b);
      if (saxpy && (op === "add" || op === "sub") && av.length >= SAXPY_MIN && util.arraysEqual(a.shape, b.shape)) {
        // a + b = b + 1 * a; a - b = a + (-1) * b: one fused multiply-add per value, rounded once, as a + b is.
        const out = allocF32(av.length, false);
        if (op === "add") {
          out.set(bv);
          saxpy(av.length, 1, av, out);
        } else {
          out.set(av);
          saxpy(av.length, -1, bv, out);
        }
        return output(backend, a.shape, out);
      }
      if (saxpy && op === "add" && av.length >= SAXPY_MIN && repeatsAlongLeadingDims(a.shape, b.shape)) {
        // [..., F, D] + [F, D] (the position embeddings): b repeated by memcpys, then one saxpy adds a (BERT-Tiny's
        // 32 x 128 x 128: 0.13 ms instead of 0.87; bit for bit the same sums).
        const out = allocF32(av.length, false);
        fillRows(out, bv);
        saxpy(av.length, 1, av, out);
        return output(backend, a.shape, out);
      }
      const r = binaryF32(op, av, a.shape, bv, b.shape);
      return output(backend, r.shape, r.values);
    };
    return { kernelName, backendName, kernelFunc: kernelFunc as unknown as KernelFunc };
  });
}

/** Unary operations with a fast float32 path (kernel name -> op). */
const UNARY: Record<string, number> = {
  Abs: 0,
  Ceil: 1,
  Elu: 2,
  Erf: 3,
  Exp: 4,
  Floor: 5,
  Log: 6,
  Neg: 7,
  Reciprocal: 8,
  Relu: 9,
  Relu6: 10,
  Rsqrt: 11,
  Sigmoid: 12,
  Sqrt: 13,
  Square: 14,
  Step: 15,
  Tanh: 16,
  Sign: 17,
};

// Abramowitz & Stegun 7.1.26, the same constants as tfjs (backend_util.ERF_*), so results match the cpu backend.
const ERF_P = 0.3275911, A1 = 0.254829592, A2 = -0.284496736, A3 = 1.421413741, A4 = -1.453152027, A5 = 1.061405429;

/** Applies unary op `op` (an index into the UNARY table) from `x` into `out`; `alpha` is Step's attribute. */
function unary(op: number, x: Float32Array, out: Float32Array, alpha: number): void {
  const n = x.length;
  switch (op) {
    case 0:
      for (let i = 0; i < n; i++) out[i] = Math.abs(x[i]);
      return;
    case 1:
      for (let i = 0; i < n; i++) out[i] = Math.ceil(x[i]);
      return;
    case 2:
      for (let i = 0; i < n; i++) {
        const v = x[i];
        out[i] = v >= 0 ? v : Math.exp(v) - 1;
      }
      return;
    case 3:
      for (let i = 0; i < n; i++) {
        const xi = x[i];
        const v = xi < 0 ? -xi : xi;
        const t = 1 / (1 + ERF_P * v);
        const y = 1 - ((((A5 * t + A4) * t + A3) * t + A2) * t + A1) * t * Math.exp(-v * v);
        out[i] = xi < 0 ? -y : xi > 0 ? y : xi; // sign(0) = 0, NaN stays NaN
      }
      return;
    case 4:
      for (let i = 0; i < n; i++) out[i] = Math.exp(x[i]);
      return;
    case 5:
      for (let i = 0; i < n; i++) out[i] = Math.floor(x[i]);
      return;
    case 6:
      for (let i = 0; i < n; i++) out[i] = Math.log(x[i]);
      return;
    case 7:
      for (let i = 0; i < n; i++) out[i] = -x[i];
      return;
    case 8:
      for (let i = 0; i < n; i++) out[i] = 1 / x[i];
      return;
    case 9:
      reluF32(x, out);
      return;
    case 10:
      for (let i = 0; i < n; i++) out[i] = x[i] < 0 ? 0 : x[i] > 6 ? 6 : x[i];
      return;
    case 11:
      for (let i = 0; i < n; i++) out[i] = 1 / Math.sqrt(x[i]);
      return;
    case 12:
      for (let i = 0; i < n; i++) out[i] = 1 / (1 + Math.exp(-x[i]));
      return;
    case 13:
      for (let i = 0; i < n; i++) out[i] = Math.sqrt(x[i]);
      return;
    case 14:
      for (let i = 0; i < n; i++) out[i] = x[i] * x[i];
      return;
    case 15:
      for (let i = 0; i < n; i++) {
        const v = x[i];
        out[i] = v !== v ? NaN : v > 0 ? 1 : alpha;
      }
      return;
    case 16:
      for (let i = 0; i < n; i++) out[i] = Math.tanh(x[i]);
      return;
    case 17:
      for (let i = 0; i < n; i++) out[i] = x[i] < 0 ? -1 : x[i] > 0 ? 1 : 0; // tfjs: sign(NaN) = 0
      return;
    default:
      throw new Error(`unknown unary op ${op}`);
  }
}

/** Kernel configs for the unary ops of the UNARY table on `backendName` (float32; else the cpu kernel). */
export function unaryKernels(backendName: string): KernelConfig[] {
  return Object.entries(UNARY).map(([kernelName, op]) => {
    const fallback = cpuKernel(kernelName);
    const kernelFunc = (args: KernelArgs): TensorInfo => {
      const { inputs, backend, attrs } = args;
      const x = inputs.x!;
      if (!allF32(backend, x)) return fallback(args as never) as TensorInfo;
      const xs = f32(backend, x);
      const out = allocF32(xs.length, false);
      const simd = xs.length >= 64 ? simdMath() : undefined;
      if (simd && kernelName === "Exp") simd.exp(xs, out);
      else if (simd && kernelName === "Erf") simd.erf(xs, out);
      else if (simd && kernelName === "Sigmoid") {
        simd.map("exp", xs.length, (b, s, n) => {
          for (let i = 0; i < n; i++) b[i] = -xs[s + i];
        }, (b, s, n) => {
          for (let i = 0; i < n; i++) out[s + i] = 1 / (1 + b[i]);
        });
      } else unary(op, xs, out, (attrs?.alpha as number | undefined) ?? 0);
      return output(backend, x.shape, out);
    };
    return { kernelName, backendName, kernelFunc: kernelFunc as unknown as KernelFunc };
  });
}
