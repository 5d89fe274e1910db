/**
 * The update step: {@linkcode lossAndGrads} (a loss and its gradients keyed by parameter name, the Hugging Face
 * names that checkpoints and AdamW use) and {@linkcode updateStep} (forward + backward per micro-batch, gradient
 * accumulation, the NaN stop, global-norm clipping, the scheduled learning rate, AdamW).
 * @module
 */
import { readableOnCpu, tf } from "../backends/backend.ts";
import type { BertModel } from "../model/model.ts";
import { variableGrads } from "./autodiff.ts";
import { type HyperParameters, learningRateAt, type Schedule } from "./hyperparameters.ts";
import { type AdamW, clipGradsByGlobalNorm, globalNormSquared, type Gradients } from "./optim.ts";
import { batchSeed, dropoutSeed } from "./rng.ts";
import type { TrainTask } from "./task.ts";

/**
 * `loss()` and its gradients with respect to every parameter of `model` (lib/training/autodiff.ts's
 * `variableGrads`), the gradients keyed by parameter name (`bert.encoder.layer.0.attention.self.query.weight`, ...)
 * as {@linkcode AdamW.applyGradients}, clipping and checkpoints expect. The caller disposes `loss` and the
 * gradients (`applyGradients` does the latter).
 *
 * @example
 * ```ts
 * const { loss, grads } = lossAndGrads(model, () => softmaxCrossEntropy(model.forward(batch).logits!, batch.labels));
 * optimizer.applyGradients(grads, lr);
 * loss.dispose();
 * ```
 */
export function lossAndGrads(
  model: Pick<BertModel, "params">,
  loss: () => tf.Scalar,
): { loss: tf.Scalar; grads: Gradients } {
  const nameOf = new Map([...model.params].map(([name, v]) => [v.name, name]));
  const { value, grads } = variableGrads(loss, [...model.params.values()]);
  return { loss: value, grads: new Map(Object.entries(grads).map(([k, g]) => [nameOf.get(k)!, g])) };
}

/** Adds `more` into `acc` (same parameter names), disposing the summands; returns `acc`. */
function accumulate(acc: Gradients, more: Gradients): Gradients {
  for (const [name, g] of more) {
    const prev = acc.get(name);
    acc.set(name, prev ? tf.add(prev, g) : g);
    if (prev) {
      prev.dispose();
      g.dispose();
    }
  }
  return acc;
}

/** Options of {@linkcode updateStep}. */
export interface UpdateStepOptions<B> {
  model: BertModel;
  task: TrainTask<B, unknown>;
  optimizer: AdamW;
  hp: HyperParameters;
  schedule: Schedule;
  /** The epoch's data order (a permutation of the task's rows). */
  order: Int32Array;
  /** The update's micro-batches are `[first, last)` of `order` cut into `batchSize` rows. */
  first: number;
  last: number;
  /** Updates done before this one (its learning rate, batch and dropout seeds). */
  step: number;
  /** The 0-based epoch, for the message when training diverges. */
  epoch: number;
}

/** What {@linkcode updateStep} returns. */
export interface UpdateStepResult {
  /** The loss, mean over the update's examples. */
  loss: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** The learning rate applied. */
  lr: number;
  /** Examples used. */
  examples: number;
}

/**
 * One update on micro-batches `[first, last)` of `order`: each micro-batch's loss (scaled by its share of the
 * update's rows) is differentiated and the gradients summed; a non-finite loss or norm stops training with a clear
 * error; the global norm is clipped to `maxGradNorm` (unless 0) and AdamW steps at the schedule's learning rate.
 */
export async function updateStep<B>(options: UpdateStepOptions<B>): Promise<UpdateStepResult> {
  const { model, task, order, first, last, step, hp } = options;
  const { batchSize, seed } = hp;
  const n = task.n;
  const groupSize = Math.min(n, last * batchSize) - first * batchSize;
  let acc: Gradients | undefined;
  let loss = 0, examples = 0;
  try {
    for (let micro = first; micro < last; micro++) {
      const rows = order.subarray(micro * batchSize, Math.min(n, (micro + 1) * batchSize));
      const batch = task.batch(rows, { seed: batchSeed(seed, step, micro - first), step });
      const scale = rows.length / groupSize;
      const dropSeed = dropoutSeed(seed, step, micro - first);
      let value: tf.Scalar, grads: Gradients;
      try {
        ({ loss: value, grads } = lossAndGrads(
          model,
          () => tf.mul(task.loss(model, batch, { training: true, seed: dropSeed }), scale) as tf.Scalar,
        ));
      } finally {
        task.disposeBatch(batch);
      }
      await readableOnCpu([value]);
      loss += value.dataSync()[0];
      value.dispose();
      acc = acc ? accumulate(acc, grads) : grads;
      examples += rows.length;
    }
    if (!Number.isFinite(loss)) {
      throw new Error(
        `training stopped: the loss is ${loss} at step ${step + 1} (epoch ${options.epoch + 1}); the weights ` +
          `diverged. Try a lower --lr (now ${hp.learningRate}), gradient clipping (--max-grad-norm 1) or ` +
          `resume from the last checkpoint.`,
      );
    }
    const grads = acc!;
    const squared = globalNormSquared(grads);
    await readableOnCpu([squared]);
    const norm = Math.sqrt(squared.dataSync()[0]);
    squared.dispose();
    const gradNorm = hp.maxGradNorm > 0 ? clipGradsByGlobalNorm(grads, hp.maxGradNorm, norm).norm : norm;
    if (!Number.isFinite(gradNorm)) {
      throw new Error(
        `training stopped: the gradient norm is ${gradNorm} at step ${step + 1} (epoch ${options.epoch + 1})`,
      );
    }
    const lr = learningRateAt(step, hp, options.schedule);
    options.optimizer.applyGradients(grads, lr);
    return { loss, gradNorm, lr, examples };
  } finally {
    if (acc) { for (const g of acc.values()) g.dispose(); }
  }
}
