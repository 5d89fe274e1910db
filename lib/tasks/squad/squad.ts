/**
 * SQuAD question answering, the data side: the reader for SQuAD JSON (v1.1, and v2.0 with its unanswerable
 * questions skipped or kept), the post-processing that turns start/end logits into answer texts
 * (`write_predictions` and `get_final_text` of Google's `run_squad.py`), and a small HTML helper for notebooks.
 *
 * Nothing here needs TensorFlow.js: features live in `squad_features.ts`, training and prediction in
 * `squad_train.ts`, the official metric in `squad_metrics.ts`.
 *
 * Character offsets: SQuAD's `answer_start` counts Unicode code points (Python string indices), and so do
 * {@linkcode SquadParagraph.charToWordOffset} and the answer checks here, so contexts with characters outside the
 * Basic Multilingual Plane are handled like Python does.
 * @module
 */
import { exists, join, projectRoot, relativeToCwd, writeFileAtomic } from "../../io/fsutil.ts";
import { isRecord } from "../../io/json.ts";
import { escapeHtml } from "../../viz/display.ts";
import { pySplit } from "./metrics.ts";
import { basicTokenize } from "../../text/basic_tokenizer.ts";

// ---------------------------------------------------------------------------------------------------------------
// Reading

/** One gold answer: its text and where it starts in the context (in code points). */
export interface SquadAnswer {
  text: string;
  answerStart: number;
}

/** A context paragraph, split into whitespace-separated words as `read_squad_examples` does. */
export interface SquadParagraph {
  /** Title of the article the paragraph belongs to. */
  title: string;
  /** The context text, unchanged. */
  context: string;
  /** Words: maximal runs of characters other than space, `\t`, `\r`, `\n` and U+202F. */
  docTokens: string[];
  /** For each code point of the context: index of the word it belongs to (whitespace: the previous word; -1 before the first). */
  charToWordOffset: Int32Array;
}

/** One question (`SquadExample` of `run_squad.py`). */
export interface SquadExample {
  /** The question id (`qas_id`). */
  id: string;
  /** The question text. */
  question: string;
  /** Index of its paragraph in {@linkcode SquadDataset.paragraphs}. */
  paragraphIndex: number;
  /** All gold answers (dev sets have up to 6; training sets one). Empty for unanswerable questions. */
  answers: SquadAnswer[];
  /** Text of the first answer (`orig_answer_text`); "" when unanswerable or unanswered. */
  origAnswerText: string;
  /** First word of the first answer in {@linkcode SquadParagraph.docTokens}; -1 when unanswerable. */
  startPosition: number;
  /** Last word of the first answer (inclusive); -1 when unanswerable. */
  endPosition: number;
  /** SQuAD 2.0 `is_impossible` (kept only with `keepImpossible`). */
  isImpossible: boolean;
}

/** A parsed SQuAD file. */
export interface SquadDataset {
  /** The file's `version` field ("1.1", "v2.0", ...). */
  version: string;
  /** The file it came from (for error messages). */
  source: string;
  /** Paragraphs that have at least one kept question, in file order. */
  paragraphs: SquadParagraph[];
  /** Questions in file order. */
  examples: SquadExample[];
  /** SQuAD 2.0 questions with `is_impossible: true` that were left out (see `keepImpossible`). */
  skippedImpossible: number;
  /** Training only: questions whose answer text cannot be recovered from the words (skipped, as run_squad.py does). */
  skippedUnrecoverable: { id: string; problem: string }[];
}

/** Options for {@linkcode readSquad} / {@linkcode parseSquad}. */
export interface ReadSquadOptions {
  /**
   * Training mode: questions whose answer text cannot be found in the words it spans are skipped (and counted),
   * as `read_squad_examples(is_training=True)` does. The first answer is the training target (run_squad.py
   * demands exactly one; dev files have several, and here the first is used). Default false.
   */
  training?: boolean;
  /** Keep SQuAD 2.0 unanswerable questions (flagged, positions -1) instead of skipping them. Default false. */
  keepImpossible?: boolean;
  /** Read only the first `limit` questions (for quick experiments and tests). */
  limit?: number;
  /** Where the counts of skipped questions are printed (default `console.log`; pass `() => {}` to silence). */
  log?: (message: string) => void;
}

/** Characters that separate words in `read_squad_examples` (space, \t, \r, \n and U+202F NARROW NO-BREAK SPACE). */
export function isSquadWhitespace(c: string): boolean {
  return c === " " || c === "\t" || c === "\r" || c === "\n" || c === "\u202f";
}

/** `tokenization.whitespace_tokenize`: Python's `text.strip().split()`. */
export function whitespaceTokenize(text: string): string[] {
  return pySplit(text);
}

/**
 * Splits a context into words exactly as `read_squad_examples` does and maps every code point to its word.
 *
 * @example splitContext("a  bc") // { docTokens: ["a", "bc"], charToWordOffset: [0, 0, 0, 1, 1] }
 */
export function splitContext(context: string): { docTokens: string[]; charToWordOffset: Int32Array } {
  const docTokens: string[] = [];
  const offsets: number[] = [];
  let prevIsWhitespace = true;
  for (const c of context) { // code points, like Python
    if (isSquadWhitespace(c)) {
      prevIsWhitespace = true;
    } else {
      if (prevIsWhitespace) docTokens.push(c);
      else docTokens[docTokens.length - 1] += c;
      prevIsWhitespace = false;
    }
    offsets.push(docTokens.length - 1);
  }
  return { docTokens, charToWordOffset: Int32Array.from(offsets) };
}

/** Number of code points of `s` (Python's `len`). */
function cpLength(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) n--;
  }
  return n;
}

/**
 * Parses SQuAD JSON (text or an already-parsed object). `source` names the file in errors; every problem with a
 * question names its id.
 */
export function parseSquad(
  json: string | unknown,
  source = "<squad json>",
  options: ReadSquadOptions = {},
): SquadDataset {
  const log = options.log ?? ((m: string) => console.log(m));
  let root: unknown = json;
  if (typeof json === "string") {
    try {
      root = JSON.parse(json);
    } catch (err) {
      throw new Error(`${source}: not valid JSON: ${(err as Error).message}`);
    }
  }
  if (!isRecord(root) || !Array.isArray(root.data)) {
    throw new Error(`${source}: not a SQuAD file: expected an object with a "data" array of articles`);
  }
  const version = typeof root.version === "string" ? root.version : "";
  const training = options.training ?? false;
  const limit = options.limit ?? Infinity;
  const paragraphs: SquadParagraph[] = [];
  const examples: SquadExample[] = [];
  const skippedUnrecoverable: SquadDataset["skippedUnrecoverable"] = [];
  const seen = new Set<string>();
  let skippedImpossible = 0;
  articles: for (const [ai, article] of root.data.entries()) {
    if (!isRecord(article) || !Array.isArray(article.paragraphs)) {
      throw new Error(`${source}: article ${ai}: expected an object with a "paragraphs" array`);
    }
    const title = typeof article.title === "string" ? article.title : `article ${ai}`;
    for (const [pi, para] of article.paragraphs.entries()) {
      const where = `${source}: article "${title}" paragraph ${pi}`;
      if (!isRecord(para) || typeof para.context !== "string" || !Array.isArray(para.qas)) {
        throw new Error(`${where}: expected an object with a string "context" and a "qas" array`);
      }
      const context = para.context;
      let paragraph: SquadParagraph | undefined;
      let contextLength = -1;
      for (const [qi, qa] of para.qas.entries()) {
        if (examples.length >= limit) break articles;
        if (!isRecord(qa) || typeof qa.id !== "string" || qa.id.length === 0) {
          throw new Error(`${where}: question ${qi} has no string "id"`);
        }
        const id = qa.id;
        const bad = (problem: string) => new Error(`${source}: question ${id} (article "${title}"): ${problem}`);
        if (typeof qa.question !== "string") throw bad(`"question" must be a string`);
        if (seen.has(id)) throw bad(`duplicate question id`);
        seen.add(id);
        if (qa.is_impossible !== undefined && typeof qa.is_impossible !== "boolean") {
          throw bad(`"is_impossible" must be true or false`);
        }
        const isImpossible = qa.is_impossible === true;
        if (isImpossible && !options.keepImpossible) {
          skippedImpossible++;
          continue;
        }
        if (!Array.isArray(qa.answers)) throw bad(`"answers" must be an array`);
        if (contextLength < 0) contextLength = cpLength(context);
        const answers: SquadAnswer[] = [];
        for (const [k, a] of qa.answers.entries()) {
          if (!isRecord(a) || typeof a.text !== "string") throw bad(`answer ${k} has no string "text"`);
          const start = a.answer_start;
          if (typeof start !== "number" || !Number.isInteger(start) || start < 0) {
            throw bad(`answer ${k} has no non-negative integer "answer_start" (got ${JSON.stringify(start)})`);
          }
          if (start + cpLength(a.text) > contextLength) {
            throw bad(
              `answer ${k} (${JSON.stringify(a.text)} at ${start}) runs past the end of the context ` +
                `(${contextLength} characters)`,
            );
          }
          answers.push({ text: a.text, answerStart: start });
        }
        if (!isImpossible && answers.length === 0 && training) throw bad(`no answer to train on`);
        if (!isImpossible && answers.length > 0 && answers[0].text.length === 0) throw bad(`answer 0 has empty text`);
        paragraph ??= { title, context, ...splitContext(context) };
        if (paragraph.docTokens.length === 0) throw bad(`the context has no words`);
        let startPosition = -1;
        let endPosition = -1;
        let origAnswerText = "";
        if (!isImpossible && answers.length > 0) {
          const answer = answers[0];
          origAnswerText = answer.text;
          startPosition = paragraph.charToWordOffset[answer.answerStart];
          endPosition = paragraph.charToWordOffset[answer.answerStart + cpLength(answer.text) - 1];
          if (training) {
            // Only keep answers whose text can be recovered from the words (run_squad.py's check).
            const actual = paragraph.docTokens.slice(startPosition, endPosition + 1).join(" ");
            const cleaned = whitespaceTokenize(answer.text).join(" ");
            if (startPosition < 0 || !actual.includes(cleaned)) {
              skippedUnrecoverable.push({
                id,
                problem: `could not find answer ${JSON.stringify(cleaned)} in ${JSON.stringify(actual)}`,
              });
              continue;
            }
          }
        }
        if (paragraphs[paragraphs.length - 1] !== paragraph) paragraphs.push(paragraph);
        examples.push({
          id,
          question: qa.question,
          paragraphIndex: paragraphs.length - 1,
          answers,
          origAnswerText,
          startPosition,
          endPosition,
          isImpossible,
        });
      }
    }
  }
  if (skippedImpossible > 0) {
    log(
      `${source}: skipped ${skippedImpossible} unanswerable (is_impossible) SQuAD 2.0 questions; ` +
        `keep them with keepImpossible / --keep-impossible`,
    );
  }
  if (skippedUnrecoverable.length > 0) {
    log(
      `${source}: skipped ${skippedUnrecoverable.length} questions whose answer text is not recoverable from ` +
        `the context words, e.g. ${skippedUnrecoverable[0].id}: ${skippedUnrecoverable[0].problem}`,
    );
  }
  return { version, source, paragraphs, examples, skippedImpossible, skippedUnrecoverable };
}

/**
 * Reads a SQuAD JSON file (`train-v1.1.json`, `dev-v1.1.json`, v2.0 files).
 *
 * @example
 * ```ts
 * const dev = await readSquad("../shared/data/squad-v1.1/dev-v1.1.json");
 * dev.examples.length // 10570
 * ```
 */
export async function readSquad(path: string, options: ReadSquadOptions = {}): Promise<SquadDataset> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new Error(`cannot read SQuAD file ${path}: ${(err as Error).message}`);
  }
  return parseSquad(text, path, options);
}

// ---------------------------------------------------------------------------------------------------------------
// Finding and slicing the data

/** Where {@linkcode resolveSquadData} found the SQuAD v1.1 files. */
export interface SquadDataFiles {
  /** The folder holding `dev-v1.1.json`. */
  dir: string;
  /** `dev-v1.1.json`. */
  dev: string;
  /** `train-v1.1.json` when present (in the same folder or the other searched one), else undefined. */
  train?: string;
}

/**
 * Finds `dev-v1.1.json` (required) and `train-v1.1.json` (optional): in `dir` when given, else in the project's
 * `data/squad-v1.1/` and then the read-only shared copy `../shared/data/squad-v1.1/` (both relative to the project
 * root; the paths returned are relative to the working directory). Throws naming the folders searched and the
 * data/README.md section that explains how to fetch the files.
 */
export async function resolveSquadData(dir?: string): Promise<SquadDataFiles> {
  const root = projectRoot();
  const dirs = dir ? [dir] : ["data/squad-v1.1", "../shared/data/squad-v1.1"].map((d) => relativeToCwd(join(root, d)));
  let found: SquadDataFiles | undefined;
  let train: string | undefined;
  for (const d of dirs) {
    if (!found && await exists(join(d, "dev-v1.1.json"))) found = { dir: d, dev: join(d, "dev-v1.1.json") };
    if (!train && await exists(join(d, "train-v1.1.json"))) train = join(d, "train-v1.1.json");
  }
  if (!found) {
    throw new Error(
      `SQuAD v1.1: no dev-v1.1.json in ${dirs.join(" or ")}. See data/README.md, section "SQuAD v1.1", for the ` +
        `two curl commands that fetch it into data/squad-v1.1/${dir ? "" : ", or point to the folder that holds it"}.`,
    );
  }
  return train ? { ...found, train } : found;
}

/** Options for {@linkcode filterSquad}. */
export interface FilterSquadOptions {
  /** Keep at most this many questions (the first ones that pass). */
  limit?: number;
}

/**
 * The questions of `dataset` for which `keep(example, paragraph)` is true, with only their paragraphs (re-indexed).
 * The skip counts (`skippedImpossible`, `skippedUnrecoverable`) are those of the original reading.
 * E.g. all questions from articles other than the evaluation slice's:
 * `filterSquad(dev, (_, p) => !evalTitles.has(p.title))`.
 */
export function filterSquad(
  dataset: SquadDataset,
  keep: (example: SquadExample, paragraph: SquadParagraph) => boolean,
  options: FilterSquadOptions = {},
): SquadDataset {
  const limit = options.limit ?? Infinity;
  const paragraphs: SquadParagraph[] = [];
  const newIndex = new Map<number, number>();
  const examples: SquadExample[] = [];
  for (const e of dataset.examples) {
    if (examples.length >= limit) break;
    if (!keep(e, dataset.paragraphs[e.paragraphIndex])) continue;
    let pi = newIndex.get(e.paragraphIndex);
    if (pi === undefined) {
      pi = paragraphs.push(dataset.paragraphs[e.paragraphIndex]) - 1;
      newIndex.set(e.paragraphIndex, pi);
    }
    examples.push({ ...e, paragraphIndex: pi });
  }
  return { ...dataset, paragraphs, examples };
}

// ---------------------------------------------------------------------------------------------------------------
// Windows (the shape post-processing needs; built by squad_features.ts)

/** WordPiece tokens of one paragraph's words, shared by all its questions (`all_doc_tokens` of run_squad.py). */
export interface ParagraphTokens {
  /** WordPiece tokens of the whole context. */
  subTokens: string[];
  /** Word index (into `docTokens`) of each sub-token (`tok_to_orig_index`). */
  tokToOrig: Int32Array;
  /** First sub-token of each word (`orig_to_tok_index`). */
  origToTok: Int32Array;
}

/** One input window: `[CLS] question [SEP] context[docStart, docStart+docLength) [SEP]` padded. */
export interface SquadWindow {
  /** Index of the question in the dataset's examples. */
  exampleIndex: number;
  /** Index of this window among its question's windows (`doc_span_index`). */
  docSpanIndex: number;
  /** First context sub-token of the window (index into {@linkcode ParagraphTokens.subTokens}). */
  docStart: number;
  /** Number of context sub-tokens in the window. */
  docLength: number;
  /** Position in the window of the first context token (question length + 2). */
  contextOffset: number;
  /**
   * `token_is_max_context` for the window's context tokens: `maxContext[i]` is 1 when this window gives token
   * `contextOffset + i` its most context (all other positions are not in the map).
   */
  maxContext: Uint8Array;
  /** Training target: window position of the answer's first token; 0 ([CLS]) when the answer is not inside. -1 when not training. */
  startPosition: number;
  /** Training target: window position of the answer's last token (0 when not inside; -1 when not training). */
  endPosition: number;
}

/** What post-processing needs: the questions, their paragraphs' tokens and the windows. */
export interface SquadWindowSet {
  /** Questions and paragraphs. */
  dataset: SquadDataset;
  /** Per paragraph of `dataset.paragraphs`. */
  paragraphTokens: ParagraphTokens[];
  /** Per window, in order. */
  windows: SquadWindow[];
  /** Whether the tokenizer lower-cased (`do_lower_case`, needed by {@linkcode getFinalText}). */
  lowerCase: boolean;
}

/** The window's `token_to_orig_map` as run_squad.py builds it: window position -> word index in the context. */
export function tokenToOrigMap(set: SquadWindowSet, windowIndex: number): Map<number, number> {
  const w = set.windows[windowIndex];
  const pt = set.paragraphTokens[set.dataset.examples[w.exampleIndex].paragraphIndex];
  const map = new Map<number, number>();
  for (let i = 0; i < w.docLength; i++) map.set(w.contextOffset + i, pt.tokToOrig[w.docStart + i]);
  return map;
}

// ---------------------------------------------------------------------------------------------------------------
// Post-processing (write_predictions)

/** Indices of the `n` largest values, largest first; ties keep the lower index first (Python's stable sort). */
export function bestIndexes(logits: ArrayLike<number>, n: number, length = logits.length): number[] {
  const idx = Array.from({ length }, (_, i) => i);
  idx.sort((a, b) => logits[b] - logits[a] || a - b);
  return idx.slice(0, n);
}

/** `_compute_softmax`: softmax of `scores` with the maximum subtracted first. */
export function computeSoftmax(scores: number[]): number[] {
  if (scores.length === 0) return [];
  const max = Math.max(...scores);
  const exps = scores.map((s) => Math.exp(s - max));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}

function stripSpaces(text: string): { ns: string; nsToS: number[] } {
  let ns = "";
  const nsToS: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === " ") continue;
    nsToS.push(i);
    ns += c;
  }
  return { ns, nsToS };
}

/**
 * `get_final_text`: projects the normalised prediction (`pred_text`, e.g. "steve smith") back onto the original
 * words it came from (`orig_text`, e.g. "Steve Smith's") and returns the matching original characters
 * ("Steve Smith"). The original is basic-tokenized (lower-casing and accent stripping when `lowerCase`), spaces
 * are stripped from both, and when the lengths agree the characters are aligned one to one; when any step fails
 * the whole `orig_text` is returned, exactly as BERT does.
 */
export function getFinalText(predText: string, origText: string, lowerCase: boolean): string {
  // BERT's get_final_text builds a plain BasicTokenizer: no never-split tokens.
  const tokText = basicTokenize(origText, lowerCase, { neverSplit: [] }).join(" ");
  const startPosition = tokText.indexOf(predText);
  if (startPosition === -1) return origText;
  const endPosition = startPosition + predText.length - 1;
  const orig = stripSpaces(origText);
  const tok = stripSpaces(tokText);
  if (orig.ns.length !== tok.ns.length) return origText;
  const tokSToNs = new Map<number, number>();
  tok.nsToS.forEach((s, i) => tokSToNs.set(s, i));
  const nsStart = tokSToNs.get(startPosition);
  const origStart = nsStart === undefined ? undefined : orig.nsToS[nsStart];
  if (origStart === undefined) return origText;
  const nsEnd = tokSToNs.get(endPosition);
  const origEnd = nsEnd === undefined ? undefined : orig.nsToS[nsEnd];
  if (origEnd === undefined) return origText;
  return origText.slice(origStart, origEnd + 1);
}

/** Logits of one window (positions beyond the window's real tokens are ignored). */
export interface WindowLogits {
  startLogits: ArrayLike<number>; // [seq]
  endLogits: ArrayLike<number>; // [seq]
}

/** One n-best entry, in the official `nbest_predictions.json` layout. */
export interface NBestEntry {
  text: string;
  probability: number;
  start_logit: number;
  end_logit: number;
}

/** Options for {@linkcode postprocessSquad}. */
export interface PostprocessOptions {
  /** Candidates kept per question, and start/end indices considered per window (`n_best_size`). Default 20. */
  nBestSize?: number;
  /** Longest answer in sub-tokens (`max_answer_length`). Default 30. */
  maxAnswerLength?: number;
}

/** Predictions of {@linkcode postprocessSquad}. */
export interface SquadPredictions {
  /** `predictions.json`: question id -> answer text. */
  predictions: Record<string, string>;
  /** `nbest_predictions.json`: question id -> candidates, best first. */
  nbest: Record<string, NBestEntry[]>;
}

/**
 * `write_predictions` without the writing: for every question, the best `nBestSize` start and end positions of
 * each of its windows are paired; pairs outside the context, ending before they start, longer than
 * `maxAnswerLength` or starting at a token for which this window is not the max-context one are dropped; the rest
 * are ranked by start+end logit, mapped back to the original text with {@linkcode getFinalText}, de-duplicated, and
 * given softmax probabilities over the n-best. `results[w]` holds the logits of `set.windows[w]`.
 */
export function postprocessSquad(
  set: SquadWindowSet,
  results: WindowLogits[],
  options: PostprocessOptions = {},
): SquadPredictions {
  const nBest = options.nBestSize ?? 20;
  const maxAnswerLength = options.maxAnswerLength ?? 30;
  if (results.length !== set.windows.length) {
    throw new Error(`postprocessSquad: ${results.length} logit rows for ${set.windows.length} windows`);
  }
  const byExample: number[][] = set.dataset.examples.map(() => []);
  set.windows.forEach((w, i) => byExample[w.exampleIndex].push(i));
  const predictions: Record<string, string> = {};
  const nbestAll: Record<string, NBestEntry[]> = {};
  for (const [ei, example] of set.dataset.examples.entries()) {
    const paragraph = set.dataset.paragraphs[example.paragraphIndex];
    const pt = set.paragraphTokens[example.paragraphIndex];
    const prelim: { w: number; start: number; end: number; startLogit: number; endLogit: number }[] = [];
    for (const wi of byExample[ei]) {
      const w = set.windows[wi];
      const r = results[wi];
      const length = w.contextOffset + w.docLength + 1; // len(feature.tokens)
      const starts = bestIndexes(r.startLogits, nBest);
      const ends = bestIndexes(r.endLogits, nBest);
      for (const s of starts) {
        for (const e of ends) {
          if (s >= length || e >= length) continue;
          // in token_to_orig_map
          if (s < w.contextOffset || s >= w.contextOffset + w.docLength) continue;
          if (e < w.contextOffset || e >= w.contextOffset + w.docLength) continue;
          if (w.maxContext[s - w.contextOffset] !== 1) continue;
          if (e < s) continue;
          if (e - s + 1 > maxAnswerLength) continue;
          prelim.push({ w: wi, start: s, end: e, startLogit: r.startLogits[s], endLogit: r.endLogits[e] });
        }
      }
    }
    // Python's sorted(..., reverse=True) is stable: equal scores keep their order.
    prelim.sort((a, b) => (b.startLogit + b.endLogit) - (a.startLogit + a.endLogit));
    const seen = new Set<string>();
    const nbest: { text: string; startLogit: number; endLogit: number }[] = [];
    for (const p of prelim) {
      if (nbest.length >= nBest) break;
      const w = set.windows[p.w];
      let finalText = "";
      if (p.start > 0) {
        const a = w.docStart + p.start - w.contextOffset;
        const b = w.docStart + p.end - w.contextOffset;
        const tokTokens = pt.subTokens.slice(a, b + 1);
        const origStart = pt.tokToOrig[a];
        const origEnd = pt.tokToOrig[b];
        const origText = paragraph.docTokens.slice(origStart, origEnd + 1).join(" ");
        let tokText = tokTokens.join(" ").replaceAll(" ##", "").replaceAll("##", "");
        tokText = whitespaceTokenize(tokText).join(" ");
        finalText = getFinalText(tokText, origText, set.lowerCase);
        if (seen.has(finalText)) continue;
      }
      seen.add(finalText);
      nbest.push({ text: finalText, startLogit: p.startLogit, endLogit: p.endLogit });
    }
    if (nbest.length === 0) nbest.push({ text: "empty", startLogit: 0, endLogit: 0 });
    const probs = computeSoftmax(nbest.map((e) => e.startLogit + e.endLogit));
    nbestAll[example.id] = nbest.map((e, i) => ({
      text: e.text,
      probability: probs[i],
      start_logit: e.startLogit,
      end_logit: e.endLogit,
    }));
    predictions[example.id] = nbest[0].text;
  }
  return { predictions, nbest: nbestAll };
}

/** Options for {@linkcode writeSquadPredictions}. */
export interface WritePredictionsOptions extends PostprocessOptions {
  /** Folder receiving `predictions.json` and `nbest_predictions.json`. */
  outputDir: string;
}

/**
 * `write_predictions`: {@linkcode postprocessSquad}, then `predictions.json` ({qid: text}) and
 * `nbest_predictions.json` ({qid: [{text, probability, start_logit, end_logit}]}) in `outputDir`, each written
 * atomically, in the official formats (4-space indented JSON, as run_squad.py writes them).
 */
export async function writeSquadPredictions(
  set: SquadWindowSet,
  results: WindowLogits[],
  options: WritePredictionsOptions,
): Promise<SquadPredictions & { predictionsPath: string; nbestPath: string }> {
  const out = postprocessSquad(set, results, options);
  const predictionsPath = `${options.outputDir.replace(/\/+$/, "")}/predictions.json`;
  const nbestPath = `${options.outputDir.replace(/\/+$/, "")}/nbest_predictions.json`;
  await writeFileAtomic(predictionsPath, JSON.stringify(out.predictions, null, 4) + "\n");
  await writeFileAtomic(nbestPath, JSON.stringify(out.nbest, null, 4) + "\n");
  return { ...out, predictionsPath, nbestPath };
}

// ---------------------------------------------------------------------------------------------------------------
// Notebook helpers

/**
 * The context as HTML with the predicted answer highlighted (`<mark>`, its score in the tooltip and after it).
 * The first occurrence of `answerText` is marked; when it does not occur, the context is shown unmarked with a
 * note. `score` is e.g. the n-best probability.
 *
 * @example highlightAnswer("Denver Broncos won.", "Denver Broncos", 0.91)
 * // '<div class="squad-context">…<mark title="score 0.910">Denver Broncos</mark>…</div>'
 */
export function highlightAnswer(context: string, answerText: string, score?: number): string {
  const scoreText = score === undefined ? "" : score.toFixed(3);
  const at = answerText.length > 0 ? context.indexOf(answerText) : -1;
  const style = "line-height:1.6;font-family:sans-serif";
  if (at < 0) {
    return `<div class="squad-context" style="${style}">${escapeHtml(context)}` +
      `<div><em>answer ${escapeHtml(JSON.stringify(answerText))} not found in the context</em></div></div>`;
  }
  const before = escapeHtml(context.slice(0, at));
  const span = escapeHtml(answerText);
  const after = escapeHtml(context.slice(at + answerText.length));
  const title = scoreText ? ` title="score ${scoreText}"` : "";
  const badge = scoreText ? `<sup style="color:#666">${scoreText}</sup>` : "";
  return `<div class="squad-context" style="${style}">${before}` +
    `<mark style="background:#ffe066;padding:0 2px"${title}>${span}</mark>${badge}${after}</div>`;
}
