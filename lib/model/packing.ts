/**
 * BERT's encoder run on each example's own length, not on the padding, for classification on `blas`.
 *
 * A padded batch `[B, F]` spends the same work on padding as on tokens, yet no kept token reads a padding row: the
 * padding keys are masked (their probability is exactly 0) and the dense layers, LayerNorm and GELU work row by row.
 * {@linkcode packBatch} keeps each example's first `L` rows, `L` its length (up to its last unmasked token) rounded up
 * to {@linkcode PACK_ROWS}, and groups the examples by `L`: the encoder then runs on those `R` rows (`[R, D]`), and
 * {@linkcode packedAttention} runs the attention in one kernel call, each group on its own rows, which lie together.
 * `BertModel.forward` uses it for the classification head on the `blas` backend, in inference and in training, unless
 * `keepPadding`: the kept positions get the values of the padded run to float rounding (attention's per-head products
 * may sum in another order at another length), the dropped ones zeros. In training every dropout mask is the one the
 * padded batch draws at that position (the hidden dropout by row, the probabilities' by block row), and the padding
 * rows, whose gradient in the padded run is exactly 0 (no kept row reads them, and the classifier reads `[CLS]`), add
 * nothing: the loss and gradients are the padded run's to float rounding (the weight gradients sum over fewer rows).
 *
 * Shapes: B examples, F tokens each, R kept rows, D hidden, N heads, H per head, k examples in a group of length L.
 * @module
 */
import { tf } from "../backends/backend.ts";
import * as attention from "../backends/blas/attention.ts";
import * as fused from "../backends/blas/fused.ts";

/**
 * An example keeps its length rounded up to this many rows: the attention kernel's SIMD code runs a multiple of 4
 * keys in its fast path (an unaligned length takes about 1.5x as long there), and the dense layers pay for every row.
 */
export const PACK_ROWS = 4;

/** One group of examples of the same kept length. */
export interface PackGroup {
  /** The group's examples, in example order. */
  examples: number[];
  /** k. */
  batch: number;
  /** L: rows kept per example. */
  seq: number;
}

/** Where the kept rows come from and go back to (see the module doc). */
export interface Packing {
  /** The groups, shortest `L` first; their rows follow each other in that order. */
  groups: PackGroup[];
  /** `[R]` int32: the row `b * F + t` of `[B*F, D]` each kept row comes from. */
  rows: tf.Tensor1D;
  /** The same rows as numbers (the dropout masks of the kept rows are those of these rows: fused.ts's `dropout`). */
  keptRows: number[];
  /** F: tokens per example in the padded batch. */
  seq: number;
  /** `[R]`: the attention mask's bias (0 or float32's lowest) at each kept row, as a key of its example. */
  maskBias: tf.Tensor1D;
  /** `[B]` int32: the examples in group order. */
  byGroup: tf.Tensor1D;
  /** The same examples as numbers. */
  examples: number[];
  /** `[B]` int32: each example's first kept row (`[CLS]`), in example order. */
  firstRows: tf.Tensor1D;
  /** `[B]` int32: each example's place in group order (to put group-ordered `[B, D]` rows back in example order). */
  groupOrder: tf.Tensor1D;
  /** `[B*F]` int32: each row's kept row, or `R` (a zero row appended) for a dropped one. */
  unpack: tf.Tensor1D;
}

/**
 * A row's unpadded length: 1 + the last position from `start` on, within `length` values, whose attention mask is not
 * 0; 0 when every one is 0. The one rule behind evaluation's length order and batch trimming (lib/eval/evaluate.ts)
 * and the rows `blas` classification keeps ({@linkcode keptLengths}).
 */
export function unpaddedLength(mask: ArrayLike<number>, start: number, length: number): number {
  let end = length;
  while (end > 0 && mask[start + end - 1] === 0) end--;
  return end;
}

/**
 * The rows each example of an attention mask `[B, F]` (row-major values) keeps: its length up to its last unmasked
 * token, rounded up to {@linkcode PACK_ROWS}, at most F; all F for an example with no unmasked token (it attends to
 * every row evenly).
 */
export function keptLengths(mask: ArrayLike<number>, batch: number, seq: number): number[] {
  const lengths: number[] = [];
  for (let b = 0; b < batch; b++) {
    const last = unpaddedLength(mask, b * seq, seq);
    lengths.push(last === 0 ? seq : Math.min(seq, Math.max(PACK_ROWS, Math.ceil(last / PACK_ROWS) * PACK_ROWS)));
  }
  return lengths;
}

/**
 * The packing of a batch: reads `attentionMask` `[B, F]` back (CPU backends only); `maskRows` `[B, F]` is its bias
 * form (0 or float32's lowest). Undefined when every example keeps all F rows ({@linkcode keptLengths}).
 */
export function packBatch(attentionMask: tf.Tensor2D, maskRows: tf.Tensor2D, batch: number, seq: number) {
  const lengths = keptLengths(attentionMask.dataSync(), batch, seq);
  if (lengths.every((l) => l === seq)) return undefined;
  const byLength = new Map<number, number[]>();
  lengths.forEach((l, b) => byLength.set(l, [...(byLength.get(l) ?? []), b]));
  const rows: number[] = [], firstRows = new Array<number>(batch), groupOrder = new Array<number>(batch);
  const groups: PackGroup[] = [];
  let order = 0;
  for (const l of [...byLength.keys()].sort((a, b) => a - b)) {
    const examples = byLength.get(l)!;
    for (const b of examples) {
      firstRows[b] = rows.length;
      groupOrder[b] = order++;
      for (let t = 0; t < l; t++) rows.push(b * seq + t);
    }
    groups.push({ examples, batch: examples.length, seq: l });
  }
  const unpack = new Int32Array(batch * seq).fill(rows.length);
  rows.forEach((r, i) => unpack[r] = i);
  const kept = tf.tensor1d(rows, "int32"), examples = groups.flatMap((g) => g.examples);
  return {
    groups,
    rows: kept,
    keptRows: rows,
    seq,
    examples,
    maskBias: tf.tidy(() => tf.gather(tf.reshape(maskRows, [-1]), kept)) as tf.Tensor1D,
    byGroup: tf.tensor1d(examples, "int32"),
    firstRows: tf.tensor1d(firstRows, "int32"),
    groupOrder: tf.tensor1d(groupOrder, "int32"),
    unpack: tf.tensor1d(unpack, "int32"),
  } satisfies Packing;
}

/** Inputs of {@linkcode packedAttention}. */
export interface PackedAttentionInputs {
  /** The kept rows `[R, D]`. */
  x: tf.Tensor2D;
  /** The batch's packing. */
  packing: Packing;
  /** N. */
  heads: number;
  /** The query, key and value layers' parameter prefixes. */
  names: string[];
  /** A dense layer by prefix. */
  dense(prefix: string, x: tf.Tensor2D): tf.Tensor2D;
  /** A parameter by name. */
  param(name: string): tf.Tensor;
  /**
   * Each example's `[CLS]` row `[B, D]`, example order: then only those rows come out (`forward({ clsOnly })`), and
   * outside training only those rows attend.
   */
  cls?: tf.Tensor2D;
  /**
   * Training (`forward({ training })`, or a gradient being recorded): every row attends, with the gradient for the
   * query, key and value layers, and with dropout on the probabilities when `seed` is given (each example drawing the
   * masks it draws in the padded batch).
   */
  training?: { rate: number; seed?: string };
}

/**
 * Self-attention's context on packed rows (`blas`): the query, key and value layers over all R rows (in inference as
 * one product where that keeps the bits), then one attention kernel call, each group attending within itself in place.
 * `[R, N*H]`; with `cls`, each example's first-token context `[B, N*H]` in example order.
 */
export function packedAttention(o: PackedAttentionInputs): tf.Tensor2D {
  const { x, packing, heads, names, cls, training } = o;
  const { groups, maskBias } = packing;
  if (training) {
    const [q, k, v] = names.map((l) => o.dense(l, x)); // [R, N*H] each
    const { rate, seed } = training;
    const dropout = seed === undefined ? undefined : { rate, seed, maskSeq: packing.seq, examples: packing.examples };
    const context = attention.groupedSelfAttention({ q, k, v, maskBias, groups, heads, dropout }); // [R, N*H]
    return cls ? tf.gather(context, packing.firstRows) : context; // [B, N*H] with cls
  }
  if (cls) {
    const q = tf.gather(o.dense(names[0], cls), packing.byGroup); // [B, N*H], group order
    const [k, v] = names.slice(1).map((l) => o.dense(l, x)); // [R, N*H] each
    const context = attention.groupedSelfAttention({ q, k, v, maskBias, groups, heads, firstToken: true });
    return tf.gather(context, packing.groupOrder); // [B, N*H], example order
  }
  const param = (suffix: string) => names.map((l) => o.param(`${l}.${suffix}`));
  const qkv = fused.denseSideBySide(x, param("weight"), param("bias")); // [R, 3*N*H]
  if (qkv) return attention.groupedSelfAttention({ q: qkv, maskBias, groups, heads });
  const [q, k, v] = names.map((l) => o.dense(l, x)); // [R, N*H] each
  return attention.groupedSelfAttention({ q, k, v, maskBias, groups, heads }); // [R, N*H]
}
