/**
 * Timings of single `blas`-backend kernels at BERT-Tiny training shapes (batch 32, seq 128, hidden 128,
 * ffn 512, vocab 30522): the median of several calls, each inside `tf.tidy` with its output disposed so that
 * output arrays are recycled by the pool as in training (`dataSync()` would disqualify them).
 *
 * Usage: deno run -A tests/bench/micro_kernels.ts [filter] [--reps N]
 */
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { addLayerNorm } from "../../lib/backends/blas/fused.ts";

await initBackend({ backend: "blas", quiet: true });

const filter = Deno.args.find((a) => !a.startsWith("--") && !/^\d+$/.test(a));
const ri = Deno.args.indexOf("--reps");
const reps = ri >= 0 ? Number(Deno.args[ri + 1]) : 15;

function time(name: string, elements: number, fn: () => tf.Tensor | tf.Tensor[]): void {
  if (filter && !name.includes(filter)) return;
  const once = () => tf.tidy(() => tf.dispose(fn()));
  for (let i = 0; i < 3; i++) once(); // warm-up: compilation and pool
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    once();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  const med = t[t.length >> 1];
  console.log(
    `${name.padEnd(44)} ${med.toFixed(3).padStart(8)} ms  (min ${t[0].toFixed(3)})  ${
      (med * 1e6 / elements).toFixed(2).padStart(6)
    } ns/el`,
  );
}

const x128 = tf.randomNormal([4096, 128]), y128 = tf.randomNormal([4096, 128]);
const x512 = tf.randomNormal([4096, 512]);
const w128 = tf.randomNormal([128, 128]), w512 = tf.randomNormal([128, 512]);
const b128 = tf.randomNormal([128]), b512 = tf.randomNormal([512]);

time("matMul [4096,128]x[128,512]", 4096 * 512, () => tf.matMul(x128, w512));
time("fused [4096,128]x[128,128]+b", 4096 * 128, () => tf.fused.matMul({ a: x128, b: w128, bias: b128 }));
time("fused [4096,128]x[128,512]+b", 4096 * 512, () => tf.fused.matMul({ a: x128, b: w512, bias: b512 }));
time(
  "fused [4096,128]x[128,512]+b relu",
  4096 * 512,
  () => tf.fused.matMul({ a: x128, b: w512, bias: b512, activation: "relu" }),
);

const ids = tf.tensor2d(Int32Array.from({ length: 4096 }, (_, i) => (i * 7919) % 30522), [4096, 1], "int32");
time("scatterNd [4096,1] [4096,128] -> [30522,128]", 30522 * 128, () => tf.scatterND(ids, y128, [30522, 128]));

time("sum [4096,128] axis 0", 4096 * 128, () => tf.sum(x128, 0));
time("sum [4096,512] axis 0", 4096 * 512, () => tf.sum(x512, 0));
const x3 = tf.randomNormal([32, 128, 128]);
time("sum [32,128,128] axes 0,1", x3.size, () => tf.sum(x3, [0, 1]));
time("sum [32,128,128] axis 0", x3.size, () => tf.sum(x3, 0));

// LayerNorm of x + residual as a layer's output (no gradient tape: no statistics written), at Tiny and Base widths.
const x768 = tf.randomNormal([1024, 768]), y768 = tf.randomNormal([1024, 768]);
const [g128, g768] = [128, 768].map((w) => tf.randomNormal([w], 1, 0.1));
time("addLayerNorm [4096,128] + residual", 4096 * 128, () => addLayerNorm(x128, y128, g128, b128, 1e-12));
time("addLayerNorm [1024,768] + residual", 1024 * 768, () => addLayerNorm(x768, y768, g768, g768, 1e-12));

time("add [4096,128] same shape", 4096 * 128, () => tf.add(x128, y128));
time("sub [4096,128] same shape", 4096 * 128, () => tf.sub(x128, y128));
time("mul [4096,128] same shape", 4096 * 128, () => tf.mul(x128, y128));
time("add [4096,128] + [128]", 4096 * 128, () => tf.add(x128, b128));

time("slice [32,128,128] -> [32,1,128]", 32 * 128, () => tf.slice(x3, [0, 0, 0], [32, 1, 128]));
time("slice [4096,128] rows (contiguous)", 1024 * 128, () => tf.slice(x128, [1024, 0], [1024, -1]));
const cls = tf.randomNormal([32, 1, 128]);
time("pad [32,1,128] -> [32,128,128]", x3.size, () => tf.pad(cls, [[0, 0], [0, 127], [0, 0]]));
time("pad [128,128] -> [512,128]", 512 * 128, () => tf.pad(w128, [[0, 384], [0, 0]]));
