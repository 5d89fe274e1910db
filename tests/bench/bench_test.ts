/**
 * lib/bench/bench.ts on a model small enough for a unit test: the training step really trains (the loss falls on a fixed
 * batch), rows carry sane figures (a peak RSS from getrusage, positive timings), no tensors are left behind, and
 * the table prints every column.
 */
import { assert, assertEquals, unitBenchShape } from "../shared.ts";
import { initBackend, tf } from "../../lib/backends/backend.ts";
import {
  benchInfer,
  benchMatMul,
  type BenchRow,
  type BenchShape,
  benchTrain,
  cpuVectorExtensions,
  disposeBatch,
  formatTable,
  keptTokenRows,
  machineLines,
  matmulFlops,
  measureSgemm,
  medianOfRounds,
  randomBatch,
  sgemmDriftLine,
  type SgemmRate,
  sgemmShareLines,
  SHAPES,
  speedupLines,
  trainStep,
} from "../../lib/bench/bench.ts";
import { BertModel, configFromJson } from "../../lib/model/model.ts";
import { AdamW } from "../../lib/training/optim.ts";

await initBackend({ backend: "cpu", quiet: true });

const SMALL: BenchShape = unitBenchShape(12);

Deno.test("bench: trainStep lowers the loss on a fixed batch; no tensors left behind", async () => {
  const config = configFromJson({
    vocab_size: SMALL.vocabSize,
    hidden_size: SMALL.hidden,
    num_hidden_layers: SMALL.layers,
    num_attention_heads: SMALL.heads,
    intermediate_size: SMALL.intermediate,
    hidden_dropout_prob: 0,
    attention_probs_dropout_prob: 0,
  });
  const model = new BertModel(config, { head: "classification", numLabels: 2, seed: 5 }); // seeded: a fixed result
  const opt = new AdamW(model.params, { lr: 1e-2, weightDecay: 0 });
  const batch = randomBatch(SMALL, 5);
  const first = await trainStep(model, opt, batch);
  const tensors = tf.memory().numTensors;
  let last = first;
  for (let i = 0; i < 29; i++) last = await trainStep(model, opt, batch);
  assertEquals(tf.memory().numTensors, tensors, "tensor count after more steps");
  assert(last < first * 0.5, `loss ${first} -> ${last}: 30 AdamW steps at lr 1e-2 should overfit 4 examples`);
  opt.dispose();
  model.dispose();
  disposeBatch(batch);
});

Deno.test("bench: train/infer/matmul rows have sane figures and the table has every column", async () => {
  const before = tf.memory().numTensors;
  const train = await benchTrain({ shape: SMALL, steps: 2, warmup: 1, threads: 1 });
  const infer = await benchInfer({ shape: SMALL, steps: 2, warmup: 0 });
  const [mm] = await benchMatMul([{ name: "8x4 x 4x3", a: [8, 4], b: [4, 3] }], 2);
  assertEquals(tf.memory().numTensors, before, "tensors left behind");
  for (const r of [train, infer]) {
    assert(r.msPerStep > 0 && r.minMs > 0 && r.minMs <= r.msPerStep, `${r.what} timings ${r.msPerStep}/${r.minMs}`);
    assert(r.peakRssMb! > 10, `${r.what} peak RSS ${r.peakRssMb} MB`);
    assertEquals(r.shape, "unit 4x12");
    assertEquals(r.examplesPerS, SMALL.batch * 1000 / r.msPerStep);
    assertEquals(r.gflops, matmulFlops(SMALL, r.what as "train" | "infer") / r.msPerStep / 1e6);
  }
  assert(mm.gflops! > 0 && Number.isFinite(mm.gflops!), `matmul GFLOP/s ${mm.gflops}`);
  const table = formatTable([train, infer, mm]);
  for (const col of ["what", "engine", "ms/step", "min ms", "ex/s", "GFLOP/s", "peak RSS MB"]) {
    assert(table.includes(col), `column ${col}`);
  }
  assertEquals(table.trim().split("\n").length, 5, "header, rule and three rows");
});

Deno.test("bench: vector extensions come from the first flags/Features line, in a fixed order", () => {
  const x86 =
    "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx512vl avx2 fma avx avx512f avx512_bf16 " +
    "avx512bw\n\nprocessor\t: 1\nflags\t\t: fpu amx_tile\n";
  assertEquals(cpuVectorExtensions(x86), [
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_bf16",
  ]);
  assertEquals(cpuVectorExtensions("processor\t: 0\nFeatures\t: fp asimd evtstrm sve i8mm\n"), [
    "asimd",
    "i8mm",
    "sve",
  ]);
  assertEquals(cpuVectorExtensions("no flags here"), []);
  const lines = machineLines(undefined, []);
  assert(lines[1].includes("unknown") && lines[2].includes("not measured"), lines.join("\n"));
});

Deno.test("bench: matmulFlops matches a hand count (BERT-Base 8x128: ~0.51 TFLOP per training step)", () => {
  // per layer: 2 * 1024 tokens * (4 * 768^2 + 2 * 768 * 3072) + scores and context 2 * 2 * 8 * 128^2 * 768;
  // 12 layers, plus pooler 2 * 8 * 768^2 and classifier 2 * 8 * 768 * 2; training = 3x the forward pass.
  const forward = 12 * (2 * 1024 * 7_077_888 + 402_653_184) + 2 * 8 * (589_824 + 1_536);
  assertEquals(matmulFlops(SHAPES.base, "infer"), forward);
  assertEquals(matmulFlops(SHAPES.base, "train", 2, false), 3 * forward);
  assert(Math.abs(3 * forward / 0.54e12 - 1) < 0.01, "~0.54 TFLOP with the last layer at every token");
  // Training runs the last layer's output projection and feed-forward at [CLS] only: 1,016 rows of
  // 768^2 + 2 * 768 * 3072 multiply-adds each, left out.
  assertEquals(matmulFlops(SHAPES.base, "train"), 3 * (forward - 2 * 1016 * (589_824 + 4_718_592)));
  // Packed lengths: every example at all 128 rows is the padded count; two examples kept at 64 rows of 128 count 128.
  assertEquals(matmulFlops(SHAPES.base, "infer", 2, true, new Array(8).fill(128)), forward);
  const half = { ...SHAPES.base, batch: 2 };
  const dense = 12 * 2 * 128 * 7_077_888, attention = 12 * 4 * 2 * 64 * 64 * 768, head = 2 * 2 * (589_824 + 1_536);
  assertEquals(matmulFlops(half, "infer", 2, true, [64, 64]), dense + attention + head);
});

Deno.test("bench: keptTokenRows counts each example's length rounded up to 4 (the rows blas classification computes)", async () => {
  await initBackend({ backend: "cpu", quiet: true });
  for (const shape of [SHAPES.tiny, SHAPES.base]) {
    const b = randomBatch(shape);
    const mask = b.attentionMask.arraySync() as number[][];
    disposeBatch(b);
    const expected = mask.reduce(
      (n, row) => n + Math.min(row.length, Math.ceil(row.lastIndexOf(1) / 4 + 1 / 4) * 4),
      0,
    );
    const kept = keptTokenRows(shape);
    assertEquals(kept, expected);
    assert(kept < shape.batch * shape.seqLength, "every other example has padding to drop");
  }
});

Deno.test("bench: measureSgemm reports a positive rate where a BLAS library loads", async () => {
  const r = await measureSgemm({ m: 64, n: 48, k: 32, reps: 3 });
  if (!r) {
    console.warn("measureSgemm: no CBLAS library here (skipped)");
    return;
  }
  assert(r.gflops > 0 && Number.isFinite(r.gflops) && r.bestGflops >= r.gflops, `${r.gflops} / ${r.bestGflops}`);
  assertEquals(r.product, "[64x32] x [32x48]");
  assert(machineLines(r)[2].startsWith(`sgemm: ${r.gflops.toFixed(1)} GFLOP/s`), machineLines(r)[2]);
});

Deno.test("bench: sgemmShareLines reads a training row against the faster of OpenBLAS's and oneDNN's sgemm", () => {
  const row = (what: string, engine: string, gflops: number): BenchRow => ({
    what,
    engine,
    shape: "base 8x128",
    threads: 2,
    msPerStep: 1,
    minMs: 1,
    gflops,
  });
  const rows = [row("train", "tfjs blas", 270), row("infer", "tfjs blas", 300), row("train", "pytorch", 250)];
  const sgemm: SgemmRate = {
    library: "OpenBLAS (0.3.21)",
    product: "[4096x768] x [768x768]",
    gflops: 340,
    bestGflops: 350,
  };
  assertEquals(sgemmShareLines(rows, sgemm), [
    "train base 8x128: tfjs blas 270.0 GFLOP/s = 79% of sgemm's 340.0 (OpenBLAS) (>= 75%)",
  ]);
  const withDnnl = { ...sgemm, dnnl: { isa: "avx512_core", gflops: 380, bestGflops: 390 } };
  assertEquals(sgemmShareLines(rows, withDnnl), [
    "train base 8x128: tfjs blas 270.0 GFLOP/s = 71% of sgemm's 380.0 (oneDNN avx512_core) (below 75%)",
  ]);
  assertEquals(sgemmShareLines(rows, undefined), []);
  // A row that dropped the padding is read at the rate of the products it computed.
  const packed = [{ ...row("train", "tfjs blas", 300), workGflops: 260 }];
  assertEquals(sgemmShareLines(packed, sgemm), [
    "train base 8x128: tfjs blas 260.0 GFLOP/s in the products it computes (the padding dropped) = 76% of sgemm's " +
    "340.0 (OpenBLAS) (>= 75%)",
  ]);
  const had = Deno.env.get("DNNL_MAX_CPU_ISA");
  Deno.env.set("DNNL_MAX_CPU_ISA", "AVX2");
  try {
    assert(machineLines(undefined, []).some((l) => l.includes("DNNL_MAX_CPU_ISA=AVX2")));
  } finally {
    if (had === undefined) Deno.env.delete("DNNL_MAX_CPU_ISA");
    else Deno.env.set("DNNL_MAX_CPU_ISA", had);
  }
  assert(machineLines(withDnnl)[3].includes("oneDNN avx512_core") && machineLines(withDnnl)[3].includes("380.0"));
});

Deno.test("bench: a warning when OPENBLAS_CORETYPE holds OpenBLAS to AVX2 on an AVX-512 CPU and oneDNN is not capped", () => {
  const names = ["OPENBLAS_CORETYPE", "DNNL_MAX_CPU_ISA"];
  const had = names.map((n) => Deno.env.get(n));
  const set = (coretype?: string, dnnlCap?: string) =>
    [coretype, dnnlCap].forEach((v, i) => v === undefined ? Deno.env.delete(names[i]) : Deno.env.set(names[i], v));
  const warned = (ext: string[]) =>
    machineLines(undefined, ext).some((l) => l.startsWith("warning: OPENBLAS_CORETYPE"));
  const avx512 = ["avx", "avx2", "avx512f"], avx2 = ["avx", "avx2"];
  try {
    set("Haswell");
    assert(warned(avx512), "Haswell kernels on an AVX-512 CPU, oneDNN uncapped");
    assert(!warned(avx2), "an AVX2 CPU: Haswell is its own kernels");
    set("Haswell", "AVX2");
    assert(!warned(avx512), "both capped to AVX2: like for like");
    set("SkylakeX");
    assert(!warned(avx512), "an AVX-512 core type");
    set(undefined);
    assert(!warned(avx512), "OpenBLAS's own choice");
  } finally {
    set(...had as [string | undefined, string | undefined]);
  }
});

Deno.test("bench: sgemmDriftLine says when the machine's speed moved during a run", () => {
  const rate = (gflops: number): SgemmRate => ({ library: "OpenBLAS", product: "p", gflops, bestGflops: gflops });
  assertEquals(
    sgemmDriftLine(rate(350), rate(340)),
    "sgemm after the run: 340.0 GFLOP/s against 350.0 before (within 10%)",
  );
  const slower = sgemmDriftLine(rate(350), rate(219));
  assert(slower.includes("(37% slower)") && slower.includes("speed moved"), slower);
  assert(sgemmDriftLine(rate(200), rate(260)).includes("(30% faster)"));
});

Deno.test("bench: medianOfRounds keeps each row's median round; speedupLines compares with PyTorch's best setting", () => {
  const row = (what: string, engine: string, threads: number, ms: number): BenchRow => ({
    what,
    engine,
    shape: "tiny 32x128",
    threads,
    msPerStep: ms,
    minMs: ms - 1,
  });
  const rounds = [
    [row("train", "tfjs blas", 2, 100), row("train", "pytorch 1.13", 1, 300), row("train", "pytorch 1.13", 2, 200)],
    [row("train", "tfjs blas", 2, 140), row("train", "pytorch 1.13", 1, 150), row("train", "pytorch 1.13", 2, 400)],
    [row("train", "tfjs blas", 2, 120), row("train", "pytorch 1.13", 1, 180), row("train", "pytorch 1.13", 2, 500)],
  ];
  const median = medianOfRounds(rounds);
  assertEquals(median.map((r) => [r.engine, r.threads, r.msPerStep]), [
    ["tfjs blas", 2, 120],
    ["pytorch 1.13", 1, 180],
    ["pytorch 1.13", 2, 400],
  ]);
  // Per round, PyTorch's best over tfjs: 200/100 = 2, 150/140 = 1.07, 180/120 = 1.5; the median round is the third.
  const [line] = speedupLines(rounds);
  assertEquals(
    line,
    "train tiny 32x128: tfjs blas 120.0 ms, PyTorch 180.0 ms, 1 thread: 1.50x (>= 1.25x) (rounds: 2.00x, 1.07x, 1.50x)",
  );
  // infer-cls is compared with PyTorch's infer; an even count of rounds takes the lower middle one.
  const infer = [
    [row("infer-cls", "tfjs blas", 2, 20), row("infer", "pytorch 1.13", 1, 22)],
    [row("infer-cls", "tfjs blas", 2, 20), row("infer", "pytorch 1.13", 1, 30)],
  ];
  assertEquals(
    speedupLines(infer),
    ["infer-cls tiny 32x128: tfjs blas 20.0 ms, PyTorch 22.0 ms, 1 thread: 1.10x (below 1.25x) (rounds: 1.10x, 1.50x)"],
  );
  assertEquals(speedupLines([[row("train", "tfjs blas", 2, 100)]]), [], "no PyTorch rows: nothing to compare");
});
