/**
 * `deno task bert evaluate`: evaluate a saved checkpoint on labelled features (or a raw data file of a task), print
 * the metrics and write `eval_results.json` and `predictions.tsv` beside the checkpoint. `--task squad` scores
 * SQuAD predictions with the official exact match / F1 (predicting first with `--checkpoint`), as `squad evaluate`.
 * @module
 */
import { defineCommand, type ParsedArgs } from "./args.ts";
import * as F from "./flags.ts";
import { printEvaluation } from "./report.ts";
import { evaluateCommand as evaluateSquad } from "./squad.ts";
import { UsageError } from "../io/errors.ts";
import { type BackendName, initBackend } from "../backends/backend.ts";
import { TASKS } from "../data/tasks.ts";
import { evaluateCheckpoint } from "../eval/evaluate.ts";
import { resolveCheckpoint } from "../training/checkpoints.ts";

/** Flags of `evaluate`. */
export const spec = defineCommand({
  name: "evaluate",
  description: "Evaluates a checkpoint on labelled features written by `prepare` (refusing features made with " +
    "another vocabulary) or on a task's data file: accuracy, precision/recall/F1, MCC, ROC-AUC, log loss, the " +
    "confusion matrix and a per-class report. Writes eval_results.json and predictions.tsv beside the checkpoint " +
    "(or into --output). --checkpoint may be a run folder: its best checkpoint is used. --task squad: the official " +
    "SQuAD v1.1 exact match and F1 of --predictions FILE against --data (the gold dev-v1.1.json; default: the " +
    "one in data/squad-v1.1 or ../shared/data/squad-v1.1), or of the predictions of --checkpoint on its run's " +
    "dev features (scored against their own questions unless --data is given).",
  usage: "--checkpoint DIR (--features FILE | --data FILE --task NAME) [--batch-size 64] [--output DIR]\n" +
    "       deno task bert evaluate --task squad (--predictions FILE | --checkpoint DIR [--features FILE]) " +
    "[--data dev-v1.1.json] [--limit N]",
  flags: {
    checkpoint: {
      help: "checkpoint folder, or a run folder (its best, else newest, checkpoint); required except for " +
        "--task squad --predictions",
    },
    features: { help: "features file (e.g. outputs/<run>/features/dev.safetensors)" },
    data: {
      help: "a raw data file of --task instead of features (tokenized with the checkpoint's vocabulary); squad: " +
        "the gold SQuAD JSON",
    },
    task: { help: `task of --data, or to override the features' task: ${Object.keys(TASKS).join(", ")}, squad` },
    "max-seq-length": F.maxSeqLength("example of --data"),
    "batch-size": { ...F.batchSize("examples", { per: "forward pass" }), default: 64 },
    output: { help: "folder for eval_results.json and predictions.tsv (default: the checkpoint folder)" },
    predictions: { help: "[squad] predictions.json ({question id: answer}) to score" },
    limit: { type: "number", integer: true, min: 1, help: "[squad] score only the first N questions of --data" },
    backend: F.backend(),
  },
});

/** Runs `evaluate` with parsed flags. */
export async function run(args: ParsedArgs<typeof spec.flags>): Promise<void> {
  const f = args.flags;
  if (args.positional.length) throw new UsageError(`unexpected argument "${args.positional[0]}"`);
  if (f.task === "squad" || (f.predictions !== undefined && f.task === undefined)) {
    if (f.predictions === undefined && f.checkpoint === undefined) {
      throw new UsageError("evaluate --task squad needs --predictions FILE or --checkpoint DIR");
    }
    await evaluateSquad({
      dev: f.data,
      predictions: f.predictions,
      checkpoint: f.checkpoint,
      features: f.features,
      output: f.output,
      limit: f.limit,
      batchSize: f["batch-size"],
    });
    return;
  }
  for (const flag of ["predictions", "limit"] as const) {
    if (f[flag] !== undefined) throw new UsageError(`--${flag} is for --task squad`);
  }
  if (f.checkpoint === undefined) throw new UsageError('--checkpoint is required for "evaluate"');
  if (!f.features === !f.data) throw new UsageError("give --features FILE or --data FILE (with --task)");
  await initBackend({ backend: f.backend as BackendName | undefined });
  const checkpoint = await resolveCheckpoint(f.checkpoint);
  const result = await evaluateCheckpoint({
    checkpoint,
    features: f.features,
    data: f.data,
    task: f.task,
    maxSeqLength: f["max-seq-length"],
    batchSize: f["batch-size"],
    outputDir: f.output,
    quiet: true,
  });
  console.log(`checkpoint ${checkpoint}`);
  printEvaluation(result);
}
