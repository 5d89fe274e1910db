/**
 * `withSignalsBlocked` (lib/backends/blas/signal_mask.ts): inside a wrapped call the calling thread blocks SIGINT,
 * SIGTERM and the other asynchronous signals but not the fault signals, and its mask is back as before afterwards,
 * also when the call throws. Reads the thread's mask with glibc's `pthread_sigmask` (Linux; skipped elsewhere).
 */
import { assert, assertEquals } from "../shared.ts";
import { withSignalsBlocked } from "../../lib/backends/blas/signal_mask.ts";

const ignore = Deno.build.os !== "linux";

const libc = ignore ? undefined : Deno.dlopen(
  "libc.so.6",
  {
    pthread_sigmask: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  } as const,
);

/** The calling thread's blocked signals, as `pthread_sigmask` reports them (an empty set added changes nothing). */
function blocked(): Set<number> {
  const empty = new Uint8Array(128), now = new Uint8Array(128);
  assertEquals(libc!.symbols.pthread_sigmask(0, empty, now), 0);
  const out = new Set<number>();
  for (let sig = 1; sig <= 64; sig++) if (now[(sig - 1) >> 3] & (1 << ((sig - 1) & 7))) out.add(sig);
  return out;
}

Deno.test({ name: "signal mask: asynchronous signals blocked during a wrapped call, restored after", ignore }, () => {
  const before = blocked();
  assert(!before.has(2), "SIGINT is not blocked to begin with");
  let inside = new Set<number>(), afterInner = new Set<number>();
  const fns = withSignalsBlocked({
    probe: (x: number) => {
      inside = blocked();
      return x * 2;
    },
    fail: () => {
      throw new Error("boom");
    },
    nested: () => {
      fns.probe(1);
      afterInner = blocked();
    },
    value: 7,
  });
  assertEquals(fns.probe(21), 42, "arguments and result pass through");
  assertEquals(fns.value, 7, "non-functions pass through");
  for (const sig of [1, 2, 3, 10, 12, 13, 14, 15, 17, 28]) assert(inside.has(sig), `signal ${sig} blocked inside`);
  for (const sig of [4, 5, 7, 8, 11, 31]) assert(!inside.has(sig), `fault signal ${sig} not blocked`);
  assertEquals(blocked(), before, "mask restored after the call");
  let threw = false;
  try {
    fns.fail();
  } catch (e) {
    threw = (e as Error).message === "boom";
  }
  assert(threw, "the error passes through");
  assertEquals(blocked(), before, "mask restored after a throwing call");
  // A wrapped call inside another (of the same object, as a library's symbols would be): still blocked after the inner
  // one returns, restored after the outer one.
  fns.nested();
  assert(afterInner.has(2), "SIGINT still blocked inside the outer call");
  assertEquals(blocked(), before, "mask restored after nested calls");
});
