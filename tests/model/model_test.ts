/**
 * lib/model/model.ts: numerical parity with an independent PyTorch BERT (golden files in ../shared/golden/model) on the
 * cpu and wasm backends, the whole model's gradients against finite differences, tiny hand-checkable configurations,
 * and tensor leaks (its building blocks, lib/model/layers.ts: tests/model/layers_test.ts).
 */
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { BertConfig, BertModel, configFromJson, configToJson, softmaxCrossEntropy } from "../../lib/model/model.ts";
import { loadCheckpoint } from "../../lib/model/checkpoint.ts";
import { registerBlasBackend } from "../../lib/backends/blas/blas_backend.ts";
import { clearPool, poolStats } from "../../lib/backends/blas/pool.ts";
import { AdamW } from "../../lib/training/optim.ts";
import { readSafetensors } from "../../lib/io/safetensors.ts";
import { assert, assertEquals, assertThrows, HAVE_SHARED, maxAbsDiff, SHARED } from "../shared.ts";

/** The blas backend (lib/backends/blas/blas_backend.ts) joins the comparisons when a CBLAS library can be opened. */
const HAVE_BLAS = registerBlasBackend() !== undefined;
if (!HAVE_BLAS) {
  console.warn("model_test: no CBLAS library could be opened (e.g. libopenblas0-pthread): blas comparisons skipped");
}
type TestBackend = "cpu" | "wasm" | "blas";
const BACKENDS: TestBackend[] = HAVE_BLAS ? ["cpu", "wasm", "blas"] : ["cpu", "wasm"];
const TOLERANCE = 1e-4;

function assertAlmostEquals(actual: number, expected: number, tolerance: number, message?: string): void {
  assert(
    Math.abs(actual - expected) <= tolerance,
    `${message ? message + ": " : ""}expected ${expected} ± ${tolerance}, got ${actual}`,
  );
}

async function useBackend(name: TestBackend): Promise<void> {
  await initBackend({ backend: name, quiet: true });
  assertEquals(tf.getBackend(), name);
}

/** A tiny config (hidden 4, vocab 10) for hand-checkable tests. */
function tinyConfig(overrides: Partial<BertConfig> = {}): BertConfig {
  return {
    ...configFromJson({
      vocab_size: 10,
      hidden_size: 4,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      intermediate_size: 8,
      max_position_embeddings: 16,
      type_vocab_size: 2,
    }),
    ...overrides,
  };
}

function int2d(rows: number[][]): tf.Tensor2D {
  return tf.tensor2d(rows, undefined, "int32");
}

// ---------------------------------------------------------------------------------------------------------------
// Golden parity

interface GoldenCase {
  name: string;
  checkpoint: string;
  golden: string;
  head: "classification" | "pretraining";
  layers: number;
}

const GOLDEN: GoldenCase[] = [
  {
    name: "tiny-random BertForSequenceClassification",
    checkpoint: `${SHARED}/data/models/tiny-random-BertForSequenceClassification.FALLBACK-RANDOM-WEIGHTS`,
    golden: `${SHARED}/golden/model/tiny-random-cls.golden.safetensors`,
    head: "classification",
    layers: 5,
  },
  {
    name: "BERT-Tiny-shaped BertForPreTraining",
    checkpoint: `${SHARED}/golden/model/bert-tiny-shape-random-pretraining`,
    golden: `${SHARED}/golden/model/bert-tiny-shape-pretraining.golden.safetensors`,
    head: "pretraining",
    layers: 2,
  },
];

for (const backend of BACKENDS) {
  for (const c of GOLDEN) {
    Deno.test({
      name: `golden parity (${backend}): ${c.name}: every output within ${TOLERANCE} of PyTorch`,
      ignore: !HAVE_SHARED,
      fn: async () => {
        await useBackend(backend);
        const golden = (await readSafetensors(c.golden)).tensors;
        const { model } = await loadCheckpoint(c.checkpoint, { head: c.head, quiet: true });
        const ints = (k: string) =>
          tf.tensor(golden[k].data as Int32Array, golden[k].shape as [number, number], "int32") as tf.Tensor2D;
        const inputs = {
          inputIds: ints("input_ids"),
          tokenTypeIds: ints("token_type_ids"),
          attentionMask: ints("attention_mask"),
        };
        const mlmPositions = golden.mlm_positions ? ints("mlm_positions") : undefined;
        const t0 = performance.now();
        const out = model.forward(inputs, { outputHiddenStates: true, mlmPositions });
        const got: Record<string, tf.Tensor> = { pooled_output: out.pooledOutput! };
        out.hiddenStates!.forEach((h, i) => got[`hidden_states.${i}`] = h);
        if (out.logits) got.classifier_logits = out.logits;
        if (out.nspLogits) got.nsp_logits = out.nspLogits;
        if (out.mlmLogits) got.mlm_logits_at_positions = out.mlmLogits;
        const values = Object.fromEntries(Object.entries(got).map(([k, t]) => [k, t.dataSync()]));
        const ms = performance.now() - t0;
        const expectedNames = Object.keys(golden).filter((k) => golden[k].dtype === "F32");
        assertEquals(Object.keys(got).sort(), expectedNames.sort());
        assertEquals(out.hiddenStates!.length, c.layers + 1);
        const lines: string[] = [];
        for (const name of expectedNames) {
          assertEquals(got[name].shape, golden[name].shape, `${name} shape`);
          const err = maxAbsDiff(values[name], golden[name].data as Float32Array);
          lines.push(`  ${name.padEnd(26)} max |err| ${err.toExponential(2)}`);
          assert(err <= TOLERANCE, `${name}: max abs error ${err} > ${TOLERANCE} on ${backend}`);
        }
        console.log(`${c.name} on ${backend} (forward + read-back ${ms.toFixed(0)} ms):\n${lines.join("\n")}`);
        tf.dispose([out, inputs, mlmPositions]);
        model.dispose();
      },
    });
  }
}

if (!HAVE_SHARED) console.warn(`model_test: ${SHARED} absent: golden parity tests skipped`);

// ---------------------------------------------------------------------------------------------------------------
// The whole model's gradients against central finite differences (the layers' own: tests/model/layers_test.ts)

for (const head of ["classification", "question-answering", "pretraining"] as const) {
  Deno.test(`whole model (${head}): every parameter's gradient agrees with a central finite difference (cpu)`, async () => {
    await useBackend("cpu");
    const model = new BertModel(tinyConfig({ initializerRange: 0.5 }), { head, numLabels: 3, seed: 3 });
    const inputs = {
      inputIds: int2d([[2, 5, 7, 3, 0], [2, 9, 3, 4, 3]]),
      tokenTypeIds: int2d([[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]]),
      attentionMask: int2d([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]),
    };
    const labels = tf.tensor1d([2, 0], "int32");
    const positions = int2d([[1, 2], [3, 1]]);
    const mlmLabels = int2d([[4, -100], [8, 1]]);
    const loss = () => {
      if (head === "classification") return softmaxCrossEntropy(model.forward(inputs).logits!, labels);
      if (head === "question-answering") {
        const out = model.forward(inputs);
        return tf.add(softmaxCrossEntropy(out.startLogits!, labels), softmaxCrossEntropy(out.endLogits!, labels));
      }
      const out = model.forward(inputs, { mlmPositions: positions });
      return tf.add(
        softmaxCrossEntropy(out.mlmLogits!, mlmLabels),
        softmaxCrossEntropy(out.nspLogits!, tf.onesLike(labels)),
      );
    };
    const { grads } = tf.variableGrads(loss as () => tf.Scalar, model.variables());
    let i = 0;
    for (const [name, v] of model.params) {
      // Directional derivative along a random direction d: <grad, d> vs (L(v + h d) - L(v - h d)) / 2h.
      const d = tf.randomNormal(v.shape, 0, 1, "float32", i++);
      const analytic = tf.tidy(() => tf.sum(tf.mul(grads[v.name], d)).dataSync()[0]);
      const original = tf.clone(v);
      const at = (t: number) => {
        v.assign(tf.tidy(() => tf.add(original, tf.mul(d, t))));
        return tf.tidy(() => loss().dataSync()[0]);
      };
      const h = 1e-3;
      const numeric = (at(h) - at(-h)) / (2 * h);
      v.assign(original);
      tf.dispose([original, d]);
      assert(
        Math.abs(numeric - analytic) <= 2e-3 + 1e-2 * Math.abs(analytic),
        `${name}: finite difference ${numeric}, gradient ${analytic}`,
      );
    }
    tf.dispose([grads, inputs, labels, positions, mlmLabels]);
    model.dispose();
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Tiny configurations

Deno.test("configFromJson: HF and Google configs, defaults and clear errors", () => {
  const google = {
    attention_probs_dropout_prob: 0.1,
    hidden_act: "gelu",
    hidden_dropout_prob: 0.1,
    hidden_size: 128,
    initializer_range: 0.02,
    intermediate_size: 512,
    max_position_embeddings: 512,
    num_attention_heads: 2,
    num_hidden_layers: 2,
    type_vocab_size: 2,
    vocab_size: 30522,
  };
  const c = configFromJson(google, "bert_config.json");
  assertEquals([c.hiddenSize, c.numHiddenLayers, c.layerNormEps, c.padTokenId], [128, 2, 1e-12, 0]);
  const json = configToJson(c, { head: "classification", labels: ["neg", "pos"] });
  assertEquals(json.model_type, "bert");
  assertEquals(json.architectures, ["BertForSequenceClassification"]);
  assertEquals(json.id2label, { "0": "neg", "1": "pos" });
  assertEquals(json.label2id, { neg: 0, pos: 1 });
  assertEquals(configFromJson(json).id2label, { "0": "neg", "1": "pos" });
  assertEquals(configToJson(c, { numLabels: 3 }).id2label, { "0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2" });
  for (const act of ["gelu_new", "gelu_pytorch_tanh", "relu"]) configFromJson({ ...google, hidden_act: act });
  assertThrows(() => configFromJson({ ...google, hidden_act: "swish" }, "x.json"), Error, 'x.json: hidden_act "swish"');
  assertThrows(
    () => configFromJson({ ...google, hidden_size: undefined }, "x.json"),
    Error,
    '"hidden_size" is missing',
  );
  assertThrows(() => configFromJson({ ...google, num_attention_heads: 3 }), Error, "not a multiple");
  assertThrows(() => configFromJson({ ...google, model_type: "roberta" }), Error, 'only "bert"');
  assertThrows(() => configFromJson({ ...google, vocab_size: "big" }), Error, '"vocab_size" must be');
});

Deno.test("tiny model: output shapes for every head, no pooler for question answering", async () => {
  await useBackend("wasm");
  const inputs = {
    inputIds: int2d([[2, 5, 7, 3], [2, 9, 3, 0]]),
    tokenTypeIds: int2d([[0, 0, 0, 0], [0, 0, 1, 1]]),
    attentionMask: int2d([[1, 1, 1, 1], [1, 1, 1, 0]]),
  };
  const cls = new BertModel(tinyConfig(), { head: "classification", numLabels: 3 });
  const o1 = cls.forward(inputs, { outputHiddenStates: true, outputAttentions: true });
  assertEquals(o1.lastHiddenState.shape, [2, 4, 4]);
  assertEquals(o1.pooledOutput!.shape, [2, 4]);
  assertEquals(o1.logits!.shape, [2, 3]);
  assertEquals(o1.hiddenStates!.length, 3);
  assertEquals(o1.attentions!.map((a) => a.shape), [[2, 2, 4, 4], [2, 2, 4, 4]]);
  assertEquals(maxAbsDiff(o1.hiddenStates![2].dataSync(), o1.lastHiddenState.dataSync()), 0);

  const qa = new BertModel(tinyConfig(), { head: "question-answering" });
  assert(!qa.params.has("bert.pooler.dense.weight"));
  const o2 = qa.forward(inputs);
  assertEquals([o2.startLogits!.shape, o2.endLogits!.shape, o2.pooledOutput], [[2, 4], [2, 4], undefined]);

  const pre = new BertModel(tinyConfig(), { head: "pretraining" });
  const o3 = pre.forward(inputs);
  assertEquals([o3.mlmLogits!.shape, o3.nspLogits!.shape], [[2, 4, 10], [2, 2]]);
  // MLM logits at chosen positions equal the full logits at those positions.
  const positions = int2d([[1, 3], [0, 2]]);
  const o4 = pre.forward(inputs, { mlmPositions: positions });
  const full = o3.mlmLogits!.arraySync();
  const picked = o4.mlmLogits!.arraySync();
  [[1, 3], [0, 2]].forEach((row, b) =>
    row.forEach((p, j) => assert(maxAbsDiff(picked[b][j], full[b][p]) < 1e-6, `mlm position ${b},${p}`))
  );
  assertThrows(() => cls.forward(inputs, { mlmPositions: positions }), Error, "pretraining head");
  const base = new BertModel(tinyConfig(), { head: "none" });
  const o5 = base.forward(inputs);
  assertEquals(Object.keys(o5).sort(), ["lastHiddenState", "pooledOutput"]);
  tf.dispose([o1, o2, o3, o4, o5, inputs, positions]);
  for (const m of [cls, qa, pre, base]) m.dispose();
});

Deno.test("tiny model: HF-style initialisation (seeded, zero [PAD] row, LayerNorm 1/0, zero biases)", async () => {
  await useBackend("wasm");
  const a = new BertModel(tinyConfig({ padTokenId: 0 }), { head: "classification", seed: 5 });
  const b = new BertModel(tinyConfig({ padTokenId: 0 }), { head: "classification", seed: 5 });
  const c = new BertModel(tinyConfig({ padTokenId: 0 }), { head: "classification", seed: 6 });
  const words = a.params.get("bert.embeddings.word_embeddings.weight")!.arraySync() as number[][];
  assertEquals(words[0], [0, 0, 0, 0]);
  assert(words[1].some((v) => v !== 0));
  assertEquals(Array.from(a.params.get("bert.embeddings.LayerNorm.weight")!.dataSync()), [1, 1, 1, 1]);
  assertEquals(Array.from(a.params.get("bert.encoder.layer.0.attention.self.query.bias")!.dataSync()), [0, 0, 0, 0]);
  const q = (m: BertModel) => m.params.get("bert.encoder.layer.1.intermediate.dense.weight")!.dataSync();
  assertEquals(Array.from(q(a)), Array.from(q(b)));
  assert(maxAbsDiff(q(a), q(c)) > 0);
  assertEquals(a.params.get("bert.encoder.layer.1.intermediate.dense.weight")!.shape, [4, 8]); // [in, out]
  assert(a.transposed.has("classifier.weight") && !a.transposed.has("bert.embeddings.word_embeddings.weight"));
  // std close to initializer_range on a larger draw
  const big = new BertModel(tinyConfig({ vocabSize: 2000, hiddenSize: 8 }), { head: "none" });
  const w = big.params.get("bert.embeddings.word_embeddings.weight")!.dataSync() as Float32Array;
  const std = Math.sqrt(w.reduce((s, v) => s + v * v, 0) / w.length);
  assertAlmostEquals(std, 0.02, 0.001);
  for (const m of [a, b, c, big]) m.dispose();
});

Deno.test("initialisation: the same seed gives the same weights, seed 0 (the default) included", async () => {
  await useBackend("cpu");
  for (const seed of [undefined, 0, 1, -1]) {
    const a = new BertModel(tinyConfig(), { head: "pretraining", seed });
    const b = new BertModel(tinyConfig(), { head: "pretraining", seed });
    for (const [name, p] of a.params) {
      assertEquals(Array.from(p.dataSync()), Array.from(b.params.get(name)!.dataSync()), `seed ${seed}: ${name}`);
    }
    a.dispose();
    b.dispose();
  }
  // Seed 0's stand-in stream is its own: its first weights are not seed 1's.
  const [m0, m1] = [0, 1].map((seed) => new BertModel(tinyConfig(), { head: "pretraining", seed }));
  const first = m0.params.keys().next().value!;
  assert(
    m0.params.get(first)!.dataSync().some((v, i) => v !== m1.params.get(first)!.dataSync()[i]),
    `seeds 0 and 1 gave the same ${first}`,
  );
  m0.dispose();
  m1.dispose();
});

Deno.test("attention: zero query/key weights give uniform attention over unmasked tokens only", async () => {
  await useBackend("wasm");
  const model = new BertModel(tinyConfig(), { head: "none", seed: 1 });
  for (const [name, v] of model.params) {
    if (/attention\.self\.(query|key)\.weight$/.test(name)) v.assign(tf.zerosLike(v));
  }
  const inputs = {
    inputIds: int2d([[2, 5, 7, 3, 0, 0], [2, 9, 3, 4, 6, 3]]),
    tokenTypeIds: int2d([[0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1]]),
    attentionMask: int2d([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]),
  };
  const out = model.forward(inputs, { outputAttentions: true });
  for (const probs of out.attentions!) {
    const p = probs.arraySync();
    for (let h = 0; h < 2; h++) {
      for (let i = 0; i < 6; i++) {
        assertEquals(p[0][h][i].map((x) => Number(x.toFixed(6))), [0.25, 0.25, 0.25, 0.25, 0, 0]);
        p[1][h][i].forEach((x) => assertAlmostEquals(x, 1 / 6, 1e-6));
      }
    }
  }
  tf.dispose([out, inputs]);
  model.dispose();
});

Deno.test("padding: changing padded tokens does not change the outputs at real tokens", async () => {
  await useBackend("wasm");
  const model = new BertModel(tinyConfig({ initializerRange: 0.5 }), { head: "classification", seed: 2 });
  const run = (ids: number[][], types: number[][]) =>
    tf.tidy(() => {
      const out = model.forward({
        inputIds: int2d(ids),
        tokenTypeIds: int2d(types),
        attentionMask: int2d([[1, 1, 1, 0, 0]]),
      });
      return [tf.slice(out.lastHiddenState, [0, 0, 0], [1, 3, 4]).dataSync(), out.logits!.dataSync()];
    });
  const [h1, l1] = run([[2, 5, 3, 0, 0]], [[0, 0, 0, 0, 0]]);
  const [h2, l2] = run([[2, 5, 3, 8, 9]], [[0, 0, 0, 1, 1]]);
  assert(maxAbsDiff(h1, h2) < 1e-6 && maxAbsDiff(l1, l2) < 1e-6);
  model.dispose();
});

Deno.test("clsOnly: the last layer at [CLS] only gives the full forward's logits and [CLS] state, on every backend", async () => {
  for (const backend of BACKENDS) {
    await useBackend(backend);
    for (const layers of [1, 2]) {
      const model = new BertModel(tinyConfig({ initializerRange: 0.5, numHiddenLayers: layers }), {
        head: "classification",
        numLabels: 3,
        seed: 4,
      });
      const inputs = {
        inputIds: int2d([[2, 5, 3, 7, 1, 0], [4, 4, 9, 0, 0, 0], [1, 2, 3, 4, 5, 6]]),
        tokenTypeIds: int2d([[0, 0, 0, 1, 1, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1]]),
        attentionMask: int2d([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]]),
      };
      const before = tf.memory().numTensors;
      const [full, cls] = [false, true].map((clsOnly) =>
        tf.tidy(() => {
          const out = model.forward(inputs, { clsOnly });
          const first = tf.slice(out.lastHiddenState, [0, 0, 0], [3, 1, 4]);
          return { shape: out.lastHiddenState.shape, first: first.dataSync(), logits: out.logits!.dataSync() };
        })
      );
      assertEquals(tf.memory().numTensors, before, `${backend}: tensors left behind`);
      assertEquals(cls.shape, [3, 1, 4]);
      assert(maxAbsDiff(cls.logits, full.logits) < 1e-5, `${backend}, ${layers} layers: logits differ`);
      assert(maxAbsDiff(cls.first, full.first) < 1e-5, `${backend}, ${layers} layers: [CLS] states differ`);
      assert(maxAbsDiff(cls.logits, new Float32Array(9)) > 1e-3, "logits must not be trivially zero");
      for (const bad of [{ outputHiddenStates: true }, { outputAttentions: true }]) {
        assertThrows(() => model.forward(inputs, { clsOnly: true, ...bad }), Error, "the classification head");
      }
      // Training: the same loss and gradients, dropout included (the [CLS] rows draw the masks the whole layer would).
      const labels = tf.tensor1d([0, 2, 1], "int32");
      const [fullGrad, clsGrad] = [false, true].map((clsOnly) =>
        tf.tidy(() => {
          const { value, grads } = tf.variableGrads(() =>
            softmaxCrossEntropy(model.forward(inputs, { training: true, seed: 11, clsOnly }).logits!, labels)
          );
          return { loss: value.dataSync()[0], grads: Object.values(grads).map((g) => g.dataSync()) };
        })
      );
      labels.dispose();
      assert(
        Math.abs(clsGrad.loss - fullGrad.loss) < 1e-6,
        `${backend}: training loss ${clsGrad.loss} vs ${fullGrad.loss}`,
      );
      assertEquals(clsGrad.grads.length, fullGrad.grads.length);
      let worst = 0, norm = 0;
      clsGrad.grads.forEach((g, i) => {
        worst = Math.max(worst, maxAbsDiff(g, fullGrad.grads[i]));
        norm = Math.max(norm, ...fullGrad.grads[i].map(Math.abs));
      });
      assert(
        norm > 1e-3 && worst < 1e-5 * Math.max(1, norm),
        `${backend}, ${layers} layers: gradients differ by ${worst}`,
      );
      model.dispose();
    }
  }
  const qa = new BertModel(tinyConfig(), { head: "question-answering" });
  const ids = int2d([[2, 5, 3]]);
  assertThrows(
    () => qa.forward({ inputIds: ids, tokenTypeIds: ids, attentionMask: ids }, { clsOnly: true }),
    Error,
    "not the question-answering head",
  );
  ids.dispose();
  qa.dispose();
});

Deno.test("dropout: only when training, seeded and repeatable", async () => {
  await useBackend("wasm");
  const model = new BertModel(tinyConfig({ hiddenDropoutProb: 0.3, attentionProbsDropoutProb: 0.3 }), {
    head: "classification",
    seed: 4,
  });
  const inputs = {
    inputIds: int2d([[2, 5, 7, 3]]),
    tokenTypeIds: int2d([[0, 0, 0, 0]]),
    attentionMask: int2d([[1, 1, 1, 1]]),
  };
  const logits = (options: { training?: boolean; seed?: number }) =>
    tf.tidy(() => model.forward(inputs, options).logits!.dataSync());
  assertEquals(logits({}), logits({}));
  assertEquals(logits({ training: true, seed: 1 }), logits({ training: true, seed: 1 }));
  assert(maxAbsDiff(logits({ training: true, seed: 1 }), logits({ training: true, seed: 2 })) > 0);
  assert(maxAbsDiff(logits({ training: true, seed: 1 }), logits({})) > 0);
  assert(maxAbsDiff(logits({ training: true }), logits({ training: true })) > 0, "unseeded calls differ");
  tf.dispose(inputs);
  model.dispose();
});

Deno.test("forward validates its inputs", async () => {
  await useBackend("wasm");
  const model = new BertModel(tinyConfig(), { head: "classification" });
  const ids = int2d([[2, 5, 7, 3]]);
  assertThrows(
    () => model.forward({ inputIds: ids, tokenTypeIds: int2d([[0, 0, 0]]), attentionMask: ids }),
    Error,
    "tokenTypeIds has shape [1,3], expected [1, 4]",
  );
  const long = tf.zeros([1, 17], "int32") as tf.Tensor2D;
  assertThrows(
    () => model.forward({ inputIds: long, tokenTypeIds: long, attentionMask: long }),
    Error,
    "exceeds max_position_embeddings 16",
  );
  assertThrows(() => new BertModel(tinyConfig(), { head: "nonsense" as "none" }), Error, "unknown head");
  tf.dispose([ids, long]);
  model.dispose();
});

// ---------------------------------------------------------------------------------------------------------------
// Memory

Deno.test("memory: repeated forward passes, tidy calls and gradient steps do not leak tensors", async () => {
  for (const backend of BACKENDS) {
    await useBackend(backend);
    const model = new BertModel(tinyConfig(), { head: "pretraining" });
    const inputs = {
      inputIds: int2d([[2, 5, 7, 3], [2, 9, 3, 0]]),
      tokenTypeIds: int2d([[0, 0, 0, 0], [0, 0, 1, 1]]),
      attentionMask: int2d([[1, 1, 1, 1], [1, 1, 1, 0]]),
    };
    const labels = tf.tensor1d([0, 1], "int32");
    const step = () => {
      const out = model.forward(inputs, { outputHiddenStates: true, outputAttentions: true });
      tf.dispose(out);
      tf.tidy(() => model.forward(inputs, { training: true }).nspLogits!.dataSync());
      const { value, grads } = tf.variableGrads(() =>
        softmaxCrossEntropy(model.forward(inputs, { training: true }).nspLogits!, labels)
      );
      tf.dispose([value, grads]);
    };
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) step();
    assertEquals(tf.memory().numTensors, before, `tensor count grew on ${backend}`);
    tf.dispose([inputs, labels]);
    model.dispose();
  }
});

Deno.test({
  name:
    "memory: inference frees each layer's activations as it goes, with the same bits as under a gradient tape (blas)",
  ignore: !HAVE_BLAS,
  fn: async () => {
    await useBackend("blas");
    // Arrays of 2 x 32 x 64 floats and more go through the blas pool (lib/backends/blas/pool.ts).
    const config = (layers: number) =>
      tinyConfig({
        vocabSize: 50,
        hiddenSize: 64,
        numHiddenLayers: layers,
        numAttentionHeads: 4,
        intermediateSize: 256,
        maxPositionEmbeddings: 64,
      });
    const ids = Array.from({ length: 2 }, (_, b) => Array.from({ length: 32 }, (_, t) => (7 * b + 3 * t) % 48 + 2));
    const inputs = {
      inputIds: int2d(ids),
      tokenTypeIds: int2d(ids.map((r) => r.map((_, t) => t < 16 ? 0 : 1))),
      attentionMask: int2d(ids.map((r, b) => r.map((_, t) => b === 1 && t >= 28 ? 0 : 1))),
    };
    // New arrays a first forward pass needs: with one layer's activations alive at a time, layers 2-6 reuse layer
    // 1's arrays (kept: each layer's output, for the hidden states); with every layer's kept to the end of the pass
    // (as before), each layer would add about ten.
    const allocated: number[] = [];
    for (const layers of [1, 6]) {
      const model = new BertModel(config(layers), { head: "classification", seed: 3 });
      clearPool();
      poolStats();
      const before = tf.memory().numTensors;
      tf.tidy(() => model.forward(inputs).logits!.dataSync());
      allocated.push(poolStats().allocated);
      assertEquals(tf.memory().numTensors, before, "forward leaked tensors");
      model.dispose();
    }
    assert(allocated[1] - allocated[0] <= 5, `6 layers allocated ${allocated[1]} arrays, 1 layer ${allocated[0]}`);

    // Under a gradient tape every intermediate is kept (the backward pass reads them): the same logits and hidden
    // states, bit for bit.
    const model = new BertModel(config(3), { head: "classification", seed: 5 });
    const eager = model.forward(inputs, { outputHiddenStates: true });
    const values = [eager.logits!, ...eager.hiddenStates!].map((t) => t.dataSync());
    let taped: Float32Array[] = [];
    const { value, grads } = tf.variableGrads(() => {
      const out = model.forward(inputs, { outputHiddenStates: true });
      taped = [out.logits!, ...out.hiddenStates!].map((t) => t.dataSync() as Float32Array);
      return tf.sum(out.logits!) as tf.Scalar;
    });
    tf.dispose([value, grads, eager]);
    assertEquals(values.length, 5);
    values.forEach((v, i) => assertEquals(Array.from(v), Array.from(taped[i]), `output ${i} differs`));
    tf.dispose(inputs);
    model.dispose();
  },
});

// ---------------------------------------------------------------------------------------------------------------
// Backends agree on training

Deno.test("training: the same seed and data give the same losses (within 1e-4) on cpu, wasm and blas", async () => {
  // Dropout masks come from one seeded generator on every backend (lib/backends/blas/fused.ts applyDropoutMask), and
  // the fused blas kernels (GELU, LayerNorm, dropout, AdamW) compute the same maths as the tf-op versions, so a
  // few AdamW steps with dropout must give the same losses everywhere.
  const config = tinyConfig({
    vocabSize: 20,
    hiddenSize: 8,
    intermediateSize: 16,
    hiddenDropoutProb: 0.2,
    attentionProbsDropoutProb: 0.2,
    initializerRange: 0.2,
  });
  const runOn = async (backend: TestBackend, dropout: boolean): Promise<number[]> => {
    await useBackend(backend);
    const model = new BertModel(dropout ? config : { ...config, hiddenDropoutProb: 0, attentionProbsDropoutProb: 0 }, {
      head: "classification",
      numLabels: 3,
      seed: 11,
    });
    const opt = new AdamW(model.params, { lr: 1e-2, weightDecay: 0.01 });
    const inputs = {
      // 8 tokens: a multiple of 4, so blas takes its WebAssembly SIMD attention path.
      inputIds: int2d([[2, 5, 7, 3, 0, 0, 0, 0], [2, 9, 13, 4, 17, 3, 0, 0], [2, 11, 3, 6, 19, 8, 12, 3]]),
      tokenTypeIds: int2d([[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 1, 1]]),
      attentionMask: int2d([[1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]]),
    };
    const labels = tf.tensor1d([2, 0, 1], "int32");
    const losses: number[] = [];
    for (let step = 0; step < 4; step++) {
      const { value, grads } = tf.variableGrads(
        () => softmaxCrossEntropy(model.forward(inputs, { training: true, seed: 100 + step }).logits!, labels),
        model.variables(),
      );
      const byName = new Map<string, tf.Tensor>();
      for (const [name, v] of model.params) byName.set(name, grads[v.name]);
      opt.applyGradients(byName);
      losses.push(value.dataSync()[0]);
      value.dispose();
    }
    tf.dispose([inputs, labels]);
    opt.dispose();
    model.dispose();
    return losses;
  };
  const reference = await runOn("cpu", true);
  const noDropout = await runOn("cpu", false);
  assert(maxAbsDiff(reference, noDropout) > 1e-3, "dropout must change the losses (else this test checks nothing)");
  assert(noDropout[3] < noDropout[0], `without dropout the losses should fall: ${noDropout}`);
  for (const backend of BACKENDS.filter((b) => b !== "cpu")) {
    const losses = await runOn(backend, true);
    const err = maxAbsDiff(losses, reference);
    console.log(`losses on ${backend}: ${losses.map((l) => l.toFixed(6))} (max |diff| vs cpu ${err.toExponential(2)})`);
    assert(err <= 1e-4, `${backend} losses ${losses} differ from cpu's ${reference} by ${err}`);
  }
});
