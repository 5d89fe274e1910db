/** Tests of lib/bench/pytorch_env.ts: the environment PyTorch runs in when a bench compares with it. */
import { assert, assertEquals } from "../shared.ts";
import { loadBlas } from "../../lib/backends/blas/blas.ts";
import { loadDnnl } from "../../lib/backends/blas/dnnl.ts";
import {
  PYTORCH_MALLOC,
  PYTORCH_MULTITHREAD_ENV,
  pytorchEnv,
  pytorchSettingsLine,
  setByBackend,
} from "../../lib/bench/pytorch_env.ts";

Deno.test("pytorch_env: PyTorch runs in the user's environment plus its own settings per thread count, not the backend's", () => {
  loadBlas(); // the backend decides its variables when each library first loads
  loadDnnl();
  const setHere = setByBackend();
  const user = (name: string) => name in setHere ? undefined : Deno.env.get(name);
  for (const threads of [1, 2]) {
    const env = pytorchEnv(threads);
    assertEquals(env.GLIBC_TUNABLES, Deno.env.get("GLIBC_TUNABLES") ?? PYTORCH_MALLOC);
    assertEquals(env.PATH, Deno.env.get("PATH"), "the rest of the user's environment is kept");
    for (const [name, value] of Object.entries(PYTORCH_MULTITHREAD_ENV)) {
      // 1 thread: the user's value or nothing (the backend's never); 2 threads: the user's value or the setting's.
      assertEquals(env[name], threads === 1 ? user(name) : user(name) ?? value, `${name} on ${threads} thread(s)`);
    }
  }
  assert(/on 2 threads also .*OMP_WAIT_POLICY=/.test(pytorchSettingsLine()), pytorchSettingsLine());
});
