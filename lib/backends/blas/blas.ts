/**
 * A CBLAS `sgemm` reached through Deno's FFI (`Deno.dlopen`), used by the `blas` TensorFlow.js backend.
 *
 * The library is found by, in order: the `BERT_BLAS_LIB` environment variable (a path or a library name), then
 * OpenBLAS (`libopenblas.so.0`, Debian's `libopenblas0-pthread`/`-openmp`/`-serial` packages), BLIS
 * (`libblis.so.4`), a generic CBLAS (`libcblas.so.3`, `libblas.so.3`) and macOS's Accelerate framework.
 * {@linkcode loadBlas} returns `undefined` when there is no library or no `--allow-ffi`, and
 * {@linkcode blasUnavailableReason} then says which.
 *
 * All matrices are row-major Float32Arrays; views (`subarray`) are passed at their byte offset. Besides `sgemm`,
 * the level-1/2 routines `saxpy` and `sgemv` are bound when the library has them (every CBLAS does); kernels
 * use them for memory-bound sums, where the library's vector code beats a JavaScript loop 3-8x.
 * @module
 */
import { envVar } from "../../io/env.ts";
import { simdWorkerDisabled } from "../simd/simd.ts";

/** What one {@linkcode Blas.sgemm} call computes: `c = alpha * op(a) @ op(b) + beta * c` (row-major). */
export interface SgemmArgs {
  /** Use `a` transposed: `a` is stored `[k, m]` instead of `[m, k]`. */
  transA?: boolean;
  /** Use `b` transposed: `b` is stored `[n, k]` instead of `[k, n]`. */
  transB?: boolean;
  /** Rows of `op(a)` and of `c`. */
  m: number;
  /** Columns of `op(b)` and of `c`. */
  n: number;
  /** Columns of `op(a)` = rows of `op(b)`. */
  k: number;
  /** Left operand, `[m, k]` (or `[k, m]` when `transA`). */
  a: Float32Array;
  /** Right operand, `[k, n]` (or `[n, k]` when `transB`). */
  b: Float32Array;
  /** Output `[m, n]`, read too when `beta` is not 0. */
  c: Float32Array;
  /** Scale of the product (default 1). */
  alpha?: number;
  /** Scale of the old `c` (default 0: `c` is overwritten). */
  beta?: number;
  /** Row stride of `a` in elements (default: its stored column count). */
  lda?: number;
  /** Row stride of `b` in elements (default: its stored column count). */
  ldb?: number;
  /** Row stride of `c` in elements (default `n`). */
  ldc?: number;
}

/** What one {@linkcode Blas.sgemv} call computes: `y = alpha * op(a) @ x + beta * y` (row-major). */
export interface SgemvArgs {
  /** Use `a` transposed: `y` has `n` values and `x` has `m`. */
  trans?: boolean;
  /** Rows of `a` as stored. */
  m: number;
  /** Columns of `a` as stored. */
  n: number;
  /** The matrix, `[m, n]` with row stride `lda`. */
  a: Float32Array;
  /** Input vector: `n` values, or `m` when `trans`. */
  x: Float32Array;
  /** Output vector: `m` values, or `n` when `trans`; read too when `beta` is not 0. */
  y: Float32Array;
  /** Scale of the product (default 1). */
  alpha?: number;
  /** Scale of the old `y` (default 0). */
  beta?: number;
  /** Row stride of `a` in elements (default `n`). */
  lda?: number;
}

/** A loaded BLAS library. */
export interface Blas {
  /** The file or name that was opened. */
  path: string;
  /** Which implementation it is (`OpenBLAS`, `BLIS`, `Accelerate`, `CBLAS`). */
  vendor: string;
  /** Extra build information when the library reports it (OpenBLAS's `openblas_get_config`). */
  config?: string;
  /** Computes `c = alpha * op(a) @ op(b) + beta * c` synchronously. Throws on inconsistent sizes. */
  sgemm(args: SgemmArgs): void;
  /**
   * `y = alpha * op(a) @ x + beta * y` synchronously; absent when the library lacks `cblas_sgemv`. Throws on
   * inconsistent sizes. (With `beta` 0, give a zeroed `y`: some BLAS builds compute `0 * y`, so a NaN left in a
   * recycled array would survive.)
   */
  sgemv?(args: SgemvArgs): void;
  /** `y += alpha * x` over the first `n` values; absent when the library lacks `cblas_saxpy`. */
  saxpy?(n: number, alpha: number, x: Float32Array, y: Float32Array): void;
  /** Threads the library will use, when it can say (else `undefined`). */
  getThreads(): number | undefined;
  /** Sets the library's thread count; returns false when this library has no such control. */
  setThreads(threads: number): boolean;
  /** Closes the library (the object must not be used afterwards). */
  close(): void;
}

const CBLAS_ROW_MAJOR = 101;
const CBLAS_NO_TRANS = 111;
const CBLAS_TRANS = 112;

const SGEMM_DEF = {
  //             order  transA transB  M      N      K      alpha  A         lda    B         ldb    beta   C         ldc
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
} as const;

const SYMBOLS = {
  cblas_sgemm: SGEMM_DEF,
  //            order  trans  M      N      alpha  A         lda    X         incX   beta   Y         incY
  cblas_sgemv: {
    parameters: ["i32", "i32", "i32", "i32", "f32", "buffer", "i32", "buffer", "i32", "f32", "buffer", "i32"],
    result: "void",
    optional: true,
  },
  //            N      alpha  X         incX   Y         incY
  cblas_saxpy: { parameters: ["i32", "f32", "buffer", "i32", "buffer", "i32"], result: "void", optional: true },
  openblas_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
  openblas_get_num_threads: { parameters: [], result: "i32", optional: true },
  openblas_get_config: { parameters: [], result: "pointer", optional: true },
  bli_thread_set_num_threads: { parameters: ["i64"], result: "void", optional: true },
  bli_thread_get_num_threads: { parameters: [], result: "i64", optional: true },
} as const;

/** Library names tried in order after `BERT_BLAS_LIB`. */
const BLAS_CANDIDATES: readonly string[] = [
  "libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/openblas-serial/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
  "/usr/lib64/libopenblas.so.0",
  "/usr/lib64/libopenblasp.so.0",
  "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
  "/usr/local/opt/openblas/lib/libopenblas.dylib",
  "libopenblas.so",
  "libblis.so.4",
  "libblis.so.3",
  "libcblas.so.3",
  "libblas.so.3",
  "/System/Library/Frameworks/Accelerate.framework/Accelerate",
];

let cached: Blas | undefined | null = null;
/** Why the last {@linkcode loadBlas} found no library. */
let unavailable: string | undefined;
const NO_FFI = "no --allow-ffi (the blas backend calls a CBLAS library through FFI)";

function check(cond: boolean, what: string): void {
  checkFor("sgemm", cond, what);
}

function checkFor(routine: string, cond: boolean, what: string): void {
  if (!cond) throw new Error(`${routine}: ${what}`);
}

function vendorOf(path: string, symbols: Record<string, unknown>): string {
  if (symbols.openblas_set_num_threads) return "OpenBLAS";
  if (symbols.bli_thread_set_num_threads) return "BLIS";
  if (path.includes("Accelerate")) return "Accelerate";
  return "CBLAS";
}

function ffiGranted(): boolean {
  // Asking first avoids Deno's interactive permission prompt when --allow-ffi was not given.
  return Deno.permissions.querySync({ name: "ffi" }).state === "granted";
}

/**
 * Whether `err` is `Deno.dlopen`'s answer for a library that cannot be used: absent ("Could not open library"), not a
 * CBLAS ("Failed to register symbol cblas_sgemm"), or outside an `--allow-ffi=PATHS` list. Anything else (a
 * TypeError for a malformed symbol table, say) is a bug and is thrown.
 */
function isUnloadable(err: unknown): err is Error {
  if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) return true;
  return err instanceof Error && err.constructor === Error &&
    /^(Could not open library|Failed to register symbol)/.test(err.message);
}

/**
 * What OpenBLAS's idle threads do, set before the library loads (OpenBLAS reads it once, when it is opened): by
 * default each spins for 2^28 cycles (about 0.1 s) after a product before it sleeps, on the core that this project's
 * second SIMD thread (lib/backends/simd/simd.ts) needs for the work between the products. `4` makes them sleep almost
 * at once. Measured on a 2-core AVX-512 EPYC with OpenBLAS 0.3.21, interleaved (BENCHMARKS.md): Tiny training 10-25%
 * faster, Base inference 10%, the rest unchanged. Set only when the environment does not set it and the SIMD worker
 * is on (`BERT_NO_SIMD_WORKER` unset): without the worker it buys nothing. PyTorch on 1 thread loses with it (Base
 * inference 11% slower), on 2 threads it gains, so `bench --pytorch` gives each of PyTorch's thread counts its best
 * (lib/bench/pytorch_env.ts `pytorchEnv`, which leaves out what {@linkcode blasEnvironmentSetHere} reports).
 */
export const OPENBLAS_THREAD_TIMEOUT = "4";

/** Environment variables this module set before loading the library (name → value). */
const setHere: Record<string, string> = {};

/** The environment variables {@linkcode loadBlas} set for the library (not set by the user), e.g. for a report. */
export function blasEnvironmentSetHere(): Readonly<Record<string, string>> {
  return setHere;
}

function quietIdleThreads(): void {
  const name = "OPENBLAS_THREAD_TIMEOUT";
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") return;
  if (Deno.env.get(name) !== undefined || simdWorkerDisabled()) return;
  Deno.env.set(name, OPENBLAS_THREAD_TIMEOUT);
  setHere[name] = OPENBLAS_THREAD_TIMEOUT;
}

/** The leading dimensions of an {@linkcode SgemmArgs}, checked against its arrays. */
export interface SgemmLayout {
  transA: boolean;
  transB: boolean;
  lda: number;
  ldb: number;
  ldc: number;
}

/**
 * Checks `args` (sizes, leading dimensions, array lengths) and returns its layout with the default strides filled in;
 * undefined when `c` is empty (nothing to compute). Throws `sgemm: ...` naming what is inconsistent.
 */
export function sgemmLeadingDims(args: SgemmArgs): SgemmLayout | undefined {
  const { m, n, k, a, b, c } = args;
  const transA = !!args.transA, transB = !!args.transB;
  const lda = args.lda ?? (transA ? m : k);
  const ldb = args.ldb ?? (transB ? k : n);
  const ldc = args.ldc ?? n;
  check(m >= 0 && n >= 0 && k >= 0, `negative size m=${m} n=${n} k=${k}`);
  if (m === 0 || n === 0) return undefined;
  // Row-major storage: a is [rowsA, lda]; the last row only needs its used columns.
  const rowsA = transA ? k : m, colsA = transA ? m : k;
  const rowsB = transB ? n : k, colsB = transB ? k : n;
  check(
    lda >= Math.max(1, colsA) && ldb >= Math.max(1, colsB) && ldc >= Math.max(1, n),
    "leading dimension too small",
  );
  check(rowsA === 0 || a.length >= (rowsA - 1) * lda + colsA, `a has ${a.length} values, needs ${rowsA}x${colsA}`);
  check(rowsB === 0 || b.length >= (rowsB - 1) * ldb + colsB, `b has ${b.length} values, needs ${rowsB}x${colsB}`);
  check(c.length >= (m - 1) * ldc + n, `c has ${c.length} values, needs ${m}x${n}`);
  return { transA, transB, lda, ldb, ldc };
}

function open(path: string): Blas | undefined {
  if (!ffiGranted()) {
    unavailable = NO_FFI;
    return undefined;
  }
  quietIdleThreads();
  let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    lib = Deno.dlopen(path, SYMBOLS);
  } catch (err) {
    if (!isUnloadable(err)) throw err;
    unavailable = err.message;
    return undefined;
  }
  const s = lib.symbols;
  let config: string | undefined;
  if (s.openblas_get_config) {
    const p = s.openblas_get_config();
    if (p) config = new Deno.UnsafePointerView(p).getCString().trim();
  }
  const sgemm = s.cblas_sgemm, sgemv = s.cblas_sgemv, saxpy = s.cblas_saxpy;
  return {
    path,
    vendor: vendorOf(path, s as Record<string, unknown>),
    config,
    sgemv: sgemv
      ? (args: SgemvArgs): void => {
        const { m, n, a, x, y } = args;
        const trans = !!args.trans, lda = args.lda ?? n;
        checkFor("sgemv", m >= 0 && n >= 0, `negative size m=${m} n=${n}`);
        const lenX = trans ? m : n, lenY = trans ? n : m;
        if (lenY === 0) return;
        checkFor("sgemv", lda >= Math.max(1, n), "leading dimension too small");
        checkFor("sgemv", m === 0 || a.length >= (m - 1) * lda + n, `a has ${a.length} values, needs ${m}x${n}`);
        checkFor("sgemv", x.length >= lenX && y.length >= lenY, `x or y shorter than ${lenX} / ${lenY}`);
        sgemv(
          CBLAS_ROW_MAJOR,
          trans ? CBLAS_TRANS : CBLAS_NO_TRANS,
          m,
          n,
          args.alpha ?? 1,
          a,
          lda,
          x,
          1,
          args.beta ?? 0,
          y,
          1,
        );
      }
      : undefined,
    saxpy: saxpy
      ? (n: number, alpha: number, x: Float32Array, y: Float32Array): void => {
        checkFor("saxpy", n >= 0 && x.length >= n && y.length >= n, `n=${n} with x of ${x.length}, y of ${y.length}`);
        if (n > 0) saxpy(n, alpha, x, 1, y, 1);
      }
      : undefined,
    sgemm(args: SgemmArgs): void {
      const { m, n, k, a, b, c } = args;
      const lead = sgemmLeadingDims(args);
      if (!lead) return;
      const { transA, transB, lda, ldb, ldc } = lead;
      sgemm(
        CBLAS_ROW_MAJOR,
        transA ? CBLAS_TRANS : CBLAS_NO_TRANS,
        transB ? CBLAS_TRANS : CBLAS_NO_TRANS,
        m,
        n,
        k,
        args.alpha ?? 1,
        a,
        lda,
        b,
        ldb,
        args.beta ?? 0,
        c,
        ldc,
      );
    },
    getThreads(): number | undefined {
      if (s.openblas_get_num_threads) return s.openblas_get_num_threads();
      if (s.bli_thread_get_num_threads) return Number(s.bli_thread_get_num_threads());
      return undefined;
    },
    setThreads(threads: number): boolean {
      const t = Math.max(1, Math.floor(threads));
      if (s.openblas_set_num_threads) {
        s.openblas_set_num_threads(t);
        return true;
      }
      if (s.bli_thread_set_num_threads) {
        s.bli_thread_set_num_threads(BigInt(t));
        return true;
      }
      return false;
    },
    close(): void {
      lib.close();
    },
  };
}

/** Options for {@linkcode loadBlas}. */
export interface LoadBlasOptions {
  /** Open this path or name only (overrides `BERT_BLAS_LIB` and the built-in list). */
  path?: string;
  /** Set the library's thread count after opening (where it has that control). */
  threads?: number;
}

/**
 * Opens the first CBLAS library that loads (once per process; later calls return the same one, applying
 * `threads` again). Returns `undefined` when none loads or FFI is not permitted.
 *
 * @example
 * ```ts
 * const blas = loadBlas();
 * if (blas) blas.sgemm({ m: 2, n: 2, k: 2, a, b, c });
 * ```
 */
export function loadBlas(options: LoadBlasOptions = {}): Blas | undefined {
  if (options.path) {
    const one = open(options.path);
    if (one && options.threads) one.setThreads(options.threads);
    return one;
  }
  if (cached === null) {
    cached = undefined;
    const override = envVar("BERT_BLAS_LIB");
    const paths = override ? [override] : BLAS_CANDIDATES;
    for (const path of paths) {
      cached = open(path);
      if (cached) break;
    }
    if (!cached && unavailable !== NO_FFI) {
      unavailable = override
        ? `BERT_BLAS_LIB=${override}: ${unavailable}`
        : `none of the ${paths.length} CBLAS libraries it looks for opened (the last: ${unavailable}); Debian: ` +
          "apt-get install libopenblas0-pthread, or set BERT_BLAS_LIB to a CBLAS library";
    }
  }
  if (cached && options.threads) cached.setThreads(options.threads);
  return cached;
}

/**
 * Why {@linkcode loadBlas} returned undefined (no `--allow-ffi`, or each library's `Deno.dlopen` error); undefined
 * while no load has failed.
 */
export function blasUnavailableReason(): string | undefined {
  return unavailable;
}
