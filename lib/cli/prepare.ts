/**
 * `deno task bert prepare`: read a dataset, tokenize it and write `outputs/<run>/features/{train,dev}.safetensors`.
 * A thin wrapper over {@linkcode prepareFeatures} in lib/prepare.ts (which the notebooks call too).
 * @module
 */
import { type CommandSpec, type ParsedArgs, UsageError } from "../args.ts";
import { prepareFeatures } from "../prepare.ts";
import { TASKS } from "../tasks.ts";

/** Flags of `prepare`. */
export const spec: CommandSpec = {
  name: "prepare",
  description: "Reads a task's train and dev files, WordPiece-tokenizes them and writes fixed-length features " +
    "(input_ids, token_type_ids, attention_mask, labels) to outputs/<run>/features/{train,dev}.safetensors, " +
    "then prints a summary. Without --vocab/--model the embedded sample gets a vocabulary built from its " +
    "training text (outputs/<run>/vocab.txt).",
  usage:
    "[--task sample|sst2|cola|mrpc|yelp] [--data-dir DIR | --train FILE --dev FILE] [--vocab FILE | --model DIR] " +
    "[--cased] [--max-seq-length 128] [--run NAME] [--limit N] [--skip-bad-rows]",
  flags: {
    task: { default: "sample", help: `task: ${Object.keys(TASKS).join(", ")}` },
    "data-dir": { help: "folder holding the task's files (default: data/..., then ../shared/data/...)" },
    train: { help: "training file (overrides the task's folder)" },
    dev: { help: "dev file (overrides the task's folder)" },
    vocab: { help: "vocab.txt to tokenize with" },
    model: { help: "checkpoint folder whose vocab.txt (and tokenizer_config.json casing) to use" },
    cased: { type: "boolean", help: "keep case and accents (for cased checkpoints)" },
    "max-seq-length": { type: "number", default: 128, help: "tokens per example including [CLS]/[SEP]" },
    run: { help: "run name: output goes to outputs/<run>/ (default: the task name)" },
    limit: { type: "number", help: "read at most N examples per split" },
    "skip-bad-rows": { type: "boolean", help: "skip malformed rows (reported) instead of stopping" },
    "vocab-size": { type: "number", default: 2000, help: "size of the vocabulary built for the sample" },
    "outputs-dir": { default: "outputs", help: "root folder of all runs" },
  },
};

/** Runs `prepare` with parsed flags. */
export async function run(args: ParsedArgs): Promise<void> {
  const f = args.flags;
  if (args.positional.length) throw new UsageError(`unexpected argument "${args.positional[0]}"`);
  if (f.vocab !== undefined && f.model !== undefined) throw new UsageError("give --vocab or --model, not both");
  const str = (name: string) => f[name] as string | undefined;
  const num = (name: string) => f[name] as number | undefined;
  await prepareFeatures({
    task: str("task"),
    dataDir: str("data-dir"),
    train: str("train"),
    dev: str("dev"),
    vocab: str("vocab"),
    model: str("model"),
    cased: f.cased === true,
    maxSeqLength: num("max-seq-length"),
    run: str("run"),
    limit: num("limit"),
    skipBadRows: f["skip-bad-rows"] === true,
    vocabSize: num("vocab-size"),
    outputsDir: str("outputs-dir"),
  });
}
