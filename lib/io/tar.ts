/**
 * A minimal streaming tar reader: {@linkcode tarEntries} walks the members of a tar stream (ustar, with GNU long
 * names and pax `path` records), {@linkcode tarGzEntries} those of a `.tar.gz` file (gzip through
 * `DecompressionStream`). Only the members asked for are copied; the rest are skipped. Used to stream the shared
 * IMDB archive (lib/tasks/pretraining/corpus.ts).
 * @module
 */

/** One member of a tar archive. */
export interface TarEntry {
  /** Path inside the archive (ustar prefix, GNU long names and pax `path` records applied). */
  name: string;
  /** `file`, `directory` or `other` (links, devices, ...). */
  type: "file" | "directory" | "other";
  size: number;
  /** The contents, for files that `want` selected. */
  data?: Uint8Array;
}

/** Reads exact byte counts from a stream of chunks. */
class ByteReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #done = false;
  /** Bytes consumed so far (for error messages). */
  offset = 0;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  async #fill(n: number): Promise<void> {
    while (this.#buffered < n && !this.#done) {
      const { value, done } = await this.#reader.read();
      if (done) this.#done = true;
      else if (value.length) {
        this.#chunks.push(value);
        this.#buffered += value.length;
      }
    }
  }

  /** Exactly `n` bytes, or `null` at a clean end of stream; throws when the stream ends inside them. */
  async read(n: number, what: string): Promise<Uint8Array | null> {
    await this.#fill(n);
    if (this.#buffered === 0 && n > 0) return null;
    if (this.#buffered < n) {
      throw new Error(`${what}: the archive ends early (at byte ${this.offset + this.#buffered})`);
    }
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const c = this.#chunks[0];
      const take = Math.min(c.length, n - got);
      out.set(c.subarray(0, take), got);
      got += take;
      if (take === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(take);
    }
    this.#buffered -= n;
    this.offset += n;
    return out;
  }

  /** Skips `n` bytes. */
  async skip(n: number, what: string): Promise<void> {
    let left = n;
    while (left > 0) {
      if (this.#buffered === 0) {
        await this.#fill(1);
        if (this.#buffered === 0) throw new Error(`${what}: the archive ends early (at byte ${this.offset})`);
      }
      const c = this.#chunks[0];
      const take = Math.min(c.length, left);
      if (take === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(take);
      this.#buffered -= take;
      this.offset += take;
      left -= take;
    }
  }

  async cancel(): Promise<void> {
    try {
      await this.#reader.cancel();
    } catch { /* already closed */ }
  }
}

const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder();

/** A NUL-terminated string field of a header. */
function field(h: Uint8Array, start: number, length: number): string {
  let end = start;
  while (end < start + length && h[end] !== 0) end++;
  return utf8.decode(h.subarray(start, end));
}

/** An octal number field (or GNU base-256 when the high bit of the first byte is set). */
function numberField(h: Uint8Array, start: number, length: number): number {
  if (h[start] & 0x80) {
    let v = h[start] & 0x7f;
    for (let i = start + 1; i < start + length; i++) v = v * 256 + h[i];
    return v;
  }
  const text = latin1.decode(h.subarray(start, start + length)).replace(/\0.*$/s, "").trim();
  return text === "" ? 0 : parseInt(text, 8);
}

/**
 * The members of a tar archive read from `stream` (ustar, with GNU long names and pax `path` records), in
 * order. Contents are read only for files `want(name)` selects (others are skipped without copying). Breaking
 * out of the loop cancels the stream. Throws naming `source` and the byte offset on a damaged header.
 *
 * @example
 * ```ts
 * const gz = (await Deno.open("a.tar.gz")).readable.pipeThrough(new DecompressionStream("gzip"));
 * for await (const e of tarEntries(gz, { want: (n) => n.endsWith(".txt") })) console.log(e.name, e.data?.length);
 * ```
 */
export async function* tarEntries(
  stream: ReadableStream<Uint8Array>,
  options: { want?: (name: string) => boolean; source?: string } = {},
): AsyncGenerator<TarEntry> {
  const source = options.source ?? "tar";
  const reader = new ByteReader(stream);
  let longName: string | undefined;
  try {
    for (;;) {
      const at = reader.offset;
      const h = await reader.read(512, source);
      if (h === null) return; // no end-of-archive blocks: tolerated
      if (h.every((b) => b === 0)) return; // end of archive
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
      const stored = numberField(h, 148, 8);
      if (stored !== sum) {
        throw new Error(`${source}: not a tar archive, or damaged: bad header checksum at byte ${at}`);
      }
      const size = numberField(h, 124, 12);
      const flag = String.fromCharCode(h[156] || 48); // NUL means a regular file
      const padded = Math.ceil(size / 512) * 512;
      let name = field(h, 0, 100);
      if (latin1.decode(h.subarray(257, 262)) === "ustar") {
        const prefix = field(h, 345, 155);
        if (prefix) name = `${prefix}/${name}`;
      }
      if (flag === "L" || flag === "x") {
        const data = (await reader.read(padded, source))!.subarray(0, size);
        if (flag === "L") longName = field(data, 0, data.length);
        else {
          const path = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(utf8.decode(data));
          if (path) longName = path[1];
        }
        continue;
      }
      if (longName !== undefined) {
        name = longName;
        longName = undefined;
      }
      const type = flag === "0" || flag === "7" ? "file" : flag === "5" ? "directory" : "other";
      if (type === "file" && options.want?.(name)) {
        const data = (await reader.read(padded, `${source}: ${name}`))!.subarray(0, size);
        yield { name, type, size, data };
      } else {
        await reader.skip(padded, `${source}: ${name}`);
        yield { name, type, size };
      }
    }
  } finally {
    await reader.cancel();
  }
}

/** Streams the members of a `.tar.gz` file (see {@linkcode tarEntries}). */
export async function* tarGzEntries(
  path: string,
  options: { want?: (name: string) => boolean } = {},
): AsyncGenerator<TarEntry> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (err) {
    throw new Error(`cannot open ${path}: ${(err as Error).message}`);
  }
  const stream = file.readable.pipeThrough(new DecompressionStream("gzip"));
  yield* tarEntries(stream, { want: options.want, source: path });
}
