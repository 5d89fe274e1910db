/**
 * Learns a WordPiece vocabulary from a text corpus (used for the offline embedded default, whose small BERT
 * learns its vocabulary from the sample text).
 *
 * The method is the classic WordPiece training loop:
 * 1. split every text into words with BERT's {@linkcode basicTokenize} and count them;
 * 2. start from the characters: every character `c` seen gives two tokens, `c` (word start) and `##c`
 *    (continuation), so that any word made of seen characters can be tokenized without `[UNK]`;
 * 3. repeatedly merge the best adjacent pair of tokens `(a, b)` into a new token (`a` followed by `b` without its
 *    `##`), until the vocabulary has `vocabSize` tokens or no pair occurs `minFrequency` times. "Best" is the most
 *    frequent pair by default (`scoring: "frequency"`, what Hugging Face's `WordPieceTrainer` does), or the pair
 *    with the highest likelihood score `count(ab) / (count(a) * count(b))` (`scoring: "likelihood"`).
 *
 * Why frequency is the default: on SST-2 train, an 8,000-token vocabulary learned by frequency splits SST-2 dev
 * words into 1.17 pieces on average against 2.87 for the likelihood score, which keeps merging rare pairs
 * (numbers, rare names) first and leaves words such as "the" and "new" in pieces.
 *
 * Everything is deterministic: words are processed in sorted order and ties are broken by pair count, then by
 * the (deterministic) ids of the two tokens; the same corpus, in any order, gives the same vocabulary.
 * @module
 */
import { basicTokenize, SPECIAL_TOKENS } from "./basic_tokenizer.ts";

/** Options for {@linkcode buildVocab}. */
export interface BuildVocabOptions {
  /** Size of the vocabulary, special tokens included. */
  vocabSize: number;
  /** Lower-case and strip accents before counting (uncased model). Default true. */
  lowerCase?: boolean;
  /** A pair must occur at least this often (counting word frequencies) to be merged. Default 2. */
  minFrequency?: number;
  /** Tokens placed first (ids 0, 1, ...). Default `[PAD] [UNK] [CLS] [SEP] [MASK]`. */
  specialTokens?: string[];
  /** Words longer than this (code points) are ignored, as the tokenizer maps them to `[UNK]`. Default 200. */
  maxWordLength?: number;
  /**
   * How the next merge is chosen: `frequency` (default) takes the most frequent pair, as Hugging Face's
   * `WordPieceTrainer` (and BPE) do; `likelihood` takes the pair with the highest `count(ab) / (count(a) * count(b))`.
   */
  scoring?: "likelihood" | "frequency";
}

/** What {@linkcode buildVocabWithStats} learned, besides the tokens. */
export interface BuildVocabStats {
  /** Word occurrences counted. */
  words: number;
  /** Distinct words. */
  distinctWords: number;
  /** Distinct characters seen. */
  characters: number;
  /** Characters left out because `vocabSize` could not hold both forms of all of them (least frequent first). */
  droppedCharacters: string[];
  /** Merges made. */
  merges: number;
  /** True when merging stopped because no pair reached `minFrequency` (the vocabulary is then smaller). */
  exhausted: boolean;
}

/** Max-heap of merge candidates: score desc, then pair count desc, then key asc. */
class CandidateHeap {
  scores: number[] = [];
  counts: number[] = [];
  keys: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  #before(i: number, j: number): boolean {
    const s = this.scores, c = this.counts, k = this.keys;
    if (s[i] !== s[j]) return s[i] > s[j];
    if (c[i] !== c[j]) return c[i] > c[j];
    return k[i] < k[j];
  }

  #swap(i: number, j: number): void {
    const s = this.scores, c = this.counts, k = this.keys;
    [s[i], s[j]] = [s[j], s[i]];
    [c[i], c[j]] = [c[j], c[i]];
    [k[i], k[j]] = [k[j], k[i]];
  }

  push(score: number, count: number, key: number): void {
    this.scores.push(score);
    this.counts.push(count);
    this.keys.push(key);
    let i = this.keys.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#before(i, p)) break;
      this.#swap(i, p);
      i = p;
    }
  }

  /** Removes the top entry and returns it. */
  pop(): { score: number; count: number; key: number } {
    const top = { score: this.scores[0], count: this.counts[0], key: this.keys[0] };
    const last = this.keys.length - 1;
    this.#swap(0, last);
    this.scores.pop();
    this.counts.pop();
    this.keys.pop();
    let i = 0;
    const n = this.keys.length;
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < n && this.#before(l, m)) m = l;
      if (r < n && this.#before(r, m)) m = r;
      if (m === i) break;
      this.#swap(i, m);
      i = m;
    }
    return top;
  }
}

const KEY_BASE = 2 ** 21; // symbols < 2^21: a pair key a * KEY_BASE + b stays an exact integer

/**
 * Learns a WordPiece vocabulary from `texts`: special tokens first (ids 0..), then the characters (word-start
 * forms, then `##` forms, most frequent first), then the merged tokens in the order they were learned.
 *
 * @example buildVocab(["the cat sat", "the cat ran"], { vocabSize: 60 })
 */
export function buildVocab(texts: Iterable<string>, options: BuildVocabOptions): string[] {
  return buildVocabWithStats(texts, options).tokens;
}

/** {@linkcode buildVocab}, also returning statistics about the corpus and the merges. */
export function buildVocabWithStats(
  texts: Iterable<string>,
  options: BuildVocabOptions,
): { tokens: string[]; stats: BuildVocabStats } {
  const specials = options.specialTokens ?? [...SPECIAL_TOKENS];
  const vocabSize = options.vocabSize;
  const minFrequency = Math.max(1, options.minFrequency ?? 2);
  const maxWordLength = options.maxWordLength ?? 200;
  if (!Number.isInteger(vocabSize) || vocabSize < specials.length) {
    throw new Error(`vocabSize must be an integer >= ${specials.length} (the special tokens), got ${vocabSize}`);
  }
  if (new Set(specials).size !== specials.length) throw new Error(`duplicate special tokens: ${specials.join(" ")}`);
  const specialSet = new Set(specials);

  // 1. Count words.
  const wordCounts = new Map<string, number>();
  let totalWords = 0;
  for (const text of texts) {
    for (const w of basicTokenize(text, options.lowerCase ?? true, { neverSplit: specials })) {
      if (specialSet.has(w)) continue;
      totalWords++;
      wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
    }
  }
  const wordList = [...wordCounts.keys()].filter((w) => [...w].length <= maxWordLength).sort((a, b) =>
    a < b ? -1 : a > b ? 1 : 0
  );

  // 2. The alphabet, most frequent characters first (ties: code point order).
  const charCounts = new Map<string, number>();
  for (const w of wordList) {
    const f = wordCounts.get(w)!;
    for (const ch of w) charCounts.set(ch, (charCounts.get(ch) ?? 0) + f);
  }
  const chars = [...charCounts.keys()].sort((a, b) =>
    charCounts.get(b)! - charCounts.get(a)! || a.codePointAt(0)! - b.codePointAt(0)!
  );
  const budget = vocabSize - specials.length;
  const keptChars = chars.slice(0, Math.floor(budget / 2));
  const droppedCharacters = chars.slice(keptChars.length);
  const symbols: string[] = []; // symbol id -> token
  const symbolId = new Map<string, number>();
  const addSymbol = (t: string): number => {
    let id = symbolId.get(t);
    if (id === undefined) {
      id = symbols.length;
      if (id >= KEY_BASE) throw new Error(`vocabulary too large (over ${KEY_BASE} tokens)`);
      symbols.push(t);
      symbolId.set(t, id);
    }
    return id;
  };
  for (const ch of keptChars) addSymbol(ch);
  for (const ch of keptChars) addSymbol("##" + ch);

  // 3. Words as symbol sequences (words with a dropped character are left out of training).
  const words: number[][] = [];
  const freqs: number[] = [];
  for (const w of wordList) {
    const seq: number[] = [];
    let ok = true;
    let first = true;
    for (const ch of w) {
      const id = symbolId.get(first ? ch : "##" + ch);
      if (id === undefined) {
        ok = false;
        break;
      }
      seq.push(id);
      first = false;
    }
    if (ok) {
      words.push(seq);
      freqs.push(wordCounts.get(w)!);
    }
  }

  const symCount: number[] = new Array(symbols.length).fill(0);
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, number[]>(); // word indices (may hold stale or repeated entries)
  const symPairs: number[][] = symbols.map(() => []); // pair keys each symbol takes part in (may be stale)
  const touched = new Set<number>();

  const addPairs = (wi: number, sign: number) => {
    const seq = words[wi];
    const f = freqs[wi] * sign;
    for (let i = 0; i < seq.length; i++) {
      symCount[seq[i]] += f;
      if (i === 0) continue;
      const key = seq[i - 1] * KEY_BASE + seq[i];
      const c = (pairCount.get(key) ?? 0) + f;
      pairCount.set(key, c);
      touched.add(key);
      if (sign > 0) {
        let list = pairWords.get(key);
        if (list === undefined) {
          pairWords.set(key, list = []);
          symPairs[seq[i - 1]].push(key);
          symPairs[seq[i]].push(key);
        }
        if (list[list.length - 1] !== wi) list.push(wi);
      }
    }
  };
  for (let wi = 0; wi < words.length; wi++) addPairs(wi, +1);

  const heap = new CandidateHeap();
  const byFrequency = (options.scoring ?? "frequency") === "frequency";
  if (!byFrequency && options.scoring !== "likelihood") {
    throw new Error(`scoring must be "likelihood" or "frequency", got "${options.scoring}"`);
  }
  const score = (key: number, count: number) =>
    byFrequency ? count : count / (symCount[Math.floor(key / KEY_BASE)] * symCount[key % KEY_BASE]);
  const offer = (key: number) => {
    const c = pairCount.get(key) ?? 0;
    if (c >= minFrequency) heap.push(score(key, c), c, key);
  };
  for (const key of touched) offer(key);
  touched.clear();

  const tokens = [...specials, ...symbols];
  const inVocab = new Set(tokens);
  let merges = 0;
  let exhausted = false;
  const seen = new Int32Array(words.length).fill(-1); // merge number that last processed each word

  // 4. Merge.
  while (tokens.length < vocabSize) {
    if (heap.size === 0) {
      exhausted = true;
      break;
    }
    const top = heap.pop();
    const pc = pairCount.get(top.key) ?? 0;
    if (pc < minFrequency || pc !== top.count || score(top.key, pc) !== top.score) continue; // stale entry
    const a = Math.floor(top.key / KEY_BASE);
    const b = top.key % KEY_BASE;
    const merged = symbols[a] + symbols[b].slice(2);
    const c = addSymbol(merged);
    if (c === symCount.length) {
      symCount.push(0);
      symPairs.push([]);
    }
    for (const wi of pairWords.get(top.key) ?? []) {
      if (seen[wi] === merges) continue;
      seen[wi] = merges;
      const seq = words[wi];
      let has = false;
      for (let i = 1; i < seq.length && !has; i++) has = seq[i - 1] === a && seq[i] === b;
      if (!has) continue;
      addPairs(wi, -1);
      const out: number[] = [];
      for (let i = 0; i < seq.length; i++) {
        if (i + 1 < seq.length && seq[i] === a && seq[i + 1] === b) {
          out.push(c);
          i++;
        } else out.push(seq[i]);
      }
      words[wi] = out;
      addPairs(wi, +1);
    }
    merges++;
    if (!inVocab.has(merged)) {
      inVocab.add(merged);
      tokens.push(merged);
    }
    // Scores changed for pairs whose count changed and (likelihood) for every pair involving a, b or c.
    for (const s of byFrequency ? [] : new Set([a, b, c])) {
      const live: number[] = [];
      for (const key of new Set(symPairs[s])) {
        if ((pairCount.get(key) ?? 0) > 0) live.push(key);
        else pairWords.delete(key); // re-registered in symPairs if the pair ever forms again
      }
      symPairs[s] = live;
      for (const key of live) touched.add(key);
    }
    for (const key of touched) offer(key);
    touched.clear();
  }

  return {
    tokens,
    stats: {
      words: totalWords,
      distinctWords: wordCounts.size,
      characters: chars.length,
      droppedCharacters,
      merges,
      exhausted,
    },
  };
}
