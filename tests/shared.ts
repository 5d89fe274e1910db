/**
 * Where the read-only shared test material lives (`../shared` from the project root) and whether it is present.
 * Tests that need it use `ignore: !HAVE_SHARED` and warn once, so a fresh clone's test run skips them with a
 * clear message instead of failing.
 * @module
 */

import type { BenchShape } from "../lib/bench/bench.ts";

/** Path of the shared material, relative to the project root (override with `BERT_SHARED`). */
export const SHARED: string = Deno.env.get("BERT_SHARED") ?? "../shared";

function present(): boolean {
  try {
    return Deno.statSync(SHARED).isDirectory;
  } catch {
    return false;
  }
}

/** True when {@linkcode SHARED} exists (tests needing it are skipped otherwise). */
export const HAVE_SHARED: boolean = present();

if (!HAVE_SHARED) {
  console.warn(`warning: ${SHARED} is absent: tests that need the shared datasets/golden files are skipped`);
}

/** Returns `SHARED/rel`, throwing a clear error when the shared folder is absent. */
export function requireShared(rel = ""): string {
  if (!HAVE_SHARED) {
    throw new Error(`${SHARED} is absent: this test needs the shared datasets (see ../shared/README.md)`);
  }
  return rel ? `${SHARED}/${rel}` : SHARED;
}

// ---- assertions (the project resolves only npm: specifiers, so no @std/assert; node:assert is built in) ----

import { deepStrictEqual } from "node:assert/strict";

/** Throws (with `message`) unless `condition` is truthy. */
export function assert(condition: unknown, message?: string): asserts condition {
  if (!condition) throw new Error(message ?? "assertion failed");
}

/** Deep strict equality (typed arrays element-wise, `Object.is` for numbers: NaN equals NaN, -0 differs from 0). */
export function assertEquals<T>(actual: unknown, expected: T, message?: string): void {
  try {
    deepStrictEqual(actual, expected);
  } catch (err) {
    if (message && err instanceof Error) err.message = `${message}: ${err.message}`;
    throw err;
  }
}

/**
 * The same bits (NaN included) in `a` and `b`, their own elements only (a pooled array's buffer can be longer); the
 * first difference, named after `names`, in the message.
 */
export function assertSameBits(a: Float32Array, b: Float32Array, what: string, names = ["expected", "actual"]): void {
  assertEquals(a.length, b.length, `${what}: length`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) {
    if (ua[i] !== ub[i]) throw new Error(`${what}[${i}]: ${names[0]} ${a[i]}, ${names[1]} ${b[i]}`);
  }
}

/** The largest absolute difference between two arrays of the same length. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assertEquals(a.length, b.length, "length mismatch");
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Asserts that `fn` throws an instance of `type` (default Error) and returns the error for further checks. */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  type?: new (...args: never[]) => E,
  includes?: string,
): E {
  try {
    fn();
  } catch (err) {
    return checkError(err, type, includes);
  }
  throw new Error(`expected a throw${includes ? ` mentioning "${includes}"` : ""}, but the function returned`);
}

/** Async version of {@linkcode assertThrows}. */
export async function assertRejects<E extends Error = Error>(
  fn: () => Promise<unknown>,
  type?: new (...args: never[]) => E,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (err) {
    return checkError(err, type, includes);
  }
  throw new Error(`expected a rejection${includes ? ` mentioning "${includes}"` : ""}, but the promise resolved`);
}

function checkError<E extends Error>(err: unknown, type?: new (...args: never[]) => E, includes?: string): E {
  const cls = type ?? (Error as unknown as new (...args: never[]) => E);
  if (!(err instanceof cls)) throw new Error(`expected ${cls.name}, got ${String(err)}`);
  if (includes !== undefined && !err.message.includes(includes)) {
    throw new Error(`error message "${err.message}" does not mention "${includes}"`);
  }
  return err;
}

/** Runs `fn` with a fresh temporary folder, removed afterwards whatever happens. */
export async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** erf in float64 (Taylor series below 3, continued fraction of erfc above): error < 1e-13. */
export function erf64(x: number): number {
  const a = Math.abs(x);
  let r: number;
  if (a < 3) {
    let term = a, sum = a;
    for (let n = 1; n < 100; n++) {
      term *= -a * a / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    r = sum * 2 / Math.sqrt(Math.PI);
  } else {
    let f = a;
    for (let k = 120; k >= 1; k--) f = a + (k / 2) / f;
    r = 1 - Math.exp(-a * a) / (Math.sqrt(Math.PI) * f);
  }
  return x < 0 ? -r : r;
}

/**
 * A one-layer BERT small enough for bench unit tests (hidden 16, 2 heads, batch 4) at `seqLength` tokens; its
 * vocabulary covers the ids `randomBatch` draws (from 1000 up).
 */
export function unitBenchShape(seqLength: number): BenchShape {
  return { name: "unit", layers: 1, hidden: 16, heads: 2, intermediate: 32, batch: 4, seqLength, vocabSize: 1100 };
}
