/**
 * `deno task bert prepare`: read a dataset, tokenize it and write `outputs/<run>/features/{train,dev}.safetensors`.
 * A thin wrapper over {@linkcode prepareFeatures} in lib/data/prepare.ts (which the notebooks call too); `--task squad`
 * goes to the SQuAD windows of lib/tasks/squad/run.ts (as `squad prepare`).
 * @module
 */
import { defineCommand, type ParsedArgs } from "./args.ts";
import { UsageError } from "../io/errors.ts";
import { acquireRunLock, join } from "../io/fsutil.ts";
import { checkRunName, prepareFeatures } from "../data/prepare.ts";
import { TASKS } from "../data/tasks.ts";
import { prepareSquadRun } from "../tasks/squad/run.ts";
import { squadPrepareOptions } from "./squad.ts";

/** Flags of `prepare`. */
export const spec = defineCommand({
  name: "prepare",
  description: "Reads a task's train and dev files, WordPiece-tokenizes them and writes fixed-length features " +
    "(input_ids, token_type_ids, attention_mask, labels) to outputs/<run>/features/{train,dev}.safetensors, " +
    "then prints a summary. Both splits are written to a temporary folder and swapped in together, so a failing " +
    "split leaves the features of an earlier run untouched; an empty or unlabelled split is an error " +
    "(--allow-unlabelled-dev accepts such a dev split). Without --vocab/--model the embedded sample gets a vocabulary built from its " +
    "training text (outputs/<run>/vocab.txt). --task squad writes SQuAD v1.1 sliding windows instead (same as " +
    "`squad prepare`): dev-v1.1.json and train-v1.1.json from --dev/--train or data/squad-v1.1, then " +
    "../shared/data/squad-v1.1; without a training file the dev file is split by article for a demo (notice " +
    "printed); needs --vocab or --model.",
  usage: "[--task sample|sst2|cola|mrpc|yelp|squad] [--data-dir DIR | --train FILE --dev FILE] " +
    "[--vocab FILE | --model DIR] [--cased] [--max-seq-length 128] [--run NAME] [--limit N] [--skip-bad-rows] " +
    "[--allow-unlabelled-dev]",
  flags: {
    task: { default: "sample", help: `task: ${Object.keys(TASKS).join(", ")}, squad` },
    "data-dir": { help: "folder holding the task's files (default: data/..., then ../shared/data/...)" },
    train: { help: "training file (overrides the task's folder)" },
    dev: { help: "dev file (overrides the task's folder)" },
    vocab: { help: "vocab.txt to tokenize with" },
    model: { help: "checkpoint folder whose vocab.txt (and tokenizer_config.json casing) to use" },
    cased: { type: "boolean", help: "keep case and accents (for cased checkpoints)" },
    "max-seq-length": {
      type: "number",
      integer: true,
      min: 2,
      help: "tokens per example including [CLS]/[SEP], at most the model's max_position_embeddings (512 for new " +
        "models) (default 128; squad 384)",
    },
    run: { help: "run name: output goes to outputs/<run>/ (default: the task name)" },
    limit: {
      type: "number",
      integer: true,
      min: 1,
      help: "read at most N examples per split (squad: N dev questions)",
    },
    "skip-bad-rows": { type: "boolean", help: "skip malformed rows (reported) instead of stopping" },
    "allow-unlabelled-dev": {
      type: "boolean",
      help: "accept an empty or unlabelled dev split (e.g. a GLUE test file; train then runs without validation) " +
        "instead of stopping",
    },
    "vocab-size": {
      type: "number",
      integer: true,
      min: 10,
      default: 2000,
      help: "size of the vocabulary built for the sample",
    },
    "doc-stride": {
      type: "number",
      integer: true,
      min: 1,
      help: "[squad] sub-tokens between window starts (default 128)",
    },
    "max-query-length": {
      type: "number",
      integer: true,
      min: 1,
      help: "[squad] questions are cut to this many sub-tokens (default 64)",
    },
    "keep-impossible": { type: "boolean", help: "[squad] keep SQuAD 2.0 unanswerable questions (flagged)" },
    "train-limit": { type: "number", integer: true, min: 1, help: "[squad] at most N training questions" },
    "train-from-dev": {
      type: "boolean",
      help: "[squad] train on the dev questions of articles other than the first --limit questions' (a demo; " +
        "automatic when there is no train-v1.1.json)",
    },
    "outputs-dir": { default: "outputs", help: "root folder of all runs" },
  },
});

/** Runs `prepare` with parsed flags. */
export async function run(args: ParsedArgs<typeof spec.flags>): Promise<void> {
  const f = args.flags;
  if (args.positional.length) throw new UsageError(`unexpected argument "${args.positional[0]}"`);
  if (f.vocab !== undefined && f.model !== undefined) throw new UsageError("give --vocab or --model, not both");
  const task = f.task;
  if (task !== "squad" && !Object.hasOwn(TASKS, task)) {
    throw new UsageError(`--task "${task}" is not a task: valid tasks are ${Object.keys(TASKS).join(", ")}, squad`);
  }
  const run = f.run ?? (task === "squad" ? "squad" : task);
  checkRunName(run);
  // One writer per run folder: a second `prepare` (or a `train`) of the same run fails at once, naming this one.
  using _lock = await acquireRunLock(join(f["outputs-dir"], run));
  if (task === "squad") {
    if (f["skip-bad-rows"] === true) throw new UsageError("--skip-bad-rows is not for squad (bad JSON stops)");
    if (f["allow-unlabelled-dev"] === true) throw new UsageError("--allow-unlabelled-dev is not for squad");
    await prepareSquadRun(squadPrepareOptions(f, join(f["outputs-dir"], run, "features")));
    return;
  }
  for (const flag of ["doc-stride", "max-query-length", "keep-impossible", "train-limit", "train-from-dev"] as const) {
    if (f[flag] !== undefined) throw new UsageError(`--${flag} is for --task squad`);
  }
  await prepareFeatures({
    task,
    dataDir: f["data-dir"],
    train: f.train,
    dev: f.dev,
    vocab: f.vocab,
    model: f.model,
    cased: f.cased === true,
    maxSeqLength: f["max-seq-length"],
    run: f.run,
    limit: f.limit,
    skipBadRows: f["skip-bad-rows"] === true,
    allowUnlabelledDev: f["allow-unlabelled-dev"] === true,
    vocabSize: f["vocab-size"],
    outputsDir: f["outputs-dir"],
  });
}
