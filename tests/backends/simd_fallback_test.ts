/**
 * The `blas` backend's WebAssembly SIMD kernels against their JavaScript fallbacks (`BERT_NO_SIMD=1`, used where an
 * engine lacks WebAssembly SIMD): the same fused ops on the same inputs, in a child process each way, must agree.
 * Skips (with a message) when no CBLAS library can be opened.
 */
import { assert, assertEquals } from "../shared.ts";
import { loadBlas } from "../../lib/backends/blas/blas.ts";

const ignore = !loadBlas();
if (ignore) console.warn("simd_fallback_test: skipped — no CBLAS library (install libopenblas0-pthread)");

async function run(noSimd: boolean): Promise<Record<string, number[]>> {
  const script = new URL("../fixtures/fused_probe.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-env", "--allow-ffi", "--allow-sys", script],
    env: noSimd ? { BERT_NO_SIMD: "1" } : {},
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

Deno.test({ name: "SIMD kernels and their JavaScript fallbacks give the same results", ignore }, async () => {
  const [simd, js] = await Promise.all([run(false), run(true)]);
  assertEquals(Object.keys(simd).sort(), Object.keys(js).sort());
  for (const name of Object.keys(js)) {
    const a = simd[name], b = js[name];
    assertEquals(a.length, b.length, name);
    for (let i = 0; i < a.length; i++) {
      const tol = 2e-6 + 2e-6 * Math.abs(b[i]);
      assert(Math.abs(a[i] - b[i]) <= tol, `${name}[${i}]: SIMD ${a[i]} vs JavaScript ${b[i]}`);
    }
  }
  // The dropout mask is the same generator both ways: bit-identical.
  assertEquals(simd.dropout, js.dropout);
});
