/**
 * Randomness you can save and restore: a seeded PRNG whose whole state is one 32-bit integer, and the seeds of a
 * run. The data order of epoch `e` is a shuffle seeded by `(seed, e)`, the dropout masks of micro-batch `m` of
 * update `s` are seeded by `(seed, s, m)`, so a resumed run repeats the uninterrupted one exactly.
 * @module
 */

/** Mixes integers into one 32-bit seed (murmur3's finaliser over each value). */
export function mixSeed(...values: number[]): number {
  let h = 0x9e3779b9;
  for (const v of values) {
    h = Math.imul(h ^ (v >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** mulberry32: a tiny PRNG whose whole state is one 32-bit integer (`state`), so it serialises as a number. */
export class Rng {
  /** The complete state; assign a saved value to restore. */
  state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /**
   * The next 32-bit draw, as an unsigned integer: the one mulberry32 step of the project's TypeScript (the dropout
   * masks of lib/backends/blas/fused.ts and lib/backends/simd/ draw the same stream, written out there because
   * backends/ may not import training/; tests/backends/simd_test.ts checks them against this one).
   */
  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/** A Fisher-Yates permutation of `0..n-1` drawn from `rng`. */
export function shuffledOrder(n: number, rng: Rng): Int32Array {
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

/** The rng state that orders epoch `epoch` of a run seeded `seed`. */
export function epochOrderState(seed: number, epoch: number): number {
  return mixSeed(seed, 0x0da7a, epoch);
}

/** The dropout seed of micro-batch `micro` of update `step`. */
export function dropoutSeed(seed: number, step: number, micro: number): number {
  return mixSeed(seed, 0xd20, step, micro);
}

/** The seed a task may use to build micro-batch `micro` of update `step` (e.g. dynamic masking). */
export function batchSeed(seed: number, step: number, micro: number): number {
  return mixSeed(seed, 0xba7c4, step, micro);
}
