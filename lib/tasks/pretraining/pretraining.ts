/**
 * Pre-training BERT from scratch, the way the paper describes it (Devlin et al., 2018, section 3.1):
 *
 * 1. **Corpus**: documents made of sentences. {@linkcode parseCorpusText} reads any text file with one document
 *    per blank-line-separated block (one sentence per line, or lines split by the simple
 *    {@linkcode splitSentences}); {@linkcode readImdbCorpus} streams IMDB reviews out of the shared
 *    `aclImdb_v1_train_test.tar.gz` (gzip through `DecompressionStream`, then the minimal tar reader
 *    {@linkcode tarEntries}), one review = one document.
 * 2. **Instances**, as Google's `create_pretraining_data.py` makes them: sentences of a document are packed into
 *    a chunk of about `maxSeqLength - 3` tokens, split into A and B; half of the time B is the real continuation
 *    (next-sentence label 0, IsNext), half of the time it is a span of another document (label 1, NotNext); the
 *    pair shares the length budget and is truncated longest-first (from the front or the back at random). Then
 *    15% of the WordPiece tokens (never `[CLS]`/`[SEP]`/`[PAD]`) are chosen for prediction: 80% of them become
 *    `[MASK]`, 10% a random token, 10% stay as they are ({@linkcode maskTokens}). Everything is drawn from one
 *    seeded PRNG, so the same corpus and seed give the same data.
 * 3. **Loss**: the masked-LM cross-entropy at the chosen positions (the model's `pretraining` head computes the
 *    vocabulary logits only there, via `mlmPositions`) plus the next-sentence cross-entropy on `[CLS]`
 *    ({@linkcode pretrainingLoss}).
 * 4. **Training**: {@linkcode pretrainingTask} is a task adapter for lib/training/train.ts's loop (AdamW, linear
 *    warmup/decay, clipping, seeded order and dropout, checkpoints, exact resume); {@linkcode pretrain} calls the
 *    loop with it. Checkpoints are Hugging Face `BertForPreTraining` folders that `loadCheckpoint` reads back with
 *    any head, e.g. `classification` to fine-tune the self-pre-trained encoder.
 * 5. **Showing** an instance: {@linkcode instanceHtml} (original vs masked tokens) and
 *    {@linkcode summarizePretrainingData} (the proportions, measured on the data).
 * @module
 */
import { tf } from "../../backends/backend.ts";
import { escapeHtml } from "../../viz/display.ts";
import { exists, join, projectRoot } from "../../io/fsutil.ts";
import { type BertModel, softmaxCrossEntropy } from "../../model/model.ts";
import { sparseSoftmaxCrossEntropy } from "../../backends/blas/fused.ts";
import type { FullTokenizer } from "../../text/tokenizer.ts";
import type { Vocab } from "../../text/vocab.ts";
import {
  latestCheckpoint,
  mixSeed,
  Rng,
  shuffledOrder,
  train,
  type TrainOptions,
  type TrainResult,
  type TrainTask,
} from "../../training/train.ts";

// ---------------------------------------------------------------------------------------------------------------
// 1. Corpus
// ---------------------------------------------------------------------------------------------------------------

/** A pre-training corpus: documents, each a list of sentences. */
export interface Corpus {
  documents: string[][];
  /** Where it came from (a file, or `imdb:<archive>`), for messages. */
  source: string;
}

/** Abbreviations whose period does not end a sentence. */
const ABBREVIATIONS = new Set([
  "mr",
  "mrs",
  "ms",
  "dr",
  "prof",
  "st",
  "jr",
  "sr",
  "vs",
  "etc",
  "e.g",
  "i.e",
  "no",
  "vol",
  "fig",
  "inc",
  "ltd",
  "co",
  "mt",
]);

/**
 * A simple sentence splitter: a sentence ends at `.`, `!` or `?` (plus closing quotes or brackets) followed by
 * white space and a capital letter, a digit or an opening quote. Common abbreviations (`Mr.`, `Dr.`, `e.g.`,
 * `vs.`) and single initials (`J. K.`) do not end a sentence. Good enough for reviews and prose; not a parser.
 *
 * @example splitSentences("I liked it. Mr. Smith did not! Why?") // ["I liked it.", "Mr. Smith did not!", "Why?"]
 */
export function splitSentences(text: string): string[] {
  const pieces = text.trim().split(/(?<=[.!?]["'\u201d\u2019)\]]*)\s+(?=["'\u201c\u2018(\[]?[A-Z0-9])/);
  const out: string[] = [];
  for (const piece of pieces) {
    const p = piece.trim();
    if (!p) continue;
    const prev = out.length ? out[out.length - 1] : undefined;
    const lastWord = prev?.match(/(\S+)\.$/)?.[1];
    const glue = lastWord !== undefined &&
      (ABBREVIATIONS.has(lastWord.toLowerCase()) || /^[A-Z]$/.test(lastWord) ||
        /^([A-Za-z]\.)+[A-Za-z]$/.test(lastWord));
    if (glue) out[out.length - 1] = `${prev} ${p}`;
    else out.push(p);
  }
  return out;
}

/**
 * Parses a corpus text: documents are separated by blank lines; each non-empty line is split into sentences
 * with {@linkcode splitSentences} (a file with one sentence per line, like Google's sample_text.txt, keeps its
 * lines). Empty documents are dropped.
 */
export function parseCorpusText(text: string, source = "<memory>"): Corpus {
  const documents: string[][] = [];
  for (const block of text.replace(/\r\n?/g, "\n").split(/\n[ \t]*\n/)) {
    const sentences = block.split("\n").flatMap((line) => splitSentences(line));
    if (sentences.length > 0) documents.push(sentences);
  }
  return { documents, source };
}

/** Options of {@linkcode readTextCorpus}. */
export interface ReadCorpusOptions {
  /** Keep at most this many documents (default: all). */
  limit?: number;
}

/** Reads a text corpus file (see {@linkcode parseCorpusText}); throws naming the file when it is unusable. */
export async function readTextCorpus(path: string, options: ReadCorpusOptions = {}): Promise<Corpus> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new Error(`cannot read corpus file ${path}: ${(err as Error).message}`);
  }
  const corpus = parseCorpusText(text, path);
  if (options.limit !== undefined) corpus.documents = corpus.documents.slice(0, options.limit);
  if (corpus.documents.length < 2) {
    throw new Error(
      `${path}: ${corpus.documents.length} document(s) found; next-sentence prediction needs at least 2 ` +
        `(separate documents with a blank line)`,
    );
  }
  return corpus;
}

// ---- a minimal tar reader ----

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

// ---- IMDB ----

/** The shared IMDB archive: `../shared/data/imdb/aclImdb_v1_train_test.tar.gz` from the project root. */
export function defaultImdbArchive(): string {
  const root = projectRoot();
  const parent = root === "." ? ".." : root.replace(/\/[^/]*$/, "");
  return `${parent}/shared/data/imdb/aclImdb_v1_train_test.tar.gz`;
}

/** Options of {@linkcode readImdbCorpus}. */
export interface ImdbCorpusOptions {
  /** The archive (default {@linkcode defaultImdbArchive}). */
  path?: string;
  /** Number of reviews, half positive and half negative (default 1000). */
  limit?: number;
  /** Which half of the dataset (default `train`). */
  split?: "train" | "test";
}

/** A review's text as sentences: `<br />` tags become line breaks, then each line is split into sentences. */
export function reviewSentences(text: string): string[] {
  return text.replace(/<br\s*\/?>/gi, "\n").split("\n").flatMap((line) => splitSentences(line));
}

/**
 * IMDB movie reviews (Maas et al., 2011) as a pre-training corpus: the first `limit` reviews of a split, half
 * from `pos/` and half from `neg/` (interleaved), each review one document. Streams the archive; stops reading
 * once enough reviews are found.
 */
export async function readImdbCorpus(options: ImdbCorpusOptions = {}): Promise<Corpus> {
  const path = options.path ?? defaultImdbArchive();
  const split = options.split ?? "train";
  const found = await imdbReviews(options, (text) => {
    const sentences = reviewSentences(text);
    return sentences.length ? sentences : undefined;
  });
  const documents: string[][] = [];
  for (let i = 0; i < Math.max(found.pos.length, found.neg.length); i++) {
    if (i < found.neg.length) documents.push(found.neg[i]);
    if (i < found.pos.length) documents.push(found.pos[i]);
  }
  if (documents.length < 2) throw new Error(`${path}: no reviews found under aclImdb/${split}/{pos,neg}/`);
  return { documents, source: `imdb:${path} (${split}, ${documents.length} reviews)` };
}

/**
 * The first `ceil(limit / 2)` reviews of `pos/` and `floor(limit / 2)` of `neg/` of a split of the IMDB archive, in
 * archive order, each converted by `convert` (a review it maps to undefined is skipped and does not count). Streams
 * the archive and stops reading once both quotas are met. Used for the pre-training corpus
 * ({@linkcode readImdbCorpus}) and for labelled reviews (the fine-tuning benchmark).
 */
export async function imdbReviews<T>(
  options: ImdbCorpusOptions,
  convert: (text: string) => T | undefined,
): Promise<Record<"pos" | "neg", T[]>> {
  const path = options.path ?? defaultImdbArchive();
  const limit = options.limit ?? 1000;
  const split = options.split ?? "train";
  if (!(Number.isInteger(limit) && limit >= 2)) throw new Error(`IMDB: limit must be an integer >= 2, got ${limit}`);
  if (!(await exists(path))) {
    throw new Error(
      `IMDB archive ${path} not found: it is part of the shared data (../shared/data/imdb, see ` +
        `../shared/data/README.md); or use a text corpus (--corpus FILE, documents separated by blank lines)`,
    );
  }
  const quota = { pos: Math.ceil(limit / 2), neg: Math.floor(limit / 2) };
  const found: Record<"pos" | "neg", T[]> = { pos: [], neg: [] };
  const member = new RegExp(`^aclImdb/${split}/(pos|neg)/\\d+_\\d+\\.txt$`);
  const want = (name: string) => {
    const m = member.exec(name);
    return m !== null && found[m[1] as "pos" | "neg"].length < quota[m[1] as "pos" | "neg"];
  };
  for await (const e of tarGzEntries(path, { want })) {
    if (e.data) {
      const cls = member.exec(e.name)![1] as "pos" | "neg";
      const item = convert(utf8.decode(e.data));
      if (item !== undefined) found[cls].push(item);
      if (found.pos.length >= quota.pos && found.neg.length >= quota.neg) break;
    }
  }
  return found;
}

/** `imdb` (the shared IMDB reviews) or a text file path. */
export async function readCorpus(corpus: string, options: { limit?: number; imdbPath?: string } = {}): Promise<Corpus> {
  if (corpus === "imdb") return await readImdbCorpus({ path: options.imdbPath, limit: options.limit });
  return await readTextCorpus(corpus, { limit: options.limit });
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Instances: next-sentence pairs and masking
// ---------------------------------------------------------------------------------------------------------------

/** The ids masking needs. */
export interface PretrainingVocab {
  size: number;
  clsId: number;
  sepId: number;
  maskId: number;
  padId: number;
  /** Ids a "random token" replacement is drawn from: every token except bracketed specials (`[PAD]`, `[UNK]`,
   * `[CLS]`, `[SEP]`, `[MASK]`, `[unused0]`, ...). */
  randomIds: Int32Array;
  /** 1 for a WordPiece continuation (`##ing`), 0 otherwise: whole-word masking keeps a word's pieces together. */
  continuation: Uint8Array;
}

/** The {@linkcode PretrainingVocab} of a vocabulary; throws naming the missing special token. */
export function pretrainingVocab(vocab: Vocab): PretrainingVocab {
  const need = (t: string) => {
    const id = vocab.id(t);
    if (id === undefined) {
      throw new Error(`${vocab.source}: the vocabulary has no ${t} token, which pre-training needs`);
    }
    return id;
  };
  const randomIds: number[] = [];
  vocab.tokens.forEach((t, i) => {
    if (!/^\[[^\]]*\]$/.test(t)) randomIds.push(i);
  });
  if (randomIds.length === 0) throw new Error(`${vocab.source}: the vocabulary has only special tokens`);
  return {
    size: vocab.size,
    clsId: need("[CLS]"),
    sepId: need("[SEP]"),
    maskId: need("[MASK]"),
    padId: need("[PAD]"),
    randomIds: Int32Array.from(randomIds),
    continuation: Uint8Array.from(vocab.tokens, (t) => (t.startsWith("##") ? 1 : 0)),
  };
}

/** What happened to a token chosen for prediction. */
export type MaskKind = "mask" | "random" | "keep";

/** Settings of the data creation (Google's `create_pretraining_data.py` flags). */
export interface PretrainingDataOptions {
  /** Tokens per instance including `[CLS]` and two `[SEP]` (default 128). */
  maxSeqLength?: number;
  /** Most predictions per instance (default 20). */
  maxPredictionsPerSeq?: number;
  /** Fraction of the (non-special) tokens chosen for prediction (default 0.15). */
  maskedLmProb?: number;
  /** Probability of a shorter target length, so the model also sees short inputs (default 0.1). */
  shortSeqProb?: number;
  /** Passes over the corpus, each with different pairs and masks (default 1; Google used 10). */
  dupeFactor?: number;
  /** Seed of every random choice (default 12345). */
  seed?: number;
  /**
   * Next-sentence pairs `[CLS] A [SEP] B [SEP]` with a 50% random B (BERT, default true), or one span of
   * consecutive sentences per instance, `[CLS] span [SEP]`, for masked-LM alone (RoBERTa's objective: every
   * token of the budget is text of one document, and no capacity goes to the easy NSP task).
   */
  nextSentence?: boolean;
  /**
   * Whole-word masking (Google's `--do_whole_word_mask`): the pieces of a word (`em ##bed ##ding`) are chosen
   * together, so the model cannot fill a masked piece from its unmasked neighbours (default false).
   */
  wholeWordMask?: boolean;
}

/** Masking split of the chosen tokens: 80% `[MASK]`, 10% random, 10% unchanged. */
export const MASK_SPLIT = { mask: 0.8, random: 0.1, keep: 0.1 } as const;

/** The result of {@linkcode maskTokens}. */
export interface MaskedTokens {
  /** The sequence with the chosen tokens replaced. */
  inputIds: number[];
  /** Chosen positions, ascending. */
  positions: number[];
  /** Original ids at `positions` (the prediction targets). */
  labels: number[];
  /** What was done at each chosen position. */
  kinds: MaskKind[];
}

/**
 * BERT's masked-LM corruption of one sequence. Candidates are all positions except `[CLS]`, `[SEP]` and `[PAD]`;
 * `min(maxPredictions, max(1, round(candidates * maskedLmProb)))` of them are chosen uniformly at random
 * (whole WordPiece tokens); each chosen token becomes `[MASK]` with probability 0.8, a random vocabulary token
 * (never a special one) with 0.1, and stays unchanged with 0.1 — the model must predict the original at every
 * chosen position, so it cannot tell which inputs to trust.
 *
 * Google's script counts `[CLS]`/`[SEP]` in the 15%; here the 15% is of the maskable tokens.
 */
export function maskTokens(
  ids: readonly number[],
  vocab: PretrainingVocab,
  rng: Rng,
  options: { maskedLmProb?: number; maxPredictions?: number; wholeWord?: boolean } = {},
): MaskedTokens {
  const prob = options.maskedLmProb ?? 0.15;
  const maxPredictions = options.maxPredictions ?? 20;
  // Candidate groups: single positions, or with wholeWord the positions of one word (a piece plus its ## pieces).
  const groups: number[][] = [];
  let count = 0;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id === vocab.clsId || id === vocab.sepId || id === vocab.padId) continue;
    const last = groups[groups.length - 1];
    if (options.wholeWord && vocab.continuation[id] && last && last[last.length - 1] === i - 1) last.push(i);
    else groups.push([i]);
    count++;
  }
  // Fisher-Yates, then take groups while they fit in k.
  for (let i = groups.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [groups[i], groups[j]] = [groups[j], groups[i]];
  }
  const k = Math.min(maxPredictions, count, Math.max(1, Math.round(count * prob)));
  const chosen: number[] = [];
  for (const g of groups) {
    if (chosen.length >= k) break;
    if (chosen.length + g.length > k) continue; // Google's script skips a word that would overshoot
    chosen.push(...g);
  }
  chosen.sort((a, b) => a - b);
  const inputIds = ids.slice();
  const kinds: MaskKind[] = [];
  for (const p of chosen) {
    const r = rng.next();
    if (r < MASK_SPLIT.mask) {
      inputIds[p] = vocab.maskId;
      kinds.push("mask");
    } else if (r < MASK_SPLIT.mask + MASK_SPLIT.keep) {
      kinds.push("keep");
    } else {
      inputIds[p] = vocab.randomIds[rng.int(vocab.randomIds.length)];
      kinds.push("random");
    }
  }
  return { inputIds, positions: chosen, labels: chosen.map((p) => ids[p]), kinds };
}

/**
 * Shortens a pair in place to at most `maxTokens` together: one token at a time from the longer of the two
 * (B on a tie), from its front or its back at random (Google's `truncate_seq_pair`, which avoids always
 * cutting the same end).
 */
export function truncatePair(a: number[], b: number[], maxTokens: number, rng: Rng): void {
  while (a.length + b.length > maxTokens) {
    const longer = a.length > b.length ? a : b;
    if (longer.length === 0) break;
    if (rng.next() < 0.5) longer.shift();
    else longer.pop();
  }
}

/** One pre-training example. */
export interface PretrainingInstance {
  /** `[CLS] A [SEP] B [SEP]` after masking (no padding). */
  inputIds: number[];
  /** The same before masking. */
  originalIds: number[];
  /** 0 for `[CLS]`, A and the first `[SEP]`; 1 for B and the last `[SEP]`. */
  segmentIds: number[];
  /** True when B is a span of another document (next-sentence label 1, NotNext); false when it follows A (0). */
  isRandomNext: boolean;
  /** Chosen positions (ascending), their original ids, and what masking did there. */
  mlmPositions: number[];
  mlmIds: number[];
  mlmKinds: MaskKind[];
  /** Index of the document A came from. */
  document: number;
}

/** Masks `originalIds` ({@linkcode maskTokens} with the data options) into one instance. */
function maskedInstance(
  originalIds: number[],
  segmentIds: number[],
  isRandomNext: boolean,
  document: number,
  vocab: PretrainingVocab,
  rng: Rng,
  options: PretrainingDataOptions,
): PretrainingInstance {
  const masked = maskTokens(originalIds, vocab, rng, {
    maskedLmProb: options.maskedLmProb,
    maxPredictions: options.maxPredictionsPerSeq,
    wholeWord: options.wholeWordMask,
  });
  return {
    inputIds: masked.inputIds,
    originalIds,
    segmentIds,
    isRandomNext,
    mlmPositions: masked.positions,
    mlmIds: masked.labels,
    mlmKinds: masked.kinds,
    document,
  };
}

function randInt(rng: Rng, lo: number, hi: number): number {
  return lo + rng.int(hi - lo + 1); // inclusive, like Python's randint
}

/**
 * Google's `create_instances_from_document`: packs the sentences of `docs[docIndex]` into chunks of about the
 * target length (`maxSeqLength - 3`, or shorter with probability `shortSeqProb`), splits each chunk into A and
 * B, and with probability 0.5 replaces B by a span of a random other document (the unused sentences of the
 * chunk are then put back). The coin is tossed before B is built: a chunk of a single sentence gets the next
 * sentence as B when the coin says IsNext. A document's last sentence left alone in a chunk (it has no next
 * sentence) is not used, and so neither is a one-sentence document: Google's script pairs such a sentence with a
 * random B, which makes more than half of the labels NotNext.
 *
 * @param docs documents → sentences → WordPiece ids
 */
export function createInstancesFromDocument(
  docs: readonly (readonly (readonly number[])[])[],
  docIndex: number,
  vocab: PretrainingVocab,
  rng: Rng,
  options: PretrainingDataOptions = {},
): PretrainingInstance[] {
  if (options.nextSentence === false) return createSpansFromDocument(docs[docIndex], docIndex, vocab, rng, options);
  const maxSeqLength = options.maxSeqLength ?? 128;
  const shortSeqProb = options.shortSeqProb ?? 0.1;
  const maxNumTokens = maxSeqLength - 3; // [CLS] A [SEP] B [SEP]
  if (maxNumTokens < 2) {
    throw new Error(`maxSeqLength must be >= 5 (room for [CLS] A [SEP] B [SEP]), got ${maxSeqLength}`);
  }
  if (docs.length < 2) throw new Error(`next-sentence prediction needs at least 2 documents, got ${docs.length}`);
  const doc = docs[docIndex];
  const target = rng.next() < shortSeqProb ? randInt(rng, 2, maxNumTokens) : maxNumTokens;
  const instances: PretrainingInstance[] = [];
  let chunk: (readonly number[])[] = [];
  let length = 0;
  for (let i = 0; i < doc.length; i++) {
    chunk.push(doc[i]);
    length += doc[i].length;
    if (i !== doc.length - 1 && length < target) continue;
    if (chunk.length === 1 && i === doc.length - 1) {
      // A lone last sentence has no next sentence. Google pairs it with a random B, which tilts the labels
      // towards NotNext; it is left out here (decided before the coin, so the labels stay 50/50).
      break;
    }
    const randomNext = rng.next() < 0.5;
    if (!randomNext && chunk.length === 1) chunk.push(doc[++i]); // B = the next sentence
    const aEnd = chunk.length >= 2 ? randInt(rng, 1, chunk.length - 1) : 1;
    const a: number[] = chunk.slice(0, aEnd).flat();
    let b: number[] = [];
    if (randomNext) {
      const bTarget = target - a.length;
      let other = docIndex;
      for (let tries = 0; tries < 10 && other === docIndex; tries++) other = rng.int(docs.length);
      if (other === docIndex) other = (docIndex + 1 + rng.int(docs.length - 1)) % docs.length;
      const randomDoc = docs[other];
      for (let j = randInt(rng, 0, randomDoc.length - 1); j < randomDoc.length; j++) {
        b.push(...randomDoc[j]);
        if (b.length >= bTarget) break;
      }
      i -= chunk.length - aEnd; // the unused sentences start the next chunk
    } else {
      b = chunk.slice(aEnd).flat();
    }
    truncatePair(a, b, maxNumTokens, rng);
    if (a.length >= 1 && b.length >= 1) {
      const originalIds = [vocab.clsId, ...a, vocab.sepId, ...b, vocab.sepId];
      const segmentIds = originalIds.map((_, p) => (p < a.length + 2 ? 0 : 1));
      instances.push(maskedInstance(originalIds, segmentIds, randomNext, docIndex, vocab, rng, options));
    }
    chunk = [];
    length = 0;
  }
  return instances;
}

/**
 * Masked-LM instances without next-sentence pairs (RoBERTa's "DOC-SENTENCES"): consecutive sentences of one
 * document packed into `[CLS] span [SEP]` of about `maxSeqLength - 2` tokens (shorter with probability
 * `shortSeqProb`); a sentence longer than the budget continues in the next instance. Every instance is masked as in
 * {@linkcode maskTokens}; `isRandomNext` is false and all segment ids are 0.
 */
export function createSpansFromDocument(
  doc: readonly (readonly number[])[],
  docIndex: number,
  vocab: PretrainingVocab,
  rng: Rng,
  options: PretrainingDataOptions = {},
): PretrainingInstance[] {
  const maxNumTokens = (options.maxSeqLength ?? 128) - 2; // [CLS] span [SEP]
  if (maxNumTokens < 1) throw new Error(`maxSeqLength must be >= 3 for [CLS] span [SEP], got ${options.maxSeqLength}`);
  const shortSeqProb = options.shortSeqProb ?? 0.1;
  const instances: PretrainingInstance[] = [];
  const draw = () => (rng.next() < shortSeqProb ? randInt(rng, 2, maxNumTokens) : maxNumTokens);
  const emit = (tokens: readonly number[]) => {
    const originalIds = [vocab.clsId, ...tokens, vocab.sepId];
    const segmentIds = new Array(originalIds.length).fill(0);
    instances.push(maskedInstance(originalIds, segmentIds, false, docIndex, vocab, rng, options));
  };
  let target = draw();
  let span: number[] = [];
  for (const sentence of doc) {
    if (span.length > 0 && span.length + sentence.length > target) {
      emit(span);
      span = [];
      target = draw();
    }
    span.push(...sentence);
    while (span.length >= target) { // a sentence longer than the budget continues in the next instance
      emit(span.slice(0, target));
      span = span.slice(target);
      target = draw();
    }
  }
  if (span.length > 0) emit(span);
  return instances;
}

/** Documents → sentences → WordPiece ids (empty sentences and documents dropped). */
export function tokenizeCorpus(corpus: Corpus, tokenizer: FullTokenizer): number[][][] {
  const docs: number[][][] = [];
  for (const d of corpus.documents) {
    const sentences = d.map((s) => tokenizer.encodeIds(s)).filter((ids) => ids.length > 0);
    if (sentences.length) docs.push(sentences);
  }
  return docs;
}

/** Pre-training instances as fixed-size matrices (the model's inputs and targets). */
export interface PretrainingSet {
  n: number;
  maxSeqLength: number;
  /** Prediction slots per row (`maxPredictionsPerSeq`). */
  maxPredictions: number;
  /** `[n, maxSeqLength]`, padded with `[PAD]`. */
  inputIds: Int32Array;
  /** `[n, maxSeqLength]` */
  tokenTypeIds: Int32Array;
  /** `[n, maxSeqLength]` */
  attentionMask: Int32Array;
  /** `[n, maxPredictions]`, unused slots 0. */
  mlmPositions: Int32Array;
  /** `[n, maxPredictions]` original ids, unused slots -1 (ignored by the loss). */
  mlmIds: Int32Array;
  /** `[n]`: 0 = IsNext, 1 = NotNext (random B), the convention of Google's and Hugging Face's models. */
  nspLabels: Int32Array;
  /** Counts for reports. */
  stats: { documents: number; tokens: number; predictions: number; randomNext: number };
  /** The settings used (resolved defaults). */
  options: Required<PretrainingDataOptions>;
  /** Where the data came from and which vocabulary made it. */
  metadata: { source: string; vocabSize: number; vocabFingerprint: string };
}

/** FNV-1a (32-bit, hex) over the vocabulary's tokens: pre-training data and a vocabulary file must agree. */
export function vocabFingerprint(vocab: Vocab): string {
  let h = 0x811c9dc5;
  for (const t of vocab.tokens) {
    for (let i = 0; i < t.length; i++) h = Math.imul(h ^ t.charCodeAt(i), 0x01000193);
    h = Math.imul(h ^ 10, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}

/** Resolves defaults and checks the data options. */
export function resolveDataOptions(options: PretrainingDataOptions = {}): Required<PretrainingDataOptions> {
  const o: Required<PretrainingDataOptions> = {
    maxSeqLength: options.maxSeqLength ?? 128,
    maxPredictionsPerSeq: options.maxPredictionsPerSeq ?? 20,
    maskedLmProb: options.maskedLmProb ?? 0.15,
    shortSeqProb: options.shortSeqProb ?? 0.1,
    dupeFactor: options.dupeFactor ?? 1,
    seed: options.seed ?? 12345,
    nextSentence: options.nextSentence ?? true,
    wholeWordMask: options.wholeWordMask ?? false,
  };
  const bad = (what: string) => {
    throw new Error(`pre-training data: ${what}`);
  };
  if (!(Number.isInteger(o.maxSeqLength) && o.maxSeqLength >= 5)) {
    bad(`maxSeqLength must be >= 5, got ${o.maxSeqLength}`);
  }
  if (!(Number.isInteger(o.maxPredictionsPerSeq) && o.maxPredictionsPerSeq >= 1)) {
    bad(`maxPredictionsPerSeq must be an integer >= 1, got ${o.maxPredictionsPerSeq}`);
  }
  if (!(o.maskedLmProb > 0 && o.maskedLmProb < 1)) bad(`maskedLmProb must be in (0, 1), got ${o.maskedLmProb}`);
  if (!(o.shortSeqProb >= 0 && o.shortSeqProb <= 1)) bad(`shortSeqProb must be in [0, 1], got ${o.shortSeqProb}`);
  if (!(Number.isInteger(o.dupeFactor) && o.dupeFactor >= 1)) {
    bad(`dupeFactor must be an integer >= 1, got ${o.dupeFactor}`);
  }
  if (!Number.isInteger(o.seed)) bad(`seed must be an integer, got ${o.seed}`);
  return o;
}

/**
 * Instances for every document (`dupeFactor` passes, documents in a seeded random order), shuffled, as in
 * Google's script. Deterministic: the same documents and options give the same instances.
 */
export function createInstances(
  docs: readonly (readonly (readonly number[])[])[],
  vocab: PretrainingVocab,
  options: PretrainingDataOptions = {},
): PretrainingInstance[] {
  const o = resolveDataOptions(options);
  const rng = new Rng(mixSeed(o.seed, 0x9e7a));
  const order = shuffledOrder(docs.length, rng);
  const instances: PretrainingInstance[] = [];
  for (let dupe = 0; dupe < o.dupeFactor; dupe++) {
    for (const d of order) instances.push(...createInstancesFromDocument(docs, d, vocab, rng, o));
  }
  const perm = shuffledOrder(instances.length, rng);
  return Array.from(perm, (i) => instances[i]);
}

/** Packs instances into a {@linkcode PretrainingSet}. */
export function instancesToSet(
  instances: readonly PretrainingInstance[],
  vocab: PretrainingVocab,
  options: PretrainingDataOptions = {},
  info: { documents?: number; source?: string; vocabFingerprint?: string } = {},
): PretrainingSet {
  const o = resolveDataOptions(options);
  const n = instances.length, L = o.maxSeqLength, P = o.maxPredictionsPerSeq;
  const set: PretrainingSet = {
    n,
    maxSeqLength: L,
    maxPredictions: P,
    inputIds: new Int32Array(n * L).fill(vocab.padId), // [n, L]
    tokenTypeIds: new Int32Array(n * L), // [n, L]
    attentionMask: new Int32Array(n * L), // [n, L]
    mlmPositions: new Int32Array(n * P), // [n, P]
    mlmIds: new Int32Array(n * P).fill(-1), // [n, P]
    nspLabels: new Int32Array(n), // [n]
    stats: { documents: info.documents ?? 0, tokens: 0, predictions: 0, randomNext: 0 },
    options: o,
    metadata: {
      source: info.source ?? "<memory>",
      vocabSize: vocab.size,
      vocabFingerprint: info.vocabFingerprint ?? "",
    },
  };
  instances.forEach((inst, r) => {
    if (inst.inputIds.length > L) throw new Error(`instance ${r} has ${inst.inputIds.length} tokens > ${L}`);
    if (inst.mlmPositions.length > P) {
      throw new Error(`instance ${r} has ${inst.mlmPositions.length} predictions > ${P}`);
    }
    set.inputIds.set(inst.inputIds, r * L);
    set.tokenTypeIds.set(inst.segmentIds, r * L);
    set.attentionMask.fill(1, r * L, r * L + inst.inputIds.length);
    set.mlmPositions.set(inst.mlmPositions, r * P);
    set.mlmIds.set(inst.mlmIds, r * P);
    set.nspLabels[r] = inst.isRandomNext ? 1 : 0;
    set.stats.tokens += inst.inputIds.length;
    set.stats.predictions += inst.mlmPositions.length;
    set.stats.randomNext += inst.isRandomNext ? 1 : 0;
  });
  return set;
}

/**
 * Corpus → tokenized documents → instances → matrices, in one call.
 *
 * @example
 * ```ts
 * const corpus = await readImdbCorpus({ limit: 500 });
 * const set = createPretrainingData(corpus, tokenizer, { maxSeqLength: 64, seed: 1 });
 * ```
 */
export function createPretrainingData(
  corpus: Corpus,
  tokenizer: FullTokenizer,
  options: PretrainingDataOptions = {},
): PretrainingSet {
  const docs = tokenizeCorpus(corpus, tokenizer);
  if (docs.length < 2) {
    throw new Error(`${corpus.source}: ${docs.length} non-empty document(s); next-sentence prediction needs >= 2`);
  }
  const vocab = pretrainingVocab(tokenizer.vocab);
  return instancesToSet(createInstances(docs, vocab, options), vocab, options, {
    documents: docs.length,
    source: corpus.source,
    vocabFingerprint: vocabFingerprint(tokenizer.vocab),
  });
}

/** What a {@linkcode PretrainingSet} holds, measured from its matrices (for reports and the notebook). */
export interface PretrainingSummary {
  instances: number;
  /** Non-padding tokens, `[CLS]`/`[SEP]` included. */
  tokens: number;
  /** Masked-LM targets. */
  predictions: number;
  /** Targets / maskable tokens (all but `[CLS]` and the two `[SEP]`): about `maskedLmProb`. */
  chosenFraction: number;
  /** Shares of the targets whose input is `[MASK]`, another token, or the original token. */
  maskShare: number;
  randomShare: number;
  keptShare: number;
  /** Share of instances whose B comes from another document (next-sentence label 1). */
  notNextShare: number;
  /** Mean non-padding length. */
  meanLength: number;
}

/** Counts masking and next-sentence labels in `set` (`maskId`: the `[MASK]` id). */
export function summarizePretrainingData(set: PretrainingSet, maskId: number): PretrainingSummary {
  const L = set.maxSeqLength, P = set.maxPredictions;
  let tokens = 0, predictions = 0, masked = 0, kept = 0, notNext = 0;
  for (let r = 0; r < set.n; r++) {
    for (let j = 0; j < L; j++) tokens += set.attentionMask[r * L + j];
    for (let j = 0; j < P; j++) {
      const label = set.mlmIds[r * P + j];
      if (label < 0) continue;
      predictions++;
      const input = set.inputIds[r * L + set.mlmPositions[r * P + j]];
      if (input === maskId) masked++;
      else if (input === label) kept++;
    }
    notNext += set.nspLabels[r];
  }
  const share = (k: number) => (predictions ? k / predictions : NaN);
  return {
    instances: set.n,
    tokens,
    predictions,
    chosenFraction: predictions / Math.max(1, tokens - 3 * set.n),
    maskShare: share(masked),
    randomShare: share(predictions - masked - kept),
    keptShare: share(kept),
    notNextShare: set.n ? notNext / set.n : NaN,
    meanLength: set.n ? tokens / set.n : NaN,
  };
}

/** Splits a corpus into two by documents: the last `fraction` (at least 2 documents) for evaluation. */
export function splitCorpus(corpus: Corpus, fraction: number): { train: Corpus; dev: Corpus } {
  const n = corpus.documents.length;
  const devN = Math.max(2, Math.round(n * fraction));
  if (n - devN < 2) throw new Error(`${corpus.source}: ${n} documents are too few to hold out ${devN} for evaluation`);
  return {
    train: { documents: corpus.documents.slice(0, n - devN), source: corpus.source },
    dev: { documents: corpus.documents.slice(n - devN), source: `${corpus.source} [held out]` },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Batches and the loss
// ---------------------------------------------------------------------------------------------------------------

/** Tensors of some rows of a {@linkcode PretrainingSet} (free with {@linkcode disposePretrainingBatch}). */
export interface PretrainingBatch {
  /** int32 `[batch, seq]` (trailing columns that are padding in every row are cut). */
  inputIds: tf.Tensor2D;
  tokenTypeIds: tf.Tensor2D;
  attentionMask: tf.Tensor2D;
  /** int32 `[batch, maxPredictions]` */
  mlmPositions: tf.Tensor2D;
  /** int32 `[batch, maxPredictions]`, -1 in unused slots */
  mlmIds: tf.Tensor2D;
  /** int32 `[batch]` */
  nspLabels: tf.Tensor1D;
  size: number;
}

/** Builds the tensors of rows `rows` of `set`. */
export function pretrainingBatch(set: PretrainingSet, rows: ArrayLike<number>): PretrainingBatch {
  const L = set.maxSeqLength, P = set.maxPredictions, b = rows.length;
  if (b === 0) throw new Error("pretrainingBatch: no rows");
  let seq = 1;
  for (let r = 0; r < b; r++) {
    const i = rows[r];
    if (!(Number.isInteger(i) && i >= 0 && i < set.n)) {
      throw new Error(`pretrainingBatch: row ${i} outside 0..${set.n - 1}`);
    }
    for (let j = L - 1; j >= seq; j--) {
      if (set.attentionMask[i * L + j]) {
        seq = j + 1;
        break;
      }
    }
  }
  const ids = new Int32Array(b * seq), types = new Int32Array(b * seq), mask = new Int32Array(b * seq);
  const pos = new Int32Array(b * P), labels = new Int32Array(b * P), nsp = new Int32Array(b);
  for (let r = 0; r < b; r++) {
    const i = rows[r];
    ids.set(set.inputIds.subarray(i * L, i * L + seq), r * seq);
    types.set(set.tokenTypeIds.subarray(i * L, i * L + seq), r * seq);
    mask.set(set.attentionMask.subarray(i * L, i * L + seq), r * seq);
    pos.set(set.mlmPositions.subarray(i * P, (i + 1) * P), r * P);
    labels.set(set.mlmIds.subarray(i * P, (i + 1) * P), r * P);
    nsp[r] = set.nspLabels[i];
  }
  return {
    inputIds: tf.tensor2d(ids, [b, seq], "int32"),
    tokenTypeIds: tf.tensor2d(types, [b, seq], "int32"),
    attentionMask: tf.tensor2d(mask, [b, seq], "int32"),
    mlmPositions: tf.tensor2d(pos, [b, P], "int32"),
    mlmIds: tf.tensor2d(labels, [b, P], "int32"),
    nspLabels: tf.tensor1d(nsp, "int32"),
    size: b,
  };
}

/** Frees a {@linkcode PretrainingBatch}. */
export function disposePretrainingBatch(batch: PretrainingBatch): void {
  for (const t of [batch.inputIds, batch.tokenTypeIds, batch.attentionMask, batch.mlmPositions, batch.mlmIds]) {
    t.dispose();
  }
  batch.nspLabels.dispose();
}

/** The pre-training loss and its two parts (scalars; dispose them, or call inside `tf.tidy`). */
export interface PretrainingLoss {
  /** `mlm + nsp` */
  loss: tf.Scalar;
  /** Mean cross-entropy over the chosen tokens of the batch. */
  mlm: tf.Scalar;
  /** Mean next-sentence cross-entropy. */
  nsp: tf.Scalar;
}

/**
 * Runs the `pretraining` head on a batch and returns BERT's loss: the masked-LM cross-entropy averaged over all
 * chosen tokens of the batch (Google's `sum(weights * ce) / sum(weights)`), plus the next-sentence
 * cross-entropy averaged over the batch (`nsp: false`: masked-LM alone, `nsp` is then 0).
 */
export function pretrainingLoss(
  model: BertModel,
  batch: PretrainingBatch,
  options: { training?: boolean; seed?: number; nsp?: boolean } = {},
): PretrainingLoss {
  if (model.head !== "pretraining") {
    throw new Error(`pre-training needs a model with the "pretraining" head, this one has "${model.head}"`);
  }
  return tf.tidy(() => {
    const out = model.forward(batch, {
      training: options.training,
      seed: options.seed,
      mlmPositions: batch.mlmPositions,
    });
    const v = out.mlmLogits!.shape[2];
    const mlm = sparseSoftmaxCrossEntropy(
      tf.reshape(out.mlmLogits!, [-1, v]), // [batch*P, vocab]
      tf.reshape(batch.mlmIds, [-1]), // [batch*P], -1 in unused slots
    );
    const nsp = options.nsp === false ? tf.scalar(0) : softmaxCrossEntropy(out.nspLogits!, batch.nspLabels); // [batch, 2]
    return { loss: tf.add(mlm, nsp) as tf.Scalar, mlm, nsp };
  });
}

/** Loss and accuracy of the two tasks on a {@linkcode PretrainingSet}. */
export interface PretrainingMetrics {
  loss: number;
  mlmLoss: number;
  /** Share of chosen tokens whose original is the top prediction. */
  mlmAccuracy: number;
  /** NaN when the data has no next-sentence pairs (`nextSentence: false`). */
  nspLoss: number;
  /** NaN when the data has no next-sentence pairs. */
  nspAccuracy: number;
}

/** Evaluates `model` (no dropout) on every row of `set`. */
export function evaluatePretraining(
  model: BertModel,
  set: PretrainingSet,
  options: { batchSize?: number } = {},
): PretrainingMetrics {
  const withNsp = set.options.nextSentence;
  const batchSize = options.batchSize ?? 64;
  let mlmSum = 0, mlmN = 0, mlmRight = 0, nspSum = 0, nspRight = 0;
  for (let start = 0; start < set.n; start += batchSize) {
    const rows = Array.from({ length: Math.min(batchSize, set.n - start) }, (_, j) => start + j);
    const batch = pretrainingBatch(set, rows);
    try {
      const [ce, hit, nce, nhit, valid] = tf.tidy(() => {
        const out = model.forward(batch, { training: false, mlmPositions: batch.mlmPositions });
        const logits = out.mlmLogits!; // [b, P, vocab]
        const v = logits.shape[2];
        const labels = tf.reshape(batch.mlmIds, [-1]); // [b*P]
        const validMask = tf.cast(tf.greaterEqual(labels, 0), "float32"); // [b*P]
        const logp = tf.logSoftmax(tf.reshape(logits, [-1, v])); // [b*P, vocab]
        const picked = tf.sum(tf.mul(tf.oneHot(tf.maximum(labels, tf.zerosLike(labels)), v), logp), -1); // [b*P]
        const correct = tf.cast(tf.equal(tf.argMax(logp, -1), labels), "float32"); // [b*P]
        const nlogp = tf.logSoftmax(out.nspLogits!); // [b, 2]
        const npicked = tf.sum(tf.mul(tf.oneHot(batch.nspLabels, 2), nlogp), -1); // [b]
        const ncorrect = tf.cast(tf.equal(tf.argMax(nlogp, -1), batch.nspLabels), "float32"); // [b]
        return [
          tf.neg(tf.sum(tf.mul(picked, validMask))),
          tf.sum(tf.mul(correct, validMask)),
          tf.neg(tf.sum(npicked)),
          tf.sum(ncorrect),
          tf.sum(validMask),
        ];
      });
      const values = [ce, hit, nce, nhit, valid].map((t) => t.dataSync()[0]);
      tf.dispose([ce, hit, nce, nhit, valid]);
      mlmSum += values[0];
      mlmRight += values[1];
      nspSum += values[2];
      nspRight += values[3];
      mlmN += values[4];
    } finally {
      disposePretrainingBatch(batch);
    }
  }
  const mlmLoss = mlmN ? mlmSum / mlmN : NaN, nspLoss = set.n && withNsp ? nspSum / set.n : NaN;
  return {
    loss: withNsp ? mlmLoss + nspLoss : mlmLoss,
    mlmLoss,
    mlmAccuracy: mlmN ? mlmRight / mlmN : NaN,
    nspLoss,
    nspAccuracy: set.n && withNsp ? nspRight / set.n : NaN,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// 4. Training: a task adapter for lib/training/train.ts's loop
// ---------------------------------------------------------------------------------------------------------------

/** Options of {@linkcode pretrainingTask}. */
export interface PretrainingTaskOptions {
  /** Training instances. */
  train: PretrainingSet;
  /** Held-out instances (e.g. from other documents): MLM/NSP loss and accuracy at each evaluation. */
  dev?: PretrainingSet;
  /** `do_lower_case` recorded in the checkpoints (default true). */
  lowerCase?: boolean;
}

/** The metrics the pre-training evaluation reports (`loss` = MLM + NSP, lower is better). */
export const PRETRAINING_METRICS = ["loss", "mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy", "perplexity"];

/** The scalar metrics of a {@linkcode PretrainingMetrics}, snake_case (for `eval_history`); no `nsp_*` without NSP. */
export function pretrainingScalars(m: PretrainingMetrics): Record<string, number> {
  const all: Record<string, number> = {
    loss: m.loss,
    mlm_loss: m.mlmLoss,
    mlm_accuracy: m.mlmAccuracy,
    nsp_loss: m.nspLoss,
    nsp_accuracy: m.nspAccuracy,
    perplexity: Math.exp(m.mlmLoss),
  };
  return Object.fromEntries(Object.entries(all).filter(([k, v]) => !(k.startsWith("nsp_") && Number.isNaN(v))));
}

/** One line of held-out pre-training figures: MLM accuracy, and NSP accuracy when the data has pairs. */
export function pretrainingHeadline(m: PretrainingMetrics): string {
  const nsp = Number.isNaN(m.nspAccuracy) ? "" : `, NSP accuracy ${(100 * m.nspAccuracy).toFixed(1)}%`;
  return `MLM accuracy ${(100 * m.mlmAccuracy).toFixed(1)}%${nsp}`;
}

/**
 * Masked-LM + next-sentence pre-training as a `TrainTask` for `train()` in lib/training/train.ts, which brings the
 * schedule, AdamW, clipping, checkpoints and exact resume. The masks are static (made once by
 * {@linkcode createPretrainingData}, as in Google's BERT; `dupeFactor` gives each sentence several masks).
 */
export function pretrainingTask(options: PretrainingTaskOptions): TrainTask<PretrainingBatch, PretrainingMetrics> {
  const { train: set, dev } = options;
  const nsp = set.options.nextSentence;
  if (dev && dev.options.nextSentence !== nsp) {
    throw new Error("pre-training: the training and held-out data differ in nextSentence (pairs vs single spans)");
  }
  return {
    name: "pretraining",
    head: "pretraining",
    n: set.n,
    lowerCase: options.lowerCase ?? true,
    defaultMetric: dev ? "loss" : undefined,
    metricNames: nsp ? PRETRAINING_METRICS : PRETRAINING_METRICS.filter((m) => !m.startsWith("nsp_")),
    greaterIsBetter: (name) => name.endsWith("accuracy"),
    async check(model, { vocabPath }) {
      const { Vocab } = await import("../../text/vocab.ts");
      const vocab = await Vocab.load(vocabPath);
      for (const [what, s] of [["training", set], ["held-out", dev]] as const) {
        if (!s) continue;
        if (s.metadata.vocabFingerprint !== vocabFingerprint(vocab)) {
          throw new Error(
            `the ${what} pre-training data was made with another vocabulary (${s.metadata.vocabSize} tokens) ` +
              `than ${vocabPath} (${vocab.size} tokens)`,
          );
        }
        if (s.maxSeqLength > model.config.maxPositionEmbeddings) {
          throw new Error(
            `the ${what} data has sequences of ${s.maxSeqLength} tokens, more than the model's ` +
              `max_position_embeddings ${model.config.maxPositionEmbeddings}`,
          );
        }
      }
      if (vocab.size > model.config.vocabSize) {
        throw new Error(
          `${vocabPath} has ${vocab.size} tokens, the model's embedding table only ${model.config.vocabSize}`,
        );
      }
    },
    async fingerprint() {
      const { sha256Hex } = await import("../../io/fsutil.ts");
      const parts = [set.inputIds, set.mlmIds, set.nspLabels];
      const all = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
      let at = 0;
      for (const p of parts) {
        all.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), at);
        at += p.byteLength;
      }
      return (await sha256Hex(all)).slice(0, 16);
    },
    describe: () => ({
      source: set.metadata.source,
      task: "pretraining",
      max_seq_length: set.maxSeqLength,
      max_predictions_per_seq: set.maxPredictions,
      masked_lm_prob: set.options.maskedLmProb,
      short_seq_prob: set.options.shortSeqProb,
      dupe_factor: set.options.dupeFactor,
      data_seed: set.options.seed,
      next_sentence: nsp,
      whole_word_mask: set.options.wholeWordMask,
      documents: set.stats.documents,
      vocab_size: set.metadata.vocabSize,
    }),
    batch: (rows) => pretrainingBatch(set, rows),
    loss(model, batch, { training, seed }) {
      const parts = pretrainingLoss(model, batch, { training, seed, nsp });
      parts.mlm.dispose();
      parts.nsp.dispose();
      return parts.loss;
    },
    disposeBatch: disposePretrainingBatch,
    evaluate: dev
      ? (model, { batchSize }) => {
        const m = evaluatePretraining(model, dev, { batchSize });
        return {
          metrics: pretrainingScalars(m),
          headline: {
            name: "mlm_accuracy",
            value: m.mlmAccuracy,
            text: pretrainingHeadline(m),
          },
          details: m,
        };
      }
      : undefined,
  };
}

/**
 * Hyper-parameters for pre-training a tiny BERT from scratch in minutes (BERT-Base's own: lr 1e-4, batch 256,
 * 1M steps, 10k warm-up steps). Larger models need a lower learning rate.
 */
export const PRETRAINING_DEFAULTS = {
  learningRate: 1e-3,
  batchSize: 32,
  warmupRatio: 0.05,
  weightDecay: 0.01,
  maxGradNorm: 1,
  maxSteps: 1000,
} as const;

/** Options of {@linkcode pretrain}: `train()`'s options with the data as pre-training sets. */
export interface PretrainOptions
  extends Omit<TrainOptions<PretrainingBatch, PretrainingMetrics>, "adapter" | "train" | "dev"> {
  train: PretrainingSet;
  dev?: PretrainingSet;
  /** `do_lower_case` of the checkpoints (default true). */
  lowerCase?: boolean;
}

/**
 * Pre-trains `options.model` (head `pretraining`) with `train()` and the {@linkcode pretrainingTask} adapter;
 * hyper-parameters left out take {@linkcode PRETRAINING_DEFAULTS} (not the fine-tuning defaults), or the
 * checkpoint's when resuming one.
 *
 * @example
 * ```ts
 * const model = new BertModel(config, { head: "pretraining" });
 * const result = await pretrain({ model, vocabPath, train: set, outputDir: "outputs/pretrain", maxSteps: 200 });
 * ```
 */
export async function pretrain(options: PretrainOptions): Promise<TrainResult<PretrainingMetrics>> {
  const { train: set, dev, lowerCase, ...rest } = options;
  let resuming = false; // then the checkpoint's hyper-parameters apply
  if (options.resume) {
    const target = typeof options.resume === "string" ? options.resume : options.outputDir;
    resuming = (await exists(join(target, "trainer_state.json"))) || (await latestCheckpoint(target)) !== undefined;
  }
  const defaults = resuming ? {} : PRETRAINING_DEFAULTS;
  return await train<PretrainingBatch, PretrainingMetrics>({
    ...defaults,
    ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)),
    model: options.model,
    vocabPath: options.vocabPath,
    outputDir: options.outputDir,
    adapter: pretrainingTask({ train: set, dev, lowerCase }),
  });
}

// ---------------------------------------------------------------------------------------------------------------
// 5. Showing an instance
// ---------------------------------------------------------------------------------------------------------------

/** One row per token of an instance: what BERT sees, what it must predict, and its segment. */
export function describeInstance(
  instance: PretrainingInstance,
  tokenizer: FullTokenizer,
): { position: number; segment: number; original: string; input: string; target: string; masking: string }[] {
  const kinds = new Map(instance.mlmPositions.map((p, i) => [p, instance.mlmKinds[i]]));
  const original = tokenizer.convertIdsToTokens(instance.originalIds);
  const input = tokenizer.convertIdsToTokens(instance.inputIds);
  return original.map((t, p) => ({
    position: p,
    segment: instance.segmentIds[p],
    original: t,
    input: input[p],
    target: kinds.has(p) ? t : "",
    masking: kinds.get(p) ?? "",
  }));
}

/** A two-line plain-text view of an instance (for terminals): the original, then what BERT sees. */
export function instanceText(instance: PretrainingInstance, tokenizer: FullTokenizer): string {
  const rows = describeInstance(instance, tokenizer);
  const width = rows.map((r) => Math.max(r.original.length, r.input.length));
  const line = (pick: (r: (typeof rows)[number]) => string) => rows.map((r, i) => pick(r).padEnd(width[i])).join(" ");
  return `${instance.isRandomNext ? "NotNext" : "IsNext"}\noriginal:  ${line((r) => r.original)}\n` +
    `BERT sees: ${line((r) => r.input)}`;
}

const KIND_STYLE: Record<MaskKind, string> = {
  mask: "background:#fde2a7",
  random: "background:#f9c0c0",
  keep: "background:#c8e6c9",
};

/**
 * An HTML table of an instance: the original tokens above what BERT sees, chosen tokens coloured by what
 * masking did (yellow `[MASK]`, red random, green unchanged), segment B shaded, and the next-sentence label.
 */
export function instanceHtml(instance: PretrainingInstance, tokenizer: FullTokenizer, caption = ""): string {
  const rows = describeInstance(instance, tokenizer);
  const cell = (text: string, style: string) => `<td style="padding:2px 4px;${style}">${escapeHtml(text)}</td>`;
  const seg = (r: { segment: number }) => (r.segment ? "border-bottom:3px solid #90caf9;" : "");
  const original = rows.map((r) => cell(r.original, seg(r) + (r.masking ? "font-weight:bold;" : ""))).join("");
  const input = rows.map((r) => cell(r.input, seg(r) + (r.masking ? KIND_STYLE[r.masking as MaskKind] : ""))).join("");
  const label = instance.isRandomNext ? "NotNext (B is from another document)" : "IsNext (B follows A)";
  return `<table style="border-collapse:collapse;font-family:monospace;font-size:12px">` +
    `<caption style="text-align:left">${escapeHtml(caption)} next-sentence label: <b>${label}</b>; ` +
    `<span style="${KIND_STYLE.mask}">[MASK]</span> <span style="${KIND_STYLE.random}">random</span> ` +
    `<span style="${KIND_STYLE.keep}">kept</span>; segment B underlined blue</caption>` +
    `<tr><th style="text-align:left">original</th>${original}</tr>` +
    `<tr><th style="text-align:left">BERT sees</th>${input}</tr></table>`;
}
