/**
 * `deno task bert convert --from DIR --to DIR`: rewrites a checkpoint folder of any readable format (a Google
 * TensorFlow checkpoint with `bert_config.json`, PyTorch `pytorch_model.bin`, safetensors) as a Hugging Face folder:
 * `config.json`, `vocab.txt`, `tokenizer_config.json`, `model.safetensors`.
 * @module
 */
import { defineCommand, type ParsedArgs } from "./args.ts";
import { UsageError } from "../io/errors.ts";
import { convertCheckpoint } from "../model/checkpoint.ts";

/** Flags of `convert`. */
export const spec = defineCommand({
  name: "convert",
  description: "Writes a Hugging Face checkpoint folder (config.json, vocab.txt, tokenizer_config.json, " +
    "model.safetensors) from a folder holding a Google TensorFlow checkpoint (bert_model.ckpt.index + .data-*, " +
    "bert_config.json), a PyTorch pytorch_model.bin (zip or legacy, or shards) or safetensors. Google's variable " +
    "names become Hugging Face's; optimizer slots and global_step are left out; dtypes are kept. config.json is " +
    "copied, or made from bert_config.json with the architecture the weights imply.",
  usage: "--from DIR --to DIR [--overwrite]",
  flags: {
    from: { required: true, help: "checkpoint folder to read" },
    to: { required: true, help: "folder to write (must not exist unless --overwrite)" },
    overwrite: { type: "boolean", help: "replace --to when it exists" },
  },
});

/** Runs `convert` with parsed flags. */
export async function run(args: ParsedArgs<typeof spec.flags>): Promise<void> {
  if (args.positional.length) throw new UsageError(`unexpected argument "${args.positional[0]}"`);
  const from = args.flags.from;
  const to = args.flags.to;
  const result = await convertCheckpoint(from, to, { overwrite: args.flags.overwrite === true });
  console.log(`read ${result.weights.path} (${result.weights.description})`);
  if (result.weights.skipped.length) {
    console.log(`left out ${result.weights.skipped.length} optimizer/step variables (adam_m, adam_v, global_step)`);
  }
  if (result.weights.notRead.length) console.log(`also present, not read: ${result.weights.notRead.join(", ")}`);
  console.log(
    `config.json ${result.architecture ? `made from ${result.configFrom} (${result.architecture})` : "copied"}`,
  );
  console.log(`wrote ${to}: ${result.tensors} tensors in model.safetensors`);
}
