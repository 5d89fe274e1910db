/**
 * Training, in a loop you can read top to bottom (in the spirit of nanoGPT's `train.py`). {@linkcode train} takes a
 * model and a task ({@linkcode TrainTask}, lib/training/task.ts: classification, SQuAD, pre-training), then:
 *
 * 1. finds where the run starts: a checkpoint to resume from (lib/training/checkpoints.ts), the hyper-parameters
 *    with BERT fine-tuning defaults (lib/training/hyperparameters.ts), checked inputs, the schedule;
 * 2. loops over epochs, each a shuffle seeded by `(seed, epoch)` (lib/training/rng.ts), and over updates: forward
 *    + backward per micro-batch with dropout seeded by `(seed, step, micro)`, gradient accumulation, clipping,
 *    AdamW with linear warmup/decay (lib/training/step.ts), so a resumed run repeats the uninterrupted one exactly;
 * 3. after an update: progress events; validation after each epoch (and every `evalSteps`); a checkpoint after each
 *    epoch (and every `saveSteps`, and at each new best), keeping the last `saveTotalLimit` plus the best by
 *    `metricForBest`; on SIGINT/SIGTERM (with `handleSignals`) a checkpoint, then {@linkcode TrainingInterrupted};
 * 4. writes `train_results.json`.
 *
 * {@linkcode consoleProgress} draws the progress on a terminal; {@linkcode trainSeeds} runs once per seed and
 * reports the mean ± std of the headline metric.
 * @module
 */
import { createProgress, formatDuration } from "../viz/display.ts";
import { basename, join, writeJsonAtomic } from "../io/fsutil.ts";
import type { HeadlineMetric } from "../eval/metrics.ts";
import type { BertModel } from "../model/model.ts";
import { AdamW } from "./optim.ts";
import { exitProcess } from "../backends/exit.ts";
import {
  adamWOptions,
  givenHyperParameters,
  hpToJson,
  type HyperParameters,
  lengthChangeNotice,
  resolveHyperParameters,
  type Schedule,
  trainingSchedule,
} from "./hyperparameters.ts";
import { epochOrderState, Rng, shuffledOrder } from "./rng.ts";
import {
  canonicalMetric,
  checkTaskInputs,
  checkVocabFits,
  chooseMetricForBest,
  higherIsBetter,
  type TrainTask,
} from "./task.ts";
import {
  type EvalLogEntry,
  findResumePoint,
  listCheckpoints,
  type LogEntry,
  prepareRunDir,
  restoreTrainingCheckpoint,
  type ResumePoint,
  rotateCheckpoints,
  type RunPosition,
  saveTrainingCheckpoint,
  trainerStateJson,
} from "./checkpoints.ts";
import { updateStep, type UpdateStepResult } from "./step.ts";

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
export interface EvalEvent<D = unknown> {
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

/**
 * Options of {@linkcode train}. Hyper-parameters left out take `DEFAULT_HYPERPARAMETERS` (or, when resuming, the
 * checkpoint's).
 */
export interface TrainOptions<B = unknown, D = unknown> extends Partial<HyperParameters> {
  /** The model (its weights are updated in place); its head must be the task's. */
  model: BertModel;
  /** The vocabulary copied into every checkpoint (`vocab.txt`). */
  vocabPath: string;
  /** What to train on: `classificationTask(...)` (lib/tasks/classification/task.ts), `squadTask`, ... */
  task: TrainTask<B, D>;
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
  /**
   * Stop after this update as Ctrl-C would (checkpoint saved, {@linkcode TrainingInterrupted} thrown, with exit status
   * 0): a run can be cut into sessions at a fixed step, and a recipe whose schedule was changed midway (`--resume` with
   * another length) re-run exactly. Ignored when it is not before the run's last update.
   */
  stopAt?: number;
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
  | "stopAt"
>;

/** What {@linkcode train} returns. */
export interface TrainResult<D = unknown> {
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

/**
 * Thrown by {@linkcode train} once the checkpoint is saved: after SIGINT/SIGTERM (with `handleSignals`), or at the
 * `stopAt` update.
 */
export class TrainingInterrupted extends Error {
  /** The exit status a CLI should end with: 130 as for Ctrl-C, 0 for a planned `stopAt`. */
  readonly exitCode: number;
  constructor(message: string, readonly checkpoint: string, readonly signal: string) {
    super(message);
    this.name = "TrainingInterrupted";
    this.exitCode = signal.startsWith("--stop-at") ? 0 : 130;
  }
}

/**
 * Trains `options.model` on `options.task`. See the module documentation for the loop and
 * lib/training/checkpoints.ts for what it writes.
 *
 * @example
 * ```ts
 * const { model, vocabPath } = await loadCheckpoint("models/bert-tiny", { head: "classification", labels });
 * const result = await train({ model, vocabPath, task: classificationTask({ train, dev }),
 *   outputDir: "outputs/sst2", epochs: 3, onProgress: (e) => console.log(e.step, e.loss) });
 * console.log(result.bestCheckpoint, result.bestMetric);
 * ```
 */
export async function train<B = unknown, D = unknown>(options: TrainOptions<B, D>): Promise<TrainResult<D>> {
  const started = performance.now();
  const { model, task, outputDir, vocabPath } = options;
  const log = (msg: string) => {
    if (!options.quiet) console.log(msg);
  };

  // ---- where the run starts: a checkpoint to resume from, the hyper-parameters, checked inputs, the schedule ----
  const resume = await findResumePoint(options.resume, outputDir, log);
  const savedHp = resume && { hyperParameters: resume.state.hyper_parameters, dir: resume.dir };
  const hp = resolveHyperParameters(givenHyperParameters(options), savedHp);
  await checkTaskInputs(task, model, vocabPath);
  const metricForBest = chooseMetricForBest(task, options.metricForBest);
  const control = runControl(options);
  await checkVocabFits(vocabPath, model);
  const fingerprint = await task.fingerprint();
  if (resume) checkResumeData(resume, task, fingerprint);
  const schedule = trainingSchedule(task.n, hp);
  const { batchesPerEpoch, stepsPerEpoch, totalSteps } = schedule;
  if (hp.dropout !== null) {
    model.config.hiddenDropoutProb = hp.dropout;
    model.config.attentionProbsDropoutProb = hp.dropout;
  }
  await prepareRunDir(outputDir, { fresh: !resume, overwrite: options.overwrite, log });
  const optimizer = new AdamW(model.params, adamWOptions(hp));
  const run = new TrainingRun({ options, hp, schedule, optimizer, fingerprint, control, metricForBest, log });
  if (resume) await run.restore(resume);
  await run.start();

  // ---- the loop: epochs of seeded order, updates of `gradAccumSteps` micro-batches ----
  const at = run.position; // the update, the epoch and the update within it
  const signals = watchSignals(options.handleSignals ?? false);
  const every = (n: number) => n > 0 && at.globalStep % n === 0;
  try {
    while (at.globalStep < totalSteps) {
      const orderState = epochOrderState(hp.seed, at.epoch);
      const order = shuffledOrder(task.n, new Rng(orderState));
      if (at.stepInEpoch === 0) run.startEpoch();
      while (at.stepInEpoch < stepsPerEpoch && at.globalStep < totalSteps) {
        const first = at.stepInEpoch * hp.gradAccumSteps;
        const last = Math.min(batchesPerEpoch, first + hp.gradAccumSteps);
        const { globalStep: step, epoch } = at;
        run.record(await updateStep({ model, task, optimizer, hp, schedule, order, first, last, step, epoch }));
        await run.progress("train");
        const epochEnd = at.stepInEpoch === stepsPerEpoch;
        const runEnd = at.globalStep === totalSteps;
        if (epochEnd) run.endEpoch();
        const nextOrderState = epochEnd ? epochOrderState(hp.seed, at.epoch) : orderState;
        const evaluate = task.evaluate && (epochEnd || runEnd || every(control.evalSteps));
        const evaluated = evaluate ? await run.evaluate() : undefined;
        if (epochEnd || runEnd || every(control.saveSteps) || evaluated?.isBest) await run.save(nextOrderState);
        const stop = signals.received ?? (at.globalStep === options.stopAt ? `--stop-at ${options.stopAt}` : undefined);
        if (stop && !runEnd) await run.interrupt(stop, nextOrderState);
        if (epochEnd) break;
      }
    }
    if (!run.isSaved()) await run.save(epochOrderState(hp.seed, at.epoch)); // resumed at the very end
  } finally {
    signals.stop();
    optimizer.dispose();
  }
  await run.progress("done");
  return await run.finish(started, resume?.dir);
}

/** Run-control settings, checked. */
interface RunControl {
  evalSteps: number;
  saveSteps: number;
  saveTotalLimit: number;
  evalBatchSize: number;
}

/** The run-control settings of `options` with their defaults, checked. */
function runControl(options: RunControlOptions): RunControl {
  const evalSteps = options.evalSteps ?? 0, saveSteps = options.saveSteps ?? 0;
  const saveTotalLimit = options.saveTotalLimit ?? 2;
  const evalBatchSize = options.evalBatchSize ?? 64;
  for (const [name, v] of [["evalSteps", evalSteps], ["saveSteps", saveSteps], ["saveTotalLimit", saveTotalLimit]]) {
    if (!(Number.isInteger(v) && (v as number) >= 0)) throw new Error(`${name} must be an integer >= 0, got ${v}`);
  }
  if (!(Number.isInteger(evalBatchSize) && evalBatchSize >= 1)) {
    throw new Error(`evalBatchSize must be an integer >= 1, got ${evalBatchSize}`);
  }
  return { evalSteps, saveSteps, saveTotalLimit, evalBatchSize };
}

/** Refuses to resume a checkpoint trained on other data (fingerprint) or with another head. */
function checkResumeData(resume: ResumePoint, task: TrainTask, fingerprint: string): void {
  const saved = resume.state;
  if (saved.train_features.fingerprint !== fingerprint) {
    const was = saved.train_features;
    const now: Record<string, unknown> = task.describe?.() ?? {};
    const differ = [...new Set([...Object.keys(now), ...Object.keys(was)])]
      .filter((k) => k !== "fingerprint" && k !== "n" && JSON.stringify(now[k]) !== JSON.stringify(was[k]))
      .map((k) => `${k}: ${JSON.stringify(was[k]) ?? "absent"} then, ${JSON.stringify(now[k]) ?? "absent"} now`);
    throw new Error(
      `cannot resume from ${resume.dir}: it was trained on other data (${was.source ?? was.task ?? "?"}, ` +
        `n=${was.n}) than ${now.source ?? task.name} (n=${task.n})` +
        (differ.length ? `; they differ in ${differ.join(", ")}` : ""),
    );
  }
  if (saved.head !== undefined && saved.head !== task.head) {
    throw new Error(`cannot resume from ${resume.dir}: it trained a ${saved.head} model, this task a ${task.head}`);
  }
}

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

/**
 * Ctrl-C / SIGTERM while training: the first signal is remembered (`received`: the loop finishes the update, saves
 * and stops), a second one exits at once. `stop()` removes the listeners. Nothing is caught unless `enabled`.
 */
function watchSignals(enabled: boolean): { readonly received: string | undefined; stop(): void } {
  let received: string | undefined;
  const listeners: [Deno.Signal, () => void][] = [];
  if (enabled) {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      const handler = () => {
        if (received) {
          console.error(`\n${sig} again: stopping at once (the last complete checkpoint stays usable for --resume)`);
          exitProcess(130);
        }
        received = sig;
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
  return {
    get received() {
      return received;
    },
    stop() {
      for (const [sig, handler] of listeners) Deno.removeSignalListener(sig, handler);
    },
  };
}

/** What a {@linkcode TrainingRun} is made of. */
interface RunSetup<B, D> {
  options: TrainOptions<B, D>;
  hp: HyperParameters;
  schedule: Schedule;
  optimizer: AdamW;
  fingerprint: string;
  control: RunControl;
  /** The metric that picks the best checkpoint, when known before the first evaluation. */
  metricForBest: string | undefined;
  log: (msg: string) => void;
}

/**
 * The loop's bookkeeping: where the run is (`position`, what `trainer_state.json` records), the loss and throughput
 * meters behind progress events, evaluations and the best so far, and the checkpoints written.
 */
class TrainingRun<B, D> {
  readonly position: RunPosition = { globalStep: 0, epoch: 0, stepInEpoch: 0, logHistory: [], evalHistory: [] };
  private lastCheckpoint = "";
  private finalEval?: EvalEvent<D>;
  private savedSteps = new Set<number>();
  private last: UpdateStepResult = { loss: NaN, gradNorm: NaN, lr: 0, examples: 0 };
  private epochLossSum = 0;
  private epochLossCount = 0;
  private sessionExamples = 0;
  private sessionStart = performance.now();
  private sessionStartStep = 0;
  private lastYield = this.sessionStart;

  constructor(private readonly setup: RunSetup<B, D>) {
    this.chooseMetric(setup.metricForBest);
  }

  /** Sets the metric that picks the best checkpoint (and which way is better). */
  private chooseMetric(metric: string | undefined): void {
    this.position.metricForBest = metric;
    this.position.higherBetter = metric ? higherIsBetter(this.setup.options.task, metric) : undefined;
  }

  /** Continues from checkpoint `resume`: its weights, optimiser state, position, logs and best. */
  async restore(resume: ResumePoint): Promise<void> {
    const { options, optimizer, schedule, hp } = this.setup;
    const { stepsPerEpoch, totalSteps } = schedule;
    await restoreTrainingCheckpoint(resume, options.model, optimizer);
    const saved = resume.state, p = this.position;
    p.globalStep = saved.global_step;
    p.epoch = saved.epoch;
    p.stepInEpoch = saved.step_in_epoch;
    p.logHistory = saved.log_history;
    p.evalHistory = saved.eval_history;
    if (saved.best_step !== null && saved.best_metric !== null) {
      p.best = { value: saved.best_metric, step: saved.best_step };
    }
    if (p.metricForBest === undefined && saved.metric_for_best) this.chooseMetric(saved.metric_for_best);
    if (saved.steps_per_epoch !== stepsPerEpoch) {
      throw new Error(
        `${resume.dir}: the saved run has ${saved.steps_per_epoch} updates per epoch, this one ${stepsPerEpoch} ` +
          `(same data and batch size needed)`,
      );
    }
    if (totalSteps < p.globalStep) {
      throw new Error(
        `cannot resume from ${resume.dir}: it is at step ${p.globalStep}, but --epochs ${hp.epochs}` +
          `${hp.maxSteps > 0 ? ` / --max-steps ${hp.maxSteps}` : ""} ends the run at step ${totalSteps}. ` +
          `Give at least ${Math.ceil(p.globalStep / stepsPerEpoch)} epochs (or --max-steps ${p.globalStep} or more).`,
      );
    }
    // Printed even with `quiet`: which checkpoint a run continues from must never be hidden.
    console.log(
      `resuming from ${resume.dir} (step ${p.globalStep}/${totalSteps}, epoch ${p.epoch + 1}, update ` +
        `${p.stepInEpoch} of it)`,
    );
    if (saved.total_steps !== totalSteps) {
      console.log(lengthChangeNotice(p.globalStep, saved.total_steps, hp, schedule));
    }
    this.lastCheckpoint = resume.dir;
  }

  /** Starts this session's meters and notes the checkpoints already in the run folder. */
  async start(): Promise<void> {
    this.savedSteps = new Set((await listCheckpoints(this.setup.options.outputDir)).map((c) => c.step));
    this.sessionStart = this.lastYield = performance.now();
    this.sessionStartStep = this.position.globalStep;
  }

  /** Fractional epochs done. */
  private epochFloat(): number {
    return this.position.globalStep / this.setup.schedule.stepsPerEpoch;
  }

  /** A new epoch's mean loss starts from nothing. */
  startEpoch(): void {
    this.epochLossSum = 0;
    this.epochLossCount = 0;
  }

  /** Moves to the start of the next epoch. */
  endEpoch(): void {
    this.position.epoch++;
    this.position.stepInEpoch = 0;
  }

  /** Counts an update done and logs it. */
  record(update: UpdateStepResult): void {
    const p = this.position;
    this.last = update;
    this.sessionExamples += update.examples;
    p.globalStep++;
    p.stepInEpoch++;
    this.epochLossSum += update.loss;
    this.epochLossCount++;
    p.logHistory.push({
      step: p.globalStep,
      epoch: this.epochFloat(),
      loss: update.loss,
      learning_rate: update.lr,
      grad_norm: update.gradNorm,
    });
  }

  /** Sends a progress event (awaiting a returned promise), and lets the event loop run now and then. */
  async progress(phase: ProgressEvent["phase"]): Promise<void> {
    const { onProgress } = this.setup.options;
    const { totalSteps } = this.setup.schedule;
    const step = this.position.globalStep;
    if (onProgress) {
      const elapsed = (performance.now() - this.sessionStart) / 1000;
      const done = step - this.sessionStartStep;
      const pending = onProgress({
        phase,
        step,
        totalSteps,
        epoch: this.epochFloat(),
        loss: this.last.loss,
        avgLoss: this.epochLossCount ? this.epochLossSum / this.epochLossCount : NaN,
        lr: this.last.lr,
        gradNorm: this.last.gradNorm,
        examplesPerSec: elapsed > 0 ? this.sessionExamples / elapsed : 0,
        etaSeconds: done > 0 ? (elapsed / done) * (totalSteps - step) : NaN,
      });
      if (isPromiseLike(pending)) await pending;
    }
    // The updates themselves never wait on anything, so without this a notebook's progress bar and live chart
    // would only be sent at the next checkpoint write. One event-loop turn costs ~1-4 ms: at most every 200 ms.
    if (performance.now() - this.lastYield >= YIELD_EVERY_MS) {
      await yieldToEventLoop();
      this.lastYield = performance.now();
    }
  }

  /** Evaluates the model with the task, logs it, updates the best, and tells `onEval`. */
  async evaluate(): Promise<EvalEvent<D>> {
    const { options, control, log } = this.setup;
    const { task } = options;
    const p = this.position;
    await this.progress("eval");
    const evaluation = await task.evaluate!(options.model, { batchSize: control.evalBatchSize });
    const scalars = evaluation.metrics;
    if (p.metricForBest === undefined) this.chooseMetric(canonicalMetric(task, evaluation.headline.name));
    const metric = p.metricForBest!;
    const value = scalars[metric];
    if (typeof value !== "number") {
      throw new Error(
        `metric "${metric}" was not computed by the ${task.name} evaluation (it reports ` +
          `${Object.keys(scalars).join(", ")})`,
      );
    }
    let isBest = false;
    if (!p.best || (p.higherBetter ? value > p.best.value : value < p.best.value)) {
      p.best = { value, step: p.globalStep };
      isBest = true;
    }
    const h = evaluation.headline;
    const headline: HeadlineMetric = {
      name: h.name,
      value: h.value,
      parts: h.parts ?? [{ name: h.name, value: h.value }],
      text: h.text ?? `${h.name} ${Number.isFinite(h.value) ? h.value.toFixed(4) : h.value}`,
    };
    const epoch = this.epochFloat();
    const event: EvalEvent<D> = {
      step: p.globalStep,
      epoch,
      metrics: (evaluation.details ?? scalars) as D,
      scalars,
      headline,
      isBest,
    };
    p.evalHistory.push({ step: p.globalStep, epoch, ...scalars });
    this.finalEval = event;
    log(
      `eval @ step ${p.globalStep} (epoch ${epoch.toFixed(2)}): ${headline.text}` +
        `${typeof scalars.loss === "number" ? `, loss ${scalars.loss.toFixed(4)}` : ""}` +
        `${isBest ? `  [best ${p.metricForBest} so far]` : ""}`,
    );
    const pending = options.onEval?.(event);
    if (isPromiseLike(pending)) await pending;
    return event;
  }

  /** Writes `checkpoint-<step>/` (the next update draws from data order `orderState`), then rotates. */
  async save(orderState: number): Promise<void> {
    const { options, optimizer, hp, schedule, fingerprint, control } = this.setup;
    const { model, task, outputDir, vocabPath } = options;
    await this.progress("save");
    const trainerState = trainerStateJson(this.position, { task, model, hp, schedule, fingerprint, orderState });
    this.lastCheckpoint = await saveTrainingCheckpoint(outputDir, {
      model,
      optimizer,
      vocabPath,
      labels: task.labels,
      lowerCase: task.lowerCase,
      trainerState,
      previous: this.lastCheckpoint,
    });
    this.savedSteps.add(this.position.globalStep);
    const best = this.position.best;
    const limit = control.saveTotalLimit;
    for (const step of await rotateCheckpoints(outputDir, { limit, keep: best ? [best.step] : [], vocabPath })) {
      this.savedSteps.delete(step);
    }
  }

  /** Whether the current step has a checkpoint. */
  isSaved(): boolean {
    return this.savedSteps.has(this.position.globalStep);
  }

  /** Saves (unless saved), then throws {@linkcode TrainingInterrupted} saying how to resume. */
  async interrupt(signal: string, orderState: number): Promise<never> {
    if (!this.isSaved()) await this.save(orderState);
    const hint = this.setup.options.resumeHint ?? "the same command with --resume";
    throw new TrainingInterrupted(
      `interrupted by ${signal} at step ${this.position.globalStep}/${this.setup.schedule.totalSteps}: saved ` +
        `${this.lastCheckpoint}.\nResume with: ${hint}`,
      this.lastCheckpoint,
      signal,
    );
  }

  /** Writes `train_results.json`, says where the checkpoints are, and returns the result. */
  async finish(started: number, resumedFrom: string | undefined): Promise<TrainResult<D>> {
    const { options, hp, schedule, log } = this.setup;
    const { outputDir, task } = options;
    const { globalStep, best, metricForBest } = this.position;
    const { lastCheckpoint, finalEval } = this;
    const result: TrainResult<D> = {
      outputDir,
      globalStep,
      totalSteps: schedule.totalSteps,
      lastCheckpoint,
      bestCheckpoint: best ? join(outputDir, `checkpoint-${best.step}`) : undefined,
      bestMetric: best && metricForBest ? { name: metricForBest, value: best.value, step: best.step } : undefined,
      finalEval,
      logHistory: this.position.logHistory,
      evalHistory: this.position.evalHistory,
      resumedFrom,
      runtimeSeconds: (performance.now() - started) / 1000,
    };
    await writeJsonAtomic(join(outputDir, "train_results.json"), {
      task: task.name,
      global_step: globalStep,
      total_steps: schedule.totalSteps,
      last_checkpoint: basename(lastCheckpoint),
      best_checkpoint: best ? `checkpoint-${best.step}` : null,
      metric_for_best: metricForBest ?? null,
      best_metric: best?.value ?? null,
      final_eval: finalEval ? { step: finalEval.step, headline: finalEval.headline, ...finalEval.scalars } : null,
      hyper_parameters: hpToJson(hp),
      train_runtime_seconds: result.runtimeSeconds,
      resumed_from: resumedFrom ?? null,
    });
    log(
      `training done: ${globalStep} steps in ${formatDuration(result.runtimeSeconds)}; last checkpoint ` +
        `${lastCheckpoint}${
          result.bestCheckpoint ? `, best ${result.bestCheckpoint} (${metricForBest} ${best!.value.toFixed(4)})` : ""
        }`,
    );
    return result;
  }
}

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

/** Options of {@linkcode trainSeeds}: {@linkcode TrainOptions} without the model, plus a model factory. */
export interface TrainSeedsOptions<B = unknown, D = unknown>
  extends Omit<TrainOptions<B, D>, "model" | "vocabPath" | "seed" | "outputDir"> {
  /** Seeds, one run each, into `<outputDir>/seed-<s>/`. */
  seeds: number[];
  outputDir: string;
  /** Builds a fresh model (e.g. `loadCheckpoint` with `seed` for the new head) for each run. Disposed after. */
  makeModel: (seed: number) => Promise<{ model: BertModel; vocabPath: string }>;
}

/** What {@linkcode trainSeeds} returns. */
export interface SeedsResult<D = unknown> {
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
export async function trainSeeds<B = unknown, D = unknown>(
  options: TrainSeedsOptions<B, D>,
): Promise<SeedsResult<D>> {
  if (!options.task.evaluate) {
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
