/**
 * `deno task bert squad <prepare|train|predict|evaluate>`: SQuAD v1.1 question answering end to end, the second
 * task of Google's `run_squad.py`. The generic commands reach the same code with `--task squad`
 * (`prepare --task squad`, `train --task squad`, `evaluate --task squad`).
 *
 * - `prepare`: SQuAD JSON -> sliding-window features in `outputs/<run>/features/{train,dev}.safetensors` (+
 *   `.windows.json`). Without `--train`/`--dev` the files are looked up in `data/squad-v1.1/`, then
 *   `../shared/data/squad-v1.1/`; when there is no `train-v1.1.json`, a demo split of the dev file is used (the
 *   first `--limit` questions to evaluate on, questions of the other articles to train on), with a loud notice;
 * - `train`: fine-tune a checkpoint with the span head through the shared training loop (lib/training/train.ts): checkpoints,
 *   exact resume, exact match / F1 on the dev features after each epoch, the best kept, several seeds;
 * - `predict`: start/end logits of every dev window -> `predictions.json` and `nbest_predictions.json`;
 * - `evaluate`: the official SQuAD v1.1 exact match and F1 of a `predictions.json` against the gold file (with
 *   `--checkpoint`, predicts first) -> `eval_results.json`.
 * @module
 */
import { type CommandSpec, type ParsedArgs, UsageError } from "./args.ts";
import { boxedWarning } from "../eval/evaluate.ts";
import { acquireRunLock, basename, dirname, exists, join, writeJsonAtomic } from "../io/fsutil.ts";
import type { BertModel } from "../model/model.ts";
import { evaluateSquad, type SquadGold } from "../tasks/squad/metrics.ts";
import { filterSquad, readSquad, resolveSquadData, type SquadDataset } from "../tasks/squad/squad.ts";
import {
  convertSquadExamples,
  loadSquadFeatures,
  prepareSquad,
  saveSquadFeatures,
  type SquadFeatures,
  summarizeSquadFeatures,
  windowsPath,
} from "../tasks/squad/features.ts";
import { FullTokenizer } from "../text/tokenizer.ts";
import type { HyperParameters } from "../training/hyperparameters.ts";
import type { RunControlOptions } from "../training/train.ts";

const SUBCOMMANDS = ["prepare", "train", "predict", "evaluate"] as const;

/** Questions evaluated on by default when the dev file also provides the training questions (no train file). */
export const DEMO_DEV_QUESTIONS = 1000;

/** Flags of `squad` (each subcommand uses the ones marked for it). */
export const spec: CommandSpec = {
  name: "squad",
  description:
    "SQuAD v1.1 question answering (Google's run_squad.py): `prepare` turns SQuAD JSON into sliding-window " +
    "features (outputs/<run>/features/{train,dev}.safetensors + .windows.json); `train` fine-tunes a checkpoint " +
    "with the span head (checkpoints, --resume, exact match / F1 on the dev features after each epoch, the best " +
    "kept); `predict` writes predictions.json and nbest_predictions.json; `evaluate` scores predictions with the " +
    "official exact match / F1 (and predicts first when given no --predictions). Also reachable as " +
    "`prepare|train|evaluate --task squad`.",
  usage: "<prepare|train|predict|evaluate> [flags]   e.g. squad prepare --dev dev-v1.1.json --vocab vocab.txt",
  flags: {
    run: { default: "squad", help: "run name: everything goes to outputs/<run>/" },
    "outputs-dir": { default: "outputs", help: "root folder of all runs" },
    "data-dir": {
      help: "[prepare] folder with dev-v1.1.json (and train-v1.1.json) when --train/--dev are not given " +
        "(default: data/squad-v1.1, then ../shared/data/squad-v1.1)",
    },
    train: { help: "[prepare] SQuAD training JSON (features with answer positions)" },
    dev: { help: "[prepare, evaluate] SQuAD dev JSON (prepare: features to predict on; evaluate: the gold answers)" },
    "train-from-dev": {
      type: "boolean",
      help: "[prepare] no training file: train on the dev questions of other articles than the evaluated " +
        "--limit questions (a demo; automatic when no train-v1.1.json is found)",
    },
    "train-limit": { type: "number", integer: true, min: 1, help: "[prepare] only the first N training questions" },
    vocab: { help: "[prepare] vocab.txt to tokenize with; [train] with --config: the features' vocabulary" },
    model: { help: "[prepare] checkpoint whose vocab.txt/casing to use; [train] checkpoint to fine-tune" },
    config: { help: "[train] random weights instead of --model: tiny, mini, small, medium, base or a config.json" },
    cased: { type: "boolean", help: "[prepare] keep case and accents (cased vocabularies)" },
    "max-seq-length": {
      type: "number",
      integer: true,
      min: 8,
      max: 512,
      default: 384,
      help: "[prepare] window length in tokens",
    },
    "doc-stride": {
      type: "number",
      integer: true,
      min: 1,
      default: 128,
      help: "[prepare] sub-tokens between window starts",
    },
    "max-query-length": {
      type: "number",
      integer: true,
      min: 1,
      default: 64,
      help: "[prepare] questions are cut to this many sub-tokens",
    },
    limit: {
      type: "number",
      integer: true,
      min: 1,
      help: "[prepare, evaluate] only the first N questions of each file",
    },
    "keep-impossible": { type: "boolean", help: "[prepare] keep SQuAD 2.0 unanswerable questions (flagged)" },
    lr: { type: "number", positive: true, help: "[train] peak learning rate (default 5e-5)" },
    "batch-size": { type: "number", integer: true, min: 1, help: "[train, predict] windows per batch (default 32)" },
    epochs: { type: "number", integer: true, min: 1, help: "[train] passes over the training windows (default 3)" },
    "max-steps": {
      type: "number",
      integer: true,
      min: 0,
      help: "[train] stop after N updates (default: --epochs decides)",
    },
    "warmup-ratio": {
      type: "number",
      min: 0,
      max: 1,
      help: "[train] fraction of updates warming the lr up (default 0.1)",
    },
    "weight-decay": { type: "number", min: 0, help: "[train] AdamW weight decay (default 0.01)" },
    "max-grad-norm": { type: "number", min: 0, help: "[train] gradient clipping, 0 = none (default 1)" },
    "grad-accum": { type: "number", integer: true, min: 1, help: "[train] batches per update (default 1)" },
    seed: {
      type: "number",
      integer: true,
      help: "[train] data order, dropout and new-head initialisation seed (default 42)",
    },
    seeds: { type: "list", help: "[train] several runs, one per seed, into outputs/<run>/seed-<s>/ (e.g. 1,2,3)" },
    dropout: {
      type: "number",
      min: 0,
      max: 0.99,
      help: "[train] hidden and attention dropout (default: the model config's)",
    },
    "eval-steps": {
      type: "number",
      integer: true,
      min: 0,
      help: "[train] also evaluate every N updates (default: each epoch only)",
    },
    "save-steps": {
      type: "number",
      integer: true,
      min: 0,
      help: "[train] also checkpoint every N updates (default: each epoch only)",
    },
    "save-total-limit": {
      type: "number",
      integer: true,
      min: 0,
      help: "[train] checkpoints kept besides the best (default 2; 0 = all)",
    },
    "eval-batch-size": {
      type: "number",
      integer: true,
      min: 1,
      help: "[train] windows per batch when evaluating (default 64)",
    },
    resume: { type: "boolean", help: "[train] continue from the newest complete checkpoint of the run" },
    overwrite: { type: "boolean", help: "[train] delete the run's checkpoints and start over" },
    checkpoint: {
      help: "[predict, evaluate] checkpoint folder, or a run folder (its best, else newest, checkpoint; default: " +
        "the run's)",
    },
    features: { help: "[train, predict] feature file (default: outputs/<run>/features/{train,dev}.safetensors)" },
    "dev-features": { help: "[train] dev feature file to evaluate on (default: outputs/<run>/features/dev...)" },
    predictions: { help: "[evaluate] predictions.json to score (default: predict with the checkpoint first)" },
    output: { help: "[predict, evaluate] folder for predictions.json / eval_results.json (default: the checkpoint)" },
    "n-best": { type: "number", integer: true, min: 1, default: 20, help: "[predict, train] n-best size" },
    "max-answer-length": {
      type: "number",
      integer: true,
      min: 1,
      default: 30,
      help: "[predict, train] longest answer in sub-tokens",
    },
    quiet: { type: "boolean", help: "[train] no progress display" },
  },
};

type Flags = ParsedArgs["flags"];
const str = (f: Flags, name: string) => f[name] as string | undefined;
const num = (f: Flags, name: string) => f[name] as number | undefined;

function runDir(f: Flags): string {
  return join(str(f, "outputs-dir") ?? "outputs", str(f, "run") ?? "squad");
}

/** The newest `checkpoint-<step>` folder of the run that has weights. */
async function newestCheckpoint(dir: string): Promise<string | undefined> {
  const { listCheckpoints } = await import("../training/checkpoints.ts");
  for (const c of await listCheckpoints(dir)) if (await exists(join(c.path, "model.safetensors"))) return c.path;
  return undefined;
}

/** `--checkpoint` (a checkpoint, or a run folder: its best, else newest) or the run's best/newest checkpoint. */
async function resolveCheckpoint(f: Flags): Promise<string> {
  const target = str(f, "checkpoint") ?? runDir(f);
  if (await exists(join(target, "config.json"))) return target;
  const { resolveCheckpoint: bestOrNewest } = await import("./evaluate.ts");
  const found = await bestOrNewest(target).catch(() => undefined) ?? await newestCheckpoint(target);
  if (!found) {
    throw new UsageError(`no checkpoint in ${target}: train first (squad train) or pass --checkpoint DIR`);
  }
  return found;
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
 * `squad prepare` (and `prepare --task squad`): features for the training file (with answer positions) and the
 * dev file. Files not given are looked up (data/squad-v1.1, ../shared/data/squad-v1.1); with no training file a
 * demo split of the dev file is made, by article, so that no evaluated question's paragraph is trained on.
 */
export async function prepareCommand(f: Flags): Promise<void> {
  let train = str(f, "train"), dev = str(f, "dev");
  let fromDev = f["train-from-dev"] === true;
  if (fromDev && train) throw new UsageError("give --train FILE or --train-from-dev, not both");
  if (!train && !dev) {
    const found = await resolveSquadData(str(f, "data-dir"));
    dev = found.dev;
    train = found.train;
    console.log(`SQuAD v1.1: dev ${found.dev}, train ${found.train ?? "(no train-v1.1.json)"}`);
    if (!train) fromDev = true;
  }
  if (fromDev && !dev) throw new UsageError("--train-from-dev needs the dev file (--dev FILE)");
  const vocab = str(f, "vocab"), model = str(f, "model");
  if (vocab && model) throw new UsageError("give --vocab or --model, not both");
  if (!vocab && !model) throw new UsageError("squad prepare needs --vocab FILE or --model DIR (for its vocab.txt)");
  let lowerCase = f.cased !== true;
  let vocabPath = vocab!;
  if (model) {
    vocabPath = join(model, "vocab.txt");
    if (f.cased !== true) {
      const { inferLowerCase } = await import("../model/checkpoint.ts");
      lowerCase = await inferLowerCase(model);
    }
  }
  const tokenizer = await FullTokenizer.fromVocabFile(vocabPath, { lowerCase });
  console.log(`tokenizer: ${vocabPath} (${tokenizer.vocab.size} tokens, ${lowerCase ? "uncased" : "cased"})`);
  const outputDir = join(runDir(f), "features");
  const windows = {
    maxSeqLength: num(f, "max-seq-length") ?? 384,
    docStride: num(f, "doc-stride") ?? 128,
    maxQueryLength: num(f, "max-query-length") ?? 64,
  };
  const keepImpossible = f["keep-impossible"] === true;
  const log = (m: string) => console.log(m);
  if (fromDev) {
    const limit = num(f, "limit") ?? DEMO_DEV_QUESTIONS;
    const evalSlice = await readSquad(dev!, { limit, keepImpossible, log });
    const titles = new Set(evalSlice.paragraphs.map((p) => p.title));
    const all = await readSquad(dev!, { training: true, keepImpossible, log });
    const trainSet = filterSquad(all, (_, p) => !titles.has(p.title), { limit: num(f, "train-limit") });
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
  const common = { ...windows, outputDir, tokenizer, read: { limit: num(f, "limit"), keepImpossible } };
  if (train) {
    await prepareSquad({
      ...common,
      input: train,
      training: true,
      split: "train",
      read: { ...common.read, limit: num(f, "train-limit") ?? num(f, "limit") },
    });
  }
  if (dev) await prepareSquad({ ...common, input: dev, training: false, split: "dev" });
}

/** Everything `train` needs for SQuAD, whichever command line it came from (`squad train` or `train --task squad`). */
export interface SquadTrainCommandOptions extends RunControlOptions {
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

/** Loads `--model` with the span head, or builds a random `--config` model for `--vocab`. */
async function buildSquadModel(
  o: SquadTrainCommandOptions,
  seed: number | undefined,
): Promise<{ model: BertModel; vocabPath: string; random: boolean }> {
  if (o.model && o.config) throw new UsageError("give --model or --config, not both");
  if (o.model) {
    const { loadCheckpoint, reportMessages } = await import("../model/checkpoint.ts");
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
    const { Vocab } = await import("../text/vocab.ts");
    const { BertModel } = await import("../model/model.ts");
    const { standardConfig } = await import("./train.ts");
    const config = await standardConfig(o.config, (await Vocab.load(o.vocab)).size);
    return { model: new BertModel(config, { head: "question-answering", seed }), vocabPath: o.vocab, random: true };
  }
  throw new UsageError(
    "SQuAD training needs --model DIR (a checkpoint to fine-tune) or --config SIZE --vocab FILE (random weights)",
  );
}

/**
 * Trains SQuAD from {@linkcode SquadTrainCommandOptions}: one run through `trainSquad`, or one per seed through
 * `trainSeeds` with the SQuAD adapter (printing each run's F1 and their mean ± std).
 */
export async function runSquadTraining(o: SquadTrainCommandOptions): Promise<void> {
  if (!(await exists(o.featuresFile))) {
    throw new UsageError(`${o.featuresFile} not found: run \`prepare --task squad\` first (or point --features to it)`);
  }
  const features = await loadSquadFeatures(o.featuresFile);
  const dev = o.devFile ? await loadSquadFeatures(o.devFile) : undefined;
  const { initBackend } = await import("../backends/backend.ts");
  await initBackend();
  const { trainSeeds, consoleProgress } = await import("../training/train.ts");
  const { latestCheckpoint } = await import("../training/checkpoints.ts");
  const { squadTask, trainSquad, SQUAD_LEARNING_RATE } = await import("../tasks/squad/train.ts");
  const { randomInitNotice, printResult, printSeeds } = await import("./train.ts");
  const notice = (random: boolean) => {
    if (random) console.warn(randomInitNotice(`--config ${o.config}`));
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
    const result = await trainSeeds({
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
    printSeeds(result, o.outputDir);
    return;
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
    printResult(result);
  } finally {
    model.dispose();
  }
}

/** `squad train`: fine-tune --model on the run's train features, evaluating on its dev features. */
export async function trainCommand(f: Flags): Promise<void> {
  const featuresFile = str(f, "features") ?? join(runDir(f), "features", "train.safetensors");
  let devFile = str(f, "dev-features");
  if (!devFile) {
    const beside = join(dirname(featuresFile), "dev.safetensors");
    if (await exists(beside)) devFile = beside;
  }
  const seeds = (f.seeds as string[] | undefined)?.map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n)) throw new UsageError(`--seeds expects integers, got "${s}"`);
    return n;
  });
  const hp: Partial<HyperParameters> = {
    learningRate: num(f, "lr"),
    batchSize: num(f, "batch-size"),
    epochs: num(f, "epochs"),
    maxSteps: num(f, "max-steps"),
    warmupRatio: num(f, "warmup-ratio"),
    weightDecay: num(f, "weight-decay"),
    maxGradNorm: num(f, "max-grad-norm"),
    gradAccumSteps: num(f, "grad-accum"),
    seed: num(f, "seed"),
    dropout: num(f, "dropout"),
  };
  await runSquadTraining({
    featuresFile,
    devFile,
    outputDir: runDir(f),
    model: str(f, "model"),
    config: str(f, "config"),
    vocab: str(f, "vocab"),
    hp: Object.fromEntries(Object.entries(hp).filter(([, v]) => v !== undefined)),
    seeds,
    evalSteps: num(f, "eval-steps"),
    saveSteps: num(f, "save-steps"),
    saveTotalLimit: num(f, "save-total-limit"),
    evalBatchSize: num(f, "eval-batch-size"),
    resume: f.resume === true ? true : undefined,
    overwrite: f.overwrite === true,
    handleSignals: true,
    resumeHint: `deno task bert squad train ${
      Deno.args.slice(2).filter((a) => a !== "--overwrite" && a !== "--resume").join(" ")
    } --resume`.replace(/ +/g, " "),
    nBestSize: num(f, "n-best"),
    maxAnswerLength: num(f, "max-answer-length"),
    quiet: f.quiet === true,
  });
}

/** `squad predict`: predictions.json and nbest_predictions.json for the run's dev features. */
export async function predictCommand(f: Flags): Promise<{ predictionsPath: string; features: SquadFeatures }> {
  const checkpoint = await resolveCheckpoint(f);
  let featuresPath = str(f, "features");
  if (!featuresPath) {
    // The dev features of the checkpoint's own run folder, else of --run.
    const beside = join(dirname(checkpoint), "features", "dev.safetensors");
    featuresPath = await exists(beside) ? beside : join(runDir(f), "features", "dev.safetensors");
  }
  if (!(await exists(featuresPath))) {
    throw new UsageError(`${featuresPath} not found: run \`squad prepare --dev FILE\` first (or pass --features)`);
  }
  const { initBackend } = await import("../backends/backend.ts");
  await initBackend();
  const { predictSquad } = await import("../tasks/squad/train.ts");
  const outputDir = str(f, "output") ?? checkpoint;
  const t0 = performance.now();
  const result = await predictSquad({
    checkpoint,
    features: featuresPath,
    batchSize: num(f, "batch-size"),
    nBestSize: num(f, "n-best"),
    maxAnswerLength: num(f, "max-answer-length"),
    outputDir,
  });
  console.log(
    `checkpoint ${checkpoint}: predicted ${Object.keys(result.predictions).length} questions (${result.features.n} ` +
      `windows of ${featuresPath}) in ${((performance.now() - t0) / 1000).toFixed(1)} s -> ` +
      `${result.predictionsPath}, ${result.nbestPath}`,
  );
  return { predictionsPath: result.predictionsPath!, features: result.features };
}

/**
 * `squad evaluate` (and `evaluate --task squad`): official EM/F1 of predictions -> eval_results.json. The gold
 * answers are `--dev FILE` (first `--limit` questions with `--limit`); without it, the predicted features' own
 * questions when predicting, else the dev file found in data/squad-v1.1 or ../shared/data/squad-v1.1.
 */
export async function evaluateCommand(f: Flags): Promise<void> {
  // Without --predictions, predict first (with --checkpoint, or the run's best/newest checkpoint).
  const given = str(f, "predictions");
  const predicted = given ? undefined : await predictCommand(f);
  const predictionsPath = given ?? predicted!.predictionsPath;
  let predictions: Record<string, string>;
  try {
    predictions = JSON.parse(await Deno.readTextFile(predictionsPath));
  } catch (err) {
    throw new Error(`${predictionsPath}: cannot read predictions: ${(err as Error).message}`);
  }
  if (typeof predictions !== "object" || predictions === null || Array.isArray(predictions)) {
    throw new Error(`${predictionsPath}: expected a JSON object {question id: answer text}`);
  }
  let goldPath = str(f, "dev");
  let gold: SquadGold;
  let goldName: string;
  const limit = num(f, "limit");
  if (!goldPath && predicted && limit === undefined) {
    gold = predicted.features.dataset;
    goldName = `${predicted.features.metadata.source} (the ${predicted.features.dataset.examples.length} questions ` +
      `of the features)`;
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
  const outDir = str(f, "output") ?? dirname(predictionsPath);
  const path = join(outDir, "eval_results.json");
  await writeJsonAtomic(path, { ...scores, predictions: predictionsPath, dataset: goldName });
  console.log(JSON.stringify({ exact_match: scores.exact_match, f1: scores.f1 }));
  console.log(`${scores.total} questions of ${goldName} (${scores.missing} without a prediction) -> ${path}`);
}

/** Runs `squad <subcommand>`. */
export async function run(args: ParsedArgs): Promise<void> {
  const [sub, ...extra] = args.positional;
  if (!sub || !(SUBCOMMANDS as readonly string[]).includes(sub)) {
    throw new UsageError(`squad needs a subcommand: ${SUBCOMMANDS.join(", ")}${sub ? ` (got "${sub}")` : ""}`);
  }
  if (extra.length) throw new UsageError(`unexpected argument "${extra[0]}"`);
  // `prepare` and `train` write the run folder: one writer at a time (a second one fails at once, naming this one).
  using _lock = sub === "prepare" || sub === "train" ? await acquireRunLock(runDir(args.flags)) : undefined;
  if (sub === "prepare") await prepareCommand(args.flags);
  else if (sub === "train") await trainCommand(args.flags);
  else if (sub === "predict") await predictCommand(args.flags);
  else await evaluateCommand(args.flags);
}
