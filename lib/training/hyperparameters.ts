/**
 * Hyper-parameters with BERT fine-tuning defaults (lr 2e-5, batch 32, 3 epochs, 10% warmup, weight decay 0.01,
 * gradient clipping at 1.0, seed 42), their `trainer_state.json` names, the checks with the CLI flag in every
 * message, the rule for a resumed run (the checkpoint's values; only its length may change), and the schedule they
 * make of a training set (updates per epoch, total updates, warmup).
 * @module
 */
import { join } from "../io/fsutil.ts";
import { type AdamWOptions, scheduleLr, warmupStepsFor } from "./optim.ts";

/** Everything that shapes the trajectory of the weights (a resumed run must use the same values). */
export interface HyperParameters {
  /** Peak learning rate (default 2e-5). */
  learningRate: number;
  /** Examples per micro-batch (default 32). */
  batchSize: number;
  /** Passes over the training set (default 3). */
  epochs: number;
  /** Fraction of the updates spent warming the learning rate up from 0 (default 0.1). */
  warmupRatio: number;
  /** AdamW's decoupled weight decay, not on biases and LayerNorm (default 0.01). */
  weightDecay: number;
  /** Clip the global gradient norm to this (default 1.0; 0 = no clipping). */
  maxGradNorm: number;
  /** Micro-batches per update (default 1): the effective batch is `batchSize * gradAccumSteps`. */
  gradAccumSteps: number;
  /** Seed of the data order and the dropout masks (default 42). */
  seed: number;
  /** Default 0.9. */
  adamBeta1: number;
  /** Default 0.999. */
  adamBeta2: number;
  /** Default 1e-6 (the original BERT's). */
  adamEpsilon: number;
  /** Stop after this many updates (default 0: `epochs` decides). */
  maxSteps: number;
  /** Dropout of hidden states and attention probabilities; null keeps the model config's (BERT: 0.1). */
  dropout: number | null;
}

/** BERT fine-tuning defaults. */
export const DEFAULT_HYPERPARAMETERS: Readonly<HyperParameters> = {
  learningRate: 2e-5,
  batchSize: 32,
  epochs: 3,
  warmupRatio: 0.1,
  weightDecay: 0.01,
  maxGradNorm: 1.0,
  gradAccumSteps: 1,
  seed: 42,
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  adamEpsilon: 1e-6,
  maxSteps: 0,
  dropout: null,
};

/** JSON (snake_case, like Hugging Face's TrainingArguments) names of the hyper-parameters. */
const HP_JSON: Record<keyof HyperParameters, string> = {
  learningRate: "learning_rate",
  batchSize: "per_device_train_batch_size",
  epochs: "num_train_epochs",
  warmupRatio: "warmup_ratio",
  weightDecay: "weight_decay",
  maxGradNorm: "max_grad_norm",
  gradAccumSteps: "gradient_accumulation_steps",
  seed: "seed",
  adamBeta1: "adam_beta1",
  adamBeta2: "adam_beta2",
  adamEpsilon: "adam_epsilon",
  maxSteps: "max_steps",
  dropout: "dropout",
};

/** The hyper-parameters under their JSON names (`trainer_state.json`, `train_results.json`). */
export function hpToJson(hp: HyperParameters): Record<string, number | null> {
  return Object.fromEntries(Object.entries(HP_JSON).map(([k, j]) => [j, hp[k as keyof HyperParameters]]));
}

/** Reads {@linkcode hpToJson}'s record back; `where` (a file) names it in errors. */
export function hpFromJson(json: Record<string, unknown>, where: string): HyperParameters {
  const out = { ...DEFAULT_HYPERPARAMETERS } as HyperParameters;
  for (const [k, j] of Object.entries(HP_JSON) as [keyof HyperParameters, string][]) {
    const v = json[j];
    if (v === undefined) throw new Error(`${where}: hyper_parameters.${j} is missing`);
    if (!(typeof v === "number" || (k === "dropout" && v === null))) {
      throw new Error(`${where}: hyper_parameters.${j} should be a number, got ${JSON.stringify(v)}`);
    }
    (out as unknown as Record<string, number | null>)[k] = v as number | null;
  }
  return out;
}

/** The CLI flag of each hyper-parameter (error messages name both). */
const HP_FLAGS: Partial<Record<keyof HyperParameters, string>> = {
  learningRate: "--lr",
  batchSize: "--batch-size",
  epochs: "--epochs",
  warmupRatio: "--warmup",
  weightDecay: "--weight-decay",
  maxGradNorm: "--max-grad-norm",
  gradAccumSteps: "--grad-accum",
  seed: "--seed",
  maxSteps: "--max-steps",
  dropout: "--dropout",
};

/** Throws, naming the flag and the field, for the first hyper-parameter out of its range. */
export function checkHyperParameters(hp: HyperParameters): void {
  const bad = (name: keyof HyperParameters, what: string) => {
    const flag = HP_FLAGS[name];
    throw new Error(`${flag ? `${flag} (${name})` : name} must be ${what}, got ${hp[name]}`);
  };
  if (!(hp.learningRate > 0)) bad("learningRate", "> 0");
  if (!(Number.isInteger(hp.batchSize) && hp.batchSize >= 1)) bad("batchSize", "an integer >= 1");
  if (!(hp.epochs > 0 && Number.isInteger(hp.epochs)) && !(hp.maxSteps > 0)) bad("epochs", "an integer >= 1");
  if (!(hp.warmupRatio >= 0 && hp.warmupRatio <= 1)) bad("warmupRatio", "in [0, 1]");
  if (!(hp.weightDecay >= 0)) bad("weightDecay", ">= 0");
  if (!(hp.maxGradNorm >= 0)) bad("maxGradNorm", ">= 0 (0 = no clipping)");
  if (!(Number.isInteger(hp.gradAccumSteps) && hp.gradAccumSteps >= 1)) bad("gradAccumSteps", "an integer >= 1");
  if (!Number.isInteger(hp.seed)) bad("seed", "an integer");
  if (!(Number.isInteger(hp.maxSteps) && hp.maxSteps >= 0)) bad("maxSteps", "an integer >= 0");
  if (hp.dropout !== null && !(hp.dropout >= 0 && hp.dropout < 1)) bad("dropout", "in [0, 1)");
}

/** Hyper-parameters a resumed run may change: how long it runs (the schedule is recomputed for the new end). */
export const RESUMABLE_CHANGES: readonly (keyof HyperParameters)[] = ["epochs", "maxSteps"];

/** The hyper-parameters set in `options` (those left undefined are not given). */
export function givenHyperParameters(options: Partial<HyperParameters>): Partial<HyperParameters> {
  const given: Partial<HyperParameters> = {};
  for (const k of Object.keys(HP_JSON) as (keyof HyperParameters)[]) {
    if (options[k] !== undefined) (given as Record<string, unknown>)[k] = options[k];
  }
  return given;
}

function describeDiff(saved: HyperParameters, given: Partial<HyperParameters>): string[] {
  const diffs: string[] = [];
  for (const k of Object.keys(HP_JSON) as (keyof HyperParameters)[]) {
    if (RESUMABLE_CHANGES.includes(k)) continue;
    if (given[k] !== undefined && given[k] !== saved[k]) {
      diffs.push(`${HP_FLAGS[k] ?? k}: checkpoint ${saved[k]}, now ${given[k]}`);
    }
  }
  return diffs;
}

/**
 * The hyper-parameters of a run, checked: `given` over the defaults, or, resuming, the checkpoint's (`saved`: its
 * `trainer_state.json` record and the checkpoint folder). A resumed run may only change its length
 * ({@linkcode RESUMABLE_CHANGES}); other differences are refused, listed flag by flag.
 */
export function resolveHyperParameters(
  given: Partial<HyperParameters>,
  saved?: { hyperParameters: Record<string, unknown>; dir: string },
): HyperParameters {
  let hp: HyperParameters;
  if (saved) {
    const savedHp = hpFromJson(saved.hyperParameters, join(saved.dir, "trainer_state.json"));
    const diffs = describeDiff(savedHp, given);
    if (diffs.length) {
      throw new Error(
        `cannot resume from ${saved.dir} with different hyper-parameters (the run would not repeat):\n  - ` +
          `${diffs.join("\n  - ")}\nLeave them out (the checkpoint's are used) or start a new --output folder.`,
      );
    }
    hp = { ...savedHp };
    // How long the run goes may change: a larger --epochs/--max-steps continues it (see the schedule notice).
    if (given.maxSteps !== undefined) hp.maxSteps = given.maxSteps;
    if (given.epochs !== undefined && given.epochs !== savedHp.epochs) {
      hp.epochs = given.epochs;
      if (given.maxSteps === undefined) hp.maxSteps = 0; // --epochs decides now
    }
  } else {
    hp = { ...DEFAULT_HYPERPARAMETERS, ...given };
  }
  checkHyperParameters(hp);
  return hp;
}

/** The settings of AdamW under these hyper-parameters (the learning rate is the peak; each update passes its own). */
export function adamWOptions(hp: HyperParameters): AdamWOptions {
  return {
    lr: hp.learningRate,
    beta1: hp.adamBeta1,
    beta2: hp.adamBeta2,
    eps: hp.adamEpsilon,
    weightDecay: hp.weightDecay,
  };
}

/** How `n` training rows are cut into updates under some hyper-parameters. */
export interface Schedule {
  /** Micro-batches of `batchSize` per epoch (the last may be short). */
  batchesPerEpoch: number;
  /** Updates per epoch (`gradAccumSteps` micro-batches each; the last may have fewer). */
  stepsPerEpoch: number;
  /** Updates of the whole run (`maxSteps`, else `epochs` epochs). */
  totalSteps: number;
  /** Epochs begun by the run. */
  numEpochs: number;
  /** Updates of linear learning-rate warmup. */
  warmupSteps: number;
}

/** The schedule of a run over `n` training rows. */
export function trainingSchedule(n: number, hp: HyperParameters): Schedule {
  const batchesPerEpoch = Math.ceil(n / hp.batchSize);
  const stepsPerEpoch = Math.ceil(batchesPerEpoch / hp.gradAccumSteps);
  const totalSteps = hp.maxSteps > 0 ? hp.maxSteps : hp.epochs * stepsPerEpoch;
  const numEpochs = Math.ceil(totalSteps / stepsPerEpoch);
  const warmupSteps = warmupStepsFor(totalSteps, hp.warmupRatio);
  return { batchesPerEpoch, stepsPerEpoch, totalSteps, numEpochs, warmupSteps };
}

/** The learning rate of update `step` (0-based) of a run. */
export function learningRateAt(step: number, hp: HyperParameters, schedule: Schedule): number {
  return scheduleLr(step, {
    peakLr: hp.learningRate,
    warmupSteps: schedule.warmupSteps,
    totalSteps: schedule.totalSteps,
  });
}

/**
 * What a resumed run whose length changed (from `savedTotalSteps` to the schedule's) must say: the learning-rate
 * schedule is recomputed for the new end, so the result differs from a run started with this length.
 */
export function lengthChangeNotice(
  globalStep: number,
  savedTotalSteps: number,
  hp: HyperParameters,
  schedule: Schedule,
): string {
  const { totalSteps, warmupSteps } = schedule;
  const lrThen = scheduleLr(globalStep, {
    peakLr: hp.learningRate,
    warmupSteps: warmupStepsFor(savedTotalSteps, hp.warmupRatio),
    totalSteps: savedTotalSteps,
  });
  const lrNow = learningRateAt(globalStep, hp, schedule);
  return `resume: the run now ends at step ${totalSteps} instead of ${savedTotalSteps}. The learning-rate ` +
    `schedule is recomputed for the new end (warm-up ${warmupSteps} steps, linear decay to 0 at step ` +
    `${totalSteps}): at step ${globalStep} the learning rate is ${lrNow.toExponential(3)} (it was ` +
    `${lrThen.toExponential(3)}). The result differs from a run started with this length.`;
}
