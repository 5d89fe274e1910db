/**
 * SQuAD v1.1 end to end, as `deno task bert squad <prepare|train|predict|evaluate>` (and `prepare|train|evaluate
 * --task squad`) run it: features for a run folder (with a demo split of the dev file when there is no training
 * file), fine-tuning from a checkpoint or random weights (one run or one per seed), and the official exact match /
 * F1 of a predictions file. The commands (lib/cli/squad.ts, train.ts, evaluate.ts) parse flags and print outcomes.
 * @module
 */
import { UsageError } from "../../io/errors.ts";
import { basename, dirname, exists, join, writeJsonAtomic } from "../../io/fsutil.ts";
import { initBackend } from "../../backends/backend.ts";
import { boxedWarning } from "../../eval/evaluate.ts";
import { inferLowerCase, loadCheckpoint, reportMessages } from "../../model/checkpoint.ts";
import { randomInitNotice, standardConfig } from "../../model/configs.ts";
import { BertModel } from "../../model/model.ts";
import { FullTokenizer } from "../../text/tokenizer.ts";
import { Vocab } from "../../text/vocab.ts";
import { consoleProgress, type RunControlOptions, type SeedsResult, trainSeeds } from "../../training/train.ts";
import type { HyperParameters } from "../../training/hyperparameters.ts";
import { latestCheckpoint } from "../../training/checkpoints.ts";
import { evaluateSquad, type SquadGold, type SquadScores } from "./metrics.ts";
import { filterSquad, readSquad, resolveSquadData, type SquadDataset } from "./squad.ts";
import {
  convertSquadExamples,
  loadSquadFeatures,
  prepareSquad,
  saveSquadFeatures,
  type SquadFeatures,
  summarizeSquadFeatures,
  windowsPath,
} from "./features.ts";
import { SQUAD_LEARNING_RATE, type SquadEvalDetails, squadTask, trainSquad, type TrainSquadResult } from "./train.ts";

/** Questions evaluated on by default when the dev file also provides the training questions (no train file). */
export const DEMO_DEV_QUESTIONS = 1000;

/** Options of {@linkcode prepareSquadRun}. */
export interface SquadPrepareOptions {
  /** SQuAD training JSON (features with answer positions). */
  train?: string;
  /** SQuAD dev JSON (features to predict on). */
  dev?: string;
  /** Where to look for dev-v1.1.json / train-v1.1.json when neither file is given (default: data/squad-v1.1, then
   * ../shared/data/squad-v1.1). */
  dataDir?: string;
  /** No training file: train on the dev questions of other articles than the evaluated `limit` ones (a demo). */
  trainFromDev?: boolean;
  /** vocab.txt to tokenize with (or `model`). */
  vocab?: string;
  /** Checkpoint whose vocab.txt and casing to use (or `vocab`). */
  model?: string;
  /** Keep case and accents. */
  cased?: boolean;
  /** The run's features folder (`outputs/<run>/features`). */
  outputDir: string;
  /** Window length in tokens (default 384). */
  maxSeqLength?: number;
  /** Sub-tokens between window starts (default 128). */
  docStride?: number;
  /** Questions are cut to this many sub-tokens (default 64). */
  maxQueryLength?: number;
  /** Only the first N questions of each file (demo split: N evaluated questions, default {@linkcode DEMO_DEV_QUESTIONS}). */
  limit?: number;
  /** Only the first N training questions. */
  trainLimit?: number;
  /** Keep SQuAD 2.0 unanswerable questions (flagged). */
  keepImpossible?: boolean;
}

/** Converts a parsed dataset, saves it as `<split>.safetensors` and prints the summary. */
async function convertAndSave(
  dataset: SquadDataset,
  options: {
    tokenizer: FullTokenizer;
    outputDir: string;
    split: string;
    training: boolean;
    maxSeqLength?: number;
    docStride?: number;
    maxQueryLength?: number;
  },
): Promise<SquadFeatures> {
  const features = await convertSquadExamples(dataset, options.tokenizer, options);
  const path = join(options.outputDir, `${options.split}.safetensors`);
  await saveSquadFeatures(path, features);
  for (const line of summarizeSquadFeatures(features)) console.log(line);
  console.log(`wrote ${path} and ${basename(windowsPath(path))} in ${dirname(path)}`);
  return features;
}

/**
 * Features for the training file (with answer positions) and the dev file, printing what it reads and writes.
 * Files not given are looked up (data/squad-v1.1, ../shared/data/squad-v1.1); with no training file a demo split of
 * the dev file is made, by article, so that no evaluated question's paragraph is trained on.
 */
export async function prepareSquadRun(o: SquadPrepareOptions): Promise<void> {
  let train = o.train, dev = o.dev;
  let fromDev = o.trainFromDev === true;
  if (fromDev && train) throw new UsageError("give --train FILE or --train-from-dev, not both");
  if (!train && !dev) {
    const found = await resolveSquadData(o.dataDir);
    dev = found.dev;
    train = found.train;
    console.log(`SQuAD v1.1: dev ${found.dev}, train ${found.train ?? "(no train-v1.1.json)"}`);
    if (!train) fromDev = true;
  }
  if (fromDev && !dev) throw new UsageError("--train-from-dev needs the dev file (--dev FILE)");
  const { vocab, model } = o;
  if (vocab && model) throw new UsageError("give --vocab or --model, not both");
  if (!vocab && !model) throw new UsageError("squad prepare needs --vocab FILE or --model DIR (for its vocab.txt)");
  let lowerCase = o.cased !== true;
  let vocabPath = vocab!;
  if (model) {
    vocabPath = join(model, "vocab.txt");
    if (o.cased !== true) lowerCase = await inferLowerCase(model);
  }
  const tokenizer = await FullTokenizer.fromVocabFile(vocabPath, { lowerCase });
  console.log(`tokenizer: ${vocabPath} (${tokenizer.vocab.size} tokens, ${lowerCase ? "uncased" : "cased"})`);
  const outputDir = o.outputDir;
  const windows = {
    maxSeqLength: o.maxSeqLength ?? 384,
    docStride: o.docStride ?? 128,
    maxQueryLength: o.maxQueryLength ?? 64,
  };
  const keepImpossible = o.keepImpossible === true;
  const log = (m: string) => console.log(m);
  if (fromDev) {
    const limit = o.limit ?? DEMO_DEV_QUESTIONS;
    const evalSlice = await readSquad(dev!, { limit, keepImpossible, log });
    const titles = new Set(evalSlice.paragraphs.map((p) => p.title));
    const all = await readSquad(dev!, { training: true, keepImpossible, log });
    const trainSet = filterSquad(all, (_, p) => !titles.has(p.title), { limit: o.trainLimit });
    if (trainSet.examples.length === 0) {
      throw new Error(
        `${dev}: the first ${limit} questions cover every article, none is left to train on; lower --limit`,
      );
    }
    console.warn(boxedWarning([
      "NOTICE: no SQuAD training file: a DEMO split of the dev file is used.",
      `Training: ${trainSet.examples.length} questions from ${new Set(trainSet.paragraphs.map((p) => p.title)).size} ` +
      `other article(s) of ${basename(dev!)};`,
      `evaluation: its first ${evalSlice.examples.length} questions (${titles.size} article(s): ` +
      `${[...titles].slice(0, 3).join(", ")}${titles.size > 3 ? ", ..." : ""}).`,
      "No evaluated paragraph is trained on, but scores are NOT comparable to published",
      "SQuAD results (trained on the 87,599 questions of train-v1.1.json). For a real run put",
      "train-v1.1.json in data/squad-v1.1/ (see data/README.md) or pass --train FILE.",
    ]));
    await convertAndSave(trainSet, { ...windows, tokenizer, outputDir, split: "train", training: true });
    await convertAndSave(evalSlice, { ...windows, tokenizer, outputDir, split: "dev", training: false });
    return;
  }
  const common = { ...windows, outputDir, tokenizer, read: { limit: o.limit, keepImpossible } };
  if (train) {
    await prepareSquad({
      ...common,
      input: train,
      training: true,
      split: "train",
      read: { ...common.read, limit: o.trainLimit ?? o.limit },
    });
  }
  if (dev) await prepareSquad({ ...common, input: dev, training: false, split: "dev" });
}

/** Everything SQuAD training needs, whichever command line it came from (`squad train` or `train --task squad`). */
export interface SquadTrainingOptions extends RunControlOptions {
  /** Training features (`train.safetensors` of `prepare --task squad`). */
  featuresFile: string;
  /** Dev features to evaluate on (optional). */
  devFile?: string;
  /** Run folder for the checkpoints. */
  outputDir: string;
  /** Checkpoint to fine-tune. */
  model?: string;
  /** Random initialisation instead (tiny, mini, ... or a config.json), with `vocab`. */
  config?: string;
  /** The vocabulary the features were made with (for `config`). */
  vocab?: string;
  /** Hyper-parameters given (absent ones: the checkpoint's when resuming, else the defaults, lr 5e-5). */
  hp: Partial<HyperParameters>;
  /** One run per seed into `<outputDir>/seed-<s>/`. */
  seeds?: number[];
  /** n-best list size of the post-processing (default 20). */
  nBestSize?: number;
  /** Longest answer span in tokens (default 30). */
  maxAnswerLength?: number;
}

/** Loads `model` with the span head, or builds a random `config` model for `vocab`. */
async function buildSquadModel(
  o: SquadTrainingOptions,
  seed: number | undefined,
): Promise<{ model: BertModel; vocabPath: string; random: boolean }> {
  if (o.model && o.config) throw new UsageError("give --model or --config, not both");
  if (o.model) {
    const { model, report, vocabPath } = await loadCheckpoint(o.model, {
      head: "question-answering",
      seed,
      quiet: true,
    });
    if (!o.quiet) { for (const m of reportMessages(report, o.model, "question-answering")) console.warn(m); }
    return { model, vocabPath, random: false };
  }
  if (o.config) {
    if (!o.vocab) throw new UsageError("--config (random weights) needs --vocab FILE: the vocabulary of the features");
    const config = await standardConfig(o.config, (await Vocab.load(o.vocab)).size);
    return { model: new BertModel(config, { head: "question-answering", seed }), vocabPath: o.vocab, random: true };
  }
  throw new UsageError(
    "SQuAD training needs --model DIR (a checkpoint to fine-tune) or --config SIZE --vocab FILE (random weights)",
  );
}

/**
 * Trains SQuAD from {@linkcode SquadTrainingOptions}: one run through `trainSquad` (printing the model and
 * progress), or one per seed through `trainSeeds` with the SQuAD adapter.
 */
export async function runSquadTraining(
  o: SquadTrainingOptions,
): Promise<TrainSquadResult | SeedsResult<SquadEvalDetails>> {
  if (!(await exists(o.featuresFile))) {
    throw new UsageError(`${o.featuresFile} not found: run \`prepare --task squad\` first (or point --features to it)`);
  }
  const features = await loadSquadFeatures(o.featuresFile);
  const dev = o.devFile ? await loadSquadFeatures(o.devFile) : undefined;
  await initBackend();
  const notice = (random: boolean) => {
    if (random) console.warn(boxedWarning(randomInitNotice(`--config ${o.config}`)));
  };
  const common = {
    ...o.hp,
    evalSteps: o.evalSteps,
    saveSteps: o.saveSteps,
    saveTotalLimit: o.saveTotalLimit,
    metricForBest: o.metricForBest,
    evalBatchSize: o.evalBatchSize,
    overwrite: o.overwrite,
    quiet: o.quiet,
    handleSignals: o.handleSignals,
    resumeHint: o.resumeHint,
  };
  if (o.seeds) {
    if (o.hp.seed !== undefined) throw new UsageError("give --seed or --seeds, not both");
    if (o.resume) throw new UsageError("--resume works on one run; resume each seed-<s> folder separately");
    if (!dev) throw new UsageError("--seeds compares the runs on dev features: prepare them (or give --dev)");
    let warned = false;
    return await trainSeeds({
      ...common,
      learningRate: o.hp.learningRate ?? SQUAD_LEARNING_RATE,
      task: squadTask({ train: features, dev, nBestSize: o.nBestSize, maxAnswerLength: o.maxAnswerLength }),
      seeds: o.seeds,
      outputDir: o.outputDir,
      makeModel: async (seed) => {
        const built = await buildSquadModel(o, seed);
        if (!warned) notice(built.random);
        warned = true;
        return built;
      },
    });
  }
  let source = o;
  if (o.resume && !o.model && !o.config) {
    // Resuming without naming the model: rebuild it from the checkpoint itself (its weights are loaded anyway).
    const dir = typeof o.resume === "string" ? o.resume : await latestCheckpoint(o.outputDir);
    if (dir) source = { ...o, model: dir };
  }
  const { model, vocabPath, random } = await buildSquadModel(source, o.hp.seed ?? 42);
  notice(random);
  console.log(
    `model: ${source.model ?? `random ${o.config}`} (${(model.countParameters() / 1e6).toFixed(2)}M parameters); ` +
      `train ${features.n} windows (${features.dataset.examples.length} questions)` +
      `${
        dev ? `, dev ${dev.n} windows (${dev.dataset.examples.length} questions)` : " (no dev features: no evaluation)"
      }` +
      `; output ${o.outputDir}`,
  );
  const display = o.quiet ? undefined : consoleProgress({ label: "squad" });
  try {
    const result = await trainSquad({
      ...common,
      model,
      vocabPath,
      features,
      dev,
      outputDir: o.outputDir,
      resume: o.resume,
      nBestSize: o.nBestSize,
      maxAnswerLength: o.maxAnswerLength,
      onProgress: display?.onProgress,
    });
    await display?.done();
    return result;
  } finally {
    model.dispose();
  }
}

/** Options of {@linkcode scoreSquadPredictions}. */
export interface ScoreSquadOptions {
  /** predictions.json ({question id: answer text}). */
  predictionsPath: string;
  /** The gold SQuAD JSON (default: `features`' questions when given without `limit`, else the dev file found in
   * data/squad-v1.1 or ../shared/data/squad-v1.1). */
  goldPath?: string;
  /** The features just predicted on: their own questions are the gold answers when no `goldPath` is given. */
  features?: SquadFeatures;
  /** Score only the first N questions of the gold file. */
  limit?: number;
  /** Folder for eval_results.json (default: the predictions' folder). */
  outputDir?: string;
}

/** What {@linkcode scoreSquadPredictions} returns. */
export interface ScoreSquadResult {
  /** The official scores (exact_match, f1, total, missing). */
  scores: SquadScores;
  /** What the gold answers were (a path, or the features' source and question count). */
  goldName: string;
  /** The eval_results.json written. */
  path: string;
}

/** The official SQuAD v1.1 exact match and F1 of a predictions file, written to `eval_results.json`. */
export async function scoreSquadPredictions(o: ScoreSquadOptions): Promise<ScoreSquadResult> {
  const predictionsPath = o.predictionsPath;
  let predictions: Record<string, string>;
  try {
    predictions = JSON.parse(await Deno.readTextFile(predictionsPath));
  } catch (err) {
    throw new Error(`${predictionsPath}: cannot read predictions: ${(err as Error).message}`);
  }
  if (typeof predictions !== "object" || predictions === null || Array.isArray(predictions)) {
    throw new Error(`${predictionsPath}: expected a JSON object {question id: answer text}`);
  }
  let goldPath = o.goldPath;
  let gold: SquadGold;
  let goldName: string;
  const limit = o.limit;
  if (!goldPath && o.features && limit === undefined) {
    gold = o.features.dataset;
    goldName = `${o.features.metadata.source} (the ${o.features.dataset.examples.length} questions of the features)`;
  } else {
    goldPath ??= (await resolveSquadData()).dev;
    const text = await Deno.readTextFile(goldPath).catch((err) => {
      throw new Error(`cannot read ${goldPath}: ${err.message}`);
    });
    const json = JSON.parse(text);
    if (json.version !== undefined && json.version !== "1.1") {
      console.warn(`warning: evaluation script for SQuAD v1.1, but ${goldPath} has version ${json.version}`);
    }
    gold = limit ? await readSquad(goldPath, { limit, log: () => {} }) : json;
    goldName = goldPath;
  }
  const scores = evaluateSquad(gold, predictions);
  const path = join(o.outputDir ?? dirname(predictionsPath), "eval_results.json");
  await writeJsonAtomic(path, { ...scores, predictions: predictionsPath, dataset: goldName });
  return { scores, goldName, path };
}
