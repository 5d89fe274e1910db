/**
 * `deno task bert train`: fine-tune a checkpoint (or a randomly initialised BERT of a standard size) on prepared
 * features, with validation, checkpoints, exact resume and several seeds. Parses the flags and prints the outcome
 * of lib/tasks/classification/run.ts; `--task squad` (or SQuAD features, recognised by their `.windows.json`)
 * trains the span head through lib/tasks/squad/run.ts with the same loop.
 * @module
 */
import { defineCommand, type ParsedArgs } from "./args.ts";
import * as F from "./flags.ts";
import { printTraining } from "./report.ts";
import { UsageError } from "../io/errors.ts";
import { acquireRunLock, dirname, exists } from "../io/fsutil.ts";
import type { BackendName } from "../backends/backend.ts";
import { initBackend } from "../backends/backend.ts";
import { TASKS } from "../data/tasks.ts";
import { checkMetricName, METRIC_NAMES } from "../eval/metrics.ts";
import { DEFAULT_HYPERPARAMETERS } from "../training/hyperparameters.ts";
import { featureFiles, RANDOM_INIT_LEARNING_RATE, runClassificationTraining } from "../tasks/classification/run.ts";
import { windowsPath } from "../tasks/squad/features.ts";
import { runSquadTraining } from "../tasks/squad/run.ts";

const D = DEFAULT_HYPERPARAMETERS;

/** Flags of `train`. Hyper-parameter flags have no parsed default so that `--resume` can take the checkpoint's. */
export const spec = defineCommand({
  name: "train",
  description: "Fine-tunes BERT for sequence classification on features written by `prepare`. Validates on the " +
    "dev features after each epoch, writes checkpoints (Hugging Face layout + optimizer and trainer state) to " +
    "<output>/checkpoint-<step>/, keeps the last --save-total-limit plus the best, and resumes exactly with " +
    "--resume. The model is --model DIR (a checkpoint), else the checkpoint the features were prepared with, else " +
    "a randomly initialised --config (tiny by default: random weights make accuracy meaningless). --seeds 1,2,3 " +
    "trains once per seed and prints each run's headline metric and their mean ± std. --task squad (or features " +
    "from `prepare --task squad`) fine-tunes the span head for SQuAD instead, validating with exact match / F1 " +
    "(--model DIR, or --config SIZE --vocab FILE; learning rate default 5e-5). " +
    "On --resume the hyper-parameters come from the checkpoint: --epochs and --max-steps may be raised (the run " +
    "continues and the learning-rate schedule is recomputed to decay to 0 at the new end; the notice says so); " +
    "--eval-steps, --save-steps, --save-total-limit, --eval-batch-size, --metric-for-best, --backend and --quiet may " +
    "change freely; --lr, --batch-size, --warmup, --weight-decay, --max-grad-norm, --grad-accum, --seed and " +
    "--dropout may not (refused, since the run would no longer repeat), nor may the training data. Ctrl-C (or " +
    "SIGTERM) finishes the current update, saves a checkpoint and prints the command that resumes; a second " +
    "Ctrl-C stops at once.",
  usage: "--features outputs/<run>/features [--model DIR | --config tiny|mini|base|FILE] [--output outputs/<run>] " +
    "[--lr 2e-5 --batch-size 32 --epochs 3 ...] [--seeds 1,2,3] [--resume] [--task squad]",
  flags: {
    features: {
      required: true,
      help: "folder with train.safetensors and dev.safetensors (or the train file itself; see --dev)",
    },
    dev: { help: "dev features file (default: dev.safetensors beside the training features)" },
    task: {
      help: "squad: SQuAD windows from `prepare --task squad` (recognised by their .windows.json anyway); " +
        "otherwise the classification task of the features (for the headline metric)",
    },
    vocab: { help: "[squad with --config] the vocabulary the features were made with" },
    model: {
      help: "checkpoint folder to fine-tune: config.json (or bert_config.json), vocab.txt, and model.safetensors, " +
        "pytorch_model.bin or a TensorFlow checkpoint (bert_model.ckpt.index + .data-*)",
    },
    config: { help: "random initialisation instead: tiny (2x128), mini (4x256), base (12x768) or a config.json" },
    output: { help: "run folder for checkpoints (default: the folder above --features)" },
    lr: F.lr(`${D.learningRate}; ${RANDOM_INIT_LEARNING_RATE} from random weights, --config`),
    "batch-size": F.batchSize("examples", { shown: D.batchSize }),
    epochs: F.epochs("data", D.epochs),
    "max-steps": F.maxSteps(),
    warmup: F.warmup(D.warmupRatio),
    "weight-decay": F.weightDecay(D.weightDecay),
    "max-grad-norm": F.maxGradNorm(D.maxGradNorm),
    "grad-accum": F.gradAccum(D.gradAccumSteps),
    seed: F.seed(D.seed),
    seeds: F.seeds("<output>/seed-<s>/"),
    dropout: F.dropout(),
    "eval-steps": F.evalSteps("each epoch only"),
    "save-steps": F.saveSteps("each epoch only"),
    "save-total-limit": F.saveTotalLimit(),
    "metric-for-best": { help: `metric picking the best checkpoint: ${METRIC_NAMES.join(", ")} (default: the task's)` },
    "eval-batch-size": F.evalBatchSize("examples"),
    "n-best": { type: "number", integer: true, min: 1, help: "[squad] n-best size when evaluating (default 20)" },
    "max-answer-length": {
      type: "number",
      integer: true,
      min: 1,
      help: "[squad] longest answer in sub-tokens (default 30)",
    },
    resume: F.resume(
      "in --output",
      " (a damaged newer one is skipped with a warning); --epochs/--max-steps may be raised, other " +
        "hyper-parameters come from the checkpoint",
    ),
    "resume-from": { help: "continue from this checkpoint folder" },
    overwrite: F.overwrite(),
    backend: F.backend(),
    threads: F.threads(),
    quiet: F.quiet(),
  },
});

/** Whether `--task squad` was given or the training features are SQuAD windows (they have a `.windows.json`). */
async function isSquadRun(task: string | undefined, trainFile: string): Promise<boolean> {
  if (task === "squad") return true;
  return await exists(windowsPath(trainFile));
}

/** Quotes `arg` for a POSIX shell when it needs it. */
function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`;
}

/** The command that resumes this run: the same flags without --overwrite/--resume, plus --resume and --output. */
function resumeCommand(outputDir: string): string {
  const argv: string[] = [];
  const given = Deno.args;
  for (let i = 0; i < given.length; i++) {
    const a = given[i];
    if (a === "--overwrite" || a === "--resume" || a.startsWith("--resume=") || a.startsWith("--overwrite=")) continue;
    if (a === "--resume-from") {
      i++;
      continue;
    }
    if (a.startsWith("--resume-from=")) continue;
    argv.push(a);
  }
  if (!argv.some((a) => a === "--output" || a.startsWith("--output="))) argv.push("--output", outputDir);
  return `deno task bert ${argv.map(shellQuote).join(" ")} --resume`;
}

/** Runs `train` with parsed flags. */
export async function run(args: ParsedArgs<typeof spec.flags>): Promise<void> {
  if (args.positional.length) throw new UsageError(`unexpected argument "${args.positional[0]}"`);
  const f = args.flags;
  const task = f.task;
  if (task !== undefined && task !== "squad" && !Object.hasOwn(TASKS, task)) {
    throw new UsageError(`--task "${task}" is not a task: valid tasks are ${Object.keys(TASKS).join(", ")}, squad`);
  }
  const files = await featureFiles(f.features, f.dev);
  const outputDir = f.output ??
    ((await Deno.stat(f.features)).isDirectory ? dirname(f.features) : dirname(dirname(files.train)));
  const seeds = F.parseSeeds(f.seeds);
  // One writer per run folder: a second `train` into the same --output fails at once, naming this one.
  using _lock = await acquireRunLock(outputDir);
  await initBackend({ backend: f.backend as BackendName | undefined, threads: f.threads });
  const common = {
    featuresFile: files.train,
    devFile: files.dev,
    outputDir,
    model: f.model,
    config: f.config,
    hp: F.hyperParameters(f),
    seeds,
    evalSteps: f["eval-steps"],
    saveSteps: f["save-steps"],
    saveTotalLimit: f["save-total-limit"],
    metricForBest: f["metric-for-best"],
    evalBatchSize: f["eval-batch-size"],
    resume: f["resume-from"] ?? (f.resume === true ? true : undefined),
    overwrite: f.overwrite === true,
    quiet: f.quiet === true,
    handleSignals: true,
    resumeHint: resumeCommand(outputDir),
  };
  if (await isSquadRun(task, files.train)) {
    const result = await runSquadTraining({
      ...common,
      vocab: f.vocab,
      nBestSize: f["n-best"],
      maxAnswerLength: f["max-answer-length"],
    });
    printTraining(result, outputDir);
    return;
  }
  if (f["metric-for-best"] !== undefined) checkMetricName(f["metric-for-best"]); // fail before any work
  for (const flag of ["vocab", "n-best", "max-answer-length"] as const) {
    if (f[flag] !== undefined) throw new UsageError(`--${flag} is for --task squad`);
  }
  printTraining(await runClassificationTraining({ ...common, task }), outputDir);
}
