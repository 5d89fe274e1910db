import { assert, assertEquals, assertRejects, assertThrows, HAVE_SHARED, SHARED, withTemp } from "../shared.ts";
import type { Dataset, Example } from "../../lib/data/datasets.ts";
import {
  checkFeaturesMatch,
  convertExample,
  convertExamples,
  lengthHistogram,
  loadFeatures,
  percentile,
  progressStep,
  saveFeatures,
  summarizeFeatures,
  truncateSeqPair,
} from "../../lib/data/features.ts";
import { readSafetensors, writeSafetensors } from "../../lib/io/safetensors.ts";
import { FullTokenizer } from "../../lib/text/tokenizer.ts";
import { Vocab } from "../../lib/text/vocab.ts";

// id:            0       1       2       3       4        5      6      7      8     9      10     11     12
const TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "dog", "##s", "run"];
const tok = new FullTokenizer(Vocab.fromTokens(TOKENS));

function ex(textA: string, textB?: string, label?: number, line = 2): Example {
  return { id: `ex${line}`, textA, textB, label, line };
}

Deno.test("features: single sentence, hand-worked ids, types, mask and padding", () => {
  const f = convertExample(ex("The cat SAT"), tok, 8);
  assertEquals(f.tokens, ["[CLS]", "the", "cat", "sat", "[SEP]"]);
  assertEquals(f.inputIds, [2, 5, 6, 7, 3, 0, 0, 0]);
  assertEquals(f.tokenTypeIds, [0, 0, 0, 0, 0, 0, 0, 0]);
  assertEquals(f.attentionMask, [1, 1, 1, 1, 1, 0, 0, 0]);
  assertEquals(f.length, 5);
  assertEquals(f.truncated, false);
  // unknown words become [UNK]; an exact fit is not truncated
  const g = convertExample(ex("the zebra sat"), tok, 5);
  assertEquals(g.inputIds, [2, 5, 1, 7, 3]);
  assertEquals(g.truncated, false);
});

Deno.test("features: sentence pair, segment b and its [SEP] get type 1", () => {
  const f = convertExample(ex("the cat", "dogs run"), tok, 10);
  assertEquals(f.tokens, ["[CLS]", "the", "cat", "[SEP]", "dog", "##s", "run", "[SEP]"]);
  assertEquals(f.inputIds, [2, 5, 6, 3, 10, 11, 12, 3, 0, 0]);
  assertEquals(f.tokenTypeIds, [0, 0, 0, 0, 1, 1, 1, 1, 0, 0]);
  assertEquals(f.attentionMask, [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
  assertEquals(f.length, 8);
  // an empty second text is still a pair: [CLS] a [SEP] [SEP]
  assertEquals(convertExample(ex("cat", ""), tok, 5).inputIds, [2, 6, 3, 3, 0]);
  assertEquals(convertExample(ex("cat", ""), tok, 5).tokenTypeIds, [0, 0, 0, 1, 0]);
});

Deno.test("features: pair truncation is longest-first with ties popping from b", () => {
  // a = the cat sat on the mat (6), b = dog ##s run (3), room for 8 - 3 = 5:
  // 9: a longer → a=5; 8: a=4; 7: a longer → a=3; 6: tie 3/3 → b=2; 5 fits.
  const f = convertExample(ex("the cat sat on the mat", "dogs run"), tok, 8);
  assertEquals(f.tokens, ["[CLS]", "the", "cat", "sat", "[SEP]", "dog", "##s", "[SEP]"]);
  assertEquals(f.inputIds, [2, 5, 6, 7, 3, 10, 11, 3]);
  assertEquals(f.tokenTypeIds, [0, 0, 0, 0, 0, 1, 1, 1]);
  assertEquals(f.attentionMask, [1, 1, 1, 1, 1, 1, 1, 1]);
  assertEquals(f.truncated, true);
  assertEquals(f.length, 12);
  // tie at the start: a = the cat, b = the dog, room 3 → b loses its last token
  const t = convertExample(ex("the cat", "the dog"), tok, 6);
  assertEquals(t.tokens, ["[CLS]", "the", "cat", "[SEP]", "the", "[SEP]"]);
  // b longer: b is cut first, down to a's length, then alternately b, a
  const a = ["a1", "a2"], b = ["b1", "b2", "b3", "b4", "b5"];
  truncateSeqPair(a, b, 3);
  assertEquals([a, b], [["a1", "a2"], ["b1"]]);
  const c = ["a1", "a2", "a3"], d = ["b1", "b2", "b3"];
  truncateSeqPair(c, d, 3);
  assertEquals([c, d], [["a1", "a2"], ["b1"]]);
});

Deno.test("features: single truncation keeps the first maxSeqLength - 2 tokens", () => {
  const f = convertExample(ex("the cat sat on the mat"), tok, 5);
  assertEquals(f.tokens, ["[CLS]", "the", "cat", "sat", "[SEP]"]);
  assertEquals(f.inputIds, [2, 5, 6, 7, 3]);
  assertEquals(f.truncated, true);
  assertEquals(f.length, 8);
});

Deno.test("features: padding uses the tokenizer's [PAD] id, whatever it is", () => {
  const t2 = new FullTokenizer(Vocab.fromTokens(["[UNK]", "[CLS]", "[SEP]", "[PAD]", "cat"]));
  assertEquals(convertExample(ex("cat"), t2, 5).inputIds, [1, 4, 2, 3, 3]);
  const noCls = new FullTokenizer(Vocab.fromTokens(["[UNK]", "[SEP]", "[PAD]", "cat"]));
  assertThrows(() => convertExample(ex("cat"), noCls, 5), Error, "no [CLS] token");
});

Deno.test("features: too small max length is a clear error", () => {
  assertThrows(() => convertExample(ex("cat"), tok, 1), Error, "integer >= 2");
  assertThrows(() => convertExample(ex("cat", "dog"), tok, 2), Error, "integer >= 3");
});

function dataset(examples: Example[], labels = ["neg", "pos"]): Dataset {
  return { examples, labels, source: "mem.tsv", skipped: [] };
}

const DS = dataset([
  ex("the cat sat", undefined, 1, 2), // length 5
  ex("the cat sat on the mat", undefined, 0, 3), // length 8 → truncated at 6
  ex("dogs run", undefined, undefined, 4), // length 5, unlabelled
]);

Deno.test("features: convertExamples fills [n, L] arrays, labels, stats, metadata and reports progress", async () => {
  const progress: [number, number][] = [];
  const fs = await convertExamples(DS, tok, {
    maxSeqLength: 6,
    task: "toy",
    onProgress: (d, t) => progress.push([d, t]),
  });
  assertEquals(fs.n, 3);
  assertEquals(fs.maxSeqLength, 6);
  assertEquals(
    Array.from(fs.inputIds),
    [2, 5, 6, 7, 3, 0, /**/ 2, 5, 6, 7, 8, 3, /**/ 2, 10, 11, 12, 3, 0],
  );
  assertEquals(Array.from(fs.attentionMask), [1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]);
  assertEquals(Array.from(fs.tokenTypeIds), new Array(18).fill(0));
  assertEquals(Array.from(fs.labels), [1, 0, -1]);
  assertEquals(fs.exampleIds, ["ex2", "ex3", "ex4"]);
  assertEquals(Array.from(fs.stats.lengths), [5, 8, 5]);
  assertEquals(fs.stats.truncated, 1);
  assertEquals(fs.stats.maxLength, 8);
  assertEquals(fs.stats.meanLength, 6);
  assertEquals(fs.metadata, {
    vocab_sha256: await tok.vocab.sha256(),
    lower_case: true,
    max_seq_length: 6,
    labels: ["neg", "pos"],
    task: "toy",
    source: "mem.tsv",
    n: 3,
  });
  assertEquals(progress, [[1, 3], [2, 3], [3, 3]]);
  // the same rows as convertExample
  for (let i = 0; i < 3; i++) {
    assertEquals(Array.from(fs.inputIds.subarray(i * 6, i * 6 + 6)), convertExample(DS.examples[i], tok, 6).inputIds);
  }
});

Deno.test("features: progress every ~1%, at most every 1000 examples", () => {
  assertEquals(progressStep(3), 1);
  assertEquals(progressStep(67349), 674);
  assertEquals(progressStep(5_000_000), 1000);
});

Deno.test("features: a label outside the label list names the file and line", async () => {
  const bad = dataset([ex("the cat", undefined, 2, 7)]);
  await assertRejects(() => convertExamples(bad, tok, { maxSeqLength: 8, task: "toy" }), Error, "mem.tsv:7: label 2");
});

Deno.test("features: save → load round trip is identical, and the file holds the documented tensors", async () => {
  await withTemp(async (dir) => {
    const fs = await convertExamples(DS, tok, { maxSeqLength: 6, task: "toy", vocabPath: "v/vocab.txt" });
    const path = `${dir}/features/dev.safetensors`;
    await saveFeatures(path, fs);
    const back = await loadFeatures(path);
    assertEquals(back, fs);
    const raw = await readSafetensors(path);
    assertEquals(raw.tensors.input_ids.dtype, "I32");
    assertEquals(raw.tensors.input_ids.shape, [3, 6]);
    assertEquals(raw.tensors.labels.shape, [3]);
    assertEquals(raw.metadata.labels, '["neg","pos"]');
    assertEquals(raw.metadata.lower_case, "true");
    assertEquals(raw.metadata.max_seq_length, "6");
    assertEquals(raw.metadata.example_ids, '["ex2","ex3","ex4"]');
    assertEquals(raw.metadata.vocab_path, "v/vocab.txt");
    // an empty split also round-trips
    const empty = await convertExamples(dataset([]), tok, { maxSeqLength: 4, task: "toy" });
    await saveFeatures(`${dir}/empty.safetensors`, empty);
    assertEquals(await loadFeatures(`${dir}/empty.safetensors`), empty);
  });
});

Deno.test("features: loadFeatures names the file and the problem", async () => {
  await withTemp(async (dir) => {
    const fs = await convertExamples(DS, tok, { maxSeqLength: 6, task: "toy" });
    const good = `${dir}/good.safetensors`;
    await saveFeatures(good, fs);
    const { tensors, metadata } = await readSafetensors(good);
    const variant = async (name: string, t: typeof tensors, m: typeof metadata, needle: string) => {
      const path = `${dir}/${name}.safetensors`;
      await writeSafetensors(path, t, m);
      const err = await assertRejects(() => loadFeatures(path), Error, needle);
      assert(err.message.startsWith(path), err.message);
    };
    const { labels: _l, ...noLabels } = tensors;
    await variant("nolabels", noLabels, metadata, 'tensor "labels" is missing');
    await variant(
      "shape",
      { ...tensors, input_ids: { ...tensors.input_ids, shape: [6, 3] } },
      metadata,
      "expected I32 [3,6]",
    );
    const { vocab_sha256: _v, ...noSha } = metadata;
    await variant("nosha", tensors, noSha, 'metadata "vocab_sha256" is missing');
    await variant("badlabels", tensors, { ...metadata, labels: "neg,pos" }, 'metadata "labels" should be');
    await variant("ids", tensors, { ...metadata, example_ids: '["a"]' }, '"example_ids" has 1 ids but n is 3');
    const mask = new Int32Array(tensors.attention_mask.data as Int32Array);
    mask[7] = 2;
    await variant(
      "mask",
      { ...tensors, attention_mask: { ...tensors.attention_mask, data: mask } },
      metadata,
      "attention_mask[1, 1] is 2",
    );
    const lab = new Int32Array([0, 5, -1]);
    await variant("labelrange", { ...tensors, labels: { ...tensors.labels, data: lab } }, metadata, "labels[1] is 5");
    await variant("notfeatures", tensors, {}, "not a features file");
  });
});

Deno.test("features: checkFeaturesMatch refuses another vocabulary or casing, naming both hashes", async () => {
  const fs = await convertExamples(DS, tok, { maxSeqLength: 6, task: "toy" });
  await checkFeaturesMatch(fs, tok, "f.safetensors"); // same tokenizer: fine
  await checkFeaturesMatch(fs, new FullTokenizer(Vocab.fromTokens(TOKENS)), "f.safetensors"); // same vocab content
  const other = new FullTokenizer(Vocab.fromTokens([...TOKENS, "extra"]));
  const err = await assertRejects(() => checkFeaturesMatch(fs, other, "runs/x/features/train.safetensors"));
  assert(err.message.startsWith("runs/x/features/train.safetensors: "), err.message);
  assert(err.message.includes(await tok.vocab.sha256()), err.message);
  assert(err.message.includes(await other.vocab.sha256()), err.message);
  assert(err.message.includes("vocabulary differs"), err.message);
  const cased = new FullTokenizer(Vocab.fromTokens(TOKENS), { lowerCase: false });
  await assertRejects(
    () => checkFeaturesMatch(fs, cased, "f"),
    Error,
    "lower_case=true, the tokenizer has lower_case=false",
  );
  await assertRejects(
    () => checkFeaturesMatch(fs, tok, "f", { maxSeqLength: 128 }),
    Error,
    "features have 6, expected 128",
  );
  await assertRejects(() => checkFeaturesMatch(fs, tok, "f", { maxPositionEmbeddings: 4 }), Error, "exceeds");
});

Deno.test("features: histogram, percentiles and the printable summary", async () => {
  assertEquals(lengthHistogram([1, 2, 5, 9, 10], 5), { binStarts: [0, 5, 10], counts: [2, 2, 1], binWidth: 5 });
  assertEquals(lengthHistogram([], 4), { binStarts: [], counts: [], binWidth: 4 });
  assertThrows(() => lengthHistogram([1], 0), Error, "bin width");
  const values = Array.from({ length: 100 }, (_, i) => 100 - i); // 1..100 reversed
  assertEquals([percentile(values, 50), percentile(values, 90), percentile(values, 99), percentile(values, 100)], [
    50,
    90,
    99,
    100,
  ]);
  assertEquals(percentile([7], 50), 7);
  const fs = await convertExamples(DS, tok, { maxSeqLength: 6, task: "toy" });
  const lines = summarizeFeatures(fs);
  assertEquals(lines[0], "examples: 3 from mem.tsv (task toy)");
  assertEquals(lines[1], "labels: neg 1 (33.3%), pos 1 (33.3%), unlabelled 1 (33.3%)");
  assertEquals(lines[2], "truncated to 6 tokens: 1 (33.3%)");
  assertEquals(lines[3], "length in tokens incl. [CLS]/[SEP]: p50 5, p90 8, p99 8, max 8, mean 6.0");
});

// ---- independent reference: the original BERT tokenizer's ids for real GLUE dev sentences ----

interface Golden {
  text: string;
  uncased: number[];
}

async function goldenByText(): Promise<Map<string, Golden>> {
  const lines = (await Deno.readTextFile(`${SHARED}/golden/tokenizer/public.jsonl`)).split("\n").filter((l) => l);
  return new Map(lines.map((l) => JSON.parse(l) as Golden).map((g) => [g.text, g]));
}

function tsvRows(text: string): string[][] {
  return text.replace(/^\ufeff/, "").split("\n").filter((l) => l.length).slice(1).map((l) => l.split("\t"));
}

Deno.test({
  name: "features: SST-2 dev with the real uncased vocab = [CLS] golden ids [SEP] padding",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const golden = await goldenByText();
    const real = await FullTokenizer.fromVocabFile(`${SHARED}/data/models/bert-base-uncased-vocab/vocab.txt`);
    const rows = tsvRows(await Deno.readTextFile(`${SHARED}/data/glue/SST-2/dev.tsv`));
    const examples = rows.map(([sentence, label], i) => ex(sentence, undefined, Number(label), i + 2));
    const L = 48;
    const fs = await convertExamples(dataset(examples), real, { maxSeqLength: L, task: "sst2" });
    assertEquals(fs.n, 872);
    let truncated = 0;
    for (let i = 0; i < fs.n; i++) {
      const g = golden.get(examples[i].textA);
      assert(g, `no golden ids for SST-2 dev line ${i + 2}`);
      const kept = g.uncased.slice(0, L - 2);
      const expected = [101, ...kept, 102, ...new Array(L - 2 - kept.length).fill(0)];
      assertEquals(Array.from(fs.inputIds.subarray(i * L, (i + 1) * L)), expected, `SST-2 dev line ${i + 2}`);
      assertEquals(fs.stats.lengths[i], g.uncased.length + 2);
      if (g.uncased.length + 2 > L) truncated++;
    }
    assertEquals(truncated, 17); // 17 of the 872 sentences are longer than 48 tokens (max 55)
    assertEquals(fs.stats.truncated, truncated);
  },
});

Deno.test({
  name: "features: MRPC dev pairs with the real uncased vocab follow the golden ids of both sentences",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const golden = await goldenByText();
    const real = await FullTokenizer.fromVocabFile(`${SHARED}/data/models/bert-base-uncased-vocab/vocab.txt`);
    const rows = tsvRows(await Deno.readTextFile(`${SHARED}/data/glue/MRPC/dev.tsv`)).slice(0, 50);
    const L = 128;
    for (const [i, row] of rows.entries()) {
      const a = golden.get(row[3])!.uncased, b = golden.get(row[4])!.uncased;
      assert(a.length + b.length + 3 <= L, "these pairs fit in 128");
      const f = convertExample(ex(row[3], row[4], Number(row[0]), i + 2), real, L);
      const n = a.length + b.length + 3;
      assertEquals(f.inputIds.slice(0, n), [101, ...a, 102, ...b, 102], `MRPC dev line ${i + 2}`);
      assertEquals(f.tokenTypeIds.slice(0, n), [
        ...new Array(a.length + 2).fill(0),
        ...new Array(b.length + 1).fill(1),
      ]);
      assertEquals(f.attentionMask.reduce((s, m) => s + m, 0), n);
    }
  },
});

if (!HAVE_SHARED) console.warn("features_test: ../shared is absent; skipping the golden SST-2/MRPC tests");
