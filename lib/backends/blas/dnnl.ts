/**
 * oneDNN's JIT-compiled GELU (erf form, forward and backward), softmax, scaling and `sgemm` through Deno FFI with the
 * oneDNN 2.x C API (Debian `libdnnl2`), for the `blas` backend's `BlasGelu` and `BlasGeluGrad`, its sparse
 * cross-entropy `BlasSparseXent` (lib/backends/blas/fused.ts) and its dense-layer products (lib/backends/blas/matmul.ts;
 * {@linkcode dnnlForDense}). oneDNN generates
 * code for the running CPU's widest vector ISA (AVX-512 where there is one) and works on the tensors' own arrays,
 * where the WebAssembly SIMD kernels run 128-bit code on copies made through their module's memory (about 2x faster
 * on two threads: `tests/bench/dnnl_eltwise.ts`).
 *
 * Not LayerNorm, although oneDNN's is 2-3x faster alone: its results depend on the number of rows in the call (one row
 * normalised in a batch of 40 and in a batch of 64 differs in the last bit), so length-trimmed evaluation batches would
 * no longer give the same logits as full-length ones (tests/tasks/squad/squad_test.ts). GELU, elementwise, gives each
 * value the same bits whatever the array around it (tests/backends/dnnl_test.ts). Its `sgemm` gives a row the same
 * bits in any call of two or more rows (16 or more times a transposed right operand) and on any number of threads, so
 * smaller calls run on a copy padded with zero rows; that holds for its AVX-512 code, not for its AVX2 code (a row's
 * last bits there depend on the call's row count; BENCHMARKS.md).
 *
 * Optional: {@linkcode loadDnnl} returns undefined when the library is absent, FFI is not permitted, or
 * `BERT_NO_DNNL=1`, and the kernels keep their own code. oneDNN runs on OpenMP threads: as many as OpenBLAS uses (set
 * per call), and `OMP_WAIT_POLICY=passive` is set before the library loads (unless the environment sets it) so that
 * its idle threads sleep instead of spinning on the cores OpenBLAS's threads need next.
 *
 * Results agree with the SIMD kernels to float rounding (7e-7 at most), not bit for bit; every call of a kernel on one
 * machine takes the same path, so runs stay reproducible.
 * @module
 */
import { envVar } from "../../io/env.ts";
import { type SgemmArgs, sgemmLeadingDims } from "./blas.ts";
import { fillRows } from "./common.ts";
import { withSignalsBlocked } from "./signal_mask.ts";

/** sizeof(dnnl_memory_desc_t) and dnnl_eltwise_desc_t in oneDNN 2.x (x86-64). */
const MD_BYTES = 696;
export const ELTWISE_DESC_BYTES = 1416;
const DNNL_CPU = 1, DNNL_STREAM_DEFAULT = 1, DNNL_F32 = 3, TAG_A = 2, TAG_AB = 3;
const QUERY_IMPL_INFO_STR = 8;
/** dnnl_prop_kind_t and dnnl_alg_kind_t values. */
export const FORWARD_TRAINING = 64;
export const ELTWISE_GELU_ERF = 0x30;
/** dnnl_binary_mul. */
const BINARY_MUL = 0x1fff1;
/** Room for dnnl_softmax_desc_t (1408 bytes in oneDNN 2.x), dnnl_binary_desc_t (2800) and dnnl_matmul_desc_t (2792). */
const DESC_BYTES = 4096;
/** DNNL_ARG_* */
const ARG = { src: 1, src1: 2, dst: 17, weights: 33, bias: 41, diffSrc: 129, diffDst: 145 };

/**
 * The C functions of the oneDNN 2.x API that {@linkcode dnnlSession} and the GELU kernels call (a caller may open the
 * library with more: tests/bench/dnnl_eltwise.ts adds layer normalization's).
 */
export const DNNL_SYMBOLS = {
  dnnl_get_effective_cpu_isa: { parameters: [], result: "i32" },
  dnnl_engine_create: { parameters: ["buffer", "i32", "usize"], result: "i32" },
  dnnl_stream_create: { parameters: ["buffer", "pointer", "u32"], result: "i32" },
  // (md*, ndims, const dims[12] int64, data_type, format_tag)
  dnnl_memory_desc_init_by_tag: { parameters: ["buffer", "i32", "buffer", "i32", "i32"], result: "i32" },
  // (desc*, prop_kind, alg_kind, data md*, alpha, beta)
  dnnl_eltwise_forward_desc_init: { parameters: ["buffer", "i32", "i32", "buffer", "f32", "f32"], result: "i32" },
  // (desc*, alg_kind, diff data md*, data md*, alpha, beta)
  dnnl_eltwise_backward_desc_init: { parameters: ["buffer", "i32", "buffer", "buffer", "f32", "f32"], result: "i32" },
  // (desc*, prop_kind, data md*, softmax_axis)
  dnnl_softmax_forward_desc_init: { parameters: ["buffer", "i32", "buffer", "i32"], result: "i32" },
  // (desc*, alg_kind, src0 md*, src1 md*, dst md*)
  dnnl_binary_desc_init: { parameters: ["buffer", "i32", "buffer", "buffer", "buffer"], result: "i32" },
  // (desc*, src md*, weights md*, bias md*, dst md*)
  dnnl_matmul_desc_init: { parameters: ["buffer", "buffer", "buffer", "buffer", "buffer"], result: "i32" },
  dnnl_primitive_attr_create: { parameters: ["buffer"], result: "i32" },
  dnnl_post_ops_create: { parameters: ["buffer"], result: "i32" },
  dnnl_post_ops_destroy: { parameters: ["pointer"], result: "i32" },
  // (post_ops, scale, alg_kind, alpha, beta)
  dnnl_post_ops_append_eltwise: { parameters: ["pointer", "f32", "i32", "f32", "f32"], result: "i32" },
  dnnl_primitive_attr_set_post_ops: { parameters: ["pointer", "pointer"], result: "i32" },
  // (pd*, op desc, attr, engine, hint forward pd)
  dnnl_primitive_desc_create: { parameters: ["buffer", "buffer", "pointer", "pointer", "pointer"], result: "i32" },
  dnnl_primitive_desc_query: { parameters: ["pointer", "i32", "i32", "buffer"], result: "i32" },
  dnnl_primitive_desc_destroy: { parameters: ["pointer"], result: "i32" },
  dnnl_primitive_create: { parameters: ["buffer", "pointer"], result: "i32" },
  dnnl_primitive_destroy: { parameters: ["pointer"], result: "i32" },
  // (md*, ndims, const dims[12] int64, data_type, const strides[12] int64)
  dnnl_memory_desc_init_by_strides: { parameters: ["buffer", "i32", "buffer", "i32", "buffer"], result: "i32" },
  // (pd*, src md*, src engine, dst md*, dst engine, attr)
  dnnl_reorder_primitive_desc_create: {
    parameters: ["buffer", "buffer", "pointer", "buffer", "pointer", "pointer"],
    result: "i32",
  },
  // (memory*, md*, engine, handle)
  dnnl_memory_create: { parameters: ["buffer", "buffer", "pointer", "pointer"], result: "i32" },
  dnnl_memory_destroy: { parameters: ["pointer"], result: "i32" },
  dnnl_memory_set_data_handle: { parameters: ["pointer", "buffer"], result: "i32" },
  // (primitive, stream, nargs, const dnnl_exec_arg_t {int arg; dnnl_memory_t memory}[])
  dnnl_primitive_execute: { parameters: ["pointer", "pointer", "i32", "buffer"], result: "i32" },
  dnnl_stream_wait: { parameters: ["pointer"], result: "i32" },
  // Row-major: (transa 'N'|'T', transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
  dnnl_sgemm: {
    parameters: ["u8", "u8", "i64", "i64", "i64", "f32", "buffer", "i64", "buffer", "i64", "f32", "buffer", "i64"],
    result: "i32",
  },
} as const;

const GOMP = { omp_set_num_threads: { parameters: ["i32"], result: "void" } } as const;

/** oneDNN's names of the ISAs `dnnl_get_effective_cpu_isa` reports. */
export const DNNL_ISA: Record<number, string> = {
  0x1: "sse41",
  0x3: "avx",
  0x7: "avx2",
  0x407: "avx2_vnni",
  0x27: "avx512_core",
  0x67: "avx512_core_vnni",
  0xe7: "avx512_core_bf16",
  0x3e7: "avx512_core_amx",
};

/** The library file. */
export const DNNL_LIBRARY = "libdnnl.so.2";

/** oneDNN's kernels on float32 arrays (see the module doc). Each call is synchronous. */
export interface Dnnl {
  /** The vector ISA oneDNN generates code for (`avx512_core`, `avx2`, ...). */
  isa: string;
  /** `out = 0.5 x (1 + erf(x / sqrt 2))`. */
  gelu(x: Float32Array, out: Float32Array): void;
  /** `out = dy (Phi(x) + x phi(x))`, GELU's gradient. */
  geluGrad(x: Float32Array, dy: Float32Array, out: Float32Array): void;
  /**
   * `c = alpha * op(a) @ op(b) + beta * c` (row-major) with oneDNN's JIT `sgemm`. On its AVX-512 code a row of `c`
   * has the same bits whatever the number of rows in the call and the thread count (tests/backends/dnnl_test.ts): a
   * one-row product (which oneDNN would compute as a matrix-vector product, summing in another order) and one of
   * fewer than 16 rows times a transposed `b` (another kernel) run on a copy padded with zero rows. Its AVX2 code
   * (CPUs without AVX-512) does not keep that: there a row's last bits depend on the call's row count. On the AVX-512
   * code a transposed `[n, k]` `b` with `k > n` is written out as `[k, n]` first from 512 rows, where that gives the
   * same bits (a dense layer's input gradient; see {@linkcode Dnnl.weightTransposes}).
   */
  sgemm(args: SgemmArgs): void;
  /**
   * `out = softmax(x)` over each row of `cols` values (`x.length / cols` rows). A row's result does not depend on the
   * rows around it (tests/backends/dnnl_test.ts).
   */
  softmax(x: Float32Array, out: Float32Array, cols: number): void;
  /** `x = alpha * x`, in place. */
  scale(x: Float32Array, alpha: number): void;
  /** Uses `threads` OpenMP threads from now on (a no-op when it already does). */
  setThreads(threads: number): void;
  /**
   * Whether {@linkcode Dnnl.denseGelu} gives every value the bits of {@linkcode Dnnl.sgemm} onto the bias rows followed
   * by {@linkcode Dnnl.gelu}, for a `[k, n]` weight. Decided once per `k x n` by computing both on 256 rows of fixed
   * values and comparing them bit for bit. Where it holds, a layer's output does not depend on which of the two ran:
   * on the AVX-512 EPYC of BENCHMARKS.md that is so for `k` = 128 (BERT-Tiny's feed-forward input) on the AVX-512
   * and the AVX2 code, and not for `k` = 512 or 768, where the matmul primitive sums in another order.
   */
  denseGeluMatches(k: number, n: number): boolean;
  /**
   * `out = gelu(x @ w + bias)` for `x` `[m, k]`, `w` `[k, n]`, `bias` `[n]`, row-major: oneDNN's matmul primitive with
   * GELU as a post-op, one pass over `out` instead of a product and a GELU pass. Call only where
   * {@linkcode Dnnl.denseGeluMatches} holds.
   */
  denseGelu(x: Float32Array, w: Float32Array, bias: Float32Array, out: Float32Array, m: number): void;
  /**
   * Whether {@linkcode Dnnl.sgemm} onto bias rows, `[m, k] x [k, parts * n]`, gives each block of `n` output columns
   * the bits of the product with that block's `[k, n]` weight alone (so that the query, key and value layers can run
   * as one product). Decided once per shape on 256 rows of fixed values, as {@linkcode Dnnl.denseGeluMatches}; on the
   * AVX2 code the answer can differ at other row counts (see lib/backends/blas/fused.ts's `denseSideBySide`).
   */
  sgemmColumnsMatch(k: number, n: number, parts: number): boolean;
  /**
   * How many {@linkcode Dnnl.sgemm} calls so far passed a transposed `[n, k]` right operand with `k > n` as a written-out
   * `[k, n]` one (faster on the AVX-512 code, same bits: see the rule in dnnl.ts).
   */
  weightTransposes(): number;
}

type Lib = Deno.DynamicLibrary<typeof DNNL_SYMBOLS>["symbols"];

/** A primitive with one memory object per argument, whose data handles are set at each call. */
export interface Primitive {
  /** Its primitive descriptor (the hint for a backward primitive). */
  pd: Deno.PointerValue;
  /** oneDNN's name of the implementation it chose (e.g. `jit:avx512_core`). */
  impl: string;
  /** Executes it on `buffers`, one per argument in order, and waits. */
  run(buffers: Float32Array[]): void;
  /** Frees it, its descriptor and its memory objects. */
  destroy(): void;
}

/** An engine and a stream of oneDNN's CPU engine, with what it takes to make primitives on them. */
export interface DnnlSession {
  /** Throws naming `what` unless `status` is dnnl_success. */
  check(status: number, what: string): void;
  /** A dense row-major float32 memory descriptor of 1 or 2 dims. */
  md(dims: number[]): Uint8Array<ArrayBuffer>;
  /**
   * The primitive of the op descriptor `opDesc`, with a memory object for each `[DNNL_ARG_*, descriptor]`; `attr`: a
   * primitive attribute (post-ops), which the caller still owns.
   */
  primitive(
    what: string,
    opDesc: Uint8Array<ArrayBuffer>,
    args: [number, Uint8Array<ArrayBuffer>][],
    hint?: Deno.PointerValue,
    attr?: Deno.PointerValue,
  ): Primitive;
  /** Calls `fn` with an out-parameter slot, checks its status as `what` and returns the handle it wrote. */
  handleOut(what: string, fn: (slot: BigUint64Array<ArrayBuffer>) => number): Deno.PointerValue;
  /** A reorder that writes a row-major `[rows, cols]` matrix out transposed, as a row-major `[cols, rows]` one. */
  transposer(rows: number, cols: number): Primitive;
}

let loaded: Dnnl | undefined | null = null;
let unavailable: string | undefined;
/** Whether {@linkcode loadDnnl} set `OMP_WAIT_POLICY` (the environment did not). */
let waitPolicySet = false;

/** Why {@linkcode loadDnnl} returned undefined (undefined while nothing has failed). */
export function dnnlUnavailableReason(): string | undefined {
  return unavailable;
}

/**
 * The environment variables {@linkcode loadDnnl} set for the library (not set by the user), e.g. to leave them out of
 * another program's environment.
 */
export function dnnlEnvironmentSetHere(): Readonly<Record<string, string>> {
  return waitPolicySet ? { OMP_WAIT_POLICY: "passive" } : {};
}

/**
 * oneDNN, opened once per process; undefined when `BERT_NO_DNNL=1`, without `--allow-ffi`, or when `libdnnl.so.2` is
 * not installed (Debian: `apt-get install libdnnl2`), or its engine cannot be created.
 */
export function loadDnnl(): Dnnl | undefined {
  if (loaded !== null) return loaded;
  loaded = undefined;
  if (envVar("BERT_NO_DNNL") === "1") {
    unavailable = "BERT_NO_DNNL=1";
    return undefined;
  }
  try {
    if (envVar("OMP_WAIT_POLICY") === undefined) {
      Deno.env.set("OMP_WAIT_POLICY", "passive");
      waitPolicySet = true;
    }
  } catch { /* no --allow-env: OpenMP's default policy */ }
  let lib: Deno.DynamicLibrary<typeof DNNL_SYMBOLS>;
  try {
    lib = Deno.dlopen(DNNL_LIBRARY, DNNL_SYMBOLS);
  } catch (err) {
    unavailable = `${DNNL_LIBRARY}: ${(err as Error).message}`;
    return undefined;
  }
  let gomp: Deno.DynamicLibrary<typeof GOMP> | undefined;
  try {
    gomp = Deno.dlopen("libgomp.so.1", GOMP); // oneDNN's OpenMP runtime in Debian's build
  } catch { /* a build on another runtime: its own thread count */ }
  try {
    // Every oneDNN call runs with asynchronous signals blocked on this thread (a signal taken during one corrupted
    // the heap: lib/backends/blas/signal_mask.ts).
    loaded = create(withSignalsBlocked(lib.symbols), gomp?.symbols.omp_set_num_threads);
  } catch (err) {
    unavailable = `${DNNL_LIBRARY}: ${(err as Error).message}`;
    lib.close();
    gomp?.close();
  }
  return loaded;
}

/** Opens an engine and a stream on `dnnl` (the symbols of {@linkcode DNNL_SYMBOLS}, or more). */
export function dnnlSession(dnnl: Lib): DnnlSession {
  const check = (status: number, what: string) => {
    const names = ["success", "out_of_memory", "invalid_arguments", "unimplemented", "last_impl_reached"];
    if (status !== 0) throw new Error(`${what} returned dnnl status ${status} (${names[status] ?? "runtime error"})`);
  };
  /** Calls `fn` with an out-parameter slot and returns the handle it wrote. */
  const handleOut = (what: string, fn: (slot: BigUint64Array<ArrayBuffer>) => number): Deno.PointerValue => {
    const slot = new BigUint64Array(1);
    check(fn(slot), what);
    return Deno.UnsafePointer.create(slot[0]);
  };
  const engine = handleOut("dnnl_engine_create", (s) => dnnl.dnnl_engine_create(s, DNNL_CPU, 0n));
  const stream = handleOut("dnnl_stream_create", (s) => dnnl.dnnl_stream_create(s, engine, DNNL_STREAM_DEFAULT));

  const md = (dims: number[]): Uint8Array<ArrayBuffer> => {
    const desc = new Uint8Array(MD_BYTES), d = new BigInt64Array(12);
    dims.forEach((v, i) => d[i] = BigInt(v));
    const tag = dims.length === 1 ? TAG_A : TAG_AB;
    check(dnnl.dnnl_memory_desc_init_by_tag(desc, dims.length, d, DNNL_F32, tag), `memory desc [${dims}]`);
    return desc;
  };

  const primitive = (
    what: string,
    opDesc: Uint8Array<ArrayBuffer>,
    args: [number, Uint8Array<ArrayBuffer>][],
    hint: Deno.PointerValue = null,
    attr: Deno.PointerValue = null,
  ): Primitive => {
    const pd = handleOut(
      `${what}: primitive desc`,
      (s) => dnnl.dnnl_primitive_desc_create(s, opDesc, attr, engine, hint),
    );
    return fromDesc(what, pd, args);
  };

  const transposer = (rows: number, cols: number): Primitive => {
    const what = `transpose [${rows}, ${cols}]`, src = md([rows, cols]), dst = new Uint8Array(MD_BYTES);
    // The same logical [rows, cols] matrix, stored column by column: a row-major [cols, rows] array.
    const dims = new BigInt64Array(12), strides = new BigInt64Array(12);
    dims.set([BigInt(rows), BigInt(cols)]);
    strides.set([1n, BigInt(rows)]);
    check(dnnl.dnnl_memory_desc_init_by_strides(dst, 2, dims, DNNL_F32, strides), `${what}: memory desc`);
    const pd = handleOut(
      `${what}: primitive desc`,
      (s) => dnnl.dnnl_reorder_primitive_desc_create(s, src, engine, dst, engine, null),
    );
    return fromDesc(what, pd, [[ARG.src, src], [ARG.dst, dst]]);
  };

  /** The primitive of the primitive descriptor `pd`, with a memory object for each `[DNNL_ARG_*, descriptor]`. */
  const fromDesc = (what: string, pd: Deno.PointerValue, args: [number, Uint8Array<ArrayBuffer>][]): Primitive => {
    const implSlot = new BigUint64Array(1);
    check(dnnl.dnnl_primitive_desc_query(pd, QUERY_IMPL_INFO_STR, 0, implSlot), `${what}: impl_info_str`);
    const impl = new Deno.UnsafePointerView(Deno.UnsafePointer.create(implSlot[0])!).getCString();
    const prim = handleOut(`${what}: primitive`, (s) => dnnl.dnnl_primitive_create(s, pd));
    const mems = args.map(([, desc]) =>
      handleOut(`${what}: memory`, (s) => dnnl.dnnl_memory_create(s, desc, engine, null))
    );
    const execArgs = new Uint8Array(16 * args.length), view = new DataView(execArgs.buffer);
    args.forEach(([arg], i) => {
      view.setInt32(16 * i, arg, true);
      view.setBigUint64(16 * i + 8, BigInt(Deno.UnsafePointer.value(mems[i])), true);
    });
    return {
      pd,
      impl,
      run(buffers) {
        for (let i = 0; i < mems.length; i++) dnnl.dnnl_memory_set_data_handle(mems[i], buffers[i]);
        check(dnnl.dnnl_primitive_execute(prim, stream, mems.length, execArgs), `${what}: execute`);
        check(dnnl.dnnl_stream_wait(stream), `${what}: stream wait`);
      },
      destroy() {
        for (const m of mems) dnnl.dnnl_memory_destroy(m);
        dnnl.dnnl_primitive_destroy(prim);
        dnnl.dnnl_primitive_desc_destroy(pd);
      },
    };
  };
  return { check, md, primitive, handleOut, transposer };
}

function create(dnnl: Lib, setOmpThreads?: (n: number) => void): Dnnl {
  const { check, md, primitive, handleOut, transposer } = dnnlSession(dnnl);

  // Primitives are made per size (JIT code for that shape) and kept for the sizes used most recently: evaluation on
  // length-trimmed batches meets a new size per batch, and each costs a primitive creation (oneDNN caches the code).
  const cache = new Map<string, Primitive[]>();
  const cached = (key: string, make: () => Primitive[]): Primitive[] => {
    let p = cache.get(key);
    if (p) {
      cache.delete(key); // most recent last
    } else {
      p = make();
      if (cache.size >= CACHED_SIZES) {
        const [oldest, prims] = cache.entries().next().value!;
        cache.delete(oldest);
        for (const q of prims) q.destroy();
      }
    }
    cache.set(key, p);
    return p;
  };
  const geluPrims = (n: number) =>
    cached(`gelu ${n}`, () => {
      const data = md([n]);
      const fd = new Uint8Array(ELTWISE_DESC_BYTES), bd = new Uint8Array(ELTWISE_DESC_BYTES);
      check(dnnl.dnnl_eltwise_forward_desc_init(fd, FORWARD_TRAINING, ELTWISE_GELU_ERF, data, 0, 0), "gelu desc");
      check(dnnl.dnnl_eltwise_backward_desc_init(bd, ELTWISE_GELU_ERF, data, data, 0, 0), "gelu grad desc");
      const fwd = primitive("gelu", fd, [[ARG.src, data], [ARG.dst, data]]);
      const bwd = primitive("gelu grad", bd, [[ARG.src, data], [ARG.diffDst, data], [ARG.diffSrc, data]], fwd.pd);
      return [fwd, bwd];
    });

  let threads = 0;
  const isa = DNNL_ISA[dnnl.dnnl_get_effective_cpu_isa()] ?? "unknown";
  const N = 78, T = 84; // 'N', 'T'
  const sgemm = (args: SgemmArgs): void => {
    const lead = sgemmLeadingDims(args);
    if (!lead) return;
    const { transA, transB, lda, ldb, ldc } = lead;
    const { m, n, k, a, b, c } = args;
    const beta = args.beta ?? 0;
    // oneDNN computes a one-row product as a matrix-vector product, and one of fewer than 16 rows times a transposed
    // right operand with another kernel: both sum in another order than the same rows in a bigger call, so such a
    // call runs on a copy padded with zero rows (tests/backends/dnnl_test.ts).
    const minRows = transB ? 16 : 2;
    if (m < minRows) {
      const a2 = new Float32Array(minRows * k), c2 = new Float32Array(minRows * n);
      for (let i = 0; i < m; i++) {
        if (transA) { for (let p = 0; p < k; p++) a2[p * minRows + i] = a[p * lda + i]; }
        else a2.set(a.subarray(i * lda, i * lda + k), i * k);
        if (beta !== 0) c2.set(c.subarray(i * ldc, i * ldc + n), i * n);
      }
      const padded = { ...args, m: minRows, a: a2, c: c2, lda: transA ? minRows : k, ldc: n };
      sgemm(padded);
      for (let i = 0; i < m; i++) c.set(c2.subarray(i * n, i * n + n), i * ldc);
      return;
    }
    if (transB && !transA && ldb === k && plainWeightPays(m, n, k) && plainWeightMatches(k, n)) {
      weightTransposes++;
      sgemm({ ...args, b: transposed(b, n, k), transB: false, ldb: n });
      return;
    }
    direct(args, lead);
  };
  /** oneDNN's `sgemm` on `args` as they are (`lead`: their leading dims, when the caller has them already). */
  const direct = (args: SgemmArgs, lead = sgemmLeadingDims(args)) => {
    if (!lead) return;
    const { transA, transB, lda, ldb, ldc } = lead;
    const { m, n, k, a, b, c } = args;
    check(
      dnnl.dnnl_sgemm(
        transA ? T : N,
        transB ? T : N,
        BigInt(m),
        BigInt(n),
        BigInt(k),
        args.alpha ?? 1,
        a,
        BigInt(lda),
        b,
        BigInt(ldb),
        args.beta ?? 0,
        c,
        BigInt(ldc),
      ),
      "dnnl_sgemm",
    );
  };

  // A dense layer's input gradient, dY W^T, passes its [n, k] weight transposed. Where k > n (the feed-forward
  // expansion's, k = 4n) oneDNN's AVX-512 sgemm runs that 20% slower than the same product with W^T written out first
  // (BERT-Base [1024, 3072] x [768, 3072]^T: 28.2 ms against 22.3 plus ~1 for the reorder; tests/bench/
  // transposed_weight.ts, BENCHMARKS.md 2026-12-07 afternoon), with the same bits; its AVX2 code gains nothing and
  // there the bits differ at k = 512. So: AVX-512 only, k > n, from 512 rows (the reorder's cost is per weight), and
  // only for shapes where a probe shows the same bits (then no result depends on which path ran).
  const PLAIN_WEIGHT_MIN_ROWS = 512;
  const plainWeightPays = (m: number, n: number, k: number) =>
    isa.startsWith("avx512") && k > n && m >= PLAIN_WEIGHT_MIN_ROWS;
  let weightTransposes = 0;
  let scratch = new Float32Array(0);
  /** `b` (`[n, k]`) written out as `[k, n]` into a buffer reused from call to call. */
  const transposed = (b: Float32Array, n: number, k: number): Float32Array => {
    if (scratch.length < n * k) scratch = new Float32Array(n * k);
    const out = scratch.subarray(0, n * k);
    cached(`transpose ${n}x${k}`, () => [transposer(n, k)])[0].run([b.subarray(0, n * k), out]);
    return out;
  };
  const softmaxPrim = (rows: number, cols: number) =>
    cached(`softmax ${rows}x${cols}`, () => {
      const data = md([rows, cols]), desc = new Uint8Array(DESC_BYTES);
      check(dnnl.dnnl_softmax_forward_desc_init(desc, FORWARD_TRAINING, data, 1), "softmax desc");
      return [primitive("softmax", desc, [[ARG.src, data], [ARG.dst, data]])];
    })[0];
  // A binary product with a one-value second operand (read at run time: one primitive per size, whatever alpha is).
  const scalePrim = (n: number) =>
    cached(`scale ${n}`, () => {
      const data = md([n]), one = md([1]), desc = new Uint8Array(DESC_BYTES);
      check(dnnl.dnnl_binary_desc_init(desc, BINARY_MUL, data, one, data), "scale desc");
      return [primitive("scale", desc, [[ARG.src, data], [ARG.src1, one], [ARG.dst, data]])];
    })[0];
  const alphaSlot = new Float32Array(1);
  // GELU as the matmul primitive's post-op: one attribute for every size (the primitive keeps its own copy of it).
  let geluAttr: Deno.PointerValue | undefined;
  const geluPostOp = (): Deno.PointerValue => {
    if (geluAttr === undefined) {
      const attr = handleOut("primitive attr", (s) => dnnl.dnnl_primitive_attr_create(s));
      const ops = handleOut("post-ops", (s) => dnnl.dnnl_post_ops_create(s));
      try {
        check(dnnl.dnnl_post_ops_append_eltwise(ops, 1, ELTWISE_GELU_ERF, 0, 0), "gelu post-op");
        check(dnnl.dnnl_primitive_attr_set_post_ops(attr, ops), "set post-ops"); // copies them
      } finally {
        dnnl.dnnl_post_ops_destroy(ops);
      }
      geluAttr = attr;
    }
    return geluAttr;
  };
  const denseGeluPrim = (m: number, k: number, n: number) =>
    cached(`dense gelu ${m}x${k}x${n}`, () => {
      const src = md([m, k]), weights = md([k, n]), bias = md([1, n]), dst = md([m, n]);
      const desc = new Uint8Array(DESC_BYTES);
      check(dnnl.dnnl_matmul_desc_init(desc, src, weights, bias, dst), "matmul desc");
      const args: [number, Uint8Array<ArrayBuffer>][] = [
        [ARG.src, src],
        [ARG.weights, weights],
        [ARG.bias, bias],
        [ARG.dst, dst],
      ];
      return [primitive("dense gelu", desc, args, null, geluPostOp())];
    })[0];
  const denseGelu = (x: Float32Array, w: Float32Array, bias: Float32Array, out: Float32Array, m: number) => {
    const n = bias.length, k = w.length / n;
    if (m) denseGeluPrim(m, k, n).run([x, w, bias, out]);
  };
  // The probes of denseGeluMatches and sgemmColumnsMatch: 256 rows of fixed values, each verdict kept per shape.
  const verdicts = new Map<string, boolean>();
  const probe = (key: string, decide: (fixed: (len: number, scale: number) => Float32Array) => boolean) => {
    let same = verdicts.get(key);
    if (same === undefined) {
      same = decide((len, scale) => {
        const v = new Float32Array(len);
        for (let i = 0; i < len; i++) v[i] = (((i * 2654435761) % 8191) / 4095 - 1) * scale; // fixed, spread values
        return v;
      });
      verdicts.set(key, same);
    }
    return same;
  };
  const PROBE_ROWS = 256;
  const sameBits = (a: Float32Array, b: Float32Array) => {
    const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
    return x.length === y.length && x.every((bits, i) => bits === y[i]);
  };
  /** `x @ w` onto bias rows with the dense path's `sgemm`. */
  const biasProduct = (x: Float32Array, w: Float32Array, bias: Float32Array, m: number, k: number) => {
    const c = new Float32Array(m * bias.length);
    fillRows(c, bias);
    sgemm({ m, n: bias.length, k, a: x, b: w, c, beta: 1 });
    return c;
  };
  const denseGeluMatches = (k: number, n: number): boolean =>
    probe(`gelu ${k}x${n}`, (fixed) => {
      const m = PROBE_ROWS, x = fixed(m * k, 1), w = fixed(k * n, 2 / Math.sqrt(k)), bias = fixed(n, 0.5);
      const product = biasProduct(x, w, bias, m, k), separate = new Float32Array(m * n);
      const fused = new Float32Array(m * n);
      if (product.length) geluPrims(product.length)[0].run([product, separate]);
      denseGelu(x, w, bias, fused, m);
      return sameBits(separate, fused);
    });
  const plainWeightMatches = (k: number, n: number): boolean =>
    probe(`plain weight ${k}x${n}`, (fixed) => {
      const m = PROBE_ROWS, x = fixed(m * k, 1), w = fixed(n * k, 2 / Math.sqrt(k));
      const viaTranspose = new Float32Array(m * n), plain = new Float32Array(m * n);
      direct({ m, n, k, a: x, b: w, c: viaTranspose, transB: true });
      direct({ m, n, k, a: x, b: transposed(w, n, k), c: plain });
      return sameBits(viaTranspose, plain);
    });
  const sgemmColumnsMatch = (k: number, n: number, parts: number): boolean =>
    probe(`columns ${k}x${n}x${parts}`, (fixed) => {
      const m = PROBE_ROWS, wide = n * parts, x = fixed(m * k, 1);
      const w = fixed(k * wide, 2 / Math.sqrt(k)), bias = fixed(wide, 0.5);
      const all = biasProduct(x, w, bias, m, k);
      for (let p = 0; p < parts; p++) {
        const wp = new Float32Array(k * n);
        for (let r = 0; r < k; r++) wp.set(w.subarray(r * wide + p * n, r * wide + (p + 1) * n), r * n);
        const one = biasProduct(x, wp, bias.slice(p * n, (p + 1) * n), m, k);
        for (let r = 0; r < m; r++) {
          if (!sameBits(one.subarray(r * n, (r + 1) * n), all.subarray(r * wide + p * n, r * wide + (p + 1) * n))) {
            return false;
          }
        }
      }
      return true;
    });
  return {
    sgemmColumnsMatch,
    weightTransposes: () => weightTransposes,
    denseGeluMatches,
    denseGelu,
    isa,
    softmax(x, out, cols) {
      if (x.length) softmaxPrim(x.length / cols, cols).run([x, out]);
    },
    scale(x, alpha) {
      alphaSlot[0] = alpha;
      if (x.length) scalePrim(x.length).run([x, alphaSlot, x]);
    },
    gelu(x, out) {
      if (x.length) geluPrims(x.length)[0].run([x, out]);
    },
    geluGrad(x, dy, out) {
      if (x.length) geluPrims(x.length)[1].run([x, dy, out]);
    },
    sgemm,
    setThreads(n) {
      if (n !== threads && setOmpThreads) setOmpThreads(n);
      threads = n;
    },
  };
}

/**
 * oneDNN for the products of a dense layer and its gradients, when it is installed and `BERT_NO_DNNL_SGEMM` is not
 * 1: its JIT `sgemm` ran 1.0-1.4x OpenBLAS 0.3.21's own AVX-512 kernels on this project's AVX-512 EPYC for BERT's
 * dense shapes (BENCHMARKS.md). The attention kernel's many small per-head products stay on the BLAS library, which
 * is faster there.
 */
export function dnnlForDense(): Dnnl | undefined {
  return envVar("BERT_NO_DNNL_SGEMM") === "1" ? undefined : loadDnnl();
}

/** Sizes whose primitives are kept (see `cached` in {@linkcode loadDnnl}). */
const CACHED_SIZES = 32;

/** A status line for benchmarks: oneDNN's ISA and the wait policy, or why it is not used. */
export function dnnlStatus(): string {
  const d = loadDnnl();
  if (!d) return `the blas backend's own SIMD kernels (oneDNN not used: ${unavailable})`;
  const policy = waitPolicySet ? "OMP_WAIT_POLICY=passive set here" : `OMP_WAIT_POLICY=${envVar("OMP_WAIT_POLICY")}`;
  return `oneDNN ${d.isa} in the blas backend (${DNNL_LIBRARY}; ${policy})`;
}
