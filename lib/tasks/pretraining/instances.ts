/**
 * Pre-training, step 2b, the **instances**, as Google's `create_pretraining_data.py` makes them: sentences of a
 * document are packed into a chunk of about `maxSeqLength - 3` tokens, split into A and B; half of the time B is the
 * real continuation (next-sentence label 0, IsNext), half of the time it is a span of another document (label 1,
 * NotNext); the pair shares the length budget and is truncated longest-first (from the front or the back at
 * random). Then the tokens are masked (masking.ts). Everything is drawn from one seeded PRNG, so the same corpus and
 * seed give the same data. {@linkcode createPretrainingData} runs it all and packs the instances into matrices
 * ({@linkcode PretrainingSet}); {@linkcode summarizePretrainingData} measures the proportions on the data.
 * @module
 */
import type { FullTokenizer } from "../../text/tokenizer.ts";
import { mixSeed, Rng, shuffledOrder } from "../../training/rng.ts";
import type { Corpus } from "./corpus.ts";
import { type MaskKind, maskTokens, type PretrainingVocab, pretrainingVocab, vocabFingerprint } from "./masking.ts";

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

/**
 * The masked-LM yardstick of always guessing one token: the most frequent target of `set` (the first one met on a
 * tie), with its count and its share of all targets, i.e. the accuracy that guess would get.
 */
export function mostFrequentTarget(set: PretrainingSet): { id: number; count: number; share: number } {
  const counts = new Map<number, number>();
  for (const id of set.mlmIds) if (id >= 0) counts.set(id, (counts.get(id) ?? 0) + 1);
  let id = -1, count = 0, total = 0;
  for (const [t, c] of counts) {
    total += c;
    if (c > count) [id, count] = [t, c];
  }
  return { id, count, share: total ? count / total : NaN };
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
