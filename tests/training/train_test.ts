/**
 * The training loop on a tiny model (hidden 8, one layer) and synthetic features: it learns, checkpoints rotate,
 * gradient accumulation equals a bigger batch, resume is exact (in-process and after SIGKILL of a real process),
 * tensors do not leak, bad settings fail at the start with clear messages, a hand-written task adapter trains
 * exactly like the built-in classification one, and `train --seeds` prints each run and the mean ± std.
 */
import { assert, assertEquals, assertRejects, maxAbsDiff } from "../shared.ts";
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { join } from "../../lib/io/fsutil.ts";
import { parseArgs } from "../../lib/cli/args.ts";
import { disposeBatch, type FeatureBatch, featureBatch } from "../../lib/eval/evaluate.ts";
import { saveFeatures } from "../../lib/data/features.ts";
import { softmaxCrossEntropy } from "../../lib/model/model.ts";
import * as trainCli from "../../lib/cli/train.ts";
import { readSafetensors } from "../../lib/io/safetensors.ts";
import { modelToTensors } from "../../lib/model/checkpoint.ts";
import { batchSeed, dropoutSeed, epochOrderState, mixSeed, Rng, shuffledOrder } from "../../lib/training/rng.ts";
import { latestCheckpoint, listCheckpoints, readTrainerState } from "../../lib/training/checkpoints.ts";
import { train, TrainingInterrupted, trainSeeds } from "../../lib/training/train.ts";
import type { TrainTask } from "../../lib/training/task.ts";
import { classificationTask } from "../../lib/tasks/classification/task.ts";
import { KILL_TEST_SETTINGS, tinyFeatures, tinyModel, writeTinyVocab } from "../fixtures/tiny_training.ts";

await initBackend({ backend: "cpu", quiet: true });

async function setup(): Promise<
  {
    dir: string;
    vocabPath: string;
    trainSet: Awaited<ReturnType<typeof tinyFeatures>>;
    dev: Awaited<ReturnType<typeof tinyFeatures>>;
  }
> {
  const dir = await Deno.makeTempDir({ prefix: "train_test_" });
  const vocabPath = await writeTinyVocab(dir);
  const trainSet = await tinyFeatures({ n: 48, seed: 1, vocabPath });
  const dev = await tinyFeatures({ n: 24, seed: 2, vocabPath });
  return { dir, vocabPath, trainSet, dev };
}

Deno.test("Rng: deterministic, restorable from its state; shuffles are permutations", () => {
  const a = new Rng(123), b = new Rng(123);
  const xs = Array.from({ length: 5 }, () => a.next());
  assertEquals(xs, Array.from({ length: 5 }, () => b.next()));
  assert(xs.every((x) => x >= 0 && x < 1));
  const c = new Rng(0);
  c.state = a.state;
  assertEquals(c.next(), a.next());
  const order = shuffledOrder(50, new Rng(epochOrderState(42, 0)));
  assertEquals([...order].sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i));
  assert(order.some((v, i) => v !== i), "shuffled");
  assert([...shuffledOrder(50, new Rng(epochOrderState(42, 1)))].join() !== [...order].join(), "epochs differ");
  assert(mixSeed(1, 2) !== mixSeed(2, 1) && dropoutSeed(42, 0, 0) !== dropoutSeed(42, 1, 0));
});

Deno.test("train: learns the synthetic task, logs, rotates checkpoints, keeps the best, no tensor growth", async () => {
  const { dir, vocabPath, trainSet, dev } = await setup();
  const model = tinyModel({ seed: 3 });
  const out = join(dir, "run");
  const counts: number[] = [];
  const phases = new Set<string>();
  const result = await train({
    model,
    vocabPath,
    task: classificationTask({ train: trainSet, dev }),
    outputDir: out,
    learningRate: 3e-2,
    batchSize: 8,
    epochs: 10,
    warmupRatio: 0.1,
    dropout: 0, // hidden size 8 learns slowly with dropout
    quiet: true,
    onProgress: (e) => phases.add(e.phase),
    onEval: () => counts.push(tf.memory().numTensors),
  });
  // 48 examples / batch 8 = 6 updates per epoch, 10 epochs.
  assertEquals(result.globalStep, 60);
  assertEquals(result.logHistory.length, 60);
  assertEquals(result.evalHistory.length, 10);
  assertEquals([...phases].sort(), ["done", "eval", "save", "train"]);
  // Tensor hygiene: the same number of live tensors after every epoch.
  assertEquals(new Set(counts).size, 1, `tensor counts per epoch: ${counts}`);
  // It learned: the last epoch's mean loss is well below ln 2 and dev accuracy is high.
  const lastEpoch = result.logHistory.slice(-6).reduce((s, e) => s + e.loss, 0) / 6;
  const firstEpoch = result.logHistory.slice(0, 6).reduce((s, e) => s + e.loss, 0) / 6;
  assert(firstEpoch > 0.6 && lastEpoch < 0.3, `mean loss in the first / last epoch ${firstEpoch} / ${lastEpoch}`);
  assert(result.finalEval!.metrics.accuracy >= 0.85, `dev accuracy ${result.finalEval!.metrics.accuracy}`);
  // Warmup: ceil(0.1 * 60) = 6 steps, the first update at lr 0, then linear decay to 0.
  assertEquals(result.logHistory[0].learning_rate, 0);
  assertEquals(result.logHistory[6].learning_rate, 3e-2);
  assertEquals(result.logHistory[59].learning_rate, 3e-2 / 54);
  // Checkpoints: the last 2 plus the best.
  const kept = (await listCheckpoints(out)).map((c) => c.step);
  const best = result.bestMetric!;
  assertEquals(best.name, "accuracy");
  const expected = new Set([60, 54, best.step]);
  assertEquals(new Set(kept), expected);
  assertEquals(result.bestCheckpoint, join(out, `checkpoint-${best.step}`));
  const state = await readTrainerState(join(out, "checkpoint-60"));
  assertEquals(state.global_step, 60);
  assertEquals(state.epoch, 10);
  assertEquals(state.best_step, best.step);
  assertEquals(state.hyper_parameters.learning_rate, 3e-2);
  assertEquals(state.config.id2label, { "0": "negative", "1": "positive" });
  // Optimiser moments in Hugging Face layout ([out, in] for dense kernels).
  const ts = await readSafetensors(join(out, "checkpoint-60", "training_state.safetensors"));
  assertEquals(ts.metadata.step, "60");
  assertEquals(ts.tensors["exp_avg.classifier.weight"].shape, [2, 8]);
  assertEquals(ts.tensors["exp_avg_sq.bert.encoder.layer.0.intermediate.dense.weight"].shape, [16, 8]);
  // The saved weights are the model's.
  const saved = await readSafetensors(join(out, "checkpoint-60", "model.safetensors"));
  const now = modelToTensors(model);
  for (const [name, e] of Object.entries(now)) {
    assertEquals(maxAbsDiff(saved.tensors[name].data as Float32Array, e.data as Float32Array), 0, name);
  }
  const summary = JSON.parse(await Deno.readTextFile(join(out, "train_results.json")));
  assertEquals(summary.best_checkpoint, `checkpoint-${best.step}`);
  model.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("train: gradient accumulation (4 x 2) equals batch 8 without dropout", async () => {
  const { dir, vocabPath, trainSet } = await setup();
  const run = async (batchSize: number, gradAccumSteps: number) => {
    const model = tinyModel({ seed: 3 });
    const r = await train({
      model,
      vocabPath,
      task: classificationTask({ train: trainSet }),
      outputDir: join(dir, `b${batchSize}x${gradAccumSteps}`),
      batchSize,
      gradAccumSteps,
      epochs: 1,
      learningRate: 1e-2,
      dropout: 0,
      quiet: true,
    });
    const weights = modelToTensors(model);
    model.dispose();
    return { r, weights };
  };
  const big = await run(8, 1), acc = await run(4, 2);
  assertEquals(big.r.globalStep, 6);
  assertEquals(acc.r.globalStep, 6);
  for (let i = 0; i < 6; i++) {
    assert(Math.abs(big.r.logHistory[i].loss - acc.r.logHistory[i].loss) < 1e-5, `loss of step ${i + 1}`);
  }
  for (const name of Object.keys(big.weights)) {
    const d = maxAbsDiff(big.weights[name].data as Float32Array, acc.weights[name].data as Float32Array);
    assert(d < 1e-5, `${name} differs by ${d}`);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("train: an interrupted run resumed from its checkpoint ends exactly like an uninterrupted one", async () => {
  const { dir, vocabPath, trainSet, dev } = await setup();
  const settings = {
    ...KILL_TEST_SETTINGS,
    vocabPath,
    task: classificationTask({ train: trainSet, dev }),
    quiet: true,
  };
  const full = tinyModel({ seed: 3 });
  const a = await train({ ...settings, model: full, outputDir: join(dir, "a") });
  // Crash (an exception from the progress callback) at step 8: the newest checkpoint is checkpoint-6.
  const crashed = tinyModel({ seed: 3 });
  await assertRejects(
    () =>
      train({
        ...settings,
        model: crashed,
        outputDir: join(dir, "b"),
        onProgress: (e) => {
          if (e.phase === "train" && e.step === 8) throw new Error("simulated crash");
        },
      }),
    Error,
    "simulated crash",
  );
  crashed.dispose();
  assertEquals(await latestCheckpoint(join(dir, "b")), join(dir, "b", "checkpoint-6"));
  // What a kill in the middle of writing checkpoint-9 leaves behind: a temporary folder, ignored and removed.
  const leftover = join(dir, "b", "checkpoint-9.tmp-12345-0badf00d");
  await Deno.mkdir(leftover);
  await Deno.writeTextFile(join(leftover, "config.json"), "{");
  assertEquals(await latestCheckpoint(join(dir, "b")), join(dir, "b", "checkpoint-6"));
  const resumedModel = tinyModel({ seed: 99 }); // other initial weights: everything must come from the checkpoint
  const b = await train({ ...settings, model: resumedModel, outputDir: join(dir, "b"), resume: true });
  assertEquals(b.resumedFrom, join(dir, "b", "checkpoint-6"));
  assertEquals(await Deno.stat(leftover).catch(() => null), null, "leftover removed");
  assertEquals(b.logHistory, a.logHistory);
  assertEquals(b.evalHistory, a.evalHistory);
  const wa = modelToTensors(full), wb = modelToTensors(resumedModel);
  for (const name of Object.keys(wa)) {
    assertEquals(maxAbsDiff(wa[name].data as Float32Array, wb[name].data as Float32Array), 0, name);
  }
  // Different hyper-parameters are refused instead of silently changing the run.
  const other = tinyModel({ seed: 3 });
  await assertRejects(
    () => train({ ...settings, model: other, outputDir: join(dir, "b"), resume: true, learningRate: 1 }),
    Error,
    "--lr: checkpoint 0.005, now 1",
  );
  for (const m of [full, resumedModel, other]) m.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("train: stopAt stops after that update with a checkpoint (exit status 0); resumed, the run ends as if uninterrupted", async () => {
  const { dir, vocabPath, trainSet, dev } = await setup();
  const settings = {
    ...KILL_TEST_SETTINGS,
    vocabPath,
    task: classificationTask({ train: trainSet, dev }),
    quiet: true,
  };
  const full = tinyModel({ seed: 3 });
  const a = await train({ ...settings, model: full, outputDir: join(dir, "a") });
  const stopped = tinyModel({ seed: 3 });
  const err = await assertRejects(
    () => train({ ...settings, model: stopped, outputDir: join(dir, "b"), stopAt: 10 }),
    TrainingInterrupted,
    "interrupted by --stop-at 10 at step 10/36",
  );
  assertEquals(err.exitCode, 0);
  assertEquals(err.checkpoint, join(dir, "b", "checkpoint-10"));
  assertEquals((await readTrainerState(join(dir, "b", "checkpoint-10"))).global_step, 10);
  stopped.dispose();
  const resumed = tinyModel({ seed: 99 });
  const b = await train({ ...settings, model: resumed, outputDir: join(dir, "b"), resume: true });
  assertEquals(b.logHistory, a.logHistory);
  const wa = modelToTensors(full), wb = modelToTensors(resumed);
  for (const name of Object.keys(wa)) {
    assertEquals(maxAbsDiff(wa[name].data as Float32Array, wb[name].data as Float32Array), 0, name);
  }
  for (const m of [full, resumed]) m.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("train: bad settings fail before training, with clear messages", async () => {
  const { dir, vocabPath, trainSet, dev } = await setup();
  const model = tinyModel();
  const task = classificationTask({ train: trainSet, dev }), noDev = classificationTask({ train: trainSet });
  const base = { model, vocabPath, task, outputDir: join(dir, "x"), quiet: true };
  await assertRejects(() => train({ ...base, metricForBest: "acuracy" }), Error, 'unknown metric "acuracy"');
  await assertRejects(() => train({ ...base, task: noDev, metricForBest: "f1" }), Error, "needs dev features");
  await assertRejects(
    () => train({ ...base, batchSize: 0 }),
    Error,
    "--batch-size (batchSize) must be an integer >= 1",
  );
  await assertRejects(() => train({ ...base, resume: join(dir, "nothing") }), Error, "no complete checkpoint");
  const otherVocab = await writeTinyVocab(join(dir, "other"));
  await Deno.writeTextFile(otherVocab, "[PAD]\n[UNK]\n[CLS]\n[SEP]\nextra\n");
  await assertRejects(() => train({ ...base, vocabPath: otherVocab }), Error, "vocabulary differs");
  assertEquals(await listCheckpoints(join(dir, "x")), [], "nothing was trained");
  // Existing checkpoints are neither mixed into a new run nor silently deleted.
  await Deno.mkdir(join(dir, "x", "checkpoint-5"), { recursive: true });
  await assertRejects(() => train({ ...base }), Error, "already has checkpoints (checkpoint-5)");
  // A NaN weight makes the first loss NaN: training stops naming the step.
  const w = model.params.get("classifier.weight")!;
  w.assign(tf.fill(w.shape, NaN));
  await assertRejects(() => train({ ...base, task: noDev, overwrite: true }), Error, "loss is NaN at step 1");
  assertEquals(await listCheckpoints(join(dir, "x")), [], "--overwrite removed the old checkpoint");
  model.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("train: a hand-written TrainTask adapter trains exactly like the built-in classification task", async () => {
  const { dir, vocabPath, trainSet, dev } = await setup();
  const hp = { learningRate: 1e-2, batchSize: 8, gradAccumSteps: 2, epochs: 2, seed: 5, quiet: true };
  const builtIn = tinyModel({ seed: 3 });
  const builtInTask = classificationTask({ train: trainSet, dev });
  const a = await train({ ...hp, model: builtIn, vocabPath, task: builtInTask, outputDir: join(dir, "a") });
  // The same task written against the adapter API, evaluated by dev loss only (lower is better).
  const contexts: { rows: number; seed: number; step: number }[] = [];
  let micro = 0;
  const task: TrainTask<FeatureBatch, { batches: number }> = {
    name: "hand-written",
    head: "classification",
    n: trainSet.n,
    labels: trainSet.metadata.labels,
    fingerprint: () => "tiny-48",
    batch: (rows, context) => {
      contexts.push({ rows: rows.length, ...context });
      return featureBatch(trainSet, rows);
    },
    loss: (model, batch, { training, seed }) =>
      softmaxCrossEntropy(model.forward(batch, { training, seed, clsOnly: true }).logits!, batch.labels),
    disposeBatch,
    evaluate: (model) => {
      const batch = featureBatch(dev, Int32Array.from({ length: dev.n }, (_, i) => i));
      const loss = tf.tidy(() => softmaxCrossEntropy(model.forward(batch).logits!, batch.labels).dataSync()[0]);
      disposeBatch(batch);
      return { metrics: { loss }, headline: { name: "loss", value: loss }, details: { batches: 1 } };
    },
  };
  const custom = tinyModel({ seed: 3 });
  const b = await train({ ...hp, model: custom, vocabPath, task, outputDir: join(dir, "b") });
  assertEquals(b.logHistory, a.logHistory);
  const wa = modelToTensors(builtIn), wb = modelToTensors(custom);
  for (const name of Object.keys(wa)) {
    assertEquals(maxAbsDiff(wa[name].data as Float32Array, wb[name].data as Float32Array), 0, name);
  }
  // Batches: 48 rows / 8 = 6 micro-batches per epoch, 2 per update; seeds from batchSeed(seed, step, micro).
  assertEquals(contexts.length, 12);
  for (const c of contexts) {
    assertEquals(c.rows, 8);
    assertEquals(c.seed, batchSeed(5, c.step, micro++ % 2));
  }
  // The headline's metric picks the best checkpoint, lower-is-better for a loss; scalars and details are kept.
  assertEquals(b.bestMetric!.name, "loss");
  const losses = b.evalHistory.map((e) => e.loss);
  assertEquals(b.bestMetric!.value, Math.min(...losses));
  // The built-in evaluation averages per-example losses in float64, this one is a float32 batch mean.
  b.evalHistory.forEach((e, i) => assert(Math.abs(e.loss - a.evalHistory[i].loss) < 1e-6, `eval ${i}`));
  assertEquals(b.finalEval!.metrics, { batches: 1 });
  const state = await readTrainerState(b.lastCheckpoint);
  assertEquals([state.task, state.head, state.train_features.fingerprint, state.greater_is_better], [
    "hand-written",
    "classification",
    "tiny-48",
    false,
  ]);
  // A metric the task does not report, and a model with another head, are refused before training.
  await assertRejects(
    () =>
      train({
        ...hp,
        model: custom,
        vocabPath,
        task: { ...task, metricNames: ["loss"] },
        metricForBest: "f1",
        outputDir: join(dir, "c"),
      }),
    Error,
    'unknown metric "f1" for hand-written',
  );
  await assertRejects(
    () => train({ ...hp, model: custom, vocabPath, task: { ...task, head: "question-answering" }, outputDir: dir }),
    Error,
    "trains a question-answering model",
  );
  for (const m of [builtIn, custom]) m.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("CLI train --seeds: one run per seed, each run's accuracy and their mean ± std printed", async () => {
  const { dir, vocabPath, trainSet, dev } = await setup();
  const featDir = join(dir, "run", "features");
  for (const [split, f] of [["train", trainSet], ["dev", dev]] as const) {
    f.metadata.vocab_path = vocabPath; // the random --config model takes the features' vocabulary
    await saveFeatures(join(featDir, `${split}.safetensors`), f);
  }
  const configFile = join(dir, "tiny_config.json");
  const m = tinyModel();
  await Deno.writeTextFile(configFile, JSON.stringify({ ...m.config.raw }));
  m.dispose();
  const out: string[] = [];
  const log = console.log, warn = console.warn;
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.warn = () => {};
  try {
    await assertRejects(
      () => trainCli.run(parseArgs(["--features", featDir, "--seeds", "1,x", "--config", configFile], trainCli.spec)),
      Error,
      '--seeds expects integers, got "x"',
    );
    const argv = ["--features", featDir, "--config", configFile, "--seeds", "1,2,3", "--epochs", "2"];
    await trainCli.run(parseArgs([...argv, "--batch-size", "16", "--lr", "1e-2", "--quiet"], trainCli.spec));
  } finally {
    console.log = log;
    console.warn = warn;
  }
  const json = JSON.parse(await Deno.readTextFile(join(dir, "run", "seeds.json")));
  assertEquals(json.metric, "accuracy");
  const values = json.runs.map((r: { accuracy: number }) => r.accuracy) as number[];
  assertEquals(json.runs.map((r: { seed: number }) => r.seed), [1, 2, 3]);
  const mean = values.reduce((x, y) => x + y, 0) / 3;
  const std = Math.sqrt(values.reduce((x, v) => x + (v - mean) ** 2, 0) / 2);
  const text = out.join("\n");
  for (const [i, s] of [1, 2, 3].entries()) {
    assert(text.includes(`seed ${s}: accuracy ${values[i].toFixed(4)} (final, step 6)`), text);
    // Each run is a complete, independent run folder whose final evaluation is the one reported.
    const state = await readTrainerState(join(dir, "run", `seed-${s}`, "checkpoint-6"));
    assertEquals(state.rng.seed, s);
    assertEquals(state.eval_history.at(-1)!.accuracy, values[i]);
  }
  assert(text.includes(`accuracy over 3 seeds: ${mean.toFixed(4)} ± ${std.toFixed(4)}`), text);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("trainSeeds: one run per seed, mean and std of the headline metric", async () => {
  const { dir, vocabPath, trainSet, dev } = await setup();
  const r = await trainSeeds({
    seeds: [1, 2],
    makeModel: (seed) => Promise.resolve({ model: tinyModel({ seed }), vocabPath }),
    task: classificationTask({ train: trainSet, dev }),
    outputDir: join(dir, "seeds"),
    epochs: 1,
    batchSize: 16,
    learningRate: 1e-2,
    quiet: true,
  });
  assertEquals(r.runs.map((x) => x.seed), [1, 2]);
  assertEquals(r.metric, "accuracy");
  const [v1, v2] = r.runs.map((x) => x.value);
  assert(Math.abs(r.mean - (v1 + v2) / 2) < 1e-12);
  assert(Math.abs(r.std - Math.abs(v1 - v2) / Math.SQRT2) < 1e-12);
  const json = JSON.parse(await Deno.readTextFile(join(dir, "seeds", "seeds.json")));
  assertEquals(json.runs.length, 2);
  assert(await latestCheckpoint(join(dir, "seeds", "seed-2")));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("train: a process killed with SIGKILL mid-epoch and resumed ends like an uninterrupted run", async () => {
  const dir = await Deno.makeTempDir({ prefix: "train_kill_" });
  const script = new URL("../fixtures/tiny_training.ts", import.meta.url).pathname;
  const run = (args: string[]) =>
    new Deno.Command(Deno.execPath(), { args: ["run", "-A", script, ...args], stdout: "piped", stderr: "piped" });
  const check = (o: Deno.CommandOutput, what: string) => {
    if (!o.success) throw new Error(`${what} failed:\n${new TextDecoder().decode(o.stderr)}`);
  };
  const a = join(dir, "a"), b = join(dir, "b");
  check(await run([a]).output(), "uninterrupted run");

  // Slowed down (50 ms per update) so that it is still training when the first checkpoint appears.
  const child = run([b, "--slow-ms", "50"]).spawn();
  const deadline = Date.now() + 60_000;
  let killedAfter: number[] = [];
  while (Date.now() < deadline) {
    const cps = await listCheckpoints(b);
    if (cps.length) {
      child.kill("SIGKILL");
      killedAfter = cps.map((c) => c.step);
      break;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  const status = await child.status;
  await child.stdout.cancel();
  await child.stderr.cancel();
  assertEquals(status.signal, "SIGKILL", "the run was killed, not finished");
  assert(killedAfter.length > 0 && Math.max(...killedAfter) < 36, `killed mid-run (checkpoints ${killedAfter})`);
  const stepBeforeResume = (await listCheckpoints(b))[0].step;
  assert(stepBeforeResume < 12, `killed in the first epoch (12 updates), newest checkpoint ${stepBeforeResume}`);
  assertEquals(await Deno.stat(join(b, "train_results.json")).catch(() => null), null);

  check(await run([b, "--resume"]).output(), "resumed run");
  const finalA = join(a, "checkpoint-36"), finalB = join(b, "checkpoint-36");
  const [wa, wb] = [
    await readSafetensors(join(finalA, "model.safetensors")),
    await readSafetensors(join(finalB, "model.safetensors")),
  ];
  let worst = 0;
  for (const name of Object.keys(wa.tensors)) {
    worst = Math.max(worst, maxAbsDiff(wa.tensors[name].data as Float32Array, wb.tensors[name].data as Float32Array));
  }
  assert(worst <= 1e-6, `weights differ by ${worst}`);
  const [sa, sb] = [await readTrainerState(finalA), await readTrainerState(finalB)];
  assertEquals(sb.log_history, sa.log_history);
  assertEquals(sb.eval_history, sa.eval_history);
  assertEquals(sb.best_step, sa.best_step);
  // No leftovers: every folder in the run is a complete checkpoint.
  for await (const e of Deno.readDir(b)) {
    if (e.isFile) {
      assertEquals(e.name, "train_results.json");
      continue;
    }
    assert(/^checkpoint-\d+$/.test(e.name), `unexpected leftover ${e.name}`);
    for (const f of ["config.json", "vocab.txt", "model.safetensors", "training_state.safetensors"]) {
      assert(await Deno.stat(join(b, e.name, f)).catch(() => null), `${e.name}/${f} exists`);
    }
    await readTrainerState(join(b, e.name)); // parses
  }
  console.log(`killed after checkpoint-${stepBeforeResume}; resumed; max weight difference ${worst}`);
  await Deno.remove(dir, { recursive: true });
});
