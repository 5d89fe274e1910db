/**
 * Tasks: what the training loop trains on. A {@linkcode TrainTask} tells the loop what one training example is and
 * how to score the model; the loop does everything else (schedule, AdamW, accumulation, clipping, NaN stop,
 * checkpoints, exact resume, rotation, progress, evaluation hooks).
 *
 * ## Writing a task adapter
 *
 * An adapter has `name`, `head` (the model head it needs), `n` (number of training rows; an epoch is a seeded
 * shuffle of `0..n-1`), `fingerprint()` (identity of the training data: resuming on other data is refused),
 * `batch(rows, {seed, step})` -> your batch object, `loss(model, batch, {training, seed})` -> the batch's MEAN loss
 * as a `tf.Scalar` (called inside `lossAndGrads` (lib/training/step.ts): build it from `model.forward(...,
 * {training, seed})`, do not dispose the batch there), `disposeBatch(batch)`, and optionally `evaluate(model,
 * {batchSize})` -> `{metrics, headline, details?}`, `check(model, {vocabPath})` (refuse mismatched data before
 * training), `describe()` (what goes into `trainer_state.json`), `labels`, `lowerCase`, `defaultMetric`,
 * `metricNames`, `canonicalMetric(name)` and `greaterIsBetter(name)`. Then
 * `train({ model, vocabPath, outputDir, task, ...hyperParameters })`. Complete examples: `classificationTask`
 * (lib/tasks/classification/task.ts), `squadTask` (lib/tasks/squad/train.ts), `pretrainingTask`
 * (lib/tasks/pretraining/task.ts).
 * @module
 */
import type { tf } from "../backends/backend.ts";
import type { BertModel, HeadKind } from "../model/model.ts";
import { Vocab } from "../text/vocab.ts";

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
 * evaluation hooks. See the module documentation for a walk-through.
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
   * The batch's MEAN loss per example, as a scalar. Called inside `lossAndGrads` (lib/training/step.ts): compute it
   * from `model.forward(inputs, { training, seed })`; do not dispose `batch` here. With gradient accumulation the
   * loop weights each micro-batch by its share of the update's rows.
   */
  loss(model: BertModel, batch: B, options: TaskLossOptions): tf.Scalar;
  /** Frees the tensors of a batch. */
  disposeBatch(batch: B): void;
  /** Scores the model on held-out data; without it there is no evaluation and no best checkpoint. */
  evaluate?(model: BertModel, options: { batchSize: number }): Promise<TaskEvaluation<D>> | TaskEvaluation<D>;
}

/** The canonical name of metric `name` for `task` (its `canonicalMetric`, else checked against `metricNames`). */
export function canonicalMetric(task: TrainTask, name: string): string {
  if (task.canonicalMetric) return task.canonicalMetric(name);
  if (task.metricNames && !task.metricNames.includes(name)) {
    throw new Error(`unknown metric "${name}" for ${task.name}; valid names: ${task.metricNames.join(", ")}`);
  }
  return name;
}

/** Whether a larger value of metric `name` is better for `task` (default: unless it names a loss or perplexity). */
export function higherIsBetter(task: TrainTask, name: string): boolean {
  return task.greaterIsBetter ? task.greaterIsBetter(name) : !/loss|perplexity/i.test(name);
}

/**
 * The metric that picks the best checkpoint: `requested` (the caller's `metricForBest`, which needs an evaluation),
 * else the task's default when it evaluates, else undefined (the first evaluation's headline decides, or a
 * resumed run's saved choice).
 */
export function chooseMetricForBest(task: TrainTask, requested?: string): string | undefined {
  if (requested !== undefined) {
    const metric = canonicalMetric(task, requested);
    if (!task.evaluate) {
      throw new Error(
        `--metric-for-best ${requested} needs dev features to evaluate on (the ${task.name} task has no evaluation)`,
      );
    }
    return metric;
  }
  return task.evaluate && task.defaultMetric ? canonicalMetric(task, task.defaultMetric) : undefined;
}

/**
 * The checks before any training: the model's head is the task's, the task's own `check` (labels, features made
 * with this vocabulary), some training rows, a vocabulary no larger than the model's embeddings.
 */
export async function checkTaskInputs(
  task: TrainTask,
  model: BertModel,
  vocabPath: string,
): Promise<void> {
  if (model.head !== task.head) {
    throw new Error(`the ${task.name} task trains a ${task.head} model, got a model with head "${model.head}"`);
  }
  if (task.check) await task.check(model, { vocabPath });
  if (!(Number.isInteger(task.n) && task.n > 0)) throw new Error(`the ${task.name} task has no training rows`);
}

/** Throws when the vocabulary at `vocabPath` has more tokens than the model has embedding rows. */
export async function checkVocabFits(vocabPath: string, model: BertModel): Promise<void> {
  const vocab = await Vocab.load(vocabPath);
  if (vocab.size > model.config.vocabSize) {
    throw new Error(`${vocabPath} has ${vocab.size} tokens, the model only ${model.config.vocabSize}`);
  }
}
