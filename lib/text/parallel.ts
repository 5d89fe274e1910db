/**
 * Tokenization spread over Deno Workers (lib/text/tokenize_worker.ts): {@linkcode TokenizerPool} and
 * {@linkcode tokenizeParallel} return the same {@linkcode TokenizedBatch} as lib/text/tokenizer.ts's `encodeBatch` on the calling
 * thread, in input order. Worth it for large corpora.
 * @module
 */
import type { BatchEncodeOptions, TokenizedBatch } from "./tokenizer.ts";

/** Options for {@linkcode TokenizerPool.create}. */
export interface TokenizerPoolOptions {
  /** `vocab.txt` each worker loads. */
  vocabPath: string;
  /** Uncased model (lower-case and strip accents). */
  lowerCase: boolean;
  /** Number of workers; default `navigator.hardwareConcurrency`. */
  workers?: number;
  /** Never-split tokens (default `SPECIAL_TOKENS`: BERT's special tokens). */
  neverSplit?: string[];
}

/** Options for {@linkcode TokenizerPool.encode}. */
export interface PoolEncodeOptions extends BatchEncodeOptions {
  /** Texts per message to a worker; default 2,000. */
  chunkSize?: number;
  /** Called after each finished chunk with the number of texts done so far. */
  onProgress?: (done: number, total: number) => void;
}

/** Options for {@linkcode tokenizeParallel}. */
export type ParallelTokenizeOptions = TokenizerPoolOptions & PoolEncodeOptions;

/** Messages of the worker protocol (see lib/text/tokenize_worker.ts). */
export type WorkerRequest =
  | { type: "init"; vocabPath: string; lowerCase: boolean; neverSplit?: string[] }
  | { type: "chunk"; chunk: number; texts: string[]; maxSeqLength?: number };
/** Replies of the worker protocol. */
export type WorkerReply =
  | { type: "ready" }
  | { type: "result"; chunk: number; batch: TokenizedBatch }
  | { type: "error"; message: string };

/**
 * Deno Workers that each hold a tokenizer (they load the vocabulary themselves). {@linkcode TokenizerPool.encode}
 * hands chunks of texts to whichever worker is free and returns the same {@linkcode TokenizedBatch} as
 * `encodeBatch`, in input order. Keep one pool for several corpora (starting a worker costs a fraction
 * of a second); {@linkcode TokenizerPool.close} ends the workers.
 *
 * @example
 * const pool = await TokenizerPool.create({ vocabPath: "vocab.txt", lowerCase: true });
 * try { const train = await pool.encode(texts, { maxSeqLength: 128 }); } finally { pool.close(); }
 */
export class TokenizerPool {
  #workers: Worker[];
  #handlers = new Map<Worker, (m: WorkerReply) => void>();
  #failed: Error | null = null;
  #busy: Promise<unknown> = Promise.resolve();

  private constructor(workers: Worker[]) {
    this.#workers = workers;
  }

  /** Starts the workers and waits until each has loaded the vocabulary (rejects if any fails). */
  static async create(options: TokenizerPoolOptions): Promise<TokenizerPool> {
    const n = Math.max(1, Math.floor(options.workers ?? navigator.hardwareConcurrency ?? 2));
    const workers: Worker[] = [];
    const pool = new TokenizerPool(workers);
    const ready: Promise<void>[] = [];
    for (let k = 0; k < n; k++) {
      const w = new Worker(new URL("./tokenize_worker.ts", import.meta.url), { type: "module" });
      workers.push(w);
      ready.push(
        new Promise<void>((resolve, reject) => {
          pool.#handlers.set(w, (m) => m.type === "ready" ? resolve() : reject(pool.#fail(m)));
        }),
      );
      w.onmessage = (e: MessageEvent<WorkerReply>) => pool.#handlers.get(w)?.(e.data);
      w.onerror = (e) => {
        e.preventDefault();
        pool.#handlers.get(w)?.({ type: "error", message: e.message });
      };
      const init: WorkerRequest = {
        type: "init",
        vocabPath: options.vocabPath,
        lowerCase: options.lowerCase,
        neverSplit: options.neverSplit,
      };
      w.postMessage(init);
    }
    try {
      await Promise.all(ready);
    } catch (err) {
      pool.close();
      throw err;
    }
    return pool;
  }

  /** Number of workers. */
  get size(): number {
    return this.#workers.length;
  }

  #fail(m: WorkerReply): Error {
    this.#failed ??= new Error(`tokenizer worker: ${m.type === "error" ? m.message : "unexpected " + m.type}`);
    return this.#failed;
  }

  /** Tokenizes `texts` on the workers (calls run one after another). */
  encode(texts: string[], options: PoolEncodeOptions = {}): Promise<TokenizedBatch> {
    const job = this.#busy.then(() => this.#encode(texts, options));
    this.#busy = job.catch(() => {});
    return job;
  }

  async #encode(texts: string[], options: PoolEncodeOptions): Promise<TokenizedBatch> {
    if (this.#failed) throw this.#failed;
    if (this.#workers.length === 0) throw new Error("the tokenizer pool is closed");
    const n = texts.length;
    const L = options.maxSeqLength;
    if (L !== undefined && (!Number.isInteger(L) || L < 2)) {
      throw new Error(`maxSeqLength must be an integer >= 2, got ${L}`);
    }
    const chunkSize = Math.max(1, Math.floor(options.chunkSize ?? 2000));
    const nChunks = Math.ceil(n / chunkSize);
    const parts: TokenizedBatch[] = new Array(nChunks);
    if (nChunks > 0) {
      await new Promise<void>((resolve, reject) => {
        let next = 0;
        let done = 0;
        const send = (w: Worker) => {
          if (next >= nChunks) return;
          const chunk = next++;
          const texts1 = texts.slice(chunk * chunkSize, (chunk + 1) * chunkSize);
          const msg: WorkerRequest = { type: "chunk", chunk, texts: texts1, maxSeqLength: L };
          w.postMessage(msg);
        };
        for (const w of this.#workers) {
          this.#handlers.set(w, (m) => {
            if (m.type !== "result") return reject(this.#fail(m));
            parts[m.chunk] = m.batch;
            done++;
            options.onProgress?.(Math.min(done * chunkSize, n), n);
            if (done === nChunks) resolve();
            else send(w);
          });
          send(w);
        }
      });
    }
    return concatBatches(parts, n, L);
  }

  /** Ends the workers. */
  close(): void {
    for (const w of this.#workers) w.terminate();
    this.#workers.length = 0;
    this.#handlers.clear();
  }
}

/**
 * Tokenizes `texts` with a temporary {@linkcode TokenizerPool} and returns the same {@linkcode TokenizedBatch} as
 * `encodeBatch`, in input order. Worth it for large corpora (hundreds of thousands of texts); for small
 * ones `encodeBatch` on the calling thread is faster.
 */
export async function tokenizeParallel(texts: string[], options: ParallelTokenizeOptions): Promise<TokenizedBatch> {
  const pool = await TokenizerPool.create(options);
  try {
    return await pool.encode(texts, options);
  } finally {
    pool.close();
  }
}

function concatBatches(parts: TokenizedBatch[], n: number, L: number | undefined): TokenizedBatch {
  const lengths = new Int32Array(n);
  let row = 0;
  let truncated = 0;
  let total = 0;
  for (const p of parts) total += p.ids.length;
  const ids = new Int32Array(total);
  const offsets = L === undefined ? new Int32Array(n + 1) : undefined;
  let at = 0;
  for (const p of parts) {
    lengths.set(p.lengths, row);
    ids.set(p.ids, at);
    if (offsets && p.offsets) {
      for (let i = 0; i < p.n; i++) offsets[row + i + 1] = at + p.offsets[i + 1];
    }
    at += p.ids.length;
    row += p.n;
    truncated += p.truncated;
  }
  return L === undefined ? { n, ids, offsets, lengths, truncated: 0 } : { n, maxSeqLength: L, ids, lengths, truncated };
}
