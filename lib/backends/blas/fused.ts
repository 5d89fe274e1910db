/**
 * Fused BERT training ops. On the `blas` backend each is one or two single-pass kernels (instead of the 5-15
 * elementwise tfjs ops they replace, each a full pass over memory); on any other backend they compute the
 * same maths with ordinary tf ops, so model code can call them unconditionally.
 *
 * - {@linkcode gelu}: exact (erf) GELU with its gradient.
 * - {@linkcode denseGeluFused}: a dense layer and its GELU in one oneDNN call, for inference where that keeps the bits.
 * - {@linkcode denseSideBySide}: dense layers of one input as one product, for inference where that keeps the bits.
 * - {@linkcode layerNorm}: LayerNorm over the last axis with its gradient.
 * - {@linkcode dropout}: inverted dropout with a seeded mask, gradient `dy * mask`.
 * - {@linkcode adamwUpdate}: one AdamW step of a parameter (new parameter, first and second moments).
 * - {@linkcode sparseSoftmaxCrossEntropy}: mean cross-entropy of logits against integer labels (label < 0 = ignored),
 *   whose forward pass also writes the gradient, so backward is one scaling pass (the masked-LM loss over a
 *   vocabulary of thousands: 2 passes instead of ~15).
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { f32, type KernelArgs, onBlasF32, output, recordingGradients } from "./common.ts";
import { allocF32, isPrivateArray } from "./pool.ts";
import { denseProductThreads } from "./matmul.ts";
import { softmaxRowsInto } from "./reduce.ts";
import { simdMath } from "../simd/simd.ts";
import type { Blas } from "./blas.ts";
import { type Dnnl, dnnlForDense, loadDnnl } from "./dnnl.ts";

function run(kernel: string, inputs: Record<string, tf.Tensor>, attrs: Record<string, unknown> = {}): tf.Tensor[] {
  const out = tf.engine().runKernel(kernel, inputs as never, attrs as never) as tf.Tensor | tf.Tensor[];
  return Array.isArray(out) ? out : [out];
}

// ---- GELU ----------------------------------------------------------------------------------------

const SQRT_2_OVER_PI_HALF = 0.3989422804014327; // 1 / sqrt(2 pi)

/** GELU, exact: `0.5 x (1 + erf(x / sqrt 2))`, with gradient `dy (Phi(x) + x phi(x))`. */
export function gelu<T extends tf.Tensor>(x: T): T {
  if (!onBlasF32(x)) return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)) as T;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor, save = args[1] as tf.GradSaveFunc;
    save([input]);
    return {
      value: run("BlasGelu", { x: input })[0],
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => run("BlasGeluGrad", { x: saved[0], dy })[0],
    };
  });
  return op(x) as T;
}

let inferenceFusion = true;

/**
 * Turns {@linkcode denseGeluFused} and {@linkcode denseSideBySide} on (the default) or off, for benchmarks that compare
 * the two ways step by step in one process (tests/bench/inference_fusion.ts). Either way gives the same bits.
 */
export function setInferenceFusion(on: boolean): void {
  inferenceFusion = on;
}

/**
 * `gelu(x @ kernel + bias)` (a dense layer and its exact GELU, the feed-forward's first half) as one oneDNN matmul
 * with GELU as a post-op, so that the `[m, n]` output is written once instead of written, read and written again.
 * Only outside gradient recording (the backward pass needs the product before GELU), and only where the result has
 * the same bits as the two steps it replaces: the product on oneDNN's `sgemm` (the backend's dense products) and
 * oneDNN's GELU (at least {@linkcode DNNL_MIN} values), and `Dnnl.denseGeluMatches` for this weight shape (true for
 * BERT-Tiny's `[128, 512]` on this project's machines, false for BERT-Base's `[768, 3072]`). Returns undefined
 * where it does not apply; the caller then runs the dense layer and {@linkcode gelu}.
 * @param x `[m, k]`
 * @param kernel `[k, n]`
 * @param bias `[n]`
 */
export function denseGeluFused(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor): tf.Tensor2D | undefined {
  if (kernel.rank !== 2 || bias.rank !== 1) return undefined;
  const dnnl = inferenceDnnl(x, kernel, bias);
  const [m, k] = x.shape, n = bias.shape[0];
  if (!dnnl || kernel.shape[0] !== k || kernel.shape[1] !== n || m < 2 || m * n < DNNL_MIN) return undefined;
  if (!dnnl.denseGeluMatches(k, n)) return undefined;
  return run("BlasDenseGelu", { x, kernel, bias })[0] as tf.Tensor2D;
}

/**
 * oneDNN for an inference fusion of a dense layer on `x` `[m, k]` and `params`: only where the fusions are on, no
 * gradient is being recorded, the tensors are float32 on `blas` and the backend's dense products run on oneDNN (the
 * calls a fusion must match bit for bit); else undefined.
 */
function inferenceDnnl(x: tf.Tensor, ...params: tf.Tensor[]): Dnnl | undefined {
  if (!inferenceFusion || x.rank !== 2 || recordingGradients() || !onBlasF32(x, ...params) || !blasForDnnl) {
    return undefined;
  }
  return dnnlForDense();
}

/**
 * Widths up to which {@linkcode denseSideBySide} runs the layers as one product. At BERT-Tiny's 128 one
 * `[M, 128] x [128, 384]` product took 1.9-2.1 ms against 2.3-2.4 for three (4,096 rows; 0.06 against 0.15 ms at 40);
 * at BERT-Base's 768 it was slower (17.1-17.5 against 16.4 ms at 1,024 rows), and concatenating its weights would
 * copy 7 MB per layer (BENCHMARKS.md, `tests/bench/fused_qkv.ts`).
 */
const SIDE_BY_SIDE_MAX_WIDTH = 256;

/**
 * The dense layers `x @ kernels[i] + biases[i]` of one input as one product with the weights side by side:
 * `[m, k] x [k, parts * n]`, the outputs' columns in the order given (the query, key and value layers for
 * lib/backends/blas/attention.ts's `packedSelfAttention`). Only outside gradient recording, on `blas` with the dense
 * products on oneDNN's AVX-512 code, for widths `n` up to {@linkcode SIDE_BY_SIDE_MAX_WIDTH}, and where
 * `Dnnl.sgemmColumnsMatch` says each block of columns has the bits of its own product. Not on the AVX2 code: there the
 * bits also depend on the row count, which the probe cannot cover (BERT-Tiny's `[M, 128] x [128, 384]` gave a few
 * hundred outputs other bits than the three products at 16 of 161 row counts from 885 up, 885 and 1,016 among them;
 * 2026-12-07). Returns undefined where it does not apply.
 * @param x `[m, k]`
 * @param kernels each `[k, n]`
 * @param biases each `[n]`
 * @returns `[m, parts * n]`
 */
export function denseSideBySide(x: tf.Tensor, kernels: tf.Tensor[], biases: tf.Tensor[]): tf.Tensor2D | undefined {
  const dnnl = inferenceDnnl(x, ...kernels, ...biases);
  const k = x.shape[1]!, n = biases[0].size, parts = kernels.length;
  const fits = (w: tf.Tensor, b: tf.Tensor) => w.rank === 2 && w.shape[0] === k && w.shape[1] === n && b.size === n;
  if (!dnnl?.isa.startsWith("avx512") || n > SIDE_BY_SIDE_MAX_WIDTH || parts !== biases.length) return undefined;
  if (!kernels.every((w, i) => fits(w, biases[i]))) return undefined;
  if (!dnnl.sgemmColumnsMatch(k, n, parts)) return undefined;
  return tf.tidy(() =>
    tf.fused.matMul({ a: x as tf.Tensor2D, b: tf.concat(kernels, 1) as tf.Tensor2D, bias: tf.concat(biases) })
  ) as tf.Tensor2D;
}

function denseGeluKernel(args: KernelArgs): TensorInfo {
  const { inputs, backend } = args;
  const [m, k] = inputs.x!.shape, n = inputs.bias!.shape[0];
  const out = allocF32(m * n, false);
  const dnnl = dnnlForDense()!;
  // The thread count matmul.ts gives the same product on the dense path.
  dnnl.setThreads(denseProductThreads(m, n, k, blasForDnnl!));
  dnnl.denseGelu(f32(backend, inputs.x!), f32(backend, inputs.kernel!), f32(backend, inputs.bias!), out, m);
  return output(backend, [m, n], out);
}

/**
 * oneDNN for the GELU kernels below when it is installed and the call is big enough to repay the FFI call, on as many
 * threads as OpenBLAS (lib/backends/blas/dnnl.ts); else undefined.
 */
function dnnlFor(n: number): Dnnl | undefined {
  if (n < DNNL_MIN || !blasForDnnl) return undefined;
  const dnnl = loadDnnl();
  dnnl?.setThreads(blasForDnnl.getThreads() ?? 1);
  return dnnl;
}

/** Values from which the oneDNN kernels are used (below, the FFI call and its set-up cost more than they save). */
const DNNL_MIN = 4096;
/** The BLAS library of the backend (for its thread count); set by {@linkcode fusedKernels}. */
let blasForDnnl: Blas | undefined;

function geluKernel(args: KernelArgs): TensorInfo {
  const { inputs, backend } = args;
  const x = f32(backend, inputs.x!);
  const out = allocF32(x.length, false);
  const simd = simdMath(), dnnl = dnnlFor(x.length);
  if (dnnl) dnnl.gelu(x, out);
  else if (simd) simd.gelu(x, out);
  else {
    for (let i = 0; i < x.length; i++) out[i] = 0.5 * x[i] * (1 + erfScalar(x[i] * Math.SQRT1_2));
  }
  return output(backend, inputs.x!.shape, out);
}

function geluGradKernel(args: KernelArgs): TensorInfo {
  const { inputs, backend } = args;
  const x = f32(backend, inputs.x!), dy = f32(backend, inputs.dy!);
  const out = allocF32(x.length, false);
  const simd = simdMath(), dnnl = dnnlFor(x.length);
  if (dnnl) dnnl.geluGrad(x, dy, out);
  else if (simd) simd.geluGrad(x, dy, out);
  else {
    for (let i = 0; i < x.length; i++) {
      const cdf = 0.5 * (1 + erfScalar(x[i] * Math.SQRT1_2));
      out[i] = dy[i] * (cdf + x[i] * SQRT_2_OVER_PI_HALF * Math.exp(-0.5 * x[i] * x[i]));
    }
  }
  return output(backend, inputs.x!.shape, out);
}

function erfScalar(xi: number): number {
  const v = Math.abs(xi);
  const t = 1 / (1 + 0.3275911 * v);
  const y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t *
      Math.exp(-v * v);
  return xi < 0 ? -y : xi > 0 ? y : xi;
}

// ---- LayerNorm -----------------------------------------------------------------------------------

/**
 * Sums the rows of `t` (`[n, k]` -> `[k]`). On wasm a reduction over axis 0 transposes first (~10x slower than
 * the matmul `ones[1, n] @ t`, which is used there instead).
 */
export function sumRows(t: tf.Tensor): tf.Tensor {
  if (tf.getBackend() !== "wasm") return tf.sum(t, 0);
  const [n, k] = t.shape;
  return tf.reshape(tf.matMul(tf.ones([1, n]), t), [k]);
}

/**
 * LayerNorm over the last axis: `(x - mean) / sqrt(var + eps) * gamma + beta` (biased variance, as in HF), with a
 * hand-written gradient. On `blas` it is one kernel each way; elsewhere a few tf ops (instead of the ~30 that
 * autodiff of `tf.moments` records).
 * @param x `[..., width]`
 * @param gamma `[width]`
 * @param beta `[width]`
 */
export function layerNorm<T extends tf.Tensor>(x: T, gamma: tf.Tensor, beta: tf.Tensor, eps: number): T {
  return addLayerNorm(x, undefined, gamma, beta, eps);
}

/**
 * `LayerNorm(x + residual)`, BERT's post-LN residual connection: {@linkcode layerNorm} of `tf.add(x, residual)`
 * (the same bits). On `blas` the sum is taken inside the LayerNorm kernel (no separate add, no array for the sum), and
 * outside gradient recording (evaluation, inference) the kernel writes no statistics for a backward pass.
 * @param x `[..., width]`
 * @param residual `x`'s shape, or undefined for plain LayerNorm
 */
export function addLayerNorm<T extends tf.Tensor>(
  x: T,
  residual: tf.Tensor | undefined,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  eps: number,
): T {
  if (!onBlasF32(x, gamma, beta, ...(residual ? [residual] : []))) {
    return composedLayerNorm(residual ? tf.add(x, residual) : x, gamma, beta, eps) as T;
  }
  if (residual && !tf.util.arraysEqual(x.shape, residual.shape)) {
    throw new Error(`addLayerNorm: residual has shape [${residual.shape}], expected x's [${x.shape}]`);
  }
  const inputs = (t: tf.Tensor, r: tf.Tensor | undefined, g: tf.Tensor, b: tf.Tensor): Record<string, tf.Tensor> =>
    r ? { x: t, residual: r, gamma: g, beta: b } : { x: t, gamma: g, beta: b };
  if (!recordingGradients()) {
    return run("BlasLayerNorm", inputs(x, residual, gamma, beta), { eps, stats: false })[0] as T;
  }
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args.pop() as tf.GradSaveFunc, tensors = args as tf.Tensor[];
    const [input, r, g, b] = residual ? tensors : [tensors[0], undefined, tensors[1], tensors[2]];
    const [y, xhat, rstd] = run("BlasLayerNorm", inputs(input, r, g, b), { eps, stats: true });
    save([xhat, rstd, g]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [dx, dgamma, dbeta] = run("BlasLayerNormGrad", { dy, xhat: saved[0], rstd: saved[1], gamma: saved[2] });
        // The sum's gradient reaches both of its terms (a clone: each gradient is its own tensor to dispose).
        return residual ? [dx, tf.clone(dx), dgamma, dbeta] : [dx, dgamma, dbeta];
      },
    };
  });
  return (residual ? op(x, residual, gamma, beta) : op(x, gamma, beta)) as T;
}

/** {@linkcode layerNorm} on any backend: a few tf ops with a hand-written gradient. */
function composedLayerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  const composed = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, g, b] = args as tf.Tensor[];
    const { mean, variance } = tf.moments(input, -1, true); // [..., 1]
    const rstd = tf.rsqrt(tf.add(variance, eps)); // [..., 1]
    const normalized = tf.mul(tf.sub(input, mean), rstd); // [..., width]
    (args[3] as tf.GradSaveFunc)([normalized, rstd, g]);
    return {
      value: tf.add(tf.mul(normalized, g), b),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xhat, r, gam] = saved;
        const width = xhat.shape[xhat.rank - 1];
        const dxhat = tf.mul(dy, gam); // [..., width]
        const meanD = tf.mean(dxhat, -1, true); // [..., 1]
        const meanDX = tf.mean(tf.mul(dxhat, xhat), -1, true); // [..., 1]
        const dx = tf.mul(tf.sub(tf.sub(dxhat, meanD), tf.mul(xhat, meanDX)), r);
        const dy2d = tf.reshape(dy, [-1, width]);
        return [dx, sumRows(tf.mul(dy2d, tf.reshape(xhat, [-1, width]))), sumRows(dy2d)];
      },
    };
  });
  return composed(x, gamma, beta);
}

/**
 * The `BlasLayerNorm` kernel: inputs `x`, optional `residual` (normalises `x + residual`), `gamma`, `beta`; attrs
 * `eps`, `stats`. Outputs `[y, xhat, rstd]` with `stats`, else `[y]`.
 */
function layerNormKernel(args: KernelArgs): TensorInfo[] {
  const { inputs, backend, attrs } = args;
  const xi = inputs.x!;
  const x = f32(backend, xi), g = f32(backend, inputs.gamma!), b = f32(backend, inputs.beta!);
  const residual = inputs.residual ? f32(backend, inputs.residual) : undefined;
  const eps = attrs!.eps as number, stats = attrs!.stats !== false;
  const w = xi.shape[xi.shape.length - 1];
  if (g.length !== w || b.length !== w) {
    throw new Error(`layerNorm: gamma/beta have ${g.length}/${b.length} values, expected the last dim ${w}`);
  }
  if (residual && residual.length !== x.length) {
    throw new Error(`layerNorm: the residual has ${residual.length} values, expected x's ${x.length}`);
  }
  const rows = w === 0 ? 0 : x.length / w;
  const y = allocF32(x.length, false), xhat = stats ? allocF32(x.length, false) : undefined;
  // Without statistics rstd is scratch that no tensor keeps: a pool array would leave the pool for good.
  const rstd = stats ? allocF32(rows, false) : new Float32Array(rows);
  const shape = xi.shape;
  const outputs = () =>
    stats
      ? [output(backend, shape, y), output(backend, shape, xhat!), output(backend, [...shape.slice(0, -1), 1], rstd)]
      : [output(backend, shape, y)];
  const simd = rows * w >= 64 ? simdMath() : undefined;
  if (simd?.layerNorm({ x, gamma: g, beta: b, eps, residual }, { y, xhat, rstd })) return outputs();
  const v0 = new Float32Array(w);
  for (let r = 0; r < rows; r++) {
    const o = r * w;
    for (let j = 0; j < w; j++) v0[j] = residual ? x[o + j] + residual[o + j] : x[o + j];
    let mean = 0;
    for (let j = 0; j < w; j++) mean += v0[j];
    mean /= w;
    let v = 0;
    for (let j = 0; j < w; j++) {
      const d = v0[j] - mean;
      v += d * d;
    }
    const rs = 1 / Math.sqrt(v / w + eps);
    rstd[r] = rs;
    for (let j = 0; j < w; j++) {
      const h = (v0[j] - mean) * rs;
      if (xhat) xhat[o + j] = h;
      y[o + j] = h * g[j] + b[j];
    }
  }
  return outputs();
}

function layerNormGradKernel(args: KernelArgs): TensorInfo[] {
  const { inputs, backend } = args;
  const dyi = inputs.dy!;
  const dy = f32(backend, dyi), xhat = f32(backend, inputs.xhat!), rstd = f32(backend, inputs.rstd!);
  const g = f32(backend, inputs.gamma!);
  const w = g.length;
  const rows = w === 0 ? 0 : dy.length / w;
  const dx = allocF32(dy.length, false);
  const simd = dy.length >= 64 ? simdMath() : undefined;
  const dgamma = new Float32Array(w), dbeta = new Float32Array(w);
  if (simd?.layerNormGrad({ dy, xhat, rstd, gamma: g }, { dx, dgamma, dbeta })) {
    return [output(backend, dyi.shape, dx), output(backend, [w], dgamma), output(backend, [w], dbeta)];
  }
  const dg = new Float64Array(w), db = new Float64Array(w);
  for (let r = 0; r < rows; r++) {
    const o = r * w;
    // dxhat = dy * gamma; dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) * rstd
    let s1 = 0, s2 = 0;
    for (let j = 0; j < w; j++) {
      const d = dy[o + j], h = xhat[o + j];
      const dh = d * g[j];
      s1 += dh;
      s2 += dh * h;
      dg[j] += d * h;
      db[j] += d;
    }
    s1 /= w;
    s2 /= w;
    const rs = rstd[r];
    for (let j = 0; j < w; j++) dx[o + j] = (dy[o + j] * g[j] - s1 - xhat[o + j] * s2) * rs;
  }
  return [
    output(backend, dyi.shape, dx),
    output(backend, [w], Float32Array.from(dg)),
    output(backend, [w], Float32Array.from(db)),
  ];
}

// ---- dropout -------------------------------------------------------------------------------------

/** The 32-bit generator seed of a dropout `seed` (FNV-1a of its string form; random when undefined). */
export function hashSeed(seed: number | string | undefined): number {
  if (seed === undefined) return (Math.random() * 2 ** 32) >>> 0;
  const s = String(seed);
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/**
 * Writes `out[i] = src[i] * m[i]` (or `m[i]` alone without `src`), where `m[i]` is 0 with probability `rate` and
 * `1 / (1 - rate)` otherwise, drawn from a mulberry32 stream seeded by `seed`: element `i` keeps when the `i`-th
 * 32-bit draw is `>= rate * 2^32`. Every backend's dropout mask comes from here, so masks (and training losses)
 * agree across backends for the same seed. With `offset`, `out[0]` takes draw number `offset` (a slice of the mask
 * of a bigger tensor).
 */
export function applyDropoutMask(
  out: Float32Array,
  src: Float32Array | undefined,
  rate: number,
  seed: number,
  offset = 0,
): void {
  // The float32 scale makes src[i] * m round exactly as a float32 multiply by a mask tensor does elsewhere.
  const scale = Math.fround(1 / (1 - rate));
  const threshold = Math.floor(rate * 4294967296);
  // mulberry32's state after `offset` draws is seed + offset * 0x6d2b79f5, so any slice of the stream can start here.
  let state = (seed + Math.imul(offset, 0x6d2b79f5)) | 0;
  const simd = out.length >= 64 ? simdMath() : undefined;
  if (simd) return simd.dropout(out, src, state, threshold, scale);
  const n = out.length;
  const x = src ?? out.fill(1);
  for (let i = 0; i < n; i++) {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = x[i] * (((t ^ (t >>> 14)) >>> 0) >= threshold ? scale : 0);
  }
}

/**
 * Inverted dropout: zeroes each element with probability `rate` and scales the rest by `1 / (1 - rate)`.
 * The same `seed` gives the same mask on every backend ({@linkcode applyDropoutMask}'s generator; a different one
 * from `tf.dropout`'s, so masks differ from it). Without a seed the mask is random. On `blas` no mask is kept for
 * the backward pass: the gradient regenerates it from the seed. With `every` > 1, `x` holds every `every`-th row of a
 * bigger tensor (the `[CLS]` rows of `[B*F, D]`: `every` = F), and each row gets the mask that row has there; with
 * an array, row `r` of `x` is row `every[r]` of the bigger tensor (the kept rows of lib/model/packing.ts).
 */
export function dropout<T extends tf.Tensor>(
  x: T,
  rate: number,
  seed?: number | string,
  every: number | number[] = 1,
): T {
  if (!(rate >= 0 && rate < 1)) throw new Error(`dropout: rate must be in [0, 1), got ${rate}`);
  if (rate === 0) return x;
  const s = hashSeed(seed);
  const cols = x.shape[x.rank - 1] ?? 1;
  if (!onBlasF32(x)) {
    return tf.tidy(() => {
      const mask = new Float32Array(x.size);
      applyRowMasks(mask, undefined, rate, s, cols, every);
      return tf.mul(x, tf.tensor(mask, x.shape, "float32")) as T;
    });
  }
  const attrs = { rate, seed: s, cols, every };
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    return {
      value: run("BlasDropout", { x: input }, attrs)[0],
      gradFunc: (dy: tf.Tensor) => run("BlasDropout", { x: dy }, attrs)[0],
    };
  });
  return op(x) as T;
}

/**
 * {@linkcode applyDropoutMask} with rows of `cols` taken `every` rows apart from a bigger tensor's mask: row `r` gets
 * the mask of row `r * every` (`every` 1: the whole mask, in one call), or of row `every[r]` for an array.
 * `dropout(x, rate, seed, F)` on the `[B, D]` first-token rows of a `[B*F, D]` tensor therefore drops exactly what
 * `dropout` on the whole tensor drops there.
 */
function applyRowMasks(
  out: Float32Array,
  src: Float32Array | undefined,
  rate: number,
  seed: number,
  cols: number,
  every: number | number[],
): void {
  if (every === 1) return applyDropoutMask(out, src, rate, seed);
  if (typeof every !== "number" && every.length * cols !== out.length) {
    throw new Error(`dropout: a row map of ${every.length} rows for ${out.length / cols} rows of ${cols}`);
  }
  const rows = out.length / cols;
  for (let r = 0, end = 1; r < rows; r = end, end = r + 1) {
    const from = typeof every === "number" ? r * every : every[r];
    // A run of rows that lie one after another in the bigger tensor too (an example's kept rows): one call.
    if (typeof every !== "number") { while (end < rows && every[end] === from + end - r) end++; }
    const part = out.subarray(r * cols, end * cols);
    applyDropoutMask(part, src?.subarray(r * cols, end * cols), rate, seed, from * cols);
  }
}

function dropoutKernel(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const x = f32(backend, inputs.x!);
  const y = allocF32(x.length, false);
  const { rate, seed, cols, every } = attrs as { rate: number; seed: number; cols: number; every: number | number[] };
  applyRowMasks(y, x, rate, seed, cols, every);
  return output(backend, inputs.x!.shape, y);
}

// ---- AdamW ---------------------------------------------------------------------------------------

/** Inputs of {@linkcode adamwUpdate}. */
export interface AdamWUpdate {
  /** The parameter. */
  param: tf.Tensor;
  /** Its gradient. */
  grad: tf.Tensor;
  /** First moment. */
  m: tf.Tensor;
  /** Second moment. */
  v: tf.Tensor;
  /** Learning rate of this step. */
  lr: number;
  /** Default 0.9. */
  beta1: number;
  /** Default 0.999. */
  beta2: number;
  /** Added to the denominator. */
  eps: number;
  /** Decoupled weight decay applied to this parameter (0 for none). */
  weightDecay: number;
  /** The step number `t` (1 for the first update), for bias correction. */
  step: number;
}

/**
 * One AdamW update (PyTorch's arithmetic): `m' = b1 m + (1-b1) g`, `v' = b2 v + (1-b2) g^2`,
 * `p' = p (1 - lr wd) - lr / (1 - b1^t) * m' / (sqrt(v') / sqrt(1 - b2^t) + eps)`.
 * Returns new tensors `[p', m', v']` (the caller assigns them and disposes the old ones); one pass on `blas`.
 */
export function adamwUpdate(u: AdamWUpdate): [tf.Tensor, tf.Tensor, tf.Tensor] {
  const c = adamwConstants(u), { decay, stepSize, bc2Sqrt } = c;
  if (onBlasF32(u.param, u.grad, u.m, u.v)) {
    const [p, m, v] = run("BlasAdamW", { param: u.param, grad: u.grad, m: u.m, v: u.v }, { ...c });
    return [p, m, v];
  }
  return tf.tidy(() => {
    const m = tf.add(tf.mul(u.m, u.beta1), tf.mul(u.grad, 1 - u.beta1));
    const v = tf.add(tf.mul(u.v, u.beta2), tf.mul(tf.square(u.grad), 1 - u.beta2));
    const denom = tf.add(tf.div(tf.sqrt(v), bc2Sqrt), u.eps);
    const decayed = decay !== 1 ? tf.mul(u.param, decay) : u.param;
    const p = tf.sub(decayed, tf.mul(tf.div(m, denom), stepSize));
    return [p, m, v] as [tf.Tensor, tf.Tensor, tf.Tensor];
  });
}

/**
 * {@linkcode adamwUpdate} written into the parameter's and moments' own storage, when that is safe: on `blas`, and
 * when each of the three arrays belongs to that one tensor alone (a pool array, not shared, never read out by
 * `dataSync()`/`data()`). Returns false, changing nothing, otherwise; the caller then uses `adamwUpdate`. For
 * BERT-Base this avoids 1.3 GB of new arrays per step (parameters and both moments).
 */
export function adamwUpdateInPlace(u: AdamWUpdate): boolean {
  if (!onBlasF32(u.param, u.grad, u.m, u.v)) return false;
  const backend = tf.backend() as unknown as {
    data: { get(id: object): { values: unknown; refCount: number } | undefined };
  };
  const own = (t: tf.Tensor): Float32Array | undefined => {
    const d = backend.data.get(t.dataId);
    return d && d.refCount === 1 && isPrivateArray(d.values) ? d.values : undefined;
  };
  const p = own(u.param), m = own(u.m), v = own(u.v);
  if (!p || !m || !v || p === m || m === v || p === v) return false;
  const g = f32(tf.backend() as never, u.grad as never);
  if (g.length !== p.length || m.length !== p.length || v.length !== p.length) return false;
  adamwArrays({ p, g, m, v }, [p, m, v], adamwConstants(u));
  return true;
}

/** The constants of one AdamW step. */
interface AdamWConstants {
  beta1: number;
  beta2: number;
  eps: number;
  /** `1 - lr wd`. */
  decay: number;
  /** `lr / (1 - beta1^t)`. */
  stepSize: number;
  /** `sqrt(1 - beta2^t)`, and its reciprocal. */
  bc2Sqrt: number;
  invBc2: number;
}

function adamwConstants(u: AdamWUpdate): AdamWConstants {
  const bc2Sqrt = Math.sqrt(1 - u.beta2 ** u.step);
  return {
    beta1: u.beta1,
    beta2: u.beta2,
    eps: u.eps,
    decay: 1 - u.lr * u.weightDecay,
    stepSize: u.lr / (1 - u.beta1 ** u.step),
    bc2Sqrt,
    invBc2: 1 / bc2Sqrt,
  };
}

/**
 * One AdamW step from `p, g, m, v` into `out` (`[p', m', v']`; `out` may be the inputs themselves: each element is
 * read before it is written). WebAssembly SIMD when available, else a JavaScript loop.
 */
function adamwArrays(
  inp: { p: Float32Array; g: Float32Array; m: Float32Array; v: Float32Array },
  out: [Float32Array, Float32Array, Float32Array],
  c: AdamWConstants,
): void {
  const { p, g, m, v } = inp, [pn, mn, vn] = out;
  const simd = p.length >= 64 ? simdMath() : undefined;
  if (simd) return simd.adamw(inp, out, c);
  const { beta1, beta2, eps, decay, stepSize, invBc2 } = c, c1 = 1 - beta1, c2 = 1 - beta2;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i];
    const mi = m[i] * beta1 + gi * c1;
    const vi = v[i] * beta2 + gi * gi * c2;
    const pi = p[i] * decay - (mi / (Math.sqrt(vi) * invBc2 + eps)) * stepSize;
    mn[i] = mi;
    vn[i] = vi;
    pn[i] = pi;
  }
}

function adamwKernel(args: KernelArgs): TensorInfo[] {
  const { inputs, backend, attrs } = args;
  const p = f32(backend, inputs.param!), g = f32(backend, inputs.grad!);
  const m = f32(backend, inputs.m!), v = f32(backend, inputs.v!);
  const n = p.length;
  if (g.length !== n || m.length !== n || v.length !== n) {
    throw new Error(`adamwUpdate: param, grad, m, v sizes differ (${n}, ${g.length}, ${m.length}, ${v.length})`);
  }
  const pn = allocF32(n, false), mn = allocF32(n, false), vn = allocF32(n, false);
  adamwArrays({ p, g, m, v }, [pn, mn, vn], attrs as unknown as AdamWConstants);
  const shape = inputs.param!.shape;
  return [output(backend, shape, pn), output(backend, shape, mn), output(backend, shape, vn)];
}

// ---- sparse softmax cross-entropy ----------------------------------------------------------------

/**
 * Mean softmax cross-entropy of `logits` `[n, classes]` against integer `labels` `[n]`; rows whose label is
 * negative are ignored (they neither count in the mean nor get a gradient), as in Google's masked-LM loss
 * `sum(weights * ce) / sum(weights)`. Gradient: `(softmax(logits) - onehot(label)) / valid`. On `blas` the forward
 * kernel computes the loss and that gradient in one pass over the logits; elsewhere it is the same maths in tf ops.
 * @param logits `[n, classes]` float32
 * @param labels `[n]` int32
 * @returns a scalar (0 when no row is valid)
 */
export function sparseSoftmaxCrossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  const [n, classes] = logits.shape;
  if (labels.rank !== 1 || labels.shape[0] !== n) {
    throw new Error(
      `sparseSoftmaxCrossEntropy: labels of shape [${labels.shape}], expected [${n}] for logits [${n}, ${classes}]`,
    );
  }
  if (!onBlasF32(logits)) {
    return tf.tidy(() => {
      const flat = tf.cast(labels, "int32"); // [n]
      const picked = tf.sum(tf.mul(tf.oneHot(flat, classes), tf.logSoftmax(logits)), -1); // [n]; 0 where label < 0
      const valid = tf.sum(tf.cast(tf.greaterEqual(flat, 0), "float32"));
      return tf.div(tf.sub(0, tf.sum(picked)), tf.maximum(valid, 1)) as tf.Scalar;
    });
  }
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, y] = args as tf.Tensor[], save = args[2] as tf.GradSaveFunc;
    const [loss, grad] = run("BlasSparseXent", { logits: x, labels: tf.cast(y, "int32") });
    save([grad]);
    return {
      value: loss,
      // The upstream gradient of a loss is usually exactly 1 (the loss itself, or a sum of losses): then the saved
      // gradient is the answer as it is (x * 1 = x in every bit), without another pass over [n, classes].
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [
        dy.size === 1 && dy.dataSync()[0] === 1 ? saved[0].clone() : tf.mul(saved[0], dy),
        tf.zerosLike(y),
      ],
    };
  });
  return op(logits, labels) as tf.Scalar;
}

function sparseXentKernel(args: KernelArgs): TensorInfo[] {
  const { inputs, backend } = args;
  const li = inputs.logits!;
  const [n, classes] = li.shape;
  const grad = allocF32(n * classes, false);
  const labels = backend.data.get(inputs.labels!.dataId).values as Int32Array;
  const loss = sparseXentArrays(f32(backend, li), labels, classes, grad, dnnlFor(grad.length));
  return [output(backend, [], Float32Array.of(loss)), output(backend, li.shape, grad)];
}

/**
 * The sparse cross-entropy kernel on arrays: returns the mean loss over the rows whose label is >= 0 and writes its
 * gradient `(softmax(x) - onehot(label)) / valid` into `grad` (zero rows where the label is negative). With `dnnl`,
 * the softmax and the scaling are oneDNN's JIT kernels (a pre-training step's `[640, 8000]` logits: ~28 ms in
 * JavaScript passes, BENCHMARKS.md); else JavaScript with the WebAssembly SIMD `exp`. Exported for the test that
 * holds the two paths to each other.
 */
export function sparseXentArrays(
  x: Float32Array,
  labels: Int32Array,
  classes: number,
  grad: Float32Array,
  dnnl?: Dnnl,
): number {
  const n = labels.length;
  if (dnnl) dnnl.softmax(x, grad, classes); // grad = softmax(x), row by row
  else softmaxRowsInto(x, grad, classes);
  let valid = 0;
  for (let r = 0; r < n; r++) if (labels[r] >= 0) valid++;
  const scale = 1 / Math.max(valid, 1);
  let total = 0;
  for (let r = 0; r < n; r++) {
    const o = r * classes, label = labels[r];
    if (label < 0) {
      grad.fill(0, o, o + classes);
      continue;
    }
    if (label >= classes) {
      throw new Error(`sparseSoftmaxCrossEntropy: label ${label} of row ${r} is not in [0, ${classes})`);
    }
    const p = grad[o + label];
    if (p > 1e-30) total -= Math.log(p);
    else {
      // The probability underflowed: -log softmax(x)[label] = logsumexp(x) - x[label] from the logits.
      let m = -Infinity;
      for (let j = 0; j < classes; j++) if (x[o + j] > m) m = x[o + j];
      let s = 0;
      for (let j = 0; j < classes; j++) s += Math.exp(x[o + j] - m);
      total += m + Math.log(s) - x[o + label];
    }
    if (!dnnl) { for (let j = 0; j < classes; j++) grad[o + j] *= scale; }
  }
  if (dnnl) dnnl.scale(grad, scale);
  for (let r = 0; r < n; r++) if (labels[r] >= 0) grad[r * classes + labels[r]] -= scale;
  return total * scale;
}

/**
 * Kernel configs of the fused ops for `backendName`. With `blas`, GELU and its gradient use oneDNN where it is
 * installed, on `blas`'s thread count (lib/backends/blas/dnnl.ts).
 */
export function fusedKernels(backendName: string, blas?: Blas): KernelConfig[] {
  blasForDnnl = blas;
  const k = (kernelName: string, fn: (a: KernelArgs) => TensorInfo | TensorInfo[]): KernelConfig => ({
    kernelName,
    backendName,
    kernelFunc: fn as unknown as KernelFunc,
  });
  return [
    k("BlasGelu", geluKernel),
    k("BlasDenseGelu", denseGeluKernel),
    k("BlasGeluGrad", geluGradKernel),
    k("BlasLayerNorm", layerNormKernel),
    k("BlasLayerNormGrad", layerNormGradKernel),
    k("BlasDropout", dropoutKernel),
    k("BlasAdamW", adamwKernel),
    k("BlasSparseXent", sparseXentKernel),
  ];
}
