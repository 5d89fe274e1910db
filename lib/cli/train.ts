/**
 * `deno task bert train`: fine-tune a checkpoint (or a randomly initialised BERT of a standard size) on prepared
 * features, with validation, checkpoints, exact resume and several seeds. A thin layer over lib/training/train.ts;
 * `--task squad` (or SQuAD features, recognised by their `.windows.json`) trains the span head through
 * lib/tasks/squad/train.ts with the same loop.
 * @module
 */
import { findWeights } from "../io/weights.ts";
import { type CommandSpec, type ParsedArgs, UsageError } from "./args.ts";
import { BACKEND_HELP, type BackendName, initBackend } from "../backends/backend.ts";
import { loadCheckpoint, reportMessages } from "../model/checkpoint.ts";
import { boxedWarning } from "../eval/evaluate.ts";
import { checkFeaturesMatch, type FeatureSet, loadFeatures } from "../data/features.ts";
import { acquireRunLock, basename, dirname, exists, join } from "../io/fsutil.ts";
import { windowsPath } from "../tasks/squad/features.ts";
import { checkMetricName, METRIC_NAMES } from "../eval/metrics.ts";
import { type BertConfig, BertModel, configFromJson } from "../model/model.ts";
import { TASKS } from "../data/tasks.ts";
import { FullTokenizer } from "../text/tokenizer.ts";
import { checkTokenIds, classificationTask } from "../tasks/classification/task.ts";
import { consoleProgress, type SeedsResult, train, type TrainResult, trainSeeds } from "../training/train.ts";
import { DEFAULT_HYPERPARAMETERS, type HyperParameters } from "../training/hyperparameters.ts";
import { latestCheckpoint } from "../training/checkpoints.ts";

const D = DEFAULT_HYPERPARAMETERS;

/** The default peak learning rate when training starts from random weights (`--config`): one that learns. */
export const RANDOM_INIT_LEARNING_RATE = 1e-3;

/** Flags of `train`. Hyper-parameter flags have no parsed default so that `--resume` can take the checkpoint's. */
export const spec: CommandSpec = {
  name: "train",
  description: "Fine-tunes BERT for sequence classification on features written by `prepare`. Validates on the " +
    "dev features after each epoch, writes checkpoints (Hugging Face layout + optimizer and trainer state) to " +
    "<output>/checkpoint-<step>/, keeps the last --save-total-limit plus the best, and resumes exactly with " +
    "--resume. The model is --model DIR (a checkpoint), else the checkpoint the features were prepared with, else " +
    "a randomly initialised --config (tiny by default: random weights make accuracy meaningless). --seeds 1,2,3 " +
    "trains once per seed and prints each run's headline metric and their mean ± std. --task squad (or features " +
    "from `prepare --task squad`) fine-tunes the span head for SQuAD instead, validating with exact match / F1 " +
    "(--model DIR, or --config SIZE --vocab FILE; learning rate default 5e-5). " +
    "On --resume the hyper-parameters come from the checkpoint: --epochs and --max-steps may be raised (the run " +
    "continues and the learning-rate schedule is recomputed to decay to 0 at the new end; the notice says so); " +
    "--eval-steps, --save-steps, --save-total-limit, --eval-batch-size, --metric-for-best, --backend and --quiet may " +
    "change freely; --lr, --batch-size, --warmup, --weight-decay, --max-grad-norm, --grad-accum, --seed and " +
    "--dropout may not (refused, since the run would no longer repeat), nor may the training data. Ctrl-C (or " +
    "SIGTERM) finishes the current update, saves a checkpoint and prints the command that resumes; a second " +
    "Ctrl-C stops at once.",
  usage: "--features outputs/<run>/features [--model DIR | --config tiny|mini|base|FILE] [--output outputs/<run>] " +
    "[--lr 2e-5 --batch-size 32 --epochs 3 ...] [--seeds 1,2,3] [--resume] [--task squad]",
  flags: {
    features: {
      required: true,
      help: "folder with train.safetensors and dev.safetensors (or the train file itself; see --dev)",
    },
    dev: { help: "dev features file (default: dev.safetensors beside the training features)" },
    task: {
      help: "squad: SQuAD windows from `prepare --task squad` (recognised by their .windows.json anyway); " +
        "otherwise the classification task of the features (for the headline metric)",
    },
    vocab: { help: "[squad with --config] the vocabulary the features were made with" },
    model: {
      help: "checkpoint folder to fine-tune: config.json (or bert_config.json), vocab.txt, and model.safetensors, " +
        "pytorch_model.bin or a TensorFlow checkpoint (bert_model.ckpt.index + .data-*)",
    },
    config: { help: "random initialisation instead: tiny (2x128), mini (4x256), base (12x768) or a config.json" },
    output: { help: "run folder for checkpoints (default: the folder above --features)" },
    lr: {
      type: "number",
      positive: true,
      help:
        `peak learning rate (default ${D.learningRate}; ${RANDOM_INIT_LEARNING_RATE} from random weights, --config)`,
    },
    "batch-size": { type: "number", integer: true, min: 1, help: `examples per batch (default ${D.batchSize})` },
    epochs: { type: "number", integer: true, min: 1, help: `passes over the training data (default ${D.epochs})` },
    "max-steps": {
      type: "number",
      integer: true,
      min: 0,
      help: "stop after this many updates (default: epochs decide)",
    },
    warmup: {
      type: "number",
      min: 0,
      max: 1,
      help: `fraction of updates with linear warmup (default ${D.warmupRatio})`,
    },
    "weight-decay": { type: "number", min: 0, help: `AdamW weight decay (default ${D.weightDecay})` },
    "max-grad-norm": { type: "number", min: 0, help: `gradient clipping, 0 = off (default ${D.maxGradNorm})` },
    "grad-accum": { type: "number", integer: true, min: 1, help: `batches per update (default ${D.gradAccumSteps})` },
    seed: { type: "number", integer: true, help: `seed of data order, dropout and new weights (default ${D.seed})` },
    seeds: { type: "list", help: "several runs, one per seed, into <output>/seed-<s>/ (e.g. 1,2,3)" },
    dropout: {
      type: "number",
      min: 0,
      max: 0.99,
      help: "hidden and attention dropout (default: the model config's, BERT 0.1)",
    },
    "eval-steps": {
      type: "number",
      integer: true,
      min: 0,
      help: "also validate every N updates (default: each epoch only)",
    },
    "save-steps": {
      type: "number",
      integer: true,
      min: 0,
      help: "also checkpoint every N updates (default: each epoch only)",
    },
    "save-total-limit": {
      type: "number",
      integer: true,
      min: 0,
      default: 2,
      help: "checkpoints kept besides the best (0 = all)",
    },
    "metric-for-best": { help: `metric picking the best checkpoint: ${METRIC_NAMES.join(", ")} (default: the task's)` },
    "eval-batch-size": { type: "number", integer: true, min: 1, default: 64, help: "examples per validation batch" },
    "n-best": { type: "number", integer: true, min: 1, help: "[squad] n-best size when evaluating (default 20)" },
    "max-answer-length": {
      type: "number",
      integer: true,
      min: 1,
      help: "[squad] longest answer in sub-tokens (default 30)",
    },
    resume: {
      type: "boolean",
      help: "continue from the newest complete checkpoint in --output (a damaged newer one is skipped with a " +
        "warning); --epochs/--max-steps may be raised, other hyper-parameters come from the checkpoint",
    },
    "resume-from": { help: "continue from this checkpoint folder" },
    overwrite: { type: "boolean", help: "delete checkpoints already in --output and start over" },
    backend: { help: BACKEND_HELP },
    threads: { type: "number", integer: true, min: 1, help: "wasm and BLAS threads" },
    quiet: { type: "boolean", help: "no progress display" },
  },
};

/** Standard BERT sizes for random initialisation (Turc et al. 2019 for tiny and mini). */
export const STANDARD_CONFIGS: Record<string, { layers: number; hidden: number; heads: number }> = {
  tiny: { layers: 2, hidden: 128, heads: 2 },
  mini: { layers: 4, hidden: 256, heads: 4 },
  small: { layers: 4, hidden: 512, heads: 8 },
  medium: { layers: 8, hidden: 512, heads: 8 },
  base: { layers: 12, hidden: 768, heads: 12 },
};

/** A BERT config of a standard size (or from a config.json file) for a vocabulary of `vocabSize` tokens. */
export async function standardConfig(name: string, vocabSize: number): Promise<BertConfig> {
  const std = STANDARD_CONFIGS[name];
  if (!std) {
    if (!(await exists(name))) {
      throw new UsageError(
        `--config "${name}" is neither a size (${Object.keys(STANDARD_CONFIGS).join(", ")}) nor a file`,
      );
    }
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(await Deno.readTextFile(name));
    } catch (err) {
      throw new Error(`--config ${name}: not a valid config.json (${(err as Error).message})`);
    }
    const config = configFromJson(json, name);
    if (config.vocabSize < vocabSize) {
      throw new Error(`${name}: vocab_size ${config.vocabSize} is smaller than the vocabulary (${vocabSize} tokens)`);
    }
    return config;
  }
  return configFromJson({
    vocab_size: vocabSize,
    hidden_size: std.hidden,
    num_hidden_layers: std.layers,
    num_attention_heads: std.heads,
    intermediate_size: 4 * std.hidden,
    hidden_act: "gelu",
    hidden_dropout_prob: 0.1,
    attention_probs_dropout_prob: 0.1,
    max_position_embeddings: 512,
    type_vocab_size: 2,
    initializer_range: 0.02,
    layer_norm_eps: 1e-12,
    pad_token_id: 0,
  }, `--config ${name}`);
}

/** The loud notice printed whenever a model starts from random weights (`hint`: how to get real weights). */
export function randomInitNotice(what: string, hint?: string[]): string {
  return boxedWarning([
    "NOTICE: no pre-trained checkpoint: training starts from RANDOM weights",
    `(${what}).`,
    "Fine-tuning needs pre-trained weights to give useful accuracy: the numbers",
    "from this run only show that the pipeline works; they say nothing about BERT.",
    ...(hint ?? [
      "Get weights with `deno task bert download google/bert_uncased_L-2_H-128_A-2`",
      "and prepare and train with --model <the folder it prints>.",
    ]),
  ]);
}

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

function num(args: ParsedArgs, name: string): number | undefined {
  return args.flags[name] as number | undefined;
}

/** Hyper-parameters given on the command line (absent ones stay undefined). */
export function hyperParametersFromFlags(args: ParsedArgs): Partial<HyperParameters> {
  const hp: Partial<HyperParameters> = {
    learningRate: num(args, "lr"),
    batchSize: num(args, "batch-size"),
    epochs: num(args, "epochs"),
    maxSteps: num(args, "max-steps"),
    warmupRatio: num(args, "warmup"),
    weightDecay: num(args, "weight-decay"),
    maxGradNorm: num(args, "max-grad-norm"),
    gradAccumSteps: num(args, "grad-accum"),
    seed: num(args, "seed"),
    dropout: num(args, "dropout"),
  };
  return Object.fromEntries(Object.entries(hp).filter(([, v]) => v !== undefined));
}

/** Prints the outcome of a run. */
export function printResult(r: TrainResult<unknown>): void {
  console.log(`checkpoints: ${r.outputDir}/ (last ${basename(r.lastCheckpoint)})`);
  if (r.bestCheckpoint && r.bestMetric) {
    console.log(
      `best: ${r.bestCheckpoint} (${r.bestMetric.name} ${r.bestMetric.value.toFixed(4)} at step ` +
        `${r.bestMetric.step})`,
    );
  }
  if (r.finalEval) {
    const loss = r.finalEval.scalars.loss;
    console.log(`final dev ${r.finalEval.headline.text}${loss === undefined ? "" : `, loss ${loss.toFixed(4)}`}`);
  }
}

/** Prints each seed's final headline metric and their mean ± std (sample standard deviation). */
export function printSeeds(r: SeedsResult<unknown>, outputDir: string): void {
  for (const run of r.runs) {
    const best = run.result.bestMetric;
    console.log(
      `seed ${run.seed}: ${r.metric} ${run.value.toFixed(4)} (final, step ${run.result.globalStep})` +
        `${best ? `; best ${best.name} ${best.value.toFixed(4)} at step ${best.step}` : ""} -> ${run.outputDir}`,
    );
  }
  console.log(
    `${r.metric} over ${r.runs.length} seeds: ${r.mean.toFixed(4)} ± ${r.std.toFixed(4)} (mean ± sample std; ` +
      `${join(outputDir, "seeds.json")})`,
  );
}

/** Parses `--seeds` (a list) into integers. */
export function parseSeeds(values: string[] | undefined): number[] | undefined {
  return values?.map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n)) throw new UsageError(`--seeds expects integers, got "${s}"`);
    return n;
  });
}

/** Whether `--task squad` was given or the training features are SQuAD windows (they have a `.windows.json`). */
async function isSquadRun(task: string | undefined, trainFile: string): Promise<boolean> {
  if (task === "squad") return true;
  return await exists(windowsPath(trainFile));
}

/** Quotes `arg` for a POSIX shell when it needs it. */
function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`;
}

/** The command that resumes this run: the same flags without --overwrite/--resume, plus --resume and --output. */
function resumeCommand(outputDir: string): string {
  const argv: string[] = [];
  const given = Deno.args;
  for (let i = 0; i < given.length; i++) {
    const a = given[i];
    if (a === "--overwrite" || a === "--resume" || a.startsWith("--resume=") || a.startsWith("--overwrite=")) continue;
    if (a === "--resume-from") {
      i++;
      continue;
    }
    if (a.startsWith("--resume-from=")) continue;
    argv.push(a);
  }
  if (!argv.some((a) => a === "--output" || a.startsWith("--output="))) argv.push("--output", outputDir);
  return `deno task bert ${argv.map(shellQuote).join(" ")} --resume`;
}

/** Runs `train` with parsed flags. */
export async function run(args: ParsedArgs): Promise<void> {
  if (args.positional.length) throw new UsageError(`unexpected argument "${args.positional[0]}"`);
  const f = args.flags;
  const task = f.task as string | undefined;
  if (task !== undefined && task !== "squad" && !Object.hasOwn(TASKS, task)) {
    throw new UsageError(`--task "${task}" is not a task: valid tasks are ${Object.keys(TASKS).join(", ")}, squad`);
  }
  const files = await featureFiles(f.features as string, f.dev as string | undefined);
  const outputDir = (f.output as string | undefined) ??
    ((await Deno.stat(f.features as string)).isDirectory
      ? dirname(f.features as string)
      : dirname(dirname(files.train)));
  const seeds = parseSeeds(f.seeds as string[] | undefined);
  // One writer per run folder: a second `train` into the same --output fails at once, naming this one.
  using _lock = await acquireRunLock(outputDir);
  await initBackend({ backend: f.backend as BackendName | undefined, threads: num(args, "threads") });
  const resumeHint = resumeCommand(outputDir);
  if (await isSquadRun(task, files.train)) {
    const { runSquadTraining } = await import("./squad.ts");
    await runSquadTraining({
      featuresFile: files.train,
      devFile: files.dev,
      outputDir,
      model: f.model as string | undefined,
      config: f.config as string | undefined,
      vocab: f.vocab as string | undefined,
      hp: hyperParametersFromFlags(args),
      seeds,
      evalSteps: num(args, "eval-steps"),
      saveSteps: num(args, "save-steps"),
      saveTotalLimit: num(args, "save-total-limit"),
      metricForBest: f["metric-for-best"] as string | undefined,
      evalBatchSize: num(args, "eval-batch-size"),
      resume: (f["resume-from"] as string | undefined) ?? (f.resume === true ? true : undefined),
      overwrite: f.overwrite === true,
      handleSignals: true,
      resumeHint,
      nBestSize: num(args, "n-best"),
      maxAnswerLength: num(args, "max-answer-length"),
      quiet: f.quiet === true,
    });
    return;
  }
  if (f["metric-for-best"] !== undefined) checkMetricName(f["metric-for-best"] as string); // fail before any work
  for (const flag of ["vocab", "n-best", "max-answer-length"]) {
    if (f[flag] !== undefined) throw new UsageError(`--${flag} is for --task squad`);
  }
  const trainSet = await loadFeatures(files.train);
  let dev = files.dev ? await loadFeatures(files.dev) : undefined;
  if (dev && (dev.n === 0 || dev.labels.some((l) => l < 0))) {
    console.warn(
      `notice: ${files.dev} is ${dev.n === 0 ? "empty" : "unlabelled"} (prepared with --allow-unlabelled-dev): ` +
        `training runs without validation and keeps no best checkpoint`,
    );
    dev = undefined;
  }
  if (trainSet.n === 0) {
    throw new Error(`${files.train}: no training examples (re-run \`deno task bert prepare\` on a non-empty file)`);
  }
  const hp = hyperParametersFromFlags(args);
  const quiet = f.quiet === true;
  const resumeFrom = f["resume-from"] as string | undefined;
  const resume: boolean | string | undefined = resumeFrom ?? (f.resume === true ? true : undefined);

  let source: ModelSource;
  if (resume && !f.model && !f.config) {
    // Resuming without naming the model: rebuild it from the checkpoint itself (its weights are loaded anyway).
    const dir = typeof resume === "string" ? resume : await latestCheckpoint(outputDir);
    source = dir ? { kind: "checkpoint", dir } : await chooseModelSource({ features: trainSet });
  } else {
    source = await chooseModelSource({
      model: f.model as string | undefined,
      config: f.config as string | undefined,
      features: trainSet,
    });
  }
  if (source.kind === "random" && hp.learningRate === undefined && !resume) {
    // 2e-5 is for pre-trained weights: from random ones it leaves the model at the majority class.
    hp.learningRate = RANDOM_INIT_LEARNING_RATE;
    console.log(
      `learning rate ${RANDOM_INIT_LEARNING_RATE} (random initialisation: BERT's fine-tuning ${D.learningRate} barely ` +
        "moves random weights; --lr sets another)",
    );
  }
  const common = {
    ...hp,
    task: classificationTask({ train: trainSet, dev, task: f.task as string | undefined }),
    evalSteps: num(args, "eval-steps"),
    saveSteps: num(args, "save-steps"),
    saveTotalLimit: num(args, "save-total-limit"),
    metricForBest: f["metric-for-best"] as string | undefined,
    evalBatchSize: num(args, "eval-batch-size"),
    overwrite: f.overwrite === true,
    quiet,
    handleSignals: true,
  };
  if (seeds) {
    if (hp.seed !== undefined) throw new UsageError("give --seed or --seeds, not both");
    if (resume) throw new UsageError("--resume works on one run; resume each seed-<s> folder separately");
    let warned = false;
    const result = await trainSeeds({
      ...common,
      seeds,
      outputDir,
      makeModel: async (seed) => {
        const built = await buildModel(source, { features: trainSet, featuresFile: files.train, seed, quiet });
        if (built.random && !warned) {
          console.warn(randomInitNotice(`--config ${source.kind === "random" ? source.config : ""}`));
        }
        warned = true;
        return built;
      },
    });
    printSeeds(result, outputDir);
    return;
  }
  const { model, vocabPath, random } = await buildModel(source, {
    features: trainSet,
    featuresFile: files.train,
    seed: hp.seed ?? D.seed,
    quiet,
  });
  if (dev && files.dev) {
    try {
      checkTokenIds(dev, model.config.vocabSize, files.dev);
    } catch (err) {
      model.dispose();
      throw err;
    }
  }
  if (random) console.warn(randomInitNotice(`--config ${source.kind === "random" ? source.config : ""}`));
  console.log(
    `model: ${source.kind === "checkpoint" ? source.dir : `random ${source.kind === "random" ? source.config : ""}`} ` +
      `(${(model.countParameters() / 1e6).toFixed(2)}M parameters); train ${trainSet.n} examples` +
      `${dev ? `, dev ${dev.n}` : " (no dev set: no validation)"}; output ${outputDir}`,
  );
  const display = quiet ? undefined : consoleProgress();
  try {
    const result = await train({
      ...common,
      model,
      vocabPath,
      outputDir,
      resume,
      resumeHint,
      onProgress: display?.onProgress,
    });
    await display?.done();
    printResult(result);
  } finally {
    model.dispose();
  }
}
