/**
 * The official SQuAD v1.1 metric (evaluate-v1.1.py): expected values worked out by hand from the official
 * script's steps (lower -> drop string.punctuation -> drop \b(a|an|the)\b -> ' '.join(split())), Counter-based F1,
 * max over gold answers, mean ×100 over all questions.
 */
import { readSquad } from "../../../lib/tasks/squad/squad.ts";
import {
  evaluateSquad,
  exactMatchScore,
  f1Score,
  normalizeAnswer,
  PUNCTUATION,
} from "../../../lib/tasks/squad/metrics.ts";
import { assert, assertEquals, HAVE_SHARED, SHARED } from "../../shared.ts";

const DEV = `${SHARED}/data/squad-v1.1/dev-v1.1.json`;
if (!HAVE_SHARED) console.warn("squad_metrics_test: ../shared absent, the dev-set checks are skipped");

function close(actual: number, expected: number, what: string, eps = 1e-9) {
  assert(Math.abs(actual - expected) <= eps, `${what}: got ${actual}, expected ${expected}`);
}

Deno.test("normalizeAnswer: the official steps, worked by hand", () => {
  assertEquals(PUNCTUATION.length, 32); // Python's string.punctuation
  // "The Cat!" -> "the cat!" -> "the cat" -> " cat" -> "cat"
  assertEquals(normalizeAnswer("The Cat!"), "cat");
  // every article goes, as whole words only
  assertEquals(normalizeAnswer("  A  an THE  apple "), "apple");
  assertEquals(normalizeAnswer("theatre and anthem"), "theatre and anthem");
  // punctuation is removed before articles: "an-ti" -> "anti"; "the_end" -> "theend" ('_' is punctuation)
  assertEquals(normalizeAnswer("an-ti"), "anti");
  assertEquals(normalizeAnswer("the_end"), "theend");
  // "l'the" -> "lthe": the apostrophe goes first, so "the" is no longer a word
  assertEquals(normalizeAnswer("l'the"), "lthe");
  // Python 3's \b is Unicode-aware: "é" is a word character, so "the" inside "éthe" is not an article
  assertEquals(normalizeAnswer("éthe the"), "éthe");
  assertEquals(normalizeAnswer("Café THE"), "café");
  // only ASCII punctuation: the en dash and curly quotes stay
  assertEquals(normalizeAnswer("24–10"), "24–10");
  assertEquals(normalizeAnswer("“quoted”"), "“quoted”");
  // Python's str.split(): U+001C is whitespace to Python (not to JS's \s), U+FEFF is not (but is to JS's \s)
  assertEquals(normalizeAnswer("x\u001cy"), "x y");
  assertEquals(normalizeAnswer("x\ufeffy"), "x\ufeffy");
  assertEquals(normalizeAnswer("x\u00a0\u3000y"), "x y");
});

Deno.test("exact match and F1: hand-worked cases", () => {
  assertEquals(exactMatchScore("Denver Broncos.", "denver broncos"), 1);
  assertEquals(exactMatchScore("Denver", "Denver Broncos"), 0);
  // pred [cat, sat], gold [cat, sat, on, mat]: P = 1, R = 1/2, F1 = 2·1·½ / 1½ = 2/3
  close(f1Score("the cat sat", "a cat sat on the mat"), 2 / 3, "f1 subset");
  // Counter intersection: pred [cat×3], gold [cat, dog]: common 1, P = 1/3, R = 1/2, F1 = (1/3) / (5/6) = 0.4
  close(f1Score("cat cat cat", "cat dog"), 0.4, "f1 counter");
  // word order does not matter for F1
  close(f1Score("broncos denver", "Denver Broncos"), 1, "f1 order");
  assertEquals(f1Score("", "cat"), 0);
  // The official quirk: both normalise to "", so EM is 1 but F1 is 0 (no common tokens).
  assertEquals(exactMatchScore("the", "a"), 1);
  assertEquals(f1Score("the", "a"), 0);
});

Deno.test("evaluateSquad: max over gold answers, mean over all questions, missing predictions score 0", () => {
  const dataset = {
    version: "1.1",
    data: [{
      title: "t",
      paragraphs: [{
        context: "unused",
        qas: [
          { id: "q1", question: "?", answers: [{ text: "Denver Broncos" }, { text: "the Denver Broncos" }] },
          { id: "q2", question: "?", answers: [{ text: "1895" }] },
          { id: "q3", question: "?", answers: [{ text: "gold" }] },
        ],
      }],
    }],
  };
  const warnings: string[] = [];
  const s = evaluateSquad(dataset, { q1: "Broncos", q2: "1895" }, { warn: (m) => warnings.push(m) });
  // q1: EM 0, F1 max(2/3, 2/3); q2: EM 1, F1 1; q3: missing -> 0.
  close(s.exact_match, 100 / 3, "EM");
  close(s.f1, (100 * (2 / 3 + 1)) / 3, "F1");
  assertEquals([s.total, s.missing], [3, 1]);
  assertEquals(warnings, ["Unanswered question q3 will receive score 0."]);
  // The same questions as a parsed dataset or a plain list give the same numbers.
  const list = [
    { id: "q1", answers: ["Denver Broncos", "the Denver Broncos"] },
    { id: "q2", answers: ["1895"] },
    { id: "q3", answers: ["gold"] },
  ];
  assertEquals(evaluateSquad(list, { q1: "Broncos", q2: "1895" }, { warn: () => {} }), s);
});

Deno.test({
  name: "evaluateSquad on SQuAD dev: gold answers score 100; a perturbation matches hand-worked values",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const gold = JSON.parse(await Deno.readTextFile(DEV));
    const first: Record<string, string> = {};
    const ids: string[] = [];
    for (const a of gold.data) {
      for (const p of a.paragraphs) {
        for (const q of p.qas) {
          first[q.id] = q.answers[0].text;
          ids.push(q.id);
        }
      }
    }
    assertEquals(evaluateSquad(gold, first), { exact_match: 100, f1: 100, total: 10570, missing: 0 });

    // Every other question unanswered: exactly half the score, 5,285 missing.
    const half = Object.fromEntries(ids.filter((_, i) => i % 2 === 0).map((id) => [id, first[id]]));
    const h = evaluateSquad(gold, half, { warn: () => {} });
    assertEquals([h.exact_match, h.f1, h.missing], [50, 50, 5285]);

    // Drop the last whitespace-separated word of the first answer, on the first six questions:
    //  1 "Denver Broncos" -> "Denver": EM 0, F1 2/3;  2 "Carolina Panthers" -> "Carolina": 2/3
    //  3 "Santa Clara, California" -> "Santa Clara,": vs "santa clara california" P=1 R=2/3 F1=0.8;
    //    vs "levis stadium" 0; vs the 11-token long answer 4/13 -> max 0.8
    //  4 "Denver": 2/3;  5 "gold" -> "": 0
    //  6 '"golden anniversary"' -> '"golden': vs "golden anniversary" 2/3, vs "goldthemed" 0 -> 2/3
    const six = await readSquad(DEV, { limit: 6, log: () => {} });
    const perturbed = Object.fromEntries(
      six.examples.map((e) => [e.id, e.answers[0].text.split(" ").slice(0, -1).join(" ")]),
    );
    const p = evaluateSquad(six, perturbed);
    assertEquals(p.exact_match, 0);
    close(p.f1, (100 * (4 * (2 / 3) + 0.8 + 0)) / 6, "perturbed F1");
  },
});
