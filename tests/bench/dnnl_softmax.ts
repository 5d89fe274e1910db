/**
 * A lever of issue 16, measured on 2026-12-07 and not kept: oneDNN's JIT softmax (the one the masked-LM loss uses,
 * lib/backends/blas/dnnl.ts) for attention scores, against the attention kernel's WebAssembly SIMD `softmax_rows`. The
 * data is one BERT-Base layer's scores at 8 x 128 tokens (12 heads, 12,288 rows of 128). The SIMD kernel works in the
 * module's memory and adds the mask row in the same pass, so the copy into that memory is timed apart and subtracted.
 * oneDNN would need the mask added before it. Mean of 10 calls, three rounds. A benchmark that prints figures, not a
 * test.
 *
 * Usage: deno run -A tests/bench/dnnl_softmax.ts [threads, default 1]   (needs libdnnl2)
 * @module
 */
import { cpuVectorExtensions } from "../../lib/bench/bench.ts";
import { loadDnnl } from "../../lib/backends/blas/dnnl.ts";
import { setSimdThreads, simdMath, simdWorkerReady } from "../../lib/backends/simd/simd.ts";
const d = loadDnnl(), s = simdMath();
if (!d || !s) {
  console.log("dnnl_softmax: needs oneDNN (apt-get install libdnnl2) and the WebAssembly SIMD kernels");
  Deno.exit(0);
}
const threads = Number(Deno.args[0] ?? 1);
d.setThreads(threads);
setSimdThreads(threads, { waitForWorker: true });
simdWorkerReady();
console.log(`cpu vector extensions: ${cpuVectorExtensions().join(" ")}; oneDNN ${d.isa}`);
const cols = 128, rows = 12 * 128 * 8; // one Base layer's scores at 8 x 128
const n = rows * cols;
const x = Float32Array.from({ length: n }, () => Math.random() * 8 - 4), out = new Float32Array(n);
const ws = s.workspace(n + cols);
const mask = new Float32Array(cols);
ws.set(mask, n);
const ptr = ws.byteOffset, maskPtr = ws.byteOffset + 4 * n;
for (let r = 0; r < 3; r++) {
  let t = performance.now();
  for (let i = 0; i < 10; i++) {
    ws.set(x);
    s.softmaxRowsAt(ptr, rows, cols, maskPtr);
  }
  const a = (performance.now() - t) / 10;
  t = performance.now();
  for (let i = 0; i < 10; i++) ws.set(x);
  const copy = (performance.now() - t) / 10;
  t = performance.now();
  for (let i = 0; i < 10; i++) d.softmax(x, out, cols);
  const b = (performance.now() - t) / 10;
  console.log(
    `${threads} thr: WASM softmax_rows ${(a - copy).toFixed(2)} ms (${
      ((a - copy) / n * 1e6).toFixed(2)
    } ns/score), oneDNN ${b.toFixed(2)} ms (${(b / n * 1e6).toFixed(2)} ns/score)`,
  );
}
Deno.exit(0);
