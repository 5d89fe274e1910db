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
  await ensureDir(dirname(path));
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
    throw err;
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
    throw err;
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
  const url = new URL("..", import.meta.url);
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
