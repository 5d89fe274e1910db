/**
 * AdamW, the warmup/decay schedule and gradient clipping against hand-worked values, a float64 reference of
 * torch.optim.AdamW's update, and the golden three-step run of the tiny random checkpoint (../shared).
 */
import { assert, assertEquals, assertThrows, HAVE_SHARED, maxAbsDiff, SHARED } from "../shared.ts";
import { type BackendName, initBackend, tf } from "../../lib/backends/backend.ts";
import {
  AdamW,
  clipGradsByGlobalNorm,
  defaultDecay,
  globalNorm,
  scheduleLr,
  warmupStepsFor,
} from "../../lib/training/optim.ts";
import { loadCheckpoint, modelToTensors } from "../../lib/model/checkpoint.ts";
import { softmaxCrossEntropy } from "../../lib/model/model.ts";
import { readSafetensors, toFloat32 } from "../../lib/io/safetensors.ts";
import { registerBlasBackend } from "../../lib/backends/blas/blas_backend.ts";

// cpu by default (deterministic, no setup); BERT_TEST_BACKEND=wasm runs the same checks on wasm.
await initBackend({ backend: (Deno.env.get("BERT_TEST_BACKEND") ?? "cpu") as BackendName, quiet: true });

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what = "values"): void {
  assertEquals(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= tol)) {
      throw new Error(`${what}[${i}]: expected ${expected[i]} within ${tol}, got ${actual[i]}`);
    }
  }
}

Deno.test("defaultDecay: no decay on biases and LayerNorm", () => {
  assert(defaultDecay("bert.encoder.layer.0.attention.self.query.weight"));
  assert(defaultDecay("classifier.weight"));
  assert(!defaultDecay("classifier.bias"));
  assert(!defaultDecay("bert.embeddings.LayerNorm.weight"));
  assert(!defaultDecay("bert.encoder.layer.4.output.LayerNorm.bias"));
});

Deno.test("AdamW step 1 by hand: p(1 - lr wd) - lr g / (|g| + eps)", () => {
  // At t = 1: m = 0.1 g, v = 0.001 g², m̂ = m / 0.1 = g, sqrt(v)/sqrt(0.001) = |g|,
  // so p1 = p0 (1 - lr wd) - lr g / (|g| + eps).
  const w = tf.variable(tf.tensor1d([1, -2, 0.5]), true, "optim_test.w.weight");
  const b = tf.variable(tf.tensor1d([3]), true, "optim_test.b.bias");
  const params = new Map<string, tf.Variable>([["w.weight", w], ["b.bias", b]]);
  const opt = new AdamW(params, { lr: 0.1, weightDecay: 0.5, eps: 1e-6 });
  const before = tf.memory().numTensors;
  const grads = new Map<string, tf.Tensor>([["w.weight", tf.tensor1d([0.2, -4, 0])], ["b.bias", tf.tensor1d([-1])]]);
  opt.applyGradients(grads);
  assertEquals(grads.size, 0, "gradients are consumed");
  const lr = 0.1, wd = 0.5, eps = 1e-6;
  assertClose(
    w.dataSync(),
    [
      1 * (1 - lr * wd) - lr * 0.2 / (0.2 + eps),
      -2 * (1 - lr * wd) - lr * -4 / (4 + eps),
      0.5 * (1 - lr * wd), // zero gradient: only the decay
    ],
    1e-6,
    "w",
  );
  assertClose(b.dataSync(), [3 - lr * -1 / (1 + eps)], 1e-6, "bias (no decay)");
  assertEquals(tf.memory().numTensors, before + 4); // gradients disposed, 2 moments per parameter added
  opt.dispose();
  w.dispose();
  b.dispose();
});

/** torch.optim.AdamW's update in float64, written from the PyTorch docs' algorithm box. */
function referenceAdamW(
  p: number[],
  grads: number[][],
  o: { lrs: number[]; b1: number; b2: number; eps: number; wd: number },
): number[] {
  const m = p.map(() => 0), v = p.map(() => 0);
  const out = [...p];
  grads.forEach((g, k) => {
    const t = k + 1, lr = o.lrs[k];
    for (let i = 0; i < out.length; i++) {
      out[i] *= 1 - lr * o.wd;
      m[i] = o.b1 * m[i] + (1 - o.b1) * g[i];
      v[i] = o.b2 * v[i] + (1 - o.b2) * g[i] * g[i];
      const mHat = m[i] / (1 - o.b1 ** t), vHat = v[i] / (1 - o.b2 ** t);
      out[i] -= lr * mHat / (Math.sqrt(vHat) + o.eps);
    }
  });
  return out;
}

Deno.test("AdamW: five steps with changing lr match a float64 reference; tensor count stays flat", () => {
  const p0 = [0.3, -0.7, 1.2, 0.01];
  const grads = [[0.5, -0.1, 0.02, 3], [-0.4, -0.2, 0.01, 2], [0.1, 0.3, -0.05, -1], [0, 0.2, 0.2, 0.5], [
    -0.3,
    0.1,
    0,
    0.1,
  ]];
  const lrs = [0.01, 0.02, 0.015, 0.005, 0.001];
  const expected = referenceAdamW(p0, grads, { lrs, b1: 0.8, b2: 0.95, eps: 1e-8, wd: 0.1 });
  const w = tf.variable(tf.tensor2d(p0, [2, 2]), true, "optim_test.ref.weight");
  const opt = new AdamW(new Map([["ref.weight", w]]), { beta1: 0.8, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
  let count = -1;
  grads.forEach((g, k) => {
    opt.applyGradients(new Map([["ref.weight", tf.tensor2d(g, [2, 2])]]), lrs[k]);
    if (k === 1) count = tf.memory().numTensors;
    if (k > 1) assertEquals(tf.memory().numTensors, count, `tensor count after step ${k + 1}`);
  });
  assertEquals(opt.step, 5);
  assertClose(w.dataSync(), expected, 2e-6, "weights");
  opt.dispose();
  w.dispose();
});

Deno.test("AdamW on blas updates large parameters in place, never an array already read out", async () => {
  if (!registerBlasBackend()) {
    console.warn("optim_test: in-place AdamW skipped — no CBLAS library (install libopenblas0-pthread)");
    return;
  }
  const previous = tf.getBackend();
  await tf.setBackend("blas");
  try {
    const n = 8192; // above the pool's minimum: the kernels' arrays are pool arrays
    const p0 = Array.from({ length: n }, (_, i) => Math.sin(i) * 0.5);
    const grads = [0, 1, 2, 3, 4].map((k) => Array.from({ length: n }, (_, i) => Math.cos(i * (k + 1)) * 0.1));
    const lrs = [0.01, 0.02, 0.015, 0.005, 0.001];
    const expected = referenceAdamW(p0, grads, { lrs, b1: 0.9, b2: 0.999, eps: 1e-6, wd: 0.01 });
    const w = tf.variable(tf.tensor1d(p0), true, "optim_test.inplace.weight");
    const opt = new AdamW(new Map([["inplace.weight", w]]), { eps: 1e-6, weightDecay: 0.01 });
    const ids: object[] = [];
    let readOut: Float32Array<ArrayBufferLike> = new Float32Array(0), copy = new Float32Array(0);
    grads.forEach((g, k) => {
      opt.applyGradients(new Map([["inplace.weight", tf.tensor1d(g)]]), lrs[k]);
      ids.push(w.dataId);
      if (k === 2) {
        readOut = w.dataSync() as Float32Array; // handed out: must never change afterwards
        copy = readOut.slice();
      }
    });
    // Step 1 replaces the caller's array; steps 2-3 update the kernel's array in place; step 4 must not touch the
    // array read out after step 3, so it writes a new one, which step 5 updates in place.
    assertEquals(ids[1], ids[2], "in place at step 3");
    assert(ids[3] !== ids[2], "step 4 leaves the read-out array alone");
    assertEquals(ids[4], ids[3], "in place again at step 5");
    assertEquals(readOut, copy, "the array returned by dataSync() did not change");
    assertClose(w.dataSync(), expected, 2e-6, "weights after five steps");
    opt.dispose();
    w.dispose();
  } finally {
    await tf.setBackend(previous);
  }
});

Deno.test("AdamW state export/import resumes exactly; bad state is refused", () => {
  const mk = () => tf.variable(tf.tensor2d([1, 2, 3, 4], [2, 2]), true);
  const g = (k: number) => tf.tensor2d([0.1 * k, -0.2, 0.3, 0.05 * k], [2, 2]);
  // Uninterrupted: 4 steps.
  const a = mk();
  const optA = new AdamW(new Map([["x.weight", a]]), { lr: 0.05 });
  for (let k = 1; k <= 4; k++) optA.applyGradients(new Map([["x.weight", g(k)]]));
  // Interrupted after 2 steps: export, then a fresh optimiser (and a copy of the weights) continues.
  const b = mk();
  const optB = new AdamW(new Map([["x.weight", b]]), { lr: 0.05 });
  for (let k = 1; k <= 2; k++) optB.applyGradients(new Map([["x.weight", g(k)]]));
  const state = optB.exportState();
  assertEquals(Object.keys(state.tensors).sort(), ["exp_avg.x.weight", "exp_avg_sq.x.weight"]);
  assertEquals(state.step, 2);
  const c = tf.variable(tf.tensor(b.dataSync(), b.shape), true);
  const optC = new AdamW(new Map([["x.weight", c]]), { lr: 0.05 });
  optC.importState(structuredClone(state));
  for (let k = 3; k <= 4; k++) optC.applyGradients(new Map([["x.weight", g(k)]]));
  assertClose(c.dataSync(), a.dataSync(), 0, "resumed weights");

  assertThrows(
    () => optC.importState({ tensors: { "exp_avg.nope": state.tensors["exp_avg.x.weight"] }, step: 1 }),
    Error,
    "names no parameter",
  );
  assertThrows(
    () =>
      optC.importState({
        tensors: {
          "exp_avg.x.weight": { dtype: "F32", shape: [4], data: new Float32Array(4) },
          "exp_avg_sq.x.weight": { dtype: "F32", shape: [4], data: new Float32Array(4) },
        },
        step: 1,
      }),
    Error,
    "expected F32 [2,2]",
  );
  for (const t of [a, b, c]) t.dispose();
  for (const o of [optA, optB, optC]) o.dispose();
});

Deno.test("scheduleLr: linear warmup then linear decay to 0 (HF get_linear_schedule_with_warmup)", () => {
  const o = { peakLr: 1e-4, warmupSteps: 10, totalSteps: 110 };
  assertEquals(scheduleLr(0, o), 0); // HF's first update uses lr 0 when there is a warmup
  assertClose([scheduleLr(5, o)], [5e-5], 1e-15);
  assertEquals(scheduleLr(10, o), 1e-4);
  assertClose([scheduleLr(60, o)], [5e-5], 1e-15); // (110 - 60) / 100
  assertEquals(scheduleLr(110, o), 0);
  assertEquals(scheduleLr(200, o), 0);
  assertEquals(scheduleLr(0, { peakLr: 1, warmupSteps: 0, totalSteps: 4 }), 1);
  assertEquals(scheduleLr(3, { peakLr: 1, warmupSteps: 0, totalSteps: 4 }), 0.25);
  assertEquals(warmupStepsFor(95, 0.1), 10);
  assertThrows(() => warmupStepsFor(10, 1.5), Error, "warmup ratio");
});

Deno.test("clipGradsByGlobalNorm: torch clip_grad_norm_ semantics", () => {
  // Norm of [3, 4] and [12] = sqrt(9 + 16 + 144) = 13; maxNorm 1 -> scale 1 / (13 + 1e-6).
  const grads = new Map<string, tf.Tensor>([["a", tf.tensor1d([3, 4])], ["b", tf.tensor1d([12])]]);
  assertClose([globalNorm(grads)], [13], 1e-6);
  const before = tf.memory().numTensors;
  const { norm, scale } = clipGradsByGlobalNorm(grads, 1);
  assertEquals(tf.memory().numTensors, before, "old gradients disposed");
  assertClose([norm, scale], [13, 1 / (13 + 1e-6)], 1e-9);
  assertClose(grads.get("a")!.dataSync(), [3 / 13, 4 / 13], 1e-6);
  // Below the limit: untouched.
  const same = clipGradsByGlobalNorm(grads, 5);
  assertEquals(same.scale, 1);
  assertClose(grads.get("b")!.dataSync(), [12 / 13], 1e-6);
  for (const t of grads.values()) t.dispose();
});

const GOLDEN = `${SHARED}/golden/model/tiny-random-cls.adamw3.golden.safetensors`;

Deno.test({
  name: "golden: three AdamW steps on the tiny random classifier match PyTorch (losses and weights within 1e-5)",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const golden = await readSafetensors(GOLDEN);
    const dir = `${SHARED}/${golden.metadata.checkpoint}`;
    const { model } = await loadCheckpoint(dir, { head: "classification", numLabels: 2, quiet: true });
    const t = golden.tensors;
    const ids = (name: string) => tf.tensor2d(t[name].data as Int32Array, t[name].shape as [number, number], "int32");
    const inputs = {
      inputIds: ids("input_ids"),
      tokenTypeIds: ids("token_type_ids"),
      attentionMask: ids("attention_mask"),
    };
    const labels = tf.tensor1d(t.labels.data as Int32Array, "int32");
    const opt = new AdamW(model.params, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0.01 });
    const varNames = new Map([...model.params].map(([name, v]) => [v.name, name]));
    const losses: number[] = [];
    for (let step = 0; step < 3; step++) {
      const { value, grads } = tf.variableGrads(
        () => softmaxCrossEntropy(model.forward(inputs, { training: false }).logits!, labels),
        model.variables(),
      );
      losses.push(value.dataSync()[0]);
      value.dispose();
      opt.applyGradients(new Map(Object.entries(grads).map(([k, g]) => [varNames.get(k)!, g])));
    }
    const expectedLosses = toFloat32(t.losses);
    assertClose(losses, expectedLosses, 1e-5, "losses");
    const after = modelToTensors(model);
    const errors: string[] = [];
    for (const key of Object.keys(t).filter((k) => k.startsWith("after."))) {
      const name = key.slice("after.".length);
      assertEquals(after[name].shape, t[key].shape, `${name} shape`);
      const a = after[name].data as Float32Array, e = toFloat32(t[key]);
      const maxErr = maxAbsDiff(a, e);
      errors.push(`${name}: ${maxErr.toExponential(2)}`);
      assertClose(a, e, 1e-5, name);
    }
    const lossErr = Math.max(...losses.map((l, i) => Math.abs(l - expectedLosses[i])));
    console.log(`golden AdamW max abs errors: losses ${lossErr.toExponential(2)}; ${errors.join("; ")}`);
    opt.dispose();
    model.dispose();
    for (const x of [...Object.values(inputs), labels]) x.dispose();
  },
});
