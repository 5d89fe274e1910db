/** BERT's masking: which tokens are chosen, the 80/10/10 split of what becomes of them, whole-word masking. */
import { maskTokens } from "../../../lib/tasks/pretraining/masking.ts";
import { Rng } from "../../../lib/training/rng.ts";
import { assert, assertEquals } from "../../shared.ts";
import { syntheticCorpus } from "./fixtures.ts";

Deno.test("maskTokens: never [CLS]/[SEP]/[PAD], 15% of the rest, targets are the originals", () => {
  const { vocab } = syntheticCorpus(1, 1);
  const rng = new Rng(7);
  const ids = [2, 10, 11, 12, 13, 14, 3, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 3, 0, 0];
  for (let t = 0; t < 200; t++) {
    const m = maskTokens(ids, vocab, rng, { maskedLmProb: 0.15, maxPredictions: 20 });
    assertEquals(m.positions.length, 2); // 15 candidates * 0.15 = 2.25 -> 2
    assert(m.positions.every((p, i) => i === 0 || p > m.positions[i - 1]), "positions ascending");
    for (const p of m.positions) assert(![2, 3, 0].includes(ids[p]), `special token at ${p} chosen`);
    assertEquals(m.labels, m.positions.map((p) => ids[p]));
    m.positions.forEach((p, i) => {
      const expected = m.kinds[i] === "mask" ? vocab.maskId : m.kinds[i] === "keep" ? ids[p] : m.inputIds[p];
      assertEquals(m.inputIds[p], expected);
      if (m.kinds[i] === "random") assert(m.inputIds[p] >= 5, "random replacement is never a special token");
    });
    ids.forEach((id, p) => {
      if (!m.positions.includes(p)) assertEquals(m.inputIds[p], id);
    });
  }
  // At least one prediction per sequence, at most maxPredictions.
  assertEquals(maskTokens([2, 9, 3], vocab, rng).positions, [1]);
  assertEquals(
    maskTokens(Array.from({ length: 200 }, (_, i) => 5 + i), vocab, rng, { maxPredictions: 7 }).positions.length,
    7,
  );
});

Deno.test("maskTokens wholeWord: the pieces of a word are chosen together, never beyond maxPredictions", () => {
  const { vocab } = syntheticCorpus(1, 1);
  const ids = Array.from({ length: 60 }, (_, i) => 5 + i);
  // Words: every third id starts a word and the next two are its ## pieces (ids 5, 8, 11, ... start words).
  vocab.continuation = Uint8Array.from({ length: vocab.size }, (_, id) => (id >= 5 && (id - 5) % 3 !== 0 ? 1 : 0));
  const seq = [2, ...ids, 3];
  const wordOf = (p: number) => Math.floor((seq[p] - 5) / 3);
  const rng = new Rng(11);
  let chosenTotal = 0;
  for (let t = 0; t < 100; t++) {
    const m = maskTokens(seq, vocab, rng, { maskedLmProb: 0.15, maxPredictions: 8, wholeWord: true });
    assert(m.positions.length <= 8 && m.positions.length % 3 === 0, `whole words only: ${m.positions}`);
    const words = new Set(m.positions.map(wordOf));
    for (const w of words) {
      const pieces = m.positions.filter((p) => wordOf(p) === w);
      assertEquals(pieces.length, 3, `word ${w} chosen partly: ${m.positions}`);
    }
    chosenTotal += m.positions.length;
  }
  assertEquals(chosenTotal, 100 * 6); // k = min(8, round(60 * 0.15) = 9) = 8 -> two whole words of 3
  // Without wholeWord the same sequence gets single pieces.
  const single = maskTokens(seq, vocab, new Rng(11), { maskedLmProb: 0.15, maxPredictions: 8 });
  assertEquals(single.positions.length, 8);
});
