/**
 * SQuAD with the span head (`BertModel` with head `question-answering`): the loss of `run_squad.py` (mean of the
 * start and end cross-entropies over all window positions), training through the shared loop of lib/training/train.ts via
 * the {@linkcode squadTask} adapter ({@linkcode trainSquad}: AdamW, linear warmup/decay, clipping, seeded data
 * order and dropout, checkpoints with exact resume, exact match / F1 on dev windows during training, keeping the
 * best), and prediction: logits for every window, then `write_predictions` post-processing into
 * `predictions.json` and `nbest_predictions.json`.
 * @module
 */
import { tf } from "../../backends/backend.ts";
import { loadCheckpoint } from "../../model/checkpoint.ts";
import { join, sha256Hex, writeJsonAtomic } from "../../io/fsutil.ts";
import { type BertModel, softmaxCrossEntropy } from "../../model/model.ts";
import { type AdamW, clipGradsByGlobalNorm, globalNorm } from "../../training/optim.ts";
import { lengthOrder, TRIM_MULTIPLE, usedLength } from "../../eval/evaluate.ts";
import { poolShape } from "../../backends/blas/pool.ts";
import { type NBestEntry, postprocessSquad, type WindowLogits, writeSquadPredictions } from "./squad.ts";
import { checkSquadFeaturesMatch, loadSquadFeatures, type SquadFeatures } from "./features.ts";
import { evaluateSquad, type SquadScores } from "./metrics.ts";
import { FullTokenizer } from "../../text/tokenizer.ts";
import type { HyperParameters } from "../../training/hyperparameters.ts";
import { latestCheckpoint } from "../../training/checkpoints.ts";
import type { TrainTask } from "../../training/task.ts";
import { lossAndGrads } from "../../training/step.ts";
import { type RunControlOptions, train, type TrainOptions, type TrainResult } from "../../training/train.ts";

/**
 * `run_squad.py`'s loss: `(CE(startLogits, startPositions) + CE(endLogits, endPositions)) / 2`, each
 * cross-entropy a mean over the batch of `-log softmax(logits)[position]` over all `seq` positions.
 * @param startLogits `[batch, seq]`
 * @param endLogits `[batch, seq]`
 * @param startPositions int32 `[batch]`
 * @param endPositions int32 `[batch]`
 */
export function squadLoss(
  startLogits: tf.Tensor2D,
  endLogits: tf.Tensor2D,
  startPositions: tf.Tensor1D,
  endPositions: tf.Tensor1D,
): tf.Scalar {
  return tf.tidy(() =>
    tf.div(
      tf.add(softmaxCrossEntropy(startLogits, startPositions), softmaxCrossEntropy(endLogits, endPositions)),
      2,
    ) as tf.Scalar
  );
}

/** Tensors of some windows (dispose with {@linkcode disposeSquadBatch}). */
export interface SquadBatch {
  /** int32 `[batch, seq]` */
  inputIds: tf.Tensor2D;
  /** int32 `[batch, seq]` */
  tokenTypeIds: tf.Tensor2D;
  /** int32 `[batch, seq]` */
  attentionMask: tf.Tensor2D;
  /** int32 `[batch]` (training features only) */
  startPositions?: tf.Tensor1D;
  /** int32 `[batch]` (training features only) */
  endPositions?: tf.Tensor1D;
  /** Number of windows. */
  size: number;
}

/** Options of {@linkcode squadBatch}. */
export interface SquadBatchOptions {
  /**
   * Cut the trailing columns that are padding in every window of the batch, keeping a multiple of `TRIM_MULTIPLE`
   * (lib/eval/evaluate.ts; default false). Only for prediction: run_squad.py's training loss is a softmax over all
   * `maxSeqLength` positions, padding included.
   */
  trimPadding?: boolean;
}

/** Gathers windows `rows` of `features` into tensors. */
export function squadBatch(
  features: SquadFeatures,
  rows: ArrayLike<number>,
  options: SquadBatchOptions = {},
): SquadBatch {
  const L = features.maxSeqLength;
  const b = rows.length;
  for (let i = 0; i < b; i++) {
    const r = rows[i];
    if (!(r >= 0 && r < features.n)) throw new Error(`squadBatch: window ${r} outside 0..${features.n - 1}`);
  }
  const seq = options.trimPadding ? usedLength(features, rows, TRIM_MULTIPLE) : L;
  poolShape(`${b}x${seq}`); // a new batch shape: the blas backend's pool drops arrays sized for earlier ones
  const ids = new Int32Array(b * seq), types = new Int32Array(b * seq), mask = new Int32Array(b * seq);
  for (let i = 0; i < b; i++) {
    const r = rows[i];
    ids.set(features.inputIds.subarray(r * L, r * L + seq), i * seq);
    types.set(features.tokenTypeIds.subarray(r * L, r * L + seq), i * seq);
    mask.set(features.attentionMask.subarray(r * L, r * L + seq), i * seq);
  }
  const batch: SquadBatch = {
    inputIds: tf.tensor2d(ids, [b, seq], "int32"),
    tokenTypeIds: tf.tensor2d(types, [b, seq], "int32"),
    attentionMask: tf.tensor2d(mask, [b, seq], "int32"),
    size: b,
  };
  if (features.startPositions && features.endPositions) {
    const sp = features.startPositions, ep = features.endPositions;
    batch.startPositions = tf.tensor1d(Int32Array.from({ length: b }, (_, i) => sp[rows[i]]), "int32");
    batch.endPositions = tf.tensor1d(Int32Array.from({ length: b }, (_, i) => ep[rows[i]]), "int32");
  }
  return batch;
}

/** Frees a {@linkcode SquadBatch}. */
export function disposeSquadBatch(batch: SquadBatch): void {
  batch.inputIds.dispose();
  batch.tokenTypeIds.dispose();
  batch.attentionMask.dispose();
  batch.startPositions?.dispose();
  batch.endPositions?.dispose();
}

/** Options for {@linkcode squadTrainStep}. */
export interface SquadTrainStepOptions {
  model: BertModel;
  optimizer: AdamW;
  /** A training batch (with start/end positions); not disposed here. */
  batch: SquadBatch;
  /** Learning rate of this update. */
  lr: number;
  /** Clip the global gradient norm to this (0 = no clipping). Default 1. */
  maxGradNorm?: number;
  /** Seed of the dropout masks of this step. */
  seed?: number;
}

/** One forward/backward/AdamW update on `batch`; returns the loss and the gradient norm before clipping. */
export function squadTrainStep(options: SquadTrainStepOptions): { loss: number; gradNorm: number } {
  const { model, optimizer, batch } = options;
  if (model.head !== "question-answering") {
    throw new Error(`SQuAD training needs a question-answering model, got head "${model.head}"`);
  }
  if (!batch.startPositions || !batch.endPositions) {
    throw new Error("SQuAD training needs training features (start/end positions); prepare them with training on");
  }
  const { loss: value, grads } = lossAndGrads(model, () => {
    const out = model.forward(batch, { training: true, seed: options.seed });
    return squadLoss(out.startLogits!, out.endLogits!, batch.startPositions!, batch.endPositions!);
  });
  const loss = value.dataSync()[0];
  value.dispose();
  try {
    if (!Number.isFinite(loss)) throw new Error(`SQuAD training: the loss is ${loss}; lower the learning rate`);
    const maxGradNorm = options.maxGradNorm ?? 1;
    const gradNorm = maxGradNorm > 0 ? clipGradsByGlobalNorm(grads, maxGradNorm).norm : globalNorm(grads);
    optimizer.applyGradients(grads, options.lr);
    return { loss, gradNorm };
  } finally {
    for (const g of grads.values()) if (!g.isDisposed) g.dispose();
  }
}

/** What the SQuAD adapter's evaluation hands to `onEval` (as `EvalEvent.metrics`). */
export interface SquadEvalDetails {
  /** The official v1.1 scores on the dev questions. */
  scores: SquadScores;
  /** Question id -> predicted answer text. */
  predictions: Record<string, string>;
}

/** Options for {@linkcode squadTask}. */
export interface SquadTaskOptions {
  /** Training windows (made with `training: true`). */
  train: SquadFeatures;
  /** Dev windows to evaluate on (exact match / F1 of their questions); without them, no evaluation. */
  dev?: SquadFeatures;
  /** n-best size of post-processing (default 20). */
  nBestSize?: number;
  /** Longest answer in sub-tokens (default 30). */
  maxAnswerLength?: number;
}

/** sha256 over the training windows' token ids and answer positions (resuming on other windows is refused). */
async function squadFingerprint(f: SquadFeatures): Promise<string> {
  const parts = [f.inputIds, f.startPositions!, f.endPositions!];
  const all = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
  let offset = 0;
  for (const p of parts) {
    all.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), offset);
    offset += p.byteLength;
  }
  return (await sha256Hex(all)).slice(0, 16);
}

/**
 * The SQuAD adapter for `train()` (lib/training/train.ts): rows are training windows, the loss is {@linkcode squadLoss}
 * (run_squad.py's mean of the start and end cross-entropies), and the evaluation predicts the dev windows
 * ({@linkcode predictSquad}: logits, n-best post-processing) and scores them with the official exact match and F1
 * (headline: F1, which also picks the best checkpoint).
 */
export function squadTask(options: SquadTaskOptions): TrainTask<SquadBatch, SquadEvalDetails> {
  const { train, dev } = options;
  return {
    name: "squad",
    head: "question-answering",
    n: train.n,
    lowerCase: train.lowerCase,
    defaultMetric: "f1",
    metricNames: ["exact_match", "f1"],
    greaterIsBetter: () => true,
    async check(model, { vocabPath }) {
      if (!train.metadata.training || !train.startPositions || !train.endPositions) {
        throw new Error(
          `${train.metadata.source}: these SQuAD features have no training targets (prepare them with training)`,
        );
      }
      if (train.n === 0) throw new Error(`${train.metadata.source}: no training windows`);
      const tokenizer = await FullTokenizer.fromVocabFile(vocabPath, { lowerCase: train.lowerCase });
      const maxPositions = model.config.maxPositionEmbeddings;
      await checkSquadFeaturesMatch(train, tokenizer, train.metadata.source, maxPositions);
      if (dev) await checkSquadFeaturesMatch(dev, tokenizer, dev.metadata.source, maxPositions);
    },
    fingerprint: () => squadFingerprint(train),
    describe: () => ({
      source: train.metadata.source,
      task: "squad",
      n: train.n,
      questions: train.dataset.examples.length,
      vocab_sha256: train.metadata.vocab_sha256,
      max_seq_length: train.maxSeqLength,
      doc_stride: train.metadata.doc_stride,
      max_query_length: train.metadata.max_query_length,
    }),
    batch: (rows) => squadBatch(train, rows),
    loss(model, batch, { training, seed }) {
      const out = model.forward(batch, { training, seed });
      return squadLoss(out.startLogits!, out.endLogits!, batch.startPositions!, batch.endPositions!);
    },
    disposeBatch: disposeSquadBatch,
    evaluate: dev
      ? async (model, { batchSize }) => {
        const { predictions } = await predictSquad({
          model,
          features: dev,
          batchSize,
          nBestSize: options.nBestSize,
          maxAnswerLength: options.maxAnswerLength,
        });
        const scores = evaluateSquad(dev.dataset, predictions, { warn: () => {} });
        return {
          metrics: { exact_match: scores.exact_match, f1: scores.f1 },
          headline: {
            name: "f1",
            value: scores.f1,
            text: `EM ${scores.exact_match.toFixed(2)} / F1 ${scores.f1.toFixed(2)}`,
            parts: [{ name: "exact_match", value: scores.exact_match }, { name: "f1", value: scores.f1 }],
          },
          details: { scores, predictions },
        };
      }
      : undefined,
  };
}

/** run_squad.py's peak learning rate (the classification default of lib/training/train.ts is 2e-5). */
export const SQUAD_LEARNING_RATE = 5e-5;

/**
 * Options for {@linkcode trainSquad}: the loop's ({@linkcode TrainOptions}) with SQuAD windows instead of
 * classification features. Defaults are `run_squad.py`'s (lr 5e-5, batch 32, 3 epochs, 10% warmup) plus the
 * loop's (weight decay 0.01, clipping at 1.0, checkpoints each epoch keeping the last 2 and the best by F1).
 */
export interface TrainSquadOptions
  extends
    Partial<HyperParameters>,
    RunControlOptions,
    Pick<TrainOptions<SquadBatch, SquadEvalDetails>, "onProgress" | "onEval"> {
  /** A question-answering model (updated in place). */
  model: BertModel;
  /** Vocabulary copied into the checkpoints. */
  vocabPath: string;
  /** Training windows (made with `training: true`). */
  features: SquadFeatures;
  /** Dev windows: exact match / F1 after each epoch (and every `evalSteps`); the best checkpoint by F1 is kept. */
  dev?: SquadFeatures;
  /** `outputs/<run>`: checkpoints go to `checkpoint-<step>/`. */
  outputDir: string;
  /** n-best size of the evaluation's post-processing (default 20). */
  nBestSize?: number;
  /** Longest answer in sub-tokens in the evaluation (default 30). */
  maxAnswerLength?: number;
}

/** What {@linkcode trainSquad} returns: the loop's result plus two shortcuts. */
export interface TrainSquadResult extends TrainResult<SquadEvalDetails> {
  /** The newest checkpoint (= `lastCheckpoint`). */
  checkpoint: string;
  /** Loss per update (from `logHistory`). */
  losses: number[];
}

/**
 * Fine-tunes a question-answering model on SQuAD training windows with the shared training loop (lib/training/train.ts):
 * checkpoints with optimizer and trainer state (`checkpoint-<step>/`), exact resume (`resume: true`), evaluation
 * with the official exact match / F1 on `dev`, keeping the last `saveTotalLimit` checkpoints plus the best.
 */
export async function trainSquad(options: TrainSquadOptions): Promise<TrainSquadResult> {
  const { features, dev, nBestSize, maxAnswerLength, ...rest } = options;
  // When resuming, the checkpoint's hyper-parameters apply: do not impose the SQuAD default learning rate then.
  const resuming = typeof options.resume === "string" ||
    (options.resume === true && (await latestCheckpoint(options.outputDir)) !== undefined);
  const learningRate = options.learningRate ?? (resuming ? undefined : SQUAD_LEARNING_RATE);
  const result = await train<SquadBatch, SquadEvalDetails>({
    ...rest,
    learningRate,
    task: squadTask({ train: features, dev, nBestSize, maxAnswerLength }),
  });
  return { ...result, checkpoint: result.lastCheckpoint, losses: result.logHistory.map((e) => e.loss) };
}

/** Options for {@linkcode squadLogits}. */
export interface SquadLogitsOptions {
  /** Windows per forward pass. Default 32. */
  batchSize?: number;
  /** Called after each batch with (windows done, total). */
  onProgress?: (done: number, total: number) => void;
  /**
   * Batch windows of similar length together (sorted by their unpadded length; the logits come back in the
   * features' order) and cut each batch's trailing padding columns. Default true: about twice as fast on the
   * short windows of a SQuAD dev set (a batch keeps a multiple of `TRIM_MULTIPLE` columns). The logits at real tokens
   * then differ from full-length batches only by float rounding; the padding positions past the batch's longest window
   * get -Infinity, so post-processing never takes one of them into its top-`nBestSize` start or end indexes, where
   * run_squad.py (whose padding logits are finite) may take one and then drop it as invalid. `false` runs
   * run_squad.py's full-length batches in file order.
   */
  sortByLength?: boolean;
}

/** Start/end logits of every window (`RawResult`s of run_squad.py), as Float32Array rows of `maxSeqLength`. */
export function squadLogits(
  model: BertModel,
  features: SquadFeatures,
  options: SquadLogitsOptions = {},
): WindowLogits[] {
  if (model.head !== "question-answering") {
    throw new Error(`SQuAD prediction needs a question-answering model, got head "${model.head}"`);
  }
  const batchSize = options.batchSize ?? 32;
  const L = features.maxSeqLength;
  const sorted = options.sortByLength ?? true;
  const order = sorted ? lengthOrder(features) : undefined;
  const out: WindowLogits[] = new Array(features.n);
  for (let first = 0; first < features.n; first += batchSize) {
    const rows = Int32Array.from(
      { length: Math.min(batchSize, features.n - first) },
      (_, i) => order?.[first + i] ?? first + i,
    );
    const batch = squadBatch(features, rows, { trimPadding: sorted });
    try {
      const [s, e] = tf.tidy(() => {
        const o = model.forward(batch);
        return [o.startLogits!, o.endLogits!];
      });
      const seq = s.shape[1]!;
      const sd = s.dataSync() as Float32Array, ed = e.dataSync() as Float32Array; // [batch * seq]
      s.dispose();
      e.dispose();
      // The batch keeps a multiple of TRIM_MULTIPLE columns; past the columns its windows use, the logits stay
      // -Infinity as if those had been cut too.
      const used = sorted ? usedLength(features, rows) : seq;
      for (let i = 0; i < rows.length; i++) {
        const startLogits = new Float32Array(L).fill(-Infinity), endLogits = new Float32Array(L).fill(-Infinity);
        startLogits.set(sd.subarray(i * seq, i * seq + used));
        endLogits.set(ed.subarray(i * seq, i * seq + used));
        out[rows[i]] = { startLogits, endLogits };
      }
    } finally {
      disposeSquadBatch(batch);
    }
    options.onProgress?.(first + rows.length, features.n);
  }
  return out;
}

/** Options for {@linkcode predictSquad}. */
export interface PredictSquadOptions {
  /** A checkpoint folder (loaded with the question-answering head), unless `model` is given. */
  checkpoint?: string;
  /** An already loaded question-answering model. */
  model?: BertModel;
  /** Features, or the path of a `<split>.safetensors` feature file. */
  features: SquadFeatures | string;
  /** Windows per forward pass. Default 32. */
  batchSize?: number;
  /** Where `predictions.json` and `nbest_predictions.json` go; nothing is written without it. */
  outputDir?: string;
  /** Default 20. */
  nBestSize?: number;
  /** Default 30. */
  maxAnswerLength?: number;
  onProgress?: (done: number, total: number) => void;
  /** Skip the missing/unused weights warnings of loading. */
  quiet?: boolean;
}

/** What {@linkcode predictSquad} returns. */
export interface PredictSquadResult {
  /** Question id -> answer text. */
  predictions: Record<string, string>;
  /** Question id -> n-best candidates. */
  nbest: Record<string, NBestEntry[]>;
  /** The features predicted on. */
  features: SquadFeatures;
  /** Paths written (when `outputDir` was given). */
  predictionsPath?: string;
  nbestPath?: string;
}

/**
 * Runs a question-answering model over SQuAD features and post-processes the logits into answers
 * (`write_predictions`), writing `predictions.json` / `nbest_predictions.json` into `outputDir` when given.
 */
export async function predictSquad(options: PredictSquadOptions): Promise<PredictSquadResult> {
  const features = typeof options.features === "string" ? await loadSquadFeatures(options.features) : options.features;
  let model = options.model;
  let owned = false;
  if (!model) {
    if (!options.checkpoint) throw new Error("predictSquad needs a checkpoint folder or a model");
    const loaded = await loadCheckpoint(options.checkpoint, { head: "question-answering", quiet: options.quiet });
    await checkSquadFeaturesMatch(
      features,
      loaded.tokenizer,
      typeof options.features === "string" ? options.features : features.metadata.source,
      loaded.config.maxPositionEmbeddings,
    );
    model = loaded.model;
    owned = true;
  }
  try {
    const logits = squadLogits(model, features, { batchSize: options.batchSize, onProgress: options.onProgress });
    const post = { nBestSize: options.nBestSize, maxAnswerLength: options.maxAnswerLength };
    if (options.outputDir) {
      const written = await writeSquadPredictions(features, logits, { ...post, outputDir: options.outputDir });
      return { ...written, features };
    }
    return { ...postprocessSquad(features, logits, post), features };
  } finally {
    if (owned) model.dispose();
  }
}

/** Writes `eval_results.json` ({exact_match, f1, total, ...}) into `dir`, atomically. */
export async function writeSquadEvalResults(dir: string, results: Record<string, unknown>): Promise<string> {
  const path = join(dir, "eval_results.json");
  await writeJsonAtomic(path, results);
  return path;
}
