import { assert, assertEquals, assertThrows } from "../shared.ts";
import {
  chooseMaxSeqLength,
  lessonLearningRate,
  liveTraining,
  loadReportRows,
  readTaskOrSample,
  senseSimilarity,
  startingModelHtml,
  startingModelLabel,
} from "../../lib/lessons/lessons.ts";
import { initBackend } from "../../lib/backends/backend.ts";
import { cosine, wordVectors } from "../../lib/eval/embeddings.ts";
import { BertModel, configFromJson } from "../../lib/model/model.ts";
import { FullTokenizer } from "../../lib/text/tokenizer.ts";
import { Vocab } from "../../lib/text/vocab.ts";
import type { ProgressEvent } from "../../lib/training/train.ts";

await initBackend({ backend: "cpu", quiet: true });

Deno.test("chooseMaxSeqLength: the 99th percentile rounded up to a multiple of 8, within [8, 512]", () => {
  const lengths = Array.from({ length: 100 }, (_, i) => i + 1); // p99 = 99
  assertEquals(chooseMaxSeqLength(lengths), 104);
  assertEquals(chooseMaxSeqLength(lengths, { percent: 50 }), 56); // p50 = 50
  assertEquals(chooseMaxSeqLength([3, 4, 5]), 8);
  assertEquals(chooseMaxSeqLength([900, 1000]), 512);
  assertEquals(chooseMaxSeqLength([31, 17, 29], { multiple: 1 }), 31);
  assertThrows(() => chooseMaxSeqLength([]), Error, "no lengths");
});

Deno.test("lessonLearningRate: 1e-3 for pre-trained and random tiny models alike", () => {
  for (const kind of ["given", "hub-cache", "hub-download", "shipped"] as const) {
    assertEquals(lessonLearningRate(kind), 1e-3);
  }
  assertEquals(lessonLearningRate("random"), 1e-3);
});

Deno.test("loadReportRows: new, unused and skipped weights, 'none' when empty", () => {
  const rows = loadReportRows({
    missing: [],
    unexpected: ["cls.a", "cls.b"],
    newlyInitialised: ["classifier.weight"],
    ignored: [],
  });
  assertEquals(rows.map((r) => r.names), ["classifier.weight", "cls.a, cls.b", "none"]);
});

Deno.test("startingModelHtml: escapes the notice; label names the source", () => {
  const html = startingModelHtml({ dir: "x", kind: "shipped", why: "a <b> & c", notice: ["1 < 2"] });
  assert(html.includes("a &lt;b&gt; &amp; c") && html.includes("1 &lt; 2"), html);
  assertEquals(startingModelLabel({ kind: "random", why: "" }), "random weights");
  assertEquals(startingModelLabel({ dir: "d", kind: "hub-cache", why: "" }), "Google's BERT-Tiny (hub)");
});

Deno.test("liveTraining: training-loss points per update, evaluation-loss points per evaluation", async () => {
  const live = liveTraining({ total: 3, label: "t", title: "loss", trainSeries: "batch", evalSeries: "held out" });
  const event = (phase: ProgressEvent["phase"], step: number, loss: number): ProgressEvent => ({
    phase,
    step,
    totalSteps: 3,
    epoch: step / 3,
    loss,
    avgLoss: loss,
    lr: 1e-3,
    gradNorm: 1,
    examplesPerSec: 10,
    etaSeconds: 3 - step,
  });
  for (const [step, loss] of [[1, 0.9], [2, 0.7], [3, 0.6]]) await live.onProgress(event("train", step, loss));
  await live.onProgress(event("eval", 3, 99)); // not a training update: no point
  const headline = { name: "loss", value: 0.65, parts: [], text: "loss 0.65" };
  await live.onEval({ step: 3, epoch: 1, metrics: {}, scalars: { loss: 0.65 }, headline, isBest: true });
  await live.done();
  const series = live.chart.figure().data.map((d) => [d.name, d.x, d.y]);
  assertEquals(series, [["batch", [1, 2, 3], [0.9, 0.7, 0.6]], ["held out", [3], [0.65]]]);
});

Deno.test("readTaskOrSample: the task's train and dev sets, with limits", async () => {
  const data = await readTaskOrSample("sample", { trainLimit: 5, devLimit: 3 });
  assertEquals([data.spec.name, data.train.examples.length, data.dev.examples.length], ["sample", 5, 3]);
  assert(data.files.train.endsWith(data.spec.files.train), data.files.train);
});

Deno.test("senseSimilarity: mean cosine over same-sense pairs and over cross-sense pairs", () => {
  const tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "bank", "river", "money", "of", "my", "a"];
  const tokenizer = new FullTokenizer(Vocab.fromTokens(tokens));
  const model = new BertModel(
    configFromJson({
      vocab_size: tokens.length,
      hidden_size: 8,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 16,
      max_position_embeddings: 16,
      initializer_range: 0.5,
    }),
    { head: "none", seed: 3 },
  );
  const sentences = [
    { sense: "river", text: "the bank of the river" },
    { sense: "river", text: "a river bank" },
    { sense: "money", text: "my money bank" },
    { sense: "money", text: "the bank of money" },
  ];
  try {
    const v = sentences.map((s) => wordVectors(model, tokenizer, s.text, "bank"));
    const c = (i: number, j: number) => cosine(v[i], v[j]);
    const got = senseSimilarity(model, tokenizer, "bank", sentences);
    assertEquals(got.same, (c(0, 1) + c(2, 3)) / 2);
    assertEquals(got.cross, (c(0, 2) + c(0, 3) + c(1, 2) + c(1, 3)) / 4);
    assert(got.same !== got.cross);
  } finally {
    model.dispose();
  }
});
