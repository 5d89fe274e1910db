/**
 * The elementwise side of BERT training on the `blas` backend, in WebAssembly SIMD: a small module assembled here
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
 * {@linkcode simdMath} returns `undefined` when WebAssembly SIMD is not available; callers fall back to JS.
 * @module
 */

/** Float32 elements per chunk copied into the module's memory. */
const CHUNK = 16384;

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

// ---- a minimal WebAssembly assembler -------------------------------------------------------------

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function f32bytes(v: number): number[] {
  return [...new Uint8Array(new Float32Array([v]).buffer)];
}

function i32x4bytes(a: number, b = a, c = a, d = a): number[] {
  return [...new Uint8Array(new Int32Array([a, b, c, d]).buffer)];
}

/**
 * Float constants of the function being assembled: `I.splat(v)` reads a v128 local that the function's prologue
 * fills once, instead of rebuilding the vector (`f32.const` + `f32x4.splat`) on every loop iteration.
 */
let hoisted: number[] | null = null;

function splat(v: number): number[] {
  const f = Math.fround(v);
  if (!hoisted) return [0x43, ...f32bytes(f), ...simd(0x13)];
  let i = hoisted.findIndex((h) => Object.is(h, f));
  if (i < 0) i = hoisted.push(f) - 1;
  return [0x20, ...uleb(FIRST_CONST + i)];
}

const simd = (op: number) => [0xfd, ...uleb(op)];
const I = {
  get: (i: number) => [0x20, ...uleb(i)],
  set: (i: number) => [0x21, ...uleb(i)],
  tee: (i: number) => [0x22, ...uleb(i)],
  i32: (v: number) => [0x41, ...sleb(v)],
  add: [0x6a],
  mul: [0x6c],
  geU: [0x4f],
  brIf: (d: number) => [0x0d, ...uleb(d)],
  br: (d: number) => [0x0c, ...uleb(d)],
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  end: [0x0b],
  load: [...simd(0x00), 0x00, 0x00], // v128.load align=1 offset=0
  loadAt: (offset: number) => [...simd(0x00), 0x00, ...uleb(offset)], // v128.load align=1 offset
  store: [...simd(0x0b), 0x00, 0x00],
  storeAt: (offset: number) => [...simd(0x0b), 0x00, ...uleb(offset)], // v128.store align=1 offset
  loadF: (offset: number) => [0x2a, 0x02, ...uleb(offset)], // f32.load align=4 offset
  storeF: (offset: number) => [0x38, 0x02, ...uleb(offset)], // f32.store align=4 offset
  fromU32: [0xb3], // f32.convert_i32_u
  splat,
  splatF: simd(0x13), // f32x4.splat of the f32 on the stack
  splatI: simd(0x11), // i32x4.splat of the i32 on the stack
  lane: (l: number) => [...simd(0x1f), l], // f32x4.extract_lane
  constI: (a: number, b = a, c = a, d = a) => [...simd(0x0c), ...i32x4bytes(a, b, c, d)], // v128.const i32x4
  f32: (v: number) => [0x43, ...f32bytes(v)],
  faddS: [0x92],
  fdivS: [0x95],
  fmaxS: [0x97],
  lt: simd(0x43),
  gt: simd(0x44),
  geUI: simd(0x40), // i32x4.ge_u
  and: simd(0x4e),
  andnot: simd(0x4f),
  or: simd(0x50),
  xor: simd(0x51),
  bitselect: simd(0x52),
  nearest: simd(0x6a),
  shl: simd(0xab),
  shrS: simd(0xac),
  shrU: simd(0xad),
  iadd: simd(0xae),
  isub: simd(0xb1),
  imul: simd(0xb5),
  abs: simd(0xe0),
  neg: simd(0xe1),
  fadd: simd(0xe4),
  fsub: simd(0xe5),
  fmul: simd(0xe6),
  fdiv: simd(0xe7),
  sqrt: simd(0xe3),
  min: simd(0xea), // f32x4.pmin: b < a ? b : a (one minps; a NaN first operand stays NaN)
  max: simd(0xeb), // f32x4.pmax: a < b ? b : a
  truncSat: simd(0xf8),
};

// Every function has the type (i32 P0, i32 P1, i32 P2, i32 P3, f32 P4) -> () (JS may pass fewer arguments:
// the rest are 0), then the locals below, then the hoisted constants.
const P0 = 0, P1 = 1, P2 = 2, P3 = 3, P4 = 4;
const I0 = 5, I1 = 6, I2 = 7, I3 = 8; // i32
const X = 9, FX = 10, R = 11, Y = 12, T = 13, V = 14, N = 15, Z = 16, E = 17, A = 18, B = 19, C = 20; // v128
const FIRST_CONST = 21;

/** A function body with its local declarations; `build` runs with constant hoisting on. */
function func(build: () => number[]): number[] {
  hoisted = [];
  const code = build();
  const consts = hoisted;
  hoisted = null;
  const prologue = consts.flatMap((v, i) => [...I.f32(v), ...I.splatF, ...I.set(FIRST_CONST + i)]);
  const locals = [
    ...uleb(consts.length ? 3 : 2),
    ...uleb(4),
    0x7f, // i32 x 4
    ...uleb(12),
    0x7b, // v128 x 12
    ...(consts.length ? [...uleb(consts.length), 0x7b] : []),
  ];
  const all = [...locals, ...prologue, ...code, ...I.end];
  return [...uleb(all.length), ...all];
}

/** `for (counter = 0; counter < local end; counter += step) body` */
function forLoop(counter: number, end: number, step: number, body: number[]): number[] {
  return [
    ...I.i32(0),
    ...I.set(counter),
    ...I.block,
    ...I.loop,
    ...I.get(counter),
    ...I.get(end),
    ...I.geU,
    ...I.brIf(1),
    ...body,
    ...I.get(counter),
    ...I.i32(step),
    ...I.add,
    ...I.set(counter),
    ...I.br(0),
    ...I.end,
    ...I.end,
  ];
}

/** Over the bytes of 16-byte vectors: `for (counter = 0; counter < local end; counter += 16) body`. */
const forBytes = (counter: number, end: number, body: number[]) => forLoop(counter, end, 16, body);

/** Over rows: `for (counter = 0; counter < local end; counter++) body`. */
const forCount = (counter: number, end: number, body: number[]) => forLoop(counter, end, 1, body);

/** The address `local a + local b` on the stack. */
const at = (a: number, b: number) => [...I.get(a), ...I.get(b), ...I.add];

/** Whether the module is being assembled with `f32x4.relaxed_madd` (fused multiply-add where the CPU has it). */
let fma = false;

/** `p * local x + c` for `p` on the stack: one relaxed multiply-add, or a multiply and an add. */
function mulAdd(x: number, c: number): number[] {
  return fma ? [...I.get(x), ...I.splat(c), ...simd(0x105)] : [...I.get(x), ...I.fmul, ...I.splat(c), ...I.fadd];
}

/** The polynomial in local `x` with `coeffs` (highest power first), Horner's rule, on the stack. */
function horner(x: number, coeffs: number[]): number[] {
  return [...I.splat(coeffs[0]), ...coeffs.slice(1).flatMap((c) => mulAdd(x, c))];
}

/** The horizontal sum (or max) of v128 local `v` as an f32 on the stack. */
function horizontal(v: number, op: number[]): number[] {
  return [
    ...I.get(v),
    ...I.lane(0),
    ...I.get(v),
    ...I.lane(1),
    ...op,
    ...I.get(v),
    ...I.lane(2),
    ...op,
    ...I.get(v),
    ...I.lane(3),
    ...op,
  ];
}

/** 1.5 * 2^23: adding it rounds a float of magnitude below 2^22 to an integer, held in the low mantissa bits. */
const ROUND_MAGIC = 12582912;
/** Below this expf underflows to 0. */
const EXP_MIN = -87.33654475055310;
/** Above this expf overflows to +Infinity. */
const EXP_MAX = 88.72283905206835;

/**
 * The Cephes `expf` core shared by both exp bodies, on the stack: with local R holding the clamped argument and FX
 * the integer `n = round(x / ln 2)` as a float, `r = x - n ln 2` (in two parts) and
 * `y = (((((p0 r + p1) r + p2) r + p3) r + p4) r + p5) r^2 + r + 1 = exp(r)`. Overwrites R with `r`.
 */
function expPolynomial(): number[] {
  return [
    ...I.get(R),
    ...I.get(FX),
    ...I.splat(0.693359375),
    ...I.fmul,
    ...I.fsub,
    ...I.get(FX),
    ...I.splat(-2.12194440e-4),
    ...I.fmul,
    ...I.fsub,
    ...I.set(R),
    ...horner(R, [
      1.9875691500e-4,
      1.3981999507e-3,
      8.3334519073e-3,
      4.1665795894e-2,
      1.6666665459e-1,
      5.0000001201e-1,
    ]),
    ...I.get(R),
    ...I.get(R),
    ...I.fmul,
    ...I.fmul,
    ...I.get(R),
    ...I.fadd,
    ...I.splat(1),
    ...I.fadd,
  ];
}

/** `local src` clamped to [lo, hi] (pmin/pmax: NaN stays NaN), teed into R and left on the stack. */
const clampIntoR = (src: number, lo: number, hi: number) => [
  ...I.get(src),
  ...I.splat(hi),
  ...I.min,
  ...I.splat(lo),
  ...I.max,
  ...I.tee(R),
];

/** `result & ~(src < EXP_MIN)`: exact 0 below expf's range, for the result on the stack. */
const zeroBelowRange = (src: number) => [...I.get(src), ...I.splat(EXP_MIN), ...I.lt, ...I.andnot];

/**
 * exp of local `src` for arguments <= 0 (softmax after the max subtraction, `exp(-x^2)` in erf and GELU's
 * gradient), on the stack: the Cephes polynomial of {@linkcode expBody} with a cheaper range reduction. With
 * x in [-87.34, 0], n = round(x / ln 2) is in [-126, 0], so 2^n is one normal float built from n's bits, and n
 * itself comes from the round-by-adding-1.5*2^23 trick instead of a float-to-int conversion. Exact 0 below
 * -87.34 (where expf underflows), 1 for positive arguments (clamped to 0), NaN stays NaN. About 20 instructions
 * per 4 values instead of ~45. Uses locals FX, R, N.
 */
function expNegBody(src: number): number[] {
  return [
    // r = clamp(x, -87.34, 0); t = r log2e + magic (rounds); fx = t - magic
    ...clampIntoR(src, EXP_MIN, 0),
    ...I.splat(1.44269504088896341),
    ...I.fmul,
    ...I.splat(ROUND_MAGIC),
    ...I.fadd,
    ...I.tee(N),
    ...I.splat(ROUND_MAGIC),
    ...I.fsub,
    ...I.set(FX),
    ...expPolynomial(),
    // * 2^n: the bits of t minus those of the magic number are n; (n + 127) << 23 is 2^n
    ...I.get(N),
    ...I.constI(0x4b400000 - 127),
    ...I.isub,
    ...I.i32(23),
    ...I.shl,
    ...I.fmul,
    ...zeroBelowRange(src),
  ];
}

/** exp of the v128 in local `src`, result left on the stack (uses locals FX, R, Y). */
function expBody(src: number): number[] {
  return [
    // r = clamp(x, -87.33, 88.72); fx = nearest(r * log2e)
    ...clampIntoR(src, EXP_MIN, EXP_MAX),
    ...I.splat(1.44269504088896341),
    ...I.fmul,
    ...I.nearest,
    ...I.set(FX),
    ...expPolynomial(),
    // y * 2^h * 2^(n-h) with n = fx, h = n >> 1: both factors stay normal floats, built as bits (e + 127) << 23
    ...I.get(FX),
    ...I.truncSat,
    ...I.tee(N),
    ...I.i32(1),
    ...I.shrS,
    ...I.tee(FX), // FX now holds h (as i32 lanes)
    ...I.constI(127),
    ...I.iadd,
    ...I.i32(23),
    ...I.shl,
    ...I.fmul,
    ...I.get(N),
    ...I.get(FX),
    ...I.isub,
    ...I.constI(127),
    ...I.iadd,
    ...I.i32(23),
    ...I.shl,
    ...I.fmul,
    ...zeroBelowRange(src),
    // +Infinity above it: bitselect(inf, res, x > 88.72); NaN propagates through min/max
    ...I.set(Y),
    ...I.splat(Infinity),
    ...I.get(Y),
    ...I.get(src),
    ...I.splat(EXP_MAX),
    ...I.gt,
    ...I.bitselect,
  ];
}

/**
 * erf of the v128 in local `src` (A&S 7.1.26), result on the stack. With `keepExp`, `exp(-src^2)` (computed on
 * the way) is also left in local E.
 */
function erfBody(src = X, keepExp = false): number[] {
  return [
    // v = |x|; t = 1 / (1 + p v)
    ...I.get(src),
    ...I.abs,
    ...I.set(V),
    ...I.splat(1),
    ...I.splat(1),
    ...I.splat(0.3275911),
    ...I.get(V),
    ...I.fmul,
    ...I.fadd,
    ...I.fdiv,
    ...I.set(T),
    // e = exp(-v*v) into T2 = local V (v no longer needed after this)
    ...I.get(V),
    ...I.get(V),
    ...I.fmul,
    ...I.neg,
    ...I.set(V),
    ...expNegBody(V),
    ...(keepExp ? I.tee(E) : []),
    ...I.set(V), // V = exp(-v^2)
    // poly = ((((a5 t + a4) t + a3) t + a2) t + a1) t
    ...horner(T, [1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592]),
    ...I.get(T),
    ...I.fmul,
    // y = 1 - poly * e, then the sign of x: y | (x & 0x80000000)
    ...I.get(V),
    ...I.fmul,
    ...I.set(V),
    ...I.splat(1),
    ...I.get(V),
    ...I.fsub,
    ...I.get(src),
    ...I.constI(-0x80000000),
    ...I.and,
    ...I.or,
  ];
}

/** Numerator (odd, in x) and denominator (even) coefficients of {@linkcode erfRationalBody}, highest power first. */
const ERF_P = [
  -2.72614225801306e-10,
  2.77068142495902e-08,
  -2.10102402082508e-06,
  -5.69250639462346e-05,
  -7.34990630326855e-04,
  -2.95459980854025e-03,
  -1.60960333262415e-02,
];
const ERF_Q = [
  -1.45660718464996e-05,
  -2.13374055278905e-04,
  -1.68282697438203e-03,
  -7.37332916720468e-03,
  -1.42647390514189e-02,
];

/**
 * erf of local `src` as the rational function Eigen uses for float (`x P(x^2) / Q(x^2)` on x clamped to [-4, 4]:
 * 6.5e-8 from erf in exact arithmetic, ~4e-7 evaluated in float32), on the stack. No `exp`, so about half the cost
 * of {@linkcode erfBody}; used by the GELU forward pass. Uses locals T and V.
 */
function erfRationalBody(src: number): number[] {
  return [
    ...I.get(src),
    ...I.splat(4),
    ...I.min,
    ...I.splat(-4),
    ...I.max,
    ...I.tee(T),
    ...I.get(T),
    ...I.fmul,
    ...I.set(V),
    ...horner(V, ERF_P),
    ...I.get(T),
    ...I.fmul,
    ...horner(V, ERF_Q),
    ...I.fdiv,
  ];
}

/** GELU of local X: `0.5 x (1 + erf(x / sqrt 2))`, on the stack. */
function geluBody(): number[] {
  return [
    ...I.get(X),
    ...I.splat(Math.SQRT1_2),
    ...I.fmul,
    ...I.set(Z),
    ...erfRationalBody(Z),
    ...I.splat(1),
    ...I.fadd,
    ...I.get(X),
    ...I.fmul,
    ...I.splat(0.5),
    ...I.fmul,
  ];
}

/**
 * GELU's gradient `dy (Phi(x) + x phi(x))` with `Phi(x) = 0.5 (1 + erf(x / sqrt 2))` and `phi(x) = exp(-x^2 / 2) /
 * sqrt(2 pi)` (erf's own `exp(-(x / sqrt 2)^2)`, reused), `dy` read one chunk region after `x`.
 */
function geluGradBody(): number[] {
  return [
    ...I.get(X),
    ...I.splat(Math.SQRT1_2),
    ...I.fmul,
    ...I.set(Z),
    ...erfBody(Z, true),
    ...I.splat(1),
    ...I.fadd,
    ...I.splat(0.5),
    ...I.fmul,
    ...I.get(X),
    ...I.splat(0.3989422804014327),
    ...I.fmul,
    ...I.get(E),
    ...I.fmul,
    ...I.fadd,
    // dy at ptr + i + CHUNK * 4
    ...at(P0, I0),
    ...I.loadAt(CHUNK * 4),
    ...I.fmul,
  ];
}

/** A map function (P0 ptr, P1 nBytes): `body` turns local X (the vector at ptr + i) into the vector stored back. */
function mapFunction(body: () => number[]): number[] {
  return func(() =>
    forBytes(I0, P1, [
      ...at(P0, I0),
      ...at(P0, I0),
      ...I.load,
      ...I.set(X),
      ...body(),
      ...I.store,
    ])
  );
}

/** mulberry32's increment: its state after `i` draws is `seed + i * GOLDEN`. */
const GOLDEN = 0x6d2b79f5;

/**
 * dropout(P0 ptr, P1 nBytes, P2 state, P3 threshold, P4 scale): in place, `x[i] *= keep ? scale : 0` where draw `i`
 * of the mulberry32 stream whose state is P2 before the first draw is kept when `>= threshold` (unsigned): the
 * scalar generator of fused.ts's `applyDropoutMask`, four draws at a time.
 */
function dropoutFunction(): number[] {
  return func(() => [
    // A = state + (1, 2, 3, 4) * GOLDEN: the four lanes' states for their first draws
    ...I.get(P2),
    ...I.splatI,
    ...I.constI(GOLDEN, Math.imul(GOLDEN, 2), Math.imul(GOLDEN, 3), Math.imul(GOLDEN, 4)),
    ...I.iadd,
    ...I.set(A),
    ...I.get(P3),
    ...I.splatI,
    ...I.set(B),
    ...I.get(P4),
    ...I.splatF,
    ...I.set(C),
    ...forBytes(I0, P1, [
      ...at(P0, I0),
      // t = imul(s ^ (s >>> 15), s | 1)
      ...I.get(A),
      ...I.get(A),
      ...I.i32(15),
      ...I.shrU,
      ...I.xor,
      ...I.get(A),
      ...I.constI(1),
      ...I.or,
      ...I.imul,
      ...I.tee(T),
      // t = (t + imul(t ^ (t >>> 7), t | 61)) ^ t
      ...I.get(T),
      ...I.get(T),
      ...I.i32(7),
      ...I.shrU,
      ...I.xor,
      ...I.get(T),
      ...I.constI(61),
      ...I.or,
      ...I.imul,
      ...I.iadd,
      ...I.get(T),
      ...I.xor,
      ...I.tee(T),
      // keep = (t ^ (t >>> 14)) >=u threshold; m = keep ? scale : 0
      ...I.get(T),
      ...I.i32(14),
      ...I.shrU,
      ...I.xor,
      ...I.get(B),
      ...I.geUI,
      ...I.get(C),
      ...I.and,
      ...at(P0, I0),
      ...I.load,
      ...I.fmul,
      ...I.store,
      ...I.get(A),
      ...I.constI(Math.imul(GOLDEN, 4)),
      ...I.iadd,
      ...I.set(A),
    ]),
  ]);
}

/**
 * softmax_rows(P0 ptr, P1 rows, P2 rowBytes, P3 maskPtr): each row of `rowBytes / 4` floats (a multiple of 4)
 * becomes `softmax(row + mask)` in place.
 */
function softmaxRowsFunction(): number[] {
  return func(() =>
    forCount(I1, P1, [
      // I2 = row start
      ...I.get(P0),
      ...I.get(I1),
      ...I.get(P2),
      ...I.mul,
      ...I.add,
      ...I.set(I2),
      // z = x + mask (stored), running max in A
      ...I.splat(-3.4e38),
      ...I.set(A),
      ...forBytes(I0, P2, [
        ...at(I2, I0),
        ...at(I2, I0),
        ...I.load,
        ...at(P3, I0),
        ...I.load,
        ...I.fadd,
        ...I.tee(X),
        ...I.store,
        ...I.get(A),
        ...I.get(X),
        ...I.max,
        ...I.set(A),
      ]),
      ...horizontal(A, I.fmaxS),
      ...I.splatF,
      ...I.set(Z),
      // e = exp(z - max) (stored), running sum in A
      ...I.splat(0),
      ...I.set(A),
      ...forBytes(I0, P2, [
        ...at(I2, I0),
        ...at(I2, I0),
        ...I.load,
        ...I.get(Z),
        ...I.fsub,
        ...I.set(B),
        ...expNegBody(B),
        ...I.tee(C),
        ...I.store,
        ...I.get(A),
        ...I.get(C),
        ...I.fadd,
        ...I.set(A),
      ]),
      // e / sum
      ...I.f32(1),
      ...horizontal(A, I.faddS),
      ...I.fdivS,
      ...I.splatF,
      ...I.set(A),
      ...forBytes(I0, P2, [
        ...at(I2, I0),
        ...at(I2, I0),
        ...I.load,
        ...I.get(A),
        ...I.fmul,
        ...I.store,
      ]),
    ])
  );
}

/**
 * softmax_grad_rows(P0 dsPtr, P1 pPtr, P2 rows, P3 rowBytes): the softmax gradient in place of `ds` (the gradient
 * of the probabilities `p` on the way in): `ds = p * (ds - rowsum(ds * p))`, rows of `rowBytes / 4` floats.
 */
function softmaxGradRowsFunction(): number[] {
  return func(() =>
    forCount(I1, P2, [
      ...I.get(I1),
      ...I.get(P3),
      ...I.mul,
      ...I.tee(I3),
      ...I.get(P0),
      ...I.add,
      ...I.set(I2), // ds row
      ...I.get(I3),
      ...I.get(P1),
      ...I.add,
      ...I.set(I3), // p row
      ...I.splat(0),
      ...I.set(A),
      ...forBytes(I0, P3, [
        ...I.get(A),
        ...at(I2, I0),
        ...I.load,
        ...at(I3, I0),
        ...I.load,
        ...I.fmul,
        ...I.fadd,
        ...I.set(A),
      ]),
      ...horizontal(A, I.faddS),
      ...I.splatF,
      ...I.set(B),
      ...forBytes(I0, P3, [
        ...at(I2, I0),
        ...at(I3, I0),
        ...I.load,
        ...at(I2, I0),
        ...I.load,
        ...I.get(B),
        ...I.fsub,
        ...I.fmul,
        ...I.store,
      ]),
    ])
  );
}

/** `E = splat(1 / (P2 / 4))`: one over the row width in floats (P2 is the row length in bytes). */
const invWidth = () => [...I.f32(4), ...I.get(P2), ...I.fromU32, ...I.fdivS, ...I.splatF, ...I.set(E)];

/** `dst = splat(horizontal sum of local v) * E` (a row mean). */
const rowMean = (
  v: number,
  dst: number,
) => [...horizontal(v, I.faddS), ...I.splatF, ...I.get(E), ...I.fmul, ...I.set(dst)];

/**
 * layernorm(P0 0, P1 rows, P2 rowBytes, P3 unused, P4 eps) over the chunk regions: rows of x in region 0 become
 * `xhat = (x - mean) / sqrt(var + eps)` in place, `y = xhat gamma + beta` goes to region 1, `1 / sqrt(var + eps)`
 * of each row to region 3; gamma and beta are at the start of region 2, beta `rowBytes` after gamma.
 */
function layerNormFunction(): number[] {
  const Y1 = CHUNK * 4, G = 2 * CHUNK * 4, RS = 3 * CHUNK * 4;
  return func(() => [
    ...invWidth(),
    ...I.get(P4),
    ...I.splatF,
    ...I.set(C),
    ...forCount(I1, P1, [
      ...I.get(I1),
      ...I.get(P2),
      ...I.mul,
      ...I.set(I2),
      // mean
      ...I.splat(0),
      ...I.set(A),
      ...forBytes(I0, P2, [...I.get(A), ...at(I2, I0), ...I.load, ...I.fadd, ...I.set(A)]),
      ...rowMean(A, Z),
      // variance (two-pass), then B = 1 / sqrt(var + eps)
      ...I.splat(0),
      ...I.set(A),
      ...forBytes(I0, P2, [
        ...at(I2, I0),
        ...I.load,
        ...I.get(Z),
        ...I.fsub,
        ...I.tee(X),
        ...I.get(X),
        ...I.fmul,
        ...I.get(A),
        ...I.fadd,
        ...I.set(A),
      ]),
      ...rowMean(A, B),
      ...I.splat(1),
      ...I.get(B),
      ...I.get(C),
      ...I.fadd,
      ...I.sqrt,
      ...I.fdiv,
      ...I.set(B),
      ...I.get(I1),
      ...I.i32(4),
      ...I.mul,
      ...I.get(B),
      ...I.lane(0),
      ...I.storeF(RS),
      // xhat in place, y = xhat gamma + beta
      ...forBytes(I0, P2, [
        ...at(I2, I0),
        ...at(I2, I0),
        ...I.load,
        ...I.get(Z),
        ...I.fsub,
        ...I.get(B),
        ...I.fmul,
        ...I.tee(X),
        ...I.store,
        ...at(I2, I0),
        ...I.get(X),
        ...I.get(I0),
        ...I.loadAt(G),
        ...I.fmul,
        ...at(P2, I0),
        ...I.loadAt(G),
        ...I.fadd,
        ...I.storeAt(Y1),
      ]),
    ]),
  ]);
}

/**
 * layernorm_grad(P0 0, P1 rows, P2 rowBytes): rows of dy in region 0 become dx in place, with xhat in region 1,
 * `1 / sqrt(var + eps)` per row in region 3, and in region 2 gamma, then the gamma and beta gradients (added to,
 * `rowBytes` and `2 rowBytes` after gamma).
 */
function layerNormGradFunction(): number[] {
  const H = CHUNK * 4, G = 2 * CHUNK * 4, RS = 3 * CHUNK * 4;
  return func(() => [
    ...invWidth(),
    ...I.get(P2),
    ...I.get(P2),
    ...I.add,
    ...I.set(I3), // 2 rowBytes
    ...forCount(I1, P1, [
      ...I.get(I1),
      ...I.get(P2),
      ...I.mul,
      ...I.set(I2),
      // A = sum(dy g), B = sum(dy g xhat); dgamma += dy xhat, dbeta += dy
      ...I.splat(0),
      ...I.set(A),
      ...I.splat(0),
      ...I.set(B),
      ...forBytes(I0, P2, [
        ...at(I2, I0),
        ...I.load,
        ...I.set(X),
        ...at(I2, I0),
        ...I.loadAt(H),
        ...I.set(Y),
        ...I.get(X),
        ...I.get(I0),
        ...I.loadAt(G),
        ...I.fmul,
        ...I.tee(V),
        ...I.get(A),
        ...I.fadd,
        ...I.set(A),
        ...I.get(V),
        ...I.get(Y),
        ...I.fmul,
        ...I.get(B),
        ...I.fadd,
        ...I.set(B),
        ...at(P2, I0),
        ...at(P2, I0),
        ...I.loadAt(G),
        ...I.get(X),
        ...I.get(Y),
        ...I.fmul,
        ...I.fadd,
        ...I.storeAt(G),
        ...at(I3, I0),
        ...at(I3, I0),
        ...I.loadAt(G),
        ...I.get(X),
        ...I.fadd,
        ...I.storeAt(G),
      ]),
      ...rowMean(A, A),
      ...rowMean(B, B),
      ...I.get(I1),
      ...I.i32(4),
      ...I.mul,
      ...I.loadF(RS),
      ...I.splatF,
      ...I.set(N),
      // dx = (dy g - mean(dy g) - xhat mean(dy g xhat)) rstd
      ...forBytes(I0, P2, [
        ...at(I2, I0),
        ...at(I2, I0),
        ...I.load,
        ...I.get(I0),
        ...I.loadAt(G),
        ...I.fmul,
        ...I.get(A),
        ...I.fsub,
        ...at(I2, I0),
        ...I.loadAt(H),
        ...I.get(B),
        ...I.fmul,
        ...I.fsub,
        ...I.get(N),
        ...I.fmul,
        ...I.store,
      ]),
    ]),
  ]);
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

function name(s: string): number[] {
  const b = [...new TextEncoder().encode(s)];
  return [...uleb(b.length), ...b];
}

/** Four chunk regions (`map` uses the first two, `adamw` all four), then 64 bytes of parameters. */
const PARAMS_BYTES = 4 * CHUNK * 4;
/** Bytes below this offset are the chunk regions and parameters; the workspace starts here. */
const WORKSPACE_BYTES = PARAMS_BYTES + 64;

/**
 * adamw(P0 0, P1 nBytes, P2 paramsPtr): one AdamW step over the four chunk regions (parameter, gradient, first and
 * second moment), in place of the parameter and moments. The eight float parameters at P2: beta1, 1 - beta1,
 * beta2, 1 - beta2, 1 / sqrt(1 - beta2^t), eps, decay (1 - lr wd), step size (lr / (1 - beta1^t)).
 */
function adamwFunction(): number[] {
  const G = CHUNK * 4, M = 2 * CHUNK * 4, VV = 3 * CHUNK * 4;
  const [b1, c1, b2, c2, invBc2, eps, decay, stepSize] = [FX, R, Y, T, V, N, Z, E];
  /** `moment = moment * beta + term * c` at region offset `region`, also kept in local `dst`. */
  const updateMoment = (region: number, beta: number, term: number[], c: number, dst: number) => [
    ...at(P0, I0),
    ...I.loadAt(region),
    ...I.get(beta),
    ...I.fmul,
    ...term,
    ...I.get(c),
    ...I.fmul,
    ...I.fadd,
    ...I.set(dst),
    ...at(P0, I0),
    ...I.get(dst),
    ...I.storeAt(region),
  ];
  return func(() => [
    ...[b1, c1, b2, c2, invBc2, eps, decay, stepSize].flatMap((local, i) => [
      ...I.get(P2),
      ...I.loadF(i * 4),
      ...I.splatF,
      ...I.set(local),
    ]),
    ...forBytes(I0, P1, [
      ...at(P0, I0),
      ...I.loadAt(G),
      ...I.set(X),
      // m' = m b1 + g c1; v' = v b2 + g g c2
      ...updateMoment(M, b1, [...I.get(X)], c1, A),
      ...updateMoment(VV, b2, [...I.get(X), ...I.get(X), ...I.fmul], c2, B),
      // p' = p decay - m' / (sqrt(v') invBc2 + eps) stepSize
      ...at(P0, I0),
      ...at(P0, I0),
      ...I.load,
      ...I.get(decay),
      ...I.fmul,
      ...I.get(A),
      ...I.get(B),
      ...I.sqrt,
      ...I.get(invBc2),
      ...I.fmul,
      ...I.get(eps),
      ...I.fadd,
      ...I.fdiv,
      ...I.get(stepSize),
      ...I.fmul,
      ...I.fsub,
      ...I.store,
    ]),
  ]);
}

/** The module's functions, in export order. */
const FUNCTIONS: [string, () => number[]][] = [
  ["exp", () => mapFunction(() => expBody(X))],
  ["erf", () => mapFunction(() => erfBody())],
  ["gelu", () => mapFunction(geluBody)],
  ["gelu_grad", () => mapFunction(geluGradBody)],
  ["dropout", dropoutFunction],
  ["softmax_rows", softmaxRowsFunction],
  ["softmax_grad_rows", softmaxGradRowsFunction],
  ["adamw", adamwFunction],
  ["layernorm", layerNormFunction],
  ["layernorm_grad", layerNormGradFunction],
];

/** The module's bytes: its memory and {@linkcode FUNCTIONS}, all of type (i32, i32, i32, i32, f32) -> (). */
export function simdModuleBytes(withFma = false): Uint8Array<ArrayBuffer> {
  fma = withFma;
  const pages = Math.ceil(WORKSPACE_BYTES / 65536) + 1;
  const n = FUNCTIONS.length;
  const bytes = [
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, [1, 0x60, 5, 0x7f, 0x7f, 0x7f, 0x7f, 0x7d, 0]), // type 0
    ...section(3, [n, ...new Array(n).fill(0)]),
    ...section(5, [1, 0x00, ...uleb(pages)]), // memory, min pages (grows on demand)
    ...section(7, [
      n + 1,
      ...name("memory"),
      0x02,
      0,
      ...FUNCTIONS.flatMap(([fname], i) => [...name(fname), 0x00, i]),
    ]),
    ...section(10, [n, ...FUNCTIONS.flatMap(([, build]) => build())]),
  ];
  return new Uint8Array(bytes);
}

let instance: SimdMath | undefined | null = null;

/** The vectorised functions, or undefined when WebAssembly SIMD is unavailable (or disabled by BERT_NO_SIMD). */
export function simdMath(): SimdMath | undefined {
  if (instance !== null) return instance;
  instance = undefined;
  try {
    if (Deno.env.get("BERT_NO_SIMD")) return instance;
  } catch { /* no --allow-env: keep SIMD */ }
  try {
    // Relaxed SIMD's multiply-add where the engine has it (fused on FMA CPUs); plain SIMD otherwise.
    let bytes = simdModuleBytes(true);
    if (!WebAssembly.validate(bytes)) bytes = simdModuleBytes(false);
    if (!WebAssembly.validate(bytes)) return instance;
    const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
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
    instance = {
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
  } catch {
    instance = undefined;
  }
  return instance;
}
