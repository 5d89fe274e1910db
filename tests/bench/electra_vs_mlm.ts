/**
 * ELECTRA's replaced-token detection (Clark et al., 2020) against masked-LM pre-training, from random weights, at a
 * matched budget: the same encoder shape (the config of `data/pretrained/`, BERT-Tiny), the same vocabulary
 * (`data/pretrained/vocab.txt`), the same instances in the same order, the same number of AdamW updates (one AdamW
 * over all parameters, linear warm-up and decay, clipping at 1), and the wall-clock of each run is printed so that
 * compute can be compared too. A measurement that prints figures, not a test.
 *
 * - **MLM**: RoBERTa-style masked LM (one span per instance, no next-sentence pairs, whole-word masking, as
 *   `pretrain --objective mlm --whole-word-mask`), `BertModel` head `pretraining`, loss = MLM cross-entropy.
 * - **ELECTRA**: a small generator (`BertModel` head `pretraining`, hidden 64, 2 layers, 1 head, intermediate 256)
 *   trained with the MLM loss at the same masked positions; at each masked position a replacement is sampled from
 *   its softmax (inverse-CDF sampling on the CPU with a PRNG seeded per update, so runs repeat; the logits are read
 *   back and the sample made as a new tensor, so no gradient flows through it); the discriminator (`BertModel` head `none`, the encoder shape of
 *   the MLM model) plus an RTD head (dense h->h, GELU, dense h->1, as HF's `ElectraDiscriminatorPredictions`)
 *   predicts for every non-padding token whether it was replaced (label 1 iff the sample differs from the original).
 *   Loss = generator MLM + `--rtd-weight` (50) x mean binary cross-entropy over non-padding tokens. No embedding
 *   sharing between generator and discriminator (the paper's no-sharing ablation).
 *
 * Held-out figures on instances from the last `--eval-fraction` of the reviews: masked-LM top-1 accuracy of the MLM
 * model and of the ELECTRA generator; replaced-token detection accuracy of the discriminator against the baseline
 * "never replaced" (the share of tokens left as they were). Transfer: each encoder (`bert.embeddings.*`,
 * `bert.encoder.*`) is copied into a fresh classification model (its pooler and classifier fresh, seeded as a
 * random-init model's) and fine-tuned with the recipe of tests/bench/pretrained_vs_random.ts on an SST-2 subset
 * (`--train-n` sentences, AdamW batch 32, `--ft-epochs` epochs), scored on the GLUE dev set (872).
 *
 * `--replace uniform` swaps the generator's samples for uniform random ids (the generator still trains): a check
 * that the discriminator path (labels, positions, RTD head, loss) can learn when the replacements are easy to spot.
 *
 * Usage: deno task bench:electra [--steps 1500] [--limit 25000] [--batch-size 32] [--lr 1e-3] [--electra-lrs 1e-3,2e-3]
 *        [--objectives mlm,electra] [--ft-lrs 3e-4,1e-3] [--ft-seeds 1,2] [--train-n 2000] [--random true]
 *        [--threads 1] [--dupe-factor 1] [--replace generator|uniform] [--json FILE]
 * @module
 */
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { sparseSoftmaxCrossEntropy } from "../../lib/backends/blas/fused.ts";
import { machineInfo } from "../../lib/bench/bench.ts";
import { type Dataset, readGlueSst2 } from "../../lib/data/datasets.ts";
import { convertExamples, type FeatureSet } from "../../lib/data/features.ts";
import { evaluateFeatures } from "../../lib/eval/evaluate.ts";
import { join } from "../../lib/io/fsutil.ts";
import { type BertConfig, BertModel, configFromJson, gelu, linear } from "../../lib/model/model.ts";
import { classificationTask } from "../../lib/tasks/classification/task.ts";
import { defaultImdbArchive, readCorpus, splitCorpus } from "../../lib/tasks/pretraining/corpus.ts";
import { createPretrainingData, type PretrainingSet } from "../../lib/tasks/pretraining/instances.ts";
import {
  disposePretrainingBatch,
  evaluatePretraining,
  type PretrainingBatch,
  pretrainingBatch,
  pretrainingLoss,
} from "../../lib/tasks/pretraining/task.ts";
import { FullTokenizer } from "../../lib/text/tokenizer.ts";
import { Vocab } from "../../lib/text/vocab.ts";
import { adamWOptions, DEFAULT_HYPERPARAMETERS } from "../../lib/training/hyperparameters.ts";
import {
  AdamW,
  clipGradsByGlobalNorm,
  globalNormSquared,
  scheduleLr,
  warmupStepsFor,
} from "../../lib/training/optim.ts";
import { dropoutSeed, epochOrderState, mixSeed, Rng, shuffledOrder } from "../../lib/training/rng.ts";
import { lossAndGrads } from "../../lib/training/step.ts";
import { train } from "../../lib/training/train.ts";

// ---------------------------------------------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------------------------------------------

const flag = (name: string, dflt: string) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : dflt;
};
const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);
const int = (name: string, dflt: string) => {
  const v = Number(flag(name, dflt));
  if (!Number.isInteger(v) || v < 0) throw new Error(`electra_vs_mlm: --${name} must be an integer >= 0, got ${v}`);
  return v;
};
const modelDir = flag("model", "data/pretrained"); // its config.json and vocab.txt (not its weights)
const steps = int("steps", "1500");
const limit = int("limit", "25000");
const evalFraction = Number(flag("eval-fraction", "0.02"));
const dupeFactor = int("dupe-factor", "1");
const batchSize = int("batch-size", "32");
const mlmLr = Number(flag("lr", "1e-3"));
const electraLrs = list(flag("electra-lrs", "1e-3")).map(Number);
const warmupRatio = Number(flag("warmup", "0.05"));
const rtdWeight = Number(flag("rtd-weight", "50"));
const seed = int("seed", "42");
const objectives = list(flag("objectives", "mlm,electra"));
const ftLrs = list(flag("ft-lrs", "3e-4,1e-3")).map(Number);
const ftSeeds = list(flag("ft-seeds", "1,2")).map(Number);
const trainN = int("train-n", "2000");
const ftEpochs = int("ft-epochs", "3");
const withRandom = flag("random", "true") !== "false"; // also fine-tune a random-init encoder (the floor)
/** Where the replacements come from: the generator's softmax (ELECTRA), or uniform ids (a check of the RTD path). */
const replace = flag("replace", "generator");
if (replace !== "generator" && replace !== "uniform") {
  throw new Error(`electra_vs_mlm: --replace takes generator or uniform, got "${replace}"`);
}
const threads = int("threads", "1");
const logEvery = int("log-every", "100");
const jsonOut = flag("json", "");
const generatorShape = {
  hiddenSize: int("gen-hidden", "64"),
  numHiddenLayers: int("gen-layers", "2"),
  numAttentionHeads: int("gen-heads", "1"),
  intermediateSize: int("gen-intermediate", "256"),
};
for (const o of objectives) {
  if (o !== "mlm" && o !== "electra") throw new Error(`electra_vs_mlm: --objectives takes mlm, electra; got "${o}"`);
}
if (steps < 1) throw new Error("electra_vs_mlm: --steps must be >= 1");

// ---------------------------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------------------------

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const std = (xs: number[]) => {
  const m = mean(xs);
  return xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1)) : 0;
};
const pct = (x: number) => (100 * x).toFixed(1);
const pctMeanStd = (xs: number[]) => `${pct(mean(xs))} ± ${pct(std(xs))}`;
const minutes = (s: number) => `${(s / 60).toFixed(1)} min`;

/** `n` examples of `d` drawn without replacement by a seeded shuffle (pretrained_vs_random.ts's subset). */
function sample(d: Dataset, n: number, seedValue: number): Dataset {
  if (n >= d.examples.length) return d;
  const order = shuffledOrder(d.examples.length, new Rng(mixSeed(seedValue, 0x5a3)));
  return { ...d, examples: Array.from(order.slice(0, n), (i) => d.examples[i]) };
}

/** An encoder's weights, copied out of the backend: `bert.embeddings.*` and `bert.encoder.*` by name. */
type EncoderWeights = Map<string, { data: Float32Array; shape: number[] }>;

function encoderWeights(params: Map<string, tf.Variable>, prefix = ""): EncoderWeights {
  const out: EncoderWeights = new Map();
  for (const [name, v] of params) {
    const bare = name.slice(prefix.length);
    if (!name.startsWith(prefix) || !/^bert\.(embeddings|encoder)\./.test(bare)) continue;
    out.set(bare, { data: v.dataSync() as Float32Array, shape: [...v.shape] });
  }
  return out;
}

/** Writes `weights` into `model`'s parameters of the same names; throws naming a missing or mis-shaped one. */
function loadEncoder(model: BertModel, weights: EncoderWeights): void {
  for (const [name, w] of weights) {
    const v = model.params.get(name);
    if (!v) throw new Error(`electra_vs_mlm: the classification model has no parameter "${name}" to copy into`);
    if (v.shape.join(",") !== w.shape.join(",")) {
      throw new Error(`electra_vs_mlm: "${name}" is [${w.shape}] in the encoder but [${v.shape}] in the model`);
    }
    tf.tidy(() => v.assign(tf.tensor(w.data, w.shape, "float32")));
  }
}

/** A dense layer's parameters `[in, out]` + `[out]`, normal(0, 0.02) / zeros as BertModel initialises them. */
function addDense(params: Map<string, tf.Variable>, prefix: string, inSize: number, outSize: number, s: number) {
  const add = (name: string, value: tf.Tensor) => {
    params.set(`${prefix}.${name}`, tf.variable(value, true));
    value.dispose(); // the variable keeps its own reference to the data
  };
  add("weight", tf.randomNormal([inSize, outSize], 0, 0.02, "float32", s)); // [in, out]
  add("bias", tf.zeros([outSize])); // [out]
}

// ---------------------------------------------------------------------------------------------------------------
// The two objectives
// ---------------------------------------------------------------------------------------------------------------

/** A model under pre-training: all its parameters (one AdamW over them) and the loss of a batch at an update. */
interface Pretrainee {
  params: Map<string, tf.Variable>;
  /** The loss to differentiate; `logs` receives the figures of its parts (read inside, scalars only). */
  loss(batch: PretrainingBatch, set: PretrainingSet, rows: ArrayLike<number>, step: number, logs: Logs): tf.Scalar;
  dispose(): void;
}

type Logs = Record<string, number>;

function mlmPretrainee(config: BertConfig): Pretrainee & { model: BertModel } {
  const model = new BertModel(config, { head: "pretraining", seed });
  return {
    model,
    params: model.params,
    loss(batch, _set, _rows, step, logs) {
      const parts = pretrainingLoss(model, batch, { training: true, seed: dropoutSeed(seed, step, 0), nsp: false });
      logs.mlm = parts.mlm.dataSync()[0];
      return parts.mlm;
    },
    dispose: () => model.dispose(),
  };
}

/**
 * One token per prediction slot drawn from `softmax(logits)` by inverse-CDF sampling on the CPU with the project's
 * seeded PRNG (so runs repeat), as a plain array read back from the backend: no gradient flows through it. Unused
 * slots (`labels` < 0) are skipped (-1). Gumbel-max with `tf.randomUniform` noise gives the same distribution but
 * took ~300 ms per `[32, 20, 8000]` update on one thread here (tfjs draws the noise in JavaScript), a third of an
 * ELECTRA update charged to the objective by the implementation; this took ~80 ms (logged as `sample_ms`).
 * @param logits `[B, P, V]`
 * @param labels int32 `[B * P]`, the original ids, -1 in unused slots
 * @returns `[B * P]` token ids
 */
function sampleTokens(logits: tf.Tensor3D, labels: Int32Array, noiseSeed: number): Int32Array {
  const [b, p, v] = logits.shape;
  const rng = new Rng(noiseSeed);
  if (replace === "uniform") return labels.map((id) => (id < 0 ? -1 : rng.int(v)));
  const x = logits.dataSync() as Float32Array;
  const out = new Int32Array(b * p).fill(-1);
  const e = new Float64Array(v);
  for (let k = 0; k < b * p; k++) {
    if (labels[k] < 0) continue;
    const off = k * v;
    let max = -Infinity;
    for (let j = 0; j < v; j++) max = Math.max(max, x[off + j]);
    let sum = 0;
    for (let j = 0; j < v; j++) sum += e[j] = Math.exp(x[off + j] - max);
    let u = rng.next() * sum, j = 0;
    while (j < v - 1 && (u -= e[j]) >= 0) j++;
    out[k] = j;
  }
  return out;
}

/** The original ids of the prediction slots of `rows` of `set`, `[rows * P]`, -1 in unused slots. */
function mlmIdsOf(set: PretrainingSet, rows: ArrayLike<number>): Int32Array {
  const P = set.maxPredictions, out = new Int32Array(rows.length * P);
  for (let r = 0; r < rows.length; r++) out.set(set.mlmIds.subarray(rows[r] * P, (rows[r] + 1) * P), r * P);
  return out;
}

/**
 * The discriminator's input (original tokens with the masked positions replaced by `sampled`) and its labels
 * (1 where the token differs from the original), `[B, seq]` like `batch.inputIds`.
 */
function corrupt(
  batch: PretrainingBatch,
  set: PretrainingSet,
  rows: ArrayLike<number>,
  sampled: Int32Array,
): { ids: Int32Array; labels: Float32Array } {
  const [b, seq] = batch.inputIds.shape;
  const L = set.maxSeqLength, P = set.maxPredictions;
  const ids = new Int32Array(b * seq), labels = new Float32Array(b * seq);
  for (let r = 0; r < b; r++) {
    const i = rows[r];
    ids.set(set.inputIds.subarray(i * L, i * L + seq), r * seq); // the masked input: original except at the slots
    for (let p = 0; p < P; p++) {
      const original = set.mlmIds[i * P + p];
      if (original < 0) continue; // unused slot
      const at = r * seq + set.mlmPositions[i * P + p], token = sampled[r * P + p];
      ids[at] = token;
      labels[at] = token === original ? 0 : 1;
    }
  }
  return { ids, labels };
}

interface Electra extends Pretrainee {
  generator: BertModel;
  discriminator: BertModel;
  /** RTD logits `[B*seq]` of the discriminator on `inputs`. */
  rtdLogits(inputs: PretrainingBatch, ids: tf.Tensor2D, training: boolean, dropout: number): tf.Tensor1D;
}

function electraPretrainee(config: BertConfig): Electra {
  const genConfig: BertConfig = { ...config, ...generatorShape, raw: undefined };
  const generator = new BertModel(genConfig, { head: "pretraining", seed: mixSeed(seed, 0x6e7) });
  const discriminator = new BertModel(config, { head: "none", seed });
  const head = new Map<string, tf.Variable>();
  const h = config.hiddenSize;
  addDense(head, "discriminator_predictions.dense", h, h, mixSeed(seed, 0xd15c, 1));
  addDense(head, "discriminator_predictions.dense_prediction", h, 1, mixSeed(seed, 0xd15c, 2));
  const params = new Map<string, tf.Variable>([
    ...[...generator.params].map(([k, v]) => [`generator.${k}`, v] as const),
    ...[...discriminator.params].map(([k, v]) => [`discriminator.${k}`, v] as const),
    ...head,
  ]);
  const p = (name: string) => head.get(`discriminator_predictions.${name}`)!;
  const rtdLogits = (inputs: PretrainingBatch, ids: tf.Tensor2D, training: boolean, dropout: number) =>
    tf.tidy(() => {
      const out = discriminator.forward(
        { inputIds: ids, tokenTypeIds: inputs.tokenTypeIds, attentionMask: inputs.attentionMask },
        { training, seed: dropout },
      );
      const x = tf.reshape(out.lastHiddenState, [-1, h]) as tf.Tensor2D; // [B*F, D]
      const hidden = gelu(linear(x, p("dense.weight"), p("dense.bias"))) as tf.Tensor2D; // [B*F, D]
      return tf.reshape(linear(hidden, p("dense_prediction.weight"), p("dense_prediction.bias")), [-1]) as tf.Tensor1D;
    });
  return {
    generator,
    discriminator,
    params,
    rtdLogits,
    loss(batch, set, rows, step, logs) {
      const gen = generator.forward(batch, {
        training: true,
        seed: mixSeed(seed, 0x6e7, step),
        mlmPositions: batch.mlmPositions,
      });
      const logits = gen.mlmLogits!; // [B, P, V]
      const v = logits.shape[2];
      const genLoss = sparseSoftmaxCrossEntropy(
        tf.reshape(logits, [-1, v]) as tf.Tensor2D,
        tf.reshape(batch.mlmIds, [-1]) as tf.Tensor1D,
      );
      const tSample = performance.now();
      const sampled = sampleTokens(logits, mlmIdsOf(set, rows), mixSeed(seed, 0x6b3e1, step));
      logs.sample_ms = performance.now() - tSample;
      const { ids, labels } = corrupt(batch, set, rows, sampled);
      const idsT = tf.tensor2d(ids, batch.inputIds.shape, "int32");
      const z = rtdLogits(batch, idsT, true, dropoutSeed(seed, step, 0)); // [B*F]
      const y = tf.tensor1d(labels);
      const mask = tf.cast(tf.reshape(batch.attentionMask, [-1]), "float32"); // [B*F]
      const bce = tf.div(tf.sum(tf.mul(tf.sub(tf.softplus(z), tf.mul(z, y)), mask)), tf.sum(mask)) as tf.Scalar;
      const hit = tf.sum(tf.mul(tf.cast(tf.equal(tf.cast(tf.greater(z, 0), "float32"), y), "float32"), mask));
      const valid = tf.sum(mask).dataSync()[0];
      logs.gen_mlm = genLoss.dataSync()[0];
      logs.rtd_bce = bce.dataSync()[0];
      logs.rtd_acc = hit.dataSync()[0] / valid;
      let replaced = 0;
      for (let k = 0; k < labels.length; k++) replaced += labels[k];
      logs.replaced = replaced / valid;
      return tf.add(genLoss, tf.mul(bce, rtdWeight)) as tf.Scalar;
    },
    dispose() {
      generator.dispose();
      discriminator.dispose();
      for (const v of head.values()) v.dispose();
    },
  };
}

/** Held-out replaced-token detection: the generator (no dropout) samples, the discriminator judges every token. */
function evaluateRtd(electra: Electra, dev: PretrainingSet, evalBatch = 64) {
  let tokens = 0, right = 0, replaced = 0, caught = 0, flagged = 0;
  for (let start = 0; start < dev.n; start += evalBatch) {
    const rows = Array.from({ length: Math.min(evalBatch, dev.n - start) }, (_, j) => start + j);
    const batch = pretrainingBatch(dev, rows);
    try {
      const logits = tf.tidy(() =>
        electra.generator.forward(batch, { training: false, mlmPositions: batch.mlmPositions }).mlmLogits!
      );
      const sampled = sampleTokens(logits, mlmIdsOf(dev, rows), mixSeed(0xe7a1, start));
      logits.dispose();
      const { ids, labels } = corrupt(batch, dev, rows, sampled);
      const idsT = tf.tensor2d(ids, batch.inputIds.shape, "int32");
      const z = electra.rtdLogits(batch, idsT, false, 0);
      const zs = z.dataSync();
      const mask = batch.attentionMask.dataSync();
      tf.dispose([idsT, z]);
      for (let k = 0; k < labels.length; k++) {
        if (!mask[k]) continue;
        const guess = zs[k] > 0 ? 1 : 0;
        tokens++;
        right += guess === labels[k] ? 1 : 0;
        replaced += labels[k];
        caught += guess && labels[k] ? 1 : 0;
        flagged += guess;
      }
    } finally {
      disposePretrainingBatch(batch);
    }
  }
  return {
    accuracy: right / tokens,
    baseline: 1 - replaced / tokens,
    replacedShare: replaced / tokens,
    recall: replaced ? caught / replaced : NaN,
    precision: flagged ? caught / flagged : NaN,
    tokens,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The loop (the same for both objectives): AdamW, linear warm-up/decay, global-norm clipping at 1
// ---------------------------------------------------------------------------------------------------------------

interface RunStats {
  seconds: number;
  msPerStep: number;
  tensorsAfterFirst: number;
  tensorsAfterLast: number;
  lastLogs: Logs;
}

async function pretrainLoop(name: string, t: Pretrainee, set: PretrainingSet, lr: number): Promise<RunStats> {
  const hp = { ...DEFAULT_HYPERPARAMETERS, learningRate: lr, batchSize, weightDecay: 0.01, maxGradNorm: 1, seed };
  const optimizer = new AdamW(t.params, adamWOptions(hp));
  const warmupSteps = warmupStepsFor(steps, warmupRatio);
  if (set.n < batchSize) throw new Error(`electra_vs_mlm: ${set.n} instances, fewer than a batch of ${batchSize}`);
  let epoch = 0, at = 0;
  let order = shuffledOrder(set.n, new Rng(epochOrderState(seed, epoch)));
  let tensorsAfterFirst = 0, tensorsAfterLast = 0;
  const window: Record<string, number[]> = {};
  const t0 = performance.now();
  let tLog = t0;
  let lastLogs: Logs = {};
  try {
    for (let step = 0; step < steps; step++) {
      if (at + batchSize > set.n) { // a new epoch (the short last batch is dropped)
        order = shuffledOrder(set.n, new Rng(epochOrderState(seed, ++epoch)));
        at = 0;
      }
      const rows = order.subarray(at, at + batchSize);
      at += batchSize;
      const batch = pretrainingBatch(set, rows);
      const logs: Logs = {};
      try {
        const { loss, grads } = lossAndGrads(t, () => t.loss(batch, set, rows, step, logs));
        logs.loss = loss.dataSync()[0];
        loss.dispose();
        if (!Number.isFinite(logs.loss)) throw new Error(`${name}: the loss is ${logs.loss} at step ${step + 1}`);
        const squared = globalNormSquared(grads);
        const norm = Math.sqrt(squared.dataSync()[0]);
        squared.dispose();
        clipGradsByGlobalNorm(grads, 1, norm);
        logs.grad_norm = norm;
        optimizer.applyGradients(grads, scheduleLr(step, { peakLr: lr, warmupSteps, totalSteps: steps }));
      } finally {
        disposePretrainingBatch(batch);
      }
      lastLogs = logs;
      tensorsAfterLast = tf.memory().numTensors; // the AdamW moments exist from update 1 on
      if (step === 0) tensorsAfterFirst = tensorsAfterLast;
      for (const [k, v] of Object.entries(logs)) (window[k] ??= []).push(v);
      if ((step + 1) % logEvery === 0 || step + 1 === steps) {
        const now = performance.now();
        const n = window.loss.length;
        console.log(
          `  ${name} step ${step + 1}/${steps}: ` +
            Object.entries(window).map(([k, vs]) =>
              `${k} ${mean(vs).toFixed(k === "sample_ms" ? 0 : k === "grad_norm" ? 2 : 4)}`
            ).join(
              ", ",
            ) + ` (${((now - tLog) / n).toFixed(0)} ms/step)`,
        );
        for (const k of Object.keys(window)) delete window[k];
        tLog = now;
        await Promise.resolve();
      }
    }
  } finally {
    optimizer.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  if (tensorsAfterLast !== tensorsAfterFirst) {
    throw new Error(
      `${name}: ${tensorsAfterFirst} tensors after update 1 but ${tensorsAfterLast} after update ${steps}: a leak`,
    );
  }
  return { seconds, msPerStep: (1000 * seconds) / steps, tensorsAfterFirst, tensorsAfterLast, lastLogs };
}

// ---------------------------------------------------------------------------------------------------------------
// Fine-tuning on SST-2 (tests/bench/pretrained_vs_random.ts's recipe)
// ---------------------------------------------------------------------------------------------------------------

async function fineTune(
  label: string,
  config: BertConfig,
  weights: EncoderWeights | undefined,
  data: { train: FeatureSet; test: FeatureSet },
  vocabPath: string,
  tmp: string,
): Promise<Record<number, number[]>> {
  const byLr: Record<number, number[]> = {};
  for (const lr of ftLrs) {
    byLr[lr] = [];
    for (const s of ftSeeds) {
      const model = new BertModel(config, { head: "classification", numLabels: 2, seed: s });
      const dir = join(tmp, `${label}-${lr}-${s}`);
      try {
        if (weights) loadEncoder(model, weights);
        await train({
          model,
          vocabPath,
          task: classificationTask({ train: data.train }),
          outputDir: dir,
          learningRate: lr,
          epochs: ftEpochs,
          batchSize: 32,
          seed: s,
          saveTotalLimit: 1,
          quiet: true,
        });
        const { metrics } = await evaluateFeatures(model, data.test);
        byLr[lr].push(metrics.accuracy);
      } finally {
        model.dispose();
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    }
    console.log(
      `  ${label.padEnd(16)} lr ${lr.toExponential(0)}: SST-2 dev ${pctMeanStd(byLr[lr])} % (${
        byLr[lr].map(pct).join(", ")
      })`,
    );
  }
  return byLr;
}

// ---------------------------------------------------------------------------------------------------------------
// The measurement
// ---------------------------------------------------------------------------------------------------------------

const backend = await initBackend({ threads, quiet: true });
const { cpu, cores } = machineInfo();
const config = configFromJson(JSON.parse(await Deno.readTextFile(join(modelDir, "config.json"))), modelDir);
const vocabPath = join(modelDir, "vocab.txt");
const tokenizer = new FullTokenizer(await Vocab.load(vocabPath), { lowerCase: true });
console.log(`machine: ${cpu}, ${cores} cores; backend ${backend.description}, ${threads} thread(s)`);
console.log(
  `encoder: ${config.numHiddenLayers} layers x ${config.hiddenSize} (${config.numAttentionHeads} heads, ` +
    `intermediate ${config.intermediateSize}), vocab ${config.vocabSize} (${vocabPath}); generator ` +
    `${generatorShape.numHiddenLayers} layers x ${generatorShape.hiddenSize} (${generatorShape.numAttentionHeads} ` +
    `head(s), intermediate ${generatorShape.intermediateSize}), no embedding sharing` +
    (replace === "uniform" ? "; replacements UNIFORM over the vocabulary (--replace uniform: a check)" : ""),
);
console.log(
  `pre-training: ${steps} AdamW updates of batch ${batchSize}, warm-up ${warmupRatio}, linear decay, clip 1, ` +
    `weight decay 0.01; MLM lr ${mlmLr}; ELECTRA lr ${electraLrs.join(", ")}, RTD weight ${rtdWeight}; seed ${seed}`,
);

const tData = performance.now();
const corpus = await readCorpus("imdb", { limit });
const parts = splitCorpus(corpus, evalFraction);
const dataOptions = {
  maxSeqLength: 128,
  maxPredictionsPerSeq: 20,
  maskedLmProb: 0.15,
  shortSeqProb: 0.1,
  dupeFactor,
  seed: 12345,
  nextSentence: false,
  wholeWordMask: true,
};
const trainSet = createPretrainingData(parts.train, tokenizer, dataOptions);
const devSet = createPretrainingData(parts.dev, tokenizer, { ...dataOptions, dupeFactor: 1 });
console.log(
  `data: ${parts.train.documents.length} reviews -> ${trainSet.n} instances (${trainSet.stats.predictions} ` +
    `masked-LM targets, dupe factor ${dupeFactor}, whole-word masking, one span per instance); held out ` +
    `${parts.dev.documents.length} reviews -> ${devSet.n} instances; ${(steps * batchSize / trainSet.n).toFixed(2)} ` +
    `epochs; built in ${((performance.now() - tData) / 1000).toFixed(0)} s`,
);

interface Row {
  objective: string;
  lr: number;
  stats: RunStats;
  heldOutMlm: number;
  rtd?: ReturnType<typeof evaluateRtd>;
  weights: EncoderWeights;
  sst2?: Record<number, number[]>;
}
const rows: Row[] = [];
const runs: { objective: string; lr: number }[] = [
  ...(objectives.includes("mlm") ? [{ objective: "mlm", lr: mlmLr }] : []),
  ...(objectives.includes("electra") ? electraLrs.map((lr) => ({ objective: "electra", lr })) : []),
];
for (const { objective, lr } of runs) {
  console.log(`\n== ${objective} pre-training, lr ${lr}`);
  const before = tf.memory().numTensors;
  if (objective === "mlm") {
    const t = mlmPretrainee(config);
    try {
      const stats = await pretrainLoop("mlm", t, trainSet, lr);
      const m = evaluatePretraining(t.model, devSet);
      rows.push({ objective, lr, stats, heldOutMlm: m.mlmAccuracy, weights: encoderWeights(t.params) });
      console.log(`  held-out MLM accuracy ${pct(m.mlmAccuracy)}% (loss ${m.mlmLoss.toFixed(3)})`);
    } finally {
      t.dispose();
    }
  } else {
    const t = electraPretrainee(config);
    try {
      const stats = await pretrainLoop("electra", t, trainSet, lr);
      const m = evaluatePretraining(t.generator, devSet);
      const rtd = evaluateRtd(t, devSet);
      rows.push({
        objective,
        lr,
        stats,
        heldOutMlm: m.mlmAccuracy,
        rtd,
        weights: encoderWeights(t.params, "discriminator."),
      });
      console.log(
        `  held-out generator MLM accuracy ${pct(m.mlmAccuracy)}% (loss ${m.mlmLoss.toFixed(3)}); RTD accuracy ` +
          `${pct(rtd.accuracy)}% vs ${pct(rtd.baseline)}% "never replaced" over ${rtd.tokens} tokens ` +
          `(${pct(rtd.replacedShare)}% replaced; recall ${pct(rtd.recall)}%, precision ${pct(rtd.precision)}%)`,
      );
    } finally {
      t.dispose();
    }
  }
  const s = rows[rows.length - 1].stats;
  console.log(
    `  wall-clock ${minutes(s.seconds)} (${s.msPerStep.toFixed(0)} ms/update); tensors ${before} before, ` +
      `${s.tensorsAfterFirst} after update 1, ${s.tensorsAfterLast} after update ${steps}, ` +
      `${tf.memory().numTensors} after freeing the models and optimizer`,
  );
  if (tf.memory().numTensors !== before) {
    throw new Error(`electra_vs_mlm: ${tf.memory().numTensors - before} tensors leaked by the ${objective} run`);
  }
}

// Transfer
const sharedData = defaultImdbArchive().replace(/\/imdb\/[^/]*$/, ""); // ../shared/data
const sstDir = join(sharedData, "glue", "SST-2");
const sst = {
  train: await convertExamples(sample(await readGlueSst2(join(sstDir, "train.tsv")), trainN, 1), tokenizer, {
    maxSeqLength: 64,
    task: "sst2",
  }),
  test: await convertExamples(await readGlueSst2(join(sstDir, "dev.tsv")), tokenizer, {
    maxSeqLength: 64,
    task: "sst2",
  }),
};
console.log(
  `\n== transfer: SST-2, ${sst.train.n} training sentences, ${ftEpochs} epochs, batch 32, lrs ${ftLrs.join(", ")}, ` +
    `seeds ${ftSeeds.join(", ")}; scored on GLUE dev (${sst.test.n})`,
);
const tmp = await Deno.makeTempDir({ prefix: "electra_vs_mlm_" });
let randomSst2: Record<number, number[]> | undefined;
try {
  for (const r of rows) {
    const t0 = performance.now();
    r.sst2 = await fineTune(`${r.objective}@${r.lr}`, config, r.weights, sst, vocabPath, tmp);
    console.log(`  (${minutes((performance.now() - t0) / 1000)})`);
  }
  if (withRandom) randomSst2 = await fineTune("random init", config, undefined, sst, vocabPath, tmp);
} finally {
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}

// The table
console.log(`\n== summary (${steps} updates of batch ${batchSize}; SST-2 dev accuracy mean ± std over seeds)`);
const header = ["objective", "lr", "steps", "wall-clock", "ms/upd", "held-out MLM", "RTD acc (baseline)"]
  .concat(ftLrs.map((lr) => `SST-2 @${lr.toExponential(0)}`));
const table = rows.map((r) =>
  [
    r.objective === "mlm" ? "MLM" : "ELECTRA",
    String(r.lr),
    String(steps),
    minutes(r.stats.seconds),
    r.stats.msPerStep.toFixed(0),
    `${pct(r.heldOutMlm)}%${r.objective === "electra" ? " (gen)" : ""}`,
    r.rtd ? `${pct(r.rtd.accuracy)}% (${pct(r.rtd.baseline)}%)` : "-",
  ].concat(ftLrs.map((lr) => pctMeanStd(r.sst2![lr])))
);
if (randomSst2) {
  table.push([
    "random init",
    "-",
    "0",
    "-",
    "-",
    "-",
    "-",
    ...ftLrs.map((lr) => pctMeanStd(randomSst2![lr])),
  ]);
}
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i].length)));
const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join(" | ");
console.log(line(header));
console.log(widths.map((w) => "-".repeat(w)).join("-|-"));
for (const row of table) console.log(line(row));

if (jsonOut) {
  await Deno.writeTextFile(
    jsonOut,
    JSON.stringify(
      {
        steps,
        batchSize,
        limit,
        dupeFactor,
        threads,
        generatorShape,
        rtdWeight,
        runs: rows.map(({ weights: _w, ...r }) => r),
        randomSst2,
      },
      null,
      1,
    ),
  );
}
