/**
 * Fine-tuning for sequence classification from prepared features, as `deno task bert train` (and `main`) run it:
 * the model comes from a checkpoint (`--model`, else the one the features were prepared with) or a standard size
 * with random weights; one run, or one per seed. The command (lib/cli/train.ts) parses flags and prints the outcome.
 * @module
 */
import { findWeights } from "../../io/weights.ts";
import { UsageError } from "../../io/errors.ts";
import { dirname, exists, join } from "../../io/fsutil.ts";
import { boxedWarning } from "../../eval/evaluate.ts";
import { checkFeaturesMatch, type FeatureSet, loadFeatures } from "../../data/features.ts";
import { loadCheckpoint, reportMessages } from "../../model/checkpoint.ts";
import { randomInitNotice, standardConfig } from "../../model/configs.ts";
import { BertModel } from "../../model/model.ts";
import { FullTokenizer } from "../../text/tokenizer.ts";
import { checkTokenIds, classificationTask } from "./task.ts";
import {
  consoleProgress,
  type RunControlOptions,
  type SeedsResult,
  train,
  type TrainResult,
  trainSeeds,
} from "../../training/train.ts";
import { DEFAULT_HYPERPARAMETERS, type HyperParameters } from "../../training/hyperparameters.ts";
import { latestCheckpoint } from "../../training/checkpoints.ts";

const D = DEFAULT_HYPERPARAMETERS;

/** The default peak learning rate when training starts from random weights (`--config`): one that learns. */
export const RANDOM_INIT_LEARNING_RATE = 1e-3;

/** Where the model comes from. */
export type ModelSource = { kind: "checkpoint"; dir: string } | { kind: "random"; config: string; vocabPath: string };

/** Picks the model: --model, else the checkpoint the features were prepared with, else random --config (tiny). */
export async function chooseModelSource(options: {
  model?: string;
  config?: string;
  features: FeatureSet;
}): Promise<ModelSource> {
  if (options.model && options.config) throw new UsageError("give --model or --config, not both");
  if (options.model) return { kind: "checkpoint", dir: options.model };
  const vocabPath = options.features.metadata.vocab_path;
  if (!options.config && vocabPath) {
    const dir = dirname(vocabPath);
    const hasConfig = (await exists(join(dir, "config.json"))) || (await exists(join(dir, "bert_config.json")));
    if (hasConfig && (await findWeights(dir)).chosen) {
      return { kind: "checkpoint", dir };
    }
  }
  if (!vocabPath || !(await exists(vocabPath))) {
    throw new Error(
      `the features do not say which vocabulary made them${vocabPath ? ` (${vocabPath} is gone)` : ""}; ` +
        `pass --model DIR (the checkpoint they were prepared with)`,
    );
  }
  return { kind: "random", config: options.config ?? "tiny", vocabPath };
}

/** Builds the model for `source` (seeded), checking that the features match its vocabulary. */
export async function buildModel(
  source: ModelSource,
  options: { features: FeatureSet; featuresFile: string; seed: number; quiet?: boolean },
): Promise<{ model: BertModel; vocabPath: string; random: boolean }> {
  const labels = options.features.metadata.labels;
  if (source.kind === "checkpoint") {
    const { model, tokenizer, report, vocabPath } = await loadCheckpoint(source.dir, {
      head: "classification",
      labels,
      seed: options.seed,
      quiet: true,
    });
    try {
      await checkFeaturesMatch(options.features, tokenizer, options.featuresFile, {
        maxPositionEmbeddings: model.config.maxPositionEmbeddings,
      });
    } catch (err) {
      model.dispose();
      throw err;
    }
    try {
      checkTokenIds(options.features, model.config.vocabSize, options.featuresFile);
    } catch (err) {
      model.dispose();
      throw err;
    }
    if (!options.quiet) { for (const m of reportMessages(report, source.dir, "classification")) console.warn(m); }
    return { model, vocabPath, random: false };
  }
  const tokenizer = await FullTokenizer.fromVocabFile(source.vocabPath, {
    lowerCase: options.features.metadata.lower_case,
  });
  await checkFeaturesMatch(options.features, tokenizer, options.featuresFile);
  const config = await standardConfig(source.config, tokenizer.vocab.size);
  if (options.features.maxSeqLength > config.maxPositionEmbeddings) {
    throw new Error(
      `${options.featuresFile}: features of length ${options.features.maxSeqLength} exceed the model's ` +
        `max_position_embeddings ${config.maxPositionEmbeddings} (--config ${source.config}). Re-run ` +
        `\`deno task bert prepare\` with --max-seq-length ${config.maxPositionEmbeddings} or less, or give a ` +
        `--config FILE with a larger max_position_embeddings.`,
    );
  }
  checkTokenIds(options.features, config.vocabSize, options.featuresFile);
  const model = new BertModel(config, { head: "classification", numLabels: labels.length, seed: options.seed });
  return { model, vocabPath: source.vocabPath, random: true };
}

/** Resolves `--features` (folder or file) and `--dev` to files. */
export async function featureFiles(features: string, dev?: string): Promise<{ train: string; dev?: string }> {
  let trainFile = features;
  if ((await Deno.stat(features).catch(() => undefined))?.isDirectory) trainFile = join(features, "train.safetensors");
  if (!(await exists(trainFile))) {
    throw new Error(`${trainFile} does not exist (run \`deno task bert prepare\` first, or point --features to it)`);
  }
  let devFile = dev;
  if (!devFile) {
    const beside = join(dirname(trainFile), "dev.safetensors");
    if (await exists(beside)) devFile = beside;
  }
  if (devFile && !(await exists(devFile))) throw new Error(`dev features ${devFile} do not exist`);
  return { train: trainFile, dev: devFile };
}

/** Everything a classification fine-tune needs, whichever command line it came from. */
export interface ClassificationTrainingOptions extends RunControlOptions {
  /** Training features (`train.safetensors` of `prepare`). */
  featuresFile: string;
  /** Dev features to validate on (optional; empty or unlabelled ones are skipped with a notice). */
  devFile?: string;
  /** Run folder for the checkpoints. */
  outputDir: string;
  /** Checkpoint to fine-tune (default: the one the features were prepared with, else random `config`). */
  model?: string;
  /** Random initialisation instead (tiny, mini, ... or a config.json). */
  config?: string;
  /** Task name for the headline metric (default: the features'). */
  task?: string;
  /** Hyper-parameters given (absent ones: the checkpoint's when resuming, else the defaults). */
  hp: Partial<HyperParameters>;
  /** One run per seed into `<outputDir>/seed-<s>/`. */
  seeds?: number[];
}

/**
 * Fine-tunes a classifier from {@linkcode ClassificationTrainingOptions}: one run through `train` (printing the
 * model and progress), or one per seed through `trainSeeds`. From random weights the learning rate defaults to
 * {@linkcode RANDOM_INIT_LEARNING_RATE} and a loud notice is printed.
 */
export async function runClassificationTraining(
  o: ClassificationTrainingOptions,
): Promise<TrainResult<unknown> | SeedsResult<unknown>> {
  const trainSet = await loadFeatures(o.featuresFile);
  let dev = o.devFile ? await loadFeatures(o.devFile) : undefined;
  if (dev && (dev.n === 0 || dev.labels.some((l) => l < 0))) {
    console.warn(
      `notice: ${o.devFile} is ${dev.n === 0 ? "empty" : "unlabelled"} (prepared with --allow-unlabelled-dev): ` +
        `training runs without validation and keeps no best checkpoint`,
    );
    dev = undefined;
  }
  if (trainSet.n === 0) {
    throw new Error(`${o.featuresFile}: no training examples (re-run \`deno task bert prepare\` on a non-empty file)`);
  }
  const hp = { ...o.hp };
  const quiet = o.quiet === true;
  const resume = o.resume;

  let source: ModelSource;
  if (resume && !o.model && !o.config) {
    // Resuming without naming the model: rebuild it from the checkpoint itself (its weights are loaded anyway).
    const dir = typeof resume === "string" ? resume : await latestCheckpoint(o.outputDir);
    source = dir ? { kind: "checkpoint", dir } : await chooseModelSource({ features: trainSet });
  } else {
    source = await chooseModelSource({ model: o.model, config: o.config, features: trainSet });
  }
  if (source.kind === "random" && hp.learningRate === undefined && !resume) {
    // 2e-5 is for pre-trained weights: from random ones it leaves the model at the majority class.
    hp.learningRate = RANDOM_INIT_LEARNING_RATE;
    console.log(
      `learning rate ${RANDOM_INIT_LEARNING_RATE} (random initialisation: BERT's fine-tuning ${D.learningRate} barely ` +
        "moves random weights; --lr sets another)",
    );
  }
  const notice = () => randomInitNotice(`--config ${source.kind === "random" ? source.config : ""}`);
  const common = {
    ...hp,
    task: classificationTask({ train: trainSet, dev, task: o.task }),
    evalSteps: o.evalSteps,
    saveSteps: o.saveSteps,
    saveTotalLimit: o.saveTotalLimit,
    metricForBest: o.metricForBest,
    evalBatchSize: o.evalBatchSize,
    overwrite: o.overwrite,
    quiet,
    handleSignals: o.handleSignals,
  };
  if (o.seeds) {
    if (hp.seed !== undefined) throw new UsageError("give --seed or --seeds, not both");
    if (resume) throw new UsageError("--resume works on one run; resume each seed-<s> folder separately");
    let warned = false;
    return await trainSeeds({
      ...common,
      seeds: o.seeds,
      outputDir: o.outputDir,
      makeModel: async (seed) => {
        const built = await buildModel(source, { features: trainSet, featuresFile: o.featuresFile, seed, quiet });
        if (built.random && !warned) console.warn(boxedWarning(notice()));
        warned = true;
        return built;
      },
    });
  }
  const { model, vocabPath, random } = await buildModel(source, {
    features: trainSet,
    featuresFile: o.featuresFile,
    seed: hp.seed ?? D.seed,
    quiet,
  });
  if (dev && o.devFile) {
    try {
      checkTokenIds(dev, model.config.vocabSize, o.devFile);
    } catch (err) {
      model.dispose();
      throw err;
    }
  }
  if (random) console.warn(boxedWarning(notice()));
  console.log(
    `model: ${source.kind === "checkpoint" ? source.dir : `random ${source.kind === "random" ? source.config : ""}`} ` +
      `(${(model.countParameters() / 1e6).toFixed(2)}M parameters); train ${trainSet.n} examples` +
      `${dev ? `, dev ${dev.n}` : " (no dev set: no validation)"}; output ${o.outputDir}`,
  );
  const display = quiet ? undefined : consoleProgress();
  try {
    const result = await train({
      ...common,
      model,
      vocabPath,
      outputDir: o.outputDir,
      resume,
      resumeHint: o.resumeHint,
      onProgress: display?.onProgress,
    });
    await display?.done();
    return result;
  } finally {
    model.dispose();
  }
}
