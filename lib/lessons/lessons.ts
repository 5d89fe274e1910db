/**
 * Small helpers that the notebooks' cells call, so that the cells stay short: which starting model a lesson
 * uses (and a notice saying what that means), the learning rate that suits it, `maxSeqLength` from the length
 * distribution, a checkpoint's load report as table rows, a fine-tuning comparison of several starting points, a
 * progress bar with a live loss chart for one training run, a task's data with the sample as fallback, and how
 * far a word's contextual vectors separate its senses.
 *
 * ```ts
 * import { chooseStartingModel } from "../model/pretrained.ts";
 * import { showStartingModel } from "./lessons.ts";
 * const start = await chooseStartingModel({ offline: true });
 * await showStartingModel(start);
 * ```
 * @module
 */
import type { LoadReport } from "../model/checkpoint.ts";
import { createProgress, displayHtml, escapeHtml } from "../viz/display.ts";
import { type FeatureSet, percentile } from "../data/features.ts";
import type { Dataset } from "../data/datasets.ts";
import { getTask, resolveTaskData, type TaskData, type TaskSpec } from "../data/tasks.ts";
import { cosine, wordVectors } from "../eval/embeddings.ts";
import type { BertModel } from "../model/model.ts";
import type { FullTokenizer } from "../text/tokenizer.ts";
import { createLiveLineChart, type LiveLineChart } from "../viz/plots.ts";
import type { StartingModel, StartingModelKind } from "../model/pretrained.ts";
import { type SquadFeatures, windowTokens } from "../tasks/squad/features.ts";
import { type EvalEvent, type ProgressEvent, train } from "../training/train.ts";
import { classificationTask } from "../tasks/classification/task.ts";

/** Peak fine-tuning learning rates of the lessons: BERT-Tiny-sized models learn best far above BERT-Base's 2e-5. */
export const LESSON_LEARNING_RATES: Readonly<Record<"pretrained" | "random", number>> = {
  /** A pre-trained BERT-Tiny-shaped encoder (Google's, or the shipped `data/pretrained/`): the best of the team's grid. */
  pretrained: 1e-3,
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
      return "the shipped data/pretrained (IMDB, masked LM + NSP)";
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

/** One starting point of {@linkcode compareFineTuning}: a model factory and the features in its vocabulary. */
export interface FineTuningStart {
  /** Shown in the chart legend, the progress label and the table. */
  name: string;
  /** Folder name: checkpoints go to `<outputDir>/finetune-<key>/`. */
  key: string;
  /** Builds the model with a fresh classification head (called once, disposed after training). */
  make: () => Promise<BertModel>;
  /** The vocabulary the features were made with (copied into the checkpoints). */
  vocabPath: string;
  train: FeatureSet;
  dev: FeatureSet;
}

/** Options of {@linkcode compareFineTuning}: the recipe shared by every start. */
export interface CompareFineTuningOptions {
  outputDir: string;
  epochs: number;
  batchSize: number;
  learningRate: number;
  seed: number;
  /** Dropout while fine-tuning (default 0.1, BERT's). */
  dropout?: number;
  /** Chart title (default "Fine-tuning: dev accuracy"). */
  title?: string;
}

/** One row of {@linkcode compareFineTuning}'s result. */
export interface FineTuningRow {
  start: string;
  "final dev accuracy": number;
  "best dev accuracy": number;
  "dev loss": number;
  seconds: number;
}

/**
 * Fine-tunes each start with exactly the same recipe (data order, dropout, updates), evaluating twice per epoch,
 * with a progress bar per start and one live chart of dev accuracy; returns a row per start.
 */
export async function compareFineTuning(
  starts: FineTuningStart[],
  options: CompareFineTuningOptions,
): Promise<FineTuningRow[]> {
  const chart = createLiveLineChart({
    title: options.title ?? "Fine-tuning: dev accuracy",
    xTitle: "update",
    yTitle: "dev accuracy",
    series: starts.map((s) => s.name),
    every: 1,
  });
  const rows: FineTuningRow[] = [];
  for (const start of starts) {
    const stepsPerEpoch = Math.ceil(start.train.n / options.batchSize);
    const model = await start.make();
    const progress = createProgress({ total: options.epochs * stepsPerEpoch, label: start.name });
    try {
      const result = await train({
        model,
        vocabPath: start.vocabPath,
        task: classificationTask({ train: start.train, dev: start.dev }),
        outputDir: `${options.outputDir}/finetune-${start.key}`,
        epochs: options.epochs,
        batchSize: options.batchSize,
        learningRate: options.learningRate,
        dropout: options.dropout ?? 0.1,
        seed: options.seed,
        evalSteps: Math.max(1, Math.ceil(stepsPerEpoch / 2)),
        saveTotalLimit: 1,
        overwrite: true,
        quiet: true,
        onProgress: (e) =>
          e.phase === "train"
            ? progress.update({ step: e.step, epoch: e.epoch, loss: e.loss, etaSeconds: e.etaSeconds })
            : undefined,
        onEval: (e) => chart.push(start.name, e.step, e.scalars.accuracy),
      });
      await progress.done();
      rows.push({
        start: start.name,
        "final dev accuracy": result.finalEval!.scalars.accuracy,
        "best dev accuracy": result.bestMetric!.value,
        "dev loss": result.finalEval!.scalars.loss,
        seconds: Math.round(result.runtimeSeconds),
      });
    } finally {
      model.dispose();
    }
  }
  await chart.done();
  return rows;
}

/**
 * The tokens of SQuAD window `row` as HTML, for reading what the model receives: the question, the context and
 * the first gold answer's sub-tokens (where they fall inside this window) in three colours, `[CLS]`/`[SEP]` grey,
 * with a legend and the gold span's window positions (the start/end targets of training).
 */
export function windowTokensHtml(features: SquadFeatures, row: number): string {
  const tokens = windowTokens(features, row);
  const w = features.windows[row];
  const [s, e] = [features.answerTokenSpans[2 * w.exampleIndex], features.answerTokenSpans[2 * w.exampleIndex + 1]];
  // Gold span in window positions, when it lies wholly inside this window's context.
  const inside = s >= w.docStart && e >= s && e < w.docStart + w.docLength;
  const [gs, ge] = inside ? [w.contextOffset + s - w.docStart, w.contextOffset + e - w.docStart] : [-1, -1];
  const style = { special: "color:#888", question: "background:#dbe9ff", context: "", gold: "background:#ffe08a" };
  const kind = (i: number): keyof typeof style =>
    i === 0 || i === w.contextOffset - 1 || i === tokens.length - 1
      ? "special"
      : i < w.contextOffset
      ? "question"
      : i >= gs && i <= ge
      ? "gold"
      : "context";
  const spans = tokens.map((t, i) => `<span style="${style[kind(i)]}" title="${i}">${escapeHtml(t)}</span>`);
  const legend = `<span style="${style.question}">question</span> · context · ` +
    `<span style="${style.gold}">gold answer</span>` +
    (inside ? ` (window positions ${gs}–${ge})` : " (not inside this window: the target is [CLS], position 0)");
  return `<div style="line-height:1.8;font-family:monospace;font-size:90%">${spans.join(" ")}</div>` +
    `<div style="font-size:85%;margin-top:4px">${legend}</div>`;
}

/** Options of {@linkcode liveTraining}. */
export interface LiveTrainingOptions {
  /** Updates in the run: the progress bar's 100%. */
  total: number;
  /** Text in front of the progress bar. */
  label: string;
  /** The chart's title. */
  title: string;
  /** The chart's y-axis title (default "loss"). */
  yTitle?: string;
  /** Series of the training loss, a point per update (default "train loss"). */
  trainSeries?: string;
  /** Series of the evaluation loss (`scalars.loss`), a point per evaluation (default "dev loss"). */
  evalSeries?: string;
  /** Redraw the chart every this many points (default 10). */
  every?: number;
}

/** What {@linkcode liveTraining} returns: `train()` callbacks, the chart (to add points of your own) and `done`. */
export interface LiveTraining {
  chart: LiveLineChart;
  /** For `train()`'s `onProgress`: after each update, the progress bar and a training-loss point. */
  onProgress: (e: ProgressEvent) => Promise<void>;
  /** For `train()`'s `onEval`: an evaluation-loss point. */
  onEval: (e: EvalEvent<unknown>) => Promise<void>;
  /** Final redraw of both; call after training. */
  done: () => Promise<void>;
}

/**
 * A progress bar and a live loss chart (training loss per update, evaluation loss per evaluation) for one
 * training run, both redrawn in place in a notebook.
 *
 * @example
 * ```ts
 * const live = liveTraining({ total: totalSteps, label: "train", title: "Loss while training" });
 * await train({ ...options, onProgress: live.onProgress, onEval: live.onEval });
 * await live.done();
 * ```
 */
export function liveTraining(options: LiveTrainingOptions): LiveTraining {
  const trainSeries = options.trainSeries ?? "train loss", evalSeries = options.evalSeries ?? "dev loss";
  const progress = createProgress({ total: options.total, label: options.label });
  const chart = createLiveLineChart({
    title: options.title,
    xTitle: "update",
    yTitle: options.yTitle ?? "loss",
    series: [trainSeries, evalSeries],
    every: options.every,
  });
  return {
    chart,
    async onProgress(e) {
      if (e.phase !== "train") return;
      const { step, epoch, loss, lr, examplesPerSec, etaSeconds } = e;
      await progress.update({ step, epoch, loss, lr, examplesPerSec, etaSeconds });
      await chart.push(trainSeries, e.step, e.loss);
    },
    onEval: (e) => chart.push(evalSeries, e.step, e.scalars.loss),
    async done() {
      await progress.done();
      await chart.done();
    },
  };
}

/** Options of {@linkcode readTaskOrSample}. */
export interface ReadTaskOrSampleOptions {
  /** Read at most this many training examples (default: all). */
  trainLimit?: number;
  /** Read at most this many dev examples (default: all). */
  devLimit?: number;
}

/** The data of a task as {@linkcode readTaskOrSample} read it. */
export interface TaskDataRead {
  /** The task that was read: the one asked for, or `sample` when its files are absent. */
  spec: TaskSpec;
  files: TaskData;
  train: Dataset;
  dev: Dataset;
}

/**
 * Reads the train and dev sets of task `name`; when its files are absent (e.g. no `../shared` on this machine) it
 * warns with the reason and reads the embedded sample (`data/sample`) instead, so that a lesson still runs.
 */
export async function readTaskOrSample(name: string, options: ReadTaskOrSampleOptions = {}): Promise<TaskDataRead> {
  let spec = getTask(name);
  let files: TaskData;
  try {
    files = await resolveTaskData(spec);
  } catch (err) {
    console.warn(`${(err as Error).message}\nfalling back to the embedded sample (data/sample)`);
    spec = getTask("sample");
    files = await resolveTaskData(spec);
  }
  const train = await spec.read(files.train, { limit: options.trainLimit });
  const dev = await spec.read(files.dev, { limit: options.devLimit });
  return { spec, files, train, dev };
}

/**
 * How well the contextual vectors of `word` ({@linkcode wordVectors}, last layer) separate its senses: the mean
 * cosine over pairs of sentences with the same sense, and over pairs with different senses. A model that tells
 * the senses apart has `same` clearly above `cross`.
 *
 * @example senseSimilarity(model, tokenizer, "bank", [{ sense: "river", text: "the river bank" }, ...])
 */
export function senseSimilarity(
  model: BertModel,
  tokenizer: FullTokenizer,
  word: string,
  sentences: readonly { sense: string; text: string }[],
): { same: number; cross: number } {
  const v = sentences.map((s) => wordVectors(model, tokenizer, s.text, word));
  let same = 0, sameN = 0, cross = 0, crossN = 0;
  for (let i = 0; i < v.length; i++) {
    for (let j = i + 1; j < v.length; j++) {
      const c = cosine(v[i], v[j]);
      if (sentences[i].sense === sentences[j].sense) [same, sameN] = [same + c, sameN + 1];
      else [cross, crossN] = [cross + c, crossN + 1];
    }
  }
  return { same: same / sameN, cross: cross / crossN };
}
