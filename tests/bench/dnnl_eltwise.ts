/**
 * A lever of issue 16, measured before it is kept: oneDNN's JIT GELU (`dnnl_eltwise_gelu_erf`, forward and backward)
 * and layer normalization (forward and backward) primitives, called through Deno FFI with the oneDNN 2.x C API
 * (Debian `libdnnl2`), against this project's kernels (BlasGelu, BlasGeluGrad, BlasLayerNorm, BlasLayerNormGrad of
 * lib/backends/blas/fused.ts on the WebAssembly SIMD module of lib/backends/simd/), on the shapes of BERT-Tiny (32x128
 * tokens) and BERT-Base (8x128). Three ways are timed, interleaved in one process on the same data:
 *
 * - `op`: the project's kernel the way the model calls it: a tf op on the `blas` backend in `tf.tidy`, its output
 *   disposed (kernels run synchronously, so the time is the kernel's). No `dataSync`: reading an array out keeps
 *   the pool of lib/backends/blas/pool.ts from recycling it, so each call would fault in a fresh output (a 8 MB
 *   GELU then takes ~30 ms instead of ~3), which the model never does for its intermediate tensors;
 * - `wasm`: the project's SIMD kernel alone (lib/backends/simd/simd.ts), into preallocated outputs;
 * - `dnnl`: the oneDNN primitive on the same Float32Arrays (data handles set per call, execute, stream wait).
 *
 * `op - wasm` is the tensor overhead (allocation, tfjs bookkeeping); `wasm / dnnl` is the kernel ratio. Results are
 * checked against each other and against a float64 reference: the error printed is `max |a - ref| / max(1, |ref|)`
 * (for the sums dgamma, dbeta: over `max(1, max |ref|)`). Medians are printed first, then the fastest calls, the better
 * estimate of a kernel's own cost when other jobs share the cores; last, what the oneDNN kernels would save in a
 * BERT-Tiny inference step (2 GELU and 5 LayerNorm forwards). A benchmark that prints figures, not a test.
 *
 * Usage: BERT_NO_DNNL=1 OMP_NUM_THREADS=1 deno run -A tests/bench/dnnl_eltwise.ts [--reps 61]
 * (`BERT_NO_DNNL=1`: the `op` column is the WebAssembly SIMD path; without it the `blas` backend's GELU is oneDNN's
 * own, lib/backends/blas/dnnl.ts, and `op` measures that)
 * (the oneDNN kernels run on the OpenMP threads: set OMP_NUM_THREADS; the `blas` backend gets the same number)
 * @module
 */
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { gelu, layerNorm } from "../../lib/backends/blas/fused.ts";
import { simdMath, simdStatus } from "../../lib/backends/simd/simd.ts";
import { cpuVectorExtensions } from "../../lib/bench/bench.ts";
import { erf64 } from "../shared.ts";
import {
  DNNL_ISA,
  DNNL_LIBRARY,
  DNNL_SYMBOLS,
  dnnlSession,
  ELTWISE_DESC_BYTES,
  ELTWISE_GELU_ERF,
  FORWARD_TRAINING,
  type Primitive,
} from "../../lib/backends/blas/dnnl.ts";

const repsAt = Deno.args.indexOf("--reps");
const reps = repsAt >= 0 ? Number(Deno.args[repsAt + 1]) : 61;
const ompThreads = Deno.env.get("OMP_NUM_THREADS");
const threads = Number(ompThreads ?? 1);
const EPS = 1e-12; // BERT's layer_norm_eps

// ---- the oneDNN 2.x C API (include/oneapi/dnnl/dnnl.h and dnnl_types.h of v2.6) ------------------------------------

/** sizeof(dnnl_layer_normalization_desc_t) in oneDNN 2.x (x86-64); the rest is lib/backends/blas/dnnl.ts's. */
const LNORM_DESC_BYTES = 3496;
const FORWARD_INFERENCE = 96, BACKWARD = 128;
const USE_SCALE = 0x8, USE_SHIFT = 0x10;
const ARG = {
  src: 1,
  dst: 17,
  mean: 49,
  variance: 50,
  scale: 51,
  shift: 52,
  diffSrc: 129,
  diffDst: 145,
  diffScale: 255,
  diffShift: 256,
};

/** The library's symbols plus the version and layer normalization's, which the project's kernels do not use. */
const symbols = {
  ...DNNL_SYMBOLS,
  dnnl_version: { parameters: [], result: "pointer" },
  // (desc*, prop_kind, data md*, stat md*, epsilon, flags)
  dnnl_layer_normalization_forward_desc_init: {
    parameters: ["buffer", "i32", "buffer", "buffer", "f32", "u32"],
    result: "i32",
  },
  // (desc*, prop_kind, diff data md*, data md*, stat md*, epsilon, flags)
  dnnl_layer_normalization_backward_desc_init: {
    parameters: ["buffer", "i32", "buffer", "buffer", "buffer", "f32", "u32"],
    result: "i32",
  },
} as const;

let lib: Deno.DynamicLibrary<typeof symbols>;
try {
  lib = Deno.dlopen(DNNL_LIBRARY, symbols);
} catch (err) {
  console.log(`${DNNL_LIBRARY} could not be opened (${(err as Error).message}): install it with apt (libdnnl2)`);
  Deno.exit(0);
}
const dnnl = lib.symbols;
const { check, md, primitive } = dnnlSession(dnnl);

function geluPrimitives(rows: number, cols: number): { fwd: Primitive; bwd: Primitive } {
  const data = md([rows, cols]);
  const fd = new Uint8Array(ELTWISE_DESC_BYTES), bd = new Uint8Array(ELTWISE_DESC_BYTES);
  check(dnnl.dnnl_eltwise_forward_desc_init(fd, FORWARD_TRAINING, ELTWISE_GELU_ERF, data, 0, 0), "gelu fwd desc");
  check(dnnl.dnnl_eltwise_backward_desc_init(bd, ELTWISE_GELU_ERF, data, data, 0, 0), "gelu bwd desc");
  const fwd = primitive("gelu fwd", fd, [[ARG.src, data], [ARG.dst, data]]);
  const bwd = primitive("gelu bwd", bd, [[ARG.src, data], [ARG.diffDst, data], [ARG.diffSrc, data]], fwd.pd);
  return { fwd, bwd };
}

function layerNormPrimitives(rows: number, w: number): { train: Primitive; infer: Primitive; bwd: Primitive } {
  const data = md([rows, w]), stat = md([rows]), param = md([w]);
  const flags = USE_SCALE | USE_SHIFT;
  const td = new Uint8Array(LNORM_DESC_BYTES), id = new Uint8Array(LNORM_DESC_BYTES);
  const bd = new Uint8Array(LNORM_DESC_BYTES);
  check(dnnl.dnnl_layer_normalization_forward_desc_init(td, FORWARD_TRAINING, data, stat, EPS, flags), "ln train");
  check(dnnl.dnnl_layer_normalization_forward_desc_init(id, FORWARD_INFERENCE, data, stat, EPS, flags), "ln infer");
  check(dnnl.dnnl_layer_normalization_backward_desc_init(bd, BACKWARD, data, data, stat, EPS, flags), "ln bwd desc");
  const train = primitive("layer norm fwd (training)", td, [
    [ARG.src, data],
    [ARG.scale, param],
    [ARG.shift, param],
    [ARG.dst, data],
    [ARG.mean, stat],
    [ARG.variance, stat],
  ]);
  const infer = primitive("layer norm fwd (inference)", id, [
    [ARG.src, data],
    [ARG.scale, param],
    [ARG.shift, param],
    [ARG.dst, data],
  ]);
  const bwd = primitive("layer norm bwd", bd, [
    [ARG.src, data],
    [ARG.mean, stat],
    [ARG.variance, stat],
    [ARG.diffDst, data],
    [ARG.scale, param],
    [ARG.shift, param],
    [ARG.diffSrc, data],
    [ARG.diffScale, param],
    [ARG.diffShift, param],
  ], train.pd);
  return { train, infer, bwd };
}

// ---- data and float64 references -----------------------------------------------------------------------------------

function normal(n: number, seed: number, std = 1, mean = 0): Float32Array<ArrayBuffer> {
  let s = seed >>> 0;
  const u = () => { // mulberry32
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = mean + std * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return a;
}

const geluRef = (x: number) => 0.5 * x * (1 + erf64(x * Math.SQRT1_2));
const geluGradRef = (x: number, dy: number) =>
  dy * (0.5 * (1 + erf64(x * Math.SQRT1_2)) + x * Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI));

/** max |a - ref| / max(1, max |ref|), for sums over rows (dgamma, dbeta). */
function maxErrNorm(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  let m = 0, top = 1;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs(a[i] - ref[i])), top = Math.max(top, Math.abs(ref[i]));
  return a.length === ref.length ? m / top : NaN;
}

/** max |a - ref| / max(1, |ref|) */
function maxErr(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs(a[i] - ref[i]) / Math.max(1, Math.abs(ref[i])));
  if (Number.isNaN(m) || a.length !== ref.length) return NaN;
  return m;
}

function layerNormRef(x: Float32Array, g: Float32Array, b: Float32Array, w: number) {
  const y = new Float64Array(x.length), xhat = new Float64Array(x.length), rstd = new Float64Array(x.length / w);
  for (let r = 0; r < rstd.length; r++) {
    let mean = 0, v = 0;
    for (let j = 0; j < w; j++) mean += x[r * w + j];
    mean /= w;
    for (let j = 0; j < w; j++) v += (x[r * w + j] - mean) ** 2;
    rstd[r] = 1 / Math.sqrt(v / w + EPS);
    for (let j = 0; j < w; j++) {
      xhat[r * w + j] = (x[r * w + j] - mean) * rstd[r];
      y[r * w + j] = xhat[r * w + j] * g[j] + b[j];
    }
  }
  return { y, xhat, rstd };
}

function layerNormGradRef(dy: Float32Array, xhat: Float64Array, rstd: Float64Array, g: Float32Array, w: number) {
  const dx = new Float64Array(dy.length), dg = new Float64Array(w), db = new Float64Array(w);
  for (let r = 0; r < rstd.length; r++) {
    let s1 = 0, s2 = 0;
    for (let j = 0; j < w; j++) {
      const i = r * w + j, dh = dy[i] * g[j];
      s1 += dh, s2 += dh * xhat[i], dg[j] += dy[i] * xhat[i], db[j] += dy[i];
    }
    for (let j = 0; j < w; j++) {
      const i = r * w + j;
      dx[i] = (dy[i] * g[j] - s1 / w - xhat[i] * s2 / w) * rstd[r];
    }
  }
  return { dx, dg, db };
}

// ---- timing --------------------------------------------------------------------------------------------------------

const ns = (ms: number, n: number) => (ms * 1e6 / n).toFixed(2).padStart(5);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/**
 * Median and fastest ms of each function, called in turn `reps` times (after two warm-up rounds). On a busy machine
 * the fastest call is the better estimate of the kernel's own cost; the median is what a run sees.
 */
function interleaved(fns: (() => void)[]): { med: number[]; min: number[] } {
  const times = fns.map(() => [] as number[]);
  for (let r = -2; r < reps; r++) {
    fns.forEach((fn, k) => {
      const t0 = performance.now();
      fn();
      if (r >= 0) times[k].push(performance.now() - t0);
    });
  }
  return { med: times.map(median), min: times.map((t) => Math.min(...t)) };
}

interface Row {
  name: string;
  elements: number;
  op: number;
  wasm: number;
  dnnl: number;
  /** The fastest calls: op, wasm, dnnl. */
  min: [number, number, number];
  diff: number;
  errProject: number;
  errDnnl: number;
}
const rows: Row[] = [];

function opTime(f: () => tf.Tensor | tf.Tensor[]): () => void {
  return () => {
    tf.dispose(tf.tidy(f));
  };
}

/** The values of an op's outputs (read once, outside the timing, then disposed). */
function values(f: () => tf.Tensor | tf.Tensor[]): Float32Array[] {
  const out = tf.tidy(f), list = Array.isArray(out) ? out : [out];
  const vals = list.map((t) => t.dataSync() as Float32Array);
  tf.dispose(out);
  return vals;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return a.length === b.length ? m : NaN;
}

function benchGelu(model: string, rows_: number, cols: number): void {
  const n = rows_ * cols, simd = simdMath()!;
  const x = normal(n, 1, 2), dy = normal(n, 2);
  const t0 = performance.now();
  const { fwd, bwd } = geluPrimitives(rows_, cols);
  const t1 = performance.now();
  geluPrimitives(rows_, cols); // the same shape again: oneDNN's primitive cache
  const created = `primitives created in ${(t1 - t0).toFixed(2)} ms (again: ${(performance.now() - t1).toFixed(2)})`;
  const xt = tf.tensor2d(x, [rows_, cols]), dyt = tf.tensor2d(dy, [rows_, cols]);
  const wasmOut = new Float32Array(n), dnnlOut = new Float32Array(n);
  const wasmGrad = new Float32Array(n), dnnlGrad = new Float32Array(n);
  const ref = Float64Array.from(x, geluRef), gradRef = new Float64Array(n);
  for (let i = 0; i < n; i++) gradRef[i] = geluGradRef(x[i], dy[i]);

  const fwdOp = () => gelu(xt);
  const fwdWasm = () =>
    simd.map(
      "gelu",
      n,
      (b, s, len) => b.set(x.subarray(s, s + len)),
      (b, s, len) => wasmOut.set(b.subarray(0, len), s),
    );
  const fwdDnnl = () => fwd.run([x, dnnlOut]);
  const bwdOp = () => tf.engine().runKernel("BlasGeluGrad", { x: xt, dy: dyt }) as tf.Tensor;
  const bwdWasm = () =>
    simd.map("gelu_grad", n, (b, s, len, second) => {
      b.set(x.subarray(s, s + len));
      second.set(dy.subarray(s, s + len));
    }, (b, s, len) => wasmGrad.set(b.subarray(0, len), s));
  const bwdDnnl = () => bwd.run([x, dy, dnnlGrad]);

  // The SIMD module's GELU on its own chunk buffer, no copies in or out (what the copies cost). The buffer is reset
  // to x = 7 (dy = 1) at each call: GELU applied again and again to its own output would otherwise drive negative
  // values into denormals, which are slow; the kernels are branch-free, so the values do not change the work.
  const reset = (b: Float32Array, s: number, len: number, second: Float32Array) => {
    if (s === 0) b.fill(7, 0, len), second.fill(1, 0, len);
  };
  const fwdCompute = () => simd.map("gelu", n, reset, () => {});
  const bwdCompute = () => simd.map("gelu_grad", n, reset, () => {});
  const tf_ = interleaved([opTime(fwdOp), fwdWasm, fwdDnnl, fwdCompute]), [a, b, c, a2] = tf_.med;
  const opOut = values(fwdOp)[0];
  rows.push({
    name: `${model} GELU fwd [${rows_},${cols}]`,
    elements: n,
    op: a,
    wasm: b,
    dnnl: c,
    min: [tf_.min[0], tf_.min[1], tf_.min[2]],
    diff: Math.max(maxAbsDiff(opOut, dnnlOut), maxAbsDiff(wasmOut, dnnlOut)),
    errProject: maxErr(opOut, ref),
    errDnnl: maxErr(dnnlOut, ref),
  });
  const tb = interleaved([opTime(bwdOp), bwdWasm, bwdDnnl, bwdCompute]), [d, e, f, d2] = tb.med;
  const opGrad = values(bwdOp)[0];
  rows.push({
    name: `${model} GELU bwd [${rows_},${cols}]`,
    elements: n,
    op: d,
    wasm: e,
    dnnl: f,
    min: [tb.min[0], tb.min[1], tb.min[2]],
    diff: Math.max(maxAbsDiff(opGrad, dnnlGrad), maxAbsDiff(wasmGrad, dnnlGrad)),
    errProject: maxErr(opGrad, gradRef),
    errDnnl: maxErr(dnnlGrad, gradRef),
  });
  console.log(
    `  ${model} GELU: oneDNN fwd ${fwd.impl}, bwd ${bwd.impl}, ${created}; wasm without the copies in and out: fwd ${
      a2.toFixed(3)
    } ms (${ns(a2, n)} ns/el), bwd ${d2.toFixed(3)} ms (${ns(d2, n)} ns/el)`,
  );
  tf.dispose([xt, dyt]);
}

function benchLayerNorm(model: string, r: number, w: number): void {
  const n = r * w, simd = simdMath()!;
  const x = normal(n, 3, 1.5, 0.3), dy = normal(n, 4), g = normal(w, 5, 0.1, 1), b = normal(w, 6, 0.1);
  const t0 = performance.now();
  const { train, infer, bwd } = layerNormPrimitives(r, w);
  const t1 = performance.now();
  layerNormPrimitives(r, w); // the same shape again: oneDNN's primitive cache
  const created = `primitives created in ${(t1 - t0).toFixed(2)} ms (again: ${(performance.now() - t1).toFixed(2)})`;
  const xt = tf.tensor2d(x, [r, w]), dyt = tf.tensor2d(dy, [r, w]), gt = tf.tensor1d(g), bt = tf.tensor1d(b);
  const ref = layerNormRef(x, g, b, w), gradRef = layerNormGradRef(dy, ref.xhat, ref.rstd, g, w);
  const wy = new Float32Array(n), wxhat = new Float32Array(n), wrstd = new Float32Array(r);
  const dnnlY = new Float32Array(n), mean = new Float32Array(r), variance = new Float32Array(r);
  const dnnlYInfer = new Float32Array(n);
  const wdx = new Float32Array(n), wdg = new Float32Array(w), wdb = new Float32Array(w);
  const ddx = new Float32Array(n), ddg = new Float32Array(w), ddb = new Float32Array(w);

  const fwdOp = () => layerNorm(xt, gt, bt, EPS);
  const fwdWasm = () => simd.layerNorm({ x, gamma: g, beta: b, eps: EPS }, { y: wy, xhat: wxhat, rstd: wrstd });
  const fwdDnnl = () => train.run([x, g, b, dnnlY, mean, variance]);
  const fwdInfer = () => infer.run([x, g, b, dnnlYInfer]);

  const tf_ = interleaved([opTime(fwdOp), fwdWasm, fwdDnnl, fwdInfer]), [a, bw] = tf_.med;
  const opY = values(fwdOp)[0];
  const rstdDnnl = Float32Array.from(variance, (v) => 1 / Math.sqrt(v + EPS));
  console.log(
    `  ${model} LayerNorm: oneDNN fwd ${train.impl}, bwd ${bwd.impl}, ${created}; rstd: max |project - oneDNN| / rstd ${
      maxErr(wrstd.map((v, i) => (v - rstdDnnl[i]) / rstdDnnl[i]), new Float32Array(r)).toExponential(1)
    }`,
  );
  const fwdRow = (name: string, k: number, y: Float32Array) => ({
    name: `${model} LayerNorm ${name} [${r},${w}]`,
    elements: n,
    op: a,
    wasm: bw,
    dnnl: tf_.med[k],
    min: [tf_.min[0], tf_.min[1], tf_.min[k]] as [number, number, number],
    diff: Math.max(maxAbsDiff(opY, y), maxAbsDiff(wy, y)),
    errProject: maxErr(opY, ref.y),
    errDnnl: maxErr(y, ref.y),
  });
  rows.push(fwdRow("fwd", 2, dnnlY), fwdRow("fwd (dnnl: inference, no stats)", 3, dnnlYInfer));

  // Backward: each from its own forward's saved values (project: xhat, rstd; oneDNN: x, mean, variance).
  const [xhatT, rstdT] = [tf.tensor2d(wxhat, [r, w]), tf.tensor2d(wrstd, [r, 1])];
  const bwdOp = () => tf.engine().runKernel("BlasLayerNormGrad", { dy: dyt, xhat: xhatT, rstd: rstdT, gamma: gt });
  const bwdWasm = () =>
    simd.layerNormGrad({ dy, xhat: wxhat, rstd: wrstd, gamma: g }, { dx: wdx, dgamma: wdg, dbeta: wdb });
  const bwdDnnl = () => bwd.run([x, mean, variance, dy, g, b, ddx, ddg, ddb]);
  const tb = interleaved([opTime(bwdOp as () => tf.Tensor[]), bwdWasm, bwdDnnl]), [d, e, f] = tb.med;
  const opGrads = values(bwdOp as () => tf.Tensor[]);
  const cat = (...xs: ArrayLike<number>[]) => xs.flatMap((v) => Array.from(v));
  rows.push({
    name: `${model} LayerNorm bwd (dx, dgamma, dbeta) [${r},${w}]`,
    elements: n,
    op: d,
    wasm: e,
    dnnl: f,
    min: [tb.min[0], tb.min[1], tb.min[2]],
    diff: Math.max(maxAbsDiff(cat(...opGrads), cat(ddx, ddg, ddb)), maxAbsDiff(cat(wdx, wdg, wdb), cat(ddx, ddg, ddb))),
    errProject: Math.max(
      maxErr(opGrads[0], gradRef.dx),
      maxErrNorm(opGrads[1], gradRef.dg),
      maxErrNorm(opGrads[2], gradRef.db),
    ),
    errDnnl: Math.max(maxErr(ddx, gradRef.dx), maxErrNorm(ddg, gradRef.dg), maxErrNorm(ddb, gradRef.db)),
  });
  tf.dispose([xt, dyt, gt, bt, xhatT, rstdT]);
}

// ---- main ----------------------------------------------------------------------------------------------------------

await initBackend({ backend: "blas", threads, quiet: true });
const status = simdStatus();
if (!simdMath()) throw new Error(`the SIMD kernels are not in use (${!status.available && status.reason})`);
const ver = new Deno.UnsafePointerView(dnnl.dnnl_version()!);
const isa = dnnl.dnnl_get_effective_cpu_isa();
console.log(`cpu vector extensions: ${cpuVectorExtensions().join(" ")}`);
console.log(
  `oneDNN ${ver.getInt32(0)}.${ver.getInt32(4)}.${ver.getInt32(8)} (ISA ${
    DNNL_ISA[isa] ?? `0x${isa.toString(16)}`
  }), ` +
    `OMP_NUM_THREADS=${ompThreads ?? "(unset: oneDNN uses every core)"}; tfjs backend ${tf.getBackend()} ` +
    `(${threads} BLAS thread${threads > 1 ? "s" : ""}), wasm SIMD ${
      status.available && status.fma ? "with" : "without"
    } ` +
    `relaxed FMA; median of ${reps} interleaved calls`,
);
benchGelu("tiny", 4096, 512);
benchLayerNorm("tiny", 4096, 128);
benchGelu("base", 1024, 3072);
benchLayerNorm("base", 1024, 768);

console.log(
  `\n${"kernel".padEnd(52)} ${"op ms".padStart(6)} ${"wasm ms".padStart(7)} ${"dnnl ms".padStart(7)}  ` +
    `ns/el op/wasm/dnnl  wasm/dnnl op/dnnl  max|Δ| proj-dnnl  err proj / dnnl`,
);
for (const r of rows) {
  console.log(
    `${r.name.padEnd(52)} ${r.op.toFixed(3).padStart(6)} ${r.wasm.toFixed(3).padStart(7)} ${
      r.dnnl.toFixed(3).padStart(7)
    }  ${ns(r.op, r.elements)} ${ns(r.wasm, r.elements)} ${ns(r.dnnl, r.elements)}  ${
      (r.wasm / r.dnnl).toFixed(2).padStart(9)
    } ${(r.op / r.dnnl).toFixed(2).padStart(7)}  ${r.diff.toExponential(2).padStart(16)}  ${
      r.errProject.toExponential(1)
    } / ${r.errDnnl.toExponential(1)}`,
  );
}
console.log(`\nfastest calls: ${"kernel".padEnd(52)} op / wasm / dnnl ms  wasm/dnnl op/dnnl`);
for (const { name, min: [o, w, d] } of rows) {
  console.log(
    `               ${name.padEnd(52)} ${o.toFixed(3)} / ${w.toFixed(3)} / ${d.toFixed(3)}  ${
      (w / d).toFixed(2).padStart(9)
    } ${(o / d).toFixed(2).padStart(7)}`,
  );
}
// Tiny inference (profile_train.ts tiny --infer): 2 GELU forwards on [4096,512], 5 LayerNorm forwards on [4096,128].
// The project's kernel time is the smaller of op and wasm (op runs the same wasm kernel plus tensor bookkeeping, so a
// wasm time above op's is noise from the other core).
const row = (name: string) => rows.find((r) => r.name.startsWith(name))!;
const g = row("tiny GELU fwd"), l = row("tiny LayerNorm fwd ["), li = row("tiny LayerNorm fwd (dnnl: inference");
for (
  const [what, pick] of [["medians", (r: Row) => [r.op, r.wasm, r.dnnl]], ["fastest calls", (r: Row) => r.min]] as const
) {
  const [go, gw, gd] = pick(g), [lo, lw, ld] = pick(l), lid = pick(li)[2];
  const project = 2 * Math.min(go, gw) + 5 * Math.min(lo, lw), dnnlMs = 2 * gd + 5 * ld, dnnlInfer = 2 * gd + 5 * lid;
  console.log(
    `Tiny inference step, 2 GELU + 5 LayerNorm forwards (${what}): project ${project.toFixed(2)} ms, oneDNN ${
      dnnlMs.toFixed(2)
    } ms (with stats) / ${dnnlInfer.toFixed(2)} ms (inference, no stats): saves ${(project - dnnlMs).toFixed(2)} / ${
      (project - dnnlInfer).toFixed(2)
    } ms`,
  );
}
