/** Pre-training corpora: sentence splitting, corpus text files, IMDB reviews from the shared archive. */
import {
  parseCorpusText,
  readImdbCorpus,
  readTextCorpus,
  reviewSentences,
  splitSentences,
} from "../../../lib/tasks/pretraining/corpus.ts";
import { assert, assertEquals, assertRejects, HAVE_SHARED, requireShared } from "../../shared.ts";

Deno.test("splitSentences: ends at . ! ? before a capital, keeps abbreviations and initials", () => {
  assertEquals(splitSentences("I liked it. Mr. Smith did not! Why? Because."), [
    "I liked it.",
    "Mr. Smith did not!",
    "Why?",
    "Because.",
  ]);
  assertEquals(splitSentences('He said "Go." Then he left.'), ['He said "Go."', "Then he left."]);
  assertEquals(splitSentences("J. K. Rowling wrote it. It sold."), ["J. K. Rowling wrote it.", "It sold."]);
  assertEquals(splitSentences("version 2.0 is out. 3 bugs remain"), ["version 2.0 is out.", "3 bugs remain"]);
  assertEquals(splitSentences("no capital. after the period"), ["no capital. after the period"]);
  assertEquals(splitSentences("   "), []);
});

Deno.test("parseCorpusText: blank lines separate documents, lines are split into sentences", () => {
  const corpus = parseCorpusText("A b. C d.\nE f\r\n\r\n  \nG h.\n\n\nI j. K l.\n", "x.txt");
  assertEquals(corpus.documents, [["A b.", "C d.", "E f"], ["G h."], ["I j.", "K l."]]);
  assertEquals(corpus.source, "x.txt");
});

Deno.test("readTextCorpus: limit, and a clear error for a file with one document", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/c.txt`, "One. Two.\n\nThree.\n\nFour.\n");
    assertEquals((await readTextCorpus(`${dir}/c.txt`, { limit: 2 })).documents, [["One.", "Two."], ["Three."]]);
    await Deno.writeTextFile(`${dir}/one.txt`, "Only one document.\nStill the same one.\n");
    await assertRejects(() => readTextCorpus(`${dir}/one.txt`), Error, "at least 2");
    await assertRejects(() => readTextCorpus(`${dir}/missing.txt`), Error, "missing.txt");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reviewSentences: <br /> tags become sentence breaks", () => {
  assertEquals(reviewSentences("Great film.<br /><br />the end<br/>Really. Yes"), [
    "Great film.",
    "the end",
    "Really.",
    "Yes",
  ]);
});

Deno.test({
  name: "readImdbCorpus: the first reviews of the shared archive, pos and neg interleaved",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const path = requireShared("data/imdb/aclImdb_v1_train_test.tar.gz");
    const corpus = await readImdbCorpus({ path, limit: 4 });
    assertEquals(corpus.documents.length, 4);
    // PROVENANCE.md: train/pos/0_9.txt begins "Bromwell High is a cartoon comedy."
    assertEquals(corpus.documents[1][0], "Bromwell High is a cartoon comedy.");
    for (const d of corpus.documents) for (const s of d) assert(!/<br/i.test(s), `markup left in: ${s}`);
    assert(corpus.documents.every((d) => d.length >= 1));
    await assertRejects(() => readImdbCorpus({ path: "nowhere.tar.gz" }), Error, "not found");
  },
});
