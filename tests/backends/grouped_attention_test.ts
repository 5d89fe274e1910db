/**
 * lib/backends/blas/attention.ts's `groupedSelfAttention`: examples of several lengths in one kernel call (what
 * lib/model/packing.ts runs) against one `selfAttention` / `packedSelfAttention` / `firstTokenAttention` call per
 * group on that group's rows, bit for bit; lengths that are and are not multiples of 4 (the SIMD path and the
 * JavaScript loops).
 */
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { registerBlasBackend } from "../../lib/backends/blas/blas_backend.ts";
import {
  firstTokenAttention,
  groupedSelfAttention,
  packedSelfAttention,
  selfAttention,
} from "../../lib/backends/blas/attention.ts";
import { assert, assertEquals, assertSameBits, assertThrows } from "../shared.ts";

const ignore = registerBlasBackend() === undefined;
if (ignore) console.log("grouped attention tests: no CBLAS library, skipped");

const GROUPS = [{ batch: 2, seq: 8 }, { batch: 1, seq: 5 }, { batch: 3, seq: 12 }, { batch: 2, seq: 7 }];
const [HEADS, HIDDEN] = [2, 16];
const ROWS = GROUPS.reduce((n, g) => n + g.batch * g.seq, 0);
const EXAMPLES = GROUPS.reduce((n, g) => n + g.batch, 0);

/** Deterministic values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 31 - 1);
}

/** The rows of each group (`[k*L, width]`), and the rows of each group's first tokens, as tensors. */
function perGroup(t: tf.Tensor2D): tf.Tensor2D[] {
  let row = 0;
  return GROUPS.map((g) => {
    const part = tf.slice(t, [row, 0], [g.batch * g.seq, t.shape[1]]);
    row += g.batch * g.seq;
    return part;
  });
}

Deno.test(
  { name: "groupedSelfAttention: one call over every group gives each group's own call's bits", ignore },
  async () => {
    await initBackend({ backend: "blas", quiet: true });
    const before = tf.memory().numTensors;
    tf.tidy(compareWithPerGroupCalls);
    assertEquals(tf.memory().numTensors, before, "tensors left behind");
  },
);

function compareWithPerGroupCalls(): void {
  const [q, k, v] = [1, 2, 3].map((s) => tf.tensor2d(values(ROWS * HIDDEN, s), [ROWS, HIDDEN]));
  // Every example's last key masked, and one inside the third group's first example.
  let row = 0;
  const mask = new Float32Array(ROWS);
  for (const g of GROUPS) {
    for (let b = 0; b < g.batch; b++) mask[row + (b + 1) * g.seq - 1] = -3.4028234663852886e38;
    row += g.batch * g.seq;
  }
  mask[GROUPS[0].batch * GROUPS[0].seq + GROUPS[1].seq + 3] = -3.4028234663852886e38;
  const maskBias = tf.tensor1d(mask);
  const masks = perGroup(tf.reshape(maskBias, [ROWS, 1]) as tf.Tensor2D);
  const [qs, ks, vs] = [q, k, v].map(perGroup);
  const expected = tf.concat(
    GROUPS.map((g, i) =>
      selfAttention({ q: qs[i], k: ks[i], v: vs[i], maskBias: masks[i], ...g, heads: HEADS, dropoutRate: 0 })
    ),
  );
  const grouped = groupedSelfAttention({ q, k, v, maskBias, groups: GROUPS, heads: HEADS });
  assertEquals(grouped.shape, [ROWS, HIDDEN]);
  assertSameBits(grouped.dataSync() as Float32Array, expected.dataSync() as Float32Array, "q, k, v apart");
  assert(
    expected.dataSync().some((x) => x !== 0),
    "the context must not be trivially zero",
  );

  // q, k and v side by side in one array.
  const qkv = tf.concat([q, k, v], 1) as tf.Tensor2D;
  const packed = groupedSelfAttention({ q: qkv, maskBias, groups: GROUPS, heads: HEADS });
  const packedExpected = tf.concat(
    perGroup(qkv).map((part, i) => packedSelfAttention({ qkv: part, maskBias: masks[i], ...GROUPS[i], heads: HEADS })),
  );
  assertSameBits(
    packed.dataSync() as Float32Array,
    packedExpected.dataSync() as Float32Array,
    "q, k, v side by side",
  );

  // First tokens: one query row per example, group after group.
  const firstRows = GROUPS.flatMap((g, i) => {
    const start = GROUPS.slice(0, i).reduce((n, h) => n + h.batch * h.seq, 0);
    return Array.from({ length: g.batch }, (_, b) => start + b * g.seq);
  });
  const cls = tf.gather(q, firstRows) as tf.Tensor2D; // [EXAMPLES, HIDDEN]
  const firstGrouped = groupedSelfAttention({
    q: cls,
    k,
    v,
    maskBias,
    groups: GROUPS,
    heads: HEADS,
    firstToken: true,
  });
  assertEquals(firstGrouped.shape, [EXAMPLES, HIDDEN]);
  let example = 0;
  const firstExpected = tf.concat(GROUPS.map((g, i) => {
    const qi = tf.slice(cls, [example, 0], [g.batch, HIDDEN]);
    example += g.batch;
    return firstTokenAttention({ q: qi, k: ks[i], v: vs[i], maskBias: masks[i], ...g, heads: HEADS });
  }));
  assertSameBits(firstGrouped.dataSync() as Float32Array, firstExpected.dataSync() as Float32Array, "first tokens");
}

Deno.test({ name: "groupedSelfAttention: inputs that do not fit the groups are refused by name", ignore }, async () => {
  await initBackend({ backend: "blas", quiet: true });
  const t = (rows: number, cols: number) => tf.zeros([rows, cols]) as tf.Tensor2D;
  const maskBias = tf.zeros([ROWS]);
  const cases: [() => unknown, string][] = [
    [
      () =>
        groupedSelfAttention({
          q: t(ROWS - 1, HIDDEN),
          k: t(ROWS, HIDDEN),
          v: t(ROWS, HIDDEN),
          maskBias,
          groups: GROUPS,
          heads: HEADS,
        }),
      "q has shape",
    ],
    [
      () =>
        groupedSelfAttention({
          q: t(ROWS, HIDDEN),
          k: t(ROWS, HIDDEN),
          v: t(ROWS, 8),
          maskBias,
          groups: GROUPS,
          heads: HEADS,
        }),
      "v has shape",
    ],
    [
      () => groupedSelfAttention({ q: t(ROWS, HIDDEN), k: t(ROWS, HIDDEN), maskBias, groups: GROUPS, heads: HEADS }),
      "give k and v both",
    ],
    [
      () => groupedSelfAttention({ q: t(ROWS, 3 * HIDDEN), maskBias: tf.zeros([3]), groups: GROUPS, heads: HEADS }),
      "maskBias has shape",
    ],
    [() => groupedSelfAttention({ q: t(ROWS, 3 * HIDDEN), maskBias, groups: GROUPS, heads: 5 }), "multiple of heads 5"],
  ];
  for (const [run, message] of cases) assertThrows(() => tf.tidy(() => run() as tf.Tensor), Error, message);
  maskBias.dispose();
});
