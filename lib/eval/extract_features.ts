/**
 * Hidden states of every chosen layer and the pooled output of a checkpoint for the texts of a JSONL file (the
 * equivalent of Google BERT's `extract_features.py`, written as safetensors); `deno task bert extract-features`
 * (lib/cli/extract_features.ts) parses its flags.
 *
 * Input: JSON lines `{"text": "..."}` or `{"text": "...", "text_pair": "..."}`. Output tensors: `input_ids`,
 * `token_type_ids`, `attention_mask` (I32 `[n, max_seq_length]`), `hidden_states.<i>` (F32 `[n, max_seq_length,
 * hidden]`, `i` = 0 for the embeddings output up to num_hidden_layers) and `pooled_output` (F32 `[n, hidden]`).
 * @module
 */
import { initBackend, tf } from "../backends/backend.ts";
import { loadCheckpoint } from "../model/checkpoint.ts";
import { convertExample } from "../data/features.ts";
import { type TensorEntry, writeSafetensors } from "../io/safetensors.ts";

/** One input line. */
export interface TextInput {
  /** First (or only) text. */
  text: string;
  /** Optional second text of a pair. */
  textPair?: string;
  /** 1-based line number in the input file. */
  line: number;
}

/** Reads `{"text", "text_pair"?}` JSON lines; errors name `path:line`. Blank lines are skipped. */
export async function readTextsJsonl(path: string): Promise<TextInput[]> {
  let content: string;
  try {
    content = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new Error(`${path}: file not found`);
    throw err;
  }
  const out: TextInput[] = [];
  content.split("\n").forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === "") return;
    let obj: unknown;
    try {
      obj = JSON.parse(raw);
    } catch (err) {
      throw new Error(`${path}:${line}: not valid JSON: ${(err as Error).message}`);
    }
    const rec = obj as Record<string, unknown>;
    if (!rec || typeof rec !== "object" || typeof rec.text !== "string") {
      throw new Error(`${path}:${line}: expected an object with a string "text" field`);
    }
    if (rec.text_pair !== undefined && rec.text_pair !== null && typeof rec.text_pair !== "string") {
      throw new Error(`${path}:${line}: "text_pair" must be a string`);
    }
    out.push({ text: rec.text, textPair: (rec.text_pair as string | undefined) ?? undefined, line });
  });
  if (out.length === 0) throw new Error(`${path}: no texts (expected JSON lines with a "text" field)`);
  return out;
}

/** Options of {@linkcode extractFeatures}. */
export interface ExtractFeaturesOptions {
  /** Checkpoint folder. */
  model: string;
  /** JSONL input file. */
  input: string;
  /** safetensors output file (written atomically). */
  output: string;
  /** Tokens per text (default 128). */
  maxSeqLength?: number;
  /** Texts per forward pass (default 8). */
  batchSize?: number;
  /** `"all"` (default) or hidden-state indices, negative counting from the end (-1 = last layer). */
  layers?: "all" | number[];
  /** Print nothing. */
  quiet?: boolean;
}

/** What {@linkcode extractFeatures} wrote. */
export interface ExtractFeaturesResult {
  /** Number of texts. */
  n: number;
  /** Hidden-state indices written (0 = embeddings output). */
  layers: number[];
  /** Texts that were cut to `maxSeqLength`. */
  truncated: number;
  /** Seconds spent in forward passes. */
  seconds: number;
}

/** Resolves `all` / negative indices against `numHiddenLayers + 1` hidden states. */
export function resolveLayers(layers: "all" | number[], numHiddenLayers: number): number[] {
  const count = numHiddenLayers + 1;
  if (layers === "all") return Array.from({ length: count }, (_, i) => i);
  const out = layers.map((l) => {
    if (!Number.isInteger(l) || l >= count || l < -count) {
      throw new Error(`layer ${l} does not exist: this model has hidden states 0..${count - 1} (or -1..-${count})`);
    }
    return l < 0 ? count + l : l;
  });
  return [...new Set(out)];
}

/** Runs the texts of `options.input` through `options.model` and writes the features file. */
export async function extractFeatures(options: ExtractFeaturesOptions): Promise<ExtractFeaturesResult> {
  const maxSeqLength = options.maxSeqLength ?? 128;
  const batchSize = options.batchSize ?? 8;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batch size must be a positive integer`);
  const log = options.quiet ? () => {} : console.log;
  await initBackend({ quiet: options.quiet });
  const texts = await readTextsJsonl(options.input);
  const { model, tokenizer, report, config } = await loadCheckpoint(options.model, { head: "none", quiet: true });
  try {
    if (report.missing.length) {
      console.warn(`warning: ${options.model} lacks ${report.missing.join(", ")}; these are random`);
    }
    if (maxSeqLength > config.maxPositionEmbeddings) {
      throw new Error(
        `--max-seq-length ${maxSeqLength} exceeds max_position_embeddings ${config.maxPositionEmbeddings}`,
      );
    }
    const layers = resolveLayers(options.layers ?? "all", config.numHiddenLayers);
    const n = texts.length;
    const L = maxSeqLength;
    const H = config.hiddenSize;
    const bytes = n * L * H * 4 * layers.length;
    if (bytes > 2 ** 31 - 2 ** 24) {
      throw new Error(
        `the output would take ${(bytes / 2 ** 30).toFixed(1)} GiB; keep fewer layers (--layers -1) or fewer texts`,
      );
    }
    const inputIds = new Int32Array(n * L);
    const tokenTypeIds = new Int32Array(n * L);
    const attentionMask = new Int32Array(n * L);
    let truncated = 0;
    texts.forEach((t, i) => {
      const f = convertExample({ id: String(i), textA: t.text, textB: t.textPair, line: t.line }, tokenizer, L);
      inputIds.set(f.inputIds, i * L);
      tokenTypeIds.set(f.tokenTypeIds, i * L);
      attentionMask.set(f.attentionMask, i * L);
      if (f.truncated) truncated++;
    });
    const hidden = layers.map(() => new Float32Array(n * L * H));
    const pooled = new Float32Array(n * H);
    const t0 = performance.now();
    for (let start = 0; start < n; start += batchSize) {
      const end = Math.min(n, start + batchSize);
      const rows = end - start;
      const slice = (a: Int32Array) => tf.tensor2d(a.subarray(start * L, end * L), [rows, L], "int32");
      const kept = tf.tidy(() => {
        const out = model.forward(
          { inputIds: slice(inputIds), tokenTypeIds: slice(tokenTypeIds), attentionMask: slice(attentionMask) },
          { outputHiddenStates: true },
        );
        return [...layers.map((l) => out.hiddenStates![l]), out.pooledOutput!];
      });
      layers.forEach((_, j) => hidden[j].set(kept[j].dataSync(), start * L * H));
      pooled.set(kept[layers.length].dataSync(), start * H);
      tf.dispose(kept);
      if (!options.quiet && n > batchSize) {
        await Deno.stdout.write(new TextEncoder().encode(`\r  ${end}/${n} texts`));
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    if (!options.quiet && n > batchSize) log("");
    const tensors: Record<string, TensorEntry> = {
      input_ids: { dtype: "I32", shape: [n, L], data: inputIds },
      token_type_ids: { dtype: "I32", shape: [n, L], data: tokenTypeIds },
      attention_mask: { dtype: "I32", shape: [n, L], data: attentionMask },
      pooled_output: { dtype: "F32", shape: [n, H], data: pooled },
    };
    layers.forEach((l, j) => tensors[`hidden_states.${l}`] = { dtype: "F32", shape: [n, L, H], data: hidden[j] });
    await writeSafetensors(options.output, tensors, {
      model: options.model,
      vocab_sha256: await tokenizer.vocab.sha256(),
      lower_case: String(tokenizer.lowerCase),
      max_seq_length: String(L),
      layers: JSON.stringify(layers),
      num_hidden_layers: String(config.numHiddenLayers),
      hidden_size: String(H),
      input: options.input,
      n: String(n),
    });
    log(
      `wrote ${n} texts x ${layers.length} hidden states [${L}, ${H}] + pooled output to ${options.output} ` +
        `(${(bytes / 2 ** 20).toFixed(1)} MiB; ${truncated} truncated; ${(n / seconds).toFixed(1)} texts/s)`,
    );
    return { n, layers, truncated, seconds };
  } finally {
    model.dispose();
  }
}
