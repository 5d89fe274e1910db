/**
 * A lever of issue 16, measured before it is kept: oneDNN's `dnnl_sgemm` (Debian `libdnnl2`, JIT kernels for the
 * running ISA) against OpenBLAS's `cblas_sgemm`, on the matrix products of a BERT-Tiny (32x128) and a BERT-Base
 * (8x128) training step, interleaved in one process, same threads. Prints median milliseconds and GFLOP/s per
 * shape and the ratio. A benchmark that prints figures, not a test.
 *
 * Usage: OMP_NUM_THREADS=2 deno run --allow-ffi --allow-read --allow-env tests/bench/dnnl_sgemm.ts [--reps 15]
 *
 * OpenBLAS's idle threads sleep almost at once here (`OPENBLAS_THREAD_TIMEOUT=4` unless set), as in the blas backend:
 * with OpenBLAS's default they spin ~0.1 s after each call on the cores oneDNN's next call needs, and on 2026-12-08's
 * Zen 3 VM oneDNN's Base products then ran at 72-81 GFLOP/s against 145-159 (BENCHMARKS.md).
 * @module
 */
import { cpuVectorExtensions } from "../../lib/bench/bench.ts";

const reps = Number(Deno.args[Deno.args.indexOf("--reps") + 1] || 15);
const threads = Number(Deno.env.get("OMP_NUM_THREADS") ?? 2);

if (Deno.env.get("OPENBLAS_THREAD_TIMEOUT") === undefined) Deno.env.set("OPENBLAS_THREAD_TIMEOUT", "4");
const blas = Deno.dlopen(
  "libopenblas.so.0",
  {
    //          order  transA transB M      N      K      alpha  A         lda    B         ldb    beta   C         ldc
    cblas_sgemm: {
      parameters: [
        "i32",
        "i32",
        "i32",
        "i32",
        "i32",
        "i32",
        "f32",
        "buffer",
        "i32",
        "buffer",
        "i32",
        "f32",
        "buffer",
        "i32",
      ],
      result: "void",
    },
    openblas_set_num_threads: { parameters: ["i32"], result: "void" },
    openblas_get_config: { parameters: [], result: "pointer" },
  } as const,
);
// dnnl_status_t dnnl_sgemm(char transa, char transb, dim M, dim N, dim K, float alpha, const float *A, dim lda,
//                          const float *B, dim ldb, float beta, float *C, dim ldc)  -- row-major
const dnnl = Deno.dlopen(
  "libdnnl.so.2",
  {
    dnnl_sgemm: {
      parameters: ["u8", "u8", "i64", "i64", "i64", "f32", "buffer", "i64", "buffer", "i64", "f32", "buffer", "i64"],
      result: "i32",
    },
    dnnl_version: { parameters: [], result: "pointer" },
  } as const,
);
blas.symbols.openblas_set_num_threads(threads);

const N = "N".charCodeAt(0), T = "T".charCodeAt(0);
type Shape = { name: string; m: number; n: number; k: number; ta: boolean; tb: boolean };
const shapes: Shape[] = [];
for (const [model, rows, d, inter] of [["tiny", 32 * 128, 128, 512], ["base", 8 * 128, 768, 3072]] as const) {
  for (const [out, k] of [[d, d], [inter, d], [d, inter]]) {
    shapes.push({ name: `${model} fwd x·W [${rows}x${k}]x[${k}x${out}]`, m: rows, n: out, k, ta: false, tb: false });
    shapes.push({
      name: `${model} dX = dY·Wᵀ [${rows}x${out}]x[${out}x${k}]`,
      m: rows,
      n: k,
      k: out,
      ta: false,
      tb: true,
    });
    shapes.push({
      name: `${model} dW = Xᵀ·dY [${k}x${rows}]x[${rows}x${out}]`,
      m: k,
      n: out,
      k: rows,
      ta: true,
      tb: false,
    });
  }
}

function rand(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() - 0.5;
  return a;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

const ver = new Deno.UnsafePointerView(dnnl.symbols.dnnl_version()!);
const version = `${ver.getInt32(0)}.${ver.getInt32(4)}.${ver.getInt32(8)}`;
console.log(`cpu vector extensions: ${cpuVectorExtensions().join(" ")}`);
console.log(
  `OpenBLAS: ${new Deno.UnsafePointerView(blas.symbols.openblas_get_config()!).getCString().trim()}; ` +
    `oneDNN ${version}; ${threads} threads (OMP_NUM_THREADS / openblas_set_num_threads); OPENBLAS_CORETYPE=${
      Deno.env.get("OPENBLAS_CORETYPE") ?? "(unset)"
    }; OPENBLAS_THREAD_TIMEOUT=${Deno.env.get("OPENBLAS_THREAD_TIMEOUT")}; median of ${reps} interleaved calls`,
);
console.log(
  `${"product".padEnd(46)} ${"OpenBLAS ms".padStart(11)} ${"oneDNN ms".padStart(10)} GFLOP/s (OB / DNNL)  OB/DNNL`,
);
let sumB = 0, sumD = 0;
for (const s of shapes) {
  const a = rand(s.m * s.k), b = rand(s.k * s.n), c1 = new Float32Array(s.m * s.n), c2 = new Float32Array(s.m * s.n);
  const lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
  const runB = () =>
    blas.symbols.cblas_sgemm(101, s.ta ? 112 : 111, s.tb ? 112 : 111, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, c1, s.n);
  const runD = () => {
    const rc = dnnl.symbols.dnnl_sgemm(
      s.ta ? T : N,
      s.tb ? T : N,
      BigInt(s.m),
      BigInt(s.n),
      BigInt(s.k),
      1,
      a,
      BigInt(lda),
      b,
      BigInt(ldb),
      0,
      c2,
      BigInt(s.n),
    );
    if (rc !== 0) throw new Error(`dnnl_sgemm returned status ${rc} for ${s.name}`);
  };
  runB(), runD(), runB(), runD();
  let maxDiff = 0;
  for (let i = 0; i < c1.length; i++) maxDiff = Math.max(maxDiff, Math.abs(c1[i] - c2[i]));
  if (maxDiff > 1e-3 * Math.sqrt(s.k)) throw new Error(`${s.name}: results differ by ${maxDiff}`);
  const tb: number[] = [], td: number[] = [];
  for (let r = 0; r < reps; r++) {
    let t0 = performance.now();
    runB();
    tb.push(performance.now() - t0);
    t0 = performance.now();
    runD();
    td.push(performance.now() - t0);
  }
  const mb = median(tb), md = median(td), gf = 2 * s.m * s.n * s.k / 1e6;
  sumB += mb, sumD += md;
  console.log(
    `${s.name.padEnd(46)} ${mb.toFixed(3).padStart(11)} ${md.toFixed(3).padStart(10)} ${
      (gf / mb).toFixed(0).padStart(7)
    } / ${(gf / md).toFixed(0).padEnd(11)} ${(mb / md).toFixed(2)}`,
  );
}
console.log(
  `sum of medians: OpenBLAS ${sumB.toFixed(2)} ms, oneDNN ${sumD.toFixed(2)} ms (${(sumB / sumD).toFixed(2)}x)`,
);
