/**
 * `deno task bert squad <prepare|train|predict|evaluate>`: SQuAD v1.1 question answering end to end, the second
 * task of Google's `run_squad.py`.
 *
 * - `prepare`: SQuAD JSON -> sliding-window features in `outputs/<run>/features/{train,dev}.safetensors` (+
 *   `.windows.json`);
 * - `train`: fine-tune a checkpoint with the span head on the train features -> `outputs/<run>/checkpoint-<step>/`;
 * - `predict`: start/end logits of every dev window -> `predictions.json` and `nbest_predictions.json`;
 * - `evaluate`: the official SQuAD v1.1 exact match and F1 of a `predictions.json` against the gold file (with
 *   `--checkpoint`, predicts first) -> `eval_results.json`.
 * @module
 */
import { type CommandSpec, type ParsedArgs, UsageError } from "../args.ts";
import { dirname, exists, join, writeJsonAtomic } from "../fsutil.ts";
import { evaluateSquad } from "../squad_metrics.ts";
import { readSquad } from "../squad.ts";
import { loadSquadFeatures, prepareSquad } from "../squad_features.ts";
import { FullTokenizer } from "../tokenizer.ts";

const SUBCOMMANDS = ["prepare", "train", "predict", "evaluate"] as const;

/** Flags of `squad` (each subcommand uses the ones marked for it). */
export const spec: CommandSpec = {
  name: "squad",
  description:
    "SQuAD v1.1 question answering (Google's run_squad.py): `prepare` turns SQuAD JSON into sliding-window " +
    "features (outputs/<run>/features/{train,dev}.safetensors + .windows.json); `train` fine-tunes a checkpoint " +
    "with the span head; `predict` writes predictions.json and nbest_predictions.json; `evaluate` scores " +
    "predictions with the official exact match / F1 (and predicts first when given --checkpoint).",
  usage: "<prepare|train|predict|evaluate> [flags]   e.g. squad prepare --dev dev-v1.1.json --vocab vocab.txt",
  flags: {
    run: { default: "squad", help: "run name: everything goes to outputs/<run>/" },
    "outputs-dir": { default: "outputs", help: "root folder of all runs" },
    train: { help: "[prepare] SQuAD training JSON (features with answer positions)" },
    dev: { help: "[prepare, evaluate] SQuAD dev JSON (prepare: features to predict on; evaluate: the gold answers)" },
    vocab: { help: "[prepare] vocab.txt to tokenize with" },
    model: { help: "[prepare] checkpoint whose vocab.txt/casing to use; [train] checkpoint to fine-tune" },
    cased: { type: "boolean", help: "[prepare] keep case and accents (cased vocabularies)" },
    "max-seq-length": { type: "number", default: 384, help: "[prepare] window length in tokens" },
    "doc-stride": { type: "number", default: 128, help: "[prepare] sub-tokens between window starts" },
    "max-query-length": { type: "number", default: 64, help: "[prepare] questions are cut to this many sub-tokens" },
    limit: { type: "number", help: "[prepare, evaluate] only the first N questions of each file" },
    "keep-impossible": { type: "boolean", help: "[prepare] keep SQuAD 2.0 unanswerable questions (flagged)" },
    lr: { type: "number", default: 5e-5, help: "[train] peak learning rate" },
    "batch-size": { type: "number", default: 32, help: "[train, predict] windows per batch" },
    epochs: { type: "number", default: 3, help: "[train] passes over the training windows" },
    "max-steps": { type: "number", default: 0, help: "[train] stop after N updates (0: --epochs decides)" },
    "warmup-ratio": { type: "number", default: 0.1, help: "[train] fraction of updates warming the lr up" },
    "weight-decay": { type: "number", default: 0.01, help: "[train] AdamW weight decay" },
    "max-grad-norm": { type: "number", default: 1, help: "[train] gradient clipping (0: none)" },
    seed: { type: "number", default: 42, help: "[train] data order, dropout and new-head initialisation seed" },
    checkpoint: { help: "[predict, evaluate] checkpoint folder (default: newest outputs/<run>/checkpoint-*)" },
    features: { help: "[train, predict] feature file (default: outputs/<run>/features/{train,dev}.safetensors)" },
    predictions: { help: "[evaluate] predictions.json to score (default: predict with the checkpoint first)" },
    output: { help: "[predict, evaluate] folder for predictions.json / eval_results.json (default: the checkpoint)" },
    "n-best": { type: "number", default: 20, help: "[predict] n-best size" },
    "max-answer-length": { type: "number", default: 30, help: "[predict] longest answer in sub-tokens" },
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
  const { listCheckpoints } = await import("../train.ts");
  for (const c of await listCheckpoints(dir)) if (await exists(join(c.path, "model.safetensors"))) return c.path;
  return undefined;
}

async function resolveCheckpoint(f: Flags): Promise<string> {
  const given = str(f, "checkpoint");
  if (given) return given;
  const found = await newestCheckpoint(runDir(f));
  if (!found) {
    throw new UsageError(`no checkpoint in ${runDir(f)}: train first (squad train) or pass --checkpoint DIR`);
  }
  return found;
}

/** `squad prepare`: features for --train (with answer positions) and/or --dev. */
export async function prepareCommand(f: Flags): Promise<void> {
  const train = str(f, "train"), dev = str(f, "dev");
  if (!train && !dev) throw new UsageError("squad prepare needs --train FILE and/or --dev FILE (SQuAD JSON)");
  const vocab = str(f, "vocab"), model = str(f, "model");
  if (vocab && model) throw new UsageError("give --vocab or --model, not both");
  if (!vocab && !model) throw new UsageError("squad prepare needs --vocab FILE or --model DIR (for its vocab.txt)");
  let lowerCase = f.cased !== true;
  let vocabPath = vocab!;
  if (model) {
    vocabPath = join(model, "vocab.txt");
    if (f.cased !== true) {
      const { inferLowerCase } = await import("../checkpoint.ts");
      lowerCase = await inferLowerCase(model);
    }
  }
  const tokenizer = await FullTokenizer.fromVocabFile(vocabPath, { lowerCase });
  console.log(`tokenizer: ${vocabPath} (${tokenizer.vocab.size} tokens, ${lowerCase ? "uncased" : "cased"})`);
  const outputDir = join(runDir(f), "features");
  const common = {
    outputDir,
    tokenizer,
    maxSeqLength: num(f, "max-seq-length"),
    docStride: num(f, "doc-stride"),
    maxQueryLength: num(f, "max-query-length"),
    read: { limit: num(f, "limit"), keepImpossible: f["keep-impossible"] === true },
  };
  if (train) await prepareSquad({ ...common, input: train, training: true, split: "train" });
  if (dev) await prepareSquad({ ...common, input: dev, training: false, split: "dev" });
}

/** `squad train`: fine-tune --model on the run's train features. */
export async function trainCommand(f: Flags): Promise<void> {
  const modelDir = str(f, "model");
  if (!modelDir) throw new UsageError("squad train needs --model DIR (the checkpoint to fine-tune)");
  const featuresPath = str(f, "features") ?? join(runDir(f), "features", "train.safetensors");
  if (!(await exists(featuresPath))) {
    throw new UsageError(`${featuresPath} not found: run \`squad prepare --train FILE\` first (or pass --features)`);
  }
  const features = await loadSquadFeatures(featuresPath);
  const { initBackend } = await import("../backend.ts");
  await initBackend();
  const { loadCheckpoint } = await import("../checkpoint.ts");
  const { trainSquad } = await import("../squad_train.ts");
  const { model, vocabPath } = await loadCheckpoint(modelDir, { head: "question-answering", seed: num(f, "seed") });
  try {
    await trainSquad({
      model,
      vocabPath,
      features,
      outputDir: runDir(f),
      learningRate: num(f, "lr"),
      batchSize: num(f, "batch-size"),
      epochs: num(f, "epochs"),
      maxSteps: num(f, "max-steps"),
      warmupRatio: num(f, "warmup-ratio"),
      weightDecay: num(f, "weight-decay"),
      maxGradNorm: num(f, "max-grad-norm"),
      seed: num(f, "seed"),
    });
  } finally {
    model.dispose();
  }
}

/** `squad predict`: predictions.json and nbest_predictions.json for the run's dev features. */
export async function predictCommand(f: Flags): Promise<string> {
  const checkpoint = await resolveCheckpoint(f);
  const featuresPath = str(f, "features") ?? join(runDir(f), "features", "dev.safetensors");
  if (!(await exists(featuresPath))) {
    throw new UsageError(`${featuresPath} not found: run \`squad prepare --dev FILE\` first (or pass --features)`);
  }
  const { initBackend } = await import("../backend.ts");
  await initBackend();
  const { predictSquad } = await import("../squad_train.ts");
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
    `predicted ${Object.keys(result.predictions).length} questions (${result.features.n} windows) in ` +
      `${((performance.now() - t0) / 1000).toFixed(1)} s -> ${result.predictionsPath}, ${result.nbestPath}`,
  );
  return result.predictionsPath!;
}

/** `squad evaluate`: official EM/F1 of predictions against the gold --dev file -> eval_results.json. */
export async function evaluateCommand(f: Flags): Promise<void> {
  const gold = str(f, "dev");
  if (!gold) throw new UsageError("squad evaluate needs --dev FILE (the gold SQuAD JSON)");
  // Without --predictions, predict first (with --checkpoint, or the run's newest checkpoint).
  const predictionsPath = str(f, "predictions") ?? await predictCommand(f);
  let predictions: Record<string, string>;
  try {
    predictions = JSON.parse(await Deno.readTextFile(predictionsPath));
  } catch (err) {
    throw new Error(`${predictionsPath}: cannot read predictions: ${(err as Error).message}`);
  }
  if (typeof predictions !== "object" || predictions === null || Array.isArray(predictions)) {
    throw new Error(`${predictionsPath}: expected a JSON object {question id: answer text}`);
  }
  const text = await Deno.readTextFile(gold).catch((err) => {
    throw new Error(`cannot read ${gold}: ${err.message}`);
  });
  const json = JSON.parse(text);
  if (json.version !== undefined && json.version !== "1.1") {
    console.warn(`warning: evaluation script for SQuAD v1.1, but ${gold} has version ${json.version}`);
  }
  const limit = num(f, "limit");
  const dataset = limit ? await readSquad(gold, { limit, log: () => {} }) : json;
  const scores = evaluateSquad(dataset, predictions);
  const outDir = str(f, "output") ?? dirname(predictionsPath);
  const path = join(outDir, "eval_results.json");
  await writeJsonAtomic(path, { ...scores, predictions: predictionsPath, dataset: gold });
  console.log(JSON.stringify({ exact_match: scores.exact_match, f1: scores.f1 }));
  console.log(`${scores.total} questions (${scores.missing} without a prediction) -> ${path}`);
}

/** Runs `squad <subcommand>`. */
export async function run(args: ParsedArgs): Promise<void> {
  const [sub, ...extra] = args.positional;
  if (!sub || !(SUBCOMMANDS as readonly string[]).includes(sub)) {
    throw new UsageError(`squad needs a subcommand: ${SUBCOMMANDS.join(", ")}${sub ? ` (got "${sub}")` : ""}`);
  }
  if (extra.length) throw new UsageError(`unexpected argument "${extra[0]}"`);
  if (sub === "prepare") await prepareCommand(args.flags);
  else if (sub === "train") await trainCommand(args.flags);
  else if (sub === "predict") await predictCommand(args.flags);
  else await evaluateCommand(args.flags);
}
