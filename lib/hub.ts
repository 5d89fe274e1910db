/**
 * Downloads a BERT checkpoint (`config.json`, `vocab.txt`, `model.safetensors`, and `tokenizer_config.json` when
 * the repository has one) from the Hugging Face hub into a local cache, the way `huggingface_hub` does it:
 *
 * - URL `{endpoint}/{id}/resolve/{revision}/{file}`; `endpoint` defaults to `HF_ENDPOINT` or https://huggingface.co.
 * - Cache folder `<cache>/<id with "/" -> "--">/<revision>/`; a file appears under its final name only once
 *   complete (downloaded to `<file>.part`, size checked, then renamed).
 * - An interrupted download keeps its `.part`; the next run resumes it with `Range: bytes=N-` (a server that
 *   answers 200 instead of 206 restarts it).
 * - Offline mode (`offline: true` or `HF_HUB_OFFLINE=1`) uses the cache only and names what is missing.
 * - `HF_TOKEN`, when set, is sent as a bearer token (for gated or private repositories).
 * @module
 */
import { ensureDir, exists, join } from "./fsutil.ts";

/** Files a checkpoint needs. */
export const REQUIRED_FILES: readonly string[] = ["config.json", "vocab.txt", "model.safetensors"];
/** Files fetched when the repository has them (a 404 is fine). */
export const OPTIONAL_FILES: readonly string[] = ["tokenizer_config.json"];
/** The public hub. */
export const DEFAULT_ENDPOINT = "https://huggingface.co";

/** Progress of one file, reported as bytes arrive. */
export interface DownloadProgress {
  /** File name, e.g. `model.safetensors`. */
  file: string;
  /** Bytes of the file on disk so far (including a resumed `.part`). */
  received: number;
  /** Full size when the server says it. */
  total?: number;
  /** Bytes that were already on disk when this transfer started (resumed download). */
  resumedFrom: number;
  /** True once, when the file is complete. */
  done: boolean;
}

/** Options of {@linkcode downloadModel}. */
export interface DownloadOptions {
  /** Branch, tag or commit (default `main`). */
  revision?: string;
  /** Cache root (default `.cache/hub`). */
  cache?: string;
  /** Hub address (default `HF_ENDPOINT`, else https://huggingface.co). */
  endpoint?: string;
  /** Use only the cache (default: true when `HF_HUB_OFFLINE` is 1/true/yes/on). */
  offline?: boolean;
  /** Download again even when the cache has the file. */
  force?: boolean;
  /** Called as bytes arrive. */
  onProgress?: (progress: DownloadProgress) => void;
}

/** What {@linkcode downloadModel} did. */
export interface DownloadResult {
  /** The checkpoint folder (usable with `loadCheckpoint`). */
  dir: string;
  /** Files present in `dir` now. */
  files: string[];
  /** Files fetched by this call. */
  downloaded: string[];
  /** Files that were already in the cache. */
  cached: string[];
}

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

/** Whether `HF_HUB_OFFLINE` asks for offline mode. */
export function offlineFromEnv(): boolean {
  return ["1", "true", "yes", "on"].includes((env("HF_HUB_OFFLINE") ?? "").toLowerCase());
}

function checkId(id: string): void {
  if (!/^[A-Za-z0-9][\w.-]*(\/[\w.-]+)?$/.test(id) || id.includes("..")) {
    throw new Error(
      `"${id}" is not a valid model id (expected "name" or "owner/name", e.g. google/bert_uncased_L-2_H-128_A-2)`,
    );
  }
}

/** The cache folder of `id` at `revision`: `<cache>/<id with / -> -->/<revision>`. */
export function cacheDirFor(id: string, options: { revision?: string; cache?: string } = {}): string {
  checkId(id);
  const revision = options.revision ?? "main";
  if (!revision || revision.includes("..")) throw new Error(`invalid revision "${revision}"`);
  return join(options.cache ?? ".cache/hub", id.replaceAll("/", "--"), revision.replaceAll("/", "--"));
}

/** Thrown when the hub cannot be reached at all (DNS, refused connection, no route). */
export class HubUnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HubUnreachableError";
  }
}

/** Thrown when the server says the file does not exist (HTTP 404). */
class NotFoundError extends Error {}

interface FileJob {
  url: string;
  file: string;
  dest: string;
  endpoint: string;
  cacheDir: string;
  onProgress?: (p: DownloadProgress) => void;
}

function parseContentRange(value: string | null): { start: number; total?: number } | undefined {
  const m = value?.match(/^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/);
  if (!m) return undefined;
  return { start: Number(m[1]), total: m[3] === "*" ? undefined : Number(m[3]) };
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return 0;
    throw err;
  }
}

async function request(job: FileJob, offset: number): Promise<Response> {
  const headers: Record<string, string> = { "Accept-Encoding": "identity", "User-Agent": "bert-ts" };
  if (offset > 0) headers.Range = `bytes=${offset}-`;
  const token = env("HF_TOKEN") ?? env("HUGGING_FACE_HUB_TOKEN");
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    return await fetch(job.url, { headers });
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) throw err;
    throw new HubUnreachableError(
      `cannot reach ${job.endpoint}: ${(err as Error).message}; check the network connection, or set ` +
        `HF_HUB_OFFLINE=1 to use the cache (${job.cacheDir})`,
    );
  }
}

/** Downloads one file to `<dest>.part` (resuming it when present), checks its size and renames it to `dest`. */
async function downloadFile(job: FileJob): Promise<void> {
  const part = `${job.dest}.part`;
  let offset = await fileSize(part);
  let res = await request(job, offset);
  if (res.status === 416 && offset > 0) {
    // The range starts at or past the end: the .part is already complete, or longer than the file.
    await res.body?.cancel();
    const total = parseContentRange(res.headers.get("content-range"))?.total;
    if (total === offset) {
      await Deno.rename(part, job.dest);
      job.onProgress?.({ file: job.file, received: offset, total, resumedFrom: offset, done: true });
      return;
    }
    offset = 0;
    res = await request(job, 0);
  }
  if (res.status === 404) {
    await res.body?.cancel();
    throw new NotFoundError(`${job.url}: not found (HTTP 404)`);
  }
  if (res.status === 401 || res.status === 403) {
    await res.body?.cancel();
    throw new Error(
      `${job.url}: HTTP ${res.status}: the repository is private or gated; accept its terms on the hub and set ` +
        `HF_TOKEN to an access token`,
    );
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new Error(`${job.url}: HTTP ${res.status} ${res.statusText}`);
  }
  let total: number | undefined;
  const encoded = (res.headers.get("content-encoding") ?? "identity") !== "identity";
  if (res.status === 206) {
    const range = parseContentRange(res.headers.get("content-range"));
    if (!range || range.start !== offset) {
      await res.body.cancel();
      throw new Error(`${job.url}: the server answered a resume request with a bad Content-Range header`);
    }
    total = range.total;
  } else {
    offset = 0; // 200: the server sends the whole file; start over
    const length = res.headers.get("content-length");
    total = length !== null && !encoded ? Number(length) : undefined;
  }
  const resumedFrom = offset;
  const file = await Deno.open(part, { write: true, create: true, append: offset > 0, truncate: offset === 0 });
  let received = offset;
  try {
    job.onProgress?.({ file: job.file, received, total, resumedFrom, done: false });
    try {
      for await (const chunk of res.body) {
        let written = 0;
        while (written < chunk.length) written += await file.write(chunk.subarray(written));
        received += chunk.length;
        job.onProgress?.({ file: job.file, received, total, resumedFrom, done: false });
      }
    } catch (err) {
      throw new Error(
        `download of ${job.file} was interrupted after ${received}${total ? ` of ${total}` : ""} bytes ` +
          `(${(err as Error).message}); run the command again to resume from ${part}`,
      );
    }
    await file.sync();
  } finally {
    file.close();
  }
  if (total !== undefined && received !== total) {
    throw new Error(
      `download of ${job.file} stopped at ${received} of ${total} bytes; run the command again to resume from ${part}`,
    );
  }
  await Deno.rename(part, job.dest);
  job.onProgress?.({ file: job.file, received, total, resumedFrom, done: true });
}

/**
 * Makes `id` (at `revision`) available in the cache and returns its folder. Files already cached are not fetched
 * again (unless `force`); partial files are resumed.
 *
 * @example
 * ```ts
 * const { dir } = await downloadModel("google/bert_uncased_L-2_H-128_A-2");
 * const { model } = await loadCheckpoint(dir, { head: "classification" });
 * ```
 */
export async function downloadModel(id: string, options: DownloadOptions = {}): Promise<DownloadResult> {
  const revision = options.revision ?? "main";
  const dir = cacheDirFor(id, { revision, cache: options.cache });
  const endpoint = (options.endpoint ?? env("HF_ENDPOINT") ?? DEFAULT_ENDPOINT).replace(/\/+$/, "");
  const offline = options.offline ?? offlineFromEnv();
  const result: DownloadResult = { dir, files: [], downloaded: [], cached: [] };

  if (offline) {
    const missing: string[] = [];
    for (const f of REQUIRED_FILES) if (!(await exists(join(dir, f)))) missing.push(f);
    if (missing.length) {
      throw new Error(
        `offline mode (HF_HUB_OFFLINE): ${id} (revision ${revision}) is not in the cache: ${dir} lacks ` +
          `${missing.join(", ")}; download it once with network access (deno task bert download ${id})`,
      );
    }
    for (const f of [...REQUIRED_FILES, ...OPTIONAL_FILES]) {
      if (await exists(join(dir, f))) {
        result.files.push(f);
        result.cached.push(f);
      }
    }
    return result;
  }

  await ensureDir(dir);
  let complete = !options.force;
  for (const f of REQUIRED_FILES) complete &&= await exists(join(dir, f));
  for (const file of [...REQUIRED_FILES, ...OPTIONAL_FILES]) {
    if (complete && !(await exists(join(dir, file)))) continue; // cached checkpoint: no network needed
    const dest = join(dir, file);
    if (!options.force && (await exists(dest))) {
      result.files.push(file);
      result.cached.push(file);
      continue;
    }
    if (options.force) await Deno.remove(`${dest}.part`).catch(() => {});
    const url = `${endpoint}/${id}/resolve/${encodeURIComponent(revision)}/${file}`;
    try {
      await downloadFile({ url, file, dest, endpoint, cacheDir: dir, onProgress: options.onProgress });
    } catch (err) {
      if (err instanceof NotFoundError) {
        if (OPTIONAL_FILES.includes(file)) continue;
        throw new Error(
          `${id} has no ${file} at revision "${revision}" (${url} answered 404): check the model id and revision; ` +
            `this project needs a BERT checkpoint with ${REQUIRED_FILES.join(", ")}`,
        );
      }
      throw err;
    }
    result.files.push(file);
    result.downloaded.push(file);
  }
  return result;
}
