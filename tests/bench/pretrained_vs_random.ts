/**
 * What pre-training buys: fine-tunes a pre-trained checkpoint (default `data/pretrained/`) and a random
 * initialisation of the same shape and vocabulary with the same recipe, on
 *
 * - SST-2: a seeded subset of `--train-n` training sentences, scored on the whole GLUE dev set (872);
 * - IMDB: `--train-n` reviews of the IMDB **train** split, scored on a fixed sample of `--test-n` reviews of the
 *   **test** split (the shipped model was pre-trained on train-split text only),
 *
 * over a small learning-rate grid and several seeds, and prints mean ± std per cell and each start at its best
 * learning rate. A benchmark that prints figures, not a test.
 *
 * Usage: deno task bench:pretrained [--model data/pretrained] [--tasks sst2,imdb] [--lrs 1e-4,3e-4,1e-3]
 *        [--seeds 1,2,3] [--train-n 2000] [--test-n 2000] [--epochs 3] [--inits pretrained,random] [--json FILE]
 *        [--threads N]
 * @module
 */
import { initBackend } from "../../lib/backends/backend.ts";
import { loadCheckpoint } from "../../lib/model/checkpoint.ts";
import { type Dataset, readGlueSst2 } from "../../lib/data/datasets.ts";
import { evaluateFeatures } from "../../lib/eval/evaluate.ts";
import { convertExamples, type FeatureSet } from "../../lib/data/features.ts";
import { join } from "../../lib/io/fsutil.ts";
import { BertModel } from "../../lib/model/model.ts";
import { defaultImdbArchive, imdbReviews } from "../../lib/tasks/pretraining/corpus.ts";
import { mixSeed, Rng, shuffledOrder } from "../../lib/training/rng.ts";
import { train } from "../../lib/training/train.ts";
import type { FullTokenizer } from "../../lib/text/tokenizer.ts";
import { machineInfo } from "../../lib/bench/bench.ts";
import { classificationTask } from "../../lib/tasks/classification/task.ts";

const flag = (name: string, dflt: string) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : dflt;
};
const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);
const modelDir = flag("model", "data/pretrained");
const tasks = list(flag("tasks", "sst2,imdb"));
const lrs = list(flag("lrs", "1e-4,3e-4,1e-3")).map(Number);
const seeds = list(flag("seeds", "1,2,3")).map(Number);
const trainN = Number(flag("train-n", "2000"));
const testN = Number(flag("test-n", "2000"));
const epochs = Number(flag("epochs", "3"));
const jsonOut = flag("json", "");
const inits = list(flag("inits", "pretrained,random"));
const threads = Number(flag("threads", "0")) || undefined; // BLAS threads; default: all cores
const sharedData = defaultImdbArchive().replace(/\/imdb\/[^/]*$/, ""); // ../shared/data

/** `n` examples of `d` drawn without replacement by a seeded shuffle (all of them when `n` >= their count). */
function sample(d: Dataset, n: number, seed: number): Dataset {
  if (n >= d.examples.length) return d;
  const order = shuffledOrder(d.examples.length, new Rng(mixSeed(seed, 0x5a3)));
  return { ...d, examples: Array.from(order.slice(0, n), (i) => d.examples[i]) };
}

/** Labelled IMDB reviews of one split: the first `n / 2` of `neg/` and of `pos/` in archive order. */
async function readImdbLabelled(split: "train" | "test", n: number): Promise<Dataset> {
  const found = await imdbReviews({ split, limit: n }, (text) => text.replace(/<br\s*\/?>/gi, " "));
  const examples = [...found.neg.map((t, i) => ({ t, label: 0, i })), ...found.pos.map((t, i) => ({ t, label: 1, i }))]
    .map((x, k) => ({ id: `${split}-${x.label ? "pos" : "neg"}-${x.i}`, textA: x.t, label: x.label, line: k + 1 }));
  return { examples, labels: ["negative", "positive"], source: `imdb:${split}`, skipped: [] };
}

interface TaskData {
  name: string;
  train: FeatureSet;
  test: FeatureSet;
  testName: string;
}

async function taskData(name: string, tokenizer: FullTokenizer): Promise<TaskData> {
  if (name === "sst2") {
    const dir = join(sharedData, "glue", "SST-2");
    const tr = sample(await readGlueSst2(join(dir, "train.tsv")), trainN, 1);
    const dev = await readGlueSst2(join(dir, "dev.tsv"));
    return {
      name,
      train: await convertExamples(tr, tokenizer, { maxSeqLength: 64, task: "sst2" }),
      test: await convertExamples(dev, tokenizer, { maxSeqLength: 64, task: "sst2" }),
      testName: `SST-2 dev (${dev.examples.length})`,
    };
  }
  if (name === "imdb") {
    const tr = await readImdbLabelled("train", trainN);
    const te = await readImdbLabelled("test", testN);
    return {
      name,
      train: await convertExamples(tr, tokenizer, { maxSeqLength: 128, task: "imdb" }),
      test: await convertExamples(te, tokenizer, { maxSeqLength: 128, task: "imdb" }),
      testName: `IMDB test sample (${te.examples.length})`,
    };
  }
  throw new Error(`unknown task "${name}" (sst2, imdb)`);
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const std = (xs: number[]) => {
  const m = mean(xs);
  return xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1)) : 0;
};
const pct = (xs: number[]) => `${(100 * mean(xs)).toFixed(1)} ± ${(100 * std(xs)).toFixed(1)}`;

await initBackend({ quiet: true, threads });
const probe = await loadCheckpoint(modelDir, { head: "classification", numLabels: 2, quiet: true });
const { tokenizer, vocabPath, config } = probe;
probe.model.dispose();
const { cpu, cores } = machineInfo();
console.log(`machine: ${cpu}, ${cores} cores`);
console.log(
  `pre-trained: ${modelDir} (${config.numHiddenLayers} layers x ${config.hiddenSize}, vocab ${config.vocabSize}); ` +
    `random: the same config, fresh weights. Recipe: AdamW, batch 32, ${epochs} epochs, 10% warm-up, ` +
    `train-n ${trainN}, lrs ${lrs.join(", ")}, seeds ${seeds.join(", ")}`,
);
const results: { task: string; init: string; lr: number; seed: number; accuracy: number; seconds: number }[] = [];
const tmp = await Deno.makeTempDir({ prefix: "pretrained_vs_random_" });
try {
  for (const name of tasks) {
    const data = await taskData(name, tokenizer);
    console.log(`\n== ${name}: ${data.train.n} training examples, scored on ${data.testName}`);
    for (const init of inits) {
      for (const lr of lrs) {
        const accs: number[] = [];
        for (const seed of seeds) {
          const t0 = performance.now();
          const model = init === "pretrained"
            ? (await loadCheckpoint(modelDir, { head: "classification", numLabels: 2, quiet: true, seed })).model
            : new BertModel(config, { head: "classification", numLabels: 2, seed });
          try {
            await train({
              model,
              vocabPath,
              task: classificationTask({ train: data.train }),
              outputDir: join(tmp, `${name}-${init}-${lr}-${seed}`),
              learningRate: lr,
              epochs,
              batchSize: 32,
              seed,
              saveTotalLimit: 1,
              quiet: true,
            });
            const { metrics } = await evaluateFeatures(model, data.test);
            accs.push(metrics.accuracy);
            const seconds = (performance.now() - t0) / 1000;
            results.push({ task: name, init, lr, seed, accuracy: metrics.accuracy, seconds });
          } finally {
            model.dispose();
            await Deno.remove(join(tmp, `${name}-${init}-${lr}-${seed}`), { recursive: true }).catch(() => {});
          }
        }
        console.log(
          `${init.padEnd(10)} lr ${lr.toExponential(0).padEnd(5)} accuracy ${pct(accs)} %  (${
            accs.map((a) => (100 * a).toFixed(1)).join(", ")
          })`,
        );
      }
    }
    const best = (init: string) => {
      let top = { lr: 0, accs: [] as number[] };
      for (const lr of lrs) {
        const accs = results.filter((r) => r.task === name && r.init === init && r.lr === lr).map((r) => r.accuracy);
        if (!top.accs.length || mean(accs) > mean(top.accs)) top = { lr, accs };
      }
      return top;
    };
    if (inits.length < 2) continue;
    const p = best("pretrained"), r = best("random");
    console.log(
      `${name}: pre-trained ${pct(p.accs)} % (lr ${p.lr}) vs random ${pct(r.accs)} % (lr ${r.lr}): ` +
        `${(100 * (mean(p.accs) - mean(r.accs))).toFixed(1)} points`,
    );
  }
} finally {
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}
if (jsonOut) await Deno.writeTextFile(jsonOut, JSON.stringify({ modelDir, trainN, testN, epochs, results }, null, 1));
