/**
 * Where a real `train` run's memory goes: runs lib/training/train.ts's `train()` on prepared features (as
 * `deno task bert train --config tiny` does) and prints, at each stage and every few updates, the process RSS and
 * its high-water mark, V8's heap, ArrayBuffer memory outside the heap, the bytes tfjs's tensors hold, and the bytes
 * the blas backend's array pool keeps for reuse.
 *
 *   deno run -A tests/bench/train_memory.ts --features outputs/<run>/features [--steps 40] [--eval-steps 20]
 *     [--save-steps 20] [--config tiny] [--every 5] [--batch-size 32] [--eval-batch-size 64]
 *
 * BERT_POOL_MB (the pool's cap) and BERT_BACKEND apply as usual.
 * @module
 */
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { loadFeatures } from "../../lib/data/features.ts";
import { poolStats } from "../../lib/backends/blas/pool.ts";
import { BertModel, configFromJson } from "../../lib/model/model.ts";
import { train } from "../../lib/training/train.ts";
import { classificationTask } from "../../lib/tasks/classification/task.ts";

const args: Record<string, string> = {
  steps: "40",
  "eval-steps": "20",
  "save-steps": "20",
  config: "tiny",
  every: "5",
  "batch-size": "32",
  "eval-batch-size": "64",
  output: "outputs/bench/train_memory",
};
for (let i = 0; i < Deno.args.length; i += 2) {
  const flag = Deno.args[i];
  if (!flag.startsWith("--") || Deno.args[i + 1] === undefined) {
    console.error(`train_memory.ts: expected --flag value pairs, got ${JSON.stringify(flag)}`);
    Deno.exit(2);
  }
  args[flag.slice(2)] = Deno.args[i + 1];
}
if (!args.features) {
  console.error("usage: train_memory.ts --features outputs/<run>/features [--steps 40] ...");
  Deno.exit(2);
}

const mb = (b: number) => (b / 2 ** 20).toFixed(0).padStart(5);
function hwm(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}
let t0 = performance.now();
function report(stage: string): void {
  const m = Deno.memoryUsage();
  const pool = poolStats().pooledBytes;
  let tensors = 0;
  try {
    tensors = tf.memory().numBytes;
  } catch { /* no backend yet */ }
  console.log(
    `${((performance.now() - t0) / 1000).toFixed(1).padStart(7)} s  rss ${mb(m.rss)}  peak ${mb(hwm())}  heap ${
      mb(m.heapUsed)
    }  external ${mb(m.external)}  tensors ${mb(tensors)}  pool ${mb(pool)}  MB  ${stage}`,
  );
}

t0 = performance.now();
report("start");
const dir = args.features.replace(/\/$/, "");
const trainSet = await loadFeatures(`${dir}/train.safetensors`);
report(`train features loaded (${trainSet.n} x ${trainSet.maxSeqLength})`);
const dev = await loadFeatures(`${dir}/dev.safetensors`);
report(`dev features loaded (${dev.n})`);
await initBackend({});
const shapes: Record<string, [number, number, number, number]> = {
  tiny: [2, 128, 2, 512],
  mini: [4, 256, 4, 1024],
  base: [12, 768, 12, 3072],
};
const [layers, hidden, heads, inter] = shapes[args.config] ?? shapes.tiny;
let maxId = 0;
for (const id of trainSet.inputIds) if (id > maxId) maxId = id;
const config = configFromJson({
  vocab_size: Math.max(30522, maxId + 1),
  hidden_size: hidden,
  num_hidden_layers: layers,
  num_attention_heads: heads,
  intermediate_size: inter,
}, "train_memory");
const model = new BertModel(config, { head: "classification", numLabels: trainSet.metadata.labels.length, seed: 1 });
report("model built");
const vocabPath = trainSet.metadata.vocab_path ?? "../shared/data/models/bert-base-uncased-vocab/vocab.txt";
const every = Number(args.every);
await train({
  model,
  vocabPath,
  task: classificationTask({ train: trainSet, dev }),
  outputDir: args.output,
  overwrite: true,
  quiet: true,
  learningRate: 1e-3,
  batchSize: Number(args["batch-size"]),
  evalBatchSize: Number(args["eval-batch-size"]),
  maxSteps: Number(args.steps),
  evalSteps: Number(args["eval-steps"]),
  saveSteps: Number(args["save-steps"]),
  onProgress: (e) => {
    if (e.phase !== "train" || e.step % every === 0 || e.step === 1) report(`${e.phase} step ${e.step}`);
  },
  onEval: () => report("evaluated"),
});
report("train() returned");
model.dispose();
