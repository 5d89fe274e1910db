/**
 * Pre-training BERT from scratch (Devlin et al., 2018, section 3.1), step 1, the **corpus**: documents made of
 * sentences. {@linkcode parseCorpusText} reads any text file with one document per blank-line-separated block (one
 * sentence per line, or lines split by the simple {@linkcode splitSentences}); {@linkcode readImdbCorpus} streams IMDB
 * reviews out of the shared `aclImdb_v1_train_test.tar.gz` (lib/io/tar.ts), one review = one document.
 *
 * The steps: corpus.ts (documents) → masking.ts and instances.ts (next-sentence pairs, masked tokens, matrices) →
 * task.ts (batches, the loss, the training-loop adapter, `pretrain`) → show.ts (an instance as a table).
 * @module
 */
import { exists, projectRoot } from "../../io/fsutil.ts";
import { tarGzEntries } from "../../io/tar.ts";

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

// ---- IMDB ----

const utf8 = new TextDecoder();

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
