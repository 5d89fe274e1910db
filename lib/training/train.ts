/**
 * Fine-tuning, in one file you can read top to bottom (in the spirit of nanoGPT's `train.py`):
 *
 * 1. hyper-parameters with BERT fine-tuning defaults (lr 2e-5, batch 32, 3 epochs, 10% warmup, weight decay
 *    0.01, gradient clipping at 1.0, seed 42);
 * 2. a seeded, serialisable PRNG: the data order of epoch `e` is a shuffle seeded by `(seed, e)` and the dropout
 *    masks of step `s` are seeded by `(seed, s)`, so a resumed run repeats the uninterrupted one exactly;
 * 3. tasks: the loop trains on a {@linkcode TrainTask} adapter. Classification is built in
 *    ({@linkcode classificationTask}, used when you pass `train`/`dev` features); SQuAD (`squadTask` in
 *    lib/tasks/squad/train.ts) and pre-training plug in the same way;
 * 4. the loop: forward + backward per micro-batch (gradient accumulation), clipping, AdamW with linear
 *    warmup/decay, progress events, validation after each epoch (and every `evalSteps`), checkpoints after each
 *    epoch (and every `saveSteps`), keeping the last `saveTotalLimit` plus the best by `metricForBest`;
 * 5. checkpoints (`outputs/<run>/checkpoint-<step>/`, written atomically): the Hugging Face folder from
 *    `saveCheckpoint`, `training_state.safetensors` (AdamW moments `exp_avg.<name>`, `exp_avg_sq.<name>`, HF
 *    layout) and `trainer_state.json` (step, epoch, position in the epoch's data order, rng, hyper-parameters,
 *    config, loss/lr log, evaluation log, best metric);
 * 6. {@linkcode trainSeeds}: one run per seed and the mean ± std of the headline metric.
 *
 * ## Writing a task adapter
 *
 * A {@linkcode TrainTask} tells the loop what one training example is and how to score the model; the loop does
 * everything else (schedule, AdamW, accumulation, clipping, NaN stop, checkpoints, exact resume, rotation,
 * progress, evaluation hooks). An adapter has `name`, `head` (the model head it needs), `n` (number of training
 * rows; an epoch is a seeded shuffle of `0..n-1`), `fingerprint()` (identity of the training data: resuming on
 * other data is refused), `batch(rows, {seed, step})` -> your batch object, `loss(model, batch, {training, seed})`
 * -> the batch's MEAN loss as a `tf.Scalar` (called inside `variableGrads` (lib/training/autodiff.ts): build it from `model.forward(...,
 * {training, seed})`, do not dispose the batch there), `disposeBatch(batch)`, and optionally `evaluate(model,
 * {batchSize})` -> `{metrics, headline, details?}`, `check(model, {vocabPath})` (refuse mismatched data before
 * training), `describe()` (what goes into `trainer_state.json`), `labels`, `lowerCase`, `defaultMetric`,
 * `metricNames`, `canonicalMetric(name)` and `greaterIsBetter(name)`. Then
 * `train({ model, vocabPath, outputDir, adapter, ...hyperParameters })`.
 * @module
 */
import { readableOnCpu, tf } from "../backends/backend.ts";
import { loadTensorsIntoModel, saveCheckpoint } from "../model/checkpoint.ts";
import { createProgress, formatDuration } from "../viz/display.ts";
import { disposeBatch, evaluateFeatures, type FeatureBatch, featureBatch, metricKindOf } from "../eval/evaluate.ts";
import { checkFeaturesMatch, type FeatureSet } from "../data/features.ts";
import {
  basename,
  ensureDir,
  exists,
  join,
  probeWritable,
  removeStaleTemps,
  sha256Hex,
  withPath,
  writeJsonAtomic,
} from "../io/fsutil.ts";
import {
  checkMetricName,
  type ClassificationMetrics,
  greaterIsBetter,
  type HeadlineMetric,
  headlineMetric,
  METRIC_NAMES,
  scalarMetrics,
} from "../eval/metrics.ts";
import { type BertModel, configToJson, type HeadKind, softmaxCrossEntropy } from "../model/model.ts";
import {
  AdamW,
  clipGradsByGlobalNorm,
  globalNormSquared,
  type Gradients,
  scheduleLr,
  warmupStepsFor,
} from "./optim.ts";
import { readSafetensors, serializeSafetensors, type TensorEntry } from "../io/safetensors.ts";
import { transpose2d } from "../io/weights.ts";
import { FullTokenizer } from "../text/tokenizer.ts";
import { Vocab } from "../text/vocab.ts";
import { variableGrads } from "./autodiff.ts";

// ---------------------------------------------------------------------------------------------------------------
// 1. Hyper-parameters
// ---------------------------------------------------------------------------------------------------------------

/** Everything that shapes the trajectory of the weights (a resumed run must use the same values). */
export interface HyperParameters {
  /** Peak learning rate (default 2e-5). */
  learningRate: number;
  /** Examples per micro-batch (default 32). */
  batchSize: number;
  /** Passes over the training set (default 3). */
  epochs: number;
  /** Fraction of the updates spent warming the learning rate up from 0 (default 0.1). */
  warmupRatio: number;
  /** AdamW's decoupled weight decay, not on biases and LayerNorm (default 0.01). */
  weightDecay: number;
  /** Clip the global gradient norm to this (default 1.0; 0 = no clipping). */
  maxGradNorm: number;
  /** Micro-batches per update (default 1): the effective batch is `batchSize * gradAccumSteps`. */
  gradAccumSteps: number;
  /** Seed of the data order and the dropout masks (default 42). */
  seed: number;
  /** Default 0.9. */
  adamBeta1: number;
  /** Default 0.999. */
  adamBeta2: number;
  /** Default 1e-6 (the original BERT's). */
  adamEpsilon: number;
  /** Stop after this many updates (default 0: `epochs` decides). */
  maxSteps: number;
  /** Dropout of hidden states and attention probabilities; null keeps the model config's (BERT: 0.1). */
  dropout: number | null;
}

/** BERT fine-tuning defaults. */
export const DEFAULT_HYPERPARAMETERS: Readonly<HyperParameters> = {
  learningRate: 2e-5,
  batchSize: 32,
  epochs: 3,
  warmupRatio: 0.1,
  weightDecay: 0.01,
  maxGradNorm: 1.0,
  gradAccumSteps: 1,
  seed: 42,
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  adamEpsilon: 1e-6,
  maxSteps: 0,
  dropout: null,
};

/** JSON (snake_case, like Hugging Face's TrainingArguments) names of the hyper-parameters. */
const HP_JSON: Record<keyof HyperParameters, string> = {
  learningRate: "learning_rate",
  batchSize: "per_device_train_batch_size",
  epochs: "num_train_epochs",
  warmupRatio: "warmup_ratio",
  weightDecay: "weight_decay",
  maxGradNorm: "max_grad_norm",
  gradAccumSteps: "gradient_accumulation_steps",
  seed: "seed",
  adamBeta1: "adam_beta1",
  adamBeta2: "adam_beta2",
  adamEpsilon: "adam_epsilon",
  maxSteps: "max_steps",
  dropout: "dropout",
};

function hpToJson(hp: HyperParameters): Record<string, number | null> {
  return Object.fromEntries(Object.entries(HP_JSON).map(([k, j]) => [j, hp[k as keyof HyperParameters]]));
}

function hpFromJson(json: Record<string, unknown>, where: string): HyperParameters {
  const out = { ...DEFAULT_HYPERPARAMETERS } as HyperParameters;
  for (const [k, j] of Object.entries(HP_JSON) as [keyof HyperParameters, string][]) {
    const v = json[j];
    if (v === undefined) throw new Error(`${where}: hyper_parameters.${j} is missing`);
    if (!(typeof v === "number" || (k === "dropout" && v === null))) {
      throw new Error(`${where}: hyper_parameters.${j} should be a number, got ${JSON.stringify(v)}`);
    }
    (out as unknown as Record<string, number | null>)[k] = v as number | null;
  }
  return out;
}

/** The CLI flag of each hyper-parameter (error messages name both). */
const HP_FLAGS: Partial<Record<keyof HyperParameters, string>> = {
  learningRate: "--lr",
  batchSize: "--batch-size",
  epochs: "--epochs",
  warmupRatio: "--warmup",
  weightDecay: "--weight-decay",
  maxGradNorm: "--max-grad-norm",
  gradAccumSteps: "--grad-accum",
  seed: "--seed",
  maxSteps: "--max-steps",
  dropout: "--dropout",
};

function checkHyperParameters(hp: HyperParameters): void {
  const bad = (name: keyof HyperParameters, what: string) => {
    const flag = HP_FLAGS[name];
    throw new Error(`${flag ? `${flag} (${name})` : name} must be ${what}, got ${hp[name]}`);
  };
  if (!(hp.learningRate > 0)) bad("learningRate", "> 0");
  if (!(Number.isInteger(hp.batchSize) && hp.batchSize >= 1)) bad("batchSize", "an integer >= 1");
  if (!(hp.epochs > 0 && Number.isInteger(hp.epochs)) && !(hp.maxSteps > 0)) bad("epochs", "an integer >= 1");
  if (!(hp.warmupRatio >= 0 && hp.warmupRatio <= 1)) bad("warmupRatio", "in [0, 1]");
  if (!(hp.weightDecay >= 0)) bad("weightDecay", ">= 0");
  if (!(hp.maxGradNorm >= 0)) bad("maxGradNorm", ">= 0 (0 = no clipping)");
  if (!(Number.isInteger(hp.gradAccumSteps) && hp.gradAccumSteps >= 1)) bad("gradAccumSteps", "an integer >= 1");
  if (!Number.isInteger(hp.seed)) bad("seed", "an integer");
  if (!(Number.isInteger(hp.maxSteps) && hp.maxSteps >= 0)) bad("maxSteps", "an integer >= 0");
  if (hp.dropout !== null && !(hp.dropout >= 0 && hp.dropout < 1)) bad("dropout", "in [0, 1)");
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Randomness you can save and restore
// ---------------------------------------------------------------------------------------------------------------

/** Mixes integers into one 32-bit seed (murmur3's finaliser over each value). */
export function mixSeed(...values: number[]): number {
  let h = 0x9e3779b9;
  for (const v of values) {
    h = Math.imul(h ^ (v >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** mulberry32: a tiny PRNG whose whole state is one 32-bit integer (`state`), so it serialises as a number. */
export class Rng {
  /** The complete state; assign a saved value to restore. */
  state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/** A Fisher-Yates permutation of `0..n-1` drawn from `rng`. */
export function shuffledOrder(n: number, rng: Rng): Int32Array {
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

/** The rng state that orders epoch `epoch` of a run seeded `seed`. */
export function epochOrderState(seed: number, epoch: number): number {
  return mixSeed(seed, 0x0da7a, epoch);
}

/** The dropout seed of micro-batch `micro` of update `step`. */
export function dropoutSeed(seed: number, step: number, micro: number): number {
  return mixSeed(seed, 0xd20, step, micro);
}

/** The seed a task may use to build micro-batch `micro` of update `step` (e.g. dynamic masking). */
export function batchSeed(seed: number, step: number, micro: number): number {
  return mixSeed(seed, 0xba7c4, step, micro);
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Tasks: what the loop trains on
// ---------------------------------------------------------------------------------------------------------------

/** The number an evaluation is judged by (accuracy, MCC, SQuAD F1, masked-LM accuracy, ...). */
export interface TaskHeadline {
  /** Metric name, e.g. `accuracy` or `f1`. */
  name: string;
  value: number;
  /** For display, e.g. `EM 71.2 / F1 80.3` (default `<name> <value>`). */
  text?: string;
  /** The numbers it is made of, for display (default: itself). */
  parts?: { name: string; value: number }[];
}

/** What {@linkcode TrainTask.evaluate} returns. */
export interface TaskEvaluation<D = unknown> {
  /** Scalar metrics by name: logged in `eval_history`; `metricForBest` picks one. Include `loss` when known. */
  metrics: Record<string, number>;
  /** The headline metric (its `name` is the default `metricForBest` unless the task sets `defaultMetric`). */
  headline: TaskHeadline;
  /** Anything else (classification: `ClassificationMetrics`; SQuAD: predictions), given to `onEval` as `metrics`. */
  details?: D;
}

/** What the loop passes to {@linkcode TrainTask.loss}. */
export interface TaskLossOptions {
  /** True while training (dropout on). */
  training: boolean;
  /** Seed of this micro-batch's dropout masks: pass it to `model.forward(inputs, { training, seed })`. */
  seed: number;
}

/** What the loop passes to {@linkcode TrainTask.batch}. */
export interface TaskBatchContext {
  /**
   * A seed for any randomness in building this micro-batch (e.g. dynamic MLM masking): a function of the run's
   * seed, the update and the micro-batch, so a resumed run builds the same batches.
   */
  seed: number;
  /** The update this micro-batch belongs to (0-based). */
  step: number;
}

/**
 * A task adapter: everything task-specific the training loop needs. The loop owns the schedule, the optimiser,
 * gradient accumulation and clipping, the NaN stop, checkpoints (rotation, best), exact resume, progress and
 * evaluation hooks. See the module documentation for a walk-through, and {@linkcode classificationTask} or
 * `squadTask` (lib/tasks/squad/train.ts) for complete examples.
 *
 * @typeParam B the batch object built by `batch` (tensors and whatever else `loss` needs)
 * @typeParam D task-specific evaluation details, handed to `onEval` as `EvalEvent.metrics`
 */
export interface TrainTask<B = unknown, D = unknown> {
  /** Task name for logs and `trainer_state.json` (e.g. `sst2`, `squad`, `pretraining`). */
  readonly name: string;
  /** The head the model must have (`train` refuses a model with another). */
  readonly head: HeadKind;
  /** Number of training rows; an epoch is a seeded shuffle of `0..n-1` cut into micro-batches. */
  readonly n: number;
  /** Label names (classification), saved as `id2label` in the checkpoints' `config.json`. */
  readonly labels?: string[];
  /** `do_lower_case` written to the checkpoints' `tokenizer_config.json` (default: inferred from the vocabulary). */
  readonly lowerCase?: boolean;
  /** Metric that picks the best checkpoint when the caller names none (default: the first headline's name). */
  readonly defaultMetric?: string;
  /** The scalar metrics `evaluate` reports; a `metricForBest` outside them is refused before training. */
  readonly metricNames?: readonly string[];
  /** The canonical name of a user-given metric name (e.g. `eval_accuracy` -> `accuracy`); throws for unknown ones. */
  canonicalMetric?(name: string): string;
  /** Whether a larger value of metric `name` is better (default: true, except names containing `loss`/`perplexity`). */
  greaterIsBetter?(name: string): boolean;
  /** Checks before any training (head, labels, features made with `vocabPath`'s vocabulary); throw clear errors. */
  check?(model: BertModel, context: { vocabPath: string }): Promise<void> | void;
  /** A short identity of the training data: resuming a checkpoint made on data with another fingerprint is refused. */
  fingerprint(): Promise<string> | string;
  /** Facts about the training data for `trainer_state.json` (`train_features`), e.g. `{ source, max_seq_length }`. */
  describe?(): Record<string, unknown>;
  /** The batch of training rows `rows` (indices into `0..n-1`). */
  batch(rows: Int32Array, context: TaskBatchContext): B;
  /**
   * The batch's MEAN loss per example, as a scalar. Called inside `variableGrads` (lib/training/autodiff.ts): compute it from
   * `model.forward(inputs, { training, seed })`; do not dispose `batch` here. With gradient accumulation the loop
   * weights each micro-batch by its share of the update's rows.
   */
  loss(model: BertModel, batch: B, options: TaskLossOptions): tf.Scalar;
  /** Frees the tensors of a batch. */
  disposeBatch(batch: B): void;
  /** Scores the model on held-out data; without it there is no evaluation and no best checkpoint. */
  evaluate?(model: BertModel, options: { batchSize: number }): Promise<TaskEvaluation<D>> | TaskEvaluation<D>;
}

/** sha256 over the token ids and labels: resuming with other training data is refused. */
async function featuresFingerprint(f: FeatureSet): Promise<string> {
  const ids = new Uint8Array(f.inputIds.buffer, f.inputIds.byteOffset, f.inputIds.byteLength);
  const labels = new Uint8Array(f.labels.buffer, f.labels.byteOffset, f.labels.byteLength);
  const all = new Uint8Array(ids.length + labels.length);
  all.set(ids);
  all.set(labels, ids.length);
  return (await sha256Hex(all)).slice(0, 16);
}

/** Options of {@linkcode classificationTask}. */
export interface ClassificationTaskOptions {
  /** Training features (all labelled). */
  train: FeatureSet;
  /** Validation features (labelled); without them there is no evaluation. */
  dev?: FeatureSet;
  /** Label names (default: the training features'). */
  labels?: string[];
  /** Task name for the headline metric (default: the features' task). */
  task?: string;
}

/**
 * The sequence-classification adapter (what {@linkcode train} builds from `train`/`dev` features): cross-entropy
 * of the `[CLS]` classifier, evaluation with every classification metric (`evaluateFeatures`), the task's
 * headline metric (accuracy, MCC or accuracy/F1).
 */
export function classificationTask(options: ClassificationTaskOptions): TrainTask<FeatureBatch, ClassificationMetrics> {
  const { train: trainSet, dev } = options;
  const labels = options.labels ?? trainSet.metadata.labels;
  const taskName = options.task ?? trainSet.metadata.task;
  const kind = metricKindOf(taskName);
  return {
    name: taskName,
    head: "classification",
    n: trainSet.n,
    labels,
    lowerCase: trainSet.metadata.lower_case,
    defaultMetric: dev ? checkMetricName(kind) : undefined,
    metricNames: METRIC_NAMES,
    canonicalMetric: checkMetricName,
    greaterIsBetter,
    async check(model, { vocabPath }) {
      if (labels.length !== model.numLabels) {
        throw new Error(
          `the classifier has ${model.numLabels} outputs but the training data has ${labels.length} labels ` +
            `(${labels.join(", ")})`,
        );
      }
      for (let i = 0; i < trainSet.n; i++) {
        if (trainSet.labels[i] < 0) {
          throw new Error(
            `${trainSet.metadata.source}: example ${trainSet.exampleIds[i]} has no label; training needs labels`,
          );
        }
      }
      if (trainSet.n === 0) throw new Error(`${trainSet.metadata.source}: no training examples`);
      if (dev && dev.metadata.labels.join("\u0000") !== labels.join("\u0000")) {
        throw new Error(
          `dev features are labelled [${dev.metadata.labels.join(", ")}] but training uses [${labels.join(", ")}]`,
        );
      }
      if (dev && dev.metadata.vocab_sha256 !== trainSet.metadata.vocab_sha256) {
        throw new Error(`dev and train features were made with different vocabularies (${dev.metadata.source})`);
      }
      checkTokenIds(trainSet, model.config.vocabSize, `training features made from ${trainSet.metadata.source}`);
      if (dev) checkTokenIds(dev, model.config.vocabSize, `dev features made from ${dev.metadata.source}`);
      // Refuse features tokenized with another vocabulary than the one the checkpoints will carry.
      const tokenizer = await FullTokenizer.fromVocabFile(vocabPath, { lowerCase: trainSet.metadata.lower_case });
      await checkFeaturesMatch(trainSet, tokenizer, trainSet.metadata.source, {
        maxPositionEmbeddings: model.config.maxPositionEmbeddings,
      });
    },
    fingerprint: () => featuresFingerprint(trainSet),
    describe: () => ({
      source: trainSet.metadata.source,
      task: trainSet.metadata.task,
      n: trainSet.n,
      vocab_sha256: trainSet.metadata.vocab_sha256,
      max_seq_length: trainSet.maxSeqLength,
    }),
    batch: (rows) => featureBatch(trainSet, rows),
    loss(model, batch, { training, seed }) {
      const logits = model.forward(batch, { training, seed }).logits!; // [batch, numLabels]
      return softmaxCrossEntropy(logits, batch.labels);
    },
    disposeBatch,
    evaluate: dev
      ? async (model, { batchSize }) => {
        const { metrics } = await evaluateFeatures(model, dev, { batchSize, labelNames: labels });
        return { metrics: scalarMetrics(metrics), headline: headlineMetric(kind, metrics), details: metrics };
      }
      : undefined,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// 4. The loop
// ---------------------------------------------------------------------------------------------------------------

/** What {@linkcode TrainOptions.onProgress} receives. */
export interface ProgressEvent {
  /** `train` after each update; `eval` / `save` when those start; `done` at the end. */
  phase: "train" | "eval" | "save" | "done";
  /** Updates done. */
  step: number;
  totalSteps: number;
  /** Fractional epochs done (1.5 = halfway through the second epoch). */
  epoch: number;
  /** Loss of the last update (mean over its examples). */
  loss: number;
  /** Mean loss over the current epoch so far. */
  avgLoss: number;
  /** Learning rate used by the last update. */
  lr: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Training throughput of this session. */
  examplesPerSec: number;
  /** Estimated seconds left (training only). */
  etaSeconds: number;
}

/**
 * One evaluation, as given to {@linkcode TrainOptions.onEval} and logged in `trainer_state.json`.
 * @typeParam D the task's evaluation details (classification: `ClassificationMetrics`)
 */
export interface EvalEvent<D = ClassificationMetrics> {
  step: number;
  epoch: number;
  /** The task's details (classification: every metric, the confusion matrix, ...); the scalars when it has none. */
  metrics: D;
  /** Scalar metrics by name (`accuracy`, `loss`, `f1`, ...). */
  scalars: Record<string, number>;
  headline: HeadlineMetric;
  /** True when this evaluation is the best so far by `metricForBest`. */
  isBest: boolean;
}

/** One update in the log. */
export interface LogEntry {
  step: number;
  epoch: number;
  loss: number;
  learning_rate: number;
  grad_norm: number;
}

/** One evaluation in the log (scalar metrics plus where it happened). */
export type EvalLogEntry = { step: number; epoch: number } & Record<string, number>;

/**
 * Options of {@linkcode train}. Hyper-parameters left out take {@linkcode DEFAULT_HYPERPARAMETERS} (or, when
 * resuming, the checkpoint's). Give either `train` (classification features, with `dev`/`labels`/`task`) or
 * `adapter` (any {@linkcode TrainTask}).
 */
export interface TrainOptions<B = unknown, D = ClassificationMetrics> extends Partial<HyperParameters> {
  /** The model (its weights are updated in place); its head must be the task's. */
  model: BertModel;
  /** The vocabulary copied into every checkpoint (`vocab.txt`). */
  vocabPath: string;
  /** Classification: training features (all labelled). */
  train?: FeatureSet;
  /** Classification: validation features (labelled); without them there is no evaluation and no best checkpoint. */
  dev?: FeatureSet;
  /** Classification: label names (default: the training features'). */
  labels?: string[];
  /** Classification: task name for the headline metric (default: the features' task). */
  task?: string;
  /** Any other task (SQuAD, pre-training, ...): trained instead of `train`/`dev`. */
  adapter?: TrainTask<B, D>;
  /** `outputs/<run>`: checkpoints go to `checkpoint-<step>/` inside. */
  outputDir: string;
  /** Also evaluate every this many updates (default 0: after each epoch only). */
  evalSteps?: number;
  /** Also save every this many updates (default 0: after each epoch only). */
  saveSteps?: number;
  /** Keep the newest this many checkpoints plus the best (default 2; 0 keeps all). */
  saveTotalLimit?: number;
  /** Metric that picks the best checkpoint (default: the task's headline metric). Unknown names are an error. */
  metricForBest?: string;
  /** Evaluation batch size (default 64). */
  evalBatchSize?: number;
  /** `true`: continue from the newest checkpoint in `outputDir` (start fresh if there is none); a path: from that
   * checkpoint folder, or the newest checkpoint in that run folder. */
  resume?: boolean | string;
  /** Without `resume`, delete existing checkpoints in `outputDir` first (otherwise their presence is an error). */
  overwrite?: boolean;
  /**
   * Called after every update (`phase: "train"`), when an evaluation or a save starts, and at the end. A returned
   * promise is awaited (e.g. `(e) => progress.update(...)`), so notebook displays are sent as they happen.
   */
  onProgress?: (event: ProgressEvent) => unknown;
  /** Called after every evaluation (a returned promise is awaited). */
  onEval?: (event: EvalEvent<D>) => unknown;
  /** No console messages (progress and evaluation callbacks still fire; resume notices and warnings still print). */
  quiet?: boolean;
  /**
   * Catch SIGINT and SIGTERM while training (the CLI turns this on): the current update finishes, a checkpoint is
   * written (atomically), then {@linkcode TrainingInterrupted} is thrown saying how to resume. A second signal
   * exits at once (status 130); the last complete checkpoint stays usable. Default false.
   */
  handleSignals?: boolean;
  /** The command that resumes this run, for the message after an interrupt (default: "the same command with --resume"). */
  resumeHint?: string;
}

/** The run-control settings of {@linkcode TrainOptions} that task front-ends (SQuAD, its command) pass through. */
export type RunControlOptions = Pick<
  TrainOptions,
  | "evalSteps"
  | "saveSteps"
  | "saveTotalLimit"
  | "metricForBest"
  | "evalBatchSize"
  | "resume"
  | "overwrite"
  | "quiet"
  | "handleSignals"
  | "resumeHint"
>;

/** What {@linkcode train} returns. */
export interface TrainResult<D = ClassificationMetrics> {
  outputDir: string;
  globalStep: number;
  totalSteps: number;
  /** Path of the newest checkpoint. */
  lastCheckpoint: string;
  /** Path of the best checkpoint by `metricForBest` (when there is an evaluation). */
  bestCheckpoint?: string;
  bestMetric?: { name: string; value: number; step: number };
  /** The last evaluation. */
  finalEval?: EvalEvent<D>;
  logHistory: LogEntry[];
  evalHistory: EvalLogEntry[];
  /** The checkpoint this run resumed from. */
  resumedFrom?: string;
  /** Wall time of this call. */
  runtimeSeconds: number;
}

/** `trainer_state.json` (the fields {@linkcode train} reads back on resume, plus context for people). */
export interface TrainerStateJson {
  format: string;
  /** The task adapter's name (absent in checkpoints of older versions). */
  task?: string;
  /** The model head trained (absent in checkpoints of older versions). */
  head?: HeadKind;
  global_step: number;
  total_steps: number;
  steps_per_epoch: number;
  num_epochs: number;
  /** 0-based epoch the next update belongs to. */
  epoch: number;
  /** Updates done in that epoch. */
  step_in_epoch: number;
  /** Examples of that epoch's data order already used. */
  examples_in_epoch: number;
  rng: { algorithm: string; seed: number; epoch_order_state: number };
  hyper_parameters: Record<string, number | null>;
  config: Record<string, unknown>;
  /** The training data: the adapter's `describe()` plus `n` and `fingerprint`. */
  train_features: {
    source?: string;
    task?: string;
    n: number;
    vocab_sha256?: string;
    max_seq_length?: number;
    fingerprint: string;
    [key: string]: unknown;
  };
  labels: string[];
  log_history: LogEntry[];
  eval_history: EvalLogEntry[];
  metric_for_best: string | null;
  greater_is_better: boolean | null;
  best_metric: number | null;
  best_step: number | null;
  best_checkpoint: string | null;
}

const STATE_FORMAT = "bert-ts-trainer-1";
const CHECKPOINT_RE = /^checkpoint-(\d+)$/;
/** Let the event loop run (notebook display messages, signals) at least this often between updates. */
const YIELD_EVERY_MS = 200;

/** True for promises and other thenables (what a callback may return to be awaited). */
function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | undefined)?.then === "function";
}

/** One turn of the event loop (a macrotask): queued I/O such as Jupyter display messages goes out. */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Checkpoint folders of a run, newest first (`*.tmp-*` leftovers are not listed). */
export async function listCheckpoints(runDir: string): Promise<{ step: number; path: string }[]> {
  const out: { step: number; path: string }[] = [];
  if (!(await exists(runDir))) return out;
  for await (const e of Deno.readDir(runDir)) {
    const m = CHECKPOINT_RE.exec(e.name);
    if (m && e.isDirectory) out.push({ step: Number(m[1]), path: join(runDir, e.name) });
  }
  return out.sort((a, b) => b.step - a.step);
}

/** Reads and checks `trainer_state.json` of a checkpoint folder. */
export async function readTrainerState(checkpointDir: string): Promise<TrainerStateJson> {
  const path = join(checkpointDir, "trainer_state.json");
  let json: TrainerStateJson;
  try {
    json = JSON.parse(await Deno.readTextFile(path));
  } catch (err) {
    throw new Error(`${path}: cannot read the trainer state: ${(err as Error).message}`);
  }
  if (json.format !== STATE_FORMAT) {
    throw new Error(`${path}: unknown trainer state format ${JSON.stringify(json.format)} (expected ${STATE_FORMAT})`);
  }
  return json;
}

/** Checks that a safetensors file is whole: its header parses and the file is as long as its tensors need. */
async function checkSafetensorsFile(path: string): Promise<string | undefined> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (err) {
    return err instanceof Deno.errors.NotFound ? "missing" : `unreadable (${(err as Error).message})`;
  }
  try {
    const size = (await file.stat()).size;
    const readExactly = async (n: number): Promise<Uint8Array | undefined> => {
      const buf = new Uint8Array(n);
      let got = 0;
      while (got < n) {
        const r = await file.read(buf.subarray(got));
        if (r === null || r === 0) return undefined;
        got += r;
      }
      return buf;
    };
    const head = await readExactly(8);
    if (!head) return `truncated (${size} bytes, shorter than the 8-byte header length)`;
    const headerLength = Number(new DataView(head.buffer).getBigUint64(0, true));
    if (headerLength > size - 8) return `truncated (header of ${headerLength} bytes, file of ${size} bytes)`;
    const header = await readExactly(headerLength);
    let json: Record<string, { data_offsets?: [number, number] }>;
    try {
      json = JSON.parse(new TextDecoder().decode(header));
    } catch {
      return "its header is not valid JSON";
    }
    let end = 0;
    for (const [name, t] of Object.entries(json)) {
      if (name !== "__metadata__" && Array.isArray(t?.data_offsets)) end = Math.max(end, t.data_offsets[1]);
    }
    if (8 + headerLength + end > size) {
      return `truncated (${size} bytes, the tensors need ${8 + headerLength + end})`;
    }
    return undefined;
  } finally {
    file.close();
  }
}

/**
 * What is wrong with checkpoint folder `dir` for resuming (undefined when every file is there and whole):
 * `model.safetensors` and `training_state.safetensors` complete, `trainer_state.json` readable and of this format.
 */
export async function checkpointProblem(dir: string): Promise<string | undefined> {
  for (const name of ["model.safetensors", "training_state.safetensors"]) {
    const problem = await checkSafetensorsFile(join(dir, name));
    if (problem) return `${name} is ${problem}`;
  }
  if (!(await exists(join(dir, "trainer_state.json")))) return "trainer_state.json is missing";
  try {
    const state = await readTrainerState(dir);
    for (const key of ["global_step", "epoch", "step_in_epoch", "total_steps", "steps_per_epoch"] as const) {
      if (typeof state[key] !== "number") return `trainer_state.json has no number "${key}"`;
    }
    if (typeof state.hyper_parameters !== "object" || state.hyper_parameters === null) {
      return `trainer_state.json has no hyper_parameters`;
    }
  } catch (err) {
    return (err as Error).message.replace(`${join(dir, "trainer_state.json")}: `, "trainer_state.json: ");
  }
  return undefined;
}

/** The newest usable checkpoint of `runDir`, and the newer ones skipped because they are damaged (and why). */
export async function findResumeCheckpoint(
  runDir: string,
): Promise<{ path?: string; skipped: { path: string; problem: string }[] }> {
  const skipped: { path: string; problem: string }[] = [];
  for (const { path } of await listCheckpoints(runDir)) {
    const problem = await checkpointProblem(path);
    if (!problem) return { path, skipped };
    skipped.push({ path, problem });
  }
  return { skipped };
}

/** The newest checkpoint of `runDir` that is complete (weights, optimiser state and trainer state readable). */
export async function latestCheckpoint(runDir: string): Promise<string | undefined> {
  return (await findResumeCheckpoint(runDir)).path;
}

/** The loud notice for checkpoints `--resume` skipped (empty when none). */
export function skippedCheckpointsNotice(
  skipped: { path: string; problem: string }[],
  used: string | undefined,
): string {
  if (!skipped.length) return "";
  return [
    "!".repeat(100),
    ...skipped.map((s) => `WARNING: --resume skips the damaged checkpoint ${s.path}: ${s.problem}.`),
    used
      ? `Resuming from ${used} instead; the damaged folder(s) are replaced when training saves those steps again.`
      : "No usable checkpoint is left to resume from.",
    "!".repeat(100),
  ].join("\n");
}

/** Thrown by {@linkcode train} (with `handleSignals`) after SIGINT/SIGTERM, once the checkpoint is saved. */
export class TrainingInterrupted extends Error {
  /** The exit status a CLI should end with (130, as for Ctrl-C). */
  readonly exitCode = 130;
  constructor(message: string, readonly checkpoint: string, readonly signal: string) {
    super(message);
    this.name = "TrainingInterrupted";
  }
}

/** Checks that every token id of `features` is below `vocabSize` (the model's embedding rows); names `file`. */
export function checkTokenIds(features: FeatureSet, vocabSize: number, file: string): void {
  const ids = features.inputIds, L = features.maxSeqLength;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id < 0 || id >= vocabSize) {
      const row = Math.floor(i / L);
      throw new Error(
        `${file}: token id ${id} of example ${features.exampleIds[row] ?? row} (row ${row}, position ${i % L}) is ` +
          `outside the vocabulary of the model (ids 0..${vocabSize - 1}): the features are damaged or were made ` +
          `with a larger vocabulary. Re-run \`deno task bert prepare\` with the model's vocabulary (--model DIR).`,
      );
    }
  }
}

/** Deletes a checkpoint folder: renamed first (atomic), so an interruption leaves a `*.tmp-*` folder, never half a
 * checkpoint under its real name. */
async function removeDir(path: string): Promise<void> {
  const doomed = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.rename(path, doomed);
  await Deno.remove(doomed, { recursive: true });
}

/** Maps optimizer moments between the model's `[in, out]` kernels and Hugging Face's `[out, in]`. */
function layoutTransform(model: BertModel): (name: string, e: TensorEntry) => TensorEntry {
  return (name, e) => {
    if (!model.transposed.has(name)) return e;
    const [rows, cols] = e.shape;
    return { dtype: e.dtype, shape: [cols, rows], data: transpose2d(e.data as Float32Array, rows, cols) };
  };
}

/** Hyper-parameters a resumed run may change: how long it runs (the schedule is recomputed for the new end). */
export const RESUMABLE_CHANGES: readonly (keyof HyperParameters)[] = ["epochs", "maxSteps"];

function describeDiff(saved: HyperParameters, given: Partial<HyperParameters>): string[] {
  const diffs: string[] = [];
  for (const k of Object.keys(HP_JSON) as (keyof HyperParameters)[]) {
    if (RESUMABLE_CHANGES.includes(k)) continue;
    if (given[k] !== undefined && given[k] !== saved[k]) {
      diffs.push(`${HP_FLAGS[k] ?? k}: checkpoint ${saved[k]}, now ${given[k]}`);
    }
  }
  return diffs;
}

/**
 * Trains `options.model` on a task: classification features (`train`, `dev`) or any {@linkcode TrainTask}
 * (`adapter`). See the module documentation for what it writes.
 *
 * @example
 * ```ts
 * const { model, vocabPath } = await loadCheckpoint("models/bert-tiny", { head: "classification", labels });
 * const result = await train({ model, vocabPath, train, dev, outputDir: "outputs/sst2", epochs: 3,
 *   onProgress: (e) => console.log(e.step, e.loss) });
 * console.log(result.bestCheckpoint, result.bestMetric);
 * ```
 */
export async function train<B = unknown, D = ClassificationMetrics>(
  options: TrainOptions<B, D>,
): Promise<TrainResult<D>> {
  const started = performance.now();
  const { model, outputDir } = options;
  const log = (msg: string) => {
    if (!options.quiet) console.log(msg);
  };
  if (options.adapter && (options.train || options.dev)) {
    throw new Error("train: give either `train`/`dev` features (classification) or an `adapter`, not both");
  }
  if (!options.adapter && !options.train) throw new Error("train: give `train` features or a task `adapter`");
  const task: TrainTask<B, D> = options.adapter ??
    classificationTask({
      train: options.train!,
      dev: options.dev,
      labels: options.labels,
      task: options.task,
    }) as unknown as TrainTask<B, D>;

  // ---- resolve what to resume from, then the hyper-parameters ----
  const given: Partial<HyperParameters> = {};
  for (const k of Object.keys(HP_JSON) as (keyof HyperParameters)[]) {
    if (options[k] !== undefined) (given as Record<string, unknown>)[k] = options[k];
  }
  let resumeDir: string | undefined;
  if (options.resume) {
    const target = typeof options.resume === "string" ? options.resume : outputDir;
    if (await exists(join(target, "trainer_state.json"))) {
      const problem = await checkpointProblem(target);
      if (problem) throw new Error(`cannot resume from ${target}: ${problem}`);
      resumeDir = target;
    } else {
      await removeStaleTemps(target);
      const found = await findResumeCheckpoint(target);
      resumeDir = found.path;
      if (found.skipped.length) console.warn(skippedCheckpointsNotice(found.skipped, resumeDir)); // even when quiet
    }
    if (!resumeDir && typeof options.resume === "string") {
      throw new Error(
        `--resume ${options.resume}: no complete checkpoint (checkpoint-<step>/ with trainer_state.json)`,
      );
    }
    if (!resumeDir) log(`resume: no checkpoint in ${outputDir} yet, starting from the beginning`);
  }
  const saved = resumeDir ? await readTrainerState(resumeDir) : undefined;
  let hp: HyperParameters;
  if (saved) {
    const savedHp = hpFromJson(saved.hyper_parameters, join(resumeDir!, "trainer_state.json"));
    const diffs = describeDiff(savedHp, given);
    if (diffs.length) {
      throw new Error(
        `cannot resume from ${resumeDir} with different hyper-parameters (the run would not repeat):\n  - ` +
          `${diffs.join("\n  - ")}\nLeave them out (the checkpoint's are used) or start a new --output folder.`,
      );
    }
    hp = { ...savedHp };
    // How long the run goes may change: a larger --epochs/--max-steps continues it (see the schedule notice).
    if (given.maxSteps !== undefined) hp.maxSteps = given.maxSteps;
    if (given.epochs !== undefined && given.epochs !== savedHp.epochs) {
      hp.epochs = given.epochs;
      if (given.maxSteps === undefined) hp.maxSteps = 0; // --epochs decides now
    }
  } else {
    hp = { ...DEFAULT_HYPERPARAMETERS, ...given };
  }
  checkHyperParameters(hp);

  // ---- check the inputs ----
  if (model.head !== task.head) {
    throw new Error(`the ${task.name} task trains a ${task.head} model, got a model with head "${model.head}"`);
  }
  if (task.check) await task.check(model, { vocabPath: options.vocabPath });
  if (!(Number.isInteger(task.n) && task.n > 0)) throw new Error(`the ${task.name} task has no training rows`);
  const canonical = (name: string): string => {
    if (task.canonicalMetric) return task.canonicalMetric(name);
    if (task.metricNames && !task.metricNames.includes(name)) {
      throw new Error(`unknown metric "${name}" for ${task.name}; valid names: ${task.metricNames.join(", ")}`);
    }
    return name;
  };
  const higherIsBetter = (name: string): boolean =>
    task.greaterIsBetter ? task.greaterIsBetter(name) : !/loss|perplexity/i.test(name);
  let metricForBest: string | undefined;
  if (options.metricForBest !== undefined) {
    metricForBest = canonical(options.metricForBest);
    if (!task.evaluate) {
      throw new Error(
        `--metric-for-best ${options.metricForBest} needs dev features to evaluate on (the ${task.name} task ` +
          `has no evaluation)`,
      );
    }
  } else if (task.evaluate && task.defaultMetric) {
    metricForBest = canonical(task.defaultMetric);
  }
  let higherBetter = metricForBest ? higherIsBetter(metricForBest) : undefined;
  const evalSteps = options.evalSteps ?? 0, saveSteps = options.saveSteps ?? 0;
  const saveTotalLimit = options.saveTotalLimit ?? 2;
  const evalBatchSize = options.evalBatchSize ?? 64;
  for (const [name, v] of [["evalSteps", evalSteps], ["saveSteps", saveSteps], ["saveTotalLimit", saveTotalLimit]]) {
    if (!(Number.isInteger(v) && (v as number) >= 0)) throw new Error(`${name} must be an integer >= 0, got ${v}`);
  }
  if (!(Number.isInteger(evalBatchSize) && evalBatchSize >= 1)) {
    throw new Error(`evalBatchSize must be an integer >= 1, got ${evalBatchSize}`);
  }
  const vocab = await Vocab.load(options.vocabPath);
  if (vocab.size > model.config.vocabSize) {
    throw new Error(`${options.vocabPath} has ${vocab.size} tokens, the model only ${model.config.vocabSize}`);
  }
  const fingerprint = await task.fingerprint();
  if (saved && saved.train_features.fingerprint !== fingerprint) {
    const was = saved.train_features;
    throw new Error(
      `cannot resume from ${resumeDir}: it was trained on other data (${was.source ?? was.task ?? "?"}, ` +
        `n=${was.n}) than ${task.describe?.().source ?? task.name} (n=${task.n})`,
    );
  }
  if (saved?.head !== undefined && saved.head !== task.head) {
    throw new Error(`cannot resume from ${resumeDir}: it trained a ${saved.head} model, this task a ${task.head}`);
  }

  // ---- the schedule ----
  const { batchSize, gradAccumSteps: accum, seed } = hp;
  const n = task.n;
  const batchesPerEpoch = Math.ceil(n / batchSize);
  const stepsPerEpoch = Math.ceil(batchesPerEpoch / accum);
  const totalSteps = hp.maxSteps > 0 ? hp.maxSteps : hp.epochs * stepsPerEpoch;
  const numEpochs = Math.ceil(totalSteps / stepsPerEpoch);
  const warmupSteps = warmupStepsFor(totalSteps, hp.warmupRatio);
  if (hp.dropout !== null) {
    model.config.hiddenDropoutProb = hp.dropout;
    model.config.attentionProbsDropoutProb = hp.dropout;
  }

  await ensureDir(outputDir).catch((err) => {
    throw withPath(err, `cannot create the run folder ${outputDir}`);
  });
  await probeWritable(outputDir, `run ${outputDir}`); // fail now, not at the first checkpoint an epoch later
  const stale = await removeStaleTemps(outputDir);
  if (stale.length) log(`removed ${stale.length} unfinished write(s) left by an interrupted run: ${stale.join(", ")}`);
  if (!resumeDir) {
    const existing = await listCheckpoints(outputDir);
    if (existing.length && !options.overwrite) {
      throw new Error(
        `${outputDir} already has checkpoints (${existing.map((c) => basename(c.path)).join(", ")}): ` +
          `resume them (--resume), start over (--overwrite deletes them) or choose another --output`,
      );
    }
    for (const c of existing) await removeDir(c.path);
  }

  const optimizer = new AdamW(model.params, {
    lr: hp.learningRate,
    beta1: hp.adamBeta1,
    beta2: hp.adamBeta2,
    eps: hp.adamEpsilon,
    weightDecay: hp.weightDecay,
  });
  const toHf = layoutTransform(model);

  // ---- state (fresh or restored) ----
  let globalStep = 0, epoch = 0, stepInEpoch = 0;
  let logHistory: LogEntry[] = [];
  let evalHistory: EvalLogEntry[] = [];
  let best: { value: number; step: number } | undefined;
  if (saved && resumeDir) {
    const weights = await readSafetensors(join(resumeDir, "model.safetensors"));
    const report = loadTensorsIntoModel(model, weights.tensors, { source: join(resumeDir, "model.safetensors") });
    if (report.missing.length) {
      throw new Error(
        `${resumeDir}/model.safetensors lacks ${report.missing.join(", ")}: not a checkpoint of this model`,
      );
    }
    const ts = await readSafetensors(join(resumeDir, "training_state.safetensors"));
    optimizer.importState({ tensors: ts.tensors, step: Number(ts.metadata.step ?? saved.global_step) }, toHf);
    globalStep = saved.global_step;
    epoch = saved.epoch;
    stepInEpoch = saved.step_in_epoch;
    logHistory = saved.log_history;
    evalHistory = saved.eval_history;
    if (saved.best_step !== null && saved.best_metric !== null) {
      best = { value: saved.best_metric, step: saved.best_step };
    }
    if (metricForBest === undefined && saved.metric_for_best) metricForBest = saved.metric_for_best;
    higherBetter = metricForBest ? higherIsBetter(metricForBest) : undefined;
    if (saved.steps_per_epoch !== stepsPerEpoch) {
      throw new Error(
        `${resumeDir}: the saved run has ${saved.steps_per_epoch} updates per epoch, this one ${stepsPerEpoch} ` +
          `(same data and batch size needed)`,
      );
    }
    if (totalSteps < globalStep) {
      throw new Error(
        `cannot resume from ${resumeDir}: it is at step ${globalStep}, but --epochs ${hp.epochs}` +
          `${hp.maxSteps > 0 ? ` / --max-steps ${hp.maxSteps}` : ""} ends the run at step ${totalSteps}. ` +
          `Give at least ${Math.ceil(globalStep / stepsPerEpoch)} epochs (or --max-steps ${globalStep} or more).`,
      );
    }
    // Printed even with `quiet`: which checkpoint a run continues from must never be hidden.
    console.log(
      `resuming from ${resumeDir} (step ${globalStep}/${totalSteps}, epoch ${epoch + 1}, update ${stepInEpoch} of it)`,
    );
    if (saved.total_steps !== totalSteps) {
      const oldWarmup = warmupStepsFor(saved.total_steps, hp.warmupRatio);
      const lrThen = scheduleLr(globalStep, {
        peakLr: hp.learningRate,
        warmupSteps: oldWarmup,
        totalSteps: saved.total_steps,
      });
      const lrNow = scheduleLr(globalStep, { peakLr: hp.learningRate, warmupSteps, totalSteps });
      console.log(
        `resume: the run now ends at step ${totalSteps} instead of ${saved.total_steps}. The learning-rate ` +
          `schedule is recomputed for the new end (warm-up ${warmupSteps} steps, linear decay to 0 at step ` +
          `${totalSteps}): at step ${globalStep} the learning rate is ${lrNow.toExponential(3)} (it was ` +
          `${lrThen.toExponential(3)}). The result differs from a run started with this length.`,
      );
    }
  }

  const savedSteps = new Set((await listCheckpoints(outputDir)).map((c) => c.step));
  let lastCheckpoint = resumeDir ?? "";
  let finalEval: EvalEvent<D> | undefined;
  let lastLoss = NaN, lastLr = 0, lastNorm = NaN, epochLossSum = 0, epochLossCount = 0;
  let sessionExamples = 0;
  const sessionStart = performance.now();
  const sessionStartStep = globalStep;
  let lastYield = sessionStart;
  const vars = model.variables();
  const nameOf = new Map([...model.params].map(([name, v]) => [v.name, name]));
  const labels = task.labels ?? [];

  const epochFloat = () => globalStep / stepsPerEpoch;
  const progress = async (phase: ProgressEvent["phase"]) => {
    if (options.onProgress) {
      const elapsed = (performance.now() - sessionStart) / 1000;
      const done = globalStep - sessionStartStep;
      const pending = options.onProgress({
        phase,
        step: globalStep,
        totalSteps,
        epoch: epochFloat(),
        loss: lastLoss,
        avgLoss: epochLossCount ? epochLossSum / epochLossCount : NaN,
        lr: lastLr,
        gradNorm: lastNorm,
        examplesPerSec: elapsed > 0 ? sessionExamples / elapsed : 0,
        etaSeconds: done > 0 ? (elapsed / done) * (totalSteps - globalStep) : NaN,
      });
      if (isPromiseLike(pending)) await pending;
    }
    // The updates themselves never wait on anything, so without this a notebook's progress bar and live chart
    // would only be sent at the next checkpoint write. One event-loop turn costs ~1-4 ms: at most every 200 ms.
    if (performance.now() - lastYield >= YIELD_EVERY_MS) {
      await yieldToEventLoop();
      lastYield = performance.now();
    }
  };

  const evaluate = async (): Promise<EvalEvent<D>> => {
    await progress("eval");
    const evaluation = await task.evaluate!(model, { batchSize: evalBatchSize });
    const scalars = evaluation.metrics;
    if (metricForBest === undefined) {
      metricForBest = canonical(evaluation.headline.name);
      higherBetter = higherIsBetter(metricForBest);
    }
    const value = scalars[metricForBest];
    if (typeof value !== "number") {
      throw new Error(
        `metric "${metricForBest}" was not computed by the ${task.name} evaluation (it reports ` +
          `${Object.keys(scalars).join(", ")})`,
      );
    }
    let isBest = false;
    if (!best || (higherBetter ? value > best.value : value < best.value)) {
      best = { value, step: globalStep };
      isBest = true;
    }
    const h = evaluation.headline;
    const headline: HeadlineMetric = {
      name: h.name,
      value: h.value,
      parts: h.parts ?? [{ name: h.name, value: h.value }],
      text: h.text ?? `${h.name} ${Number.isFinite(h.value) ? h.value.toFixed(4) : h.value}`,
    };
    const event: EvalEvent<D> = {
      step: globalStep,
      epoch: epochFloat(),
      metrics: (evaluation.details ?? scalars) as D,
      scalars,
      headline,
      isBest,
    };
    evalHistory.push({ step: globalStep, epoch: epochFloat(), ...scalars });
    finalEval = event;
    log(
      `eval @ step ${globalStep} (epoch ${epochFloat().toFixed(2)}): ${headline.text}` +
        `${typeof scalars.loss === "number" ? `, loss ${scalars.loss.toFixed(4)}` : ""}` +
        `${isBest ? `  [best ${metricForBest} so far]` : ""}`,
    );
    const pending = options.onEval?.(event);
    if (isPromiseLike(pending)) await pending;
    return event;
  };

  const trainerState = (orderState: number): TrainerStateJson => ({
    format: STATE_FORMAT,
    task: task.name,
    head: task.head,
    global_step: globalStep,
    total_steps: totalSteps,
    steps_per_epoch: stepsPerEpoch,
    num_epochs: numEpochs,
    epoch,
    step_in_epoch: stepInEpoch,
    examples_in_epoch: Math.min(n, stepInEpoch * accum * batchSize),
    rng: { algorithm: "mulberry32", seed, epoch_order_state: orderState },
    hyper_parameters: hpToJson(hp),
    config: configToJson(
      model.config,
      task.head === "classification"
        ? { head: task.head, labels: task.labels, numLabels: model.numLabels }
        : { head: task.head },
    ),
    train_features: { ...task.describe?.(), n, fingerprint },
    labels,
    log_history: logHistory,
    eval_history: evalHistory,
    metric_for_best: metricForBest ?? null,
    greater_is_better: higherBetter ?? null,
    best_metric: best?.value ?? null,
    best_step: best?.step ?? null,
    best_checkpoint: best ? `checkpoint-${best.step}` : null,
  });

  const rotate = async () => {
    if (saveTotalLimit <= 0) return;
    const all = await listCheckpoints(outputDir);
    const keep = new Set(all.slice(0, saveTotalLimit).map((c) => c.step));
    if (best) keep.add(best.step);
    // A run resumed without --model reads its vocabulary from the checkpoint it resumed from: keep that one, or
    // the next save would copy vocab.txt from a deleted folder.
    for (const c of all) if (options.vocabPath.startsWith(`${c.path}/`)) keep.add(c.step);
    for (const c of all) {
      if (keep.has(c.step)) continue;
      await removeDir(c.path);
      savedSteps.delete(c.step);
    }
  };

  const save = async (orderState: number) => {
    await progress("save");
    const dir = join(outputDir, `checkpoint-${globalStep}`);
    await readableOnCpu(optimizer.stateTensors());
    const state = optimizer.exportState(toHf);
    const trainingState = serializeSafetensors(state.tensors, { step: String(state.step), optimizer: "AdamW" });
    try {
      await saveCheckpoint(dir, {
        model,
        vocabPath: options.vocabPath,
        labels: task.labels,
        lowerCase: task.lowerCase,
        extraFiles: {
          "training_state.safetensors": trainingState,
          "trainer_state.json": JSON.stringify(trainerState(orderState), null, 2) + "\n",
        },
      });
    } catch (err) {
      throw withPath(
        err,
        `cannot save checkpoint ${dir} (run ${outputDir}, step ${globalStep}; the previous checkpoint ` +
          `${lastCheckpoint || "(none)"} is intact)`,
      );
    }
    savedSteps.add(globalStep);
    lastCheckpoint = dir;
    await rotate();
  };

  /** One update on micro-batches `[first, last)` of `order`; returns the loss (mean over the group's examples). */
  const update = async (order: Int32Array, first: number, last: number): Promise<number> => {
    const groupStart = first * batchSize;
    const groupSize = Math.min(n, last * batchSize) - groupStart;
    let acc: Gradients | undefined;
    let loss = 0;
    try {
      for (let micro = first; micro < last; micro++) {
        const rows = order.subarray(micro * batchSize, Math.min(n, (micro + 1) * batchSize));
        const batch = task.batch(rows, { seed: batchSeed(seed, globalStep, micro - first), step: globalStep });
        const scale = rows.length / groupSize;
        const dropSeed = dropoutSeed(seed, globalStep, micro - first);
        let value: tf.Scalar, grads: tf.NamedTensorMap;
        try {
          ({ value, grads } = variableGrads(
            () => tf.mul(task.loss(model, batch, { training: true, seed: dropSeed }), scale) as tf.Scalar,
            vars,
          ));
        } finally {
          task.disposeBatch(batch);
        }
        await readableOnCpu([value]);
        loss += value.dataSync()[0];
        value.dispose();
        if (!acc) {
          acc = new Map(Object.entries(grads).map(([k, g]) => [nameOf.get(k)!, g]));
        } else {
          for (const [k, g] of Object.entries(grads)) {
            const name = nameOf.get(k)!;
            const prev = acc.get(name);
            acc.set(name, prev ? tf.add(prev, g) : g);
            if (prev) {
              prev.dispose();
              g.dispose();
            }
          }
        }
        sessionExamples += rows.length;
      }
      if (!Number.isFinite(loss)) {
        throw new Error(
          `training stopped: the loss is ${loss} at step ${globalStep + 1} (epoch ${epoch + 1}); the weights ` +
            `diverged. Try a lower --lr (now ${hp.learningRate}), gradient clipping (--max-grad-norm 1) or ` +
            `resume from the last checkpoint.`,
        );
      }
      const grads = acc!;
      const squared = globalNormSquared(grads);
      await readableOnCpu([squared]);
      const norm = Math.sqrt(squared.dataSync()[0]);
      squared.dispose();
      lastNorm = hp.maxGradNorm > 0 ? clipGradsByGlobalNorm(grads, hp.maxGradNorm, norm).norm : norm;
      if (!Number.isFinite(lastNorm)) {
        throw new Error(
          `training stopped: the gradient norm is ${lastNorm} at step ${globalStep + 1} (epoch ${epoch + 1})`,
        );
      }
      lastLr = scheduleLr(globalStep, { peakLr: hp.learningRate, warmupSteps, totalSteps });
      optimizer.applyGradients(grads, lastLr);
      return loss;
    } finally {
      if (acc) { for (const g of acc.values()) g.dispose(); }
    }
  };

  // Ctrl-C / SIGTERM: finish the update, save, say how to resume; a second signal exits at once.
  let stopSignal: string | undefined;
  const listeners: [Deno.Signal, () => void][] = [];
  if (options.handleSignals) {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      const handler = () => {
        if (stopSignal) {
          console.error(`\n${sig} again: stopping at once (the last complete checkpoint stays usable for --resume)`);
          Deno.exit(130);
        }
        stopSignal = sig;
        console.error(
          `\n${sig}: finishing the current update, then saving a checkpoint (press Ctrl-C again to stop at once)`,
        );
      };
      try {
        Deno.addSignalListener(sig, handler);
        listeners.push([sig, handler]);
      } catch { /* signal not supported on this platform */ }
    }
  }
  const interrupted = async (orderState: number): Promise<never> => {
    if (!savedSteps.has(globalStep)) await save(orderState);
    const hint = options.resumeHint ?? "the same command with --resume";
    throw new TrainingInterrupted(
      `interrupted by ${stopSignal} at step ${globalStep}/${totalSteps}: saved ${lastCheckpoint}.\n` +
        `Resume with: ${hint}`,
      lastCheckpoint,
      stopSignal!,
    );
  };

  try {
    while (globalStep < totalSteps) {
      const orderState = epochOrderState(seed, epoch);
      const order = shuffledOrder(n, new Rng(orderState));
      if (stepInEpoch === 0) {
        epochLossSum = 0;
        epochLossCount = 0;
      }
      while (stepInEpoch < stepsPerEpoch && globalStep < totalSteps) {
        const first = stepInEpoch * accum;
        const last = Math.min(batchesPerEpoch, first + accum);
        lastLoss = await update(order, first, last);
        globalStep++;
        stepInEpoch++;
        epochLossSum += lastLoss;
        epochLossCount++;
        logHistory.push({
          step: globalStep,
          epoch: epochFloat(),
          loss: lastLoss,
          learning_rate: lastLr,
          grad_norm: lastNorm,
        });
        await progress("train");
        const epochEnd = stepInEpoch === stepsPerEpoch;
        const runEnd = globalStep === totalSteps;
        if (epochEnd) {
          epoch++;
          stepInEpoch = 0;
        }
        let evaluated: EvalEvent<D> | undefined;
        if (task.evaluate && (epochEnd || runEnd || (evalSteps > 0 && globalStep % evalSteps === 0))) {
          evaluated = await evaluate();
        }
        const due = epochEnd || runEnd || (saveSteps > 0 && globalStep % saveSteps === 0) || evaluated?.isBest;
        if (due) await save(epochEnd ? epochOrderState(seed, epoch) : orderState);
        if (stopSignal && globalStep < totalSteps) {
          await interrupted(epochEnd ? epochOrderState(seed, epoch) : orderState);
        }
        if (epochEnd) break;
      }
    }
    if (!savedSteps.has(globalStep)) await save(epochOrderState(seed, epoch)); // resumed at the very end
  } finally {
    for (const [sig, handler] of listeners) Deno.removeSignalListener(sig, handler);
    optimizer.dispose();
  }
  await progress("done");

  const result: TrainResult<D> = {
    outputDir,
    globalStep,
    totalSteps,
    lastCheckpoint,
    bestCheckpoint: best ? join(outputDir, `checkpoint-${best.step}`) : undefined,
    bestMetric: best && metricForBest ? { name: metricForBest, value: best.value, step: best.step } : undefined,
    finalEval,
    logHistory,
    evalHistory,
    resumedFrom: resumeDir,
    runtimeSeconds: (performance.now() - started) / 1000,
  };
  await writeJsonAtomic(join(outputDir, "train_results.json"), {
    task: task.name,
    global_step: globalStep,
    total_steps: totalSteps,
    last_checkpoint: basename(lastCheckpoint),
    best_checkpoint: best ? `checkpoint-${best.step}` : null,
    metric_for_best: metricForBest ?? null,
    best_metric: best?.value ?? null,
    final_eval: finalEval ? { step: finalEval.step, headline: finalEval.headline, ...finalEval.scalars } : null,
    hyper_parameters: hpToJson(hp),
    train_runtime_seconds: result.runtimeSeconds,
    resumed_from: resumeDir ?? null,
  });
  log(
    `training done: ${globalStep} steps in ${formatDuration(result.runtimeSeconds)}; last checkpoint ` +
      `${lastCheckpoint}${
        result.bestCheckpoint ? `, best ${result.bestCheckpoint} (${metricForBest} ${best!.value.toFixed(4)})` : ""
      }`,
  );
  return result;
}

// ---------------------------------------------------------------------------------------------------------------
// 5. Progress on a terminal
// ---------------------------------------------------------------------------------------------------------------

/**
 * Progress callbacks for {@linkcode train} that draw a single `\r`-updated line on a TTY (periodic lines
 * otherwise, a live output in a notebook), via `lib/viz/display.ts`. Call `done()` after training.
 */
export function consoleProgress(
  options: { label?: string } = {},
): { onProgress: (e: ProgressEvent) => void; done: () => Promise<void> } {
  let bar: ReturnType<typeof createProgress> | undefined;
  let tty = false;
  try {
    tty = Deno.stdout.isTerminal();
  } catch { /* no terminal */ }
  return {
    onProgress(e: ProgressEvent) {
      bar ??= createProgress({ total: e.totalSteps, label: options.label ?? "train" });
      if (e.phase === "eval" && tty) {
        Deno.stdout.writeSync(new TextEncoder().encode("\r\x1b[2K")); // clear the bar before the eval line
      }
      if (e.phase === "train") {
        bar.update({
          step: e.step,
          epoch: e.epoch,
          loss: e.avgLoss,
          lr: e.lr,
          examplesPerSec: e.examplesPerSec,
          etaSeconds: e.etaSeconds,
        });
      }
    },
    async done() {
      await bar?.done();
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// 6. Several seeds
// ---------------------------------------------------------------------------------------------------------------

/** Options of {@linkcode trainSeeds}: {@linkcode TrainOptions} without the model, plus a model factory. */
export interface TrainSeedsOptions<B = unknown, D = ClassificationMetrics>
  extends Omit<TrainOptions<B, D>, "model" | "vocabPath" | "seed" | "outputDir"> {
  /** Seeds, one run each, into `<outputDir>/seed-<s>/`. */
  seeds: number[];
  outputDir: string;
  /** Builds a fresh model (e.g. `loadCheckpoint` with `seed` for the new head) for each run. Disposed after. */
  makeModel: (seed: number) => Promise<{ model: BertModel; vocabPath: string }>;
}

/** What {@linkcode trainSeeds} returns. */
export interface SeedsResult<D = ClassificationMetrics> {
  runs: { seed: number; outputDir: string; result: TrainResult<D>; value: number }[];
  /** The headline metric's name (e.g. `accuracy`). */
  metric: string;
  mean: number;
  /** Sample standard deviation (n − 1); 0 for one run. */
  std: number;
}

/**
 * Trains once per seed and reports the final evaluation's headline metric of each run and their mean ± std
 * (also written to `<outputDir>/seeds.json`). Fine-tuning BERT on small data varies a lot with the seed.
 */
export async function trainSeeds<B = unknown, D = ClassificationMetrics>(
  options: TrainSeedsOptions<B, D>,
): Promise<SeedsResult<D>> {
  if (options.adapter ? !options.adapter.evaluate : !options.dev) {
    throw new Error("trainSeeds needs dev features (an evaluation) to compare the seeds");
  }
  if (options.seeds.length === 0) throw new Error("trainSeeds needs at least one seed");
  const runs: SeedsResult<D>["runs"] = [];
  let metric = "";
  for (const s of options.seeds) {
    const { model, vocabPath } = await options.makeModel(s);
    try {
      const outputDir = join(options.outputDir, `seed-${s}`);
      if (!options.quiet) console.log(`--- seed ${s} -> ${outputDir}`);
      const { seeds: _seeds, makeModel: _make, ...rest } = options;
      const result = await train<B, D>({ ...rest, model, vocabPath, seed: s, outputDir });
      const headline = result.finalEval!.headline;
      metric = headline.name;
      runs.push({ seed: s, outputDir, result, value: headline.value });
    } finally {
      model.dispose();
    }
  }
  const values = runs.map((r) => r.value);
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const std = values.length > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1)) : 0;
  await writeJsonAtomic(join(options.outputDir, "seeds.json"), {
    metric,
    mean,
    std,
    runs: runs.map((r) => ({ seed: r.seed, output_dir: r.outputDir, [metric]: r.value })),
  });
  if (!options.quiet) {
    console.log(
      `${metric} over ${runs.length} seeds: ${mean.toFixed(4)} ± ${std.toFixed(4)} ` +
        `(${runs.map((r) => `seed ${r.seed}: ${r.value.toFixed(4)}`).join(", ")})`,
    );
  }
  return { runs, metric, mean, std };
}
