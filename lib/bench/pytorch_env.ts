/**
 * The environment PyTorch runs in when a bench compares it with this project (`deno task bench --pytorch`,
 * `deno task bench:eval`): the user's, without what the blas backend set for its own libraries, plus each thread
 * count's best setting, so that the reference is PyTorch at its best and not at a setting no one would choose.
 * @module
 */
import { blasEnvironmentSetHere } from "../backends/blas/blas.ts";
import { dnnlEnvironmentSetHere } from "../backends/blas/dnnl.ts";

/**
 * glibc's malloc settings PyTorch runs with unless the environment sets `GLIBC_TUNABLES`: freed memory stays in the
 * process instead of going back to the kernel (no `mmap` per large tensor, no heap trimming), so that PyTorch does not
 * fault its activations' pages in again at every step, as the blas backend does not (it keeps its arrays in a pool,
 * lib/backends/blas/pool.ts). On 2026-12-07's VM, where a page fault cost much more than on earlier ones, PyTorch's
 * Base step took 4.3 s with it against 5.6-6.5 s without (BENCHMARKS.md).
 */
export const PYTORCH_MALLOC = "glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=4294967295";

/** The `GLIBC_TUNABLES` PyTorch runs with: the environment's when set (even empty), else {@linkcode PYTORCH_MALLOC}. */
export function pytorchMalloc(): string {
  return Deno.env.get("GLIBC_TUNABLES") ?? PYTORCH_MALLOC;
}

/**
 * What PyTorch on 2 or more intra-op threads runs with, unless the environment sets the variable: its OpenMP threads
 * sleep when idle (`OMP_WAIT_POLICY=passive`) and so do its OpenBLAS threads (`OPENBLAS_THREAD_TIMEOUT=4`), instead of
 * spinning on the cores the other pool needs next. On 2026-12-08's Zen 3 VM (BENCHMARKS.md): Base inference on 2
 * threads took 2.5-2.6 s with OpenMP's default against 1.4-1.8 s with `passive`, and Tiny SQuAD windows padded to 384
 * ran at 100-103/s with OpenBLAS's default spin against 132-137/s with the timeout. One thread has no OpenMP team, and
 * its OpenBLAS is faster spinning (Base inference 11% slower with the timeout on an AVX-512 EPYC, SST-2 on Zen 3
 * 2,500-2,800 against 2,000-2,500 examples/s), so 1 thread keeps the defaults. Each thread count runs in its own
 * process, so that each gets its best setting.
 */
export const PYTORCH_MULTITHREAD_ENV: Readonly<Record<string, string>> = {
  OMP_WAIT_POLICY: "passive",
  OPENBLAS_THREAD_TIMEOUT: "4",
};

/**
 * The variables PyTorch on `threads` intra-op threads runs with on top of the user's environment: `GLIBC_TUNABLES`
 * ({@linkcode pytorchMalloc}) and, from 2 threads, {@linkcode PYTORCH_MULTITHREAD_ENV}; each the user's own where the
 * user set it.
 */
export function pytorchSettings(threads: number): Record<string, string> {
  const settings: Record<string, string> = { GLIBC_TUNABLES: pytorchMalloc() };
  if (threads < 2) return settings;
  const setHere = setByBackend();
  for (const [name, value] of Object.entries(PYTORCH_MULTITHREAD_ENV)) {
    settings[name] = (name in setHere ? undefined : Deno.env.get(name)) ?? value;
  }
  return settings;
}

/** The line a bench prints about {@linkcode pytorchSettings}. */
export function pytorchSettingsLine(): string {
  const line = (s: Record<string, string>) => Object.entries(s).map(([k, v]) => `${k}=${v}`).join(" ");
  const one = pytorchSettings(1), two = pytorchSettings(2);
  const more = Object.fromEntries(Object.entries(two).filter(([k, v]) => one[k] !== v));
  return `pytorch runs with ${line(one)}; on 2 threads also ${line(more)} (one process per thread count)`;
}

/**
 * The environment PyTorch on `threads` intra-op threads runs in: the user's, without what the blas backend set for its
 * own libraries (`OPENBLAS_THREAD_TIMEOUT`, `OMP_WAIT_POLICY`), plus {@linkcode pytorchSettings}.
 */
export function pytorchEnv(threads: number): Record<string, string> {
  return {
    ...withoutKeys(Deno.env.toObject(), Object.keys(setByBackend())),
    ...pytorchSettings(threads),
  };
}

/** The variables the blas backend set for its own libraries (OpenBLAS's and oneDNN's loaders), not the user. */
export function setByBackend(): Record<string, string> {
  return { ...blasEnvironmentSetHere(), ...dnnlEnvironmentSetHere() };
}

/** `env` without the variables `names`. */
function withoutKeys(env: Record<string, string>, names: string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !names.includes(k)));
}
