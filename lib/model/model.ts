/**
 * BERT (Devlin et al., 2018) in TensorFlow.js, readable top to bottom:
 *
 * 1. {@linkcode BertConfig}: the hyper-parameters, read from a Hugging Face `config.json` or Google's
 *    `bert_config.json`.
 * 2. Building blocks (`lib/model/layers.ts`, re-exported here): a dense layer, batched matmul and embedding lookup
 *    with hand-written gradients (fast on the wasm backend), LayerNorm, GELU, and the loss `softmaxCrossEntropy`.
 * 3. {@linkcode BertModel}: embeddings -> N encoder layers (self-attention + feed-forward) -> pooler -> a head
 *    (sequence classification, question answering, or the pre-training MLM + NSP heads).
 *
 * Parameters live in `model.params`, keyed by their Hugging Face names (`bert.encoder.layer.0.attention.self.query.weight`,
 * ...). Dense kernels are stored as `[in, out]` (TensorFlow's layout: `x @ W` runs on the fast path of every
 * backend); Hugging Face stores them as `[out, in]`, and `lib/model/checkpoint.ts` transposes on load and save.
 *
 * Shape notes (`// [B, F, N*H]`) use the letters of google-research/bert's modeling.py:
 * B = batch size, F = "from" sequence length, T = "to" sequence length (= F: this is self-attention),
 * N = attention heads, H = size per head, D = hidden size (N*H), I = intermediate (feed-forward) size,
 * V = vocabulary size, L = labels, K = masked-LM positions per example.
 * @module
 */
import { tf } from "../backends/backend.ts";
import * as fused from "../backends/blas/fused.ts";
import * as attention from "../backends/blas/attention.ts";
import { onBlasF32, recordingGradients } from "../backends/blas/common.ts";
import { packBatch, packedAttention, type Packing } from "./packing.ts";
import {
  activation,
  batchMatMul,
  embeddingLookup,
  gelu,
  layerNorm,
  linear,
  linearTransposed,
  SUPPORTED_ACTIVATIONS,
} from "./layers.ts";
export {
  activation,
  batchMatMul,
  embeddingLookup,
  gelu,
  geluTanh,
  layerNorm,
  linear,
  linearTransposed,
  softmaxCrossEntropy,
} from "./layers.ts";

// ---------------------------------------------------------------------------------------------------------------
// 1. Configuration
// ---------------------------------------------------------------------------------------------------------------

/** BERT's hyper-parameters (camelCase versions of the `config.json` keys). */
export interface BertConfig {
  /** Rows of the word-embedding table (30,522 for the uncased English vocabulary). */
  vocabSize: number;
  /** Width of every hidden state (D; the paper's H: 128 for BERT-Tiny, 768 for BERT-Base). */
  hiddenSize: number;
  /** Number of encoder layers (the paper's L). */
  numHiddenLayers: number;
  /** Attention heads per layer (N; the paper's A); `hiddenSize` must be divisible by it. */
  numAttentionHeads: number;
  /** Width of the feed-forward layer inside each encoder layer (I; usually 4D). */
  intermediateSize: number;
  /** `gelu` (exact, erf), `gelu_new` / `gelu_pytorch_tanh` / `gelu_fast` (tanh approximation) or `relu`. */
  hiddenAct: string;
  /** Dropout after embeddings, attention output and feed-forward output (training only). */
  hiddenDropoutProb: number;
  /** Dropout on the attention probabilities (training only). */
  attentionProbsDropoutProb: number;
  /** Dropout before the classifier; `undefined` means `hiddenDropoutProb` (HF's `classifier_dropout: null`). */
  classifierDropout?: number;
  /** Longest sequence the position embeddings cover (512). */
  maxPositionEmbeddings: number;
  /** Rows of the token-type (segment) embedding table (2). */
  typeVocabSize: number;
  /** Standard deviation of the normal initialiser (0.02). */
  initializerRange: number;
  /** Epsilon inside every LayerNorm (1e-12). */
  layerNormEps: number;
  /** Id of `[PAD]`; its word-embedding row is initialised to zero. */
  padTokenId: number;
  /** Label names by index, as strings (`{"0": "negative", "1": "positive"}`). */
  id2label?: Record<string, string>;
  /** Hugging Face class names, e.g. `["BertForSequenceClassification"]`. */
  architectures?: string[];
  /** The JSON this config was read from (unknown keys are kept on save). */
  raw?: Record<string, unknown>;
}

/**
 * Reads a Hugging Face `config.json` or a Google `bert_config.json` (same snake_case keys; Google's has no
 * `model_type`, `layer_norm_eps` or `pad_token_id`, which default to HF's values). Throws naming `source` and the
 * key when a value is missing or unusable.
 *
 * @example
 * ```ts
 * const config = configFromJson(JSON.parse(await Deno.readTextFile("model/config.json")), "model/config.json");
 * ```
 */
export function configFromJson(json: Record<string, unknown>, source = "config"): BertConfig {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new Error(`${source}: expected a JSON object`);
  }
  const modelType = json.model_type;
  if (modelType !== undefined && modelType !== "bert") {
    throw new Error(`${source}: model_type is "${modelType}", but only "bert" models are supported`);
  }
  const int = (key: string, fallback?: number): number => {
    const v = json[key] ?? fallback;
    if (v === undefined) throw new Error(`${source}: "${key}" is missing`);
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw new Error(`${source}: "${key}" must be a non-negative integer, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const num = (key: string, fallback: number): number => {
    const v = json[key] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new Error(`${source}: "${key}" must be a number, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const hiddenAct = json.hidden_act ?? "gelu";
  if (typeof hiddenAct !== "string" || !SUPPORTED_ACTIVATIONS.includes(hiddenAct)) {
    throw new Error(
      `${source}: hidden_act ${JSON.stringify(hiddenAct)} is not supported (expected one of ` +
        `${SUPPORTED_ACTIVATIONS.join(", ")})`,
    );
  }
  const positionType = json.position_embedding_type ?? "absolute";
  if (positionType !== "absolute") {
    throw new Error(`${source}: position_embedding_type "${positionType}" is not supported (only "absolute")`);
  }
  const config: BertConfig = {
    vocabSize: int("vocab_size"),
    hiddenSize: int("hidden_size"),
    numHiddenLayers: int("num_hidden_layers"),
    numAttentionHeads: int("num_attention_heads"),
    intermediateSize: int("intermediate_size"),
    hiddenAct,
    hiddenDropoutProb: num("hidden_dropout_prob", 0.1),
    attentionProbsDropoutProb: num("attention_probs_dropout_prob", 0.1),
    maxPositionEmbeddings: int("max_position_embeddings", 512),
    typeVocabSize: int("type_vocab_size", 2),
    initializerRange: num("initializer_range", 0.02),
    layerNormEps: num("layer_norm_eps", 1e-12),
    padTokenId: int("pad_token_id", 0),
    raw: { ...json },
  };
  if (json.classifier_dropout !== undefined && json.classifier_dropout !== null) {
    config.classifierDropout = num("classifier_dropout", 0.1);
  }
  for (const key of ["hidden_size", "num_attention_heads", "vocab_size", "num_hidden_layers"] as const) {
    if (json[key] === 0) throw new Error(`${source}: "${key}" must be positive`);
  }
  if (config.hiddenSize % config.numAttentionHeads !== 0) {
    throw new Error(
      `${source}: hidden_size ${config.hiddenSize} is not a multiple of num_attention_heads ${config.numAttentionHeads}`,
    );
  }
  if (json.id2label !== undefined) {
    if (typeof json.id2label !== "object" || json.id2label === null) {
      throw new Error(`${source}: "id2label" must be an object`);
    }
    config.id2label = Object.fromEntries(
      Object.entries(json.id2label as Record<string, unknown>).map(([k, v]) => [k, String(v)]),
    );
  }
  if (Array.isArray(json.architectures)) config.architectures = json.architectures.map(String);
  return config;
}

/** What a {@linkcode BertModel} computes on top of the encoder. */
export type HeadKind = "classification" | "question-answering" | "pretraining" | "none";

/** Hugging Face class name of each head (written to `architectures` in `config.json`). */
export const ARCHITECTURES: Record<HeadKind, string> = {
  classification: "BertForSequenceClassification",
  "question-answering": "BertForQuestionAnswering",
  pretraining: "BertForPreTraining",
  none: "BertModel",
};

/** Options for {@linkcode configToJson}. */
export interface ConfigToJsonOptions {
  /** Sets `architectures` (e.g. `BertForSequenceClassification`). */
  head?: HeadKind;
  /** Label names; sets `id2label` / `label2id`. */
  labels?: string[];
  /** Number of labels when no names are given (`LABEL_0`, `LABEL_1`, ... as HF does). */
  numLabels?: number;
}

/**
 * Writes `config` as a Hugging Face `config.json` object (`model_type: "bert"`), keeping unknown keys of the
 * original file. With `labels`, `id2label` and `label2id` are set so that HF pipelines print label names.
 */
export function configToJson(config: BertConfig, extra: ConfigToJsonOptions = {}): Record<string, unknown> {
  const out: Record<string, unknown> = { ...(config.raw ?? {}) };
  delete out.transformers_version;
  delete out.num_labels; // HF derives it from id2label; a stale value would contradict new labels
  const architectures = extra.head ? [ARCHITECTURES[extra.head]] : config.architectures;
  if (architectures) out.architectures = architectures;
  else delete out.architectures;
  Object.assign(out, {
    attention_probs_dropout_prob: config.attentionProbsDropoutProb,
    classifier_dropout: config.classifierDropout ?? null,
    hidden_act: config.hiddenAct,
    hidden_dropout_prob: config.hiddenDropoutProb,
    hidden_size: config.hiddenSize,
    initializer_range: config.initializerRange,
    intermediate_size: config.intermediateSize,
    layer_norm_eps: config.layerNormEps,
    max_position_embeddings: config.maxPositionEmbeddings,
    model_type: "bert",
    num_attention_heads: config.numAttentionHeads,
    num_hidden_layers: config.numHiddenLayers,
    pad_token_id: config.padTokenId,
    position_embedding_type: "absolute",
    torch_dtype: "float32",
    type_vocab_size: config.typeVocabSize,
    vocab_size: config.vocabSize,
  });
  let id2label = config.id2label;
  if (extra.labels) {
    id2label = Object.fromEntries(extra.labels.map((name, i) => [String(i), name]));
  } else if (extra.numLabels !== undefined && (!id2label || Object.keys(id2label).length !== extra.numLabels)) {
    id2label = Object.fromEntries(Array.from({ length: extra.numLabels }, (_, i) => [String(i), `LABEL_${i}`]));
  }
  if (id2label) {
    out.id2label = id2label;
    out.label2id = Object.fromEntries(Object.entries(id2label).map(([i, name]) => [name, Number(i)]));
  }
  return Object.fromEntries(Object.keys(out).sort().map((k) => [k, out[k]]));
}

// ---------------------------------------------------------------------------------------------------------------
// 2. The model (the building blocks, 2 in the module doc, are in lib/model/layers.ts)
// ---------------------------------------------------------------------------------------------------------------

/** Added to the attention scores of padding tokens: float32's lowest value, like HF's `torch.finfo.min`. */
const MASKED_SCORE = -3.4028234663852886e38;

/** What the blocks of one {@linkcode BertModel.forward} call share. */
interface Pass {
  /** B: examples. */
  batch: number;
  /** F (= T): tokens per example. */
  seq: number;
  /** Each layer's attention probabilities `[B, N, F, T]`, collected when the caller asked for them. */
  attentions?: tf.Tensor4D[];
  /** Whether dropout is on (`forward({ training })`). */
  training: boolean;
  /** The seed of the next dropout mask at `rate`; undefined (and no seed used up) when not training or `rate` is 0. */
  dropoutSeed(rate: number): string | undefined;
  /** Set when the encoder runs on each example's own length (lib/model/packing.ts): its rows are then `[R, D]`. */
  packing?: Packing;
}

/** The padding mask, added to the attention scores. */
interface AttentionMask {
  /** 0 where attended, {@linkcode MASKED_SCORE} at padding `[B, 1, 1, T]`. */
  bias: tf.Tensor4D;
  /** The same as `[B, T]` for the fused blas kernel; undefined when the tf-ops path runs. */
  rows?: tf.Tensor2D;
}

/** Inputs of {@linkcode BertModel.forward}: int32 `[batch, seq]` each. */
export interface BertInputs {
  /** Token ids `[batch, seq]` (int32). */
  inputIds: tf.Tensor2D;
  /** Segment ids, 0 for sentence A and 1 for sentence B `[batch, seq]` (int32). */
  tokenTypeIds: tf.Tensor2D;
  /** 1 for real tokens, 0 for padding `[batch, seq]` (int32 or float32). */
  attentionMask: tf.Tensor2D;
}

/** Options of {@linkcode BertModel.forward}. */
export interface ForwardOptions {
  /** Apply dropout (default false). */
  training?: boolean;
  /** Return the embeddings output and every layer's output in `hiddenStates`. */
  outputHiddenStates?: boolean;
  /** Return every layer's attention probabilities `[batch, heads, seq, seq]`. */
  outputAttentions?: boolean;
  /** Seed of the dropout masks (default: a counter per model, so repeated calls differ but runs repeat). */
  seed?: number;
  /** Pre-training head only: compute MLM logits at these positions `[batch, k]` instead of at every token. */
  mlmPositions?: tf.Tensor2D;
  /**
   * Pre-training head only, instead of `mlmPositions`: MLM logits at these tokens only, `[M]` int32 indices into the
   * batch's `batch * seq` tokens (example `b`'s position `p` is `b * seq + p`); `mlmLogits` is then `[1, M, vocab]`.
   * Training uses it to skip the unused prediction slots that `[batch, k]` positions pad with.
   */
  mlmTokens?: tf.Tensor1D;
  /**
   * Classification head: run the last encoder layer's output projection, feed-forward block and LayerNorms at each
   * example's first token (`[CLS]`) only, all that the pooler and the classifier read. Its attention still reads every
   * token, so the logits are the same (to float rounding) for about a third less work on BERT-Tiny (`1/L` of the
   * encoder's products less on L layers). In training too: the dropout masks of those rows are the ones the whole
   * layer would draw there, and the rows left out get no gradient anyway. `lastHiddenState` is then
   * `[batch, 1, hidden]`. Not with `outputHiddenStates`, `outputAttentions` or another head.
   */
  clsOnly?: boolean;
  /**
   * Run the padding too (default false). The classification head on the `blas` backend otherwise runs each example on
   * its own length rounded up to 4 tokens (lib/model/packing.ts), in inference and training: the same values at every
   * kept position to float rounding (the per-head attention products may sum in another order at another length), the
   * same dropout masks, loss and gradients to float rounding, and zeros in `lastHiddenState` at the positions dropped,
   * for the padded share of the work less.
   */
  keepPadding?: boolean;
}

/** What {@linkcode BertModel.forward} returns (dispose it, or call it inside `tf.tidy`). */
export type BertOutput = {
  /** Output of the last encoder layer `[batch, seq, hidden]`. */
  lastHiddenState: tf.Tensor3D;
  /** `tanh(dense([CLS]))` `[batch, hidden]`; absent for the question-answering head (HF's QA model has no pooler). */
  pooledOutput?: tf.Tensor2D;
  /** Embeddings output then each layer's output: numHiddenLayers + 1 tensors `[batch, seq, hidden]`. */
  hiddenStates?: tf.Tensor3D[];
  /** Attention probabilities per layer `[batch, heads, seq, seq]`. */
  attentions?: tf.Tensor4D[];
  /** Classification head: `[batch, numLabels]`. */
  logits?: tf.Tensor2D;
  /** Question-answering head: answer-start scores `[batch, seq]`. */
  startLogits?: tf.Tensor2D;
  /** Question-answering head: answer-end scores `[batch, seq]`. */
  endLogits?: tf.Tensor2D;
  /** Pre-training head: `[batch, seq, vocab]`, or `[batch, k, vocab]` with `mlmPositions`. */
  mlmLogits?: tf.Tensor3D;
  /** Pre-training head: is-next-sentence scores `[batch, 2]`. */
  nspLogits?: tf.Tensor2D;
};

/** Options of the {@linkcode BertModel} constructor. */
export interface BertModelOptions {
  /** Which head to build. */
  head: HeadKind;
  /** Classification head: number of labels (default: size of `config.id2label`, else 2). */
  numLabels?: number;
  /** Seed of the random initialisation (default 0). */
  seed?: number;
}

/**
 * BERT with one head. Parameters are created (and initialised as Hugging Face does: normal(0, 0.02) weights,
 * zero biases, LayerNorm 1/0, zero `[PAD]` embedding row) in the constructor; `lib/model/checkpoint.ts` overwrites them
 * from a checkpoint.
 *
 * @example
 * ```ts
 * const model = new BertModel(config, { head: "classification", numLabels: 2 });
 * const logits = tf.tidy(() => model.forward({ inputIds, tokenTypeIds, attentionMask }).logits!);
 * ```
 */
export class BertModel {
  /** The hyper-parameters. */
  readonly config: BertConfig;
  /** The head on top of the encoder. */
  readonly head: HeadKind;
  /** Labels of the classification head (2 for question answering: start/end; 0 otherwise). */
  readonly numLabels: number;
  /** All parameters by Hugging Face name, in HF `state_dict` order. */
  readonly params: Map<string, tf.Variable> = new Map();
  /** Names of dense kernels, stored `[in, out]` here and `[out, in]` in HF checkpoints. */
  readonly transposed: Set<string> = new Set();
  private readonly act: (x: tf.Tensor) => tf.Tensor;
  private dropoutCalls = 0;

  /** Builds the parameters for `config` with the given head. */
  constructor(config: BertConfig, options: BertModelOptions) {
    const { head } = options;
    if (!(head in ARCHITECTURES)) {
      throw new Error(`unknown head "${head}" (expected ${Object.keys(ARCHITECTURES).join(", ")})`);
    }
    this.config = config;
    this.head = head;
    this.act = activation(config.hiddenAct);
    this.numLabels = head === "classification"
      ? options.numLabels ?? (config.id2label ? Object.keys(config.id2label).length : 2)
      : head === "question-answering"
      ? 2
      : 0;
    if (head === "classification" && !(Number.isInteger(this.numLabels) && this.numLabels >= 1)) {
      throw new Error(`numLabels must be a positive integer, got ${this.numLabels}`);
    }

    const { hiddenSize: h, intermediateSize: inter, vocabSize, initializerRange: std } = config;
    let seed = options.seed ?? 0;
    // tfjs draws an unseeded (Math.random) stream for a falsy seed, so seed 0 gets a stand-in that no integer seed
    // can produce; every other seed keeps its stream.
    const normal = (shape: number[]) => {
      const s = seed++;
      return tf.randomNormal(shape, 0, std, "float32", s === 0 ? Number.MIN_VALUE : s);
    };
    const add = (name: string, value: tf.Tensor) => {
      this.params.set(name, tf.variable(value, true));
      value.dispose();
    };
    const dense = (prefix: string, inSize: number, outSize: number) => {
      add(`${prefix}.weight`, normal([inSize, outSize])); // [in, out]
      this.transposed.add(`${prefix}.weight`);
      add(`${prefix}.bias`, tf.zeros([outSize]));
    };
    const norm = (prefix: string) => {
      add(`${prefix}.weight`, tf.ones([h]));
      add(`${prefix}.bias`, tf.zeros([h]));
    };

    const words = normal([vocabSize, h]);
    const padRow = config.padTokenId < vocabSize ? config.padTokenId : -1;
    add(
      "bert.embeddings.word_embeddings.weight",
      padRow < 0 ? words : tf.tidy(() => {
        const isPad = tf.reshape(tf.cast(tf.oneHot([padRow], vocabSize), "bool"), [-1, 1]); // [vocab, 1]
        return tf.where(isPad, tf.zerosLike(words), words); // +0 in the [PAD] row, as HF's zero_()
      }),
    );
    if (padRow >= 0) words.dispose();
    add("bert.embeddings.position_embeddings.weight", normal([config.maxPositionEmbeddings, h]));
    add("bert.embeddings.token_type_embeddings.weight", normal([config.typeVocabSize, h]));
    norm("bert.embeddings.LayerNorm");
    for (let i = 0; i < config.numHiddenLayers; i++) {
      const p = `bert.encoder.layer.${i}`;
      dense(`${p}.attention.self.query`, h, h);
      dense(`${p}.attention.self.key`, h, h);
      dense(`${p}.attention.self.value`, h, h);
      dense(`${p}.attention.output.dense`, h, h);
      norm(`${p}.attention.output.LayerNorm`);
      dense(`${p}.intermediate.dense`, h, inter);
      dense(`${p}.output.dense`, inter, h);
      norm(`${p}.output.LayerNorm`);
    }
    if (this.hasPooler) dense("bert.pooler.dense", h, h);
    if (head === "classification") dense("classifier", h, this.numLabels);
    if (head === "question-answering") dense("qa_outputs", h, 2);
    if (head === "pretraining") {
      add("cls.predictions.bias", tf.zeros([vocabSize]));
      dense("cls.predictions.transform.dense", h, h);
      norm("cls.predictions.transform.LayerNorm");
      dense("cls.seq_relationship", h, 2);
    }
  }

  /** Whether this head uses the pooler (HF's question-answering model is built without one). */
  get hasPooler(): boolean {
    return this.head !== "question-answering";
  }

  /** Total number of parameters (scalars). */
  countParameters(): number {
    let n = 0;
    for (const v of this.params.values()) n += v.size;
    return n;
  }

  /** The trainable variables, in `params` order. */
  variables(): tf.Variable[] {
    return [...this.params.values()];
  }

  private p(name: string): tf.Variable {
    const v = this.params.get(name);
    if (!v) throw new Error(`parameter ${name} does not exist in this ${ARCHITECTURES[this.head]}`);
    return v;
  }

  private dense(prefix: string, x: tf.Tensor2D): tf.Tensor2D {
    return linear(x, this.p(`${prefix}.weight`), this.p(`${prefix}.bias`));
  }

  private norm<T extends tf.Tensor>(prefix: string, x: T): T {
    return layerNorm(x, this.p(`${prefix}.weight`), this.p(`${prefix}.bias`), this.config.layerNormEps) as T;
  }

  /**
   * Dropout with the pass's next seed; `x` itself when not training or `rate` is 0. With `every` = F, `x` holds the
   * `[CLS]` rows `[B, D]` of a `[B*F, D]` tensor and gets the mask those rows would get there; with an array (the kept
   * rows of a packing), row `r` gets the mask of row `every[r]` of `[B*F, D]`.
   */
  private dropout<T extends tf.Tensor>(x: T, rate: number, pass: Pass, every: number | number[] = 1): T {
    const seed = pass.dropoutSeed(rate);
    return seed === undefined ? x : fused.dropout(x, rate, seed, every);
  }

  /**
   * Which rows of the padded `[B*F, D]` hidden states a layer's `[., D]` tensor holds, as {@linkcode dropout}'s
   * `every`: each example's `[CLS]` row (F apart) with `cls`, else the kept rows of a packing, else all of them.
   */
  private hiddenRows(pass: Pass, cls: boolean): number | number[] {
    return cls ? pass.seq : pass.packing?.keptRows ?? 1;
  }

  /**
   * Runs the model. Everything intermediate is disposed; the returned tensors belong to the caller. Safe inside
   * `tf.tidy` and `tf.variableGrads` (while gradients are recorded no data is read back from the backend, except that
   * the classification head on `blas` reads the attention mask to drop the padding, {@linkcode ForwardOptions.keepPadding}).
   */
  forward(inputs: BertInputs, options: ForwardOptions = {}): BertOutput {
    const [batch, seq] = this.checkInputs(inputs, options);
    const training = options.training ?? false;
    const seedBase = options.seed ?? this.dropoutCalls++;
    let dropoutIndex = 0;
    const pass: Pass = {
      batch,
      seq,
      attentions: options.outputAttentions ? [] : undefined,
      training,
      dropoutSeed: (rate: number) => training && rate > 0 ? `${seedBase}:${dropoutIndex++}` : undefined,
    };
    const d = this.config.hiddenSize;

    return tf.tidy(() => {
      const hiddenStates: tf.Tensor3D[] = [];
      const record = (x: tf.Tensor2D) => {
        if (options.outputHiddenStates) hiddenStates.push(tf.reshape(x, [batch, seq, d]));
      };
      // Outside gradient recording nothing reads a stage's intermediates, or a layer's input, once its output
      // exists: disposing them there gives their arrays back to the `blas` pool for the next layer, so a forward pass
      // holds about one layer's activations instead of all L layers' (at BERT-Base, 32 x 128 tokens: ~0.25 GB, not
      // ~3 GB, which outgrew the pool and faulted in fresh pages every batch). The same arithmetic, so the same bits.
      const eager = !recordingGradients() && !options.outputAttentions;
      const stage = <T extends tf.Tensor>(f: () => T): T => eager ? tf.tidy(f) : f();
      let x = stage(() => this.embed(inputs, pass)); // [B*F, D]
      record(x);
      // The fused attention kernel (blas) cannot return the probabilities.
      const mask = this.attentionMask(inputs.attentionMask, pass, !pass.attentions && onBlasF32(x));
      const layers = this.config.numHiddenLayers;
      if (
        mask.rows && layers > 0 && this.head === "classification" && !options.outputHiddenStates && !options.keepPadding
      ) {
        pass.packing = packBatch(inputs.attentionMask, mask.rows, batch, seq);
        if (pass.packing) {
          const all = x;
          x = tf.gather(all, pass.packing.rows) as tf.Tensor2D; // [R, D]
          all.dispose();
        }
      }
      for (let i = 0; i < layers; i++) {
        const clsOnly = options.clsOnly && i === layers - 1;
        const input = x;
        // [B*F, D], or [B, D] if clsOnly
        x = stage(() => this.encoderLayer(`bert.encoder.layer.${i}`, input, mask, pass, clsOnly));
        if (eager) input.dispose(); // record() holds its own reference when hidden states are returned
        record(x);
      }
      if (options.clsOnly && layers === 0) x = this.firstTokens(x, pass); // [B, D]
      if (pass.packing && !options.clsOnly) { // [R, D] -> [B*F, D], zeros at the rows dropped
        const kept = x;
        x = tf.gather(tf.concat([kept, tf.zeros([1, d])]), pass.packing.unpack) as tf.Tensor2D;
        kept.dispose();
      }
      const lastHiddenState = tf.reshape(x, [batch, options.clsOnly ? 1 : seq, d]) as tf.Tensor3D; // [B, F, D]
      const result: BertOutput = { lastHiddenState };
      if (this.hasPooler) result.pooledOutput = this.pool(lastHiddenState); // [B, D]
      if (options.outputHiddenStates) result.hiddenStates = hiddenStates;
      if (pass.attentions) result.attentions = pass.attentions;

      if (this.head === "classification") {
        result.logits = this.classify(result.pooledOutput!, pass); // [B, L]
      } else if (this.head === "question-answering") {
        Object.assign(result, this.answerSpan(x, pass)); // startLogits, endLogits: [B, F]
      } else if (this.head === "pretraining") {
        result.mlmLogits = this.maskedLm(x, pass, options.mlmPositions, options.mlmTokens); // [B, K, V] or [1, M, V]
        result.nspLogits = this.nextSentence(result.pooledOutput!); // [B, 2]
      }
      return result;
    });
  }

  /** Throws naming the input whose shape or dtype is wrong; returns `[B, F]`. */
  private checkInputs(inputs: BertInputs, options: ForwardOptions): [number, number] {
    const { inputIds, tokenTypeIds, attentionMask } = inputs;
    if (inputIds.rank !== 2) throw new Error(`inputIds must be [batch, seq], got shape [${inputIds.shape}]`);
    const [batch, seq] = inputIds.shape;
    for (const [name, t] of [["tokenTypeIds", tokenTypeIds], ["attentionMask", attentionMask]] as const) {
      if (t.rank !== 2 || t.shape[0] !== batch || t.shape[1] !== seq) {
        throw new Error(`${name} has shape [${t.shape}], expected [${batch}, ${seq}] like inputIds`);
      }
    }
    if (inputIds.dtype !== "int32" || tokenTypeIds.dtype !== "int32") {
      throw new Error(`inputIds and tokenTypeIds must be int32, got ${inputIds.dtype} and ${tokenTypeIds.dtype}`);
    }
    if (seq > this.config.maxPositionEmbeddings) {
      throw new Error(`sequence length ${seq} exceeds max_position_embeddings ${this.config.maxPositionEmbeddings}`);
    }
    for (const name of ["mlmPositions", "mlmTokens"] as const) {
      if (options[name] && this.head !== "pretraining") {
        throw new Error(`${name} needs the pretraining head (this model's head is "${this.head}")`);
      }
    }
    if (options.mlmPositions && options.mlmTokens) throw new Error("give mlmPositions or mlmTokens, not both");
    if (options.clsOnly) {
      const clash = options.outputHiddenStates
        ? "outputHiddenStates"
        : options.outputAttentions
        ? "outputAttentions"
        : this.head !== "classification"
        ? `the ${this.head} head`
        : undefined;
      if (clash) {
        throw new Error(`clsOnly computes the last layer at [CLS] only: the classification head, not ${clash}`);
      }
    }
    return [batch, seq];
  }

  /** Embeddings: word + position + token type, then LayerNorm and dropout. */
  private embed(inputs: BertInputs, pass: Pass): tf.Tensor2D {
    const { batch, seq } = pass;
    const d = this.config.hiddenSize;
    const e = "bert.embeddings";
    const words = embeddingLookup(this.p(`${e}.word_embeddings.weight`), inputs.inputIds); // [B, F, D]
    const positions = tf.slice(this.p(`${e}.position_embeddings.weight`), [0, 0], [seq, d]); // [F, D]
    const types = embeddingLookup(this.p(`${e}.token_type_embeddings.weight`), inputs.tokenTypeIds); // [B, F, D]
    const embedded = this.addNorm(`${e}.LayerNorm`, tf.add(words, positions), types); // [B, F, D]
    return tf.reshape(this.dropout(embedded, this.config.hiddenDropoutProb, pass), [batch * seq, d]) as tf.Tensor2D;
  }

  /** The padding mask as a bias on the attention scores: 0 where attended, float32's lowest value where masked (HF). */
  private attentionMask(attentionMask: tf.Tensor2D, pass: Pass, fusedAttention: boolean): AttentionMask {
    const { batch, seq } = pass;
    const keep = tf.cast(tf.reshape(attentionMask, [batch, 1, 1, seq]), "float32"); // [B, 1, 1, T]
    const bias = tf.mul(tf.sub(1, keep), MASKED_SCORE) as tf.Tensor4D; // [B, 1, 1, T]
    return { bias, rows: fusedAttention ? tf.reshape(bias, [batch, seq]) : undefined }; // rows: [B, T]
  }

  /**
   * One encoder layer, post-LN: two residual sub-blocks, each followed by its LayerNorm. With `clsOnly` the attention
   * reads every token and the rest runs at the `[CLS]` rows only: `[B, D]` out.
   */
  private encoderLayer(p: string, x: tf.Tensor2D, mask: AttentionMask, pass: Pass, clsOnly = false): tf.Tensor2D {
    const cls = clsOnly ? this.firstTokens(x, pass) : undefined; // [B, D]
    const attended = this.selfAttention(p, x, mask, pass, cls); // [B*F, D], or [B, D] if clsOnly
    x = this.addNorm(`${p}.attention.output.LayerNorm`, attended, cls ?? x);
    const ff = this.feedForward(p, x, pass, this.hiddenRows(pass, clsOnly));
    return this.addNorm(`${p}.output.LayerNorm`, ff, x); // [B*F, D] or [B, D]
  }

  /** Each example's first row (`[CLS]`) of `[B*F, D]`: `[B, D]`. */
  private firstTokens(x: tf.Tensor2D, pass: Pass): tf.Tensor2D {
    if (pass.packing) return tf.gather(x, pass.packing.firstRows) as tf.Tensor2D; // [B, D]
    const { batch, seq } = pass;
    const d = x.shape[1];
    return tf.reshape(tf.slice(tf.reshape(x, [batch, seq, d]), [0, 0, 0], [batch, 1, d]), [batch, d]); // [B, D]
  }

  /** The residual connection of a sub-block, then LayerNorm: `LayerNorm(out + input)` (one kernel on blas). */
  private addNorm<T extends tf.Tensor>(prefix: string, out: T, input: tf.Tensor): T {
    const eps = this.config.layerNormEps;
    return fused.addLayerNorm(out, input, this.p(`${prefix}.weight`), this.p(`${prefix}.bias`), eps);
  }

  /**
   * Multi-head self-attention (every token mixes the values of all unmasked tokens, per head), then its output
   * projection and dropout. Given `cls` (the `[CLS]` rows of `x`), only those rows come out.
   */
  private selfAttention(p: string, x: tf.Tensor2D, mask: AttentionMask, pass: Pass, cls?: tf.Tensor2D): tf.Tensor2D {
    const { batch, seq } = pass;
    const { hiddenSize: d, numAttentionHeads: n, attentionProbsDropoutProb: rate } = this.config;
    const names = ["query", "key", "value"].map((l) => `${p}.attention.self.${l}`);
    // blas with cls, inference: one query row per example attends to every token (lib/backends/blas/attention.ts);
    // in training every row attends (the probabilities' dropout masks are drawn by position), then [CLS]'s rows are kept.
    const firstTokenOnly = cls !== undefined && mask.rows !== undefined && !pass.training;
    let context: tf.Tensor2D; // [B*F, N*H], or [B, N*H] with cls
    if (pass.packing) { // [R, N*H], or [B, N*H] with cls
      const [dense, param] = [(l: string, t: tf.Tensor2D) => this.dense(l, t), (name: string) => this.p(name)];
      const seed = pass.dropoutSeed(rate);
      const training = pass.training || recordingGradients() ? { rate, seed } : undefined;
      context = packedAttention({ x, packing: pass.packing, heads: n, names, dense, param, cls, training });
    } else if (mask.rows && !firstTokenOnly) {
      // blas: one kernel each way, heads addressed in place (lib/backends/blas/attention.ts); same maths and mask. In
      // inference the three layers run as one product where that keeps the bits (fused.ts's denseSideBySide).
      const seed = pass.dropoutSeed(rate), shape = { maskBias: mask.rows, batch, seq, heads: n };
      const param = (suffix: string) => names.map((l) => this.p(`${l}.${suffix}`));
      const qkv = seed === undefined ? fused.denseSideBySide(x, param("weight"), param("bias")) : undefined;
      if (qkv) context = attention.packedSelfAttention({ qkv, ...shape }); // qkv: [B*F, 3*N*H]
      else {
        const [q, k, v] = names.map((l) => this.dense(l, x)); // [B*F, N*H] each
        context = attention.selfAttention({ ...shape, q, k, v, dropoutRate: seed === undefined ? 0 : rate, seed });
      }
      if (cls) context = this.firstTokens(context, pass); // [B, N*H]
    } else {
      const q = this.dense(names[0], firstTokenOnly ? cls : x); // [B*F, N*H], or [B, N*H]
      const [k, v] = names.slice(1).map((l) => this.dense(l, x)); // [B*T, N*H] each
      if (firstTokenOnly) {
        context = attention.firstTokenAttention({ q, k, v, maskBias: mask.rows!, batch, seq, heads: n });
      } else {
        const h = d / n;
        const split = (t: tf.Tensor2D, perm: number[]) => tf.transpose(tf.reshape(t, [batch, seq, n, h]), perm);
        const qh = split(q, [0, 2, 1, 3]); // [B, N, F, H]
        const kT = split(k, [0, 2, 3, 1]); // [B, N, H, T]
        const vh = split(v, [0, 2, 1, 3]); // [B, N, T, H]
        const scores = tf.add(tf.div(batchMatMul(qh, kT), Math.sqrt(h)), mask.bias); // [B, N, F, T]
        const probs = tf.softmax(scores) as tf.Tensor4D; // [B, N, F, T]
        pass.attentions?.push(probs);
        const heads = batchMatMul(this.dropout(probs, rate, pass), vh); // [B, N, F, H]
        context = tf.reshape(tf.transpose(heads, [0, 2, 1, 3]), [batch * seq, d]) as tf.Tensor2D;
        if (cls) context = this.firstTokens(context, pass); // [B, N*H]
      }
    }
    const out = this.dense(`${p}.attention.output.dense`, context); // [B*F, D], or [B, D] with cls
    return this.dropout(out, this.config.hiddenDropoutProb, pass, this.hiddenRows(pass, cls !== undefined));
  }

  /** Feed-forward: expand and activate (one call where that keeps the bits), project back, dropout. */
  private feedForward(p: string, x: tf.Tensor2D, pass: Pass, every: number | number[] = 1): tf.Tensor2D {
    const up = `${p}.intermediate.dense`;
    const inner =
      (this.act === gelu ? fused.denseGeluFused(x, this.p(`${up}.weight`), this.p(`${up}.bias`)) : undefined) ??
        this.act(this.dense(up, x)) as tf.Tensor2D; // [B*F, I]
    return this.dropout(this.dense(`${p}.output.dense`, inner), this.config.hiddenDropoutProb, pass, every); // [B*F, D]
  }

  /** Pooler: tanh(dense) of the [CLS] token's final state. */
  private pool(lastHiddenState: tf.Tensor3D): tf.Tensor2D {
    const [batch, , d] = lastHiddenState.shape;
    const cls = tf.reshape(tf.slice(lastHiddenState, [0, 0, 0], [batch, 1, d]), [batch, d]) as tf.Tensor2D; // [B, D]
    return tf.tanh(this.dense("bert.pooler.dense", cls)); // [B, D]
  }

  /** Sequence classification: dropout, then dense on the pooled output. */
  private classify(pooled: tf.Tensor2D, pass: Pass): tf.Tensor2D {
    const rate = this.config.classifierDropout ?? this.config.hiddenDropoutProb;
    return this.dense("classifier", this.dropout(pooled, rate, pass)); // [B, L]
  }

  /** Question answering: each token's score as the answer's start and as its end. */
  private answerSpan(x: tf.Tensor2D, pass: Pass): { startLogits: tf.Tensor2D; endLogits: tf.Tensor2D } {
    const { batch, seq } = pass;
    const both = tf.reshape(this.dense("qa_outputs", x), [batch, seq, 2]); // [B, F, 2]
    return {
      startLogits: tf.reshape(tf.slice(both, [0, 0, 0], [batch, seq, 1]), [batch, seq]), // [B, F]
      endLogits: tf.reshape(tf.slice(both, [0, 0, 1], [batch, seq, 1]), [batch, seq]), // [B, F]
    };
  }

  /**
   * Masked LM: transform (dense + activation + LayerNorm), then the decoder tied to the word embeddings; at every
   * token (K = F), at `positions` `[B, K]` only, or at the `[M]` flat token indices `tokens` (as `[1, M]`).
   */
  private maskedLm(x: tf.Tensor2D, pass: Pass, positions?: tf.Tensor2D, tokens?: tf.Tensor1D): tf.Tensor3D {
    const { seq } = pass;
    let [batch, k] = [pass.batch, seq];
    let flat = tokens; // [M] or [B*K] indices into the B*F rows of x; none: every row
    if (positions) {
      if (positions.rank !== 2 || positions.shape[0] !== batch) {
        throw new Error(`mlmPositions has shape [${positions.shape}], expected [${batch}, k]`);
      }
      k = positions.shape[1];
      const rowStart = tf.mul(tf.range(0, batch, 1, "int32"), tf.scalar(seq, "int32")); // [B]
      flat = tf.reshape(tf.add(tf.cast(positions, "int32"), tf.reshape(rowStart, [batch, 1])), [-1]); // [B*K]
    } else if (tokens) {
      if (tokens.rank !== 1) throw new Error(`mlmTokens has shape [${tokens.shape}], expected [m]`);
      [batch, k] = [1, tokens.shape[0]];
    }
    const rowsAt = flat ? embeddingLookup(x, tf.cast(flat, "int32")) as tf.Tensor2D : x; // [B*K, D]
    const transformed = this.norm(
      "cls.predictions.transform.LayerNorm",
      this.act(this.dense("cls.predictions.transform.dense", rowsAt)),
    ) as tf.Tensor2D; // [B*K, D]
    const words = this.p("bert.embeddings.word_embeddings.weight"); // [V, D], used as [out, in]
    const logits = linearTransposed(transformed, words, this.p("cls.predictions.bias")); // [B*K, V]
    return tf.reshape(logits, [batch, k, this.config.vocabSize]); // [B, K, V]
  }

  /** Next-sentence prediction: is sentence B the one that followed sentence A? */
  private nextSentence(pooled: tf.Tensor2D): tf.Tensor2D {
    return this.dense("cls.seq_relationship", pooled); // [B, 2]
  }

  /** Frees every parameter. The model cannot be used afterwards. */
  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
  }
}
