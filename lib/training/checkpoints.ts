/**
 * Checkpoints of a training run (`outputs/<run>/checkpoint-<step>/`, written atomically): the Hugging Face folder
 * from `saveCheckpoint`, `training_state.safetensors` (AdamW moments `exp_avg.<name>`, `exp_avg_sq.<name>`, HF
 * layout) and `trainer_state.json` (step, epoch, position in the epoch's data order, rng, hyper-parameters, config,
 * loss/lr log, evaluation log, best metric).
 *
 * Reading: {@linkcode listCheckpoints}, {@linkcode readTrainerState}, {@linkcode checkpointProblem} (is a folder
 * whole?), {@linkcode latestCheckpoint} (newest whole one), {@linkcode resolveCheckpoint} (a checkpoint or run
 * folder -> the checkpoint to use), {@linkcode findResumePoint} (what `resume` continues from).
 * Writing: {@linkcode prepareRunDir}, {@linkcode trainerStateJson}, {@linkcode saveTrainingCheckpoint},
 * {@linkcode restoreTrainingCheckpoint}, {@linkcode rotateCheckpoints}.
 * @module
 */
import { readableOnCpu } from "../backends/backend.ts";
import { loadTensorsIntoModel, saveCheckpoint } from "../model/checkpoint.ts";
import { type BertModel, configToJson, type HeadKind } from "../model/model.ts";
import { basename, ensureDir, exists, join, probeWritable, removeStaleTemps, withPath } from "../io/fsutil.ts";
import { readSafetensors, serializeSafetensors, type TensorEntry } from "../io/safetensors.ts";
import { hpToJson, type HyperParameters, type Schedule } from "./hyperparameters.ts";
import type { AdamW } from "./optim.ts";
import type { TrainTask } from "./task.ts";

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

/** `trainer_state.json` (the fields `train` reads back on resume, plus context for people). */
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

/**
 * The checkpoint folder that `path` names, for evaluating or predicting: `path` itself when it is a checkpoint
 * folder (`config.json` or `bert_config.json`); for a run folder, its best checkpoint (`best_checkpoint` of the
 * newest complete checkpoint's `trainer_state.json`, when that folder still has its `config.json`), else that
 * newest complete checkpoint, else the newest checkpoint that has `model.safetensors` (weights are enough to
 * predict). Throws when there is none.
 */
export async function resolveCheckpoint(path: string): Promise<string> {
  if (await exists(join(path, "config.json")) || await exists(join(path, "bert_config.json"))) return path;
  const latest = await latestCheckpoint(path);
  if (latest) {
    const best = (await readTrainerState(latest)).best_checkpoint;
    if (best && await exists(join(path, best, "config.json"))) return join(path, best);
    return latest;
  }
  for (const c of await listCheckpoints(path)) if (await exists(join(c.path, "model.safetensors"))) return c.path;
  throw new Error(`${path} is neither a checkpoint folder (config.json) nor a run folder with checkpoints`);
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

/** A checkpoint to continue from: its folder and its trainer state. */
export interface ResumePoint {
  dir: string;
  state: TrainerStateJson;
}

/**
 * What `train`'s `resume` option continues from: `true` -> the newest complete checkpoint of `outputDir` (none:
 * a fresh start, said through `log`); a path -> that checkpoint folder, or the newest complete checkpoint of that
 * run folder (none: an error). Damaged newer checkpoints are skipped with a loud warning (printed even when quiet).
 */
export async function findResumePoint(
  resume: boolean | string | undefined,
  outputDir: string,
  log: (msg: string) => void,
): Promise<ResumePoint | undefined> {
  if (!resume) return undefined;
  let dir: string | undefined;
  const target = typeof resume === "string" ? resume : outputDir;
  if (await exists(join(target, "trainer_state.json"))) {
    const problem = await checkpointProblem(target);
    if (problem) throw new Error(`cannot resume from ${target}: ${problem}`);
    dir = target;
  } else {
    await removeStaleTemps(target);
    const found = await findResumeCheckpoint(target);
    dir = found.path;
    if (found.skipped.length) console.warn(skippedCheckpointsNotice(found.skipped, dir)); // even when quiet
  }
  if (!dir && typeof resume === "string") {
    throw new Error(`--resume ${resume}: no complete checkpoint (checkpoint-<step>/ with trainer_state.json)`);
  }
  if (!dir) {
    log(`resume: no checkpoint in ${outputDir} yet, starting from the beginning`);
    return undefined;
  }
  return { dir, state: await readTrainerState(dir) };
}

/** Deletes a checkpoint folder: renamed first (atomic), so an interruption leaves a `*.tmp-*` folder, never half a
 * checkpoint under its real name. */
async function removeCheckpoint(path: string): Promise<void> {
  const doomed = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.rename(path, doomed);
  await Deno.remove(doomed, { recursive: true });
}

/**
 * Makes the run folder ready: created and writable (fail now, not at the first checkpoint an epoch later), unfinished
 * writes of an interrupted run removed; for a `fresh` run, existing checkpoints are an error unless `overwrite`
 * (then they are deleted).
 */
export async function prepareRunDir(
  outputDir: string,
  options: { fresh: boolean; overwrite?: boolean; log: (msg: string) => void },
): Promise<void> {
  await ensureDir(outputDir).catch((err) => {
    throw withPath(err, `cannot create the run folder ${outputDir}`);
  });
  await probeWritable(outputDir, `run ${outputDir}`);
  const stale = await removeStaleTemps(outputDir);
  if (stale.length) {
    options.log(`removed ${stale.length} unfinished write(s) left by an interrupted run: ${stale.join(", ")}`);
  }
  if (!options.fresh) return;
  const existing = await listCheckpoints(outputDir);
  if (existing.length && !options.overwrite) {
    throw new Error(
      `${outputDir} already has checkpoints (${existing.map((c) => basename(c.path)).join(", ")}): ` +
        `resume them (--resume), start over (--overwrite deletes them) or choose another --output`,
    );
  }
  for (const c of existing) await removeCheckpoint(c.path);
}

/** Transposes a row-major `[rows, cols]` matrix. */
function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = src[i * cols + j];
  return out;
}

/** Maps optimizer moments between the model's `[in, out]` kernels and Hugging Face's `[out, in]`. */
function layoutTransform(model: BertModel): (name: string, e: TensorEntry) => TensorEntry {
  return (name, e) => {
    if (!model.transposed.has(name)) return e;
    const [rows, cols] = e.shape;
    return { dtype: e.dtype, shape: [cols, rows], data: transpose2d(e.data as Float32Array, rows, cols) };
  };
}

/** The best evaluation so far: its value of the metric for best and its update. */
export interface BestMetric {
  value: number;
  step: number;
}

/** Where a run is, and what it has logged: the moving part of `trainer_state.json`. */
export interface RunPosition {
  /** Updates done. */
  globalStep: number;
  /** 0-based epoch the next update belongs to. */
  epoch: number;
  /** Updates done in that epoch. */
  stepInEpoch: number;
  logHistory: LogEntry[];
  evalHistory: EvalLogEntry[];
  metricForBest?: string;
  higherBetter?: boolean;
  best?: BestMetric;
}

/** What {@linkcode trainerStateJson} is made of besides the run's position. */
export interface TrainerStateContext {
  task: TrainTask;
  model: BertModel;
  hp: HyperParameters;
  schedule: Schedule;
  /** The task's training-data fingerprint. */
  fingerprint: string;
  /** The rng state of the data order the next update draws from. */
  orderState: number;
}

/** The `trainer_state.json` record of a run at `position`. */
export function trainerStateJson(position: RunPosition, context: TrainerStateContext): TrainerStateJson {
  const { task, model, hp, schedule } = context;
  const { best } = position;
  return {
    format: STATE_FORMAT,
    task: task.name,
    head: task.head,
    global_step: position.globalStep,
    total_steps: schedule.totalSteps,
    steps_per_epoch: schedule.stepsPerEpoch,
    num_epochs: schedule.numEpochs,
    epoch: position.epoch,
    step_in_epoch: position.stepInEpoch,
    examples_in_epoch: Math.min(task.n, position.stepInEpoch * hp.gradAccumSteps * hp.batchSize),
    rng: { algorithm: "mulberry32", seed: hp.seed, epoch_order_state: context.orderState },
    hyper_parameters: hpToJson(hp),
    config: configToJson(
      model.config,
      task.head === "classification"
        ? { head: task.head, labels: task.labels, numLabels: model.numLabels }
        : { head: task.head },
    ),
    train_features: { ...task.describe?.(), n: task.n, fingerprint: context.fingerprint },
    labels: task.labels ?? [],
    log_history: position.logHistory,
    eval_history: position.evalHistory,
    metric_for_best: position.metricForBest ?? null,
    greater_is_better: position.higherBetter ?? null,
    best_metric: best?.value ?? null,
    best_step: best?.step ?? null,
    best_checkpoint: best ? `checkpoint-${best.step}` : null,
  };
}

/** Options of {@linkcode saveTrainingCheckpoint}. */
export interface SaveTrainingCheckpointOptions {
  model: BertModel;
  optimizer: AdamW;
  /** The vocabulary copied in as `vocab.txt`. */
  vocabPath: string;
  /** Label names (classification) for `config.json`. */
  labels?: string[];
  /** `do_lower_case` for `tokenizer_config.json`. */
  lowerCase?: boolean;
  /** The run's state ({@linkcode trainerStateJson}). */
  trainerState: TrainerStateJson;
  /** The newest checkpoint before this one, named in the error when saving fails (it stays intact). */
  previous?: string;
}

/**
 * Writes `<runDir>/checkpoint-<step>/` (atomically; `step` is the trainer state's `global_step`): the Hugging Face
 * folder, `training_state.safetensors` (AdamW's moments in Hugging Face's layout) and `trainer_state.json`.
 * Returns the folder.
 */
export async function saveTrainingCheckpoint(runDir: string, options: SaveTrainingCheckpointOptions): Promise<string> {
  const { model, optimizer, trainerState } = options;
  const dir = join(runDir, `checkpoint-${trainerState.global_step}`);
  await readableOnCpu(optimizer.stateTensors());
  const state = optimizer.exportState(layoutTransform(model));
  const trainingState = serializeSafetensors(state.tensors, { step: String(state.step), optimizer: "AdamW" });
  try {
    await saveCheckpoint(dir, {
      model,
      vocabPath: options.vocabPath,
      labels: options.labels,
      lowerCase: options.lowerCase,
      extraFiles: {
        "training_state.safetensors": trainingState,
        "trainer_state.json": JSON.stringify(trainerState, null, 2) + "\n",
      },
    });
  } catch (err) {
    throw withPath(
      err,
      `cannot save checkpoint ${dir} (run ${runDir}, step ${trainerState.global_step}; the previous checkpoint ` +
        `${options.previous || "(none)"} is intact)`,
    );
  }
  return dir;
}

/** Loads the weights and the optimiser state of checkpoint `point` into `model` and `optimizer`. */
export async function restoreTrainingCheckpoint(point: ResumePoint, model: BertModel, optimizer: AdamW): Promise<void> {
  const { dir, state } = point;
  const weights = await readSafetensors(join(dir, "model.safetensors"));
  const report = loadTensorsIntoModel(model, weights.tensors, { source: join(dir, "model.safetensors") });
  if (report.missing.length) {
    throw new Error(`${dir}/model.safetensors lacks ${report.missing.join(", ")}: not a checkpoint of this model`);
  }
  const ts = await readSafetensors(join(dir, "training_state.safetensors"));
  optimizer.importState(
    { tensors: ts.tensors, step: Number(ts.metadata.step ?? state.global_step) },
    layoutTransform(model),
  );
}

/**
 * Deletes the checkpoints of `runDir` beyond the newest `limit` (0 keeps all), keeping also the steps in `keep`
 * (the best) and any checkpoint that holds `vocabPath` (a run resumed without --model reads its vocabulary from the
 * checkpoint it resumed from: deleting it would break the next save). Returns the steps deleted.
 */
export async function rotateCheckpoints(
  runDir: string,
  options: { limit: number; keep: number[]; vocabPath: string },
): Promise<number[]> {
  if (options.limit <= 0) return [];
  const all = await listCheckpoints(runDir);
  const keep = new Set([...all.slice(0, options.limit).map((c) => c.step), ...options.keep]);
  for (const c of all) if (options.vocabPath.startsWith(`${c.path}/`)) keep.add(c.step);
  const removed: number[] = [];
  for (const c of all) {
    if (keep.has(c.step)) continue;
    await removeCheckpoint(c.path);
    removed.push(c.step);
  }
  return removed;
}
