/**
 * Crash-safe file writes: everything the project writes (features, checkpoints, results) goes through here,
 * so a crash or a kill never leaves a half-written file under its final name.
 * @module
 */

/** Creates `dir` and its parents if needed. */
export async function ensureDir(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
}

/** The folder part of a path (`a/b/c.txt` -> `a/b`, `c.txt` -> `.`). */
export function dirname(path: string): string {
  const i = path.replace(/\/+$/, "").lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

/** The last part of a path (`a/b/c.txt` -> `c.txt`). */
export function basename(path: string): string {
  const p = path.replace(/\/+$/, "");
  return p.slice(p.lastIndexOf("/") + 1);
}

/** Joins path parts with `/`, dropping empty parts and duplicate slashes. */
export function join(...parts: string[]): string {
  return parts.filter((p) => p.length > 0).join("/").replace(/\/{2,}/g, "/");
}

function tempName(path: string): string {
  return `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
}

/**
 * Writes `data` to `path` atomically: a temporary file beside it is written, flushed to disk and renamed over
 * `path`. Readers see either the old file or the complete new one, never a partial one.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  await ensureDir(dirname(path)).catch((err) => {
    throw withPath(err, `cannot create the folder of ${path}`);
  });
  const tmp = tempName(path);
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  try {
    const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
    try {
      let written = 0;
      while (written < bytes.length) written += await file.write(bytes.subarray(written));
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw withPath(err, `cannot write ${path}`);
  }
}

/** Writes `value` as pretty-printed JSON (plus a final newline), atomically. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n");
}

/**
 * Builds a folder atomically: `fill` writes into a temporary sibling folder, which is then renamed to `dir`
 * (an existing `dir` is replaced). A crash inside `fill` leaves only a `*.tmp-*` folder, never a half-filled
 * `dir`; {@linkcode removeStaleTemps} cleans those up.
 */
export async function writeDirAtomic(dir: string, fill: (tmpDir: string) => Promise<void>): Promise<void> {
  const clean = dir.replace(/\/+$/, "");
  await ensureDir(dirname(clean));
  const tmp = tempName(clean);
  await Deno.mkdir(tmp);
  try {
    await fill(tmp);
    let old: string | undefined;
    try {
      await Deno.stat(clean);
      old = `${tmp}.old`;
      await Deno.rename(clean, old);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    await Deno.rename(tmp, clean);
    if (old) await Deno.remove(old, { recursive: true });
  } catch (err) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw withPath(err, `cannot write ${clean}`);
  }
}

/** Removes leftovers of interrupted atomic writes (`*.tmp-*`) in `dir`; returns their names. */
export async function removeStaleTemps(dir: string): Promise<string[]> {
  const removed: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (/\.tmp-\d+-[0-9a-f]{8}/.test(entry.name)) {
        await Deno.remove(join(dir, entry.name), { recursive: true });
        removed.push(entry.name);
      }
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return removed;
}

/** True when `path` exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** The sha256 of `bytes` as lower-case hex. */
export async function sha256Hex(bytes: Uint8Array | string): Promise<string> {
  const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
  const digest = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The project root (the folder above lib/), as an absolute path (`.` when lib/ is not on the file system). */
export function projectRoot(): string {
  const url = new URL("../..", import.meta.url);
  return url.protocol === "file:" ? decodeURIComponent(url.pathname).replace(/\/+$/, "") : ".";
}

/** `to` relative to `from` when both are absolute and share a prefix (shorter to read), else `to` unchanged. */
export function relativePath(from: string, to: string): string {
  if (!to.startsWith("/") || !from.startsWith("/")) return to;
  const a = from.split("/").filter(Boolean);
  const b = to.split("/").filter(Boolean);
  let common = 0;
  while (common < a.length && common < b.length && a[common] === b[common]) common++;
  if (common === 0) return to;
  return [...Array(a.length - common).fill(".."), ...b.slice(common)].join("/") || ".";
}

/** `path` relative to the working directory where that reads shorter (see {@linkcode relativePath}). */
export function relativeToCwd(path: string): string {
  try {
    return relativePath(Deno.cwd(), path);
  } catch {
    return path; // no read permission for the working directory
  }
}

/**
 * {@linkcode writeFileAtomic} of a command's output file, with a clear error when Deno's write permission refuses
 * the path (`deno task bert` may only write under outputs/ and .cache/).
 */
export async function writeCommandOutput(path: string, text: string): Promise<void> {
  try {
    await writeFileAtomic(path, text);
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
      throw new Error(`cannot write ${path}: deno task bert may only write under outputs/ and .cache/`);
    }
    throw err;
  }
}

/** Who holds a run folder's lock (the JSON inside `<run>/.lock`). */
export interface LockHolder {
  pid: number;
  /** The command line, e.g. `bert train --features outputs/x/features`. */
  command: string;
  /** ISO time the holder took the lock. */
  started: string;
  hostname?: string;
}

/** A held run-folder lock; `release()` (idempotent) frees it. */
export interface RunLock {
  /** `<dir>/.lock` */
  path: string;
  /** What this process wrote into the lock. */
  holder: LockHolder;
  /** The previous holder when its process had died without releasing the lock (taken over with a notice). */
  tookOver?: LockHolder;
  release(): void;
  /** `using lock = await acquireRunLock(dir)` releases it when the scope ends (also on a throw). */
  [Symbol.dispose](): void;
}

/** Name of the lock file inside a run folder. */
export const LOCK_FILE = ".lock";

function describeHolder(h: LockHolder): string {
  return `pid ${h.pid}${h.hostname ? ` on ${h.hostname}` : ""}, \`${h.command}\`, started ${h.started}`;
}

function readHolder(file: Deno.FsFile): LockHolder | undefined {
  try {
    file.seekSync(0, Deno.SeekMode.Start);
    const buf = new Uint8Array(4096);
    let len = 0;
    while (len < buf.length) {
      const n = file.readSync(buf.subarray(len));
      if (n === null || n === 0) break;
      len += n;
    }
    if (len === 0) return undefined;
    const json = JSON.parse(new TextDecoder().decode(buf.subarray(0, len)));
    return typeof json?.pid === "number" ? json as LockHolder : undefined;
  } catch {
    return undefined;
  }
}

/** The command line of this process as `bert <args>` (for lock holders and messages). */
export function commandLine(): string {
  try {
    return ["bert", ...Deno.args].join(" ");
  } catch {
    return "bert";
  }
}

/**
 * Takes the lock of run folder `dir` (created if needed) for this process: `<dir>/.lock`, an OS file lock
 * (`flock`) that the kernel drops when the process dies, holding JSON that names the holder (pid, command,
 * start time). A second writer fails at once with an error naming the holder. A lock file left by a process
 * that died (killed, crashed) is taken over and reported through `notice` (default `console.warn`).
 *
 * Locks are per open file, so a second `acquireRunLock` of the same folder in the same process also fails:
 * take the lock once per command (the CLI does), not in library functions.
 */
export async function acquireRunLock(
  dir: string,
  options: { command?: string; notice?: (message: string) => void } = {},
): Promise<RunLock> {
  try {
    await ensureDir(dir);
  } catch (err) {
    throw withPath(err, `cannot create the run folder ${dir}`);
  }
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 5; attempt++) {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true, write: true, create: true });
    } catch (err) {
      throw withPath(err, `cannot create the lock ${path}`);
    }
    let locked = false;
    try {
      locked = await file.tryLock(true);
    } catch (err) {
      file.close();
      throw withPath(err, `cannot lock ${path}`);
    }
    if (!locked) {
      let holder = readHolder(file);
      if (!holder) { // the holder may be writing its details right now
        await new Promise((r) => setTimeout(r, 50));
        holder = readHolder(file);
      }
      file.close();
      throw new Error(
        `${dir} is in use by another run (${holder ? describeHolder(holder) : "holder unknown"}; lock ${path}). ` +
          `Wait for it to finish, stop it, or choose another run folder (--output / --run).`,
      );
    }
    // The file may have been removed (released) between open and lock: then this lock guards nothing; retry.
    const same = await Deno.stat(path).then((s) => s.ino === file.statSync().ino).catch(() => false);
    if (!same) {
      file.close();
      continue;
    }
    const previous = readHolder(file);
    const holder: LockHolder = {
      pid: Deno.pid,
      command: options.command ?? commandLine(),
      started: new Date().toISOString(),
    };
    try {
      holder.hostname = Deno.hostname();
    } catch { /* no --allow-sys */ }
    try {
      file.truncateSync(0);
      file.seekSync(0, Deno.SeekMode.Start);
      const bytes = new TextEncoder().encode(JSON.stringify(holder) + "\n");
      let written = 0;
      while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
    } catch (err) {
      file.close();
      throw withPath(err, `cannot write the lock ${path}`);
    }
    if (previous) {
      (options.notice ?? console.warn)(
        `notice: took over the lock of ${dir} left by a process that is no longer running ` +
          `(${describeHolder(previous)}); its run was interrupted, so check what it left.`,
      );
    }
    let released = false;
    const lock: RunLock = {
      path,
      holder,
      tookOver: previous,
      [Symbol.dispose]() {
        lock.release();
      },
      release() {
        if (released) return;
        released = true;
        try {
          Deno.removeSync(path);
        } catch { /* gone already */ }
        try {
          file.close(); // closing drops the OS lock
        } catch { /* closed */ }
      },
    };
    return lock;
  }
  throw new Error(`cannot lock ${path}: it keeps being replaced by other processes`);
}

/** Runs `fn` while holding the lock of run folder `dir` (see {@linkcode acquireRunLock}). */
export async function withRunLock<T>(
  dir: string,
  fn: (lock: RunLock) => Promise<T>,
  options: { command?: string; notice?: (message: string) => void } = {},
): Promise<T> {
  const lock = await acquireRunLock(dir, options);
  try {
    return await fn(lock);
  } finally {
    lock.release();
  }
}

/**
 * `err` with `what` (e.g. `cannot write outputs/x/checkpoint-3`) in front of its message, keeping its class
 * (so `instanceof Deno.errors.NotFound` still works) and the original as `cause`.
 */
export function withPath(err: unknown, what: string): Error {
  if (!(err instanceof Error)) return new Error(`${what}: ${String(err)}`);
  if (err.message.startsWith(what)) return err;
  const Ctor = err.constructor as new (message: string, options?: ErrorOptions) => Error;
  let out: Error;
  try {
    out = new Ctor(`${what}: ${err.message}`, { cause: err });
  } catch {
    out = new Error(`${what}: ${err.message}`, { cause: err });
  }
  if (!out.message.startsWith(what)) out = new Error(`${what}: ${err.message}`, { cause: err });
  return out;
}

/**
 * Checks before any long work that files can be created in `dir` (made if needed): writes, flushes and deletes a
 * small probe file. A read-only file system, a missing permission or a full disk fails here, naming the folder,
 * instead of at the first checkpoint an epoch later. `what` names the run for the message.
 */
export async function probeWritable(dir: string, what = dir, bytes = 64 * 1024): Promise<void> {
  const probe = join(dir, `.write-probe.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`);
  try {
    await ensureDir(dir);
    const file = await Deno.open(probe, { write: true, create: true, truncate: true });
    try {
      const data = new Uint8Array(bytes);
      let written = 0;
      while (written < data.length) written += await file.write(data.subarray(written));
      await file.sync();
    } finally {
      file.close();
    }
  } catch (err) {
    throw withPath(err, `cannot write into ${dir} (${what}); free space or choose a writable folder`);
  } finally {
    await Deno.remove(probe).catch(() => {});
  }
}
