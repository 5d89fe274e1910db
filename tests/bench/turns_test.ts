/**
 * lib/bench/turns.ts: engines take turns step by step (order, warm steps, which steps count), rows come out per engine
 * with their own medians and CPU share, and PyTorch's side answers over its pipe or is skipped with a warning.
 */
import { assert, assertEquals, unitBenchShape } from "../shared.ts";
import { initBackend, tf } from "../../lib/backends/backend.ts";
import type { BenchShape } from "../../lib/bench/bench.ts";
import {
  MAX_WARM_STEPS,
  pytorchTurnEngines,
  takeTurns,
  tfjsTurnEngines,
  type TurnEngine,
} from "../../lib/bench/turns.ts";

await initBackend({ backend: "cpu", quiet: true });

const SMALL: BenchShape = unitBenchShape(8);

/** A fake engine whose n-th step "took" `times[n]` ms at `cpu` CPU seconds, logging its name at each step. */
function fake(name: string, times: number[], log: string[], cpuS = 0.01): TurnEngine {
  let n = 0;
  return {
    what: "infer",
    engine: name,
    threads: 1,
    step: () => {
      log.push(name);
      return Promise.resolve({ ms: times[n++], cpuS, peakRssMb: 100 + n });
    },
  };
}

Deno.test("turns: engines alternate step by step; warm-up turns and each turn's warm step are not measured", async () => {
  const log: string[] = [];
  // Per engine: turn 0 (warm-up turn: 2 steps), then turns 1-3 (a warm step, then the measured one).
  const a = fake("a", [900, 900, 800, 10, 800, 30, 800, 20], log);
  const b = fake("b", [900, 900, 700, 40, 700, 60, 700, 50], log, 0.02);
  const rows = await takeTurns(SMALL, [a, b], { steps: 3, warmup: 1, pauseMs: 0 });
  assertEquals(log.join(""), "aabb".repeat(4));
  assertEquals(rows.map((r) => [r.engine, r.msPerStep, r.minMs]), [["a", 20, 10], ["b", 50, 40]]);
  // CPU share: 3 x cpuS over the measured wall time; peak RSS: the engine's last report.
  assertEquals(rows.map((r) => Math.round(r.cpuPct!)), [Math.round(100 * 0.03 / 0.06), Math.round(100 * 0.06 / 0.15)]);
  assertEquals(rows.map((r) => r.peakRssMb), [108, 108]);
  assertEquals(rows[0].shape, "unit 4x8");
});

Deno.test("turns: each turn warms an engine until its warm steps took warmMs, at least warmPerTurn steps", async () => {
  const log: string[] = [];
  // a: 30 ms steps, so 4 warm steps reach 100 ms; b: 150 ms steps, so its one warm step does.
  const a = fake("a", new Array(10).fill(30), log);
  const b = fake("b", new Array(4).fill(150), log);
  const rows = await takeTurns(SMALL, [a, b], { steps: 2, warmup: 0, pauseMs: 0 });
  assertEquals(log.join(""), "aaaaabb".repeat(2));
  assertEquals(rows.map((r) => r.msPerStep), [30, 150]);
  // A step that reports no time at all stops at MAX_WARM_STEPS warm steps.
  const c = fake("c", new Array(MAX_WARM_STEPS + 1).fill(0), log);
  log.length = 0;
  await takeTurns(SMALL, [c], { steps: 1, warmup: 0, pauseMs: 0 });
  assertEquals(log.length, MAX_WARM_STEPS + 1);
});

Deno.test("turns: tfjs engines time real steps and leave no tensors behind", async () => {
  const before = tf.memory().numTensors;
  const t = await tfjsTurnEngines(SMALL, ["train", "infer", "infer-cls"], { engine: "tfjs cpu", threads: 1 });
  try {
    assertEquals(t.engines.map((e) => e.what), ["train", "infer", "infer-cls"]);
    const rows = await takeTurns(SMALL, t.engines, { steps: 2, warmup: 1, pauseMs: 0 });
    for (const r of rows) assert(r.msPerStep > 0 && r.minMs <= r.msPerStep && r.peakRssMb! > 0, JSON.stringify(r));
  } finally {
    t.dispose();
  }
  assertEquals(tf.memory().numTensors, before);
});

Deno.test("turns: PyTorch's side is skipped with a warning where its Python cannot start", async () => {
  const warn = console.warn, warned: string[] = [];
  console.warn = (m: string) => void warned.push(m);
  try {
    const p = await pytorchTurnEngines("tiny", "infer", [1], { python: "/nonexistent/python3", env: {} });
    assertEquals(p, undefined);
  } finally {
    console.warn = warn;
  }
  assert(warned.length === 1 && warned[0].includes("/nonexistent/python3"), warned.join("\n"));
});

const python = "/usr/bin/python3";
const torchHere = await new Deno.Command(python, { args: ["-c", "import torch"], stderr: "null" }).output()
  .then((o) => o.success, () => false);
Deno.test({
  name: "turns: PyTorch's --serve answers one timed step per line, per thread count (needs torch)",
  ignore: !torchHere,
}, async () => {
  const p = await pytorchTurnEngines("tiny", "infer", [1, 2], { python, env: { PATH: Deno.env.get("PATH") ?? "" } });
  assert(p, "PyTorch did not start");
  try {
    assertEquals(p.engines.map((e) => [e.what, e.threads]), [["infer", 1], ["infer", 2]]);
    for (const e of p.engines) {
      const c = await e.step();
      assert(e.engine.startsWith("pytorch ") && c.ms > 0 && c.cpuS! >= 0 && c.peakRssMb! > 50, JSON.stringify(c));
    }
  } finally {
    await p.close();
  }
});
if (!torchHere) console.log(`skipped the PyTorch --serve test: ${python} has no torch`);
