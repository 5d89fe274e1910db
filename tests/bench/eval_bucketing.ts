/**
 * Evaluation throughput with and without length-sorted batches (lib/eval/evaluate.ts runInference `sortByLength`),
 * interleaved in one process, and how far the two runs' logits are apart.
 *
 *   deno run -A tests/bench/eval_bucketing.ts --checkpoint DIR --features outputs/<run>/features/dev.safetensors
 *     [--rounds 3] [--batch-size 64]
 * @module
 */
import { initBackend } from "../../lib/backends/backend.ts";
import { loadCheckpoint } from "../../lib/model/checkpoint.ts";
import { runInference } from "../../lib/eval/evaluate.ts";
import { loadFeatures } from "../../lib/data/features.ts";

const args: Record<string, string> = { rounds: "3", "batch-size": "64" };
for (let i = 0; i < Deno.args.length; i += 2) args[Deno.args[i].replace(/^--/, "")] = Deno.args[i + 1];
if (!args.checkpoint || !args.features) {
  console.error("usage: eval_bucketing.ts --checkpoint DIR --features FILE [--rounds 3] [--batch-size 64]");
  Deno.exit(2);
}
await initBackend({});
const features = await loadFeatures(args.features);
const { model } = await loadCheckpoint(args.checkpoint, { head: "classification", quiet: true });
const batchSize = Number(args["batch-size"]);
const times: Record<string, number[]> = { unsorted: [], sorted: [] };
let first: Record<string, Float32Array> = {};
await runInference(model, features, { batchSize }); // warm-up
for (let r = 0; r < Number(args.rounds); r++) {
  for (const mode of ["unsorted", "sorted"]) {
    const t0 = performance.now();
    const out = await runInference(model, features, { batchSize, sortByLength: mode === "sorted" });
    times[mode].push(performance.now() - t0);
    if (r === 0) first = { ...first, [mode]: out.logits, [`${mode}:pred`]: new Float32Array(out.predictions) };
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const mode of ["unsorted", "sorted"]) {
  const ms = median(times[mode]);
  console.log(
    `${mode.padEnd(8)}  ${features.n} examples, batch ${batchSize}: median ${ms.toFixed(0)} ms ` +
      `(${times[mode].map((t) => t.toFixed(0)).join(", ")}), ${(features.n * 1000 / ms).toFixed(0)} examples/s`,
  );
}
let maxDiff = 0;
for (let i = 0; i < first.unsorted.length; i++) {
  maxDiff = Math.max(maxDiff, Math.abs(first.unsorted[i] - first.sorted[i]));
}
const samePred = first["unsorted:pred"].every((p, i) => p === first["sorted:pred"][i]);
console.log(`max |logit difference| ${maxDiff.toExponential(2)}; identical predictions: ${samePred}`);
model.dispose();
