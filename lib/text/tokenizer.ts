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
 * on one core. {@linkcode TokenizerPool} / {@linkcode tokenizeParallel} spread large corpora over Deno Workers.
 *
 * Deliberate difference from Google's original: never-split tokens (step 3) stay whole; the original splits a
 * literal `[CLS]` in the input into `[`, `cls`, `]`. Pass `neverSplit: []` to get the original behaviour.
 * @module
 */
import { sha256Hex, writeFileAtomic } from "../io/fsutil.ts";

// ---------------------------------------------------------------------------------------------------------------
// Vocabulary

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

// ---------------------------------------------------------------------------------------------------------------
// Character classes (agree with Python's unicodedata as used by Google's tokenization.py)

const F_DROP = 1; // U+0000, U+FFFD, Cc/Cf except \t \n \r: removed by _clean_text
const F_SPACE = 2; // becomes a word boundary: " ", \t \n \r, Zs (_is_whitespace) and U+2028/U+2029 (str.split)
const F_PUNCT = 4; // _is_punctuation
const F_CJK = 8; // _is_chinese_char
const F_MN = 16; // non-spacing mark, removed when stripping accents
const F_KNOWN = 128; // table entry computed

const RE_CONTROL = /^[\p{Cc}\p{Cf}]$/u;
const RE_ZS = /^\p{Zs}$/u;
const RE_PUNCT = /^\p{P}$/u;
const RE_MN = /^\p{Mn}$/u;

function isAsciiPunct(cp: number): boolean {
  return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126);
}

function isCjk(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

function computeFlags(cp: number): number {
  let f = F_KNOWN;
  const ch = String.fromCodePoint(cp);
  if (cp === 9 || cp === 10 || cp === 13 || cp === 32 || RE_ZS.test(ch) || cp === 0x2028 || cp === 0x2029) {
    f |= F_SPACE;
  } else if (cp === 0 || cp === 0xfffd || RE_CONTROL.test(ch)) f |= F_DROP;
  if (isAsciiPunct(cp) || RE_PUNCT.test(ch)) f |= F_PUNCT;
  if (isCjk(cp)) f |= F_CJK;
  if (RE_MN.test(ch)) f |= F_MN;
  return f;
}

const BMP_FLAGS = new Uint8Array(0x10000);
const ASTRAL_FLAGS = new Map<number, number>();

function charFlags(cp: number): number {
  if (cp < 0x10000) {
    let f = BMP_FLAGS[cp];
    if (f === 0) BMP_FLAGS[cp] = f = computeFlags(cp);
    return f;
  }
  let f = ASTRAL_FLAGS.get(cp);
  if (f === undefined) ASTRAL_FLAGS.set(cp, f = computeFlags(cp));
  return f;
}

/** Printable ASCII plus \t \n \r only: such texts take the fast path (no cleaning, no accents, no CJK). */
const NEEDS_SLOW_PATH = /[^\t\n\r\x20-\x7e]/;
const ASCII_PUNCT = new Uint8Array(128);
for (let c = 0; c < 128; c++) ASCII_PUNCT[c] = isAsciiPunct(c) ? 1 : 0;

/** The default never-split tokens: BERT's special tokens. */
export const SPECIAL_TOKENS: readonly string[] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

// ---------------------------------------------------------------------------------------------------------------
// Basic tokenization

const FNV_BASIS = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;
const ASCII_HASH = new Int32Array(128);
for (let c = 0; c < 128; c++) ASCII_HASH[c] = Math.imul(FNV_BASIS ^ c, FNV_PRIME);

/** FNV-1a over UTF-16 code units of `s[start, end)`: the word cache's hash (computed inline by the scanner). */
function hashRange(s: string, start: number, end: number): number {
  let h = FNV_BASIS;
  for (let i = start; i < end; i++) h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME);
  return h;
}

/** Word boundaries found by {@linkcode scanAscii}: `[start, end, hash]` per word (reused between calls). */
let bounds = new Int32Array(3 * 4096);

/**
 * Fast path for printable ASCII (plus \t \n \r): no cleaning, accents or CJK to handle. `src` is `text`, lower-cased
 * for uncased models (same length). Fills {@linkcode bounds} and returns the number of words. A never-split piece
 * is stored with `start` bit-inverted (negative): read it from `text`, not `src`.
 */
function scanAscii(text: string, src: string, neverSplit: ReadonlySet<string> | null): number {
  const n = src.length;
  if (bounds.length < 3 * n) bounds = new Int32Array(Math.max(3 * n, 2 * bounds.length));
  const b = bounds;
  let k = 0;
  let i = 0;
  while (i < n) {
    let c = src.charCodeAt(i);
    if (c <= 32) { // \t \n \r or space: the only characters <= 32 on this path
      i++;
      continue;
    }
    if (neverSplit !== null && c === 91) { // "[": maybe a never-split token
      let e = i + 1;
      while (e < n && text.charCodeAt(e) > 32) e++;
      if (neverSplit.has(text.slice(i, e))) {
        b[k] = ~i;
        b[k + 1] = e;
        b[k + 2] = 0;
        k += 3;
        i = e;
        continue;
      }
    }
    let start = -1;
    let h = FNV_BASIS;
    while (i < n && (c = src.charCodeAt(i)) > 32) {
      if (ASCII_PUNCT[c] === 1) {
        if (start >= 0) {
          b[k] = start;
          b[k + 1] = i;
          b[k + 2] = h;
          k += 3;
          start = -1;
        }
        b[k] = i;
        b[k + 1] = i + 1;
        b[k + 2] = ASCII_HASH[c];
        k += 3;
      } else {
        if (start < 0) {
          start = i;
          h = FNV_BASIS;
        }
        h = Math.imul(h ^ c, FNV_PRIME);
      }
      i++;
    }
    if (start >= 0) {
      b[k] = start;
      b[k + 1] = i;
      b[k + 2] = h;
      k += 3;
    }
  }
  return k / 3;
}

/** Splits one (already lower-cased/NFD) piece on punctuation, dropping Mn marks when `stripMn`. */
function splitPunct(piece: string, stripMn: boolean, out: string[]): void {
  const n = piece.length;
  let word = ""; // the current word before `segStart`
  let segStart = 0; // start of the current run of kept characters
  let inWord = false;
  let i = 0;
  while (i < n) {
    const cp = piece.codePointAt(i)!;
    const w = cp > 0xffff ? 2 : 1;
    const f = cp < 128 ? (ASCII_PUNCT[cp] === 1 ? F_PUNCT : 0) : charFlags(cp);
    if (stripMn && (f & F_MN) !== 0) {
      if (inWord) word += piece.slice(segStart, i);
      segStart = i + w;
    } else if ((f & F_PUNCT) !== 0) {
      if (inWord) {
        word += piece.slice(segStart, i);
        if (word.length > 0) out.push(word);
        word = "";
        inWord = false;
      }
      out.push(piece.slice(i, i + w));
      segStart = i + w;
    } else if (!inWord) {
      inWord = true;
      segStart = i;
    }
    i += w;
  }
  if (inWord) {
    word += piece.slice(segStart, n);
    if (word.length > 0) out.push(word);
  }
}

/** General path: any Unicode text, step by step as in Google's BasicTokenizer. Appends words to `out`. */
function basicUnicode(text: string, lowerCase: boolean, neverSplit: ReadonlySet<string> | null, out: string[]): void {
  // Steps 1-3: clean, space out CJK ideographs, split on whitespace -> pieces.
  const pieces: string[] = [];
  const n = text.length;
  let piece = ""; // text of the current piece before segStart
  let segStart = 0;
  let inPiece = false;
  let i = 0;
  const flush = (end: number) => {
    if (inPiece) {
      piece += text.slice(segStart, end);
      if (piece.length > 0) pieces.push(piece);
      piece = "";
      inPiece = false;
    }
  };
  while (i < n) {
    const cp = text.codePointAt(i)!;
    const w = cp > 0xffff ? 2 : 1;
    const f = charFlags(cp);
    if ((f & F_DROP) !== 0) {
      if (inPiece) piece += text.slice(segStart, i);
      segStart = i + w;
    } else if ((f & F_SPACE) !== 0) {
      flush(i);
    } else if ((f & F_CJK) !== 0) {
      flush(i);
      pieces.push(text.slice(i, i + w));
    } else if (!inPiece) {
      inPiece = true;
      segStart = i;
    }
    i += w;
  }
  flush(n);
  // Steps 4-5 per piece.
  for (const p of pieces) {
    if (neverSplit !== null && neverSplit.has(p)) {
      out.push(p);
    } else if (lowerCase) {
      const lower = p.toLowerCase();
      splitPunct(NEEDS_SLOW_PATH.test(lower) ? lower.normalize("NFD") : lower, true, out);
    } else {
      splitPunct(p, false, out);
    }
  }
}

function basicInto(text: string, lowerCase: boolean, neverSplit: ReadonlySet<string> | null, out: string[]): void {
  if (NEEDS_SLOW_PATH.test(text)) {
    basicUnicode(text, lowerCase, neverSplit, out);
    return;
  }
  const src = lowerCase ? text.toLowerCase() : text;
  const nw = scanAscii(text, src, neverSplit);
  const b = bounds;
  for (let j = 0; j < 3 * nw; j += 3) {
    const s = b[j];
    out.push(s < 0 ? text.slice(~s, b[j + 1]) : src.slice(s, b[j + 1]));
  }
}

/** Options for {@linkcode basicTokenize}. */
export interface BasicTokenizeOptions {
  /** Whitespace-separated pieces kept whole (not lower-cased or split); default {@linkcode SPECIAL_TOKENS}. */
  neverSplit?: Iterable<string>;
}

/**
 * BERT's BasicTokenizer: clean-up, CJK spacing, whitespace split, lower-casing and accent stripping (when
 * `lowerCase`), punctuation split. Returns the words that WordPiece then splits further.
 *
 * @example basicTokenize("Héllo, Wörld!", true) // ["hello", ",", "world", "!"]
 */
export function basicTokenize(text: string, lowerCase: boolean, options: BasicTokenizeOptions = {}): string[] {
  const ns = new Set(options.neverSplit ?? SPECIAL_TOKENS);
  const out: string[] = [];
  basicInto(text, lowerCase, ns.size > 0 ? ns : null, out);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Word -> ids cache

/**
 * Open-addressing hash table from word to WordPiece ids, looked up by a range of a string and its hash, so that a
 * cache hit allocates nothing. Grows up to `maxEntries`, then starts over empty.
 */
class WordCache {
  keys: string[] = [];
  hashes = new Int32Array(0);
  offs = new Int32Array(0);
  lens = new Int32Array(0);
  pool = new Int32Array(1 << 14);
  poolLen = 0;
  count = 0;
  mask = 0;
  readonly maxEntries: number;

  constructor(maxEntries: number) {
    this.maxEntries = maxEntries;
    this.#alloc(1 << 12);
  }

  #alloc(cap: number): void {
    this.keys = new Array<string>(cap).fill("");
    this.hashes = new Int32Array(cap);
    this.offs = new Int32Array(cap);
    this.lens = new Int32Array(cap);
    this.mask = cap - 1;
  }

  /** Slot of `src[start, end)` (hash `h`): >= 0 when present, else `~slot` where it would go. */
  find(src: string, start: number, end: number, h: number): number {
    const keys = this.keys;
    const len = end - start;
    let i = h & this.mask;
    for (;;) {
      const key = keys[i];
      if (key === "") return ~i;
      if (this.hashes[i] === h && key.length === len) {
        let j = 0;
        while (j < len && key.charCodeAt(j) === src.charCodeAt(start + j)) j++;
        if (j === len) return i;
      }
      i = (i + 1) & this.mask;
    }
  }

  /** Stores `ids` for `key` (not present) and returns its slot. */
  insert(key: string, h: number, ids: readonly number[]): number {
    if (this.count >= this.maxEntries) {
      this.keys.fill("");
      this.count = 0;
      this.poolLen = 0;
    } else if (2 * (this.count + 1) > this.keys.length) {
      this.#grow();
    }
    const slot = ~this.find(key, 0, key.length, h);
    if (this.poolLen + ids.length > this.pool.length) {
      const pool = new Int32Array(Math.max(2 * this.pool.length, this.poolLen + ids.length));
      pool.set(this.pool.subarray(0, this.poolLen));
      this.pool = pool;
    }
    for (let k = 0; k < ids.length; k++) this.pool[this.poolLen + k] = ids[k];
    this.keys[slot] = key;
    this.hashes[slot] = h;
    this.offs[slot] = this.poolLen;
    this.lens[slot] = ids.length;
    this.poolLen += ids.length;
    this.count++;
    return slot;
  }

  #grow(): void {
    const { keys, hashes, offs, lens } = this;
    this.#alloc(2 * keys.length);
    for (let i = 0; i < keys.length; i++) {
      if (keys[i] === "") continue;
      const slot = ~this.find(keys[i], 0, keys[i].length, hashes[i]);
      this.keys[slot] = keys[i];
      this.hashes[slot] = hashes[i];
      this.offs[slot] = offs[i];
      this.lens[slot] = lens[i];
    }
  }
}

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
 * BERT's FullTokenizer: {@linkcode basicTokenize} followed by WordPiece.
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

  /** WordPiece, as Google's WordpieceTokenizer (uncached). */
  #wordpiece(word: string): readonly number[] {
    const vocab = this.vocab;
    // Work on code points, as Python does; UTF-16 indices are the same unless the word has surrogate pairs.
    let chars: string[] | null = null;
    for (let i = 0; i < word.length; i++) {
      const c = word.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdfff) {
        chars = Array.from(word);
        break;
      }
    }
    const len = chars ? chars.length : word.length;
    if (len > this.maxInputCharsPerWord) return [this.unkId];
    const whole = vocab.id(word);
    if (whole !== undefined) return [whole];
    const maxLen = vocab.maxTokenLength; // no vocabulary entry is longer: skip hopeless candidates
    const ids: number[] = [];
    let start = 0;
    while (start < len) {
      let end = Math.min(len, start + maxLen);
      let found = -1;
      while (end > start) {
        const sub = chars ? chars.slice(start, end).join("") : word.slice(start, end);
        const id = vocab.id(start > 0 ? "##" + sub : sub);
        if (id !== undefined) {
          found = id;
          break;
        }
        end--;
      }
      if (found < 0) return [this.unkId];
      ids.push(found);
      start = end;
    }
    return ids;
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
      for (const id of this.#wordpiece(src.slice(start, end))) this.#push(id);
      return;
    }
    let slot = cache.find(src, start, end, h);
    if (slot < 0) {
      const word = src.slice(start, end);
      slot = cache.insert(word, h, this.#wordpiece(word));
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
    const b = bounds;
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
// Fixed-length encoding and the worker-parallel path

/** Options for {@linkcode encodeBatch} and {@linkcode tokenizeParallel}. */
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

/** Options for {@linkcode TokenizerPool.create}. */
export interface TokenizerPoolOptions {
  /** `vocab.txt` each worker loads. */
  vocabPath: string;
  /** Uncased model (lower-case and strip accents). */
  lowerCase: boolean;
  /** Number of workers; default `navigator.hardwareConcurrency`. */
  workers?: number;
  /** Never-split tokens (default {@linkcode SPECIAL_TOKENS}). */
  neverSplit?: string[];
}

/** Options for {@linkcode TokenizerPool.encode}. */
export interface PoolEncodeOptions extends BatchEncodeOptions {
  /** Texts per message to a worker; default 2,000. */
  chunkSize?: number;
  /** Called after each finished chunk with the number of texts done so far. */
  onProgress?: (done: number, total: number) => void;
}

/** Options for {@linkcode tokenizeParallel}. */
export type ParallelTokenizeOptions = TokenizerPoolOptions & PoolEncodeOptions;

/** Messages of the worker protocol (see lib/text/tokenize_worker.ts). */
export type WorkerRequest =
  | { type: "init"; vocabPath: string; lowerCase: boolean; neverSplit?: string[] }
  | { type: "chunk"; chunk: number; texts: string[]; maxSeqLength?: number };
/** Replies of the worker protocol. */
export type WorkerReply =
  | { type: "ready" }
  | { type: "result"; chunk: number; batch: TokenizedBatch }
  | { type: "error"; message: string };

/**
 * Deno Workers that each hold a tokenizer (they load the vocabulary themselves). {@linkcode TokenizerPool.encode}
 * hands chunks of texts to whichever worker is free and returns the same {@linkcode TokenizedBatch} as
 * {@linkcode encodeBatch}, in input order. Keep one pool for several corpora (starting a worker costs a fraction
 * of a second); {@linkcode TokenizerPool.close} ends the workers.
 *
 * @example
 * const pool = await TokenizerPool.create({ vocabPath: "vocab.txt", lowerCase: true });
 * try { const train = await pool.encode(texts, { maxSeqLength: 128 }); } finally { pool.close(); }
 */
export class TokenizerPool {
  #workers: Worker[];
  #handlers = new Map<Worker, (m: WorkerReply) => void>();
  #failed: Error | null = null;
  #busy: Promise<unknown> = Promise.resolve();

  private constructor(workers: Worker[]) {
    this.#workers = workers;
  }

  /** Starts the workers and waits until each has loaded the vocabulary (rejects if any fails). */
  static async create(options: TokenizerPoolOptions): Promise<TokenizerPool> {
    const n = Math.max(1, Math.floor(options.workers ?? navigator.hardwareConcurrency ?? 2));
    const workers: Worker[] = [];
    const pool = new TokenizerPool(workers);
    const ready: Promise<void>[] = [];
    for (let k = 0; k < n; k++) {
      const w = new Worker(new URL("./tokenize_worker.ts", import.meta.url), { type: "module" });
      workers.push(w);
      ready.push(
        new Promise<void>((resolve, reject) => {
          pool.#handlers.set(w, (m) => m.type === "ready" ? resolve() : reject(pool.#fail(m)));
        }),
      );
      w.onmessage = (e: MessageEvent<WorkerReply>) => pool.#handlers.get(w)?.(e.data);
      w.onerror = (e) => {
        e.preventDefault();
        pool.#handlers.get(w)?.({ type: "error", message: e.message });
      };
      const init: WorkerRequest = {
        type: "init",
        vocabPath: options.vocabPath,
        lowerCase: options.lowerCase,
        neverSplit: options.neverSplit,
      };
      w.postMessage(init);
    }
    try {
      await Promise.all(ready);
    } catch (err) {
      pool.close();
      throw err;
    }
    return pool;
  }

  /** Number of workers. */
  get size(): number {
    return this.#workers.length;
  }

  #fail(m: WorkerReply): Error {
    this.#failed ??= new Error(`tokenizer worker: ${m.type === "error" ? m.message : "unexpected " + m.type}`);
    return this.#failed;
  }

  /** Tokenizes `texts` on the workers (calls run one after another). */
  encode(texts: string[], options: PoolEncodeOptions = {}): Promise<TokenizedBatch> {
    const job = this.#busy.then(() => this.#encode(texts, options));
    this.#busy = job.catch(() => {});
    return job;
  }

  async #encode(texts: string[], options: PoolEncodeOptions): Promise<TokenizedBatch> {
    if (this.#failed) throw this.#failed;
    if (this.#workers.length === 0) throw new Error("the tokenizer pool is closed");
    const n = texts.length;
    const L = options.maxSeqLength;
    if (L !== undefined && (!Number.isInteger(L) || L < 2)) {
      throw new Error(`maxSeqLength must be an integer >= 2, got ${L}`);
    }
    const chunkSize = Math.max(1, Math.floor(options.chunkSize ?? 2000));
    const nChunks = Math.ceil(n / chunkSize);
    const parts: TokenizedBatch[] = new Array(nChunks);
    if (nChunks > 0) {
      await new Promise<void>((resolve, reject) => {
        let next = 0;
        let done = 0;
        const send = (w: Worker) => {
          if (next >= nChunks) return;
          const chunk = next++;
          const texts1 = texts.slice(chunk * chunkSize, (chunk + 1) * chunkSize);
          const msg: WorkerRequest = { type: "chunk", chunk, texts: texts1, maxSeqLength: L };
          w.postMessage(msg);
        };
        for (const w of this.#workers) {
          this.#handlers.set(w, (m) => {
            if (m.type !== "result") return reject(this.#fail(m));
            parts[m.chunk] = m.batch;
            done++;
            options.onProgress?.(Math.min(done * chunkSize, n), n);
            if (done === nChunks) resolve();
            else send(w);
          });
          send(w);
        }
      });
    }
    return concatBatches(parts, n, L);
  }

  /** Ends the workers. */
  close(): void {
    for (const w of this.#workers) w.terminate();
    this.#workers.length = 0;
    this.#handlers.clear();
  }
}

/**
 * Tokenizes `texts` with a temporary {@linkcode TokenizerPool} and returns the same {@linkcode TokenizedBatch} as
 * {@linkcode encodeBatch}, in input order. Worth it for large corpora (hundreds of thousands of texts); for small
 * ones {@linkcode encodeBatch} on the calling thread is faster.
 */
export async function tokenizeParallel(texts: string[], options: ParallelTokenizeOptions): Promise<TokenizedBatch> {
  const pool = await TokenizerPool.create(options);
  try {
    return await pool.encode(texts, options);
  } finally {
    pool.close();
  }
}

function concatBatches(parts: TokenizedBatch[], n: number, L: number | undefined): TokenizedBatch {
  const lengths = new Int32Array(n);
  let row = 0;
  let truncated = 0;
  let total = 0;
  for (const p of parts) total += p.ids.length;
  const ids = new Int32Array(total);
  const offsets = L === undefined ? new Int32Array(n + 1) : undefined;
  let at = 0;
  for (const p of parts) {
    lengths.set(p.lengths, row);
    ids.set(p.ids, at);
    if (offsets && p.offsets) {
      for (let i = 0; i < p.n; i++) offsets[row + i + 1] = at + p.offsets[i + 1];
    }
    at += p.ids.length;
    row += p.n;
    truncated += p.truncated;
  }
  return L === undefined ? { n, ids, offsets, lengths, truncated: 0 } : { n, maxSeqLength: L, ids, lengths, truncated };
}
