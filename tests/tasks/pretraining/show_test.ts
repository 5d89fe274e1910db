/** Showing an instance: one row per token, chosen tokens marked, as text and as HTML. */
import { parseCorpusText } from "../../../lib/tasks/pretraining/corpus.ts";
import { pretrainingVocab } from "../../../lib/tasks/pretraining/masking.ts";
import { createInstances, type PretrainingInstance } from "../../../lib/tasks/pretraining/instances.ts";
import { describeInstance, instanceHtml, instanceText } from "../../../lib/tasks/pretraining/show.ts";
import { assert, assertEquals } from "../../shared.ts";
import { smallTokenizer, TEXT } from "./fixtures.ts";

Deno.test("describeInstance / instanceHtml: one row per token, chosen ones marked", async () => {
  const tokenizer = await smallTokenizer();
  const vocab = pretrainingVocab(tokenizer.vocab);
  const docs = parseCorpusText(TEXT).documents.map((d) => d.map((s) => tokenizer.encodeIds(s)));
  const inst: PretrainingInstance = createInstances(docs, vocab, { maxSeqLength: 20, seed: 1 })[0];
  const rows = describeInstance(inst, tokenizer);
  assertEquals(rows.length, inst.inputIds.length);
  assertEquals(rows.filter((r) => r.masking !== "").length, inst.mlmPositions.length);
  const html = instanceHtml(inst, tokenizer);
  assert(html.includes("<table") && html.includes(inst.isRandomNext ? "NotNext" : "IsNext"));
  const [, original, sees] = instanceText(inst, tokenizer).split("\n");
  assertEquals(original.replace(/^original:/, "").trim().split(/\s+/), rows.map((r) => r.original));
  assertEquals(sees.replace(/^BERT sees:/, "").trim().split(/\s+/), rows.map((r) => r.input));
});
