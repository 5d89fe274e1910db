/**
 * The elementwise side of BERT training on the `blas` backend, in WebAssembly SIMD: a small module assembled
 * at load time (no binary blob, no build step) whose functions work in place on 4-float vectors in the module's
 * memory. Kernels copy their inputs into it in chunks (or, for attention, let `sgemm` write there directly through
 * FFI) and copy the results out. V8 does not vectorise JavaScript loops, and `Math.exp` costs ~12 ns per element;
 * these run at 1-5 ns per element including the copies.
 *
 * - `exp`: Cephes `expf` (range reduction by ln 2, degree-6 polynomial), max relative error ~2e-7; exact 0 below
 *   -87.33 (float32 underflow), +Infinity above 88.72, NaN stays NaN. Softmax, erf and GELU's gradient use a
 *   cheaper variant for arguments <= 0 (`expNegBody`).
 * - `erf`: Abramowitz & Stegun 7.1.26, the formula and constants of tfjs's cpu kernel (|error| < 1.5e-7).
 * - `gelu` (exact GELU through Eigen's rational erf), `gelu_grad`.
 * - `dropout`: the mulberry32 mask of fused.ts's `applyDropoutMask`, four draws at a time, bit-identical.
 * - `softmax_rows`, `softmax_grad_rows`: masked row softmax and its gradient (attention).
 * - `adamw`, `layernorm`, `layernorm_grad`: one pass each.
 *
 * Polynomial constants are hoisted into locals, and relaxed SIMD's multiply-add is used where the engine
 * validates it (fused on FMA CPUs; results then differ from the plain build in the last bit).
 *
 * {@linkcode simdMath} returns `undefined` when WebAssembly SIMD is not available; callers fall back to JS, and
 * {@linkcode simdStatus} says why. Files: lib/backends/simd/assembler.ts (encoding, the `Assembler`),
 * math.ts (exp, erf), kernels.ts (the module's functions and memory layout), this file (loading, the JS side).
 * @module
 */
import { envVar } from "../../io/env.ts";
import { CHUNK, FUNCTIONS, GOLDEN, PARAMS_BYTES, simdModuleBytes, WORKSPACE_BYTES } from "./kernels.ts";

/**
 * The module's functions: `exp`, `erf`, `gelu` (exact) and `gelu_grad` (`x` in the chunk buffer, `dy` in the
 * second region; the gradient replaces `x`).
 */
export type SimdFunction = "exp" | "erf" | "gelu" | "gelu_grad";

/** The vectorised functions. */
export interface SimdMath {
  /** `dst[i] = exp(src[i])` (`dst` may be `src`). */
  exp(src: Float32Array, dst: Float32Array): void;
  /** `dst[i] = erf(src[i])` (`dst` may be `src`). */
  erf(src: Float32Array, dst: Float32Array): void;
  /**
   * Chunked in-place transform through the module's memory: `fill(buf, start, len)` writes `len` inputs into
   * `buf[0..len)`, the function named `fn` runs on them in place, then `drain(buf, start, len)` reads them.
   */
  map(
    fn: SimdFunction,
    total: number,
    fill: (buf: Float32Array, start: number, len: number, second: Float32Array) => void,
    drain: (buf: Float32Array, start: number, len: number) => void,
    chunk?: number,
  ): void;
  /**
   * Inverted dropout through the generator of fused.ts's `applyDropoutMask`, four draws at a time:
   * `out[i] = (src ? src[i] : 1) * (draw i >= threshold (unsigned) ? scale : 0)`, where `state` is the mulberry32
   * state before draw 0. Bit for bit the same values as the scalar loop.
   */
  dropout(out: Float32Array, src: Float32Array | undefined, state: number, threshold: number, scale: number): void;
  /**
   * `floats` floats of the module's memory past the chunk regions, for kernels that keep whole blocks there (the
   * memory grows as needed; growing invalidates views returned earlier). Pointers below are byte offsets into this
   * memory: `view.byteOffset + 4 * index`.
   */
  workspace(floats: number): Float32Array;
  /** In place {@linkcode SimdMath.dropout} of `n` floats at byte `ptr` of the module's memory (`n` rounded up to 4). */
  dropoutAt(ptr: number, n: number, state: number, threshold: number, scale: number): void;
  /** Rows of `cols` floats (a multiple of 4) at `ptr` become `softmax(row + mask)`, the mask row at `maskPtr`. */
  softmaxRowsAt(ptr: number, rows: number, cols: number, maskPtr: number): void;
  /** `ds = p * (ds - rowsum(ds * p))` in place, rows of `cols` floats (a multiple of 4). */
  softmaxGradRowsAt(dsPtr: number, pPtr: number, rows: number, cols: number): void;
  /**
   * One AdamW step in float32: `m' = b1 m + (1 - b1) g`, `v' = b2 v + (1 - b2) g^2`,
   * `p' = p decay - stepSize m' / (sqrt(v') invBc2 + eps)`, written to `out` (`[p', m', v']`).
   */
  adamw(
    inp: { p: Float32Array; g: Float32Array; m: Float32Array; v: Float32Array },
    out: [Float32Array, Float32Array, Float32Array],
    c: { beta1: number; beta2: number; invBc2: number; eps: number; decay: number; stepSize: number },
  ): void;
  /**
   * LayerNorm of rows of `width` floats (float32 arithmetic): fills `y`, `xhat` and `rstd` (one per row). Returns
   * false, doing nothing, when the width is not a multiple of 4 or over 5,460.
   */
  layerNorm(
    inp: { x: Float32Array; gamma: Float32Array; beta: Float32Array; eps: number },
    out: { y: Float32Array; xhat: Float32Array; rstd: Float32Array },
  ): boolean;
  /** LayerNorm's gradient: fills `dx`, `dgamma`, `dbeta` (same conditions as {@linkcode SimdMath.layerNorm}). */
  layerNormGrad(
    inp: { dy: Float32Array; xhat: Float32Array; rstd: Float32Array; gamma: Float32Array },
    out: { dx: Float32Array; dgamma: Float32Array; dbeta: Float32Array },
  ): boolean;
}

/** Whether {@linkcode simdMath} is in use, and if not, why. */
export type SimdStatus =
  | { available: true; fma: boolean }
  | { available: false; reason: string };

let loaded: { math: SimdMath; fma: boolean } | { reason: string } | undefined;

/**
 * The vectorised functions, or undefined when WebAssembly SIMD is unavailable (or disabled by BERT_NO_SIMD):
 * {@linkcode simdStatus} then says why. Only the expected failures (the switch, an engine without WebAssembly or
 * its SIMD, a module the engine cannot compile or instantiate) lead to undefined; anything else is a bug and throws.
 */
export function simdMath(): SimdMath | undefined {
  loaded ??= load();
  return "math" in loaded ? loaded.math : undefined;
}

/** Whether the SIMD kernels are in use (loading them if not yet done), with fused multiply-add or not, or why not. */
export function simdStatus(): SimdStatus {
  loaded ??= load();
  return "math" in loaded ? { available: true, fma: loaded.fma } : { available: false, reason: loaded.reason };
}

function load(): { math: SimdMath; fma: boolean } | { reason: string } {
  if (envVar("BERT_NO_SIMD")) return { reason: "disabled by BERT_NO_SIMD" };
  if (typeof WebAssembly === "undefined") return { reason: "this runtime has no WebAssembly" };
  // Relaxed SIMD's multiply-add where the engine has it (fused on FMA CPUs); plain SIMD otherwise.
  let fma = true;
  let bytes = simdModuleBytes(true);
  if (!WebAssembly.validate(bytes)) {
    fma = false;
    bytes = simdModuleBytes(false);
  }
  if (!WebAssembly.validate(bytes)) return { reason: "this WebAssembly engine does not validate SIMD (v128) code" };
  let inst: WebAssembly.Instance;
  try {
    inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
  } catch (err) {
    const expected = err instanceof WebAssembly.CompileError || err instanceof WebAssembly.LinkError ||
      err instanceof RangeError; // RangeError: the memory could not be allocated
    if (!expected) throw err;
    return { reason: `the SIMD module could not be instantiated: ${err.message}` };
  }
  return { math: wrap(inst), fma };
}

/** The JavaScript side of the module's functions: copies through the chunk regions, argument checks. */
function wrap(inst: WebAssembly.Instance): SimdMath {
  const mem = inst.exports.memory as WebAssembly.Memory;
  const memBuffer = () => mem.buffer as ArrayBuffer;
  type Fn = (p0: number, p1: number, p2?: number, p3?: number, p4?: number) => void;
  const fns = Object.fromEntries(FUNCTIONS.map(([n]) => [n, inst.exports[n] as Fn])) as Record<string, Fn>;
  let views = {
    all: new Float32Array(0),
    buf: new Float32Array(0),
    second: new Float32Array(0),
    buffer: null as ArrayBuffer | null,
  };
  /** Views of the whole memory and of the first two chunk regions, re-made after the memory grows (growing
   * detaches the old buffer). */
  const regions = () => {
    if (views.buffer !== memBuffer()) {
      views = {
        all: new Float32Array(memBuffer()),
        buf: new Float32Array(memBuffer(), 0, CHUNK),
        second: new Float32Array(memBuffer(), CHUNK * 4, CHUNK),
        buffer: memBuffer(),
      };
    }
    return views;
  };
  const map: SimdMath["map"] = (fn, total, fill, drain, chunk = CHUNK) => {
    const f = fns[fn];
    const { buf, second } = regions();
    const step = Math.max(1, Math.min(chunk, CHUNK));
    for (let start = 0; start < total; start += step) {
      const len = Math.min(step, total - start);
      fill(buf, start, len, second);
      f(0, ((len + 3) >> 2) << 4);
      drain(buf, start, len);
    }
  };
  const unary = (fn: "exp" | "erf") => (src: Float32Array, dst: Float32Array) =>
    map(
      fn,
      src.length,
      (b, s, n) => b.set(src.subarray(s, s + n)),
      (b, s, n) => dst.set(b.subarray(0, n), s),
    );
  const dropout: SimdMath["dropout"] = (out, src, state, threshold, scale) => {
    const { buf } = regions();
    for (let start = 0; start < out.length; start += CHUNK) {
      const len = Math.min(CHUNK, out.length - start);
      if (src) buf.set(src.subarray(start, start + len));
      else buf.fill(1, 0, len);
      fns.dropout(0, ((len + 3) >> 2) << 4, (state + Math.imul(start, GOLDEN)) | 0, threshold | 0, scale);
      out.set(buf.subarray(0, len), start);
    }
  };
  const adamw: SimdMath["adamw"] = ({ p, g, m, v }, [pn, mn, vn], c) => {
    const f = regions().all;
    f.set([c.beta1, 1 - c.beta1, c.beta2, 1 - c.beta2, c.invBc2, c.eps, c.decay, c.stepSize], PARAMS_BYTES / 4);
    for (let start = 0; start < p.length; start += CHUNK) {
      const len = Math.min(CHUNK, p.length - start), end = start + len;
      f.set(p.subarray(start, end), 0);
      f.set(g.subarray(start, end), CHUNK);
      f.set(m.subarray(start, end), 2 * CHUNK);
      f.set(v.subarray(start, end), 3 * CHUNK);
      fns.adamw(0, ((len + 3) >> 2) << 4, PARAMS_BYTES);
      pn.set(f.subarray(0, len), start);
      mn.set(f.subarray(2 * CHUNK, 2 * CHUNK + len), start);
      vn.set(f.subarray(3 * CHUNK, 3 * CHUNK + len), start);
    }
  };
  const layerNorm: SimdMath["layerNorm"] = ({ x, gamma, beta, eps }, { y, xhat, rstd }) => {
    const w = gamma.length;
    if (w === 0 || w % 4 || 3 * w > CHUNK) return false;
    const f = regions().all, per = Math.floor(CHUNK / w);
    f.set(gamma, 2 * CHUNK);
    f.set(beta, 2 * CHUNK + w);
    for (let r0 = 0; r0 < rstd.length; r0 += per) {
      const rows = Math.min(per, rstd.length - r0), a = r0 * w, b = a + rows * w;
      f.set(x.subarray(a, b), 0);
      fns.layernorm(0, rows, w * 4, 0, eps);
      xhat.set(f.subarray(0, rows * w), a);
      y.set(f.subarray(CHUNK, CHUNK + rows * w), a);
      rstd.set(f.subarray(3 * CHUNK, 3 * CHUNK + rows), r0);
    }
    return true;
  };
  const layerNormGrad: SimdMath["layerNormGrad"] = ({ dy, xhat, rstd, gamma }, { dx, dgamma, dbeta }) => {
    const w = gamma.length;
    if (w === 0 || w % 4 || 3 * w > CHUNK) return false;
    const f = regions().all, per = Math.floor(CHUNK / w);
    f.set(gamma, 2 * CHUNK);
    f.fill(0, 2 * CHUNK + w, 2 * CHUNK + 3 * w);
    for (let r0 = 0; r0 < rstd.length; r0 += per) {
      const rows = Math.min(per, rstd.length - r0), a = r0 * w, b = a + rows * w;
      f.set(dy.subarray(a, b), 0);
      f.set(xhat.subarray(a, b), CHUNK);
      f.set(rstd.subarray(r0, r0 + rows), 3 * CHUNK);
      fns.layernorm_grad(0, rows, w * 4);
      dx.set(f.subarray(0, rows * w), a);
    }
    dgamma.set(f.subarray(2 * CHUNK + w, 2 * CHUNK + 2 * w));
    dbeta.set(f.subarray(2 * CHUNK + 2 * w, 2 * CHUNK + 3 * w));
    return true;
  };
  const workspace = (floats: number): Float32Array => {
    const need = WORKSPACE_BYTES + floats * 4;
    if (memBuffer().byteLength < need) mem.grow(Math.ceil((need - memBuffer().byteLength) / 65536));
    return new Float32Array(memBuffer(), WORKSPACE_BYTES, floats);
  };
  return {
    exp: unary("exp"),
    erf: unary("erf"),
    map,
    dropout,
    adamw,
    layerNorm,
    layerNormGrad,
    workspace,
    dropoutAt: (ptr, n, state, threshold, scale) => fns.dropout(ptr, n * 4, state | 0, threshold | 0, scale),
    softmaxRowsAt: (ptr, rows, cols, maskPtr) => {
      if (cols % 4) throw new Error(`softmaxRowsAt: ${cols} columns is not a multiple of 4`);
      fns.softmax_rows(ptr, rows, cols * 4, maskPtr);
    },
    softmaxGradRowsAt: (dsPtr, pPtr, rows, cols) => {
      if (cols % 4) throw new Error(`softmaxGradRowsAt: ${cols} columns is not a multiple of 4`);
      fns.softmax_grad_rows(dsPtr, pPtr, rows, cols * 4);
    },
  };
}
