/**
 * `deno task bert inspect PATH [--json]`: the tensors of a checkpoint folder or of one weights file of any
 * readable format (safetensors, PyTorch `.bin` zip or legacy, sharded `*.index.json`, TensorFlow `.index`), one
 * line per tensor. Reads only headers, pickles or the TensorFlow index: a `.index` whose data file is absent works.
 * @module
 */
import { defineCommand, type ParsedArgs } from "./args.ts";
import { UsageError } from "../io/errors.ts";
import { dtypeBytes, FORMAT_NAMES, listTensors } from "../io/weights.ts";

/** Flags of `inspect`. */
export const spec = defineCommand({
  name: "inspect",
  description: "Lists the tensors (name, dtype, shape) of a checkpoint folder or a weights file: model.safetensors, " +
    "pytorch_model.bin (zip or legacy; the pickle is never executed), *.index.json shards, or a TensorFlow " +
    "checkpoint (.index; its data files are not needed). Names and dtypes are the file's own (TensorFlow: " +
    "bert/embeddings/word_embeddings float32). A folder is read by precedence: safetensors, .bin, TensorFlow.",
  usage: "PATH [--json]",
  flags: {
    json: { type: "boolean", help: 'one JSON object per line: {"name", "dtype", "shape"}' },
  },
});

/** Runs `inspect` with parsed flags. */
export async function run(args: ParsedArgs<typeof spec.flags>): Promise<void> {
  const [path, ...rest] = args.positional;
  if (!path) throw new UsageError("give a checkpoint folder or a weights file");
  if (rest.length) throw new UsageError(`unexpected argument "${rest[0]}"`);
  const { source, tensors } = await listTensors(path);
  if (args.flags.json) {
    for (const t of tensors) console.log(JSON.stringify({ name: t.name, dtype: t.dtype, shape: t.shape }));
    return;
  }
  let params = 0;
  let bytes = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    params += n;
    bytes += n * (dtypeBytes(t.dtype) ?? 0);
  }
  console.log(
    `${source.path}: ${FORMAT_NAMES[source.format]}, ${tensors.length} tensors, ${params.toLocaleString("en")} ` +
      `values, ${(bytes / 1e6).toFixed(1)} MB`,
  );
  const width = Math.max(...tensors.map((t) => t.name.length));
  const dtypeWidth = Math.max(...tensors.map((t) => t.dtype.length));
  for (const t of tensors) {
    console.log(`${t.name.padEnd(width)}  ${t.dtype.padEnd(dtypeWidth)}  [${t.shape.join(", ")}]`);
  }
}
