/**
 * BatchMatMul and _FusedMatMul on the cpu backend's storage through CBLAS `sgemm` (lib/backends/blas/blas.ts).
 *
 * Batch dims broadcast (numpy rules); when the right operand has no batch (a weight matrix) and the left one
 * is not transposed, the whole batch is one `sgemm` call with `m = batch * rows`. A fused bias that is one row
 * (`[n]`, `[1, n]`, a scalar) is copied into every output row first and `sgemm` accumulates onto it (`beta = 1`):
 * a memcpy-speed fill instead of a broadcasting add that cost more than the product itself. A dense layer's products
 * (one weight matrix on the right, one call's rows on the left, either transposed) go to the `dense` sgemm when the
 * backend passes one (oneDNN's; {@linkcode DenseSgemm}).
 * @module
 */
import { backend_util, type KernelConfig, type KernelFunc, type TensorInfo, util } from "@tensorflow/tfjs-core";
import type { Blas, SgemmArgs } from "./blas.ts";
import { allF32, cpuKernel, f32, fillRows, type KernelArgs, output, planBroadcast } from "./common.ts";
import { applyActivation, broadcastBinaryInPlace } from "./elementwise.ts";
import { allocF32 } from "./pool.ts";

/** Options of {@linkcode matMulF32}. */
interface MatMulF32Options {
  /** The library doing the work. */
  blas: Blas;
  /** Left operand values and shape `[...batchA, m, k]` (`[..., k, m]` when transposeA). */
  a: Float32Array;
  /** Shape of `a`. */
  aShape: number[];
  /** Right operand values. */
  b: Float32Array;
  /** Shape of `b`: `[...batchB, k, n]` (`[..., n, k]` when transposeB). */
  bShape: number[];
  /** Use `a` transposed in its last two dims. */
  transposeA?: boolean;
  /** Use `b` transposed in its last two dims. */
  transposeB?: boolean;
  /** `n` values added to every output row (the product accumulates onto them; see {@linkcode rowBias}). */
  bias?: Float32Array;
  /** Where the products of a dense layer run instead of `blas` (see {@linkcode DenseSgemm}). */
  dense?: DenseSgemm;
}

/**
 * An `sgemm` for the products whose right operand is one matrix and whose left one is one call's worth of rows (dense
 * layers and their gradients), e.g. oneDNN's (lib/backends/blas/dnnl.ts). Chosen by the operands' batch dims, never by
 * their row counts, so that a row of a length-trimmed batch is computed by the same code as in a full one.
 */
export type DenseSgemm = (args: SgemmArgs, threads: number) => void;

/**
 * The bias as one row of `n` values when it broadcasts along every output row without changing the output's
 * shape: rank at most `outRank`, every dim but the last 1, and the last `n` or 1 (a scalar is repeated).
 * Undefined for any other shape (the caller then adds it with a general broadcast).
 */
function rowBias(values: Float32Array, shape: number[], n: number, outRank: number): Float32Array | undefined {
  if (shape.length > outRank) return undefined;
  for (let d = 0; d < shape.length - 1; d++) if (shape[d] !== 1) return undefined;
  const last = shape.length ? shape[shape.length - 1] : 1;
  if (last === n && values.length === n) return values;
  if (last === 1 && values.length === 1) return new Float32Array(n).fill(values[0]);
  return undefined;
}

/**
 * Multiply-adds up to which a product runs on one BLAS thread: waking OpenBLAS's sleeping second thread costs more than
 * it saves. Measured in an SST-2 evaluation profile (2-core EPYC, OpenBLAS 0.3.21): the `[64, 128] x [128, 128]` and
 * `[64, 128] x [128, 512]` products of the `[CLS]` rows ran 2-3.7x faster on one thread; products of 20M+ showed no
 * difference beyond the noise, so they keep both.
 */
const SMALL_PRODUCT = 2 ** 23;

/**
 * The threads a dense layer's product of `rows x n x k` multiply-adds runs on: one up to {@linkcode SMALL_PRODUCT},
 * else the library's.
 */
export function denseProductThreads(rows: number, n: number, k: number, blas: Pick<Blas, "getThreads">): number {
  return rows * n * k <= SMALL_PRODUCT ? 1 : blas.getThreads() ?? 1;
}

/** `op(a) @ op(b)` with broadcast batch dims; returns the values and the output shape `[...batch, m, n]`. */
function matMulF32(o: MatMulF32Options): { values: Float32Array; shape: number[] } {
  const { blas, a, b, aShape, bShape } = o;
  const transA = !!o.transposeA, transB = !!o.transposeB;
  const ra = aShape.length, rb = bShape.length;
  if (ra < 2 || rb < 2) throw new Error(`matMul needs rank >= 2 operands, got shapes [${aShape}] and [${bShape}]`);
  const m = transA ? aShape[ra - 1] : aShape[ra - 2];
  const ka = transA ? aShape[ra - 2] : aShape[ra - 1];
  const kb = transB ? bShape[rb - 1] : bShape[rb - 2];
  const n = transB ? bShape[rb - 2] : bShape[rb - 1];
  if (ka !== kb) {
    throw new Error(
      `Error in matMul: inner shapes (${ka}) and (${kb}) of Tensors with shapes ${aShape} and ${bShape} and ` +
        `transposeA=${transA} and transposeB=${transB} must match.`,
    );
  }
  const k = ka;
  const batchA = aShape.slice(0, -2), batchB = bShape.slice(0, -2);
  const outBatch = backend_util.assertAndGetBroadcastShape(batchA, batchB);
  const batch = util.sizeFromShape(outBatch);
  const shape = [...outBatch, m, n];
  const bias = o.bias;
  if (bias && bias.length !== n) throw new Error(`matMul: a row bias needs ${n} values, got ${bias.length}`);
  // sgemm with beta = 0 overwrites c, so a recycled array needs no zeroing (k = 0 is an empty sum: zeros).
  // With a bias, c starts as the bias rows and sgemm adds the product to them (beta = 1).
  const c = allocF32(batch * m * n, k === 0 && !bias);
  if (bias) fillRows(c, bias);
  const beta = bias ? 1 : 0;
  if (batch === 0 || m === 0 || n === 0 || k === 0) return { values: c, shape };
  const sizeA = m * k, sizeB = k * n, sizeC = m * n;
  const nA = util.sizeFromShape(batchA), nB = util.sizeFromShape(batchB);
  // One matrix on the right (a weight; tfjs hands 2-D operands over as [1, m, k]) and one call's worth of rows on the
  // left: a dense layer or its gradient.
  if (o.dense && nB === 1 && (nA === 1 || (!transA && nA === batch))) {
    const rows = batch * m; // batch is nA here
    const threads = denseProductThreads(rows, n, k, blas);
    o.dense({ m: rows, n, k, a, b, c, transA, transB, beta }, threads);
    return { values: c, shape };
  }
  if (nB === 1 && !transA) {
    // [batch*m, k] @ [k, n]: one call (the batch rows of a are contiguous).
    if (nA === batch) {
      const rows = batch * m;
      const threads = rows * n * k <= SMALL_PRODUCT ? blas.getThreads() ?? 1 : 1; // to restore after a small product
      if (threads > 1) blas.setThreads(1);
      try {
        blas.sgemm({ m: rows, n, k, a, b, c, transB, beta });
      } finally {
        if (threads > 1) blas.setThreads(threads);
      }
      return { values: c, shape };
    }
  }
  // Batch dims, broadcast or equal: walk the output batch with per-operand strides (0 = broadcast).
  const plan = planBroadcast([batchA.length ? batchA : [1], batchB.length ? batchB : [1]]);
  const dims = plan.dims, [sa, sb] = plan.strides;
  const idx = new Array(dims.length).fill(0);
  let ia = 0, ib = 0;
  for (let i = 0; i < batch; i++) {
    blas.sgemm({
      m,
      n,
      k,
      transA,
      transB,
      a: a.subarray(ia * sizeA, (ia + 1) * sizeA),
      b: b.subarray(ib * sizeB, (ib + 1) * sizeB),
      c: c.subarray(i * sizeC, (i + 1) * sizeC),
      beta,
    });
    for (let d = dims.length - 1; d >= 0; d--) {
      idx[d]++;
      ia += sa[d];
      ib += sb[d];
      if (idx[d] < dims[d]) break;
      ia -= sa[d] * dims[d];
      ib -= sb[d] * dims[d];
      idx[d] = 0;
    }
  }
  return { values: c, shape };
}

/**
 * Creates the BatchMatMul and _FusedMatMul kernel configs for `backendName`, calling `blas`, and `dense` (when given)
 * for a dense layer's products (see {@linkcode DenseSgemm}).
 */
export function matMulKernels(blas: Blas, backendName: string, dense?: DenseSgemm): KernelConfig[] {
  const cpuBatchMatMul = cpuKernel("BatchMatMul");
  const cpuFused = cpuKernel("_FusedMatMul");

  const batchMatMul = (args: KernelArgs): TensorInfo => {
    const { inputs, backend, attrs } = args;
    const a = inputs.a!, b = inputs.b!;
    if (!allF32(backend, a, b)) return cpuBatchMatMul(args as never) as TensorInfo;
    const { values, shape } = matMulF32({
      blas,
      a: f32(backend, a),
      aShape: a.shape,
      b: f32(backend, b),
      bShape: b.shape,
      transposeA: !!attrs?.transposeA,
      transposeB: !!attrs?.transposeB,
      dense,
    });
    return output(backend, shape, values);
  };

  const fusedMatMul = (args: KernelArgs): TensorInfo => {
    const { inputs, backend, attrs } = args;
    const { a, b, bias, preluActivationWeights } = inputs;
    if (!allF32(backend, a, b, bias, preluActivationWeights)) return cpuFused(args as never) as TensorInfo;
    const transposeB = !!attrs?.transposeB;
    const rb = b!.shape.length;
    const n = b!.shape[transposeB ? rb - 2 : rb - 1];
    const outRank = Math.max(a!.shape.length, rb);
    const row = bias ? rowBias(f32(backend, bias), bias.shape, n, outRank) : undefined;
    const { values, shape } = matMulF32({
      blas,
      a: f32(backend, a!),
      aShape: a!.shape,
      b: f32(backend, b!),
      bShape: b!.shape,
      transposeA: !!attrs?.transposeA,
      transposeB,
      bias: row,
      dense,
    });
    let out = values, outShape = shape;
    if (bias && !row) {
      const r = broadcastBinaryInPlace("add", out, outShape, f32(backend, bias), bias.shape);
      out = r.values;
      outShape = r.shape;
    }
    const activation = (attrs?.activation as string | undefined) ?? "linear";
    if (activation === "prelu") {
      const w = preluActivationWeights!;
      const r = broadcastBinaryInPlace("prelu", out, outShape, f32(backend, w), w.shape);
      out = r.values;
      outShape = r.shape;
    } else {
      applyActivation(activation, out, (attrs?.leakyreluAlpha as number | undefined) ?? 0.2);
    }
    return output(backend, outShape, out);
  };

  return [
    { kernelName: "BatchMatMul", backendName, kernelFunc: batchMatMul as unknown as KernelFunc },
    { kernelName: "_FusedMatMul", backendName, kernelFunc: fusedMatMul as unknown as KernelFunc },
  ];
}
