/**
 * A lever for inference, measured (BENCHMARKS.md, 2026-12-07) and not kept: oneDNN's matmul primitive with the weights
 * reordered once into its own blocked layout, and BERT's GELU as a post-op of the feed-forward product, against what
 * the `blas` backend does (`dnnl_sgemm` onto the bias rows, then oneDNN's GELU primitive). BERT-Base's dense shapes at
 * 8 x 128 rows, twelve distinct weight matrices per shape (each call meets weights that are not in cache, as in a
 * model), median of three timed rounds after one. Also prints how far the two results are apart and the share of
 * identical bits: the matmul primitive sums in another order than `dnnl_sgemm`.
 *
 * Usage: OMP_WAIT_POLICY=passive deno run -A tests/bench/dnnl_matmul.ts [threads, default 2] [--tiny]
 * (`--tiny`: BERT-Tiny's dense shapes at 32 x 128 rows, and the fused query-key-value product `[128, 384]`)
 * Needs Debian's libdnnl2 (oneDNN 2.x); a benchmark that prints figures, not a test.
 * @module
 */
import { cpuVectorExtensions } from "../../lib/bench/bench.ts";

const S = {
  dnnl_engine_create: { parameters: ["buffer", "i32", "usize"], result: "i32" },
  dnnl_stream_create: { parameters: ["buffer", "pointer", "u32"], result: "i32" },
  dnnl_memory_desc_init_by_tag: { parameters: ["buffer", "i32", "buffer", "i32", "i32"], result: "i32" },
  dnnl_matmul_desc_init: { parameters: ["buffer", "buffer", "buffer", "buffer", "buffer"], result: "i32" },
  dnnl_primitive_desc_create: { parameters: ["buffer", "buffer", "pointer", "pointer", "pointer"], result: "i32" },
  dnnl_primitive_desc_query: { parameters: ["pointer", "i32", "i32", "buffer"], result: "i32" },
  dnnl_primitive_desc_query_md: { parameters: ["pointer", "i32", "i32"], result: "pointer" },
  dnnl_reorder_primitive_desc_create: {
    parameters: ["buffer", "buffer", "pointer", "buffer", "pointer", "pointer"],
    result: "i32",
  },
  dnnl_memory_desc_get_size: { parameters: ["buffer"], result: "usize" },
  dnnl_primitive_create: { parameters: ["buffer", "pointer"], result: "i32" },
  dnnl_memory_create: { parameters: ["buffer", "buffer", "pointer", "pointer"], result: "i32" },
  dnnl_memory_set_data_handle: { parameters: ["pointer", "buffer"], result: "i32" },
  dnnl_primitive_execute: { parameters: ["pointer", "pointer", "i32", "buffer"], result: "i32" },
  dnnl_stream_wait: { parameters: ["pointer"], result: "i32" },
  dnnl_primitive_attr_create: { parameters: ["buffer"], result: "i32" },
  dnnl_post_ops_create: { parameters: ["buffer"], result: "i32" },
  dnnl_post_ops_append_eltwise: { parameters: ["pointer", "f32", "i32", "f32", "f32"], result: "i32" },
  dnnl_primitive_attr_set_post_ops: { parameters: ["pointer", "pointer"], result: "i32" },
  dnnl_sgemm: {
    parameters: ["u8", "u8", "i64", "i64", "i64", "f32", "buffer", "i64", "buffer", "i64", "f32", "buffer", "i64"],
    result: "i32",
  },
  dnnl_eltwise_forward_desc_init: { parameters: ["buffer", "i32", "i32", "buffer", "f32", "f32"], result: "i32" },
} as const;
function open(): Deno.DynamicLibrary<typeof S>["symbols"] {
  try {
    return Deno.dlopen("libdnnl.so.2", S).symbols;
  } catch (err) {
    console.log(`dnnl_matmul: needs oneDNN (apt-get install libdnnl2): ${(err as Error).message}`);
    Deno.exit(0);
  }
}
const lib = open();
const gomp = Deno.dlopen("libgomp.so.1", { omp_set_num_threads: { parameters: ["i32"], result: "void" } }).symbols;
const threads = Number(Deno.args[0] ?? 2);
gomp.omp_set_num_threads(threads);
const check = (s: number, w: string) => {
  if (s !== 0) throw new Error(`${w}: status ${s}`);
};
const out = (w: string, f: (s: BigUint64Array<ArrayBuffer>) => number) => {
  const s = new BigUint64Array(1);
  check(f(s), w);
  return Deno.UnsafePointer.create(s[0]);
};
const engine = out("engine", (s) => lib.dnnl_engine_create(s, 1, 0n));
const stream = out("stream", (s) => lib.dnnl_stream_create(s, engine, 1));
const MD = 696;
const md = (dims: number[], tag: number) => {
  const d = new Uint8Array(MD), b = new BigInt64Array(12);
  dims.forEach((v, i) => b[i] = BigInt(v));
  check(lib.dnnl_memory_desc_init_by_tag(d, dims.length, b, 3, tag), "md");
  return d;
};
const ANY = 1, AB = 3;
const copyMd = (p: Deno.PointerValue) => {
  const v = new Deno.UnsafePointerView(p!);
  const d = new Uint8Array(MD);
  v.copyInto(d);
  return d;
};
const execArgs = (pairs: [number, Deno.PointerValue][]) => {
  const a = new Uint8Array(16 * pairs.length), dv = new DataView(a.buffer);
  pairs.forEach(([arg, m], i) => {
    dv.setInt32(16 * i, arg, true);
    dv.setBigUint64(16 * i + 8, BigInt(Deno.UnsafePointer.value(m)), true);
  });
  return a;
};
const mem = (d: Uint8Array<ArrayBuffer>) => out("mem", (s) => lib.dnnl_memory_create(s, d, engine, null));

function matmulPrim(m: number, k: number, n: number, gelu: boolean, weights: Float32Array) {
  const src = md([m, k], AB), wAny = md([k, n], plainWeights ? AB : ANY), bias = md([1, n], AB), dst = md([m, n], AB);
  const desc = new Uint8Array(8192);
  check(lib.dnnl_matmul_desc_init(desc, src, wAny, bias, dst), "matmul desc");
  let attr: Deno.PointerValue = null;
  if (gelu) {
    attr = out("attr", (s) => lib.dnnl_primitive_attr_create(s));
    const po = out("po", (s) => lib.dnnl_post_ops_create(s));
    check(lib.dnnl_post_ops_append_eltwise(po, 1, 0x30, 0, 0), "append gelu");
    check(lib.dnnl_primitive_attr_set_post_ops(attr, po), "set po");
  }
  const pd = out("pd", (s) => lib.dnnl_primitive_desc_create(s, desc, attr, engine, null));
  const impl = new BigUint64Array(1);
  check(lib.dnnl_primitive_desc_query(pd, 8, 0, impl), "impl");
  const implName = new Deno.UnsafePointerView(Deno.UnsafePointer.create(impl[0])!).getCString();
  const wMd = copyMd(lib.dnnl_primitive_desc_query_md(pd, 131, 0));
  const size = Number(lib.dnnl_memory_desc_get_size(wMd));
  const packed = new Float32Array(Math.ceil(size / 4));
  // reorder plain [k, n] -> packed
  const plain = md([k, n], AB);
  const rpd = out("rpd", (s) => lib.dnnl_reorder_primitive_desc_create(s, plain, engine, wMd, engine, null));
  const rprim = out("rprim", (s) => lib.dnnl_primitive_create(s, rpd));
  const mFrom = mem(plain), mTo = mem(wMd);
  lib.dnnl_memory_set_data_handle(mFrom, weights);
  lib.dnnl_memory_set_data_handle(mTo, packed);
  check(lib.dnnl_primitive_execute(rprim, stream, 2, execArgs([[1, mFrom], [17, mTo]])), "reorder");
  lib.dnnl_stream_wait(stream);
  const prim = out("prim", (s) => lib.dnnl_primitive_create(s, pd));
  const mSrc = mem(src), mW = mem(wMd), mB = mem(bias), mDst = mem(dst);
  const args = execArgs([[1, mSrc], [33, mW], [41, mB], [17, mDst]]);
  return {
    implName,
    size,
    run(a: Float32Array, b: Float32Array, c: Float32Array) {
      lib.dnnl_memory_set_data_handle(mSrc, a);
      lib.dnnl_memory_set_data_handle(mW, packed);
      lib.dnnl_memory_set_data_handle(mB, b);
      lib.dnnl_memory_set_data_handle(mDst, c);
      check(lib.dnnl_primitive_execute(prim, stream, 4, args), "exec");
      lib.dnnl_stream_wait(stream);
    },
  };
}

function geluPrim(len: number) {
  const d = md([len], 2), desc = new Uint8Array(2048);
  check(lib.dnnl_eltwise_forward_desc_init(desc, 64, 0x30, d, 0, 0), "gelu desc");
  const pd = out("pd", (s) => lib.dnnl_primitive_desc_create(s, desc, null, engine, null));
  const prim = out("prim", (s) => lib.dnnl_primitive_create(s, pd));
  const ms = mem(d), md2 = mem(d);
  const args = execArgs([[1, ms], [17, md2]]);
  return (x: Float32Array, y: Float32Array) => {
    lib.dnnl_memory_set_data_handle(ms, x);
    lib.dnnl_memory_set_data_handle(md2, y);
    check(lib.dnnl_primitive_execute(prim, stream, 2, args), "gelu");
    lib.dnnl_stream_wait(stream);
  };
}

console.log(`cpu vector extensions: ${cpuVectorExtensions().join(" ")}; ${threads} OpenMP thread(s)`);
const rand = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
const tiny = Deno.args.includes("--tiny");
const plainWeights = Deno.args.includes("--plain");
const rowsAt = Deno.args.indexOf("--rows");
const M = rowsAt >= 0 ? Number(Deno.args[rowsAt + 1]) : tiny ? 4096 : 1024;
const shapes: [number, number, boolean][] = tiny
  ? [[128, 128, false], [128, 384, false], [128, 512, true], [512, 128, false]]
  : [[768, 768, false], [768, 3072, true], [3072, 768, false]];
for (const [k, n, gelu] of shapes) {
  // several distinct weights, as in a model: each call sees weights not in cache
  const layers = 12;
  const A = rand(M * k), Ws = Array.from({ length: layers }, () => rand(k * n)), bias = rand(n);
  const C1 = new Float32Array(M * n), C2 = new Float32Array(M * n), G = new Float32Array(M * n);
  const prims = Ws.map((w) => matmulPrim(M, k, n, gelu, w));
  const geluF = geluPrim(M * n);
  const sg = (w: Float32Array) => {
    for (let r = 0; r < M; r++) C1.set(bias, r * n);
    check(
      lib.dnnl_sgemm(78, 78, BigInt(M), BigInt(n), BigInt(k), 1, A, BigInt(k), w, BigInt(n), 1, C1, BigInt(n)),
      "sg",
    );
    if (gelu) geluF(C1, G);
  };
  const tS: number[] = [], tP: number[] = [];
  for (let round = 0; round < 4; round++) {
    let t = performance.now();
    for (const w of Ws) sg(w);
    tS.push((performance.now() - t) / layers);
    t = performance.now();
    for (const p of prims) p.run(A, bias, C2);
    tP.push((performance.now() - t) / layers);
  }
  // agreement
  sg(Ws[0]);
  prims[0].run(A, bias, C2);
  const ref = gelu ? G : C1;
  let maxd = 0, same = 0;
  for (let i = 0; i < ref.length; i++) {
    maxd = Math.max(maxd, Math.abs(ref[i] - C2[i]));
    if (ref[i] === C2[i]) same++;
  }
  const med = (a: number[]) => a.slice(1).sort((x, y) => x - y)[1];
  const fl = 2 * M * k * n / 1e9;
  console.log(
    `${M}x${k}x${n}${gelu ? "+gelu" : ""}: sgemm${gelu ? "+gelu" : ""} ${med(tS).toFixed(2)} ms (${
      (fl / med(tS) * 1e3).toFixed(0)
    } GFLOP/s), ` +
      `matmul ${prims[0].implName} ${med(tP).toFixed(2)} ms (${(fl / med(tP) * 1e3).toFixed(0)}); max|d| ${
        maxd.toExponential(1)
      }, same bits ${(same / ref.length * 100).toFixed(1)}%`,
  );
}
