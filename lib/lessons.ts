/**
 * Small helpers that the notebooks' cells call, so that the cells stay short: which starting model a lesson
 * uses (and a notice saying what that means), the learning rate that suits it, `maxSeqLength` from the length
 * distribution, and a checkpoint's load report as table rows.
 *
 * ```ts
 * import { chooseStartingModel } from "./pretrained.ts";
 * import { showStartingModel } from "./lessons.ts";
 * const start = await chooseStartingModel({ offline: true });
 * await showStartingModel(start);
 * ```
 * @module
 */
import type { LoadReport } from "./checkpoint.ts";
import { displayHtml, escapeHtml } from "./display.ts";
import { percentile } from "./features.ts";
import type { StartingModel, StartingModelKind } from "./pretrained.ts";

/** Peak fine-tuning learning rates of the lessons: BERT-Tiny-sized models learn best far above BERT-Base's 2e-5. */
export const LESSON_LEARNING_RATES: Readonly<Record<"pretrained" | "random", number>> = {
  /** A pre-trained BERT-Tiny-shaped encoder (Google's, or the shipped `data/pretrained/`). */
  pretrained: 3e-4,
  /** Random weights of the same shape: 2e-5 leaves them at the majority class. */
  random: 1e-3,
};

/** The peak learning rate for a start of this kind ({@linkcode LESSON_LEARNING_RATES}). */
export function lessonLearningRate(kind: StartingModelKind): number {
  return kind === "random" ? LESSON_LEARNING_RATES.random : LESSON_LEARNING_RATES.pretrained;
}

/** A short label of where the weights come from, for table captions and legends. */
export function startingModelLabel(start: StartingModel): string {
  switch (start.kind) {
    case "hub-cache":
    case "hub-download":
      return "Google's BERT-Tiny (hub)";
    case "shipped":
      return "the shipped data/pretrained (IMDB, masked LM)";
    case "given":
      return start.dir ?? "given folder";
    default:
      return "random weights";
  }
}

/** The notice of a starting model as HTML: which model, why, and (shipped or random) what that means. */
export function startingModelHtml(start: StartingModel): string {
  const colour = start.kind === "random" ? "#b00020" : start.kind === "shipped" ? "#8a5a00" : "#1b5e20";
  const lines = (start.notice ?? []).map(escapeHtml).join(" ");
  return `<div style="border-left:4px solid ${colour};padding:4px 10px;max-width:60em">` +
    `<b>Starting model:</b> ${escapeHtml(start.why)}${lines ? `<br>${lines}` : ""}</div>`;
}

/** Shows {@linkcode startingModelHtml} in a notebook (plain lines in a terminal). */
export async function showStartingModel(start: StartingModel): Promise<void> {
  const text = [`starting model: ${start.why}`, ...(start.notice ?? [])].join("\n");
  await displayHtml(startingModelHtml(start), { text });
}

/** Options of {@linkcode chooseMaxSeqLength}. */
export interface ChooseMaxSeqLengthOptions {
  /** The share of examples that must fit, in percent (default 99). */
  percent?: number;
  /** Round up to a multiple of this (default 8). */
  multiple?: number;
  /** Never more than this (default 512, BERT's position limit). */
  max?: number;
}

/**
 * A `maxSeqLength` that fits `percent`% of the examples (token counts with `[CLS]`/`[SEP]`), rounded up to a
 * multiple of `multiple`: the usual choice, as padding costs compute and cutting loses text.
 */
export function chooseMaxSeqLength(lengths: number[], options: ChooseMaxSeqLengthOptions = {}): number {
  if (lengths.length === 0) throw new Error("chooseMaxSeqLength: no lengths given");
  const multiple = options.multiple ?? 8;
  const p = percentile(lengths, options.percent ?? 99);
  return Math.min(options.max ?? 512, Math.max(multiple, Math.ceil(p / multiple) * multiple));
}

/** A checkpoint's load report as `{ weights, names }` rows (what is new, what was not used). */
export function loadReportRows(report: LoadReport): { weights: string; names: string }[] {
  const list = (names: string[]) => names.join(", ") || "none";
  return [
    { weights: "new (randomly initialised)", names: list(report.newlyInitialised) },
    { weights: "in the checkpoint, not used", names: list(report.unexpected) },
    { weights: "skipped on purpose (buffers, tied weights)", names: list(report.ignored) },
  ];
}
