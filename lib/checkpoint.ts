/**
 * Hugging Face checkpoint folders: load them into a {@linkcode BertModel} and save a model back in the same
 * layout, so that Python `transformers` loads the result unchanged.
 *
 * A folder holds `config.json` (or Google's `bert_config.json`), `vocab.txt`, `model.safetensors` (or shards named
 * by `model.safetensors.index.json`) and optionally `tokenizer_config.json` (for `do_lower_case`). Weights are
 * matched by name, accepting keys with or without the `bert.` prefix and legacy `gamma`/`beta` LayerNorm names.
 * Missing and unused weights are reported the way `transformers` reports them.
 * @module
 */
import { readableOnCpu, tf } from "./backend.ts";
import { basename, dirname, exists, join, writeDirAtomic, writeFileAtomic } from "./fsutil.ts";
import { ARCHITECTURES, BertConfig, BertModel, configFromJson, configToJson, HeadKind } from "./model.ts";
import { readSafetensors, serializeSafetensors, TensorEntry, toFloat32 } from "./safetensors.ts";
import { FullTokenizer } from "./tokenizer.ts";

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

/** Transposes a row-major `[rows, cols]` matrix. */
function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < rows; i++) {
    const row = i * cols;
    for (let j = 0; j < cols; j++) out[j * rows + i] = src[row + j];
  }
  return out;
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

async function readJson(path: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new Error(`${path}: file not found`);
    throw new Error(`${path}: not valid JSON: ${(err as Error).message}`);
  }
}

/** Reads `model.safetensors` (or its shards) from `dir`, with a clear error for formats this project cannot read. */
async function readWeights(dir: string): Promise<{ tensors: Record<string, TensorEntry>; source: string }> {
  const single = join(dir, "model.safetensors");
  if (await exists(single)) return { tensors: (await readSafetensors(single)).tensors, source: single };
  const index = join(dir, "model.safetensors.index.json");
  if (await exists(index)) {
    const weightMap = (await readJson(index)).weight_map as Record<string, string> | undefined;
    if (!weightMap || typeof weightMap !== "object") throw new Error(`${index}: no "weight_map" object`);
    const tensors: Record<string, TensorEntry> = {};
    for (const shard of new Set(Object.values(weightMap))) {
      Object.assign(tensors, (await readSafetensors(join(dir, shard))).tensors);
    }
    return { tensors, source: index };
  }
  const others = ["pytorch_model.bin", "tf_model.h5", "bert_model.ckpt.index", "flax_model.msgpack"];
  const present: string[] = [];
  for (const f of others) if (await exists(join(dir, f))) present.push(f);
  const convert = `convert it to safetensors first, e.g. in Python: ` +
    `transformers.AutoModel.from_pretrained("${dir}").save_pretrained("${dir}", safe_serialization=True) ` +
    `(use BertForPreTraining / BertForSequenceClassification to keep the heads)`;
  if (present.length) {
    throw new Error(
      `${dir} has ${present.join(", ")} but no model.safetensors; this project reads only safetensors ` +
        `(no pickle): ${convert}`,
    );
  }
  throw new Error(
    `${dir}: no model.safetensors found (a Hugging Face checkpoint folder needs config.json, vocab.txt and model.safetensors)`,
  );
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

  const { tensors, source } = await readWeights(dir);
  const model = new BertModel(config, { head: options.head, numLabels, seed: options.seed });
  let report: LoadReport;
  try {
    report = loadTensorsIntoModel(model, tensors, { source });
  } catch (err) {
    model.dispose();
    throw err;
  }
  if (!options.quiet) { for (const message of reportMessages(report, dir, options.head)) console.warn(message); }
  return { model, tokenizer, config, report, vocabPath };
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
