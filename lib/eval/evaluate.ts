/**
 * Evaluation and prediction with a classification model:
 *
 * - {@linkcode featureBatch} turns rows of a {@linkcode FeatureSet} into input tensors (trailing padding columns
 *   that no row of the batch uses are cut off: the outputs are the same, the work is smaller);
 * - {@linkcode runInference} runs a model over a feature set in batches and returns logits, probabilities,
 *   predictions and the mean cross-entropy on labelled rows;
 * - {@linkcode evaluateCheckpoint} loads a saved checkpoint and features (refusing features made with another
 *   vocabulary), computes every metric and writes `eval_results.json` and `predictions.tsv`;
 * - {@linkcode predict} labels unlabelled texts (strings or a TSV/CSV column).
 * @module
 */
import { tf } from "../backends/backend.ts";
import { loadCheckpoint, type LoadReport } from "../model/checkpoint.ts";
import { type Dataset, type Example, readDelimited } from "../data/datasets.ts";
import {
  checkFeaturesMatch,
  convertExample,
  convertExamples,
  type FeatureSet,
  loadFeatures,
} from "../data/features.ts";
import { exists, join, writeFileAtomic, writeJsonAtomic } from "../io/fsutil.ts";
import { poolShape } from "../backends/blas/pool.ts";
import {
  type ClassificationMetrics,
  computeMetrics,
  type HeadlineMetric,
  headlineMetric,
  type MetricKind,
  scalarMetrics,
} from "./metrics.ts";
import type { BertModel } from "../model/model.ts";
import { unpaddedLength } from "../model/packing.ts";
import { getTask, TASKS } from "../data/tasks.ts";
import type { FullTokenizer } from "../text/tokenizer.ts";

/** Input tensors of one batch (dispose them with {@linkcode disposeBatch}). */
export interface FeatureBatch {
  /** [batch, seq] int32 */
  inputIds: tf.Tensor2D;
  /** [batch, seq] int32 */
  tokenTypeIds: tf.Tensor2D;
  /** [batch, seq] int32 */
  attentionMask: tf.Tensor2D;
  /** [batch] int32, -1 for unlabelled rows */
  labels: tf.Tensor1D;
  /** Rows in the batch. */
  size: number;
  /** Columns kept (≤ the features' max_seq_length). */
  seqLength: number;
}

/** Options of {@linkcode featureBatch}. */
export interface FeatureBatchOptions {
  /** Cut trailing columns that are padding in every row of the batch (default true). */
  trimPadding?: boolean;
  /**
   * Keep a multiple of this many columns when trimming (default 1: exactly the used columns). Evaluation passes
   * {@linkcode TRIM_MULTIPLE}; training keeps 1, because dropout draws its masks over the batch's shape, so a training
   * run's results depend on it.
   */
  multipleOf?: number;
}

/** Builds the tensors for rows `indices` of `features`. */
export function featureBatch(
  features: FeatureSet,
  indices: ArrayLike<number>,
  options: FeatureBatchOptions = {},
): FeatureBatch {
  const L = features.maxSeqLength;
  const b = indices.length;
  if (b === 0) throw new Error("featureBatch: no rows");
  const seq = options.trimPadding ?? true ? usedLength(features, indices, options.multipleOf) : L;
  poolShape(`${b}x${seq}`); // a new batch shape: the blas backend's pool drops arrays sized for earlier ones
  const ids = new Int32Array(b * seq), types = new Int32Array(b * seq), mask = new Int32Array(b * seq);
  const labels = new Int32Array(b);
  for (let r = 0; r < b; r++) {
    const i = indices[r];
    if (!(i >= 0 && i < features.n)) throw new Error(`featureBatch: row ${i} is out of range (n = ${features.n})`);
    ids.set(features.inputIds.subarray(i * L, i * L + seq), r * seq);
    types.set(features.tokenTypeIds.subarray(i * L, i * L + seq), r * seq);
    mask.set(features.attentionMask.subarray(i * L, i * L + seq), r * seq);
    labels[r] = features.labels[i];
  }
  return {
    inputIds: tf.tensor2d(ids, [b, seq], "int32"),
    tokenTypeIds: tf.tensor2d(types, [b, seq], "int32"),
    attentionMask: tf.tensor2d(mask, [b, seq], "int32"),
    labels: tf.tensor1d(labels, "int32"),
    size: b,
    seqLength: seq,
  };
}

/** Frees the tensors of a batch. */
export function disposeBatch(batch: FeatureBatch): void {
  batch.inputIds.dispose();
  batch.tokenTypeIds.dispose();
  batch.attentionMask.dispose();
  batch.labels.dispose();
}

/** What {@linkcode runInference} returns. */
export interface InferenceResult {
  /** Rows evaluated. */
  n: number;
  /** Number of classes. */
  numLabels: number;
  /** [n, numLabels] row-major */
  logits: Float32Array;
  /** [n, numLabels] softmax of the logits */
  probabilities: Float32Array;
  /** [n] argmax of the logits */
  predictions: Int32Array;
  /** Mean cross-entropy over the labelled rows (NaN when none is labelled). */
  loss: number;
  /** Number of labelled rows. */
  labelled: number;
}

/** Options of {@linkcode runInference}. */
export interface InferenceOptions {
  /** Rows per forward pass (default 64). */
  batchSize?: number;
  /** Called after each batch with rows done so far. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Batch rows of similar length together (sorted by their unpadded length; results are returned in the
   * features' order), so that each batch is trimmed to less padding. Default true; the logits then differ from
   * unsorted batches only by float rounding (different product shapes).
   */
  sortByLength?: boolean;
}

/** Padded rows: `n` rows of `maxSeqLength` attention-mask values (a {@linkcode FeatureSet}, SQuAD windows). */
export interface PaddedRows {
  /** [n, maxSeqLength] row-major, 1 for real tokens, 0 for padding */
  attentionMask: ArrayLike<number>;
  maxSeqLength: number;
  n: number;
}

/**
 * Columns an evaluation batch keeps: {@linkcode usedLength} rounded up to a multiple of this (at most the rows' full
 * length; {@linkcode runInference}, and SQuAD's `squadLogits`). The `blas` backend's attention runs its vector
 * softmax only when the sequence length is a multiple of 4 (other lengths take float64 row sums, to keep the
 * JavaScript path's bits: a Tiny batch of 32 x 150 tokens spends ~15 ms in attention against ~10 ms at 152), and a
 * coarser step makes neighbouring batches of a length-sorted evaluation share one shape (a new shape costs fresh
 * memory).
 */
export const TRIM_MULTIPLE = 8;

/**
 * Columns that rows `indices` of `rows` use: 1 + the last position whose attention mask is not 0 in any of them
 * (at least 1), rounded up to a multiple of `multipleOf` (default 1: the exact count; evaluation uses
 * {@linkcode TRIM_MULTIPLE}) but not past `rows.maxSeqLength`. Cutting a batch to it changes no output at the real
 * tokens: padding is masked out of attention.
 */
export function usedLength(rows: PaddedRows, indices: ArrayLike<number>, multipleOf = 1): number {
  const L = rows.maxSeqLength;
  let seq = 1;
  for (let r = 0; r < indices.length; r++) seq = Math.max(seq, unpaddedLength(rows.attentionMask, indices[r] * L, L));
  return Math.min(L, Math.ceil(seq / multipleOf) * multipleOf);
}

/**
 * Row indices ordered by unpadded length (the last attention-mask 1), longest first, ties in row order. Longest
 * first so that each batch is no longer than the one before it: the `blas` backend's pool then serves its arrays
 * from the buffers of the last batch instead of new memory (see lib/backends/blas/pool.ts).
 */
export function lengthOrder(features: PaddedRows): Int32Array {
  const L = features.maxSeqLength, n = features.n;
  const len = new Int32Array(n);
  for (let i = 0; i < n; i++) len[i] = Math.max(1, unpaddedLength(features.attentionMask, i * L, L));
  return new Int32Array(n).map((_, i) => i).sort((a, b) => len[b] - len[a] || a - b);
}

/**
 * Runs `model` (classification head) over every row of `features`, without dropout. The loss is computed in
 * float64 from the float32 logits (log-softmax), like PyTorch's cross-entropy up to rounding.
 */
export async function runInference(
  model: BertModel,
  features: FeatureSet,
  options: InferenceOptions = {},
): Promise<InferenceResult> {
  if (model.head !== "classification") {
    throw new Error(`runInference needs a classification model, this one has the "${model.head}" head`);
  }
  const batchSize = options.batchSize ?? 64;
  if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new Error(`batch size must be >= 1, got ${batchSize}`);
  const k = model.numLabels;
  const n = features.n;
  const logits = new Float32Array(n * k);
  const order = options.sortByLength === false ? undefined : lengthOrder(features);
  for (let start = 0; start < n; start += batchSize) {
    const indices = Array.from({ length: Math.min(batchSize, n - start) }, (_, j) => order?.[start + j] ?? start + j);
    const batch = featureBatch(features, indices, { multipleOf: TRIM_MULTIPLE });
    try {
      // clsOnly: the last layer at [CLS] only, all the classifier reads (the same logits, less work).
      const out = tf.tidy(() => model.forward(batch, { training: false, clsOnly: true }).logits!); // [batch, numLabels]
      const values = await out.data() as Float32Array; // asynchronous: webgpu has no synchronous read
      for (let j = 0; j < indices.length; j++) logits.set(values.subarray(j * k, (j + 1) * k), indices[j] * k);
      out.dispose();
    } finally {
      disposeBatch(batch);
    }
    options.onProgress?.(Math.min(n, start + batchSize), n);
  }
  const probabilities = new Float32Array(n * k);
  const predictions = new Int32Array(n);
  let lossSum = 0, labelled = 0;
  for (let i = 0; i < n; i++) {
    const row = logits.subarray(i * k, (i + 1) * k);
    let max = -Infinity, best = 0;
    for (let j = 0; j < k; j++) {
      if (row[j] > max) {
        max = row[j];
        best = j;
      }
    }
    let sum = 0;
    for (let j = 0; j < k; j++) sum += Math.exp(row[j] - max);
    for (let j = 0; j < k; j++) probabilities[i * k + j] = Math.exp(row[j] - max) / sum;
    predictions[i] = best;
    const y = features.labels[i];
    if (y >= 0) {
      if (y >= k) throw new Error(`label ${y} of row ${i} is out of range for a ${k}-label classifier`);
      lossSum += -(row[y] - max - Math.log(sum));
      labelled++;
    }
  }
  return { n, numLabels: k, logits, probabilities, predictions, loss: labelled ? lossSum / labelled : NaN, labelled };
}

/** Options of {@linkcode evaluateFeatures}. */
export interface EvaluateFeaturesOptions extends InferenceOptions {
  /** Class names (default: the features' label names). */
  labelNames?: string[];
}

/** Inference plus every metric (with the model's loss in `metrics.loss`) on labelled features. */
export async function evaluateFeatures(
  model: BertModel,
  features: FeatureSet,
  options: EvaluateFeaturesOptions = {},
): Promise<{ metrics: ClassificationMetrics; inference: InferenceResult }> {
  const inference = await runInference(model, features, options);
  if (inference.labelled !== features.n) {
    throw new Error(
      `${features.metadata.source}: ${features.n - inference.labelled} of ${features.n} examples have no label; ` +
        `evaluation needs labelled data (use predict for unlabelled data)`,
    );
  }
  const k = inference.numLabels;
  const rows = Array.from({ length: features.n }, (_, i) => inference.probabilities.subarray(i * k, (i + 1) * k));
  const metrics = computeMetrics({
    labels: features.labels,
    predictions: inference.predictions,
    probabilities: rows,
    labelNames: options.labelNames ?? features.metadata.labels,
  });
  metrics.loss = inference.loss;
  return { metrics, inference };
}

/** The metric kind of a task name (`accuracy` for unknown tasks). */
export function metricKindOf(task: string | undefined): MetricKind {
  return (task && Object.hasOwn(TASKS, task) ? TASKS[task].metric : "accuracy") as MetricKind;
}

/** A boxed, impossible-to-miss multi-line warning (printed to stderr by callers). */
export function boxedWarning(lines: string[]): string {
  const width = Math.max(...lines.map((l) => l.length), 20);
  const bar = "!".repeat(width + 6);
  return [bar, ...lines.map((l) => `!! ${l.padEnd(width)} !!`), bar].join("\n");
}

const GENERIC_LABEL = /^LABEL_\d+$/;

/** Label names agreed between a checkpoint's `id2label` and the features' names (throws when they conflict). */
function agreeLabels(checkpointLabels: string[] | undefined, featureLabels: string[], where: string): string[] {
  if (!checkpointLabels || checkpointLabels.every((l) => GENERIC_LABEL.test(l))) {
    if (checkpointLabels && checkpointLabels.length !== featureLabels.length) {
      throw new Error(
        `${where}: the checkpoint's classifier has ${checkpointLabels.length} labels, the features have ` +
          `${featureLabels.length} (${featureLabels.join(", ")})`,
      );
    }
    return featureLabels;
  }
  if (checkpointLabels.join("\u0000") !== featureLabels.join("\u0000")) {
    throw new Error(
      `${where}: label names differ: the checkpoint predicts [${checkpointLabels.join(", ")}], the features are ` +
        `labelled [${featureLabels.join(", ")}]; evaluate with features of the task the checkpoint was trained on`,
    );
  }
  return featureLabels;
}

function checkpointLabelNames(dir: string, raw: Record<string, unknown>): string[] | undefined {
  const id2label = raw.id2label as Record<string, string> | undefined;
  if (!id2label || typeof id2label !== "object") return undefined;
  const n = Object.keys(id2label).length;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const name = id2label[String(i)];
    if (typeof name !== "string") throw new Error(`${dir}/config.json: id2label has no entry for ${i}`);
    out.push(name);
  }
  return out;
}

async function readConfigJson(dir: string): Promise<Record<string, unknown>> {
  for (const name of ["config.json", "bert_config.json"]) {
    const path = join(dir, name);
    if (!(await exists(path))) continue;
    try {
      return JSON.parse(await Deno.readTextFile(path));
    } catch (err) {
      throw new Error(`${path}: not valid JSON (${(err as Error).message}); the checkpoint folder is damaged`);
    }
  }
  throw new Error(`${dir}: no config.json (is this a checkpoint folder?)`);
}

/** Re-reads the source texts of a feature set (by example id) via its task's reader; empty map when impossible. */
export async function sourceTexts(features: FeatureSet): Promise<Map<string, string>> {
  const { task, source } = features.metadata;
  const texts = new Map<string, string>();
  if (!Object.hasOwn(TASKS, task) || !(await exists(source))) return texts;
  try {
    const dataset = await getTask(task).read(source, { skipBadRows: true, quiet: true });
    for (const e of dataset.examples) texts.set(e.id, e.textB !== undefined ? `${e.textA} ||| ${e.textB}` : e.textA);
  } catch {
    // Texts are a convenience in predictions.tsv; metrics do not need them.
  }
  return texts;
}

function tsvCell(text: string): string {
  return text.replace(/\r\n|[\t\r\n]/g, " ");
}

/** `predictions.tsv` rows: id, text, gold, predicted, one probability column per class. */
export function predictionsTsv(options: {
  ids: string[];
  texts: (string | undefined)[];
  gold?: ArrayLike<number>;
  predictions: ArrayLike<number>;
  probabilities: Float32Array;
  labelNames: string[];
}): string {
  const { labelNames: names } = options;
  const k = names.length;
  const header = ["id", "text", ...(options.gold ? ["gold"] : []), "predicted", ...names.map((l) => `p_${l}`)];
  const lines = [header.join("\t")];
  for (let i = 0; i < options.ids.length; i++) {
    const cells = [tsvCell(options.ids[i]), tsvCell(options.texts[i] ?? "")];
    if (options.gold) cells.push(options.gold[i] >= 0 ? names[options.gold[i]] : "");
    cells.push(names[options.predictions[i]]);
    for (let j = 0; j < k; j++) cells.push(options.probabilities[i * k + j].toFixed(6));
    lines.push(cells.join("\t"));
  }
  return lines.join("\n") + "\n";
}

/** Options of {@linkcode evaluateCheckpoint}. */
export interface EvaluateCheckpointOptions {
  /** A checkpoint folder (HF layout, e.g. `outputs/<run>/checkpoint-500`). */
  checkpoint: string;
  /** A features file written by `prepare` (or an already loaded feature set). */
  features?: string | FeatureSet;
  /** A raw data file, read with `task`'s reader and tokenized with the checkpoint's vocabulary. */
  data?: string;
  /** Task name (metric and reader; default: the features' task). */
  task?: string;
  /** Max sequence length when tokenizing `data` (default 128). */
  maxSeqLength?: number;
  /** Rows per forward pass (default 64). */
  batchSize?: number;
  /** Where to write `eval_results.json` and `predictions.tsv` (default: the checkpoint folder). */
  outputDir?: string;
  /** Do not write files (default false). */
  noWrite?: boolean;
  /** Print nothing but warnings. */
  quiet?: boolean;
}

/** What {@linkcode evaluateCheckpoint} returns. */
export interface EvaluationResult {
  metrics: ClassificationMetrics;
  headline: HeadlineMetric;
  inference: InferenceResult;
  /** The loaded checkpoint's missing/unused weights. */
  report: LoadReport;
  /** True when the classifier head was not in the checkpoint (random: metrics are meaningless). */
  headNewlyInitialised: boolean;
  resultsPath?: string;
  predictionsPath?: string;
  labelNames: string[];
}

/**
 * Evaluates a saved checkpoint on labelled features (or a raw data file): metrics, loss, `eval_results.json` and
 * `predictions.tsv` (beside the checkpoint unless `outputDir` is given).
 *
 * @example
 * ```ts
 * const r = await evaluateCheckpoint({ checkpoint: "outputs/default/checkpoint-48",
 *   features: "outputs/default/features/dev.safetensors" });
 * console.log(r.headline.text);
 * ```
 */
export async function evaluateCheckpoint(options: EvaluateCheckpointOptions): Promise<EvaluationResult> {
  const { checkpoint } = options;
  if (!options.features && !options.data) throw new Error("evaluateCheckpoint needs features or data");
  const raw = await readConfigJson(checkpoint);
  const ckptLabels = checkpointLabelNames(checkpoint, raw);

  let features: FeatureSet | undefined;
  let featuresFile = "";
  let dataset: Dataset | undefined;
  if (options.features) {
    featuresFile = typeof options.features === "string" ? options.features : options.features.metadata.source;
    features = typeof options.features === "string" ? await loadFeatures(options.features) : options.features;
  } else {
    const taskName = options.task ?? raw.finetuning_task as string | undefined;
    if (!taskName) throw new Error(`evaluating a data file needs --task (one of ${Object.keys(TASKS).join(", ")})`);
    dataset = await getTask(taskName).read(options.data!);
  }
  const labels = agreeLabels(
    ckptLabels,
    features ? features.metadata.labels : dataset!.labels,
    featuresFile || options.data!,
  );
  const loaded = await loadCheckpoint(checkpoint, { head: "classification", labels, quiet: true });
  const { model, tokenizer, report } = loaded;
  try {
    const headNew = report.newlyInitialised.filter((n) => n.startsWith("classifier."));
    if (headNew.length) {
      console.warn(boxedWarning([
        "WARNING: the classifier head was NOT in this checkpoint:",
        `  ${checkpoint}`,
        `newly initialised at random: ${headNew.join(", ")}`,
        "These predictions are random guesses and the metrics below are MEANINGLESS.",
        "Fine-tune first (deno task bert train) and evaluate the checkpoint it writes.",
      ]));
    }
    if (features) {
      await checkFeaturesMatch(features, tokenizer, featuresFile, {
        maxPositionEmbeddings: model.config.maxPositionEmbeddings,
      });
    } else {
      features = await convertExamples(dataset!, tokenizer, {
        maxSeqLength: options.maxSeqLength ?? 128,
        task: options.task ?? "unknown",
      });
    }
    const task = options.task ?? features.metadata.task;
    const kind = metricKindOf(task);
    const { metrics, inference } = await evaluateFeatures(model, features, {
      batchSize: options.batchSize,
      labelNames: labels,
    });
    const headline = headlineMetric(kind, metrics);
    const result: EvaluationResult = {
      metrics,
      headline,
      inference,
      report,
      headNewlyInitialised: headNew.length > 0,
      labelNames: labels,
    };
    if (!options.noWrite) {
      const outDir = options.outputDir ?? checkpoint;
      result.resultsPath = join(outDir, "eval_results.json");
      result.predictionsPath = join(outDir, "predictions.tsv");
      await writeJsonAtomic(result.resultsPath, evalResultsJson({ checkpoint, featuresFile, task, metrics, headline }));
      const texts = dataset
        ? new Map(dataset.examples.map((e) => [e.id, e.textB !== undefined ? `${e.textA} ||| ${e.textB}` : e.textA]))
        : await sourceTexts(features);
      await writeFileAtomic(
        result.predictionsPath,
        predictionsTsv({
          ids: features.exampleIds,
          texts: features.exampleIds.map((id) => texts.get(id)),
          gold: features.labels,
          predictions: inference.predictions,
          probabilities: inference.probabilities,
          labelNames: labels,
        }),
      );
    }
    if (!options.quiet) {
      console.log(`${checkpoint}: ${headline.text} (loss ${metrics.loss!.toFixed(4)}, n=${metrics.n})`);
    }
    return result;
  } finally {
    model.dispose();
  }
}

/** The JSON written to `eval_results.json`. */
export function evalResultsJson(options: {
  checkpoint: string;
  featuresFile: string;
  task: string;
  metrics: ClassificationMetrics;
  headline: HeadlineMetric;
}): Record<string, unknown> {
  const { metrics } = options;
  return {
    checkpoint: options.checkpoint,
    features: options.featuresFile,
    task: options.task,
    n: metrics.n,
    headline: { name: options.headline.name, value: options.headline.value, text: options.headline.text },
    ...scalarMetrics(metrics),
    label_names: metrics.labelNames,
    confusion_matrix: metrics.confusionMatrix,
    per_class: metrics.perClass,
    roc_curve: metrics.rocCurve,
    pr_curve: metrics.prCurve,
  };
}

/** Options of {@linkcode predict}. */
export interface PredictOptions {
  /** A fine-tuned checkpoint folder. */
  checkpoint: string;
  /** Texts to label. */
  texts?: string[];
  /** Second texts of pairs (same length as `texts`), for pair tasks. */
  textPairs?: string[];
  /** A TSV/CSV file with a header. */
  file?: string;
  /** Column of `file` with the text (default `text`; `sentence` is tried too). */
  column?: string;
  /** Column with the second text, for pair tasks. */
  pairColumn?: string;
  /** Max sequence length (default 128). */
  maxSeqLength?: number;
  batchSize?: number;
}

/** One predicted example. */
export interface Prediction {
  id: string;
  text: string;
  textPair?: string;
  label: string;
  /** Probability per label name. */
  probabilities: Record<string, number>;
}

/**
 * Labels unlabelled texts with a fine-tuned checkpoint.
 *
 * @example
 * ```ts
 * const { predictions } = await predict({ checkpoint: "outputs/default/checkpoint-48", texts: ["great film"] });
 * predictions[0].label; // "positive"
 * ```
 */
export async function predict(
  options: PredictOptions,
): Promise<{ predictions: Prediction[]; labelNames: string[]; headNewlyInitialised: boolean }> {
  const raw = await readConfigJson(options.checkpoint);
  const labelNames = checkpointLabelNames(options.checkpoint, raw);
  let examples: Example[];
  if (options.file) {
    let column = options.column ?? "text";
    if (options.column === undefined) {
      const head = (await Deno.readTextFile(options.file)).split(/\r?\n/, 1)[0];
      const sep = options.file.endsWith(".csv") ? "," : "\t";
      const names = head.split(sep).map((s) => s.trim().replace(/^"|"$/g, ""));
      if (!names.includes("text") && names.includes("sentence")) column = "sentence";
    }
    const ds = await readDelimited(options.file, { textColumn: column, textPairColumn: options.pairColumn });
    examples = ds.examples;
  } else if (options.texts) {
    if (options.textPairs && options.textPairs.length !== options.texts.length) {
      throw new Error(`${options.texts.length} texts but ${options.textPairs.length} second texts`);
    }
    examples = options.texts.map((textA, i) => ({ id: String(i), textA, textB: options.textPairs?.[i], line: i + 1 }));
  } else {
    throw new Error("predict needs texts or a file");
  }
  const { model, tokenizer, report } = await loadCheckpoint(options.checkpoint, {
    head: "classification",
    labels: labelNames,
    quiet: true,
  });
  try {
    const headNew = report.newlyInitialised.some((n) => n.startsWith("classifier."));
    if (headNew) {
      console.warn(boxedWarning([
        `WARNING: ${options.checkpoint} has no fine-tuned classifier head;`,
        "it was initialised at random, so these predictions are MEANINGLESS.",
      ]));
    }
    const names = labelNames ?? Array.from({ length: model.numLabels }, (_, i) => `LABEL_${i}`);
    const features = featuresFromExamples(examples, tokenizer, options.maxSeqLength ?? 128);
    const inference = await runInference(model, features, { batchSize: options.batchSize });
    const k = inference.numLabels;
    const predictions = examples.map((e, i) => ({
      id: e.id,
      text: e.textA,
      ...(e.textB !== undefined ? { textPair: e.textB } : {}),
      label: names[inference.predictions[i]],
      probabilities: Object.fromEntries(names.map((l, j) => [l, inference.probabilities[i * k + j]])),
    }));
    return { predictions, labelNames: names, headNewlyInitialised: headNew };
  } finally {
    model.dispose();
  }
}

/** Unlabelled in-memory features for `examples` (no file, no metadata hashes). */
function featuresFromExamples(examples: Example[], tokenizer: FullTokenizer, maxSeqLength: number): FeatureSet {
  const n = examples.length;
  const L = maxSeqLength;
  const inputIds = new Int32Array(n * L), tokenTypeIds = new Int32Array(n * L), attentionMask = new Int32Array(n * L);
  const lengths = new Int32Array(n);
  let truncated = 0;
  examples.forEach((e, i) => {
    const c = convertExample(e, tokenizer, L);
    inputIds.set(c.inputIds, i * L);
    tokenTypeIds.set(c.tokenTypeIds, i * L);
    attentionMask.set(c.attentionMask, i * L);
    lengths[i] = c.length;
    if (c.truncated) truncated++;
  });
  return {
    n,
    maxSeqLength: L,
    inputIds,
    tokenTypeIds,
    attentionMask,
    labels: new Int32Array(n).fill(-1),
    exampleIds: examples.map((e) => e.id),
    metadata: {
      vocab_sha256: "",
      lower_case: tokenizer.lowerCase,
      max_seq_length: L,
      labels: [],
      task: "predict",
      source: "<texts>",
      n,
    },
    stats: { n, truncated, lengths, maxLength: lengths.reduce((a, b) => Math.max(a, b), 0), meanLength: 0 },
  };
}
