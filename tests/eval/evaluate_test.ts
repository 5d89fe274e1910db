/**
 * Evaluation and prediction on a tiny checkpoint: trimmed batches give the same logits, the loss matches the
 * model's own cross-entropy, eval_results.json / predictions.tsv are complete and correct, foreign features and
 * conflicting label names are refused, a missing head is announced loudly, and the CLIs run end to end.
 */
import { assert, assertEquals, assertRejects } from "../shared.ts";
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { parseArgs } from "../../lib/cli/args.ts";
import { saveCheckpoint } from "../../lib/model/checkpoint.ts";
import { readGlueSst2 } from "../../lib/data/datasets.ts";
import {
  disposeBatch,
  evaluateCheckpoint,
  featureBatch,
  lengthOrder,
  predict,
  predictionsTsv,
  runInference,
  usedLength,
} from "../../lib/eval/evaluate.ts";
import { convertExamples, type FeatureSet, saveFeatures } from "../../lib/data/features.ts";
import { join } from "../../lib/io/fsutil.ts";
import { resolveCheckpoint } from "../../lib/training/checkpoints.ts";
import { BertModel, softmaxCrossEntropy } from "../../lib/model/model.ts";
import { FullTokenizer } from "../../lib/text/tokenizer.ts";
import * as evaluateCli from "../../lib/cli/evaluate.ts";
import * as predictCli from "../../lib/cli/predict.ts";
import * as trainCli from "../../lib/cli/train.ts";
import { tinyModel, writeTinyVocab } from "../fixtures/tiny_training.ts";

await initBackend({ backend: "cpu", quiet: true });

const SENTENCES: [string, number][] = [
  ["good1 good2 bad3", 1],
  ["bad1 bad2", 0],
  ["good5 good6 good7 good8 good9 bad1 good3", 1],
  ["bad4 bad5 bad6 good2", 0],
  ["good0", 1],
];

/** A temp folder with the tiny vocabulary, an SST-2-layout dev file and its features. */
async function fixture(): Promise<{ dir: string; vocabPath: string; tsv: string; features: FeatureSet }> {
  const dir = await Deno.makeTempDir({ prefix: "evaluate_test_" });
  const vocabPath = await writeTinyVocab(dir);
  const tsv = join(dir, "dev.tsv");
  await Deno.writeTextFile(tsv, "sentence\tlabel\n" + SENTENCES.map(([s, l]) => `${s}\t${l}`).join("\n") + "\n");
  const tokenizer = await FullTokenizer.fromVocabFile(vocabPath);
  const features = await convertExamples(await readGlueSst2(tsv), tokenizer, {
    maxSeqLength: 12,
    task: "sample",
    vocabPath,
  });
  return { dir, vocabPath, tsv, features };
}

Deno.test("featureBatch: trimming trailing padding changes nothing in the logits", async () => {
  const { dir, features } = await fixture();
  const model = tinyModel({ seed: 5 });
  const rows = [0, 1, 3];
  const trimmed = featureBatch(features, rows);
  const full = featureBatch(features, rows, { trimPadding: false });
  assertEquals(full.seqLength, 12);
  assertEquals(trimmed.seqLength, 6); // the longest of rows 0, 1, 3 is [CLS] + 4 words + [SEP]
  // Evaluation rounds the kept columns up to a multiple of 8, at most the rows' 12.
  assertEquals(usedLength(features, rows), 6);
  assertEquals(usedLength(features, rows, 8), 8);
  const rounded = featureBatch(features, rows, { multipleOf: 8 });
  assertEquals(rounded.seqLength, 8);
  disposeBatch(rounded);
  assertEquals(usedLength(features, [2]), 9);
  assertEquals(usedLength(features, [2], 8), 12);
  const a = tf.tidy(() => model.forward(trimmed).logits!.arraySync() as number[][]);
  const b = tf.tidy(() => model.forward(full).logits!.arraySync() as number[][]);
  a.flat().forEach((v, i) => assert(Math.abs(v - b.flat()[i]) < 1e-6, `logit ${i}: ${v} vs ${b.flat()[i]}`));
  disposeBatch(trimmed);
  disposeBatch(full);
  model.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("runInference: length-sorted batches give the unsorted run's results, in the features' order", async () => {
  const { dir, features } = await fixture();
  // Unpadded lengths: [CLS] + words + [SEP] = 5, 4, 9, 6, 3 (every word is one vocabulary token).
  assertEquals([...lengthOrder(features)], [2, 3, 0, 1, 4]); // longest first
  const model = tinyModel({ seed: 5 });
  const sorted = await runInference(model, features, { batchSize: 2 });
  const unsorted = await runInference(model, features, { batchSize: 2, sortByLength: false });
  // Each row alone, untrimmed: an independent reference for both.
  for (let i = 0; i < features.n; i++) {
    const one = featureBatch(features, [i], { trimPadding: false });
    const ref = tf.tidy(() => model.forward(one).logits!.dataSync());
    disposeBatch(one);
    for (let j = 0; j < 2; j++) {
      assert(Math.abs(sorted.logits[2 * i + j] - ref[j]) < 1e-6, `sorted row ${i}: ${sorted.logits[2 * i + j]}`);
      assert(Math.abs(unsorted.logits[2 * i + j] - ref[j]) < 1e-6, `unsorted row ${i}`);
    }
  }
  assertEquals([...sorted.predictions], [...unsorted.predictions]);
  assert(Math.abs(sorted.loss - unsorted.loss) < 1e-6, `loss ${sorted.loss} vs ${unsorted.loss}`);
  model.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("runInference: probabilities, predictions and loss agree with the model's cross-entropy; no leaks", async () => {
  const { dir, features } = await fixture();
  const model = tinyModel({ seed: 5 });
  const before = tf.memory().numTensors;
  const r = await runInference(model, features, { batchSize: 2 });
  assertEquals(tf.memory().numTensors, before);
  assertEquals(r.n, 5);
  for (let i = 0; i < r.n; i++) {
    const p = r.probabilities.subarray(2 * i, 2 * i + 2);
    assert(Math.abs(p[0] + p[1] - 1) < 1e-6);
    assertEquals(r.predictions[i], p[1] > p[0] ? 1 : 0);
  }
  // The reference: the model's own loss over all rows in one batch.
  const batch = featureBatch(features, [0, 1, 2, 3, 4]);
  const ref = tf.tidy(() => softmaxCrossEntropy(model.forward(batch).logits!, batch.labels).dataSync()[0]);
  disposeBatch(batch);
  assert(Math.abs(r.loss - ref) < 1e-6, `loss ${r.loss} vs ${ref}`);
  model.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("evaluateCheckpoint: metrics, eval_results.json and predictions.tsv with the source texts", async () => {
  const { dir, vocabPath, features } = await fixture();
  const model = tinyModel({ seed: 5 });
  const ckpt = join(dir, "ckpt");
  await saveCheckpoint(ckpt, { model, vocabPath, labels: ["negative", "positive"], lowerCase: true });
  const expected = await runInference(model, features);
  const featuresFile = join(dir, "dev.safetensors");
  await saveFeatures(featuresFile, features);
  const r = await evaluateCheckpoint({ checkpoint: ckpt, features: featuresFile, quiet: true });
  assertEquals(r.headNewlyInitialised, false);
  assertEquals(r.headline.name, "accuracy");
  let correct = 0;
  for (let i = 0; i < 5; i++) correct += expected.predictions[i] === SENTENCES[i][1] ? 1 : 0;
  assertEquals(r.metrics.accuracy, correct / 5);
  assert(Math.abs(r.metrics.loss! - expected.loss) < 1e-6);
  const json = JSON.parse(await Deno.readTextFile(join(ckpt, "eval_results.json")));
  assertEquals(json.accuracy, correct / 5);
  assertEquals(json.label_names, ["negative", "positive"]);
  assertEquals(json.confusion_matrix.flat().reduce((a: number, b: number) => a + b, 0), 5);
  const lines = (await Deno.readTextFile(join(ckpt, "predictions.tsv"))).trimEnd().split("\n");
  assertEquals(lines[0].split("\t"), ["id", "text", "gold", "predicted", "p_negative", "p_positive"]);
  assertEquals(lines.length, 6);
  const row2 = lines[3].split("\t");
  assertEquals(row2[1], SENTENCES[2][0]);
  assertEquals(row2[2], "positive");
  assertEquals(row2[3], ["negative", "positive"][expected.predictions[2]]);
  assert(Math.abs(Number(row2[5]) - expected.probabilities[5]) < 1e-6);
  // Raw data instead of features gives the same numbers.
  const r2 = await evaluateCheckpoint({
    checkpoint: ckpt,
    data: join(dir, "dev.tsv"),
    task: "sample",
    maxSeqLength: 12,
    noWrite: true,
    quiet: true,
  });
  assertEquals(r2.metrics.accuracy, r.metrics.accuracy);
  model.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("evaluateCheckpoint: refuses foreign features and conflicting labels; warns loudly about a new head", async () => {
  const { dir, vocabPath, features } = await fixture();
  const model = tinyModel({ seed: 5 });
  // Another vocabulary (one token renamed) -> another sha256.
  const otherDir = join(dir, "other");
  await Deno.mkdir(otherDir);
  const otherVocab = join(otherDir, "vocab.txt");
  await Deno.writeTextFile(otherVocab, (await Deno.readTextFile(vocabPath)).replace("good19", "great"));
  const foreign = join(dir, "foreign");
  await saveCheckpoint(foreign, { model, vocabPath: otherVocab, labels: ["negative", "positive"], lowerCase: true });
  await assertRejects(
    () => evaluateCheckpoint({ checkpoint: foreign, features, noWrite: true, quiet: true }),
    Error,
    "vocabulary differs",
  );
  const renamed = join(dir, "renamed");
  await saveCheckpoint(renamed, { model, vocabPath, labels: ["neg", "pos"], lowerCase: true });
  await assertRejects(
    () => evaluateCheckpoint({ checkpoint: renamed, features, noWrite: true, quiet: true }),
    Error,
    "label names differ",
  );
  // An encoder-only checkpoint: the classifier is new -> a boxed warning on stderr.
  const encoder = new BertModel(model.config, { head: "none", seed: 5 });
  const bare = join(dir, "bare");
  await saveCheckpoint(bare, { model: encoder, vocabPath, lowerCase: true });
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (...a: unknown[]) => warnings.push(a.join(" "));
  let r;
  try {
    r = await evaluateCheckpoint({ checkpoint: bare, features, noWrite: true, quiet: true });
  } finally {
    console.warn = warn;
  }
  assert(r.headNewlyInitialised);
  const text = warnings.join("\n");
  assert(text.includes("!!!!") && text.includes("MEANINGLESS") && text.includes("classifier.weight"), text);
  encoder.dispose();
  model.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("predict: strings and a TSV column give the same labels and probabilities as runInference", async () => {
  const { dir, vocabPath, features } = await fixture();
  const model = tinyModel({ seed: 5 });
  const ckpt = join(dir, "ckpt");
  await saveCheckpoint(ckpt, { model, vocabPath, labels: ["negative", "positive"], lowerCase: true });
  const expected = await runInference(model, features);
  const texts = SENTENCES.map(([s]) => s);
  const { predictions, labelNames } = await predict({ checkpoint: ckpt, texts, maxSeqLength: 12 });
  assertEquals(labelNames, ["negative", "positive"]);
  predictions.forEach((p, i) => {
    assertEquals(p.text, texts[i]);
    assertEquals(p.label, labelNames[expected.predictions[i]]);
    assert(Math.abs(p.probabilities.positive - expected.probabilities[2 * i + 1]) < 1e-6);
  });
  const file = join(dir, "unlabelled.csv");
  await Deno.writeTextFile(file, "id,text\n" + texts.map((t, i) => `${i},"${t}"`).join("\n") + "\n");
  const fromFile = await predict({ checkpoint: ckpt, file, maxSeqLength: 12 });
  assertEquals(fromFile.predictions.map((p) => p.label), predictions.map((p) => p.label));
  await assertRejects(() => predict({ checkpoint: ckpt, file, column: "review" }), Error, 'no text column "review"');
  const tsv = predictionsTsv({
    ids: ["a"],
    texts: ["x\ty"],
    predictions: [1],
    probabilities: new Float32Array([0.25, 0.75]),
    labelNames: ["n", "p"],
  });
  assertEquals(tsv, "id\ttext\tpredicted\tp_n\tp_p\na\tx y\tp\t0.250000\t0.750000\n");
  model.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("CLIs: train (random --config file) -> evaluate the run folder -> predict to a TSV", async () => {
  const { dir, vocabPath, features } = await fixture();
  const featDir = join(dir, "run", "features");
  await saveFeatures(join(featDir, "train.safetensors"), features);
  await saveFeatures(join(featDir, "dev.safetensors"), features);
  const configFile = join(dir, "tiny_config.json");
  const m = tinyModel();
  await Deno.writeTextFile(configFile, JSON.stringify({ ...m.config.raw }));
  m.dispose();
  const quietLog = console.log, quietWarn = console.warn;
  const out: string[] = [];
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.warn = (...a: unknown[]) => out.push(a.join(" "));
  try {
    await trainCli.run(parseArgs([
      "--features",
      featDir,
      "--config",
      configFile,
      "--epochs",
      "2",
      "--batch-size",
      "2",
      "--lr",
      "1e-2",
      "--quiet",
    ], trainCli.spec));
    await evaluateCli.run(
      parseArgs(["--checkpoint", join(dir, "run"), "--features", join(featDir, "dev.safetensors")], evaluateCli.spec),
    );
    await predictCli.run(parseArgs([
      "--checkpoint",
      join(dir, "run"),
      "--input",
      join(dir, "dev.tsv"),
      "--output",
      join(dir, "pred.tsv"),
    ], predictCli.spec));
  } finally {
    console.log = quietLog;
    console.warn = quietWarn;
  }
  const text = out.join("\n");
  assert(text.includes("RANDOM weights"), "random-init notice");
  assert(text.includes("checkpoint-6"), text); // 5 examples / batch 2 = 3 updates per epoch, 2 epochs
  // A run folder is evaluated at its best checkpoint.
  const best = JSON.parse(await Deno.readTextFile(join(dir, "run", "train_results.json"))).best_checkpoint;
  assertEquals(await resolveCheckpoint(join(dir, "run")), join(dir, "run", best));
  const results = JSON.parse(await Deno.readTextFile(join(dir, "run", best, "eval_results.json")));
  assertEquals(results.n, 5);
  const pred = (await Deno.readTextFile(join(dir, "pred.tsv"))).trimEnd().split("\n");
  assertEquals(pred.length, 6);
  assertEquals(pred[0], "id\ttext\tlabel\tp_negative\tp_positive");
  // Without --resume a second run refuses to mix with the existing checkpoints.
  console.log = console.warn = () => {};
  try {
    await assertRejects(
      () => trainCli.run(parseArgs(["--features", featDir, "--config", configFile, "--quiet"], trainCli.spec)),
      Error,
      "already has checkpoints",
    );
  } finally {
    console.log = quietLog;
    console.warn = quietWarn;
  }
  assert(vocabPath.length > 0);
  await Deno.remove(dir, { recursive: true });
});
