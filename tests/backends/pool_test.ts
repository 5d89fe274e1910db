/**
 * lib/backends/blas/pool.ts: disposed tensors' arrays are reused, and `poolShape` drops arrays sized for earlier input
 * shapes while keeping lengths that every shape requests (issue 16: a real `train` run on padding-trimmed batches
 * filled the pool to its 1 GiB cap with one set of activations per sequence length).
 */
import { assert, assertEquals } from "../shared.ts";
import {
  allocF32,
  capacityOf,
  clearPool,
  poolCapBytes,
  PooledCpuBackend,
  poolShape,
  poolStats,
} from "../../lib/backends/blas/pool.ts";

const backend = new PooledCpuBackend();

/** A pool array stored as a tensor's values and disposed: it goes back to the pool. */
function useAndDispose(length: number): Float32Array {
  const a = allocF32(length);
  const id = backend.write(a, [length], "float32");
  backend.disposeData(id);
  return a;
}

Deno.test("pool: a disposed tensor's array is reused for the same length", () => {
  clearPool();
  const a = useAndDispose(8192);
  assertEquals(poolStats().pooledBytes, 8192 * 4);
  const again = allocF32(8192);
  assert(again.buffer === a.buffer, "the same buffer comes back");
  assertEquals(again.length, 8192);
  assertEquals(poolStats().pooledBytes, 0);
});

Deno.test("pool: size classes of eight steps per power of two; arrays are views of exactly their length", () => {
  assertEquals([8192, 8193, 9216, 9217, 10_000, 20_000, 40_000].map(capacityOf), [
    8192,
    9216,
    9216,
    10240,
    10240,
    20480,
    40960,
  ]);
  for (let n = 4096; n < 300_000; n += 997) {
    const c = capacityOf(n);
    assert(c >= n && c <= n * 1.125, `capacity ${c} for ${n}`);
  }
  clearPool();
  const a = useAndDispose(9300); // class 10240
  assertEquals(poolStats().pooledBytes, 10240 * 4);
  const b = allocF32(10_000); // a batch one token longer: the same class, the same buffer, zeroed
  assert(b.buffer === a.buffer, "a nearby length reuses the buffer");
  assertEquals([b.length, b.byteOffset, b.buffer.byteLength], [10_000, 0, 10240 * 4]);
  assert(b.every((v) => v === 0), "zeroed");
});

Deno.test("pool: a shorter array reuses a free buffer up to twice its length, the smallest that fits", () => {
  clearPool();
  const big = allocF32(40_000), mid = allocF32(24_000); // classes 40960 and 24576, both in use
  const ids = [backend.write(big, [40_000], "float32"), backend.write(mid, [24_000], "float32")];
  ids.forEach((id) => backend.disposeData(id));
  assertEquals(poolStats().pooledBytes, (40960 + 24576) * 4);
  assert(allocF32(13_000).buffer === mid.buffer, "24576 is the smallest free class >= 13000, and <= 2 x 13000");
  assert(allocF32(13_000).buffer !== big.buffer, "40960 > 2 x 13000: a new buffer instead");
  assert(allocF32(21_000).buffer === big.buffer, "40960 <= 2 x 21000");
  assertEquals(poolStats().pooledBytes, 0);
});

Deno.test("pool: poolShape keeps the lengths the last shape requested and drops older ones", () => {
  clearPool();
  const SHARED = 10_000, A = 20_000, B = 30_000, C = 40_000;
  poolShape("before A"); // forget what earlier tests requested
  poolShape("A");
  const a1 = useAndDispose(A);
  const shared1 = useAndDispose(SHARED);
  const bytes = (...lengths: number[]) => lengths.reduce((s, n) => s + capacityOf(n) * 4, 0);
  assertEquals(poolStats().pooledBytes, bytes(A, SHARED));
  poolShape("B"); // A requested both: both kept, for the next shape to reuse
  assertEquals(poolStats().pooledBytes, bytes(A, SHARED));
  const b1 = useAndDispose(B); // 30,000 > the 20,480 of A's class: a new array
  assert(b1.buffer !== a1.buffer, "A's array is too small for B");
  const shared2 = useAndDispose(SHARED);
  assert(shared2.buffer === shared1.buffer, "the kept array is reused under the next shape");
  poolShape("B"); // unchanged shape: nothing happens
  assertEquals(poolStats().pooledBytes, bytes(A, B, SHARED));
  poolShape("C"); // B requested B and SHARED, not A: A's array is dropped
  assertEquals(poolStats().pooledBytes, bytes(B, SHARED));
  const half = useAndDispose(B / 2 + 1000); // a shorter shape's array reuses B's (at most twice its size)
  assert(half.buffer === b1.buffer, "B's array serves an array of 16,000");
  useAndDispose(C);
  poolShape("D"); // C requested B's class (through the 16,000) and C's; SHARED's was not requested: dropped
  assertEquals(poolStats().pooledBytes, bytes(B, C));
  poolShape("E"); // D requested nothing: everything is dropped
  assertEquals(poolStats().pooledBytes, 0);
});

Deno.test("pool: BERT_POOL_MB that is not a number of megabytes is an error, not an unbounded pool", async () => {
  const pool = new URL("../../lib/backends/blas/pool.ts", import.meta.url).href;
  const run = async (mb: string) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", `await import(${JSON.stringify(pool)})`],
      env: { BERT_POOL_MB: mb },
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { ok: out.success, stderr: new TextDecoder().decode(out.stderr) };
  };
  const bad = await run("1GB");
  assert(!bad.ok && bad.stderr.includes('BERT_POOL_MB must be megabytes >= 0 (0: no pool), got "1GB"'), bad.stderr);
  assert((await run("0")).ok);
});

Deno.test("pool: the default cap is a quarter of the machine's memory, between 1 and 8 GiB (BERT_POOL_MB overrides)", () => {
  const GiB = 2 ** 30, mb = Deno.env.get("BERT_POOL_MB");
  if (mb) return assertEquals(poolCapBytes(), Number(mb) * 2 ** 20);
  const total = Deno.permissions.querySync({ name: "sys", kind: "systemMemoryInfo" }).state === "granted"
    ? Deno.systemMemoryInfo().total
    : 0;
  assertEquals(poolCapBytes(), Math.min(8 * GiB, Math.max(GiB, Math.floor(total / 4))));
  assert(poolCapBytes() >= GiB && poolCapBytes() <= 8 * GiB);
});
