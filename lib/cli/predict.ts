/**
 * `deno task bert predict`: label unlabelled texts with a fine-tuned checkpoint, from `--text` flags or a TSV/CSV
 * column, printing a table or writing a TSV.
 * @module
 */
import { defineCommand, type ParsedArgs } from "./args.ts";
import * as F from "./flags.ts";
import { UsageError } from "../io/errors.ts";
import { type BackendName, initBackend } from "../backends/backend.ts";
import { tableText } from "../viz/display.ts";
import { boxedWarning, predict, type Prediction } from "../eval/evaluate.ts";
import { exists, join, writeFileAtomic } from "../io/fsutil.ts";
import { TASKS } from "../data/tasks.ts";
import { readTrainerState, resolveCheckpoint } from "../training/checkpoints.ts";

/** Flags of `predict`. */
export const spec = defineCommand({
  name: "predict",
  description: "Predicts labels for unlabelled texts with a fine-tuned checkpoint: one or more --text values, or " +
    "a TSV/CSV file with a header (--input, --column). Prints a table, or writes a TSV (id, text, label, one " +
    "probability per label) with --output. --checkpoint may be a run folder: its best checkpoint is used.",
  usage: '--checkpoint DIR (--text "..." [--text-pair "..."] [--text "..."] | --input FILE [--column text] ' +
    "[--pair-column COL]) [--output FILE]",
  flags: {
    checkpoint: { required: true, help: "fine-tuned checkpoint folder, or a run folder" },
    text: {
      type: "list",
      help: "a text to label, taken whole (commas included); repeat --text for several texts",
    },
    "text-pair": {
      type: "list",
      help: "the second text of a sentence-pair model (one per --text, in the same order; commas included)",
    },
    input: { help: "TSV or CSV file with a header row" },
    column: { help: "column of --input holding the text (default: text, else sentence)" },
    "pair-column": { help: "column with the second text, for sentence-pair models" },
    output: { help: "write predictions as TSV here (under outputs/) instead of printing" },
    "max-seq-length": F.maxSeqLength("text"),
    "batch-size": { ...F.batchSize("texts", { per: "forward pass" }), default: 64 },
    backend: F.backend(),
  },
});

/** Predictions as TSV: id, text, (text_pair), label, p_<label>... */
export function predictionsToTsv(predictions: Prediction[], labelNames: string[]): string {
  const clean = (s: string) => s.replace(/\r\n|[\t\r\n]/g, " ");
  const pair = predictions.some((p) => p.textPair !== undefined);
  const header = ["id", "text", ...(pair ? ["text_pair"] : []), "label", ...labelNames.map((l) => `p_${l}`)];
  const rows = predictions.map((p) =>
    [
      clean(p.id),
      clean(p.text),
      ...(pair ? [clean(p.textPair ?? "")] : []),
      p.label,
      ...labelNames.map((l) => p.probabilities[l].toFixed(6)),
    ].join("\t")
  );
  return [header.join("\t"), ...rows].join("\n") + "\n";
}

/** Runs `predict` with parsed flags. */
export async function run(args: ParsedArgs<typeof spec.flags>): Promise<void> {
  const f = args.flags;
  // `--text` is a list flag, which splits on commas; join them back unless they were separate flags.
  const texts = f.text;
  if (args.positional.length) throw new UsageError(`unexpected argument "${args.positional[0]}" (use --text "...")`);
  if (!texts === !f.input) throw new UsageError('give --text "..." or --input FILE');
  if (f["text-pair"] !== undefined && !texts) throw new UsageError("--text-pair goes with --text (use --pair-column)");
  if (f["pair-column"] !== undefined && !f.input) throw new UsageError("--pair-column goes with --input");
  const textList = texts ? (rawTexts("--text").length ? rawTexts("--text") : texts) : undefined;
  const pairList = f["text-pair"] !== undefined
    ? (rawTexts("--text-pair").length ? rawTexts("--text-pair") : f["text-pair"])
    : undefined;
  if (textList && pairList && pairList.length !== textList.length) {
    throw new UsageError(`${textList.length} --text but ${pairList.length} --text-pair: give one second text per text`);
  }
  await initBackend({ backend: f.backend as BackendName | undefined, quiet: !f.output });
  const checkpoint = await resolveCheckpoint(f.checkpoint);
  const pairTask = await pairTaskOf(checkpoint);
  if (pairTask && !pairList && f["pair-column"] === undefined) {
    console.warn(boxedWarning([
      `WARNING: ${checkpoint} was fine-tuned on sentence PAIRS (task ${pairTask}),`,
      "but each example here has only one text: the predictions are out of distribution.",
      f.input
        ? "Give the second text's column with --pair-column COL."
        : 'Give each second text with --text-pair "...".',
    ]));
  }
  const { predictions, labelNames } = await predict({
    checkpoint,
    texts: textList,
    textPairs: pairList,
    file: f.input,
    column: f.column,
    pairColumn: f["pair-column"],
    maxSeqLength: f["max-seq-length"],
    batchSize: f["batch-size"],
  });
  if (predictions.length === 0) {
    throw new Error(`${f.input}: no texts to predict (the file has only a header row, or is empty)`);
  }
  if (f.output) {
    await writeFileAtomic(f.output, predictionsToTsv(predictions, labelNames));
    console.log(`wrote ${predictions.length} predictions to ${f.output} (checkpoint ${checkpoint})`);
    return;
  }
  console.log(tableText(
    predictions.map((p) => ({
      text: p.text,
      label: p.label,
      ...Object.fromEntries(labelNames.map((l) => [`p(${l})`, p.probabilities[l]])),
    })),
    { maxTextWidth: 70 },
  ));
}

/** The values of `flag` as given (the list flag type would split a text at its commas). */
function rawTexts(flag: string): string[] {
  const out: string[] = [];
  const argv = Deno.args;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === flag && i + 1 < argv.length) out.push(argv[++i]);
    else if (argv[i].startsWith(`${flag}=`)) out.push(argv[i].slice(flag.length + 1));
  }
  return out;
}

/** The sentence-pair task a checkpoint was fine-tuned on (from its trainer_state.json), if any. */
async function pairTaskOf(checkpoint: string): Promise<string | undefined> {
  if (!(await exists(join(checkpoint, "trainer_state.json")))) return undefined;
  try {
    const state = await readTrainerState(checkpoint);
    const task = state.train_features?.task ?? state.task;
    return task && Object.hasOwn(TASKS, task) && TASKS[task].pair ? task : undefined;
  } catch {
    return undefined;
  }
}
