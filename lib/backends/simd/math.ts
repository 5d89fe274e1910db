/**
 * Vector math bodies for lib/backends/simd/kernels.ts: each leaves f32x4 results on the stack for the v128 in a
 * local. `exp` is Cephes `expf` (range reduction by ln 2, degree-6 polynomial, max relative error ~2e-7; exact 0
 * below -87.33, +Infinity above 88.72, NaN stays NaN) with a cheaper variant for arguments <= 0
 * ({@linkcode expNegBody}); `erf` is Abramowitz & Stegun 7.1.26 ({@linkcode erfBody}, the formula and constants of
 * tfjs's cpu kernel) or Eigen's rational function ({@linkcode erfRationalBody}).
 * @module
 */
import { type Assembler, E, FX, I, N, R, T, V, X, Y } from "./assembler.ts";

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
function expPolynomial(a: Assembler): number[] {
  return [
    ...I.get(R),
    ...I.get(FX),
    ...a.splat(0.693359375),
    ...I.fmul,
    ...I.fsub,
    ...I.get(FX),
    ...a.splat(-2.12194440e-4),
    ...I.fmul,
    ...I.fsub,
    ...I.set(R),
    ...a.horner(R, [
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
    ...a.splat(1),
    ...I.fadd,
  ];
}

/** `local src` clamped to [lo, hi] (pmin/pmax: NaN stays NaN), teed into R and left on the stack. */
const clampIntoR = (a: Assembler, src: number, lo: number, hi: number) => [
  ...I.get(src),
  ...a.splat(hi),
  ...I.min,
  ...a.splat(lo),
  ...I.max,
  ...I.tee(R),
];

/** `result & ~(src < EXP_MIN)`: exact 0 below expf's range, for the result on the stack. */
const zeroBelowRange = (a: Assembler, src: number) => [...I.get(src), ...a.splat(EXP_MIN), ...I.lt, ...I.andnot];

/**
 * exp of local `src` for arguments <= 0 (softmax after the max subtraction, `exp(-x^2)` in erf and GELU's
 * gradient), on the stack: the Cephes polynomial of {@linkcode expBody} with a cheaper range reduction. With
 * x in [-87.34, 0], n = round(x / ln 2) is in [-126, 0], so 2^n is one normal float built from n's bits, and n
 * itself comes from the round-by-adding-1.5*2^23 trick instead of a float-to-int conversion. Exact 0 below
 * -87.34 (where expf underflows), 1 for positive arguments (clamped to 0), NaN stays NaN. About 20 instructions
 * per 4 values instead of ~45. Uses locals FX, R, N.
 */
export function expNegBody(a: Assembler, src: number): number[] {
  return [
    // r = clamp(x, -87.34, 0); t = r log2e + magic (rounds); fx = t - magic
    ...clampIntoR(a, src, EXP_MIN, 0),
    ...a.splat(1.44269504088896341),
    ...I.fmul,
    ...a.splat(ROUND_MAGIC),
    ...I.fadd,
    ...I.tee(N),
    ...a.splat(ROUND_MAGIC),
    ...I.fsub,
    ...I.set(FX),
    ...expPolynomial(a),
    // * 2^n: the bits of t minus those of the magic number are n; (n + 127) << 23 is 2^n
    ...I.get(N),
    ...I.constI(0x4b400000 - 127),
    ...I.isub,
    ...I.i32(23),
    ...I.shl,
    ...I.fmul,
    ...zeroBelowRange(a, src),
  ];
}

/** exp of the v128 in local `src`, result left on the stack (uses locals FX, R, Y). */
export function expBody(a: Assembler, src: number): number[] {
  return [
    // r = clamp(x, -87.33, 88.72); fx = nearest(r * log2e)
    ...clampIntoR(a, src, EXP_MIN, EXP_MAX),
    ...a.splat(1.44269504088896341),
    ...I.fmul,
    ...I.nearest,
    ...I.set(FX),
    ...expPolynomial(a),
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
    ...zeroBelowRange(a, src),
    // +Infinity above it: bitselect(inf, res, x > 88.72); NaN propagates through min/max
    ...I.set(Y),
    ...a.splat(Infinity),
    ...I.get(Y),
    ...I.get(src),
    ...a.splat(EXP_MAX),
    ...I.gt,
    ...I.bitselect,
  ];
}

/**
 * erf of the v128 in local `src` (A&S 7.1.26), result on the stack. With `keepExp`, `exp(-src^2)` (computed on
 * the way) is also left in local E.
 */
export function erfBody(a: Assembler, src = X, keepExp = false): number[] {
  return [
    // v = |x|; t = 1 / (1 + p v)
    ...I.get(src),
    ...I.abs,
    ...I.set(V),
    ...a.splat(1),
    ...a.splat(1),
    ...a.splat(0.3275911),
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
    ...expNegBody(a, V),
    ...(keepExp ? I.tee(E) : []),
    ...I.set(V), // V = exp(-v^2)
    // poly = ((((a5 t + a4) t + a3) t + a2) t + a1) t
    ...a.horner(T, [1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592]),
    ...I.get(T),
    ...I.fmul,
    // y = 1 - poly * e, then the sign of x: y | (x & 0x80000000)
    ...I.get(V),
    ...I.fmul,
    ...I.set(V),
    ...a.splat(1),
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
export function erfRationalBody(a: Assembler, src: number): number[] {
  return [
    ...I.get(src),
    ...a.splat(4),
    ...I.min,
    ...a.splat(-4),
    ...I.max,
    ...I.tee(T),
    ...I.get(T),
    ...I.fmul,
    ...I.set(V),
    ...a.horner(V, ERF_P),
    ...I.get(T),
    ...I.fmul,
    ...a.horner(V, ERF_Q),
    ...I.fdiv,
  ];
}
