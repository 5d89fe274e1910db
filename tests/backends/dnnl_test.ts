/**
 * oneDNN's GELU (lib/backends/blas/dnnl.ts) against a float64 reference, the property that lets the `blas` backend use
 * it (each value's bits do not depend on the array around it: trimmed evaluation batches give the same logits as
 * full ones), its primitive cache past its size limit, and the `blas` backend's GELU taking it. Skips with a message
 * where libdnnl2 is not installed.
 */
import { assert, assertEquals, erf64 } from "../shared.ts";
import { dnnlUnavailableReason, loadDnnl } from "../../lib/backends/blas/dnnl.ts";
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { gelu } from "../../lib/backends/blas/fused.ts";

const dnnl = loadDnnl();
const ignore = !dnnl;
if (!dnnl) console.log(`dnnl tests skipped: ${dnnlUnavailableReason()} (Debian: apt-get install libdnnl2)`);

/** Values from -8 to 8 and a few special ones, deterministic. */
function inputs(n: number, seed: number): Float32Array {
  const x = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    x[i] = (s / 2 ** 32) * 16 - 8;
  }
  x.set([0, -0, 1e-30, -1e-30, 3, -3, 8.5, -8.5].slice(0, n));
  return x;
}

Deno.test({ name: "dnnl: GELU and its gradient match a float64 reference", ignore }, () => {
  const n = 10_007, x = inputs(n, 1), dy = inputs(n, 2);
  const y = new Float32Array(n), dx = new Float32Array(n);
  dnnl!.gelu(x, y);
  dnnl!.geluGrad(x, dy, dx);
  let err = 0, errGrad = 0;
  for (let i = 0; i < n; i++) {
    const cdf = 0.5 * (1 + erf64(x[i] * Math.SQRT1_2));
    const pdf = Math.exp(-0.5 * x[i] * x[i]) / Math.sqrt(2 * Math.PI);
    err = Math.max(err, Math.abs(y[i] - x[i] * cdf) / Math.max(1, Math.abs(x[i] * cdf)));
    const g = dy[i] * (cdf + x[i] * pdf);
    errGrad = Math.max(errGrad, Math.abs(dx[i] - g) / Math.max(1, Math.abs(g)));
  }
  assert(err < 2e-6, `GELU: max relative error ${err}`);
  assert(errGrad < 2e-6, `GELU gradient: max relative error ${errGrad}`);
  assert(y.some((v, i) => v !== x[i]), "not vacuous: GELU changed the values");
});

Deno.test({ name: "dnnl: a value's GELU has the same bits whatever the array's length and offset", ignore }, () => {
  const x = inputs(5000, 3), dy = inputs(5000, 4);
  const whole = new Float32Array(x.length), wholeGrad = new Float32Array(x.length);
  dnnl!.gelu(x, whole);
  dnnl!.geluGrad(x, dy, wholeGrad);
  for (const [start, length] of [[0, 4999], [1, 4096], [7, 33], [13, 17], [100, 1], [4990, 10]]) {
    const part = new Float32Array(length), partGrad = new Float32Array(length);
    dnnl!.gelu(x.slice(start, start + length), part);
    dnnl!.geluGrad(x.slice(start, start + length), dy.slice(start, start + length), partGrad);
    assertEquals(part, whole.slice(start, start + length), `GELU of [${start}, +${length})`);
    assertEquals(partGrad, wholeGrad.slice(start, start + length), `GELU gradient of [${start}, +${length})`);
  }
});

Deno.test({ name: "dnnl: past the cache's size limit, evicted sizes are rebuilt and still right", ignore }, () => {
  const x = inputs(300, 5);
  const first = new Float32Array(100);
  dnnl!.gelu(x.subarray(0, 100), first);
  for (let n = 101; n < 160; n++) dnnl!.gelu(x.subarray(0, n), new Float32Array(n)); // 59 more sizes
  const again = new Float32Array(100);
  dnnl!.gelu(x.subarray(0, 100), again);
  assertEquals(again, first);
});

Deno.test(
  { name: "dnnl: the blas backend's GELU and its gradient are oneDNN's from 4,096 values", ignore },
  async () => {
    const backend = await initBackend({ quiet: true });
    if (backend.name !== "blas") return console.log("skipped: no blas backend here");
    const n = 8192, x = inputs(n, 6), dy = inputs(n, 7);
    const expected = new Float32Array(n), expectedGrad = new Float32Array(n);
    dnnl!.gelu(x, expected);
    dnnl!.geluGrad(x, dy, expectedGrad);
    const xt = tf.tensor1d(x), dyt = tf.tensor1d(dy);
    try {
      assertEquals(gelu(xt).dataSync(), expected);
      const grad = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(gelu(t), dyt)))(xt);
      assertEquals(grad.dataSync(), expectedGrad);
    } finally {
      tf.dispose([xt, dyt]);
    }
  },
);
