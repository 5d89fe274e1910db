/**
 * The `webgpu` backend, where this machine has a WebGPU adapter (a real GPU, or Mesa's software `llvmpipe`): the
 * classification trainer (updates, gradient clipping, evaluation, checkpoints and optimiser state) runs on it and
 * reproduces the cpu run's losses, metrics and saved weights. The runs happen in a child process
 * (tests/fixtures/webgpu_run.ts), which leaves through `exitProcess`: a process that asked for an adapter loaded
 * libEGL, whose destructor at exit could corrupt the heap (lib/backends/exit.ts), so this test's own process never
 * asks. Skips with a message when there is no adapter.
 */
import { assert, assertEquals, maxAbsDiff } from "../shared.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

Deno.test("webgpu: training with evaluation, clipping and checkpoints matches the cpu run", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-env", "--allow-ffi", "tests/fixtures/webgpu_run.ts"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const [stdout, stderr] = [out.stdout, out.stderr].map((b) => new TextDecoder().decode(b));
  assertEquals(out.code, 0, `the webgpu run ends cleanly:\n${stdout}${stderr}`);
  type Run = {
    losses: (number | null)[];
    accuracy: number;
    evalLoss: number;
    weights: Record<string, number[]>;
    optimiserState: boolean;
  };
  const r = JSON.parse(stdout.trim().split("\n").pop()!) as { adapter: string | null; cpu: Run; gpu: Run };
  if (!r.adapter) return console.warn("webgpu_test: skipped — no WebGPU adapter on this machine");
  const { cpu, gpu } = r;
  assertEquals(gpu.losses.length, cpu.losses.length);
  assert(cpu.losses.length > 0 && cpu.losses.every((l) => l !== null), "losses logged");
  gpu.losses.forEach((l, i) => assert(Math.abs(l! - cpu.losses[i]!) < 1e-4, `loss ${i}: ${l} vs ${cpu.losses[i]}`));
  assertEquals(gpu.accuracy, cpu.accuracy);
  assert(Math.abs(gpu.evalLoss - cpu.evalLoss) < 1e-4, "evaluation loss");
  assertEquals(Object.keys(gpu.weights).sort(), Object.keys(cpu.weights).sort());
  for (const [name, x] of Object.entries(cpu.weights)) {
    const err = maxAbsDiff(x, gpu.weights[name]);
    assert(err < 1e-4, `${name}: saved weights differ by ${err}`);
  }
  assert(gpu.optimiserState, "optimiser state saved on webgpu");
});
