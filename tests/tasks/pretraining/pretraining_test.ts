/**
 * Pre-training data and loss: sentence splitting and corpus files, the tar.gz reader (against archives made by
 * the system `tar`), IMDB from the shared archive, BERT's masking and next-sentence pairs (exact structure on a
 * synthetic corpus whose token ids name their document and position, proportions checked against binomial
 * tolerances), determinism, and the loss against a hand-written log-softmax.
 */
import { initBackend, tf } from "../../../lib/backends/backend.ts";
import { BertModel, configFromJson } from "../../../lib/model/model.ts";
import {
  parseCorpusText,
  readImdbCorpus,
  readTextCorpus,
  reviewSentences,
  splitSentences,
} from "../../../lib/tasks/pretraining/corpus.ts";
import { maskTokens, type PretrainingVocab, pretrainingVocab } from "../../../lib/tasks/pretraining/masking.ts";
import {
  createInstances,
  createPretrainingData,
  instancesToSet,
  type PretrainingInstance,
  summarizePretrainingData,
  truncatePair,
} from "../../../lib/tasks/pretraining/instances.ts";
import {
  disposePretrainingBatch,
  evaluatePretraining,
  pretrain,
  pretrainingBatch,
  pretrainingLoss,
} from "../../../lib/tasks/pretraining/task.ts";
import { describeInstance, instanceHtml, instanceText } from "../../../lib/tasks/pretraining/show.ts";
import { tarEntries, tarGzEntries } from "../../../lib/io/tar.ts";
import { FullTokenizer } from "../../../lib/text/tokenizer.ts";
import { Vocab } from "../../../lib/text/vocab.ts";
import { Rng } from "../../../lib/training/train.ts";
import { assert, assertEquals, assertRejects, HAVE_SHARED, requireShared } from "../../shared.ts";

await initBackend({ backend: "cpu", quiet: true });

// ---- corpus text ----

Deno.test("splitSentences: ends at . ! ? before a capital, keeps abbreviations and initials", () => {
  assertEquals(splitSentences("I liked it. Mr. Smith did not! Why? Because."), [
    "I liked it.",
    "Mr. Smith did not!",
    "Why?",
    "Because.",
  ]);
  assertEquals(splitSentences('He said "Go." Then he left.'), ['He said "Go."', "Then he left."]);
  assertEquals(splitSentences("J. K. Rowling wrote it. It sold."), ["J. K. Rowling wrote it.", "It sold."]);
  assertEquals(splitSentences("version 2.0 is out. 3 bugs remain"), ["version 2.0 is out.", "3 bugs remain"]);
  assertEquals(splitSentences("no capital. after the period"), ["no capital. after the period"]);
  assertEquals(splitSentences("   "), []);
});

Deno.test("parseCorpusText: blank lines separate documents, lines are split into sentences", () => {
  const corpus = parseCorpusText("A b. C d.\nE f\r\n\r\n  \nG h.\n\n\nI j. K l.\n", "x.txt");
  assertEquals(corpus.documents, [["A b.", "C d.", "E f"], ["G h."], ["I j.", "K l."]]);
  assertEquals(corpus.source, "x.txt");
});

Deno.test("readTextCorpus: limit, and a clear error for a file with one document", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/c.txt`, "One. Two.\n\nThree.\n\nFour.\n");
    assertEquals((await readTextCorpus(`${dir}/c.txt`, { limit: 2 })).documents, [["One.", "Two."], ["Three."]]);
    await Deno.writeTextFile(`${dir}/one.txt`, "Only one document.\nStill the same one.\n");
    await assertRejects(() => readTextCorpus(`${dir}/one.txt`), Error, "at least 2");
    await assertRejects(() => readTextCorpus(`${dir}/missing.txt`), Error, "missing.txt");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reviewSentences: <br /> tags become sentence breaks", () => {
  assertEquals(reviewSentences("Great film.<br /><br />the end<br/>Really. Yes"), [
    "Great film.",
    "the end",
    "Really.",
    "Yes",
  ]);
});

// ---- tar ----

async function haveTar(): Promise<boolean> {
  try {
    return (await new Deno.Command("tar", { args: ["--version"], stdout: "null", stderr: "null" }).output()).success;
  } catch {
    return false;
  }
}
const HAVE_TAR = await haveTar();
if (!HAVE_TAR) console.warn("warning: no system `tar`: the tar reader tests against real archives are skipped");

Deno.test({
  name: "tarEntries: reads archives written by the system tar (ustar prefix, GNU long names, pax)",
  ignore: !HAVE_TAR,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const long = `${"d".repeat(60)}/${"e".repeat(70)}/file_with_a_long_name.txt`; // > 100 bytes
      await Deno.mkdir(`${dir}/src/${long.replace(/\/[^/]+$/, "")}`, { recursive: true });
      await Deno.mkdir(`${dir}/src/sub`, { recursive: true });
      const big = "x".repeat(1500) + "end"; // spans several 512-byte blocks
      const files: Record<string, string> = {
        "a.txt": "hello",
        "sub/b.txt": big,
        "sub/empty.txt": "",
        [long]: "long name ok ü",
      };
      for (const [name, text] of Object.entries(files)) await Deno.writeTextFile(`${dir}/src/${name}`, text);
      for (const format of ["gnu", "posix", "ustar"]) {
        const names = format === "ustar" ? Object.keys(files).filter((n) => n !== long) : Object.keys(files);
        const out = await new Deno.Command("tar", {
          args: ["--format", format, "-czf", `${dir}/t.tar.gz`, "-C", `${dir}/src`, ...names],
          stderr: "piped",
        }).output();
        assert(out.success, new TextDecoder().decode(out.stderr));
        const got: Record<string, string> = {};
        const listed: string[] = [];
        for await (const e of tarGzEntries(`${dir}/t.tar.gz`, { want: (n) => n !== "sub/empty.txt" })) {
          listed.push(e.name);
          if (e.data) got[e.name] = new TextDecoder().decode(e.data);
          else assertEquals(e.size, 0);
        }
        assertEquals(listed.sort(), names.sort(), format);
        assertEquals(got, Object.fromEntries(names.filter((n) => n !== "sub/empty.txt").map((n) => [n, files[n]])));
      }
      // Leaving the loop early cancels the stream (no leaked file handle: Deno's test sanitizer checks).
      for await (const e of tarGzEntries(`${dir}/t.tar.gz`)) {
        assert(e.name.length > 0);
        break;
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("tarEntries: a damaged header or a truncated archive is a clear error", async () => {
  const stream = (bytes: Uint8Array) => ReadableStream.from([bytes]);
  const notTar = new Uint8Array(1024).fill(65);
  await assertRejects(
    async () => {
      for await (const _ of tarEntries(stream(notTar), { source: "x.tar" })) { /* drain */ }
    },
    Error,
    "x.tar: not a tar archive, or damaged: bad header checksum at byte 0",
  );
  // A valid header announcing 1000 bytes, followed by only 100.
  const h = new Uint8Array(512);
  const put = (s: string, at: number) => h.set(new TextEncoder().encode(s), at);
  put("f.txt", 0);
  put("0000644\0", 100);
  put("00000001750\0", 124); // 1000 in octal
  put("0", 156);
  put("        ", 148);
  const sum = h.reduce((a, b) => a + b, 0);
  put(sum.toString(8).padStart(6, "0") + "\0 ", 148);
  const truncated = new Uint8Array(612);
  truncated.set(h);
  await assertRejects(
    async () => {
      for await (const _ of tarEntries(stream(truncated), { source: "t.tar", want: () => true })) { /* drain */ }
    },
    Error,
    "t.tar: f.txt: the archive ends early",
  );
});

Deno.test({
  name: "readImdbCorpus: the first reviews of the shared archive, pos and neg interleaved",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const path = requireShared("data/imdb/aclImdb_v1_train_test.tar.gz");
    const corpus = await readImdbCorpus({ path, limit: 4 });
    assertEquals(corpus.documents.length, 4);
    // PROVENANCE.md: train/pos/0_9.txt begins "Bromwell High is a cartoon comedy."
    assertEquals(corpus.documents[1][0], "Bromwell High is a cartoon comedy.");
    for (const d of corpus.documents) for (const s of d) assert(!/<br/i.test(s), `markup left in: ${s}`);
    assert(corpus.documents.every((d) => d.length >= 1));
    await assertRejects(() => readImdbCorpus({ path: "nowhere.tar.gz" }), Error, "not found");
  },
});

// ---- masking and pairs on a synthetic corpus ----

/** Ids 0..4 are specials; document d's token k (counting through its sentences) is 5 + offset[d] + k. */
function syntheticCorpus(docs: number, seed: number) {
  const rng = new Rng(seed);
  const out: number[][][] = [];
  const where = new Map<number, { doc: number; index: number }>();
  let next = 5;
  for (let d = 0; d < docs; d++) {
    const doc: number[][] = [];
    let index = 0;
    const sentences = 1 + rng.int(15);
    for (let s = 0; s < sentences; s++) {
      const len = 3 + rng.int(13);
      const sent: number[] = [];
      for (let k = 0; k < len; k++) {
        where.set(next, { doc: d, index: index++ });
        sent.push(next++);
      }
      doc.push(sent);
    }
    out.push(doc);
  }
  const vocab: PretrainingVocab = {
    size: next,
    padId: 0,
    clsId: 2,
    sepId: 3,
    maskId: 4,
    randomIds: Int32Array.from({ length: next - 5 }, (_, i) => i + 5),
    continuation: new Uint8Array(next),
  };
  return { docs: out, where, vocab };
}

/** Checks that `ids` are consecutive tokens of one document; returns [doc, first index, last index]. */
function span(ids: number[], where: Map<number, { doc: number; index: number }>): [number, number, number] {
  const first = where.get(ids[0])!;
  ids.forEach((id, k) => {
    const w = where.get(id);
    assert(w && w.doc === first.doc && w.index === first.index + k, `not a contiguous span: ${ids}`);
  });
  return [first.doc, first.index, first.index + ids.length - 1];
}

Deno.test("maskTokens: never [CLS]/[SEP]/[PAD], 15% of the rest, targets are the originals", () => {
  const { vocab } = syntheticCorpus(1, 1);
  const rng = new Rng(7);
  const ids = [2, 10, 11, 12, 13, 14, 3, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 3, 0, 0];
  for (let t = 0; t < 200; t++) {
    const m = maskTokens(ids, vocab, rng, { maskedLmProb: 0.15, maxPredictions: 20 });
    assertEquals(m.positions.length, 2); // 15 candidates * 0.15 = 2.25 -> 2
    assert(m.positions.every((p, i) => i === 0 || p > m.positions[i - 1]), "positions ascending");
    for (const p of m.positions) assert(![2, 3, 0].includes(ids[p]), `special token at ${p} chosen`);
    assertEquals(m.labels, m.positions.map((p) => ids[p]));
    m.positions.forEach((p, i) => {
      const expected = m.kinds[i] === "mask" ? vocab.maskId : m.kinds[i] === "keep" ? ids[p] : m.inputIds[p];
      assertEquals(m.inputIds[p], expected);
      if (m.kinds[i] === "random") assert(m.inputIds[p] >= 5, "random replacement is never a special token");
    });
    ids.forEach((id, p) => {
      if (!m.positions.includes(p)) assertEquals(m.inputIds[p], id);
    });
  }
  // At least one prediction per sequence, at most maxPredictions.
  assertEquals(maskTokens([2, 9, 3], vocab, rng).positions, [1]);
  assertEquals(
    maskTokens(Array.from({ length: 200 }, (_, i) => 5 + i), vocab, rng, { maxPredictions: 7 }).positions.length,
    7,
  );
});

Deno.test("maskTokens wholeWord: the pieces of a word are chosen together, never beyond maxPredictions", () => {
  const { vocab } = syntheticCorpus(1, 1);
  const ids = Array.from({ length: 60 }, (_, i) => 5 + i);
  // Words: every third id starts a word and the next two are its ## pieces (ids 5, 8, 11, ... start words).
  vocab.continuation = Uint8Array.from({ length: vocab.size }, (_, id) => (id >= 5 && (id - 5) % 3 !== 0 ? 1 : 0));
  const seq = [2, ...ids, 3];
  const wordOf = (p: number) => Math.floor((seq[p] - 5) / 3);
  const rng = new Rng(11);
  let chosenTotal = 0;
  for (let t = 0; t < 100; t++) {
    const m = maskTokens(seq, vocab, rng, { maskedLmProb: 0.15, maxPredictions: 8, wholeWord: true });
    assert(m.positions.length <= 8 && m.positions.length % 3 === 0, `whole words only: ${m.positions}`);
    const words = new Set(m.positions.map(wordOf));
    for (const w of words) {
      const pieces = m.positions.filter((p) => wordOf(p) === w);
      assertEquals(pieces.length, 3, `word ${w} chosen partly: ${m.positions}`);
    }
    chosenTotal += m.positions.length;
  }
  assertEquals(chosenTotal, 100 * 6); // k = min(8, round(60 * 0.15) = 9) = 8 -> two whole words of 3
  // Without wholeWord the same sequence gets single pieces.
  const single = maskTokens(seq, vocab, new Rng(11), { maskedLmProb: 0.15, maxPredictions: 8 });
  assertEquals(single.positions.length, 8);
});

Deno.test("createInstances nextSentence: false: [CLS] span [SEP] of one document, spans cover it in order", () => {
  const { docs, vocab } = syntheticCorpus(40, 5);
  const instances = createInstances(docs, vocab, { maxSeqLength: 24, nextSentence: false, seed: 3, shortSeqProb: 0.2 });
  const byDoc = new Map<number, number[]>();
  for (const inst of instances) {
    const o = inst.originalIds;
    assert(o.length <= 24 && o[0] === vocab.clsId && o[o.length - 1] === vocab.sepId && o.length >= 3, `${o}`);
    assert(inst.segmentIds.every((x) => x === 0) && !inst.isRandomNext);
    assert(!o.slice(1, -1).includes(vocab.sepId), "one segment only");
    byDoc.set(inst.document, [...(byDoc.get(inst.document) ?? []), ...o.slice(1, -1)]);
  }
  // Instances of a document, in creation order (shuffled later), are its tokens exactly: nothing lost or repeated.
  const ordered = createInstances(docs, vocab, { maxSeqLength: 24, nextSentence: false, seed: 3, shortSeqProb: 0.2 })
    .sort((a, b) => a.originalIds[1] - b.originalIds[1]);
  const tokens = ordered.flatMap((i) => i.originalIds.slice(1, -1));
  assertEquals(tokens, docs.flat(2));
  assertEquals(byDoc.size, docs.length);
});

Deno.test("truncatePair: trims the longer side, from either end, keeping contiguous spans", () => {
  const rng = new Rng(3);
  let fronts = 0;
  for (let t = 0; t < 100; t++) {
    const a = Array.from({ length: 10 }, (_, i) => i), b = Array.from({ length: 4 }, (_, i) => 100 + i);
    truncatePair(a, b, 9, rng);
    assertEquals(a.length + b.length, 9);
    assertEquals(b, [100, 101, 102, 103]); // A was the longer side all along
    assert(a.every((v, i) => i === 0 || v === a[i - 1] + 1));
    fronts += a[0]; // tokens cut from the front (5 cuts per trial)
  }
  assert(Math.abs(fronts - 250) < 4.5 * Math.sqrt(500 * 0.25), `${fronts} of 500 cuts from the front, expected ~250`);
  const a = [1, 2, 3], b = [4, 5, 6];
  truncatePair(a, b, 5, rng);
  assertEquals([a.length, b.length], [3, 2]); // tie: B loses
});

/** A binomial tolerance: 4.5 standard deviations of a proportion around `p` over `n` trials. */
function tolerance(p: number, n: number): number {
  return 4.5 * Math.sqrt((p * (1 - p)) / n);
}

Deno.test("createInstances: pair structure, segments and labels are consistent with the corpus", () => {
  const { docs, where, vocab } = syntheticCorpus(150, 11);
  const instances = createInstances(docs, vocab, { maxSeqLength: 40, seed: 5, maxPredictionsPerSeq: 8 });
  assert(instances.length > 300, `${instances.length} instances`);
  for (const inst of instances) {
    const ids = inst.originalIds;
    assertEquals(ids[0], vocab.clsId);
    assertEquals(ids[ids.length - 1], vocab.sepId);
    assert(ids.length <= 40);
    const sep = ids.indexOf(vocab.sepId);
    const a = ids.slice(1, sep), b = ids.slice(sep + 1, -1);
    assert(a.length >= 1 && b.length >= 1 && !b.includes(vocab.sepId));
    assertEquals(inst.segmentIds, ids.map((_, p) => (p <= sep ? 0 : 1)));
    const [docA, , endA] = span(a, where);
    const [docB, startB] = span(b, where);
    assertEquals(docA, inst.document);
    if (inst.isRandomNext) assert(docB !== docA, "NotNext: B must come from another document");
    else assert(docB === docA && startB > endA, "IsNext: B must follow A in the same document");
    // The masked input differs from the original only at the prediction positions, whose targets are the originals.
    const chosen = new Set(inst.mlmPositions);
    ids.forEach((id, p) => {
      if (!chosen.has(p)) assertEquals(inst.inputIds[p], id);
    });
    assertEquals(inst.mlmIds, inst.mlmPositions.map((p) => ids[p]));
  }
});

Deno.test("createInstances: 15% chosen uniformly, 80/10/10 split and 50% NotNext, within binomial tolerance", () => {
  const { docs, vocab } = syntheticCorpus(800, 21);
  const instances = createInstances(docs, vocab, { maxSeqLength: 48, seed: 9, maxPredictionsPerSeq: 40 });
  let candidates = 0, chosen = 0, expectedFirst = 0, chosenFirst = 0, varFirst = 0;
  let masks = 0, keeps = 0, randoms = 0, notNext = 0;
  for (const inst of instances) {
    const c = inst.originalIds.length - 3; // all but [CLS] and two [SEP]
    const k = Math.min(40, Math.max(1, Math.round(c * 0.15)));
    assertEquals(inst.mlmPositions.length, k, "exactly round(15%) per sequence");
    candidates += c;
    chosen += k;
    // Uniform choice: the first token of A is chosen with probability k / c.
    expectedFirst += k / c;
    varFirst += (k / c) * (1 - k / c);
    if (inst.mlmPositions.includes(1)) chosenFirst++;
    inst.mlmPositions.forEach((p, i) => {
      const input = inst.inputIds[p], original = inst.mlmIds[i];
      if (input === vocab.maskId) masks++;
      else if (input === original) keeps++;
      else randoms++;
    });
    if (inst.isRandomNext) notNext++;
  }
  assert(candidates > 50_000, `only ${candidates} maskable tokens`);
  const n = instances.length;
  const fraction = chosen / candidates;
  assert(Math.abs(fraction - 0.15) < 0.5 * n / candidates + tolerance(0.15, candidates), `masked fraction ${fraction}`);
  assert(
    Math.abs(chosenFirst - expectedFirst) < 4.5 * Math.sqrt(varFirst),
    `first token chosen ${chosenFirst} times, expected ${expectedFirst.toFixed(1)}`,
  );
  // A random replacement equal to the original counts as kept: p(keep) = 0.1 + 0.1 / |randomIds|.
  const pKeep = 0.1 + 0.1 / vocab.randomIds.length;
  for (
    const [name, count, p] of [["mask", masks, 0.8], ["keep", keeps, pKeep], [
      "random",
      randoms,
      0.1 - 0.1 / vocab.randomIds.length,
    ]] as const
  ) {
    assert(
      Math.abs(count / chosen - p) < tolerance(p, chosen),
      `${name}: ${count}/${chosen} = ${count / chosen}, expected ${p}`,
    );
  }
  assert(Math.abs(notNext / n - 0.5) < tolerance(0.5, n), `NotNext ${notNext}/${n} = ${notNext / n}`);
});

Deno.test("createInstances: deterministic for a seed, different for another", () => {
  const { docs, vocab } = syntheticCorpus(40, 2);
  const a = createInstances(docs, vocab, { maxSeqLength: 32, seed: 1 });
  const b = createInstances(docs, vocab, { maxSeqLength: 32, seed: 1 });
  const c = createInstances(docs, vocab, { maxSeqLength: 32, seed: 2 });
  assertEquals(a, b);
  assert(JSON.stringify(a) !== JSON.stringify(c));
  // dupeFactor repeats the corpus with fresh pairs and masks.
  const twice = createInstances(docs, vocab, { maxSeqLength: 32, seed: 1, dupeFactor: 2 });
  assert(twice.length > 1.6 * a.length && twice.length < 2.4 * a.length, `${twice.length} vs ${a.length}`);
});

// ---- with a real tokenizer ----

const TEXT = `The cat sat on the mat. It was a sunny day. The dog watched the cat.
The birds sang in the trees. Everyone was happy.

A bank is a place for money. She opened an account at the bank. The bank gave her a loan.
Interest rates were low that year.

The river bank was muddy. Fish swam near the bank of the river. The water was cold.
Children played by the river all afternoon.`;

async function smallTokenizer(): Promise<FullTokenizer> {
  const { buildVocab } = await import("../../../lib/text/vocab_builder.ts");
  const docs = parseCorpusText(TEXT).documents.flat();
  return new FullTokenizer(Vocab.fromTokens(buildVocab(docs, { vocabSize: 120, minFrequency: 1 })));
}

Deno.test("createPretrainingData: matrices agree with the instances; specials are never targets", async () => {
  const tokenizer = await smallTokenizer();
  const corpus = parseCorpusText(TEXT);
  const set = createPretrainingData(corpus, tokenizer, {
    maxSeqLength: 24,
    maxPredictionsPerSeq: 5,
    seed: 3,
    dupeFactor: 4,
  });
  const vocab = pretrainingVocab(tokenizer.vocab);
  const L = 24, P = 5;
  assert(set.n > 10);
  assertEquals(set.stats.documents, 3);
  for (let r = 0; r < set.n; r++) {
    const mask = set.attentionMask.subarray(r * L, (r + 1) * L);
    const len = mask.reduce((a, b) => a + b, 0);
    assert(mask.subarray(0, len).every((v) => v === 1), "mask is 1 then 0");
    const ids = set.inputIds.subarray(r * L, (r + 1) * L);
    assertEquals(ids[0], vocab.clsId);
    assertEquals(ids[len - 1], vocab.sepId);
    assert(ids.subarray(len).every((v) => v === vocab.padId), "padding after the tokens");
    const labels = set.mlmIds.subarray(r * P, (r + 1) * P);
    const positions = set.mlmPositions.subarray(r * P, (r + 1) * P);
    for (let j = 0; j < P; j++) {
      if (labels[j] < 0) {
        assertEquals(positions[j], 0);
        continue;
      }
      assert(positions[j] > 0 && positions[j] < len - 1);
      assert(![vocab.clsId, vocab.sepId, vocab.padId].includes(labels[j]), "special token as a target");
    }
    assert([0, 1].includes(set.nspLabels[r]));
  }
  assertEquals(set.stats.randomNext, set.nspLabels.reduce((a, b) => a + b, 0));
  // Same corpus and seed: same matrices.
  const again = createPretrainingData(corpus, tokenizer, {
    maxSeqLength: 24,
    maxPredictionsPerSeq: 5,
    seed: 3,
    dupeFactor: 4,
  });
  assertEquals(again.inputIds, set.inputIds);
  assertEquals(again.mlmIds, set.mlmIds);
});

Deno.test("describeInstance / instanceHtml: one row per token, chosen ones marked", async () => {
  const tokenizer = await smallTokenizer();
  const vocab = pretrainingVocab(tokenizer.vocab);
  const docs = parseCorpusText(TEXT).documents.map((d) => d.map((s) => tokenizer.encodeIds(s)));
  const inst: PretrainingInstance = createInstances(docs, vocab, { maxSeqLength: 20, seed: 1 })[0];
  const rows = describeInstance(inst, tokenizer);
  assertEquals(rows.length, inst.inputIds.length);
  assertEquals(rows.filter((r) => r.masking !== "").length, inst.mlmPositions.length);
  const html = instanceHtml(inst, tokenizer);
  assert(html.includes("<table") && html.includes(inst.isRandomNext ? "NotNext" : "IsNext"));
  const [, original, sees] = instanceText(inst, tokenizer).split("\n");
  assertEquals(original.replace(/^original:/, "").trim().split(/\s+/), rows.map((r) => r.original));
  assertEquals(sees.replace(/^BERT sees:/, "").trim().split(/\s+/), rows.map((r) => r.input));
});

// ---- loss ----

function tinyModel(vocabSize: number): BertModel {
  const config = configFromJson({
    vocab_size: vocabSize,
    hidden_size: 8,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    intermediate_size: 16,
    max_position_embeddings: 32,
    hidden_dropout_prob: 0,
    attention_probs_dropout_prob: 0,
  });
  return new BertModel(config, { head: "pretraining", seed: 4 });
}

Deno.test("pretrainingLoss: MLM mean over chosen tokens + NSP mean, against a hand-written log-softmax", async () => {
  const tokenizer = await smallTokenizer();
  const set = createPretrainingData(parseCorpusText(TEXT), tokenizer, {
    maxSeqLength: 24,
    maxPredictionsPerSeq: 4,
    seed: 8,
    dupeFactor: 3,
  });
  const model = tinyModel(tokenizer.vocab.size);
  try {
    const rows = [0, 1, 2, 3, 4];
    const batch = pretrainingBatch(set, rows);
    const before = tf.memory().numTensors;
    const { loss, mlm, nsp } = pretrainingLoss(model, batch);
    const got = [loss, mlm, nsp].map((t) => t.dataSync()[0]);
    tf.dispose([loss, mlm, nsp]);
    assertEquals(tf.memory().numTensors, before, "no tensors leaked");
    // Reference: logits at every position (no mlmPositions), log-softmax in float64 here.
    const out = model.forward(batch);
    const all = out.mlmLogits!.arraySync() as number[][][]; // [b, seq, vocab]
    const nspLogits = out.nspLogits!.arraySync() as number[][];
    tf.dispose(Object.values(out).flat() as tf.Tensor[]);
    const logSoftmax = (v: number[], k: number) => {
      const m = Math.max(...v);
      return v[k] - m - Math.log(v.reduce((a, x) => a + Math.exp(x - m), 0));
    };
    let sum = 0, count = 0, nspSum = 0;
    rows.forEach((r, b) => {
      for (let j = 0; j < set.maxPredictions; j++) {
        const label = set.mlmIds[r * set.maxPredictions + j];
        if (label < 0) continue;
        sum -= logSoftmax(all[b][set.mlmPositions[r * set.maxPredictions + j]], label);
        count++;
      }
      nspSum -= logSoftmax(nspLogits[b], set.nspLabels[r]);
    });
    const expected = [sum / count + nspSum / rows.length, sum / count, nspSum / rows.length];
    for (let i = 0; i < 3; i++) assert(Math.abs(got[i] - expected[i]) < 1e-4, `${got} vs ${expected}`);
    disposePretrainingBatch(batch);
    // evaluatePretraining over exactly these rows gives the same losses.
    const sub = { ...set, n: rows.length };
    const metrics = evaluatePretraining(model, sub, { batchSize: 2 });
    assert(Math.abs(metrics.mlmLoss - expected[1]) < 1e-4 && Math.abs(metrics.nspLoss - expected[2]) < 1e-4);
    assert(metrics.mlmAccuracy >= 0 && metrics.mlmAccuracy <= 1 && metrics.nspAccuracy >= 0);
  } finally {
    model.dispose();
  }
});

Deno.test("pretrainingLoss nsp: false: masked-LM alone; evaluation reports no NSP figures", async () => {
  const tokenizer = await smallTokenizer();
  const set = createPretrainingData(parseCorpusText(TEXT), tokenizer, {
    maxSeqLength: 24,
    maxPredictionsPerSeq: 4,
    seed: 8,
    nextSentence: false,
  });
  const model = tinyModel(tokenizer.vocab.size);
  try {
    const batch = pretrainingBatch(set, [0, 1, 2]);
    const withNsp = pretrainingLoss(model, batch);
    const without = pretrainingLoss(model, batch, { nsp: false });
    const [l0, m0, l1, m1, n1] = [withNsp.loss, withNsp.mlm, without.loss, without.mlm, without.nsp].map((t) =>
      t.dataSync()[0]
    );
    tf.dispose([...Object.values(withNsp), ...Object.values(without)]);
    disposePretrainingBatch(batch);
    assertEquals([m1, n1, l1], [m0, 0, m0]);
    assert(l0 > m0, "with NSP the loss adds the next-sentence term");
    const metrics = evaluatePretraining(model, set);
    assert(Number.isNaN(metrics.nspAccuracy) && metrics.loss === metrics.mlmLoss);
  } finally {
    model.dispose();
  }
});

Deno.test("instancesToSet: refuses instances that do not fit", () => {
  const { docs, vocab } = syntheticCorpus(10, 4);
  const inst = createInstances(docs, vocab, { maxSeqLength: 40, seed: 1 });
  let threw = false;
  try {
    instancesToSet(inst, vocab, { maxSeqLength: 10 });
  } catch (err) {
    threw = (err as Error).message.includes("tokens > 10");
  }
  assert(threw);
});

// ---- training through lib/training/train.ts ----

function weightsOf(m: BertModel): Map<string, Float32Array> {
  return new Map([...m.params].map(([k, v]) => [k, v.dataSync() as Float32Array]));
}

Deno.test("pretrain: the loss falls, checkpoints load with a classification head, resume repeats the run", async () => {
  const tokenizer = await smallTokenizer();
  const dir = await Deno.makeTempDir();
  try {
    const vocabPath = `${dir}/vocab.txt`;
    await tokenizer.vocab.save(vocabPath);
    const corpus = parseCorpusText(TEXT);
    const data = { maxSeqLength: 24, maxPredictionsPerSeq: 4, seed: 8, dupeFactor: 6 };
    const set = createPretrainingData(corpus, tokenizer, data);
    const dev = createPretrainingData(corpus, tokenizer, { ...data, dupeFactor: 1, seed: 99 });
    const hp = { learningRate: 5e-3, batchSize: 8, maxSteps: 6, warmupRatio: 0, seed: 3, quiet: true };

    const full = tinyModel(tokenizer.vocab.size);
    const losses: number[] = [];
    const result = await pretrain({
      ...hp,
      model: full,
      vocabPath,
      train: set,
      dev,
      outputDir: `${dir}/full`,
      onProgress: (e) => {
        if (e.phase === "train") losses.push(e.loss);
      },
    });
    assertEquals(result.globalStep, 6);
    assert(losses[5] < losses[0], `loss did not fall: ${losses}`);
    const scalars = result.finalEval!.scalars;
    assert(Math.abs(scalars.loss - scalars.mlm_loss - scalars.nsp_loss) < 1e-6);
    assert(Math.abs(scalars.perplexity - Math.exp(scalars.mlm_loss)) < 1e-3);
    const state = JSON.parse(await Deno.readTextFile(`${result.lastCheckpoint}/trainer_state.json`));
    assertEquals(state.train_features.max_predictions_per_seq, 4);
    assertEquals(state.head, "pretraining");

    const { loadCheckpoint } = await import("../../../lib/model/checkpoint.ts");
    const loaded = await loadCheckpoint(result.lastCheckpoint, { head: "classification", numLabels: 2, quiet: true });
    const encoder = "bert.encoder.layer.0.output.dense.weight";
    assertEquals(loaded.model.params.get(encoder)!.dataSync(), full.params.get(encoder)!.dataSync());
    assert(loaded.report.unexpected.some((k) => k.startsWith("cls.")), "the MLM/NSP heads are not used");
    loaded.model.dispose();

    // Interrupted after update 4 (checkpoint at 2), then resumed: the same weights as the uninterrupted run.
    const broken = tinyModel(tokenizer.vocab.size);
    await assertRejects(
      () =>
        pretrain({
          ...hp,
          model: broken,
          vocabPath,
          train: set,
          dev,
          saveSteps: 2,
          outputDir: `${dir}/resumed`,
          onProgress: (e) => {
            if (e.phase === "train" && e.step === 4) throw new Error("power cut");
          },
        }),
      Error,
      "power cut",
    );
    broken.dispose();
    const resumed = tinyModel(tokenizer.vocab.size);
    const again = await pretrain({
      model: resumed,
      vocabPath,
      train: set,
      dev,
      outputDir: `${dir}/resumed`,
      resume: true,
      quiet: true,
    });
    assertEquals(again.resumedFrom, `${dir}/resumed/checkpoint-2`);
    const [a, b] = [weightsOf(full), weightsOf(resumed)];
    for (const [k, v] of a) assertEquals(b.get(k), v, k);
    resumed.dispose();
    full.dispose();

    // Data made with another vocabulary is refused before training.
    const other = new FullTokenizer(Vocab.fromTokens([...tokenizer.vocab.tokens.slice(0, -1), "zzz"]));
    const wrong = createPretrainingData(corpus, other, data);
    const m = tinyModel(tokenizer.vocab.size);
    await assertRejects(
      () => pretrain({ ...hp, model: m, vocabPath, train: wrong, outputDir: `${dir}/wrong` }),
      Error,
      "another vocabulary",
    );
    m.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task bert pretrain: a text corpus, a learned vocabulary, a checkpoint", async () => {
  const { parseArgs } = await import("../../../lib/cli/args.ts");
  const cli = await import("../../../lib/cli/pretrain.ts");
  const dir = await Deno.makeTempDir();
  try {
    const docs = Array.from({ length: 12 }, (_, i) => `${TEXT.split("\n\n")[i % 3]}\nDocument number ${i} ends here.`);
    await Deno.writeTextFile(`${dir}/corpus.txt`, docs.join("\n\n") + "\n");
    const argv = [
      "--corpus",
      `${dir}/corpus.txt`,
      "--vocab-size",
      "150",
      "--steps",
      "2",
      "--batch-size",
      "4",
      "--max-seq-length",
      "32",
      "--dupe-factor",
      "1",
      "--eval-fraction",
      "0.2",
      "--output",
      `${dir}/run`,
      "--backend",
      "cpu",
      "--quiet",
    ];
    await cli.run(parseArgs(argv, cli.spec));
    const vocab = await Vocab.load(`${dir}/run/vocab.txt`);
    assert(vocab.size <= 150 && vocab.id("[MASK]") !== undefined);
    const results = JSON.parse(await Deno.readTextFile(`${dir}/run/train_results.json`));
    assertEquals(results.global_step, 2);
    assert(typeof results.final_eval.mlm_accuracy === "number", "held-out documents were evaluated");
    const config = JSON.parse(await Deno.readTextFile(`${dir}/run/checkpoint-2/config.json`));
    assertEquals(config.architectures, ["BertForPreTraining"]);
    assertEquals([config.num_hidden_layers, config.hidden_size, config.vocab_size], [2, 128, vocab.size]);
    // Resuming the finished run is a no-op that finds the same data (same fingerprint).
    await cli.run(parseArgs([...argv, "--resume"], cli.spec));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("summarizePretrainingData: counts agree with the instances' own bookkeeping", () => {
  const { docs, vocab } = syntheticCorpus(60, 6);
  const options = { maxSeqLength: 40, seed: 2, maxPredictionsPerSeq: 10 };
  const instances = createInstances(docs, vocab, options);
  const s = summarizePretrainingData(instancesToSet(instances, vocab, options), vocab.maskId);
  const kinds = instances.flatMap((i) => i.mlmKinds);
  const count = (k: string) => kinds.filter((x) => x === k).length;
  assertEquals(s.instances, instances.length);
  assertEquals(s.predictions, kinds.length);
  assertEquals(s.tokens, instances.reduce((a, i) => a + i.inputIds.length, 0));
  assertEquals(s.maskShare, count("mask") / kinds.length);
  // A random replacement can draw the original token: it then counts as kept.
  const lucky =
    instances.flatMap((i) => i.mlmKinds.map((k, j) => k === "random" && i.inputIds[i.mlmPositions[j]] === i.mlmIds[j]))
      .filter(Boolean).length;
  assertEquals(s.keptShare, (count("keep") + lucky) / kinds.length);
  assertEquals(s.notNextShare, instances.filter((i) => i.isRandomNext).length / instances.length);
});
