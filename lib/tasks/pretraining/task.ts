/**
 * Pre-training, steps 3 and 4:
 *
 * 3. **Loss**: the masked-LM cross-entropy at the chosen positions (the model's `pretraining` head computes the
 *    vocabulary logits only there, via `mlmPositions`) plus the next-sentence cross-entropy on `[CLS]`
 *    ({@linkcode pretrainingLoss}), on batches of a `PretrainingSet` ({@linkcode pretrainingBatch}).
 * 4. **Training**: {@linkcode pretrainingTask} is a task adapter for lib/training/train.ts's loop (AdamW, linear
 *    warmup/decay, clipping, seeded order and dropout, checkpoints, exact resume); {@linkcode pretrain} calls the
 *    loop with it. Checkpoints are Hugging Face `BertForPreTraining` folders that `loadCheckpoint` reads back with
 *    any head, e.g. `classification` to fine-tune the self-pre-trained encoder.
 * @module
 */
import { tf } from "../../backends/backend.ts";
import { exists, join } from "../../io/fsutil.ts";
import { type BertModel, softmaxCrossEntropy } from "../../model/model.ts";
import { sparseSoftmaxCrossEntropy } from "../../backends/blas/fused.ts";
import { latestCheckpoint } from "../../training/checkpoints.ts";
import type { TrainTask } from "../../training/task.ts";
import { train, type TrainOptions, type TrainResult } from "../../training/train.ts";
import type { PretrainingSet } from "./instances.ts";
import { vocabFingerprint } from "./masking.ts";

// ---------------------------------------------------------------------------------------------------------------
// 3. Batches and the loss
// ---------------------------------------------------------------------------------------------------------------

/** Tensors of some rows of a {@linkcode PretrainingSet} (free with {@linkcode disposePretrainingBatch}). */
export interface PretrainingBatch {
  /** int32 `[batch, seq]` (trailing columns that are padding in every row are cut). */
  inputIds: tf.Tensor2D;
  tokenTypeIds: tf.Tensor2D;
  attentionMask: tf.Tensor2D;
  /** int32 `[batch, maxPredictions]` */
  mlmPositions: tf.Tensor2D;
  /** int32 `[batch, maxPredictions]`, -1 in unused slots */
  mlmIds: tf.Tensor2D;
  /** int32 `[M]`: the used slots of `mlmPositions` as indices into the batch's `batch * seq` tokens */
  mlmTokens: tf.Tensor1D;
  /** int32 `[M]`: their original tokens (`mlmIds` without the unused slots) */
  mlmTokenIds: tf.Tensor1D;
  /** int32 `[batch]` */
  nspLabels: tf.Tensor1D;
  size: number;
}

/** Builds the tensors of rows `rows` of `set`. */
export function pretrainingBatch(set: PretrainingSet, rows: ArrayLike<number>): PretrainingBatch {
  const L = set.maxSeqLength, P = set.maxPredictions, b = rows.length;
  if (b === 0) throw new Error("pretrainingBatch: no rows");
  let seq = 1;
  for (let r = 0; r < b; r++) {
    const i = rows[r];
    if (!(Number.isInteger(i) && i >= 0 && i < set.n)) {
      throw new Error(`pretrainingBatch: row ${i} outside 0..${set.n - 1}`);
    }
    for (let j = L - 1; j >= seq; j--) {
      if (set.attentionMask[i * L + j]) {
        seq = j + 1;
        break;
      }
    }
  }
  const ids = new Int32Array(b * seq), types = new Int32Array(b * seq), mask = new Int32Array(b * seq);
  const pos = new Int32Array(b * P), labels = new Int32Array(b * P), nsp = new Int32Array(b);
  for (let r = 0; r < b; r++) {
    const i = rows[r];
    ids.set(set.inputIds.subarray(i * L, i * L + seq), r * seq);
    types.set(set.tokenTypeIds.subarray(i * L, i * L + seq), r * seq);
    mask.set(set.attentionMask.subarray(i * L, i * L + seq), r * seq);
    pos.set(set.mlmPositions.subarray(i * P, (i + 1) * P), r * P);
    labels.set(set.mlmIds.subarray(i * P, (i + 1) * P), r * P);
    nsp[r] = set.nspLabels[i];
  }
  const tokens: number[] = [], tokenIds: number[] = [];
  for (let j = 0; j < b * P; j++) {
    if (labels[j] < 0) continue;
    tokens.push(Math.floor(j / P) * seq + pos[j]);
    tokenIds.push(labels[j]);
  }
  return {
    inputIds: tf.tensor2d(ids, [b, seq], "int32"),
    tokenTypeIds: tf.tensor2d(types, [b, seq], "int32"),
    attentionMask: tf.tensor2d(mask, [b, seq], "int32"),
    mlmPositions: tf.tensor2d(pos, [b, P], "int32"),
    mlmIds: tf.tensor2d(labels, [b, P], "int32"),
    mlmTokens: tf.tensor1d(tokens, "int32"),
    mlmTokenIds: tf.tensor1d(tokenIds, "int32"),
    nspLabels: tf.tensor1d(nsp, "int32"),
    size: b,
  };
}

/** Frees a {@linkcode PretrainingBatch}. */
export function disposePretrainingBatch(batch: PretrainingBatch): void {
  const { inputIds, tokenTypeIds, attentionMask, mlmPositions, mlmIds, mlmTokens, mlmTokenIds, nspLabels } = batch;
  tf.dispose([inputIds, tokenTypeIds, attentionMask, mlmPositions, mlmIds, mlmTokens, mlmTokenIds, nspLabels]);
}

/** The pre-training loss and its two parts (scalars; dispose them, or call inside `tf.tidy`). */
export interface PretrainingLoss {
  /** `mlm + nspWeight * nsp` */
  loss: tf.Scalar;
  /** Mean cross-entropy over the chosen tokens of the batch. */
  mlm: tf.Scalar;
  /** Mean next-sentence cross-entropy. */
  nsp: tf.Scalar;
}

/**
 * Runs the `pretraining` head on a batch and returns BERT's loss: the masked-LM cross-entropy averaged over all
 * chosen tokens of the batch (Google's `sum(weights * ce) / sum(weights)`), plus the next-sentence
 * cross-entropy averaged over the batch, times `nspWeight` (default 1, BERT's; `nsp: false`: masked-LM alone, `nsp`
 * is then 0).
 */
export function pretrainingLoss(
  model: BertModel,
  batch: PretrainingBatch,
  options: { training?: boolean; seed?: number; nsp?: boolean; nspWeight?: number } = {},
): PretrainingLoss {
  if (model.head !== "pretraining") {
    throw new Error(`pre-training needs a model with the "pretraining" head, this one has "${model.head}"`);
  }
  return tf.tidy(() => {
    // Logits at the chosen tokens only: the unused slots of [batch, P] would be rows of the [*, vocab] products too.
    const out = model.forward(batch, { training: options.training, seed: options.seed, mlmTokens: batch.mlmTokens });
    const v = out.mlmLogits!.shape[2];
    const mlm = sparseSoftmaxCrossEntropy(tf.reshape(out.mlmLogits!, [-1, v]), batch.mlmTokenIds); // [M, vocab], [M]
    const nsp = options.nsp === false ? tf.scalar(0) : softmaxCrossEntropy(out.nspLogits!, batch.nspLabels); // [batch, 2]
    const w = options.nspWeight ?? 1;
    return { loss: tf.add(mlm, w === 1 ? nsp : tf.mul(nsp, w)) as tf.Scalar, mlm, nsp };
  });
}

/** Loss and accuracy of the two tasks on a {@linkcode PretrainingSet}. */
export interface PretrainingMetrics {
  loss: number;
  mlmLoss: number;
  /** Share of chosen tokens whose original is the top prediction. */
  mlmAccuracy: number;
  /** NaN when the data has no next-sentence pairs (`nextSentence: false`). */
  nspLoss: number;
  /** NaN when the data has no next-sentence pairs. */
  nspAccuracy: number;
}

/** Evaluates `model` (no dropout) on every row of `set`. */
export function evaluatePretraining(
  model: BertModel,
  set: PretrainingSet,
  options: { batchSize?: number } = {},
): PretrainingMetrics {
  const withNsp = set.options.nextSentence;
  const batchSize = options.batchSize ?? 64;
  let mlmSum = 0, mlmN = 0, mlmRight = 0, nspSum = 0, nspRight = 0;
  for (let start = 0; start < set.n; start += batchSize) {
    const rows = Array.from({ length: Math.min(batchSize, set.n - start) }, (_, j) => start + j);
    const batch = pretrainingBatch(set, rows);
    try {
      const [ce, hit, nce, nhit, valid] = tf.tidy(() => {
        const out = model.forward(batch, { training: false, mlmPositions: batch.mlmPositions });
        const logits = out.mlmLogits!; // [b, P, vocab]
        const v = logits.shape[2];
        const labels = tf.reshape(batch.mlmIds, [-1]); // [b*P]
        const validMask = tf.cast(tf.greaterEqual(labels, 0), "float32"); // [b*P]
        const logp = tf.logSoftmax(tf.reshape(logits, [-1, v])); // [b*P, vocab]
        const picked = tf.sum(tf.mul(tf.oneHot(tf.maximum(labels, tf.zerosLike(labels)), v), logp), -1); // [b*P]
        const correct = tf.cast(tf.equal(tf.argMax(logp, -1), labels), "float32"); // [b*P]
        const nlogp = tf.logSoftmax(out.nspLogits!); // [b, 2]
        const npicked = tf.sum(tf.mul(tf.oneHot(batch.nspLabels, 2), nlogp), -1); // [b]
        const ncorrect = tf.cast(tf.equal(tf.argMax(nlogp, -1), batch.nspLabels), "float32"); // [b]
        return [
          tf.neg(tf.sum(tf.mul(picked, validMask))),
          tf.sum(tf.mul(correct, validMask)),
          tf.neg(tf.sum(npicked)),
          tf.sum(ncorrect),
          tf.sum(validMask),
        ];
      });
      const values = [ce, hit, nce, nhit, valid].map((t) => t.dataSync()[0]);
      tf.dispose([ce, hit, nce, nhit, valid]);
      mlmSum += values[0];
      mlmRight += values[1];
      nspSum += values[2];
      nspRight += values[3];
      mlmN += values[4];
    } finally {
      disposePretrainingBatch(batch);
    }
  }
  const mlmLoss = mlmN ? mlmSum / mlmN : NaN, nspLoss = set.n && withNsp ? nspSum / set.n : NaN;
  return {
    loss: withNsp ? mlmLoss + nspLoss : mlmLoss,
    mlmLoss,
    mlmAccuracy: mlmN ? mlmRight / mlmN : NaN,
    nspLoss,
    nspAccuracy: set.n && withNsp ? nspRight / set.n : NaN,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// 4. Training: a task adapter for lib/training/train.ts's loop
// ---------------------------------------------------------------------------------------------------------------

/** Options of {@linkcode pretrainingTask}. */
export interface PretrainingTaskOptions {
  /** Training instances. */
  train: PretrainingSet;
  /** Held-out instances (e.g. from other documents): MLM/NSP loss and accuracy at each evaluation. */
  dev?: PretrainingSet;
  /** `do_lower_case` recorded in the checkpoints (default true). */
  lowerCase?: boolean;
  /** Weight of the next-sentence loss in the training loss (default 1, BERT's); the evaluation reports both parts. */
  nspWeight?: number;
}

/** The metrics the pre-training evaluation reports (`loss` = MLM + NSP, lower is better). */
export const PRETRAINING_METRICS = ["loss", "mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy", "perplexity"];

/** The scalar metrics of a {@linkcode PretrainingMetrics}, snake_case (for `eval_history`); no `nsp_*` without NSP. */
export function pretrainingScalars(m: PretrainingMetrics): Record<string, number> {
  const all: Record<string, number> = {
    loss: m.loss,
    mlm_loss: m.mlmLoss,
    mlm_accuracy: m.mlmAccuracy,
    nsp_loss: m.nspLoss,
    nsp_accuracy: m.nspAccuracy,
    perplexity: Math.exp(m.mlmLoss),
  };
  return Object.fromEntries(Object.entries(all).filter(([k, v]) => !(k.startsWith("nsp_") && Number.isNaN(v))));
}

/** One line of held-out pre-training figures: MLM accuracy, and NSP accuracy when the data has pairs. */
export function pretrainingHeadline(m: PretrainingMetrics): string {
  const nsp = Number.isNaN(m.nspAccuracy) ? "" : `, NSP accuracy ${(100 * m.nspAccuracy).toFixed(1)}%`;
  return `MLM accuracy ${(100 * m.mlmAccuracy).toFixed(1)}%${nsp}`;
}

/**
 * Masked-LM + next-sentence pre-training as a `TrainTask` for `train()` in lib/training/train.ts, which brings the
 * schedule, AdamW, clipping, checkpoints and exact resume. The masks are static (made once by
 * {@linkcode createPretrainingData}, as in Google's BERT; `dupeFactor` gives each sentence several masks).
 */
export function pretrainingTask(options: PretrainingTaskOptions): TrainTask<PretrainingBatch, PretrainingMetrics> {
  const { train: set, dev } = options;
  const nsp = set.options.nextSentence;
  const nspWeight = options.nspWeight ?? 1;
  if (!(nspWeight >= 0 && Number.isFinite(nspWeight))) {
    throw new Error(`pre-training: the next-sentence loss weight must be a number >= 0, got ${options.nspWeight}`);
  }
  if (nspWeight !== 1 && !nsp) throw new Error("pre-training: a next-sentence loss weight needs next-sentence pairs");
  if (dev && dev.options.nextSentence !== nsp) {
    throw new Error("pre-training: the training and held-out data differ in nextSentence (pairs vs single spans)");
  }
  return {
    name: "pretraining",
    head: "pretraining",
    n: set.n,
    lowerCase: options.lowerCase ?? true,
    defaultMetric: dev ? "loss" : undefined,
    metricNames: nsp ? PRETRAINING_METRICS : PRETRAINING_METRICS.filter((m) => !m.startsWith("nsp_")),
    greaterIsBetter: (name) => name.endsWith("accuracy"),
    async check(model, { vocabPath }) {
      const { Vocab } = await import("../../text/vocab.ts");
      const vocab = await Vocab.load(vocabPath);
      for (const [what, s] of [["training", set], ["held-out", dev]] as const) {
        if (!s) continue;
        if (s.metadata.vocabFingerprint !== vocabFingerprint(vocab)) {
          throw new Error(
            `the ${what} pre-training data was made with another vocabulary (${s.metadata.vocabSize} tokens) ` +
              `than ${vocabPath} (${vocab.size} tokens)`,
          );
        }
        if (s.maxSeqLength > model.config.maxPositionEmbeddings) {
          throw new Error(
            `the ${what} data has sequences of ${s.maxSeqLength} tokens, more than the model's ` +
              `max_position_embeddings ${model.config.maxPositionEmbeddings}`,
          );
        }
      }
      if (vocab.size > model.config.vocabSize) {
        throw new Error(
          `${vocabPath} has ${vocab.size} tokens, the model's embedding table only ${model.config.vocabSize}`,
        );
      }
    },
    async fingerprint() {
      const { sha256Hex } = await import("../../io/fsutil.ts");
      const parts = [set.inputIds, set.mlmIds, set.nspLabels];
      const all = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
      let at = 0;
      for (const p of parts) {
        all.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), at);
        at += p.byteLength;
      }
      const hash = (await sha256Hex(all)).slice(0, 16);
      return nspWeight === 1 ? hash : `${hash}-nsp${nspWeight}`; // resuming with another weight is refused
    },
    describe: () => ({
      source: set.metadata.source,
      task: "pretraining",
      max_seq_length: set.maxSeqLength,
      max_predictions_per_seq: set.maxPredictions,
      masked_lm_prob: set.options.maskedLmProb,
      short_seq_prob: set.options.shortSeqProb,
      dupe_factor: set.options.dupeFactor,
      data_seed: set.options.seed,
      next_sentence: nsp,
      ...(nspWeight === 1 ? {} : { nsp_weight: nspWeight }),
      whole_word_mask: set.options.wholeWordMask,
      documents: set.stats.documents,
      vocab_size: set.metadata.vocabSize,
    }),
    batch: (rows) => pretrainingBatch(set, rows),
    loss(model, batch, { training, seed }) {
      const parts = pretrainingLoss(model, batch, { training, seed, nsp, nspWeight });
      parts.mlm.dispose();
      parts.nsp.dispose();
      return parts.loss;
    },
    disposeBatch: disposePretrainingBatch,
    evaluate: dev
      ? (model, { batchSize }) => {
        const m = evaluatePretraining(model, dev, { batchSize });
        return {
          metrics: pretrainingScalars(m),
          headline: {
            name: "mlm_accuracy",
            value: m.mlmAccuracy,
            text: pretrainingHeadline(m),
          },
          details: m,
        };
      }
      : undefined,
  };
}

/**
 * Hyper-parameters for pre-training a tiny BERT from scratch in minutes (BERT-Base's own: lr 1e-4, batch 256,
 * 1M steps, 10k warm-up steps). Larger models need a lower learning rate.
 */
export const PRETRAINING_DEFAULTS = {
  learningRate: 1e-3,
  batchSize: 32,
  warmupRatio: 0.05,
  weightDecay: 0.01,
  maxGradNorm: 1,
  maxSteps: 1000,
} as const;

/** Options of {@linkcode pretrain}: `train()`'s options with the data as pre-training sets. */
export interface PretrainOptions extends Omit<TrainOptions<PretrainingBatch, PretrainingMetrics>, "task"> {
  train: PretrainingSet;
  dev?: PretrainingSet;
  /** `do_lower_case` of the checkpoints (default true). */
  lowerCase?: boolean;
  /** Weight of the next-sentence loss (default 1). */
  nspWeight?: number;
}

/**
 * Pre-trains `options.model` (head `pretraining`) with `train()` and the {@linkcode pretrainingTask} adapter;
 * hyper-parameters left out take {@linkcode PRETRAINING_DEFAULTS} (not the fine-tuning defaults), or the
 * checkpoint's when resuming one.
 *
 * @example
 * ```ts
 * const model = new BertModel(config, { head: "pretraining" });
 * const result = await pretrain({ model, vocabPath, train: set, outputDir: "outputs/pretrain", maxSteps: 200 });
 * ```
 */
export async function pretrain(options: PretrainOptions): Promise<TrainResult<PretrainingMetrics>> {
  const { train: set, dev, lowerCase, nspWeight, ...rest } = options;
  let resuming = false; // then the checkpoint's hyper-parameters apply
  if (options.resume) {
    const target = typeof options.resume === "string" ? options.resume : options.outputDir;
    resuming = (await exists(join(target, "trainer_state.json"))) || (await latestCheckpoint(target)) !== undefined;
  }
  const defaults = resuming ? {} : PRETRAINING_DEFAULTS;
  return await train<PretrainingBatch, PretrainingMetrics>({
    ...defaults,
    ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)),
    model: options.model,
    vocabPath: options.vocabPath,
    outputDir: options.outputDir,
    task: pretrainingTask({ train: set, dev, lowerCase, nspWeight }),
  });
}
