/**
 * `deno task bert predict`: label unlabelled texts with a fine-tuned checkpoint, from `--text` flags or a TSV/CSV
 * column, printing a table or writing a TSV.
 * @module
 */
import { type CommandSpec, type ParsedArgs, UsageError } from "../args.ts";
import { type BackendName, initBackend } from "../backend.ts";
import { tableText } from "../display.ts";
import { predict, type Prediction } from "../evaluate.ts";
import { writeFileAtomic } from "../fsutil.ts";
import { resolveCheckpoint } from "./evaluate.ts";

/** Flags of `predict`. */
export const spec: CommandSpec = {
  name: "predict",
  description: "Predicts labels for unlabelled texts with a fine-tuned checkpoint: one or more --text values, or " +
    "a TSV/CSV file with a header (--input, --column). Prints a table, or writes a TSV (id, text, label, one " +
    "probability per label) with --output. --checkpoint may be a run folder: its best checkpoint is used.",
  usage: '--checkpoint DIR (--text "..." [--text "..."] | --input FILE [--column text]) [--output FILE]',
  flags: {
    checkpoint: { required: true, help: "fine-tuned checkpoint folder, or a run folder" },
    text: { type: "list", help: "a text to label (repeatable; commas split values, so use one --text per text)" },
    input: { help: "TSV or CSV file with a header row" },
    column: { help: "column of --input holding the text (default: text, else sentence)" },
    "pair-column": { help: "column with the second text, for sentence-pair models" },
    output: { help: "write predictions as TSV here (under outputs/) instead of printing" },
    "max-seq-length": { type: "number", default: 128, help: "tokens per text including [CLS]/[SEP]" },
    "batch-size": { type: "number", default: 64, help: "texts per forward pass" },
    backend: { help: "tfjs backend: auto, tensorflow, wasm, cpu" },
  },
};

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
export async function run(args: ParsedArgs): Promise<void> {
  const f = args.flags;
  // `--text` is a list flag, which splits on commas; join them back unless they were separate flags.
  const texts = f.text as string[] | undefined;
  if (args.positional.length) throw new UsageError(`unexpected argument "${args.positional[0]}" (use --text "...")`);
  if (!texts === !f.input) throw new UsageError('give --text "..." or --input FILE');
  await initBackend({ backend: f.backend as BackendName | undefined, quiet: !f.output });
  const checkpoint = await resolveCheckpoint(f.checkpoint as string);
  const { predictions, labelNames } = await predict({
    checkpoint,
    texts: texts ? (rawTexts().length ? rawTexts() : texts) : undefined,
    file: f.input as string | undefined,
    column: f.column as string | undefined,
    pairColumn: f["pair-column"] as string | undefined,
    maxSeqLength: f["max-seq-length"] as number,
    batchSize: f["batch-size"] as number,
  });
  if (f.output) {
    await writeFileAtomic(f.output as string, predictionsToTsv(predictions, labelNames));
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

/** The `--text` values as given (the list flag type would split a text at its commas). */
function rawTexts(): string[] {
  const out: string[] = [];
  const argv = Deno.args;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--text" && i + 1 < argv.length) out.push(argv[++i]);
    else if (argv[i].startsWith("--text=")) out.push(argv[i].slice("--text=".length));
  }
  return out;
}
