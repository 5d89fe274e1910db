/**
 * lib/eval/embeddings.ts on tiny random models: hand-checkable properties (cosine, static vectors = embedding rows,
 * contextual vectors differ by context, layer choices add up, fill-mask probabilities against a full softmax,
 * attention rows sum to 1 over unmasked keys) and no tensor leaks.
 */
import { initBackend, tf } from "../../lib/backends/backend.ts";
import {
  attentionMaps,
  cosine,
  encodeText,
  fillMask,
  layerIndices,
  linearProbe,
  nextSentence,
  sentenceFeatures,
  staticVector,
  wordVectors,
} from "../../lib/eval/embeddings.ts";
import { BertModel, configFromJson } from "../../lib/model/model.ts";
import { FullTokenizer } from "../../lib/text/tokenizer.ts";
import { Vocab } from "../../lib/text/vocab.ts";
import { Rng } from "../../lib/training/rng.ts";
import { assert, assertEquals, assertThrows } from "../shared.ts";

await initBackend({ backend: "cpu", quiet: true });

const TOKENS = [
  "[PAD]",
  "[UNK]",
  "[CLS]",
  "[SEP]",
  "[MASK]",
  "the",
  "cat",
  "sat",
  "on",
  "mat",
  "bank",
  "river",
  "account",
  "of",
  "my",
  "open",
  "##ed",
  "money",
  ".",
];
const tokenizer = new FullTokenizer(Vocab.fromTokens(TOKENS));

function model(head: "pretraining" | "none", layers: number, hidden = 8, seed = 1): BertModel {
  return new BertModel(
    configFromJson({
      vocab_size: TOKENS.length,
      hidden_size: hidden,
      num_hidden_layers: layers,
      num_attention_heads: 2,
      intermediate_size: 2 * hidden,
      max_position_embeddings: 32,
      hidden_dropout_prob: 0.5, // must not matter: nothing here trains
      attention_probs_dropout_prob: 0.5,
      initializer_range: 0.5, // large weights: visibly different outputs on a tiny model
    }),
    { head, seed },
  );
}

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-5) =>
  a.length === b.length && Array.from(a).every((v, i) => Math.abs(v - b[i]) <= tol * (1 + Math.abs(b[i])));

Deno.test("cosine: 1 for the same direction, -1 opposite, 0 orthogonal or zero", () => {
  assert(Math.abs(cosine([1, 2, 3], [2, 4, 6]) - 1) < 1e-12);
  assert(Math.abs(cosine([1, 2, 3], [-1, -2, -3]) + 1) < 1e-12);
  assertEquals(cosine([1, 0], [0, 5]), 0);
  assertEquals(cosine([0, 0], [1, 1]), 0);
  assert(Math.abs(cosine([1, 1], [1, 0]) - Math.SQRT1_2) < 1e-12);
  assertThrows(() => cosine([1], [1, 2]), Error, "length 1 and 2");
});

Deno.test("encodeText: [CLS] a [SEP] b [SEP], segments, padding", () => {
  const e = encodeText(tokenizer, "the cat", { textB: "sat .", padTo: 9 });
  assertEquals(e.tokens, ["[CLS]", "the", "cat", "[SEP]", "sat", ".", "[SEP]", "[PAD]", "[PAD]"]);
  assertEquals(e.tokenTypeIds, [0, 0, 0, 0, 1, 1, 1, 0, 0]);
  assertEquals(e.attentionMask, [1, 1, 1, 1, 1, 1, 1, 0, 0]);
  assertThrows(() => encodeText(tokenizer, "the cat sat", { maxLength: 4 }), Error, "5 tokens long");
});

Deno.test("layerIndices: last, last four (or all when fewer), single layers", () => {
  assertEquals(layerIndices("last", 12), { indices: [12], concat: false });
  assertEquals(layerIndices("last4sum", 12), { indices: [9, 10, 11, 12], concat: false });
  assertEquals(layerIndices("last4concat", 12), { indices: [9, 10, 11, 12], concat: true });
  assertEquals(layerIndices("last4sum", 2), { indices: [1, 2], concat: false });
  assertEquals(layerIndices(0, 2), { indices: [0], concat: false });
  assertThrows(() => layerIndices(3, 2), Error, "layer 3 does not exist");
});

Deno.test("staticVector: the word-embedding row (mean of the pieces), whatever the context", () => {
  const m = model("none", 2);
  try {
    const table = m.params.get("bert.embeddings.word_embeddings.weight")!.arraySync() as number[][];
    assert(close(staticVector(m, tokenizer, "bank"), table[10]));
    assert(close(staticVector(m, tokenizer, "BANK"), table[10]), "lower-cased like the tokenizer");
    // "opened" = open + ##ed: the mean of both rows.
    assert(close(staticVector(m, tokenizer, "opened"), table[15].map((v, j) => (v + table[16][j]) / 2)));
    assertThrows(() => staticVector(m, tokenizer, "the bank"), Error, "give one word");
  } finally {
    m.dispose();
  }
});

Deno.test("wordVectors: contextual (differs by sentence), deterministic, layer choices add up", () => {
  const m = model("none", 5, 4);
  try {
    const river = wordVectors(m, tokenizer, "the bank of the river", "bank");
    const again = wordVectors(m, tokenizer, "the bank of the river", "bank");
    const account = wordVectors(m, tokenizer, "my bank account", "bank");
    assert(Math.abs(cosine(river, again) - 1) < 1e-6, "same sentence, same vector (no dropout)");
    assert(cosine(river, account) < 0.9999, "the context changes the vector");
    // last = layer 5; last4sum = layers 2..5 summed; last4concat = them side by side.
    const layer = (k: number) => wordVectors(m, tokenizer, "my bank account", "bank", { layers: k });
    assert(close(account, layer(5)));
    const sum = wordVectors(m, tokenizer, "my bank account", "bank", { layers: "last4sum" });
    assert(close(sum, [0, 1, 2, 3].map((j) => [2, 3, 4, 5].reduce((a, k) => a + layer(k)[j], 0)), 1e-4));
    const concat = wordVectors(m, tokenizer, "my bank account", "bank", { layers: "last4concat" });
    assertEquals(concat.length, 16);
    assert(close(concat, [2, 3, 4, 5].flatMap((k) => Array.from(layer(k)))));
    // A word of two pieces: the mean of its two hidden states, from an independent forward pass.
    const opened = wordVectors(m, tokenizer, "my bank opened", "opened", { layers: 3 });
    const e = encodeText(tokenizer, "my bank opened");
    const hs = m.forward({
      inputIds: tf.tensor2d(e.ids, [1, e.ids.length], "int32"),
      tokenTypeIds: tf.tensor2d(e.tokenTypeIds, [1, e.ids.length], "int32"),
      attentionMask: tf.tensor2d(e.attentionMask, [1, e.ids.length], "int32"),
    }, { outputHiddenStates: true }).hiddenStates![3].arraySync() as number[][][];
    assertEquals(e.tokens.slice(3, 5), ["open", "##ed"]);
    assert(close(opened, hs[0][3].map((v, j) => (v + hs[0][4][j]) / 2), 1e-4));
    // Second occurrence, and clear errors.
    const first = wordVectors(m, tokenizer, "the bank of the river", "the");
    const second = wordVectors(m, tokenizer, "the bank of the river", "the", { occurrence: 1 });
    assert(cosine(first, second) < 0.9999, "position matters");
    assertThrows(() => wordVectors(m, tokenizer, "the cat", "bank"), Error, 'occurs 0 time(s) in "the cat"');
    assertThrows(() => wordVectors(m, tokenizer, "the cat", "the", { occurrence: 1 }), Error, "occurrence 1");
  } finally {
    m.dispose();
  }
});

Deno.test("fillMask: top-k sorted, probabilities of the full softmax, one result per [MASK]", () => {
  const m = model("pretraining", 2);
  try {
    const results = fillMask(m, tokenizer, "the [MASK] sat on the [MASK] .", { topK: 4 });
    assertEquals(results.map((r) => r.position), [2, 6]);
    // Reference: logits at every position (no mlmPositions), softmax here.
    const e = encodeText(tokenizer, "the [MASK] sat on the [MASK] .");
    const out = m.forward({
      inputIds: tf.tensor2d(e.ids, [1, e.ids.length], "int32"),
      tokenTypeIds: tf.tensor2d(e.tokenTypeIds, [1, e.ids.length], "int32"),
      attentionMask: tf.tensor2d(e.attentionMask, [1, e.ids.length], "int32"),
    });
    const logits = out.mlmLogits!.arraySync() as number[][][];
    for (const r of results) {
      const row = logits[0][r.position];
      const max = Math.max(...row);
      const z = row.reduce((a, v) => a + Math.exp(v - max), 0);
      const probs = row.map((v) => Math.exp(v - max) / z);
      const order = probs.map((p, id) => ({ p, id })).sort((a, b) => b.p - a.p);
      assertEquals(r.predictions.map((p) => p.id), order.slice(0, 4).map((o) => o.id));
      r.predictions.forEach((p, j) => {
        assert(Math.abs(p.probability - order[j].p) < 1e-5);
        assertEquals(p.token, TOKENS[p.id]);
        if (j > 0) assert(p.probability <= r.predictions[j - 1].probability, "sorted");
      });
      const total = r.predictions.reduce((a, p) => a + p.probability, 0);
      assert(total <= 1 + 1e-6 && total > 0);
    }
    // [MASK] glued to punctuation still counts as a mask.
    assertEquals(fillMask(m, tokenizer, "the cat sat on the [MASK].")[0].position, 6);
    const all = fillMask(m, tokenizer, "[MASK] cat", { topK: 100 })[0].predictions;
    assertEquals(all.length, TOKENS.length);
    assert(Math.abs(all.reduce((a, p) => a + p.probability, 0) - 1) < 1e-5, "the whole vocabulary sums to 1");
    assertThrows(() => fillMask(m, tokenizer, "no mask here"), Error, "has no [MASK]");
    const plain = model("none", 1);
    assertThrows(() => fillMask(plain, tokenizer, "[MASK]"), Error, '"pretraining"');
    plain.dispose();
  } finally {
    m.dispose();
  }
});

Deno.test("nextSentence: a probability from the NSP head, order of the pair matters", () => {
  const m = model("pretraining", 2);
  try {
    const p = nextSentence(m, tokenizer, "the cat sat on the mat .", "the bank of the river .");
    assert(p > 0 && p < 1);
    const e = encodeText(tokenizer, "the cat sat on the mat .", { textB: "the bank of the river ." });
    const logits = m.forward({
      inputIds: tf.tensor2d(e.ids, [1, e.ids.length], "int32"),
      tokenTypeIds: tf.tensor2d(e.tokenTypeIds, [1, e.ids.length], "int32"),
      attentionMask: tf.tensor2d(e.attentionMask, [1, e.ids.length], "int32"),
    }).nspLogits!.dataSync();
    assert(Math.abs(p - 1 / (1 + Math.exp(logits[1] - logits[0]))) < 1e-6);
    assert(Math.abs(p - nextSentence(m, tokenizer, "the bank of the river .", "the cat sat on the mat .")) > 1e-7);
  } finally {
    m.dispose();
  }
});

Deno.test("attentionMaps: [layer][head][query][key], rows sum to 1 over unmasked keys, [PAD] gets none", () => {
  const m = model("none", 3);
  try {
    const maps = attentionMaps(m, tokenizer, "the cat sat", { textB: "on the mat", padTo: 12 });
    assertEquals(maps.tokens.length, 12);
    assertEquals(maps.tokens.slice(-2), ["[PAD]", "[PAD]"]);
    assertEquals(maps.weights.length, 3);
    for (const layer of maps.weights) {
      assertEquals(layer.length, 2);
      for (const head of layer) {
        assertEquals(head.length, 12);
        for (const row of head) {
          assertEquals(row.length, 12);
          assert(Math.abs(row.slice(0, 10).reduce((a, v) => a + v, 0) - 1) < 1e-5, "sums to 1 over real tokens");
          assert(row[10] < 1e-12 && row[11] < 1e-12, "no attention to [PAD]");
        }
      }
    }
  } finally {
    m.dispose();
  }
});

Deno.test("sentenceFeatures: padding-independent, cls vs mean pooling, widths", () => {
  const m = model("none", 5, 4);
  try {
    const texts = ["the cat sat on the mat .", "my bank", "the river"];
    const batched = sentenceFeatures(m, tokenizer, texts, { batchSize: 3 });
    const single = texts.map((t) => sentenceFeatures(m, tokenizer, [t])[0]);
    batched.forEach((v, i) => assert(close(v, single[i], 1e-4), `text ${i}: padding changed the features`));
    assertEquals(sentenceFeatures(m, tokenizer, texts, { layers: "last4concat" })[0].length, 16);
    // cls pooling of the last layer = the [CLS] vector of a single forward pass.
    const cls = sentenceFeatures(m, tokenizer, ["my bank"], { pooling: "cls" })[0];
    const e = encodeText(tokenizer, "my bank");
    const last = m.forward({
      inputIds: tf.tensor2d(e.ids, [1, e.ids.length], "int32"),
      tokenTypeIds: tf.tensor2d(e.tokenTypeIds, [1, e.ids.length], "int32"),
      attentionMask: tf.tensor2d(e.attentionMask, [1, e.ids.length], "int32"),
    }).lastHiddenState.arraySync() as number[][][];
    assert(close(cls, last[0][0], 1e-4));
  } finally {
    m.dispose();
  }
});

Deno.test("linearProbe: separable data is learned perfectly, XOR is not, deterministic", () => {
  const rng = new Rng(5);
  /** Random points labelled by `label`; a null label (too close to a boundary) leaves the point out. */
  const points = (n: number, label: (x: number, y: number) => number | null) => {
    const x: number[][] = [], y: number[] = [];
    for (let i = 0; i < n; i++) {
      const a = 2 * rng.next() - 1, b = 2 * rng.next() - 1, c = label(a, b);
      if (c === null) continue;
      x.push([a, b, rng.next()]);
      y.push(c);
    }
    return { x, y };
  };
  const line = (a: number, b: number) => (Math.abs(a + b) < 0.2 ? null : a + b > 0 ? 1 : 0);
  const r = linearProbe(points(200, line), points(100, line));
  assertEquals([r.trainAccuracy, r.devAccuracy], [1, 1]);
  const xor = (a: number, b: number) => (a * b > 0 ? 1 : 0);
  const bad = linearProbe(points(300, xor), points(200, xor));
  assert(bad.devAccuracy < 0.75, `XOR is not linearly separable, got ${bad.devAccuracy}`);
  const three = (a: number, b: number) => (Math.abs(a) < 0.2 || Math.abs(b) < 0.2 ? null : a > 0 ? 2 : b > 0 ? 1 : 0);
  const [train3, dev3] = [points(300, three), points(100, three)];
  const multi = linearProbe(train3, dev3);
  assert(multi.devAccuracy > 0.95, `3 classes: ${multi.devAccuracy}`);
  assertEquals(linearProbe(train3, dev3), multi);
});

Deno.test("no tensors leak across repeated calls", () => {
  const m = model("pretraining", 2);
  try {
    const run = () => {
      fillMask(m, tokenizer, "the [MASK] sat");
      nextSentence(m, tokenizer, "the cat", "sat");
      attentionMaps(m, tokenizer, "the cat", { padTo: 6 });
      wordVectors(m, tokenizer, "the bank", "bank", { layers: "last4concat" });
      staticVector(m, tokenizer, "opened");
      sentenceFeatures(m, tokenizer, ["the cat", "my bank account"], { pooling: "cls" });
    };
    run();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) run();
    assertEquals(tf.memory().numTensors, before);
  } finally {
    m.dispose();
  }
});
