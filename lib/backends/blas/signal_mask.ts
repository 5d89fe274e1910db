/**
 * Native calls that must not take an asynchronous signal on the calling thread.
 *
 * Measured (2026-12-06, `deno task bert train` on 64 examples, a SIGINT sent with `tgkill` to one thread after the
 * first checkpoint, 250 runs each): a SIGINT delivered to the main thread while it ran oneDNN left glibc's heap
 * corrupted in 4 runs ("corrupted size vs. prev_size while consolidating", raised from a `free` inside `dnnl_sgemm`);
 * delivered to one of Deno's tokio threads, 0 runs; without oneDNN (`BERT_NO_DNNL=1`), 0 runs on the main thread
 * too. `kill` and Ctrl-C direct a signal at the process and Linux hands it to the main thread first, so a Ctrl-C during
 * training could abort the run (1 run in 40). Deno does not need the main thread for its signal listeners: the handler
 * only writes to a pipe that another thread reads, so any thread can take the signal.
 *
 * {@linkcode withSignalsBlocked} therefore blocks the asynchronous signals on the calling thread for the length of
 * each call (`pthread_sigmask`, two system calls, well under a microsecond each): the kernel gives a signal that
 * arrives meanwhile to another thread. Threads a call creates (oneDNN's OpenMP workers) inherit the blocked mask and
 * never take one. Faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS) stay unblocked. Without `libc.so.6`
 * (another C library) the calls run unwrapped.
 * @module
 */

const LIBC = { pthread_sigmask: { parameters: ["i32", "buffer", "buffer"], result: "i32" } } as const;
const SIG_BLOCK = 0, SIG_SETMASK = 2;
/** Synchronous fault signals, and SIGKILL/SIGSTOP (which cannot be blocked). */
const NOT_BLOCKED = new Set([4, 5, 7, 8, 9, 11, 19, 31]);

let sigmask: ((how: number, set: Uint8Array, old: Uint8Array | null) => number) | null | undefined;

function loadSigmask(): typeof sigmask {
  if (sigmask === undefined) {
    try {
      const libc = Deno.dlopen("libc.so.6", LIBC);
      sigmask = libc.symbols.pthread_sigmask;
    } catch {
      sigmask = null;
    }
  }
  return sigmask;
}

/**
 * The mask to restore, saved by the outermost wrapped call; `depth` counts the wrapped calls under way, so a wrapped
 * function that calls another one does not save the blocked mask as the one to restore.
 */
const saved = new Uint8Array(128);
let depth = 0;

/** glibc's sigset_t (1024 bits) with signals 1-64 set but for {@linkcode NOT_BLOCKED}. */
function asyncSignalSet(): Uint8Array<ArrayBuffer> {
  const set = new Uint8Array(128);
  for (let sig = 1; sig <= 64; sig++) if (!NOT_BLOCKED.has(sig)) set[(sig - 1) >> 3] |= 1 << ((sig - 1) & 7);
  return set;
}

/**
 * `fns` with each function wrapped so that it runs with the asynchronous signals blocked on the calling thread (see
 * the module doc); the functions themselves when `pthread_sigmask` cannot be opened.
 */
export function withSignalsBlocked<T extends Record<string, unknown>>(fns: T): T {
  const mask = loadSigmask();
  if (!mask) return fns;
  const block = asyncSignalSet();
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(fns)) {
    if (typeof fn !== "function") {
      wrapped[name] = fn;
      continue;
    }
    wrapped[name] = (...args: unknown[]) => {
      if (depth++ === 0) mask(SIG_BLOCK, block, saved);
      try {
        return fn(...args);
      } finally {
        if (--depth === 0) mask(SIG_SETMASK, saved, null);
      }
    };
  }
  return wrapped as T;
}
