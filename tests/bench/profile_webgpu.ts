/**
 * Where a training step's time goes on a GPU backend (issue 16): wall time of each phase of a BertModel step,
 * each ended by reading one number back (the GPU has finished), and the kernels one step launches (tf.profile).
 *
 * Usage: deno run -A tests/bench/profile_webgpu.ts [--backend webgpu] [--shape tiny|mini|base] [--steps 5]
 *
 * Phases: infer (forward without dropout), forward (with dropout) + loss, forward + loss + gradients (the training
 * step's lossAndGrads, lib/training/step.ts, with autodiff.ts's lean backward; and stock tf.variableGrads), the AdamW
 * update, and the whole step.
 * @module
 */
import { type BackendName, initBackend, tf } from "../../lib/backends/backend.ts";
import { buildModel, randomBatch, SHAPES } from "../../lib/bench/bench.ts";
import { softmaxCrossEntropy } from "../../lib/model/model.ts";
import { AdamW } from "../../lib/training/optim.ts";
import { lossAndGrads } from "../../lib/training/step.ts";

function flag(name: string, fallback: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : fallback;
}
const backend = flag("backend", "webgpu") as BackendName;
const shapeName = flag("shape", "tiny");
const steps = Number(flag("steps", "5"));
await initBackend({ backend, quiet: true });
const shape = SHAPES[shapeName];
const model = await buildModel(shape);
const batch = randomBatch(shape);
const vars = model.variables();
const names = [...model.params.keys()];
const opt = new AdamW(model.params);

/** Waits for the device: reads back the sum of the tensors (a scalar). */
async function barrier(ts: tf.Tensor[]): Promise<void> {
  const s = tf.tidy(() => tf.addN(ts.map((t) => tf.sum(t))));
  await s.data();
  s.dispose();
}
function lossOf(i: number): tf.Scalar {
  return softmaxCrossEntropy(model.forward(batch, { training: true, seed: i }).logits!, batch.labels);
}
function grads(lean: boolean, i: number): { value: tf.Scalar; byName: Map<string, tf.Tensor> } {
  if (lean) {
    const { loss, grads } = lossAndGrads(model, () => lossOf(i));
    return { value: loss, byName: grads };
  }
  const r = tf.variableGrads(() => lossOf(i), vars);
  const byName = new Map<string, tf.Tensor>();
  vars.forEach((v, k) => r.grads[v.name] && byName.set(names[k], r.grads[v.name]));
  return { value: r.value, byName };
}
const phases: Record<string, (i: number) => Promise<void>> = {
  "infer (forward, no dropout)": async () => {
    const l = tf.tidy(() => model.forward(batch, { training: false }).logits!);
    await barrier([l]), l.dispose();
  },
  "forward + loss (dropout)": async (i) => {
    const l = tf.tidy(() => lossOf(i));
    await barrier([l]), l.dispose();
  },
  "forward + loss + grads (lean autodiff)": async (i) => {
    const { value, byName } = grads(true, i);
    await barrier([value, ...byName.values()]);
    tf.dispose([value, ...byName.values()]);
  },
  "forward + loss + grads (tf.variableGrads)": async (i) => {
    const { value, byName } = grads(false, i);
    await barrier([value, ...byName.values()]);
    tf.dispose([value, ...byName.values()]);
  },
  "whole step (lean grads + AdamW)": async (i) => {
    const { value, byName } = grads(true, i);
    opt.applyGradients(byName);
    await barrier([value, vars[0]]);
    value.dispose();
  },
};
console.log(
  `backend ${tf.getBackend()}, shape ${shapeName} (${shape.batch}x${shape.seqLength}), ${steps} steps per phase after 2 warm-up`,
);
for (const [name, run] of Object.entries(phases)) {
  await run(0), await run(1);
  const ms: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    await run(i + 2);
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  console.log(`${name.padEnd(44)} median ${ms[ms.length >> 1].toFixed(1).padStart(8)} ms  min ${ms[0].toFixed(1)}`);
}
// AdamW alone, on gradients made beforehand
{
  const ms: number[] = [];
  for (let i = 0; i < steps; i++) {
    const { value, byName } = grads(true, i);
    await barrier([value, ...byName.values()]);
    value.dispose();
    const t0 = performance.now();
    opt.applyGradients(byName);
    await barrier([vars[0], vars[vars.length - 1]]);
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  console.log(
    `${"AdamW update alone".padEnd(44)} median ${ms[ms.length >> 1].toFixed(1).padStart(8)} ms  min ${
      ms[0].toFixed(1)
    }`,
  );
}
// kernels of one step
const info = await tf.profile(async () => {
  const { value, byName } = grads(true, 99);
  opt.applyGradients(byName);
  await barrier([value]);
  value.dispose();
});
const byKernel = new Map<string, { n: number; ms: number }>();
for (const k of info.kernels) {
  const e = byKernel.get(k.name) ?? { n: 0, ms: 0 };
  e.n++;
  e.ms += typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
  byKernel.set(k.name, e);
}
console.log(
  `one step launches ${info.kernels.length} kernels; newTensors ${info.newTensors}, peakBytes ${info.peakBytes}`,
);
for (const [name, e] of [...byKernel].sort((a, b) => b[1].n - a[1].n).slice(0, 30)) {
  console.log(
    `${String(e.n).padStart(6)} x ${name.padEnd(28)} ${
      e.ms ? e.ms.toFixed(2) + " ms (kernel time as the backend reports it)" : ""
    }`,
  );
}
console.log(`tensors alive: ${tf.memory().numTensors}`);
