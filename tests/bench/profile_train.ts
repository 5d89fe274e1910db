/**
 * Kernel profile of BertModel training steps on the `blas` backend (lib/backends/blas/blas_backend.ts's
 * `setKernelProfiling`): time per kernel, optionally per input shape, over a few steps.
 *
 * Usage: deno run -A tests/bench/profile_train.ts [tiny|mini|base] [steps] [--by-shape] [--threads N] [--infer] [--cls]
 *   [--batch B] [--seq F]
 * (`--infer`: forward passes without dropout instead of training steps; `--cls`: with the last layer at [CLS] only,
 * as `evaluate` classifies; `--batch`/`--seq`: another batch shape than the bench's, e.g. an SST-2 dev batch of
 * 64 x 27 tokens)
 */
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { buildModel, randomBatch, SHAPES } from "../../lib/bench/bench.ts";
import { softmaxCrossEntropy } from "../../lib/model/model.ts";
import { AdamW } from "../../lib/training/optim.ts";
import { setKernelProfiling } from "../../lib/backends/blas/blas_backend.ts";
import { lossAndGrads } from "../../lib/training/step.ts";

const flag = (name: string) => {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : undefined;
};
const valued = new Set(["--threads", "--batch", "--seq"].map((f) => Deno.args.indexOf(f) + 1).filter((i) => i > 0));
const args = Deno.args.filter((a, i) => !a.startsWith("--") && !valued.has(i));
const byShape = Deno.args.includes("--by-shape");
const threads = flag("--threads");
const base = SHAPES[args[0] ?? "tiny"];
const shape = { ...base, batch: flag("--batch") ?? base.batch, seqLength: flag("--seq") ?? base.seqLength };
const steps = Number(args[1] ?? 3);
await initBackend({ backend: "blas", threads, quiet: true });
const model = await buildModel(shape);
const opt = new AdamW(model.params);
const batch = randomBatch(shape);
const infer = Deno.args.includes("--infer");
const clsOnly = Deno.args.includes("--cls");
const step = (i: number) => {
  if (infer) {
    const logits = tf.tidy(() => model.forward(batch, { training: false, clsOnly }).logits!);
    const loss = logits.dataSync()[0];
    logits.dispose();
    return { loss, optMs: 0 };
  }
  const { loss: value, grads } = lossAndGrads(
    model,
    () => softmaxCrossEntropy(model.forward(batch, { training: true, seed: i }).logits!, batch.labels),
  );
  const t0 = performance.now();
  opt.applyGradients(grads);
  const optMs = performance.now() - t0;
  const loss = value.dataSync()[0];
  value.dispose();
  return { loss, optMs };
};
step(0);
step(1);
setKernelProfiling(true, { byShape });
const times: number[] = [];
/**
 * Minor page faults of this process so far (/proc/self/stat's 10th field; 0 where it cannot be read): fresh pages
 * faulted in, e.g. when a step's arrays outgrow the blas pool (BENCHMARKS.md, 2026-12-07).
 */
function minorFaults(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ")[7]);
  } catch {
    return 0;
  }
}
for (let i = 0; i < steps; i++) {
  const f0 = minorFaults();
  const t0 = performance.now();
  const { loss, optMs } = step(i + 2);
  times.push(performance.now() - t0);
  const faults = minorFaults() - f0;
  console.log(
    `step ${i}: ${times[i].toFixed(0)} ms (optimizer ${optMs.toFixed(0)} ms), loss ${
      loss.toFixed(6)
    }, ${faults} minor faults`,
  );
}
const prof = [...setKernelProfiling(false)].sort((a, b) => b[1].ms - a[1].ms);
const total = prof.reduce((s, [, t]) => s + t.ms, 0);
console.log(`kernels: ${(total / steps).toFixed(0)} ms/step of ${(times.reduce((a, b) => a + b) / steps).toFixed(0)}`);
for (const [name, t] of prof.slice(0, 40)) {
  console.log(
    `${(t.ms / steps).toFixed(1).padStart(8)} ms  ${(100 * t.ms / total).toFixed(1).padStart(5)}%  ${
      String(t.calls / steps).padStart(6)
    } calls  ${name}`,
  );
}
console.log(`tensors alive: ${tf.memory().numTensors}`);
