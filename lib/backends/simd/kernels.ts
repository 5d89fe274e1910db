/**
 * The SIMD module's functions (listed in lib/backends/simd/simd.ts) and its memory layout. Every function has the
 * type (i32, i32, i32, i32, f32) -> () and works in place on 4-float vectors in the module's memory: per thread
 * ({@linkcode MAX_THREADS}) four regions of {@linkcode CHUNK} floats and 64 bytes of parameters, then the workspace
 * ({@linkcode WORKSPACE_BYTES} on), which grows on demand. {@linkcode simdModuleBytes} assembles the module.
 * @module
 */
import {
  A,
  Assembler,
  at,
  B,
  C,
  D0,
  D1,
  E,
  F0,
  F1,
  forBytes,
  forCount,
  forFloatBytes,
  FX,
  horizontal,
  I,
  I0,
  I1,
  I2,
  I3,
  moduleBytes,
  N,
  P0,
  P1,
  P2,
  P3,
  P4,
  R,
  T,
  V,
  X,
  Y,
  Z,
} from "./assembler.ts";
import { erfBody, erfRationalBody, expBody, expNegBody } from "./math.ts";

/** Float32 elements per chunk copied into the module's memory. */
export const CHUNK = 16384;

/** GELU of local X: `0.5 x (1 + erf(x / sqrt 2))`, on the stack. */
function geluBody(a: Assembler): number[] {
  return [
    ...I.get(X),
    ...a.splat(Math.SQRT1_2),
    ...I.fmul,
    ...I.set(Z),
    ...erfRationalBody(a, Z),
    ...a.splat(1),
    ...I.fadd,
    ...I.get(X),
    ...I.fmul,
    ...a.splat(0.5),
    ...I.fmul,
  ];
}

/**
 * GELU's gradient `dy (Phi(x) + x phi(x))` with `Phi(x) = 0.5 (1 + erf(x / sqrt 2))` and `phi(x) = exp(-x^2 / 2) /
 * sqrt(2 pi)` (erf's own `exp(-(x / sqrt 2)^2)`, reused), `dy` read one chunk region after `x`.
 */
function geluGradBody(a: Assembler): number[] {
  return [
    ...I.get(X),
    ...a.splat(Math.SQRT1_2),
    ...I.fmul,
    ...I.set(Z),
    ...erfBody(a, Z, true),
    ...a.splat(1),
    ...I.fadd,
    ...a.splat(0.5),
    ...I.fmul,
    ...I.get(X),
    ...a.splat(0.3989422804014327),
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
function mapFunction(a: Assembler, body: () => number[]): number[] {
  return a.func(() =>
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
export const GOLDEN = 0x6d2b79f5;

/**
 * dropout(P0 ptr, P1 nBytes, P2 state, P3 threshold, P4 scale): in place, `x[i] *= keep ? scale : 0` where draw `i`
 * of the mulberry32 stream whose state is P2 before the first draw is kept when `>= threshold` (unsigned): the
 * scalar generator of fused.ts's `applyDropoutMask`, four draws at a time.
 */
function dropoutFunction(a: Assembler): number[] {
  return a.func(() => [
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

/** `local to = P0 + I1 * P2`: the start of row I1 of rows of P2 bytes at P0. */
const rowStart = (to: number) => [...I.get(P0), ...I.get(I1), ...I.get(P2), ...I.mul, ...I.add, ...I.set(to)];

/** `I2` = the start of row I1 of rows of P2 bytes at P0, and with `count` 2 `I3` = the start of the next row. */
const pairStarts = (count: number) => [
  ...rowStart(I2),
  ...(count > 1 ? [...I.get(I2), ...I.get(P2), ...I.add, ...I.set(I3)] : []),
];

/** `I2 = P0 + I1 * P3`, `I3 = P1 + I1 * P3`: the starts of row I1 of two arrays (`ds`, `p`) of rows of P3 bytes. */
const pairRowStarts = () => [
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
];

/**
 * softmax_rows(P0 ptr, P1 rows, P2 rowBytes, P3 maskPtr): each row of `rowBytes / 4` floats (a multiple of 4)
 * becomes `softmax(row + mask)` in place.
 */
function softmaxRowsFunction(a: Assembler): number[] {
  return a.func(() =>
    forCount(I1, P1, [
      ...rowStart(I2),
      // z = x + mask (stored), running max in A
      ...a.splat(-Infinity),
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
      ...a.splat(0),
      ...I.set(A),
      ...forBytes(I0, P2, [
        ...at(I2, I0),
        ...at(I2, I0),
        ...I.load,
        ...I.get(Z),
        ...I.fsub,
        ...I.set(B),
        ...expNegBody(a, B),
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
function softmaxGradRowsFunction(a: Assembler): number[] {
  return a.func(() =>
    forCount(I1, P2, [
      ...pairRowStarts(),
      ...a.splat(0),
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

/**
 * softmax_exact_pre(P0 ptr, P1 rows, P2 rowBytes, P3 maskPtr), for rows of any width: each row becomes `x + mask -
 * max(x + mask)`, in float32 (the first step of lib/backends/simd/jobs.ts's `softmaxRowsExact`, which then runs `exp`
 * and softmax_exact_post). Scalar code with the arithmetic of the JavaScript loops it replaces (float32 results of
 * float32 operands are those of JavaScript's float64 operations rounded once), so the bits are theirs.
 */
function softmaxExactPreFunction(a: Assembler): number[] {
  return a.func(() =>
    forCount(I1, P1, [
      ...rowStart(I2),
      ...I.f32(-Infinity),
      ...I.set(F0), // the running max
      ...forFloatBytes(I0, P2, [
        ...at(I2, I0),
        ...at(I2, I0),
        ...I.loadF(0),
        ...at(P3, I0),
        ...I.loadF(0),
        ...I.faddS,
        ...I.tee(F1),
        ...I.storeF(0),
        // if (z > m) m = z
        ...I.get(F1),
        ...I.get(F0),
        ...I.get(F1),
        ...I.get(F0),
        ...I.fgtS,
        ...I.select,
        ...I.set(F0),
      ]),
      ...forFloatBytes(I0, P2, [
        ...at(I2, I0),
        ...at(I2, I0),
        ...I.loadF(0),
        ...I.get(F0),
        ...I.fsubS,
        ...I.storeF(0),
      ]),
    ])
  );
}

/**
 * softmax_exact_post(P0 ptr, P1 rows, P2 rowBytes): each row of `exp` values becomes `e * (1 / sum(e))`, the sum
 * added in float64 in row order and each product rounded once to float32, as the JavaScript loops compute it.
 */
function softmaxExactPostFunction(a: Assembler): number[] {
  return a.func(() =>
    forCount(I1, P1, [
      ...rowStart(I2),
      ...I.f64(0),
      ...I.set(D0),
      ...forFloatBytes(I0, P2, [...I.get(D0), ...at(I2, I0), ...I.loadF(0), ...I.promote, ...I.dadd, ...I.set(D0)]),
      ...I.f64(1),
      ...I.get(D0),
      ...I.ddiv,
      ...I.set(D1),
      ...forFloatBytes(I0, P2, [
        ...at(I2, I0),
        ...at(I2, I0),
        ...I.loadF(0),
        ...I.promote,
        ...I.get(D1),
        ...I.dmul,
        ...I.demote,
        ...I.storeF(0),
      ]),
    ])
  );
}

/**
 * softmax_grad_exact(P0 dsPtr, P1 pPtr, P2 rows, P3 rowBytes), for rows of any width: `ds = p * (ds - rowsum(ds *
 * p))` in place, in float64 (products of two float32 values are exact there) with one rounding to float32 per value,
 * as the JavaScript loops compute it.
 */
function softmaxGradExactFunction(a: Assembler): number[] {
  return a.func(() =>
    forCount(I1, P2, [
      ...pairRowStarts(),
      ...I.f64(0),
      ...I.set(D0),
      ...forFloatBytes(I0, P3, [
        ...I.get(D0),
        ...at(I2, I0),
        ...I.loadF(0),
        ...I.promote,
        ...at(I3, I0),
        ...I.loadF(0),
        ...I.promote,
        ...I.dmul,
        ...I.dadd,
        ...I.set(D0),
      ]),
      ...forFloatBytes(I0, P3, [
        ...at(I2, I0),
        ...at(I3, I0),
        ...I.loadF(0),
        ...I.promote,
        ...at(I2, I0),
        ...I.loadF(0),
        ...I.promote,
        ...I.get(D0),
        ...I.dsub,
        ...I.dmul,
        ...I.demote,
        ...I.storeF(0),
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

/** The locals of one row in {@linkcode layerNormFunction}: its address, sum, mean, `1 / sqrt(var + eps)`, scratch. */
interface NormRow {
  addr: number;
  acc: number;
  mean: number;
  rs: number;
  tmp: number;
}

/**
 * LayerNorm of `rows.length` rows (one or two) from row I1 on, their passes interleaved so that the rows' sums are
 * independent chains (each row's own sums run in the order one row alone would take: the same bits).
 */
function layerNormRows(a: Assembler, rows: NormRow[]): number[] {
  const Y1 = CHUNK * 4, G = 2 * CHUNK * 4, RS = 3 * CHUNK * 4;
  const each = (f: (r: NormRow, i: number) => number[]) => rows.flatMap(f);
  const vectors = (f: (r: NormRow) => number[]) => forBytes(I0, P2, each(f));
  return [
    ...pairStarts(rows.length),
    // sum (after x += residual, stored, when P4 != 0), mean
    ...each((r) => [...a.splat(0), ...I.set(r.acc)]),
    ...I.block,
    ...I.block,
    ...I.get(P4),
    ...I.f32(0),
    ...I.feqS,
    ...I.brIf(0),
    ...vectors((r) => [
      ...at(r.addr, I0),
      ...at(r.addr, I0),
      ...I.load,
      ...at(r.addr, I0),
      ...I.loadAt(Y1),
      ...I.fadd,
      ...I.tee(r.tmp),
      ...I.store,
      ...I.get(r.acc),
      ...I.get(r.tmp),
      ...I.fadd,
      ...I.set(r.acc),
    ]),
    ...I.br(1),
    ...I.end,
    ...vectors((r) => [...I.get(r.acc), ...at(r.addr, I0), ...I.load, ...I.fadd, ...I.set(r.acc)]),
    ...I.end,
    ...each((r) => rowMean(r.acc, r.mean)),
    // variance (two-pass), then rs = 1 / sqrt(var + eps), stored to region 3
    ...each((r) => [...a.splat(0), ...I.set(r.acc)]),
    ...vectors((r) => [
      ...at(r.addr, I0),
      ...I.load,
      ...I.get(r.mean),
      ...I.fsub,
      ...I.tee(r.tmp),
      ...I.get(r.tmp),
      ...I.fmul,
      ...I.get(r.acc),
      ...I.fadd,
      ...I.set(r.acc),
    ]),
    ...each((r, i) => [
      ...rowMean(r.acc, r.rs),
      ...a.splat(1),
      ...I.get(r.rs),
      ...I.get(C),
      ...I.fadd,
      ...I.sqrt,
      ...I.fdiv,
      ...I.set(r.rs),
      ...I.get(I1),
      ...I.i32(4),
      ...I.mul,
      ...I.get(P0),
      ...I.add,
      ...I.get(r.rs),
      ...I.lane(0),
      ...I.storeF(RS + 4 * i),
    ]),
    // xhat in place, y = xhat gamma + beta
    ...vectors((r) => [
      ...at(r.addr, I0),
      ...at(r.addr, I0),
      ...I.load,
      ...I.get(r.mean),
      ...I.fsub,
      ...I.get(r.rs),
      ...I.fmul,
      ...I.tee(r.tmp),
      ...I.store,
      ...at(r.addr, I0),
      ...I.get(r.tmp),
      ...at(P0, I0),
      ...I.loadAt(G),
      ...I.fmul,
      ...at(P3, I0),
      ...I.loadAt(G),
      ...I.fadd,
      ...I.storeAt(Y1),
    ]),
  ];
}

/**
 * layernorm(P0 base, P1 rows, P2 rowBytes, P3 residual, P4 eps) over the chunk regions of one thread (region 0 at
 * byte P0): rows of x in region 0 (plus, when P3 is not 0, the residual rows at the same place in region 1, added and
 * rounded first as tfjs's `add` does) become `xhat = (x - mean) / sqrt(var + eps)` in place, `y = xhat gamma + beta`
 * goes to region 1, `1 / sqrt(var + eps)` of each row to region 3; gamma and beta are at the start of region 2, beta
 * `rowBytes` after gamma. Two rows at a time (their sums interleaved), then a last odd row alone.
 */
function layerNormFunction(a: Assembler): number[] {
  const first: NormRow = { addr: I2, acc: A, mean: Z, rs: B, tmp: X };
  const second: NormRow = { addr: I3, acc: T, mean: V, rs: N, tmp: Y };
  return a.func(() => [
    ...invWidth(),
    ...I.get(P4),
    ...I.splatF,
    ...I.set(C),
    ...I.get(P3),
    ...I.fromU32,
    ...I.set(P4), // P4 = the residual flag (eps is in C)
    ...at(P0, P2),
    ...I.set(P3), // P3 = base + rowBytes: beta - G
    ...rowPairs(layerNormRows(a, [first, second]), layerNormRows(a, [first])),
  ]);
}

/**
 * Rows two at a time, `for (I1 = 0; I1 + 1 < P1; I1 += 2) pair`, then `single` for the last row of an odd count (I1
 * is the first row of the code's rows).
 */
function rowPairs(pair: number[], single: number[]): number[] {
  return [
    ...I.i32(0),
    ...I.set(I1),
    ...I.block,
    ...I.loop,
    ...I.get(I1),
    ...I.i32(1),
    ...I.add,
    ...I.get(P1),
    ...I.geU,
    ...I.brIf(1),
    ...pair,
    ...I.get(I1),
    ...I.i32(2),
    ...I.add,
    ...I.set(I1),
    ...I.br(0),
    ...I.end,
    ...I.end,
    ...I.block,
    ...I.get(I1),
    ...I.get(P1),
    ...I.geU,
    ...I.brIf(0),
    ...single,
    ...I.end,
  ];
}

/** The locals of one row in {@linkcode layerNormGradFunction}: address, the two sums, dy, xhat, dy gamma, rstd. */
interface NormGradRow {
  addr: number;
  sum: number;
  sumX: number;
  dy: number;
  xhat: number;
  dyg: number;
  rs: number;
}

/**
 * LayerNorm's gradient for `rows.length` rows (one or two) from row I1 on, their passes interleaved. Each row's sums
 * run in the order one row alone takes, and each column of the gamma and beta gradients takes the rows' terms in row
 * order, so the bits are those of one row at a time.
 */
function layerNormGradRows(a: Assembler, rows: NormGradRow[]): number[] {
  const H = CHUNK * 4, G = 2 * CHUNK * 4, RS = 3 * CHUNK * 4;
  const each = (f: (r: NormGradRow, i: number) => number[]) => rows.flatMap(f);
  const dbeta = [...I.get(P3), ...I.get(P2), ...I.add, ...I.get(I0), ...I.add]; // base + 2 rowBytes + I0 - G
  return [
    ...pairStarts(rows.length),
    // sum = sum(dy g), sumX = sum(dy g xhat); dgamma += dy xhat, dbeta += dy
    ...each((r) => [...a.splat(0), ...I.set(r.sum), ...a.splat(0), ...I.set(r.sumX)]),
    ...forBytes(I0, P2, [
      ...each((r) => [
        ...at(r.addr, I0),
        ...I.load,
        ...I.set(r.dy),
        ...at(r.addr, I0),
        ...I.loadAt(H),
        ...I.set(r.xhat),
        ...I.get(r.dy),
        ...at(P0, I0),
        ...I.loadAt(G),
        ...I.fmul,
        ...I.tee(r.dyg),
        ...I.get(r.sum),
        ...I.fadd,
        ...I.set(r.sum),
        ...I.get(r.dyg),
        ...I.get(r.xhat),
        ...I.fmul,
        ...I.get(r.sumX),
        ...I.fadd,
        ...I.set(r.sumX),
      ]),
      ...at(P3, I0),
      ...at(P3, I0),
      ...I.loadAt(G),
      ...each((r) => [...I.get(r.dy), ...I.get(r.xhat), ...I.fmul, ...I.fadd]),
      ...I.storeAt(G),
      ...dbeta,
      ...dbeta,
      ...I.loadAt(G),
      ...each((r) => [...I.get(r.dy), ...I.fadd]),
      ...I.storeAt(G),
    ]),
    ...each((r, i) => [
      ...rowMean(r.sum, r.sum),
      ...rowMean(r.sumX, r.sumX),
      ...I.get(I1),
      ...I.i32(4),
      ...I.mul,
      ...I.get(P0),
      ...I.add,
      ...I.loadF(RS + 4 * i),
      ...I.splatF,
      ...I.set(r.rs),
    ]),
    // dx = (dy g - mean(dy g) - xhat mean(dy g xhat)) rstd
    ...forBytes(
      I0,
      P2,
      each((r) => [
        ...at(r.addr, I0),
        ...at(r.addr, I0),
        ...I.load,
        ...at(P0, I0),
        ...I.loadAt(G),
        ...I.fmul,
        ...I.get(r.sum),
        ...I.fsub,
        ...at(r.addr, I0),
        ...I.loadAt(H),
        ...I.get(r.sumX),
        ...I.fmul,
        ...I.fsub,
        ...I.get(r.rs),
        ...I.fmul,
        ...I.store,
      ]),
    ),
  ];
}

/**
 * layernorm_grad(P0 base, P1 rows, P2 rowBytes) over the chunk regions of one thread (region 0 at byte P0): rows of
 * dy in region 0 become dx in place, with xhat in region 1, `1 / sqrt(var + eps)` per row in region 3, and in
 * region 2 gamma, then the gamma and beta gradients (added to, `rowBytes` and `2 rowBytes` after gamma). Two rows at
 * a time, then a last odd row alone.
 */
function layerNormGradFunction(a: Assembler): number[] {
  const first: NormGradRow = { addr: I2, sum: A, sumX: B, dy: X, xhat: Y, dyg: V, rs: N };
  // (C holds the second row's dy in the first pass and its rstd after it.)
  const second: NormGradRow = { addr: I3, sum: T, sumX: Z, dy: C, xhat: R, dyg: FX, rs: C };
  return a.func(() => [
    ...invWidth(),
    ...at(P0, P2),
    ...I.set(P3), // base + rowBytes: the gamma gradient - G (the beta gradient is rowBytes further)
    ...rowPairs(layerNormGradRows(a, [first, second]), layerNormGradRows(a, [first])),
  ]);
}

/**
 * Four chunk regions (`map` uses the first two, `adamw` all four), then 64 bytes of parameters: the offset of the
 * parameters in a thread's region set.
 */
export const PARAMS_BYTES = 4 * CHUNK * 4;
/** One thread's region set: the four chunk regions and the parameters. Thread `t`'s starts at `t * THREAD_BYTES`. */
export const THREAD_BYTES = PARAMS_BYTES + 64;
/** The most threads that run the module's functions at once (each on its own region set). */
export const MAX_THREADS = 2;
/** Bytes below this offset are the threads' region sets; the workspace starts here. */
export const WORKSPACE_BYTES = MAX_THREADS * THREAD_BYTES;
/** The most 64 KiB pages the memory may grow to when it is shared between threads (4 GiB, wasm32's limit). */
export const MAX_SHARED_PAGES = 65536;

/**
 * adamw(P0 0, P1 nBytes, P2 paramsPtr): one AdamW step over the four chunk regions (parameter, gradient, first and
 * second moment), in place of the parameter and moments. The eight float parameters at P2: beta1, 1 - beta1,
 * beta2, 1 - beta2, 1 / sqrt(1 - beta2^t), eps, decay (1 - lr wd), step size (lr / (1 - beta1^t)).
 */
function adamwFunction(a: Assembler): number[] {
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
  return a.func(() => [
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

/** The module's functions, in export order, each assembled with the module's {@linkcode Assembler}. */
export const FUNCTIONS: [string, (a: Assembler) => number[]][] = [
  ["exp", (a) => mapFunction(a, () => expBody(a, X))],
  ["erf", (a) => mapFunction(a, () => erfBody(a))],
  ["gelu", (a) => mapFunction(a, () => geluBody(a))],
  ["gelu_grad", (a) => mapFunction(a, () => geluGradBody(a))],
  ["dropout", dropoutFunction],
  ["softmax_rows", softmaxRowsFunction],
  ["softmax_grad_rows", softmaxGradRowsFunction],
  ["adamw", adamwFunction],
  ["layernorm", layerNormFunction],
  ["layernorm_grad", layerNormGradFunction],
  ["softmax_exact_pre", softmaxExactPreFunction],
  ["softmax_exact_post", softmaxExactPostFunction],
  ["softmax_grad_exact", softmaxGradExactFunction],
];

/**
 * The module's bytes: its memory and {@linkcode FUNCTIONS}, all of type (i32, i32, i32, i32, f32) -> (). With
 * `withFma`, polynomials use relaxed SIMD's multiply-add (the module then validates only where the engine has it).
 * With `shared`, the module imports its memory (`env.memory`, shared, at most {@linkcode MAX_SHARED_PAGES} pages)
 * instead of defining it, so that instances on several threads work on one memory.
 */
export function simdModuleBytes(withFma = false, shared = false): Uint8Array<ArrayBuffer> {
  const a = new Assembler({ fma: withFma });
  return moduleBytes({
    pages: SIMD_PAGES,
    maxPages: shared ? MAX_SHARED_PAGES : undefined,
    functions: FUNCTIONS.map(([name, build]) => [name, build(a)]),
  });
}

/** The memory's initial size in 64 KiB pages: the region sets and one page of workspace. */
export const SIMD_PAGES = Math.ceil(WORKSPACE_BYTES / 65536) + 1;
