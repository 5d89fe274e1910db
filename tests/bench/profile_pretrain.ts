/**
 * Kernel profile of pre-training steps on the `blas` backend, beside a fine-tuning step of the same shape and
 * batch: real IMDB instances (lib/tasks/pretraining/instances.ts), time per kernel over a few steps.
 *
 * Usage: deno run -A tests/bench/profile_pretrain.ts [steps] [--vocab FILE] [--batch 32] [--seq 128] [--by-shape]
 */
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { BertModel, softmaxCrossEntropy } from "../../lib/model/model.ts";
import { AdamW } from "../../lib/training/optim.ts";
import { setKernelProfiling } from "../../lib/backends/blas/blas_backend.ts";
import { lossAndGrads } from "../../lib/training/step.ts";
import { readImdbCorpus } from "../../lib/tasks/pretraining/corpus.ts";
import { createPretrainingData } from "../../lib/tasks/pretraining/instances.ts";
import { pretrainingBatch, pretrainingLoss } from "../../lib/tasks/pretraining/task.ts";
import { FullTokenizer } from "../../lib/text/tokenizer.ts";
import { Vocab } from "../../lib/text/vocab.ts";
import { standardConfig } from "../../lib/model/configs.ts";

const flag = (name: string, dflt: string) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : dflt;
};
const steps = Number(Deno.args.find((a) => /^\d+$/.test(a)) ?? 4);
const batchSize = Number(flag("batch", "32")), seq = Number(flag("seq", "128"));
await initBackend({ backend: "blas", quiet: true });
const vocab = await Vocab.load(flag("vocab", "outputs/probe/vocab.txt"));
const tokenizer = new FullTokenizer(vocab, { lowerCase: true });
const set = createPretrainingData(await readImdbCorpus({ limit: 200 }), tokenizer, { maxSeqLength: seq });
const config = await standardConfig("tiny", vocab.size);

function profile(label: string, step: (i: number) => void) {
  step(0);
  step(1);
  setKernelProfiling(true, { byShape: Deno.args.includes("--by-shape") });
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) step(i + 2);
  const ms = (performance.now() - t0) / steps;
  const prof = [...setKernelProfiling(false)].sort((a, b) => b[1].ms - a[1].ms);
  const total = prof.reduce((s, [, t]) => s + t.ms, 0);
  console.log(`\n== ${label}: ${ms.toFixed(0)} ms/step, kernels ${(total / steps).toFixed(0)} ms`);
  for (const [name, t] of prof.slice(0, Deno.args.includes("--by-shape") ? 24 : 14)) {
    console.log(`${(t.ms / steps).toFixed(1).padStart(8)} ms  ${String(t.calls / steps).padStart(6)} calls  ${name}`);
  }
}

for (const head of ["pretraining", "classification"] as const) {
  const model = new BertModel(config, { head, seed: 1 });
  const opt = new AdamW(model.params);
  const rows = Array.from({ length: batchSize }, (_, i) => i);
  const batch = pretrainingBatch(set, rows);
  const labels = tf.tensor1d(Array.from({ length: batchSize }, (_, i) => i % 2), "int32");
  profile(`${head} ${batchSize}x${batch.inputIds.shape[1]}`, (i) => {
    const { loss: value, grads } = lossAndGrads(model, () => {
      if (head === "pretraining") {
        const { loss, mlm, nsp } = pretrainingLoss(model, batch, { training: true, seed: i });
        mlm.dispose();
        nsp.dispose();
        return loss;
      }
      return softmaxCrossEntropy(model.forward(batch, { training: true, seed: i }).logits!, labels);
    });
    opt.applyGradients(grads);
    value.dispose();
  });
  model.dispose();
}
