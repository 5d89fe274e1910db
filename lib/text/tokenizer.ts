/**
 * BERT's WordPiece tokenizer, with the semantics of Google's original `tokenization.FullTokenizer`
 * (google-research/bert), checked id-for-id against golden files produced by it.
 *
 * Pipeline for one text:
 * 1. clean: drop U+0000, U+FFFD and control/format characters (Unicode Cc/Cf, except `\t \n \r`, which are
 *    whitespace); turn whitespace (space, `\t \n \r`, Unicode Zs) into a plain space;
 * 2. put spaces around CJK ideographs (the exact code point ranges BERT lists);
 * 3. split on whitespace; a piece equal to a never-split token (`[CLS]`, `[SEP]`, ... by default) stays whole;
 * 4. uncased models only: lower-case, NFD-normalise and drop non-spacing marks (Mn), i.e. strip accents;
 * 5. split off every punctuation character (ASCII 33-47, 58-64, 91-96, 123-126 and Unicode P*) as its own word;
 * 6. WordPiece: greedy longest-match-first over the vocabulary, continuation pieces prefixed with `##`; a word
 *    longer than 200 characters, or one that cannot be covered completely, becomes a single `[UNK]`.
 *
 * Character classes come from JavaScript's Unicode property escapes (`\p{P}`, `\p{Mn}`, `\p{Cc}`, `\p{Cf}`,
 * `\p{Zs}`); they agree with Python 3.11's unicodedata (Unicode 14) on every code point assigned in Unicode 14,
 * and lower-casing + NFD agree likewise; only characters added in later Unicode versions can differ.
 *
 * Speed: texts made only of printable ASCII take a table-driven fast path, and word -> ids results are cached in
 * a bounded hash table probed without allocating, so SST-2's 67k training sentences tokenize in about 0.2-0.5 s
 * on one core. lib/text/parallel.ts's `TokenizerPool` / `tokenizeParallel` spread large corpora over Deno Workers.
 *
 * Files: lib/text/vocab.ts (`Vocab`), lib/text/basic_tokenizer.ts (steps 1-5), lib/text/wordpiece.ts (step 6 and
 * the word cache), this file (`FullTokenizer`, `encodeBatch`), lib/text/parallel.ts (the worker pool).
 *
 * Deliberate difference from Google's original: never-split tokens (step 3) stay whole; the original splits a
 * literal `[CLS]` in the input into `[`, `cls`, `]`. Pass `neverSplit: []` to get the original behaviour.
 * @module
 */
import {
  basicInto,
  basicUnicode,
  hashRange,
  NEEDS_SLOW_PATH,
  scanAscii,
  scannedWords,
  SPECIAL_TOKENS,
} from "./basic_tokenizer.ts";
import { Vocab } from "./vocab.ts";
import { WordCache, wordpiece } from "./wordpiece.ts";

// ---------------------------------------------------------------------------------------------------------------
// Full tokenizer

/** Options for {@linkcode FullTokenizer}. */
export interface TokenizerOptions {
  /** Lower-case and strip accents (uncased models). Default true. */
  lowerCase?: boolean;
  /** Token for words that cannot be covered; must be in the vocabulary. Default `[UNK]`. */
  unkToken?: string;
  /** Longer words (in code points) become `unkToken`. Default 200. */
  maxInputCharsPerWord?: number;
  /** Whitespace-separated pieces never split or lower-cased. Default {@linkcode SPECIAL_TOKENS}. */
  neverSplit?: string[];
  /** Most entries of the word -> ids cache (it starts over when full). Default 200,000; 0 disables it. */
  cacheSize?: number;
}

/** Options for {@linkcode FullTokenizer.decode}. */
export interface DecodeOptions {
  /** Leave out `[PAD]`, `[CLS]` and `[SEP]`. Default false. */
  skipSpecialTokens?: boolean;
  /** Remove the spaces WordPiece puts before punctuation and contractions (" ." -> ".", " n't" -> "n't"), as
   * Hugging Face's `clean_up_tokenization` does. Default true. */
  cleanUpSpaces?: boolean;
}

/**
 * BERT's FullTokenizer: basic tokenization (lib/text/basic_tokenizer.ts) followed by WordPiece.
 *
 * @example
 * const tok = await FullTokenizer.fromVocabFile("vocab.txt", { lowerCase: true });
 * tok.encode("Unaffable!") // { tokens: ["una", "##ffa", "##ble", "!"], ids: [...] }
 */
export class FullTokenizer {
  /** The vocabulary. */
  readonly vocab: Vocab;
  /** Whether text is lower-cased and accent-stripped. */
  readonly lowerCase: boolean;
  /** Token for uncovered words. */
  readonly unkToken: string;
  /** Words longer than this many code points become `[UNK]`. */
  readonly maxInputCharsPerWord: number;
  /** Id of `[CLS]` (-1 if the vocabulary has none). */
  readonly clsId: number;
  /** Id of `[SEP]` (-1 if the vocabulary has none). */
  readonly sepId: number;
  /** Id of `[PAD]` (-1 if the vocabulary has none). */
  readonly padId: number;
  /** Id of `unkToken`. */
  readonly unkId: number;
  /** Id of `[MASK]` (-1 if the vocabulary has none). */
  readonly maskId: number;
  #neverSplit: ReadonlySet<string> | null;
  #cache: WordCache | null;
  #charIds = new Int32Array(128); // id of each one-character ASCII word
  #words: string[] = [];
  #buf = new Int32Array(1024); // ids of the text being encoded
  #n = 0;

  constructor(vocab: Vocab, options: TokenizerOptions = {}) {
    this.vocab = vocab;
    this.lowerCase = options.lowerCase ?? true;
    this.unkToken = options.unkToken ?? "[UNK]";
    this.maxInputCharsPerWord = options.maxInputCharsPerWord ?? 200;
    const unk = vocab.id(this.unkToken);
    if (unk === undefined) {
      throw new Error(`${vocab.source}: the vocabulary has no unknown-word token "${this.unkToken}"`);
    }
    this.unkId = unk;
    this.clsId = vocab.id("[CLS]") ?? -1;
    this.sepId = vocab.id("[SEP]") ?? -1;
    this.padId = vocab.id("[PAD]") ?? -1;
    this.maskId = vocab.id("[MASK]") ?? -1;
    const ns = new Set(options.neverSplit ?? SPECIAL_TOKENS);
    this.#neverSplit = ns.size > 0 ? ns : null;
    const cacheSize = options.cacheSize ?? 200_000;
    this.#cache = cacheSize > 0 ? new WordCache(cacheSize) : null;
    for (let c = 0; c < 128; c++) {
      this.#charIds[c] = this.maxInputCharsPerWord >= 1 ? vocab.id(String.fromCharCode(c)) ?? unk : unk;
    }
  }

  /** Loads `vocab.txt` and builds a tokenizer. */
  static async fromVocabFile(path: string, options?: TokenizerOptions): Promise<FullTokenizer> {
    return new FullTokenizer(await Vocab.load(path), options);
  }

  /** The never-split tokens in use. */
  get neverSplit(): string[] {
    return this.#neverSplit ? [...this.#neverSplit] : [];
  }

  /** Basic tokenization with this tokenizer's casing and never-split tokens. */
  basicTokenize(text: string): string[] {
    const out: string[] = [];
    basicInto(text, this.lowerCase, this.#neverSplit, out);
    return out;
  }

  /** WordPiece ids of one word (no whitespace inside), greedy longest-match-first. */
  wordpieceIds(word: string): number[] {
    this.#n = 0;
    this.#emitWord(word, 0, word.length, hashRange(word, 0, word.length));
    const out = new Array<number>(this.#n);
    for (let k = 0; k < this.#n; k++) out[k] = this.#buf[k];
    return out;
  }

  #push(id: number): void {
    if (this.#n === this.#buf.length) {
      const buf = new Int32Array(2 * this.#buf.length);
      buf.set(this.#buf);
      this.#buf = buf;
    }
    this.#buf[this.#n++] = id;
  }

  /** Appends the ids of the word `src[start, end)` (hash `h`) to the buffer. */
  #emitWord(src: string, start: number, end: number, h: number): void {
    const cache = this.#cache;
    if (cache === null) {
      for (const id of wordpiece(this, src.slice(start, end))) this.#push(id);
      return;
    }
    let slot = cache.find(src, start, end, h);
    if (slot < 0) {
      const word = src.slice(start, end);
      slot = cache.insert(word, h, wordpiece(this, word));
    }
    const off = cache.offs[slot];
    const len = cache.lens[slot];
    if (this.#n + len > this.#buf.length) {
      const buf = new Int32Array(Math.max(2 * this.#buf.length, this.#n + len));
      buf.set(this.#buf);
      this.#buf = buf;
    }
    const pool = cache.pool;
    const buf = this.#buf;
    for (let k = 0; k < len; k++) buf[this.#n + k] = pool[off + k];
    this.#n += len;
  }

  /** Tokenizes `text` into the internal buffer; returns the number of ids. */
  #encode(text: string): number {
    this.#n = 0;
    if (NEEDS_SLOW_PATH.test(text)) {
      const words = this.#words;
      words.length = 0;
      basicUnicode(text, this.lowerCase, this.#neverSplit, words);
      for (const w of words) this.#emitWord(w, 0, w.length, hashRange(w, 0, w.length));
      words.length = 0;
      return this.#n;
    }
    const src = this.lowerCase ? text.toLowerCase() : text;
    const nw = scanAscii(text, src, this.#neverSplit);
    const b = scannedWords();
    for (let j = 0; j < 3 * nw; j += 3) {
      const s = b[j];
      const e = b[j + 1];
      if (s < 0) {
        const piece = text.slice(~s, e);
        this.#emitWord(piece, 0, piece.length, hashRange(piece, 0, piece.length));
      } else if (e - s === 1) {
        this.#push(this.#charIds[src.charCodeAt(s)]);
      } else {
        this.#emitWord(src, s, e, b[j + 2]);
      }
    }
    return this.#n;
  }

  /**
   * WordPiece ids of `text` (no special tokens) as a view into an internal buffer, valid only until the next call
   * on this tokenizer: copy what you keep. The fastest entry point (no allocation per text).
   */
  encodeView(text: string): Int32Array {
    return this.#buf.subarray(0, this.#encode(text));
  }

  /** Appends the WordPiece ids of `text` (no special tokens) to `out` and returns it. */
  encodeIds(text: string, out: number[] = []): number[] {
    const n = this.#encode(text);
    const buf = this.#buf;
    for (let k = 0; k < n; k++) out.push(buf[k]);
    return out;
  }

  /** Basic + WordPiece tokenization; no special tokens are added. */
  tokenize(text: string): string[] {
    return this.convertIdsToTokens(this.encodeView(text));
  }

  /** Tokens and their ids for `text` (no special tokens added). */
  encode(text: string): { tokens: string[]; ids: number[] } {
    const ids = this.encodeIds(text);
    return { tokens: this.convertIdsToTokens(ids), ids };
  }

  /** Ids of `tokens`; throws naming the first token that is not in the vocabulary. */
  convertTokensToIds(tokens: string[]): number[] {
    return tokens.map((t, i) => {
      const id = this.vocab.id(t);
      if (id === undefined) {
        throw new Error(`token ${JSON.stringify(t)} (position ${i}) is not in the vocabulary ${this.vocab.source}`);
      }
      return id;
    });
  }

  /** Tokens of `ids`; throws naming the first id outside the vocabulary. */
  convertIdsToTokens(ids: ArrayLike<number>): string[] {
    const tokens = this.vocab.tokens;
    const out = new Array<string>(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      const t = tokens[id];
      if (t === undefined || !Number.isInteger(id)) {
        throw new Error(`id ${id} (position ${i}) is outside the vocabulary (0..${tokens.length - 1})`);
      }
      out[i] = t;
    }
    return out;
  }

  /**
   * Text of `ids`: tokens joined by spaces, `##` pieces glued to the previous token, then (by default) the
   * spaces before punctuation removed. Uncased models cannot give back case or accents.
   */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    let tokens = this.convertIdsToTokens(ids);
    if (options.skipSpecialTokens) {
      const skip = new Set(["[PAD]", "[CLS]", "[SEP]"]);
      tokens = tokens.filter((t) => !skip.has(t));
    }
    let text = "";
    for (const t of tokens) {
      if (t.startsWith("##") && t.length > 2) text += t.slice(2);
      else text += text.length > 0 ? " " + t : t;
    }
    return options.cleanUpSpaces === false ? text : cleanUpTokenization(text);
  }
}

/** Hugging Face's `clean_up_tokenization`: removes spaces before punctuation and English contractions. */
export function cleanUpTokenization(text: string): string {
  return text.replaceAll(" .", ".").replaceAll(" ?", "?").replaceAll(" !", "!").replaceAll(" ,", ",")
    .replaceAll(" ' ", "'").replaceAll(" n't", "n't").replaceAll(" 'm", "'m").replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
}
// ---------------------------------------------------------------------------------------------------------------
// Fixed-length encoding (lib/text/parallel.ts spreads it over workers)

/** Options for {@linkcode encodeBatch} and lib/text/parallel.ts's `tokenizeParallel`. */
export interface BatchEncodeOptions {
  /**
   * When given, each text becomes one row `[CLS] pieces... [SEP] [PAD]...` of exactly this length (pieces
   * truncated to `maxSeqLength - 2`). When absent, the ids of all texts are concatenated without special tokens
   * and {@linkcode TokenizedBatch.offsets} delimits them.
   */
  maxSeqLength?: number;
}

/** Token ids of many texts, in flat typed arrays (cheap to transfer between workers). */
export interface TokenizedBatch {
  /** Number of texts. */
  n: number;
  /** Row length when padded; undefined for ragged output. */
  maxSeqLength?: number;
  /** Padded: `[n, maxSeqLength]` row-major. Ragged: all texts' WordPiece ids concatenated. */
  ids: Int32Array;
  /** Ragged only: `[n + 1]`, text i is `ids[offsets[i] .. offsets[i + 1])`. */
  offsets?: Int32Array;
  /** `[n]` WordPiece count of each text (no special tokens, before truncation). */
  lengths: Int32Array;
  /** Padded only: how many texts lost pieces to truncation. */
  truncated: number;
}

/**
 * Encodes `texts` on this thread into a {@linkcode TokenizedBatch}. Padded rows need `[CLS]`, `[SEP]` and
 * `[PAD]` in the vocabulary. The attention mask of row i is 1 for the first `min(lengths[i] + 2, L)` positions.
 */
export function encodeBatch(
  tokenizer: FullTokenizer,
  texts: string[],
  options: BatchEncodeOptions = {},
): TokenizedBatch {
  const n = texts.length;
  const lengths = new Int32Array(n);
  const L = options.maxSeqLength;
  if (L === undefined) {
    const offsets = new Int32Array(n + 1);
    let all = new Int32Array(Math.max(1024, 16 * n));
    let at = 0;
    for (let i = 0; i < n; i++) {
      const v = tokenizer.encodeView(texts[i]);
      if (at + v.length > all.length) {
        const bigger = new Int32Array(Math.max(2 * all.length, at + v.length));
        bigger.set(all.subarray(0, at));
        all = bigger;
      }
      all.set(v, at);
      at += v.length;
      lengths[i] = v.length;
      offsets[i + 1] = at;
    }
    return { n, ids: all.slice(0, at), offsets, lengths, truncated: 0 };
  }
  if (!Number.isInteger(L) || L < 2) throw new Error(`maxSeqLength must be an integer >= 2, got ${L}`);
  const { clsId, sepId, padId } = tokenizer;
  if (clsId < 0 || sepId < 0 || padId < 0) {
    throw new Error(`${tokenizer.vocab.source}: padded encoding needs [CLS], [SEP] and [PAD] in the vocabulary`);
  }
  const ids = new Int32Array(n * L); // [n, L]
  if (padId !== 0) ids.fill(padId);
  let truncated = 0;
  for (let i = 0; i < n; i++) {
    const v = tokenizer.encodeView(texts[i]);
    lengths[i] = v.length;
    const keep = Math.min(v.length, L - 2);
    if (keep < v.length) truncated++;
    const row = i * L;
    ids[row] = clsId;
    for (let k = 0; k < keep; k++) ids[row + 1 + k] = v[k];
    ids[row + 1 + keep] = sepId;
  }
  return { n, maxSeqLength: L, ids, lengths, truncated };
}
