/**
 * BERT's BasicTokenizer (steps 1-5 of the pipeline in lib/text/tokenizer.ts), with the semantics of Google's
 * `tokenization.BasicTokenizer`:
 * 1. clean: drop U+0000, U+FFFD and control/format characters (Unicode Cc/Cf, except `\t \n \r`, which are
 *    whitespace); turn whitespace (space, `\t \n \r`, Unicode Zs) into a plain space;
 * 2. put spaces around CJK ideographs (the exact code point ranges BERT lists);
 * 3. split on whitespace; a piece equal to a never-split token (`[CLS]`, `[SEP]`, ... by default) stays whole;
 * 4. uncased models only: lower-case, NFD-normalise and drop non-spacing marks (Mn), i.e. strip accents;
 * 5. split off every punctuation character (ASCII 33-47, 58-64, 91-96, 123-126 and Unicode P*) as its own word.
 *
 * Character classes come from JavaScript's Unicode property escapes (`\p{P}`, `\p{Mn}`, `\p{Cc}`, `\p{Cf}`,
 * `\p{Zs}`); they agree with Python 3.11's unicodedata (Unicode 14) on every code point assigned in Unicode 14,
 * and lower-casing + NFD agree likewise; only characters added in later Unicode versions can differ.
 *
 * Texts made only of printable ASCII take a table-driven fast path ({@linkcode scanAscii}) that also hashes each
 * word for lib/text/wordpiece.ts's cache.
 * @module
 */

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
export const NEEDS_SLOW_PATH: RegExp = /[^\t\n\r\x20-\x7e]/;
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
export function hashRange(s: string, start: number, end: number): number {
  let h = FNV_BASIS;
  for (let i = start; i < end; i++) h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME);
  return h;
}

/** Word boundaries found by {@linkcode scanAscii}: `[start, end, hash]` per word (reused between calls). */
let bounds = new Int32Array(3 * 4096);

/** The word boundaries of the last {@linkcode scanAscii} call (valid until the next one; read them at once). */
export function scannedWords(): Int32Array {
  return bounds;
}

/**
 * Fast path for printable ASCII (plus \t \n \r): no cleaning, accents or CJK to handle. `src` is `text`, lower-cased
 * for uncased models (same length). Fills {@linkcode scannedWords} and returns the number of words. A never-split
 * piece is stored with `start` bit-inverted (negative): read it from `text`, not `src`.
 */
export function scanAscii(text: string, src: string, neverSplit: ReadonlySet<string> | null): number {
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
export function basicUnicode(
  text: string,
  lowerCase: boolean,
  neverSplit: ReadonlySet<string> | null,
  out: string[],
): void {
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

/** Basic tokenization of `text` (fast path when it can), words appended to `out`; `neverSplit` null when empty. */
export function basicInto(
  text: string,
  lowerCase: boolean,
  neverSplit: ReadonlySet<string> | null,
  out: string[],
): void {
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
