/**
 * The `blas` backend (lib/backends/blas/*.ts) against the stock tfjs cpu backend: every kernel it replaces,
 * on random inputs with broadcasting, transposes, odd sizes, NaN/Inf, plus gradients, the fused ops and the
 * array pool's safety rules. Skips (with a message) when no CBLAS library can be opened.
 */
import { assert, assertEquals } from "../shared.ts";
import { tf } from "../../lib/backends/backend.ts";
import {
  blasEnvironmentSetHere,
  blasUnavailableReason,
  loadBlas,
  OPENBLAS_THREAD_TIMEOUT,
} from "../../lib/backends/blas/blas.ts";
import { registerBlasBackend } from "../../lib/backends/blas/blas_backend.ts";
import {
  adamwUpdate,
  addLayerNorm,
  dropout,
  gelu,
  layerNorm,
  sparseSoftmaxCrossEntropy,
} from "../../lib/backends/blas/fused.ts";
import { simdMath } from "../../lib/backends/simd/simd.ts";
import { firstTokenAttention, firstTokenBlocks, selfAttention } from "../../lib/backends/blas/attention.ts";

const info = registerBlasBackend();
// The stock cpu backend (the reference here) prints a "use tfjs-node" banner on first use; not needed in tests.
(tf.findBackend("cpu") as unknown as { firstUse: boolean } | null ?? { firstUse: false }).firstUse = false;
if (!info) {
  console.warn(
    "blas_test: skipped — no CBLAS library could be opened (install libopenblas0-pthread, or set BERT_BLAS_LIB)",
  );
}
const ignore = !info;

/** Deterministic pseudo-random floats in [-scale, scale). */
function rand(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 * 2 - 1) * scale;
  }
  return out;
}

interface Arg {
  shape: number[];
  values: Float32Array | Int32Array;
  dtype?: "float32" | "int32";
}

const f = (shape: number[], seed: number, scale = 1): Arg => ({
  shape,
  values: rand(shape.reduce((a, b) => a * b, 1), seed, scale),
});

/** Runs `fn` on `backend` with fresh tensors for `args`; returns copies of the outputs' values and shapes. */
async function on(
  backend: string,
  args: Arg[],
  fn: (...t: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
): Promise<{ shape: number[]; values: Float32Array | Int32Array | Uint8Array }[]> {
  await tf.setBackend(backend);
  const before = tf.memory().numTensors;
  const out = tf.tidy(() => {
    const ts = args.map((a) => tf.tensor(a.values, a.shape, a.dtype ?? "float32"));
    const r = fn(...ts);
    return Array.isArray(r) ? r : [r];
  });
  const res = out.map((t) => ({ shape: t.shape, values: (t.dataSync() as Float32Array).slice() }));
  tf.dispose(out);
  assertEquals(tf.memory().numTensors, before, `tensors leaked on ${backend}`);
  return res;
}

function close(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, rtol = 1e-4, atol = 1e-5): void {
  assertEquals(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    if (Number.isNaN(e)) {
      assert(Number.isNaN(a), `${what}[${i}]: expected NaN, got ${a}`);
      continue;
    }
    if (!Number.isFinite(e)) {
      assertEquals(a, e, `${what}[${i}]`);
      continue;
    }
    assert(Math.abs(a - e) <= rtol * Math.abs(e) + atol, `${what}[${i}]: blas ${a} vs cpu ${e}`);
  }
}

/** Compares `fn` on blas against cpu (or `cpuFn` on cpu, where the cpu kernel itself falls short). */
async function same(
  what: string,
  args: Arg[],
  fn: (...t: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
  rtol = 1e-4,
  cpuFn = fn,
) {
  const cpu = await on("cpu", args, cpuFn);
  const blas = await on("blas", args, fn);
  assertEquals(blas.length, cpu.length, `${what}: outputs`);
  for (let i = 0; i < cpu.length; i++) {
    assertEquals(blas[i].shape, cpu[i].shape, `${what}: shape of output ${i}`);
    close(blas[i].values, cpu[i].values, `${what} out${i}`, rtol);
  }
}

Deno.test({ name: "blas: a library that cannot be used gives undefined and says why", ignore }, () => {
  assertEquals(loadBlas({ path: "libno-such-blas.so.9" }), undefined);
  assert(/Could not open library.*libno-such-blas/.test(blasUnavailableReason() ?? ""), blasUnavailableReason());
  if (Deno.build.os === "linux") {
    assertEquals(loadBlas({ path: "libm.so.6" }), undefined); // a real library, but not a CBLAS
    assert(/cblas_sgemm/.test(blasUnavailableReason() ?? ""), blasUnavailableReason());
  }
  assert(loadBlas() !== undefined, "the library found before is still returned");
});

Deno.test(
  { name: "blas: OpenBLAS's idle threads are told to sleep, unless the user chose (or no worker)", ignore },
  () => {
    // The library is loaded by now (the ignore condition loaded it); the variable was decided before that.
    const set = blasEnvironmentSetHere();
    if (Deno.env.get("BERT_NO_SIMD_WORKER")) {
      assertEquals(set, {});
    } else if (set.OPENBLAS_THREAD_TIMEOUT) {
      assertEquals(set, { OPENBLAS_THREAD_TIMEOUT: OPENBLAS_THREAD_TIMEOUT });
      assertEquals(Deno.env.get("OPENBLAS_THREAD_TIMEOUT"), OPENBLAS_THREAD_TIMEOUT);
    } else {
      assert(Deno.env.get("OPENBLAS_THREAD_TIMEOUT") !== undefined, "neither set by the user nor by the backend");
    }
  },
);

Deno.test({ name: "blas: sgemm through FFI matches a hand-worked product, with views and strides", ignore }, () => {
  const blas = loadBlas()!;
  // [2,3] @ [3,2]
  const a = new Float32Array([99, 1, 2, 3, 4, 5, 6]).subarray(1); // a view at a byte offset
  const b = new Float32Array([7, 8, 9, 10, 11, 12]);
  const c = new Float32Array(4);
  blas.sgemm({ m: 2, n: 2, k: 3, a, b, c });
  assertEquals([...c], [58, 64, 139, 154]);
  // transposes: a^T stored [3,2], b^T stored [2,3]; alpha, beta accumulate into c
  const at = new Float32Array([1, 4, 2, 5, 3, 6]), bt = new Float32Array([7, 9, 11, 8, 10, 12]);
  blas.sgemm({ m: 2, n: 2, k: 3, a: at, b: bt, c, transA: true, transB: true, alpha: 2, beta: -1 });
  assertEquals([...c], [58, 64, 139, 154]);
  let threw = false;
  try {
    blas.sgemm({ m: 2, n: 2, k: 3, a: new Float32Array(5), b, c });
  } catch (e) {
    threw = /a has 5 values/.test(String(e));
  }
  assert(threw, "a too-short operand must be rejected before the FFI call");
});

Deno.test({ name: "blas: BatchMatMul matches cpu (transposes, batch broadcast, odd sizes)", ignore }, async () => {
  const cases: [number[], number[], boolean, boolean][] = [
    [[7, 5], [5, 3], false, false],
    [[5, 7], [5, 3], true, false],
    [[7, 5], [3, 5], false, true],
    [[5, 7], [3, 5], true, true],
    [[2, 3, 7, 5], [5, 4], false, false], // weight without batch: one folded sgemm
    [[2, 3, 5, 7], [5, 4], true, false],
    [[4, 6], [3, 6, 5], false, false], // a without batch
    [[1, 4, 6], [3, 6, 5], false, false],
    [[3, 2, 4, 8], [3, 2, 4, 8], false, true], // attention scores q k^T
    [[3, 2, 4, 4], [3, 2, 4, 8], false, false], // probs @ v
    [[3, 0, 5], [5, 2], false, false], // empty
    [[3, 4, 0], [0, 2], false, false], // k = 0: zeros
  ];
  let seed = 1;
  for (const [sa, sb, ta, tb] of cases) {
    await same(
      `matMul [${sa}]${ta ? "T" : ""} x [${sb}]${tb ? "T" : ""}`,
      [f(sa, seed++), f(sb, seed++)],
      (a, b) => tf.matMul(a, b, ta, tb),
    );
  }
  // Batch dims [2,1] x [3] broadcast to [2,3]: the cpu kernel mis-sizes this, so the reference tiles explicitly.
  await same(
    "matMul broadcast [2,1,4,6] x [3,5,6]T",
    [f([2, 1, 4, 6], 50), f([3, 5, 6], 51)],
    (a, b) => tf.matMul(a, b, false, true),
    1e-4,
    (a, b) => tf.matMul(tf.broadcastTo(a, [2, 3, 4, 6]), tf.broadcastTo(b, [2, 3, 5, 6]), false, true),
  );
});

Deno.test({ name: "blas: _FusedMatMul with bias and every activation matches cpu", ignore }, async () => {
  const acts = ["linear", "relu", "relu6", "elu", "leakyrelu", "sigmoid", "prelu"] as const;
  let seed = 100;
  for (const activation of acts) {
    for (
      const [sa, sb, sbias, ta, tb] of [
        [[6, 5], [5, 4], [4], false, false],
        [[5, 6], [4, 5], [4], true, true],
        [[2, 6, 5], [5, 4], [6, 4], false, false], // bias broadcast over rows and batch
      ] as [number[], number[], number[], boolean, boolean][]
    ) {
      await same(
        `fused ${activation} [${sa}] x [${sb}] + [${sbias}]`,
        [f(sa, seed++, 4), f(sb, seed++), f(sbias, seed++), f([4], seed++)],
        (a, b, bias, alpha) =>
          tf.fused.matMul({
            a,
            b,
            bias,
            transposeA: ta,
            transposeB: tb,
            activation,
            preluActivationWeights: activation === "prelu" ? alpha : undefined,
            leakyreluAlpha: 0.3,
          }),
      );
    }
  }
  // no bias
  await same(
    "fused relu without bias",
    [f([3, 4], 7), f([4, 2], 8)],
    (a, b) => tf.fused.matMul({ a, b, activation: "relu" }),
  );
});

Deno.test({ name: "blas: gradients of matMul and fused matMul under tf.grads match cpu", ignore }, async () => {
  let seed = 200;
  for (
    const [sa, sb, ta, tb] of [
      [[6, 5], [5, 4], false, false],
      [[5, 6], [4, 5], true, true],
      [[2, 3, 6, 5], [2, 3, 5, 4], false, false],
      [[2, 3, 6, 5], [2, 3, 4, 5], false, true],
      [[2, 3, 5, 6], [2, 3, 5, 4], true, false],
    ] as [number[], number[], boolean, boolean][]
  ) {
    await same(`grad matMul [${sa}] [${sb}] ${ta} ${tb}`, [f(sa, seed++), f(sb, seed++)], (a, b) => {
      const g = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.square(tf.matMul(x, y, ta, tb))));
      return g([a, b]);
    });
  }
  await same("grad fused relu", [f([6, 5], 9), f([5, 4], 10), f([4], 11)], (a, b, bias) => {
    const g = tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
      tf.sum(tf.square(tf.fused.matMul({ a: x as tf.Tensor2D, b: y as tf.Tensor2D, bias: z, activation: "relu" })))
    );
    return g([a, b, bias]);
  });
});

Deno.test({ name: "blas: broadcasting binary ops match cpu, NaN included; int32 falls back", ignore }, async () => {
  const ops: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor][] = [
    ["add", tf.add],
    ["sub", tf.sub],
    ["mul", tf.mul],
    ["div", tf.div],
    ["maximum", tf.maximum],
    ["minimum", tf.minimum],
    ["squaredDifference", tf.squaredDifference],
  ];
  const shapes: [number[], number[]][] = [
    [[3, 4, 5], [3, 4, 5]],
    [[3, 4, 5], []],
    [[], [3, 4, 5]],
    [[3, 4, 5], [5]],
    [[3, 4, 5], [4, 1]],
    [[3, 1, 5], [1, 4, 1]],
    [[2, 3, 1, 6], [2, 1, 4, 6]], // attention-mask pattern
    [[5000], [5000]],
  ];
  let seed = 300;
  for (const [name, op] of ops) {
    for (const [sa, sb] of shapes) {
      const a = f(sa, seed++), b = f(sb, seed++);
      if (a.values.length > 2) a.values[1] = NaN;
      await same(`${name} [${sa}] [${sb}]`, [a, b], op);
    }
  }
  const ints: Arg = { shape: [4], values: new Int32Array([1, -2, 3, 4]), dtype: "int32" };
  await same("int32 add", [ints, ints], tf.add);
});

Deno.test({ name: "blas: unary kernels match cpu (incl. NaN, ±Inf, 0, large inputs)", ignore }, async () => {
  const x = f([3, 1000], 400, 6);
  x.values.set([0, -0, NaN, Infinity, -Infinity, 1e-8, -1e-8, 88, -88, 100, -100, 20, -20], 0);
  const pos: Arg = { shape: [2000], values: rand(2000, 401, 1).map((v) => Math.abs(v) * 10 + 1e-3) };
  const ops: [string, (t: tf.Tensor) => tf.Tensor, Arg][] = [
    ["abs", tf.abs, x],
    ["ceil", tf.ceil, x],
    ["elu", tf.elu, x],
    ["erf", tf.erf, x],
    ["exp", tf.exp, x],
    ["floor", tf.floor, x],
    ["log", tf.log, pos],
    ["neg", tf.neg, x],
    ["reciprocal", tf.reciprocal, x],
    ["relu", tf.relu, x],
    ["relu6", tf.relu6, x],
    ["rsqrt", tf.rsqrt, pos],
    ["sigmoid", tf.sigmoid, x],
    ["sqrt", tf.sqrt, pos],
    ["square", tf.square, x],
    ["step", (t) => tf.step(t, 0.25), x],
    ["tanh", tf.tanh, x],
    ["sign", tf.sign, x],
  ];
  for (const [name, op, arg] of ops) await same(name, [arg], op, name === "exp" ? 2e-6 : 1e-4);
});

Deno.test({ name: "blas: SIMD exp and erf agree with Math.exp and the A&S erf", ignore }, () => {
  const simd = simdMath();
  if (!simd) {
    console.warn("blas_test: WebAssembly SIMD unavailable; the JS fallbacks are exercised instead");
    return;
  }
  const x = rand(100003, 500, 90); // odd length: the last vector is partial
  const e = new Float32Array(x.length), r = new Float32Array(x.length);
  simd.exp(x, e);
  simd.erf(x, r);
  for (let i = 0; i < x.length; i++) {
    const ref = Math.exp(x[i]);
    if (ref > 1.2e-38 && ref < 3.4e38) assert(Math.abs(e[i] - ref) <= 3e-7 * ref, `exp(${x[i]}) = ${e[i]} vs ${ref}`);
    assert(Math.abs(r[i] - erfRef(x[i])) < 1e-6, `erf(${x[i]})`);
  }
  const edge = new Float32Array([NaN, Infinity, -Infinity, 89, -88, 0]);
  simd.exp(edge, e.subarray(0, 6));
  assertEquals([...e.subarray(0, 6)], [NaN, Infinity, 0, Infinity, 0, 1]);
});

function erfRef(x: number): number {
  const v = Math.abs(x), t = 1 / (1 + 0.3275911 * v);
  const y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t *
      Math.exp(-v * v);
  return Math.sign(x) * y;
}

Deno.test({ name: "blas: reductions over any axes and softmax match cpu", ignore }, async () => {
  const x = f([4, 5, 6, 7], 600);
  x.values[3] = NaN;
  const axesList: (number | number[] | undefined)[] = [undefined, 0, 1, 2, 3, -1, [0, 1], [1, 2], [0, 2], [1, 3], [
    0,
    1,
    2,
    3,
  ]];
  for (const axis of axesList) {
    for (const keepDims of [false, true]) {
      await same(`sum ${axis} ${keepDims}`, [x], (t) => tf.sum(t, axis, keepDims));
      await same(`mean ${axis} ${keepDims}`, [x], (t) => tf.mean(t, axis, keepDims));
      await same(`max ${axis} ${keepDims}`, [x], (t) => tf.max(t, axis, keepDims));
      await same(`min ${axis} ${keepDims}`, [x], (t) => tf.min(t, axis, keepDims));
    }
  }
  await same("sum over size-1 axis", [f([3, 1, 4], 601)], (t) => tf.sum(t, 1));
  await same("sum of an empty axis", [f([3, 0, 4], 602)], (t) => tf.sum(t, 1));
  for (const shape of [[3, 7], [2, 3, 4, 128], [2, 20000], [5, 1]]) {
    const a = f(shape, 603, 30);
    a.values[0] = -1e30; // a masked score
    await same(`softmax [${shape}]`, [a], (t) => tf.softmax(t));
  }
  await same("softmax grad", [f([2, 3, 9], 604, 3), f([2, 3, 9], 605)], (t, w) => {
    return tf.grad((y: tf.Tensor) => tf.sum(tf.mul(tf.softmax(y), w)))(t);
  });
});

Deno.test({ name: "blas: transpose, gather, unsortedSegmentSum match cpu (float32 and int32)", ignore }, async () => {
  const x = f([2, 3, 4, 5], 700);
  for (const perm of [[0, 2, 1, 3], [3, 2, 1, 0], [1, 0, 2, 3], [0, 1, 3, 2], [0, 1, 2, 3], [2, 3, 0, 1]]) {
    await same(`transpose ${perm}`, [x], (t) => tf.transpose(t, perm));
  }
  const xi: Arg = { shape: [2, 3, 4], values: new Int32Array(24).map((_, i) => i * 7 - 30), dtype: "int32" };
  await same("transpose int32", [xi], (t) => tf.transpose(t, [2, 0, 1]));
  const table = f([10, 6], 701);
  const idx: Arg = { shape: [3, 4], values: new Int32Array([0, 9, 3, 3, 1, 2, 8, 0, 5, 5, 5, 7]), dtype: "int32" };
  await same("gather rows", [table, idx], (t, i) => tf.gather(t, i));
  await same(
    "gather axis 1",
    [table, { shape: [3], values: new Int32Array([5, 0, 2]), dtype: "int32" }],
    (t, i) => tf.gather(t, i, 1),
  );
  await same(
    "gather batchDims 1",
    [f([3, 4, 5], 702), { shape: [3, 2], values: new Int32Array([0, 3, 1, 1, 2, 0]), dtype: "int32" }],
    (t, i) => tf.gather(t, i, 1, 1),
  );
  await same(
    "gather int32 table",
    [xi, { shape: [2], values: new Int32Array([2, 0]), dtype: "int32" }],
    (t, i) => tf.gather(t, i, 1),
  );
  const ids: Arg = { shape: [6], values: new Int32Array([3, 0, 3, 9, 1, 0]), dtype: "int32" };
  await same("unsortedSegmentSum", [f([6, 4], 703), ids], (t, i) => tf.unsortedSegmentSum(t, i as tf.Tensor1D, 5)); // id 9 dropped
  await same(
    "embedding gradient",
    [table, idx, f([3, 4, 6], 704)],
    (t, i, dy) => tf.grad((w: tf.Tensor) => tf.sum(tf.mul(tf.gather(w, i), dy)))(t),
  );
  let threw = "";
  await tf.setBackend("blas");
  try {
    tf.tidy(() => tf.gather(tf.zeros([3, 2]), tf.tensor1d([3], "int32")).dataSync());
  } catch (e) {
    threw = String(e);
  }
  assert(/index value 3 is not in \[0, 2\]/.test(threw), `out-of-range gather must throw, got: ${threw}`);
});

Deno.test(
  { name: "blas: fused sparse softmax cross-entropy matches tf ops, ignores label -1, survives p ~ 0", ignore },
  async () => {
    // 6 rows over 1000 classes (vocabulary-like); rows 2 and 5 ignored; row 3's label is ~80 below its max logit.
    const logits = f([6, 1000], 900, 5);
    logits.values[3 * 1000 + 7] = -90;
    logits.values[3 * 1000 + 8] = 0;
    const labels: Arg = { shape: [6], values: Int32Array.of(4, 999, -1, 7, 0, -1), dtype: "int32" };
    const xent = (x: tf.Tensor, y: tf.Tensor) => sparseSoftmaxCrossEntropy(x as tf.Tensor2D, y as tf.Tensor1D);
    const withGrad = (x: tf.Tensor, y: tf.Tensor) => [xent(x, y), tf.grad((u: tf.Tensor) => xent(u, y))(x)];
    const cpu = await on("cpu", [logits, labels], withGrad); // the tf-op definition
    const blas = await on("blas", [logits, labels], withGrad); // the fused kernel
    close(blas[0].values, cpu[0].values, "loss", 1e-5, 1e-5);
    close(blas[1].values, cpu[1].values, "dlogits", 1e-4, 1e-7);
    // Independent reference: float64 log-sum-exp over the 4 valid rows.
    let want = 0;
    for (const r of [0, 1, 3, 4]) {
      const row = Array.from(logits.values.subarray(r * 1000, (r + 1) * 1000));
      const m = Math.max(...row);
      want += m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)) - row[labels.values[r]];
    }
    close(blas[0].values, [want / 4], "loss vs float64", 1e-6, 1e-6);
    assert(blas[0].values[0] > 20, "row 3 (p ~ e^-90) must add its large loss, not Infinity or 0");
    for (const r of [2, 5]) {
      assert(
        blas[1].values.subarray(r * 1000, (r + 1) * 1000).every((v) => v === 0),
        `row ${r} grad`,
      );
    }
    // An upstream gradient other than 1 (a scaled loss) scales the saved gradient; 1 hands it over unchanged.
    const scaled = await on("blas", [logits, labels], (x, y) => [tf.grad((u: tf.Tensor) => tf.mul(xent(u, y), 3))(x)]);
    scaled[0].values.forEach((v, i) => assertEquals(v, Math.fround(blas[1].values[i] * 3), `scaled dlogits ${i}`));
    // No valid row: loss 0, gradient 0.
    const none: Arg = { shape: [6], values: new Int32Array(6).fill(-1), dtype: "int32" };
    const empty = await on("blas", [logits, none], withGrad);
    assertEquals(empty[0].values[0], 0);
    assert(empty[1].values.every((v) => v === 0));
  },
);

Deno.test({ name: "blas: fused gelu, layerNorm, dropout, adamw match their tf-op definitions", ignore }, async () => {
  const x = f([64, 48], 800, 4);
  const dy = f([64, 48], 801);
  const composedGelu = (t: tf.Tensor) => tf.mul(tf.mul(t, 0.5), tf.add(tf.erf(tf.mul(t, Math.SQRT1_2)), 1));
  const cpu = await on("cpu", [x, dy], (t, d) => {
    const [y, g] = [composedGelu(t), tf.grad((u: tf.Tensor) => tf.sum(tf.mul(composedGelu(u), d)))(t)];
    return [y, g];
  });
  const blas = await on("blas", [x, dy], (t, d) => [gelu(t), tf.grad((u: tf.Tensor) => tf.sum(tf.mul(gelu(u), d)))(t)]);
  close(blas[0].values, cpu[0].values, "gelu");
  close(blas[1].values, cpu[1].values, "gelu grad", 1e-4, 1e-5);

  const gamma = f([48], 802), beta = f([48], 803);
  const composedLn = (t: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
    const { mean, variance } = tf.moments(t, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(t, mean), tf.rsqrt(tf.add(variance, 1e-5))), g), b);
  };
  const lnLoss = (ln: typeof composedLn, d: tf.Tensor) => (t: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
    tf.sum(tf.mul(ln(t, g, b), d));
  const cpuLn = await on("cpu", [x, gamma, beta, dy], (t, g, b, d) => [
    composedLn(t, g, b),
    ...tf.grads(lnLoss(composedLn, d))([t, g, b]),
  ]);
  const fusedLn = (t: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => layerNorm(t, g, b, 1e-5);
  const blasLn = await on("blas", [x, gamma, beta, dy], (t, g, b, d) => [
    fusedLn(t, g, b),
    ...tf.grads(lnLoss(fusedLn, d))([t, g, b]),
  ]);
  ["layerNorm", "dx", "dgamma", "dbeta"].forEach((n, i) => close(blasLn[i].values, cpuLn[i].values, n, 1e-4, 1e-4));

  // dropout: deterministic per seed, about `rate` zeros, survivors scaled, gradient = dy * mask
  const big = f([200, 100], 804);
  const [d1, d2, d3, g] = await on("blas", [big], (t) => [
    dropout(t, 0.25, "a"),
    dropout(t, 0.25, "a"),
    dropout(t, 0.25, "b"),
    tf.grad((u: tf.Tensor) => tf.sum(dropout(u, 0.25, "a")))(t),
  ]);
  assertEquals([...d1.values], [...d2.values]);
  // The mask comes from one generator on every backend: cpu (tf ops + the same generator) gives the same values.
  const [c1, cg] = await on("cpu", [big], (t) => [
    dropout(t, 0.25, "a"),
    tf.grad((u: tf.Tensor) => tf.sum(dropout(u, 0.25, "a")))(t),
  ]);
  assertEquals([...c1.values], [...d1.values], "dropout on cpu and blas");
  assertEquals([...cg.values], [...g.values], "dropout gradient on cpu and blas");
  let zeros = 0, differ = 0;
  for (let i = 0; i < big.values.length; i++) {
    if (d1.values[i] === 0) zeros++;
    else close([d1.values[i]], [big.values[i] / 0.75], "dropout scale");
    if ((d1.values[i] === 0) !== (d3.values[i] === 0)) differ++;
    assertEquals(g.values[i], d1.values[i] === 0 ? 0 : Math.fround(1 / 0.75), "dropout grad");
  }
  assert(Math.abs(zeros / big.values.length - 0.25) < 0.02, `dropout zeroed ${zeros} of ${big.values.length}`);
  assert(differ > 1000, "different seeds must give different masks");

  const p = f([30, 7], 805), gr = f([30, 7], 806), m = f([30, 7], 807);
  const v: Arg = { shape: [30, 7], values: rand(210, 808).map(Math.abs) };
  const step = (pp: tf.Tensor, gg: tf.Tensor, mm: tf.Tensor, vv: tf.Tensor) =>
    adamwUpdate({
      param: pp,
      grad: gg,
      m: mm,
      v: vv,
      lr: 1e-3,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-6,
      weightDecay: 0.01,
      step: 3,
    });
  const cpuA = await on("cpu", [p, gr, m, v], step);
  const blasA = await on("blas", [p, gr, m, v], step);
  ["param", "m", "v"].forEach((n, i) => close(blasA[i].values, cpuA[i].values, `adamw ${n}`, 1e-5, 1e-7));
});

Deno.test({ name: "blas: pooled arrays are never recycled while a caller can still see them", ignore }, async () => {
  await tf.setBackend("blas");
  const a = tf.tensor(rand(8192, 900)), b = tf.tensor(rand(8192, 901));
  // 1. values handed out by dataSync stay intact after dispose + more ops
  const t = tf.mul(a, b);
  const seen = t.dataSync();
  const copy = seen.slice();
  t.dispose();
  for (let i = 0; i < 5; i++) tf.dispose(tf.add(a, b));
  assertEquals([...seen], [...copy]);
  // 2. a slice view into a pooled array survives its parent's disposal
  const parent = tf.mul(a, 2);
  const view = tf.slice(parent, [0], [4096]);
  parent.dispose();
  for (let i = 0; i < 5; i++) tf.dispose(tf.sub(a, b));
  close(view.dataSync(), tf.tidy(() => tf.mul(tf.slice(a, [0], [4096]), 2).dataSync()), "slice view");
  // 3. repeated ops do not grow the tensor count
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) {
    tf.dispose(tf.tidy(() => gelu(layerNorm(tf.reshape(a, [64, 128]), tf.ones([128]), tf.zeros([128]), 1e-12))));
  }
  assertEquals(tf.memory().numTensors, before);
  tf.dispose([a, b, view]);
});

Deno.test(
  { name: "blas: fused self-attention (mask, dropout) and its gradient match composed tf ops", ignore },
  async () => {
    // seq 5 takes the JavaScript path, seq 8 (a multiple of 4) the WebAssembly SIMD one.
    for (const seq of [5, 8]) await attentionCase(seq);
  },
);

Deno.test(
  { name: "blas: first-token attention equals the first rows of full self-attention (padding masked)", ignore },
  async () => {
    const [batch, seq, heads, hidden] = [3, 6, 4, 16];
    const mask: Arg = {
      shape: [batch, seq],
      values: Float32Array.from({ length: batch * seq }, (_, i) => (i % seq >= seq - (i / seq | 0) ? -3.4e38 : 0)),
    };
    const args = [f([batch * seq, hidden], 960), f([batch * seq, hidden], 961), f([batch * seq, hidden], 962), mask];
    const first = (t: tf.Tensor) =>
      tf.reshape(tf.slice(tf.reshape(t, [batch, seq, hidden]), [0, 0, 0], [batch, 1, hidden]), [batch, hidden]);
    const [full, cls] = await on("blas", args, (q, k, v, m) => [
      first(selfAttention({ q, k, v, maskBias: m, batch, seq, heads, dropoutRate: 0 })),
      firstTokenAttention({ q: first(q), k, v, maskBias: m, batch, seq, heads }),
    ]);
    assertEquals(cls.shape, [batch, hidden]);
    close(cls.values, full.values, "first-token context");
    // Both paths of the kernel: sgemv (the library's) and plain loops (a library without sgemv).
    const [q, k, v] = args.slice(0, 3).map((a) => a.values as Float32Array);
    const firstQ = Float32Array.from(
      { length: batch * hidden },
      (_, i) => q[(i / hidden | 0) * seq * hidden + i % hidden],
    );
    const attrs = { batch, seq, heads, scale: 1 / Math.sqrt(hidden / heads) };
    for (const lib of [info!.blas, { sgemv: undefined }]) {
      const context = new Float32Array(batch * hidden);
      firstTokenBlocks({ ...attrs, q: firstQ, k, v, mask: mask.values as Float32Array, context }, lib);
      close(context, full.values, lib.sgemv ? "first-token context (sgemv)" : "first-token context (loops)");
    }
  },
);

async function attentionCase(seq: number): Promise<void> {
  {
    const [batch, heads, hidden] = [3, 2, 8];
    const dh = hidden / heads;
    const maskBias: Arg = {
      shape: [batch, seq],
      values: Float32Array.from({ length: batch * seq }, (_, i) => (i % seq >= seq - (i < seq ? 0 : 2) ? -3.4e38 : 0)),
    };
    const composed = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, m: tf.Tensor, rate: number) => {
      const toHeads = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [batch, seq, heads, dh]), [0, 2, 1, 3]);
      const scores = tf.add(
        tf.div(tf.matMul(toHeads(q), toHeads(k), false, true), Math.sqrt(dh)),
        tf.reshape(m, [batch, 1, 1, seq]),
      );
      const probs = dropout(tf.softmax(scores), rate, "attn");
      return tf.reshape(tf.transpose(tf.matMul(probs, toHeads(v)), [0, 2, 1, 3]), [batch * seq, hidden]);
    };
    for (const rate of [0, 0.3]) {
      const d = f([batch * seq, hidden], 951);
      const args = [f([batch * seq, hidden], 950), f([batch * seq, hidden], 952), f([batch * seq, hidden], 953)];
      const withGrads = (attn: (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, m: tf.Tensor) => tf.Tensor) =>
      (
        q: tf.Tensor,
        k: tf.Tensor,
        v: tf.Tensor,
        m: tf.Tensor,
        dyT: tf.Tensor,
      ) => [
        attn(q, k, v, m),
        ...tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(attn(a, b, c, m), dyT)))([q, k, v]),
      ];
      const cpu = await on("cpu", [...args, maskBias, d], withGrads((q, k, v, m) => composed(q, k, v, m, rate)));
      const blas = await on(
        "blas",
        [...args, maskBias, d],
        withGrads((q, k, v, m) =>
          selfAttention({ q, k, v, maskBias: m, batch, seq, heads, dropoutRate: rate, seed: "attn" })
        ),
      );
      ["context", "dq", "dk", "dv"].forEach((n, i) =>
        close(blas[i].values, cpu[i].values, `${n} (seq ${seq}, rate ${rate})`)
      );
    }
  }
}

Deno.test(
  { name: "blas: fused matMul with a row bias (prefilled, beta = 1) and the general path", ignore },
  async () => {
    let seed = 1000;
    const cases: [number[], number[], number[], boolean, boolean][] = [
      [[64, 32], [32, 48], [48], false, false], // vector bias: one folded sgemm onto the bias rows
      [[64, 32], [32, 48], [1, 48], false, false], // [1, n] bias
      [[64, 32], [32, 48], [1], false, false], // one value repeated
      [[2, 3, 16, 8], [8, 12], [12], false, false], // batch folded into m
      [[2, 8, 16], [2, 12, 8], [1, 12], true, true], // per-batch sgemm calls
      [[1, 6, 5], [3, 5, 4], [4], false, false], // broadcast batch walk
      [[64, 32], [32, 48], [64, 48], false, false], // not a row: general broadcast add
      [[2, 6, 5], [5, 4], [6, 4], false, false],
      [[6, 5], [5, 4], [1, 1, 4], false, false], // a row, but it raises the output's rank: general path
      [[6, 0], [0, 4], [4], false, false], // k = 0: the bias alone
    ];
    for (const activation of ["linear", "relu"] as const) {
      for (const [sa, sb, sbias, ta, tb] of cases) {
        await same(
          `fused ${activation} [${sa}]${ta ? "T" : ""} x [${sb}]${tb ? "T" : ""} + [${sbias}]`,
          [f(sa, seed++, 2), f(sb, seed++), f(sbias, seed++)],
          (a, b, bias) => tf.fused.matMul({ a, b, bias, transposeA: ta, transposeB: tb, activation }),
        );
      }
    }
    // relu keeps NaN and zeroes negatives whatever their magnitude (the branch-free bit trick)
    const x: Arg = { shape: [2, 4], values: new Float32Array([NaN, -NaN, -0, 0, -1e-30, 3, -Infinity, Infinity]) };
    await same("relu of special values", [x], (t) => tf.relu(t));
    await same(
      "fused relu of special values",
      [x, { shape: [4, 4], values: Float32Array.from({ length: 16 }, (_, i) => (i % 5 === 0 ? 1 : 0)) }],
      (a, eye) => tf.fused.matMul({ a, b: eye, activation: "relu" }),
    );
  },
);

Deno.test({ name: "blas: ScatterNd sums duplicates, takes 2-D indices, rejects bad ones", ignore }, async () => {
  const ids = (values: number[], shape: number[]): Arg => ({ shape, values: new Int32Array(values), dtype: "int32" });
  // embedding-gradient shape: [n, 1] ids into [rows, width], many repeats (pooled output)
  const n = 300, rows = 97, width = 64;
  const many = ids(Array.from({ length: n }, (_, i) => (i * 31) % rows), [n, 1]);
  await same("scatterND [n,1] with repeats", [many, f([n, width], 1100)], (i, u) => tf.scatterND(i, u, [rows, width]));
  await same(
    "scatterND duplicates",
    [ids([0, 2, 0, 2, 2], [5, 1]), f([5, 3], 1101)],
    (i, u) => tf.scatterND(i, u, [4, 3]),
  );
  await same(
    "scatterND 2-D indices",
    [ids([0, 1, 2, 0, 0, 1, 1, 2], [4, 2]), f([4, 5], 1102)],
    (i, u) => tf.scatterND(i, u, [3, 3, 5]),
  );
  await same("scatterND 1-D indices", [ids([3, 1, 3], [3]), f([3], 1103)], (i, u) => tf.scatterND(i, u, [5]));
  await same(
    "scatterND full-rank indices",
    [ids([0, 0, 1, 1, 0, 0], [3, 2]), f([3], 1104)],
    (i, u) => tf.scatterND(i, u, [2, 2]),
  );
  await same(
    "scatterND int32 falls back",
    [ids([1, 0], [2, 1]), ids([5, 6, 7, 8], [2, 2])],
    (i, u) => tf.scatterND(i, u, [3, 2]),
  );
  await tf.setBackend("blas");
  let message = "";
  try {
    tf.tidy(() => tf.scatterND(tf.tensor2d([[1], [4]], [2, 1], "int32"), tf.ones([2, 3]), [4, 3]));
  } catch (e) {
    message = String(e);
  }
  assert(/Invalid indices: 4 does not index into 4,3/.test(message), `out-of-range index: ${message}`);
});

Deno.test({ name: "blas: Sum and Mean through sgemv match cpu (axis 0, other axes, keepDims)", ignore }, async () => {
  // Positive values: no cancellation, so float32 accumulation (BLAS) stays within rtol of float64 (cpu).
  const pos = (shape: number[], seed: number): Arg => {
    const a = f(shape, seed);
    a.values = a.values.map((v) => Math.abs(v) + 0.1);
    return a;
  };
  const big = pos([4096, 128], 1200);
  for (const keepDims of [false, true]) {
    await same(`sum [4096,128] axis 0 keepDims ${keepDims}`, [big], (t) => tf.sum(t, 0, keepDims));
    await same(`mean [4096,128] axis 0 keepDims ${keepDims}`, [big], (t) => tf.mean(t, 0, keepDims));
    await same(`sum [4096,128] axis 1 keepDims ${keepDims}`, [big], (t) => tf.sum(t, 1, keepDims));
    await same(`sum [4096,128] all keepDims ${keepDims}`, [big], (t) => tf.sum(t, undefined, keepDims));
  }
  const x3 = pos([8, 64, 128], 1201);
  for (const axis of [0, 1, 2, [0, 1], [1, 2], [0, 2], -1]) {
    await same(`sum [8,64,128] axis ${axis}`, [x3], (t) => tf.sum(t, axis));
    await same(`mean [8,64,128] axis ${axis} keepDims`, [x3], (t) => tf.mean(t, axis, true));
  }
  // NaN and Inf propagate through the product with ones
  const special = pos([512, 16], 1202);
  special.values[5] = NaN;
  special.values[16 * 3 + 7] = Infinity;
  await same("sum with NaN and Inf axis 0", [special], (t) => tf.sum(t, 0));
  await same("sum with NaN and Inf axis 1", [special], (t) => tf.sum(t, 1));
  // bias gradients of a fused matMul, at a training shape
  await same(
    "grad of fused bias [256,128]",
    [f([256, 64], 1203), f([64, 128], 1204), f([128], 1205)],
    (a, b, c) =>
      tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
        tf.sum(tf.fused.matMul({ a: x as tf.Tensor2D, b: y as tf.Tensor2D, bias: z }))
      )([a, b, c]),
  );
});

Deno.test({ name: "blas: same-shape Add/Sub (saxpy), Mul and broadcasts match cpu", ignore }, async () => {
  const a = f([64, 128], 1300, 100), b = f([64, 128], 1301);
  a.values.set([NaN, Infinity, -Infinity, 0, -0, 1e-40], 0);
  b.values.set([1, 2, Infinity, -0, -0, -1e-40], 0);
  for (const [name, op] of [["add", tf.add], ["sub", tf.sub], ["mul", tf.mul], ["div", tf.div]] as const) {
    await same(`${name} same shape [64,128]`, [a, b], op);
    await same(`${name} same shape [64,128] (a, a)`, [a, a], op);
    await same(`${name} small same shape`, [f([3, 5], 1302), f([3, 5], 1303)], op);
    await same(`${name} broadcast [64,128] [128]`, [a, f([128], 1304)], op);
    await same(`${name} broadcast [128] [64,128]`, [f([128], 1305), b], op);
    await same(`${name} same size, different rank [1,8192] [8192]`, [f([1, 8192], 1306), f([8192], 1307)], op);
    // b repeated along a's leading dims (the position embeddings' add: one fill plus saxpy for add; unit-stride
    // runs at offsets for the others), and a broadcast that is not a repetition.
    const big = f([4, 64, 128], 1308, 100);
    big.values.set([NaN, Infinity, -Infinity, 0, -0, 1e-40], 8190);
    await same(`${name} broadcast [4,64,128] [64,128]`, [big, b], op);
    await same(`${name} broadcast [4,64,128] [1,64,128]`, [big, { ...b, shape: [1, 64, 128] }], op);
    await same(`${name} broadcast [4,64,128] [4,1,128]`, [big, f([4, 1, 128], 1309)], op);
    await same(`${name} broadcast [8192] [1,1,8192] (b of higher rank)`, [f([8192], 1310), f([1, 1, 8192], 1311)], op);
  }
  const ints: Arg = { shape: [64, 128], values: Int32Array.from({ length: 8192 }, (_, i) => i - 4000), dtype: "int32" };
  await same("int32 add same shape (cpu kernel)", [ints, ints], tf.add);
});

Deno.test({
  name: "blas: Concat (pooled output) matches cpu on every axis, with empty parts; int32 falls back",
  ignore,
}, async () => {
  const cases: [number[][], number][] = [
    [[[3608, 128], [1, 128]], 0], // the packed hidden state and its zero row (lib/model/model.ts)
    [[[128, 128], [128, 128], [128, 128]], 1], // weights side by side
    [[[128], [128], [128]], 0], // biases side by side
    [[[2, 3, 4], [2, 5, 4], [2, 1, 4]], 1], // middle axis
    [[[2, 3, 4], [2, 3, 1]], -1], // last axis, negative
    [[[4, 0], [4, 3], [4, 0]], 1], // empty parts
    [[[0, 3], [0, 3]], 0], // empty result
    [[[5]], 0], // one part
  ];
  for (const [shapes, axis] of cases) {
    const args = shapes.map((s, i) => f(s, 1500 + i));
    await same(`concat ${JSON.stringify(shapes)} axis ${axis}`, args, (...t) => tf.concat(t, axis), 0);
  }
  const ints: Arg = { shape: [2, 3], values: Int32Array.from([1, 2, 3, 4, 5, 6]), dtype: "int32" };
  await same("concat int32", [ints, ints], (a, b) => tf.concat([a, b], 1), 0);
});

Deno.test({ name: "blas: Slice and PadV2 (strided run copies) match cpu", ignore }, async () => {
  const x = f([32, 16, 8], 1400);
  const slices: [number[], number[]][] = [
    [[0, 0, 0], [32, 1, 8]], // the [CLS] rows
    [[1, 2, 3], [4, 5, 2]], // inner dim in part
    [[0, 3, 0], [-1, 2, -1]], // size -1
    [[5, 0, 0], [7, -1, -1]], // one contiguous run: a copy
    [[2, 7, 5], [1, 1, 1]],
    [[0, 0, 0], [32, 16, 8]],
    [[3, 0, 0], [0, 4, 8]], // empty
  ];
  for (const [begin, size] of slices) {
    await same(`slice [32,16,8] ${begin} ${size}`, [x], (t) => tf.slice(t, begin, size));
  }
  await same("slice 1-D", [f([10000], 1401)], (t) => tf.slice(t, [17], [5000]));
  await same("slice 4-D", [f([3, 4, 5, 6], 1402)], (t) => tf.slice(t, [1, 1, 2, 0], [2, 2, 3, 6]));
  const ints: Arg = { shape: [4, 6], values: Int32Array.from({ length: 24 }, (_, i) => i * 3), dtype: "int32" };
  await same("slice int32", [ints], (t) => tf.slice(t, [1, 2], [2, 3]));
  const pads: [number[], number[][], number][] = [
    [[32, 1, 8], [[0, 0], [0, 15], [0, 0]], 0], // gradient of the [CLS] slice
    [[128, 8], [[0, 384], [0, 0]], 0], // gradient of the position-embedding slice
    [[3, 4, 5], [[1, 2], [0, 3], [2, 1]], 1.5], // several dims, nonzero constant
    [[3, 4, 5], [[0, 0], [0, 0], [2, 0]], -2], // innermost only
    [[7], [[3, 4]], 9], // 1-D
    [[2, 0, 3], [[1, 1], [1, 1], [0, 0]], 4], // empty input: all constant
  ];
  for (const [shape, paddings, value] of pads) {
    await same(
      `pad [${shape}] ${JSON.stringify(paddings)} ${value}`,
      [f(shape, 1410)],
      (t) => tf.pad(t, paddings as [number, number][], value),
    );
  }
  await same("pad int32", [ints], (t) => tf.pad(t, [[1, 0], [2, 2]], 7));
  await same(
    "slice gradient (PadV2)",
    [x, f([32, 1, 8], 1411)],
    (t, dy) => tf.grad((y: tf.Tensor) => tf.sum(tf.mul(tf.slice(y, [0, 0, 0], [32, 1, 8]), dy)))(t),
  );
});

Deno.test(
  { name: "blas: layerNorm on a width that is not a multiple of 4 (JavaScript path) matches cpu", ignore },
  async () => {
    const x = f([20, 6], 820, 3), dy = f([20, 6], 821), gamma = f([6], 822), beta = f([6], 823);
    const run = (t: tf.Tensor, g: tf.Tensor, b: tf.Tensor, d: tf.Tensor) => [
      layerNorm(t, g, b, 1e-5),
      ...tf.grads((u: tf.Tensor, v: tf.Tensor, w: tf.Tensor) => tf.sum(tf.mul(layerNorm(u, v, w, 1e-5), d)))([t, g, b]),
    ];
    const cpu = await on("cpu", [x, gamma, beta, dy], run), blas = await on("blas", [x, gamma, beta, dy], run);
    ["y", "dx", "dgamma", "dbeta"].forEach((n, i) => close(blas[i].values, cpu[i].values, n, 1e-4, 1e-5));
  },
);

Deno.test(
  {
    name: "blas: addLayerNorm(x, r) is layerNorm(x + r) bit for bit, with and without gradients, and matches cpu",
    ignore,
  },
  async () => {
    // Width 128: the SIMD kernel (the residual added in its chunk regions); width 6: the JavaScript path.
    for (const [rows, w] of [[300, 128], [20, 6]]) {
      const x = f([rows, w], 830 + w, 3), r = f([rows, w], 831 + w, 3), dy = f([rows, w], 832 + w);
      const gamma = f([w], 833), beta = f([w], 834);
      const grads =
        (ln: (u: tf.Tensor, v: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.Tensor) =>
        (t: tf.Tensor, res: tf.Tensor, g: tf.Tensor, b: tf.Tensor, d: tf.Tensor) => [
          ln(t, res, g, b), // outside gradient recording: no statistics written
          ...tf.grads((u: tf.Tensor, v: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) =>
            tf.sum(tf.mul(ln(u, v, gg, bb), d))
          )(
            [t, res, g, b],
          ),
        ];
      const fusedLn = grads((u, v, g, b) => addLayerNorm(u, v, g, b, 1e-12));
      const separate = grads((u, v, g, b) => layerNorm(tf.add(u, v), g, b, 1e-12));
      const args = [x, r, gamma, beta, dy];
      const a = await on("blas", args, fusedLn), e = await on("blas", args, separate);
      const names = ["y", "dx", "dresidual", "dgamma", "dbeta"];
      names.forEach((n, i) => assertEquals(a[i].values, e[i].values, `${n} (width ${w})`));
      assertEquals(a[1].values, a[2].values, "the sum's gradient reaches both terms");
      const cpu = await on("cpu", args, fusedLn);
      names.forEach((n, i) => close(a[i].values, cpu[i].values, `${n} vs cpu (width ${w})`, 1e-4, 1e-4));
      // Not vacuous: the residual changed the result.
      const plain = await on("blas", [x, gamma, beta], (t, g, b) => layerNorm(t, g, b, 1e-12));
      assert(plain[0].values.some((v, i) => v !== a[0].values[i]), "the residual was added");
    }
  },
);
