/**
 * Benchmarks: BERT training steps (forward + backward + AdamW update), inference throughput, matmul GFLOP/s,
 * and tokenizer + feature conversion throughput, with peak memory, printed as tables.
 *
 * The training and inference benchmarks run lib/model/model.ts's `BertModel` (a classification head) with the
 * training loop's own step (lib/training/step.ts's `lossAndGrads`, lib/training/optim.ts's AdamW).
 * @module
 */
import { tf } from "../backends/backend.ts";
import { AdamW } from "../training/optim.ts";
import { BertModel, configFromJson, softmaxCrossEntropy } from "../model/model.ts";
import { keptLengths } from "../model/packing.ts";
import { lossAndGrads } from "../training/step.ts";
import { clearPool } from "../backends/blas/pool.ts";
import { blasEnvironmentSetHere } from "../backends/blas/blas.ts";
import { dnnlForDense, dnnlStatus } from "../backends/blas/dnnl.ts";
import { envVar } from "../io/env.ts";

/** A benchmark shape: model size and batch. */
export interface BenchShape {
  /** `tiny`, `mini`, `small`, `base`. */
  name: string;
  /** Encoder layers. */
  layers: number;
  /** Hidden size. */
  hidden: number;
  /** Attention heads. */
  heads: number;
  /** Feed-forward size. */
  intermediate: number;
  /** Examples per step. */
  batch: number;
  /** Tokens per example. */
  seqLength: number;
  /** Vocabulary size. */
  vocabSize: number;
}

/** The shapes of the benchmark table (BERT-Tiny/Mini/Small/Base as published by Google, vocab 30522). */
export const SHAPES: Record<string, BenchShape> = {
  tiny: {
    name: "tiny",
    layers: 2,
    hidden: 128,
    heads: 2,
    intermediate: 512,
    batch: 32,
    seqLength: 128,
    vocabSize: 30522,
  },
  mini: {
    name: "mini",
    layers: 4,
    hidden: 256,
    heads: 4,
    intermediate: 1024,
    batch: 32,
    seqLength: 128,
    vocabSize: 30522,
  },
  small: {
    name: "small",
    layers: 4,
    hidden: 512,
    heads: 8,
    intermediate: 2048,
    batch: 16,
    seqLength: 128,
    vocabSize: 30522,
  },
  base: {
    name: "base",
    layers: 12,
    hidden: 768,
    heads: 12,
    intermediate: 3072,
    batch: 8,
    seqLength: 128,
    vocabSize: 30522,
  },
};

/** Inputs of one batch. */
export interface BatchInputs {
  /** `[batch, seq]` int32 token ids. */
  inputIds: tf.Tensor2D;
  /** `[batch, seq]` int32 segment ids. */
  tokenTypeIds: tf.Tensor2D;
  /** `[batch, seq]` int32, 1 = real token. */
  attentionMask: tf.Tensor2D;
  /** `[batch]` int32 class labels. */
  labels: tf.Tensor1D;
}

/** Deterministic random batch: ids in [1000, vocab), masks with a padded tail on every other example. */
export function randomBatch(shape: BenchShape, seed = 1, numLabels = 2): BatchInputs {
  let s = seed >>> 0 || 1;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  const { batch, seqLength } = shape;
  const ids = new Int32Array(batch * seqLength);
  const types = new Int32Array(batch * seqLength);
  const mask = new Int32Array(batch * seqLength);
  const labels = new Int32Array(batch);
  for (let b = 0; b < batch; b++) {
    const len = b % 2 === 0 ? seqLength : Math.max(2, Math.floor(seqLength * (0.5 + 0.5 * next())));
    for (let t = 0; t < seqLength; t++) {
      const i = b * seqLength + t;
      if (t < len) {
        ids[i] = t === 0 ? 101 : t === len - 1 ? 102 : 1000 + Math.floor(next() * (shape.vocabSize - 1000));
        types[i] = t >= len / 2 ? 1 : 0;
        mask[i] = 1;
      }
    }
    labels[b] = Math.floor(next() * numLabels);
  }
  return {
    inputIds: tf.tensor2d(ids, [batch, seqLength], "int32"),
    tokenTypeIds: tf.tensor2d(types, [batch, seqLength], "int32"),
    attentionMask: tf.tensor2d(mask, [batch, seqLength], "int32"),
    labels: tf.tensor1d(labels, "int32"),
  };
}

/**
 * How many of {@linkcode randomBatch}'s `batch * seqLength` token rows classification on `blas` computes, in inference
 * and training (lib/model/packing.ts drops the padding past each example's length rounded up to 4); the bench's GFLOP/s
 * column counts all.
 */
export function keptTokenRows(shape: BenchShape): number {
  return keptLengthsOf(shape).reduce((sum, l) => sum + l, 0);
}

/** The rows of each of {@linkcode randomBatch}'s examples that classification on `blas` computes (lib/model/packing.ts). */
export function keptLengthsOf(shape: BenchShape): number[] {
  const b = randomBatch(shape);
  const lengths = keptLengths(b.attentionMask.dataSync(), shape.batch, shape.seqLength);
  disposeBatch(b);
  return lengths;
}

/** Frees a batch. */
export function disposeBatch(b: BatchInputs): void {
  tf.dispose([b.inputIds, b.tokenTypeIds, b.attentionMask, b.labels]);
}

/**
 * One training step: cross-entropy loss, gradients of every param, AdamW update. Resolves to the loss, read
 * asynchronously (GPU backends such as webgpu under Deno have no synchronous read).
 */
export async function trainStep(
  model: BertModel,
  optimizer: AdamW,
  batch: BatchInputs,
  numLabels = 2,
): Promise<number> {
  // Same loss, gradients and optimiser as `deno task bert train` (lib/training/step.ts, lib/training/optim.ts).
  const { loss, grads } = lossAndGrads(model, () =>
    tf.tidy(() => {
      const { logits } = model.forward(batch, { training: true, clsOnly: true }); // as the classification task does
      if (!logits) throw new Error("the model returned no logits (expected a classification head)");
      if (logits.shape[1] !== numLabels) throw new Error(`expected ${numLabels} logits, got ${logits.shape[1]}`);
      return softmaxCrossEntropy(logits, batch.labels);
    }));
  optimizer.applyGradients(grads);
  const value = (await loss.data())[0];
  loss.dispose();
  return value;
}

// ---- measurement ---------------------------------------------------------------------------------

/** One row of a benchmark table. */
export interface BenchRow {
  /** `train`, `infer`, `matmul`, `tokenizer`. */
  what: string;
  /** Engine and backend, e.g. `tfjs blas` or `pytorch 1.13`. */
  engine: string;
  /** Shape name or matmul description. */
  shape: string;
  /** Threads used by the compute library, when known. */
  threads?: number;
  /** Median milliseconds per step (or per call). */
  msPerStep: number;
  /** Fastest step. */
  minMs: number;
  /** Examples (or texts) per second at the median. */
  examplesPerS?: number;
  /**
   * GFLOP/s: of the product (matmul rows), or of a step's matrix products ({@linkcode matmulFlops}, train/infer rows,
   * counted on the padded batch, as PyTorch runs them).
   */
  gflops?: number;
  /**
   * GFLOP/s of the products a step computes, where fewer than the padded batch's: tfjs `blas` rows, which drop the
   * padding ({@linkcode keptLengthsOf}); the share of sgemm ({@linkcode sgemmShareLines}) reads this one.
   */
  workGflops?: number;
  /** Peak resident set size of the process (getrusage's high-water mark where available), MB. */
  peakRssMb?: number;
  /** CPU time over wall time during the measured steps (200 = two cores busy), where getrusage is available. */
  cpuPct?: number;
  /** Peak bytes held by live tensors (tf.memory().numBytes), MB. */
  peakTensorMb?: number;
}

/** The CPU model and core count (from /proc/cpuinfo where readable). */
export function machineInfo(): { cpu: string; cores: number } {
  const text = readCpuinfo();
  const cpu = (text && /^model name\s*:\s*(.+)$/m.exec(text)?.[1]?.trim()) || `${Deno.build.arch} CPU (model unknown)`;
  return { cpu, cores: navigator.hardwareConcurrency ?? 1 };
}

/**
 * /proc/cpuinfo's text, or undefined. Deno 2.9 opens /proc files only under --allow-all, so where plain reading is
 * refused this reads it through libc with the FFI permission the bench already has (Linux only).
 */
function readCpuinfo(): string | undefined {
  try {
    return Deno.readTextFileSync("/proc/cpuinfo");
  } catch { /* not Linux, or not permitted: try libc */ }
  const c = libc();
  if (!c) return undefined;
  const fd = c.open(new TextEncoder().encode("/proc/cpuinfo\0"), 0);
  if (fd < 0) return undefined;
  const buf = new Uint8Array(65536);
  const n = Number(c.read(fd, buf, BigInt(buf.length)));
  c.close(fd);
  return n > 0 ? new TextDecoder().decode(buf.subarray(0, n)) : undefined;
}

/** Vector-extension flags worth showing, in this order (x86 `flags`, Arm `Features`). */
const VECTOR_FLAGS = [
  "sse4_2",
  "avx",
  "avx2",
  "fma",
  "f16c",
  "avx_vnni",
  "avx512f",
  "avx512bw",
  "avx512cd",
  "avx512dq",
  "avx512vl",
  "avx512ifma",
  "avx512vbmi",
  "avx512_vbmi2",
  "avx512_vnni",
  "avx512_bf16",
  "avx512_fp16",
  "avx512_bitalg",
  "avx512_vpopcntdq",
  "amx_tile",
  "amx_bf16",
  "amx_int8",
  "asimd",
  "asimdhp",
  "asimddp",
  "i8mm",
  "bf16",
  "sve",
  "sve2",
];

/**
 * The CPU's vector extensions (AVX2, FMA, the AVX-512 subsets, AMX; Arm's ASIMD and SVE) from /proc/cpuinfo's
 * first `flags`/`Features` line, in a fixed order; empty where /proc/cpuinfo cannot be read (not Linux).
 */
export function cpuVectorExtensions(cpuinfo: string | undefined = readCpuinfo()): string[] {
  const line = cpuinfo && /^(?:flags|Features)\s*:\s*(.*)$/m.exec(cpuinfo)?.[1];
  if (!line) return [];
  const have = new Set(line.trim().split(/\s+/));
  return VECTOR_FLAGS.filter((f) => have.has(f));
}

/** One {@linkcode measureSgemm} result. */
export interface SgemmRate {
  /** The library, e.g. `OpenBLAS`, with its build configuration where it reports one. */
  library: string;
  /** The product measured, e.g. `[4096x768] x [768x768]`. */
  product: string;
  /** Threads the library used, when it can say. */
  threads?: number;
  /** Median GFLOP/s. */
  gflops: number;
  /** Fastest call's GFLOP/s. */
  bestGflops: number;
  /**
   * oneDNN's `sgemm` on the same product, where the `blas` backend runs its dense products there (libdnnl2 installed,
   * `BERT_NO_DNNL_SGEMM` not 1): a training row's GFLOP/s is read against the faster of the two.
   */
  dnnl?: { isa: string; gflops: number; bestGflops: number };
}

/**
 * The machine's `sgemm` rate: CBLAS `sgemm` called directly (lib/backends/blas/blas.ts, outside tfjs) on BERT-Base's
 * dense-layer product `[m x k] x [k x n]` (default 4096 x 768 x 768, 4.8 GFLOP per call), median of `reps` calls after
 * five warm-ups; and oneDNN's `sgemm` on the same product where the `blas` backend runs its dense products there. The
 * reference for the training rows' GFLOP/s ({@linkcode sgemmShareLines}). Undefined where no BLAS library loads.
 */
export async function measureSgemm(
  o: { m?: number; n?: number; k?: number; reps?: number; threads?: number } = {},
): Promise<SgemmRate | undefined> {
  const { loadBlas } = await import("../backends/blas/blas.ts");
  const blas = loadBlas({ threads: o.threads });
  if (!blas) return undefined;
  const m = o.m ?? 4096, n = o.n ?? 768, k = o.k ?? 768;
  const a = new Float32Array(m * k), b = new Float32Array(k * n), c = new Float32Array(m * n);
  for (let i = 0; i < a.length; i++) a[i] = ((i * 7919) % 1000) / 1000 - 0.5;
  for (let i = 0; i < b.length; i++) b[i] = ((i * 104729) % 1000) / 1000 - 0.5;
  const flops = 2 * m * n * k;
  const rate = (call: () => void) => {
    const times: number[] = [];
    // Five warm-up calls: oneDNN's first calls on a large product ran up to 1.4x slower than its later ones.
    for (let r = 0; r < (o.reps ?? 7) + 5; r++) {
      const t0 = performance.now();
      call();
      if (r > 4) times.push(performance.now() - t0);
    }
    return { gflops: flops / median(times) / 1e6, bestGflops: flops / Math.min(...times) / 1e6 };
  };
  const threads = blas.getThreads();
  const own = rate(() => blas.sgemm({ m, n, k, a, b, c }));
  const dnnl = dnnlForDense();
  let dnnlRate: SgemmRate["dnnl"];
  if (dnnl) {
    dnnl.setThreads(threads ?? 1);
    dnnlRate = { isa: dnnl.isa, ...rate(() => dnnl.sgemm({ m, n, k, a, b, c })) };
  }
  const config = blas.config?.replace(/\s+/g, " ");
  return {
    library: config ? `${blas.vendor} (${config})` : blas.vendor,
    product: `[${m}x${k}] x [${k}x${n}]`,
    threads,
    ...own,
    dnnl: dnnlRate,
  };
}

/**
 * Multiply-add FLOPs in the matrix products of one step of `shape` (dense layers, attention scores and context,
 * pooler, classifier; embeddings and elementwise work excluded): the forward pass for `infer`, three times it for
 * `train` (forward, then the gradients of both operands). BERT-Base at 8x128 trains at ~0.51 TFLOP per step (~0.54
 * with the last layer at every token, as PyTorch runs it: `clsTraining` false).
 */
export function matmulFlops(
  shape: BenchShape,
  what: "train" | "infer" | "infer-cls",
  numLabels = 2,
  clsTraining = true,
  lengths?: number[],
): number {
  const { layers, hidden: h, intermediate: f, batch, seqLength: s } = shape;
  // The token rows of each example: all s, or (`lengths`) those a packed run computes (lib/model/packing.ts).
  const rows = lengths ?? new Array<number>(batch).fill(s);
  const tokens = rows.reduce((sum, l) => sum + l, 0), squares = rows.reduce((sum, l) => sum + l * l, 0);
  const perLayer = 2 * tokens * (4 * h * h + 2 * h * f) + 2 * 2 * squares * h;
  const forward = layers * perLayer + 2 * batch * (h * h + h * numLabels);
  // infer-cls (`forward({ clsOnly })`): the last layer's query, attention, output projection and feed-forward at
  // [CLS] only (the blas backend's path; others compute that layer's query and attention at every token).
  const skipped = what === "infer-cls" && layers > 0
    ? 2 * (tokens - batch) * (2 * h * h + 2 * h * f) + 2 * 2 * (squares - tokens) * h
    : 0;
  // train (`forward({ training, clsOnly })`, as the classification task runs it): the last layer's output projection
  // and feed-forward at [CLS] only; its query and attention at every token.
  const trainSkipped = layers > 0 && clsTraining ? 2 * (tokens - batch) * (h * h + 2 * h * f) : 0;
  return what === "train" ? 3 * (forward - trainSkipped) : forward - skipped;
}

/**
 * The lines printed beside every bench table so that figures from different machines can be read: the CPU, its
 * vector extensions, the measured sgemm rate, and whether the `blas` backend's GELU runs on oneDNN.
 */
export function machineLines(sgemm: SgemmRate | undefined, ext: string[] = cpuVectorExtensions()): string[] {
  const { cpu, cores } = machineInfo();
  const coretype = envVar("OPENBLAS_CORETYPE");
  // OPENBLAS_CORETYPE overrides OpenBLAS's kernel choice (e.g. Haswell's AVX2 kernels on an AVX-512 CPU): say so.
  const forced =
    (coretype ? `; OPENBLAS_CORETYPE=${coretype} from the environment overrides OpenBLAS's own choice` : "") +
    Object.entries(blasEnvironmentSetHere()).map(([k, v]) => `; ${k}=${v} set by the blas backend`).join("");
  return [
    `machine: ${cpu}, ${cores} cores; Deno ${Deno.version.deno}, V8 ${Deno.version.v8}`,
    `cpu vector extensions: ${ext.length ? ext.join(" ") : "unknown (/proc/cpuinfo not readable)"}`,
    sgemm
      ? `sgemm: ${sgemm.gflops.toFixed(1)} GFLOP/s (best ${sgemm.bestGflops.toFixed(1)}), ${sgemm.product}, ` +
        `${sgemm.threads ?? "?"} threads, ${sgemm.library}${forced}`
      : "sgemm: not measured (no CBLAS library loads: apt-get install libopenblas0-pthread, and --allow-ffi)",
    ...(sgemm?.dnnl
      ? [
        `sgemm (oneDNN ${sgemm.dnnl.isa}, where the blas backend runs dense products): ${
          sgemm.dnnl.gflops.toFixed(1)
        } GFLOP/s (best ${sgemm.dnnl.bestGflops.toFixed(1)}), same product and threads`,
      ]
      : []),
    `gelu: ${dnnlStatus()}`,
    ...isaCaps(),
    ...mixedCaps(ext, coretype),
  ];
}

/** OpenBLAS core types whose kernels stop at AVX2 (or below). */
const PRE_AVX512_CORETYPES =
  /^(haswell|zen|sandybridge|nehalem|core2|prescott|atom|barcelona|bulldozer|piledriver|steamroller|excavator)$/i;

/**
 * A warning when `OPENBLAS_CORETYPE` (`coretype`) holds OpenBLAS (PyTorch's `sgemm` on Debian) to AVX2 kernels on an AVX-512 CPU
 * while oneDNN (the blas backend's dense products) is not capped: the two engines then run different vector widths
 * and the comparison is not like for like. On 2026-12-07's Zen 5 VM, whose image exports `OPENBLAS_CORETYPE=Haswell`,
 * it made PyTorch's Base inference 1.7x slower (BENCHMARKS.md).
 */
function mixedCaps(ext: string[], coretype: string | undefined): string[] {
  if (!coretype || !PRE_AVX512_CORETYPES.test(coretype) || !ext.includes("avx512f")) return [];
  if (envVar("DNNL_MAX_CPU_ISA")?.toUpperCase().startsWith("AVX2")) return [];
  return [
    `warning: OPENBLAS_CORETYPE=${coretype} holds OpenBLAS (and PyTorch's products) to AVX2 on this AVX-512 CPU while ` +
    "oneDNN is not capped: not like for like. Unset it, or cap both (DNNL_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2)",
  ];
}

/** Environment variables that cap the code a library runs below what the CPU can do, as one line (none when unset). */
function isaCaps(): string[] {
  const caps = [
    ["DNNL_MAX_CPU_ISA", "oneDNN, PyTorch's included"],
    ["ATEN_CPU_CAPABILITY", "PyTorch's own kernels"],
  ].filter(([name]) => envVar(name) !== undefined).map(([name, who]) => `${name}=${envVar(name)} (${who})`);
  return caps.length ? [`instruction sets capped by the environment: ${caps.join(", ")}`] : [];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * Tracks peak RSS and tensor bytes. The RSS is the process's high-water mark from `getrusage` (through FFI on
 * Linux: the true peak, the figure PyTorch's script reads); where that cannot be called, the RSS at the points it
 * is sampled (between steps), which can miss a peak inside a step.
 */
export class PeakMemory {
  rss = 0;
  tensors = 0;
  sample(): void {
    this.rss = Math.max(this.rss, maxRss() ?? 0);
    try {
      this.rss = Math.max(this.rss, Deno.memoryUsage().rss);
    } catch { /* no permission */ }
    this.tensors = Math.max(this.tensors, tf.memory().numBytes);
  }
}

const LIBC_SYMBOLS = {
  getrusage: { parameters: ["i32", "buffer"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
} as const;

let libcLib: Deno.DynamicLibrary<typeof LIBC_SYMBOLS> | null | undefined;

/** glibc through FFI (opened once, Linux only), or undefined without --allow-ffi or glibc. */
function libc(): Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"] | undefined {
  if (libcLib === undefined) {
    libcLib = null;
    try {
      if (Deno.build.os === "linux") libcLib = Deno.dlopen("libc.so.6", LIBC_SYMBOLS);
    } catch { /* no --allow-ffi or no glibc */ }
  }
  return libcLib?.symbols;
}

/** `getrusage(RUSAGE_SELF)` as a DataView (Linux glibc), or undefined where it cannot be called. */
function rusage(): DataView | undefined {
  const c = libc();
  if (!c) return undefined;
  const usage = new Uint8Array(144); // struct rusage: ru_utime, ru_stime (timevals), then ru_maxrss (a long, in KiB)
  return c.getrusage(0, usage) === 0 ? new DataView(usage.buffer) : undefined;
}

/** The process's peak resident set in bytes, or undefined where getrusage cannot be called. */
function maxRss(): number | undefined {
  const u = rusage();
  return u ? Number(u.getBigInt64(32, true)) * 1024 : undefined;
}

/** User + system CPU seconds of the process so far, or undefined where getrusage cannot be called. */
export function cpuSeconds(): number | undefined {
  const u = rusage();
  if (!u) return undefined;
  const tv = (o: number) => Number(u.getBigInt64(o, true)) + Number(u.getBigInt64(o + 8, true)) / 1e6;
  return tv(0) + tv(16);
}

/** Options of {@linkcode benchTrain} and {@linkcode benchInfer}. */
export interface ModelBenchOptions {
  /** The shape to build. */
  shape: BenchShape;
  /** Measured steps (default 5). */
  steps?: number;
  /** Unmeasured steps first (default 2). */
  warmup?: number;
  /** Label for the engine column (default `tfjs <backend>`). */
  engine?: string;
  /** Threads, for the table. */
  threads?: number;
}

/** The benchmark's model for `shape`: a classification `BertModel`, as `deno task bert train` builds it. */
export function buildModel(shape: BenchShape): Promise<BertModel> {
  const config = configFromJson({
    vocab_size: shape.vocabSize,
    hidden_size: shape.hidden,
    num_hidden_layers: shape.layers,
    num_attention_heads: shape.heads,
    intermediate_size: shape.intermediate,
    max_position_embeddings: 512,
    type_vocab_size: 2,
  }, "bench");
  return Promise.resolve(new BertModel(config, { head: "classification", numLabels: 2 }));
}

async function timeSteps(
  o: ModelBenchOptions,
  what: string,
  step: () => unknown,
  mem: PeakMemory,
): Promise<BenchRow> {
  const times: number[] = [];
  let cpu0: number | undefined, wall0 = 0;
  for (let i = 0; i < (o.warmup ?? 2) + (o.steps ?? 5); i++) {
    if (i === (o.warmup ?? 2)) {
      cpu0 = cpuSeconds();
      wall0 = performance.now();
    }
    const t0 = performance.now();
    await step();
    const ms = performance.now() - t0;
    mem.sample();
    if (i >= (o.warmup ?? 2)) times.push(ms);
    await new Promise((r) => setTimeout(r, 0)); // let timers and GC finalisers run between steps
  }
  const cpu1 = cpuSeconds();
  const cpuPct = cpu0 === undefined || cpu1 === undefined
    ? undefined
    : (cpu1 - cpu0) * 1e5 / (performance.now() - wall0);
  const engine = o.engine ?? `tfjs ${tf.getBackend()}`;
  return stepRow(
    o.shape,
    { what, engine, threads: o.threads },
    times,
    cpuPct,
    mem.rss / 2 ** 20,
    mem.tensors / 2 ** 20,
  );
}

/** A table row from the measured step times of one engine (`what`, `engine`, `threads` as given). */
export function stepRow(
  shape: BenchShape,
  id: { what: string; engine: string; threads?: number },
  times: number[],
  cpuPct: number | undefined,
  peakRssMb: number | undefined,
  peakTensorMb?: number,
): BenchRow {
  const ms = median(times), { what } = id;
  const step = what === "train" || what === "infer" || what === "infer-cls";
  // tfjs on blas drops the padding (lib/model/packing.ts): the products it computes are fewer.
  const kept = step && id.engine === "tfjs blas" ? keptLengthsOf(shape) : undefined;
  const dropped = kept !== undefined && kept.some((l) => l < shape.seqLength);
  return {
    ...id,
    cpuPct,
    shape: `${shape.name} ${shape.batch}x${shape.seqLength}`,
    msPerStep: ms,
    minMs: Math.min(...times),
    examplesPerS: shape.batch * 1000 / ms,
    gflops: step ? matmulFlops(shape, what) / ms / 1e6 : undefined,
    workGflops: step && dropped ? matmulFlops(shape, what, 2, true, kept) / ms / 1e6 : undefined,
    peakRssMb,
    peakTensorMb,
  };
}

/** A training step of a fresh classification model on a random batch of `shape`, and what frees them. */
export async function trainStepper(shape: BenchShape): Promise<{ step: () => Promise<number>; dispose: () => void }> {
  const model = await buildModel(shape);
  const batch = randomBatch(shape);
  const opt = new AdamW(model.params);
  return {
    step: () => trainStep(model, opt, batch),
    dispose: () => {
      opt.dispose();
      model.dispose();
      disposeBatch(batch);
    },
  };
}

/** One forward pass without dropout, its logits read back (asynchronously) and freed. */
export async function inferOnce(model: BertModel, batch: BatchInputs, clsOnly: boolean): Promise<void> {
  const logits = tf.tidy(() => model.forward(batch, { training: false, clsOnly }).logits!); // frees the others
  await logits.data();
  logits.dispose();
}

/** Training steps (forward, backward, AdamW) of a classification model on a random batch. */
export async function benchTrain(o: ModelBenchOptions): Promise<BenchRow> {
  const mem = new PeakMemory();
  mem.sample();
  const t = await trainStepper(o.shape);
  try {
    return await timeSteps(o, "train", t.step, mem);
  } finally {
    t.dispose();
    clearPool(); // arrays kept for this shape's sizes would only crowd the next benchmark
  }
}

/**
 * Inference (forward only, no dropout) throughput: `infer` computes every position, as PyTorch's BERT does; with
 * `clsOnly` (row `infer-cls`) the last layer runs at [CLS] only, as `evaluate` and `predict` classify.
 */
export async function benchInfer(o: ModelBenchOptions, options: { clsOnly?: boolean } = {}): Promise<BenchRow> {
  const clsOnly = options.clsOnly ?? false;
  const mem = new PeakMemory();
  mem.sample();
  const model = await buildModel(o.shape);
  const batch = randomBatch(o.shape);
  try {
    return await timeSteps(o, clsOnly ? "infer-cls" : "infer", () => inferOnce(model, batch, clsOnly), mem);
  } finally {
    model.dispose();
    disposeBatch(batch);
    clearPool();
  }
}

/** A matmul benchmark case. */
export interface MatMulCase {
  /** Label. */
  name: string;
  /** Shape of a (as stored). */
  a: number[];
  /** Shape of b (as stored). */
  b: number[];
  /** Transpose flags. */
  transposeA?: boolean;
  /** Transpose flags. */
  transposeB?: boolean;
}

/** The matmul shapes of the table: BERT-Base dense layers (plain and transposed, as in backprop) and attention. */
export const MATMUL_CASES: MatMulCase[] = [
  { name: "[4096x768] x [768x768]", a: [4096, 768], b: [768, 768] },
  { name: "[4096x768] x [768x768]^T", a: [4096, 768], b: [768, 768], transposeB: true },
  { name: "[4096x768]^T x [4096x768]", a: [4096, 768], b: [4096, 768], transposeA: true },
  { name: "[4096x768] x [768x3072]", a: [4096, 768], b: [768, 3072] },
  { name: "batched [384x128x64] x [384x64x128]", a: [384, 128, 64], b: [384, 64, 128] },
  { name: "batched [384x128x64] x [384x128x64]^T", a: [384, 128, 64], b: [384, 128, 64], transposeB: true },
];

/** GFLOP/s of `tf.matMul` on the current backend for each case (output read back asynchronously). */
export async function benchMatMul(cases: MatMulCase[] = MATMUL_CASES, reps = 5, threads?: number): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const c of cases) {
    const a = tf.randomNormal(c.a), b = tf.randomNormal(c.b);
    const ta = !!c.transposeA, tb = !!c.transposeB;
    const ra = c.a.length;
    const m = ta ? c.a[ra - 1] : c.a[ra - 2], k = ta ? c.a[ra - 2] : c.a[ra - 1];
    const n = tb ? c.b[c.b.length - 2] : c.b[c.b.length - 1];
    const batch = c.a.slice(0, -2).reduce((x, y) => x * y, 1);
    const flops = 2 * batch * m * n * k;
    const times: number[] = [];
    for (let i = 0; i < reps + 1; i++) {
      const t0 = performance.now();
      const r = tf.matMul(a, b, ta, tb);
      await r.data();
      const ms = performance.now() - t0;
      r.dispose();
      if (i > 0) times.push(ms);
    }
    tf.dispose([a, b]);
    const ms = median(times);
    rows.push({
      what: "matmul",
      engine: `tfjs ${tf.getBackend()}`,
      shape: c.name,
      threads,
      msPerStep: ms,
      minMs: Math.min(...times),
      gflops: flops / ms / 1e6,
    });
  }
  return rows;
}

/** Tokenizer + feature conversion throughput over `texts` (WordPiece, then ids/mask/type ids at `maxSeqLength`). */
export async function benchTokenizer(
  o: { vocabPath: string; texts: string[]; maxSeqLength?: number; reps?: number },
): Promise<BenchRow> {
  const { FullTokenizer } = await import("../text/tokenizer.ts");
  const { convertExample } = await import("../data/features.ts");
  const tok = await FullTokenizer.fromVocabFile(o.vocabPath);
  const times: number[] = [];
  for (let r = 0; r < (o.reps ?? 3) + 1; r++) {
    const t0 = performance.now();
    for (let i = 0; i < o.texts.length; i++) {
      convertExample({ id: String(i), textA: o.texts[i], line: i + 1 }, tok, o.maxSeqLength ?? 128);
    }
    if (r > 0) times.push(performance.now() - t0);
  }
  const ms = median(times);
  return {
    what: "tokenizer",
    engine: "lib/text/tokenizer.ts (JS)",
    shape: `${o.texts.length} texts, L=${o.maxSeqLength ?? 128}`,
    msPerStep: ms,
    minMs: Math.min(...times),
    examplesPerS: o.texts.length * 1000 / ms,
  };
}

/** Renders rows as an aligned text table. */
export function formatTable(rows: BenchRow[]): string {
  const head = [
    "what",
    "engine",
    "shape",
    "threads",
    "ms/step",
    "min ms",
    "ex/s",
    "GFLOP/s",
    "CPU %",
    "peak RSS MB",
    "tensor MB",
  ];
  const fmt = (x: number | undefined, d = 1) => (x === undefined || !Number.isFinite(x) ? "" : x.toFixed(d));
  const body = rows.map((r) => [
    r.what,
    r.engine,
    r.shape,
    r.threads === undefined ? "" : String(r.threads),
    fmt(r.msPerStep),
    fmt(r.minMs),
    fmt(r.examplesPerS),
    fmt(r.gflops),
    fmt(r.cpuPct, 0),
    fmt(r.peakRssMb, 0),
    fmt(r.peakTensorMb, 0),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

/** The median of `xs` (the lower middle value for an even count). */
function lowerMedian(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[(s.length - 1) >> 1];
}

/**
 * Several rounds of the same rows as one table: per row (what, engine, shape, threads), the round whose median ms is
 * the median over the rounds (the lower middle one for an even count).
 */
export function medianOfRounds(rounds: BenchRow[][]): BenchRow[] {
  const key = (r: BenchRow) => `${r.what}|${r.engine}|${r.shape}|${r.threads}`;
  const groups = new Map<string, BenchRow[]>();
  for (const round of rounds) for (const r of round) groups.set(key(r), [...groups.get(key(r)) ?? [], r]);
  return [...groups.values()].map((rows) => {
    const m = lowerMedian(rows.map((r) => r.msPerStep));
    return rows.find((r) => r.msPerStep === m)!;
  });
}

/**
 * The comparison the rows are for, one line per tfjs `train`, `infer` and `infer-cls` row with PyTorch rows of the same
 * shape: PyTorch's best thread setting (lowest median ms; `infer-cls` is compared with PyTorch's `infer`, which computes
 * the same logits) over the tfjs median, with the ratio of each round when there were several (PyTorch and tfjs rows of
 * one round ran step by step in turns, lib/bench/turns.ts, or minutes apart at most with `--no-paired`, so a round's
 * ratio is less exposed to the machine's drift than a whole run's).
 */
export function speedupLines(rounds: BenchRow[][], target = 1.25): string[] {
  const lines: string[] = [];
  const ratioIn = (round: BenchRow[], t: BenchRow) => {
    const tf = round.find((r) => r.what === t.what && r.engine === t.engine && r.shape === t.shape);
    const torchWhat = t.what === "infer-cls" ? "infer" : t.what;
    const torch = round.filter((r) => r.engine.startsWith("pytorch") && r.what === torchWhat && r.shape === t.shape);
    if (!tf || !torch.length) return undefined;
    const best = torch.reduce((a, b) => (b.msPerStep < a.msPerStep ? b : a));
    return { ratio: best.msPerStep / tf.msPerStep, best, tf };
  };
  for (const t of medianOfRounds(rounds)) {
    if (!t.engine.startsWith("tfjs") || !["train", "infer", "infer-cls"].includes(t.what)) continue;
    const per = rounds.map((round) => ratioIn(round, t)).filter((x) => x !== undefined);
    if (!per.length) continue;
    const ratio = lowerMedian(per.map((p) => p.ratio));
    const at = per.find((p) => p.ratio === ratio)!;
    const threads = at.best.threads === undefined
      ? ""
      : `, ${at.best.threads} thread${at.best.threads === 1 ? "" : "s"}`;
    const spread = per.length > 1 ? ` (rounds: ${per.map((p) => `${p.ratio.toFixed(2)}x`).join(", ")})` : "";
    lines.push(
      `${t.what} ${t.shape}: ${t.engine} ${at.tf.msPerStep.toFixed(1)} ms, PyTorch ${at.best.msPerStep.toFixed(1)} ms` +
        `${threads}: ${ratio.toFixed(2)}x ${ratio >= target ? "(>= " : "(below "}${target}x)${spread}`,
    );
  }
  return lines;
}

/**
 * Each tfjs training row's matrix-product rate against the machine's best measured `sgemm` (OpenBLAS's or, where the
 * `blas` backend uses it, oneDNN's), and whether it reaches `target` (issue 16 asks 75% for BERT-Base).
 */
export function sgemmShareLines(rows: BenchRow[], sgemm: SgemmRate | undefined, target = 0.75): string[] {
  if (!sgemm) return [];
  const best = Math.max(sgemm.gflops, sgemm.dnnl?.gflops ?? 0);
  const which = sgemm.dnnl && sgemm.dnnl.gflops > sgemm.gflops
    ? `oneDNN ${sgemm.dnnl.isa}`
    : sgemm.library.split(" ")[0];
  return rows.filter((r) => r.what === "train" && r.engine.startsWith("tfjs") && r.gflops !== undefined).map((r) => {
    const rate = r.workGflops ?? r.gflops!, share = rate / best;
    const done = r.workGflops === undefined ? "" : " in the products it computes (the padding dropped)";
    return `train ${r.shape}: ${r.engine} ${rate.toFixed(1)} GFLOP/s${done} = ${(100 * share).toFixed(0)}% of ` +
      `sgemm's ${best.toFixed(1)} (${which}) ${share >= target ? "(>= " : "(below "}${(100 * target).toFixed(0)}%)`;
  });
}

/**
 * A line comparing the sgemm rate measured after a run with the one measured before it (OpenBLAS's medians), so that
 * a run during which the machine's speed drifted says so: shared VMs speed up and slow down by 30% within minutes.
 */
export function sgemmDriftLine(start: SgemmRate, end: SgemmRate, tolerance = 0.1): string {
  const change = end.gflops / start.gflops - 1;
  const head = `sgemm after the run: ${end.gflops.toFixed(1)} GFLOP/s against ${start.gflops.toFixed(1)} before`;
  if (Math.abs(change) <= tolerance) return `${head} (within ${(100 * tolerance).toFixed(0)}%)`;
  return `${head} (${(100 * Math.abs(change)).toFixed(0)}% ${change < 0 ? "slower" : "faster"}): the machine's ` +
    "speed moved during the run; compare tfjs and PyTorch within a round, not figures across runs";
}
