/**
 * lib/training/autodiff.ts's `variableGrads` against `tf.variableGrads`: the same gradients, bit for bit, for a small BERT
 * with dropout on every backend this process has (cpu, and blas when a CBLAS library opens); a lower peak of live
 * tensor data during the step; no tensors left behind; clear errors.
 */
import { assert, assertEquals, assertThrows } from "../shared.ts";
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { variableGrads } from "../../lib/training/autodiff.ts";
import { registerBlasBackend } from "../../lib/backends/blas/blas_backend.ts";
import { softmaxCrossEntropy } from "../../lib/model/model.ts";
import { tinyModel } from "../fixtures/tiny_training.ts";

await initBackend({ backend: "cpu", quiet: true });
const backends = ["cpu", ...(registerBlasBackend() ? ["blas"] : [])];

/** A batch of 4 sequences of 12 tokens, the last two padded. */
function batch() {
  const ids = Array.from(
    { length: 4 },
    (_, b) => Array.from({ length: 12 }, (_, t) => (t < 12 - 3 * b ? 5 + ((b * 7 + t * 3) % 40) : 0)),
  );
  return {
    inputIds: tf.tensor2d(ids, [4, 12], "int32"),
    attentionMask: tf.tensor2d(ids.map((r) => r.map((v) => (v ? 1 : 0))), [4, 12], "int32"),
    tokenTypeIds: tf.zeros([4, 12], "int32") as tf.Tensor2D,
    labels: tf.tensor1d([0, 1, 1, 0], "int32"),
  };
}

Deno.test("variableGrads: identical to tf.variableGrads (dropout on), fewer live bytes, nothing left behind", async () => {
  for (const name of backends) {
    await tf.setBackend(name);
    const model = tinyModel({ seed: 3, dropout: 0.2 });
    const b = batch();
    const vars = model.variables();
    const loss = () =>
      softmaxCrossEntropy(model.forward(b, { training: true, seed: 11 }).logits!, b.labels) as tf.Scalar;
    // Live tensor data, sampled after every kernel: the peak of the step.
    let live = 0, peak = 0;
    const engine = tf.engine() as unknown as { runKernel: (...a: unknown[]) => unknown };
    const run = engine.runKernel;
    engine.runKernel = (...a: unknown[]) => {
      const out = run.apply(engine, a);
      peak = Math.max(peak, tf.memory().numBytes - live);
      return out;
    };
    try {
      live = tf.memory().numBytes;
      peak = 0;
      const ref = tf.variableGrads(loss, vars);
      const refPeak = peak;
      const before = tf.memory().numTensors;
      live = tf.memory().numBytes;
      peak = 0;
      const ours = variableGrads(loss, vars);
      const ourPeak = peak;
      assertEquals(ours.value.dataSync(), ref.value.dataSync(), `${name}: loss`);
      assertEquals(Object.keys(ours.grads).sort(), Object.keys(ref.grads).sort(), `${name}: variables`);
      for (const k of Object.keys(ref.grads)) {
        assertEquals(ours.grads[k].dataSync(), ref.grads[k].dataSync(), `${name}: gradient of ${k}`);
      }
      assert(ourPeak < refPeak, `${name}: peak live bytes ${ourPeak} should be below tf.variableGrads' ${refPeak}`);
      tf.dispose([ours.value, ...Object.values(ours.grads)]);
      assertEquals(tf.memory().numTensors, before, `${name}: tensors left behind`);
      tf.dispose([ref.value, ...Object.values(ref.grads)]);
    } finally {
      engine.runKernel = run;
      tf.dispose(Object.values(b));
      model.dispose();
    }
  }
  await tf.setBackend("cpu");
});

Deno.test("variableGrads: errors name the problem; a failing loss leaves no tape behind", () => {
  const w = tf.variable(tf.tensor1d([1, 2, 3]), true, "autodiff_test.w");
  const before = tf.memory().numTensors;
  assertThrows(() => variableGrads(() => tf.mul(w, 2) as unknown as tf.Scalar, [w]), Error, "scalar");
  assertThrows(() => variableGrads(() => tf.scalar(1), [w]), Error, "no variable is connected");
  assertThrows(() => variableGrads(() => tf.sum(w), []), Error, "no trainable variables");
  assertEquals(tf.memory().numTensors, before, "tensors left behind by failed calls");
  const { value, grads } = variableGrads(() => tf.sum(tf.square(w)), [w]);
  assertEquals([...grads[w.name].dataSync()], [2, 4, 6]);
  assertEquals(value.dataSync()[0], 14);
  tf.dispose([value, grads[w.name], w]);
});

Deno.test("variableGrads: a loss that throws leaves no tensors and no tape behind", () => {
  const w = tf.variable(tf.tensor1d([1, 2, 3]), true, "autodiff_test.w2");
  const before = tf.memory().numTensors;
  assertThrows(
    () =>
      variableGrads(() => {
        tf.mul(w, 3);
        throw new Error("boom");
      }, [w]),
    Error,
    "boom",
  );
  assertEquals(tf.memory().numTensors, before);
  const { value, grads } = variableGrads(() => tf.sum(tf.mul(w, w)), [w]); // the next call still works
  assertEquals([...grads[w.name].dataSync()], [2, 4, 6]);
  tf.dispose([value, grads[w.name], w]);
});
