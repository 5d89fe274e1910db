/**
 * PyTorch `pytorch_model.bin` state dicts without Python and without executing the pickle:
 *
 * - zip format (PyTorch ≥ 1.6): `<archive>/data.pkl` (the pickle) and `<archive>/data/<key>` (one member per
 *   storage);
 * - legacy format (PyTorch < 1.6, or `_use_new_zipfile_serialization=False`): the magic-number, protocol and
 *   sys-info pickles, the state-dict pickle, the storage-keys pickle, then each storage as an int64 element count
 *   and its raw bytes;
 * - sharded checkpoints named by `pytorch_model.bin.index.json`.
 *
 * The pickle is read by {@linkcode unpickle} with a whitelist of the globals a state dict needs
 * ({@linkcode PYTORCH_GLOBALS}); anything else is refused. Tensors keep their names; views (storage offset, strides)
 * are honoured; float64, int16 and int8 storages are widened to float32 / int32. Storages are read one at a time from
 * disk, so loading never holds the file and a copy of it.
 * @module
 */
import type { DType, TensorData, TensorEntry } from "./safetensors.ts";
import { RandomAccessFile, withFile } from "./file.ts";
import { type GlobalHandler, PickleGlobal, PickleTruncatedError, unpickle } from "./pickle.ts";
import { writeZip, ZipReader } from "./zip.ts";

/** A storage type of PyTorch, as its pickle names it (`torch.FloatStorage`). */
interface StorageKind {
  /** PyTorch's dtype name, e.g. `float32`. */
  torch: string;
  /** Bytes per element on disk. */
  size: number;
  /** The dtype of the tensors read from it. */
  dtype: DType;
  /** A typed array over the storage's bytes. */
  view: (b: ArrayBuffer, offset: number, length: number) => ArrayLike<number | bigint>;
}

const STORAGE_KINDS: Record<string, StorageKind> = {
  FloatStorage: { torch: "float32", size: 4, dtype: "F32", view: (b, o, n) => new Float32Array(b, o, n) },
  HalfStorage: { torch: "float16", size: 2, dtype: "F16", view: (b, o, n) => new Uint16Array(b, o, n) },
  BFloat16Storage: { torch: "bfloat16", size: 2, dtype: "BF16", view: (b, o, n) => new Uint16Array(b, o, n) },
  DoubleStorage: { torch: "float64", size: 8, dtype: "F32", view: (b, o, n) => new Float64Array(b, o, n) },
  LongStorage: { torch: "int64", size: 8, dtype: "I64", view: (b, o, n) => new BigInt64Array(b, o, n) },
  IntStorage: { torch: "int32", size: 4, dtype: "I32", view: (b, o, n) => new Int32Array(b, o, n) },
  ShortStorage: { torch: "int16", size: 2, dtype: "I32", view: (b, o, n) => new Int16Array(b, o, n) },
  CharStorage: { torch: "int8", size: 1, dtype: "I32", view: (b, o, n) => new Int8Array(b, o, n) },
  ByteStorage: { torch: "uint8", size: 1, dtype: "U8", view: (b, o, n) => new Uint8Array(b, o, n) },
  BoolStorage: { torch: "bool", size: 1, dtype: "BOOL", view: (b, o, n) => new Uint8Array(b, o, n) },
};

const OUTPUT_ARRAYS: Record<DType, (n: number) => TensorData> = {
  F32: (n) => new Float32Array(n),
  F16: (n) => new Uint16Array(n),
  BF16: (n) => new Uint16Array(n),
  I32: (n) => new Int32Array(n),
  I64: (n) => new BigInt64Array(n),
  U8: (n) => new Uint8Array(n),
  BOOL: (n) => new Uint8Array(n),
};

/** A storage named by the pickle's persistent ids. */
interface StorageRef {
  key: string;
  kind: StorageKind;
  /** Elements, as the pickle says. */
  numel: number;
  /** Legacy format: a view into another storage (`view_metadata`): its key and element offset. */
  root?: { key: string; offset: number };
}

/** A tensor as `_rebuild_tensor_v2` describes it, before its storage is read. */
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

function intList(value: unknown, what: string): number[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0)) {
    throw new Error(`${what} must be a tuple of non-negative integers, got ${JSON.stringify(value)}`);
  }
  return value as number[];
}

function rebuildTensor(args: unknown[]): TensorRef {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof Object) || !("kind" in (storage as object))) {
    throw new Error("the first argument is not a storage");
  }
  if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) {
    throw new Error(`bad storage offset ${JSON.stringify(offset)}`);
  }
  const shape = intList(size, "size");
  const strides = intList(stride, "stride");
  if (shape.length !== strides.length) throw new Error(`size ${shape} and stride ${strides} differ in length`);
  return new TensorRef(storage as StorageRef, offset, shape, strides);
}

const keep = (object: unknown) => object;

/**
 * The globals a PyTorch state dict's pickle may name, and what they build. Nothing else is accepted:
 * `collections.OrderedDict`, `torch._utils._rebuild_tensor(_v2)`, `torch._utils._rebuild_parameter(_with_state)`,
 * the `torch.*Storage` types and the `torch.<dtype>` objects.
 */
export const PYTORCH_GLOBALS: Readonly<Record<string, GlobalHandler>> = {
  "collections.OrderedDict": {
    call: (args) => new Map(Array.isArray(args[0]) ? (args[0] as [unknown, unknown][]) : []),
    build: keep, // the state dict's `_metadata` (module versions): not needed
  },
  "torch._utils._rebuild_tensor": { call: rebuildTensor },
  "torch._utils._rebuild_tensor_v2": { call: rebuildTensor, build: keep },
  "torch._utils._rebuild_parameter": { call: (args) => args[0], build: keep },
  "torch._utils._rebuild_parameter_with_state": { call: (args) => args[0], build: keep },
  ...Object.fromEntries(Object.keys(STORAGE_KINDS).map((name) => [`torch.${name}`, {}])),
  ...Object.fromEntries(
    ["float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"].map((d) => [
      `torch.${d}`,
      {},
    ]),
  ),
};

/** One tensor of a `.bin` as {@linkcode listPytorchBin} reports it, without reading its data. */
export interface PytorchTensorInfo {
  name: string;
  /** PyTorch's dtype name: `float32`, `float16`, `bfloat16`, `int64`, ... */
  dtype: string;
  shape: number[];
}

interface ParsedPickle {
  tensors: Map<string, TensorRef>;
  storages: Map<string, StorageRef>;
}

/** Runs the restricted unpickler over a state-dict pickle, collecting storages from its persistent ids. */
function parseStateDict(
  bytes: Uint8Array,
  source: string,
  legacy: boolean,
  offset = 0,
): ParsedPickle & { end: number } {
  const storages = new Map<string, StorageRef>();
  const persistentLoad = (pid: unknown): StorageRef => {
    if (!Array.isArray(pid) || pid[0] !== "storage") {
      throw new Error(
        `${source}: persistent id ${JSON.stringify(Array.isArray(pid) ? pid[0] : pid)} is not a storage ` +
          `(the file pickles more than tensors, e.g. a whole model object)`,
      );
    }
    const [, type, key, , numel, view] = pid as unknown[];
    if (!(type instanceof PickleGlobal) || !Object.hasOwn(STORAGE_KINDS, type.name)) {
      throw new Error(`${source}: storage of unknown type ${type instanceof PickleGlobal ? type.qualifiedName : type}`);
    }
    if (typeof key !== "string" || typeof numel !== "number" || !Number.isSafeInteger(numel) || numel < 0) {
      throw new Error(`${source}: malformed storage id ${JSON.stringify([key, numel])}`);
    }
    const kind = STORAGE_KINDS[type.name];
    let root = storages.get(key);
    if (!root) {
      root = { key, kind, numel };
      storages.set(key, root);
    }
    if (legacy && Array.isArray(view)) {
      const [viewKey, viewOffset, viewSize] = view as unknown[];
      if (typeof viewKey !== "string" || typeof viewOffset !== "number" || typeof viewSize !== "number") {
        throw new Error(`${source}: malformed storage view ${JSON.stringify(view)}`);
      }
      return { key: viewKey, kind, numel: viewSize, root: { key, offset: viewOffset } };
    }
    return root;
  };
  const { value, end } = unpickle(bytes, { source, globals: PYTORCH_GLOBALS, persistentLoad, offset });
  let dict = value;
  if (dict instanceof Map && !(dict.size && [...dict.values()].some((v) => v instanceof TensorRef))) {
    const outer = dict as Map<unknown, unknown>;
    for (const k of ["state_dict", "model", "module"]) if (outer.get(k) instanceof Map) dict = outer.get(k);
  }
  if (!(dict instanceof Map)) throw new Error(`${source}: the pickle holds no state dict (a dict of tensors)`);
  const tensors = new Map<string, TensorRef>();
  for (const [name, v] of dict as Map<unknown, unknown>) {
    if (v instanceof TensorRef && typeof name === "string") tensors.set(name, v);
  }
  if (tensors.size === 0) throw new Error(`${source}: the state dict holds no tensors`);
  return { tensors, storages, end };
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Builds a tensor from its storage's bytes (a view when contiguous and of the same element type, else a copy). */
function materialize(name: string, ref: TensorRef, storage: Uint8Array, storageNumel: number, source: string) {
  const { kind } = ref.storage;
  const n = numel(ref.shape);
  let last = ref.offset;
  for (let i = 0; i < ref.shape.length; i++) if (ref.shape[i] > 0) last += (ref.shape[i] - 1) * ref.stride[i];
  if (n > 0 && last >= storageNumel) {
    throw new Error(
      `${source}: tensor "${name}" (shape [${ref.shape}], stride [${ref.stride}], offset ${ref.offset}) reaches ` +
        `element ${last} of a storage of ${storageNumel} elements: the file is inconsistent`,
    );
  }
  const src = kind.view(storage.buffer as ArrayBuffer, storage.byteOffset, storageNumel);
  let contiguous = true;
  for (let i = ref.shape.length - 1, expect = 1; i >= 0; i--) {
    if (ref.shape[i] !== 1 && ref.stride[i] !== expect) contiguous = false;
    expect *= ref.shape[i];
  }
  const out = OUTPUT_ARRAYS[kind.dtype](n);
  if (contiguous && out.constructor === src.constructor) {
    return { dtype: kind.dtype, shape: ref.shape, data: (src as TensorData).subarray(ref.offset, ref.offset + n) };
  }
  const target = out as unknown as { [i: number]: number | bigint; set(a: ArrayLike<number | bigint>): void };
  if (contiguous) {
    for (let i = 0; i < n; i++) target[i] = src[ref.offset + i];
  } else {
    const rank = ref.shape.length;
    const index = new Array(rank).fill(0);
    let at = ref.offset;
    for (let i = 0; i < n; i++) {
      target[i] = src[at];
      for (let d = rank - 1; d >= 0; d--) {
        if (++index[d] < ref.shape[d]) {
          at += ref.stride[d];
          break;
        }
        at -= (ref.shape[d] - 1) * ref.stride[d];
        index[d] = 0;
      }
    }
  }
  return { dtype: kind.dtype, shape: ref.shape, data: out };
}

/** Collects tensors storage by storage: `readStorage(key)` returns the bytes of one (whole, root) storage. */
function collect(
  parsed: ParsedPickle,
  source: string,
  readStorage: (ref: StorageRef) => Uint8Array,
): Record<string, TensorEntry> {
  const byRoot = new Map<string, [string, TensorRef][]>();
  for (const [name, ref] of parsed.tensors) {
    const rootKey = ref.storage.root?.key ?? ref.storage.key;
    if (!byRoot.has(rootKey)) byRoot.set(rootKey, []);
    byRoot.get(rootKey)!.push([name, ref]);
  }
  const out: Record<string, TensorEntry> = {};
  for (const [rootKey, refs] of byRoot) {
    const root = parsed.storages.get(rootKey)!;
    const bytes = readStorage(root);
    for (const [name, ref] of refs) {
      let data = bytes;
      let count = root.numel;
      if (ref.storage.root) {
        const start = ref.storage.root.offset * root.kind.size;
        count = ref.storage.numel;
        if (ref.storage.root.offset + count > root.numel) {
          throw new Error(`${source}: tensor "${name}": its storage view runs past storage "${rootKey}"`);
        }
        data = bytes.subarray(start, start + count * root.kind.size);
        if (data.byteOffset % root.kind.size) data = data.slice();
      }
      out[name] = materialize(name, ref, data, count, source);
    }
  }
  return out;
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

/** What kind of `.bin` a file is, from its first bytes. */
async function detect(path: string): Promise<"zip" | "legacy"> {
  const head = await withFile(path, (f) => f.read(0, Math.min(f.size, 4), "the file header"));
  if (ZipReader.isZip(head)) return "zip";
  if (head[0] === 0x80) return "legacy";
  throw new Error(
    `${path}: not a PyTorch checkpoint: neither a zip archive (PyTorch ≥ 1.6) nor a pickle (legacy format)`,
  );
}

/** The pickle member and the storage folder of a PyTorch zip archive. */
function zipLayout(zip: ZipReader): { pickle: string; prefix: string } {
  const pickle = [...zip.entries.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (!pickle) throw new Error(`${zip.file.path}: a zip archive without <archive>/data.pkl: not a PyTorch checkpoint`);
  const prefix = pickle.slice(0, -"data.pkl".length);
  const order = zip.entries.get(`${prefix}byteorder`);
  if (order && order.size !== 6) throw new Error(`${zip.file.path}: big-endian checkpoints are not supported`);
  return { pickle, prefix };
}

/** Reads the legacy format's leading pickles (growing the prefix read until they parse). */
function legacyPickles(file: RandomAccessFile): ParsedPickle & { keys: string[]; dataStart: number } {
  const source = file.path;
  for (let length = Math.min(file.size, 1 << 20);; length = Math.min(file.size, length * 4)) {
    const bytes = file.read(0, length, "the pickles");
    try {
      const globals = {};
      let r = unpickle(bytes, { source, globals });
      if (r.value !== LEGACY_MAGIC) throw new Error(`${source}: not a PyTorch checkpoint (wrong magic number)`);
      r = unpickle(bytes, { source, globals, offset: r.end });
      if (r.value !== 1001) throw new Error(`${source}: unknown legacy protocol version ${r.value}`);
      r = unpickle(bytes, { source, globals, offset: r.end });
      const info = r.value;
      if (info instanceof Map && info.get("little_endian") === false) {
        throw new Error(`${source}: big-endian checkpoints are not supported`);
      }
      const parsed = parseStateDict(bytes, source, true, r.end);
      const keysPickle = unpickle(bytes, { source, globals, offset: parsed.end });
      const keys = keysPickle.value;
      if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string")) {
        throw new Error(`${source}: the storage-keys pickle is not a list of strings`);
      }
      return { ...parsed, keys, dataStart: keysPickle.end };
    } catch (err) {
      if (!(err instanceof PickleTruncatedError) || length >= file.size) {
        if (err instanceof PickleTruncatedError) {
          throw new Error(`${err.message} (the file ends inside its pickles: truncated)`);
        }
        throw err;
      }
    }
  }
}

/** Lists the tensors of one `.bin` file (names, PyTorch dtypes, shapes) reading only its pickle. */
export async function listPytorchBin(path: string): Promise<PytorchTensorInfo[]> {
  let parsed: ParsedPickle;
  if ((await detect(path)) === "zip") {
    const zip = await ZipReader.open(path);
    try {
      const { pickle } = zipLayout(zip);
      parsed = parseStateDict(await zip.read(pickle), `${path}: ${pickle}`, false);
    } finally {
      zip.close();
    }
  } else {
    parsed = await withFile(path, legacyPickles);
  }
  return [...parsed.tensors].map(([name, ref]) => ({ name, dtype: ref.storage.kind.torch, shape: ref.shape }));
}

/** What {@linkcode readPytorchBin} returns. */
export interface PytorchBin {
  /** Tensors by their state-dict names. */
  tensors: Record<string, TensorEntry>;
  /** Which serialization the file uses. */
  format: "zip" | "legacy";
}

/**
 * Reads one `pytorch_model.bin` (zip or legacy format). Errors name the file and what is wrong; a pickle naming a
 * global outside {@linkcode PYTORCH_GLOBALS} is refused before anything is read past it.
 */
export async function readPytorchBin(path: string): Promise<PytorchBin> {
  const format = await detect(path);
  if (format === "zip") {
    const zip = await ZipReader.open(path);
    try {
      const { pickle, prefix } = zipLayout(zip);
      const parsed = parseStateDict(await zip.read(pickle), `${path}: ${pickle}`, false);
      const members = new Map<string, Uint8Array>();
      for (const storage of parsed.storages.values()) {
        const name = `${prefix}data/${storage.key}`;
        const entry = zip.entries.get(name);
        if (!entry) throw new Error(`${path}: storage "${storage.key}" (member ${name}) is missing from the archive`);
        if (entry.size < storage.numel * storage.kind.size) {
          throw new Error(
            `${path}: member ${name} has ${entry.size} bytes but its storage needs ` +
              `${storage.numel} × ${storage.kind.size}: the file is inconsistent`,
          );
        }
        members.set(storage.key, await zip.read(name));
      }
      // Storages were read above (zip reads are async); hand them out one root at a time and drop each after use.
      const tensors = collect(parsed, path, (ref) => {
        const bytes = members.get(ref.key)!;
        members.delete(ref.key);
        return bytes;
      });
      return { tensors, format };
    } finally {
      zip.close();
    }
  }
  return await withFile(path, (file) => {
    const parsed = legacyPickles(file);
    // Storages follow in the order of the keys list: an int64 element count, then the bytes.
    const located = new Map<string, number>();
    let at = parsed.dataStart;
    for (const key of parsed.keys) {
      const storage = parsed.storages.get(key);
      if (!storage) throw new Error(`${path}: the storage keys list names "${key}", which no tensor uses`);
      const count = new DataView(file.read(at, 8, `the size of storage "${key}"`).buffer).getBigInt64(0, true);
      if (count !== BigInt(storage.numel)) {
        throw new Error(
          `${path}: storage "${key}" has ${count} elements on disk but the pickle says ${storage.numel}: ` +
            `the file is inconsistent`,
        );
      }
      located.set(key, at + 8);
      at += 8 + storage.numel * storage.kind.size;
    }
    if (at > file.size) {
      throw new Error(`${path}: the storages need ${at} bytes but the file has ${file.size}: the file is truncated`);
    }
    const tensors = collect(parsed, path, (ref) => {
      const start = located.get(ref.key);
      if (start === undefined) throw new Error(`${path}: storage "${ref.key}" is not in the storage keys list`);
      return file.read(start, ref.numel * ref.kind.size, `storage "${ref.key}"`);
    });
    return { tensors, format: "legacy" as const };
  });
}

// ---- writer (tests and benchmarks) ----

const STORAGE_OF: Partial<Record<DType, string>> = {
  F32: "FloatStorage",
  F16: "HalfStorage",
  BF16: "BFloat16Storage",
  I64: "LongStorage",
  I32: "IntStorage",
  U8: "ByteStorage",
  BOOL: "BoolStorage",
};

/** Emits the pickle opcodes `torch.save` (protocol 2) writes for a flat state dict of contiguous tensors. */
function statePickle(names: string[], tensors: Record<string, TensorEntry>): Uint8Array {
  const out: number[] = [];
  const encoder = new TextEncoder();
  const str = (s: string) => {
    const b = encoder.encode(s);
    out.push(0x58, b.length & 0xff, (b.length >>> 8) & 0xff, (b.length >>> 16) & 0xff, b.length >>> 24, ...b);
  };
  const int = (n: number) => {
    if (n < 2 ** 31) out.push(0x4a, n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
    else {
      const bytes: number[] = [];
      let v = BigInt(n);
      while (v > 0n || bytes.length === 0 || bytes[bytes.length - 1] & 0x80) {
        bytes.push(Number(v & 0xffn));
        v >>= 8n;
      }
      out.push(0x8a, bytes.length, ...bytes);
    }
  };
  const global = (module: string, name: string) => out.push(0x63, ...encoder.encode(`${module}\n${name}\n`));
  const tuple = (items: number[]) => {
    out.push(0x28);
    items.forEach(int);
    out.push(0x74);
  };
  out.push(0x80, 2, 0x7d, 0x28); // PROTO 2, EMPTY_DICT, MARK
  names.forEach((name, key) => {
    const t = tensors[name];
    const storage = STORAGE_OF[t.dtype];
    if (!storage) throw new Error(`writePytorchBin: tensor "${name}" has dtype ${t.dtype}, which it cannot write`);
    const stride = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    str(name);
    global("torch._utils", "_rebuild_tensor_v2");
    out.push(0x28, 0x28); // MARK (args), MARK (persistent id)
    str("storage");
    global("torch", storage);
    str(String(key));
    str("cpu");
    int(t.data.length);
    out.push(0x74, 0x51); // TUPLE, BINPERSID
    int(0);
    tuple(t.shape);
    tuple(stride);
    out.push(0x89); // requires_grad False
    global("collections", "OrderedDict");
    out.push(0x29, 0x52, 0x74, 0x52); // EMPTY_TUPLE REDUCE (hooks), TUPLE, REDUCE
  });
  out.push(0x75, 0x2e); // SETITEMS, STOP
  return new Uint8Array(out);
}

/**
 * Writes a flat state dict as PyTorch's zip format (`archive/data.pkl`, `archive/data/<key>` aligned to 64 bytes,
 * `archive/version`), the way `torch.save` does, streaming the tensor bytes. Used by tests and benchmarks.
 */
export async function writePytorchBin(path: string, tensors: Record<string, TensorEntry>): Promise<void> {
  const names = Object.keys(tensors);
  const members: { name: string; data: Uint8Array }[] = [
    { name: "archive/data.pkl", data: statePickle(names, tensors) },
  ];
  names.forEach((name, key) => {
    const d = tensors[name].data;
    members.push({ name: `archive/data/${key}`, data: new Uint8Array(d.buffer, d.byteOffset, d.byteLength) });
  });
  members.push({ name: "archive/version", data: new TextEncoder().encode("3\n") });
  await writeZip(path, members, { align: 64 });
}
