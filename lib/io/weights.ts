/**
 * Where a checkpoint folder keeps its weights and how to read them, whatever the format:
 *
 * | precedence | format | files |
 * | --- | --- | --- |
 * | 1 | safetensors | `model.safetensors`, or `model.safetensors.index.json` + shards |
 * | 2 | PyTorch | `pytorch_model.bin` (zip or legacy), or `pytorch_model.bin.index.json` + shards |
 * | 3 | TensorFlow | `<prefix>.index` + `<prefix>.data-*` (the prefix named by a `checkpoint` file, else `bert_model.ckpt`, `model.ckpt`, or the only `.index`) |
 *
 * `tf_model.h5` and `flax_model.msgpack` are not read (see {@linkcode unsupportedFormatMessage}). Reading returns
 * Hugging Face names and the `[out, in]` layout for every format.
 * @module
 */
import { exists, join } from "./fsutil.ts";
import { DTYPE_SIZES, readSafetensors, type TensorEntry } from "./safetensors.ts";
import { RandomAccessFile } from "./file.ts";
import { listPytorchBin, readPytorchBin } from "./pytorch_bin.ts";
import { googleToHf, readTfCheckpoint, readTfIndex, tfPrefix } from "./tf_checkpoint.ts";

/** The weight formats this project reads. */
export type WeightsFormat = "safetensors" | "pytorch" | "tensorflow";

/** A set of weight files of one format. */
export interface WeightsSource {
  format: WeightsFormat;
  /** The file to name: the weights file, the shard index (`*.index.json`) or the TensorFlow `.index`. */
  path: string;
  /** Every file that holds tensors (the shards; for TensorFlow the `.index`). */
  files: string[];
}

/** One tensor as {@linkcode listTensors} reports it. */
export interface TensorInfo {
  name: string;
  /** The format's own dtype name: `F32` (safetensors), `float32` (PyTorch, TensorFlow). */
  dtype: string;
  shape: number[];
}

/** Human name of a format, for messages. */
export const FORMAT_NAMES: Readonly<Record<WeightsFormat, string>> = {
  safetensors: "safetensors",
  pytorch: "PyTorch pickle (.bin)",
  tensorflow: "TensorFlow checkpoint",
};

const READABLE = "model.safetensors, pytorch_model.bin (zip or legacy, sharded or not) or a TensorFlow checkpoint " +
  "(<prefix>.index + <prefix>.data-*)";

/** The error for a weights file in a format this project does not read (`tf_model.h5`, `flax_model.msgpack`). */
export function unsupportedFormatMessage(path: string): string {
  const what = /\.h5$/.test(path)
    ? "a Keras HDF5 file (tf_model.h5): this project has no HDF5 reader"
    : /\.msgpack$/.test(path)
    ? "a Flax msgpack file"
    : "not a weights format this project knows";
  return `${path}: ${what}. Readable formats: ${READABLE}. Most hub repositories that have ${
    path.split("/").pop()
  } also have pytorch_model.bin or model.safetensors; otherwise convert in Python: ` +
    `transformers.BertModel.from_pretrained(DIR, from_tf=True).save_pretrained(DIR)`;
}

/** A JSON object file; errors name the file (not found, or not valid JSON). */
export async function readJson(path: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new Error(`${path}: file not found`);
    throw new Error(`${path}: not valid JSON: ${(err as Error).message}`);
  }
}

/** The shard files named by a `*.index.json` (`weight_map` values), in first-use order. */
export async function shardFiles(indexPath: string): Promise<string[]> {
  const weightMap = (await readJson(indexPath)).weight_map as Record<string, string> | undefined;
  if (!weightMap || typeof weightMap !== "object") throw new Error(`${indexPath}: no "weight_map" object`);
  const dir = indexPath.slice(0, indexPath.lastIndexOf("/") + 1) || "./";
  return [...new Set(Object.values(weightMap))].map((f) => `${dir}${f}`);
}

/** The TensorFlow checkpoint prefix in `dir`, if any (see the module notes for the order). */
async function tfIndexIn(dir: string): Promise<string | undefined> {
  const state = join(dir, "checkpoint");
  if (await exists(state)) {
    const m = (await Deno.readTextFile(state)).match(/^model_checkpoint_path:\s*"([^"]+)"/m);
    if (m) {
      const path = m[1].startsWith("/") ? m[1] : join(dir, m[1]);
      if (await exists(`${path}.index`)) return `${path}.index`;
    }
  }
  for (const name of ["bert_model.ckpt.index", "model.ckpt.index"]) {
    if (await exists(join(dir, name))) return join(dir, name);
  }
  const indexes: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.isFile && /\.index$/.test(e.name)) indexes.push(e.name);
  if (indexes.length === 1) return join(dir, indexes[0]);
  if (indexes.length > 1) {
    throw new Error(
      `${dir} has several TensorFlow checkpoints (${indexes.sort().join(", ")}) and no "checkpoint" file saying ` +
        `which is current: keep one, or pass the .index file`,
    );
  }
  return undefined;
}

/** What {@linkcode findWeights} found in a folder. */
export interface FoundWeights {
  /** The source to read (the first by precedence), if any. */
  chosen?: WeightsSource;
  /** Every readable source present, by precedence. */
  present: WeightsSource[];
  /** Weight files present that this project cannot read (`tf_model.h5`, `flax_model.msgpack`). */
  unreadable: string[];
}

/** Looks for weights in `dir`: safetensors, then PyTorch `.bin`, then a TensorFlow checkpoint. */
export async function findWeights(dir: string): Promise<FoundWeights> {
  const present: WeightsSource[] = [];
  const single = async (format: WeightsFormat, file: string, index: string) => {
    if (await exists(join(dir, file))) present.push({ format, path: join(dir, file), files: [join(dir, file)] });
    else if (await exists(join(dir, index))) {
      present.push({ format, path: join(dir, index), files: await shardFiles(join(dir, index)) });
    }
  };
  await single("safetensors", "model.safetensors", "model.safetensors.index.json");
  await single("pytorch", "pytorch_model.bin", "pytorch_model.bin.index.json");
  const tf = await tfIndexIn(dir);
  if (tf) present.push({ format: "tensorflow", path: tf, files: [tf] });
  const unreadable: string[] = [];
  for (const f of ["tf_model.h5", "flax_model.msgpack"]) if (await exists(join(dir, f))) unreadable.push(f);
  return { chosen: present[0], present, unreadable };
}

/** The weights source for a path: a folder (by precedence) or one file of any supported format. */
export async function weightsSourceForPath(path: string): Promise<WeightsSource> {
  let stat: Deno.FileInfo | undefined;
  try {
    stat = await Deno.stat(path);
  } catch {
    stat = undefined;
  }
  if (stat?.isDirectory) {
    const found = await findWeights(path);
    if (found.chosen) return found.chosen;
    if (found.unreadable.length) throw new Error(unsupportedFormatMessage(join(path, found.unreadable[0])));
    throw new Error(`${path}: no weights found (looked for ${READABLE})`);
  }
  if (!stat && (await exists(`${path}.index`))) return { format: "tensorflow", path: `${path}.index`, files: [] };
  if (!stat) throw new Error(`${path}: no such file or folder`);
  if (/\.(h5|hdf5|msgpack)$/.test(path)) throw new Error(unsupportedFormatMessage(path));
  if (/\.index$/.test(path) || /\.data-\d{5}-of-\d{5}$/.test(path)) {
    const index = `${tfPrefix(path)}.index`;
    return { format: "tensorflow", path: index, files: [index] };
  }
  if (/\.index\.json$/.test(path)) {
    const files = await shardFiles(path);
    return { format: /safetensors/.test(path) ? "safetensors" : "pytorch", path, files };
  }
  const file = await RandomAccessFile.open(path);
  let head: Uint8Array;
  try {
    head = file.read(0, Math.min(file.size, 9), "the file header");
  } finally {
    file.close();
  }
  if (head[0] === 0x80 || (head[0] === 0x50 && head[1] === 0x4b)) return { format: "pytorch", path, files: [path] };
  if (head.length >= 9 && head[8] === 0x7b) return { format: "safetensors", path, files: [path] };
  throw new Error(`${path}: not a weights file this project recognises. Readable formats: ${READABLE}`);
}

/** A safetensors file's tensor list from its header alone. */
async function listSafetensors(path: string): Promise<TensorInfo[]> {
  const file = await RandomAccessFile.open(path);
  try {
    const n = Number(new DataView(file.read(0, 8, "the header length").buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(file.read(8, n, "the JSON header")));
    return Object.entries(header as Record<string, { dtype: string; shape: number[] }>)
      .filter(([k]) => k !== "__metadata__")
      .map(([name, v]) => ({ name, dtype: v.dtype, shape: v.shape }));
  } catch (err) {
    if (err instanceof SyntaxError) throw new Error(`${path}: the safetensors header is not valid JSON`);
    throw err;
  } finally {
    file.close();
  }
}

/**
 * The tensors of a folder or weights file (names as stored, the format's dtype names), reading only headers,
 * pickles or the TensorFlow index (a `.index` whose data file is absent works).
 */
export async function listTensors(path: string): Promise<{ source: WeightsSource; tensors: TensorInfo[] }> {
  const source = await weightsSourceForPath(path);
  const tensors: TensorInfo[] = [];
  if (source.format === "tensorflow") {
    for (const e of (await readTfIndex(source.path)).entries) {
      tensors.push({ name: e.name, dtype: e.dtype, shape: e.shape });
    }
  } else {
    for (const f of source.files) {
      tensors.push(...(source.format === "safetensors" ? await listSafetensors(f) : await listPytorchBin(f)));
    }
  }
  return { source, tensors };
}

/** What {@linkcode readWeightsSource} returns. */
export interface ReadWeights {
  /** Hugging Face names, `[out, in]` dense weights. */
  tensors: Record<string, TensorEntry>;
  /** TensorFlow: variables left out (optimizer slots, `global_step`). */
  skipped: string[];
  /** E.g. `PyTorch pickle (.bin), legacy format`. */
  description: string;
}

/** Reads every tensor of `source` with Hugging Face names and layout. */
export async function readWeightsSource(source: WeightsSource): Promise<ReadWeights> {
  const tensors: Record<string, TensorEntry> = {};
  if (source.format === "tensorflow") {
    const { tensors: raw, index } = await readTfCheckpoint(source.path);
    const skipped = index.entries.map((e) => e.name).filter((n) => !(n in raw));
    const mapped = googleToHf(raw, { consume: true });
    return {
      tensors: mapped.tensors,
      skipped,
      description: `${FORMAT_NAMES.tensorflow}, ${index.numShards} data shard(s)`,
    };
  }
  const kinds = new Set<string>();
  for (const f of source.files) {
    if (source.format === "safetensors") {
      Object.assign(tensors, (await readSafetensors(f)).tensors);
    } else {
      const bin = await readPytorchBin(f);
      kinds.add(bin.format);
      Object.assign(tensors, bin.tensors);
    }
  }
  const shards = source.files.length > 1 ? `, ${source.files.length} shards` : "";
  const detail = kinds.size ? `, ${[...kinds].join("+")} format` : "";
  return { tensors, skipped: [], description: `${FORMAT_NAMES[source.format]}${detail}${shards}` };
}

/** Bytes per element of a dtype name of any format (for sizes in `inspect`); undefined when unknown. */
export function dtypeBytes(dtype: string): number | undefined {
  const names: Record<string, number> = {
    float32: 4,
    float16: 2,
    bfloat16: 2,
    float64: 8,
    int64: 8,
    int32: 4,
    int16: 2,
    int8: 1,
    uint8: 1,
    bool: 1,
  };
  return names[dtype] ?? (DTYPE_SIZES as Record<string, number>)[dtype];
}

/**
 * Transposes a row-major `[rows, cols]` matrix: Hugging Face's `[out, in]` dense weights to and from the model's
 * `[in, out]` kernels (checkpoints, optimizer moments).
 */
export function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < rows; i++) {
    const row = i * cols;
    for (let j = 0; j < cols; j++) out[j * rows + i] = src[row + j];
  }
  return out;
}
