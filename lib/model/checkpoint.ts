/**
 * Hugging Face checkpoint folders: load them into a {@linkcode BertModel} and save a model back in the same
 * layout, so that Python `transformers` loads the result unchanged.
 *
 * A folder holds `config.json` (or Google's `bert_config.json`), `vocab.txt`, weights and optionally
 * `tokenizer_config.json` (for `do_lower_case`). Weights are read by precedence from `model.safetensors` (or its
 * shards), `pytorch_model.bin` (zip or legacy, or its shards; the pickle is never executed) or a Google TensorFlow
 * checkpoint (`bert_model.ckpt.index` + `.data-*`, Google's variable names mapped): see lib/io/weights.ts. Weights are
 * matched by name, accepting keys with or without the `bert.` prefix and legacy `gamma`/`beta` LayerNorm names.
 * Missing and unused weights are reported the way `transformers` reports them.
 * @module
 */
import { readableOnCpu, tf } from "../backends/backend.ts";
import { basename, dirname, exists, join, writeDirAtomic, writeFileAtomic } from "../io/fsutil.ts";
import { ARCHITECTURES, BertConfig, BertModel, configFromJson, configToJson, HeadKind } from "./model.ts";
import { serializeSafetensors, TensorEntry, toFloat32 } from "../io/safetensors.ts";
import { FullTokenizer } from "../text/tokenizer.ts";
import {
  findWeights,
  readJson,
  readWeightsSource,
  transpose2d,
  unsupportedFormatMessage,
  type WeightsFormat,
} from "../io/weights.ts";

/** What {@linkcode loadTensorsIntoModel} did with the checkpoint's tensors. */
export interface LoadReport {
  /** Model parameters the checkpoint does not have (HF names). They keep their random initialisation. */
  missing: string[];
  /** Checkpoint tensors the model has no use for (names as in the checkpoint). */
  unexpected: string[];
  /** Parameters left at their fresh random initialisation: the same list as `missing`. */
  newlyInitialised: string[];
  /** Checkpoint tensors skipped on purpose: buffers such as `position_ids` and weights tied to the embeddings. */
  ignored: string[];
}

/** Options of {@linkcode loadTensorsIntoModel}. */
export interface LoadTensorsOptions {
  /** Named in error messages (a file or folder). */
  source?: string;
}

/** Buffers that PyTorch saves but that are not parameters. */
const BUFFER = /(^|\.)(position_ids|token_type_ids)$/;

/** The model parameter a checkpoint key refers to, or undefined when it names nothing this code knows. */
function canonicalName(key: string): string {
  let name = key;
  if (/LayerNorm\.(gamma|beta)$/.test(name)) name = name.replace(/\.gamma$/, ".weight").replace(/\.beta$/, ".bias");
  if (/^(embeddings|encoder|pooler)\./.test(name)) name = `bert.${name}`;
  return name;
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/**
 * Copies checkpoint tensors (Hugging Face names and `[out, in]` dense weights) into `model`'s variables. Throws
 * naming the tensor, the expected and the actual shape on a mismatch; everything else goes into the report.
 */
export function loadTensorsIntoModel(
  model: BertModel,
  tensors: Record<string, TensorEntry>,
  options: LoadTensorsOptions = {},
): LoadReport {
  const source = options.source ?? "checkpoint";
  const report: LoadReport = { missing: [], unexpected: [], newlyInitialised: [], ignored: [] };
  const found = new Map<string, string>(); // parameter -> checkpoint key
  for (const key of Object.keys(tensors)) {
    const name = canonicalName(key);
    if (BUFFER.test(key)) {
      report.ignored.push(key);
    } else if (name === "cls.predictions.decoder.weight" && model.params.has("cls.predictions.bias")) {
      report.ignored.push(key); // tied to bert.embeddings.word_embeddings.weight
    } else if (name === "cls.predictions.decoder.bias" && model.params.has("cls.predictions.bias")) {
      // The same tensor as cls.predictions.bias in HF; used only when that key is absent.
      if ("cls.predictions.bias" in tensors) report.ignored.push(key);
      else found.set("cls.predictions.bias", key);
    } else if (model.params.has(name) && !found.has(name)) {
      found.set(name, key);
    } else {
      report.unexpected.push(key);
    }
  }
  const architecture = ARCHITECTURES[model.head];
  for (const [name, variable] of model.params) {
    const key = found.get(name);
    if (key === undefined) {
      report.missing.push(name);
      continue;
    }
    const entry = tensors[key];
    const transposed = model.transposed.has(name);
    const expected: number[] = transposed ? [variable.shape[1]!, variable.shape[0]] : variable.shape;
    if (entry.shape.length !== expected.length || entry.shape.some((d, i) => d !== expected[i])) {
      throw new Error(
        `${source}: tensor "${key}" has shape ${shapeText(entry.shape)}, but ${architecture} with this config ` +
          `expects ${
            shapeText(expected)
          } (hidden_size=${model.config.hiddenSize}, vocab_size=${model.config.vocabSize}` +
          `${model.head === "classification" ? `, num_labels=${model.numLabels}` : ""})`,
      );
    }
    if (!["F32", "F16", "BF16"].includes(entry.dtype)) {
      throw new Error(`${source}: tensor "${key}" has dtype ${entry.dtype}, expected a floating-point type (F32)`);
    }
    const values = entry.dtype === "F32" ? entry.data as Float32Array : toFloat32(entry);
    const data = transposed ? transpose2d(values, entry.shape[0], entry.shape[1]) : values;
    const t = tf.tensor(data, variable.shape, "float32");
    variable.assign(t);
    t.dispose();
  }
  report.newlyInitialised = [...report.missing];
  return report;
}

/**
 * The model's parameters as safetensors entries with the names and `[out, in]` layout Hugging Face uses for this
 * head (`BertModel` without the `bert.` prefix; the decoder tied to the word embeddings is not written).
 */
export function modelToTensors(model: BertModel): Record<string, TensorEntry> {
  const out: Record<string, TensorEntry> = {};
  for (const [name, variable] of model.params) {
    const values = variable.dataSync() as Float32Array;
    const key = model.head === "none" ? name.replace(/^bert\./, "") : name;
    if (model.transposed.has(name)) {
      const [rows, cols] = variable.shape;
      out[key] = { dtype: "F32", shape: [cols, rows], data: transpose2d(values, rows, cols) };
    } else {
      out[key] = { dtype: "F32", shape: [...variable.shape], data: Float32Array.from(values) };
    }
  }
  return out;
}

/** Formats names like Python prints a list of strings: `['a', 'b']`. */
function pyList(names: string[]): string {
  return `[${names.map((n) => `'${n}'`).join(", ")}]`;
}

/** The two warnings `transformers` prints after loading (empty when everything matched). */
export function reportMessages(report: LoadReport, dir: string, head: HeadKind): string[] {
  const arch = ARCHITECTURES[head];
  const messages: string[] = [];
  if (report.unexpected.length) {
    messages.push(
      `Some weights of the model checkpoint at ${dir} were not used when initializing ${arch}: ` +
        `${pyList(report.unexpected)}\n- This IS expected if you are initializing ${arch} from the checkpoint of a ` +
        `model trained on another task or with another architecture (e.g. a BertForPreTraining checkpoint).`,
    );
  }
  if (report.missing.length) {
    messages.push(
      `Some weights of ${arch} were not initialized from the model checkpoint at ${dir} and are newly ` +
        `initialized: ${pyList(report.missing)}\nYou should probably TRAIN this model on a down-stream task to be ` +
        `able to use it for predictions and inference.`,
    );
  }
  return messages;
}

/**
 * Whether the checkpoint's tokenizer lower-cases: `do_lower_case` of `tokenizer_config.json` when present, else
 * false for folder names (or `_name_or_path`) that say `cased` but not `uncased`, else true.
 */
export async function inferLowerCase(dir: string, config?: BertConfig): Promise<boolean> {
  const path = join(dir, "tokenizer_config.json");
  if (await exists(path)) {
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(await Deno.readTextFile(path));
    } catch (err) {
      throw new Error(`${path}: not valid JSON: ${(err as Error).message}`);
    }
    if (typeof json.do_lower_case === "boolean") return json.do_lower_case;
  }
  const names = [basename(dir), String(config?.raw?._name_or_path ?? "")].map((n) => n.toLowerCase());
  return !names.some((n) => /(^|[^n])cased/.test(n) && !n.includes("uncased"));
}

/** Which weights {@linkcode loadCheckpoint} read. */
export interface WeightsRead {
  /** The file named: `model.safetensors`, a shard index, `pytorch_model.bin` or the TensorFlow `.index`. */
  path: string;
  format: WeightsFormat;
  /** E.g. `PyTorch pickle (.bin), legacy format`. */
  description: string;
  /** Other weights in the folder, not read because a format of higher precedence was present. */
  notRead: string[];
  /** TensorFlow variables left out on purpose (optimizer slots, `global_step`). */
  skipped: string[];
}

/**
 * Reads the weights of `dir` by precedence (safetensors, then PyTorch `.bin`, then a TensorFlow checkpoint; see
 * lib/io/weights.ts), as Hugging Face names and layout.
 */
export async function readCheckpointWeights(
  dir: string,
): Promise<{ tensors: Record<string, TensorEntry>; weights: WeightsRead }> {
  const found = await findWeights(dir);
  if (!found.chosen) {
    if (found.unreadable.length) throw new Error(unsupportedFormatMessage(join(dir, found.unreadable[0])));
    throw new Error(
      `${dir}: no weights found: a checkpoint folder needs config.json (or bert_config.json), vocab.txt and ` +
        `model.safetensors, pytorch_model.bin or a TensorFlow checkpoint (bert_model.ckpt.index + .data-*)`,
    );
  }
  const read = await readWeightsSource(found.chosen);
  const notRead = [...found.present.slice(1).map((s) => s.path), ...found.unreadable.map((f) => join(dir, f))];
  return {
    tensors: read.tensors,
    weights: {
      path: found.chosen.path,
      format: found.chosen.format,
      description: read.description,
      notRead,
      skipped: read.skipped,
    },
  };
}

/** Options of {@linkcode loadCheckpoint}. */
export interface LoadCheckpointOptions {
  /** Which head to build. */
  head: HeadKind;
  /** Classification head: number of labels (default: `labels.length`, else the checkpoint's `id2label`, else 2). */
  numLabels?: number;
  /** Label names; stored in the config (`id2label`) and written on save. */
  labels?: string[];
  /** Do not print the missing/unused weights warnings. */
  quiet?: boolean;
  /** Seed for parameters the checkpoint does not have (default 0). */
  seed?: number;
  /**
   * Say which weights were read (one line on stderr, naming any other weights present) when they are not
   * safetensors. Default true, also when `quiet`; false silences it. `weights` of the result always says.
   */
  announceWeights?: boolean;
}

/** What {@linkcode loadCheckpoint} returns. */
export interface LoadedCheckpoint {
  /** The model with the checkpoint's weights. */
  model: BertModel;
  /** A tokenizer for the checkpoint's `vocab.txt`, with its casing. */
  tokenizer: FullTokenizer;
  /** The model's config (with `id2label` from `labels` when given). */
  config: BertConfig;
  /** Missing / unused / ignored weights. */
  report: LoadReport;
  /** Path of the checkpoint's `vocab.txt`. */
  vocabPath: string;
  /** Which weights file was read, in which format. */
  weights: WeightsRead;
}

/**
 * Loads a Hugging Face checkpoint folder. Prints the `transformers`-style warnings about missing and unused
 * weights unless `quiet`.
 *
 * @example
 * ```ts
 * const { model, tokenizer, report } = await loadCheckpoint("outputs/ckpt", { head: "classification", labels: ["neg", "pos"] });
 * ```
 */
export async function loadCheckpoint(dir: string, options: LoadCheckpointOptions): Promise<LoadedCheckpoint> {
  if (!(await exists(dir))) throw new Error(`${dir}: checkpoint folder not found`);
  const hfConfig = join(dir, "config.json");
  const googleConfig = join(dir, "bert_config.json");
  const configPath = (await exists(hfConfig)) ? hfConfig : (await exists(googleConfig)) ? googleConfig : undefined;
  if (!configPath) throw new Error(`${dir}: no config.json (or Google's bert_config.json)`);
  const config = configFromJson(await readJson(configPath), configPath);

  if (options.labels && options.numLabels !== undefined && options.labels.length !== options.numLabels) {
    throw new Error(`${options.labels.length} labels given but numLabels is ${options.numLabels}`);
  }
  if (options.labels) config.id2label = Object.fromEntries(options.labels.map((l, i) => [String(i), l]));
  const numLabels = options.labels?.length ?? options.numLabels;

  const vocabPath = join(dir, "vocab.txt");
  if (!(await exists(vocabPath))) throw new Error(`${dir}: no vocab.txt (the WordPiece vocabulary)`);
  const tokenizer = await FullTokenizer.fromVocabFile(vocabPath, { lowerCase: await inferLowerCase(dir, config) });
  if (tokenizer.vocab.size > config.vocabSize) {
    throw new Error(
      `${vocabPath} has ${tokenizer.vocab.size} tokens but ${configPath} says vocab_size ${config.vocabSize}: ` +
        `ids above ${config.vocabSize - 1} would have no embedding`,
    );
  }

  const { tensors, weights } = await readCheckpointWeights(dir);
  const source = weights.path;
  if (options.announceWeights !== false && weights.format !== "safetensors") {
    console.warn(
      `reading weights from ${weights.path} (${weights.description})` +
        (weights.notRead.length ? `; also present, not read: ${weights.notRead.join(", ")}` : ""),
    );
  }
  const model = new BertModel(config, { head: options.head, numLabels, seed: options.seed });
  let report: LoadReport;
  try {
    report = loadTensorsIntoModel(model, tensors, { source });
  } catch (err) {
    model.dispose();
    throw err;
  }
  if (!options.quiet) { for (const message of reportMessages(report, dir, options.head)) console.warn(message); }
  return { model, tokenizer, config, report, vocabPath, weights };
}

/** Options of {@linkcode saveCheckpoint}. */
export interface SaveCheckpointOptions {
  /** The model to save. */
  model: BertModel;
  /** The vocabulary to copy in as `vocab.txt`. */
  vocabPath: string;
  /** Label names for `id2label` / `label2id` (classification: one per label). */
  labels?: string[];
  /** `do_lower_case` for `tokenizer_config.json` (default: inferred from the vocabulary's folder). */
  lowerCase?: boolean;
  /** More files to put in the folder (e.g. `trainer_state.json`), by file name. */
  extraFiles?: Record<string, Uint8Array | string>;
}

/**
 * Writes a Hugging Face checkpoint folder atomically (a crash leaves the old folder or nothing, never half a
 * folder): `config.json`, `vocab.txt`, `tokenizer_config.json`, `model.safetensors` (HF names, `[out, in]`,
 * metadata `{"format": "pt"}`) and `extraFiles`.
 */
export async function saveCheckpoint(dir: string, options: SaveCheckpointOptions): Promise<void> {
  const { model, labels } = options;
  if (labels && model.head === "classification" && labels.length !== model.numLabels) {
    throw new Error(`saveCheckpoint: ${labels.length} labels given but the classifier has ${model.numLabels} outputs`);
  }
  const lowerCase = options.lowerCase ?? await inferLowerCase(dirname(options.vocabPath));
  const config = configToJson(model.config, {
    head: model.head,
    labels: model.head === "classification" ? labels : undefined,
    numLabels: model.head === "classification" ? model.numLabels : undefined,
  });
  await readableOnCpu([...model.params.values()]);
  const weights = serializeSafetensors(modelToTensors(model), { format: "pt" });
  await writeDirAtomic(dir, async (tmp) => {
    const text = (value: unknown) => JSON.stringify(value, null, 2) + "\n";
    await writeFileAtomic(join(tmp, "config.json"), text(config));
    await Deno.copyFile(options.vocabPath, join(tmp, "vocab.txt"));
    await writeFileAtomic(
      join(tmp, "tokenizer_config.json"),
      text({
        do_lower_case: lowerCase,
        model_max_length: model.config.maxPositionEmbeddings,
        tokenizer_class: "BertTokenizer",
      }),
    );
    await writeFileAtomic(join(tmp, "model.safetensors"), weights);
    for (const [name, data] of Object.entries(options.extraFiles ?? {})) {
      if (name.includes("/") || name.startsWith(".")) throw new Error(`saveCheckpoint: bad extra file name "${name}"`);
      await writeFileAtomic(join(tmp, name), data);
    }
  });
}

/** Options of {@linkcode convertCheckpoint}. */
export interface ConvertOptions {
  /** Replace `to` when it exists (default: refuse). */
  overwrite?: boolean;
}

/** What {@linkcode convertCheckpoint} did. */
export interface ConvertResult {
  /** The weights read. */
  weights: WeightsRead;
  /** Tensors written. */
  tensors: number;
  /** Where `config.json` came from (`config.json` copied, or made from `bert_config.json`). */
  configFrom: string;
  /** The architecture written into a config made from `bert_config.json`. */
  architecture?: string;
}

/** The head a set of Hugging Face-named tensors belongs to (for a config made from `bert_config.json`). */
function headOfTensors(tensors: Record<string, TensorEntry>): { head: HeadKind; numLabels?: number } {
  if (tensors["classifier.weight"]) return { head: "classification", numLabels: tensors["classifier.weight"].shape[0] };
  if (tensors["qa_outputs.weight"]) return { head: "question-answering" };
  if (tensors["cls.seq_relationship.weight"]) return { head: "pretraining" };
  return { head: "none" };
}

/**
 * Converts a checkpoint folder in any readable format (safetensors, PyTorch `.bin`, Google TensorFlow checkpoint)
 * into a Hugging Face folder at `to`: `config.json` (copied, or made from `bert_config.json` with the
 * architecture the weights imply), `vocab.txt`, `tokenizer_config.json` (copied, or written with the inferred
 * casing) and `model.safetensors` holding every tensor read, under Hugging Face names, in its stored dtype.
 * Written atomically.
 */
export async function convertCheckpoint(
  from: string,
  to: string,
  options: ConvertOptions = {},
): Promise<ConvertResult> {
  if (!(await exists(from))) throw new Error(`${from}: checkpoint folder not found`);
  const clean = (p: string) => p.replace(/\/+$/, "");
  if (clean(from) === clean(to)) throw new Error(`convert: --from and --to are the same folder (${from})`);
  if (!options.overwrite && (await exists(to))) {
    throw new Error(`${to} already exists: choose another folder or pass --overwrite`);
  }
  const vocab = join(from, "vocab.txt");
  if (!(await exists(vocab))) throw new Error(`${from}: no vocab.txt (the WordPiece vocabulary)`);
  const { tensors, weights } = await readCheckpointWeights(from);
  const hfConfig = join(from, "config.json");
  const googleConfig = join(from, "bert_config.json");
  let config: Record<string, unknown>;
  let configFrom: string;
  let architecture: string | undefined;
  let parsed: BertConfig;
  if (await exists(hfConfig)) {
    config = await readJson(hfConfig);
    parsed = configFromJson(config, hfConfig);
    configFrom = hfConfig;
  } else if (await exists(googleConfig)) {
    parsed = configFromJson(await readJson(googleConfig), googleConfig);
    const { head, numLabels } = headOfTensors(tensors);
    config = configToJson(parsed, { head, numLabels });
    architecture = ARCHITECTURES[head];
    configFrom = googleConfig;
  } else {
    throw new Error(`${from}: no config.json (or Google's bert_config.json)`);
  }
  const tokenizerConfig = join(from, "tokenizer_config.json");
  const bytes = serializeSafetensors(tensors, { format: "pt" });
  await writeDirAtomic(to, async (tmp) => {
    await writeFileAtomic(join(tmp, "config.json"), JSON.stringify(config, null, 2) + "\n");
    await Deno.copyFile(vocab, join(tmp, "vocab.txt"));
    if (await exists(tokenizerConfig)) {
      await Deno.copyFile(tokenizerConfig, join(tmp, "tokenizer_config.json"));
    } else {
      const tc = {
        do_lower_case: await inferLowerCase(from, parsed),
        model_max_length: parsed.maxPositionEmbeddings,
        tokenizer_class: "BertTokenizer",
      };
      await writeFileAtomic(join(tmp, "tokenizer_config.json"), JSON.stringify(tc, null, 2) + "\n");
    }
    await writeFileAtomic(join(tmp, "model.safetensors"), bytes);
  });
  return { weights, tensors: Object.keys(tensors).length, configFrom, architecture };
}
