/**
 * oneDNN's GELU and `sgemm` (lib/backends/blas/dnnl.ts) against float64 references, the property that lets the `blas`
 * backend use them (a value's bits do not depend on the array around it, nor a product row's on the number of rows in
 * the call or the thread count: trimmed evaluation batches give the same logits as full ones), the GELU primitive
 * cache past its size limit, and the `blas` backend's GELU and dense products taking them. Skips with a message where
 * libdnnl2 is not installed.
 */
import { assert, assertEquals, assertSameBits, erf64 } from "../shared.ts";
import { dnnlUnavailableReason, loadDnnl } from "../../lib/backends/blas/dnnl.ts";
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { denseGeluFused, denseSideBySide, gelu, sparseXentArrays } from "../../lib/backends/blas/fused.ts";
import { linear } from "../../lib/model/model.ts";

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

/** `op(a) @ op(b)` in float64, row-major, `[m, n]`. */
function product64(
  a: Float32Array,
  b: Float32Array,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
) {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) sum += a[transA ? p * m + i : i * k + p] * b[transB ? j * k + p : p * n + j];
      c[i * n + j] = sum;
    }
  }
  return c;
}

Deno.test({ name: "dnnl: sgemm in every transpose, with beta, matches a float64 product", ignore }, () => {
  for (const [m, n, k] of [[1, 7, 5], [2, 3, 130], [37, 65, 129], [64, 128, 256]]) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const a = inputs(m * k, m + k), b = inputs(k * n, n + 3), c0 = inputs(m * n, 11);
        const expected = product64(a, b, m, n, k, transA, transB);
        for (const beta of [0, 1]) {
          const c = c0.slice();
          dnnl!.setThreads(2);
          dnnl!.sgemm({ m, n, k, a, b, c, transA, transB, beta, alpha: 0.5 });
          let err = 0;
          for (let i = 0; i < m * n; i++) {
            const want = 0.5 * expected[i] + beta * c0[i];
            err = Math.max(err, Math.abs(c[i] - want) / Math.max(1, Math.abs(want)));
          }
          assert(err < 1e-5 * Math.sqrt(k), `[${m}x${k}]x[${k}x${n}] ${transA} ${transB} beta ${beta}: error ${err}`);
        }
      }
    }
  }
});

Deno.test({ name: "dnnl: a product row has the same bits whatever the rows around it and the threads", ignore }, () => {
  const shapes = [[128, 128, false], [512, 128, false], [128, 512, true], [2, 128, true], [1, 64, false]] as const;
  for (const [n, k, transB] of shapes) {
    const rows = 300, a = inputs(rows * k, n), b = inputs(k * n, k), bias = inputs(n, 9);
    const call = (m: number, offset: number, threads: number) => {
      const c = new Float32Array(m * n);
      for (let r = 0; r < m; r++) c.set(bias, r * n);
      dnnl!.setThreads(threads);
      dnnl!.sgemm({ m, n, k, a: a.subarray(offset * k, (offset + m) * k), b, c, transB, beta: 1 });
      return c;
    };
    const whole = call(rows, 0, 2);
    for (
      const [m, offset, threads] of [
        [1, 0, 2],
        [1, 17, 1],
        [2, 5, 2],
        [7, 100, 1],
        [15, 9, 2],
        [16, 9, 1],
        [64, 3, 2],
        [299, 1, 1],
      ]
    ) {
      const part = call(m, offset, threads), expected = whole.slice(offset * n, (offset + m) * n);
      if (!AVX2_ROWS_DIFFER) assertEquals(part, expected, `${m} rows at ${offset}`);
      // Each product term is at most 8 x 8: a float32 sum of k of them is good to about k ulps of 64.
      else assertClose(part, expected, 64 * k * 2 ** -23, `${m} rows at ${offset}`);
    }
  }
  dnnl!.setThreads(2);
  if (AVX2_ROWS_DIFFER) {
    console.log(
      "oneDNN's AVX2 sgemm: a row's bits depend on the call's row count (BENCHMARKS.md, 2026-12-07 evening); " +
        "checked to float32 rounding instead of bit for bit",
    );
  }
});

Deno.test({
  name: "dnnl: a transposed weight with k > n, written out first from 512 rows, gives every row the same bits",
  ignore,
}, () => {
  const rows = 1100;
  for (const [n, k, beta] of [[128, 512, 0], [96, 384, 1]]) {
    const a = inputs(rows * k, k), w = inputs(n * k, n), c0 = inputs(rows * n, 7);
    const call = (m: number, offset: number) => {
      const c = c0.slice(offset * n, (offset + m) * n);
      dnnl!.sgemm({ m, n, k, a: a.subarray(offset * k, (offset + m) * k), b: w, c, transB: true, beta, alpha: 0.5 });
      return c;
    };
    dnnl!.setThreads(2);
    const before = dnnl!.weightTransposes();
    const whole = call(rows, 0);
    const avx512 = dnnl!.isa.startsWith("avx512");
    assertEquals(dnnl!.weightTransposes() - before, avx512 ? 1 : 0, `[${n}, ${k}]: written out on AVX-512 only`);
    // Fewer than 512 rows take oneDNN's transposed operand as it is: the rows must still agree bit for bit.
    for (const [m, offset] of [[300, 0], [511, 589], [40, 17], [7, 1000], [512, 3]]) {
      const part = call(m, offset), expected = whole.slice(offset * n, (offset + m) * n);
      if (!AVX2_ROWS_DIFFER) assertSameBits(expected, part, `[${n}, ${k}]: ${m} rows at ${offset}`);
      else assertClose(part, expected, 64 * k * 2 ** -23, `${m} rows at ${offset}`);
    }
    // And the product is the right one (a float64 reference on a few rows).
    const ref = product64(a.subarray(0, 4 * k), w, 4, n, k, false, true);
    for (let i = 0; i < 4 * n; i++) {
      const want = 0.5 * ref[i] + beta * c0[i];
      assert(Math.abs(whole[i] - want) <= 1e-5 * Math.sqrt(k) * Math.max(1, Math.abs(want)), `value ${i}`);
    }
  }
});

/**
 * oneDNN's AVX2 `sgemm` code (a CPU without AVX-512, or `DNNL_MAX_CPU_ISA=AVX2`) computes the last 1-3 rows of a call
 * whose row count is 1-3 past a multiple of 6 with another kernel, and for `[768, 3072]` weights blocks the sum by the
 * row count: a row's bits then depend on the rows around it, which the AVX-512 code's do not (measured 2026-12-07).
 */
const AVX2_ROWS_DIFFER = dnnl?.isa === "avx2" || dnnl?.isa === "avx2_vnni";

/** Every value within `tol` of the expected one. */
function assertClose(actual: Float32Array, expected: Float32Array, tol: number, what: string): void {
  assertEquals(actual.length, expected.length, what);
  for (let i = 0; i < actual.length; i++) {
    assert(Math.abs(actual[i] - expected[i]) <= tol, `${what}: value ${i} is ${actual[i]}, expected ${expected[i]}`);
  }
}

/** Runs `check` on `x` inside a gradient tape (`tf.grads` of the sum of `x`). */
function underTape(x: tf.Tensor, check: (x: tf.Tensor) => void): void {
  tf.grads((xx: tf.Tensor) => {
    check(xx);
    return tf.sum(xx);
  })([x])[0].dispose();
}

/** Whether the blas backend is up with its dense products on oneDNN; says why not (the test then skips). */
async function denseOnDnnl(): Promise<boolean> {
  const backend = await initBackend({ quiet: true });
  if (backend.name !== "blas") console.log("skipped: no blas backend here");
  else if (Deno.env.get("BERT_NO_DNNL_SGEMM") === "1") console.log("skipped: BERT_NO_DNNL_SGEMM=1");
  else return true;
  return false;
}

Deno.test({ name: "dnnl: the blas backend's dense layer runs its products on oneDNN", ignore }, async () => {
  if (!(await denseOnDnnl())) return;
  const m = 70, k = 96, n = 40, x = inputs(m * k, 1), w = inputs(k * n, 2), bias = inputs(n, 3), dy = inputs(m * n, 4);
  const expected = new Float32Array(m * n), dx = new Float32Array(m * k), dw = new Float32Array(k * n);
  for (let r = 0; r < m; r++) expected.set(bias, r * n);
  dnnl!.sgemm({ m, n, k, a: x, b: w, c: expected, beta: 1 });
  dnnl!.sgemm({ m, n: k, k: n, a: dy, b: w, c: dx, transB: true });
  dnnl!.sgemm({ m: k, n, k: m, a: x, b: dy, c: dw, transA: true });
  const [xt, wt, bt, dyt] = [
    tf.tensor2d(x, [m, k]),
    tf.tensor2d(w, [k, n]),
    tf.tensor1d(bias),
    tf.tensor2d(dy, [m, n]),
  ];
  try {
    assertEquals(linear(xt, wt, bt).dataSync(), expected);
    const [gx, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(linear(a, b, bt), dyt)))([xt, wt]);
    assertEquals(gx.dataSync(), dx);
    assertEquals(gw.dataSync(), dw);
    tf.dispose([gx, gw]);
  } finally {
    tf.dispose([xt, wt, bt, dyt]);
  }
});

Deno.test({
  name: "dnnl: three dense layers of one input as one product (inference) have the bits of the three, at any row count",
  ignore,
}, async () => {
  if (!(await denseOnDnnl())) return;
  const verdicts: string[] = [];
  for (const k of [128, 64, 768]) {
    const matches = dnnl!.sgemmColumnsMatch(k, k, 3);
    verdicts.push(`${k}: ${matches ? "one product" : "three"}`);
    const ws = [5, 6, 7].map((s) => tf.tensor2d(inputs(k * k, s).map((v) => v / Math.sqrt(k)), [k, k]));
    const bs = [8, 9, 10].map((s) => tf.tensor1d(inputs(k, s)));
    // 885 and 1,016 rows: two row counts at which the AVX2 code's one product gave BERT-Tiny's a few other bits.
    for (const m of [1, 7, 40, 333, 885, 1016]) {
      const x = tf.tensor2d(inputs(m * k, m), [m, k]);
      const wide = denseSideBySide(x, ws, bs);
      // BERT-Base's width (768) is past the limit, and the AVX2 code never: three products whatever the probe says.
      const used = matches && k <= 256 && dnnl!.isa.startsWith("avx512");
      assertEquals(wide !== undefined, used, `${m}x${k}: one product used or not`);
      if (wide) {
        const parts = ws.map((w, i) => linear(x, w, bs[i]));
        const expected = tf.concat(parts, 1);
        assertSameBits(expected.dataSync<"float32">(), wide.dataSync<"float32">(), `${m} rows, width ${k}`, [
          "three products",
          "one",
        ]);
        tf.dispose([...parts, expected, wide]);
      }
      underTape(x, (xx) => assertEquals(denseSideBySide(xx, ws, bs), undefined, "under a gradient tape"));
      x.dispose();
    }
    tf.dispose([...ws, ...bs]);
  }
  console.log(`query, key and value side by side on ${dnnl!.isa}: ${verdicts.join(", ")}`);
});

Deno.test({
  name: "dnnl: a dense layer and its GELU in one call (inference) have the bits of the two steps, at any row count",
  ignore,
}, async () => {
  if (!(await denseOnDnnl())) return;
  // BERT-Tiny's feed-forward [128, 512], a smaller one, and BERT-Base's [768, 3072] (where the matmul primitive sums
  // in another order on the AVX-512 EPYC, so the fused call must not be used).
  const verdicts: string[] = [];
  for (const [k, n] of [[128, 512], [64, 256], [768, 3072]]) {
    const matches = dnnl!.denseGeluMatches(k, n);
    verdicts.push(`${k}x${n}: ${matches ? "fused" : "two steps"}`);
    const w = tf.tensor2d(inputs(k * n, 5).map((v) => v / Math.sqrt(k)), [k, n]), b = tf.tensor1d(inputs(n, 6));
    // 7 rows x 512 is below oneDNN's GELU threshold (4,096 values): the two steps' GELU would be another kernel.
    for (const m of [7, 16, 40, 333, k === 768 ? 64 : 1024]) {
      const x = tf.tensor2d(inputs(m * k, m), [m, k]);
      const separate = gelu(linear(x, w, b)), fusedOut = denseGeluFused(x, w, b);
      assertEquals(fusedOut !== undefined, matches && m * n >= 4096, `${m}x${k}x${n}: fused call used or not`);
      if (fusedOut) {
        assertSameBits(separate.dataSync<"float32">(), fusedOut.dataSync<"float32">(), `${m}x${k}x${n}`, [
          "two steps",
          "fused",
        ]);
      }
      // Under a gradient tape the two steps always run (the backward pass needs the product before GELU).
      underTape(x, (xx) => assertEquals(denseGeluFused(xx, w, b), undefined, "under a gradient tape"));
      tf.dispose([x, separate, fusedOut!].filter(Boolean));
    }
    tf.dispose([w, b]);
  }
  console.log(`matmul + GELU post-op on ${dnnl!.isa}: ${verdicts.join(", ")}`);
});

Deno.test(
  { name: "dnnl: softmax matches float64 and a row's bits do not depend on the rows around it", ignore },
  () => {
    const rows = 37, cols = 1003, x = inputs(rows * cols, 5);
    x.fill(-80, 3 * cols, 3 * cols + 500); // a row with probabilities near underflow
    const out = new Float32Array(x.length);
    dnnl!.softmax(x, out, cols);
    let err = 0;
    for (let r = 0; r < rows; r++) {
      const row = Array.from(x.subarray(r * cols, (r + 1) * cols)), m = Math.max(...row);
      const sum = row.reduce((s, v) => s + Math.exp(v - m), 0);
      row.forEach((v, j) => err = Math.max(err, Math.abs(out[r * cols + j] - Math.exp(v - m) / sum)));
    }
    assert(err < 1e-6, `softmax: max absolute error ${err}`);
    for (const [start, n] of [[0, 1], [5, 2], [20, 17], [36, 1]]) {
      const part = new Float32Array(n * cols);
      dnnl!.softmax(x.slice(start * cols, (start + n) * cols), part, cols);
      assertEquals(part, out.slice(start * cols, (start + n) * cols), `rows [${start}, +${n})`);
    }
    const scaled = out.slice();
    dnnl!.scale(scaled, 1 / 3);
    scaled.forEach((v, i) => assertEquals(v, Math.fround(out[i] * Math.fround(1 / 3)), `scale ${i}`));
  },
);

Deno.test({ name: "dnnl: the sparse cross-entropy kernel agrees with its JavaScript path", ignore }, () => {
  // 9 rows over 2000 classes; rows 2 and 7 ignored (label -1); row 4's label is ~80 below its max logit.
  const rows = 9, classes = 2000, x = inputs(rows * classes, 6);
  x[4 * classes + 11] = -85;
  const labels = Int32Array.of(3, 1999, -1, 0, 11, 500, 7, -1, 1234);
  const gradJs = new Float32Array(x.length), gradDnnl = new Float32Array(x.length).fill(NaN);
  const lossJs = sparseXentArrays(x, labels, classes, gradJs);
  const lossDnnl = sparseXentArrays(x, labels, classes, gradDnnl, dnnl);
  assert(Math.abs(lossJs - lossDnnl) < 1e-6 * lossJs, `loss ${lossDnnl} vs ${lossJs}`);
  assert(lossJs > 10, "not vacuous: row 4's large loss counts");
  let err = 0;
  gradJs.forEach((v, i) => err = Math.max(err, Math.abs(v - gradDnnl[i])));
  assert(err < 1e-8, `gradient: max difference ${err}`);
  for (const r of [2, 7]) assert(gradDnnl.subarray(r * classes, (r + 1) * classes).every((v) => v === 0), `row ${r}`);
  assert(gradDnnl[classes + 1999] < 0, "the label's entry is (p - 1) / valid < 0");
});
