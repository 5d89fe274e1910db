/**
 * lib/model/layers.ts, BERT's building blocks: the hand-written gradients of the dense layers, the embedding lookup,
 * the batched products and LayerNorm against tfjs's own (computed with built-in ops on cpu) on every backend, GELU's
 * closed forms and the loss by hand.
 */
import { initBackend, tf } from "../../lib/backends/backend.ts";
import {
  batchMatMul,
  embeddingLookup,
  gelu,
  geluTanh,
  layerNorm,
  linear,
  linearTransposed,
  softmaxCrossEntropy,
} from "../../lib/model/layers.ts";
import { registerBlasBackend } from "../../lib/backends/blas/blas_backend.ts";
import { assert, assertEquals, assertThrows, maxAbsDiff } from "../shared.ts";

const HAVE_BLAS = registerBlasBackend() !== undefined;
type TestBackend = "cpu" | "wasm" | "blas";
const BACKENDS: TestBackend[] = HAVE_BLAS ? ["cpu", "wasm", "blas"] : ["cpu", "wasm"];
if (!HAVE_BLAS) console.warn("layers_test: no CBLAS library could be opened: blas comparisons skipped");

function assertAlmostEquals(actual: number, expected: number, tolerance: number, message?: string): void {
  assert(
    Math.abs(actual - expected) <= tolerance,
    `${message ? message + ": " : ""}expected ${expected} ± ${tolerance}, got ${actual}`,
  );
}

function int2d(rows: number[][]): tf.Tensor2D {
  return tf.tensor2d(rows, undefined, "int32");
}

async function useBackend(name: TestBackend): Promise<void> {
  await initBackend({ backend: name, quiet: true });
  assertEquals(tf.getBackend(), name);
}

// ---------------------------------------------------------------------------------------------------------------
// Hand-written gradients vs tfjs's own gradients (reference computed with built-in ops on cpu)

/** Gradients of sum(f(...) * w) for a fixed random w, as plain arrays. */
function gradsOf(f: (...xs: tf.Tensor[]) => tf.Tensor, xs: tf.Tensor[], seed: number): Float32Array[] {
  return tf.tidy(() => {
    const probe = (...args: tf.Tensor[]) => {
      const y = f(...args);
      return tf.sum(tf.mul(y, tf.randomNormal(y.shape, 0, 1, "float32", seed)));
    };
    return tf.grads(probe)(xs).map((g) => g.dataSync() as Float32Array);
  });
}

async function compareGradients(
  name: string,
  custom: (...xs: tf.Tensor[]) => tf.Tensor,
  reference: (...xs: tf.Tensor[]) => tf.Tensor,
  makeInputs: () => tf.Tensor[],
): Promise<void> {
  await useBackend("cpu");
  const refInputs = makeInputs();
  const expected = gradsOf(reference, refInputs, 7);
  const expectedValue = tf.tidy(() => reference(...refInputs).dataSync());
  tf.dispose(refInputs);
  for (const backend of BACKENDS) {
    await useBackend(backend);
    const inputs = makeInputs();
    const value = tf.tidy(() => custom(...inputs).dataSync());
    assert(maxAbsDiff(value, expectedValue) < 1e-5, `${name} value on ${backend}`);
    const got = gradsOf(custom, inputs, 7);
    got.forEach((g, i) => {
      const err = maxAbsDiff(g, expected[i]);
      assert(err < 1e-4, `${name}: gradient of input ${i} differs by ${err} on ${backend}`);
    });
    tf.dispose(inputs);
  }
}

Deno.test("embeddingLookup: scatterND gradient equals tf.gather's (repeated ids summed)", async () => {
  // ids repeat (3 three times, 0 twice) and skip rows (6..9): those rows must get exactly zero gradient.
  const ids = [[3, 1, 3, 0], [0, 3, 5, 2]];
  await compareGradients(
    "embeddingLookup",
    (table) => embeddingLookup(table as tf.Tensor2D, int2d(ids)),
    (table) => tf.gather(table, int2d(ids)),
    () => [tf.randomNormal([10, 3], 0, 1, "float32", 1)],
  );
  await useBackend("wasm");
  const table = tf.variable(tf.zeros([10, 3]));
  const g = tf.tidy(() =>
    tf.variableGrads(() => tf.sum(embeddingLookup(table, int2d(ids))), [table]).grads[table.name].dataSync()
  );
  // Row r's gradient = number of times r occurs, in every column.
  const counts = [2, 1, 1, 3, 0, 1, 0, 0, 0, 0];
  assertEquals(Array.from(g), counts.flatMap((c) => [c, c, c]));
  table.dispose();
});

// The dense layer (weight [in, out]) and the tied MLM decoder (weight [out, in], read transposed).
const DENSE_CASES = [
  { name: "linear", fn: linear, transposed: false, weight: [3, 4], seed: 2 },
  { name: "linearTransposed (tied MLM decoder)", fn: linearTransposed, transposed: true, weight: [7, 3], seed: 12 },
];
for (const { name, fn, transposed, weight, seed } of DENSE_CASES) {
  Deno.test(`${name}: hand-written gradient equals tfjs's matMul + add gradient`, async () => {
    const out = weight[transposed ? 0 : 1];
    await compareGradients(
      name,
      (x, w, b) => fn(x, w, b),
      (x, w, b) => tf.add(tf.matMul(x, w, false, transposed), b),
      () => [
        tf.randomNormal([5, 3], 0, 1, "float32", seed),
        tf.randomNormal(weight, 0, 1, "float32", seed + 1),
        tf.randomNormal([out], 0, 1, "float32", seed + 2),
      ],
    );
  });
}

Deno.test("batchMatMul: hand-written gradient equals tfjs's batched matMul gradient", async () => {
  await compareGradients(
    "batchMatMul",
    (a, b) => batchMatMul(a, b),
    (a, b) => tf.matMul(a, b),
    () => [tf.randomNormal([2, 3, 4, 5], 0, 1, "float32", 5), tf.randomNormal([2, 3, 5, 2], 0, 1, "float32", 6)],
  );
});

Deno.test("layerNorm: hand-written gradient equals autodiff of the textbook formula", async () => {
  const eps = 1e-5;
  await compareGradients(
    "layerNorm",
    (x, g, b) => layerNorm(x, g, b, eps),
    (x, g, b) => {
      const { mean, variance } = tf.moments(x, -1, true);
      return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, eps))), g), b);
    },
    () => [
      tf.randomNormal([2, 3, 6], 1, 2, "float32", 8),
      tf.randomNormal([6], 1, 0.5, "float32", 9),
      tf.randomNormal([6], 0, 1, "float32", 10),
    ],
  );
});

Deno.test("GELU variants match their closed forms", async () => {
  await useBackend("wasm");
  const x = tf.tensor1d([-3, -1, 0, 0.5, 1, 2]);
  const exact = [-0.0040496, -0.15865525, 0, 0.34573123, 0.84134475, 1.95449974];
  const tanh = [-0.00363739, -0.15880801, 0, 0.34571401, 0.84119199, 1.95459769];
  gelu(x).dataSync().forEach((v, i) => assertAlmostEquals(v, exact[i], 1e-6));
  geluTanh(x).dataSync().forEach((v, i) => assertAlmostEquals(v, tanh[i], 1e-6));
  tf.dispose(x);
});

Deno.test("softmaxCrossEntropy: hand-worked mean, ignored labels, shape errors", async () => {
  await useBackend("wasm");
  // Row 0: logits (0, 0) -> p = 1/2, loss ln 2. Row 1: (ln 3, 0), label 1 -> p = 1/4, loss ln 4. Row 2 ignored.
  const logits = tf.tensor2d([[0, 0], [Math.log(3), 0], [5, -5]]);
  const loss = softmaxCrossEntropy(logits, tf.tensor1d([0, 1, -100], "int32"));
  assertAlmostEquals(loss.dataSync()[0], (Math.log(2) + Math.log(4)) / 2, 1e-6);
  const none = softmaxCrossEntropy(logits, tf.tensor1d([-100, -100, -100], "int32"));
  assertEquals(none.dataSync()[0], 0);
  assertThrows(() => softmaxCrossEntropy(logits, tf.tensor1d([0, 1], "int32")), Error, "do not match");
  tf.dispose([logits, loss, none]);
});
