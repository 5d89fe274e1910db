/**
 * A minimal WebAssembly assembler, enough for lib/backends/simd/kernels.ts: LEB128 and float encodings, the
 * instructions used ({@linkcode I}), the local slots every function has, counted loops, and the
 * {@linkcode Assembler}, which holds the state of one module's assembly (fused multiply-add or not; the float
 * constants hoisted by the function being assembled). {@linkcode moduleBytes} lays out a module.
 * @module
 */

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

/** A SIMD-prefixed opcode (`0xfd` and the LEB128 sub-opcode). */
const simd = (op: number) => [0xfd, ...uleb(op)];

/**
 * The instructions used, encoded. Float vector constants go through {@linkcode Assembler.splat} (hoisted into
 * locals), not through this table.
 */
export const I = {
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
  splatF: simd(0x13), // f32x4.splat of the f32 on the stack
  splatI: simd(0x11), // i32x4.splat of the i32 on the stack
  lane: (l: number) => [...simd(0x1f), l], // f32x4.extract_lane
  constI: (a: number, b = a, c = a, d = a) => [...simd(0x0c), ...i32x4bytes(a, b, c, d)], // v128.const i32x4
  f32: (v: number) => [0x43, ...f32bytes(v)],
  faddS: [0x92],
  fsubS: [0x93],
  fdivS: [0x95],
  fmaxS: [0x97],
  fgtS: [0x5e], // f32.gt
  feqS: [0x5b], // f32.eq
  select: [0x1b],
  f64: (v: number) => [0x44, ...new Uint8Array(new Float64Array([v]).buffer)],
  dadd: [0xa0], // f64.add
  dsub: [0xa1],
  dmul: [0xa2],
  ddiv: [0xa3],
  promote: [0xbb], // f64.promote_f32
  demote: [0xb6], // f32.demote_f64
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
/** Parameter slots: four i32, then one f32. */
export const P0 = 0, P1 = 1, P2 = 2, P3 = 3, P4 = 4;
/** i32 locals. */
export const I0 = 5, I1 = 6, I2 = 7, I3 = 8;
/** v128 locals. */
export const X = 9, FX = 10, R = 11, Y = 12, T = 13, V = 14, N = 15, Z = 16, E = 17, A = 18, B = 19, C = 20;
/** f32 locals. */
export const F0 = 21, F1 = 22;
/** f64 locals. */
export const D0 = 23, D1 = 24;
/** The first hoisted constant's local. */
const FIRST_CONST = 25;

/** Options for {@linkcode Assembler}. */
export interface AssemblerOptions {
  /** Use relaxed SIMD's `f32x4.relaxed_madd` in {@linkcode Assembler.mulAdd} (fused on FMA CPUs). Default false. */
  fma?: boolean;
}

/**
 * The state of one module's assembly: whether multiply-adds are fused, and the float constants hoisted by the
 * function being assembled ({@linkcode Assembler.func}). Kernel builders take it as their first argument.
 */
export class Assembler {
  /** Whether the module is being assembled with `f32x4.relaxed_madd` (fused multiply-add where the CPU has it). */
  readonly fma: boolean;
  /**
   * Float constants of the function being assembled: {@linkcode Assembler.splat} reads a v128 local that the
   * function's prologue fills once, instead of rebuilding the vector (`f32.const` + `f32x4.splat`) on every loop
   * iteration. Null outside {@linkcode Assembler.func}.
   */
  #hoisted: number[] | null = null;

  constructor(options: AssemblerOptions = {}) {
    this.fma = options.fma ?? false;
  }

  /** The f32x4 vector of `v` (rounded to float32) on the stack: a hoisted constant's local inside `func`. */
  splat(v: number): number[] {
    const f = Math.fround(v);
    if (!this.#hoisted) return [0x43, ...f32bytes(f), ...simd(0x13)];
    let i = this.#hoisted.findIndex((h) => Object.is(h, f));
    if (i < 0) i = this.#hoisted.push(f) - 1;
    return [0x20, ...uleb(FIRST_CONST + i)];
  }

  /** A function body with its local declarations; `build` runs with constant hoisting on. */
  func(build: () => number[]): number[] {
    this.#hoisted = [];
    const code = build();
    const consts = this.#hoisted;
    this.#hoisted = null;
    const prologue = consts.flatMap((v, i) => [...I.f32(v), ...I.splatF, ...I.set(FIRST_CONST + i)]);
    const locals = [
      ...uleb(consts.length ? 5 : 4),
      ...uleb(4),
      0x7f, // i32 x 4
      ...uleb(12),
      0x7b, // v128 x 12
      ...uleb(2),
      0x7d, // f32 x 2
      ...uleb(2),
      0x7c, // f64 x 2
      ...(consts.length ? [...uleb(consts.length), 0x7b] : []),
    ];
    const all = [...locals, ...prologue, ...code, ...I.end];
    return [...uleb(all.length), ...all];
  }

  /** `p * local x + c` for `p` on the stack: one relaxed multiply-add, or a multiply and an add. */
  mulAdd(x: number, c: number): number[] {
    return this.fma
      ? [...I.get(x), ...this.splat(c), ...simd(0x105)]
      : [...I.get(x), ...I.fmul, ...this.splat(c), ...I.fadd];
  }

  /** The polynomial in local `x` with `coeffs` (highest power first), Horner's rule, on the stack. */
  horner(x: number, coeffs: number[]): number[] {
    return [...this.splat(coeffs[0]), ...coeffs.slice(1).flatMap((c) => this.mulAdd(x, c))];
  }
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
export const forBytes = (counter: number, end: number, body: number[]) => forLoop(counter, end, 16, body);

/** Over the bytes of floats: `for (counter = 0; counter < local end; counter += 4) body`. */
export const forFloatBytes = (counter: number, end: number, body: number[]) => forLoop(counter, end, 4, body);

/** Over rows: `for (counter = 0; counter < local end; counter++) body`. */
export const forCount = (counter: number, end: number, body: number[]) => forLoop(counter, end, 1, body);

/** The address `local a + local b` on the stack. */
export const at = (a: number, b: number) => [...I.get(a), ...I.get(b), ...I.add];

/** The horizontal sum (or max) of v128 local `v` as an f32 on the stack. */
export function horizontal(v: number, op: number[]): number[] {
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

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

function name(s: string): number[] {
  const b = [...new TextEncoder().encode(s)];
  return [...uleb(b.length), ...b];
}

/** What {@linkcode moduleBytes} assembles. */
export interface ModuleLayout {
  /** Initial memory size in 64 KiB pages (the memory can grow). */
  pages: number;
  /**
   * When given, the memory is imported (`env.memory`), shared, with this maximum in pages, instead of defined by the
   * module (it is exported as `memory` either way).
   */
  maxPages?: number;
  /** The exported functions, all of type (i32, i32, i32, i32, f32) -> (): name and encoded body (see `func`). */
  functions: [string, number[]][];
}

/**
 * A module's bytes: one function type, the functions, one memory (its own, or imported and shared with
 * `maxPages`), all exported (the memory as `memory`).
 */
export function moduleBytes(layout: ModuleLayout): Uint8Array<ArrayBuffer> {
  const { pages, functions, maxPages } = layout;
  const n = functions.length;
  // limits: 0x00 min (grows on demand), or 0x03 min max (shared, as threads require)
  const memoryType = maxPages === undefined ? [0x00, ...uleb(pages)] : [0x03, ...uleb(pages), ...uleb(maxPages)];
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
    ...(maxPages === undefined ? [] : section(2, [1, ...name("env"), ...name("memory"), 0x02, ...memoryType])),
    ...section(3, [n, ...new Array(n).fill(0)]),
    ...(maxPages === undefined ? section(5, [1, ...memoryType]) : []),
    ...section(7, [
      n + 1,
      ...name("memory"),
      0x02,
      0,
      ...functions.flatMap(([fname], i) => [...name(fname), 0x00, i]),
    ]),
    ...section(10, [n, ...functions.flatMap(([, body]) => body)]),
  ];
  return new Uint8Array(bytes);
}
