/**
 * Worker side of lib/text/parallel.ts's `TokenizerPool` and `tokenizeParallel`: started with
 * `new Worker(new URL("./tokenize_worker.ts", import.meta.url), { type: "module" })`.
 *
 * Protocol: the first message is `init` (vocabulary path, casing, never-split tokens); the worker loads the
 * vocabulary and answers `ready`. Each `chunk` message (a slice of the texts, optional row length) is answered with
 * a `result` holding a {@linkcode TokenizedBatch} whose typed arrays are transferred, not copied. Any failure is
 * answered with `error`.
 * @module
 */
import type { WorkerReply, WorkerRequest } from "./parallel.ts";
import { encodeBatch, FullTokenizer, type TokenizedBatch } from "./tokenizer.ts";

interface WorkerScope {
  onmessage: ((e: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: WorkerReply, transfer?: Transferable[]): void;
}

const scope = globalThis as unknown as WorkerScope;
let tokenizer: FullTokenizer | undefined;

function buffers(batch: TokenizedBatch): Transferable[] {
  const arrays = batch.offsets ? [batch.ids, batch.lengths, batch.offsets] : [batch.ids, batch.lengths];
  return arrays.map((a) => a.buffer as ArrayBuffer);
}

async function handle(msg: WorkerRequest): Promise<void> {
  if (msg.type === "init") {
    tokenizer = await FullTokenizer.fromVocabFile(msg.vocabPath, {
      lowerCase: msg.lowerCase,
      neverSplit: msg.neverSplit,
    });
    scope.postMessage({ type: "ready" });
    return;
  }
  if (!tokenizer) throw new Error("chunk received before init");
  const batch = encodeBatch(tokenizer, msg.texts, { maxSeqLength: msg.maxSeqLength });
  scope.postMessage({ type: "result", chunk: msg.chunk, batch }, buffers(batch));
}

scope.onmessage = (e: MessageEvent<WorkerRequest>) => {
  handle(e.data).catch((err) => {
    scope.postMessage({ type: "error", message: err instanceof Error ? err.message : String(err) });
  });
};
