/**
 * The inference fusions of lib/backends/blas/fused.ts (`denseSideBySide`: the query, key and value layers as one
 * product; `denseGeluFused`: the feed-forward expansion with its GELU in one oneDNN call) against the separate calls,
 * alternating pass by pass in one process so that the machine's drift falls on both alike. Prints the median and
 * quartiles of each and checks that both give the same logits, bit for bit.
 *
 * Usage: deno run -A tests/bench/inference_fusion.ts [tiny|mini|base] [passes per side, default 40] [--batch B]
 *   [--seq F] [--cls]
 * (`--batch 64 --seq 27`: an SST-2 dev batch after length trimming; `--cls`: the last layer at [CLS] only, as
 * `evaluate` classifies). A benchmark that prints figures, not a test.
 * @module
 */
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { buildModel, cpuVectorExtensions, randomBatch, SHAPES } from "../../lib/bench/bench.ts";
import { setInferenceFusion } from "../../lib/backends/blas/fused.ts";

const flag = (name: string) => {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : undefined;
};
const valued = new Set(["--batch", "--seq"].map((f) => Deno.args.indexOf(f) + 1).filter((i) => i > 0));
const args = Deno.args.filter((a, i) => !a.startsWith("--") && !valued.has(i));
const base = SHAPES[args[0] ?? "tiny"];
const shape = { ...base, batch: flag("--batch") ?? base.batch, seqLength: flag("--seq") ?? base.seqLength };
const passes = Number(args[1] ?? 40);
const clsOnly = Deno.args.includes("--cls");

await initBackend({ backend: "blas", quiet: true });
const model = await buildModel(shape);
const batch = randomBatch(shape);
const pass = (fused: boolean) => {
  setInferenceFusion(fused);
  const t0 = performance.now();
  const logits = tf.tidy(() => model.forward(batch, { training: false, clsOnly }).logits!);
  const values = logits.dataSync().slice();
  logits.dispose();
  return { ms: performance.now() - t0, values };
};
for (let i = 0; i < 3; i++) [true, false].forEach(pass); // warm-up: compilation, primitives, pool
const times = { fused: [] as number[], separate: [] as number[] };
let same = true;
for (let i = 0; i < passes; i++) {
  const order = i % 2 ? [false, true] : [true, false];
  const [a, b] = order.map(pass);
  same &&= a.values.every((v, j) => Object.is(v, b.values[j]));
  times[order[0] ? "fused" : "separate"].push(a.ms);
  times[order[1] ? "fused" : "separate"].push(b.ms);
}
const q = (xs: number[], f: number) => [...xs].sort((x, y) => x - y)[Math.floor(f * (xs.length - 1))];
const line = (name: string, xs: number[]) =>
  `${name.padEnd(9)} median ${q(xs, 0.5).toFixed(2)} ms (quartiles ${q(xs, 0.25).toFixed(2)}-${
    q(xs, 0.75).toFixed(2)
  })`;
console.log(`cpu vector extensions: ${cpuVectorExtensions().join(" ")}`);
console.log(
  `${args[0] ?? "tiny"} ${shape.batch}x${shape.seqLength}${clsOnly ? " [CLS]" : ""} inference, ${passes} passes each:`,
);
console.log(line("fused", times.fused));
console.log(line("separate", times.separate));
console.log(`saved: ${(100 * (1 - q(times.fused, 0.5) / q(times.separate, 0.5))).toFixed(1)}% at the median`);
console.log(`logits: ${same ? "the same bits" : "DIFFERENT"} both ways`);
if (!same) Deno.exit(1);
