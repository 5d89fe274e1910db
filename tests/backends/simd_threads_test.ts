/**
 * The SIMD kernels split over two threads (lib/backends/simd/simd.ts's worker) against the same calls on one
 * thread: every split kernel must give the same bits, on sizes that are not multiples of 4 (nor of the split), and
 * the split must really happen (the worker's call count grows), also on memory that grew before the worker received
 * it or between its jobs. A child process with the worker running must exit by itself. Skips (with a message) when the worker cannot run here (no WebAssembly SIMD or shared memory).
 */
import { assert, assertEquals, assertSameBits as sameBits } from "../shared.ts";
import { setSimdThreads, simdMath, simdThreadsStatus, simdWorkerReady } from "../../lib/backends/simd/simd.ts";
import { JOB } from "../../lib/backends/simd/jobs.ts";
import { Rng } from "../../lib/training/rng.ts";
import { tf } from "../../lib/backends/backend.ts";
import { registerBlasBackend } from "../../lib/backends/blas/blas_backend.ts";
import { dropout, gelu, layerNorm } from "../../lib/backends/blas/fused.ts";
import { backwardBlocks, forwardBlocks, selfAttention } from "../../lib/backends/blas/attention.ts";

const simd = simdMath();
const ready = simd !== undefined && simdWorkerReady();
if (!ready) console.warn(`simd_threads_test: skipped — ${JSON.stringify(simdThreadsStatus())}`);
const ignore = !ready;

function rand(n: number, seed: number, scale = 3): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => (rng.nextUint32() / 2 ** 31 - 1) * scale);
}

/**
 * `f()` with the kernels on `threads` threads (splitting calls that touch at least `minWork` floats); asserts that
 * two threads did split (and one did not). With two threads `f` runs again (up to {@linkcode WORKER_TRIES} times in
 * all) until the worker has taken a chunk: on a busy machine the calling thread can finish every chunk of a small call
 * before the worker wakes, which is correct, but then nothing would show that the split runs give the same bits.
 */
function on<T>(threads: number, f: () => T, minWork?: number): T {
  const previous = setSimdThreads(threads, { minWork, waitForWorker: true });
  try {
    for (let attempt = 1;; attempt++) {
      const before = simdThreadsStatus();
      const out = f();
      const after = simdThreadsStatus();
      const split = after.splitCalls - before.splitCalls, chunks = after.workerChunks - before.workerChunks;
      if (threads === 1) {
        assertEquals([split, chunks], [0, 0], "one thread: no call is split");
        return out;
      }
      assert(split > 0, `two threads: no call was split`);
      if (chunks > 0) return out;
      assert(attempt < WORKER_TRIES, `two threads: ${split} calls split, the worker ran no chunk in ${attempt} tries`);
    }
  } finally {
    setSimdThreads(previous.threads, { minWork: previous.minWork, waitForWorker: false });
  }
}

/** How many times {@linkcode on} runs its function on two threads for the worker to take a chunk. */
const WORKER_TRIES = 20;

/** tests/shared.ts's `assertSameBits`, its two sides named after this file's usual comparison. */
const assertSameBits = (a: Float32Array, b: Float32Array, what: string, names = ["one thread", "two threads"]) =>
  sameBits(a, b, what, names);

Deno.test(
  { name: "simd threads: GELU, its gradient, dropout and AdamW split give the one-thread bits", ignore },
  () => {
    const s = simd!;
    for (const n of [65537, 100003, 131074]) {
      const x = rand(n, n), dy = rand(n, n + 1);
      const both = (threads: number) =>
        on(threads, () => {
          const gelu = new Float32Array(n), grad = new Float32Array(n);
          const masked = new Float32Array(n), mask = new Float32Array(n);
          s.gelu(x, gelu);
          s.geluGrad(x, dy, grad);
          s.dropout(masked, x, 123456789 + n, Math.floor(0.1 * 2 ** 32), Math.fround(1 / 0.9));
          s.dropout(mask, undefined, -98765, Math.floor(0.5 * 2 ** 32), 2);
          const out: [Float32Array, Float32Array, Float32Array] = [
            new Float32Array(n),
            new Float32Array(n),
            new Float32Array(n),
          ];
          s.adamw(
            { p: x, g: dy, m: rand(n, 5, 0.1), v: rand(n, 6, 0.01).map(Math.abs) },
            out,
            { beta1: 0.9, beta2: 0.999, invBc2: 3.1, eps: 1e-8, decay: 0.999, stepSize: 1e-3 },
          );
          return { gelu, grad, masked, mask, p: out[0], m: out[1], v: out[2] };
        });
      const one = both(1), two = both(2);
      for (const k of Object.keys(one) as (keyof typeof one)[]) assertSameBits(one[k], two[k], `${k} (n ${n})`);
      // Not vacuous: the kernels did compute (GELU(x) differs from x; some dropped, some kept).
      assert(one.gelu.some((v, i) => v !== x[i]) && one.mask.includes(0) && one.mask.includes(2), "kernels ran");
    }
  },
);

Deno.test({ name: "simd threads: LayerNorm and its gradient split give the one-thread bits", ignore }, () => {
  const s = simd!;
  for (const [rows, w] of [[513, 132], [1001, 128], [4097, 36]]) {
    const n = rows * w;
    const x = rand(n, rows), dy = rand(n, rows + 1), gamma = rand(w, 3), beta = rand(w, 4);
    const both = (threads: number) =>
      on(threads, () => {
        const y = new Float32Array(n), xhat = new Float32Array(n), rstd = new Float32Array(rows);
        assert(s.layerNorm({ x, gamma, beta, eps: 1e-12 }, { y, xhat, rstd }));
        const dx = new Float32Array(n), dgamma = new Float32Array(w), dbeta = new Float32Array(w);
        assert(s.layerNormGrad({ dy, xhat, rstd, gamma }, { dx, dgamma, dbeta }));
        // With a residual (x + dy normalised) and no statistics wanted (inference).
        const yRes = new Float32Array(n), rstdRes = new Float32Array(rows);
        assert(s.layerNorm({ x, gamma, beta, eps: 1e-12, residual: dy }, { y: yRes, rstd: rstdRes }));
        return { y, xhat, rstd, dx, dgamma, dbeta, yRes, rstdRes };
      });
    const one = both(1), two = both(2);
    for (const k of Object.keys(one) as (keyof typeof one)[]) assertSameBits(one[k], two[k], `${k} (${rows}x${w})`);
    // The residual's rows: LayerNorm of the float32 sums, as with the sum made first.
    const sum = x.map((v, i) => v + dy[i]), ySum = new Float32Array(n), rstdSum = new Float32Array(rows);
    on(
      1,
      () =>
        assert(s.layerNorm({ x: sum, gamma, beta, eps: 1e-12 }, { y: ySum, xhat: new Float32Array(n), rstd: rstdSum })),
    );
    assertSameBits(one.yRes, ySum, `y of x + residual (${rows}x${w})`);
    assertSameBits(one.rstdRes, rstdSum, `rstd of x + residual (${rows}x${w})`);
    // The row sums against a double-precision reference (float32 summation error only).
    for (let j = 0; j < w; j += 7) {
      let dg = 0, db = 0;
      for (let r = 0; r < rows; r++) dg += dy[r * w + j] * one.xhat[r * w + j], db += dy[r * w + j];
      assert(Math.abs(one.dgamma[j] - dg) < 1e-4 * rows, `dgamma[${j}] ${one.dgamma[j]} vs ${dg}`);
      assert(Math.abs(one.dbeta[j] - db) < 1e-4 * rows, `dbeta[${j}] ${one.dbeta[j]} vs ${db}`);
    }
  }
});

/**
 * The SIMD LayerNorm's arithmetic, emulated in float32 (`Math.fround` after every operation): each row summed in four
 * lanes, lane `l` taking elements `l, l + 4, ...`, then `((l0 + l1) + l2) + l3`; the mean and variance as that sum
 * times `1 / width`. It pins the kernel's bits to its documented order of operations.
 */
function layerNormLanes(
  x: Float32Array,
  residual: Float32Array | undefined,
  gamma: Float32Array,
  beta: Float32Array,
  eps: number,
): { y: Float32Array; xhat: Float32Array; rstd: Float32Array } {
  const f = Math.fround, w = gamma.length, rows = x.length / w, invW = f(4 / (4 * w)), e = f(eps);
  const y = new Float32Array(x.length), xhat = new Float32Array(x.length), rstd = new Float32Array(rows);
  const laneSum = (values: (j: number) => number) => {
    const lanes = [0, 0, 0, 0];
    for (let j = 0; j < w; j++) lanes[j % 4] = f(lanes[j % 4] + values(j));
    return f(f(f(f(lanes[0] + lanes[1]) + lanes[2]) + lanes[3]) * invW);
  };
  for (let r = 0; r < rows; r++) {
    const z = Float32Array.from({ length: w }, (_, j) => f(x[r * w + j] + (residual ? residual[r * w + j] : 0)));
    if (!residual) z.set(x.subarray(r * w, (r + 1) * w));
    const mean = laneSum((j) => z[j]);
    const variance = laneSum((j) => f(f(z[j] - mean) * f(z[j] - mean)));
    const rs = f(1 / f(Math.sqrt(f(variance + e))));
    rstd[r] = rs;
    for (let j = 0; j < w; j++) {
      const h = f(f(z[j] - mean) * rs);
      xhat[r * w + j] = h;
      y[r * w + j] = f(f(h * gamma[j]) + beta[j]);
    }
  }
  return { y, xhat, rstd };
}

/**
 * The SIMD LayerNorm gradient's arithmetic in float32, as {@linkcode layerNormLanes}: per row the lane sums of `dy g`
 * and `dy g xhat`, then `dx = ((dy g - mean(dy g)) - xhat mean(dy g xhat)) rstd`; the gamma and beta gradients summed
 * row by row over the first `ceil(rows / 2)` rows and over the rest, then the two parts added.
 */
function layerNormGradLanes(dy: Float32Array, xhat: Float32Array, rstd: Float32Array, gamma: Float32Array) {
  const f = Math.fround, w = gamma.length, rows = rstd.length, invW = f(4 / (4 * w)), half = Math.ceil(rows / 2);
  const dx = new Float32Array(dy.length), parts = [0, 1].map(() => [new Float32Array(w), new Float32Array(w)]);
  const laneSum = (values: (j: number) => number) => {
    const lanes = [0, 0, 0, 0];
    for (let j = 0; j < w; j++) lanes[j % 4] = f(lanes[j % 4] + values(j));
    return f(f(f(f(lanes[0] + lanes[1]) + lanes[2]) + lanes[3]) * invW);
  };
  for (let r = 0; r < rows; r++) {
    const o = r * w, dyg = (j: number) => f(dy[o + j] * gamma[j]);
    const mean = laneSum(dyg), meanX = laneSum((j) => f(dyg(j) * xhat[o + j]));
    const [dgamma, dbeta] = parts[r < half ? 0 : 1];
    for (let j = 0; j < w; j++) {
      dx[o + j] = f(f(f(dyg(j) - mean) - f(xhat[o + j] * meanX)) * rstd[r]);
      dgamma[j] = f(dgamma[j] + f(dy[o + j] * xhat[o + j]));
      dbeta[j] = f(dbeta[j] + dy[o + j]);
    }
  }
  const sum = (k: number) => parts[0][k].map((v, j) => f(v + parts[1][k][j]));
  return { dx, dgamma: sum(0), dbeta: sum(1) };
}

Deno.test({ name: "simd threads: LayerNorm and its gradient have the bits of their float32 emulation", ignore }, () => {
  const s = simd!;
  // Odd and even row counts (the kernel takes rows in pairs, then a last one alone), Tiny and Base widths; calls of more
  // than one chunk's rows (16,384 floats) are also split over two threads, in chunks of 128 and 21 rows here.
  const cases = [[1, 128], [2, 8], [37, 128], [64, 768], [5, 36], [1501, 128], [301, 768]].flatMap(([rows, w]) => {
    const n = rows * w, x = rand(n, rows), r = rand(n, rows + 1), gamma = rand(w, 3), beta = rand(w, 4);
    return [undefined, r].map((residual) => ({ rows, w, x, residual, gamma, beta }));
  });
  const runAll = (list: typeof cases) =>
    list.map(({ rows, w, x, residual, gamma, beta }) => {
      const y = new Float32Array(rows * w), xhat = new Float32Array(rows * w), rstd = new Float32Array(rows);
      assert(s.layerNorm({ x, gamma, beta, eps: 1e-12, residual }, { y, xhat, rstd }));
      // The gradient, for an upstream gradient of 0.5 - x (the emulation takes the kernel's own xhat and rstd).
      const dy = x.map((v) => 0.5 - v), dx = new Float32Array(rows * w);
      const dgamma = new Float32Array(w), dbeta = new Float32Array(w);
      assert(s.layerNormGrad({ dy, xhat, rstd, gamma }, { dx, dgamma, dbeta }));
      return { y, xhat, rstd, dy, dx, dgamma, dbeta };
    });
  const splittable = cases.filter((c) => c.rows * c.w > 16384);
  // (Two threads: all splittable calls in one go, so that the worker surely claims some of their chunks.)
  for (const [threads, list] of [[1, cases], [2, splittable]] as const) {
    const got = on(threads, () => runAll(list), 0);
    list.forEach(({ rows, w, x, residual, gamma, beta }, i) => {
      const expected = layerNormLanes(x, residual, gamma, beta, 1e-12);
      const what = `${rows}x${w}${residual ? " + residual" : ""}, ${threads} thread(s)`;
      for (const k of ["y", "xhat", "rstd"] as const) {
        assertSameBits(expected[k], got[i][k], `${k}, ${what}`, ["float32 emulation", "kernel"]);
      }
      const grad = layerNormGradLanes(got[i].dy, got[i].xhat, got[i].rstd, gamma);
      for (const k of ["dx", "dgamma", "dbeta"] as const) {
        assertSameBits(grad[k], got[i][k], `${k}, ${what}`, ["float32 emulation", "kernel"]);
      }
    });
  }
});

Deno.test({
  name: "simd threads: rows and blocks in module memory (softmax, its gradient, dropout, attention)",
  ignore,
}, () => {
  const s = simd!;
  const rows = 517, cols = 132, n = rows * cols;
  const x = rand(n, 11, 20), g = rand(n, 12), maskRow = rand(cols, 13).map((v, j) => (j % 9 === 4 ? -1e4 : v));
  const ws = () => s.workspace(3 * n + cols); // views are re-made after each call: the memory may grow
  const both = (threads: number) =>
    on(threads, () => {
      ws().set(x, 0);
      ws().set(maskRow, 3 * n);
      const base = ws().byteOffset;
      s.softmaxRowsAt(base, rows, cols, base + 12 * n);
      const p = ws().slice(0, n);
      ws().set(g, n);
      s.softmaxGradRowsAt(base + 4 * n, base, rows, cols);
      const ds = ws().slice(n, 2 * n);
      ws().set(x, 2 * n);
      s.dropoutAt(base + 8 * n + 4, n - 3, 424242, Math.floor(0.3 * 2 ** 32), Math.fround(1 / 0.7));
      const dropped = ws().slice(2 * n, 3 * n);
      return { p, ds, dropped };
    });
  const one = both(1), two = both(2);
  for (const k of Object.keys(one) as (keyof typeof one)[]) assertSameBits(one[k], two[k], k);
  assert(one.dropped.includes(0) && one.dropped[0] === x[0], "dropout ran, from element 1 on");

  // Attention blocks: softmax with each example's mask row, the probabilities copied out, dropout.
  const seq = 20, heads = 3, blocks = 7, block = seq * seq, firstBlock = 5;
  const scores = rand(blocks * block, 21, 10), masks = rand(3 * seq, 22);
  const attention = (threads: number) =>
    on(threads, () => {
      const w = s.workspace(3 * blocks * block + 3 * seq);
      w.set(scores, 0);
      w.set(masks, 3 * blocks * block);
      const base = w.byteOffset, probs = new Float32Array((firstBlock + blocks) * block);
      const drop = [1, 777, Math.floor(0.2 * 2 ** 32), Math.fround(1 / 0.8)];
      const work = 1e9; // split even this small a call
      s.split(
        {
          kind: JOB.attentionForward,
          arrays: [probs],
          nums: [base, seq, heads, base + 4 * 3 * blocks * block, firstBlock, 1, ...drop],
        },
        blocks,
        work,
      );
      const forward = s.workspace(blocks * block).slice();
      s.split(
        {
          kind: JOB.attentionProbs,
          arrays: [probs],
          nums: [base, base + 4 * blocks * block, seq, heads, firstBlock, ...drop],
        },
        blocks,
        work,
      );
      s.workspace(3 * blocks * block).set(scores, 2 * blocks * block);
      s.split(
        {
          kind: JOB.attentionGrad,
          arrays: [],
          nums: [base + 8 * blocks * block, base, seq, heads, firstBlock, ...drop],
        },
        blocks,
        work,
      );
      return { probs, forward, all: s.workspace(3 * blocks * block).slice() };
    });
  const a1 = attention(1), a2 = attention(2);
  for (const k of Object.keys(a1) as (keyof typeof a1)[]) assertSameBits(a1[k], a2[k], `attention ${k}`);
  assert(a1.probs.subarray(0, firstBlock * block).every((v) => v === 0), "blocks before firstBlock untouched");
  assert(a1.probs.subarray(firstBlock * block).every((v) => v >= 0 && v <= 1), "probabilities");
});

/**
 * The script of the memory-growth test below, run in a child process (the worker must start during it): a large
 * call starts the worker, the memory grows before the worker has received it, then attention jobs (the probability
 * copies read the worker's view of the memory, the dropout its instance's) run in the grown part, and again after
 * each of several further growths, on two threads and then on one; it prints whether the bits agree.
 */
function growthScript(): string {
  const simd = new URL("../../lib/backends/simd/simd.ts", import.meta.url).href;
  const jobs = new URL("../../lib/backends/simd/jobs.ts", import.meta.url).href;
  return `import { setSimdThreads, simdMath, simdThreadsStatus, simdWorkerReady } from ${JSON.stringify(simd)};
import { JOB } from ${JSON.stringify(jobs)};
const s = simdMath();
if (!s) { console.log(JSON.stringify({ skip: "no SIMD" })); Deno.exit(0); }
const seq = 64, heads = 3, blocks = 48, block = seq * seq, n = blocks * block, floats = 3 * n + 3 * seq;
let state = 12345;
const rand = () => ((state = (Math.imul(state, 1103515245) + 12345) | 0) >>> 8) / 2 ** 24;
const scores = Float32Array.from({ length: n }, () => 8 * rand() - 4);
const masks = Float32Array.from({ length: 3 * seq }, (_, i) => (i % 7 === 3 ? -1e4 : rand()));
const drop = [1, 4242, Math.floor(0.25 * 2 ** 32), Math.fround(1 / 0.75)];
const x = new Float32Array(200000).fill(1);
// Each round's blocks (3n floats, then the mask rows) lie past the end the memory had before the round.
const end = () => (s.workspace(0).buffer.byteLength - s.workspace(0).byteOffset) / 4;
let old = end();
setSimdThreads(2, { waitForWorker: true });
s.splits(1e9); // starts the worker (not ready yet: false)
s.workspace(old + floats); // at once: the memory grows before the worker has received it (it takes ms to start)
if (!simdWorkerReady()) { console.log(JSON.stringify({ skip: "no worker" })); Deno.exit(0); }
s.gelu(x, new Float32Array(x.length)); // a first job on both threads, in the region sets
const rounds = [];
for (let round = 0; round < 4; round++) {
  if (round > 0) s.workspace((old = end()) + floats); // grows the memory between jobs
  const run = (threads) => {
    setSimdThreads(threads, { waitForWorker: true });
    const before = simdThreadsStatus().workerChunks;
    const w = s.workspace(old + floats).subarray(old);
    w.fill(0);
    w.set(scores, 0);
    w.set(masks, 3 * n);
    const base = w.byteOffset, probs = new Float32Array(n);
    const forward = [base, seq, heads, base + 12 * n, 0, 0, ...drop];
    s.split({ kind: JOB.attentionForward, arrays: [probs], nums: forward }, blocks, 1e9);
    s.split({ kind: JOB.attentionProbs, arrays: [probs], nums: [base + 4 * n, base + 8 * n, seq, heads, 0, ...drop] }, blocks, 1e9);
    const out = s.workspace(old + floats).slice(old);
    return { probs, out, chunks: simdThreadsStatus().workerChunks - before };
  };
  // The worker claims chunks only once it is awake; on a busy machine the main thread can take all 48 blocks of a run
  // before it wakes, so the two-thread run is repeated (same inputs, same expected bits) until the worker took a part.
  let two = run(2);
  for (let tries = 1; two.chunks === 0 && tries < 50; tries++) two = run(2);
  const one = run(1);
  const same = (a, b) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
  rounds.push({
    round,
    sameProbs: same(one.probs, two.probs),
    sameMemory: same(one.out, two.out),
    probsRan: one.probs.every((v) => v >= 0 && v <= 1) && one.probs.some((v) => v > 0),
    copied: same(one.out.subarray(n, 2 * n), one.probs),
    workerChunks: [two.chunks, one.chunks],
  });
}
console.log(JSON.stringify({ rounds, status: simdThreadsStatus() }));
`;
}

Deno.test({
  name: "simd threads: jobs in memory grown before the worker received it, and grown between jobs",
  ignore,
}, async () => {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(script, growthScript());
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-ffi", script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert(out.success, `the child failed: ${stderr}`);
    const result = JSON.parse(new TextDecoder().decode(out.stdout));
    if (result.skip) return console.warn(`simd_threads_test: the memory-growth test is skipped — ${result.skip}`);
    assertEquals(stderr.includes("job failed"), false, `the worker failed: ${stderr}`);
    assertEquals(result.rounds.length, 4);
    for (const r of result.rounds) {
      assert(r.probsRan && r.copied, `round ${r.round}: the jobs ran (${JSON.stringify(r)})`);
      assert(r.workerChunks[0] > 0 && r.workerChunks[1] === 0, `round ${r.round}: split on two threads only`);
      assert(r.sameProbs && r.sameMemory, `round ${r.round}: two threads differ from one (${JSON.stringify(r)})`);
    }
  } finally {
    await Deno.remove(script);
  }
});

const blasInfo = ready ? registerBlasBackend() : undefined;
if (ready && !blasInfo) console.warn("simd_threads_test: the blas-backend test is skipped — no CBLAS library");

Deno.test({
  name: "simd threads: a BERT layer's fused ops on the blas backend (attention, GELU, LayerNorm, dropout, gradients)",
  ignore: !blasInfo,
}, async () => {
  await tf.setBackend("blas");
  const [batch, seq, heads, hidden] = [3, 36, 3, 48];
  const layer = (threads: number) =>
    on(threads, () =>
      tf.tidy(() => {
        const t = (shape: number[], seed: number) => tf.tensor(rand(shape.reduce((a, b) => a * b), seed), shape);
        const [q, k, v, dy] = [1, 2, 3, 4].map((i) => t([batch * seq, hidden], i));
        const maskBias = tf.tensor(Float32Array.from({ length: batch * seq }, (_, i) => (i % seq > 30 ? -1e4 : 0)), [
          batch,
          seq,
        ]);
        const gamma = t([hidden], 5), beta = t([hidden], 6);
        const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
          const ctx = selfAttention({ q: a, k: b, v: c, maskBias, batch, seq, heads, dropoutRate: 0.1, seed: 7 });
          return layerNorm(gelu(dropout(ctx, 0.2, 8)), gamma, beta, 1e-12);
        };
        const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(f(a, b, c), dy)))([q, k, v]);
        return [f(q, k, v), ...grads].map((x) => x.dataSync() as Float32Array);
      }), 1);
  const one = layer(1), two = layer(2);
  ["output", "dq", "dk", "dv"].forEach((name, i) => assertSameBits(one[i], two[i], name));
  assert(one[1].some((v) => v !== 0), "gradients are not all zero");
});

Deno.test({
  name:
    "simd threads: attention at lengths that are not a multiple of 4 gives the JavaScript loops' bits, 1 and 2 threads",
  ignore: !blasInfo,
}, () => {
  const cases: [number, number, number, number, number][] = [
    [3, 5, 2, 8, 0.1], // blocks of 25 floats: under dropout's 64-float JavaScript cut-off
    [2, 37, 2, 16, 0],
    [4, 50, 2, 32, 0.1],
    [3, 150, 2, 32, 0.1],
  ];
  for (const [batch, seq, heads, hidden, rate] of cases) {
    const n = batch * seq * hidden;
    const [q, k, v, dy] = [1, 2, 3, 4].map((s) => rand(n, s));
    // Example b has its last 2b positions masked out.
    const mask = Float32Array.from({ length: batch * seq }, (_, i) => (i % seq >= seq - 2 * (i / seq | 0) ? -1e4 : 0));
    const job = {
      batch,
      seq,
      heads,
      scale: 1 / Math.sqrt(hidden / heads),
      rate,
      seed: 7,
      blas: blasInfo!.blas,
      q,
      k,
      v,
    };
    const run = (simd: null | undefined) => {
      const context = new Float32Array(n), probs = new Float32Array(batch * heads * seq * seq);
      const dq = new Float32Array(n), dk = new Float32Array(n), dv = new Float32Array(n);
      forwardBlocks({ ...job, mask, probs, context, simd });
      backwardBlocks({ ...job, dy, probs, dq, dk, dv, simd });
      return { context, probs, dq, dk, dv };
    };
    const loops = run(null); // the JavaScript path
    assert(loops.dq.some((x) => x !== 0) && loops.context.some((x) => x !== 0), "outputs are not all zero");
    for (const threads of [1, 2]) {
      const kernels = on(threads, () => run(undefined), 0);
      for (const [name, values] of Object.entries(kernels)) {
        const what = `seq ${seq}, ${threads} thread(s), ${name}`;
        assertSameBits(loops[name as keyof typeof loops], values, what, ["JavaScript loops", "SIMD path"]);
      }
    }
  }
});

Deno.test({
  name: "simd threads: attention on packed q, k, v (one [tokens, 3 * hidden] array) gives the bits of three arrays",
  ignore: !blasInfo,
}, () => {
  // Aligned and unaligned lengths, one and several heads; the JavaScript path and the SIMD path on 1 and 2 threads.
  for (const [batch, seq, heads, hidden] of [[3, 37, 2, 16], [2, 64, 4, 32], [4, 8, 1, 8]]) {
    const n = batch * seq * hidden, rows = batch * seq;
    const [q, k, v] = [1, 2, 3].map((s) => rand(n, s));
    const packed = new Float32Array(3 * n);
    for (let r = 0; r < rows; r++) {
      [q, k, v].forEach((a, i) => packed.set(a.subarray(r * hidden, (r + 1) * hidden), (3 * r + i) * hidden));
    }
    const mask = Float32Array.from({ length: rows }, (_, i) => (i % seq >= seq - 2 * (i / seq | 0) ? -1e4 : 0));
    const attrs = { batch, seq, heads, scale: 1 / Math.sqrt(hidden / heads), rate: 0, seed: 0, blas: blasInfo!.blas };
    const run = (simd: null | undefined, pack: boolean) => {
      const context = new Float32Array(n);
      const arrays = pack
        ? { q: packed, k: packed.subarray(hidden), v: packed.subarray(2 * hidden), packed: true }
        : { q, k, v };
      forwardBlocks({ ...attrs, ...arrays, mask, context, simd });
      return context;
    };
    const loops = run(null, false);
    assert(loops.some((x) => x !== 0), "the context is not all zero");
    assertSameBits(loops, run(null, true), `seq ${seq}, JavaScript path`, ["three arrays", "packed"]);
    // (At lengths that are multiples of 4 the SIMD softmax has its own bits, so each path is compared with itself.)
    for (const threads of [1, 2]) {
      const [three, one] = on(threads, () => [run(undefined, false), run(undefined, true)], 0);
      assertSameBits(three, one, `seq ${seq}, SIMD path, ${threads} thread(s)`, ["three arrays", "packed"]);
    }
  }
  // Training never sees packed arrays: the backward pass refuses them.
  const z = new Float32Array(48);
  const job = { batch: 1, seq: 2, heads: 1, scale: 1, rate: 0, seed: 0, blas: blasInfo!.blas, packed: true };
  let refused = "";
  try {
    backwardBlocks({ ...job, q: z, k: z, v: z, dy: z, probs: z, dq: z, dk: z, dv: z });
  } catch (err) {
    refused = (err as Error).message;
  }
  assert(refused.includes("inference only"), `backwardBlocks on packed arrays: "${refused}"`);
});

Deno.test({ name: "simd threads: a process with the worker running exits by itself", ignore }, async () => {
  const module = new URL("../../lib/backends/simd/simd.ts", import.meta.url).href;
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(
    script,
    `import { setSimdThreads, simdMath, simdThreadsStatus, simdWorkerReady } from ${JSON.stringify(module)};\n` +
      `setSimdThreads(2);\nconst ok = simdWorkerReady();\n` +
      `const x = new Float32Array(200000).fill(1), y = new Float32Array(x.length);\nsimdMath().gelu(x, y);\n` +
      `console.log(JSON.stringify({ ok, y: y[199999], status: simdThreadsStatus() }));\n`,
  );
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-ffi", script],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    const out = await child.output();
    clearTimeout(timer);
    assert(out.success, `the child did not exit by itself: ${new TextDecoder().decode(out.stderr)}`);
    const result = JSON.parse(new TextDecoder().decode(out.stdout));
    assertEquals(result.ok, true);
    assertEquals(result.status.worker, "ready");
    assertEquals(result.status.splitCalls, 1);
    assert(result.status.workerChunks <= 13, `the worker ran ${result.status.workerChunks} of 13 chunks`);
    assert(Math.abs(result.y - 0.8413447) < 1e-6, `gelu(1) = ${result.y}`);
  } finally {
    await Deno.remove(script);
  }
});

Deno.test("simd threads: BERT_NO_SIMD_WORKER keeps the kernels on one thread, and says so", async () => {
  const module = new URL("../../lib/backends/simd/simd.ts", import.meta.url).href;
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(
    script,
    `import { setSimdThreads, simdMath, simdThreadsStatus } from ${JSON.stringify(module)};\n` +
      `setSimdThreads(2);\nconst x = new Float32Array(200000), y = new Float32Array(x.length);\n` +
      `simdMath()?.gelu(x, y);\nconsole.log(JSON.stringify(simdThreadsStatus()));\n`,
  );
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-env", "--allow-ffi", script],
      env: { BERT_NO_SIMD_WORKER: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert(out.success, new TextDecoder().decode(out.stderr));
    const status = JSON.parse(new TextDecoder().decode(out.stdout));
    assertEquals(status.worker, "unavailable");
    assertEquals(status.splitCalls, 0);
    if (simd) assertEquals(status.reason, "disabled by BERT_NO_SIMD_WORKER");
  } finally {
    await Deno.remove(script);
  }
});
