/**
 * lib/backends/exit.ts: `exitProcess` ends a child process with the code given and all its output, both after asking
 * for a WebGPU adapter (libc's `_exit` on Linux) and without (Deno.exit).
 */
import { assertEquals } from "../shared.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

async function child(askAdapter: boolean, code: number): Promise<{ code: number; lines: number; last: string }> {
  const script = [
    'import { webgpuAdapterName } from "./lib/backends/backend.ts";',
    'import { exitProcess } from "./lib/backends/exit.ts";',
    askAdapter ? "await webgpuAdapterName();" : "",
    'for (let i = 0; i < 5000; i++) console.log(`line ${i} ${"x".repeat(60)}`);',
    'await Deno.stdout.write(new TextEncoder().encode("end, no newline"));',
    `exitProcess(${code});`,
  ].join("\n");
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  return { code: out.code, lines: text.split("\n").length, last: text.slice(-15) };
}

Deno.test("exitProcess: the code given and every line written, with and without a WebGPU adapter asked for", async () => {
  assertEquals(await child(true, 3), { code: 3, lines: 5001, last: "end, no newline" });
  assertEquals(await child(false, 4), { code: 4, lines: 5001, last: "end, no newline" });
});
