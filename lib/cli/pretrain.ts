/**
 * `deno task bert pretrain --corpus FILE|imdb [--vocab FILE] [--config tiny] [--steps N] [--output outputs/<run>]`:
 * pre-trains BERT from scratch (or continues a checkpoint) with the masked-LM and next-sentence objectives
 * (lib/tasks/pretraining/), using lib/training/train.ts's loop: checkpoints, exact `--resume`, evaluation on held-out documents.
 * @module
 */
import { defineCommand, type ParsedArgs } from "./args.ts";
import * as F from "./flags.ts";
import { UsageError } from "../io/errors.ts";
import { type BackendName, initBackend } from "../backends/backend.ts";
import { loadCheckpoint, reportMessages } from "../model/checkpoint.ts";
import { acquireRunLock, exists, join, writeFileAtomic } from "../io/fsutil.ts";
import { BertModel } from "../model/model.ts";
import { type Corpus, readCorpus, splitCorpus } from "../tasks/pretraining/corpus.ts";
import { createPretrainingData, type PretrainingDataOptions } from "../tasks/pretraining/instances.ts";
import { pretrain, PRETRAINING_DEFAULTS, PRETRAINING_METRICS } from "../tasks/pretraining/task.ts";
import { FullTokenizer } from "../text/tokenizer.ts";
import { Vocab } from "../text/vocab.ts";
import { consoleProgress } from "../training/train.ts";
import { buildVocabWithStats } from "../text/vocab_builder.ts";
import { standardConfig } from "../model/configs.ts";

const P = PRETRAINING_DEFAULTS;

/** Flags of `pretrain`. Hyper-parameter flags have no parsed default so that `--resume` takes the checkpoint's. */
export const spec = defineCommand({
  name: "pretrain",
  description: "Pre-trains BERT with masked-LM (15% of the tokens: 80% [MASK], 10% random, 10% unchanged) and " +
    "next-sentence prediction (50% true next sentence, 50% from another document) on a corpus: a text file with " +
    "one document per blank-line-separated block, or `imdb` (reviews from ../shared/data/imdb). The vocabulary is " +
    "--vocab, the --model's, or learned from the corpus into <output>/vocab.txt. Writes Hugging Face checkpoints " +
    "(BertForPreTraining) to <output>/checkpoint-<step>/; fine-tune one with `prepare --model <checkpoint>` " +
    "then `train --model <checkpoint>`.",
  usage: "--corpus FILE|imdb [--limit N] [--vocab FILE | --vocab-size N] [--model DIR | --config tiny|mini|FILE] " +
    "[--steps N] [--output outputs/<run>] [--resume]",
  flags: {
    corpus: { required: true, help: "text file (documents separated by blank lines) or `imdb`" },
    limit: { type: "number", help: "use at most this many documents (imdb: reviews, default 2000)" },
    "eval-fraction": {
      type: "number",
      default: 0.05,
      help: "share of the documents held out for evaluation (0 = none)",
    },
    vocab: { help: "vocab.txt to use (default: the --model's, else learned from the corpus)" },
    "vocab-size": { type: "number", default: 8000, help: "size of the vocabulary learned from the corpus" },
    cased: { type: "boolean", help: "keep case and accents" },
    model: { help: "continue pre-training this checkpoint folder instead of starting from random weights" },
    config: {
      help: "size of a fresh model: tiny (2x128, default), mini (4x256), small, medium, base, or a config.json",
    },
    output: { default: "outputs/pretrain", help: "run folder for checkpoints" },
    steps: { type: "number", help: `updates (default ${P.maxSteps})` },
    "batch-size": F.batchSize("instances", { shown: P.batchSize }),
    lr: F.lr(String(P.learningRate)),
    warmup: F.warmup(P.warmupRatio),
    "weight-decay": F.weightDecay(P.weightDecay),
    "max-grad-norm": F.maxGradNorm(P.maxGradNorm),
    "grad-accum": F.gradAccum(1),
    seed: F.seed(42),
    dropout: F.dropout(),
    "max-seq-length": F.maxSeqLength("instance"),
    "max-predictions": { type: "number", default: 20, help: "most masked-LM predictions per instance" },
    "masked-lm-prob": { type: "number", default: 0.15, help: "share of the tokens chosen for prediction" },
    "short-seq-prob": { type: "number", default: 0.1, help: "probability of a shorter instance" },
    "dupe-factor": { type: "number", default: 5, help: "passes over the corpus, each with new pairs and masks" },
    "data-seed": { type: "number", default: 12345, help: "seed of the pairs and masks" },
    objective: {
      default: "mlm-nsp",
      help: "mlm-nsp (BERT: masked-LM + next-sentence pairs) or mlm (RoBERTa: masked-LM on one span per instance)",
    },
    "nsp-weight": {
      type: "number",
      default: 1,
      help: "weight of the next-sentence loss in the training loss (mlm-nsp; BERT's is 1)",
    },
    "whole-word-mask": { type: "boolean", help: "mask all pieces of a word together (Google's --do_whole_word_mask)" },
    "eval-steps": F.evalSteps("each epoch and the end"),
    "save-steps": F.saveSteps("each epoch and the end"),
    "save-total-limit": F.saveTotalLimit(),
    "eval-batch-size": F.evalBatchSize("instances"),
    resume: F.resume(
      "in --output",
      ", with its hyper-parameters; a larger --steps trains longer (warm-up and decay are recomputed for the new " +
        "total); Ctrl-C saves a checkpoint first",
    ),
    "stop-at": F.stopAt(),
    overwrite: F.overwrite(),
    backend: F.backend(),
    threads: F.threads(),
    quiet: F.quiet(),
  },
});

type Flags = ParsedArgs<typeof spec.flags>["flags"];

/** The vocabulary: --vocab, the --model's, <output>/vocab.txt from an earlier run, or learned from `corpus`. */
async function chooseVocab(f: Flags, corpus: Corpus, outputDir: string): Promise<string> {
  if (f.vocab && f.model) {
    throw new UsageError("give --vocab or --model, not both (a checkpoint brings its vocabulary)");
  }
  if (f.vocab) {
    if (!(await exists(f.vocab))) throw new Error(`vocabulary file ${f.vocab} does not exist`);
    return f.vocab;
  }
  if (f.model) return join(f.model, "vocab.txt");
  const path = join(outputDir, "vocab.txt");
  if (await exists(path)) {
    console.log(`using the vocabulary learned earlier for this run: ${path}`);
    return path;
  }
  const size = f["vocab-size"];
  const t0 = performance.now();
  const { tokens, stats } = buildVocabWithStats(corpus.documents.flat(), { vocabSize: size, lowerCase: !f.cased });
  await writeFileAtomic(path, tokens.join("\n") + "\n");
  console.log(
    `learned a ${tokens.length}-token WordPiece vocabulary from ${stats.distinctWords} distinct words in ` +
      `${((performance.now() - t0) / 1000).toFixed(1)} s: ${path}`,
  );
  return path;
}

/** Runs `pretrain` with parsed flags. */
export async function run(args: ParsedArgs<typeof spec.flags>): Promise<void> {
  if (args.positional.length) throw new UsageError(`unexpected argument "${args.positional[0]}"`);
  const f = args.flags;
  if (f.model && f.config) throw new UsageError("give --model (continue a checkpoint) or --config (fresh), not both");
  const outputDir = f.output;
  const evalFraction = f["eval-fraction"];
  const objective = f.objective;
  if (objective !== "mlm-nsp" && objective !== "mlm") {
    throw new UsageError(`--objective must be mlm-nsp or mlm, got "${objective}"`);
  }
  if (!(evalFraction >= 0 && evalFraction < 1)) throw new UsageError(`--eval-fraction must be in [0, 1)`);
  using _lock = await acquireRunLock(outputDir); // one writer per run folder; a second one fails at once
  await initBackend({ backend: f.backend as BackendName | undefined, threads: f.threads });

  const t0 = performance.now();
  const corpusName = f.corpus;
  const corpus = await readCorpus(corpusName, {
    limit: f.limit ?? (corpusName === "imdb" ? 2000 : undefined),
  });
  const sentences = corpus.documents.reduce((a, d) => a + d.length, 0);
  console.log(`corpus ${corpus.source}: ${corpus.documents.length} documents, ${sentences} sentences`);
  const parts = evalFraction > 0 && corpus.documents.length >= 8
    ? splitCorpus(corpus, evalFraction)
    : { train: corpus, dev: undefined };
  await Deno.mkdir(outputDir, { recursive: true });
  const vocabPath = await chooseVocab(f, parts.train, outputDir);
  const tokenizer = new FullTokenizer(await Vocab.load(vocabPath), { lowerCase: !f.cased });

  const dataOptions: PretrainingDataOptions = {
    maxSeqLength: f["max-seq-length"],
    maxPredictionsPerSeq: f["max-predictions"],
    maskedLmProb: f["masked-lm-prob"],
    shortSeqProb: f["short-seq-prob"],
    dupeFactor: f["dupe-factor"],
    seed: f["data-seed"],
    nextSentence: objective === "mlm-nsp",
    wholeWordMask: f["whole-word-mask"] === true,
  };
  const trainSet = createPretrainingData(parts.train, tokenizer, dataOptions);
  const devSet = parts.dev ? createPretrainingData(parts.dev, tokenizer, { ...dataOptions, dupeFactor: 1 }) : undefined;
  console.log(
    `pre-training data in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${trainSet.n} instances ` +
      `(${trainSet.stats.predictions} masked-LM targets, ${trainSet.stats.randomNext} random next sentences)` +
      (devSet ? `; held out: ${devSet.n} instances from ${devSet.stats.documents} documents` : "; no held-out data"),
  );

  const seed = f.seed ?? 42;
  let model: BertModel;
  if (f.model) {
    const loaded = await loadCheckpoint(f.model, { head: "pretraining", seed, quiet: true });
    model = loaded.model;
    if (!f.quiet) { for (const m of reportMessages(loaded.report, f.model, "pretraining")) console.warn(m); }
  } else {
    const config = await standardConfig(f.config ?? "tiny", tokenizer.vocab.size);
    model = new BertModel(config, { head: "pretraining", seed });
  }
  const c = model.config;
  console.log(
    `model: ${f.model ? f.model : "random"} ${c.numHiddenLayers} layers x ${c.hiddenSize} hidden, ` +
      `${(model.countParameters() / 1e6).toFixed(2)}M parameters; output ${outputDir}`,
  );
  const hp = F.hyperParameters(f);
  const display = f.quiet ? undefined : consoleProgress({ label: "pretrain" });
  try {
    const result = await pretrain({
      ...hp,
      model,
      vocabPath,
      train: trainSet,
      dev: devSet,
      lowerCase: !f.cased,
      nspWeight: f["nsp-weight"],
      outputDir,
      evalSteps: f["eval-steps"],
      saveSteps: f["save-steps"],
      saveTotalLimit: f["save-total-limit"],
      evalBatchSize: f["eval-batch-size"],
      resume: f.resume === true ? true : undefined,
      overwrite: f.overwrite === true,
      quiet: f.quiet === true,
      handleSignals: true, // Ctrl-C: finish the update, save a checkpoint, say how to resume
      stopAt: f["stop-at"],
      onProgress: display?.onProgress,
    });
    await display?.done();
    console.log(`checkpoints: ${outputDir}/ (last ${result.lastCheckpoint})`);
    const e = result.finalEval;
    if (e) {
      console.log(
        `held-out: ${e.headline.text}; ` +
          PRETRAINING_METRICS.filter((m) => m !== "mlm_accuracy" && m !== "nsp_accuracy" && m in e.scalars)
            .map((m) => `${m} ${e.scalars[m].toFixed(3)}`).join(", "),
      );
    }
    console.log(
      `fine-tune it: deno task bert prepare --model ${result.lastCheckpoint} ...; then train --model ` +
        `${result.lastCheckpoint}`,
    );
  } finally {
    model.dispose();
  }
}
