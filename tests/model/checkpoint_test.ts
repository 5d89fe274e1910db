/**
 * lib/model/checkpoint.ts: loading Hugging Face folders (key variants, reports, errors) and saving them back so that
 * the saved `model.safetensors` holds exactly the original tensors under the original names.
 */
import { initBackend, tf } from "../../lib/backends/backend.ts";
import {
  inferLowerCase,
  loadCheckpoint,
  loadTensorsIntoModel,
  modelToTensors,
  reportMessages,
  saveCheckpoint,
} from "../../lib/model/checkpoint.ts";
import { BertModel, configFromJson, HeadKind } from "../../lib/model/model.ts";
import { readSafetensors, serializeSafetensors, type TensorEntry } from "../../lib/io/safetensors.ts";
import { assert, assertEquals, assertRejects, assertThrows, HAVE_SHARED, SHARED } from "../shared.ts";

const TINY = `${SHARED}/data/models/tiny-random-BertForSequenceClassification.FALLBACK-RANDOM-WEIGHTS`;
const PRETRAINING = `${SHARED}/golden/model/bert-tiny-shape-random-pretraining`;
const VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat"];
const TINY_CONFIG = {
  model_type: "bert",
  vocab_size: 10,
  hidden_size: 4,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  intermediate_size: 6,
  max_position_embeddings: 8,
  type_vocab_size: 2,
};

if (!HAVE_SHARED) console.warn(`checkpoint_test: ${SHARED} absent: tests on the shared checkpoints skipped`);

await initBackend({ backend: "wasm", quiet: true });

/** Every temporary folder of this file lives under ROOT, removed when the test process ends. */
const ROOT = await Deno.makeTempDir({ prefix: "checkpoint_test_" });
globalThis.addEventListener("unload", () => Deno.removeSync(ROOT, { recursive: true }));

/** A folder with a tiny config, vocab and random weights written by this project's own saver. */
async function tinyFolder(
  head: HeadKind,
  extra: Record<string, string> = {},
): Promise<{ dir: string; model: BertModel }> {
  const root = await Deno.makeTempDir({ dir: ROOT });
  const vocabPath = `${root}/vocab.txt`;
  await Deno.writeTextFile(vocabPath, VOCAB.join("\n") + "\n");
  const model = new BertModel(configFromJson(TINY_CONFIG), { head, numLabels: 3, seed: 9 });
  const dir = `${root}/ckpt`;
  await saveCheckpoint(dir, { model, vocabPath, labels: head === "classification" ? ["a", "b", "c"] : undefined });
  for (const [name, text] of Object.entries(extra)) await Deno.writeTextFile(`${dir}/${name}`, text);
  return { dir, model };
}

function sameEntry(a: TensorEntry, b: TensorEntry): boolean {
  if (a.dtype !== b.dtype || a.shape.join() !== b.shape.join() || a.data.length !== b.data.length) return false;
  const x = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const y = new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength);
  return x.every((v, i) => v === y[i]);
}

Deno.test({
  name: "load tiny-random checkpoint: all 89 parameters found, position_ids ignored, HF names",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const { model, report, tokenizer, config, vocabPath } = await loadCheckpoint(TINY, {
      head: "classification",
      quiet: true,
    });
    assertEquals(report, {
      missing: [],
      unexpected: [],
      newlyInitialised: [],
      ignored: ["bert.embeddings.position_ids"],
    });
    assertEquals(model.params.size, 89);
    assertEquals(config.hiddenSize, 32);
    assertEquals(model.numLabels, 2);
    assertEquals(tokenizer.lowerCase, true);
    assertEquals(tokenizer.vocab.size, 1124);
    assertEquals(vocabPath, `${TINY}/vocab.txt`);
    // Dense kernels are stored [in, out]: the variable is the transpose of the file's [out, in] tensor.
    const file = (await readSafetensors(`${TINY}/model.safetensors`)).tensors;
    const hf = file["bert.encoder.layer.0.intermediate.dense.weight"]; // [37, 32]
    const ours = model.params.get("bert.encoder.layer.0.intermediate.dense.weight")!;
    assertEquals(ours.shape, [32, 37]);
    const v = ours.dataSync();
    assertEquals(v[5 * 37 + 7], (hf.data as Float32Array)[7 * 32 + 5]);
    model.dispose();
  },
});

Deno.test({
  name: "load with another head: transformers-style missing / unused report and messages",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (msg: string) => warnings.push(msg);
    let loaded;
    try {
      loaded = await loadCheckpoint(TINY, { head: "pretraining" });
    } finally {
      console.warn = warn;
    }
    const { report, model } = loaded;
    assertEquals(report.unexpected, ["classifier.bias", "classifier.weight"]);
    assertEquals(report.missing, [
      "cls.predictions.bias",
      "cls.predictions.transform.dense.weight",
      "cls.predictions.transform.dense.bias",
      "cls.predictions.transform.LayerNorm.weight",
      "cls.predictions.transform.LayerNorm.bias",
      "cls.seq_relationship.weight",
      "cls.seq_relationship.bias",
    ]);
    assertEquals(report.newlyInitialised, report.missing);
    assertEquals(warnings.length, 2);
    assert(
      warnings[0].startsWith(
        `Some weights of the model checkpoint at ${TINY} were not used when initializing BertForPreTraining: ` +
          `['classifier.bias', 'classifier.weight']`,
      ),
      warnings[0],
    );
    assert(
      warnings[1].startsWith(
        `Some weights of BertForPreTraining were not initialized from the model checkpoint at ${TINY} and are newly ` +
          `initialized: ['cls.predictions.bias', `,
      ),
      warnings[1],
    );
    model.dispose();
    const qa = await loadCheckpoint(TINY, { head: "question-answering", quiet: true });
    assertEquals(qa.report.missing, ["qa_outputs.weight", "qa_outputs.bias"]);
    assertEquals(qa.report.unexpected, [
      "bert.pooler.dense.bias",
      "bert.pooler.dense.weight",
      "classifier.bias",
      "classifier.weight",
    ]);
    qa.model.dispose();
    assertEquals(
      reportMessages({ missing: [], unexpected: [], newlyInitialised: [], ignored: ["x"] }, "d", "none"),
      [],
    );
  },
});

Deno.test({
  name: "load with a different number of labels: error names the tensor, expected and actual shapes",
  ignore: !HAVE_SHARED,
  fn: async () => {
    await assertRejects(
      () => loadCheckpoint(TINY, { head: "classification", labels: ["a", "b", "c"], quiet: true }),
      Error,
      `tensor "classifier.weight" has shape [2, 32], but BertForSequenceClassification with this config expects [3, 32]`,
    );
  },
});

Deno.test({
  name: "save -> re-read: model.safetensors has every original tensor, byte-identical, same names/dtypes/shapes",
  ignore: !HAVE_SHARED,
  fn: async () => {
    for (const [dir, head] of [[TINY, "classification"], [PRETRAINING, "pretraining"]] as const) {
      const { model, vocabPath } = await loadCheckpoint(dir, { head, quiet: true });
      const out = `${await Deno.makeTempDir({ dir: ROOT })}/saved`;
      await saveCheckpoint(out, { model, vocabPath, extraFiles: { "trainer_state.json": "{}\n" } });
      const original = await readSafetensors(`${dir}/model.safetensors`);
      const saved = await readSafetensors(`${out}/model.safetensors`);
      assertEquals(saved.metadata, { format: "pt" });
      const expectedKeys = Object.keys(original.tensors).filter((k) => !k.endsWith("position_ids")).sort();
      assertEquals(Object.keys(saved.tensors).sort(), expectedKeys);
      for (const key of expectedKeys) {
        assert(sameEntry(saved.tensors[key], original.tensors[key]), `${dir}: ${key} differs after save`);
      }
      assertEquals(await Deno.readFile(`${out}/vocab.txt`), await Deno.readFile(vocabPath));
      const config = JSON.parse(await Deno.readTextFile(`${out}/config.json`));
      const originalConfig = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
      for (
        const key of ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"]
      ) {
        assertEquals(config[key], originalConfig[key], key);
      }
      assertEquals(config.model_type, "bert");
      assertEquals(config.architectures, [
        head === "classification" ? "BertForSequenceClassification" : "BertForPreTraining",
      ]);
      assertEquals(JSON.parse(await Deno.readTextFile(`${out}/tokenizer_config.json`)).do_lower_case, true);
      assertEquals(await Deno.readTextFile(`${out}/trainer_state.json`), "{}\n");
      assertEquals([...Deno.readDirSync(`${out}/..`)].map((e) => e.name), ["saved"]); // no temporary leftovers
      model.dispose();
    }
  },
});

Deno.test("round trip on a tiny model: save, load, identical outputs; labels in config.json", async () => {
  for (const head of ["classification", "question-answering", "pretraining", "none"] as const) {
    const { dir, model } = await tinyFolder(head);
    const loaded = await loadCheckpoint(dir, { head, quiet: true });
    assertEquals(loaded.report.missing, []);
    assertEquals(loaded.report.unexpected, []);
    const inputs = {
      inputIds: tf.tensor2d([[2, 5, 6, 3, 0]], undefined, "int32"),
      tokenTypeIds: tf.tensor2d([[0, 0, 0, 0, 0]], undefined, "int32"),
      attentionMask: tf.tensor2d([[1, 1, 1, 1, 0]], undefined, "int32"),
    };
    const a = model.forward(inputs);
    const b = loaded.model.forward(inputs);
    assertEquals(a.lastHiddenState.dataSync(), b.lastHiddenState.dataSync());
    if (head === "classification") {
      assertEquals(a.logits!.dataSync(), b.logits!.dataSync());
      assertEquals(loaded.config.id2label, { "0": "a", "1": "b", "2": "c" });
      const json = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
      assertEquals(json.label2id, { a: 0, b: 1, c: 2 });
    }
    if (head === "none") {
      // HF's BertModel saves its weights without the "bert." prefix.
      const keys = Object.keys((await readSafetensors(`${dir}/model.safetensors`)).tensors);
      assert(keys.includes("embeddings.word_embeddings.weight") && !keys.some((k) => k.startsWith("bert.")));
    }
    tf.dispose([a, b, inputs]);
    model.dispose();
    loaded.model.dispose();
  }
});

Deno.test("key variants: no bert. prefix, legacy gamma/beta, tied decoder and buffers are accepted", () => {
  const model = new BertModel(configFromJson(TINY_CONFIG), { head: "pretraining", seed: 1 });
  const tensors = modelToTensors(model);
  const renamed: Record<string, TensorEntry> = {};
  for (const [k, v] of Object.entries(tensors)) {
    renamed[
      k.replace(/^bert\./, "").replace(/LayerNorm\.weight$/, "LayerNorm.gamma").replace(
        /LayerNorm\.bias$/,
        "LayerNorm.beta",
      )
    ] = v;
  }
  renamed["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"];
  renamed["cls.predictions.decoder.bias"] = tensors["cls.predictions.bias"];
  renamed["embeddings.position_ids"] = { dtype: "I64", shape: [1, 8], data: new BigInt64Array(8) };
  renamed["something.else"] = { dtype: "F32", shape: [1], data: new Float32Array(1) };
  const other = new BertModel(configFromJson(TINY_CONFIG), { head: "pretraining", seed: 2 });
  const report = loadTensorsIntoModel(other, renamed);
  assertEquals(report.missing, []);
  assertEquals(report.unexpected, ["something.else"]);
  assertEquals(report.ignored.sort(), [
    "cls.predictions.decoder.bias",
    "cls.predictions.decoder.weight",
    "embeddings.position_ids",
  ]);
  for (const [name, v] of model.params) assertEquals(other.params.get(name)!.dataSync(), v.dataSync(), name);
  // Only the decoder bias present (no cls.predictions.bias): it is used for cls.predictions.bias.
  const onlyDecoderBias = { ...tensors, "cls.predictions.decoder.bias": tensors["cls.predictions.bias"] };
  delete (onlyDecoderBias as Record<string, TensorEntry>)["cls.predictions.bias"];
  const third = new BertModel(configFromJson(TINY_CONFIG), { head: "pretraining", seed: 3 });
  assertEquals(loadTensorsIntoModel(third, onlyDecoderBias).missing, []);
  assertEquals(
    third.params.get("cls.predictions.bias")!.dataSync(),
    model.params.get("cls.predictions.bias")!.dataSync(),
  );
  // F16 weights are widened.
  const half = { ...tensors };
  half["classifier.weight"] = { dtype: "F16", shape: [3, 4], data: new Uint16Array(12).fill(0x3c00) }; // 1.0
  const cls = new BertModel(configFromJson(TINY_CONFIG), { head: "classification", numLabels: 3 });
  loadTensorsIntoModel(cls, half);
  assertEquals(Array.from(cls.params.get("classifier.weight")!.dataSync()), new Array(12).fill(1));
  assertThrows(
    () =>
      loadTensorsIntoModel(cls, { "bert.pooler.dense.bias": { dtype: "I32", shape: [4], data: new Int32Array(4) } }, {
        source: "f.safetensors",
      }),
    Error,
    'f.safetensors: tensor "bert.pooler.dense.bias" has dtype I32',
  );
  for (const m of [model, other, third, cls]) m.dispose();
});

Deno.test("clear errors: a broken pytorch_model.bin, no weights, no config, no vocab, corrupt config", async () => {
  const root = await Deno.makeTempDir({ dir: ROOT });
  await Deno.writeTextFile(`${root}/config.json`, JSON.stringify(TINY_CONFIG));
  await Deno.writeTextFile(`${root}/vocab.txt`, VOCAB.join("\n"));
  await Deno.writeFile(`${root}/pytorch_model.bin`, new Uint8Array(10));
  await assertRejects(
    () => loadCheckpoint(root, { head: "none" }),
    Error,
    `${root}/pytorch_model.bin: not a PyTorch checkpoint`,
  );
  await Deno.remove(`${root}/pytorch_model.bin`);
  await assertRejects(() => loadCheckpoint(root, { head: "none" }), Error, "no weights found");
  await Deno.remove(`${root}/vocab.txt`);
  await assertRejects(() => loadCheckpoint(root, { head: "none" }), Error, "no vocab.txt");
  await Deno.writeTextFile(`${root}/config.json`, "{ nope");
  await assertRejects(() => loadCheckpoint(root, { head: "none" }), Error, `${root}/config.json: not valid JSON`);
  await Deno.remove(`${root}/config.json`);
  await assertRejects(() => loadCheckpoint(root, { head: "none" }), Error, "no config.json");
  await assertRejects(() => loadCheckpoint(`${root}/missing`, { head: "none" }), Error, "checkpoint folder not found");
});

Deno.test("Google bert_config.json, sharded index, casing from tokenizer_config.json or the folder name", async () => {
  const { dir, model } = await tinyFolder("none");
  // Google-style config name.
  await Deno.rename(`${dir}/config.json`, `${dir}/bert_config.json`);
  // Shards described by model.safetensors.index.json.
  const tensors = modelToTensors(model);
  const names = Object.keys(tensors);
  const half = Math.floor(names.length / 2);
  const pick = (ks: string[]) => Object.fromEntries(ks.map((k) => [k, tensors[k]]));
  await Deno.writeFile(`${dir}/model-00001-of-00002.safetensors`, serializeSafetensors(pick(names.slice(0, half))));
  await Deno.writeFile(`${dir}/model-00002-of-00002.safetensors`, serializeSafetensors(pick(names.slice(half))));
  const weightMap = Object.fromEntries(names.map((k, i) => [k, `model-0000${i < half ? 1 : 2}-of-00002.safetensors`]));
  await Deno.writeTextFile(`${dir}/model.safetensors.index.json`, JSON.stringify({ weight_map: weightMap }));
  await Deno.remove(`${dir}/model.safetensors`);
  await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify({ do_lower_case: false }));
  const loaded = await loadCheckpoint(dir, { head: "none", quiet: true });
  assertEquals(loaded.report.missing, []);
  assertEquals(loaded.tokenizer.lowerCase, false);
  for (const [name, v] of model.params) assertEquals(loaded.model.params.get(name)!.dataSync(), v.dataSync());
  await Deno.remove(`${dir}/tokenizer_config.json`);
  assertEquals(await inferLowerCase(dir), true);
  const cased = `${dir}/../cased_L-2_H-128_A-2`;
  await Deno.mkdir(cased);
  assertEquals(await inferLowerCase(cased), false);
  assertEquals(await inferLowerCase(`${dir}/../uncased_L-2_H-128_A-2`), true);
  model.dispose();
  loaded.model.dispose();
});

Deno.test("saveCheckpoint: replaces an existing folder atomically; rejects mismatched labels", async () => {
  const { dir, model } = await tinyFolder("classification");
  await Deno.writeTextFile(`${dir}/stale.txt`, "old");
  const vocabPath = `${dir}/../vocab.txt`;
  await saveCheckpoint(dir, { model, vocabPath, labels: ["x", "y", "z"], lowerCase: false });
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  assertEquals(names, ["config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt"]);
  assertEquals(JSON.parse(await Deno.readTextFile(`${dir}/tokenizer_config.json`)), {
    do_lower_case: false,
    model_max_length: 8,
    tokenizer_class: "BertTokenizer",
  });
  await assertRejects(() => saveCheckpoint(dir, { model, vocabPath, labels: ["x"] }), Error, "1 labels given");
  assertEquals([...Deno.readDirSync(`${dir}/..`)].map((e) => e.name).sort(), ["ckpt", "vocab.txt"]);
  model.dispose();
});
