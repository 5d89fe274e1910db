/**
 * The fused query/key/value product measured for BENCHMARKS.md (2026-12-07): oneDNN's `sgemm` on `[M, H] x [H, 3H]`
 * (the three weights side by side, bias rows first) against three `[M, H] x [H, H]` products: how many outputs differ
 * in their bits, and the time of each (mean of 20 calls, two runs), for BERT-Tiny and BERT-Base widths and a few row
 * counts. A benchmark that prints figures, not a test.
 *
 * Usage: deno run -A tests/bench/fused_qkv.ts   (DNNL_MAX_CPU_ISA=AVX2 for the AVX2 code; needs libdnnl2)
 * @module
 */
import { loadDnnl } from "../../lib/backends/blas/dnnl.ts";
import { cpuVectorExtensions } from "../../lib/bench/bench.ts";

const d = loadDnnl();
if (!d) {
  console.log("fused_qkv: needs oneDNN (apt-get install libdnnl2)");
  Deno.exit(0);
}
d.setThreads(2);
console.log(`cpu vector extensions: ${cpuVectorExtensions().join(" ")}; oneDNN ${d.isa}, 2 threads`);
const rand = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
for (const [M, K] of [[4096, 128], [1024, 768], [40, 128], [7, 128]]) {
  const A = rand(M * K), W = [rand(K * K), rand(K * K), rand(K * K)], bias = [rand(K), rand(K), rand(K)];
  const F = new Float32Array(K * 3 * K), FB = new Float32Array(3 * K);
  for (let r = 0; r < K; r++) for (let j = 0; j < 3; j++) F.set(W[j].subarray(r * K, (r + 1) * K), r * 3 * K + j * K);
  for (let j = 0; j < 3; j++) FB.set(bias[j], j * K);
  const C = new Float32Array(M * 3 * K);
  for (let r = 0; r < M; r++) C.set(FB, r * 3 * K);
  d.sgemm({ m: M, n: 3 * K, k: K, a: A, b: F, c: C, beta: 1 });
  let diff = 0;
  for (let j = 0; j < 3; j++) {
    const c = new Float32Array(M * K);
    for (let r = 0; r < M; r++) c.set(bias[j], r * K);
    d.sgemm({ m: M, n: K, k: K, a: A, b: W[j], c, beta: 1 });
    for (let r = 0; r < M; r++) for (let i = 0; i < K; i++) if (c[r * K + i] !== C[r * 3 * K + j * K + i]) diff++;
  }
  const fused: number[] = [], three: number[] = [];
  for (let run = 0; run < 2; run++) {
    let t = performance.now();
    for (let i = 0; i < 20; i++) d.sgemm({ m: M, n: 3 * K, k: K, a: A, b: F, c: C, beta: 1 });
    fused.push((performance.now() - t) / 20);
    const c = new Float32Array(M * K);
    t = performance.now();
    for (let i = 0; i < 20; i++) for (let j = 0; j < 3; j++) d.sgemm({ m: M, n: K, k: K, a: A, b: W[j], c, beta: 1 });
    three.push((performance.now() - t) / 20);
  }
  const ms = (a: number[]) => a.map((x) => x.toFixed(2)).join(", ");
  console.log(
    `M ${M}, H ${K}: ${diff} of ${M * 3 * K} outputs differ in bits; fused ${ms(fused)} ms, three ${ms(three)} ms`,
  );
}
