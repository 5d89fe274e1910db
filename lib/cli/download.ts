/**
 * `deno task bert download MODEL_ID`: fetch a checkpoint (safetensors, else `.bin`, else TensorFlow) from the
 * Hugging Face hub into the cache (resumable,
 * atomic per file; offline mode with `HF_HUB_OFFLINE=1`). Prints the folder to pass as `--model`.
 * @module
 */
import { defineCommand, type ParsedArgs } from "./args.ts";
import { UsageError } from "../io/errors.ts";
import { downloadModel, type DownloadProgress } from "../io/hub.ts";

/** Flags of `download`. */
export const spec = defineCommand({
  name: "download",
  description: "Downloads a BERT checkpoint from the Hugging Face hub into <cache>/<owner--name>/<revision>/: " +
    "config.json (or bert_config.json), vocab.txt, tokenizer_config.json when present, and the best weights the " +
    "revision has: model.safetensors, else pytorch_model.bin, else a TensorFlow checkpoint (.index + .data-*), " +
    "with their shards. Interrupted downloads resume; HF_ENDPOINT picks another hub, HF_HUB_OFFLINE=1 only checks " +
    "the cache, HF_TOKEN authenticates.",
  usage: "MODEL_ID [--revision main] [--cache .cache/hub] [--force]",
  flags: {
    revision: { default: "main", help: "branch, tag or commit" },
    cache: { default: ".cache/hub", help: "cache folder" },
    force: { type: "boolean", help: "download again even if cached" },
    quiet: { type: "boolean", help: "no progress output" },
  },
});

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/** A progress printer: one updating line on a terminal, a line per 25% otherwise. */
export function progressPrinter(): (p: DownloadProgress) => void {
  const tty = Deno.stdout.isTerminal();
  const encoder = new TextEncoder();
  let lastPrint = 0;
  let lastQuarter = -1;
  return (p) => {
    const pct = p.total ? Math.floor((100 * p.received) / p.total) : undefined;
    const text = `  ${p.file}: ${mb(p.received)}${p.total ? ` / ${mb(p.total)} (${pct}%)` : ""}` +
      (p.resumedFrom > 0 ? ` [resumed at ${mb(p.resumedFrom)}]` : "");
    if (tty) {
      const now = performance.now();
      if (!p.done && now - lastPrint < 100) return;
      lastPrint = now;
      Deno.stdout.writeSync(encoder.encode(`\r${text}\x1b[K${p.done ? "\n" : ""}`));
    } else {
      const quarter = pct === undefined ? 0 : Math.floor(pct / 25);
      if (p.done || quarter > lastQuarter) console.log(text);
      lastQuarter = p.done ? -1 : Math.max(quarter, lastQuarter);
    }
  };
}

/** Runs `download` with parsed flags. */
export async function run(args: ParsedArgs<typeof spec.flags>): Promise<void> {
  const [id, ...rest] = args.positional;
  if (!id) throw new UsageError("give a model id, e.g. deno task bert download google/bert_uncased_L-2_H-128_A-2");
  if (rest.length) throw new UsageError(`unexpected argument "${rest[0]}"`);
  const result = await downloadModel(id, {
    revision: args.flags.revision,
    cache: args.flags.cache,
    force: args.flags.force === true,
    onProgress: args.flags.quiet ? undefined : progressPrinter(),
  });
  if (result.cached.length) console.log(`already cached: ${result.cached.join(", ")}`);
  console.log(`${id} is in ${result.dir} (use --model ${result.dir})`);
}
