/**
 * The flags several commands share, each declared once: the training hyper-parameters (`train`, `squad train`,
 * `pretrain`, `main`), run control (`--eval-steps`, `--resume`, ...), batch and sequence sizes of the inference
 * commands, `--backend`/`--threads`/`--quiet`. A command picks the ones it takes, fills in the default it shows
 * (the library applies it, so that `--resume` can keep the checkpoint's) and may spread a parsed `default` or a
 * tighter bound over one (`{ ...maxSeqLength("window"), min: 8, default: 384 }`).
 * @module
 */
import { BACKEND_HELP } from "../backends/backend.ts";
import type { HyperParameters } from "../training/hyperparameters.ts";
import type { FlagSpec } from "./args.ts";
import { UsageError } from "../io/errors.ts";

/** `--lr`: the peak learning rate; `shown` is the default in words (e.g. `2e-5`). */
export const lr = (shown: string) =>
  ({ type: "number", positive: true, help: `peak learning rate (default ${shown})` }) as const;

/** `--batch-size`: `of` per batch (training) or per forward pass (inference); `shown`: the default in words. */
export const batchSize = (of: string, options: { per?: string; shown?: string | number } = {}) =>
  ({
    type: "number",
    integer: true,
    min: 1,
    help: `${of} per ${options.per ?? "batch"}${options.shown === undefined ? "" : ` (default ${options.shown})`}`,
  }) as const;

/** `--epochs`: passes over the training `of` (data, windows). */
export const epochs = (of: string, shown: string | number) =>
  ({ type: "number", integer: true, min: 1, help: `passes over the training ${of} (default ${shown})` }) as const;

/** `--max-steps`: stop early. */
export const maxSteps = () =>
  ({ type: "number", integer: true, min: 0, help: "stop after N updates (default: --epochs decides)" }) as const;

/** `--warmup` (also spelled `--warmup-ratio`): the share of updates with a linear warm-up. */
export const warmup = (shown: string | number) =>
  ({
    type: "number",
    min: 0,
    max: 1,
    aliases: ["warmup-ratio"],
    help: `fraction of updates with linear warmup (default ${shown})`,
  }) as const;

/** `--weight-decay`. */
export const weightDecay = (shown: string | number) =>
  ({ type: "number", min: 0, help: `AdamW weight decay (default ${shown})` }) as const;

/** `--max-grad-norm`. */
export const maxGradNorm = (shown: string | number) =>
  ({ type: "number", min: 0, help: `gradient clipping, 0 = off (default ${shown})` }) as const;

/** `--grad-accum`. */
export const gradAccum = (shown: string | number) =>
  ({ type: "number", integer: true, min: 1, help: `batches per update (default ${shown})` }) as const;

/** `--seed` of the data order, dropout and new weights; `shown`: the default in words (none with a parsed one). */
export const seed = (shown?: string | number) =>
  ({
    type: "number",
    integer: true,
    help: `seed of data order, dropout and new weights${shown === undefined ? "" : ` (default ${shown})`}`,
  }) as const;

/** `--seeds 1,2,3`: one run per seed into `where`. */
export const seeds = (where: string) =>
  ({ type: "list", help: `several runs, one per seed, into ${where} (e.g. 1,2,3)` }) as const;

/** `--dropout`: overrides the model config's hidden and attention dropout. */
export const dropout = () =>
  ({
    type: "number",
    min: 0,
    max: 0.99,
    help: "hidden and attention dropout (default: the model config's, BERT 0.1)",
  }) as const;

/** `--eval-steps`; `shown`: when it evaluates without it. */
export const evalSteps = (shown: string) =>
  ({ type: "number", integer: true, min: 0, help: `also evaluate every N updates (default: ${shown})` }) as const;

/** `--save-steps`; `shown`: when it saves without it. */
export const saveSteps = (shown: string) =>
  ({ type: "number", integer: true, min: 0, help: `also checkpoint every N updates (default: ${shown})` }) as const;

/** `--save-total-limit` (the training loop's default, 2, parsed). */
export const saveTotalLimit = () =>
  ({
    type: "number",
    integer: true,
    min: 0,
    default: 2,
    help: "checkpoints kept besides the best (0 = all)",
  }) as const;

/** `--eval-batch-size`: `of` per evaluation batch (the training loop's default, 64, parsed). */
export const evalBatchSize = (of: string) =>
  ({ type: "number", integer: true, min: 1, default: 64, help: `${of} per evaluation batch` }) as const;

/** `--resume`: continue from the newest complete checkpoint `where`, then `more`. */
export const resume = (where: string, more = "") =>
  ({ type: "boolean", help: `continue from the newest complete checkpoint ${where}${more}` }) as const;

/** `--stop-at`: stop after update N with a resumable checkpoint, as Ctrl-C would (exit status 0). */
export const stopAt = () =>
  ({
    type: "number",
    integer: true,
    min: 1,
    help: "stop after update N with a checkpoint, as Ctrl-C would (exit status 0); --resume continues, also with " +
      "another --steps",
  }) as const;

/** `--overwrite`: start over (`help` says what is deleted). */
export const overwrite = (help = "delete checkpoints already in --output and start over") =>
  ({ type: "boolean", help }) as const;

/** `--max-seq-length`: tokens per `of`, [CLS] and [SEP]s included (2..512). */
export const maxSeqLength = (of: string) =>
  ({
    type: "number",
    integer: true,
    min: 2,
    max: 512,
    default: 128,
    help: `tokens per ${of}, [CLS] and [SEP]s included`,
  }) as const;

/** `--backend`. */
export const backend = () => ({ help: BACKEND_HELP }) as const;

/** `--threads`. */
export const threads = () => ({ type: "number", integer: true, min: 1, help: "wasm and BLAS threads" }) as const;

/** `--quiet`. */
export const quiet = () => ({ type: "boolean", help: "no progress display" }) as const;

/** `flag` with its help prefixed by the subcommands that read it (`[train]`), as `squad` lists them. */
export function forSubcommands<const F extends FlagSpec>(tag: string, flag: F): F {
  return { ...flag, help: `${tag} ${flag.help}` };
}

/** The hyper-parameter flags a command may have (`--steps` is `pretrain`'s `--max-steps`). */
export interface HyperParameterFlags {
  lr?: number;
  "batch-size"?: number;
  epochs?: number;
  "max-steps"?: number;
  steps?: number;
  warmup?: number;
  "weight-decay"?: number;
  "max-grad-norm"?: number;
  "grad-accum"?: number;
  seed?: number;
  dropout?: number;
}

/** The hyper-parameters given on the command line; absent ones are left out (the checkpoint's or the defaults). */
export function hyperParameters(f: HyperParameterFlags): Partial<HyperParameters> {
  const hp: Partial<HyperParameters> = {
    learningRate: f.lr,
    batchSize: f["batch-size"],
    epochs: f.epochs,
    maxSteps: f["max-steps"] ?? f.steps,
    warmupRatio: f.warmup,
    weightDecay: f["weight-decay"],
    maxGradNorm: f["max-grad-norm"],
    gradAccumSteps: f["grad-accum"],
    seed: f.seed,
    dropout: f.dropout,
  };
  return Object.fromEntries(Object.entries(hp).filter(([, v]) => v !== undefined));
}

/** Parses `--seeds` (a list) into integers. */
export function parseSeeds(values: string[] | undefined): number[] | undefined {
  return values?.map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n)) throw new UsageError(`--seeds expects integers, got "${s}"`);
    return n;
  });
}
