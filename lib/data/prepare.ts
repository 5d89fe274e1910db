/**
 * The `prepare` step as a library function (the CLI `deno task bert prepare` and the notebooks both call
 * {@linkcode prepareFeatures}): read a task's train and dev files, tokenize, convert to fixed-length features and
 * save `outputs/<run>/features/{train,dev}.safetensors`.
 *
 * The vocabulary comes from `--vocab FILE`, from a checkpoint folder (`--model DIR`, whose `vocab.txt` and
 * `tokenizer_config.json` casing are used), or from `outputs/<run>/vocab.txt`. For the embedded `sample` task that
 * last file is built from the training text when it does not exist yet (there are no pre-trained weights to match).
 * @module
 */
import type { Dataset } from "./datasets.ts";
import { createProgress, formatDuration } from "../viz/display.ts";
import { convertExamples, type FeatureSet, saveFeatures, summarizeFeatures } from "./features.ts";
import { exists, join, probeWritable, writeDirAtomic, writeFileAtomic } from "../io/fsutil.ts";
import { getTask, resolveTaskData } from "./tasks.ts";
import { FullTokenizer } from "../text/tokenizer.ts";
import { Vocab } from "../text/vocab.ts";

/** Options of {@linkcode prepareFeatures}; every field has a default. */
export interface PrepareOptions {
  /** Task name from `TASKS` (default `sample`, the embedded default). */
  task?: string;
  /** Folder with the task's files (default: `data/...`, then `../shared/data/...`). */
  dataDir?: string;
  /** Explicit training file (overrides the task's folder). */
  train?: string;
  /** Explicit dev file (overrides the task's folder). */
  dev?: string;
  /** A `vocab.txt`. */
  vocab?: string;
  /** A checkpoint folder holding `vocab.txt` (and maybe `tokenizer_config.json`, `config.json`). */
  model?: string;
  /** Keep case and accents (cased models). Default: the checkpoint's `do_lower_case`, else lower-case. */
  cased?: boolean;
  /** Tokens per example including [CLS]/[SEP] (default 128). */
  maxSeqLength?: number;
  /** Run name: features go to `<outputsDir>/<run>/features` (default: the task name). */
  run?: string;
  /** Read at most this many examples per split. */
  limit?: number;
  /** Skip malformed rows (reported) instead of failing. */
  skipBadRows?: boolean;
  /**
   * Accept a dev split that is empty (header only) or unlabelled (e.g. a GLUE test file): it is written as it is,
   * and `train` then runs without validation. Without this, such a dev split is an error (an empty or unlabelled
   * training split always is).
   */
  allowUnlabelledDev?: boolean;
  /** Root of all runs (default `outputs`). */
  outputsDir?: string;
  /** Size of the vocabulary built for `sample` when none exists (default 2000). */
  vocabSize?: number;
  /** No printing and no progress display. */
  quiet?: boolean;
  /** Where lines go (default `console.log`); ignored when `quiet`. */
  log?: (line: string) => void;
  /** Called as examples are converted (in addition to the progress display). */
  onProgress?: (split: string, done: number, total: number) => void;
}

/** One prepared split. */
export interface PreparedSplit {
  /** `train` or `dev`. */
  split: string;
  /** The features file written. */
  path: string;
  features: FeatureSet;
  /** The data file read. */
  source: string;
  /** Rows skipped with `skipBadRows`. */
  skipped: { line: number; problem: string }[];
}

/** What {@linkcode prepareFeatures} did. */
export interface PrepareResult {
  task: string;
  run: string;
  /** `<outputsDir>/<run>` */
  runDir: string;
  /** `<outputsDir>/<run>/features` */
  featuresDir: string;
  vocabPath: string;
  /** True when the vocabulary was built by this call. */
  vocabBuilt: boolean;
  lowerCase: boolean;
  maxSeqLength: number;
  tokenizer: FullTokenizer;
  splits: { train: PreparedSplit; dev: PreparedSplit };
  /** The printable summary (what the CLI prints). */
  summary: string[];
  seconds: number;
}

/** Default maximum sequence length. */
export const DEFAULT_MAX_SEQ_LENGTH = 128;
/** Positions of the models `train --config` builds (and of Google's BERT checkpoints). */
export const NEW_CONFIG_MAX_POSITIONS = 512;
/** Size of the vocabulary built for the embedded sample. */
export const DEFAULT_SAMPLE_VOCAB_SIZE = 2000;

const RUN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Throws unless `run` is a plain folder name (letters, digits, `.`, `_`, `-`). */
export function checkRunName(run: string): void {
  if (!RUN_NAME.test(run)) {
    throw new Error(
      `run name "${run}" must be a plain folder name: letters, digits, ".", "_" or "-", ` +
        `starting with a letter or digit`,
    );
  }
}

async function readJsonIfPresent(path: string): Promise<Record<string, unknown> | undefined> {
  if (!(await exists(path))) return undefined;
  try {
    const value = JSON.parse(await Deno.readTextFile(path));
    return typeof value === "object" && value !== null ? value : undefined;
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message})`);
  }
}

interface VocabChoice {
  path: string;
  lowerCase: boolean;
  built: boolean;
  notice?: string;
  maxPositionEmbeddings?: number;
}

async function chooseVocab(
  o: PrepareOptions,
  task: string,
  runDir: string,
  readTrain: () => Promise<Dataset>,
): Promise<VocabChoice> {
  if (o.vocab && o.model) {
    throw new Error(`give either a vocabulary file (--vocab) or a checkpoint (--model), not both`);
  }
  if (o.vocab) {
    if (!(await exists(o.vocab))) throw new Error(`vocabulary file ${o.vocab} does not exist`);
    return { path: o.vocab, lowerCase: !o.cased, built: false };
  }
  if (o.model) {
    const path = join(o.model, "vocab.txt");
    if (!(await exists(path))) {
      throw new Error(`${o.model} has no vocab.txt: --model must be a checkpoint folder (Hugging Face layout)`);
    }
    const tc = await readJsonIfPresent(join(o.model, "tokenizer_config.json"));
    const config = await readJsonIfPresent(join(o.model, "config.json"));
    const doLower = typeof tc?.do_lower_case === "boolean" ? tc.do_lower_case : undefined;
    const maxPos = typeof config?.max_position_embeddings === "number" ? config.max_position_embeddings : undefined;
    const lowerCase = o.cased ? false : doLower ?? true;
    const notice = o.cased && doLower === true
      ? `note: --cased given, but ${o.model}/tokenizer_config.json says do_lower_case=true`
      : undefined;
    return { path, lowerCase, built: false, notice, maxPositionEmbeddings: maxPos };
  }
  const path = join(runDir, "vocab.txt");
  const lowerCase = !o.cased;
  if (await exists(path)) {
    return { path, lowerCase, built: false, notice: `using the vocabulary built earlier for this run: ${path}` };
  }
  if (task !== "sample") {
    throw new Error(
      `task "${task}" needs the vocabulary of the checkpoint you will fine-tune: pass --model DIR ` +
        `(a checkpoint folder with vocab.txt) or --vocab FILE (or build one with \`deno task bert build-vocab\` ` +
        `and save it as ${path})`,
    );
  }
  const vocabSize = o.vocabSize ?? DEFAULT_SAMPLE_VOCAB_SIZE;
  const train = await readTrain();
  const texts = train.examples.flatMap((e) => (e.textB !== undefined ? [e.textA, e.textB] : [e.textA]));
  const { buildVocab } = await import("../text/vocab_builder.ts");
  const tokens = buildVocab(texts, { vocabSize, lowerCase });
  await writeFileAtomic(path, tokens.join("\n") + "\n");
  return {
    path,
    lowerCase,
    built: true,
    notice: `no --vocab/--model given: built a ${tokens.length}-token WordPiece vocabulary from ${train.source} ` +
      `(${texts.length} texts) and saved it as ${path}`,
  };
}

/**
 * Reads the task's train and dev data, converts them with the chosen vocabulary and writes
 * `<outputsDir>/<run>/features/{train,dev}.safetensors` (atomically). Returns the features and a summary.
 */
export async function prepareFeatures(options: PrepareOptions = {}): Promise<PrepareResult> {
  const t0 = performance.now();
  const taskName = options.task ?? "sample";
  const spec = getTask(taskName);
  const run = options.run ?? taskName;
  checkRunName(run);
  const maxSeqLength = options.maxSeqLength ?? DEFAULT_MAX_SEQ_LENGTH;
  const minLength = spec.pair ? 3 : 2;
  if (!Number.isInteger(maxSeqLength) || maxSeqLength < minLength) {
    throw new Error(`--max-seq-length must be an integer >= ${minLength}, got ${maxSeqLength}`);
  }
  if (!options.model && maxSeqLength > NEW_CONFIG_MAX_POSITIONS) {
    throw new Error(
      `--max-seq-length ${maxSeqLength} exceeds ${NEW_CONFIG_MAX_POSITIONS}, the max_position_embeddings of the ` +
        `models \`train\` builds (--config tiny/mini/base) and of Google's BERT checkpoints. Use --max-seq-length ` +
        `${NEW_CONFIG_MAX_POSITIONS} or less (longer texts are cut), or --model DIR of a checkpoint with more ` +
        `positions.`,
    );
  }
  if (options.limit !== undefined && (!Number.isInteger(options.limit) || options.limit < 1)) {
    throw new Error(`--limit must be a positive integer, got ${options.limit}`);
  }
  const quiet = options.quiet ?? false;
  const log = quiet ? () => {} : options.log ?? ((line: string) => console.log(line));
  const outputsDir = options.outputsDir ?? "outputs";
  const runDir = join(outputsDir, run);
  const featuresDir = join(runDir, "features");

  let files: { train: string; dev: string };
  if (options.train && options.dev) files = { train: options.train, dev: options.dev };
  else {
    const found = await resolveTaskData(spec, options.dataDir);
    files = { train: options.train ?? found.train, dev: options.dev ?? found.dev };
    if (found.subset) log(`note: the full ${taskName} files are absent; using the subset in ${found.dir}`);
  }
  for (const f of [files.train, files.dev]) {
    if (!(await exists(f))) throw new Error(`data file ${f} does not exist`);
  }

  const readOpts = { skipBadRows: options.skipBadRows, limit: options.limit };
  const vocab = await chooseVocab(
    options,
    taskName,
    runDir,
    () => spec.read(files.train, { ...readOpts, limit: undefined }),
  );
  if (vocab.notice) log(vocab.notice);
  await probeWritable(runDir, `run ${run}`); // an unwritable or full output folder fails now, not after the work
  if (vocab.maxPositionEmbeddings !== undefined && maxSeqLength > vocab.maxPositionEmbeddings) {
    throw new Error(
      `--max-seq-length ${maxSeqLength} exceeds the checkpoint's max_position_embeddings ` +
        `${vocab.maxPositionEmbeddings} (${options.model}/config.json): use --max-seq-length ` +
        `${vocab.maxPositionEmbeddings} or less (longer texts are cut)`,
    );
  }
  const tokenizer = new FullTokenizer(await Vocab.load(vocab.path), { lowerCase: vocab.lowerCase });

  const splits: Partial<Record<"train" | "dev", PreparedSplit>> = {};
  const summary: string[] = [];
  const say = (...lines: string[]) => {
    summary.push(...lines);
    for (const line of lines) log(line);
  };
  say(
    `task ${taskName}, run ${run}: max_seq_length ${maxSeqLength}, vocab ${vocab.path} (${tokenizer.vocab.size} ` +
      `tokens, lower_case=${vocab.lowerCase})`,
  );
  // Everything is read and converted first, then both splits are swapped in as one folder: a failing split
  // (bad row, unknown label, empty file) leaves the features of an earlier run untouched, never a mixed pair.
  const pending: { split: "train" | "dev"; features: FeatureSet; lines: string[] }[] = [];
  for (const split of ["train", "dev"] as const) {
    const ts = performance.now();
    const dataset = await spec.read(files[split], readOpts);
    const total = dataset.examples.length;
    const unlabelled = dataset.examples.filter((e) => e.label === undefined).length;
    const allowed = split === "dev" && options.allowUnlabelledDev === true;
    if ((total === 0 || unlabelled > 0) && !allowed) {
      const what = total === 0
        ? `has no examples${
          dataset.skipped.length ? ` (all ${dataset.skipped.length} rows were bad)` : " (only a header, or empty)"
        }`
        : `has ${unlabelled} unlabelled example(s) of ${total} (a test file?)`;
      throw new Error(
        `${dataset.source}: the ${split} split ${what}; no features were written. ` +
          (split === "train"
            ? "Training needs labelled examples: check the file (--train FILE)."
            : "Check the file (--dev FILE), or pass --allow-unlabelled-dev when an empty or unlabelled dev/test " +
              "split is intended (train then runs without validation)."),
      );
    }
    const progress = quiet ? undefined : createProgress({ total, label: split });
    const features = await convertExamples(dataset, tokenizer, {
      maxSeqLength,
      task: taskName,
      vocabPath: vocab.path,
      onProgress: (done) => {
        if (done < total) progress?.update({ done });
        options.onProgress?.(split, done, total);
      },
    });
    await progress?.done({ done: total });
    const path = join(featuresDir, `${split}.safetensors`);
    splits[split] = { split, path, features, source: dataset.source, skipped: dataset.skipped };
    const secs = (performance.now() - ts) / 1000;
    const lines = [`${split}: ${path} (${secs.toFixed(1)} s)`, ...summarizeFeatures(features).map((l) => `  ${l}`)];
    if (total === 0 || unlabelled > 0) {
      lines.push(`  note: ${total === 0 ? "empty" : "unlabelled"} (--allow-unlabelled-dev): train will not validate`);
    }
    if (dataset.skipped.length) {
      const first = dataset.skipped.slice(0, 3).map((s) => `line ${s.line}: ${s.problem}`).join("; ");
      lines.push(
        `  skipped ${dataset.skipped.length} bad rows (${first}${dataset.skipped.length > 3 ? "; ..." : ""})`,
      );
    }
    pending.push({ split, features, lines });
  }
  await writeDirAtomic(featuresDir, async (tmp) => {
    for (const p of pending) await saveFeatures(join(tmp, `${p.split}.safetensors`), p.features);
  });
  for (const p of pending) say(...p.lines);
  const seconds = (performance.now() - t0) / 1000;
  say(`done in ${seconds < 60 ? `${seconds.toFixed(1)} s` : formatDuration(seconds)}`);
  return {
    task: taskName,
    run,
    runDir,
    featuresDir,
    vocabPath: vocab.path,
    vocabBuilt: vocab.built,
    lowerCase: vocab.lowerCase,
    maxSeqLength,
    tokenizer,
    splits: splits as { train: PreparedSplit; dev: PreparedSplit },
    summary,
    seconds,
  };
}
