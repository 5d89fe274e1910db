/**
 * The WebAssembly SIMD module (lib/backends/simd/simd.ts) against plain scalar references: the 4-lane dropout
 * generator must give the masks of the scalar mulberry32 stream (lib/training/rng.ts's `Rng`) bit for bit, and the row
 * softmax and its gradient must match double-precision results. Skips (with a message) when WebAssembly SIMD is unavailable.
 */
import { assert, assertEquals } from "../shared.ts";
import { simdMath, simdStatus } from "../../lib/backends/simd/simd.ts";
import { applyDropoutMask } from "../../lib/backends/blas/fused.ts";
import { Rng } from "../../lib/training/rng.ts";

const simd = simdMath();
if (!simd) console.warn("simd_test: skipped — WebAssembly SIMD is unavailable here");
const ignore = !simd;

/** mulberry32 one draw at a time (lib/training/rng.ts's `Rng`: the reference stream), as unsigned 32-bit integers. */
function mulberry32(seed: number): () => number {
  const rng = new Rng(seed);
  return () => rng.nextUint32();
}

function rand(n: number, seed: number): Float32Array {
  const next = mulberry32(seed);
  return Float32Array.from({ length: n }, () => next() / 2 ** 31 - 1);
}

Deno.test({ name: "simd: 4-lane dropout is the scalar mulberry32 mask, bit for bit, at any offset", ignore }, () => {
  for (const rate of [0, 0.1, 0.5, 0.999]) {
    for (const [n, offset] of [[64, 0], [16387, 0], [40001, 12345], [70, 2 ** 31 + 5]]) {
      const x = rand(n, n + offset);
      const threshold = Math.floor(rate * 2 ** 32), scale = Math.fround(1 / (1 - rate));
      // Reference: the stream's state after `offset` draws, then one draw per element.
      const seed = 987654321;
      const draw = mulberry32((seed + Math.imul(offset, 0x6d2b79f5)) | 0);
      const keep = Array.from({ length: n }, () => draw() >= threshold);
      const out = new Float32Array(n), mask = new Float32Array(n);
      applyDropoutMask(out, x, rate, seed, offset);
      applyDropoutMask(mask, undefined, rate, seed, offset);
      assertEquals(out, x.map((v, i) => v * (keep[i] ? scale : 0)), `rate ${rate}, n ${n}, offset ${offset}`);
      assertEquals(mask, Float32Array.from(keep, (k) => (k ? scale : 0)), `mask: rate ${rate}, n ${n}`);
      if (n > 10000) {
        const kept = keep.filter((k) => k).length / n;
        assert(Math.abs(kept - (1 - rate)) < 0.01, `kept fraction ${kept} at rate ${rate}`);
      }
    }
  }
});

Deno.test({ name: "simd: masked row softmax and its gradient match double-precision references", ignore }, () => {
  const s = simd!;
  const rows = 6, cols = 12;
  const x = rand(rows * cols, 7), mask = rand(cols, 8).map((v, j) => (j === 5 ? -1e4 : j === 9 ? -3.4e38 : v));
  const ws = s.workspace(2 * rows * cols + cols);
  const a = ws.subarray(0, rows * cols), m = ws.subarray(rows * cols, rows * cols + cols);
  a.set(x.map((v) => v * 30)); // large logits: the max subtraction matters
  m.set(mask);
  s.softmaxRowsAt(a.byteOffset, rows, cols, m.byteOffset);
  const p = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const z = Array.from({ length: cols }, (_, j) => Math.fround(x[r * cols + j] * 30) + mask[j]);
    const mx = Math.max(...z), e = z.map((v) => Math.exp(v - mx)), sum = e.reduce((u, v) => u + v, 0);
    for (let j = 0; j < cols; j++) p[r * cols + j] = e[j] / sum;
  }
  for (let i = 0; i < p.length; i++) assert(Math.abs(a[i] - p[i]) < 1e-6, `softmax[${i}] ${a[i]} vs ${p[i]}`);
  assertEquals(a[9], 0);
  // Gradient: ds = p * (g - sum(g * p)) with the SIMD probabilities as p.
  const ds = ws.subarray(rows * cols + cols, 2 * rows * cols + cols);
  const g = rand(rows * cols, 9);
  ds.set(g);
  const pf = Float64Array.from(a);
  s.softmaxGradRowsAt(ds.byteOffset, a.byteOffset, rows, cols);
  for (let r = 0; r < rows; r++) {
    let dot = 0;
    for (let j = 0; j < cols; j++) dot += g[r * cols + j] * pf[r * cols + j];
    for (let j = 0; j < cols; j++) {
      const i = r * cols + j, ref = pf[i] * (g[i] - dot);
      assert(Math.abs(ds[i] - ref) < 1e-6, `grad[${i}] ${ds[i]} vs ${ref}`);
    }
  }
  let threw = false;
  try {
    s.softmaxRowsAt(a.byteOffset, 1, 6, m.byteOffset);
  } catch {
    threw = true;
  }
  assert(threw, "a row length that is not a multiple of 4 is refused");
});

Deno.test({ name: "simd: a row whose every token is masked attends evenly, as softmax does (not NaN)", ignore }, () => {
  const s = simd!;
  const cols = 8;
  const ws = s.workspace(2 * cols);
  const a = ws.subarray(0, cols), m = ws.subarray(cols, 2 * cols);
  a.set([0.5, -2, 3, 0, 1, -1, 2, 0.25]);
  m.fill(-3.4028234663852886e38); // the model's mask value, float32's lowest: every score rounds to it
  s.softmaxRowsAt(a.byteOffset, 1, cols, m.byteOffset);
  // float64: the scores plus the mask are all -3.4028234663852886e38 once rounded to float32, so each gets 1/8.
  for (let j = 0; j < cols; j++) assertEquals(a[j], 1 / cols, `p[${j}]`);
});

Deno.test("simd: simdStatus says whether the kernels are in use, and why not (BERT_NO_SIMD in a child process)", async () => {
  const status = simdStatus();
  assertEquals(status.available, simd !== undefined);
  if (!status.available) assert(status.reason.length > 0, "a reason");
  const module = new URL("../../lib/backends/simd/simd.ts", import.meta.url).href;
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(
    script,
    `import { simdMath, simdStatus } from ${JSON.stringify(module)};\n` +
      `console.log(JSON.stringify({ math: simdMath() === undefined ? null : "loaded", status: simdStatus() }));\n`,
  );
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-env=BERT_NO_SIMD", script],
      env: { BERT_NO_SIMD: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert(out.success, new TextDecoder().decode(out.stderr));
    assertEquals(JSON.parse(new TextDecoder().decode(out.stdout)), {
      math: null,
      status: { available: false, reason: "disabled by BERT_NO_SIMD" },
    });
  } finally {
    await Deno.remove(script);
  }
});
