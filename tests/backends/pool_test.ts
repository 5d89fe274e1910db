/**
 * lib/backends/blas/pool.ts: disposed tensors' arrays are reused, and `poolShape` drops arrays sized for earlier input
 * shapes while keeping lengths that every shape requests (issue 16: a real `train` run on padding-trimmed batches
 * filled the pool to its 1 GiB cap with one set of activations per sequence length).
 */
import { assert, assertEquals } from "../shared.ts";
import { allocF32, clearPool, PooledCpuBackend, poolShape, poolStats } from "../../lib/backends/blas/pool.ts";

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
  assert(again === a, "the same array object comes back");
  assertEquals(poolStats().pooledBytes, 0);
});

Deno.test("pool: poolShape keeps lengths requested under both of the last two shapes and drops the rest", () => {
  clearPool();
  const SHARED = 10_000, A = 20_000, B = 30_000, C = 40_000;
  poolShape("A");
  useAndDispose(A);
  const shared1 = useAndDispose(SHARED);
  assertEquals(poolStats().pooledBytes, (A + SHARED) * 4);
  poolShape("B"); // the shape before A requested nothing: everything pooled so far is dropped
  assertEquals(poolStats().pooledBytes, 0);
  useAndDispose(B);
  const shared2 = useAndDispose(SHARED);
  assert(shared2 !== shared1, "dropped arrays are not handed out again");
  poolShape("B"); // unchanged shape: nothing happens
  assertEquals(poolStats().pooledBytes, (B + SHARED) * 4);
  poolShape("C"); // SHARED was requested under A and B: kept; B's activation-sized array is dropped
  assertEquals(poolStats().pooledBytes, SHARED * 4);
  assert(allocF32(SHARED) === shared2, "the kept array is reused");
  useAndDispose(C);
  assertEquals(poolStats().pooledBytes, C * 4);
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
