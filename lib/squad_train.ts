/**
 * SQuAD with the span head (`BertModel` with head `question-answering`): the loss of `run_squad.py` (mean of the
 * start and end cross-entropies over all window positions), a small training loop (AdamW, linear warmup/decay,
 * global-norm clipping, seeded data order and dropout, a Hugging Face checkpoint at the end), and prediction:
 * logits for every window, then `write_predictions` post-processing into `predictions.json` and
 * `nbest_predictions.json`.
 *
 * `lib/train.ts`'s loop is built for classification features, so this file has its own short loop reusing its
 * pieces (`AdamW`, `scheduleLr`, `clipGradsByGlobalNorm`, the seeded `Rng`). Resuming an interrupted SQuAD run is
 * not supported yet.
 * @module
 */
import { tf } from "./backend.ts";
import { loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import { join, writeJsonAtomic } from "./fsutil.ts";
import { type BertModel, softmaxCrossEntropy } from "./model.ts";
import { AdamW, clipGradsByGlobalNorm, globalNorm, type Gradients, scheduleLr, warmupStepsFor } from "./optim.ts";
import { type NBestEntry, postprocessSquad, type WindowLogits, writeSquadPredictions } from "./squad.ts";
import { checkSquadFeaturesMatch, loadSquadFeatures, type SquadFeatures } from "./squad_features.ts";
import { FullTokenizer } from "./tokenizer.ts";
import { dropoutSeed, epochOrderState, Rng, shuffledOrder } from "./train.ts";

/**
 * `run_squad.py`'s loss: `(CE(startLogits, startPositions) + CE(endLogits, endPositions)) / 2`, each
 * cross-entropy a mean over the batch of `-log softmax(logits)[position]` over all `seq` positions.
 * @param startLogits `[batch, seq]`
 * @param endLogits `[batch, seq]`
 * @param startPositions int32 `[batch]`
 * @param endPositions int32 `[batch]`
 */
export function squadLoss(
  startLogits: tf.Tensor2D,
  endLogits: tf.Tensor2D,
  startPositions: tf.Tensor1D,
  endPositions: tf.Tensor1D,
): tf.Scalar {
  return tf.tidy(() =>
    tf.div(
      tf.add(softmaxCrossEntropy(startLogits, startPositions), softmaxCrossEntropy(endLogits, endPositions)),
      2,
    ) as tf.Scalar
  );
}

/** Tensors of some windows (dispose with {@linkcode disposeSquadBatch}). */
export interface SquadBatch {
  /** int32 `[batch, seq]` */
  inputIds: tf.Tensor2D;
  /** int32 `[batch, seq]` */
  tokenTypeIds: tf.Tensor2D;
  /** int32 `[batch, seq]` */
  attentionMask: tf.Tensor2D;
  /** int32 `[batch]` (training features only) */
  startPositions?: tf.Tensor1D;
  /** int32 `[batch]` (training features only) */
  endPositions?: tf.Tensor1D;
  /** Number of windows. */
  size: number;
}

/** Gathers windows `rows` of `features` into tensors. */
export function squadBatch(features: SquadFeatures, rows: ArrayLike<number>): SquadBatch {
  const L = features.maxSeqLength;
  const b = rows.length;
  const ids = new Int32Array(b * L), types = new Int32Array(b * L), mask = new Int32Array(b * L);
  for (let i = 0; i < b; i++) {
    const r = rows[i];
    if (!(r >= 0 && r < features.n)) throw new Error(`squadBatch: window ${r} outside 0..${features.n - 1}`);
    ids.set(features.inputIds.subarray(r * L, (r + 1) * L), i * L);
    types.set(features.tokenTypeIds.subarray(r * L, (r + 1) * L), i * L);
    mask.set(features.attentionMask.subarray(r * L, (r + 1) * L), i * L);
  }
  const batch: SquadBatch = {
    inputIds: tf.tensor2d(ids, [b, L], "int32"),
    tokenTypeIds: tf.tensor2d(types, [b, L], "int32"),
    attentionMask: tf.tensor2d(mask, [b, L], "int32"),
    size: b,
  };
  if (features.startPositions && features.endPositions) {
    const sp = features.startPositions, ep = features.endPositions;
    batch.startPositions = tf.tensor1d(Int32Array.from({ length: b }, (_, i) => sp[rows[i]]), "int32");
    batch.endPositions = tf.tensor1d(Int32Array.from({ length: b }, (_, i) => ep[rows[i]]), "int32");
  }
  return batch;
}

/** Frees a {@linkcode SquadBatch}. */
export function disposeSquadBatch(batch: SquadBatch): void {
  batch.inputIds.dispose();
  batch.tokenTypeIds.dispose();
  batch.attentionMask.dispose();
  batch.startPositions?.dispose();
  batch.endPositions?.dispose();
}

/** Options for {@linkcode squadTrainStep}. */
export interface SquadTrainStepOptions {
  model: BertModel;
  optimizer: AdamW;
  /** A training batch (with start/end positions); not disposed here. */
  batch: SquadBatch;
  /** Learning rate of this update. */
  lr: number;
  /** Clip the global gradient norm to this (0 = no clipping). Default 1. */
  maxGradNorm?: number;
  /** Seed of the dropout masks of this step. */
  seed?: number;
}

/** One forward/backward/AdamW update on `batch`; returns the loss and the gradient norm before clipping. */
export function squadTrainStep(options: SquadTrainStepOptions): { loss: number; gradNorm: number } {
  const { model, optimizer, batch } = options;
  if (model.head !== "question-answering") {
    throw new Error(`SQuAD training needs a question-answering model, got head "${model.head}"`);
  }
  if (!batch.startPositions || !batch.endPositions) {
    throw new Error("SQuAD training needs training features (start/end positions); prepare them with training on");
  }
  const vars = model.variables();
  const nameOf = new Map([...model.params].map(([name, v]) => [v.name, name]));
  const { value, grads } = tf.variableGrads(() => {
    const out = model.forward(batch, { training: true, seed: options.seed });
    const loss = squadLoss(out.startLogits!, out.endLogits!, batch.startPositions!, batch.endPositions!);
    return loss;
  }, vars);
  const loss = value.dataSync()[0];
  value.dispose();
  const named: Gradients = new Map(Object.entries(grads).map(([k, g]) => [nameOf.get(k)!, g]));
  try {
    if (!Number.isFinite(loss)) throw new Error(`SQuAD training: the loss is ${loss}; lower the learning rate`);
    const maxGradNorm = options.maxGradNorm ?? 1;
    const gradNorm = maxGradNorm > 0 ? clipGradsByGlobalNorm(named, maxGradNorm).norm : globalNorm(named);
    optimizer.applyGradients(named, options.lr);
    return { loss, gradNorm };
  } finally {
    for (const g of named.values()) if (!g.isDisposed) g.dispose();
  }
}

/** Options for {@linkcode trainSquad}; defaults are `run_squad.py`'s. */
export interface TrainSquadOptions {
  /** A question-answering model (updated in place). */
  model: BertModel;
  /** Vocabulary copied into the checkpoint. */
  vocabPath: string;
  /** Training features (made with `training: true`). */
  features: SquadFeatures;
  /** `outputs/<run>`: the checkpoint goes to `checkpoint-<step>/`. */
  outputDir: string;
  /** Default 5e-5. */
  learningRate?: number;
  /** Default 32. */
  batchSize?: number;
  /** Default 3. */
  epochs?: number;
  /** Stop after this many updates (default 0: `epochs` decides). */
  maxSteps?: number;
  /** Default 0.1. */
  warmupRatio?: number;
  /** Default 0.01. */
  weightDecay?: number;
  /** Default 1.0 (0 = no clipping). */
  maxGradNorm?: number;
  /** Data order and dropout seed. Default 42. */
  seed?: number;
  /** Called after every update. */
  onProgress?: (e: { step: number; totalSteps: number; epoch: number; loss: number; lr: number }) => void;
  /** No console output. */
  quiet?: boolean;
}

/** What {@linkcode trainSquad} returns. */
export interface TrainSquadResult {
  /** The checkpoint written at the end. */
  checkpoint: string;
  globalStep: number;
  /** Loss per update. */
  losses: number[];
  runtimeSeconds: number;
}

/**
 * Fine-tunes a question-answering model on SQuAD training windows and saves a Hugging Face checkpoint
 * (`checkpoint-<step>/`, plus `squad_train_state.json` with the hyper-parameters and the loss log).
 */
export async function trainSquad(options: TrainSquadOptions): Promise<TrainSquadResult> {
  const t0 = performance.now();
  const { model, features } = options;
  const log = (m: string) => options.quiet || console.log(m);
  if (!features.metadata.training || !features.startPositions) {
    throw new Error(
      `${features.metadata.source}: these SQuAD features have no training targets (prepare with training)`,
    );
  }
  if (features.n === 0) throw new Error(`${features.metadata.source}: no training windows`);
  const tokenizer = await FullTokenizer.fromVocabFile(options.vocabPath, { lowerCase: features.lowerCase });
  await checkSquadFeaturesMatch(features, tokenizer, features.metadata.source, model.config.maxPositionEmbeddings);
  const hp = {
    learning_rate: options.learningRate ?? 5e-5,
    train_batch_size: options.batchSize ?? 32,
    num_train_epochs: options.epochs ?? 3,
    max_steps: options.maxSteps ?? 0,
    warmup_ratio: options.warmupRatio ?? 0.1,
    weight_decay: options.weightDecay ?? 0.01,
    max_grad_norm: options.maxGradNorm ?? 1,
    seed: options.seed ?? 42,
  };
  const batchSize = hp.train_batch_size;
  const stepsPerEpoch = Math.ceil(features.n / batchSize);
  const totalSteps = hp.max_steps > 0 ? hp.max_steps : Math.ceil(hp.num_train_epochs * stepsPerEpoch);
  const warmupSteps = warmupStepsFor(totalSteps, hp.warmup_ratio);
  const optimizer = new AdamW(model.params, { lr: hp.learning_rate, weightDecay: hp.weight_decay });
  const losses: number[] = [];
  let step = 0;
  try {
    for (let epoch = 0; step < totalSteps; epoch++) {
      const order = shuffledOrder(features.n, new Rng(epochOrderState(hp.seed, epoch)));
      for (let b = 0; b < stepsPerEpoch && step < totalSteps; b++) {
        const batch = squadBatch(features, order.subarray(b * batchSize, Math.min(features.n, (b + 1) * batchSize)));
        const lr = scheduleLr(step, { peakLr: hp.learning_rate, warmupSteps, totalSteps });
        try {
          const { loss } = squadTrainStep({
            model,
            optimizer,
            batch,
            lr,
            maxGradNorm: hp.max_grad_norm,
            seed: dropoutSeed(hp.seed, step, 0),
          });
          losses.push(loss);
          step++;
          options.onProgress?.({ step, totalSteps, epoch: step / stepsPerEpoch, loss, lr });
          if (!options.onProgress && (step % 50 === 0 || step === totalSteps)) {
            log(`step ${step}/${totalSteps} loss ${loss.toFixed(4)} lr ${lr.toExponential(2)}`);
          }
        } finally {
          disposeSquadBatch(batch);
        }
      }
    }
  } finally {
    optimizer.dispose();
  }
  const checkpoint = join(options.outputDir, `checkpoint-${step}`);
  const runtimeSeconds = (performance.now() - t0) / 1000;
  await saveCheckpoint(checkpoint, {
    model,
    vocabPath: options.vocabPath,
    lowerCase: features.lowerCase,
    extraFiles: {
      "squad_train_state.json": JSON.stringify(
        {
          task: "squad",
          global_step: step,
          total_steps: totalSteps,
          hyper_parameters: hp,
          features: { source: features.metadata.source, n: features.n, max_seq_length: features.maxSeqLength },
          losses,
          train_runtime_seconds: runtimeSeconds,
        },
        null,
        2,
      ) + "\n",
    },
  });
  log(`SQuAD training done: ${step} steps in ${runtimeSeconds.toFixed(1)} s; checkpoint ${checkpoint}`);
  return { checkpoint, globalStep: step, losses, runtimeSeconds };
}

/** Options for {@linkcode squadLogits}. */
export interface SquadLogitsOptions {
  /** Windows per forward pass. Default 32. */
  batchSize?: number;
  /** Called after each batch with (windows done, total). */
  onProgress?: (done: number, total: number) => void;
}

/** Start/end logits of every window (`RawResult`s of run_squad.py), as Float32Array rows of `maxSeqLength`. */
export function squadLogits(
  model: BertModel,
  features: SquadFeatures,
  options: SquadLogitsOptions = {},
): WindowLogits[] {
  if (model.head !== "question-answering") {
    throw new Error(`SQuAD prediction needs a question-answering model, got head "${model.head}"`);
  }
  const batchSize = options.batchSize ?? 32;
  const L = features.maxSeqLength;
  const out: WindowLogits[] = [];
  for (let first = 0; first < features.n; first += batchSize) {
    const rows = Int32Array.from({ length: Math.min(batchSize, features.n - first) }, (_, i) => first + i);
    const batch = squadBatch(features, rows);
    try {
      const [s, e] = tf.tidy(() => {
        const o = model.forward(batch);
        return [o.startLogits!, o.endLogits!];
      });
      const sd = s.dataSync() as Float32Array, ed = e.dataSync() as Float32Array; // [batch * seq]
      s.dispose();
      e.dispose();
      for (let i = 0; i < rows.length; i++) {
        out.push({ startLogits: sd.slice(i * L, (i + 1) * L), endLogits: ed.slice(i * L, (i + 1) * L) });
      }
    } finally {
      disposeSquadBatch(batch);
    }
    options.onProgress?.(first + rows.length, features.n);
  }
  return out;
}

/** Options for {@linkcode predictSquad}. */
export interface PredictSquadOptions {
  /** A checkpoint folder (loaded with the question-answering head), unless `model` is given. */
  checkpoint?: string;
  /** An already loaded question-answering model. */
  model?: BertModel;
  /** Features, or the path of a `<split>.safetensors` feature file. */
  features: SquadFeatures | string;
  /** Windows per forward pass. Default 32. */
  batchSize?: number;
  /** Where `predictions.json` and `nbest_predictions.json` go; nothing is written without it. */
  outputDir?: string;
  /** Default 20. */
  nBestSize?: number;
  /** Default 30. */
  maxAnswerLength?: number;
  onProgress?: (done: number, total: number) => void;
  /** Skip the missing/unused weights warnings of loading. */
  quiet?: boolean;
}

/** What {@linkcode predictSquad} returns. */
export interface PredictSquadResult {
  /** Question id -> answer text. */
  predictions: Record<string, string>;
  /** Question id -> n-best candidates. */
  nbest: Record<string, NBestEntry[]>;
  /** The features predicted on. */
  features: SquadFeatures;
  /** Paths written (when `outputDir` was given). */
  predictionsPath?: string;
  nbestPath?: string;
}

/**
 * Runs a question-answering model over SQuAD features and post-processes the logits into answers
 * (`write_predictions`), writing `predictions.json` / `nbest_predictions.json` into `outputDir` when given.
 */
export async function predictSquad(options: PredictSquadOptions): Promise<PredictSquadResult> {
  const features = typeof options.features === "string" ? await loadSquadFeatures(options.features) : options.features;
  let model = options.model;
  let owned = false;
  if (!model) {
    if (!options.checkpoint) throw new Error("predictSquad needs a checkpoint folder or a model");
    const loaded = await loadCheckpoint(options.checkpoint, { head: "question-answering", quiet: options.quiet });
    await checkSquadFeaturesMatch(
      features,
      loaded.tokenizer,
      typeof options.features === "string" ? options.features : features.metadata.source,
      loaded.config.maxPositionEmbeddings,
    );
    model = loaded.model;
    owned = true;
  }
  try {
    const logits = squadLogits(model, features, { batchSize: options.batchSize, onProgress: options.onProgress });
    const post = { nBestSize: options.nBestSize, maxAnswerLength: options.maxAnswerLength };
    if (options.outputDir) {
      const written = await writeSquadPredictions(features, logits, { ...post, outputDir: options.outputDir });
      return { ...written, features };
    }
    return { ...postprocessSquad(features, logits, post), features };
  } finally {
    if (owned) model.dispose();
  }
}

/** Writes `eval_results.json` ({exact_match, f1, total, ...}) into `dir`, atomically. */
export async function writeSquadEvalResults(dir: string, results: Record<string, unknown>): Promise<string> {
  const path = join(dir, "eval_results.json");
  await writeJsonAtomic(path, results);
  return path;
}
