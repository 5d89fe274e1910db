/**
 * Dataset readers for BERT fine-tuning: GLUE (SST-2, CoLA, MRPC), Yelp review polarity, the classic BERT TSV
 * layout (`id \t label \t alpha \t text`) and any delimited file. Every reader returns a {@linkcode Dataset}
 * whose examples remember their 1-based source line, and reports bad rows as a {@linkcode DataError}
 * (`file:line: problem`) or, with `skipBadRows`, collects them in `dataset.skipped`.
 *
 * Parsing is done by papaparse. GLUE and BERT TSVs are read with quoting disabled (exactly like BERT's
 * `run_classifier.py`, which uses `csv.reader(..., quotechar=None)`): SST-2, CoLA and MRPC contain literal `"`
 * characters that are text, not quotes. CSV files are read with standard `"` quoting (`""` escapes, fields may
 * span lines).
 * @module
 */
import Papa from "papaparse";
import { basename, join, writeFileAtomic } from "../io/fsutil.ts";

/** One text (or text pair) with its label. */
export interface Example {
  /** Unique within its dataset (`train-0`, ...; the `index` column for GLUE test files; the id column if any). */
  id: string;
  textA: string;
  textB?: string;
  /** Index into `Dataset.labels`; undefined for unlabelled data (GLUE test files). */
  label?: number;
  /** 1-based line in the source file where the row starts. */
  line: number;
}

/** A read dataset: its examples, the label names (index = label id) and the rows that were skipped. */
export interface Dataset {
  examples: Example[];
  labels: string[];
  /** The file it was read from. */
  source: string;
  /** Bad rows skipped with `skipBadRows: true` (empty otherwise). */
  skipped: { line: number; problem: string }[];
}

/** A bad row or header in a data file. `message` is `${file}:${line}: ${problem}`. */
export class DataError extends Error {
  /** The file, as it was given to the reader. */
  readonly file: string;
  /** 1-based line of the problem. */
  readonly line: number;
  /** What is wrong, without the location. */
  readonly problem: string;

  /** Builds the error for `problem` at `file:line`. */
  constructor(file: string, line: number, problem: string) {
    super(`${file}:${line}: ${problem}`);
    this.name = "DataError";
    this.file = file;
    this.line = line;
    this.problem = problem;
  }
}

/** Options every reader accepts. */
export interface ReadOptions {
  /** Skip bad rows (recording them in `dataset.skipped` and printing one summary line) instead of throwing. */
  skipBadRows?: boolean;
  /** Stop after this many good examples. */
  limit?: number;
  /** Do not print the "skipped N bad rows" summary line. */
  quiet?: boolean;
}

/** Options of the GLUE readers. */
export interface GlueReadOptions extends ReadOptions {
  /**
   * Read the unlabelled test layout (header `index\tsentence`, or `index\t#1 ID\t#2 ID\t#1 String\t#2 String` for
   * MRPC): `label` is undefined and `id` is the `index` column. `true` requires that layout, `false` forbids it;
   * left out, it is recognised from the first line.
   */
  unlabelled?: boolean;
}

/** Options of {@linkcode readYelpPolarity}. */
export interface YelpReadOptions extends ReadOptions {
  /**
   * Undo the dataset's backslash escapes (default true): `\n` becomes a newline, `\"` a quote, `\uXXXX` the
   * character (the files are pure ASCII; every non-ASCII character is written as `\uXXXX`), `\\` a backslash.
   */
  unescape?: boolean;
}

/** Options of {@linkcode readBertTsv}. */
export interface BertTsvReadOptions extends ReadOptions {
  /**
   * Label names; the label column holds an index into them (or a name from them). Left out, the names are the
   * distinct values of the label column, sorted (numerically when they are all integers).
   */
  labels?: string[];
}

/** A column by header name or by 0-based index. */
export type Column = string | number;

/** Options of {@linkcode readDelimited}. */
export interface DelimitedOptions extends ReadOptions {
  /** The text column. */
  textColumn: Column;
  /** The second text of a pair task. */
  textPairColumn?: Column;
  /** The label column; without it, examples are unlabelled. */
  labelColumn?: Column;
  /** A column holding example ids; without it, ids are `<file stem>-<row index>`. */
  idColumn?: Column;
  /**
   * Label names. A label cell matching a name gets its index; otherwise an integer cell `0 <= k < labels.length`
   * is taken as the index. Left out, the names are the distinct label values, sorted (numerically if all integers).
   */
  labels?: string[];
  /** Field delimiter; default from the extension: `.csv` -> `,`, `.tsv`/`.txt` -> tab. */
  delimiter?: string;
  /** The first line is a header (default true). Column names need a header; indexes always work. */
  header?: boolean;
  /**
   * Honour `"` quoting (default: true for `,`, false for tab: TSVs are read like BERT's `_read_tsv`, quotes are
   * text). Set true for TSVs written by pandas `to_csv(sep="\t")`.
   */
  quoted?: boolean;
  /** Required number of columns per row (default: the header's, or the first data row's without a header). */
  columns?: number;
}

/** SST-2 label names; the file's 0/1 is the index. */
export const SST2_LABELS: readonly string[] = ["negative", "positive"];
/** CoLA label names; the file's 0/1 is the index. */
export const COLA_LABELS: readonly string[] = ["unacceptable", "acceptable"];
/** MRPC label names; the file's 0/1 (`Quality`) is the index. */
export const MRPC_LABELS: readonly string[] = ["not_equivalent", "equivalent"];
/** Yelp polarity label names; the file's class 1/2 maps to index 0/1. */
export const YELP_LABELS: readonly string[] = ["negative", "positive"];

// ---------------------------------------------------------------------------------------------------------------
// Internals: decoding, row parsing with real line numbers, the shared read loop.

/** A problem with one data row (caught by the read loop and turned into a DataError or a skipped entry). */
class RowProblem extends Error {
  constructor(problem: string, readonly line?: number) {
    super(problem);
  }
}

interface RawRow {
  fields: string[];
  /** First and last source line of the row (they differ for CSV fields that span lines). */
  line: number;
  lastLine: number;
  /** Quote errors reported by papaparse. */
  problem?: string;
}

interface DecodedFile {
  text: string;
  /** line -> description of the first invalid UTF-8 bytes on it (empty for a valid file). */
  badLines: Map<number, string>;
}

async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new Error(`${path}: file not found`);
    throw new Error(`${path}: cannot read: ${(err as Error).message}`);
  }
}

/** Length of the valid UTF-8 sequence starting at `i`, or 0 when the bytes there are invalid. */
function utf8SequenceLength(bytes: Uint8Array, i: number): number {
  const b = bytes[i];
  if (b < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf) => i + k < bytes.length && bytes[i + k] >= lo && bytes[i + k] <= hi;
  if (b >= 0xc2 && b <= 0xdf) return cont(1) ? 2 : 0;
  if (b === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((b >= 0xe1 && b <= 0xec) || b === 0xee || b === 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (b === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (b === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (b >= 0xf1 && b <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (b === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

/** Lines holding invalid UTF-8, with the first bad byte of each (only called once fatal decoding failed). */
function findInvalidUtf8(bytes: Uint8Array): Map<number, string> {
  const bad = new Map<number, string>();
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < bytes.length;) {
    if (bytes[i] === 0x0a) {
      line++;
      lineStart = ++i;
      continue;
    }
    const n = utf8SequenceLength(bytes, i);
    if (n === 0) {
      if (!bad.has(line)) {
        const hex = bytes[i].toString(16).toUpperCase().padStart(2, "0");
        bad.set(line, `invalid UTF-8 (byte 0x${hex} at column ${i - lineStart + 1}, file offset ${i})`);
      }
      i++;
    } else {
      i += n;
    }
  }
  return bad;
}

/** Decodes a whole file as UTF-8 (a leading BOM is dropped); invalid bytes are found and mapped to lines. */
async function decodeFile(path: string): Promise<DecodedFile> {
  const bytes = await readBytes(path);
  try {
    return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes), badLines: new Map() };
  } catch {
    // Replacement decoding keeps every ASCII byte (newlines, delimiters, quotes) where it was.
    return { text: new TextDecoder("utf-8").decode(bytes), badLines: findInvalidUtf8(bytes) };
  }
}

/** Maps string offsets to 1-based lines; queries must come in non-decreasing offset order. */
class LineCounter {
  #pos = 0;
  #line = 1;
  constructor(private readonly text: string) {}
  lineAt(offset: number): number {
    while (true) {
      const nl = this.text.indexOf("\n", this.#pos);
      if (nl < 0 || nl >= offset) break;
      this.#line++;
      this.#pos = nl + 1;
    }
    return this.#line;
  }
}

const QUOTE_PROBLEMS: Record<string, string> = {
  MissingQuotes: 'unterminated quoted field: a " opens a field that is never closed',
  InvalidQuotes: 'malformed quotes: a closing " must be followed by the delimiter or the end of the line',
};

/**
 * Parses `text` row by row with papaparse, giving each row its real source lines. `onRow` returns false to stop.
 * Without quoting, papaparse's fast mode splits on newline and delimiter only, so `"` is ordinary text.
 */
function parseRows(
  text: string,
  options: { delimiter: string; quoted: boolean },
  onRow: (row: RawRow) => boolean,
): void {
  const lines = new LineCounter(text);
  let start = 0;
  Papa.parse<string[]>(text, {
    delimiter: options.delimiter,
    // A quote character that cannot occur in text, plus fast mode: quoting fully disabled.
    quoteChar: options.quoted ? '"' : "\u0000",
    fastMode: options.quoted ? false : true,
    header: false,
    skipEmptyLines: false,
    dynamicTyping: false,
    step(result, parser) {
      const end = result.meta.cursor;
      const line = lines.lineAt(start);
      const lastLine = lines.lineAt(Math.max(start, end - 1));
      start = end;
      const error = result.errors[0];
      const problem = error ? QUOTE_PROBLEMS[error.code] ?? `CSV error: ${error.message}` : undefined;
      // Strip a CR left by a CRLF file when papaparse guessed "\n" (e.g. mixed endings).
      const fields = result.data.map((f, i, all) => (i === all.length - 1 ? f.replace(/\r$/, "") : f));
      if (!onRow({ fields, line, lastLine, problem })) parser.abort();
    },
  });
}

function isBlank(fields: string[]): boolean {
  return fields.length === 1 && fields[0].trim() === "";
}

/** The file name without folder and extension (`data/glue/SST-2/train.tsv` -> `train`). */
function stem(path: string): string {
  const name = basename(path);
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name;
}

/** What a reader does with the rows of one file. */
interface Layout {
  labels: string[];
  /** True when the first non-blank row is a header (not data). */
  headerRow: boolean;
  /** Turns the fields of a data row into an example; throws RowProblem for a bad row. */
  map(fields: string[], index: number): Omit<Example, "line">;
  /** Runs once after all rows (e.g. to finalise labels derived from the data). */
  finish?(examples: Example[]): string[];
}

interface Source {
  path: string;
  delimiter: string;
  quoted: boolean;
  /** Picks the layout from the first non-blank row (may throw DataError for a bad header: never skippable). */
  layout(first: string[], line: number): Layout;
}

function summarise(path: string, skipped: { line: number }[]): string {
  const shown = skipped.slice(0, 20).map((s) => s.line).join(", ");
  const more = skipped.length > 20 ? `, ... (${skipped.length - 20} more)` : "";
  return `skipped ${skipped.length} bad row${skipped.length === 1 ? "" : "s"} in ${path}: line${
    skipped.length === 1 ? "" : "s"
  } ${shown}${more}`;
}

/** The shared read loop: decode, parse, validate each row, collect examples or bad rows. */
async function readSource(source: Source, options: ReadOptions): Promise<Dataset> {
  const { path } = source;
  const limit = options.limit ?? Infinity;
  if (!(limit >= 0)) throw new Error(`limit must be a number >= 0, got ${options.limit}`);
  const { text, badLines } = await decodeFile(path);
  const examples: Example[] = [];
  const skipped: { line: number; problem: string }[] = [];
  let layout: Layout | undefined;
  let index = 0;
  const problemOf = (row: RawRow): RowProblem | undefined => {
    for (let l = row.line; l <= row.lastLine; l++) {
      const bad = badLines.get(l);
      if (bad) return new RowProblem(bad, l);
    }
    return row.problem ? new RowProblem(row.problem) : undefined;
  };
  parseRows(text, { delimiter: source.delimiter, quoted: source.quoted }, (row) => {
    if (isBlank(row.fields) && !row.problem) return true;
    if (!layout) {
      // The first row decides the layout; a broken header is never skippable.
      layout = source.layout(row.fields, row.line);
      if (layout.headerRow) {
        const problem = problemOf(row);
        if (problem) throw new DataError(path, problem.line ?? row.line, `header: ${problem.message}`);
        return true;
      }
    }
    if (examples.length >= limit) return false;
    const i = index++;
    try {
      const problem = problemOf(row);
      if (problem) throw problem;
      examples.push({ ...layout.map(row.fields, i), line: row.line });
    } catch (err) {
      if (!(err instanceof RowProblem)) throw err;
      const line = err.line ?? row.line;
      if (!options.skipBadRows) throw new DataError(path, line, err.message);
      skipped.push({ line, problem: err.message });
    }
    return examples.length < limit;
  });
  if (!layout) throw new DataError(path, 1, "the file has no rows");
  const labels = layout.finish ? layout.finish(examples) : layout.labels;
  if (skipped.length > 0 && !options.quiet) console.warn(summarise(path, skipped));
  return { examples, labels, source: path, skipped };
}

function show(value: string, max = 60): string {
  return JSON.stringify(value.length > max ? value.slice(0, max) + "..." : value);
}

function checkColumns(fields: string[], names: readonly string[]): void {
  if (fields.length !== names.length) {
    throw new RowProblem(
      `expected ${names.length} tab-separated columns (${names.join(", ")}), found ${fields.length}`,
    );
  }
}

function checkText(text: string, what = "text"): string {
  if (text.trim() === "") throw new RowProblem(`empty ${what}`);
  return text;
}

/** Label cell -> index by a fixed value list (`values[k]` is the file's spelling of label k). */
function labelIndex(value: string, values: readonly string[], names: readonly string[]): number {
  const v = value.trim();
  if (v === "") throw new RowProblem(`missing label (expected one of ${values.join(", ")})`);
  const k = values.indexOf(v);
  if (k < 0) {
    throw new RowProblem(
      `unknown label ${show(v)} (expected one of ${values.map((x, i) => `${x} = ${names[i]}`).join(", ")})`,
    );
  }
  return k;
}

function sameRow(fields: string[], header: readonly string[]): boolean {
  return fields.length === header.length && fields.every((f, i) => f.trim() === header[i]);
}

function headerProblem(expected: string[], found: string[]): string {
  return `expected the header ${expected.map((h) => JSON.stringify(h)).join(" or ")}, found ${show(found.join("\t"))}`;
}

/** Decides labelled vs unlabelled from the first row and the `unlabelled` option. */
function pickGlueLayout(
  path: string,
  line: number,
  first: string[],
  options: GlueReadOptions,
  labelled: { header?: readonly string[]; layout: Layout },
  unlabelled: { header: readonly string[]; layout: Layout },
): Layout {
  const isTest = sameRow(first, unlabelled.header);
  const isTrain = labelled.header ? sameRow(first, labelled.header) : !isTest;
  if (options.unlabelled === true && !isTest) {
    throw new DataError(path, line, headerProblem([unlabelled.header.join("\t")], first) + " (unlabelled: true)");
  }
  if (isTest && options.unlabelled !== false) return unlabelled.layout;
  if (isTrain && !isTest) return labelled.layout;
  const expected = labelled.header ? [labelled.header.join("\t")] : [];
  if (options.unlabelled !== false) expected.push(unlabelled.header.join("\t"));
  if (expected.length === 0) {
    throw new DataError(path, line, "found an unlabelled test header but unlabelled: false was asked for");
  }
  throw new DataError(path, line, headerProblem(expected, first));
}

function testLayout(labels: readonly string[], columns: readonly string[], pair: boolean): Layout {
  return {
    labels: [...labels],
    headerRow: true,
    map(fields) {
      checkColumns(fields, columns);
      const id = fields[0].trim();
      if (id === "") throw new RowProblem("empty index");
      const textA = checkText(pair ? fields[3] : fields[1], pair ? "#1 String" : "sentence");
      return pair ? { id, textA, textB: checkText(fields[4], "#2 String") } : { id, textA };
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// GLUE readers.

const SST2_HEADER = ["sentence", "label"] as const;
const GLUE_TEST_HEADER = ["index", "sentence"] as const;
const COLA_COLUMNS = ["source", "label", "original mark", "sentence"] as const;
const MRPC_HEADER = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"] as const;
const MRPC_TEST_HEADER = ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"] as const;
const BINARY = ["0", "1"] as const;

/**
 * Reads a GLUE SST-2 file: header `sentence\tlabel`, label 0 = negative, 1 = positive (train 67,349 rows, dev 872).
 * The test file (`index\tsentence`) is read unlabelled. Text is kept verbatim (SST-2 has a trailing space).
 */
export function readGlueSst2(path: string, options: GlueReadOptions = {}): Promise<Dataset> {
  const stemName = stem(path);
  const labelled: Layout = {
    labels: [...SST2_LABELS],
    headerRow: true,
    map(fields, index) {
      checkColumns(fields, SST2_HEADER);
      const label = labelIndex(fields[1], BINARY, SST2_LABELS);
      return { id: `${stemName}-${index}`, textA: checkText(fields[0], "sentence"), label };
    },
  };
  return readSource({
    path,
    delimiter: "\t",
    quoted: false,
    layout: (first, line) =>
      pickGlueLayout(path, line, first, options, { header: SST2_HEADER, layout: labelled }, {
        header: GLUE_TEST_HEADER,
        layout: testLayout(SST2_LABELS, GLUE_TEST_HEADER, false),
      }),
  }, options);
}

/**
 * Reads a GLUE CoLA file: no header, 4 columns (source, label, original mark, sentence), label 0 = unacceptable,
 * 1 = acceptable (train 8,551 rows, dev 1,043). The test file (`index\tsentence`) is read unlabelled.
 */
export function readGlueCola(path: string, options: GlueReadOptions = {}): Promise<Dataset> {
  const stemName = stem(path);
  const labelled: Layout = {
    labels: [...COLA_LABELS],
    headerRow: false,
    map(fields, index) {
      checkColumns(fields, COLA_COLUMNS);
      const label = labelIndex(fields[1], BINARY, COLA_LABELS);
      return { id: `${stemName}-${index}`, textA: checkText(fields[3], "sentence"), label };
    },
  };
  return readSource({
    path,
    delimiter: "\t",
    quoted: false,
    layout: (first, line) =>
      pickGlueLayout(path, line, first, options, { layout: labelled }, {
        header: GLUE_TEST_HEADER,
        layout: testLayout(COLA_LABELS, GLUE_TEST_HEADER, false),
      }),
  }, options);
}

/**
 * Reads a GLUE MRPC file (sentence pairs): header `Quality\t#1 ID\t#2 ID\t#1 String\t#2 String` (the files start
 * with a UTF-8 BOM, which is dropped), Quality 0 = not_equivalent, 1 = equivalent (train 3,668, dev 408). Also
 * reads Microsoft's `msr_paraphrase_*.txt` (same layout). The test file (`index\t#1 ID\t...`) is read unlabelled.
 */
export function readGlueMrpc(path: string, options: GlueReadOptions = {}): Promise<Dataset> {
  const stemName = stem(path);
  const labelled: Layout = {
    labels: [...MRPC_LABELS],
    headerRow: true,
    map(fields, index) {
      checkColumns(fields, MRPC_HEADER);
      const label = labelIndex(fields[0], BINARY, MRPC_LABELS);
      const textA = checkText(fields[3], "#1 String");
      return { id: `${stemName}-${index}`, textA, textB: checkText(fields[4], "#2 String"), label };
    },
  };
  return readSource({
    path,
    delimiter: "\t",
    quoted: false,
    layout: (first, line) =>
      pickGlueLayout(path, line, first, options, { header: MRPC_HEADER, layout: labelled }, {
        header: MRPC_TEST_HEADER,
        layout: testLayout(MRPC_LABELS, MRPC_TEST_HEADER, true),
      }),
  }, options);
}

/**
 * Builds GLUE's MRPC `train.tsv`, `dev.tsv` and `test.tsv` in `dir` from Microsoft's `msr_paraphrase_train.txt`,
 * `msr_paraphrase_test.txt` and GLUE's `dev_ids.tsv` (or `mrpc_dev_ids.tsv`), with the same logic and bytes as
 * GLUE's `download_glue_data.py` (`format_mrpc`). Files are written atomically. Returns the row counts.
 */
export async function formatMrpc(dir: string): Promise<{ train: number; dev: number; test: number }> {
  const read = async (name: string) =>
    new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(
      await readBytes(join(dir, name)),
    );
  const splitLines = (text: string) => {
    const lines = text.replace(/\r\n?/g, "\n").split("\n");
    if (lines.at(-1) === "") lines.pop();
    return lines;
  };
  // Python's str.strip(): whitespace including the \x1c-\x1f separators (but not a BOM, which JS trim() removes).
  // deno-lint-ignore no-control-regex
  const pyStrip = (s: string) => s.replace(/^(?:[^\S\ufeff]|[\u001c-\u001f])+|(?:[^\S\ufeff]|[\u001c-\u001f])+$/g, "");
  const fields = (file: string, row: string, k: number) => {
    const f = pyStrip(row).split("\t");
    if (f.length !== 5) {
      throw new DataError(join(dir, file), k + 1, `expected 5 tab-separated columns, found ${f.length}`);
    }
    return f;
  };
  let idsName = "dev_ids.tsv";
  try {
    await Deno.stat(join(dir, idsName));
  } catch {
    idsName = "mrpc_dev_ids.tsv";
  }
  const devIds = new Set(splitLines(await read(idsName)).map((r) => pyStrip(r).split("\t").join("\t")));
  const trainName = "msr_paraphrase_train.txt";
  const testName = "msr_paraphrase_test.txt";
  const [trainHeader, ...trainRows] = splitLines(await read(trainName));
  const [, ...testRows] = splitLines(await read(testName));
  let train = trainHeader + "\n";
  let dev = trainHeader + "\n";
  let nTrain = 0;
  let nDev = 0;
  trainRows.forEach((row, k) => {
    const [label, id1, id2, s1, s2] = fields(trainName, row, k + 1);
    const out = `${label}\t${id1}\t${id2}\t${s1}\t${s2}\n`;
    if (devIds.has(`${id1}\t${id2}`)) {
      dev += out;
      nDev++;
    } else {
      train += out;
      nTrain++;
    }
  });
  let test = "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n";
  testRows.forEach((row, k) => {
    const [, id1, id2, s1, s2] = fields(testName, row, k + 1);
    test += `${k}\t${id1}\t${id2}\t${s1}\t${s2}\n`;
  });
  await writeFileAtomic(join(dir, "train.tsv"), train);
  await writeFileAtomic(join(dir, "dev.tsv"), dev);
  await writeFileAtomic(join(dir, "test.tsv"), test);
  return { train: nTrain, dev: nDev, test: testRows.length };
}

// ---------------------------------------------------------------------------------------------------------------
// Yelp review polarity.

/** Undoes the Yelp/char-CNN backslash escapes: `\n`, `\"`, `\\`, `\t`, `\r`, `\/` and `\uXXXX`. */
export function unescapeYelp(text: string): string {
  return text.replace(/\\(u[0-9a-fA-F]{4}|["\\/nrt])/g, (_m, e: string) => {
    switch (e) {
      case "n":
        return "\n";
      case "t":
        return "\t";
      case "r":
        return "\r";
      case '"':
      case "\\":
      case "/":
        return e;
      default:
        return String.fromCharCode(parseInt(e.slice(1), 16));
    }
  });
}

/**
 * Reads a Yelp review polarity CSV (`yelp_review_polarity_csv/train.csv`, `test.csv`): no header, 2 columns
 * (class, text), class 1 = negative, 2 = positive -> label 0/1. Texts are `"`-quoted with `""` escapes; the
 * dataset's backslash escapes are undone (see {@linkcode YelpReadOptions.unescape}). A first line `0,1` (the header
 * a pandas re-save adds) is skipped.
 */
export function readYelpPolarity(path: string, options: YelpReadOptions = {}): Promise<Dataset> {
  const stemName = stem(path);
  const unescape = options.unescape ?? true;
  const layout = (headerRow: boolean): Layout => ({
    labels: [...YELP_LABELS],
    headerRow,
    map(fields, index) {
      if (fields.length !== 2) {
        throw new RowProblem(`expected 2 comma-separated columns (class, text), found ${fields.length}`);
      }
      const label = labelIndex(fields[0], ["1", "2"], YELP_LABELS);
      const text = checkText(fields[1]);
      return { id: `${stemName}-${index}`, textA: unescape ? unescapeYelp(text) : text, label };
    },
  });
  return readSource({
    path,
    delimiter: ",",
    quoted: true,
    layout: (first) => layout(sameRow(first, ["0", "1"])),
  }, options);
}

// ---------------------------------------------------------------------------------------------------------------
// Generic delimited files and the classic BERT TSV.

function delimiterFor(path: string): string {
  const lower = path.toLowerCase();
  if (lower.endsWith(".csv")) return ",";
  if (lower.endsWith(".tsv") || lower.endsWith(".txt")) return "\t";
  throw new Error(`${path}: cannot tell the delimiter from the extension (.csv or .tsv); pass delimiter`);
}

function sortLabelValues(values: string[]): string[] {
  const numeric = values.every((v) => /^-?\d+$/.test(v));
  return [...values].sort((a, b) => (numeric ? Number(a) - Number(b) : a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Reads any delimited file into a {@linkcode Dataset}: pick the text (and pair, label, id) columns by header name
 * or 0-based index. Rows must all have the same number of columns.
 */
export function readDelimited(path: string, options: DelimitedOptions): Promise<Dataset> {
  const delimiter = options.delimiter ?? delimiterFor(path);
  const header = options.header ?? true;
  const quoted = options.quoted ?? delimiter !== "\t";
  const stemName = stem(path);
  const given = options.labels ? [...options.labels] : undefined;
  const seen: string[] = []; // distinct label values in order of appearance, when labels are derived
  const delimiterName = delimiter === "\t" ? "tab" : delimiter === "," ? "comma" : JSON.stringify(delimiter);

  const layout = (first: string[], line: number): Layout => {
    const names = header ? first.map((h) => h.trim()) : undefined;
    const columns = options.columns ?? first.length;
    const resolve = (column: Column | undefined, role: string): number | undefined => {
      if (column === undefined) return undefined;
      if (typeof column === "number") {
        if (!Number.isInteger(column) || column < 0 || column >= columns) {
          throw new DataError(path, line, `${role} ${column} is out of range: rows have ${columns} columns`);
        }
        return column;
      }
      if (!names) throw new DataError(path, line, `${role} "${column}" is a name but header: false; use an index`);
      const k = names.indexOf(column);
      if (k < 0) {
        throw new DataError(path, line, `no ${role} "${column}" in the header (columns: ${names.join(", ")})`);
      }
      return k;
    };
    const text = resolve(options.textColumn, "text column")!;
    const pair = resolve(options.textPairColumn, "text pair column");
    const labelCol = resolve(options.labelColumn, "label column");
    const idCol = resolve(options.idColumn, "id column");
    const colName = (k: number) => names?.[k] ?? `column ${k}`;
    return {
      labels: given ?? [],
      headerRow: header,
      map(fields, index) {
        if (fields.length !== columns) {
          throw new RowProblem(`expected ${columns} ${delimiterName}-separated columns, found ${fields.length}`);
        }
        const example: Omit<Example, "line"> = {
          id: idCol === undefined ? `${stemName}-${index}` : fields[idCol].trim(),
          textA: checkText(fields[text], `text (${colName(text)})`),
        };
        if (example.id === "") throw new RowProblem(`empty id (${colName(idCol!)})`);
        if (pair !== undefined) example.textB = checkText(fields[pair], `text pair (${colName(pair)})`);
        if (labelCol !== undefined) {
          const v = fields[labelCol].trim();
          if (v === "") throw new RowProblem(`missing label (${colName(labelCol)})`);
          if (given) {
            let k = given.indexOf(v);
            if (k < 0 && /^\d+$/.test(v) && Number(v) < given.length) k = Number(v);
            if (k < 0) {
              throw new RowProblem(
                `unknown label ${show(v)} (expected one of ${given.join(", ")} or an index 0..${given.length - 1})`,
              );
            }
            example.label = k;
          } else {
            let k = seen.indexOf(v);
            if (k < 0) k = seen.push(v) - 1;
            example.label = k;
          }
        }
        return example;
      },
      finish(examples) {
        if (given || labelCol === undefined) return given ?? [];
        const sorted = sortLabelValues(seen);
        const remap = seen.map((v) => sorted.indexOf(v));
        for (const e of examples) if (e.label !== undefined) e.label = remap[e.label];
        return sorted;
      },
    };
  };
  return readSource({ path, delimiter, quoted, layout }, options);
}

/**
 * Reads the classic BERT TSV layout used by Google's `run_classifier.py` ColaProcessor-style guides: no header,
 * 4 tab-separated columns `id, label, alpha, text`, no quoting.
 */
export function readBertTsv(path: string, options: BertTsvReadOptions = {}): Promise<Dataset> {
  return readDelimited(path, {
    ...options,
    delimiter: "\t",
    header: false,
    quoted: false,
    columns: 4,
    idColumn: 0,
    labelColumn: 1,
    textColumn: 3,
  });
}

/** Makes `text` fit one TSV cell: tabs, CR and LF become single spaces (as the classic guide does for `\n`). */
export function normalizeTsvText(text: string): string {
  return text.replace(/\r\n|[\t\r\n]/g, " ");
}

/**
 * Writes `dataset` in the classic BERT TSV layout (`id \t label-index \t a \t text`, no header), atomically.
 * Tabs and newlines in texts and ids become spaces ({@linkcode normalizeTsvText}). Every example needs a label
 * and no text pair (the layout has one text column).
 */
export async function writeBertTsv(path: string, dataset: Dataset): Promise<void> {
  const rows: string[] = [];
  for (const e of dataset.examples) {
    const where = `writeBertTsv ${path}: example ${e.id} (${dataset.source}:${e.line})`;
    if (e.label === undefined) throw new Error(`${where} has no label; the BERT TSV layout needs one`);
    if (e.textB !== undefined) throw new Error(`${where} is a text pair; the BERT TSV layout holds one text`);
    const text = normalizeTsvText(e.textA);
    if (text.trim() === "") throw new Error(`${where} has an empty text`);
    rows.push(`${normalizeTsvText(e.id)}\t${e.label}\ta\t${text}\n`);
  }
  await writeFileAtomic(path, rows.join(""));
}

/**
 * Converts a Yelp-polarity style CSV (class 1/2, text) into the classic BERT TSV layout, like the classic
 * "BERT for binary text classification" guide on Yelp: ids 0..n-1, label 0/1 (negative/positive), alpha `a`,
 * newlines in the text replaced by spaces. Returns the dataset as written.
 */
export async function csvToBertTsv(csvPath: string, tsvPath: string, options: YelpReadOptions = {}): Promise<Dataset> {
  const dataset = await readYelpPolarity(csvPath, options);
  const written: Dataset = {
    ...dataset,
    examples: dataset.examples.map((e, i) => ({ ...e, id: String(i), textA: normalizeTsvText(e.textA) })),
  };
  await writeBertTsv(tsvPath, written);
  return written;
}
