/**
 * Reading and writing the safetensors format (https://github.com/huggingface/safetensors), used for features,
 * checkpoints and golden files.
 *
 * Layout: an 8-byte little-endian u64 `N`, then `N` bytes of UTF-8 JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {key: "string"}}`, then the byte buffer.
 * Offsets are relative to the start of the buffer, and the tensors must cover the buffer exactly (no gaps, no
 * overlaps). All numbers are little-endian; this module assumes a little-endian host (every platform Deno runs on).
 *
 * The reader validates everything and names the file and the tensor in each error. Tensor data are zero-copy views
 * into the file's bytes when they are aligned for their element type, and copies otherwise.
 * @module
 */
import { writeFileAtomic } from "./fsutil.ts";

/** Element types this project reads and writes. */
export type DType = "F32" | "F16" | "BF16" | "I32" | "I64" | "U8" | "BOOL";

/** Tensor storage: F16/BF16 as raw bits in a Uint16Array, BOOL/U8 as Uint8Array. */
export type TensorData = Float32Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array;

/** One named tensor. `data` is row-major with `product(shape)` elements. */
export interface TensorEntry {
  dtype: DType;
  shape: number[];
  data: TensorData;
}

/** A whole file: its tensors by name and its `__metadata__` (string to string). */
export interface SafetensorsFile {
  tensors: Record<string, TensorEntry>;
  metadata: Record<string, string>;
}

/** Bytes per element of each dtype. */
export const DTYPE_SIZES: Readonly<Record<DType, number>> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  I32: 4,
  I64: 8,
  U8: 1,
  BOOL: 1,
};

const ARRAY_TYPES: Record<DType, { name: string; make: (buf: ArrayBuffer, off: number, len: number) => TensorData }> = {
  F32: { name: "Float32Array", make: (b, o, n) => new Float32Array(b, o, n) },
  F16: { name: "Uint16Array", make: (b, o, n) => new Uint16Array(b, o, n) },
  BF16: { name: "Uint16Array", make: (b, o, n) => new Uint16Array(b, o, n) },
  I32: { name: "Int32Array", make: (b, o, n) => new Int32Array(b, o, n) },
  I64: { name: "BigInt64Array", make: (b, o, n) => new BigInt64Array(b, o, n) },
  U8: { name: "Uint8Array", make: (b, o, n) => new Uint8Array(b, o, n) },
  BOOL: { name: "Uint8Array", make: (b, o, n) => new Uint8Array(b, o, n) },
};

const METADATA_KEY = "__metadata__";
/** The reference implementation refuses headers above 100 MB; so do we (a corrupt length would otherwise OOM). */
const MAX_HEADER_BYTES = 100_000_000;

function isDType(s: unknown): s is DType {
  return typeof s === "string" && Object.hasOwn(DTYPE_SIZES, s);
}

/** Number of elements of a tensor of `shape` (1 for a scalar `[]`). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkShape(shape: unknown, where: string): number[] {
  if (!Array.isArray(shape)) {
    throw new Error(`${where}: shape must be an array of integers, got ${JSON.stringify(shape)}`);
  }
  for (const d of shape) {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
      throw new Error(
        `${where}: shape ${JSON.stringify(shape)} has an invalid dimension ${JSON.stringify(d)} ` +
          `(dimensions must be non-negative integers)`,
      );
    }
  }
  return shape as number[];
}

function arrayMatchesDType(dtype: DType, data: unknown): boolean {
  switch (dtype) {
    case "F32":
      return data instanceof Float32Array;
    case "F16":
    case "BF16":
      return data instanceof Uint16Array;
    case "I32":
      return data instanceof Int32Array;
    case "I64":
      return data instanceof BigInt64Array;
    case "U8":
    case "BOOL":
      return data instanceof Uint8Array && !(data instanceof Uint8ClampedArray);
  }
}

/**
 * Parses a safetensors file held in `bytes`. `source` (the file name) prefixes every error message.
 * Tensor data are views into `bytes` where aligned (so they share its memory), copies where not.
 */
export function parseSafetensors(bytes: Uint8Array, source = "<safetensors bytes>"): SafetensorsFile {
  if (bytes.length < 8) {
    throw new Error(`${source}: not a safetensors file: ${bytes.length} bytes, too short for the 8-byte header length`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(bytes.length - 8)) {
    throw new Error(
      `${source}: header length ${n64} is larger than the rest of the file (${bytes.length - 8} bytes); ` +
        `the file is truncated or not a safetensors file`,
    );
  }
  const headerLength = Number(n64);
  if (headerLength > MAX_HEADER_BYTES) {
    throw new Error(`${source}: header length ${headerLength} exceeds the 100 MB limit of the format`);
  }
  let headerText: string;
  try {
    headerText = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerLength));
  } catch {
    throw new Error(`${source}: the JSON header is not valid UTF-8`);
  }
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (err) {
    throw new Error(
      `${source}: the header is not valid JSON (${(err as Error).message}); ` +
        `starts with ${JSON.stringify(headerText.slice(0, 60))}`,
    );
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new Error(`${source}: the header must be a JSON object, got ${Array.isArray(header) ? "an array" : header}`);
  }

  const dataStart = 8 + headerLength;
  const bufferLength = bytes.length - dataStart;
  const metadata = parseMetadata((header as Record<string, unknown>)[METADATA_KEY], source);

  interface Span {
    name: string;
    dtype: DType;
    shape: number[];
    begin: number;
    end: number;
  }
  const spans: Span[] = [];
  for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
    if (name === METADATA_KEY) continue;
    const where = `${source}: tensor "${name}"`;
    if (typeof info !== "object" || info === null || Array.isArray(info)) {
      throw new Error(`${where}: header entry must be an object {dtype, shape, data_offsets}`);
    }
    const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>;
    if (!isDType(dtype)) {
      throw new Error(
        `${where}: unknown or unsupported dtype ${JSON.stringify(dtype)} ` +
          `(supported: ${Object.keys(DTYPE_SIZES).join(", ")})`,
      );
    }
    checkShape(shape, where);
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => typeof o === "number" && Number.isSafeInteger(o) && o >= 0)
    ) {
      throw new Error(
        `${where}: data_offsets must be two non-negative integers [begin, end], ` +
          `got ${JSON.stringify(offsets)}`,
      );
    }
    const [begin, end] = offsets as number[];
    if (begin > end) throw new Error(`${where}: data_offsets [${begin}, ${end}] has begin after end`);
    if (end > bufferLength) {
      throw new Error(
        `${where}: data_offsets [${begin}, ${end}] run past the end of the data buffer ` +
          `(${bufferLength} bytes); the file is truncated or the header is wrong`,
      );
    }
    const expected = numel(shape as number[]) * DTYPE_SIZES[dtype];
    if (end - begin !== expected) {
      throw new Error(
        `${where}: shape ${JSON.stringify(shape)} × ${dtype} (${DTYPE_SIZES[dtype]} bytes) needs ` +
          `${expected} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
      );
    }
    spans.push({ name, dtype, shape: shape as number[], begin, end });
  }

  // The buffer must be covered exactly: sorted by offsets, each tensor starts where the previous one ended.
  const sorted = [...spans].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let previous = "";
  for (const s of sorted) {
    if (s.begin < cursor) {
      throw new Error(
        `${source}: tensor "${s.name}" [${s.begin}, ${s.end}] overlaps tensor "${previous}" ` +
          `(which ends at ${cursor})`,
      );
    }
    if (s.begin > cursor) {
      throw new Error(
        `${source}: gap in the data buffer: bytes [${cursor}, ${s.begin}) before tensor "${s.name}" ` +
          `belong to no tensor`,
      );
    }
    cursor = s.end;
    previous = s.name;
  }
  if (cursor !== bufferLength) {
    throw new Error(
      `${source}: the data buffer has ${bufferLength} bytes but the tensors cover only ${cursor}; ` +
        `${bufferLength - cursor} trailing bytes belong to no tensor`,
    );
  }

  const tensors: Record<string, TensorEntry> = {};
  for (const s of spans) {
    const size = DTYPE_SIZES[s.dtype];
    const count = (s.end - s.begin) / size;
    const absolute = bytes.byteOffset + dataStart + s.begin;
    let data: TensorData;
    if (absolute % size === 0) {
      data = ARRAY_TYPES[s.dtype].make(bytes.buffer as ArrayBuffer, absolute, count);
    } else {
      // Misaligned for a typed-array view: copy into a fresh (aligned) buffer.
      const copy = bytes.slice(dataStart + s.begin, dataStart + s.end);
      data = ARRAY_TYPES[s.dtype].make(copy.buffer, 0, count);
    }
    tensors[s.name] = { dtype: s.dtype, shape: s.shape, data };
  }
  return { tensors, metadata };
}

function parseMetadata(value: unknown, source: string): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new Error(`${source}: "__metadata__" must be an object of string values, got ${JSON.stringify(value)}`);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v !== "string") {
      throw new Error(`${source}: "__metadata__" value of "${k}" must be a string, got ${JSON.stringify(v)}`);
    }
    out[k] = v;
  }
  return out;
}

/**
 * Serialises tensors (and optional string metadata) to safetensors bytes. Tensors are written in sorted key order,
 * contiguously; the header is padded with spaces to a multiple of 8 so that the data start 8-byte aligned.
 */
export function serializeSafetensors(
  tensors: Record<string, TensorEntry>,
  metadata?: Record<string, string>,
): Uint8Array {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata !== undefined && metadata !== null) {
    if (typeof metadata !== "object" || Array.isArray(metadata)) {
      throw new Error(`safetensors metadata must be an object of string values`);
    }
    const entries = Object.entries(metadata);
    for (const [k, v] of entries) {
      if (typeof v !== "string") {
        throw new Error(
          `safetensors metadata value of "${k}" must be a string, got ${typeof v} ` +
            `(${JSON.stringify(v)}); JSON-encode it first`,
        );
      }
    }
    if (entries.length) header[METADATA_KEY] = Object.fromEntries(entries);
  }
  let offset = 0;
  for (const name of names) {
    if (name === METADATA_KEY) throw new Error(`"${METADATA_KEY}" is reserved and cannot name a tensor`);
    const t = tensors[name];
    const where = `tensor "${name}"`;
    if (!isDType(t?.dtype)) {
      throw new Error(
        `${where}: unknown dtype ${JSON.stringify(t?.dtype)} (supported: ${Object.keys(DTYPE_SIZES).join(", ")})`,
      );
    }
    checkShape(t.shape, where);
    if (!arrayMatchesDType(t.dtype, t.data)) {
      throw new Error(
        `${where}: dtype ${t.dtype} needs its data in a ${ARRAY_TYPES[t.dtype].name}, got ${
          (t.data as object)?.constructor?.name ?? typeof t.data
        }`,
      );
    }
    if (t.data.length !== numel(t.shape)) {
      throw new Error(
        `${where}: shape ${JSON.stringify(t.shape)} has ${numel(t.shape)} elements but the data ` +
          `hold ${t.data.length}`,
      );
    }
    const end = offset + t.data.byteLength;
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, end] };
    offset = end;
  }
  let json = JSON.stringify(header);
  const encoder = new TextEncoder();
  let headerBytes = encoder.encode(json);
  const padded = Math.ceil(headerBytes.length / 8) * 8;
  if (padded !== headerBytes.length) {
    json += " ".repeat(padded - headerBytes.length);
    headerBytes = encoder.encode(json);
  }
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.length;
  for (const name of names) {
    const d = tensors[name].data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), pos);
    pos += d.byteLength;
  }
  return out;
}

/** Reads and parses a safetensors file; errors name `path`. */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new Error(`${path}: no such safetensors file`);
    throw new Error(`${path}: cannot read: ${(err as Error).message}`);
  }
  return parseSafetensors(bytes, path);
}

/** Writes a safetensors file atomically (temporary file + rename); errors name `path`. */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorEntry>,
  metadata?: Record<string, string>,
): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = serializeSafetensors(tensors, metadata);
  } catch (err) {
    throw new Error(`${path}: ${(err as Error).message}`);
  }
  await writeFileAtomic(path, bytes);
}

// ---- half-precision conversions ----

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** Decodes IEEE 754 binary16 bits (e.g. `0x3c00` → 1) including subnormals, ±0, ±inf and NaN. */
export function f16ToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24; // zero or subnormal: m × 2^-14 / 1024
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** Decodes bfloat16 bits (the top 16 bits of a float32, e.g. `0x3f80` → 1). */
export function bf16ToFloat32(bits: number): number {
  u32Scratch[0] = (bits & 0xffff) << 16;
  return f32Scratch[0];
}

/** Encodes a number as IEEE 754 binary16 bits, rounding to nearest even; overflow gives ±inf, NaN stays NaN. */
export function float32ToF16(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / NaN (quiet)
  const e = exp - 127 + 15; // re-biased exponent
  if (e >= 0x1f) return sign | 0x7c00; // overflow → inf
  if (e <= 0) {
    // Subnormal (or underflow to zero): shift the full significand (with its implicit 1) into place.
    if (e < -10) return sign;
    const full = mant | 0x800000;
    const shift = 14 - e; // 24-bit significand → 10-bit subnormal mantissa
    let half = full >>> shift;
    const rest = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half++; // a carry into the exponent is correct rounding
  return sign | half;
}

/** Encodes a number as bfloat16 bits, rounding to nearest even; NaN stays NaN. */
export function float32ToBf16(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0];
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff)) return ((x >>> 16) | 0x40) & 0xffff; // quiet NaN
  const rounded = x + 0x7fff + ((x >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/**
 * The tensor's values as float32: F32 is returned as is (sharing memory with the entry); F16 and BF16 are decoded;
 * I32, I64, U8 and BOOL are converted numerically (I64 beyond 2^24 loses precision, as float32 must).
 */
export function toFloat32(entry: TensorEntry): Float32Array {
  const { dtype, data } = entry;
  switch (dtype) {
    case "F32":
      return data as Float32Array;
    case "F16": {
      const src = data as Uint16Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = f16ToFloat32(src[i]);
      return out;
    }
    case "BF16": {
      const src = data as Uint16Array;
      const out = new Float32Array(src.length);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
      return out;
    }
    case "I64": {
      const src = data as BigInt64Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = Number(src[i]);
      return out;
    }
    case "I32":
    case "U8":
    case "BOOL":
      return Float32Array.from(data as Int32Array | Uint8Array);
    default:
      throw new Error(`toFloat32: unknown dtype ${JSON.stringify(dtype)}`);
  }
}

/** Encodes float32 values as F16 or BF16 bits (for writing half-precision files). */
export function fromFloat32(dtype: "F16" | "BF16", shape: number[], values: Float32Array): TensorEntry {
  const enc = dtype === "F16" ? float32ToF16 : float32ToBf16;
  const bits = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) bits[i] = enc(values[i]);
  return { dtype, shape, data: bits };
}

function checked(dtype: DType, shape: number[], data: TensorData): TensorEntry {
  if (data.length !== numel(shape)) {
    throw new Error(
      `${dtype} tensor: shape ${JSON.stringify(shape)} has ${numel(shape)} elements but the data ` +
        `hold ${data.length}`,
    );
  }
  return { dtype, shape, data };
}

/** An F32 tensor entry (checks that `data` has `product(shape)` elements). */
export function f32(shape: number[], data: Float32Array): TensorEntry {
  return checked("F32", shape, data);
}

/** An I32 tensor entry (checks that `data` has `product(shape)` elements). */
export function i32(shape: number[], data: Int32Array): TensorEntry {
  return checked("I32", shape, data);
}

/** An I64 tensor entry (checks that `data` has `product(shape)` elements). */
export function i64(shape: number[], data: BigInt64Array): TensorEntry {
  return checked("I64", shape, data);
}
