/**
 * Evaluation throughput against PyTorch on identical batches (issue 16):
 *
 * - SST-2 dev (the 872 sentences, max length 128, bert-base-uncased vocab), classification head, batch 64 (Tiny) /
 *   32 (Base): examples/s;
 * - SQuAD v1.1 dev windows (384 tokens, doc stride 128, the project's feature conversion; the first `--squad-windows`
 *   windows), question-answering head, batch 32: windows/s.
 *
 * Each task runs on two sets of batches, both on tfjs and on PyTorch (tests/bench/pytorch_eval.py):
 *
 * - `sorted`: rows ordered by unpadded length, each batch trimmed to its longest row (lib/eval/evaluate.ts's
 *   `lengthOrder` and `featureBatch`). This is the project's evaluation path: `evaluateFeatures` (as the `evaluate`
 *   command runs it) for SST-2, `squadLogits` (as `squad evaluate` runs it) for SQuAD.
 * - `file`: file order, every batch padded to the full length (Google's run_classifier / run_squad): for SQuAD
 *   `squadLogits` with `sortByLength: false`, for SST-2 a direct `model.forward` loop.
 *
 * The tfjs side writes every batch (int32 ids, type ids, mask, little-endian) with a JSON header, the model's
 * weights (safetensors, Hugging Face names) and its logits on the first batch of each set to a temp folder;
 * PyTorch (best of `--torch-threads`, one process per thread count, each with `pytorchEnv`'s setting for it) loads
 * the same weights, runs the same batches, and reports its largest difference from tfjs's first-batch logits. Random weights, same config on both sides.
 *
 * Usage: deno task bench:eval [--shapes tiny,base] [--tasks sst2,squad] [--sst2-limit 872]
 *   [--squad-windows tiny:2000,base:128] [--file-batches base:3] [--rounds tiny:3,base:1]
 *   [--torch-threads 1,2] [--python /usr/bin/python3] [--no-pytorch] [--keep DIR]
 *
 * `--file-batches`: the padded file-order sets stop after this many batches (every padded batch costs the same, so
 * a prefix gives the whole set's rate; BERT-Base at 384 tokens runs at about a window a second on 2 cores).
 * `--rounds`: each set is timed this many times (the median is reported), on both engines.
 * @module
 */
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { cpuVectorExtensions, machineLines, measureSgemm, SHAPES } from "../../lib/bench/bench.ts";
import { pytorchEnv, pytorchSettingsLine } from "../../lib/bench/pytorch_env.ts";
import { getTask } from "../../lib/data/tasks.ts";
import { convertExamples, type FeatureSet } from "../../lib/data/features.ts";
import {
  disposeBatch,
  evaluateFeatures,
  type FeatureBatch,
  featureBatch,
  lengthOrder,
} from "../../lib/eval/evaluate.ts";
import { modelToTensors } from "../../lib/model/checkpoint.ts";
import { BertModel, configFromJson, type HeadKind } from "../../lib/model/model.ts";
import { writeSafetensors } from "../../lib/io/safetensors.ts";
import { readSquad, type WindowLogits } from "../../lib/tasks/squad/squad.ts";
import { convertSquadExamples, type SquadFeatures } from "../../lib/tasks/squad/features.ts";
import { disposeSquadBatch, type SquadBatch, squadBatch, squadLogits } from "../../lib/tasks/squad/train.ts";
import { FullTokenizer } from "../../lib/text/tokenizer.ts";
import { HAVE_SHARED, SHARED } from "../shared.ts";

const flag = (name: string, dflt: string) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : dflt;
};
const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);
const shapes = list(flag("shapes", "tiny,base"));
const tasks = list(flag("tasks", "sst2,squad"));
const sst2Limit = Number(flag("sst2-limit", "872"));
/** `tiny:2000,base:128` as `{ tiny: 2000, base: 128 }`. */
const perShape = (s: string): Record<string, number> =>
  Object.fromEntries(list(s).map((x) => x.split(":")).map(([k, v]) => [k, Number(v)]));
const squadWindows = perShape(flag("squad-windows", "tiny:2000,base:128"));
const fileBatches = perShape(flag("file-batches", "base:3"));
const rounds = perShape(flag("rounds", "tiny:3,base:1"));
const torchThreads = flag("torch-threads", "1,2");
const python = flag("python", "/usr/bin/python3");
const runPytorch = !Deno.args.includes("--no-pytorch");
const keep = flag("keep", "");

if (!HAVE_SHARED) {
  console.warn(`eval_throughput: ${SHARED} is absent; nothing to benchmark`);
  Deno.exit(0);
}
for (const s of shapes) {
  if (!SHAPES[s]) throw new Error(`--shapes: unknown shape "${s}" (expected ${Object.keys(SHAPES).join(", ")})`);
  if (tasks.includes("squad") && !(squadWindows[s] > 0)) {
    throw new Error(`--squad-windows has no count for "${s}"; give e.g. --squad-windows ${s}:256`);
  }
}

/** One batch: its rows (indices into the features) and its column count. */
interface Batch {
  rows: Int32Array;
  seq: number;
}

/** A set of batches over the same rows. */
interface BatchSet {
  name: "sorted" | "file";
  /** How the batches were made, for the table. */
  label: string;
  batches: Batch[];
}

/** One timed tfjs run. */
interface Row {
  task: string;
  shape: string;
  engine: string;
  set: BatchSet;
  items: number;
  seconds: number;
}

const info = await initBackend({ quiet: true });
const sgemm = await measureSgemm({ reps: 3 });
const header = [
  ...machineLines(sgemm, cpuVectorExtensions()),
  `tfjs backend: ${info.description}`,
  `load average (start): ${loadAverage()}`,
  ...(runPytorch ? [pytorchSettingsLine()] : []),
];
for (const line of header) console.log(line);

const dir = keep || await Deno.makeTempDir({ prefix: "eval_throughput_" });
const tokenizer = await FullTokenizer.fromVocabFile(`${SHARED}/data/models/bert-base-uncased-vocab/vocab.txt`, {
  lowerCase: true,
});
const rows: Row[] = [];
const runs: string[] = [];

if (tasks.includes("sst2")) {
  const dev = await getTask("sst2").read(`${SHARED}/data/glue/SST-2/dev.tsv`);
  const dataset = { ...dev, examples: dev.examples.slice(0, sst2Limit) };
  const features = await convertExamples(dataset, tokenizer, { maxSeqLength: 128, task: "sst2" });
  for (const shape of shapes) {
    const batchSize = shape === "tiny" ? 64 : 32;
    const sets = [sortedSet(features, batchSize), fileSet(features.n, batchSize, features.maxSeqLength, shape)];
    const model = newModel(shape, "classification");
    const runDir = `${dir}/sst2-${shape}`;
    await Deno.mkdir(runDir, { recursive: true });
    const firstLogits: Record<string, Float32Array> = {};
    try {
      for (const set of sets) {
        const write = (b: Batch) => tensorsOf(featureBatch(features, b.rows, { trimPadding: set.name === "sorted" }));
        await writeSet(`${runDir}/${set.name}.i32`, set, write);
      }
      warmUp(model, featureBatch(features, sets[0].batches[0].rows));
      // sorted: the project's evaluation path (what `evaluate` runs).
      const [ms, { inference }] = await timed(shape, () => evaluateFeatures(model, features, { batchSize }));
      rows.push(row("sst2", shape, "tfjs: evaluateFeatures", sets[0], ms));
      const first = sets[0].batches[0].rows;
      firstLogits.sorted = new Float32Array(first.length * 2);
      first.forEach((r, j) => firstLogits.sorted.set(inference.logits.subarray(r * 2, r * 2 + 2), j * 2));
      // file: file order, padded to 128, straight through model.forward.
      warmUp(model, featureBatch(features, sets[1].batches[0].rows, { trimPadding: false }));
      const [fileMs, fileLogits] = await timed(
        shape,
        () => forwardLoop(model, sets[1], (b) => featureBatch(features, b.rows, { trimPadding: false })),
      );
      firstLogits.file = fileLogits;
      rows.push(row("sst2", shape, "tfjs: model.forward", sets[1], fileMs));
      await writeRun(runDir, { task: "sst2", shape, head: "classification", sets, firstLogits, model });
      runs.push(`sst2-${shape}`);
    } finally {
      model.dispose();
    }
  }
}

if (tasks.includes("squad")) {
  const dev = await readSquad(`${SHARED}/data/squad-v1.1/dev-v1.1.json`);
  const most = Math.max(...shapes.map((s) => squadWindows[s]));
  const dataset = { ...dev, examples: dev.examples.slice(0, most) }; // every question makes at least one window
  const all = await convertSquadExamples(dataset, tokenizer, { maxSeqLength: 384, docStride: 128, maxQueryLength: 64 });
  for (const shape of shapes) {
    const n = Math.min(squadWindows[shape], all.n);
    const features: SquadFeatures = { ...all, n };
    const rowsView = asFeatureSet(features);
    const sets = [sortedSet(rowsView, 32), fileSet(n, 32, features.maxSeqLength, shape)];
    const fileRows = sets[1].batches.reduce((a, b) => a + b.rows.length, 0);
    const model = newModel(shape, "question-answering");
    const runDir = `${dir}/squad-${shape}`;
    await Deno.mkdir(runDir, { recursive: true });
    const firstLogits: Record<string, Float32Array> = {};
    try {
      await writeSet(`${runDir}/sorted.i32`, sets[0], (b) => tensorsOf(featureBatch(rowsView, b.rows)));
      await writeSet(`${runDir}/file.i32`, sets[1], (b) => tensorsOf(squadBatch(features, b.rows)));
      warmUp(model, squadBatch(features, sets[1].batches[0].rows));
      // file: run_squad.py's batches (squadLogits with sortByLength false).
      const [ms, logits] = await timed(
        shape,
        () => squadLogits(model, { ...features, n: fileRows }, { batchSize: 32, sortByLength: false }),
      );
      rows.push(row("squad", shape, "tfjs: squadLogits, unsorted", sets[1], ms));
      firstLogits.file = firstBatchLogits(logits, sets[1].batches[0]); // [2, rows, 384]
      // sorted: the project's SQuAD path (what `squad evaluate` runs): the same batches as sortedSet's.
      warmUp(model, featureBatch(rowsView, sets[0].batches[0].rows));
      const [sortedMs, sortedLogits] = await timed(shape, () => squadLogits(model, features, { batchSize: 32 }));
      firstLogits.sorted = firstBatchLogits(sortedLogits, sets[0].batches[0]); // [2, rows, seq]
      rows.push(row("squad", shape, "tfjs: squadLogits", sets[0], sortedMs));
      await writeRun(runDir, { task: "squad", shape, head: "question-answering", sets, firstLogits, model });
      runs.push(`squad-${shape}`);
    } finally {
      model.dispose();
    }
  }
}

/** PyTorch's rows and agreement, keyed `task/shape/set`. */
const torch = new Map<string, Record<string, unknown>>();
if (runPytorch) {
  await Deno.writeTextFile(`${dir}/index.json`, JSON.stringify({ runs }));
  for (const threads of torchThreads.split(",").map(Number)) {
    const out = await new Deno.Command(python, {
      args: ["tests/bench/pytorch_eval.py", dir, "--threads", String(threads)],
      stdout: "piped",
      stderr: "inherit",
      env: pytorchEnv(threads), // as `deno task bench` runs PyTorch: each thread count with its own setting
      clearEnv: true,
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    for (const line of text.split("\n")) {
      if (!line.startsWith("{")) {
        if (line.trim()) console.log(line);
        continue;
      }
      const r = JSON.parse(line);
      if (r.error) throw new Error(`pytorch_eval.py: ${r.error}`);
      const key = `${r.task}/${r.shape}/${r.set}`, seen = torch.get(key);
      if (seen) (seen.per_threads as unknown[]).push(...r.per_threads);
      else torch.set(key, r);
    }
    if (!out.success) throw new Error(`pytorch_eval.py --threads ${threads} exited with code ${out.code}`);
  }
}
console.log();
for (const line of header.slice(0, 3)) console.log(line);
console.log(`load average (end): ${loadAverage()}`);
const table: string[][] = [["task", "shape", "engine", "batches", "seconds", "items/s"]];
const agreement: string[] = [];
for (const r of rows) {
  const items = r.task === "sst2" ? "examples" : "windows";
  const what = `${r.task === "sst2" ? "SST-2 dev" : "SQuAD dev"} (${r.items} ${items})`;
  const shapeCell = `${r.shape} b${r.set.batches[0].rows.length}`;
  table.push([what, shapeCell, r.engine, r.set.label, r.seconds.toFixed(2), (r.items / r.seconds).toFixed(1)]);
  const p = torch.get(`${r.task}/${r.shape}/${r.set.name}`);
  if (!p) continue;
  const perThreads = p.per_threads as { threads: number; seconds: number }[];
  const best = perThreads.reduce((a, b) => (b.seconds < a.seconds ? b : a));
  const others = perThreads.filter((t) => t !== best).map((t) =>
    `${t.threads} thr ${(r.items / t.seconds).toFixed(1)}/s`
  );
  const engine = `pytorch ${p.torch}, ${best.threads} thr${others.length ? ` (${others.join("; ")})` : ""}`;
  table.push([what, shapeCell, engine, r.set.label, best.seconds.toFixed(2), (r.items / best.seconds).toFixed(1)]);
  agreement.push(
    `${r.task} ${r.shape} ${r.set.name}: max |logit difference| on the first batch ` +
      `(${p.first_batch_shape}) ${Number(p.max_abs_diff).toExponential(2)}`,
  );
}
console.log(formatTable(table));
if (agreement.length) console.log(`tfjs vs PyTorch, same weights and inputs:\n  ${agreement.join("\n  ")}`);
if (!keep) await Deno.remove(dir, { recursive: true });

// ---------------------------------------------------------------------------------------------------------------

function newModel(shape: string, head: HeadKind): BertModel {
  const s = SHAPES[shape];
  const config = configFromJson({
    vocab_size: s.vocabSize,
    hidden_size: s.hidden,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    intermediate_size: s.intermediate,
    max_position_embeddings: 512,
    type_vocab_size: 2,
  }, `eval_throughput ${shape}`);
  return new BertModel(config, { head, numLabels: 2, seed: 0 });
}

/** The rows of SQuAD windows as the FeatureSet fields featureBatch and lengthOrder read (no labels). */
function asFeatureSet(f: SquadFeatures): FeatureSet {
  const { n, maxSeqLength, inputIds, tokenTypeIds, attentionMask } = f;
  return { n, maxSeqLength, inputIds, tokenTypeIds, attentionMask, labels: new Int32Array(n).fill(-1) } as FeatureSet;
}

/** Length-sorted batches, each trimmed to its longest row: what runInference does. */
function sortedSet(features: FeatureSet, batchSize: number): BatchSet {
  const order = lengthOrder(features);
  const batches: Batch[] = [];
  for (let start = 0; start < features.n; start += batchSize) {
    const rows = order.slice(start, Math.min(features.n, start + batchSize));
    const b = featureBatch(features, rows);
    batches.push({ rows, seq: b.seqLength });
    disposeBatch(b);
  }
  const mean = batches.reduce((a, b) => a + b.seq * b.rows.length, 0) / features.n;
  return { name: "sorted", label: `length-sorted, trimmed (mean ${mean.toFixed(0)} tokens)`, batches };
}

/**
 * File-order batches padded to the full length; only the first `--file-batches` of them for `shape` (every padded
 * batch of a size costs the same, whatever its rows hold, so a prefix measures the rate of the whole set).
 */
function fileSet(n: number, batchSize: number, seq: number, shape: string): BatchSet {
  const batches: Batch[] = [];
  const end = Math.min(n, (fileBatches[shape] || Infinity) * batchSize);
  for (let start = 0; start < end; start += batchSize) {
    batches.push({ rows: Int32Array.from({ length: Math.min(batchSize, end - start) }, (_, i) => start + i), seq });
  }
  return { name: "file", label: `file order, padded to ${seq}`, batches };
}

/** A batch from featureBatch or squadBatch. */
type Inputs = FeatureBatch | SquadBatch;

/** Frees a batch from either builder. */
function release(b: Inputs): void {
  if ("labels" in b) disposeBatch(b);
  else disposeSquadBatch(b);
}

/** The three int32 inputs of a batch (the batch's tensors are disposed). */
function tensorsOf(b: Inputs): Int32Array[] {
  const out = [b.inputIds, b.tokenTypeIds, b.attentionMask].map((t) => t.dataSync() as Int32Array);
  release(b);
  return out;
}

/** Writes every batch of `set` (ids, then type ids, then mask, each `[rows, seq]` little-endian int32). */
async function writeSet(path: string, set: BatchSet, inputs: (b: Batch) => Int32Array[]): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    for (const b of set.batches) {
      const arrays = inputs(b);
      for (const a of arrays) {
        if (a.length !== b.rows.length * b.seq) {
          throw new Error(`${path}: a batch has ${a.length} values, expected ${b.rows.length} x ${b.seq}`);
        }
        const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength); // little-endian on x86 and Arm
        for (let off = 0; off < bytes.length;) off += await file.write(bytes.subarray(off));
      }
    }
  } finally {
    file.close();
  }
}

/** The header PyTorch reads, the weights, and tfjs's first-batch logits of each set. */
async function writeRun(
  runDir: string,
  o: {
    task: string;
    shape: string;
    head: HeadKind;
    sets: BatchSet[];
    firstLogits: Record<string, Float32Array>;
    model: BertModel;
  },
): Promise<void> {
  const s = SHAPES[o.shape];
  await writeSafetensors(`${runDir}/weights.safetensors`, modelToTensors(o.model));
  for (const set of o.sets) {
    const f = o.firstLogits[set.name];
    await Deno.writeFile(`${runDir}/${set.name}.first.f32`, new Uint8Array(f.buffer, f.byteOffset, f.byteLength));
  }
  await Deno.writeTextFile(
    `${runDir}/header.json`,
    JSON.stringify({
      task: o.task,
      shape: o.shape,
      head: o.head,
      config: { layers: s.layers, hidden: s.hidden, heads: s.heads, intermediate: s.intermediate, vocab: s.vocabSize },
      weights: "weights.safetensors",
      rounds: rounds[o.shape] || 1,
      sets: o.sets.map((set) => ({
        name: set.name,
        label: set.label,
        file: `${set.name}.i32`,
        first_logits: `${set.name}.first.f32`,
        batches: set.batches.map((b) => [b.rows.length, b.seq]),
      })),
    }),
  );
}

/** One forward pass, unmeasured (first-call allocations), on a batch that is then disposed. */
function warmUp(model: BertModel, b: Inputs): void {
  tf.tidy(() => {
    const o = model.forward(b);
    (o.logits ?? o.startLogits!).dataSync();
  });
  release(b);
}

/**
 * runInference's loop body over `set` (build the batch, forward without dropout, read the outputs back, dispose),
 * for the sets the project's own paths do not run; returns the first batch's logits (`[rows, 2]`, or start then
 * end logits `[2, rows, seq]`).
 */
async function forwardLoop(
  model: BertModel,
  set: BatchSet,
  makeBatch: (b: Batch) => Inputs,
): Promise<Float32Array> {
  let first: Float32Array | undefined;
  for (const b of set.batches) {
    const batch = makeBatch(b);
    try {
      const outs = tf.tidy(() => {
        const o = model.forward(batch, { training: false, clsOnly: model.head === "classification" }); // as runInference
        return o.logits ? [o.logits] : [o.startLogits!, o.endLogits!];
      });
      const values = await Promise.all(outs.map((t) => t.data() as Promise<Float32Array>));
      first ??= Float32Array.from(values.flatMap((v) => [...v]));
      tf.dispose(outs);
    } finally {
      release(batch);
    }
  }
  return first!;
}

/** The start logits then the end logits of batch `b`'s windows, each cut to the batch's columns: `[2, rows, seq]`. */
function firstBatchLogits(logits: WindowLogits[], b: Batch): Float32Array {
  const pick = (k: "startLogits" | "endLogits") =>
    Array.from(b.rows).flatMap((w) => Array.from(logits[w][k]).slice(0, b.seq));
  return Float32Array.from([...pick("startLogits"), ...pick("endLogits")]);
}

/** Runs `fn` `--rounds` times for `shape`; the median milliseconds and the last result. */
async function timed<T>(shape: string, fn: () => T | Promise<T>): Promise<[number, T]> {
  const times: number[] = [];
  let result: T | undefined;
  for (let r = 0; r < (rounds[shape] || 1); r++) {
    const t0 = performance.now();
    result = await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return [times[Math.floor(times.length / 2)], result!];
}

function row(task: string, shape: string, engine: string, set: BatchSet, ms: number): Row {
  const items = set.batches.reduce((a, b) => a + b.rows.length, 0);
  console.log(
    `${task} ${shape} ${engine} ${set.name}: ${(ms / 1000).toFixed(2)} s, ${(items * 1000 / ms).toFixed(1)}/s`,
  );
  return { task, shape, engine: `${engine} (${info.name})`, set, items, seconds: ms / 1000 };
}

function loadAverage(): string {
  try {
    return Deno.loadavg().map((x) => x.toFixed(2)).join(", ");
  } catch {
    return "unknown";
  }
}

function formatTable(cells: string[][]): string {
  const widths = cells[0].map((_, j) => Math.max(...cells.map((r) => r[j].length)));
  const right = new Set([4, 5]);
  const line = (r: string[]) =>
    r.map((c, j) => (right.has(j) ? c.padStart(widths[j]) : c.padEnd(widths[j]))).join("  ");
  return [line(cells[0]), widths.map((w) => "-".repeat(w)).join("  "), ...cells.slice(1).map(line)].join("\n");
}
