/**
 * Fused multi-head self-attention for the `blas` backend: `softmax(scale * Q K^T + mask)`, dropout on the
 * probabilities and `P V`, forward and backward, straight from the `[batch * seq, hidden]` outputs of the query,
 * key and value layers. Each head's block is addressed in place with BLAS leading dimensions (`lda = hidden`), so
 * the head split and merge transposes disappear, the `1 / sqrt(headSize)` scale rides on `sgemm`'s alpha, and the
 * mask add, softmax and its gradient are one pass each.
 *
 * The dropout mask is {@linkcode applyDropoutMask}'s over the whole `[batch, heads, seq, seq]` probability tensor,
 * the same mask `dropout(probs, rate, seed)` draws on any backend; the backward pass regenerates it block by block.
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import type { Blas } from "../blas.ts";
import { f32, type KernelArgs, output } from "./common.ts";
import { applyDropoutMask, hashSeed } from "./fused.ts";
import { allocF32 } from "./pool.ts";
import { type SimdMath, simdMath } from "./simd.ts";

/** Inputs of {@linkcode selfAttention}. */
export interface SelfAttentionInputs {
  /** Query layer output `[batch * seq, hidden]`. */
  q: tf.Tensor;
  /** Key layer output `[batch * seq, hidden]`. */
  k: tf.Tensor;
  /** Value layer output `[batch * seq, hidden]`. */
  v: tf.Tensor;
  /** Added to every score row of example `b`: 0 for attended tokens, a large negative value for padding `[batch, seq]`. */
  maskBias: tf.Tensor;
  /** Examples. */
  batch: number;
  /** Tokens per example. */
  seq: number;
  /** Attention heads (`hidden / heads` per head). */
  heads: number;
  /** Dropout on the probabilities (0: none). */
  dropoutRate: number;
  /** Dropout seed (as for {@linkcode dropout} in fused.ts). */
  seed?: number | string;
}

/** Whether {@linkcode selfAttention} can run: the `blas` backend with float32 inputs. */
export function canFuseAttention(...ts: tf.Tensor[]): boolean {
  return tf.getBackend() === "blas" && ts.every((t) => t.dtype === "float32");
}

/**
 * The attention context `[batch * seq, hidden]` (heads merged) with its gradient for q, k and v. `blas` only
 * (see {@linkcode canFuseAttention}); lib/model.ts composes the same maths from tf ops elsewhere.
 */
export function selfAttention(o: SelfAttentionInputs): tf.Tensor2D {
  const { batch, seq, heads } = o;
  const hidden = o.q.shape[o.q.rank - 1];
  if (hidden % heads !== 0) throw new Error(`selfAttention: hidden ${hidden} is not a multiple of heads ${heads}`);
  for (const [name, t] of [["q", o.q], ["k", o.k], ["v", o.v]] as const) {
    if (t.size !== batch * seq * hidden) {
      throw new Error(`selfAttention: ${name} has shape [${t.shape}], expected [${batch * seq}, ${hidden}]`);
    }
  }
  if (o.maskBias.size !== batch * seq) {
    throw new Error(`selfAttention: maskBias has shape [${o.maskBias.shape}], expected [${batch}, ${seq}]`);
  }
  const attrs = {
    batch,
    seq,
    heads,
    scale: 1 / Math.sqrt(hidden / heads),
    rate: o.dropoutRate,
    seed: o.dropoutRate > 0 ? hashSeed(o.seed) : 0,
  };
  const mask = o.maskBias;
  if (!recordingGradients()) {
    // No gradient will be asked for: skip copying out the probabilities (one [batch, heads, seq, seq] tensor).
    const [context] = tf.engine().runKernel("BlasAttention", { q: o.q, k: o.k, v: o.v, mask }, {
      ...attrs,
      keepProbs: false,
    } as never) as tf.Tensor[];
    return context as tf.Tensor2D;
  }
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [q, k, v] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const [context, probs] = tf.engine().runKernel("BlasAttention", { q, k, v, mask }, attrs as never) as tf.Tensor[];
    save([q, k, v, probs]);
    return {
      value: context,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.engine().runKernel("BlasAttentionGrad", {
          dy,
          q: saved[0],
          k: saved[1],
          v: saved[2],
          probs: saved[3],
        }, attrs as never) as tf.Tensor[],
    };
  });
  return op(o.q, o.k, o.v) as tf.Tensor2D;
}

/** Whether tfjs is recording operations for a gradient (inside `tf.grad`, `variableGrads`, ...). */
function recordingGradients(): boolean {
  return (tf.engine() as unknown as { state: { gradientDepth: number } }).state.gradientDepth > 0;
}

interface Attrs {
  /** Return the probabilities as a second output (for the backward pass; default true). */
  keepProbs?: boolean;
  batch: number;
  seq: number;
  heads: number;
  scale: number;
  rate: number;
  seed: number;
}

let scratch = new Float32Array(0);

/** A reusable work array of at least `n` floats (kernels run one at a time). */
function work(n: number): Float32Array {
  if (scratch.length < n) scratch = new Float32Array(n);
  return scratch;
}

/** `p[r, :] = softmax(p[r, :] + mask[row r's example, :])` in place, rows of `seq`; `rowsPerExample` rows share a mask row. */
function maskedSoftmaxInPlace(p: Float32Array, mask: Float32Array, seq: number, rowsPerExample: number): void {
  const simd = simdMath();
  const rowsPerChunk = Math.max(1, Math.floor(16384 / seq));
  if (simd && rowsPerChunk * seq <= 16384) {
    simd.map("exp", p.length, (b, s, n) => {
      for (let r = 0; r < n; r += seq) {
        const row = s + r, mo = Math.floor(row / seq / rowsPerExample) * seq;
        let m = -Infinity;
        for (let j = 0; j < seq; j++) {
          const z = p[row + j] + mask[mo + j];
          b[r + j] = z;
          if (z > m) m = z;
        }
        for (let j = 0; j < seq; j++) b[r + j] -= m;
      }
    }, (b, s, n) => {
      for (let r = 0; r < n; r += seq) {
        let sum = 0;
        for (let j = 0; j < seq; j++) sum += b[r + j];
        const inv = 1 / sum;
        for (let j = 0; j < seq; j++) p[s + r + j] = b[r + j] * inv;
      }
    }, rowsPerChunk * seq);
    return;
  }
  for (let row = 0; row < p.length; row += seq) {
    const mo = Math.floor(row / seq / rowsPerExample) * seq;
    let m = -Infinity;
    for (let j = 0; j < seq; j++) {
      const z = Math.fround(p[row + j] + mask[mo + j]);
      p[row + j] = z;
      if (z > m) m = z;
    }
    let sum = 0;
    for (let j = 0; j < seq; j++) sum += p[row + j] = Math.exp(p[row + j] - m);
    const inv = 1 / sum;
    for (let j = 0; j < seq; j++) p[row + j] *= inv;
  }
}

/** Arrays and sizes of one attention kernel call. */
interface Job extends Attrs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

/** The mulberry32 state before draw `offset` of the stream seeded `seed` (as in fused.ts's applyDropoutMask). */
function stateAt(seed: number, offset: number): number {
  return (seed + Math.imul(offset, 0x6d2b79f5)) | 0;
}

/**
 * The forward pass with each `[seq, seq]` score block kept in the SIMD module's memory: `sgemm` writes the scores
 * there, the mask + softmax and the dropout run in place on them (WebAssembly SIMD), and `sgemm` reads them back
 * for `P V`. Only the undropped probabilities are copied out (saved for the backward pass).
 */
function forwardSimd(
  simd: SimdMath,
  o: Job & { mask: Float32Array; probs?: Float32Array; context: Float32Array; blas: Blas },
): void {
  const { q, k, v, mask, probs, context, batch, seq, heads, scale, rate, seed, blas } = o;
  const hidden = q.length / (batch * seq), dh = hidden / heads, block = seq * seq;
  const ws = simd.workspace(block + seq);
  const s = ws.subarray(0, block), maskRow = ws.subarray(block, block + seq);
  const sPtr = s.byteOffset, maskPtr = maskRow.byteOffset;
  const threshold = Math.floor(rate * 4294967296), dropScale = Math.fround(1 / (1 - rate));
  for (let b = 0; b < batch; b++) {
    maskRow.set(mask.subarray(b * seq, (b + 1) * seq));
    for (let h = 0; h < heads; h++) {
      const off = b * seq * hidden + h * dh, po = (b * heads + h) * block;
      blas.sgemm({
        m: seq,
        n: seq,
        k: dh,
        a: q.subarray(off),
        lda: hidden,
        b: k.subarray(off),
        ldb: hidden,
        transB: true,
        c: s,
        alpha: scale,
      });
      simd.softmaxRowsAt(sPtr, seq, seq, maskPtr);
      probs?.set(s, po);
      if (rate > 0) simd.dropoutAt(sPtr, block, stateAt(seed, po), threshold, dropScale);
      blas.sgemm({
        m: seq,
        n: dh,
        k: seq,
        a: s,
        b: v.subarray(off),
        ldb: hidden,
        c: context.subarray(off),
        ldc: hidden,
      });
    }
  }
}

/**
 * The backward pass, block by block in the SIMD module's memory: the dropped probabilities are regenerated from
 * the saved ones, and the dropout mask and softmax gradient are applied in place to `dC V^T`.
 */
function backwardSimd(
  simd: SimdMath,
  o: Job & { dy: Float32Array; probs: Float32Array; dq: Float32Array; dk: Float32Array; dv: Float32Array; blas: Blas },
): void {
  const { dy, q, k, v, probs, dq, dk, dv, batch, seq, heads, scale, rate, seed, blas } = o;
  const hidden = q.length / (batch * seq), dh = hidden / heads, block = seq * seq;
  const ws = simd.workspace(3 * block);
  const p = ws.subarray(0, block), pd = ws.subarray(block, 2 * block), ds = ws.subarray(2 * block, 3 * block);
  const threshold = Math.floor(rate * 4294967296), dropScale = Math.fround(1 / (1 - rate));
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const off = b * seq * hidden + h * dh, po = (b * heads + h) * block, state = stateAt(seed, po);
      p.set(probs.subarray(po, po + block));
      let dropped = p;
      if (rate > 0) {
        pd.set(p);
        simd.dropoutAt(pd.byteOffset, block, state, threshold, dropScale);
        dropped = pd;
      }
      // dV = dropped^T @ dC; dP = dC @ V^T (times the dropout mask)
      blas.sgemm({
        m: seq,
        n: dh,
        k: seq,
        transA: true,
        a: dropped,
        b: dy.subarray(off),
        ldb: hidden,
        c: dv.subarray(off),
        ldc: hidden,
      });
      blas.sgemm({
        m: seq,
        n: seq,
        k: dh,
        a: dy.subarray(off),
        lda: hidden,
        b: v.subarray(off),
        ldb: hidden,
        transB: true,
        c: ds,
      });
      if (rate > 0) simd.dropoutAt(ds.byteOffset, block, state, threshold, dropScale);
      // dS = P * (dP - rowsum(dP * P)); dQ = scale * dS @ K, dK = scale * dS^T @ Q
      simd.softmaxGradRowsAt(ds.byteOffset, p.byteOffset, seq, seq);
      blas.sgemm({
        m: seq,
        n: dh,
        k: seq,
        a: ds,
        b: k.subarray(off),
        ldb: hidden,
        c: dq.subarray(off),
        ldc: hidden,
        alpha: scale,
      });
      blas.sgemm({
        m: seq,
        n: dh,
        k: seq,
        transA: true,
        a: ds,
        b: q.subarray(off),
        ldb: hidden,
        c: dk.subarray(off),
        ldc: hidden,
        alpha: scale,
      });
    }
  }
}

/** Creates the BlasAttention / BlasAttentionGrad kernel configs for `backendName`, calling `blas`. */
export function attentionKernels(blas: Blas, backendName: string): KernelConfig[] {
  const forward = (args: KernelArgs): TensorInfo[] => {
    const { inputs, backend } = args;
    const { batch, seq, heads, scale, rate, seed } = args.attrs as unknown as Attrs;
    const q = f32(backend, inputs.q!), k = f32(backend, inputs.k!), v = f32(backend, inputs.v!);
    const mask = f32(backend, inputs.mask!);
    const hidden = q.length / (batch * seq), dh = hidden / heads, block = seq * seq;
    const keepProbs = (args.attrs as unknown as Attrs).keepProbs !== false;
    const simd = seq % 4 === 0 ? simdMath() : undefined;
    if (simd) {
      const context = allocF32(q.length, false);
      const probs = keepProbs ? allocF32(batch * heads * block, false) : undefined; // [batch, heads, seq, seq]
      forwardSimd(simd, { q, k, v, mask, probs, context, batch, seq, heads, scale, rate, seed, blas });
      const out = output(backend, inputs.q!.shape, context);
      return probs ? [out, output(backend, [batch, heads, seq, seq], probs)] : [out];
    }
    const probs = allocF32(batch * heads * block, false); // [batch, heads, seq, seq]
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        const off = b * seq * hidden + h * dh;
        blas.sgemm({
          m: seq,
          n: seq,
          k: dh,
          a: q.subarray(off),
          lda: hidden,
          b: k.subarray(off),
          ldb: hidden,
          transB: true,
          c: probs.subarray((b * heads + h) * block, (b * heads + h + 1) * block),
          alpha: scale,
        });
      }
    }
    maskedSoftmaxInPlace(probs, mask, seq, heads * seq);
    let dropped = probs;
    if (rate > 0) {
      dropped = work(probs.length);
      applyDropoutMask(dropped.subarray(0, probs.length), probs, rate, seed);
    }
    const context = allocF32(q.length, false); // [batch * seq, hidden], heads merged
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        const off = b * seq * hidden + h * dh, po = (b * heads + h) * block;
        blas.sgemm({
          m: seq,
          n: dh,
          k: seq,
          a: dropped.subarray(po, po + block),
          b: v.subarray(off),
          ldb: hidden,
          c: context.subarray(off),
          ldc: hidden,
        });
      }
    }
    const out = output(backend, inputs.q!.shape, context);
    return keepProbs ? [out, output(backend, [batch, heads, seq, seq], probs)] : [out];
  };

  const backward = (args: KernelArgs): TensorInfo[] => {
    const { inputs, backend } = args;
    const { batch, seq, heads, scale, rate, seed } = args.attrs as unknown as Attrs;
    const dy = f32(backend, inputs.dy!), q = f32(backend, inputs.q!), k = f32(backend, inputs.k!);
    const v = f32(backend, inputs.v!), probs = f32(backend, inputs.probs!);
    const hidden = q.length / (batch * seq), dh = hidden / heads, block = seq * seq;
    const dq = allocF32(q.length, false), dk = allocF32(q.length, false), dv = allocF32(q.length, false);
    const shape = inputs.q!.shape;
    const simd = seq % 4 === 0 ? simdMath() : undefined;
    if (simd) {
      backwardSimd(simd, { dy, q, k, v, probs, dq, dk, dv, batch, seq, heads, scale, rate, seed, blas });
      return [output(backend, shape, dq), output(backend, shape, dk), output(backend, shape, dv)];
    }
    const w = work(3 * block);
    const keep = w.subarray(0, block), pd = w.subarray(block, 2 * block), ds = w.subarray(2 * block, 3 * block);
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        const off = b * seq * hidden + h * dh, po = (b * heads + h) * block;
        const p = probs.subarray(po, po + block);
        // The dropped probabilities of this block (the forward pass's mask, regenerated).
        let dropped = p;
        if (rate > 0) {
          applyDropoutMask(keep, undefined, rate, seed, po);
          for (let i = 0; i < block; i++) pd[i] = p[i] * keep[i];
          dropped = pd;
        }
        // dV = dropped^T @ dC
        blas.sgemm({
          m: seq,
          n: dh,
          k: seq,
          transA: true,
          a: dropped,
          b: dy.subarray(off),
          ldb: hidden,
          c: dv.subarray(off),
          ldc: hidden,
        });
        // dP = (dC @ V^T) * mask
        blas.sgemm({
          m: seq,
          n: seq,
          k: dh,
          a: dy.subarray(off),
          lda: hidden,
          b: v.subarray(off),
          ldb: hidden,
          transB: true,
          c: ds,
        });
        if (rate > 0) { for (let i = 0; i < block; i++) ds[i] *= keep[i]; }
        // dS = P * (dP - rowsum(dP * P))
        for (let r = 0; r < block; r += seq) {
          let dot = 0;
          for (let j = 0; j < seq; j++) dot += ds[r + j] * p[r + j];
          for (let j = 0; j < seq; j++) ds[r + j] = p[r + j] * (ds[r + j] - dot);
        }
        // dQ = scale * dS @ K, dK = scale * dS^T @ Q
        blas.sgemm({
          m: seq,
          n: dh,
          k: seq,
          a: ds,
          b: k.subarray(off),
          ldb: hidden,
          c: dq.subarray(off),
          ldc: hidden,
          alpha: scale,
        });
        blas.sgemm({
          m: seq,
          n: dh,
          k: seq,
          transA: true,
          a: ds,
          b: q.subarray(off),
          ldb: hidden,
          c: dk.subarray(off),
          ldc: hidden,
          alpha: scale,
        });
      }
    }
    return [output(backend, shape, dq), output(backend, shape, dk), output(backend, shape, dv)];
  };

  return [
    {
      kernelName: "BlasAttention",
      backendName,
      kernelFunc: forward as unknown as KernelFunc,
    },
    {
      kernelName: "BlasAttentionGrad",
      backendName,
      kernelFunc: backward as unknown as KernelFunc,
    },
  ];
}
