/**
 * A WordPiece vocabulary (`vocab.txt`: one token per line, the id is the line number), read as Google's
 * `tokenization.load_vocab` reads it.
 * @module
 */
import { sha256Hex, writeFileAtomic } from "../io/fsutil.ts";

/** A WordPiece vocabulary: one token per line of `vocab.txt`, the id is the (0-based) line number. */
export class Vocab {
  /** Tokens by id. */
  readonly tokens: string[];
  /** Where it came from (a file path, or `<memory>`), used in error messages. */
  readonly source: string;
  #ids: Map<string, number>;
  #maxTokenLength: number;
  #sha?: Promise<string>;

  private constructor(tokens: string[], source: string) {
    if (tokens.length === 0) throw new Error(`${source}: the vocabulary is empty`);
    this.tokens = tokens;
    this.source = source;
    this.#ids = new Map();
    let longest = 0;
    // Like Google's load_vocab (a dict filled line by line), a duplicated token maps to its last line.
    for (let i = 0; i < tokens.length; i++) {
      this.#ids.set(tokens[i], i);
      if (tokens[i].length > longest) longest = tokens[i].length;
    }
    this.#maxTokenLength = longest;
  }

  /**
   * Reads a `vocab.txt` (UTF-8, one token per line). Surrounding whitespace of each line is stripped, as
   * Google's `load_vocab` does; a final newline does not add an empty token.
   */
  static async load(path: string): Promise<Vocab> {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (err) {
      throw new Error(`cannot read vocabulary file ${path}: ${err instanceof Error ? err.message : String(err)}`);
    }
    return Vocab.fromText(text, path);
  }

  /** Parses the contents of a `vocab.txt`; `source` names it in error messages. */
  static fromText(text: string, source = "<memory>"): Vocab {
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    const lines = text.split("\n");
    if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
    return new Vocab(lines.map((l) => l.trim()), source);
  }

  /** A vocabulary from a list of tokens (id = index). */
  static fromTokens(tokens: string[], source = "<memory>"): Vocab {
    return new Vocab(tokens.slice(), source);
  }

  /** Number of tokens. */
  get size(): number {
    return this.tokens.length;
  }

  /** The id of `token`, or `undefined` when it is not in the vocabulary. */
  id(token: string): number | undefined {
    return this.#ids.get(token);
  }

  /** True when `token` is in the vocabulary. */
  has(token: string): boolean {
    return this.#ids.has(token);
  }

  /** Length (UTF-16 code units) of the longest token; no WordPiece match can be longer. */
  get maxTokenLength(): number {
    return this.#maxTokenLength;
  }

  /** The canonical `vocab.txt` text: tokens joined by `\n`, with a final newline. */
  toText(): string {
    return this.tokens.join("\n") + "\n";
  }

  /**
   * sha256 (hex) of {@linkcode Vocab.toText}: identifies the vocabulary in feature files and checkpoints. For a
   * standard `vocab.txt` (LF line ends, final newline) it equals the sha256 of the file.
   */
  sha256(): Promise<string> {
    this.#sha ??= sha256Hex(this.toText());
    return this.#sha;
  }

  /** Writes the vocabulary as `vocab.txt` to `path`, atomically. */
  async save(path: string): Promise<void> {
    await writeFileAtomic(path, this.toText());
  }
}
