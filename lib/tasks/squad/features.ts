/**
 * SQuAD examples -> model inputs, as `convert_examples_to_features` of Google's `run_squad.py` does it: the
 * question (cut to `maxQueryLength` sub-tokens) and a sliding window over the context's sub-tokens
 * (`docStride` apart) fill `[CLS] question [SEP] context-window [SEP]` rows of `maxSeqLength`. Every window
 * records which context word each of its tokens came from (`token_to_orig_map`) and whether it is the window
 * that gives the token its most context (`token_is_max_context`), so predictions can be mapped back to text.
 * For training, the answer's sub-token span is refined with `_improve_answer_span` and windows that do not
 * contain it point at `[CLS]` (start = end = 0).
 *
 * Speed: a paragraph's words are tokenized once for all its questions (and each distinct word once), so the
 * 10,570 dev questions convert in a few seconds.
 *
 * On disk (`outputs/<run>/features/<split>.safetensors` + `<split>.windows.json`, both atomic): the safetensors
 * file holds `input_ids`, `token_type_ids`, `attention_mask` (I32 [windows, L]), `example_index` (I32 [windows])
 * and, for training, `start_positions` / `end_positions` (I32 [windows]); the JSON sidecar holds the questions,
 * the paragraphs' sub-tokens with their word maps, and per window its context range and max-context flags. Both
 * carry the same `features_id`, so a mismatched pair is refused.
 * @module
 */
import { basename, dirname, join, writeFileAtomic } from "../../io/fsutil.ts";
import { i32, readSafetensors, type TensorEntry, writeSafetensors } from "../../io/safetensors.ts";
import {
  type NBestEntry,
  type ParagraphTokens,
  parseSquad,
  type PostprocessOptions,
  postprocessSquad,
  readSquad,
  type ReadSquadOptions,
  splitContext,
  type SquadDataset,
  type SquadExample,
  type SquadWindow,
  type SquadWindowSet,
  type WindowLogits,
} from "./squad.ts";
import type { FullTokenizer } from "../../text/tokenizer.ts";

/** Options for {@linkcode convertSquadExamples}. */
export interface SquadFeatureOptions {
  /** Window length in tokens, including [CLS] and the two [SEP]. Default 384. */
  maxSeqLength?: number;
  /** Sub-tokens between the starts of consecutive windows over a long context. Default 128. */
  docStride?: number;
  /** Questions are cut to this many sub-tokens. Default 64. */
  maxQueryLength?: number;
  /** Make training targets (`start_positions` / `end_positions`). Default false. */
  training?: boolean;
  /** Called now and then with (questions done, total). */
  onProgress?: (done: number, total: number) => void;
}

/** What a SQuAD feature file records about how it was made. */
export interface SquadFeatureMetadata {
  task: "squad";
  /** sha256 of the vocabulary (see `Vocab.sha256`). */
  vocab_sha256: string;
  lower_case: boolean;
  max_seq_length: number;
  doc_stride: number;
  max_query_length: number;
  training: boolean;
  /** The SQuAD file read. */
  source: string;
  /** Its `version` field. */
  version: string;
  /** Number of windows (rows). */
  n: number;
  /** Random id shared by the safetensors file and its `.windows.json`. */
  features_id: string;
}

/** Counts reported after conversion. */
export interface SquadFeatureStats {
  /** Questions converted. */
  examples: number;
  /** Windows (rows) produced. */
  windows: number;
  /** Distinct paragraphs tokenized. */
  paragraphs: number;
  /** Questions whose context needed more than one window. */
  multiWindowExamples: number;
  /** Most windows for one question. */
  maxWindowsPerExample: number;
  /** Questions longer than `maxQueryLength` sub-tokens (cut). */
  questionsTruncated: number;
  /** Training only: answers that lie in no window (every window of the question points at [CLS]). */
  answersLost: number;
  /** Longest context in sub-tokens. */
  maxContextTokens: number;
  /** Wall-clock seconds of the conversion. */
  seconds: number;
}

/** A converted split: flat row-major arrays plus everything post-processing needs. */
export interface SquadFeatures extends SquadWindowSet {
  /** Number of windows (rows). */
  n: number;
  maxSeqLength: number;
  /** [n, maxSeqLength] */
  inputIds: Int32Array;
  /** [n, maxSeqLength] 0 for [CLS] question [SEP], 1 for the context and the last [SEP] */
  tokenTypeIds: Int32Array;
  /** [n, maxSeqLength] 1 for real tokens, 0 for padding */
  attentionMask: Int32Array;
  /** [n] index of the window's question in `dataset.examples` */
  exampleIndex: Int32Array;
  /** [n] training targets (window positions; 0 = [CLS] when the answer is not inside); undefined when not training */
  startPositions?: Int32Array;
  /** [n] */
  endPositions?: Int32Array;
  /** Per question: its sub-tokens after cutting to `maxQueryLength`. */
  queryTokens: string[][];
  /** Per question: the first answer's sub-token span in its paragraph (after `_improve_answer_span`); -1 when none. */
  answerTokenSpans: Int32Array; // [examples, 2]
  metadata: SquadFeatureMetadata;
  stats: SquadFeatureStats;
}

/**
 * `_improve_answer_span`: the sub-token span inside [inputStart, inputEnd] whose tokens equal the answer's own
 * tokens (e.g. "1895" inside "(1895-1943)."), else the input span. Outer loop over starts, inner over ends from
 * the right, as the original.
 */
export function improveAnswerSpan(
  docTokens: string[],
  inputStart: number,
  inputEnd: number,
  answerTokens: string[],
): [number, number] {
  const want = answerTokens.join(" ");
  for (let s = inputStart; s <= inputEnd; s++) {
    for (let e = inputEnd; e >= s; e--) {
      // Tokens hold no spaces, so the joined strings can only be equal for equally many tokens.
      if (e - s + 1 !== answerTokens.length) continue;
      if (docTokens.slice(s, e + 1).join(" ") === want) return [s, e];
    }
  }
  return [inputStart, inputEnd];
}

/** A context window: its first sub-token and length (`_DocSpan`). */
export interface DocSpan {
  start: number;
  length: number;
}

/** The sliding windows of run_squad.py over `nTokens` context sub-tokens. */
export function docSpans(nTokens: number, maxTokensForDoc: number, docStride: number): DocSpan[] {
  const spans: DocSpan[] = [];
  let start = 0;
  while (start < nTokens) {
    const length = Math.min(nTokens - start, maxTokensForDoc);
    spans.push({ start, length });
    if (start + length === nTokens) break;
    start += Math.min(length, docStride);
  }
  return spans;
}

/**
 * `_check_is_max_context`: true when span `cur` is, among the spans containing `position`, the first one with the
 * highest min(left context, right context) + 0.01 * span length.
 */
export function isMaxContext(spans: DocSpan[], cur: number, position: number): boolean {
  let bestScore = -Infinity;
  let best = -1;
  for (let k = 0; k < spans.length; k++) {
    const span = spans[k];
    const end = span.start + span.length - 1;
    if (position < span.start || position > end) continue;
    const score = Math.min(position - span.start, end - position) + 0.01 * span.length;
    if (best < 0 || score > bestScore) {
      bestScore = score;
      best = k;
    }
  }
  return cur === best;
}

/** Tokenizes every paragraph's words once (shared by all its questions), with a per-call word cache. */
export function tokenizeParagraphs(dataset: SquadDataset, tokenizer: FullTokenizer): ParagraphTokens[] {
  const cache = new Map<string, readonly number[]>();
  const vocabTokens = tokenizer.vocab.tokens;
  return dataset.paragraphs.map((p) => {
    const subTokens: string[] = [];
    const tokToOrig: number[] = [];
    const origToTok = new Int32Array(p.docTokens.length);
    for (let i = 0; i < p.docTokens.length; i++) {
      const word = p.docTokens[i];
      origToTok[i] = subTokens.length;
      let ids = cache.get(word);
      if (ids === undefined) {
        ids = tokenizer.encodeIds(word);
        cache.set(word, ids);
      }
      for (let k = 0; k < ids.length; k++) {
        subTokens.push(vocabTokens[ids[k]]);
        tokToOrig.push(i);
      }
    }
    return { subTokens, tokToOrig: Int32Array.from(tokToOrig), origToTok };
  });
}

/**
 * The first answer's sub-token span (`tok_start_position`, `tok_end_position` of run_squad.py, after
 * `_improve_answer_span`), or [-1, -1] when the question has none.
 */
export function answerTokenSpan(
  example: SquadExample,
  words: number,
  pt: ParagraphTokens,
  tokenizer: FullTokenizer,
): [number, number] {
  if (example.isImpossible || example.startPosition < 0 || example.endPosition < 0) return [-1, -1];
  const start = pt.origToTok[example.startPosition];
  const end = example.endPosition < words - 1 ? pt.origToTok[example.endPosition + 1] - 1 : pt.subTokens.length - 1;
  return improveAnswerSpan(pt.subTokens, start, end, tokenizer.tokenize(example.origAnswerText));
}

function randomId(): string {
  return crypto.randomUUID();
}

/**
 * Converts questions into windows (`convert_examples_to_features`). Training windows that do not contain the
 * answer get start = end = 0 ([CLS]); {@linkcode SquadFeatureStats.answersLost} counts answers in no window.
 *
 * @example
 * ```ts
 * const dev = await readSquad("dev-v1.1.json");
 * const tok = await FullTokenizer.fromVocabFile("vocab.txt");
 * const f = await convertSquadExamples(dev, tok, { maxSeqLength: 384, docStride: 128 });
 * f.stats // { examples: 10570, windows: 10833, ... }
 * ```
 */
export async function convertSquadExamples(
  dataset: SquadDataset,
  tokenizer: FullTokenizer,
  options: SquadFeatureOptions = {},
): Promise<SquadFeatures> {
  const t0 = performance.now();
  const L = options.maxSeqLength ?? 384;
  const docStride = options.docStride ?? 128;
  const maxQueryLength = options.maxQueryLength ?? 64;
  const training = options.training ?? false;
  if (!Number.isInteger(L) || !Number.isInteger(docStride) || !Number.isInteger(maxQueryLength)) {
    throw new Error(`SQuAD features: maxSeqLength, docStride and maxQueryLength must be integers`);
  }
  if (docStride < 1) throw new Error(`SQuAD features: docStride must be at least 1, got ${docStride}`);
  if (maxQueryLength < 1) throw new Error(`SQuAD features: maxQueryLength must be at least 1, got ${maxQueryLength}`);
  if (!(L >= 4)) throw new Error(`SQuAD features: maxSeqLength must be at least 4, got ${L}`);
  const { clsId, sepId } = tokenizer;
  const padId = tokenizer.padId >= 0 ? tokenizer.padId : 0;
  if (clsId < 0 || sepId < 0) {
    throw new Error(`SQuAD features: the vocabulary ${tokenizer.vocab.source} has no [CLS] or [SEP] token`);
  }
  const paragraphTokens = tokenizeParagraphs(dataset, tokenizer);
  const vocabId = (t: string) => tokenizer.vocab.id(t)!;
  const paragraphIds = paragraphTokens.map((pt) => Int32Array.from(pt.subTokens, vocabId));

  const examples = dataset.examples;
  const windows: SquadWindow[] = [];
  const queryTokens: string[][] = [];
  const answerTokenSpans = new Int32Array(examples.length * 2);
  // Rows are appended to growable buffers (the number of windows is known only at the end).
  let cap = Math.max(16, Math.ceil(examples.length * 1.1));
  let inputIds = new Int32Array(cap * L);
  let tokenTypeIds = new Int32Array(cap * L);
  let attentionMask = new Int32Array(cap * L);
  const grow = () => {
    cap *= 2;
    const g = (a: Int32Array) => {
      const b = new Int32Array(cap * L);
      b.set(a);
      return b;
    };
    inputIds = g(inputIds);
    tokenTypeIds = g(tokenTypeIds);
    attentionMask = g(attentionMask);
  };
  if (padId !== 0) inputIds.fill(padId);
  let questionsTruncated = 0;
  let answersLost = 0;
  let multiWindowExamples = 0;
  let maxWindowsPerExample = 0;
  const progressEvery = Math.max(1, Math.floor(examples.length / 20));

  for (let ei = 0; ei < examples.length; ei++) {
    const example = examples[ei];
    const pt = paragraphTokens[example.paragraphIndex];
    const docIds = paragraphIds[example.paragraphIndex];
    let qIds = tokenizer.encodeIds(example.question);
    if (qIds.length > maxQueryLength) {
      qIds = qIds.slice(0, maxQueryLength);
      questionsTruncated++;
    }
    queryTokens.push(qIds.map((id) => tokenizer.vocab.tokens[id]));
    const words = dataset.paragraphs[example.paragraphIndex].docTokens.length;
    const [tokStart, tokEnd] = answerTokenSpan(example, words, pt, tokenizer);
    answerTokenSpans[2 * ei] = tokStart;
    answerTokenSpans[2 * ei + 1] = tokEnd;

    const maxTokensForDoc = L - qIds.length - 3;
    if (maxTokensForDoc < 1) {
      throw new Error(
        `SQuAD features: question ${example.id} has ${qIds.length} sub-tokens, which leaves no room for the ` +
          `context in ${L} tokens ([CLS], two [SEP] and at least one context token); lower maxQueryLength ` +
          `(now ${maxQueryLength}) or raise maxSeqLength`,
      );
    }
    const spans = docSpans(pt.subTokens.length, maxTokensForDoc, docStride);
    if (spans.length > 1) multiWindowExamples++;
    maxWindowsPerExample = Math.max(maxWindowsPerExample, spans.length);
    const contextOffset = qIds.length + 2;
    let found = false;
    for (let k = 0; k < spans.length; k++) {
      const span = spans[k];
      const row = windows.length;
      if (row >= cap) {
        grow();
        if (padId !== 0) inputIds.fill(padId, row * L);
      }
      const base = row * L;
      inputIds[base] = clsId;
      for (let q = 0; q < qIds.length; q++) inputIds[base + 1 + q] = qIds[q];
      inputIds[base + 1 + qIds.length] = sepId;
      inputIds.set(docIds.subarray(span.start, span.start + span.length), base + contextOffset);
      const realLength = contextOffset + span.length + 1;
      inputIds[base + realLength - 1] = sepId;
      tokenTypeIds.fill(1, base + contextOffset, base + realLength);
      attentionMask.fill(1, base, base + realLength);
      const maxContext = new Uint8Array(span.length);
      for (let i = 0; i < span.length; i++) maxContext[i] = isMaxContext(spans, k, span.start + i) ? 1 : 0;
      let startPosition = -1;
      let endPosition = -1;
      if (training) {
        if (example.isImpossible || tokStart < 0) {
          startPosition = endPosition = 0;
        } else if (tokStart >= span.start && tokEnd <= span.start + span.length - 1) {
          startPosition = tokStart - span.start + contextOffset;
          endPosition = tokEnd - span.start + contextOffset;
          found = true;
        } else {
          startPosition = endPosition = 0;
        }
      }
      windows.push({
        exampleIndex: ei,
        docSpanIndex: k,
        docStart: span.start,
        docLength: span.length,
        contextOffset,
        maxContext,
        startPosition,
        endPosition,
      });
    }
    if (training && !example.isImpossible && tokStart >= 0 && !found) answersLost++;
    if (options.onProgress && (ei + 1) % progressEvery === 0) options.onProgress(ei + 1, examples.length);
  }
  if (options.onProgress) options.onProgress(examples.length, examples.length);
  const n = windows.length;
  const exampleIndex = Int32Array.from(windows, (w) => w.exampleIndex);
  const features: SquadFeatures = {
    dataset,
    paragraphTokens,
    windows,
    lowerCase: tokenizer.lowerCase,
    n,
    maxSeqLength: L,
    inputIds: inputIds.slice(0, n * L),
    tokenTypeIds: tokenTypeIds.slice(0, n * L),
    attentionMask: attentionMask.slice(0, n * L),
    exampleIndex,
    queryTokens,
    answerTokenSpans,
    metadata: {
      task: "squad",
      vocab_sha256: await tokenizer.vocab.sha256(),
      lower_case: tokenizer.lowerCase,
      max_seq_length: L,
      doc_stride: docStride,
      max_query_length: maxQueryLength,
      training,
      source: dataset.source,
      version: dataset.version,
      n,
      features_id: randomId(),
    },
    stats: {
      examples: examples.length,
      windows: n,
      paragraphs: dataset.paragraphs.length,
      multiWindowExamples,
      maxWindowsPerExample,
      questionsTruncated,
      answersLost,
      maxContextTokens: paragraphTokens.reduce((m, p) => Math.max(m, p.subTokens.length), 0),
      seconds: (performance.now() - t0) / 1000,
    },
  };
  if (training) {
    features.startPositions = Int32Array.from(windows, (w) => w.startPosition);
    features.endPositions = Int32Array.from(windows, (w) => w.endPosition);
  }
  return features;
}

/** One line per count, for logs and the CLI. */
export function summarizeSquadFeatures(features: SquadFeatures): string[] {
  const s = features.stats;
  const m = features.metadata;
  const lines = [
    `${s.examples} questions over ${s.paragraphs} paragraphs -> ${s.windows} windows of ${m.max_seq_length} tokens ` +
    `(doc_stride ${m.doc_stride}, max_query_length ${m.max_query_length}) in ${s.seconds.toFixed(2)} s`,
    `${s.multiWindowExamples} questions needed more than one window (at most ${s.maxWindowsPerExample}); ` +
    `longest context ${s.maxContextTokens} sub-tokens`,
    `${s.questionsTruncated} questions were longer than ${m.max_query_length} sub-tokens and were cut`,
  ];
  if (m.training) {
    lines.push(`${s.answersLost} answers lie in no window (their windows point at [CLS]: lost to truncation)`);
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------------------------
// Saving and loading

/** Version of the on-disk layout (`features_format` in the metadata and the sidecar). */
export const SQUAD_FEATURES_FORMAT = "squad-1";

/** The sidecar path of a feature file: `dev.safetensors` -> `dev.windows.json`. */
export function windowsPath(path: string): string {
  return path.replace(/\.safetensors$/, "") + ".windows.json";
}

interface WindowsJson {
  features_format: string;
  features_id: string;
  source: string;
  version: string;
  lower_case: boolean;
  paragraphs: { title: string; context: string; sub_tokens: string[]; tok_to_orig: number[]; orig_to_tok: number[] }[];
  examples: {
    id: string;
    question: string;
    paragraph: number;
    answers: { text: string; answer_start: number }[];
    orig_answer_text: string;
    start_position: number;
    end_position: number;
    is_impossible: boolean;
    query_tokens: string[];
    answer_token_span: [number, number];
  }[];
  windows: {
    example: number;
    span: number;
    doc_start: number;
    doc_length: number;
    context_offset: number;
    /** `token_is_max_context` of the context tokens as a string of 0/1. */
    max_context: string;
  }[];
  stats: SquadFeatureStats;
}

/**
 * Writes `path` (safetensors) and its `.windows.json` sidecar, each atomically. `path` should end in
 * `.safetensors`, e.g. `outputs/<run>/features/dev.safetensors`.
 */
export async function saveSquadFeatures(path: string, features: SquadFeatures): Promise<void> {
  const { n, maxSeqLength: L } = features;
  const tensors: Record<string, TensorEntry> = {
    input_ids: i32([n, L], features.inputIds),
    token_type_ids: i32([n, L], features.tokenTypeIds),
    attention_mask: i32([n, L], features.attentionMask),
    example_index: i32([n], features.exampleIndex),
  };
  if (features.startPositions && features.endPositions) {
    tensors.start_positions = i32([n], features.startPositions);
    tensors.end_positions = i32([n], features.endPositions);
  }
  const metadata: Record<string, string> = { features_format: SQUAD_FEATURES_FORMAT };
  for (const [k, v] of Object.entries(features.metadata)) metadata[k] = typeof v === "string" ? v : JSON.stringify(v);
  const ds = features.dataset;
  const sidecar: WindowsJson = {
    features_format: SQUAD_FEATURES_FORMAT,
    features_id: features.metadata.features_id,
    source: ds.source,
    version: ds.version,
    lower_case: features.lowerCase,
    paragraphs: ds.paragraphs.map((p, i) => ({
      title: p.title,
      context: p.context,
      sub_tokens: features.paragraphTokens[i].subTokens,
      tok_to_orig: Array.from(features.paragraphTokens[i].tokToOrig),
      orig_to_tok: Array.from(features.paragraphTokens[i].origToTok),
    })),
    examples: ds.examples.map((e, i) => ({
      id: e.id,
      question: e.question,
      paragraph: e.paragraphIndex,
      answers: e.answers.map((a) => ({ text: a.text, answer_start: a.answerStart })),
      orig_answer_text: e.origAnswerText,
      start_position: e.startPosition,
      end_position: e.endPosition,
      is_impossible: e.isImpossible,
      query_tokens: features.queryTokens[i],
      answer_token_span: [features.answerTokenSpans[2 * i], features.answerTokenSpans[2 * i + 1]],
    })),
    windows: features.windows.map((w) => ({
      example: w.exampleIndex,
      span: w.docSpanIndex,
      doc_start: w.docStart,
      doc_length: w.docLength,
      context_offset: w.contextOffset,
      max_context: Array.from(w.maxContext).join(""),
    })),
    stats: features.stats,
  };
  // The sidecar first: a crash between the two writes leaves a features_id mismatch, which loading refuses.
  await writeFileAtomic(windowsPath(path), JSON.stringify(sidecar)); // compact: pretty-printing triples the size
  await writeSafetensors(path, tensors, metadata);
}

/**
 * Reads a SQuAD feature file and its `.windows.json`, checking that they belong together and that every array
 * has the shape the metadata promises; errors name the file.
 */
export async function loadSquadFeatures(path: string): Promise<SquadFeatures> {
  const file = await readSafetensors(path);
  const meta = file.metadata;
  if (meta.features_format !== SQUAD_FEATURES_FORMAT || meta.task !== "squad") {
    throw new Error(
      `${path}: not a SQuAD feature file (features_format ${JSON.stringify(meta.features_format)}, task ` +
        `${JSON.stringify(meta.task)}; expected ${SQUAD_FEATURES_FORMAT} and squad). Re-run the SQuAD prepare step.`,
    );
  }
  const num = (k: string) => {
    const v = Number(meta[k]);
    if (!Number.isInteger(v) || v < 0) throw new Error(`${path}: metadata "${k}" should be an integer, got ${meta[k]}`);
    return v;
  };
  const metadata: SquadFeatureMetadata = {
    task: "squad",
    vocab_sha256: meta.vocab_sha256 ?? "",
    lower_case: meta.lower_case === "true",
    max_seq_length: num("max_seq_length"),
    doc_stride: num("doc_stride"),
    max_query_length: num("max_query_length"),
    training: meta.training === "true",
    source: meta.source ?? "",
    version: meta.version ?? "",
    n: num("n"),
    features_id: meta.features_id ?? "",
  };
  const sidePath = windowsPath(path);
  let side: WindowsJson;
  try {
    side = JSON.parse(await Deno.readTextFile(sidePath));
  } catch (err) {
    throw new Error(`${sidePath}: cannot read the windows file that belongs to ${path}: ${(err as Error).message}`);
  }
  if (side.features_id !== metadata.features_id) {
    throw new Error(
      `${sidePath}: features_id ${side.features_id} does not match ${path} (${metadata.features_id}): the two ` +
        `files come from different prepare runs; re-run the SQuAD prepare step`,
    );
  }
  const { n, max_seq_length: L } = metadata;
  const get = (name: string, shape: number[], required = true): Int32Array | undefined => {
    const t = file.tensors[name];
    if (!t) {
      if (required) throw new Error(`${path}: tensor "${name}" is missing`);
      return undefined;
    }
    if (t.dtype !== "I32" || JSON.stringify(t.shape) !== JSON.stringify(shape)) {
      throw new Error(
        `${path}: tensor "${name}" is ${t.dtype} ${JSON.stringify(t.shape)}, expected I32 ` +
          `${JSON.stringify(shape)}`,
      );
    }
    return t.data as Int32Array;
  };
  const inputIds = get("input_ids", [n, L])!;
  const tokenTypeIds = get("token_type_ids", [n, L])!;
  const attentionMask = get("attention_mask", [n, L])!;
  const exampleIndex = get("example_index", [n])!;
  const startPositions = get("start_positions", [n], metadata.training);
  const endPositions = get("end_positions", [n], metadata.training);
  if (side.windows.length !== n) throw new Error(`${sidePath}: ${side.windows.length} windows, ${path} has ${n}`);
  const paragraphs = side.paragraphs.map((p) => ({ title: p.title, context: p.context, ...splitContext(p.context) }));
  const paragraphTokens: ParagraphTokens[] = side.paragraphs.map((p) => ({
    subTokens: p.sub_tokens,
    tokToOrig: Int32Array.from(p.tok_to_orig),
    origToTok: Int32Array.from(p.orig_to_tok),
  }));
  const examples: SquadExample[] = side.examples.map((e) => ({
    id: e.id,
    question: e.question,
    paragraphIndex: e.paragraph,
    answers: e.answers.map((a) => ({ text: a.text, answerStart: a.answer_start })),
    origAnswerText: e.orig_answer_text,
    startPosition: e.start_position,
    endPosition: e.end_position,
    isImpossible: e.is_impossible,
  }));
  const windows: SquadWindow[] = side.windows.map((w, i) => {
    if (w.example !== exampleIndex[i]) {
      throw new Error(`${sidePath}: window ${i} belongs to question ${w.example}, ${path} says ${exampleIndex[i]}`);
    }
    if (w.max_context.length !== w.doc_length) {
      throw new Error(
        `${sidePath}: window ${i} has ${w.max_context.length} max-context flags for ${w.doc_length} tokens`,
      );
    }
    return {
      exampleIndex: w.example,
      docSpanIndex: w.span,
      docStart: w.doc_start,
      docLength: w.doc_length,
      contextOffset: w.context_offset,
      maxContext: Uint8Array.from(w.max_context, (c) => (c === "1" ? 1 : 0)),
      startPosition: startPositions ? startPositions[i] : -1,
      endPosition: endPositions ? endPositions[i] : -1,
    };
  });
  const dataset: SquadDataset = {
    version: side.version,
    source: side.source,
    paragraphs,
    examples,
    skippedImpossible: 0,
    skippedUnrecoverable: [],
  };
  return {
    dataset,
    paragraphTokens,
    windows,
    lowerCase: side.lower_case,
    n,
    maxSeqLength: L,
    inputIds,
    tokenTypeIds,
    attentionMask,
    exampleIndex,
    startPositions,
    endPositions,
    queryTokens: side.examples.map((e) => e.query_tokens),
    answerTokenSpans: Int32Array.from(side.examples.flatMap((e) => e.answer_token_span)),
    metadata,
    stats: side.stats,
  };
}

/**
 * Throws a clear error (naming `file` and both vocabulary hashes) when `features` were made with another
 * vocabulary or casing than `tokenizer`, or are longer than the model's position table.
 */
export async function checkSquadFeaturesMatch(
  features: SquadFeatures,
  tokenizer: FullTokenizer,
  file: string,
  maxPositionEmbeddings?: number,
): Promise<void> {
  const m = features.metadata;
  const sha = await tokenizer.vocab.sha256();
  const problems: string[] = [];
  if (m.vocab_sha256 !== sha) {
    problems.push(`vocabulary differs: features made with vocab sha256 ${m.vocab_sha256}, the tokenizer's is ${sha}`);
  }
  if (m.lower_case !== tokenizer.lowerCase) {
    problems.push(`casing differs: features lower_case=${m.lower_case}, tokenizer lower_case=${tokenizer.lowerCase}`);
  }
  if (maxPositionEmbeddings !== undefined && m.max_seq_length > maxPositionEmbeddings) {
    problems.push(
      `max_seq_length ${m.max_seq_length} exceeds the model's max_position_embeddings ${maxPositionEmbeddings}`,
    );
  }
  if (problems.length) {
    throw new Error(
      `${file}: these SQuAD features do not match the model:\n  - ${problems.join("\n  - ")}\n` +
        `Re-run the SQuAD prepare step with the checkpoint's vocabulary and casing.`,
    );
  }
}

/** Options for {@linkcode prepareSquad}. */
export interface PrepareSquadOptions extends SquadFeatureOptions {
  /** The SQuAD JSON file. */
  input: string;
  /** Folder receiving `<split>.safetensors` and `<split>.windows.json` (e.g. `outputs/<run>/features`). */
  outputDir: string;
  /** Split name (file stem); default `train` when training, else `dev`. */
  split?: string;
  /** The tokenizer (from the checkpoint or a vocab.txt). */
  tokenizer: FullTokenizer;
  /** Reader options (keepImpossible, limit, log). `training` follows {@linkcode SquadFeatureOptions.training}. */
  read?: Omit<ReadSquadOptions, "training">;
  /** Where the summary goes (default console.log). */
  log?: (message: string) => void;
}

/** Reads a SQuAD file, converts it and saves the features; returns them and the path written. */
export async function prepareSquad(options: PrepareSquadOptions): Promise<{ features: SquadFeatures; path: string }> {
  const log = options.log ?? ((m: string) => console.log(m));
  const training = options.training ?? false;
  const dataset = await readSquad(options.input, { ...options.read, training, log: options.read?.log ?? log });
  const features = await convertSquadExamples(dataset, options.tokenizer, options);
  const split = options.split ?? (training ? "train" : "dev");
  const path = join(options.outputDir, `${split}.safetensors`);
  await saveSquadFeatures(path, features);
  for (const line of summarizeSquadFeatures(features)) log(line);
  log(`wrote ${path} and ${basename(windowsPath(path))} in ${dirname(path)}`);
  return { features, path };
}

// ---------------------------------------------------------------------------------------------------------------
// Teaching helpers

/** One row of {@linkcode describeWindows}: how one window covers the context. */
export interface WindowRow {
  /** `doc_span_index`. */
  window: number;
  /** Row of the window in the feature arrays. */
  feature: number;
  /** Context sub-tokens covered, `first–last`. */
  subTokens: string;
  /** Context words covered, `first–last`. */
  words: string;
  /** Context sub-tokens this window is the max-context window for (predictions may start only there). */
  maxContext: string;
  /** Whether the first gold answer lies completely inside the window (null when the question has none). */
  answerInside: boolean | null;
  /** Window positions of the answer (`start–end`, as trained on), or "" when not inside. */
  answerPositions: string;
  /** The first and last few words of the window. */
  preview: string;
}

function ranges(flags: Uint8Array, offset: number): string {
  const out: string[] = [];
  let i = 0;
  while (i < flags.length) {
    if (flags[i] !== 1) {
      i++;
      continue;
    }
    let j = i;
    while (j + 1 < flags.length && flags[j + 1] === 1) j++;
    out.push(`${offset + i}–${offset + j}`);
    i = j + 1;
  }
  return out.join(", ") || "none";
}

/**
 * How the context of one question is cut into windows, one row per window (for an HTML table in the notebooks).
 * `example` is the question (object, index into `features.dataset.examples`, or id).
 */
export function describeWindows(example: SquadExample | number | string, features: SquadFeatures): WindowRow[] {
  const examples = features.dataset.examples;
  const ei = typeof example === "number"
    ? example
    : typeof example === "string"
    ? examples.findIndex((e) => e.id === example)
    : examples.indexOf(example) >= 0
    ? examples.indexOf(example)
    : examples.findIndex((e) => e.id === example.id);
  if (ei < 0 || ei >= examples.length) throw new Error(`describeWindows: no such question ${JSON.stringify(example)}`);
  const ex = examples[ei];
  const pt = features.paragraphTokens[ex.paragraphIndex];
  const words = features.dataset.paragraphs[ex.paragraphIndex].docTokens;
  const tokStart = features.answerTokenSpans[2 * ei];
  const tokEnd = features.answerTokenSpans[2 * ei + 1];
  const rows: WindowRow[] = [];
  features.windows.forEach((w, fi) => {
    if (w.exampleIndex !== ei) return;
    const last = w.docStart + w.docLength - 1;
    const w0 = pt.tokToOrig[w.docStart];
    const w1 = pt.tokToOrig[last];
    const inside = tokStart < 0 ? null : tokStart >= w.docStart && tokEnd <= last;
    const head = words.slice(w0, Math.min(w0 + 6, w1 + 1)).join(" ");
    const tail = w1 - w0 >= 12 ? " … " + words.slice(w1 - 5, w1 + 1).join(" ") : "";
    rows.push({
      window: w.docSpanIndex,
      feature: fi,
      subTokens: `${w.docStart}–${last}`,
      words: `${w0}–${w1}`,
      maxContext: ranges(w.maxContext, w.docStart),
      answerInside: inside,
      answerPositions: inside
        ? `${tokStart - w.docStart + w.contextOffset}–${tokEnd - w.docStart + w.contextOffset}`
        : "",
      preview: head + tail,
    });
  });
  return rows;
}

/** Number of windows of each question (`[examples]`), e.g. to find the question with the longest context. */
export function windowsPerExample(features: SquadFeatures): Int32Array {
  const counts = new Int32Array(features.dataset.examples.length);
  for (const w of features.windows) counts[w.exampleIndex]++;
  return counts;
}

/**
 * The tokens of window `row` as the model sees them, without padding:
 * `[CLS] question-tokens [SEP] context-tokens [SEP]`.
 */
export function windowTokens(features: SquadFeatures, row: number): string[] {
  const w = features.windows[row];
  if (!w) throw new Error(`windowTokens: no window ${row} (the features have ${features.n})`);
  const pt = features.paragraphTokens[features.dataset.examples[w.exampleIndex].paragraphIndex];
  return [
    "[CLS]",
    ...features.queryTokens[w.exampleIndex],
    "[SEP]",
    ...pt.subTokens.slice(w.docStart, w.docStart + w.docLength),
    "[SEP]",
  ];
}

/** Options for {@linkcode answerQuestion}. */
export interface AnswerQuestionOptions
  extends Omit<SquadFeatureOptions, "training" | "onProgress">, PostprocessOptions {
  /** The paragraph to find the answer in. */
  context: string;
  /** The question. */
  question: string;
  /** The model's tokenizer. */
  tokenizer: FullTokenizer;
  /** Start/end logits of every window, e.g. `(f) => squadLogits(model, f)` from `squad_train.ts`. */
  logits: (features: SquadFeatures) => WindowLogits[] | Promise<WindowLogits[]>;
}

/** What {@linkcode answerQuestion} returns. */
export interface QuestionAnswer {
  /** The best answer ("empty" when no valid span was found, as run_squad.py writes it). */
  text: string;
  /** Its probability among the n-best candidates. */
  probability: number;
  /** All candidates, best first (`nbest_predictions.json` entries). */
  nbest: NBestEntry[];
  /** The windows the context was cut into (one row per window). */
  features: SquadFeatures;
}

/**
 * Answers one free-form question about one context: the pair becomes a one-question SQuAD dataset, is cut into
 * windows like the dev set (same `maxSeqLength` / `docStride` / `maxQueryLength`), the model's logits are
 * post-processed exactly like `write_predictions`, and the n-best list comes back.
 *
 * @example
 * ```ts
 * const a = await answerQuestion({ context, question, tokenizer, logits: (f) => squadLogits(model, f) });
 * a.text; a.probability; a.nbest
 * ```
 */
export async function answerQuestion(options: AnswerQuestionOptions): Promise<QuestionAnswer> {
  const { context, question } = options;
  if (splitContext(context).docTokens.length === 0) throw new Error("answerQuestion: the context is empty");
  if (question.trim() === "") throw new Error("answerQuestion: the question is empty");
  const json = {
    version: "1.1",
    data: [{ title: "question", paragraphs: [{ context, qas: [{ id: "q", question, answers: [] }] }] }],
  };
  const dataset = parseSquad(json, "answerQuestion", { log: () => {} });
  const features = await convertSquadExamples(dataset, options.tokenizer, {
    maxSeqLength: options.maxSeqLength,
    docStride: options.docStride,
    maxQueryLength: options.maxQueryLength,
  });
  const logits = await options.logits(features);
  const { nbest } = postprocessSquad(features, logits, {
    nBestSize: options.nBestSize,
    maxAnswerLength: options.maxAnswerLength,
  });
  const candidates = nbest["q"];
  return { text: candidates[0].text, probability: candidates[0].probability, nbest: candidates, features };
}
