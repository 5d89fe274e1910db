/**
 * Looking inside BERT, for the "how BERT learns" notebook: what the pre-training heads predict
 * ({@linkcode fillMask}, {@linkcode nextSentence}), where attention goes ({@linkcode attentionMaps}), and the
 * contextual word vectors the encoder computes ({@linkcode wordVectors}) compared with the context-free input
 * embedding ({@linkcode staticVector}) by {@linkcode cosine} similarity. {@linkcode sentenceFeatures} and
 * {@linkcode linearProbe} show the paper's feature-based use of BERT (section 5.3: frozen hidden states of the
 * last layers, here fed to a logistic regression).
 *
 * Every function runs one text (or a small batch) without dropout and disposes its tensors.
 * @module
 */
import { tf } from "../backends/backend.ts";
import type { BertModel } from "../model/model.ts";
import type { FullTokenizer } from "../text/tokenizer.ts";

/** A text (or pair) as model inputs. */
export interface EncodedText {
  /** `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, then `[PAD]`s up to `padTo`. */
  ids: number[];
  /** The tokens of `ids`. */
  tokens: string[];
  /** 0 for `[CLS]`, A and its `[SEP]`; 1 for B and its `[SEP]`; 0 for padding. */
  tokenTypeIds: number[];
  /** 1 for real tokens, 0 for padding. */
  attentionMask: number[];
}

/** Options of {@linkcode encodeText}. */
export interface EncodeOptions {
  /** A second segment (sentence B). */
  textB?: string;
  /** Pad with `[PAD]` (attention mask 0) to this length. */
  padTo?: number;
  /** Longest input accepted (default: the model's `max_position_embeddings`). */
  maxLength?: number;
}

/** Tokenizes `text` (and `textB`) with the special tokens BERT expects; throws when it is too long. */
export function encodeText(tokenizer: FullTokenizer, text: string, options: EncodeOptions = {}): EncodedText {
  for (const [name, id] of [["[CLS]", tokenizer.clsId], ["[SEP]", tokenizer.sepId]] as const) {
    if (id < 0) throw new Error(`the vocabulary ${tokenizer.vocab.source} has no ${name} token`);
  }
  const a = tokenizer.encodeIds(text);
  const ids = [tokenizer.clsId, ...a, tokenizer.sepId];
  const tokenTypeIds = ids.map(() => 0);
  if (options.textB !== undefined) {
    const b = tokenizer.encodeIds(options.textB);
    ids.push(...b, tokenizer.sepId);
    tokenTypeIds.push(...b.map(() => 1), 1);
  }
  const max = options.maxLength ?? Infinity;
  if (ids.length > max) throw new Error(`"${text}" is ${ids.length} tokens long, more than the ${max} allowed`);
  const attentionMask = ids.map(() => 1);
  if (options.padTo !== undefined && options.padTo > ids.length) {
    if (tokenizer.padId < 0) throw new Error(`the vocabulary ${tokenizer.vocab.source} has no [PAD] token`);
    const extra = options.padTo - ids.length;
    ids.push(...Array(extra).fill(tokenizer.padId));
    tokenTypeIds.push(...Array(extra).fill(0));
    attentionMask.push(...Array(extra).fill(0));
  }
  return { ids, tokens: tokenizer.convertIdsToTokens(ids), tokenTypeIds, attentionMask };
}

/** Input tensors `[1, seq]` of an encoded text (dispose them, or build them inside `tf.tidy`). */
function inputsOf(e: EncodedText) {
  const n = e.ids.length;
  return {
    inputIds: tf.tensor2d(e.ids, [1, n], "int32"),
    tokenTypeIds: tf.tensor2d(e.tokenTypeIds, [1, n], "int32"),
    attentionMask: tf.tensor2d(e.attentionMask, [1, n], "int32"),
  };
}

function needHead(model: BertModel, what: string): void {
  if (model.head !== "pretraining") {
    throw new Error(
      `${what} needs the pre-training heads (a model with head "pretraining"); this one has "${model.head}"`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The pre-training heads
// ---------------------------------------------------------------------------------------------------------------

/** One candidate for a `[MASK]`. */
export interface MaskPrediction {
  token: string;
  id: number;
  /** Softmax probability over the whole vocabulary. */
  probability: number;
}

/** The predictions for one `[MASK]` of the text. */
export interface FillMaskResult {
  /** Position of the `[MASK]` in the model input (`[CLS]` is 0). */
  position: number;
  /** The `topK` most probable tokens, most probable first. */
  predictions: MaskPrediction[];
}

/**
 * What the masked-LM head predicts for every `[MASK]` in `text`: the `topK` (default 5) most probable vocabulary
 * tokens with their probabilities.
 *
 * @example fillMask(model, tokenizer, "the [MASK] sat on the mat")[0].predictions[0] // { token: "cat", ... }
 */
export function fillMask(
  model: BertModel,
  tokenizer: FullTokenizer,
  text: string,
  options: { topK?: number; textB?: string } = {},
): FillMaskResult[] {
  needHead(model, "fillMask");
  if (tokenizer.maskId < 0) throw new Error(`the vocabulary ${tokenizer.vocab.source} has no [MASK] token`);
  // "[MASK]." is one whitespace-separated piece, which the basic tokenizer would split into "[", "mask", ...
  const spaced = (t: string) => t.replaceAll("[MASK]", " [MASK] ");
  const e = encodeText(tokenizer, spaced(text), {
    textB: options.textB === undefined ? undefined : spaced(options.textB),
    maxLength: model.config.maxPositionEmbeddings,
  });
  const positions = e.ids.flatMap((id, p) => (id === tokenizer.maskId ? [p] : []));
  if (positions.length === 0) throw new Error(`"${text}" has no [MASK] token to fill in`);
  const k = Math.min(options.topK ?? 5, model.config.vocabSize);
  const [values, indices] = tf.tidy(() => {
    const out = model.forward(inputsOf(e), { mlmPositions: tf.tensor2d(positions, [1, positions.length], "int32") });
    const probs = tf.softmax(tf.reshape(out.mlmLogits!, [positions.length, -1])); // [masks, vocab]
    const top = tf.topk(probs, k); // [masks, k]
    return [top.values, top.indices];
  });
  const p = values.arraySync() as number[][], ids = indices.arraySync() as number[][];
  tf.dispose([values, indices]);
  return positions.map((position, m) => ({
    position,
    predictions: ids[m].map((id, j) => ({
      token: tokenizer.vocab.tokens[id] ?? `<id ${id}>`,
      id,
      probability: p[m][j],
    })),
  }));
}

/** The next-sentence head's probability that `b` really follows `a` (IsNext). */
export function nextSentence(model: BertModel, tokenizer: FullTokenizer, a: string, b: string): number {
  needHead(model, "nextSentence");
  const e = encodeText(tokenizer, a, { textB: b, maxLength: model.config.maxPositionEmbeddings });
  const probs = tf.tidy(() => tf.softmax(model.forward(inputsOf(e)).nspLogits!)); // [1, 2]: IsNext, NotNext
  const isNext = probs.dataSync()[0];
  probs.dispose();
  return isNext;
}

// ---------------------------------------------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------------------------------------------

/** Attention probabilities of every layer and head for one input. */
export interface AttentionMaps {
  /** The input tokens (query and key side), `[CLS]` first. */
  tokens: string[];
  /** `weights[layer][head][query][key]`; each row sums to 1 over the unmasked keys. */
  weights: number[][][][];
}

/**
 * Where each token looks: the softmax attention probabilities of every head of every layer for `text` (and
 * `textB`). With `padTo`, `[PAD]` tokens are added (masked out: they receive no attention).
 */
export function attentionMaps(
  model: BertModel,
  tokenizer: FullTokenizer,
  text: string,
  options: { textB?: string; padTo?: number } = {},
): AttentionMaps {
  const e = encodeText(tokenizer, text, { ...options, maxLength: model.config.maxPositionEmbeddings });
  const layers = tf.tidy(() => {
    const out = model.forward(inputsOf(e), { outputAttentions: true });
    return out.attentions!.map((a) => tf.squeeze(a, [0])); // each [heads, seq, seq]
  });
  const weights = layers.map((a) => a.arraySync() as number[][][]);
  tf.dispose(layers);
  return { tokens: e.tokens, weights };
}

// ---------------------------------------------------------------------------------------------------------------
// Word vectors
// ---------------------------------------------------------------------------------------------------------------

/**
 * Which hidden states make a vector: `last` (the last layer), `last4sum` / `last4concat` (the last four layers
 * summed or concatenated, the best feature-based choices in the BERT paper's table 7; all layers when the model
 * has fewer than four), or a number: 0 = the embedding layer's output, `k` = encoder layer `k`.
 */
export type LayerChoice = "last" | "last4sum" | "last4concat" | number;

/** Hidden-state indices (0 = embeddings, k = layer k) a choice uses, and whether they are concatenated. */
export function layerIndices(choice: LayerChoice, numLayers: number): { indices: number[]; concat: boolean } {
  if (typeof choice === "number") {
    if (!(Number.isInteger(choice) && choice >= 0 && choice <= numLayers)) {
      throw new Error(`layer ${choice} does not exist: 0 (embeddings) to ${numLayers} (the last layer)`);
    }
    return { indices: [choice], concat: false };
  }
  const last4 = Array.from({ length: Math.min(4, numLayers) }, (_, i) => numLayers - Math.min(4, numLayers) + 1 + i);
  switch (choice) {
    case "last":
      return { indices: [numLayers], concat: false };
    case "last4sum":
      return { indices: last4, concat: false };
    case "last4concat":
      return { indices: last4, concat: true };
    default:
      throw new Error(`unknown layer choice "${choice}" (expected last, last4sum, last4concat or a layer number)`);
  }
}

/** Combines hidden states `[..., hidden]` as a {@linkcode LayerChoice} says. */
function combine(states: tf.Tensor[], choice: LayerChoice, numLayers: number): tf.Tensor {
  const { indices, concat } = layerIndices(choice, numLayers);
  const picked = indices.map((i) => states[i]);
  return concat ? tf.concat(picked, -1) : picked.length === 1 ? picked[0] : tf.addN(picked);
}

/** Where each basic word of a text lands among the WordPiece tokens (without `[CLS]`). */
function wordSpans(tokenizer: FullTokenizer, text: string): { word: string; start: number; end: number }[] {
  const spans: { word: string; start: number; end: number }[] = [];
  let at = 0;
  for (const word of tokenizer.basicTokenize(text)) {
    const n = tokenizer.wordpieceIds(word).length;
    spans.push({ word, start: at, end: at + n });
    at += n;
  }
  return spans;
}

/** The word as the tokenizer normalises it (one basic token), or a clear error. */
function normaliseWord(tokenizer: FullTokenizer, word: string): string {
  const basic = tokenizer.basicTokenize(word);
  if (basic.length !== 1) {
    throw new Error(`"${word}" is ${basic.length} words for the tokenizer (${basic.join(" ")}); give one word`);
  }
  return basic[0];
}

/** Options of {@linkcode wordVectors}. */
export interface WordVectorOptions {
  /** Which hidden states (default `last`). */
  layers?: LayerChoice;
  /** Which occurrence of the word, when it appears several times (default 0, the first). */
  occurrence?: number;
}

/**
 * The contextual vector of `word` in `sentence`: the mean, over the word's WordPiece tokens, of the hidden
 * states chosen by `layers`. The same word gets different vectors in different sentences; compare them with
 * {@linkcode cosine}.
 *
 * @example cosine(wordVectors(m, t, "the bank of the river", "bank"), wordVectors(m, t, "my bank account", "bank"))
 */
export function wordVectors(
  model: BertModel,
  tokenizer: FullTokenizer,
  sentence: string,
  word: string,
  options: WordVectorOptions = {},
): Float32Array {
  const target = normaliseWord(tokenizer, word);
  const occurrence = options.occurrence ?? 0;
  const spans = wordSpans(tokenizer, sentence).filter((s) => s.word === target);
  if (spans.length <= occurrence) {
    throw new Error(
      `"${word}" occurs ${spans.length} time(s) in "${sentence}"` +
        (spans.length ? ` (occurrence ${occurrence} asked for)` : ""),
    );
  }
  const { start, end } = spans[occurrence];
  const e = encodeText(tokenizer, sentence, { maxLength: model.config.maxPositionEmbeddings });
  const v = tf.tidy(() => {
    const out = model.forward(inputsOf(e), { outputHiddenStates: true });
    const states = out.hiddenStates!.map((h) => tf.squeeze(h, [0])); // each [seq, hidden]
    const combined = combine(states, options.layers ?? "last", model.config.numHiddenLayers); // [seq, width]
    return tf.mean(tf.slice(combined, [start + 1, 0], [end - start, -1]), 0); // +1: [CLS]; [width]
  });
  const data = v.dataSync() as Float32Array;
  v.dispose();
  return data;
}

/**
 * The context-free vector of `word`: the mean of the input (word-piece) embedding rows of its WordPiece tokens,
 * before position and segment embeddings. It is the same in every sentence.
 */
export function staticVector(model: BertModel, tokenizer: FullTokenizer, word: string): Float32Array {
  const ids = tokenizer.wordpieceIds(normaliseWord(tokenizer, word));
  const table = model.params.get("bert.embeddings.word_embeddings.weight");
  if (!table) throw new Error("the model has no word embeddings (bert.embeddings.word_embeddings.weight)");
  const v = tf.tidy(() => tf.mean(tf.gather(table, tf.tensor1d(ids, "int32")), 0)); // [hidden]
  const data = v.dataSync() as Float32Array;
  v.dispose();
  return data;
}

/** Cosine similarity `a·b / (|a| |b|)` (1 = same direction, 0 = orthogonal); 0 when either vector is zero. */
export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`cosine: vectors of length ${a.length} and ${b.length}`);
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
}

// ---------------------------------------------------------------------------------------------------------------
// Features for a frozen BERT
// ---------------------------------------------------------------------------------------------------------------

/** Options of {@linkcode sentenceFeatures}. */
export interface SentenceFeatureOptions {
  /** Which hidden states (default `last`). */
  layers?: LayerChoice;
  /** `cls`: the `[CLS]` token's vector; `mean` (default): the mean over the real tokens. */
  pooling?: "cls" | "mean";
  /** Texts per forward pass (default 32). */
  batchSize?: number;
  /** Longer texts are cut to this many tokens, `[CLS]`/`[SEP]` included (default 128). */
  maxLength?: number;
}

/**
 * One fixed vector per text from a frozen model (no fine-tuning): BERT as a feature extractor, as in the
 * paper's feature-based experiments.
 */
export function sentenceFeatures(
  model: BertModel,
  tokenizer: FullTokenizer,
  texts: string[],
  options: SentenceFeatureOptions = {},
): Float32Array[] {
  const batchSize = options.batchSize ?? 32;
  const maxLength = Math.min(options.maxLength ?? 128, model.config.maxPositionEmbeddings);
  const out: Float32Array[] = [];
  for (let start = 0; start < texts.length; start += batchSize) {
    const chunk = texts.slice(start, start + batchSize);
    const rows = chunk.map((t) => {
      const ids = tokenizer.encodeIds(t).slice(0, maxLength - 2);
      return [tokenizer.clsId, ...ids, tokenizer.sepId];
    });
    const seq = Math.max(...rows.map((r) => r.length));
    const ids = new Int32Array(chunk.length * seq).fill(tokenizer.padId);
    const mask = new Int32Array(chunk.length * seq);
    rows.forEach((r, i) => {
      ids.set(r, i * seq);
      mask.fill(1, i * seq, i * seq + r.length);
    });
    const pooled = tf.tidy(() => {
      const inputs = {
        inputIds: tf.tensor2d(ids, [chunk.length, seq], "int32"),
        tokenTypeIds: tf.zeros([chunk.length, seq], "int32") as tf.Tensor2D,
        attentionMask: tf.tensor2d(mask, [chunk.length, seq], "int32"),
      };
      const hs = model.forward(inputs, { outputHiddenStates: true }).hiddenStates!;
      const combined = combine(hs, options.layers ?? "last", model.config.numHiddenLayers); // [b, seq, width]
      if (options.pooling === "cls") return tf.squeeze(tf.slice(combined, [0, 0, 0], [-1, 1, -1]), [1]); // [b, width]
      const m = tf.expandDims(tf.cast(inputs.attentionMask, "float32"), -1); // [b, seq, 1]
      return tf.div(tf.sum(tf.mul(combined, m), 1), tf.sum(m, 1)); // [b, width]
    });
    const width = pooled.shape[1]!;
    const data = pooled.dataSync() as Float32Array;
    pooled.dispose();
    for (let i = 0; i < chunk.length; i++) out.push(data.slice(i * width, (i + 1) * width));
  }
  return out;
}

/** Options of {@linkcode linearProbe}. */
export interface LinearProbeOptions {
  /** Number of classes (default: largest training label + 1). */
  classes?: number;
  /** Full-batch gradient steps (default 300). */
  epochs?: number;
  /** Step size (default 0.5, on standardised features). */
  learningRate?: number;
  /** L2 penalty on the weights (default 1e-3). */
  l2?: number;
}

/** What {@linkcode linearProbe} returns. */
export interface LinearProbeResult {
  trainAccuracy: number;
  devAccuracy: number;
  /** Predicted class of each dev row. */
  devPredictions: number[];
}

/**
 * A logistic-regression (softmax) classifier on frozen features: standardise with the training mean and
 * standard deviation, then full-batch gradient descent from zero weights (deterministic). The accuracy it
 * reaches measures how much of the task the features already encode.
 */
export function linearProbe(
  train: { x: ArrayLike<number>[]; y: number[] },
  dev: { x: ArrayLike<number>[]; y: number[] },
  options: LinearProbeOptions = {},
): LinearProbeResult {
  const n = train.x.length;
  if (n === 0 || n !== train.y.length) throw new Error(`linearProbe: ${n} training rows and ${train.y.length} labels`);
  if (dev.x.length !== dev.y.length) throw new Error(`linearProbe: ${dev.x.length} dev rows, ${dev.y.length} labels`);
  const d = train.x[0].length;
  const k = options.classes ?? Math.max(...train.y) + 1;
  const epochs = options.epochs ?? 300, lr = options.learningRate ?? 0.5, l2 = options.l2 ?? 1e-3;
  const mean = new Float64Array(d), std = new Float64Array(d);
  for (const row of train.x) {
    if (row.length !== d) throw new Error(`linearProbe: rows of ${row.length} and ${d} features`);
    for (let j = 0; j < d; j++) mean[j] += row[j] / n;
  }
  for (const row of train.x) for (let j = 0; j < d; j++) std[j] += (row[j] - mean[j]) ** 2 / n;
  for (let j = 0; j < d; j++) std[j] = Math.sqrt(std[j]) || 1;
  const standardise = (rows: ArrayLike<number>[]) =>
    rows.map((r) => Float64Array.from({ length: d }, (_, j) => (r[j] - mean[j]) / std[j]));
  const X = standardise(train.x), Xd = standardise(dev.x);
  const W = new Float64Array(k * d), b = new Float64Array(k);
  const scores = (x: Float64Array, out: Float64Array) => {
    for (let c = 0; c < k; c++) {
      let s = b[c];
      for (let j = 0; j < d; j++) s += W[c * d + j] * x[j];
      out[c] = s;
    }
    return out;
  };
  const p = new Float64Array(k), gW = new Float64Array(k * d), gb = new Float64Array(k);
  for (let epoch = 0; epoch < epochs; epoch++) {
    gW.fill(0);
    gb.fill(0);
    for (let i = 0; i < n; i++) {
      scores(X[i], p);
      const max = Math.max(...p);
      let sum = 0;
      for (let c = 0; c < k; c++) sum += p[c] = Math.exp(p[c] - max);
      for (let c = 0; c < k; c++) {
        const g = (p[c] / sum - (train.y[i] === c ? 1 : 0)) / n;
        gb[c] += g;
        for (let j = 0; j < d; j++) gW[c * d + j] += g * X[i][j];
      }
    }
    for (let q = 0; q < k * d; q++) W[q] -= lr * (gW[q] + l2 * W[q]);
    for (let c = 0; c < k; c++) b[c] -= lr * gb[c];
  }
  const predict = (x: Float64Array) => {
    scores(x, p);
    let best = 0;
    for (let c = 1; c < k; c++) if (p[c] > p[best]) best = c;
    return best;
  };
  const accuracy = (rows: Float64Array[], y: number[]) =>
    rows.length ? rows.filter((x, i) => predict(x) === y[i]).length / rows.length : NaN;
  return { trainAccuracy: accuracy(X, train.y), devAccuracy: accuracy(Xd, dev.y), devPredictions: Xd.map(predict) };
}
