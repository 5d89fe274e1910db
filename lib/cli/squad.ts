/**
 * `deno task bert squad <prepare|train|predict|evaluate>`: SQuAD v1.1 question answering end to end, the second
 * task of Google's `run_squad.py`. The generic commands reach the same code with `--task squad`
 * (`prepare --task squad`, `train --task squad`, `evaluate --task squad`).
 *
 * - `prepare`: SQuAD JSON -> sliding-window features in `outputs/<run>/features/{train,dev}.safetensors` (+
 *   `.windows.json`). Without `--train`/`--dev` the files are looked up in `data/squad-v1.1/`, then
 *   `../shared/data/squad-v1.1/`; when there is no `train-v1.1.json`, a demo split of the dev file is used (the
 *   first `--limit` questions to evaluate on, questions of the other articles to train on), with a loud notice;
 * - `train`: fine-tune a checkpoint with the span head through the shared training loop (lib/training/train.ts): checkpoints,
 *   exact resume, exact match / F1 on the dev features after each epoch, the best kept, several seeds;
 * - `predict`: start/end logits of every dev window -> `predictions.json` and `nbest_predictions.json`;
 * - `evaluate`: the official SQuAD v1.1 exact match and F1 of a `predictions.json` against the gold file (with
 *   `--checkpoint`, predicts first) -> `eval_results.json`.
 * @module
 */
import { defineCommand, type FlagSpec, type ParsedArgs } from "./args.ts";
import * as F from "./flags.ts";
import { forSubcommands, hyperParameters, parseSeeds } from "./flags.ts";
import { printTraining } from "./report.ts";
import { UsageError } from "../io/errors.ts";
import { acquireRunLock, dirname, exists, join } from "../io/fsutil.ts";
import { initBackend } from "../backends/backend.ts";
import { resolveCheckpoint } from "../training/checkpoints.ts";
import type { SquadFeatures } from "../tasks/squad/features.ts";
import { predictSquad } from "../tasks/squad/train.ts";
import {
  prepareSquadRun,
  runSquadTraining,
  scoreSquadPredictions,
  type SquadPrepareOptions,
} from "../tasks/squad/run.ts";

/** `flag` marked as read by `squad train`. */
const T = <const Flag extends FlagSpec>(flag: Flag) => forSubcommands("[train]", flag);

const SUBCOMMANDS = ["prepare", "train", "predict", "evaluate"] as const;

/** Flags of `squad` (each subcommand uses the ones marked for it). */
export const spec = defineCommand({
  name: "squad",
  description:
    "SQuAD v1.1 question answering (Google's run_squad.py): `prepare` turns SQuAD JSON into sliding-window " +
    "features (outputs/<run>/features/{train,dev}.safetensors + .windows.json); `train` fine-tunes a checkpoint " +
    "with the span head (checkpoints, --resume, exact match / F1 on the dev features after each epoch, the best " +
    "kept); `predict` writes predictions.json and nbest_predictions.json; `evaluate` scores predictions with the " +
    "official exact match / F1 (and predicts first when given no --predictions). Also reachable as " +
    "`prepare|train|evaluate --task squad`.",
  usage: "<prepare|train|predict|evaluate> [flags]   e.g. squad prepare --dev dev-v1.1.json --vocab vocab.txt",
  flags: {
    run: { default: "squad", help: "run name: everything goes to outputs/<run>/" },
    "outputs-dir": { default: "outputs", help: "root folder of all runs" },
    "data-dir": {
      help: "[prepare] folder with dev-v1.1.json (and train-v1.1.json) when --train/--dev are not given " +
        "(default: data/squad-v1.1, then ../shared/data/squad-v1.1)",
    },
    train: { help: "[prepare] SQuAD training JSON (features with answer positions)" },
    dev: { help: "[prepare, evaluate] SQuAD dev JSON (prepare: features to predict on; evaluate: the gold answers)" },
    "train-from-dev": {
      type: "boolean",
      help: "[prepare] no training file: train on the dev questions of other articles than the evaluated " +
        "--limit questions (a demo; automatic when no train-v1.1.json is found)",
    },
    "train-limit": { type: "number", integer: true, min: 1, help: "[prepare] only the first N training questions" },
    vocab: { help: "[prepare] vocab.txt to tokenize with; [train] with --config: the features' vocabulary" },
    model: { help: "[prepare] checkpoint whose vocab.txt/casing to use; [train] checkpoint to fine-tune" },
    config: { help: "[train] random weights instead of --model: tiny, mini, small, medium, base or a config.json" },
    cased: { type: "boolean", help: "[prepare] keep case and accents (cased vocabularies)" },
    "max-seq-length": forSubcommands("[prepare]", { ...F.maxSeqLength("window"), min: 8, default: 384 }),
    "doc-stride": {
      type: "number",
      integer: true,
      min: 1,
      default: 128,
      help: "[prepare] sub-tokens between window starts",
    },
    "max-query-length": {
      type: "number",
      integer: true,
      min: 1,
      default: 64,
      help: "[prepare] questions are cut to this many sub-tokens",
    },
    limit: {
      type: "number",
      integer: true,
      min: 1,
      help: "[prepare, evaluate] only the first N questions of each file",
    },
    "keep-impossible": { type: "boolean", help: "[prepare] keep SQuAD 2.0 unanswerable questions (flagged)" },
    lr: T(F.lr("5e-5")),
    "batch-size": forSubcommands("[train, predict]", F.batchSize("windows", { shown: 32 })),
    epochs: T(F.epochs("windows", 3)),
    "max-steps": T(F.maxSteps()),
    warmup: T(F.warmup(0.1)),
    "weight-decay": T(F.weightDecay(0.01)),
    "max-grad-norm": T(F.maxGradNorm(1)),
    "grad-accum": T(F.gradAccum(1)),
    seed: T(F.seed(42)),
    seeds: T(F.seeds("outputs/<run>/seed-<s>/")),
    dropout: T(F.dropout()),
    "eval-steps": T(F.evalSteps("each epoch only")),
    "save-steps": T(F.saveSteps("each epoch only")),
    "save-total-limit": T(F.saveTotalLimit()),
    "eval-batch-size": T(F.evalBatchSize("windows")),
    resume: T(F.resume("of the run")),
    overwrite: T(F.overwrite("delete the run's checkpoints and start over")),
    checkpoint: {
      help: "[predict, evaluate] checkpoint folder, or a run folder (its best, else newest, checkpoint; default: " +
        "the run's)",
    },
    features: { help: "[train, predict] feature file (default: outputs/<run>/features/{train,dev}.safetensors)" },
    "dev-features": { help: "[train] dev feature file to evaluate on (default: outputs/<run>/features/dev...)" },
    predictions: { help: "[evaluate] predictions.json to score (default: predict with the checkpoint first)" },
    output: { help: "[predict, evaluate] folder for predictions.json / eval_results.json (default: the checkpoint)" },
    "n-best": { type: "number", integer: true, min: 1, default: 20, help: "[predict, train] n-best size" },
    "max-answer-length": {
      type: "number",
      integer: true,
      min: 1,
      default: 30,
      help: "[predict, train] longest answer in sub-tokens",
    },
    quiet: T(F.quiet()),
  },
});

type Flags = ParsedArgs<typeof spec.flags>["flags"];

function runDir(f: Flags): string {
  return join(f["outputs-dir"], f.run);
}

/** `checkpoint` (a checkpoint, or a run folder: its best, else newest) or the run's best/newest checkpoint. */
async function squadCheckpoint(checkpoint: string | undefined, run: string): Promise<string> {
  const target = checkpoint ?? run;
  return await resolveCheckpoint(target).catch(() => {
    throw new UsageError(`no checkpoint in ${target}: train first (squad train) or pass --checkpoint DIR`);
  });
}

/** `squad train`: fine-tune --model on the run's train features, evaluating on its dev features. */
async function trainCommand(f: Flags): Promise<void> {
  const featuresFile = f.features ?? join(runDir(f), "features", "train.safetensors");
  let devFile = f["dev-features"];
  if (!devFile) {
    const beside = join(dirname(featuresFile), "dev.safetensors");
    if (await exists(beside)) devFile = beside;
  }
  const result = await runSquadTraining({
    featuresFile,
    devFile,
    outputDir: runDir(f),
    model: f.model,
    config: f.config,
    vocab: f.vocab,
    hp: hyperParameters(f),
    seeds: parseSeeds(f.seeds),
    evalSteps: f["eval-steps"],
    saveSteps: f["save-steps"],
    saveTotalLimit: f["save-total-limit"],
    evalBatchSize: f["eval-batch-size"],
    resume: f.resume === true ? true : undefined,
    overwrite: f.overwrite === true,
    handleSignals: true,
    resumeHint: `deno task bert squad train ${
      Deno.args.slice(2).filter((a) => a !== "--overwrite" && a !== "--resume").join(" ")
    } --resume`.replace(/ +/g, " "),
    nBestSize: f["n-best"],
    maxAnswerLength: f["max-answer-length"],
    quiet: f.quiet === true,
  });
  printTraining(result, runDir(f));
}

/** What `squad predict` (and `evaluate --task squad`) read. */
export interface SquadPredictArgs {
  /** A checkpoint folder, or a run folder (its best, else newest checkpoint); default: `run`'s. */
  checkpoint?: string;
  /** The run folder (default outputs/squad). */
  run?: string;
  /** Feature file (default: the dev features of the checkpoint's run folder, else of `run`). */
  features?: string;
  /** Windows per batch. */
  batchSize?: number;
  /** n-best size. */
  nBestSize?: number;
  /** Longest answer in sub-tokens. */
  maxAnswerLength?: number;
  /** Folder for predictions.json / eval_results.json (default: the checkpoint). */
  output?: string;
}

/** `squad predict`: predictions.json and nbest_predictions.json for the run's dev features. */
export async function predictCommand(
  o: SquadPredictArgs,
): Promise<{ predictionsPath: string; features: SquadFeatures }> {
  const run = o.run ?? join("outputs", "squad");
  const checkpoint = await squadCheckpoint(o.checkpoint, run);
  let featuresPath = o.features;
  if (!featuresPath) {
    // The dev features of the checkpoint's own run folder, else of --run.
    const beside = join(dirname(checkpoint), "features", "dev.safetensors");
    featuresPath = await exists(beside) ? beside : join(run, "features", "dev.safetensors");
  }
  if (!(await exists(featuresPath))) {
    throw new UsageError(`${featuresPath} not found: run \`squad prepare --dev FILE\` first (or pass --features)`);
  }
  await initBackend();
  const outputDir = o.output ?? checkpoint;
  const t0 = performance.now();
  const result = await predictSquad({
    checkpoint,
    features: featuresPath,
    batchSize: o.batchSize,
    nBestSize: o.nBestSize,
    maxAnswerLength: o.maxAnswerLength,
    outputDir,
  });
  console.log(
    `checkpoint ${checkpoint}: predicted ${Object.keys(result.predictions).length} questions (${result.features.n} ` +
      `windows of ${featuresPath}) in ${((performance.now() - t0) / 1000).toFixed(1)} s -> ` +
      `${result.predictionsPath}, ${result.nbestPath}`,
  );
  return { predictionsPath: result.predictionsPath!, features: result.features };
}

/** What `squad evaluate` (and `evaluate --task squad`) read. */
export interface SquadEvaluateArgs extends SquadPredictArgs {
  /** predictions.json to score (default: predict first). */
  predictions?: string;
  /** The gold SQuAD JSON. */
  dev?: string;
  /** Score only its first N questions. */
  limit?: number;
}

/**
 * `squad evaluate` (and `evaluate --task squad`): official EM/F1 of predictions -> eval_results.json. The gold
 * answers are `dev` (first `limit` questions with `limit`); without it, the predicted features' own questions when
 * predicting, else the dev file found in data/squad-v1.1 or ../shared/data/squad-v1.1.
 */
export async function evaluateCommand(o: SquadEvaluateArgs): Promise<void> {
  // Without --predictions, predict first (with --checkpoint, or the run's best/newest checkpoint).
  const predicted = o.predictions ? undefined : await predictCommand(o);
  const { scores, goldName, path } = await scoreSquadPredictions({
    predictionsPath: o.predictions ?? predicted!.predictionsPath,
    goldPath: o.dev,
    features: predicted?.features,
    limit: o.limit,
    outputDir: o.output,
  });
  console.log(JSON.stringify({ exact_match: scores.exact_match, f1: scores.f1 }));
  console.log(`${scores.total} questions of ${goldName} (${scores.missing} without a prediction) -> ${path}`);
}

/** Runs `squad <subcommand>`. */
export async function run(args: ParsedArgs<typeof spec.flags>): Promise<void> {
  const [sub, ...extra] = args.positional;
  if (!sub || !(SUBCOMMANDS as readonly string[]).includes(sub)) {
    throw new UsageError(`squad needs a subcommand: ${SUBCOMMANDS.join(", ")}${sub ? ` (got "${sub}")` : ""}`);
  }
  if (extra.length) throw new UsageError(`unexpected argument "${extra[0]}"`);
  const f = args.flags;
  const predict: SquadEvaluateArgs = {
    checkpoint: f.checkpoint,
    run: runDir(f),
    features: f.features,
    batchSize: f["batch-size"],
    nBestSize: f["n-best"],
    maxAnswerLength: f["max-answer-length"],
    output: f.output,
  };
  // `prepare` and `train` write the run folder: one writer at a time (a second one fails at once, naming this one).
  using _lock = sub === "prepare" || sub === "train" ? await acquireRunLock(runDir(f)) : undefined;
  if (sub === "prepare") {
    await prepareSquadRun(squadPrepareOptions(f, join(runDir(f), "features")));
  } else if (sub === "train") await trainCommand(f);
  else if (sub === "predict") await predictCommand(predict);
  else await evaluateCommand({ ...predict, predictions: f.predictions, dev: f.dev, limit: f.limit });
}

/** The flags that `squad prepare` and `prepare --task squad` share (both commands declare them). */
export interface SquadPrepareFlags {
  train?: string;
  dev?: string;
  "data-dir"?: string;
  "train-from-dev"?: boolean;
  vocab?: string;
  model?: string;
  cased?: boolean;
  "max-seq-length"?: number;
  "doc-stride"?: number;
  "max-query-length"?: number;
  limit?: number;
  "train-limit"?: number;
  "keep-impossible"?: boolean;
}

/** {@linkcode prepareSquadRun}'s options from either command's flags, writing into `outputDir`. */
export function squadPrepareOptions(f: SquadPrepareFlags, outputDir: string): SquadPrepareOptions {
  return {
    train: f.train,
    dev: f.dev,
    dataDir: f["data-dir"],
    trainFromDev: f["train-from-dev"] === true,
    vocab: f.vocab,
    model: f.model,
    cased: f.cased === true,
    outputDir,
    maxSeqLength: f["max-seq-length"],
    docStride: f["doc-stride"],
    maxQueryLength: f["max-query-length"],
    limit: f.limit,
    trainLimit: f["train-limit"],
    keepImpossible: f["keep-impossible"] === true,
  };
}
