/**
 * `deno task bert tokenize --vocab FILE [--cased] --input IN.jsonl --output OUT.jsonl`: WordPiece-tokenizes each
 * `{"text": ...}` line of a JSONL file into a `{"tokens": [...], "ids": [...]}` line (same order, no special
 * tokens added).
 * @module
 */
import { defineCommand, type ParsedArgs } from "./args.ts";
import { UsageError } from "../io/errors.ts";
import { writeCommandOutput } from "../io/fsutil.ts";
import { FullTokenizer } from "../text/tokenizer.ts";

/** Flags of `tokenize`. */
export const spec = defineCommand({
  name: "tokenize",
  description: 'WordPiece-tokenize a JSONL file: each input line {"text": ...} becomes an output line ' +
    '{"tokens": [...], "ids": [...]} (same order, no [CLS]/[SEP] added). Uncased (lower-case, accents ' +
    "stripped) unless --cased. The output is written atomically.",
  usage: "--vocab FILE [--cased] --input IN.jsonl --output OUT.jsonl",
  flags: {
    vocab: { help: "vocab.txt of the model (one token per line)", required: true },
    cased: { type: "boolean", help: "keep case and accents (for cased models)" },
    input: { help: 'JSONL file, one {"text": "..."} object per line', required: true },
    output: { help: "JSONL file to write (under outputs/ when run through deno task bert)", required: true },
  },
});

/** Reads `{"text"}` lines of `file`; throws `file:line: problem` on bad input. Blank lines are skipped. */
export function parseTextLines(content: string, file: string): string[] {
  const texts: string[] = [];
  const lines = content.split("\n");
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].endsWith("\r") ? lines[i].slice(0, -1) : lines[i];
    if (line.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw new Error(`${file}:${i + 1}: invalid JSON (${err instanceof Error ? err.message : String(err)})`);
    }
    const text = (value !== null && typeof value === "object" && !Array.isArray(value))
      ? (value as Record<string, unknown>).text
      : undefined;
    if (typeof text !== "string") {
      throw new Error(`${file}:${i + 1}: expected an object with a string "text" field, got ${line.slice(0, 80)}`);
    }
    texts.push(text);
  }
  return texts;
}

/** Runs `tokenize`. */
export async function run(args: ParsedArgs<typeof spec.flags>): Promise<void> {
  const vocab = args.flags.vocab;
  const input = args.flags.input;
  const output = args.flags.output;
  if (args.positional.length > 0) throw new UsageError(`unexpected argument "${args.positional[0]}"`);
  const t0 = performance.now();
  const tokenizer = await FullTokenizer.fromVocabFile(vocab, { lowerCase: !args.flags.cased });
  let content: string;
  try {
    content = await Deno.readTextFile(input);
  } catch (err) {
    throw new Error(`cannot read ${input}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const texts = parseTextLines(content, input);
  const out: string[] = [];
  let pieces = 0;
  for (const text of texts) {
    const { tokens, ids } = tokenizer.encode(text);
    pieces += ids.length;
    out.push(JSON.stringify({ tokens, ids }));
  }
  await writeCommandOutput(output, out.length > 0 ? out.join("\n") + "\n" : "");
  const sec = (performance.now() - t0) / 1000;
  console.log(
    `tokenized ${texts.length} texts into ${pieces} wordpieces (${tokenizer.lowerCase ? "uncased" : "cased"}, ` +
      `vocab ${vocab}) -> ${output} in ${sec.toFixed(2)} s`,
  );
}
