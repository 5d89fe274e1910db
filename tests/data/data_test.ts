/**
 * Tests for lib/data/datasets.ts and lib/data/tasks.ts: the real GLUE / Yelp files in ../shared (checked against an independent
 * plain line split and the official counts), hand-made fixtures for every kind of bad row, and round trips.
 */
import {
  csvToBertTsv,
  DataError,
  type Dataset,
  type Example,
  formatMrpc,
  normalizeTsvText,
  readBertTsv,
  readDelimited,
  readGlueCola,
  readGlueMrpc,
  readGlueSst2,
  readYelpPolarity,
  writeBertTsv,
  YELP_LABELS,
} from "../../lib/data/datasets.ts";
import { getTask, resolveTaskData, TASKS } from "../../lib/data/tasks.ts";
import { assert, assertEquals, assertRejects, HAVE_SHARED, SHARED } from "../shared.ts";

function assertStrictEquals(actual: unknown, expected: unknown, message?: string): void {
  if (!Object.is(actual, expected)) {
    throw new Error(
      `${message ? message + ": " : ""}expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`,
    );
  }
}

function assertMatch(actual: string, pattern: RegExp): void {
  if (!pattern.test(actual)) throw new Error(`${JSON.stringify(actual)} does not match ${pattern}`);
}

const GLUE = `${SHARED}/data/glue`;
const YELP = `${SHARED}/data/yelp-polarity`;
if (!HAVE_SHARED) console.warn(`data_test: ${SHARED} is absent, the tests on real GLUE/Yelp files are skipped`);

/** Independent reference: the file's data lines by a plain split (BOM dropped, final empty line removed). */
async function plainLines(path: string): Promise<string[]> {
  const text = new TextDecoder().decode(await Deno.readFile(path)); // default decoder drops a leading BOM
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines;
}

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "data_test_" });
}

async function writeFixture(dir: string, name: string, content: string | Uint8Array): Promise<string> {
  const path = `${dir}/${name}`;
  if (typeof content === "string") await Deno.writeTextFile(path, content);
  else await Deno.writeFile(path, content);
  return path;
}

/** Runs `fn` with console.warn captured; returns what it printed. */
async function captureWarn<T>(fn: () => Promise<T>): Promise<{ value: T; warned: string[] }> {
  const warned: string[] = [];
  const original = console.warn;
  console.warn = (...args: unknown[]) => warned.push(args.map(String).join(" "));
  try {
    return { value: await fn(), warned };
  } finally {
    console.warn = original;
  }
}

async function expectDataError(promise: Promise<unknown>, file: string, line: number, problem: RegExp): Promise<void> {
  const err = await assertRejects(() => promise, DataError);
  assertStrictEquals(err.file, file);
  assertStrictEquals(err.line, line, `line of: ${err.message}`);
  assertMatch(err.problem, problem);
  assertStrictEquals(err.message, `${file}:${line}: ${err.problem}`);
}

function counts(ds: Dataset): Record<string, number> {
  const c: Record<string, number> = {};
  for (const e of ds.examples) {
    const k = e.label === undefined ? "none" : ds.labels[e.label];
    c[k] = (c[k] ?? 0) + 1;
  }
  return c;
}

// ------------------------------------------------------------------------------------------------ real GLUE files

interface GlueCase {
  file: string;
  read: (path: string) => Promise<Dataset>;
  rows: number;
  header: boolean;
  /** Column indexes in the raw line: textA, textB, label. */
  a: number;
  b?: number;
  label: number;
  /** Official label counts (GLUE / ../shared/data/glue/PROVENANCE.md). */
  counts: Record<string, number>;
}

const GLUE_CASES: GlueCase[] = [
  {
    file: "SST-2/train.tsv",
    read: readGlueSst2,
    rows: 67349,
    header: true,
    a: 0,
    label: 1,
    counts: { negative: 29780, positive: 37569 },
  },
  {
    file: "SST-2/dev.tsv",
    read: readGlueSst2,
    rows: 872,
    header: true,
    a: 0,
    label: 1,
    counts: { negative: 428, positive: 444 },
  },
  {
    file: "CoLA/train.tsv",
    read: readGlueCola,
    rows: 8551,
    header: false,
    a: 3,
    label: 1,
    counts: { unacceptable: 2528, acceptable: 6023 },
  },
  {
    file: "CoLA/dev.tsv",
    read: readGlueCola,
    rows: 1043,
    header: false,
    a: 3,
    label: 1,
    counts: { unacceptable: 322, acceptable: 721 },
  },
  {
    file: "MRPC/train.tsv",
    read: readGlueMrpc,
    rows: 3668,
    header: true,
    a: 3,
    b: 4,
    label: 0,
    counts: { not_equivalent: 1194, equivalent: 2474 },
  },
  {
    file: "MRPC/dev.tsv",
    read: readGlueMrpc,
    rows: 408,
    header: true,
    a: 3,
    b: 4,
    label: 0,
    counts: { not_equivalent: 129, equivalent: 279 },
  },
];

for (const c of GLUE_CASES) {
  Deno.test({
    name: `GLUE ${c.file}: official row count, label counts, first/last rows match a plain line split`,
    ignore: !HAVE_SHARED,
    fn: async () => {
      const path = `${GLUE}/${c.file}`;
      const ds = await c.read(path);
      assertEquals(ds.skipped, []);
      assertStrictEquals(ds.source, path);
      assertStrictEquals(ds.examples.length, c.rows);
      assertEquals(counts(ds), c.counts);

      const lines = await plainLines(path);
      const data = c.header ? lines.slice(1) : lines;
      assertStrictEquals(data.length, c.rows);
      const offset = c.header ? 2 : 1; // 1-based line of the first data row
      for (const k of [0, 1, c.rows - 1]) {
        const fields = data[k].split("\t");
        const e = ds.examples[k];
        assertStrictEquals(e.textA, fields[c.a]);
        if (c.b !== undefined) assertStrictEquals(e.textB, fields[c.b]);
        else assertStrictEquals(e.textB, undefined);
        assertStrictEquals(e.label, Number(fields[c.label]));
        assertStrictEquals(e.line, k + offset);
      }
      assertEquals(new Set(ds.examples.map((e) => e.id)).size, c.rows, "ids are unique");
    },
  });
}

Deno.test({
  name: "GLUE: literal quotes are text (TSVs are read unquoted)",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const mrpc = await readGlueMrpc(`${GLUE}/MRPC/dev.tsv`);
    // The first MRPC dev pair's second sentence starts with a lone quote.
    assertStrictEquals(
      mrpc.examples[0].textB,
      '" The foodservice pie business does not fit our long-term growth strategy .',
    );
    // Every raw line holding a quote (769 in MRPC train, 2 in CoLA train) is one example with that quote.
    for (
      const [read, file, n] of [[readGlueMrpc, "MRPC/train.tsv", 769], [readGlueCola, "CoLA/train.tsv", 2]] as const
    ) {
      const ds = await read(`${GLUE}/${file}`);
      const withQuote = ds.examples.filter((e) => `${e.textA}${e.textB ?? ""}`.includes('"'));
      const rawWithQuote = (await plainLines(`${GLUE}/${file}`)).filter((l) => l.includes('"'));
      assertStrictEquals(rawWithQuote.length, n, file);
      assertStrictEquals(withQuote.length, n, file);
    }
  },
});

Deno.test({
  name: "GLUE test files are read unlabelled, with the index column as id",
  ignore: !HAVE_SHARED,
  fn: async () => {
    for (
      const [read, file, rows, pair] of [
        [readGlueSst2, "SST-2/test.tsv", 1821, false],
        [readGlueCola, "CoLA/test.tsv", 1063, false],
        [readGlueMrpc, "MRPC/test.tsv", 1725, true],
      ] as const
    ) {
      const path = `${GLUE}/${file}`;
      const ds = await read(path);
      assertStrictEquals(ds.examples.length, rows, file);
      assert(ds.examples.every((e) => e.label === undefined), file);
      const lines = await plainLines(path);
      const last = lines.at(-1)!.split("\t");
      const e = ds.examples.at(-1)!;
      assertStrictEquals(e.id, last[0]);
      assertStrictEquals(e.textA, pair ? last[3] : last[1]);
      assertStrictEquals(e.textB, pair ? last[4] : undefined);
      assertStrictEquals(e.line, lines.length);
      // Explicit unlabelled: true agrees; unlabelled: false refuses the test header.
      assertStrictEquals((await read(path, { unlabelled: true })).examples.length, rows);
      await expectDataError(read(path, { unlabelled: false }), path, 1, /expected the header|unlabelled: false/);
    }
    const train = `${GLUE}/SST-2/dev.tsv`;
    await expectDataError(
      readGlueSst2(train, { unlabelled: true }),
      train,
      1,
      /expected the header "index\\tsentence"/,
    );
  },
});

Deno.test({
  name: "GLUE readers: limit stops early",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const ds = await readGlueSst2(`${GLUE}/SST-2/train.tsv`, { limit: 5 });
    assertStrictEquals(ds.examples.length, 5);
    assertEquals(ds.examples.map((e) => e.line), [2, 3, 4, 5, 6]);
    assertStrictEquals((await readGlueCola(`${GLUE}/CoLA/dev.tsv`, { limit: 0 })).examples.length, 0);
  },
});

Deno.test({
  name: "formatMrpc rebuilds GLUE's MRPC train/dev/test.tsv byte for byte from Microsoft's files",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const dir = await tempDir();
    try {
      for (const f of ["msr_paraphrase_train.txt", "msr_paraphrase_test.txt", "dev_ids.tsv"]) {
        await Deno.writeFile(`${dir}/${f}`, await Deno.readFile(`${GLUE}/MRPC/${f}`));
      }
      assertEquals(await formatMrpc(dir), { train: 3668, dev: 408, test: 1725 });
      for (const f of ["train.tsv", "dev.tsv", "test.tsv"]) {
        assertEquals(await Deno.readFile(`${dir}/${f}`), await Deno.readFile(`${GLUE}/MRPC/${f}`), f);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

// ------------------------------------------------------------------------------------------------ real Yelp files

Deno.test({
  name: 'Yelp head200_train.csv: 200 rows, labels, quoted text with comma, "" and escapes read correctly',
  ignore: !HAVE_SHARED,
  fn: async () => {
    const path = `${YELP}/head200_train.csv`;
    const ds = await readYelpPolarity(path);
    assertEquals(ds.labels, ["negative", "positive"]);
    assertStrictEquals(ds.examples.length, 200);
    // Class 1: 131, class 2: 69 (PROVENANCE.md), recounted here from the raw lines (no newlines inside fields).
    const lines = await plainLines(path);
    assertStrictEquals(lines[0].trim(), "0,1"); // the pandas header line, skipped by the reader
    const raw = lines.slice(1);
    assertEquals(counts(ds), { negative: 131, positive: 69 });
    assertStrictEquals(raw.filter((l) => l.startsWith("1,")).length, 131);
    ds.examples.forEach((e, i) => {
      assertStrictEquals(e.label, Number(raw[i][0]) - 1);
      assertStrictEquals(e.line, i + 2);
    });

    // File line 6: a review with commas, "" escapes (written \"" in the file) and \n escapes.
    const line6 = lines[5].replace(/\r$/, "");
    assert(line6.startsWith('2,"') && line6.endsWith('"'));
    const unquoted = line6.slice(3, -1).replaceAll('""', '"');
    const expected = unquoted.replaceAll('\\"', '"').replaceAll("\\n", "\n");
    const e = ds.examples[4];
    assertStrictEquals(e.line, 6);
    assertStrictEquals(e.label, 1);
    assertStrictEquals(e.textA, expected);
    assert(e.textA.includes("Wednesday night, $0.75") && e.textA.includes('The "Wet Cajun" are'));
    assert(e.textA.includes("wings!\n\nThe dining area"));

    // \uXXXX escapes become the characters; unescape: false keeps the file's text.
    assert(ds.examples.some((x) => x.textA.includes("K\u00f6lsch")));
    const rawDs = await readYelpPolarity(path, { unescape: false });
    assertStrictEquals(rawDs.examples[4].textA, unquoted);

    const test = await readYelpPolarity(`${YELP}/head20_test.csv`);
    assertEquals(counts(test), { negative: 12, positive: 8 });
    assert(test.examples[0].textA.startsWith("Contrary to other reviews, I have zero complaints"));
  },
});

// ------------------------------------------------------------------------------------------------ bad rows (fixtures)

const SST_BAD_ROWS: { name: string; row: string | Uint8Array; problem: RegExp }[] = [
  { name: "wrong column count", row: "too\tmany\tcolumns", problem: /expected 2 tab-separated columns.*found 3/ },
  { name: "one column", row: "no tab at all", problem: /expected 2 tab-separated columns.*found 1/ },
  {
    name: "unknown label",
    row: "weird label\t7",
    problem: /unknown label "7" \(expected one of 0 = negative, 1 = positive\)/,
  },
  { name: "missing label", row: "no label here\t", problem: /missing label/ },
  { name: "empty text", row: "  \t0", problem: /empty sentence/ },
  {
    name: "invalid UTF-8",
    row: new Uint8Array([...new TextEncoder().encode("bad "), 0xff, ...new TextEncoder().encode(" byte\t1")]),
    problem: /invalid UTF-8 \(byte 0xFF at column 5/,
  },
];

function concatBytes(parts: (string | Uint8Array)[]): Uint8Array {
  const chunks = parts.map((p) => (typeof p === "string" ? new TextEncoder().encode(p) : p));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

Deno.test("bad rows (SST-2 layout): each kind throws DataError with file, line and problem", async () => {
  const dir = await tempDir();
  try {
    for (const bad of SST_BAD_ROWS) {
      const path = await writeFixture(
        dir,
        "bad.tsv",
        concatBytes(["sentence\tlabel\n", "a fine film\t1\n", bad.row, "\n", "another one\t0\n"]),
      );
      await expectDataError(readGlueSst2(path), path, 3, bad.problem);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad rows (SST-2 layout): skipBadRows reports the exact lines and one summary line", async () => {
  const dir = await tempDir();
  try {
    const rows: (string | Uint8Array)[] = ["sentence\tlabel\n", "good movie\t1\n"]; // lines 1, 2
    const badLines: number[] = [];
    for (const bad of SST_BAD_ROWS) {
      badLines.push(rows.length + 1);
      rows.push(bad.row, "\n");
      rows.push(`"quoted" text stays after line ${rows.length}\t0\n`);
    }
    const path = await writeFixture(dir, "mixed.tsv", concatBytes(rows));
    // Line numbers: header 1, good 2, then bad/good alternating from line 3.
    const expectedBad = SST_BAD_ROWS.map((_, i) => 3 + 2 * i);
    const { value: ds, warned } = await captureWarn(() => readGlueSst2(path, { skipBadRows: true }));
    assertEquals(ds.skipped.map((s) => s.line), expectedBad);
    ds.skipped.forEach((s, i) => assertMatch(s.problem, SST_BAD_ROWS[i].problem));
    assertEquals(ds.examples.map((e) => e.line), [2, ...expectedBad.map((l) => l + 1)]);
    assert(ds.examples.slice(1).every((e) => e.textA.startsWith('"quoted" text stays')));
    assertEquals(warned, [`skipped ${expectedBad.length} bad rows in ${path}: lines ${expectedBad.join(", ")}`]);
    // quiet: no summary line.
    const quiet = await captureWarn(() => readGlueSst2(path, { skipBadRows: true, quiet: true }));
    assertEquals(quiet.warned, []);
    // Without skipBadRows the first bad row stops the read.
    await expectDataError(readGlueSst2(path), path, 3, SST_BAD_ROWS[0].problem);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad header is never skippable; empty and missing files give clear errors", async () => {
  const dir = await tempDir();
  try {
    const path = await writeFixture(dir, "hdr.tsv", "text\tlabel\nfine\t1\n");
    await expectDataError(
      readGlueSst2(path, { skipBadRows: true }),
      path,
      1,
      /expected the header "sentence\\tlabel" or "index\\tsentence", found "text\\tlabel"/,
    );
    const mrpc = await writeFixture(dir, "mrpc.tsv", "Quality\t#1 ID\n1\t2\n");
    await expectDataError(readGlueMrpc(mrpc), mrpc, 1, /expected the header "Quality\\t#1 ID/);
    const empty = await writeFixture(dir, "empty.tsv", "\n\n");
    await expectDataError(readGlueSst2(empty), empty, 1, /no rows/);
    await assertRejects(() => readGlueSst2(`${dir}/nope.tsv`), Error, `${dir}/nope.tsv: file not found`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("blank lines are skipped and CRLF files keep correct lines and labels", async () => {
  const dir = await tempDir();
  try {
    const path = await writeFixture(dir, "crlf.tsv", "sentence\tlabel\r\none\t1\r\n\r\ntwo\t0\r\nthree\t7\r\n");
    const ds = await readGlueSst2(path, { skipBadRows: true, quiet: true });
    assertEquals(ds.examples.map((e) => [e.textA, e.label, e.line]), [["one", 1, 2], ["two", 0, 4]]);
    assertEquals(ds.skipped.map((s) => s.line), [5]);
    assertMatch(ds.skipped[0].problem, /unknown label "7"/);
    const cola = await writeFixture(dir, "cola.tsv", "src\t1\t\tA sentence.\n\nsrc\t0\t*\tSentence a.\nsrc\t1\n");
    await expectDataError(readGlueCola(cola), cola, 4, /expected 4 tab-separated columns .* found 2/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A Yelp-style CSV fixture with multi-line quoted fields; the comment is the 1-based line. */
const CSV_FIXTURE = concatBytes([
  '1,"first review, with a comma"\n', // 1
  '2,"a review that spans\n', // 2
  'three lines with ""quotes"" inside\n', // 3
  'and ends here"\n', // 4
  '3,"bad class"\n', // 5   unknown label
  '2,"another\n', // 6
  'multi-line one"\n', // 7
  ',"no class"\n', // 8   missing label
  '1,"  "\n', // 9   empty text
  '2,"a bad byte on the second line\n', // 10
  "here ",
  new Uint8Array([0xc3, 0x28]), // invalid 2-byte sequence
  ' it is"\n', // 11  invalid UTF-8 (reported at the bad byte's line)
  '1,"ok ""quoted"" text",extra\n', // 12  wrong column count
  '2,"bad "quotes" here"\n', // 13  malformed quotes
  '1,"fine again"\n', // 14
  '2,"never closed\n', // 15  unterminated
  "and still open\n", // 16
]);

Deno.test("bad rows (CSV): line numbers stay right after multi-line quoted fields", async () => {
  const dir = await tempDir();
  try {
    const path = await writeFixture(dir, "reviews.csv", CSV_FIXTURE);
    const { value: ds, warned } = await captureWarn(() => readYelpPolarity(path, { skipBadRows: true }));
    assertEquals(ds.examples.map((e) => e.line), [1, 2, 6, 14]);
    assertStrictEquals(ds.examples[1].textA, 'a review that spans\nthree lines with "quotes" inside\nand ends here');
    assertStrictEquals(ds.examples[2].textA, "another\nmulti-line one");
    // [row start line, reported line, problem]; invalid UTF-8 is reported at the bad byte's line.
    const expected: [number, number, RegExp][] = [
      [5, 5, /unknown label "3" \(expected one of 1 = negative, 2 = positive\)/],
      [8, 8, /missing label/],
      [9, 9, /empty text/],
      [10, 11, /invalid UTF-8 \(byte 0xC3 at column 6/],
      [12, 12, /expected 2 comma-separated columns \(class, text\), found 3/],
      [13, 13, /malformed quotes/],
      [15, 15, /unterminated quoted field/],
    ];
    assertEquals(ds.skipped.map((s) => s.line), expected.map(([, l]) => l));
    ds.skipped.forEach((s, i) => assertMatch(s.problem, expected[i][2]));
    assertEquals(warned, [`skipped 7 bad rows in ${path}: lines 5, 8, 9, 11, 12, 13, 15`]);

    // Each bad row alone, right after the multi-line field of lines 2-4, throws with the right line.
    for (const [start, reported, problem] of expected) {
      const only = await writeFixture(dir, "one.csv", sliceLines(CSV_FIXTURE, 1, 4, start, nextRowLine(start)));
      await expectDataError(readYelpPolarity(only), only, 5 + reported - start, problem);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The line after the bad row starting at `line` in CSV_FIXTURE (bad rows 10-11 and 15-16 span two lines). */
function nextRowLine(line: number): number {
  return line === 10 || line === 15 ? line + 2 : line + 1;
}

/** Lines [a, b] and [c, d) of `bytes` (1-based), joined. */
function sliceLines(bytes: Uint8Array, a: number, b: number, c: number, d: number): Uint8Array {
  const starts = [0];
  bytes.forEach((x, i) => x === 0x0a && starts.push(i + 1));
  return concatBytes([bytes.slice(starts[a - 1], starts[b]), bytes.slice(starts[c - 1], starts[d - 1])]);
}

// ------------------------------------------------------------------------------------------------ readDelimited

Deno.test("readDelimited: columns by name or index, derived or given labels, pairs, ids", async () => {
  const dir = await tempDir();
  try {
    const csv = await writeFixture(
      dir,
      "pairs.csv",
      'id,first,second,gold\nq1,"Is it, really?",Yes it is,entail\nq2,A,B,neutral\nq3,C,"D\nE",entail\n',
    );
    const ds = await readDelimited(csv, { textColumn: "first", textPairColumn: 2, labelColumn: "gold", idColumn: 0 });
    assertEquals(ds.labels, ["entail", "neutral"]);
    assertEquals(ds.examples.map((e) => [e.id, e.textA, e.textB, e.label, e.line]), [
      ["q1", "Is it, really?", "Yes it is", 0, 2],
      ["q2", "A", "B", 1, 3],
      ["q3", "C", "D\nE", 0, 4],
    ]);
    // Numeric labels derived in numeric order; given labels accept names or indexes.
    const tsv = await writeFixture(dir, "num.tsv", "t\ty\nx\t10\ny\t9\nz\t10\n");
    const num = await readDelimited(tsv, { textColumn: "t", labelColumn: "y" });
    assertEquals(num.labels, ["9", "10"]);
    assertEquals(num.examples.map((e) => e.label), [1, 0, 1]);
    const named = await writeFixture(dir, "named.tsv", "t\ty\nx\tpositive\ny\t0\n");
    const given = await readDelimited(named, { textColumn: 0, labelColumn: 1, labels: ["negative", "positive"] });
    assertEquals(given.examples.map((e) => e.label), [1, 0]);
    await expectDataError(
      readDelimited(named, { textColumn: 0, labelColumn: 1, labels: ["a"] }),
      named,
      2,
      /unknown label "positive" \(expected one of a or an index 0..0\)/,
    );
    // Unknown column name, name without header, index out of range.
    await expectDataError(
      readDelimited(csv, { textColumn: "text" }),
      csv,
      1,
      /no text column "text".*id, first, second, gold/,
    );
    await expectDataError(readDelimited(csv, { textColumn: "first", header: false }), csv, 1, /header: false/);
    await expectDataError(readDelimited(csv, { textColumn: 9 }), csv, 1, /out of range: rows have 4 columns/);
    await assertRejects(() => readDelimited(`${dir}/x.json`, { textColumn: 0 }), Error, "pass delimiter");
    // Unlabelled when no label column.
    const plain = await readDelimited(csv, { textColumn: 1 });
    assertEquals(plain.labels, []);
    assert(plain.examples.every((e) => e.label === undefined));
    assertEquals(plain.examples.map((e) => e.id), ["pairs-0", "pairs-1", "pairs-2"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ------------------------------------------------------------------------------------------------ round trips

Deno.test("writeBertTsv -> readBertTsv round trip keeps ids, texts and labels", async () => {
  const dir = await tempDir();
  try {
    const examples: Example[] = [
      { id: "a1", textA: 'He said "fine", then left.', label: 1, line: 7 },
      { id: "a2", textA: "Ünïcödé — ok", label: 0, line: 8 },
      { id: "a3", textA: "two\nlines\tand a tab", label: 1, line: 9 },
    ];
    const source: Dataset = { examples, labels: ["negative", "positive"], source: "mem", skipped: [] };
    const path = `${dir}/out/train.tsv`;
    await writeBertTsv(path, source);
    const text = await Deno.readTextFile(path);
    assertStrictEquals(text.split("\n")[0], 'a1\t1\ta\tHe said "fine", then left.');
    const back = await readBertTsv(path, { labels: source.labels });
    assertEquals(back.labels, source.labels);
    assertEquals(
      back.examples,
      examples.map((e, i) => ({ ...e, textA: normalizeTsvText(e.textA), line: i + 1 })),
    );
    assertStrictEquals(back.examples[2].textA, "two lines and a tab");
    assertEquals([...Deno.readDirSync(`${dir}/out`)].map((e) => e.name), ["train.tsv"]); // no temp files left
    // Without labels, the names are the label column's values.
    assertEquals((await readBertTsv(path)).labels, ["0", "1"]);
    // The layout cannot hold unlabelled examples or pairs.
    const unlabelled = { ...source, examples: [{ id: "u", textA: "x", line: 1 }] };
    await assertRejects(() => writeBertTsv(path, unlabelled), Error, "has no label");
    const pair = { ...source, examples: [{ id: "p", textA: "x", textB: "y", label: 0, line: 1 }] };
    await assertRejects(() => writeBertTsv(path, pair), Error, "text pair");
    // readBertTsv rejects rows that are not 4 columns.
    const bad = await writeFixture(dir, "bad.tsv", "1\t0\ta\tok\n2\t1\tno alpha\n");
    await expectDataError(readBertTsv(bad), bad, 2, /expected 4 tab-separated columns, found 3/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "csvToBertTsv of the Yelp sample gives the same texts and labels as readYelpPolarity",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const dir = await tempDir();
    try {
      const csv = `${YELP}/head200_train.csv`;
      const tsv = `${dir}/train.tsv`;
      const written = await csvToBertTsv(csv, tsv);
      const yelp = await readYelpPolarity(csv);
      const bert = await readBertTsv(tsv, { labels: [...YELP_LABELS] });
      assertStrictEquals(written.examples.length, 200);
      assertStrictEquals(bert.examples.length, 200);
      assertEquals(bert.examples.map((e) => e.id), yelp.examples.map((_, i) => String(i)));
      assertEquals(bert.examples.map((e) => e.label), yelp.examples.map((e) => e.label));
      assertEquals(bert.examples.map((e) => e.textA), yelp.examples.map((e) => normalizeTsvText(e.textA)));
      // Independent look at the file: 200 lines, 4 columns, alpha "a", label 0/1 as in the guide.
      const lines = await plainLines(tsv);
      assertStrictEquals(lines.length, 200);
      for (const l of lines) {
        const f = l.split("\t");
        assertStrictEquals(f.length, 4);
        assertStrictEquals(f[2], "a");
        assert(f[1] === "0" || f[1] === "1");
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

// ------------------------------------------------------------------------------------------------ tasks + sample data

Deno.test("tasks: registry, metrics and getTask errors", () => {
  assertEquals(Object.keys(TASKS).sort(), ["cola", "mrpc", "sample", "sst2", "yelp"]);
  assertEquals(
    Object.fromEntries(Object.values(TASKS).map((t) => [t.name, t.metric])),
    { sample: "accuracy", sst2: "accuracy", cola: "mcc", mrpc: "accuracy_f1", yelp: "accuracy" },
  );
  assertStrictEquals(getTask("mrpc").pair, true);
  assertEquals(getTask("cola").labels, ["unacceptable", "acceptable"]);
  for (const [name, t] of Object.entries(TASKS)) assertStrictEquals(t.name, name);
  let message = "";
  try {
    getTask("squad2");
  } catch (err) {
    message = (err as Error).message;
  }
  assertStrictEquals(message, 'unknown task "squad2": valid tasks are sample, sst2, cola, mrpc, yelp');
  let proto = "";
  try {
    getTask("toString");
  } catch (err) {
    proto = (err as Error).message;
  }
  assertMatch(proto, /unknown task "toString"/); // no prototype lookups
});

Deno.test("tasks: the embedded sample is balanced, unique and in SST-2 layout", async () => {
  const data = await resolveTaskData("sample");
  assertStrictEquals(data.subset, false);
  assertMatch(data.train, /data\/sample\/train\.tsv$/);
  const task = getTask("sample");
  const train = await task.read(data.train);
  const dev = await task.read(data.dev);
  assertEquals(counts(train), { negative: 200, positive: 200 });
  assertEquals(counts(dev), { negative: 50, positive: 50 });
  const seen = new Set(train.examples.map((e) => e.textA.toLowerCase()));
  assertStrictEquals(seen.size, 400, "train sentences are unique");
  assert(dev.examples.every((e) => !seen.has(e.textA.toLowerCase())), "no dev sentence is in train");
  assert(train.examples.some((e) => /\bnot bad\b/i.test(e.textA) && e.label === 1), "has a 'not bad' positive");
  assert(train.examples.some((e) => /\bnot good\b/i.test(e.textA) && e.label === 0), "has a 'not good' negative");
});

Deno.test("tasks: resolveTaskData names the missing file and the README section", async () => {
  const dir = await tempDir();
  try {
    const err = await assertRejects(() => resolveTaskData("sst2", dir), Error);
    assertStrictEquals(
      err.message,
      `task "sst2": missing ${dir}/train.tsv. See data/README.md, section "GLUE: SST-2, CoLA and MRPC", for how to fetch it.`,
    );
    await Deno.writeTextFile(`${dir}/train.csv`, '1,"x"\n');
    await assertRejects(() => resolveTaskData("yelp", dir), Error, `missing ${dir}/test.csv`);
    // The README really has those sections.
    const readme = await Deno.readTextFile(new URL("../../data/README.md", import.meta.url));
    for (const t of Object.values(TASKS)) assert(readme.includes(`## ${t.readmeSection}\n`), t.readmeSection);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "tasks: resolveTaskData finds the shared GLUE copy and the Yelp subset",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const sst2 = await resolveTaskData("sst2");
    assertMatch(sst2.train, /SST-2\/train\.tsv$/);
    assertMatch(sst2.test ?? "", /SST-2\/test\.tsv$/);
    assertStrictEquals((await getTask("sst2").read(sst2.dev)).examples.length, 872);
    const yelp = await resolveTaskData("yelp");
    if (yelp.subset) {
      assertMatch(yelp.train, /head200_train\.csv$/);
      assertStrictEquals((await getTask("yelp").read(yelp.train)).examples.length, 200);
    } else {
      assertMatch(yelp.train, /train\.csv$/);
    }
  },
});
