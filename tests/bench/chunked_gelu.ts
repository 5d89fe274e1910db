/**
 * Measured on 2026-12-07 and not kept: the feed-forward product and its GELU run by row chunks (each chunk's GELU
 * while its product output is still in cache), against the whole product and then the whole GELU, as the `blas`
 * backend does. oneDNN's `sgemm` gives a row the same bits in any call of two or more rows, so both give the same bits
 * (printed). Median of 15 calls after 3 warm-ups, 2 threads, BERT-Tiny and BERT-Base shapes. A benchmark that prints
 * figures, not a test.
 *
 * Usage: deno run -A tests/bench/chunked_gelu.ts   (DNNL_MAX_CPU_ISA=AVX2 for the AVX2 code; needs libdnnl2)
 * @module
 */
import { cpuVectorExtensions } from "../../lib/bench/bench.ts";
import { loadDnnl } from "../../lib/backends/blas/dnnl.ts";
const d = loadDnnl();
if (!d) {
  console.log("chunked_gelu: needs oneDNN (apt-get install libdnnl2)");
  Deno.exit(0);
}
d.setThreads(2);
console.log(`cpu vector extensions: ${cpuVectorExtensions().join(" ")}; oneDNN ${d.isa}, 2 threads`);
const rand = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
for (const [M, K, N] of [[4096, 128, 512], [1184, 128, 512], [1024, 768, 3072]]) {
  const A = rand(M * K), W = rand(K * N), bias = rand(N);
  const H = new Float32Array(M * N),
    G = new Float32Array(M * N),
    H2 = new Float32Array(M * N),
    G2 = new Float32Array(M * N);
  const fill = (c: Float32Array, rows: number, off: number) => {
    for (let r = 0; r < rows; r++) c.set(bias, off + r * N);
  };
  const whole = () => {
    fill(H, M, 0);
    d.sgemm({ m: M, n: N, k: K, a: A, b: W, c: H, beta: 1 });
    d.gelu(H, G);
  };
  const chunked = (rows: number) => {
    for (let r0 = 0; r0 < M; r0 += rows) {
      const m = Math.min(rows, M - r0);
      const h = H2.subarray(r0 * N, (r0 + m) * N), g = G2.subarray(r0 * N, (r0 + m) * N);
      fill(H2, m, r0 * N);
      d.sgemm({ m, n: N, k: K, a: A.subarray(r0 * K), b: W, c: h, beta: 1 });
      d.gelu(h, g);
    }
  };
  for (let i = 0; i < 3; i++) {
    whole();
    chunked(256);
    chunked(512);
  }
  const t: Record<string, number[]> = { whole: [], c256: [], c512: [] };
  for (let r = 0; r < 15; r++) {
    let s = performance.now();
    whole();
    t.whole.push(performance.now() - s);
    s = performance.now();
    chunked(256);
    t.c256.push(performance.now() - s);
    s = performance.now();
    chunked(512);
    t.c512.push(performance.now() - s);
  }
  let same = true;
  for (let i = 0; i < G.length; i++) {
    if (G[i] !== G2[i] || H[i] !== H2[i]) {
      same = false;
      break;
    }
  }
  const med = (a: number[]) => a.sort((x, y) => x - y)[7].toFixed(2);
  console.log(
    `${M}x${K}x${N}: whole ${med(t.whole)} ms, chunks of 256 rows ${med(t.c256)}, of 512 ${
      med(t.c512)
    }; same bits ${same}`,
  );
}
Deno.exit(0);
