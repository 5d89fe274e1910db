/**
 * Examples → fixed-length BERT inputs, the way Google's `run_classifier.py` builds them:
 *
 * ```
 * single:  [CLS] a1 a2 a3 [SEP] [PAD] [PAD]        pair:  [CLS] a1 a2 [SEP] b1 b2 [SEP] [PAD]
 * types:     0   0  0  0    0     0     0                   0   0  0    0   1  1    1     0
 * mask:      1   1  1  1    1     0     0                   1   1  1    1   1  1    1     0
 * ```
 *
 * Too-long inputs are truncated: a single text keeps its first `maxSeqLength - 2` tokens; a pair loses tokens from
 * the end of whichever text is currently longer (ties: from the second), exactly like BERT's `_truncate_seq_pair`.
 *
 * Feature sets are saved as safetensors (`outputs/<run>/features/<split>.safetensors`) with the vocabulary's sha256,
 * the casing and the maximum length in the metadata, so that training refuses features made with another tokenizer.
 * @module
 */
import type { Dataset, Example } from "./datasets.ts";
import { i32, readSafetensors, type TensorEntry, writeSafetensors } from "../io/safetensors.ts";
import type { FullTokenizer } from "../text/tokenizer.ts";

/** What a feature file records about how it was made. */
export interface FeatureMetadata {
  /** sha256 of the vocabulary file's token list (see `Vocab.sha256`). */
  vocab_sha256: string;
  lower_case: boolean;
  max_seq_length: number;
  /** Label names; `labels[i]` is the name of label id `i`. */
  labels: string[];
  task: string;
  /** The file the examples came from. */
  source: string;
  /** Number of examples. */
  n: number;
  /** Where the vocabulary was read from, when known (lets `train` find a vocab built for the run). */
  vocab_path?: string;
}

/** Length statistics of a feature set. */
export interface FeatureStats {
  n: number;
  /** Examples longer than `maxSeqLength` (cut down to fit). */
  truncated: number;
  /** Real length per example including [CLS]/[SEP], before truncation. */
  lengths: Int32Array;
  maxLength: number;
  meanLength: number;
}

/** A whole split as flat row-major arrays, ready to become tensors. */
export interface FeatureSet {
  n: number;
  maxSeqLength: number;
  /** [n, maxSeqLength] */
  inputIds: Int32Array;
  /** [n, maxSeqLength] */
  tokenTypeIds: Int32Array;
  /** [n, maxSeqLength] 1 for real tokens, 0 for padding */
  attentionMask: Int32Array;
  /** [n] label index, -1 when unlabelled */
  labels: Int32Array;
  exampleIds: string[];
  metadata: FeatureMetadata;
  stats: FeatureStats;
}

/** One converted example (see {@linkcode convertExample}). */
export interface ConvertedExample {
  inputIds: number[];
  tokenTypeIds: number[];
  attentionMask: number[];
  /** The tokens kept, with [CLS]/[SEP], without padding. */
  tokens: string[];
  truncated: boolean;
  /** Length including [CLS]/[SEP] before truncation. */
  length: number;
}

/**
 * Shortens a pair in place until `a.length + b.length <= maxLength`, one item at a time from the end of the
 * longer list; on a tie the second list loses (BERT's `_truncate_seq_pair`).
 */
export function truncateSeqPair<T>(a: T[], b: T[], maxLength: number): void {
  while (a.length + b.length > maxLength) {
    if (a.length > b.length) a.pop();
    else b.pop();
  }
}

function checkMaxSeqLength(maxSeqLength: number, pair: boolean): void {
  const min = pair ? 3 : 2;
  if (!Number.isInteger(maxSeqLength) || maxSeqLength < min) {
    throw new Error(
      `max sequence length must be an integer >= ${min} (room for [CLS] and ${pair ? "two [SEP]" : "[SEP]"}), ` +
        `got ${maxSeqLength}`,
    );
  }
}

function checkSpecials(tokenizer: FullTokenizer): void {
  for (const [name, id] of [["[CLS]", tokenizer.clsId], ["[SEP]", tokenizer.sepId], ["[PAD]", tokenizer.padId]]) {
    if (id === undefined || (id as number) < 0) {
      throw new Error(`the vocabulary ${tokenizer.vocab.source ?? ""} has no ${name} token, which BERT inputs need`);
    }
  }
}

/** Ids of one example after truncation, with specials, and where segment b starts (or -1). */
function layout(example: Example, tokenizer: FullTokenizer, maxSeqLength: number) {
  const pair = example.textB !== undefined && example.textB !== null;
  checkMaxSeqLength(maxSeqLength, pair);
  const a = tokenizer.encode(example.textA ?? "").ids;
  const b = pair ? tokenizer.encode(example.textB as string).ids : [];
  const length = a.length + b.length + (pair ? 3 : 2);
  if (pair) truncateSeqPair(a, b, maxSeqLength - 3);
  else if (a.length > maxSeqLength - 2) a.length = maxSeqLength - 2;
  const ids = [tokenizer.clsId, ...a, tokenizer.sepId];
  if (pair) ids.push(...b, tokenizer.sepId);
  return { ids, segmentB: pair ? a.length + 2 : -1, length, truncated: length > maxSeqLength };
}

/**
 * Converts one example to `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` ids, token types (0 for CLS, a and its SEP;
 * 1 for b and its SEP) and attention mask, padded with the tokenizer's `padId` to `maxSeqLength`.
 */
export function convertExample(example: Example, tokenizer: FullTokenizer, maxSeqLength: number): ConvertedExample {
  checkSpecials(tokenizer);
  const { ids, segmentB, length, truncated } = layout(example, tokenizer, maxSeqLength);
  const inputIds = new Array<number>(maxSeqLength).fill(tokenizer.padId);
  const tokenTypeIds = new Array<number>(maxSeqLength).fill(0);
  const attentionMask = new Array<number>(maxSeqLength).fill(0);
  for (let i = 0; i < ids.length; i++) {
    inputIds[i] = ids[i];
    attentionMask[i] = 1;
    if (segmentB >= 0 && i >= segmentB) tokenTypeIds[i] = 1;
  }
  return { inputIds, tokenTypeIds, attentionMask, tokens: tokenizer.convertIdsToTokens(ids), truncated, length };
}

/** Options for {@linkcode convertExamples}. */
export interface ConvertOptions {
  maxSeqLength: number;
  /** Task name recorded in the metadata. */
  task: string;
  /** Called about every 1% (at most every 1000 examples) and once at the end. */
  onProgress?: (done: number, total: number) => void;
  /** Recorded as `vocab_path` in the metadata. */
  vocabPath?: string;
}

/** How often progress is reported: every ~1% of `total`, but at least every 1000 examples. */
export function progressStep(total: number): number {
  return Math.max(1, Math.min(1000, Math.ceil(total / 100)));
}

/**
 * Converts a whole dataset. Labels must be indices into `dataset.labels` (or absent: stored as -1).
 * Yields to the event loop at each progress report so notebooks can redraw.
 */
export async function convertExamples(
  dataset: Dataset,
  tokenizer: FullTokenizer,
  options: ConvertOptions,
): Promise<FeatureSet> {
  const L = options.maxSeqLength;
  checkMaxSeqLength(L, false);
  const examples = dataset.examples;
  const n = examples.length;
  checkSpecials(tokenizer);
  const inputIds = new Int32Array(n * L); // [n, L]
  const tokenTypeIds = new Int32Array(n * L); // [n, L]
  const attentionMask = new Int32Array(n * L); // [n, L]
  const labels = new Int32Array(n).fill(-1); // [n]
  const lengths = new Int32Array(n); // [n]
  const exampleIds: string[] = new Array(n);
  if (tokenizer.padId !== 0) inputIds.fill(tokenizer.padId);
  const step = progressStep(n);
  for (let e = 0; e < n; e++) {
    const ex = examples[e];
    const where = `${dataset.source}:${ex.line}`;
    let lay;
    try {
      lay = layout(ex, tokenizer, L);
    } catch (err) {
      throw new Error(`${where}: cannot convert example "${ex.id}": ${(err as Error).message}`);
    }
    const row = e * L;
    for (let i = 0; i < lay.ids.length; i++) {
      inputIds[row + i] = lay.ids[i];
      attentionMask[row + i] = 1;
      if (lay.segmentB >= 0 && i >= lay.segmentB) tokenTypeIds[row + i] = 1;
    }
    if (ex.label !== undefined && ex.label !== null) {
      if (!Number.isInteger(ex.label) || ex.label < 0 || ex.label >= dataset.labels.length) {
        throw new Error(
          `${where}: label ${ex.label} is not an index into the labels ` +
            `[${dataset.labels.join(", ")}] of example "${ex.id}"`,
        );
      }
      labels[e] = ex.label;
    }
    lengths[e] = lay.length;
    exampleIds[e] = ex.id;
    if (options.onProgress && ((e + 1) % step === 0 || e + 1 === n)) {
      options.onProgress(e + 1, n);
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  }
  if (n === 0) options.onProgress?.(0, 0);
  const metadata: FeatureMetadata = {
    vocab_sha256: await tokenizer.vocab.sha256(),
    lower_case: tokenizer.lowerCase,
    max_seq_length: L,
    labels: [...dataset.labels],
    task: options.task,
    source: dataset.source,
    n,
  };
  if (options.vocabPath) metadata.vocab_path = options.vocabPath;
  return {
    n,
    maxSeqLength: L,
    inputIds,
    tokenTypeIds,
    attentionMask,
    labels,
    exampleIds,
    metadata,
    stats: featureStats(lengths, L),
  };
}

// ---- saving and loading ----

/** Version of the on-disk layout, stored as `features_format` in the metadata. */
export const FEATURES_FORMAT = "1";

/**
 * Saves a feature set atomically as safetensors: `input_ids`, `token_type_ids`, `attention_mask` [n, L] I32,
 * `labels` [n] I32 and `lengths` [n] I32 (pre-truncation lengths); metadata values that are not strings are
 * JSON-encoded, `example_ids` is a JSON array.
 */
export async function saveFeatures(path: string, features: FeatureSet): Promise<void> {
  const { n, maxSeqLength: L } = features;
  const tensors: Record<string, TensorEntry> = {
    input_ids: i32([n, L], features.inputIds),
    token_type_ids: i32([n, L], features.tokenTypeIds),
    attention_mask: i32([n, L], features.attentionMask),
    labels: i32([n], features.labels),
    lengths: i32([n], features.stats.lengths),
  };
  const metadata: Record<string, string> = { features_format: FEATURES_FORMAT };
  for (const [k, v] of Object.entries(features.metadata)) {
    if (v !== undefined) metadata[k] = typeof v === "string" ? v : JSON.stringify(v);
  }
  metadata.example_ids = JSON.stringify(features.exampleIds);
  await writeSafetensors(path, tensors, metadata);
}

function parseMeta<T>(
  path: string,
  meta: Record<string, string>,
  key: string,
  check: (v: unknown) => v is T,
  what: string,
  json = true,
): T {
  if (!(key in meta)) {
    throw new Error(`${path}: not a features file: metadata "${key}" is missing (re-run \`deno task bert prepare\`)`);
  }
  let value: unknown = meta[key];
  if (json) {
    try {
      value = JSON.parse(meta[key]);
    } catch {
      throw new Error(`${path}: metadata "${key}" should be ${what}, got ${JSON.stringify(meta[key].slice(0, 80))}`);
    }
  }
  if (!check(value)) {
    throw new Error(`${path}: metadata "${key}" should be ${what}, got ${JSON.stringify(meta[key].slice(0, 80))}`);
  }
  return value;
}

const isString = (v: unknown): v is string => typeof v === "string";
const isBool = (v: unknown): v is boolean => typeof v === "boolean";
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);

/**
 * Loads and validates a feature file written by {@linkcode saveFeatures}; every problem is reported with the
 * file name (missing tensors, wrong dtypes or shapes, inconsistent metadata, out-of-range labels or mask values).
 */
export async function loadFeatures(path: string): Promise<FeatureSet> {
  const file = await readSafetensors(path);
  const meta = file.metadata;
  const version = parseMeta(path, meta, "features_format", isString, "a format version", false);
  if (version !== FEATURES_FORMAT) {
    throw new Error(
      `${path}: features format ${version} is not supported (expected ${FEATURES_FORMAT}); ` +
        `re-run \`deno task bert prepare\``,
    );
  }
  const metadata: FeatureMetadata = {
    vocab_sha256: parseMeta(path, meta, "vocab_sha256", isString, "a sha256", false),
    lower_case: parseMeta(path, meta, "lower_case", isBool, "true or false"),
    max_seq_length: parseMeta(path, meta, "max_seq_length", isCount, "a positive integer"),
    labels: parseMeta(path, meta, "labels", isStrings, "a JSON array of label names"),
    task: parseMeta(path, meta, "task", isString, "a task name", false),
    source: parseMeta(path, meta, "source", isString, "a file name", false),
    n: parseMeta(path, meta, "n", isCount, "a count"),
  };
  if (meta.vocab_path !== undefined) metadata.vocab_path = meta.vocab_path;
  const exampleIds = parseMeta(path, meta, "example_ids", isStrings, "a JSON array of strings");
  const { n, max_seq_length: L } = metadata;
  if (exampleIds.length !== n) {
    throw new Error(`${path}: metadata "example_ids" has ${exampleIds.length} ids but n is ${n}`);
  }
  const tensor = (name: string, shape: number[]): Int32Array => {
    const t = file.tensors[name];
    if (!t) throw new Error(`${path}: tensor "${name}" is missing (expected I32 ${JSON.stringify(shape)})`);
    if (t.dtype !== "I32" || JSON.stringify(t.shape) !== JSON.stringify(shape)) {
      throw new Error(
        `${path}: tensor "${name}" is ${t.dtype} ${JSON.stringify(t.shape)}, expected I32 ` +
          `${JSON.stringify(shape)} (n=${n}, max_seq_length=${L} from the metadata)`,
      );
    }
    return t.data as Int32Array;
  };
  const inputIds = tensor("input_ids", [n, L]);
  const tokenTypeIds = tensor("token_type_ids", [n, L]);
  const attentionMask = tensor("attention_mask", [n, L]);
  const labels = tensor("labels", [n]);
  const lengths = file.tensors.lengths ? tensor("lengths", [n]) : undefined;
  for (let i = 0; i < attentionMask.length; i++) {
    const m = attentionMask[i];
    if (m !== 0 && m !== 1) {
      throw new Error(`${path}: attention_mask[${Math.floor(i / L)}, ${i % L}] is ${m}, expected 0 or 1`);
    }
    if (inputIds[i] < 0) throw new Error(`${path}: input_ids[${Math.floor(i / L)}, ${i % L}] is negative`);
    if (tokenTypeIds[i] < 0) throw new Error(`${path}: token_type_ids[${Math.floor(i / L)}, ${i % L}] is negative`);
  }
  for (let i = 0; i < n; i++) {
    if (labels[i] < -1 || labels[i] >= metadata.labels.length) {
      throw new Error(
        `${path}: labels[${i}] is ${labels[i]}, expected -1 (unlabelled) or an index into ` +
          `[${metadata.labels.join(", ")}]`,
      );
    }
  }
  // Real lengths: stored before truncation, or (older files) the mask sums.
  const realLengths = lengths ?? new Int32Array(n).map((_, i) => {
    let s = 0;
    for (let j = 0; j < L; j++) s += attentionMask[i * L + j];
    return s;
  });
  return {
    n,
    maxSeqLength: L,
    inputIds,
    tokenTypeIds,
    attentionMask,
    labels,
    exampleIds,
    metadata,
    stats: featureStats(realLengths, L),
  };
}

/** Optional extra expectations for {@linkcode checkFeaturesMatch}. */
export interface MatchExpectations {
  /** Features must have exactly this maximum length. */
  maxSeqLength?: number;
  /** The model's position table: features longer than this cannot be run. */
  maxPositionEmbeddings?: number;
}

/**
 * Throws a clear error (naming `file`, both vocab hashes, casing and max length) when `features` were made with a
 * tokenizer other than `tokenizer`, or do not fit the given expectations.
 */
export async function checkFeaturesMatch(
  features: FeatureSet,
  tokenizer: FullTokenizer,
  file: string,
  expect: MatchExpectations = {},
): Promise<void> {
  const m = features.metadata;
  const sha = await tokenizer.vocab.sha256();
  const problems: string[] = [];
  if (m.vocab_sha256 !== sha) {
    problems.push(
      `vocabulary differs: features made with vocab sha256 ${m.vocab_sha256}` +
        `${m.vocab_path ? ` (${m.vocab_path})` : ""}, the model's tokenizer has vocab sha256 ${sha}`,
    );
  }
  if (m.lower_case !== tokenizer.lowerCase) {
    problems.push(
      `casing differs: features made with lower_case=${m.lower_case}, the tokenizer has ` +
        `lower_case=${tokenizer.lowerCase}`,
    );
  }
  if (expect.maxSeqLength !== undefined && m.max_seq_length !== expect.maxSeqLength) {
    problems.push(`max_seq_length differs: features have ${m.max_seq_length}, expected ${expect.maxSeqLength}`);
  }
  if (expect.maxPositionEmbeddings !== undefined && m.max_seq_length > expect.maxPositionEmbeddings) {
    problems.push(
      `max_seq_length ${m.max_seq_length} exceeds the model's max_position_embeddings ` +
        `${expect.maxPositionEmbeddings}`,
    );
  }
  if (problems.length) {
    throw new Error(
      `${file}: these features do not match the model's tokenizer ` +
        `(features: vocab ${m.vocab_sha256}, lower_case=${m.lower_case}, max_seq_length=${m.max_seq_length}; ` +
        `tokenizer: vocab ${sha}, lower_case=${tokenizer.lowerCase}):\n  - ${problems.join("\n  - ")}\n` +
        `Re-run \`deno task bert prepare\` with the checkpoint's vocabulary (--model DIR) and casing.`,
    );
  }
}

// ---- summaries for people ----

/** Counts of `lengths` in bins `[k*binWidth, (k+1)*binWidth)` from 0 up to the largest length. */
export function lengthHistogram(
  lengths: ArrayLike<number>,
  binWidth: number,
): { binStarts: number[]; counts: number[]; binWidth: number } {
  if (!(binWidth > 0) || !Number.isFinite(binWidth)) throw new Error(`bin width must be positive, got ${binWidth}`);
  let max = 0;
  for (let i = 0; i < lengths.length; i++) max = Math.max(max, lengths[i]);
  const bins = lengths.length ? Math.floor(max / binWidth) + 1 : 0;
  const counts = new Array<number>(bins).fill(0);
  for (let i = 0; i < lengths.length; i++) counts[Math.floor(lengths[i] / binWidth)]++;
  return { binStarts: counts.map((_, k) => k * binWidth), counts, binWidth };
}

/** The nearest-rank percentile (`p` in 0..100) of `values` (0 when empty). */
export function percentile(values: ArrayLike<number>, p: number): number {
  if (!values.length) return 0;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1];
}

function pct(part: number, whole: number): string {
  return whole ? `${((100 * part) / whole).toFixed(1)}%` : "0.0%";
}

/** Label counts as `name count (pct)` parts, plus unlabelled examples. */
export function labelBalance(features: FeatureSet): string {
  const names = features.metadata.labels;
  const counts = new Array<number>(names.length).fill(0);
  let unlabelled = 0;
  for (const l of features.labels) {
    if (l < 0) unlabelled++;
    else counts[l]++;
  }
  const parts = names.map((name, i) => `${name} ${counts[i]} (${pct(counts[i], features.n)})`);
  if (unlabelled) parts.push(`unlabelled ${unlabelled} (${pct(unlabelled, features.n)})`);
  return parts.join(", ");
}

/** Printable lines describing a feature set: size, labels, truncation, length percentiles, tokenizer. */
export function summarizeFeatures(features: FeatureSet): string[] {
  const { stats, metadata: m } = features;
  const L = features.maxSeqLength;
  return [
    `examples: ${features.n} from ${m.source} (task ${m.task})`,
    `labels: ${labelBalance(features) || "none"}`,
    `truncated to ${L} tokens: ${stats.truncated} (${pct(stats.truncated, stats.n)})`,
    `length in tokens incl. [CLS]/[SEP]: p50 ${percentile(stats.lengths, 50)}, p90 ${percentile(stats.lengths, 90)}, ` +
    `p99 ${percentile(stats.lengths, 99)}, max ${stats.maxLength}, mean ${stats.meanLength.toFixed(1)}`,
    `tokenizer: vocab sha256 ${m.vocab_sha256.slice(0, 12)}…, lower_case=${m.lower_case}`,
  ];
}

/**
 * Statistics of real (untruncated, with [CLS]/[SEP]) example lengths against `maxSeqLength`: an example longer than
 * it was truncated.
 */
export function featureStats(lengths: Int32Array, maxSeqLength: number): FeatureStats {
  let truncated = 0, maxLength = 0, sum = 0;
  for (const len of lengths) {
    if (len > maxSeqLength) truncated++;
    if (len > maxLength) maxLength = len;
    sum += len;
  }
  const n = lengths.length;
  return { n, truncated, lengths, maxLength, meanLength: n ? sum / n : 0 };
}
