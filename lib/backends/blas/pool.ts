/**
 * Recycling of large Float32Array outputs for the `blas` backend.
 *
 * Every tfjs op returns a new tensor; on the cpu backend that is a new ArrayBuffer, whose pages the kernel
 * then faults in, and whose memory V8 frees only at a later garbage collection. For BERT training that is
 * hundreds of MB per step. Here kernels take their output arrays from a pool, and {@linkcode PooledCpuBackend}
 * gives an array back when its tensor is disposed — but only when nothing else can still see it:
 *
 * - the array was allocated by {@linkcode allocF32} and stored as exactly one tensor's storage
 *   (a second `write` of the same buffer, e.g. a `subarray` view made by a slice, disqualifies it);
 * - its values were never handed out by `readSync`/`read` (`dataSync()`, `data()`, `array()` ...), since the
 *   caller may keep using them after disposing the tensor.
 * @module
 */
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import type { backend_util, DataType } from "@tensorflow/tfjs-core";
import { envVar } from "../../io/env.ts";

/** Arrays shorter than this are left to V8 (small allocations are cheap). */
const POOL_MIN_LENGTH = 4096;

interface Owned {
  /** The array object handed out by allocF32. */
  array: Float32Array;
  /** Stored as a tensor's values already. */
  written: boolean;
  /** Can never be recycled. */
  poisoned: boolean;
}

const owned = new WeakMap<ArrayBuffer, Owned>();
/** Free buffers by capacity in floats (a size class: see {@linkcode capacityOf}). */
const free = new Map<number, ArrayBuffer[]>();
let pooledBytes = 0;
/**
 * The default of {@linkcode maxPooledBytes}: a quarter of the machine's memory, at least 1 GiB and at most 8 GiB; 1 GiB
 * where the process may not read the memory size (no `--allow-sys`; asked without a prompt). The pool only ever holds
 * one input shape's working set (see {@linkcode poolShape}), so the cap matters where that set is larger: BERT-Base
 * training at 32 x 128 tokens needs ~3.6 GB of arrays per step, and with a 1 GiB cap each step faulted in ~0.6-1.1 GB
 * of fresh pages (about 10% of its time) for the same peak memory.
 */
function defaultPoolBytes(): number {
  const GiB = 2 ** 30;
  let total = 0;
  try {
    if (Deno.permissions.querySync({ name: "sys", kind: "systemMemoryInfo" }).state === "granted") {
      total = Deno.systemMemoryInfo().total;
    }
  } catch {
    // Not readable here: the floor.
  }
  return Math.min(8 * GiB, Math.max(GiB, Math.floor(total / 4)));
}
/** The most bytes kept for reuse: `BERT_POOL_MB`, else {@linkcode defaultPoolBytes}; 0 disables recycling. */
const maxPooledBytes = (() => {
  const mb = envVar("BERT_POOL_MB");
  if (mb === undefined) return defaultPoolBytes();
  // A typo must not pass as NaN, which no size exceeds: the pool would then grow without limit.
  if (!(Number(mb) >= 0)) throw new Error(`BERT_POOL_MB must be megabytes >= 0 (0: no pool), got "${mb}"`);
  return Number(mb) * 2 ** 20;
})();
let stats = { reused: 0, allocated: 0, released: 0 };
/**
 * The capacity (in floats) of the buffer that holds an array of `length`: `length` rounded up to the next of eight
 * steps per power of two (at most 12.5% more). Arrays are views of exactly `length` on such buffers, so one buffer
 * serves the nearby lengths of a batch one token longer or shorter: a new sequence length reuses the buffers of the
 * last one instead of faulting in fresh pages (in this project's VMs a fresh 10 MB array costs milliseconds), which
 * made every new padding-trimmed batch shape 2-3x slower than a repeated one.
 */
export function capacityOf(length: number): number {
  const step = Math.max(1, 2 ** (Math.floor(Math.log2(length)) - 3));
  return Math.ceil(length / step) * step;
}

/** Capacities requested since the input shape last changed (see poolShape). */
let requestedNow = new Set<number>();
let shapeKey: string | undefined;

/**
 * A Float32Array of `length` from the pool (or new). With `zero: false` its contents are arbitrary: only
 * use that when every element is written before it is read.
 */
export function allocF32(length: number, zero = true): Float32Array {
  if (length < POOL_MIN_LENGTH) return new Float32Array(length);
  const capacity = reusableCapacity(length);
  requestedNow.add(capacity);
  const recycled = free.get(capacity)?.pop();
  if (recycled) {
    pooledBytes -= recycled.byteLength;
    stats.reused++;
    const array = new Float32Array(recycled, 0, length);
    owned.set(recycled, { array, written: false, poisoned: false });
    if (zero) array.fill(0);
    return array;
  }
  const array = new Float32Array(new ArrayBuffer(capacity * 4), 0, length);
  stats.allocated++;
  owned.set(array.buffer, { array, written: false, poisoned: false });
  return array;
}

/**
 * The capacity to take a buffer of for an array of `length`: its own size class if a buffer of it is free, else the
 * smallest free class up to twice its size (a batch shorter than the last one reuses the last one's buffers), else its
 * own class (a new buffer).
 */
function reusableCapacity(length: number): number {
  const own = capacityOf(length);
  if (free.get(own)?.length) return own;
  let best = own;
  for (const [capacity, list] of free) {
    if (list.length && capacity > own && capacity <= 2 * length && (best === own || capacity < best)) best = capacity;
  }
  return best;
}

function release(array: Float32Array): void {
  const buffer = array.buffer as ArrayBuffer;
  if (pooledBytes + buffer.byteLength > maxPooledBytes) return; // let V8 free it
  owned.delete(buffer);
  const capacity = buffer.byteLength / 4;
  let list = free.get(capacity);
  if (!list) free.set(capacity, list = []);
  list.push(buffer);
  pooledBytes += buffer.byteLength;
  stats.released++;
}

/**
 * Whether `values` may be updated in place: a pool array stored as exactly one tensor's storage and never handed
 * out by `dataSync()`/`data()` (nothing else can see it). The caller must also check that the tensor's data is not
 * shared (its refCount in the backend is 1).
 */
export function isPrivateArray(values: unknown): values is Float32Array {
  if (!(values instanceof Float32Array)) return false;
  const o = owned.get(values.buffer as ArrayBuffer);
  return !!o && o.written && !o.poisoned && o.array === values;
}

/**
 * Tells the pool the shape of the work's inputs (e.g. `"32x57"` for a batch of 32 rows trimmed to 57 tokens).
 * When it changes, the arrays of size classes that the last shape did not request are dropped: they were sized for
 * an older shape, while the last shape's (its activations, the weights' gradients and optimiser temporaries) stay,
 * and serve the next shape's arrays of the same or up to half the size. So the pool holds at most about one shape's
 * working set. Without this a training run on padding-trimmed batches, whose sequence length changes from batch to
 * batch, filled the pool with one set of activation arrays per length seen, up to its cap (then 1 GiB): that was
 * most of a real `train` run's 1.2-1.7 GB. (An earlier rule kept only classes requested under both of the last two
 * shapes; evaluation in length order, where every batch is a new, shorter shape, then allocated all its activations
 * afresh for every batch: SST-2 dev on BERT-Tiny spent about a third of its time faulting in new pages.)
 * Fixed-shape work (the bench, pre-training) never changes shape and keeps its pool.
 */
export function poolShape(key: string): void {
  if (key === shapeKey) return;
  shapeKey = key;
  for (const [capacity, list] of free) {
    if (requestedNow.has(capacity)) continue;
    for (const a of list) pooledBytes -= a.byteLength;
    free.delete(capacity);
  }
  requestedNow = new Set();
}

/** The most bytes the pool keeps for reuse (`BERT_POOL_MB`, else {@linkcode defaultPoolBytes}). */
export function poolCapBytes(): number {
  return maxPooledBytes;
}

/** Empties the pool (its arrays are then freed by V8's garbage collector). */
export function clearPool(): void {
  free.clear();
  pooledBytes = 0;
}

/** Counters since the last call: arrays reused from the pool, newly allocated, and given back. */
export function poolStats(): { reused: number; allocated: number; released: number; pooledBytes: number } {
  const s = { ...stats, pooledBytes };
  stats = { reused: 0, allocated: 0, released: 0 };
  return s;
}

function poison(values: unknown): void {
  if (values instanceof Float32Array) {
    const o = owned.get(values.buffer as ArrayBuffer);
    if (o) o.poisoned = true;
  }
}

/** The cpu backend with pool bookkeeping on write / read / dispose (see the module notes). */
export class PooledCpuBackend extends MathBackendCPU {
  /** Stores values; registers pool arrays as owned by this one tensor. */
  override write(values: backend_util.BackendValues, shape: number[], dtype: DataType): object {
    if (values instanceof Float32Array) {
      const o = owned.get(values.buffer as ArrayBuffer);
      if (o) {
        if (o.written || o.array !== values) o.poisoned = true;
        o.written = true;
      }
    }
    return super.write(values, shape, dtype);
  }

  /** Moves values in (engine transfers): such arrays are never recycled. */
  override move(
    dataId: object,
    values: backend_util.BackendValues,
    shape: number[],
    dtype: DataType,
    refCount: number,
  ): void {
    poison(values);
    super.move(dataId, values, shape, dtype, refCount);
  }

  /** Reads values; an array handed out to a caller is never recycled. */
  override readSync(dataId: object): backend_util.BackendValues {
    if (this.data.has(dataId)) poison(this.data.get(dataId).values);
    return super.readSync(dataId);
  }

  /** Frees a tensor's storage, giving a pool array back when it is safe (see the module notes). */
  override disposeData(dataId: object, force = false): boolean {
    const values = this.data.has(dataId) ? this.data.get(dataId).values : undefined;
    const done = super.disposeData(dataId, force);
    if (values instanceof Float32Array && !this.data.has(dataId)) {
      const o = owned.get(values.buffer as ArrayBuffer);
      if (o && !o.poisoned && o.written && o.array === values) release(values);
    }
    return done;
  }
}
