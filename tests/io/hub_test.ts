/**
 * lib/io/hub.ts against a local HTTP server on 127.0.0.1 that serves a checkpoint in the hub's URL layout
 * (`/{owner}/{name}/resolve/{revision}/{file}`), supports `Range`, and can cut a transfer off after K bytes.
 */
import { initBackend } from "../../lib/backends/backend.ts";
import { loadCheckpoint, modelToTensors } from "../../lib/model/checkpoint.ts";
import { cacheDirFor, downloadModel, type DownloadProgress, HubUnreachableError } from "../../lib/io/hub.ts";
import { hfNameToGoogle, transposeEntry, writeTfCheckpoint } from "../../lib/io/tf_checkpoint.ts";
import { writePytorchBin } from "../../lib/io/pytorch_bin.ts";
import { BertModel, configFromJson } from "../../lib/model/model.ts";
import type { TensorEntry } from "../../lib/io/safetensors.ts";
import { assert, assertEquals, assertRejects, assertThrows, withTemp } from "../shared.ts";

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

/**
 * Serves `files` as `repo` at `revision`. With `api`, also the hub's file list (`/api/models/{repo}/revision/{rev}`,
 * `{"siblings": [{"rfilename"}]}`); without it that address is a 404, as for a mirror that serves only files.
 */
function startHub(
  files: Record<string, Uint8Array>,
  repo = "acme/tiny-bert",
  revision = "main",
  api = false,
): FakeHub {
  const hub: FakeHub = { url: "", seen: [], close: async () => {} };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    hub.seen.push({ path, range: req.headers.get("range") });
    if (api && path === `/api/models/${repo}/revision/${revision}`) {
      return Response.json({ id: repo, siblings: Object.keys(files).map((rfilename) => ({ rfilename })) });
    }
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
  api = false,
): Promise<void> {
  const hub = startHub(files, "acme/tiny-bert", "main", api);
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

// ---- repositories without model.safetensors ----

const TINY_CONFIG = {
  model_type: "bert",
  vocab_size: 8,
  hidden_size: 4,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  intermediate_size: 6,
  max_position_embeddings: 8,
  type_vocab_size: 2,
};

/** The files of a real (tiny, random) BertModel in one weights format, made with lib/io's writers. */
async function tinyRepo(format: "bin" | "sharded-bin" | "tf" | "h5"): Promise<{
  files: Record<string, Uint8Array>;
  tensors: Record<string, TensorEntry>;
}> {
  await initBackend({ backend: "cpu", quiet: true });
  const model = new BertModel(configFromJson(TINY_CONFIG), { head: "none", seed: 3 });
  const tensors = modelToTensors(model);
  model.dispose();
  const enc = new TextEncoder();
  const files: Record<string, Uint8Array> = {
    "vocab.txt": enc.encode("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n!\n"),
  };
  const tmp = await Deno.makeTempDir();
  try {
    if (format === "bin") {
      await writePytorchBin(`${tmp}/w.bin`, tensors);
      files["pytorch_model.bin"] = await Deno.readFile(`${tmp}/w.bin`);
    } else if (format === "sharded-bin") {
      const names = Object.keys(tensors);
      const weightMap: Record<string, string> = {};
      for (const [i, part] of [names.slice(0, 5), names.slice(5)].entries()) {
        const file = `pytorch_model-0000${i + 1}-of-00002.bin`;
        await writePytorchBin(`${tmp}/${file}`, Object.fromEntries(part.map((n) => [n, tensors[n]])));
        files[file] = await Deno.readFile(`${tmp}/${file}`);
        for (const n of part) weightMap[n] = file;
      }
      files["pytorch_model.bin.index.json"] = enc.encode(JSON.stringify({ weight_map: weightMap }));
    } else if (format === "tf") {
      const google: Record<string, TensorEntry> = {};
      for (const [name, t] of Object.entries(tensors)) {
        const g = hfNameToGoogle(`bert.${name}`);
        google[g.name] = g.transpose ? transposeEntry(t) : t;
      }
      await writeTfCheckpoint(`${tmp}/bert_model.ckpt`, google);
      files["bert_model.ckpt.index"] = await Deno.readFile(`${tmp}/bert_model.ckpt.index`);
      files["bert_model.ckpt.data-00000-of-00001"] = await Deno.readFile(`${tmp}/bert_model.ckpt.data-00000-of-00001`);
    } else {
      files["tf_model.h5"] = new Uint8Array([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
  files[format === "tf" ? "bert_config.json" : "config.json"] = enc.encode(JSON.stringify(TINY_CONFIG));
  return { files, tensors };
}

async function assertLoadsAs(dir: string, tensors: Record<string, TensorEntry>): Promise<void> {
  const { model, weights } = await loadCheckpoint(dir, { head: "none", quiet: true, announceWeights: false });
  const loaded = modelToTensors(model);
  model.dispose();
  assertEquals(Object.keys(loaded).sort(), Object.keys(tensors).sort(), weights.path);
  for (const name of Object.keys(tensors)) assertEquals(loaded[name].data, tensors[name].data, name);
}

for (const api of [true, false]) {
  Deno.test(`download ${api ? "(hub API lists the files)" : "(no API: names tried in order)"}: a .bin-only repo`, async () => {
    const { files, tensors } = await tinyRepo("bin");
    await withHub(files, async (hub, cache) => {
      const result = await downloadModel("acme/tiny-bert", { endpoint: hub.url, cache, offline: false });
      assertEquals(result.downloaded, ["config.json", "vocab.txt", "pytorch_model.bin"]);
      assertEquals(await Deno.readFile(`${result.dir}/pytorch_model.bin`), files["pytorch_model.bin"]);
      // With the API no file the repository lacks is asked for; without it, model.safetensors and its index 404.
      const asked = hub.seen.map((s) => s.path.split("/").pop());
      assertEquals(asked.includes("model.safetensors"), !api);
      await assertLoadsAs(result.dir, tensors);
      // Cached: offline and online calls need no request.
      const before = hub.seen.length;
      const again = await downloadModel("acme/tiny-bert", { endpoint: hub.url, cache, offline: true });
      assertEquals(again.cached, ["config.json", "vocab.txt", "pytorch_model.bin"]);
      await downloadModel("acme/tiny-bert", { endpoint: hub.url, cache, offline: false });
      assertEquals(hub.seen.length, before);
    }, api);
  });
}

Deno.test("download: sharded .bin (index + shards), a TensorFlow-only repo, an h5-only repo", async () => {
  for (const api of [true, false]) {
    const sharded = await tinyRepo("sharded-bin");
    await withHub(sharded.files, async (hub, cache) => {
      const result = await downloadModel("acme/tiny-bert", { endpoint: hub.url, cache, offline: false });
      assertEquals(result.downloaded, [
        "config.json",
        "vocab.txt",
        "pytorch_model.bin.index.json",
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
      ]);
      await assertLoadsAs(result.dir, sharded.tensors);
      // A shard lost from the cache is fetched again (the cache is not complete without it).
      await Deno.remove(`${result.dir}/pytorch_model-00002-of-00002.bin`);
      const again = await downloadModel("acme/tiny-bert", { endpoint: hub.url, cache, offline: false });
      assertEquals(again.downloaded, ["pytorch_model-00002-of-00002.bin"]);
    }, api);
    const tf = await tinyRepo("tf");
    await withHub(tf.files, async (hub, cache) => {
      const result = await downloadModel("acme/tiny-bert", { endpoint: hub.url, cache, offline: false });
      assertEquals(result.downloaded, [
        "bert_config.json",
        "vocab.txt",
        "bert_model.ckpt.index",
        "bert_model.ckpt.data-00000-of-00001",
      ]);
      await assertLoadsAs(result.dir, tf.tensors);
    }, api);
  }
  const h5 = await tinyRepo("h5");
  await withHub(h5.files, async (hub, cache) => {
    await assertRejects(
      () => downloadModel("acme/tiny-bert", { endpoint: hub.url, cache, offline: false }),
      Error,
      "has only tf_model.h5 as weights, which this project cannot read",
    );
  }, true);
});
