/** lib/model/pretrained.ts: which model a run starts from (given folder, hub cache, shipped folder, random). */
import { chooseStartingModel, DEFAULT_MODEL_ID, shippedModelDir } from "../../lib/model/pretrained.ts";
import { cacheDirFor } from "../../lib/io/hub.ts";
import { join } from "../../lib/io/fsutil.ts";
import { loadCheckpoint } from "../../lib/model/checkpoint.ts";
import { initBackend } from "../../lib/backends/backend.ts";
import { assert, assertEquals, assertRejects, withTemp } from "../shared.ts";

Deno.test("chooseStartingModel: given folder, else hub cache, else the shipped folder, else random", async () => {
  await withTemp(async (tmp) => {
    const cache = join(tmp, "hub"), shipped = join(tmp, "shipped");
    // Nothing cached, nothing shipped, offline: random, and the reason names both.
    const none = await chooseStartingModel({ offline: true, cache, shippedDir: shipped });
    assertEquals(none.kind, "random");
    assertEquals(none.dir, undefined);
    assert(none.why.includes("offline") && none.why.includes("shipped"), none.why);
    // A shipped folder: used offline, with a notice.
    await Deno.mkdir(shipped, { recursive: true });
    await Deno.writeTextFile(join(shipped, "config.json"), "{}");
    const ship = await chooseStartingModel({ offline: true, cache, shippedDir: shipped });
    assertEquals([ship.kind, ship.dir], ["shipped", shipped]);
    assert(ship.notice!.join(" ").includes(DEFAULT_MODEL_ID), "the notice says how to get Google's BERT-Tiny");
    // Not offline but no download asked: still the shipped folder (the reason: not in the cache).
    const noDownload = await chooseStartingModel({ cache, shippedDir: shipped });
    assertEquals(noDownload.kind, "shipped");
    assert(noDownload.why.includes("not in the cache"), noDownload.why);
    // Google's BERT-Tiny in the hub cache wins over the shipped folder.
    const cachedDir = cacheDirFor(DEFAULT_MODEL_ID, { cache });
    await Deno.mkdir(cachedDir, { recursive: true });
    for (const f of ["config.json", "vocab.txt", "model.safetensors"]) await Deno.writeTextFile(join(cachedDir, f), "");
    const hub = await chooseStartingModel({ offline: true, cache, shippedDir: shipped });
    assertEquals([hub.kind, hub.dir], ["hub-cache", cachedDir]);
    // A folder the user names wins over everything; a missing one is an error naming it.
    assertEquals((await chooseStartingModel({ model: shipped, cache })).kind, "given");
    await assertRejects(() => chooseStartingModel({ model: join(tmp, "nope") }), Error, "nope");
  });
});

Deno.test({
  name: "data/pretrained: the shipped model loads with every head and its vocabulary",
  ignore: !(await Deno.stat(join(shippedModelDir(), "config.json")).then(() => true, () => false)),
}, async () => {
  await initBackend({ backend: "cpu", quiet: true });
  const dir = shippedModelDir();
  const mlm = await loadCheckpoint(dir, { head: "pretraining", quiet: true });
  // Every pre-training weight is in the file, the next-sentence head included (its last phase trained one).
  assertEquals(mlm.report.missing, []);
  assertEquals(mlm.report.unexpected, []);
  assertEquals([mlm.config.numHiddenLayers, mlm.config.hiddenSize, mlm.tokenizer.vocab.size], [2, 128, 8000]);
  assert(mlm.tokenizer.lowerCase);
  mlm.model.dispose();
  const cls = await loadCheckpoint(dir, { head: "classification", numLabels: 2, quiet: true });
  assertEquals(cls.report.missing.sort(), ["classifier.bias", "classifier.weight"]);
  cls.model.dispose();
});
