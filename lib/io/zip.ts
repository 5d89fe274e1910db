/**
 * A small zip reader (and a writer for stored entries) for PyTorch's zip checkpoints: central directory, zip64,
 * stored and deflated entries, CRC-32 checked. Entries are read one at a time from disk
 * ({@linkcode RandomAccessFile}), so a large archive is never held in memory whole.
 * @module
 */
import { crc32 } from "./crc.ts";
import { RandomAccessFile } from "./file.ts";

/** One member of the archive, from the central directory. */
export interface ZipEntry {
  /** Path inside the archive. */
  name: string;
  /** 0 stored, 8 deflated. */
  method: number;
  /** CRC-32 of the uncompressed bytes. */
  crc32: number;
  compressedSize: number;
  /** Uncompressed size. */
  size: number;
  /** Offset of the entry's local header. */
  localHeaderOffset: number;
}

const EOCD = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

function u64(view: DataView, at: number): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`64-bit value ${v} too large`);
  return Number(v);
}

/** Reads a zip archive's directory; {@linkcode ZipReader.read} then reads members. Close it when done. */
export class ZipReader {
  /** Members by name, in directory order. */
  readonly entries: Map<string, ZipEntry>;
  /** The open file. */
  readonly file: RandomAccessFile;

  private constructor(file: RandomAccessFile, entries: Map<string, ZipEntry>) {
    this.file = file;
    this.entries = entries;
  }

  /** Whether the first bytes of `head` are a zip local header (`PK\x03\x04`). */
  static isZip(head: Uint8Array): boolean {
    return head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 3 && head[3] === 4;
  }

  /** Opens `path` and parses its central directory; errors name the file and what is wrong. */
  static async open(path: string): Promise<ZipReader> {
    const file = await RandomAccessFile.open(path);
    try {
      return new ZipReader(file, ZipReader.#directory(file));
    } catch (err) {
      file.close();
      throw err;
    }
  }

  static #directory(file: RandomAccessFile): Map<string, ZipEntry> {
    const path = file.path;
    const tailLength = Math.min(file.size, 22 + 65535);
    const tail = file.read(file.size - tailLength, tailLength, "the end of the zip archive");
    const tv = new DataView(tail.buffer);
    let eocd = -1;
    for (let i = tail.length - 22; i >= 0; i--) {
      if (tv.getUint32(i, true) === EOCD) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) {
      throw new Error(
        `${path}: not a complete zip archive: no end-of-central-directory record (the file is truncated or not a zip)`,
      );
    }
    let count = tv.getUint16(eocd + 10, true);
    let cdSize = tv.getUint32(eocd + 12, true);
    let cdOffset = tv.getUint32(eocd + 16, true);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      const loc = eocd - 20;
      if (loc < 0 || tv.getUint32(loc, true) !== ZIP64_LOCATOR) {
        throw new Error(`${path}: zip64 archive without a zip64 end-of-central-directory locator`);
      }
      const recOffset = u64(tv, loc + 8);
      const rec = new DataView(file.read(recOffset, 56, "the zip64 end-of-central-directory record").buffer);
      if (rec.getUint32(0, true) !== ZIP64_EOCD) throw new Error(`${path}: bad zip64 end-of-central-directory record`);
      count = u64(rec, 32);
      cdSize = u64(rec, 40);
      cdOffset = u64(rec, 48);
    }
    const cd = file.read(cdOffset, cdSize, "the zip central directory");
    const v = new DataView(cd.buffer);
    const decoder = new TextDecoder();
    const entries = new Map<string, ZipEntry>();
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.length || v.getUint32(p, true) !== CENTRAL) {
        throw new Error(`${path}: zip central directory entry ${i} of ${count} is damaged`);
      }
      const method = v.getUint16(p + 10, true);
      const crc = v.getUint32(p + 16, true);
      let compressedSize = v.getUint32(p + 20, true);
      let size = v.getUint32(p + 24, true);
      const nameLength = v.getUint16(p + 28, true);
      const extraLength = v.getUint16(p + 30, true);
      const commentLength = v.getUint16(p + 32, true);
      let localHeaderOffset = v.getUint32(p + 42, true);
      const name = decoder.decode(cd.subarray(p + 46, p + 46 + nameLength));
      // zip64 extended information: the 64-bit values, in this order, for the fields that are 0xffffffff.
      let e = p + 46 + nameLength;
      const extraEnd = e + extraLength;
      while (e + 4 <= extraEnd) {
        const id = v.getUint16(e, true);
        const len = v.getUint16(e + 2, true);
        if (id === 1) {
          let q = e + 4;
          if (size === 0xffffffff) size = u64(v, (q += 8) - 8);
          if (compressedSize === 0xffffffff) compressedSize = u64(v, (q += 8) - 8);
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = u64(v, q);
        }
        e += 4 + len;
      }
      entries.set(name, { name, method, crc32: crc, compressedSize, size, localHeaderOffset });
      p = extraEnd + commentLength;
    }
    return entries;
  }

  /** Where the entry's bytes start (after its local header). */
  #dataOffset(entry: ZipEntry): number {
    const header = new DataView(
      this.file.read(entry.localHeaderOffset, 30, `the local header of ${entry.name}`).buffer,
    );
    if (header.getUint32(0, true) !== LOCAL) {
      throw new Error(`${this.file.path}: the local header of "${entry.name}" is damaged`);
    }
    return entry.localHeaderOffset + 30 + header.getUint16(26, true) + header.getUint16(28, true);
  }

  /**
   * The uncompressed bytes of member `name` in a fresh buffer, CRC-32 checked (skip with `verify: false`).
   * Errors name the archive and the member.
   */
  async read(name: string, options: { verify?: boolean } = {}): Promise<Uint8Array> {
    const entry = this.entries.get(name);
    if (!entry) throw new Error(`${this.file.path}: the archive has no member "${name}"`);
    const start = this.#dataOffset(entry);
    const raw = this.file.read(start, entry.compressedSize, `member "${name}"`);
    let data: Uint8Array;
    if (entry.method === 0) {
      data = raw;
    } else if (entry.method === 8) {
      const stream = new Blob([raw as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
        new DecompressionStream("deflate-raw"),
      );
      data = new Uint8Array(await new Response(stream).arrayBuffer());
    } else {
      throw new Error(
        `${this.file.path}: member "${name}" uses zip compression method ${entry.method}; only stored (0) and ` +
          `deflate (8) are supported`,
      );
    }
    if (data.length !== entry.size) {
      throw new Error(`${this.file.path}: member "${name}" has ${data.length} bytes, the directory says ${entry.size}`);
    }
    if (options.verify !== false && crc32(data) !== entry.crc32) {
      throw new Error(`${this.file.path}: member "${name}" fails its CRC-32 check: the archive is corrupt`);
    }
    return data;
  }

  /** Closes the file. */
  close(): void {
    this.file.close();
  }
}

/** Options of {@linkcode writeZip}. */
export interface WriteZipOptions {
  /** Start every member's data at a multiple of this many bytes (PyTorch uses 64), padding the local extra field. */
  align?: number;
}

/**
 * Writes a zip archive of stored (uncompressed) members to `path`, streaming each member's bytes to disk (members
 * may be given as a list of chunks). Used to write PyTorch-format checkpoints; refuses archives of 4 GiB or more.
 */
export async function writeZip(
  path: string,
  members: { name: string; data: Uint8Array | Uint8Array[] }[],
  options: WriteZipOptions = {},
): Promise<void> {
  const align = options.align ?? 1;
  const encoder = new TextEncoder();
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const central: Uint8Array[] = [];
  let offset = 0;
  const write = async (bytes: Uint8Array) => {
    let n = 0;
    while (n < bytes.length) n += await file.write(bytes.subarray(n));
    offset += bytes.length;
  };
  try {
    for (const member of members) {
      const chunks = Array.isArray(member.data) ? member.data : [member.data];
      let crc = 0;
      let size = 0;
      for (const c of chunks) {
        crc = crc32(c, crc);
        size += c.length;
      }
      const name = encoder.encode(member.name);
      const headerEnd = offset + 30 + name.length;
      const pad = align > 1 ? (align - ((headerEnd + 4) % align)) % align : 0;
      const extraLength = align > 1 ? 4 + pad : 0;
      if (offset + 30 + name.length + extraLength + size >= 2 ** 32) throw new Error(`${path}: zip archive over 4 GiB`);
      const local = new Uint8Array(30 + name.length + extraLength);
      const lv = new DataView(local.buffer);
      lv.setUint32(0, LOCAL, true);
      lv.setUint16(4, 20, true);
      lv.setUint32(14, crc, true);
      lv.setUint32(18, size, true);
      lv.setUint32(22, size, true);
      lv.setUint16(26, name.length, true);
      lv.setUint16(28, extraLength, true);
      local.set(name, 30);
      if (extraLength) {
        lv.setUint16(30 + name.length, 0x4653, true); // a private "padding" extra field, as PyTorch writes
        lv.setUint16(32 + name.length, pad, true);
      }
      const c = new Uint8Array(46 + name.length);
      const cv = new DataView(c.buffer);
      cv.setUint32(0, CENTRAL, true);
      cv.setUint16(4, 20, true);
      cv.setUint16(6, 20, true);
      cv.setUint32(16, crc, true);
      cv.setUint32(20, size, true);
      cv.setUint32(24, size, true);
      cv.setUint16(28, name.length, true);
      cv.setUint32(42, offset, true);
      c.set(name, 46);
      central.push(c);
      await write(local);
      for (const chunk of chunks) await write(chunk);
    }
    const cdOffset = offset;
    let cdSize = 0;
    for (const c of central) {
      await write(c);
      cdSize += c.length;
    }
    const end = new Uint8Array(22);
    const ev = new DataView(end.buffer);
    ev.setUint32(0, EOCD, true);
    ev.setUint16(8, central.length, true);
    ev.setUint16(10, central.length, true);
    ev.setUint32(12, cdSize, true);
    ev.setUint32(16, cdOffset, true);
    await write(end);
  } finally {
    file.close();
  }
}
