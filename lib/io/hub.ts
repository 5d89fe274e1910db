/**
 * Downloads a BERT checkpoint (`config.json` or `bert_config.json`, `vocab.txt`, the best weights the revision has
 * — `model.safetensors`, else `pytorch_model.bin`, else a TensorFlow checkpoint, each with its shards — and
 * `tokenizer_config.json` when the repository has one) from the Hugging Face hub into a local cache, the way
 * `huggingface_hub` does it:
 *
 * - The file list from `{endpoint}/api/models/{id}/revision/{revision}` (`siblings`); without an answer, names are
 *   tried in order of preference and a 404 moves on to the next.
 * - URL `{endpoint}/{id}/resolve/{revision}/{file}`; `endpoint` defaults to `HF_ENDPOINT` or https://huggingface.co.
 * - Cache folder `<cache>/<id with "/" -> "--">/<revision>/`; a file appears under its final name only once
 *   complete (downloaded to `<file>.part`, size checked, then renamed).
 * - An interrupted download keeps its `.part`; the next run resumes it with `Range: bytes=N-` (a server that
 *   answers 200 instead of 206 restarts it).
 * - Offline mode (`offline: true` or `HF_HUB_OFFLINE=1`) uses the cache only and names what is missing.
 * - `HF_TOKEN`, when set, is sent as a bearer token (for gated or private repositories).
 * @module
 */
import { envVar } from "./env.ts";
import { ensureDir, exists, join } from "./fsutil.ts";
import { readTfIndex, tfDataPath } from "./tf_checkpoint.ts";
import { shardFiles } from "./weights.ts";

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

/** Whether `HF_HUB_OFFLINE` asks for offline mode. */
export function offlineFromEnv(): boolean {
  return ["1", "true", "yes", "on"].includes((envVar("HF_HUB_OFFLINE") ?? "").toLowerCase());
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
  const token = envVar("HF_TOKEN") ?? envVar("HUGGING_FACE_HUB_TOKEN");
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

/** Weight files by precedence, as the hub names them (TensorFlow checkpoints are found by their `.index`). */
const WEIGHT_CANDIDATES: readonly string[] = [
  "model.safetensors",
  "model.safetensors.index.json",
  "pytorch_model.bin",
  "pytorch_model.bin.index.json",
  "bert_model.ckpt.index",
  "model.ckpt.index",
];

/** What the revision has, from the hub's API (`/api/models/{id}/revision/{revision}`); undefined when unavailable. */
async function listRepoFiles(
  id: string,
  revision: string,
  endpoint: string,
  cacheDir: string,
): Promise<string[] | undefined> {
  const url = `${endpoint}/api/models/${id}/revision/${encodeURIComponent(revision)}`;
  let res: Response;
  try {
    res = await request({ url, file: "", dest: "", endpoint, cacheDir }, 0);
  } catch (err) {
    if (err instanceof HubUnreachableError) throw err;
    return undefined;
  }
  if (!res.ok) {
    await res.body?.cancel();
    return undefined;
  }
  try {
    const json = await res.json() as { siblings?: { rfilename?: unknown }[] };
    if (!Array.isArray(json.siblings)) return undefined;
    return json.siblings.map((s) => s.rfilename).filter((f): f is string => typeof f === "string");
  } catch {
    return undefined;
  }
}

/** The files a weights entry point brings along: shards of an `*.index.json`, data files of a TensorFlow `.index`. */
async function companions(dir: string, file: string): Promise<string[]> {
  if (file.endsWith(".index.json")) {
    return (await shardFiles(join(dir, file))).map((p) => p.slice(p.lastIndexOf("/") + 1));
  }
  if (file.endsWith(".index")) {
    const index = await readTfIndex(join(dir, file));
    const prefix = file.slice(0, -".index".length);
    return Array.from({ length: index.numShards }, (_, k) => tfDataPath(prefix, k, index.numShards));
  }
  return [];
}

/** The cached weights of `dir` when complete (entry point and every shard present); else undefined. */
async function cachedWeights(dir: string): Promise<string[] | undefined> {
  for (const file of WEIGHT_CANDIDATES) {
    if (!(await exists(join(dir, file)))) continue;
    try {
      const more = await companions(dir, file);
      let complete = true;
      for (const f of more) complete &&= await exists(join(dir, f));
      if (complete) return [file, ...more];
    } catch {
      // a damaged index: not complete
    }
  }
  return undefined;
}

/** The config file the cache holds (`config.json`, else Google's `bert_config.json`). */
async function cachedConfig(dir: string): Promise<string | undefined> {
  for (const f of ["config.json", "bert_config.json"]) if (await exists(join(dir, f))) return f;
  return undefined;
}

const NEEDS = "config.json (or bert_config.json), vocab.txt and weights: model.safetensors, pytorch_model.bin or a " +
  "TensorFlow checkpoint (bert_model.ckpt.index + .data-*), each possibly sharded";

/**
 * Makes `id` (at `revision`) available in the cache and returns its folder. Asks the hub which files the revision
 * has (falling back to trying names in order when its API does not answer) and fetches the config
 * (`config.json`, else `bert_config.json`), `vocab.txt`, `tokenizer_config.json` when present, and the best
 * weights: `model.safetensors` (or its index and shards), else `pytorch_model.bin` (or its index and shards), else
 * a TensorFlow checkpoint (`.index` and its data files). Files already cached are not fetched again (unless
 * `force`); partial files are resumed; a complete cached checkpoint needs no network.
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
  const endpoint = (options.endpoint ?? envVar("HF_ENDPOINT") ?? DEFAULT_ENDPOINT).replace(/\/+$/, "");
  const offline = options.offline ?? offlineFromEnv();
  const result: DownloadResult = { dir, files: [], downloaded: [], cached: [] };

  const cachedSet = async (): Promise<string[] | undefined> => {
    if (!(await exists(dir))) return undefined;
    const config = await cachedConfig(dir);
    const weights = await cachedWeights(dir);
    if (!config || !(await exists(join(dir, "vocab.txt"))) || !weights) return undefined;
    const optional = [];
    for (const f of OPTIONAL_FILES) if (await exists(join(dir, f))) optional.push(f);
    return [config, "vocab.txt", ...weights, ...optional];
  };

  if (offline || !options.force) {
    const cached = await cachedSet();
    if (cached) {
      result.files.push(...cached);
      result.cached.push(...cached);
      return result;
    }
  }
  if (offline) {
    const missing: string[] = [];
    if (!(await exists(dir)) || !(await cachedConfig(dir))) missing.push("config.json");
    if (!(await exists(join(dir, "vocab.txt")))) missing.push("vocab.txt");
    if (!(await exists(dir)) || !(await cachedWeights(dir))) {
      missing.push("model.safetensors (or pytorch_model.bin or a TensorFlow checkpoint)");
    }
    throw new Error(
      `offline mode (HF_HUB_OFFLINE): ${id} (revision ${revision}) is not in the cache: ${dir} lacks ` +
        `${missing.join(", ")}; download it once with network access (deno task bert download ${id})`,
    );
  }

  await ensureDir(dir);
  const listed = await listRepoFiles(id, revision, endpoint, dir);
  const has = (f: string) => listed === undefined || listed.includes(f);
  const fetchOne = async (file: string): Promise<boolean> => {
    const dest = join(dir, file);
    if (!options.force && (await exists(dest))) {
      result.files.push(file);
      result.cached.push(file);
      return true;
    }
    if (options.force) await Deno.remove(`${dest}.part`).catch(() => {});
    const url = `${endpoint}/${id}/resolve/${encodeURIComponent(revision)}/${file}`;
    try {
      await downloadFile({ url, file, dest, endpoint, cacheDir: dir, onProgress: options.onProgress });
    } catch (err) {
      if (err instanceof NotFoundError) return false;
      throw err;
    }
    result.files.push(file);
    result.downloaded.push(file);
    return true;
  };
  const first = async (candidates: readonly string[]): Promise<string | undefined> => {
    for (const f of candidates) if (has(f) && (await fetchOne(f))) return f;
    return undefined;
  };
  const missing = (what: string, tried: readonly string[]) => {
    const url = `${endpoint}/${id}/resolve/${encodeURIComponent(revision)}/${tried[0]}`;
    const present = listed ? ` (it has ${listed.slice(0, 20).join(", ")}${listed.length > 20 ? ", ..." : ""})` : "";
    return new Error(
      `${id} has no ${what} at revision "${revision}"${listed ? "" : ` (${url} answered 404)`}${present}: check ` +
        `the model id and revision; this project needs a BERT checkpoint with ${NEEDS}`,
    );
  };

  if (!(await first(["config.json", "bert_config.json"]))) {
    throw missing("config.json", ["config.json", "bert_config.json"]);
  }
  if (!(await first(["vocab.txt"]))) throw missing("vocab.txt", ["vocab.txt"]);
  let candidates = [...WEIGHT_CANDIDATES];
  if (listed) {
    // Any other TensorFlow checkpoint of the revision (e.g. model.ckpt-1000.index), after the usual names.
    candidates.push(...listed.filter((f) => f.endsWith(".index") && !candidates.includes(f)).sort());
    candidates = candidates.filter((f) => listed.includes(f));
  }
  const weights = await first(candidates);
  if (!weights) {
    const unreadable = ["tf_model.h5", "flax_model.msgpack"].filter((f) => listed?.includes(f));
    if (unreadable.length) {
      throw new Error(
        `${id} (revision "${revision}") has only ${unreadable.join(" and ")} as weights, which this project ` +
          `cannot read; readable: model.safetensors, pytorch_model.bin or a TensorFlow checkpoint (.index + .data-*)`,
      );
    }
    throw missing("weights", WEIGHT_CANDIDATES);
  }
  for (const f of await companions(dir, weights)) {
    if (!(await fetchOne(f))) throw missing(f, [f]);
  }
  for (const f of OPTIONAL_FILES) if (has(f)) await fetchOne(f);
  return result;
}
