import { assert, assertEquals, assertRejects, HAVE_SHARED, SHARED, withTemp } from "../shared.ts";
import { parseArgs } from "../../lib/cli/args.ts";
import { run as runPrepareCli, spec as prepareSpec } from "../../lib/cli/prepare.ts";
import { readGlueSst2 } from "../../lib/data/datasets.ts";
import { checkFeaturesMatch, loadFeatures } from "../../lib/data/features.ts";
import { exists } from "../../lib/io/fsutil.ts";
import { prepareFeatures } from "../../lib/data/prepare.ts";
import { FullTokenizer } from "../../lib/text/tokenizer.ts";
import { Vocab } from "../../lib/text/vocab.ts";

/** Specials plus single letters and their ## continuations: covers every lower-case ASCII word. */
function letterVocab(): string[] {
  const letters = "abcdefghijklmnopqrstuvwxyz0123456789".split("");
  return [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    ...letters,
    ...letters.map((c) => "##" + c),
    ".",
    ",",
    "!",
    "'",
  ];
}

Deno.test("prepare: the embedded sample with a given vocab writes train/dev features that load and match", async () => {
  await withTemp(async (dir) => {
    const vocabPath = `${dir}/vocab.txt`;
    await Deno.writeTextFile(vocabPath, letterVocab().join("\n") + "\n");
    const seen: string[] = [];
    const result = await prepareFeatures({
      vocab: vocabPath,
      outputsDir: `${dir}/outputs`,
      maxSeqLength: 64,
      quiet: true,
      onProgress: (split, done, total) => done === total && seen.push(`${split} ${total}`),
    });
    const train = await readGlueSst2("data/sample/train.tsv");
    const dev = await readGlueSst2("data/sample/dev.tsv");
    assertEquals(result.run, "sample");
    assertEquals(result.featuresDir, `${dir}/outputs/sample/features`);
    assertEquals(seen, [`train ${train.examples.length}`, `dev ${dev.examples.length}`]);
    const entries = [];
    for await (const e of Deno.readDir(result.featuresDir)) entries.push(e.name);
    assertEquals(entries.sort(), ["dev.safetensors", "train.safetensors"]); // nothing else, no temporaries
    const tokenizer = await FullTokenizer.fromVocabFile(vocabPath);
    for (const [split, data] of [["train", train], ["dev", dev]] as const) {
      const fs = await loadFeatures(`${result.featuresDir}/${split}.safetensors`);
      assertEquals(fs.n, data.examples.length, split);
      assertEquals(Array.from(fs.labels), data.examples.map((e) => e.label), split);
      assertEquals(fs.exampleIds, data.examples.map((e) => e.id));
      assertEquals(fs.metadata.task, "sample");
      assertEquals(fs.metadata.labels, ["negative", "positive"]);
      assertEquals(fs.metadata.max_seq_length, 64);
      assertEquals(fs.metadata.vocab_path, vocabPath);
      await checkFeaturesMatch(fs, tokenizer, split);
      // first row: [CLS] + the letter pieces of the first sentence + [SEP]
      const first = tokenizer.encode(data.examples[0].textA).ids;
      const row = Array.from(fs.inputIds.subarray(0, 64));
      if (first.length + 2 <= 64) assertEquals(row.slice(0, first.length + 2), [2, ...first, 3]);
      else assertEquals(row, [2, ...first.slice(0, 62), 3]);
    }
    assert(result.summary.some((l) => l.includes(`examples: ${train.examples.length}`)), result.summary.join("\n"));
  });
});

Deno.test("prepare: the sample without a vocab builds one in the run folder, then reuses it", async () => {
  await withTemp(async (dir) => {
    const lines: string[] = [];
    const first = await prepareFeatures({ outputsDir: dir, run: "s1", limit: 10, log: (l) => lines.push(l) });
    assertEquals(first.vocabPath, `${dir}/s1/vocab.txt`);
    assertEquals(first.vocabBuilt, true);
    assert(lines.some((l) => l.includes("built a") && l.includes("vocabulary")), lines.join("\n"));
    const vocab = await Vocab.load(first.vocabPath);
    assert(vocab.size > 100 && vocab.size <= 2000, `vocab size ${vocab.size}`);
    for (const t of ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]) assert(vocab.id(t) !== undefined, t);
    assertEquals(first.splits.train.features.n, 10);
    assertEquals(first.splits.dev.features.n, 10);
    const again = await prepareFeatures({ outputsDir: dir, run: "s1", limit: 5, quiet: true });
    assertEquals(again.vocabBuilt, false);
    assertEquals(again.splits.train.features.metadata.vocab_sha256, await vocab.sha256());
    assertEquals((await loadFeatures(`${dir}/s1/features/train.safetensors`)).n, 5);
  });
});

Deno.test("prepare: clear errors for bad options", async () => {
  await withTemp(async (dir) => {
    await assertRejects(
      () => prepareFeatures({ task: "nope", outputsDir: dir, quiet: true }),
      Error,
      "valid tasks are",
    );
    await assertRejects(
      () => prepareFeatures({ run: "../x", outputsDir: dir, quiet: true }),
      Error,
      "plain folder name",
    );
    await assertRejects(
      () => prepareFeatures({ maxSeqLength: 1, outputsDir: dir, quiet: true }),
      Error,
      "--max-seq-length must be an integer >= 2",
    );
    await assertRejects(
      () => prepareFeatures({ vocab: `${dir}/missing.txt`, outputsDir: dir, quiet: true }),
      Error,
      `${dir}/missing.txt does not exist`,
    );
    await assertRejects(
      () => prepareFeatures({ vocab: "a", model: "b", outputsDir: dir, quiet: true }),
      Error,
      "not both",
    );
    await assertRejects(
      () =>
        prepareFeatures({
          train: "data/sample/train.tsv",
          dev: "data/sample/dev.tsv",
          task: "sst2",
          outputsDir: dir,
          quiet: true,
        }),
      Error,
      "--model DIR",
    );
    assert(!(await exists(`${dir}/sst2`)), "nothing written on error");
  });
});

Deno.test("prepare: the CLI wrapper parses flags and writes the same files", async () => {
  await withTemp(async (dir) => {
    const vocabPath = `${dir}/vocab.txt`;
    await Deno.writeTextFile(vocabPath, letterVocab().join("\n") + "\n");
    const log = console.log;
    console.log = () => {};
    try {
      await runPrepareCli(
        parseArgs(
          ["--vocab", vocabPath, "--outputs-dir", dir, "--run", "cli", "--limit", "7", "--max-seq-length=32"],
          prepareSpec,
        ),
      );
    } finally {
      console.log = log;
    }
    const fs = await loadFeatures(`${dir}/cli/features/dev.safetensors`);
    assertEquals([fs.n, fs.maxSeqLength], [7, 32]);
  });
});

interface Golden {
  text: string;
  uncased: number[];
}

Deno.test({
  name: "prepare: SST-2 and MRPC from ../shared with real vocabularies reproduce the golden token ids",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const golden = new Map(
      (await Deno.readTextFile(`${SHARED}/golden/tokenizer/public.jsonl`)).split("\n").filter((l) => l)
        .map((l) => JSON.parse(l) as Golden).map((g) => [g.text, g.uncased]),
    );
    await withTemp(async (dir) => {
      const sst2 = await prepareFeatures({
        task: "sst2",
        dataDir: `${SHARED}/data/glue/SST-2`,
        vocab: `${SHARED}/data/models/bert-base-uncased-vocab/vocab.txt`,
        outputsDir: dir,
        limit: 20,
        maxSeqLength: 64,
        quiet: true,
      });
      const dev = await loadFeatures(`${dir}/sst2/features/dev.safetensors`);
      assertEquals(dev.n, 20);
      const devData = await readGlueSst2(`${SHARED}/data/glue/SST-2/dev.tsv`, { limit: 20 });
      for (let i = 0; i < 20; i++) {
        const ids = golden.get(devData.examples[i].textA) ?? golden.get(devData.examples[i].textA + " ");
        assert(ids, `golden ids for SST-2 dev example ${i}`);
        assertEquals(Array.from(dev.inputIds.subarray(i * 64, i * 64 + ids.length + 2)), [101, ...ids, 102]);
      }
      assertEquals(sst2.lowerCase, true);

      // MRPC with a checkpoint folder: vocab.txt and do_lower_case come from it
      const model = `${SHARED}/data/models/google-bert_uncased_L-4_H-256_A-4.NO-WEIGHTS`;
      const mrpc = await prepareFeatures({ task: "mrpc", model, outputsDir: dir, limit: 5, quiet: true });
      assertEquals(mrpc.vocabPath, `${model}/vocab.txt`);
      const f = mrpc.splits.dev.features;
      assertEquals(f.metadata.labels, ["not_equivalent", "equivalent"]);
      const row0 = Array.from(f.tokenTypeIds.subarray(0, 128));
      const sepAt = Array.from(f.inputIds.subarray(0, 128)).indexOf(102);
      assert(sepAt > 1 && row0[sepAt] === 0 && row0[sepAt + 1] === 1, "segment b starts after the first [SEP]");
      await assertRejects(
        () => prepareFeatures({ task: "mrpc", model, outputsDir: dir, maxSeqLength: 1024, quiet: true }),
        Error,
        "max_position_embeddings",
      );
    });
  },
});
if (!HAVE_SHARED) console.warn("prepare_test: ../shared is absent; skipping the SST-2/MRPC end-to-end test");
