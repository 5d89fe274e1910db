/**
 * The input gradient of a dense layer, `dX = dY W^T`, measured two ways with oneDNN's `sgemm`: with `W` `[N, K]`
 * passed transposed (what the backward pass does) and with `W^T` written out first (here by a JavaScript loop) as a
 * `[K, N]` array and passed plain. Prints the median time of each (and of the loop), and how many outputs differ in
 * their bits, for BERT-Base's and BERT-Tiny's shapes. A benchmark that prints figures, not a test.
 *
 * Since 2026-12-07 `Dnnl.sgemm` itself writes `W^T` out (with oneDNN's reorder) where that pays: on the AVX-512 code,
 * for K > N, from 512 rows (lib/backends/blas/dnnl.ts). So the "transposed" column at 1,024 rows is now that path;
 * the 511-row line shows oneDNN's own transposed operand.
 *
 * Usage: deno run -A tests/bench/transposed_weight.ts [calls]   (DNNL_MAX_CPU_ISA=AVX2 for the AVX2 code)
 * @module
 */
import { loadDnnl } from "../../lib/backends/blas/dnnl.ts";
import { cpuVectorExtensions } from "../../lib/bench/bench.ts";

const d = loadDnnl();
if (!d) {
  console.log("transposed_weight: needs oneDNN (apt-get install libdnnl2)");
  Deno.exit(0);
}
d.setThreads(2);
const calls = Number(Deno.args[0] ?? 12);
console.log(`cpu vector extensions: ${cpuVectorExtensions().join(" ")}; oneDNN ${d.isa}, 2 threads`);
const rand = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
/** Tile side of the transposing loop (16 was the fastest of 8, 16, 32 and 64 here). */
const TILE = 16;
/** `out[j, i] = w[i, j]` for `w` `[rows, cols]`, in tiles of `TILE x TILE`. */
function transpose(w: Float32Array, rows: number, cols: number, out: Float32Array): void {
  for (let i0 = 0; i0 < rows; i0 += TILE) {
    const i1 = Math.min(rows, i0 + TILE);
    for (let j0 = 0; j0 < cols; j0 += TILE) {
      const j1 = Math.min(cols, j0 + TILE);
      for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) out[j * rows + i] = w[i * cols + j];
    }
  }
}
/** `[M, K, N]`: dY is `[M, K]` (the layer's output width), W is `[N, K]` (the layer's `[in, out]` weight). */
const SHAPES = [
  [1024, 3072, 768],
  [511, 3072, 768],
  [1024, 768, 768],
  [1024, 768, 3072],
  [4096, 512, 128],
  [4096, 128, 128],
];
for (const [M, K, N] of SHAPES) {
  const dy = rand(M * K), w = rand(N * K), wt = new Float32Array(K * N);
  const c1 = new Float32Array(M * N), c2 = new Float32Array(M * N);
  const tTrans: number[] = [], tPlain: number[] = [], tT: number[] = [];
  for (let i = 0; i < calls; i++) {
    let t = performance.now();
    d.sgemm({ m: M, n: N, k: K, a: dy, b: w, c: c1, transB: true, beta: 0 });
    tTrans.push(performance.now() - t);
    t = performance.now();
    transpose(w, N, K, wt);
    tT.push(performance.now() - t);
    t = performance.now();
    d.sgemm({ m: M, n: N, k: K, a: dy, b: wt, c: c2, beta: 0 });
    tPlain.push(performance.now() - t);
  }
  let diff = 0;
  for (let i = 0; i < c1.length; i++) if (c1[i] !== c2[i]) diff++;
  const gf = (ms: number) => (2 * M * N * K / ms / 1e6).toFixed(0);
  console.log(
    `[${M}, ${K}] x [${N}, ${K}]^T: transposed ${median(tTrans).toFixed(2)} ms (${gf(median(tTrans))} GFLOP/s), ` +
      `plain W^T ${median(tPlain).toFixed(2)} ms (${gf(median(tPlain))}), writing W^T ${median(tT).toFixed(2)} ms; ` +
      `${diff} of ${c1.length} outputs differ`,
  );
}
