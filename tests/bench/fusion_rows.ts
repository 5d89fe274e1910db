/**
 * The inference fusions of lib/backends/blas/fused.ts against the steps they replace, over 161 row counts from 2 to
 * ~6,000: BERT-Tiny's query, key and value layers as one product (`denseSideBySide`) against three, and its
 * feed-forward product with its GELU in one oneDNN call (`denseGeluFused`) against the two steps. Prints the row
 * counts at which any output has other bits (a fusion that does not apply is not counted). Run it under
 * `DNNL_MAX_CPU_ISA=AVX2` too: on 2026-12-07 the AVX2 code's one product gave other bits at 16 row counts from 885 up,
 * which is why `denseSideBySide` is off there. A benchmark-style scan that prints figures, not a test.
 *
 * Usage: deno run -A tests/bench/fusion_rows.ts
 * @module
 */
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { dnnlStatus } from "../../lib/backends/blas/dnnl.ts";
import { denseGeluFused, denseSideBySide, gelu } from "../../lib/backends/blas/fused.ts";
import { linear } from "../../lib/model/model.ts";

await initBackend({ quiet: true });
console.log(dnnlStatus());
const inputs = (n: number, seed: number) =>
  Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed * 78.233) * 0.9);
const differ: string[] = [];
const checked = { qkv: 0, gelu: 0 };
for (const [k, n] of [[128, 128], [128, 512]]) {
  const qkv = n === k, what = qkv ? "qkv" : "gelu";
  const ws = [5, 6, 7].map((s) => tf.tensor2d(inputs(k * n, s).map((v) => v / Math.sqrt(k)), [k, n]));
  const bs = [8, 9, 10].map((s) => tf.tensor1d(inputs(n, s)));
  for (let m = 2; m < 6000; m = Math.ceil(m * 1.07) + 1) {
    const x = tf.tensor2d(inputs(m * k, m), [m, k]);
    tf.tidy(() => {
      const one = qkv ? denseSideBySide(x, ws, bs) : denseGeluFused(x, ws[0], bs[0]);
      if (!one) return;
      checked[what]++;
      const steps = qkv ? tf.concat(ws.map((w, i) => linear(x, w, bs[i])), 1) : gelu(linear(x, ws[0], bs[0]));
      // Bit patterns, not values: -0 against 0 is another bit, and NaN against NaN is not.
      const a = new Uint32Array(one.dataSync<"float32">().slice().buffer);
      const b = new Uint32Array(steps.dataSync<"float32">().slice().buffer);
      let d = 0;
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) d++;
      if (d) differ.push(`${what} at ${m} rows: ${d} of ${a.length}`);
    });
    x.dispose();
  }
  tf.dispose([...ws, ...bs]);
}
console.log(`row counts fused: query/key/value ${checked.qkv}, feed-forward + GELU ${checked.gelu}`);
console.log(`other bits: ${differ.join("; ") || "none"}`);
