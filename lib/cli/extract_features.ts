/**
 * `deno task bert extract-features`: run texts through a checkpoint and save every layer's hidden states and the
 * pooled output (the equivalent of Google BERT's `extract_features.py`, written as safetensors): parses the flags of
 * lib/eval/extract_features.ts's {@linkcode extractFeatures}, which documents the input and output.
 * @module
 */
import { defineCommand, type ParsedArgs } from "./args.ts";
import * as F from "./flags.ts";
import { UsageError } from "../io/errors.ts";
import { extractFeatures } from "../eval/extract_features.ts";

/** Flags of `extract-features`. */
export const spec = defineCommand({
  name: "extract-features",
  description: "Runs each text (or text pair) of a JSONL file through a checkpoint and writes the hidden states of " +
    "the chosen layers and the pooled [CLS] output to a safetensors file, with the input ids and masks.",
  usage: "--model DIR --input IN.jsonl --output OUT.safetensors [--max-seq-length 128] [--batch-size 8] " +
    "[--layers all|-1,-2,...]",
  flags: {
    model: {
      required: true,
      help: "checkpoint folder (config, vocab.txt, weights: safetensors, .bin or TF checkpoint)",
    },
    input: { required: true, help: 'JSONL file: one {"text": ...} or {"text": ..., "text_pair": ...} per line' },
    output: { required: true, help: "safetensors file to write (e.g. outputs/features.safetensors)" },
    "max-seq-length": F.maxSeqLength("text"),
    "batch-size": { ...F.batchSize("texts", { per: "forward pass" }), default: 8 },
    layers: {
      type: "list",
      default: ["all"],
      help: "hidden states to keep: all, or indices (0 = embeddings, -1 = last layer), e.g. -1,-2,-3,-4",
    },
  },
});

/** Runs `extract-features` with parsed flags. */
export async function run(args: ParsedArgs<typeof spec.flags>): Promise<void> {
  if (args.positional.length) throw new UsageError(`unexpected argument "${args.positional[0]}"`);
  const f = args.flags;
  const rawLayers = f.layers;
  let layers: "all" | number[];
  if (rawLayers.length === 1 && rawLayers[0] === "all") {
    layers = "all";
  } else {
    layers = rawLayers.map((s) => {
      const v = Number(s);
      if (s.trim() === "" || !Number.isInteger(v)) {
        throw new UsageError(`--layers expects "all" or integers, got "${s}"`);
      }
      return v;
    });
  }
  await extractFeatures({
    model: f.model,
    input: f.input,
    output: f.output,
    maxSeqLength: f["max-seq-length"],
    batchSize: f["batch-size"],
    layers,
  });
}
