/**
 * Sequence classification as a task for the training loop ({@linkcode classificationTask}): cross-entropy of the
 * `[CLS]` classifier on prepared features, evaluation with every classification metric, the task's headline metric
 * (accuracy, MCC or accuracy/F1), and the checks that refuse features made for another model or vocabulary.
 * @module
 */
import { sha256Hex } from "../../io/fsutil.ts";
import { FullTokenizer } from "../../text/tokenizer.ts";
import { checkFeaturesMatch, type FeatureSet } from "../../data/features.ts";
import { softmaxCrossEntropy } from "../../model/model.ts";
import { disposeBatch, evaluateFeatures, type FeatureBatch, featureBatch, metricKindOf } from "../../eval/evaluate.ts";
import {
  checkMetricName,
  type ClassificationMetrics,
  greaterIsBetter,
  headlineMetric,
  METRIC_NAMES,
  scalarMetrics,
} from "../../eval/metrics.ts";
import type { TrainTask } from "../../training/task.ts";

/** sha256 over the token ids and labels: resuming with other training data is refused. */
async function featuresFingerprint(f: FeatureSet): Promise<string> {
  const ids = new Uint8Array(f.inputIds.buffer, f.inputIds.byteOffset, f.inputIds.byteLength);
  const labels = new Uint8Array(f.labels.buffer, f.labels.byteOffset, f.labels.byteLength);
  const all = new Uint8Array(ids.length + labels.length);
  all.set(ids);
  all.set(labels, ids.length);
  return (await sha256Hex(all)).slice(0, 16);
}

/** Checks that every token id of `features` is below `vocabSize` (the model's embedding rows); names `file`. */
export function checkTokenIds(features: FeatureSet, vocabSize: number, file: string): void {
  const ids = features.inputIds, L = features.maxSeqLength;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id < 0 || id >= vocabSize) {
      const row = Math.floor(i / L);
      throw new Error(
        `${file}: token id ${id} of example ${features.exampleIds[row] ?? row} (row ${row}, position ${i % L}) is ` +
          `outside the vocabulary of the model (ids 0..${vocabSize - 1}): the features are damaged or were made ` +
          `with a larger vocabulary. Re-run \`deno task bert prepare\` with the model's vocabulary (--model DIR).`,
      );
    }
  }
}

/** Options of {@linkcode classificationTask}. */
export interface ClassificationTaskOptions {
  /** Training features (all labelled). */
  train: FeatureSet;
  /** Validation features (labelled); without them there is no evaluation and no best checkpoint. */
  dev?: FeatureSet;
  /** Label names (default: the training features'). */
  labels?: string[];
  /** Task name for the headline metric (default: the features' task). */
  task?: string;
}

/**
 * The sequence-classification task for `train()` (lib/training/train.ts): cross-entropy of the `[CLS]`
 * classifier, evaluation with every classification metric (`evaluateFeatures`), the task's headline metric
 * (accuracy, MCC or accuracy/F1).
 *
 * @example
 * ```ts
 * await train({ model, vocabPath, task: classificationTask({ train, dev }), outputDir: "outputs/sst2" });
 * ```
 */
export function classificationTask(options: ClassificationTaskOptions): TrainTask<FeatureBatch, ClassificationMetrics> {
  const { train: trainSet, dev } = options;
  const labels = options.labels ?? trainSet.metadata.labels;
  const taskName = options.task ?? trainSet.metadata.task;
  const kind = metricKindOf(taskName);
  return {
    name: taskName,
    head: "classification",
    n: trainSet.n,
    labels,
    lowerCase: trainSet.metadata.lower_case,
    defaultMetric: dev ? checkMetricName(kind) : undefined,
    metricNames: METRIC_NAMES,
    canonicalMetric: checkMetricName,
    greaterIsBetter,
    async check(model, { vocabPath }) {
      if (labels.length !== model.numLabels) {
        throw new Error(
          `the classifier has ${model.numLabels} outputs but the training data has ${labels.length} labels ` +
            `(${labels.join(", ")})`,
        );
      }
      for (let i = 0; i < trainSet.n; i++) {
        if (trainSet.labels[i] < 0) {
          throw new Error(
            `${trainSet.metadata.source}: example ${trainSet.exampleIds[i]} has no label; training needs labels`,
          );
        }
      }
      if (trainSet.n === 0) throw new Error(`${trainSet.metadata.source}: no training examples`);
      if (dev && dev.metadata.labels.join("\u0000") !== labels.join("\u0000")) {
        throw new Error(
          `dev features are labelled [${dev.metadata.labels.join(", ")}] but training uses [${labels.join(", ")}]`,
        );
      }
      if (dev && dev.metadata.vocab_sha256 !== trainSet.metadata.vocab_sha256) {
        throw new Error(`dev and train features were made with different vocabularies (${dev.metadata.source})`);
      }
      checkTokenIds(trainSet, model.config.vocabSize, `training features made from ${trainSet.metadata.source}`);
      if (dev) checkTokenIds(dev, model.config.vocabSize, `dev features made from ${dev.metadata.source}`);
      // Refuse features tokenized with another vocabulary than the one the checkpoints will carry.
      const tokenizer = await FullTokenizer.fromVocabFile(vocabPath, { lowerCase: trainSet.metadata.lower_case });
      await checkFeaturesMatch(trainSet, tokenizer, trainSet.metadata.source, {
        maxPositionEmbeddings: model.config.maxPositionEmbeddings,
      });
    },
    fingerprint: () => featuresFingerprint(trainSet),
    describe: () => ({
      source: trainSet.metadata.source,
      task: trainSet.metadata.task,
      n: trainSet.n,
      vocab_sha256: trainSet.metadata.vocab_sha256,
      max_seq_length: trainSet.maxSeqLength,
    }),
    batch: (rows) => featureBatch(trainSet, rows),
    loss(model, batch, { training, seed }) {
      // The last layer at [CLS] only: all the classifier reads (the same loss and gradients to float rounding).
      const logits = model.forward(batch, { training, seed, clsOnly: true }).logits!; // [batch, numLabels]
      return softmaxCrossEntropy(logits, batch.labels);
    },
    disposeBatch,
    evaluate: dev
      ? async (model, { batchSize }) => {
        const { metrics } = await evaluateFeatures(model, dev, { batchSize, labelNames: labels });
        return { metrics: scalarMetrics(metrics), headline: headlineMetric(kind, metrics), details: metrics };
      }
      : undefined,
  };
}
