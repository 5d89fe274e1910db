/**
 * lib/model/packing.ts: which rows a batch keeps, and classification inference on the kept rows against the padded run
 * (the `blas` backend; the tf-ops path on `cpu` as an independent reference).
 */
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { registerBlasBackend } from "../../lib/backends/blas/blas_backend.ts";
import { BertModel, configFromJson, softmaxCrossEntropy } from "../../lib/model/model.ts";
import { packBatch, unpaddedLength } from "../../lib/model/packing.ts";
import { assert, assertEquals, maxAbsDiff } from "../shared.ts";

const HAVE_BLAS = registerBlasBackend() !== undefined;

async function useBackend(name: "cpu" | "blas"): Promise<void> {
  await initBackend({ backend: name, quiet: true });
  assertEquals(tf.getBackend(), name);
}

/** A 2-layer, 4-head classifier (3 labels, vocabulary 50) of width `hidden`, with more config.json fields in `extra`. */
function classifier(hidden: number, seed: number, extra: Record<string, number>): BertModel {
  const json = { vocab_size: 50, hidden_size: hidden, num_hidden_layers: 2, num_attention_heads: 4, ...extra };
  return new BertModel(
    { ...configFromJson({ ...json, intermediate_size: 2 * hidden }), initializerRange: 0.3 },
    { head: "classification", numLabels: 3, seed },
  );
}

/**
 * Int32 inputs of examples with `lengths` real tokens padded to `seq` (ids `1 + (step * b + 3 * t) % 49`), token
 * `hole[1]` of example `hole[0]` masked too.
 */
function paddedInputs(lengths: number[], seq: number, hole: [number, number], step: number) {
  const batch = lengths.length;
  const ids = lengths.flatMap((n, b) => Array.from({ length: seq }, (_, t) => t < n ? 1 + (step * b + 3 * t) % 49 : 0));
  const keep = (b: number, t: number) => t < lengths[b] && !(b === hole[0] && t === hole[1]);
  const mask = lengths.flatMap((_, b) => Array.from({ length: seq }, (_, t) => keep(b, t) ? 1 : 0));
  return {
    inputIds: tf.tensor2d(ids, [batch, seq], "int32"),
    tokenTypeIds: tf.tensor2d(ids.map((id) => id % 2), [batch, seq], "int32"),
    attentionMask: tf.tensor2d(mask, [batch, seq], "int32"),
  };
}

Deno.test("packBatch: lengths rounded up to 4, groups shortest first, rows and their way back", async () => {
  await useBackend("cpu");
  // Lengths 18 (-> 20), 3 (-> 4), 20 (-> 20), 0 (no real token: all 32 kept), 32 (-> 32), 4 with a hole (-> 4).
  const lengths = [18, 3, 20, 0, 32, 4];
  const [batch, seq] = [lengths.length, 32];
  const keep = lengths.flatMap((n, b) => Array.from({ length: seq }, (_, t) => t < n && !(b === 5 && t === 2) ? 1 : 0));
  const mask = tf.tensor2d(keep, [batch, seq], "int32");
  const bias = tf.tensor2d(keep.map((k) => k ? 0 : -1e30), [batch, seq]);
  const p = packBatch(mask, bias, batch, seq)!;
  assertEquals(p.groups.map((g) => [g.seq, g.batch, g.examples]), [
    [4, 2, [1, 5]],
    [20, 2, [0, 2]],
    [32, 2, [3, 4]],
  ]);
  const rows = [...p.rows.dataSync()];
  assertEquals(rows.length, 112);
  assertEquals(rows.slice(0, 5), [32, 33, 34, 35, 160]); // example 1's 4 rows, then example 5's
  assertEquals([...p.firstRows.dataSync()], [8, 0, 28, 48, 80, 4]);
  assertEquals([...p.groupOrder.dataSync()], [2, 0, 3, 4, 5, 1]);
  const unpack = p.unpack.dataSync();
  rows.forEach((r, i) => assertEquals(unpack[r], i));
  assertEquals(unpack.filter((u) => u === 112).length, batch * seq - 112); // the dropped rows point at the zero row
  assertEquals([...p.byGroup.dataSync()], [1, 5, 0, 2, 3, 4]);
  // The mask bias of each kept row: example 1's 3 tokens and a padding row, then example 5's 4 rows, its token 2 masked.
  assertEquals([...p.maskBias.dataSync()].slice(0, 8), [0, 0, 0, -1e30, 0, 0, -1e30, 0].map(Math.fround));
  // Nothing to drop: no packing.
  const full = tf.ones([2, 8], "int32") as tf.Tensor2D;
  assertEquals(packBatch(full, tf.zeros([2, 8]) as tf.Tensor2D, 2, 8), undefined);
  tf.dispose([mask, bias, full, p.rows, p.maskBias, p.byGroup, p.firstRows, p.groupOrder, p.unpack]);
});

Deno.test("padding dropped: blas classification inference keeps every kept position's values, zeros elsewhere", async () => {
  if (!HAVE_BLAS) return console.log("blas backend unavailable: skipped");
  await useBackend("blas");
  const [batch, seq] = [7, 40];
  const model = classifier(64, 5, { max_position_embeddings: 64 });
  // Lengths 40, 3, 17, 40, 9, 25 and 0 (no real token: kept whole); example 4 has a masked token inside.
  const lengths = [40, 3, 17, 40, 9, 25, 0];
  const inputs = paddedInputs(lengths, seq, [4, 5], 7);
  const before = tf.memory().numTensors;
  const run = (keepPadding: boolean, clsOnly: boolean) =>
    tf.tidy(() => {
      const out = model.forward(inputs, { keepPadding, clsOnly });
      return { hidden: out.lastHiddenState.dataSync(), logits: out.logits!.dataSync() };
    });
  const padded = run(true, false), dropped = run(false, false);
  const paddedCls = run(true, true), droppedCls = run(false, true);
  assertEquals(tf.memory().numTensors, before, "tensors left behind");
  const d = 64;
  let kept = 0, same = 0, worst = 0;
  for (let b = 0; b < batch; b++) {
    const keep = lengths[b] === 0 ? seq : Math.min(seq, Math.max(4, Math.ceil(lengths[b] / 4) * 4));
    for (let t = 0; t < seq; t++) {
      for (let j = 0; j < d; j++) {
        const i = (b * seq + t) * d + j;
        if (t >= keep) {
          assertEquals(dropped.hidden[i], 0, `example ${b} position ${t}: a dropped row is zeros`);
          continue;
        }
        kept++;
        if (Object.is(dropped.hidden[i], padded.hidden[i])) same++;
        worst = Math.max(worst, Math.abs(dropped.hidden[i] - padded.hidden[i]));
      }
    }
  }
  assert(worst < 1e-5, `kept positions differ from the padded run's by up to ${worst}`);
  assert(kept < batch * seq * d, "the batch has padding to drop");
  assert(maxAbsDiff(dropped.logits, padded.logits) < 1e-5 && maxAbsDiff(droppedCls.logits, paddedCls.logits) < 1e-5);
  assert(maxAbsDiff(droppedCls.logits, dropped.logits) < 1e-5);
  assert(maxAbsDiff(padded.logits, new Float32Array(batch * 3)) > 1e-3, "logits must not be trivially zero");
  console.log(`${same} of ${kept} kept values with the padded run's bits; largest difference ${worst}`);
  // An independent reference: the tf-ops path on the cpu backend (example 6, all padding, attends evenly there).
  await useBackend("cpu");
  const reference = tf.tidy(() => model.forward(inputs).logits!.dataSync());
  assert(maxAbsDiff(dropped.logits, reference) < 1e-4, "blas logits against cpu's (an all-padding example too)");
  await useBackend("blas");
  tf.dispose(Object.values(inputs));
  model.dispose();
});

Deno.test("padding dropped in training: blas loss and gradients equal the padded run's, dropout masks included", async () => {
  if (!HAVE_BLAS) return console.log("blas backend unavailable: skipped");
  await useBackend("blas");
  const seq = 24;
  const dropout = { hidden_dropout_prob: 0.2, attention_probs_dropout_prob: 0.3 };
  const model = classifier(32, 9, { max_position_embeddings: 32, ...dropout });
  // Lengths 24 (whole), 5 (-> 8), 13 (-> 16), 7 (-> 8) and 24 with a masked token inside.
  const inputs = paddedInputs([24, 5, 13, 7, 24], seq, [4, 9], 5);
  const labels = tf.tensor1d([0, 2, 1, 1, 0], "int32");
  const before = tf.memory().numTensors;
  const run = (keepPadding: boolean, clsOnly: boolean) =>
    tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() =>
        softmaxCrossEntropy(model.forward(inputs, { training: true, seed: 3, keepPadding, clsOnly }).logits!, labels)
      );
      return { loss: value.dataSync()[0], grads: Object.values(grads).map((g) => g.dataSync()) };
    });
  for (const clsOnly of [false, true]) {
    const padded = run(true, clsOnly), dropped = run(false, clsOnly);
    assert(Math.abs(dropped.loss - padded.loss) < 1e-6, `loss ${dropped.loss} against the padded run's ${padded.loss}`);
    let worst = 0, norm = 0;
    dropped.grads.forEach((g, i) => {
      worst = Math.max(worst, maxAbsDiff(g, padded.grads[i]));
      norm = Math.max(norm, ...padded.grads[i].map(Math.abs));
    });
    assert(norm > 1e-3 && worst < 1e-5 * norm, `clsOnly ${clsOnly}: gradients differ by ${worst} (largest ${norm})`);
    // Another seed gives another loss: the dropout is on in both runs.
    const other = tf.tidy(() =>
      softmaxCrossEntropy(model.forward(inputs, { training: true, seed: 4, clsOnly }).logits!, labels).dataSync()[0]
    );
    assert(Math.abs(other - padded.loss) > 1e-4, "dropout must change the loss");
  }
  assertEquals(tf.memory().numTensors, before, "tensors left behind");
  tf.dispose([...Object.values(inputs), labels]);
  model.dispose();
});

Deno.test("unpaddedLength: 1 + the last unmasked position of a row, a hole inside included; 0 for an all-padding row", () => {
  // three rows of 5: a hole at 2 (length 4), all padding, unmasked to the end; the rows lie side by side
  const mask = [1, 1, 0, 1, 0, /**/ 0, 0, 0, 0, 0, /**/ 1, 0, 0, 0, 1];
  assertEquals([0, 5, 10].map((start) => unpaddedLength(mask, start, 5)), [4, 0, 5]);
  assertEquals(unpaddedLength(mask, 10, 4), 1, "only the first `length` values count");
  assertEquals(unpaddedLength(new Int32Array(0), 0, 0), 0);
});
