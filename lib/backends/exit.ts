/**
 * How a process of this project ends: {@linkcode exitProcess}. Kept apart from backend.ts (which loads TensorFlow.js)
 * so that the CLI can import it for every command.
 * @module
 */

let requested = false;

/** Called by `webgpuAdapterName` (backend.ts) before it asks for an adapter. */
export function webgpuRequested(): void {
  requested = true;
}

/**
 * Ends the process with `code`, as `Deno.exit` does, except in a process that asked for a WebGPU adapter on Linux: there
 * through libc's `_exit`, which skips the shared libraries' destructors. wgpu's GL backend loads libEGL (Mesa's, or a
 * driver's) while looking for an adapter, and libEGL's destructor at exit raced another thread's teardown and corrupted
 * the heap: glibc aborted ("corrupted size vs. prev_size in fastbins", "double free or corruption", or a segfault) after
 * all output was written, in 3 of 77 end-to-end test runs on 2 busy cores and 1 of 126 on idle ones (2026-12-07; the
 * core dump: `_dl_fini` inside libEGL's destructor on the main thread, `tcache_thread_shutdown` on another). Everything
 * this project writes is awaited and closed before it exits, and console output is written synchronously, so nothing
 * is lost. Needs `--allow-ffi`; without it, or without `libc.so.6`, `Deno.exit`.
 */
export function exitProcess(code: number): never {
  if (requested && Deno.build.os === "linux") {
    try {
      Deno.dlopen("libc.so.6", { _exit: { parameters: ["i32"], result: "void" } }).symbols._exit(code);
    } catch { /* no --allow-ffi or no glibc: the ordinary exit */ }
  }
  Deno.exit(code);
}
