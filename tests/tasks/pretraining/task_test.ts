/**
 * The pre-training loss against a hand-written log-softmax, evaluation, training through lib/training/train.ts
 * (checkpoints, resume) and the `pretrain` command.
 */
import { initBackend, tf } from "../../../lib/backends/backend.ts";
import { BertModel, configFromJson } from "../../../lib/model/model.ts";
import { parseCorpusText } from "../../../lib/tasks/pretraining/corpus.ts";
import { createPretrainingData } from "../../../lib/tasks/pretraining/instances.ts";
import {
  disposePretrainingBatch,
  evaluatePretraining,
  pretrain,
  pretrainingBatch,
  pretrainingLoss,
} from "../../../lib/tasks/pretraining/task.ts";
import { FullTokenizer } from "../../../lib/text/tokenizer.ts";
import { Vocab } from "../../../lib/text/vocab.ts";
import { assert, assertEquals, assertRejects } from "../../shared.ts";
import { smallTokenizer, TEXT } from "./fixtures.ts";

await initBackend({ backend: "cpu", quiet: true });

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
    // The loss reads logits at the chosen tokens only (mlmTokens), not at the [batch, P] slots some of which are unused.
    assert(count < rows.length * set.maxPredictions, "not vacuous: the batch has unused prediction slots");
    assertEquals(batch.mlmTokens.shape, [count]);
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

Deno.test("pretrainingLoss nspWeight: mlm + weight x nsp; pretrain refuses to resume with another weight", async () => {
  const tokenizer = await smallTokenizer();
  const data = { maxSeqLength: 24, maxPredictionsPerSeq: 4, seed: 8, dupeFactor: 3 };
  const set = createPretrainingData(parseCorpusText(TEXT), tokenizer, data);
  const model = tinyModel(tokenizer.vocab.size);
  const dir = await Deno.makeTempDir();
  try {
    const batch = pretrainingBatch(set, [0, 1, 2, 3]);
    const plain = pretrainingLoss(model, batch);
    const heavy = pretrainingLoss(model, batch, { nspWeight: 3 });
    const [l1, m1, n1, l3, m3, n3] = [plain.loss, plain.mlm, plain.nsp, heavy.loss, heavy.mlm, heavy.nsp].map((t) =>
      t.dataSync()[0]
    );
    tf.dispose([...Object.values(plain), ...Object.values(heavy)]);
    disposePretrainingBatch(batch);
    assert(n1 > 0.1, "not vacuous: the NSP term is not ~0");
    assertEquals([m3, n3], [m1, n1], "the parts are the same");
    assert(Math.abs(l3 - (m1 + 3 * n1)) < 1e-5 && Math.abs(l1 - (m1 + n1)) < 1e-5, `${l1} ${l3} ${m1} ${n1}`);

    const vocabPath = `${dir}/vocab.txt`;
    await tokenizer.vocab.save(vocabPath);
    const hp = { learningRate: 5e-3, batchSize: 8, maxSteps: 4, warmupRatio: 0, seed: 3, quiet: true, saveSteps: 2 };
    const outputDir = `${dir}/run`;
    await assertRejects(
      () => pretrain({ ...hp, model, vocabPath, train: set, outputDir, stopAt: 2, nspWeight: 4 }),
      Error,
      "--stop-at 2",
    );
    const state = JSON.parse(await Deno.readTextFile(`${outputDir}/checkpoint-2/trainer_state.json`));
    assertEquals(state.train_features.nsp_weight, 4);
    await assertRejects(
      () => pretrain({ model, vocabPath, train: set, outputDir, resume: true, quiet: true }),
      Error,
      "nsp_weight: 4 then, absent now",
    );
    const noPairs = createPretrainingData(parseCorpusText(TEXT), tokenizer, { ...data, nextSentence: false });
    await assertRejects(
      () => pretrain({ ...hp, model, vocabPath, train: noPairs, outputDir: `${dir}/mlm`, nspWeight: 2 }),
      Error,
      "needs next-sentence pairs",
    );
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
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
