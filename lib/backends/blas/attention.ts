/**
 * Fused multi-head self-attention for the `blas` backend: `softmax(scale * Q K^T + mask)`, dropout on the
 * probabilities and `P V`, forward and backward, straight from the `[batch * seq, hidden]` outputs of the query,
 * key and value layers. Each head's block is addressed in place with BLAS leading dimensions (`lda = hidden`, or
 * `3 * hidden` where the three layers ran as one product: {@linkcode packedSelfAttention}), so the head split and
 * merge transposes disappear, the `1 / sqrt(headSize)` scale rides on `sgemm`'s alpha, and the mask add, softmax and
 * its gradient are one pass each.
 *
 * The dropout mask is {@linkcode applyDropoutMask}'s over the whole `[batch, heads, seq, seq]` probability tensor,
 * the same mask `dropout(probs, rate, seed)` draws on any backend; the backward pass regenerates it block by block.
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import type { Blas } from "./blas.ts";
import { f32, type KernelArgs, output, recordingGradients } from "./common.ts";
import { applyDropoutMask, hashSeed } from "./fused.ts";
import { allocF32 } from "./pool.ts";
import { setSimdThreads, type SimdMath, simdMath } from "../simd/simd.ts";
import { blockMask, blockStride, JOB } from "../simd/jobs.ts";
import { softmaxRowsInto } from "./reduce.ts";

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

/**
 * The attention context `[batch * seq, hidden]` (heads merged) with its gradient for q, k and v. `blas` with float32
 * inputs only (`onBlasF32` in common.ts); lib/model/model.ts composes the same maths from tf ops elsewhere.
 */
export function selfAttention(o: SelfAttentionInputs): tf.Tensor2D {
  const { batch, seq, heads } = o;
  const hidden = checkAttentionInputs("selfAttention", o, batch * seq);
  const attrs = {
    batch,
    seq,
    heads,
    scale: 1 / Math.sqrt(hidden / heads),
    rate: o.dropoutRate,
    seed: o.dropoutRate > 0 ? hashSeed(o.seed) : 0,
  };
  return attentionWithGrad(o.q, o.k, o.v, o.maskBias, attrs);
}

/**
 * The BlasAttention kernel on `q`, `k`, `v` (and `mask`) with `attrs`, and outside gradient recording without copying
 * out the probabilities; inside it, with BlasAttentionGrad as the gradient of q, k and v.
 */
function attentionWithGrad(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, mask: tf.Tensor, attrs: Attrs): tf.Tensor2D {
  if (!recordingGradients()) {
    // No gradient will be asked for: skip copying out the probabilities (one [batch, heads, seq, seq] tensor).
    const [context] = tf.engine().runKernel("BlasAttention", { q, k, v, mask }, {
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
  return op(q, k, v) as tf.Tensor2D;
}

/** Inputs of {@linkcode packedSelfAttention}: those of {@linkcode SelfAttentionInputs} without dropout or q, k, v. */
export type PackedSelfAttentionInputs = Omit<SelfAttentionInputs, "q" | "k" | "v" | "dropoutRate" | "seed"> & {
  /**
   * The query, key and value layers' outputs side by side, `[batch * seq, 3 * hidden]`: the output of one dense layer
   * whose weight is the three weights concatenated along their columns.
   */
  qkv: tf.Tensor;
};

/**
 * {@linkcode selfAttention} for inference (no dropout, no gradient) on the query, key and value outputs packed in one
 * array, so that the three dense layers can run as one product (`[M, H] x [H, 3H]`): the blocks read each head's
 * columns in place, rows `3 * hidden` apart. Same arithmetic as on three arrays, so the same bits.
 */
export function packedSelfAttention(o: PackedSelfAttentionInputs): tf.Tensor2D {
  const { batch, seq, heads, qkv } = o;
  if (recordingGradients()) throw new Error("packedSelfAttention: inference only (it has no gradient)");
  const width = qkv.shape[qkv.rank - 1];
  if (width % 3 !== 0 || qkv.size !== batch * seq * width) {
    throw new Error(`packedSelfAttention: qkv has shape [${qkv.shape}], expected [${batch * seq}, 3 * hidden]`);
  }
  const hidden = width / 3;
  if (hidden % heads !== 0) {
    throw new Error(`packedSelfAttention: hidden ${hidden} is not a multiple of heads ${heads}`);
  }
  if (o.maskBias.size !== batch * seq) {
    throw new Error(`packedSelfAttention: maskBias has shape [${o.maskBias.shape}], expected [${batch}, ${seq}]`);
  }
  const attrs = { batch, seq, heads, scale: 1 / Math.sqrt(hidden / heads), rate: 0, seed: 0, keepProbs: false };
  const [context] = tf.engine().runKernel("BlasAttention", { q: qkv, mask: o.maskBias }, {
    ...attrs,
    packed: true,
  } as never) as tf.Tensor[];
  return context as tf.Tensor2D;
}

/** One group of examples of the same length, for {@linkcode groupedSelfAttention}: `batch` examples of `seq` rows. */
export interface AttentionGroup {
  batch: number;
  seq: number;
}

/** Inputs of {@linkcode groupedSelfAttention}. */
export interface GroupedAttentionInputs {
  /**
   * The query layer's output `[R, hidden]` (R: the groups' rows, group after group); or, without `k` and `v`, the
   * query, key and value outputs side by side `[R, 3 * hidden]` (as for {@linkcode packedSelfAttention}).
   */
  q: tf.Tensor;
  /** The key layer's output `[R, hidden]`. */
  k?: tf.Tensor;
  /** The value layer's output `[R, hidden]`. */
  v?: tf.Tensor;
  /** `[R]`: each row's mask bias as a key (0 or a large negative value), group after group. */
  maskBias: tf.Tensor;
  /** The groups, in row order. */
  groups: AttentionGroup[];
  /** Attention heads. */
  heads: number;
  /**
   * `q` holds one row per example, `[sum of batch, hidden]` in group order, which attends alone (each example's
   * first token, as {@linkcode firstTokenAttention}); the context then has those rows.
   */
  firstToken?: boolean;
  /**
   * Training: dropout on the probabilities (0: none; not with `firstToken` or side-by-side q, k, v), with each
   * example's mask of the padded batch it was packed from ({@linkcode Attrs.maskSeq}): `maskSeq` its tokens per
   * example, `examples` each example's index there, in group order. A gradient is then recorded for q, k and v.
   */
  dropout?: { rate: number; seed?: number | string; maskSeq: number; examples: number[] };
}

/**
 * {@linkcode selfAttention} over examples of different lengths in one kernel call: each group of examples of one length
 * attends within itself, in place in the `[R, hidden]` arrays, and the contexts come out as one `[R, hidden]` array
 * (`[sum of batch, hidden]` with `firstToken`). Each group gets the arithmetic of its own {@linkcode selfAttention} (or
 * {@linkcode firstTokenAttention}) call, so the same bits, without the copies that cutting the rows into groups and
 * joining the results would take. With a gradient recorded or `dropout`, BlasAttentionGrad gives q's, k's and v's
 * gradient.
 */
export function groupedSelfAttention(o: GroupedAttentionInputs): tf.Tensor2D {
  const fn = "groupedSelfAttention";
  const { q, groups, heads } = o;
  const flat = groups.flatMap((g) => [g.batch, g.seq]);
  const placed = groupsOf({ groups: flat, heads }), last = placed.at(-1);
  const rows = last?.end ?? 0, examples = groups.reduce((sum, g) => sum + g.batch, 0);
  const packed = o.k === undefined && o.v === undefined;
  if (packed && o.firstToken) throw new Error(`${fn}: firstToken needs q, k and v apart`);
  if (!packed && (o.k === undefined || o.v === undefined)) throw new Error(`${fn}: give k and v both, or neither`);
  const width = q.shape[q.rank - 1], hidden = packed ? width / 3 : width;
  if (!Number.isInteger(hidden) || hidden % heads !== 0) {
    throw new Error(`${fn}: q has width ${width}, expected ${packed ? "3 * " : ""}a multiple of heads ${heads}`);
  }
  const expected: [string, tf.Tensor | undefined, number, number][] = [
    ["q", q, o.firstToken ? examples : rows, width],
    ["k", o.k, rows, hidden],
    ["v", o.v, rows, hidden],
    ["maskBias", o.maskBias, rows, 1],
  ];
  for (const [name, t, r, c] of expected) {
    if (t && t.size !== r * c) throw new Error(`${fn}: ${name} has shape [${t.shape}], expected [${r}, ${c}]`);
  }
  const attrs = { batch: examples, seq: 0, heads, scale: 1 / Math.sqrt(hidden / heads), groups: flat };
  const drop = o.dropout, rate = drop?.rate ?? 0;
  if (recordingGradients() || rate > 0) {
    if (packed || o.firstToken) throw new Error(`${fn}: training needs q, k and v apart, every row attending`);
    if (drop && drop.examples.length !== examples) {
      throw new Error(`${fn}: dropout.examples has ${drop.examples.length} entries, expected ${examples}`);
    }
    const dropAttrs = drop ? { maskSeq: drop.maskSeq, examples: drop.examples } : {};
    return attentionWithGrad(o.q, o.k!, o.v!, o.maskBias, {
      ...attrs,
      ...dropAttrs,
      rate,
      seed: rate > 0 ? hashSeed(drop!.seed) : 0,
    });
  }
  const inputs: tf.NamedTensorMap = packed ? { q, mask: o.maskBias } : { q, k: o.k!, v: o.v!, mask: o.maskBias };
  const attrsAll = { ...attrs, rate: 0, seed: 0, keepProbs: false, packed } as never;
  const out = tf.engine().runKernel(o.firstToken ? "BlasFirstTokenAttention" : "BlasAttention", inputs, attrsAll);
  return (Array.isArray(out) ? out[0] : out) as tf.Tensor2D; // BlasAttention returns [context]
}

/**
 * Throws naming the input of `fn` whose size does not fit (`q` has `queryRows` rows, `k`, `v` and `maskBias` cover
 * `batch * seq` tokens); returns the hidden size.
 */
function checkAttentionInputs(
  fn: string,
  o: Pick<SelfAttentionInputs, "q" | "k" | "v" | "maskBias" | "batch" | "seq" | "heads">,
  queryRows: number,
): number {
  const { batch, seq, heads } = o;
  const hidden = o.q.shape[o.q.rank - 1];
  if (hidden % heads !== 0) throw new Error(`${fn}: hidden ${hidden} is not a multiple of heads ${heads}`);
  const expected: [string, tf.Tensor, number, number][] = [
    ["q", o.q, queryRows, hidden],
    ["k", o.k, batch * seq, hidden],
    ["v", o.v, batch * seq, hidden],
    ["maskBias", o.maskBias, batch, seq],
  ];
  for (const [name, t, rows, cols] of expected) {
    if (t.size !== rows * cols) throw new Error(`${fn}: ${name} has shape [${t.shape}], expected [${rows}, ${cols}]`);
  }
  return hidden;
}

/** Inputs of {@linkcode firstTokenAttention}: those of {@linkcode selfAttention} without dropout, `q` `[batch, hidden]`. */
export type FirstTokenAttentionInputs = Omit<SelfAttentionInputs, "dropoutRate" | "seed">;

/**
 * Self-attention for each example's first token (`[CLS]`) only, for inference (no dropout, no gradient):
 * `softmax(q K^T / sqrt(H) + mask) V` per head, the query one row per example. The context `[batch, hidden]`, heads
 * merged. `BertModel.forward({ clsOnly })` runs its last layer with it. Plain loops: `batch * heads` rows of `seq`
 * scores, about 2 MFLOP for BERT-Tiny at 32 x 128, where the full attention's blocks would cost `seq` times that.
 */
export function firstTokenAttention(o: FirstTokenAttentionInputs): tf.Tensor2D {
  const { batch, seq, heads } = o;
  const hidden = checkAttentionInputs("firstTokenAttention", o, batch);
  const inputs = { q: o.q, k: o.k, v: o.v, mask: o.maskBias };
  const attrs = { batch, seq, heads, scale: 1 / Math.sqrt(hidden / heads) };
  return tf.engine().runKernel("BlasFirstTokenAttention", inputs, attrs as never) as tf.Tensor2D;
}

/**
 * The first-token attention of {@linkcode firstTokenAttention} on float32 arrays; `context` starts at zero. Per
 * (example, head): the scores are one `sgemv` over that head's keys (`lda = hidden`, in place), the context one
 * transposed `sgemv` over its values; plain loops where the library has no `sgemv` (exported for the test of both).
 */
export function firstTokenBlocks(
  o: { q: Float32Array; k: Float32Array; v: Float32Array; mask: Float32Array; context: Float32Array } & FirstTokenAttrs,
  blas: Pick<Blas, "sgemv">,
): void {
  const { q, k, v, mask, context, batch, seq, heads, scale } = o;
  const hidden = q.length / batch, dh = hidden / heads;
  const s = work(seq).subarray(0, seq);
  const sgemv = blas.sgemv?.bind(blas);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const qo = b * hidden + h * dh, kvo = b * seq * hidden + h * dh;
      if (sgemv) {
        sgemv({ m: seq, n: dh, a: k.subarray(kvo), lda: hidden, x: q.subarray(qo, qo + dh), y: s, alpha: scale });
      } else {
        for (let t = 0; t < seq; t++) {
          const ko = kvo + t * hidden;
          let dot = 0;
          for (let j = 0; j < dh; j++) dot += q[qo + j] * k[ko + j];
          s[t] = dot * scale;
        }
      }
      let max = -Infinity;
      for (let t = 0; t < seq; t++) {
        const x = s[t] + mask[b * seq + t];
        s[t] = x;
        if (x > max) max = x;
      }
      let sum = 0;
      for (let t = 0; t < seq; t++) sum += s[t] = Math.exp(s[t] - max);
      for (let t = 0; t < seq; t++) s[t] /= sum;
      if (sgemv) {
        sgemv({ trans: true, m: seq, n: dh, a: v.subarray(kvo), lda: hidden, x: s, y: context.subarray(qo, qo + dh) });
      } else {
        for (let t = 0; t < seq; t++) {
          const p = s[t], vo = kvo + t * hidden;
          for (let j = 0; j < dh; j++) context[qo + j] += p * v[vo + j];
        }
      }
    }
  }
}

/** Sizes of a {@linkcode firstTokenBlocks} call. */
export type FirstTokenAttrs = Pick<Attrs, "batch" | "seq" | "heads" | "scale">;

/** Attributes of the attention kernels. */
export interface Attrs {
  /** Return the probabilities as a second output (for the backward pass; default true). */
  keepProbs?: boolean;
  batch: number;
  seq: number;
  heads: number;
  scale: number;
  rate: number;
  seed: number;
  /**
   * Forward only: `q` is one `[batch * seq, 3 * hidden]` array holding q, k and v side by side (`k` and `v` are then
   * views of it, `hidden` and `2 * hidden` floats in), rows `3 * hidden` apart ({@linkcode packedSelfAttention}).
   */
  packed?: boolean;
  /**
   * Examples of several lengths in one call (lib/model/packing.ts), as flattened `[batch, seq]` pairs, one per group;
   * the groups' rows (and the mask's and probabilities' values) follow each other, group after group. `batch` is then
   * the examples of all groups and `seq` unused. Absent: one group, `[batch, seq]`.
   */
  groups?: number[];
  /**
   * With {@linkcode Attrs.groups} and dropout: the examples were packed from a padded batch of `maskSeq` tokens each,
   * and each draws the probabilities' dropout mask it has there (lib/simd/jobs.ts's `blockMask`), `examples` giving
   * each example's index in that batch, in the call's order.
   */
  maskSeq?: number;
  /** See {@linkcode Attrs.maskSeq}. */
  examples?: number[];
}

/** A group of a kernel call, placed: its rows `[row, end)`, probabilities `[prob, probEnd)`, first example. */
interface PlacedGroup {
  batch: number;
  seq: number;
  row: number;
  end: number;
  prob: number;
  probEnd: number;
  example: number;
  /** Its examples' part of {@linkcode Attrs.examples} (as floats; absent without `maskSeq`). */
  exampleMap?: Float32Array;
}

/**
 * The `[batch, seq]` groups of a kernel call ({@linkcode Attrs.groups}), each placed among the call's rows, its
 * probabilities (the `[batch, heads, seq, seq]` blocks, group after group) and its examples.
 */
function groupsOf(attrs: Pick<Attrs, "heads" | "groups" | "maskSeq" | "examples"> & { batch?: number; seq?: number }) {
  const flat = attrs.groups ?? [attrs.batch!, attrs.seq!];
  const out: PlacedGroup[] = [];
  for (let i = 0, row = 0, prob = 0, example = 0; i < flat.length; i += 2) {
    const [batch, seq] = [flat[i], flat[i + 1]],
      end = row + batch * seq,
      probEnd = prob + batch * attrs.heads * seq * seq;
    const exampleMap = attrs.maskSeq ? Float32Array.from(attrs.examples!.slice(example, example + batch)) : undefined;
    out.push({ batch, seq, row, end, prob, probEnd, example, exampleMap });
    row = end, prob = probEnd, example += batch;
  }
  return out;
}

let scratch = new Float32Array(0);

/** A reusable work array of at least `n` floats (kernels run one at a time). */
function work(n: number): Float32Array {
  if (scratch.length < n) scratch = new Float32Array(n);
  return scratch;
}

/**
 * The `[seq, seq]` blocks of one kernel call on the JavaScript path (no WebAssembly SIMD module), and the elementwise
 * steps on them as JavaScript loops. The SIMD path keeps its blocks in the SIMD module's memory, where `sgemm` writes
 * through FFI ({@linkcode blockJob}); for a `seq` that is not a multiple of 4 its softmax and softmax gradient repeat
 * these loops' arithmetic (lib/backends/simd/jobs.ts), so that either path gives the same bits.
 */
interface BlockOps {
  /** `count` scratch blocks of `seq * seq` floats. */
  blocks: Float32Array[];
  /** Scratch for one example's mask row (`seq` floats). */
  maskRow: Float32Array;
  /** `s = softmax(s + maskRow)` for each row of `s`, in place. */
  softmax(s: Float32Array): void;
  /** `x *= the dropout mask` of block `global` (example `global / heads`, head `global % heads`: `blockMask`). */
  dropout(x: Float32Array, global: number): void;
  /** `ds = p * (ds - rowsum(ds * p))`, in place. */
  softmaxGrad(ds: Float32Array, p: Float32Array): void;
}

function blockOps(o: Job, count: number): BlockOps {
  const { seq, rate, seed, heads } = o;
  const block = seq * seq;
  const space = work(count * block + seq);
  const blocks = Array.from({ length: count }, (_, i) => space.subarray(i * block, (i + 1) * block));
  const maskRow = space.subarray(count * block, count * block + seq);
  return {
    blocks,
    maskRow,
    softmax: (s) => {
      for (let r = 0; r < block; r += seq) for (let j = 0; j < seq; j++) s[r + j] += maskRow[j];
      softmaxRowsInto(s, s, seq);
    },
    dropout: (x, global) => {
      const { base, rowStep } = blockMask(global, seq, heads, o.maskSeq, o.exampleMap);
      if (rowStep === seq) return applyDropoutMask(x, x, rate, seed, base);
      for (let r = 0; r < seq; r++) {
        const row = x.subarray(r * seq, (r + 1) * seq);
        applyDropoutMask(row, row, rate, seed, base + r * rowStep);
      }
    },
    softmaxGrad: (ds, p) => {
      for (let r = 0; r < block; r += seq) {
        let dot = 0;
        for (let j = 0; j < seq; j++) dot += ds[r + j] * p[r + j];
        for (let j = 0; j < seq; j++) ds[r + j] = p[r + j] * (ds[r + j] - dot);
      }
    },
  };
}

/** Arrays and sizes of one attention kernel call. */
export interface Job extends Attrs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  blas: Blas;
  /** {@linkcode Attrs.examples} of this job's examples (as floats, for the SIMD jobs). */
  exampleMap?: Float32Array;
  /**
   * The SIMD module's kernels to use: by default the loaded ones ({@linkcode simdMath}); `null` takes the JavaScript
   * loops (where there is no module; tests compare the two paths bit for bit).
   */
  simd?: SimdMath | null;
}

/**
 * The hidden size of a job, and the floats from one token's row of `q` (`k`, `v`) to the next: `hidden`, or `3 *
 * hidden` when packed.
 */
function rowGeometry(o: Job): { hidden: number; rowFloats: number } {
  const width = o.q.length / (o.batch * o.seq);
  return o.packed ? { hidden: width / 3, rowFloats: width } : { hidden: width, rowFloats: width };
}

/** The SIMD module a job runs on: `job.simd` when given (`null`: none, the JavaScript loops), else the loaded one. */
const jobSimd = (job: Job): SimdMath | undefined => job.simd === undefined ? simdMath() : job.simd ?? undefined;

/** Floats of scores per group of blocks on the SIMD path (512 KB: the group stays in a core's L2 cache). */
const GROUP_FLOATS = 131072;

/**
 * Blocks per group on the SIMD path: at least 2 (so that a group can be split over two threads), at most the
 * blocks there are.
 */
function groupSize(seq: number, blocks: number): number {
  return Math.max(1, Math.min(blocks, Math.max(2, Math.floor(GROUP_FLOATS / (seq * seq)))));
}

/** The dropout numbers of a {@linkcode JOB} attention job: `[rate > 0, seed, threshold, scale, maskSeq]`. */
function dropNums(rate: number, seed: number, maskSeq = 0): number[] {
  return [rate > 0 ? 1 : 0, seed, Math.floor(rate * 4294967296), Math.fround(1 / (1 - rate)), maskSeq];
}

/**
 * Runs an attention block job (lib/backends/simd/jobs.ts's `attentionForwardBlocks` / `attentionBackwardBlocks`:
 * the `sgemm` calls and the elementwise steps of `group` blocks at a time in the module's memory) over all
 * `batch * heads` blocks. With two threads allowed, both threads claim blocks two at a time, `sgemm` included;
 * otherwise this thread runs them all and the steps between are split. BLAS runs single-threaded either way
 * ({@linkcode withOneBlasThread}).
 */
function blockJob(
  o: Job,
  simd: SimdMath,
  kind: number,
  arrays: (Float32Array | undefined)[],
  perBlock: number,
): void {
  const { batch, seq, heads, scale, rate, seed, blas } = o;
  const { hidden, rowFloats } = rowGeometry(o), block = seq * seq, total = batch * heads;
  const work = total * block * perBlock, bs = blockStride(seq);
  const split = total >= 2 && simd.splits(work, true);
  // Split: the threads claim 2 blocks at a time. Not: groups big enough for their steps to be split.
  const g = split ? 2 : groupSize(seq, total);
  // Per thread: `perBlock` blocks per group block, and the group's mask rows (forward).
  const stride = 4 * (perBlock * g * bs + (Math.ceil(g / heads) + 1) * seq);
  const space = simd.workspace(stride / 2);
  const nums = [space.byteOffset, stride, seq, heads, hidden, scale, g, rowFloats, ...dropNums(rate, seed, o.maskSeq)];
  withOneBlasThread(
    blas,
    () => simd.split({ kind, arrays, nums }, total, work, { sgemm: (a) => blas.sgemm(a), split }),
  );
}

/**
 * `fn()` with BLAS on one thread (its thread count restored after). Every per-block attention product runs so, on
 * every path: one block's products are too small to share, and OpenBLAS's AVX2 (Haswell) kernels give a product other
 * bits on two threads than on one, which would make a block's result depend on whether the call was split, and the
 * JavaScript path differ from the SIMD one.
 */
function withOneBlasThread<T>(blas: Blas, fn: () => T): T {
  const threads = blas.getThreads() ?? 1;
  if (threads > 1) blas.setThreads(1);
  try {
    return fn();
  } finally {
    if (threads > 1) blas.setThreads(threads);
  }
}

/**
 * The forward pass, block by block: `sgemm` writes each head's scores into a scratch block, the mask + softmax
 * and the dropout run in place on it, and `sgemm` reads it back for `P V`. Only the undropped probabilities are
 * copied out (saved for the backward pass, when `probs` is given). The SIMD path is {@linkcode blockJob}.
 */
export function forwardBlocks(
  o: Job & { mask: Float32Array; probs?: Float32Array; context: Float32Array },
): void {
  const simd = jobSimd(o);
  const arrays = [o.q, o.k, o.v, o.mask, o.context, o.probs, o.exampleMap];
  if (simd) return blockJob(o, simd, JOB.attentionForwardBlocks, arrays, 1);
  withOneBlasThread(o.blas, () => forwardLoops(o));
}

/** {@linkcode forwardBlocks} where there is no SIMD module: JavaScript loops around the `sgemm` calls. */
function forwardLoops(o: Job & { mask: Float32Array; probs?: Float32Array; context: Float32Array }): void {
  const { q, k, v, mask, probs, context, batch, seq, heads, scale, rate, blas } = o;
  const { hidden, rowFloats } = rowGeometry(o), dh = hidden / heads, block = seq * seq;
  const ops = blockOps(o, 1);
  const [s] = ops.blocks;
  for (let b = 0; b < batch; b++) {
    ops.maskRow.set(mask.subarray(b * seq, (b + 1) * seq));
    for (let h = 0; h < heads; h++) {
      const off = b * seq * rowFloats + h * dh, out = b * seq * hidden + h * dh, po = (b * heads + h) * block;
      blas.sgemm({
        m: seq,
        n: seq,
        k: dh,
        a: q.subarray(off),
        lda: rowFloats,
        b: k.subarray(off),
        ldb: rowFloats,
        transB: true,
        c: s,
        alpha: scale,
      });
      ops.softmax(s);
      probs?.set(s, po);
      if (rate > 0) ops.dropout(s, b * heads + h);
      blas.sgemm({
        m: seq,
        n: dh,
        k: seq,
        a: s,
        b: v.subarray(off),
        ldb: rowFloats,
        c: context.subarray(out),
        ldc: hidden,
      });
    }
  }
}

/**
 * The backward pass, block by block: the dropped probabilities are regenerated from the saved ones, and the
 * dropout mask and softmax gradient are applied in place to `dC V^T`. The SIMD path is {@linkcode blockJob}.
 */
export function backwardBlocks(
  o: Job & { dy: Float32Array; probs: Float32Array; dq: Float32Array; dk: Float32Array; dv: Float32Array },
): void {
  if (o.packed) throw new Error("attention backwardBlocks: packed q, k, v are for inference only");
  const simd = jobSimd(o);
  const blocks = [o.dy, o.q, o.k, o.v, o.probs, o.dq, o.dk, o.dv, o.exampleMap];
  if (simd) return blockJob(o, simd, JOB.attentionBackwardBlocks, blocks, 3);
  withOneBlasThread(o.blas, () => backwardLoops(o));
}

/** {@linkcode backwardBlocks} where there is no SIMD module: JavaScript loops around the `sgemm` calls. */
function backwardLoops(
  o: Job & { dy: Float32Array; probs: Float32Array; dq: Float32Array; dk: Float32Array; dv: Float32Array },
): void {
  const { dy, q, k, v, probs, dq, dk, dv, batch, seq, heads, scale, rate, blas } = o;
  const hidden = q.length / (batch * seq), dh = hidden / heads, block = seq * seq;
  const ops = blockOps(o, 3);
  const [p, pd, ds] = ops.blocks;
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const off = b * seq * hidden + h * dh, po = (b * heads + h) * block;
      p.set(probs.subarray(po, po + block));
      let dropped = p;
      if (rate > 0) {
        pd.set(p);
        ops.dropout(pd, b * heads + h);
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
      if (rate > 0) ops.dropout(ds, b * heads + h);
      // dS = P * (dP - rowsum(dP * P)); dQ = scale * dS @ K, dK = scale * dS^T @ Q
      ops.softmaxGrad(ds, p);
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

/**
 * Creates the BlasAttention / BlasAttentionGrad kernel configs for `backendName`, calling `blas`. Also lets the SIMD
 * kernels (attention's, and fused.ts's) use as many threads as `blas` does, up to 2 (lib/backends/simd/simd.ts's
 * `setSimdThreads`; `BERT_NO_SIMD_WORKER` keeps them on one).
 */
export function attentionKernels(blas: Blas, backendName: string): KernelConfig[] {
  setSimdThreads(() => blas.getThreads() ?? 1, { blasLibrary: blas.path });
  const forward = (args: KernelArgs): TensorInfo[] => {
    const { inputs, backend } = args;
    const attrs = args.attrs as unknown as Attrs;
    const { heads } = attrs;
    const groups = groupsOf(attrs), { end: rows, probEnd: probFloats } = groups.at(-1)!;
    const q = f32(backend, inputs.q!), mask = f32(backend, inputs.mask!);
    // Packed: q, k and v side by side in one array (packedSelfAttention), read in place.
    const rowFloats = q.length / rows, hidden = rowFloats / (attrs.packed ? 3 : 1);
    const k = attrs.packed ? q.subarray(hidden) : f32(backend, inputs.k!);
    const v = attrs.packed ? q.subarray(2 * hidden) : f32(backend, inputs.v!);
    const context = allocF32(rows * hidden, false); // [rows, hidden], heads merged
    // [batch, heads, seq, seq] (group after group), for the backward pass
    const probs = attrs.keepProbs !== false ? allocF32(probFloats, false) : undefined;
    for (const g of groups) { // each group in place: its rows of q, k, v, the mask and the context, its probabilities
      const [from, to] = [g.row * rowFloats, g.end * rowFloats];
      const views = { q: q.subarray(from, to), k: k.subarray(from, to), v: v.subarray(from, to) };
      const out = context.subarray(g.row * hidden, g.end * hidden), maskRows = mask.subarray(g.row, g.end);
      forwardBlocks({
        ...attrs,
        ...g,
        ...views,
        blas,
        mask: maskRows,
        probs: probs?.subarray(g.prob, g.probEnd),
        context: out,
      });
    }
    const out = output(backend, attrs.packed || attrs.groups ? [rows, hidden] : inputs.q!.shape, context);
    if (!probs) return [out];
    const probShape = attrs.groups ? [probFloats] : [attrs.batch, heads, attrs.seq, attrs.seq];
    return [out, output(backend, probShape, probs)];
  };

  const backward = (args: KernelArgs): TensorInfo[] => {
    const { inputs, backend } = args;
    const attrs = args.attrs as unknown as Attrs;
    const q = f32(backend, inputs.q!), k = f32(backend, inputs.k!), v = f32(backend, inputs.v!);
    const dy = f32(backend, inputs.dy!), probs = f32(backend, inputs.probs!);
    const dq = allocF32(q.length, false), dk = allocF32(q.length, false), dv = allocF32(q.length, false);
    const groups = groupsOf(attrs), hidden = q.length / groups.at(-1)!.end;
    for (const g of groups) { // each group in place, as forward
      const [from, to] = [g.row * hidden, g.end * hidden];
      const [qg, kg, vg, dyg, dqg, dkg, dvg] = [q, k, v, dy, dq, dk, dv].map((a) => a.subarray(from, to));
      const probsg = probs.subarray(g.prob, g.probEnd);
      backwardBlocks({ ...attrs, ...g, blas, dy: dyg, q: qg, k: kg, v: vg, probs: probsg, dq: dqg, dk: dkg, dv: dvg });
    }
    const shape = inputs.q!.shape;
    return [output(backend, shape, dq), output(backend, shape, dk), output(backend, shape, dv)];
  };

  const firstToken = (args: KernelArgs): TensorInfo => {
    const { inputs, backend } = args;
    const attrs = args.attrs as unknown as Attrs;
    const q = f32(backend, inputs.q!), k = f32(backend, inputs.k!), v = f32(backend, inputs.v!);
    const mask = f32(backend, inputs.mask!), hidden = q.length / attrs.batch;
    const context = allocF32(q.length); // [batch, hidden], zeroed: the blocks accumulate into it
    for (const g of groupsOf(attrs)) { // each group in place: its query rows, its rows of k, v and the mask
      const [from, to] = [g.example * hidden, (g.example + g.batch) * hidden],
        [r0, r1] = [g.row * hidden, g.end * hidden];
      const arrays = {
        q: q.subarray(from, to),
        k: k.subarray(r0, r1),
        v: v.subarray(r0, r1),
        mask: mask.subarray(g.row, g.end),
      };
      firstTokenBlocks({ ...attrs, ...g, ...arrays, context: context.subarray(from, to) }, blas);
    }
    return output(backend, [attrs.batch, hidden], context);
  };

  return [
    {
      kernelName: "BlasFirstTokenAttention",
      backendName,
      kernelFunc: firstToken as unknown as KernelFunc,
    },
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
