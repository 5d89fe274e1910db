/**
 * `deno task bert evaluate`: evaluate a saved checkpoint on labelled features (or a raw data file of a task), print
 * the metrics and write `eval_results.json` and `predictions.tsv` beside the checkpoint. `--task squad` scores
 * SQuAD predictions with the official exact match / F1 (predicting first with `--checkpoint`), via lib/cli/squad.ts.
 * @module
 */
import { type CommandSpec, type ParsedArgs, UsageError } from "./args.ts";
import { BACKEND_HELP, type BackendName, initBackend } from "../backends/backend.ts";
import { tableText } from "../viz/display.ts";
import { evaluateCheckpoint, type EvaluationResult } from "../eval/evaluate.ts";
import { exists, join } from "../io/fsutil.ts";
import { TASKS } from "../data/tasks.ts";
import { latestCheckpoint, readTrainerState } from "../training/checkpoints.ts";

/** Flags of `evaluate`. */
export const spec: CommandSpec = {
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
    "max-seq-length": {
      type: "number",
      integer: true,
      min: 2,
      max: 512,
      default: 128,
      help: "tokens per example when tokenizing --data",
    },
    "batch-size": { type: "number", integer: true, min: 1, default: 64, help: "examples per forward pass" },
    output: { help: "folder for eval_results.json and predictions.tsv (default: the checkpoint folder)" },
    predictions: { help: "[squad] predictions.json ({question id: answer}) to score" },
    limit: { type: "number", integer: true, min: 1, help: "[squad] score only the first N questions of --data" },
    backend: { help: BACKEND_HELP },
  },
};

/** A checkpoint folder from `path`: itself, or the best (else newest) checkpoint of a run folder. */
export async function resolveCheckpoint(path: string): Promise<string> {
  if (await exists(join(path, "config.json")) || await exists(join(path, "bert_config.json"))) return path;
  const latest = await latestCheckpoint(path);
  if (!latest) {
    throw new Error(`${path} is neither a checkpoint folder (config.json) nor a run folder with checkpoints`);
  }
  const best = (await readTrainerState(latest)).best_checkpoint;
  if (best && await exists(join(path, best, "config.json"))) return join(path, best);
  return latest;
}

/** Prints the metrics of an evaluation in a few readable lines. */
export function printEvaluation(r: EvaluationResult): void {
  const m = r.metrics;
  const fmt = (v: number | undefined) => (v === undefined ? "-" : v.toFixed(4));
  console.log(`headline: ${r.headline.text}   (n=${m.n}, loss ${fmt(m.loss)})`);
  console.log(
    `accuracy ${fmt(m.accuracy)}  precision ${fmt(m.precision)}  recall ${fmt(m.recall)}  F1 ${fmt(m.f1)}  ` +
      `macro-F1 ${fmt(m.macroF1)}  MCC ${fmt(m.mcc)}  ROC-AUC ${fmt(m.rocAuc)}  log loss ${fmt(m.logLoss)}`,
  );
  console.log("confusion matrix (rows: gold, columns: predicted):");
  console.log(
    tableText(m.confusionMatrix.map((row, i) => [m.labelNames[i], ...row]), {
      columns: ["gold \\ predicted", ...m.labelNames],
    }),
  );
  console.log(tableText(m.perClass.map((c) => ({ ...c }))));
  if (r.resultsPath) console.log(`wrote ${r.resultsPath} and ${r.predictionsPath}`);
}

/** Runs `evaluate` with parsed flags. */
export async function run(args: ParsedArgs): Promise<void> {
  const f = args.flags;
  if (args.positional.length) throw new UsageError(`unexpected argument "${args.positional[0]}"`);
  if (f.task === "squad" || (f.predictions !== undefined && f.task === undefined)) {
    if (f.predictions === undefined && f.checkpoint === undefined) {
      throw new UsageError("evaluate --task squad needs --predictions FILE or --checkpoint DIR");
    }
    const { evaluateCommand } = await import("./squad.ts");
    await evaluateCommand({
      dev: f.data,
      predictions: f.predictions,
      checkpoint: f.checkpoint,
      features: f.features,
      output: f.output,
      limit: f.limit,
      "batch-size": f["batch-size"],
    });
    return;
  }
  for (const flag of ["predictions", "limit"]) {
    if (f[flag] !== undefined) throw new UsageError(`--${flag} is for --task squad`);
  }
  if (f.checkpoint === undefined) throw new UsageError('--checkpoint is required for "evaluate"');
  if (!f.features === !f.data) throw new UsageError("give --features FILE or --data FILE (with --task)");
  await initBackend({ backend: f.backend as BackendName | undefined });
  const checkpoint = await resolveCheckpoint(f.checkpoint as string);
  const result = await evaluateCheckpoint({
    checkpoint,
    features: f.features as string | undefined,
    data: f.data as string | undefined,
    task: f.task as string | undefined,
    maxSeqLength: f["max-seq-length"] as number,
    batchSize: f["batch-size"] as number,
    outputDir: f.output as string | undefined,
    quiet: true,
  });
  console.log(`checkpoint ${checkpoint}`);
  printEvaluation(result);
}
