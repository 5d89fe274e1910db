/**
 * tfjs and PyTorch taking turns step by step (`deno task bench --pytorch`): a shared machine's speed drifts by tens of
 * percent within minutes, so figures measured minutes apart compare the machine's moods as much as the engines. Here
 * every engine runs one step per turn, so all of them meet the same drift, and their ratio holds. PyTorch runs in
 * its own process (tests/bench/pytorch_bench.py `--serve`), one step per line it is sent.
 * @module
 */
import {
  type BenchRow,
  type BenchShape,
  buildModel,
  cpuSeconds,
  disposeBatch,
  inferOnce,
  PeakMemory,
  randomBatch,
  stepRow,
  trainStepper,
} from "./bench.ts";
import { clearPool } from "../backends/blas/pool.ts";

/** What one step of a {@linkcode TurnEngine} cost, as the engine measured it. */
export interface StepCost {
  /** Wall milliseconds. */
  ms: number;
  /** CPU seconds (user + system) of the engine's process during the step, where known. */
  cpuS?: number;
  /** The engine's process's peak RSS so far, MB, where known. */
  peakRssMb?: number;
}

/** One engine of {@linkcode takeTurns}: the row it makes and its step. */
export interface TurnEngine {
  /** `train`, `infer` or `infer-cls`. */
  what: string;
  /** The engine column, e.g. `tfjs blas` or `pytorch 1.13.0`. */
  engine: string;
  /** Its threads, for the table. */
  threads?: number;
  /** Runs one step and says what it cost. */
  step(): Promise<StepCost>;
  /** Peak tensor MB, for tfjs engines. */
  peakTensorMb?(): number;
}

/** The most unmeasured steps {@linkcode takeTurns} runs per turn to reach its `warmMs`. */
export const MAX_WARM_STEPS = 20;

/**
 * Steps of several engines in turn. Per turn each engine waits `pauseMs` (default 150), runs unmeasured steps until it
 * has run `warmPerTurn` of them (default 1) and they took `warmMs` (default 100) by its own clock (at most
 * {@linkcode MAX_WARM_STEPS}), then one measured step; `warmup` whole turns go unmeasured first, then `steps` measured
 * ones. A shared machine's speed drifts by tens of percent within minutes; taking turns step by step exposes every
 * engine to the same drift, so their ratio holds where figures measured minutes apart do not. The pause and the
 * unmeasured steps are there because a step right after another process's is not a step as training or evaluation
 * runs them, back to back. Measured 2026-12-07 on the 2-vCPU EPYC, BERT-Tiny inference:
 * - OpenBLAS's idle threads spin for 2^28 cycles (~0.1 s) after a product, PyTorch's too, taking a core from the
 *   next engine: tfjs right after PyTorch ran at 129-149% CPU instead of 170%. Hence the pause.
 * - After 50-250 ms of idle, a tfjs step took 51-56 ms at 126-131% CPU against 37 ms at 169-173% back to back (the
 *   idle cores wake slowly); one unmeasured step first brought it back to 36-40 ms. Hence the warm step.
 * - On the Zen 5 EPYC (2026-12-07, night) one warm step was not enough: after a 150 ms pause and one 25 ms warm step a
 *   tfjs step took 29-31 ms against 23-24 back to back (2 threads; on 1 thread no such difference); after 2 warm steps
 *   24.8, after 4 23.2. PyTorch on 1 thread took 34.2-34.6 ms either way. Hence warming by time, not by count:
 *   100 ms is 4 of those tfjs steps and 3 of PyTorch's, and one step of anything that takes longer.
 *
 * With both, PyTorch's steps took as long with tfjs's turns between them as without. One row per engine, in order.
 */
export async function takeTurns(
  shape: BenchShape,
  engines: TurnEngine[],
  o: { steps: number; warmup: number; warmPerTurn?: number; warmMs?: number; pauseMs?: number },
): Promise<BenchRow[]> {
  const costs = engines.map(() => [] as StepCost[]);
  const [warmSteps, warmMs] = [o.warmPerTurn ?? 1, o.warmMs ?? 100];
  for (let turn = 0; turn < o.warmup + o.steps; turn++) {
    for (const [i, e] of engines.entries()) {
      await new Promise((r) => setTimeout(r, o.pauseMs ?? 150));
      let warmed = 0;
      for (let w = 0; w < MAX_WARM_STEPS && (w < warmSteps || warmed < warmMs); w++) warmed += (await e.step()).ms;
      const cost = await e.step();
      if (turn >= o.warmup) costs[i].push(cost);
    }
  }
  return engines.map((e, i) => {
    const c = costs[i], wallS = c.reduce((a, x) => a + x.ms, 0) / 1000;
    const cpu = c.every((x) => x.cpuS !== undefined) ? c.reduce((a, x) => a + x.cpuS!, 0) : undefined;
    const rss = c.at(-1)?.peakRssMb;
    const id = { what: e.what, engine: e.engine, threads: e.threads };
    return stepRow(
      shape,
      id,
      c.map((x) => x.ms),
      cpu === undefined ? undefined : 100 * cpu / wallS,
      rss,
      e.peakTensorMb?.(),
    );
  });
}

/**
 * tfjs's engines for {@linkcode takeTurns} on `shape`: a training step (`train`) and forward passes (`infer`,
 * `infer-cls`, on one model), for those of `whats` asked; `dispose` frees their models.
 */
export async function tfjsTurnEngines(
  shape: BenchShape,
  whats: string[],
  o: { engine: string; threads?: number },
): Promise<{ engines: TurnEngine[]; dispose(): void }> {
  const mem = new PeakMemory();
  mem.sample();
  const engines: TurnEngine[] = [], frees: (() => void)[] = [];
  const turn = (what: string, step: () => Promise<unknown>): TurnEngine => ({
    what,
    engine: o.engine,
    threads: o.threads,
    peakTensorMb: () => mem.tensors / 2 ** 20,
    step: async () => {
      const cpu0 = cpuSeconds(), t0 = performance.now();
      await step();
      const ms = performance.now() - t0, cpu1 = cpuSeconds();
      mem.sample();
      const cpuS = cpu0 === undefined || cpu1 === undefined ? undefined : cpu1 - cpu0;
      return { ms, cpuS, peakRssMb: mem.rss / 2 ** 20 };
    },
  });
  if (whats.includes("train")) {
    const t = await trainStepper(shape);
    engines.push(turn("train", t.step));
    frees.push(t.dispose);
  }
  const infers = ["infer", "infer-cls"].filter((w) => whats.includes(w));
  if (infers.length) {
    const model = await buildModel(shape), batch = randomBatch(shape);
    for (const w of infers) engines.push(turn(w, () => inferOnce(model, batch, w === "infer-cls")));
    frees.push(() => {
      model.dispose();
      disposeBatch(batch);
    });
  }
  return {
    engines,
    dispose: () => {
      for (const f of frees) f();
      clearPool();
    },
  };
}

/** How to start PyTorch's side: the Python with torch and the environment it runs in. */
export interface PytorchOptions {
  /** e.g. `/usr/bin/python3`. */
  python: string;
  /** Its whole environment (it starts with no other variables). */
  env: Record<string, string>;
}

/**
 * PyTorch's engines for {@linkcode takeTurns}: tests/bench/pytorch_bench.py `--serve` for one shape and `what`
 * (`train` or `infer`), one row per thread count, all steps in one process (its threads set per step). Undefined,
 * with a warning, where PyTorch cannot be started (no Python, no torch); `close` ends the process.
 */
export async function pytorchTurnEngines(
  shape: string,
  what: "train" | "infer",
  threads: number[],
  o: PytorchOptions,
): Promise<{ engines: TurnEngine[]; close(): Promise<void> } | undefined> {
  const script = new URL("../../tests/bench/pytorch_bench.py", import.meta.url).pathname;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(o.python, {
      args: [script, "--serve", "--shapes", shape, "--what", what],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      clearEnv: true,
      env: o.env,
    }).spawn();
  } catch (e) {
    console.warn(`--pytorch skipped: cannot run ${o.python} (${(e as Error).message}; use \`deno task bench\`)`);
    return undefined;
  }
  const lines = readLines(child.stdout), writer = child.stdin.getWriter();
  const stderr = new Response(child.stderr).text();
  const close = async () => {
    await writer.close().catch(() => {});
    await child.status;
  };
  const failed = async (why: string) => {
    await close();
    return new Error(
      `PyTorch (${script} --serve --shapes ${shape} --what ${what}): ${why}\n${(await stderr).slice(-2000)}`,
    );
  };
  const next = async (): Promise<Record<string, unknown>> => {
    const r = await lines.next();
    if (r.done) throw await failed("ended early");
    try {
      return JSON.parse(r.value);
    } catch {
      throw await failed(`expected a JSON line, read "${r.value.slice(0, 200)}"`);
    }
  };
  const hello = await next();
  if (typeof hello.error === "string") {
    console.warn(`--pytorch skipped: ${hello.error}`);
    await close();
    return undefined;
  }
  const engine = String(hello.engine);
  const engines = threads.map((t): TurnEngine => ({
    what,
    engine,
    threads: t,
    step: async () => {
      await writer.write(new TextEncoder().encode(`${t}\n`));
      const r = await next();
      return { ms: Number(r.ms), cpuS: Number(r.cpu_s), peakRssMb: Number(r.peak_rss_mb) };
    },
  }));
  return { engines, close };
}

/** The lines of a byte stream, without their line ends. */
async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let nl;
    while ((nl = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, nl);
      rest = rest.slice(nl + 1);
    }
  }
  if (rest) yield rest;
}
