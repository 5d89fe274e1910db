/**
 * TensorFlow checkpoints (TensorBundle) without TensorFlow: `<prefix>.index` and
 * `<prefix>.data-0000K-of-0000N`, as Google's BERT releases (`bert_model.ckpt`) and `run_classifier.py` write them.
 *
 * The index is a LevelDB-format table (blocks of prefix-compressed key/value entries with restart points, a block
 * trailer of compression type + masked CRC-32C, an index block and a 48-byte footer ending in the magic
 * 0xdb4775248b80fb57). Its empty key holds a `BundleHeaderProto` (shard count, endianness); every other key is a
 * variable name whose value is a `BundleEntryProto` (dtype, shape, shard, offset, size, masked CRC-32C of the bytes).
 * Block CRCs and each tensor's CRC are verified; compressed blocks, partitioned variables, big-endian bundles and
 * non-numeric dtypes are refused with errors that name the file and the variable.
 *
 * {@linkcode googleToHf} maps Google's variable names (`modeling.py`, `run_classifier.py`, `run_squad.py`) to
 * Hugging Face's and their `[in, out]` kernels to `[out, in]`; optimizer slots and `global_step` are skipped.
 * @module
 */
import type { DType, TensorData, TensorEntry } from "./safetensors.ts";
import { crc32c, maskCrc } from "./crc.ts";
import { RandomAccessFile } from "./file.ts";

/** TensorFlow's `DataType` enum: name, bytes per element, and the dtype this project reads it as. */
const TF_DTYPES: Record<number, { name: string; size?: number; dtype?: DType }> = {
  1: { name: "float32", size: 4, dtype: "F32" },
  2: { name: "float64", size: 8, dtype: "F32" },
  3: { name: "int32", size: 4, dtype: "I32" },
  4: { name: "uint8", size: 1, dtype: "U8" },
  5: { name: "int16", size: 2, dtype: "I32" },
  6: { name: "int8", size: 1, dtype: "I32" },
  7: { name: "string" },
  8: { name: "complex64" },
  9: { name: "int64", size: 8, dtype: "I64" },
  10: { name: "bool", size: 1, dtype: "BOOL" },
  11: { name: "qint8" },
  12: { name: "quint8" },
  13: { name: "qint32" },
  14: { name: "bfloat16", size: 2, dtype: "BF16" },
  15: { name: "qint16" },
  16: { name: "quint16" },
  17: { name: "uint16" },
  18: { name: "complex128" },
  19: { name: "float16", size: 2, dtype: "F16" },
  20: { name: "resource" },
  21: { name: "variant" },
  22: { name: "uint32" },
  23: { name: "uint64" },
};

/** One variable of a TensorBundle index. */
export interface TfTensorInfo {
  /** Variable name, e.g. `bert/encoder/layer_0/attention/self/query/kernel`. */
  name: string;
  /** TensorFlow's dtype name (`float32`, `int64`, ...). */
  dtype: string;
  /** The `DataType` enum value. */
  dtypeCode: number;
  shape: number[];
  /** Which `.data-K-of-N` file holds it. */
  shard: number;
  /** Byte offset in that file. */
  offset: number;
  /** Bytes. */
  size: number;
  /** Masked CRC-32C of the bytes as stored. */
  crc32c: number;
  /** Partitioned variable (has slices): not readable here. */
  sliced: boolean;
}

/** A parsed `.index` file. */
export interface TfIndex {
  /** The `.index` path. */
  path: string;
  /** The checkpoint prefix (the path without `.index`). */
  prefix: string;
  /** Number of `.data-*` shards. */
  numShards: number;
  /** Variables in key order. */
  entries: TfTensorInfo[];
}

// ---- protobuf / varints ----

class Reader {
  p = 0;
  constructor(readonly bytes: Uint8Array, readonly where: string) {}
  get done(): boolean {
    return this.p >= this.bytes.length;
  }
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.p >= this.bytes.length) throw new Error(`${this.where}: truncated varint`);
      const b = this.bytes[this.p++];
      result += (b & 0x7f) * scale;
      if (!(b & 0x80)) {
        if (result > Number.MAX_SAFE_INTEGER) throw new Error(`${this.where}: varint too large`);
        return result;
      }
      scale *= 128;
    }
    throw new Error(`${this.where}: malformed varint`);
  }
  take(n: number): Uint8Array {
    if (this.p + n > this.bytes.length) throw new Error(`${this.where}: truncated field`);
    this.p += n;
    return this.bytes.subarray(this.p - n, this.p);
  }
  fixed32(): number {
    const b = this.take(4);
    return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.take(8);
    else if (wire === 2) this.take(this.varint());
    else if (wire === 5) this.take(4);
    else throw new Error(`${this.where}: unsupported protobuf wire type ${wire}`);
  }
  /** Iterates `(field, wire)` pairs; the callback must consume the value (or call skip). */
  fields(fn: (field: number, wire: number) => void): void {
    while (!this.done) {
      const tag = this.varint();
      fn(Math.floor(tag / 8), tag & 7);
    }
  }
}

function parseShape(bytes: Uint8Array, where: string): number[] {
  const shape: number[] = [];
  const r = new Reader(bytes, where);
  r.fields((field, wire) => {
    if (field === 2 && wire === 2) {
      const dim = new Reader(r.take(r.varint()), where);
      let size = 0;
      dim.fields((f, w) => {
        if (f === 1 && w === 0) size = dim.varint();
        else dim.skip(w);
      });
      shape.push(size);
    } else if (field === 3 && wire === 0 && r.varint()) {
      throw new Error(`${where}: unknown rank`);
    } else if (!(field === 3 && wire === 0)) r.skip(wire);
  });
  return shape;
}

function parseEntry(name: string, bytes: Uint8Array, where: string): TfTensorInfo {
  const info: TfTensorInfo = {
    name,
    dtype: "",
    dtypeCode: 0,
    shape: [],
    shard: 0,
    offset: 0,
    size: 0,
    crc32c: 0,
    sliced: false,
  };
  const r = new Reader(bytes, where);
  r.fields((field, wire) => {
    if (field === 1 && wire === 0) info.dtypeCode = r.varint();
    else if (field === 2 && wire === 2) info.shape = parseShape(r.take(r.varint()), where);
    else if (field === 3 && wire === 0) info.shard = r.varint();
    else if (field === 4 && wire === 0) info.offset = r.varint();
    else if (field === 5 && wire === 0) info.size = r.varint();
    else if (field === 6 && wire === 5) info.crc32c = r.fixed32();
    else if (field === 7 && wire === 2) {
      r.take(r.varint());
      info.sliced = true;
    } else r.skip(wire);
  });
  info.dtype = TF_DTYPES[info.dtypeCode]?.name ?? `unknown dtype ${info.dtypeCode}`;
  return info;
}

// ---- LevelDB table ----

const TABLE_MAGIC = [0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb];

function readBlock(bytes: Uint8Array, offset: number, size: number, path: string, what: string): Uint8Array {
  if (offset + size + 5 > bytes.length) {
    throw new Error(`${path}: ${what} at [${offset}, ${offset + size + 5}) runs past the end (${bytes.length} bytes)`);
  }
  const contents = bytes.subarray(offset, offset + size);
  const type = bytes[offset + size];
  const stored = new DataView(bytes.buffer, bytes.byteOffset + offset + size + 1, 4).getUint32(0, true);
  const actual = maskCrc(crc32c(bytes.subarray(offset, offset + size + 1)));
  if (stored !== actual) throw new Error(`${path}: ${what} fails its CRC-32C check: the index is corrupt`);
  if (type !== 0) {
    throw new Error(
      `${path}: ${what} is ${type === 1 ? "Snappy-" : `type-${type} `}compressed; TensorFlow writes checkpoint ` +
        `indexes uncompressed and this reader reads only those`,
    );
  }
  return contents;
}

function blockEntries(block: Uint8Array, path: string, what: string): [string, Uint8Array][] {
  if (block.length < 4) throw new Error(`${path}: ${what} is too short`);
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const restarts = view.getUint32(block.length - 4, true);
  const limit = block.length - 4 - 4 * restarts;
  if (limit < 0) throw new Error(`${path}: ${what} has a bad restart count ${restarts}`);
  const r = new Reader(block.subarray(0, limit), `${path}: ${what}`);
  const out: [string, Uint8Array][] = [];
  let key = new Uint8Array(0);
  const decoder = new TextDecoder();
  while (!r.done) {
    const shared = r.varint();
    const unshared = r.varint();
    const valueLength = r.varint();
    if (shared > key.length) throw new Error(`${path}: ${what}: entry shares ${shared} bytes of a shorter key`);
    const next = new Uint8Array(shared + unshared);
    next.set(key.subarray(0, shared));
    next.set(r.take(unshared), shared);
    key = next;
    out.push([decoder.decode(key), r.take(valueLength)]);
  }
  return out;
}

function blockHandle(bytes: Uint8Array, where: string): { offset: number; size: number } {
  const r = new Reader(bytes, where);
  return { offset: r.varint(), size: r.varint() };
}

/** The checkpoint prefix of an `.index` path, a `.data-*` path or a prefix. */
export function tfPrefix(path: string): string {
  return path.replace(/\.index$/, "").replace(/\.data-\d{5}-of-\d{5}$/, "");
}

/** The path of data shard `shard` of `numShards`. */
export function tfDataPath(prefix: string, shard: number, numShards: number): string {
  return `${prefix}.data-${String(shard).padStart(5, "0")}-of-${String(numShards).padStart(5, "0")}`;
}

/** Parses a TensorBundle `.index` (given as the `.index` path or the prefix) without touching the data files. */
export async function readTfIndex(path: string): Promise<TfIndex> {
  const prefix = tfPrefix(path);
  const indexPath = `${prefix}.index`;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(indexPath);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new Error(`${indexPath}: file not found`);
    throw err;
  }
  return parseTfIndex(bytes, indexPath);
}

/** Parses the bytes of a `.index` file; `indexPath` names it in errors. */
export function parseTfIndex(bytes: Uint8Array, indexPath: string): TfIndex {
  if (bytes.length < 48 || !TABLE_MAGIC.every((b, i) => bytes[bytes.length - 8 + i] === b)) {
    throw new Error(
      `${indexPath}: not a TensorFlow checkpoint index: no LevelDB table footer (the file is truncated or not an index)`,
    );
  }
  const footer = new Reader(bytes.subarray(bytes.length - 48, bytes.length - 8), `${indexPath}: footer`);
  footer.varint(); // metaindex handle (unused)
  footer.varint();
  const indexHandle = { offset: footer.varint(), size: footer.varint() };
  const indexBlock = readBlock(bytes, indexHandle.offset, indexHandle.size, indexPath, "the index block");
  let numShards = 1;
  const entries: TfTensorInfo[] = [];
  let headerSeen = false;
  for (const [lastKey, handleBytes] of blockEntries(indexBlock, indexPath, "the index block")) {
    const h = blockHandle(handleBytes, `${indexPath}: handle of block ending at "${lastKey}"`);
    const block = readBlock(bytes, h.offset, h.size, indexPath, `the data block at ${h.offset}`);
    for (const [key, value] of blockEntries(block, indexPath, `the data block at ${h.offset}`)) {
      if (key === "") {
        headerSeen = true;
        const r = new Reader(value, `${indexPath}: bundle header`);
        r.fields((field, wire) => {
          if (field === 1 && wire === 0) numShards = r.varint();
          else if (field === 2 && wire === 0) {
            if (r.varint() !== 0) throw new Error(`${indexPath}: big-endian checkpoints are not supported`);
          } else r.skip(wire);
        });
      } else {
        entries.push(parseEntry(key, value, `${indexPath}: variable "${key}"`));
      }
    }
  }
  if (!headerSeen) throw new Error(`${indexPath}: no bundle header (empty key): not a TensorBundle index`);
  return { path: indexPath, prefix: tfPrefix(indexPath), numShards, entries };
}

/** Options of {@linkcode readTfCheckpoint}. */
export interface ReadTfOptions {
  /** Which variables to read (default: all but optimizer slots and `global_step`, see {@linkcode isTrainingState}). */
  filter?: (name: string) => boolean;
}

/** Optimizer slots (`.../adam_m`, `.../adam_v`), `global_step` and loss-scale bookkeeping: not model weights. */
export function isTrainingState(name: string): boolean {
  return /(^|\/)(adam_m|adam_v|Adam|Adam_1|Momentum)$/.test(name) ||
    /^(global_step|good_steps|current_loss_scale|loss_scale)$/.test(name);
}

const ARRAYS: Record<number, (b: ArrayBuffer, n: number) => ArrayLike<number | bigint>> = {
  1: (b, n) => new Float32Array(b, 0, n),
  2: (b, n) => new Float64Array(b, 0, n),
  3: (b, n) => new Int32Array(b, 0, n),
  4: (b, n) => new Uint8Array(b, 0, n),
  5: (b, n) => new Int16Array(b, 0, n),
  6: (b, n) => new Int8Array(b, 0, n),
  9: (b, n) => new BigInt64Array(b, 0, n),
  10: (b, n) => new Uint8Array(b, 0, n),
  14: (b, n) => new Uint16Array(b, 0, n),
  19: (b, n) => new Uint16Array(b, 0, n),
};

/**
 * Reads a TensorFlow checkpoint's variables (names and layout as stored) from `<prefix>.index` and its data
 * shards, one tensor at a time, verifying each tensor's CRC-32C. Errors name the file and the variable.
 */
export async function readTfCheckpoint(
  path: string,
  options: ReadTfOptions = {},
): Promise<{ tensors: Record<string, TensorEntry>; index: TfIndex }> {
  const index = await readTfIndex(path);
  const filter = options.filter ?? ((name: string) => !isTrainingState(name));
  const wanted = index.entries.filter((e) => filter(e.name));
  const tensors: Record<string, TensorEntry> = {};
  const files = new Map<number, RandomAccessFile>();
  try {
    for (const e of wanted) {
      const where = `${index.path}: variable "${e.name}"`;
      const type = TF_DTYPES[e.dtypeCode];
      if (!type?.dtype) {
        throw new Error(
          `${where} has dtype ${e.dtype}, which this reader cannot load (float32/16/64, bfloat16, int8/16/32/64, ` +
            `uint8, bool)`,
        );
      }
      if (e.sliced) throw new Error(`${where} is a partitioned (sliced) variable, which this reader cannot load`);
      if (e.shard >= index.numShards) throw new Error(`${where} names shard ${e.shard} of ${index.numShards}`);
      const n = e.shape.reduce((a, b) => a * b, 1);
      if (e.size !== n * type.size!) {
        throw new Error(
          `${where}: shape [${e.shape}] × ${e.dtype} needs ${n * type.size!} bytes but the index says ${e.size}`,
        );
      }
      let file = files.get(e.shard);
      if (!file) {
        const dataPath = tfDataPath(index.prefix, e.shard, index.numShards);
        try {
          file = await RandomAccessFile.open(dataPath);
        } catch (err) {
          throw new Error(`${(err as Error).message} (data shard of ${index.path})`);
        }
        files.set(e.shard, file);
      }
      const bytes = file.read(e.offset, e.size, `variable "${e.name}"`);
      if (maskCrc(crc32c(bytes)) !== e.crc32c) {
        throw new Error(`${file.path}: variable "${e.name}" fails its CRC-32C check: the data file is corrupt`);
      }
      const raw = ARRAYS[e.dtypeCode](bytes.buffer as ArrayBuffer, n);
      let data: TensorData;
      if (e.dtypeCode === 2) data = Float32Array.from(raw as Float64Array);
      else if (e.dtypeCode === 5 || e.dtypeCode === 6) data = Int32Array.from(raw as Int16Array);
      else data = raw as TensorData;
      tensors[e.name] = { dtype: type.dtype, shape: e.shape, data };
    }
  } finally {
    for (const f of files.values()) f.close();
  }
  return { tensors, index };
}

// ---- Google <-> Hugging Face names ----

/** The Hugging Face name of a Google variable, and whether its `[in, out]` kernel must be transposed. */
export function googleNameToHf(name: string): { name: string; transpose: boolean } {
  const special: Record<string, string> = {
    output_weights: "classifier.weight",
    output_bias: "classifier.bias",
    "cls/squad/output_weights": "qa_outputs.weight",
    "cls/squad/output_bias": "qa_outputs.bias",
    "cls/predictions/output_bias": "cls.predictions.bias",
    "cls/seq_relationship/output_weights": "cls.seq_relationship.weight",
    "cls/seq_relationship/output_bias": "cls.seq_relationship.bias",
  };
  if (Object.hasOwn(special, name)) return { name: special[name], transpose: false };
  const parts = name.split("/").map((p) => p.replace(/^layer_(\d+)$/, "layer.$1"));
  const last = parts[parts.length - 1];
  let transpose = false;
  if (last === "kernel") {
    parts[parts.length - 1] = "weight";
    transpose = true;
  } else if (last === "gamma") parts[parts.length - 1] = "weight";
  else if (last === "beta") parts[parts.length - 1] = "bias";
  else if (/_embeddings$/.test(last)) parts.push("weight");
  return { name: parts.join("."), transpose };
}

/** The Google variable name of a Hugging Face parameter, and whether it must be transposed to `[in, out]`. */
export function hfNameToGoogle(name: string): { name: string; transpose: boolean } {
  const special: Record<string, string> = {
    "classifier.weight": "output_weights",
    "classifier.bias": "output_bias",
    "qa_outputs.weight": "cls/squad/output_weights",
    "qa_outputs.bias": "cls/squad/output_bias",
    "cls.predictions.bias": "cls/predictions/output_bias",
    "cls.seq_relationship.weight": "cls/seq_relationship/output_weights",
    "cls.seq_relationship.bias": "cls/seq_relationship/output_bias",
  };
  if (Object.hasOwn(special, name)) return { name: special[name], transpose: false };
  const parts = name.replace(/\.layer\.(\d+)\./, ".layer_$1.").split(".");
  const last = parts.pop()!;
  const owner = parts[parts.length - 1];
  if (/_embeddings$/.test(owner)) return { name: parts.join("/"), transpose: false };
  if (owner === "LayerNorm") {
    return { name: [...parts, last === "weight" ? "gamma" : "beta"].join("/"), transpose: false };
  }
  if (last === "weight") return { name: [...parts, "kernel"].join("/"), transpose: true };
  return { name: [...parts, last].join("/"), transpose: false };
}

/** Transposes a 2-D tensor entry (any element type). */
export function transposeEntry(entry: TensorEntry): TensorEntry {
  const [rows, cols] = entry.shape;
  const src = entry.data;
  const out = new (src.constructor as new (n: number) => TensorData)(src.length) as unknown as {
    [i: number]: number | bigint;
  };
  const s = src as unknown as { [i: number]: number | bigint };
  for (let i = 0; i < rows; i++) {
    const row = i * cols;
    for (let j = 0; j < cols; j++) out[j * rows + i] = s[row + j];
  }
  return { dtype: entry.dtype, shape: [cols, rows], data: out as unknown as TensorData };
}

/**
 * Google-named tensors (`[in, out]` kernels) as Hugging Face-named tensors (`[out, in]`). Optimizer slots and
 * `global_step` are left out and listed in `skipped`. With `consume`, each entry is removed from `tensors` once
 * mapped, so that a transposed kernel's original can be freed at once (a BERT-Base load then never holds both).
 */
export function googleToHf(tensors: Record<string, TensorEntry>, options: { consume?: boolean } = {}): {
  tensors: Record<string, TensorEntry>;
  skipped: string[];
} {
  const out: Record<string, TensorEntry> = {};
  const skipped: string[] = [];
  for (const [key, entry] of Object.entries(tensors)) {
    if (isTrainingState(key)) {
      skipped.push(key);
      continue;
    }
    const { name, transpose } = googleNameToHf(key);
    out[name] = transpose && entry.shape.length === 2 ? transposeEntry(entry) : entry;
    if (options.consume) delete tensors[key];
  }
  return { tensors: out, skipped };
}

// ---- writer (tests and benchmarks; the same layout TensorFlow writes) ----

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

function field(num: number, wire: number): number[] {
  return varint(num * 8 + wire);
}

function bytesField(num: number, bytes: number[] | Uint8Array): number[] {
  return [...field(num, 2), ...varint(bytes.length), ...bytes];
}

const DTYPE_CODES: Partial<Record<DType, number>> = { F32: 1, I32: 3, U8: 4, I64: 9, BOOL: 10, BF16: 14, F16: 19 };

function encodeEntry(e: { dtype: number; shape: number[]; offset: number; size: number; crc: number }): Uint8Array {
  const shape: number[] = [];
  for (const d of e.shape) shape.push(...bytesField(2, [...field(1, 0), ...varint(d)]));
  const crc = [e.crc & 0xff, (e.crc >>> 8) & 0xff, (e.crc >>> 16) & 0xff, e.crc >>> 24];
  return new Uint8Array([
    ...field(1, 0),
    ...varint(e.dtype),
    ...bytesField(2, shape),
    ...(e.offset ? [...field(4, 0), ...varint(e.offset)] : []),
    ...field(5, 0),
    ...varint(e.size),
    ...field(6, 5),
    ...crc,
  ]);
}

/** Builds one table block (prefix-compressed, a restart point every 16 entries) with its 5-byte trailer. */
function buildBlock(entries: [Uint8Array, Uint8Array][]): Uint8Array {
  const body: number[] = [];
  const restarts: number[] = [];
  let prev: Uint8Array = new Uint8Array(0);
  entries.forEach(([key, value], i) => {
    let shared = 0;
    if (i % 16 === 0) restarts.push(body.length);
    else while (shared < prev.length && shared < key.length && prev[shared] === key[shared]) shared++;
    body.push(...varint(shared), ...varint(key.length - shared), ...varint(value.length));
    body.push(...key.subarray(shared), ...value);
    prev = key;
  });
  if (!restarts.length) restarts.push(0);
  const out = new Uint8Array(body.length + 4 * restarts.length + 4 + 5);
  out.set(body);
  const v = new DataView(out.buffer);
  restarts.forEach((r, i) => v.setUint32(body.length + 4 * i, r, true));
  v.setUint32(body.length + 4 * restarts.length, restarts.length, true);
  const end = out.length - 5;
  out[end] = 0; // no compression
  v.setUint32(end + 1, maskCrc(crc32c(out.subarray(0, end + 1))), true);
  return out;
}

/**
 * Writes `tensors` (names and layout as given, e.g. from {@linkcode hfNameToGoogle}) as a single-shard TensorBundle:
 * `<prefix>.index` and `<prefix>.data-00000-of-00001`, streaming the data. Used by tests and benchmarks.
 */
export async function writeTfCheckpoint(prefix: string, tensors: Record<string, TensorEntry>): Promise<void> {
  const names = Object.keys(tensors).sort();
  const encoder = new TextEncoder();
  const data = await Deno.open(tfDataPath(prefix, 0, 1), { write: true, create: true, truncate: true });
  const records: [Uint8Array, Uint8Array][] = [[
    new Uint8Array(0),
    new Uint8Array([...field(1, 0), 1, ...field(2, 0), 0]),
  ]];
  let offset = 0;
  try {
    for (const name of names) {
      const t = tensors[name];
      const code = DTYPE_CODES[t.dtype];
      if (!code) throw new Error(`writeTfCheckpoint: tensor "${name}" has dtype ${t.dtype}, which it cannot write`);
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      let n = 0;
      while (n < bytes.length) n += await data.write(bytes.subarray(n));
      records.push([
        encoder.encode(name),
        encodeEntry({ dtype: code, shape: t.shape, offset, size: bytes.length, crc: maskCrc(crc32c(bytes)) }),
      ]);
      offset += bytes.length;
    }
  } finally {
    data.close();
  }
  // Data blocks of about 4 kB, then the index block (last key of each block -> its handle), then the footer.
  const parts: Uint8Array[] = [];
  const index: [Uint8Array, Uint8Array][] = [];
  let pos = 0;
  for (let i = 0; i < records.length;) {
    const chunk: [Uint8Array, Uint8Array][] = [];
    let size = 0;
    while (i < records.length && (size < 4096 || chunk.length === 0)) {
      size += records[i][0].length + records[i][1].length + 3;
      chunk.push(records[i++]);
    }
    const block = buildBlock(chunk);
    index.push([chunk[chunk.length - 1][0], new Uint8Array([...varint(pos), ...varint(block.length - 5)])]);
    parts.push(block);
    pos += block.length;
  }
  const meta = buildBlock([]);
  const metaHandle = [...varint(pos), ...varint(meta.length - 5)];
  parts.push(meta);
  pos += meta.length;
  const indexBlock = buildBlock(index);
  const indexHandle = [...varint(pos), ...varint(indexBlock.length - 5)];
  parts.push(indexBlock);
  const footer = new Uint8Array(48);
  footer.set([...metaHandle, ...indexHandle]);
  footer.set(TABLE_MAGIC, 40);
  parts.push(footer);
  const total = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  await Deno.writeFile(`${prefix}.index`, out);
}
