/**
 * `deno task bert build-vocab --input FILE[,FILE...] [--column NAME] --vocab-size N --output vocab.txt [--cased]`:
 * learns a WordPiece vocabulary (lib/text/vocab_builder.ts) from text files: plain text (one text per line), or TSV/CSV
 * files with a header, reading the column `--column`.
 * @module
 */
import Papa from "papaparse";
import { defineCommand, type ParsedArgs } from "./args.ts";
import { UsageError } from "../io/errors.ts";
import { writeCommandOutput } from "../io/fsutil.ts";
import { buildVocabWithStats } from "../text/vocab_builder.ts";

/** Flags of `build-vocab`. */
export const spec = defineCommand({
  name: "build-vocab",
  description: "Learn a WordPiece vocabulary (special tokens, characters, then merged pieces) from a corpus. " +
    "Inputs ending in .tsv/.csv are read as tables with a header (text from --column); anything else as one " +
    "text per line. The vocab.txt is written atomically.",
  usage: "--input FILE[,FILE...] [--column NAME] --vocab-size N --output outputs/.../vocab.txt [--cased]",
  flags: {
    input: { type: "list", help: "corpus files (.txt: one text per line; .tsv/.csv: see --column)", required: true },
    column: { help: "column holding the text in .tsv/.csv inputs (e.g. sentence)" },
    "vocab-size": { type: "number", help: "size of the vocabulary, special tokens included", required: true },
    output: { help: "vocab.txt to write (under outputs/ when run through deno task bert)", required: true },
    cased: { type: "boolean", help: "keep case and accents (for a cased model)" },
    "min-frequency": { type: "number", default: 2, help: "least count of a pair for it to be merged" },
    scoring: { default: "frequency", help: "merge choice: frequency (most frequent pair) or likelihood" },
  },
});

/** Reads the texts of one corpus file (see the command description); errors name the file and line. */
export function readCorpus(content: string, file: string, column?: string): string[] {
  const lower = file.toLowerCase();
  const table = lower.endsWith(".tsv") ? "tsv" : lower.endsWith(".csv") ? "csv" : "txt";
  const lines = content.split(/\r?\n/);
  if (table === "txt") return lines.filter((l) => l.trim().length > 0);
  if (!column) throw new UsageError(`${file}: --column NAME is needed to read a ${table.toUpperCase()} file`);
  if (table === "tsv") {
    // GLUE-style TSV: no quoting (quotes are part of the text), tab-separated, header first.
    const header = lines[0].split("\t");
    const col = header.indexOf(column);
    if (col < 0) throw new Error(`${file}:1: no column "${column}" (columns: ${header.join(", ")})`);
    const texts: string[] = [];
    for (let i = 1; i < lines.length; i++) {
      if (lines[i].length === 0) continue;
      const cells = lines[i].split("\t");
      if (cells.length <= col) {
        throw new Error(`${file}:${i + 1}: expected at least ${col + 1} tab-separated fields, got ${cells.length}`);
      }
      texts.push(cells[col]);
    }
    return texts;
  }
  const parsed = Papa.parse<Record<string, string>>(content, { header: true, skipEmptyLines: true });
  const bad = parsed.errors[0];
  if (bad) throw new Error(`${file}: CSV row ${(bad.row ?? 0) + 2}: ${bad.message}`);
  const fields = parsed.meta.fields ?? [];
  if (!fields.includes(column)) throw new Error(`${file}:1: no column "${column}" (columns: ${fields.join(", ")})`);
  return parsed.data.map((row) => row[column] ?? "");
}

/** Runs `build-vocab`. */
export async function run(args: ParsedArgs<typeof spec.flags>): Promise<void> {
  const inputs = args.flags.input;
  const vocabSize = args.flags["vocab-size"];
  const output = args.flags.output;
  const scoring = args.flags.scoring;
  if (scoring !== "frequency" && scoring !== "likelihood") {
    throw new UsageError(`--scoring must be frequency or likelihood, got "${scoring}"`);
  }
  if (!Number.isInteger(vocabSize) || vocabSize < 10) {
    throw new UsageError(`--vocab-size must be an integer of at least 10, got ${vocabSize}`);
  }
  if (inputs.length === 0) throw new UsageError("--input needs at least one file");
  const t0 = performance.now();
  const texts: string[] = [];
  for (const file of inputs) {
    let content: string;
    try {
      content = await Deno.readTextFile(file);
    } catch (err) {
      throw new Error(`cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
    for (const t of readCorpus(content, file, args.flags.column)) texts.push(t);
  }
  const { tokens, stats } = buildVocabWithStats(texts, {
    vocabSize,
    lowerCase: !args.flags.cased,
    minFrequency: args.flags["min-frequency"],
    scoring,
  });
  await writeCommandOutput(output, tokens.join("\n") + "\n");
  const sec = (performance.now() - t0) / 1000;
  console.log(
    `${texts.length} texts, ${stats.words} words (${stats.distinctWords} distinct), ${stats.characters} characters, ` +
      `${stats.merges} merges -> ${tokens.length} tokens in ${output} (${sec.toFixed(1)} s)`,
  );
  if (stats.exhausted) {
    console.log(`note: no pair occurs ${args.flags["min-frequency"]} times any more: vocabulary smaller than asked`);
  }
  if (stats.droppedCharacters.length > 0) {
    console.log(
      `note: ${stats.droppedCharacters.length} rare characters did not fit and will be [UNK]: ` +
        stats.droppedCharacters.slice(0, 20).join(" "),
    );
  }
}
