/**
 * lib/hub.ts against a local HTTP server on 127.0.0.1 that serves a checkpoint in the hub's URL layout
 * (`/{owner}/{name}/resolve/{revision}/{file}`), supports `Range`, and can cut a transfer off after K bytes.
 */
import { cacheDirFor, downloadModel, type DownloadProgress, HubUnreachableError } from "../lib/hub.ts";
import { assert, assertEquals, assertRejects, assertThrows, withTemp } from "./shared.ts";

/** A fake checkpoint: small text files and a 300 kB pseudo-random "model.safetensors". */
function fakeCheckpoint(): Record<string, Uint8Array> {
  const weights = new Uint8Array(300_000);
  let x = 12345;
  for (let i = 0; i < weights.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    weights[i] = x >>> 24;
  }
  const enc = new TextEncoder();
  return {
    "config.json": enc.encode(JSON.stringify({ model_type: "bert", hidden_size: 4 })),
    "vocab.txt": enc.encode("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n"),
    "model.safetensors": weights,
  };
}

interface Seen {
  path: string;
  range: string | null;
}

interface FakeHub {
  url: string;
  seen: Seen[];
  /** Cut the next transfer of this file after this many bytes (then close the connection). */
  cut?: { file: string; after: number };
  /** Answer Range requests with a full 200 response (a server without resume support). */
  ignoreRange?: boolean;
  close(): Promise<void>;
}

function startHub(files: Record<string, Uint8Array>, repo = "acme/tiny-bert", revision = "main"): FakeHub {
  const hub: FakeHub = { url: "", seen: [], close: async () => {} };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    hub.seen.push({ path, range: req.headers.get("range") });
    const prefix = `/${repo}/resolve/${revision}/`;
    const data = path.startsWith(prefix) ? files[path.slice(prefix.length)] : undefined;
    if (!data) return new Response("Entry not found", { status: 404 });
    const file = path.slice(prefix.length);
    let start = 0;
    let status = 200;
    const headers: Record<string, string> = {};
    const range = req.headers.get("range")?.match(/^bytes=(\d+)-$/);
    if (range && !hub.ignoreRange) {
      start = Number(range[1]);
      if (start >= data.length) {
        return new Response(null, { status: 416, headers: { "content-range": `bytes */${data.length}` } });
      }
      status = 206;
      headers["content-range"] = `bytes ${start}-${data.length - 1}/${data.length}`;
    }
    const body = data.subarray(start);
    headers["content-length"] = String(body.length);
    const cut = hub.cut?.file === file ? hub.cut : undefined;
    if (!cut) return new Response(body as Uint8Array<ArrayBuffer>, { status, headers });
    hub.cut = undefined;
    // Send the first `after` bytes, give them time to arrive, then break the connection.
    const stream = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(body.slice(0, cut.after));
        await new Promise((r) => setTimeout(r, 200));
        controller.close(); // fewer bytes than Content-Length: the connection ends early
      },
    });
    return new Response(stream, { status, headers });
  });
  hub.url = `http://127.0.0.1:${server.addr.port}`;
  hub.close = async () => {
    await server.shutdown();
  };
  return hub;
}

/** Runs `fn` against a fake hub serving `files` and an empty cache folder; closes and removes both after. */
async function withHub(
  files: Record<string, Uint8Array>,
  fn: (hub: FakeHub, cache: string) => Promise<void>,
): Promise<void> {
  const hub = startHub(files);
  try {
    await withTemp((cache) => fn(hub, cache));
  } finally {
    await hub.close();
  }
}

Deno.test("download: files land in <cache>/<owner--name>/<revision>/, byte-identical, with progress", async () => {
  const files = fakeCheckpoint();
  await withHub(files, async (hub, cache) => {
    const events: DownloadProgress[] = [];
    const result = await downloadModel("acme/tiny-bert", {
      endpoint: hub.url,
      cache,
      offline: false,
      onProgress: (p) => events.push({ ...p }),
    });
    assertEquals(result.dir, `${cache}/acme--tiny-bert/main`);
    assertEquals(result.downloaded, ["config.json", "vocab.txt", "model.safetensors"]); // no tokenizer_config.json (404)
    for (const [name, data] of Object.entries(files)) assertEquals(await Deno.readFile(`${result.dir}/${name}`), data);
    assertEquals([...Deno.readDirSync(result.dir)].map((e) => e.name).sort(), Object.keys(files).sort());
    const last = events.filter((e) => e.file === "model.safetensors").at(-1)!;
    assertEquals([last.received, last.total, last.done], [300_000, 300_000, true]);
    assert(hub.seen.some((s) => s.path === "/acme/tiny-bert/resolve/main/tokenizer_config.json"));
    // Second call: every required file cached: no request at all (works without network).
    const before = hub.seen.length;
    const again = await downloadModel("acme/tiny-bert", { endpoint: hub.url, cache, offline: false });
    assertEquals([again.downloaded, hub.seen.length], [[], before]);
    assertEquals(again.cached, ["config.json", "vocab.txt", "model.safetensors"]);
  });
});

Deno.test("download: a transfer cut after K bytes keeps a .part; the next run resumes with Range: bytes=K-", async () => {
  const files = fakeCheckpoint();
  const K = 120_000;
  await withHub(files, async (hub, cache) => {
    hub.cut = { file: "model.safetensors", after: K };
    await assertRejects(
      () => downloadModel("acme/tiny-bert", { endpoint: hub.url, cache, offline: false }),
      Error,
      "run the command again to resume",
    );
    const dir = cacheDirFor("acme/tiny-bert", { cache });
    assert(!(await exists(`${dir}/model.safetensors`)), "no final file after an interrupted transfer");
    assertEquals((await Deno.stat(`${dir}/model.safetensors.part`)).size, K);

    const events: DownloadProgress[] = [];
    const result = await downloadModel("acme/tiny-bert", {
      endpoint: hub.url,
      cache,
      offline: false,
      onProgress: (p) => events.push({ ...p }),
    });
    const ranges = hub.seen.filter((s) => s.path.endsWith("/model.safetensors")).map((s) => s.range);
    assertEquals(ranges, [null, `bytes=${K}-`]);
    assertEquals(result.downloaded, ["model.safetensors"]);
    assertEquals(result.cached, ["config.json", "vocab.txt"]);
    assertEquals(events.at(-1)!.resumedFrom, K);
    assertEquals(await Deno.readFile(`${dir}/model.safetensors`), files["model.safetensors"]);
    assert(!(await exists(`${dir}/model.safetensors.part`)));
  });
});

Deno.test("download: a server that ignores Range (200) restarts the file; a complete .part (416) is kept", async () => {
  const files = fakeCheckpoint();
  await withHub(files, async (hub, cache) => {
    const dir = cacheDirFor("acme/tiny-bert", { cache });
    await Deno.mkdir(dir, { recursive: true });
    // A stale .part whose bytes are wrong: with a 200 answer it must be overwritten, not appended to.
    await Deno.writeFile(`${dir}/model.safetensors.part`, new Uint8Array(5000).fill(7));
    hub.ignoreRange = true;
    await downloadModel("acme/tiny-bert", { endpoint: hub.url, cache, offline: false });
    assertEquals(await Deno.readFile(`${dir}/model.safetensors`), files["model.safetensors"]);
    assertEquals(hub.seen.find((s) => s.path.endsWith("model.safetensors"))!.range, "bytes=5000-");

    // A .part that already holds the whole file: the server answers 416 and the .part becomes the file.
    hub.ignoreRange = false;
    await Deno.rename(`${dir}/model.safetensors`, `${dir}/model.safetensors.part`);
    const result = await downloadModel("acme/tiny-bert", { endpoint: hub.url, cache, offline: false });
    assertEquals(result.downloaded, ["model.safetensors"]);
    assertEquals(await Deno.readFile(`${dir}/model.safetensors`), files["model.safetensors"]);
  });
});

Deno.test("download: offline mode uses the cache or names what is missing", async () => {
  const files = fakeCheckpoint();
  await withHub(files, async (hub, cache) => {
    await assertRejects(
      () => downloadModel("acme/tiny-bert", { endpoint: hub.url, cache, offline: true }),
      Error,
      `lacks config.json, vocab.txt, model.safetensors`,
    );
    assertEquals(hub.seen.length, 0);
    await downloadModel("acme/tiny-bert", { endpoint: hub.url, cache, offline: false });
    const requests = hub.seen.length;
    const result = await downloadModel("acme/tiny-bert", { endpoint: hub.url, cache, offline: true });
    assertEquals(result.cached, ["config.json", "vocab.txt", "model.safetensors"]);
    assertEquals(hub.seen.length, requests);
    await Deno.remove(`${result.dir}/vocab.txt`);
    await assertRejects(
      () => downloadModel("acme/tiny-bert", { endpoint: hub.url, cache, offline: true }),
      Error,
      "lacks vocab.txt",
    );
  });
});

Deno.test("download: unreachable endpoint, unknown model, bad ids give clear errors", async () => {
  await withHub(fakeCheckpoint(), async (hub, cache) => {
    const err = await assertRejects(
      () => downloadModel("acme/tiny-bert", { endpoint: "http://127.0.0.1:1", cache, offline: false }),
      HubUnreachableError,
      "cannot reach http://127.0.0.1:1",
    );
    assert(err.message.includes("HF_HUB_OFFLINE=1"), err.message);
    await assertRejects(
      () => downloadModel("acme/other", { endpoint: hub.url, cache, offline: false }),
      Error,
      `acme/other has no config.json at revision "main"`,
    );
    assertThrows(() => cacheDirFor("../etc"), Error, "not a valid model id");
    assertEquals(
      cacheDirFor("bert-base-uncased", { revision: "refs/pr/1" }),
      ".cache/hub/bert-base-uncased/refs--pr--1",
    );
  });
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
