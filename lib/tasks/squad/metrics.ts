/**
 * The official SQuAD v1.1 evaluation (`evaluate-v1.1.py`), exactly: answers are normalised (lower-cased,
 * ASCII punctuation removed, the articles a/an/the removed as whole words, whitespace collapsed), then each
 * prediction scores the best exact match and the best token F1 over the question's gold answers. Both are
 * averaged over every question of the dataset (a missing prediction scores 0) and reported ×100.
 *
 * Python details reproduced on purpose: `str.split()` splits on Python's Unicode whitespace set (which differs
 * from JavaScript's `\s`), and `re`'s `\b` is Unicode-aware (letters and digits of every script are word
 * characters), so "the" inside "éthe" is not an article.
 * @module
 */
import { isRecord } from "../../io/json.ts";

/** Python's `string.punctuation` (the 32 ASCII punctuation characters). */
export const PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

const PUNCT_SET = new Set(PUNCTUATION);

/** Python's `str.isspace()` characters, i.e. what `str.split()` with no argument splits on. */
// deno-lint-ignore no-control-regex
const PY_WHITESPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;

/** `re.sub(r'\b(a|an|the)\b', ' ', text)` with Python 3's Unicode word characters. */
const ARTICLES = /(?<![\p{L}\p{N}_])(?:a|an|the)(?![\p{L}\p{N}_])/gu;

/** Python's `text.split()`: split on runs of whitespace, dropping empty strings at both ends. */
export function pySplit(text: string): string[] {
  return text.split(PY_WHITESPACE).filter((t) => t.length > 0);
}

/** The official `normalize_answer`: lower case, drop punctuation, drop articles, collapse whitespace. */
export function normalizeAnswer(s: string): string {
  let text = s.toLowerCase();
  let out = "";
  for (const ch of text) if (!PUNCT_SET.has(ch)) out += ch;
  text = out.replace(ARTICLES, " ");
  return pySplit(text).join(" ");
}

/** The official `exact_match_score`: 1 when the normalised strings are equal, else 0. */
export function exactMatchScore(prediction: string, groundTruth: string): number {
  return normalizeAnswer(prediction) === normalizeAnswer(groundTruth) ? 1 : 0;
}

/** The official `f1_score`: F1 of the bags of normalised tokens (`Counter` intersection), in [0, 1]. */
export function f1Score(prediction: string, groundTruth: string): number {
  const predTokens = pySplit(normalizeAnswer(prediction));
  const goldTokens = pySplit(normalizeAnswer(groundTruth));
  const goldCounts = new Map<string, number>();
  for (const t of goldTokens) goldCounts.set(t, (goldCounts.get(t) ?? 0) + 1);
  let numSame = 0;
  for (const t of predTokens) {
    const c = goldCounts.get(t) ?? 0;
    if (c > 0) {
      numSame++;
      goldCounts.set(t, c - 1);
    }
  }
  if (numSame === 0) return 0;
  const precision = numSame / predTokens.length;
  const recall = numSame / goldTokens.length;
  return (2 * precision * recall) / (precision + recall);
}

/** The official `metric_max_over_ground_truths`. An empty gold list scores 0 (the official script would crash). */
export function maxOverGroundTruths(
  metric: (prediction: string, groundTruth: string) => number,
  prediction: string,
  groundTruths: string[],
): number {
  let best = 0;
  for (const g of groundTruths) best = Math.max(best, metric(prediction, g));
  return best;
}

/** One question with its gold answer texts. */
export interface GoldQuestion {
  id: string;
  answers: string[];
}

/**
 * What {@linkcode evaluateSquad} accepts as the dataset: the official JSON (`{version, data}`), its `data`
 * array, a parsed {@linkcode import("./squad.ts").SquadDataset} (anything with `examples: {id, answers}[]`), or
 * a plain list of {@linkcode GoldQuestion}.
 */
export type SquadGold =
  | { data: unknown[] }
  | unknown[]
  | { examples: { id: string; answers: { text: string }[] }[] }
  | GoldQuestion[];

/** Result of {@linkcode evaluateSquad}: percentages as the official script prints them, plus counts. */
export interface SquadScores {
  /** Mean exact match ×100. */
  exact_match: number;
  /** Mean token F1 ×100. */
  f1: number;
  /** Number of questions in the dataset (the denominator). */
  total: number;
  /** Questions with no prediction (scored 0). */
  missing: number;
}

/** Flattens any accepted dataset shape into questions with their gold answer texts. */
export function goldQuestions(dataset: SquadGold): GoldQuestion[] {
  if (isRecord(dataset) && Array.isArray((dataset as { examples?: unknown }).examples)) {
    return (dataset as { examples: { id: string; answers: { text: string }[] }[] }).examples.map((e) => ({
      id: e.id,
      answers: e.answers.map((a) => a.text),
    }));
  }
  const articles = isRecord(dataset) ? (dataset as { data: unknown }).data : dataset;
  if (!Array.isArray(articles)) throw new Error("evaluateSquad: the dataset has no `data` array of articles");
  if (articles.length > 0 && isRecord(articles[0]) && typeof articles[0].id === "string") {
    return articles as GoldQuestion[];
  }
  const out: GoldQuestion[] = [];
  for (const [ai, article] of articles.entries()) {
    const paragraphs = isRecord(article) ? article.paragraphs : undefined;
    if (!Array.isArray(paragraphs)) throw new Error(`evaluateSquad: article ${ai} has no paragraphs array`);
    for (const [pi, paragraph] of paragraphs.entries()) {
      const qas = isRecord(paragraph) ? paragraph.qas : undefined;
      if (!Array.isArray(qas)) throw new Error(`evaluateSquad: article ${ai} paragraph ${pi} has no qas array`);
      for (const qa of qas) {
        if (!isRecord(qa) || typeof qa.id !== "string" || !Array.isArray(qa.answers)) {
          throw new Error(
            `evaluateSquad: article ${ai} paragraph ${pi}: question ${JSON.stringify(qa)?.slice(0, 80)} ` +
              `has no string id or no answers array`,
          );
        }
        out.push({ id: qa.id, answers: qa.answers.map((a) => String((a as { text: unknown }).text)) });
      }
    }
  }
  return out;
}

/** Options for {@linkcode evaluateSquad}. */
export interface EvaluateSquadOptions {
  /** Where warnings go (default `console.warn`); the official script prints one line per unanswered question. */
  warn?: (message: string) => void;
}

/**
 * The official SQuAD v1.1 `evaluate(dataset, predictions)`: mean of the best exact match and best F1 over each
 * question's gold answers, ×100, over all questions (missing predictions count 0, with a warning).
 *
 * @example
 * ```ts
 * const gold = JSON.parse(await Deno.readTextFile("dev-v1.1.json"));
 * const preds = JSON.parse(await Deno.readTextFile("predictions.json"));
 * console.log(evaluateSquad(gold, preds)); // { exact_match: 80.9, f1: 88.2, total: 10570, missing: 0 }
 * ```
 */
export function evaluateSquad(
  dataset: SquadGold,
  predictions: Record<string, string>,
  options: EvaluateSquadOptions = {},
): SquadScores {
  const warn = options.warn ?? ((m: string) => console.warn(m));
  const questions = goldQuestions(dataset);
  let em = 0;
  let f1 = 0;
  let missing = 0;
  for (const q of questions) {
    if (!Object.hasOwn(predictions, q.id)) {
      missing++;
      if (missing <= 5) warn(`Unanswered question ${q.id} will receive score 0.`);
      continue;
    }
    const prediction = String(predictions[q.id]);
    em += maxOverGroundTruths(exactMatchScore, prediction, q.answers);
    f1 += maxOverGroundTruths(f1Score, prediction, q.answers);
  }
  if (missing > 5) warn(`... ${missing} unanswered questions in all (each scores 0).`);
  const total = questions.length;
  return {
    exact_match: total ? (100 * em) / total : 0,
    f1: total ? (100 * f1) / total : 0,
    total,
    missing,
  };
}
