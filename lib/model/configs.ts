/**
 * Standard BERT sizes for models that start from random weights (`--config tiny|mini|small|medium|base|FILE`), and
 * the notice every such run prints.
 * @module
 */
import { UsageError } from "../io/errors.ts";
import { exists } from "../io/fsutil.ts";
import { type BertConfig, configFromJson } from "./model.ts";

/** Standard BERT sizes for random initialisation (Turc et al. 2019 for tiny and mini). */
export const STANDARD_CONFIGS: Record<string, { layers: number; hidden: number; heads: number }> = {
  tiny: { layers: 2, hidden: 128, heads: 2 },
  mini: { layers: 4, hidden: 256, heads: 4 },
  small: { layers: 4, hidden: 512, heads: 8 },
  medium: { layers: 8, hidden: 512, heads: 8 },
  base: { layers: 12, hidden: 768, heads: 12 },
};

/** A BERT config of a standard size (or from a config.json file) for a vocabulary of `vocabSize` tokens. */
export async function standardConfig(name: string, vocabSize: number): Promise<BertConfig> {
  const std = STANDARD_CONFIGS[name];
  if (!std) {
    if (!(await exists(name))) {
      throw new UsageError(
        `--config "${name}" is neither a size (${Object.keys(STANDARD_CONFIGS).join(", ")}) nor a file`,
      );
    }
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(await Deno.readTextFile(name));
    } catch (err) {
      throw new Error(`--config ${name}: not a valid config.json (${(err as Error).message})`);
    }
    const config = configFromJson(json, name);
    if (config.vocabSize < vocabSize) {
      throw new Error(`${name}: vocab_size ${config.vocabSize} is smaller than the vocabulary (${vocabSize} tokens)`);
    }
    return config;
  }
  return configFromJson({
    vocab_size: vocabSize,
    hidden_size: std.hidden,
    num_hidden_layers: std.layers,
    num_attention_heads: std.heads,
    intermediate_size: 4 * std.hidden,
    hidden_act: "gelu",
    hidden_dropout_prob: 0.1,
    attention_probs_dropout_prob: 0.1,
    max_position_embeddings: 512,
    type_vocab_size: 2,
    initializer_range: 0.02,
    layer_norm_eps: 1e-12,
    pad_token_id: 0,
  }, `--config ${name}`);
}

/**
 * The lines of the loud notice printed (boxed, by the caller) whenever a model starts from random weights: `what`
 * names the model, `hint` says how to get real weights (default: download BERT-Tiny).
 */
export function randomInitNotice(what: string, hint?: string[]): string[] {
  return [
    "NOTICE: no pre-trained checkpoint: training starts from RANDOM weights",
    `(${what}).`,
    "Fine-tuning needs pre-trained weights to give useful accuracy: the numbers",
    "from this run only show that the pipeline works; they say nothing about BERT.",
    ...(hint ?? [
      "Get weights with `deno task bert download google/bert_uncased_L-2_H-128_A-2`",
      "and prepare and train with --model <the folder it prints>.",
    ]),
  ];
}
