/**
 * `extract-features`: the written file holds the inputs built by convertExample and hidden states equal to a
 * direct forward pass of the same checkpoint.
 */
import { parseArgs } from "../../lib/cli/args.ts";
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { loadCheckpoint } from "../../lib/model/checkpoint.ts";
import { run, spec } from "../../lib/cli/extract_features.ts";
import { readTextsJsonl, resolveLayers } from "../../lib/eval/extract_features.ts";
import { convertExample } from "../../lib/data/features.ts";
import { readSafetensors } from "../../lib/io/safetensors.ts";
import { assert, assertEquals, assertRejects, assertThrows, HAVE_SHARED, maxAbsDiff, SHARED } from "../shared.ts";

const TINY = `${SHARED}/data/models/tiny-random-BertForSequenceClassification.FALLBACK-RANDOM-WEIGHTS`;
const TEXTS = [
  { text: "The cat sat on the mat." },
  { text: "Is this a question?", text_pair: "Yes, it is a question about things." },
  { text: "A very long sentence that will certainly be cut off at sixteen tokens, maybe earlier." },
];

if (!HAVE_SHARED) console.warn(`extract_features_test: ${SHARED} absent: the end-to-end test is skipped`);

Deno.test({
  name: "extract-features on 3 texts: shapes, metadata, and hidden states equal a direct model.forward",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "extract_test_" });
    await Deno.writeTextFile(`${dir}/in.jsonl`, TEXTS.map((t) => JSON.stringify(t)).join("\n") + "\n");
    const argv = ["--model", TINY, "--input", `${dir}/in.jsonl`, "--output", `${dir}/out.safetensors`];
    await run(parseArgs([...argv, "--max-seq-length", "16", "--batch-size", "2"], spec));
    const { tensors, metadata } = await readSafetensors(`${dir}/out.safetensors`);
    const names = Object.keys(tensors).sort();
    assertEquals(names, [
      "attention_mask",
      "hidden_states.0",
      "hidden_states.1",
      "hidden_states.2",
      "hidden_states.3",
      "hidden_states.4",
      "hidden_states.5",
      "input_ids",
      "pooled_output",
      "token_type_ids",
    ]);
    for (const k of ["input_ids", "token_type_ids", "attention_mask"]) {
      assertEquals([tensors[k].dtype, tensors[k].shape], ["I32", [3, 16]], k);
    }
    assertEquals([tensors["hidden_states.5"].dtype, tensors["hidden_states.5"].shape], ["F32", [3, 16, 32]]);
    assertEquals(tensors.pooled_output.shape, [3, 32]);
    assertEquals(metadata.max_seq_length, "16");
    assertEquals(metadata.model, TINY);

    await initBackend({ quiet: true });
    const { model, tokenizer } = await loadCheckpoint(TINY, { head: "none", quiet: true });
    assertEquals(metadata.vocab_sha256, await tokenizer.vocab.sha256());
    const rows = TEXTS.map((t, i) =>
      convertExample({ id: String(i), textA: t.text, textB: t.text_pair, line: i + 1 }, tokenizer, 16)
    );
    assertEquals(Array.from(tensors.input_ids.data as Int32Array), rows.flatMap((r) => r.inputIds));
    assertEquals(Array.from(tensors.token_type_ids.data as Int32Array), rows.flatMap((r) => r.tokenTypeIds));
    assertEquals(Array.from(tensors.attention_mask.data as Int32Array), rows.flatMap((r) => r.attentionMask));
    assert(rows[1].tokenTypeIds.includes(1), "the pair has segment-B tokens");

    // Direct forward on all three at once (the command ran batches of 2).
    const t = (k: "inputIds" | "tokenTypeIds" | "attentionMask") =>
      tf.tensor2d(rows.map((r) => r[k]), [3, 16], "int32");
    const out = model.forward({
      inputIds: t("inputIds"),
      tokenTypeIds: t("tokenTypeIds"),
      attentionMask: t("attentionMask"),
    }, {
      outputHiddenStates: true,
    });
    for (let l = 0; l <= 5; l++) {
      const a = out.hiddenStates![l].dataSync();
      const b = tensors[`hidden_states.${l}`].data as Float32Array;
      const m = maxAbsDiff(a, b);
      assert(m < 1e-5, `hidden_states.${l} differs by ${m}`);
    }
    const p = out.pooledOutput!.dataSync();
    assert(p.every((v, i) => Math.abs(v - (tensors.pooled_output.data as Float32Array)[i]) < 1e-5));
    tf.dispose(out);
    model.dispose();

    // A subset of layers, negative indices from the end.
    // Same batch size as the first run: BLAS may sum in another order for another batch shape.
    await run(parseArgs([...argv, "--layers", "-1,0", "--max-seq-length", "16", "--batch-size", "2"], spec));
    const subset = await readSafetensors(`${dir}/out.safetensors`);
    assertEquals(Object.keys(subset.tensors).filter((k) => k.startsWith("hidden")).sort(), [
      "hidden_states.0",
      "hidden_states.5",
    ]);
    assertEquals(subset.tensors["hidden_states.5"].data, tensors["hidden_states.5"].data);
    await assertRejects(() => run(parseArgs([...argv, "--layers", "7"], spec)), Error, "layer 7 does not exist");
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test("readTextsJsonl: texts, pairs, blank lines; errors name file and line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "extract_jsonl_" });
  const path = `${dir}/in.jsonl`;
  await Deno.writeTextFile(path, '{"text": "a"}\n\n{"text": "b", "text_pair": "c"}\n');
  assertEquals(await readTextsJsonl(path), [{ text: "a", textPair: undefined, line: 1 }, {
    text: "b",
    textPair: "c",
    line: 3,
  }]);
  await Deno.writeTextFile(path, '{"text": "a"}\n{"txt": "b"}\n');
  await assertRejects(() => readTextsJsonl(path), Error, `${path}:2: expected an object with a string "text"`);
  await Deno.writeTextFile(path, '{"text": "a"}\n{oops\n');
  await assertRejects(() => readTextsJsonl(path), Error, `${path}:2: not valid JSON`);
  await Deno.writeTextFile(path, "\n");
  await assertRejects(() => readTextsJsonl(path), Error, "no texts");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("resolveLayers: all, negative indices, duplicates, out of range", () => {
  assertEquals(resolveLayers("all", 2), [0, 1, 2]);
  assertEquals(resolveLayers([-1, -2, 0, 2], 2), [2, 1, 0]);
  assertThrows(() => resolveLayers([3], 2), Error, "hidden states 0..2");
  assertThrows(() => resolveLayers([-4], 2), Error, "layer -4 does not exist");
});
