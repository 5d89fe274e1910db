/**
 * The notebook-facing SQuAD helpers: finding the data files, holding out articles (`filterSquad`), windows per
 * question, a window's tokens, and `answerQuestion` on hand-made logits (the span is found in its own window,
 * only where that window has max context, and mapped back to the original characters).
 */
import { filterSquad, parseSquad, resolveSquadData } from "../../../lib/tasks/squad/squad.ts";
import {
  answerQuestion,
  convertSquadExamples,
  windowsPerExample,
  windowTokens,
} from "../../../lib/tasks/squad/features.ts";
import type { SquadFeatures } from "../../../lib/tasks/squad/features.ts";
import type { WindowLogits } from "../../../lib/tasks/squad/squad.ts";
import { quiet, tinySquadTokenizer } from "../../fixtures/squad_vocab.ts";
import { assert, assertEquals, assertRejects, HAVE_SHARED } from "../../shared.ts";

const tokenizer = tinySquadTokenizer;

// 13 context tokens: the man went to the store and bought a gallon of milk .
const CONTEXT = "The man went to the Store and bought a gallon of milk.";

function twoArticles() {
  const qa = (id: string, question: string) => ({ id, question, answers: [{ text: "the", answer_start: 0 }] });
  return parseSquad(
    {
      version: "1.1",
      data: [
        { title: "A", paragraphs: [{ context: "the man went", qas: [qa("q1", "who went?"), qa("q2", "what?")] }] },
        {
          title: "B",
          paragraphs: [
            { context: "the store", qas: [qa("q3", "what?")] },
            { context: "the milk", qas: [qa("q4", "what?")] },
          ],
        },
      ],
    },
    "two.json",
    quiet,
  );
}

Deno.test("filterSquad: keeps the chosen questions with only their paragraphs, re-indexed; limit", () => {
  const ds = twoArticles();
  const b = filterSquad(ds, (_, p) => p.title !== "A");
  assertEquals(b.examples.map((e) => e.id), ["q3", "q4"]);
  assertEquals(b.paragraphs.map((p) => p.context), ["the store", "the milk"]);
  assertEquals(b.examples.map((e) => b.paragraphs[e.paragraphIndex].context), ["the store", "the milk"]);
  assertEquals(ds.examples[2].paragraphIndex, 1, "the original dataset is not changed");
  const one = filterSquad(ds, (e) => e.question === "what?", { limit: 2 });
  assertEquals(one.examples.map((e) => [e.id, e.paragraphIndex]), [["q2", 0], ["q3", 1]]);
  assertEquals(one.paragraphs.map((p) => p.title), ["A", "B"]);
});

Deno.test("resolveSquadData: dev required, train optional; a missing file names the folder and the README", async () => {
  await Deno.mkdir("outputs", { recursive: true });
  const dir = await Deno.makeTempDir({ dir: "outputs", prefix: "squad_helpers_" });
  try {
    const err = await assertRejects(() => resolveSquadData(dir), Error, "no dev-v1.1.json in " + dir);
    assert(err.message.includes('data/README.md, section "SQuAD v1.1"'), err.message);
    await Deno.writeTextFile(`${dir}/dev-v1.1.json`, "{}");
    assertEquals(await resolveSquadData(dir), { dir, dev: `${dir}/dev-v1.1.json` });
    await Deno.writeTextFile(`${dir}/train-v1.1.json`, "{}");
    assertEquals(await resolveSquadData(dir), { dir, dev: `${dir}/dev-v1.1.json`, train: `${dir}/train-v1.1.json` });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "resolveSquadData: by default finds data/squad-v1.1 or the shared dev file",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const found = await resolveSquadData();
    assert(found.dev.endsWith("squad-v1.1/dev-v1.1.json"), found.dev);
    assert((await Deno.stat(found.dev)).isFile);
  },
});

Deno.test("windowsPerExample and windowTokens: counts per question, and the unpadded tokens of a window", async () => {
  const ds = parseSquad(
    {
      version: "1.1",
      data: [{
        title: "T",
        paragraphs: [
          { context: CONTEXT, qas: [{ id: "long", question: "who went?", answers: [] }] },
          { context: "the milk", qas: [{ id: "short", question: "what?", answers: [] }] },
        ],
      }],
    },
    "t.json",
    quiet,
  );
  // 11 tokens - "who went ?" - 3 specials = 5 context tokens per window, stride 3: spans 0-4, 3-7, 6-10, 9-12.
  const f = await convertSquadExamples(ds, tokenizer(), { maxSeqLength: 11, docStride: 3 });
  assertEquals(Array.from(windowsPerExample(f)), [4, 1]);
  assertEquals(windowTokens(f, 0), ["[CLS]", "who", "went", "?", "[SEP]", "the", "man", "went", "to", "the", "[SEP]"]);
  assertEquals(windowTokens(f, 3), ["[CLS]", "who", "went", "?", "[SEP]", "gallon", "of", "milk", ".", "[SEP]"]);
  assertEquals(windowTokens(f, 4), ["[CLS]", "what", "?", "[SEP]", "the", "milk", "[SEP]"]);
});

/** Logits that favour `start` and `end` tokens (by text) wherever a window has them, and 0 elsewhere. */
function logitsFor(start: string, end: string) {
  return (f: SquadFeatures): WindowLogits[] =>
    f.windows.map((_, row) => {
      const tokens = windowTokens(f, row);
      const s = new Float32Array(f.maxSeqLength), e = new Float32Array(f.maxSeqLength);
      tokens.forEach((t, i) => {
        if (t === start) s[i] = 5;
        if (t === end) e[i] = 5;
      });
      return { startLogits: s, endLogits: e };
    });
}

Deno.test("answerQuestion: the best span over all windows, in the context's own characters, with its n-best", async () => {
  const opts = { context: CONTEXT, question: "who went?", tokenizer: tokenizer(), maxSeqLength: 11, docStride: 3 };
  // "store" (token 5) is only in window 3-7: the answer keeps the context's capital S.
  const store = await answerQuestion({ ...opts, logits: logitsFor("store", "store") });
  assertEquals(store.features.n, 4);
  assertEquals(store.text, "Store");
  assertEquals([store.nbest[0].start_logit, store.nbest[0].end_logit], [5, 5]);
  assertEquals(store.probability, store.nbest[0].probability);
  for (let i = 1; i < store.nbest.length; i++) {
    assert(store.nbest[i].probability <= store.nbest[i - 1].probability, "n-best sorted by probability");
  }
  // "milk" (token 11, only in window 9-12): the word is "milk." and get_final_text drops the period.
  assertEquals((await answerQuestion({ ...opts, logits: logitsFor("milk", "milk") })).text, "milk");
  // "gallon" (token 9) has its max context in window 6-10, which lacks "milk": "gallon of milk" may not be
  // predicted from window 9-12, so the answer ends elsewhere.
  const gallon = await answerQuestion({ ...opts, logits: logitsFor("gallon", "milk") });
  assert(gallon.nbest.every((c) => c.text !== "gallon of milk"), JSON.stringify(gallon.nbest.slice(0, 3)));
  await assertRejects(() => answerQuestion({ ...opts, context: "  ", logits: logitsFor("a", "a") }), Error, "empty");
  await assertRejects(() => answerQuestion({ ...opts, question: " ", logits: logitsFor("a", "a") }), Error, "empty");
});

Deno.test("windowTokensHtml: question, context and the gold span marked where the window holds it", async () => {
  const { windowTokensHtml } = await import("../../../lib/lessons/lessons.ts");
  const ds = parseSquad(
    {
      version: "1.1",
      data: [{
        title: "T",
        paragraphs: [{
          context: CONTEXT,
          qas: [{ id: "q", question: "who went?", answers: [{ text: "gallon of milk", answer_start: 39 }] }],
        }],
      }],
    },
    "t.json",
    quiet,
  );
  // Windows of 5 context tokens, stride 3: 0-4, 3-7, 6-10, 9-12 ("gallon of milk" = context tokens 9-11).
  const f = await convertSquadExamples(ds, tokenizer(), { maxSeqLength: 11, docStride: 3 });
  const gold = (html: string) => [...html.matchAll(/background:#ffe08a" title="(\d+)">([^<]*)</g)].map((m) => m[2]);
  const question = (html: string) => [...html.matchAll(/background:#dbe9ff" title="(\d+)">([^<]*)</g)].map((m) => m[2]);
  const last = windowTokensHtml(f, 3);
  assertEquals(gold(last), ["gallon", "of", "milk"]);
  assertEquals(question(last), ["who", "went", "?"]);
  assert(last.includes("window positions 5–7"), last);
  const first = windowTokensHtml(f, 0);
  assertEquals(gold(first), []);
  assert(first.includes("not inside this window"), first);
});
