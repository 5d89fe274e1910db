/**
 * The `blas` backend's attention kernel at sequence lengths that are and are not multiples of 4: forward and backward
 * calls on BERT-Tiny-sized blocks (batch 32, 2 heads, hidden 128, dropout 0.1), the SIMD block jobs against the
 * JavaScript loops they replaced at unaligned lengths (same bits: tests/backends/simd_threads_test.ts). Median of 12
 * calls each. A benchmark that prints figures, not a test.
 *
 * Usage: deno run -A tests/bench/attention_lengths.ts [--threads 2] [--lengths 150,152,50,52]
 * @module
 */
import { registerBlasBackend } from "../../lib/backends/blas/blas_backend.ts";
import { backwardBlocks, forwardBlocks } from "../../lib/backends/blas/attention.ts";
import { setSimdThreads, simdMath, simdWorkerReady } from "../../lib/backends/simd/simd.ts";
import { machineLines, measureSgemm } from "../../lib/bench/bench.ts";

const flag = (name: string, dflt: string) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : dflt;
};
const info = registerBlasBackend();
if (!info || !simdMath()) {
  console.log("attention_lengths: needs a CBLAS library and the WebAssembly SIMD kernels; neither path to compare");
  Deno.exit(0);
}
const threads = Number(flag("threads", "2"));
setSimdThreads(threads, { waitForWorker: true });
simdWorkerReady();
info.blas.setThreads(threads);
for (const line of machineLines(await measureSgemm({ threads }))) console.log(line);
console.log(`${threads} thread(s)`);

const rand = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
const median = (a: number[]) => a.sort((x, y) => x - y)[a.length >> 1].toFixed(1);
for (const seq of flag("lengths", "150,152,50,52").split(",").map(Number)) {
  const [batch, heads, hidden] = [32, 2, 128];
  const n = batch * seq * hidden;
  const q = rand(n), k = rand(n), v = rand(n), dy = rand(n), mask = new Float32Array(batch * seq);
  const context = new Float32Array(n), probs = new Float32Array(batch * heads * seq * seq);
  const dq = new Float32Array(n), dk = new Float32Array(n), dv = new Float32Array(n);
  // The JavaScript loops (`simd: null`) ran every unaligned length before; aligned lengths always had the SIMD path.
  for (const simd of seq % 4 ? [null, undefined] : [undefined]) {
    const job = { simd, batch, seq, heads, scale: 0.125, rate: 0.1, seed: 7, blas: info.blas, q, k, v };
    const forward: number[] = [], backward: number[] = [];
    for (let r = 0; r < 12; r++) {
      let t = performance.now();
      forwardBlocks({ ...job, mask, probs, context });
      forward.push(performance.now() - t);
      t = performance.now();
      backwardBlocks({ ...job, dy, probs, dq, dk, dv });
      backward.push(performance.now() - t);
    }
    const path = simd === null ? "JavaScript loops" : "SIMD block jobs";
    console.log(`seq ${seq} (${path}): forward ${median(forward)} ms, backward ${median(backward)} ms`);
  }
}
Deno.exit(0); // the SIMD worker would keep the process alive
