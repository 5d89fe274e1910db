/**
 * Random access to a file on disk, so that readers of large weight files (PyTorch `.bin`, TensorFlow
 * checkpoints) copy each tensor once into its own buffer instead of holding the whole file and then copies of it.
 * @module
 */

/** A file opened for reading at arbitrary offsets. Errors name the file. Close it when done. */
export class RandomAccessFile {
  /** The path, as given (prefixes every error). */
  readonly path: string;
  /** Size in bytes. */
  readonly size: number;
  #file: Deno.FsFile;

  private constructor(path: string, file: Deno.FsFile, size: number) {
    this.path = path;
    this.#file = file;
    this.size = size;
  }

  /** Opens `path`; a missing file gives "`path`: file not found". */
  static async open(path: string): Promise<RandomAccessFile> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) throw new Error(`${path}: file not found`);
      throw new Error(`${path}: cannot open: ${(err as Error).message}`);
    }
    const size = (await file.stat()).size;
    return new RandomAccessFile(path, file, size);
  }

  /**
   * Reads `length` bytes at `offset` into a fresh buffer (its own ArrayBuffer, so typed-array views of any element
   * size are aligned). `what` names the thing being read in the error when the file is too short.
   */
  read(offset: number, length: number, what = "data"): Uint8Array {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new Error(
        `${this.path}: ${what} at bytes [${offset}, ${offset + length}) runs past the end of the file ` +
          `(${this.size} bytes): the file is truncated or its header is wrong`,
      );
    }
    const out = new Uint8Array(length);
    this.#file.seekSync(offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < length) {
      const n = this.#file.readSync(out.subarray(got));
      if (n === null || n === 0) throw new Error(`${this.path}: unexpected end of file reading ${what}`);
      got += n;
    }
    return out;
  }

  /** Closes the file (idempotent). */
  close(): void {
    try {
      this.#file.close();
    } catch {
      // already closed
    }
  }
}

/** Opens `path`, runs `fn` and closes the file whatever happens. */
export async function withFile<T>(path: string, fn: (file: RandomAccessFile) => T | Promise<T>): Promise<T> {
  const file = await RandomAccessFile.open(path);
  try {
    return await fn(file);
  } finally {
    file.close();
  }
}
