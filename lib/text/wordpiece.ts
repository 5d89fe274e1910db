/**
 * WordPiece (step 6 of the pipeline in lib/text/tokenizer.ts), as Google's `tokenization.WordpieceTokenizer`:
 * greedy longest-match-first over the vocabulary, continuation pieces prefixed with `##`; a word longer than
 * `maxInputCharsPerWord` characters, or one that cannot be covered completely, becomes a single `[UNK]`. Plus
 * {@linkcode WordCache}, the word -> ids cache that makes repeated words cost one hash probe.
 * @module
 */
import type { Vocab } from "./vocab.ts";

/** What {@linkcode wordpiece} needs of a tokenizer (lib/text/tokenizer.ts's `FullTokenizer` is one). */
export interface WordpieceSettings {
  /** The vocabulary. */
  readonly vocab: Vocab;
  /** Id of the token for words that cannot be covered. */
  readonly unkId: number;
  /** Longer words (in code points) become `unkId`. */
  readonly maxInputCharsPerWord: number;
}

/** WordPiece ids of one word, as Google's WordpieceTokenizer (uncached). */
export function wordpiece(settings: WordpieceSettings, word: string): readonly number[] {
  const vocab = settings.vocab;
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
  if (len > settings.maxInputCharsPerWord) return [settings.unkId];
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
    if (found < 0) return [settings.unkId];
    ids.push(found);
    start = end;
  }
  return ids;
}

/**
 * Open-addressing hash table from word to WordPiece ids, looked up by a range of a string and its hash, so that a
 * cache hit allocates nothing. Grows up to `maxEntries`, then starts over empty.
 */
export class WordCache {
  /** Word of each slot (`""`: empty). */
  keys: string[] = [];
  /** Hash of each slot's word. */
  hashes = new Int32Array(0);
  /** Where each slot's ids start in {@linkcode WordCache.pool}. */
  offs = new Int32Array(0);
  /** How many ids each slot has. */
  lens = new Int32Array(0);
  /** The ids of all cached words, back to back. */
  pool = new Int32Array(1 << 14);
  /** Used length of {@linkcode WordCache.pool}. */
  poolLen = 0;
  /** Number of words cached. */
  count = 0;
  /** Number of slots minus 1 (a power of two minus 1). */
  mask = 0;
  /** Most words held before the cache starts over. */
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
