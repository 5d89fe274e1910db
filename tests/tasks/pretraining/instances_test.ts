/**
 * Pre-training instances: next-sentence pairs and single spans (exact structure on a synthetic corpus whose token ids
 * name their document and position, proportions checked against binomial tolerances), determinism, and the matrices.
 */
import { parseCorpusText } from "../../../lib/tasks/pretraining/corpus.ts";
import { pretrainingVocab } from "../../../lib/tasks/pretraining/masking.ts";
import {
  createInstances,
  createPretrainingData,
  instancesToSet,
  mostFrequentTarget,
  summarizePretrainingData,
  truncatePair,
} from "../../../lib/tasks/pretraining/instances.ts";
import { Rng } from "../../../lib/training/rng.ts";
import { assert, assertEquals } from "../../shared.ts";
import { smallTokenizer, span, syntheticCorpus, TEXT } from "./fixtures.ts";

Deno.test("createInstances nextSentence: false: [CLS] span [SEP] of one document, spans cover it in order", () => {
  const { docs, vocab } = syntheticCorpus(40, 5);
  const instances = createInstances(docs, vocab, { maxSeqLength: 24, nextSentence: false, seed: 3, shortSeqProb: 0.2 });
  const byDoc = new Map<number, number[]>();
  for (const inst of instances) {
    const o = inst.originalIds;
    assert(o.length <= 24 && o[0] === vocab.clsId && o[o.length - 1] === vocab.sepId && o.length >= 3, `${o}`);
    assert(inst.segmentIds.every((x) => x === 0) && !inst.isRandomNext);
    assert(!o.slice(1, -1).includes(vocab.sepId), "one segment only");
    byDoc.set(inst.document, [...(byDoc.get(inst.document) ?? []), ...o.slice(1, -1)]);
  }
  // Instances of a document, in creation order (shuffled later), are its tokens exactly: nothing lost or repeated.
  const ordered = createInstances(docs, vocab, { maxSeqLength: 24, nextSentence: false, seed: 3, shortSeqProb: 0.2 })
    .sort((a, b) => a.originalIds[1] - b.originalIds[1]);
  const tokens = ordered.flatMap((i) => i.originalIds.slice(1, -1));
  assertEquals(tokens, docs.flat(2));
  assertEquals(byDoc.size, docs.length);
});

Deno.test("truncatePair: trims the longer side, from either end, keeping contiguous spans", () => {
  const rng = new Rng(3);
  let fronts = 0;
  for (let t = 0; t < 100; t++) {
    const a = Array.from({ length: 10 }, (_, i) => i), b = Array.from({ length: 4 }, (_, i) => 100 + i);
    truncatePair(a, b, 9, rng);
    assertEquals(a.length + b.length, 9);
    assertEquals(b, [100, 101, 102, 103]); // A was the longer side all along
    assert(a.every((v, i) => i === 0 || v === a[i - 1] + 1));
    fronts += a[0]; // tokens cut from the front (5 cuts per trial)
  }
  assert(Math.abs(fronts - 250) < 4.5 * Math.sqrt(500 * 0.25), `${fronts} of 500 cuts from the front, expected ~250`);
  const a = [1, 2, 3], b = [4, 5, 6];
  truncatePair(a, b, 5, rng);
  assertEquals([a.length, b.length], [3, 2]); // tie: B loses
});

/** A binomial tolerance: 4.5 standard deviations of a proportion around `p` over `n` trials. */
function tolerance(p: number, n: number): number {
  return 4.5 * Math.sqrt((p * (1 - p)) / n);
}

Deno.test("createInstances: pair structure, segments and labels are consistent with the corpus", () => {
  const { docs, where, vocab } = syntheticCorpus(150, 11);
  const instances = createInstances(docs, vocab, { maxSeqLength: 40, seed: 5, maxPredictionsPerSeq: 8 });
  assert(instances.length > 300, `${instances.length} instances`);
  for (const inst of instances) {
    const ids = inst.originalIds;
    assertEquals(ids[0], vocab.clsId);
    assertEquals(ids[ids.length - 1], vocab.sepId);
    assert(ids.length <= 40);
    const sep = ids.indexOf(vocab.sepId);
    const a = ids.slice(1, sep), b = ids.slice(sep + 1, -1);
    assert(a.length >= 1 && b.length >= 1 && !b.includes(vocab.sepId));
    assertEquals(inst.segmentIds, ids.map((_, p) => (p <= sep ? 0 : 1)));
    const [docA, , endA] = span(a, where);
    const [docB, startB] = span(b, where);
    assertEquals(docA, inst.document);
    if (inst.isRandomNext) assert(docB !== docA, "NotNext: B must come from another document");
    else assert(docB === docA && startB > endA, "IsNext: B must follow A in the same document");
    // The masked input differs from the original only at the prediction positions, whose targets are the originals.
    const chosen = new Set(inst.mlmPositions);
    ids.forEach((id, p) => {
      if (!chosen.has(p)) assertEquals(inst.inputIds[p], id);
    });
    assertEquals(inst.mlmIds, inst.mlmPositions.map((p) => ids[p]));
  }
});

Deno.test("createInstances: 15% chosen uniformly, 80/10/10 split and 50% NotNext, within binomial tolerance", () => {
  const { docs, vocab } = syntheticCorpus(800, 21);
  const instances = createInstances(docs, vocab, { maxSeqLength: 48, seed: 9, maxPredictionsPerSeq: 40 });
  let candidates = 0, chosen = 0, expectedFirst = 0, chosenFirst = 0, varFirst = 0;
  let masks = 0, keeps = 0, randoms = 0, notNext = 0;
  for (const inst of instances) {
    const c = inst.originalIds.length - 3; // all but [CLS] and two [SEP]
    const k = Math.min(40, Math.max(1, Math.round(c * 0.15)));
    assertEquals(inst.mlmPositions.length, k, "exactly round(15%) per sequence");
    candidates += c;
    chosen += k;
    // Uniform choice: the first token of A is chosen with probability k / c.
    expectedFirst += k / c;
    varFirst += (k / c) * (1 - k / c);
    if (inst.mlmPositions.includes(1)) chosenFirst++;
    inst.mlmPositions.forEach((p, i) => {
      const input = inst.inputIds[p], original = inst.mlmIds[i];
      if (input === vocab.maskId) masks++;
      else if (input === original) keeps++;
      else randoms++;
    });
    if (inst.isRandomNext) notNext++;
  }
  assert(candidates > 50_000, `only ${candidates} maskable tokens`);
  const n = instances.length;
  const fraction = chosen / candidates;
  assert(Math.abs(fraction - 0.15) < 0.5 * n / candidates + tolerance(0.15, candidates), `masked fraction ${fraction}`);
  assert(
    Math.abs(chosenFirst - expectedFirst) < 4.5 * Math.sqrt(varFirst),
    `first token chosen ${chosenFirst} times, expected ${expectedFirst.toFixed(1)}`,
  );
  // A random replacement equal to the original counts as kept: p(keep) = 0.1 + 0.1 / |randomIds|.
  const pKeep = 0.1 + 0.1 / vocab.randomIds.length;
  for (
    const [name, count, p] of [["mask", masks, 0.8], ["keep", keeps, pKeep], [
      "random",
      randoms,
      0.1 - 0.1 / vocab.randomIds.length,
    ]] as const
  ) {
    assert(
      Math.abs(count / chosen - p) < tolerance(p, chosen),
      `${name}: ${count}/${chosen} = ${count / chosen}, expected ${p}`,
    );
  }
  assert(Math.abs(notNext / n - 0.5) < tolerance(0.5, n), `NotNext ${notNext}/${n} = ${notNext / n}`);
});

Deno.test("createInstances: deterministic for a seed, different for another", () => {
  const { docs, vocab } = syntheticCorpus(40, 2);
  const a = createInstances(docs, vocab, { maxSeqLength: 32, seed: 1 });
  const b = createInstances(docs, vocab, { maxSeqLength: 32, seed: 1 });
  const c = createInstances(docs, vocab, { maxSeqLength: 32, seed: 2 });
  assertEquals(a, b);
  assert(JSON.stringify(a) !== JSON.stringify(c));
  // dupeFactor repeats the corpus with fresh pairs and masks.
  const twice = createInstances(docs, vocab, { maxSeqLength: 32, seed: 1, dupeFactor: 2 });
  assert(twice.length > 1.6 * a.length && twice.length < 2.4 * a.length, `${twice.length} vs ${a.length}`);
});

Deno.test("createPretrainingData: matrices agree with the instances; specials are never targets", async () => {
  const tokenizer = await smallTokenizer();
  const corpus = parseCorpusText(TEXT);
  const set = createPretrainingData(corpus, tokenizer, {
    maxSeqLength: 24,
    maxPredictionsPerSeq: 5,
    seed: 3,
    dupeFactor: 4,
  });
  const vocab = pretrainingVocab(tokenizer.vocab);
  const L = 24, P = 5;
  assert(set.n > 10);
  assertEquals(set.stats.documents, 3);
  for (let r = 0; r < set.n; r++) {
    const mask = set.attentionMask.subarray(r * L, (r + 1) * L);
    const len = mask.reduce((a, b) => a + b, 0);
    assert(mask.subarray(0, len).every((v) => v === 1), "mask is 1 then 0");
    const ids = set.inputIds.subarray(r * L, (r + 1) * L);
    assertEquals(ids[0], vocab.clsId);
    assertEquals(ids[len - 1], vocab.sepId);
    assert(ids.subarray(len).every((v) => v === vocab.padId), "padding after the tokens");
    const labels = set.mlmIds.subarray(r * P, (r + 1) * P);
    const positions = set.mlmPositions.subarray(r * P, (r + 1) * P);
    for (let j = 0; j < P; j++) {
      if (labels[j] < 0) {
        assertEquals(positions[j], 0);
        continue;
      }
      assert(positions[j] > 0 && positions[j] < len - 1);
      assert(![vocab.clsId, vocab.sepId, vocab.padId].includes(labels[j]), "special token as a target");
    }
    assert([0, 1].includes(set.nspLabels[r]));
  }
  assertEquals(set.stats.randomNext, set.nspLabels.reduce((a, b) => a + b, 0));
  // Same corpus and seed: same matrices.
  const again = createPretrainingData(corpus, tokenizer, {
    maxSeqLength: 24,
    maxPredictionsPerSeq: 5,
    seed: 3,
    dupeFactor: 4,
  });
  assertEquals(again.inputIds, set.inputIds);
  assertEquals(again.mlmIds, set.mlmIds);
});

Deno.test("instancesToSet: refuses instances that do not fit", () => {
  const { docs, vocab } = syntheticCorpus(10, 4);
  const inst = createInstances(docs, vocab, { maxSeqLength: 40, seed: 1 });
  let threw = false;
  try {
    instancesToSet(inst, vocab, { maxSeqLength: 10 });
  } catch (err) {
    threw = (err as Error).message.includes("tokens > 10");
  }
  assert(threw);
});

Deno.test("summarizePretrainingData: counts agree with the instances' own bookkeeping", () => {
  const { docs, vocab } = syntheticCorpus(60, 6);
  const options = { maxSeqLength: 40, seed: 2, maxPredictionsPerSeq: 10 };
  const instances = createInstances(docs, vocab, options);
  const s = summarizePretrainingData(instancesToSet(instances, vocab, options), vocab.maskId);
  const kinds = instances.flatMap((i) => i.mlmKinds);
  const count = (k: string) => kinds.filter((x) => x === k).length;
  assertEquals(s.instances, instances.length);
  assertEquals(s.predictions, kinds.length);
  assertEquals(s.tokens, instances.reduce((a, i) => a + i.inputIds.length, 0));
  assertEquals(s.maskShare, count("mask") / kinds.length);
  // A random replacement can draw the original token: it then counts as kept.
  const lucky =
    instances.flatMap((i) => i.mlmKinds.map((k, j) => k === "random" && i.inputIds[i.mlmPositions[j]] === i.mlmIds[j]))
      .filter(Boolean).length;
  assertEquals(s.keptShare, (count("keep") + lucky) / kinds.length);
  assertEquals(s.notNextShare, instances.filter((i) => i.isRandomNext).length / instances.length);
});

Deno.test("mostFrequentTarget: the commonest masked-LM target, its count and share (first met on a tie)", () => {
  const { docs, vocab } = syntheticCorpus(30, 9);
  const set = instancesToSet(createInstances(docs, vocab, { maxSeqLength: 40, seed: 4 }), vocab, { maxSeqLength: 40 });
  const targets = Array.from(set.mlmIds).filter((id) => id >= 0);
  const top = mostFrequentTarget(set);
  assertEquals(top.count, targets.filter((id) => id === top.id).length);
  assert(targets.every((id) => targets.filter((x) => x === id).length <= top.count));
  assertEquals(top.share, top.count / targets.length);
  set.mlmIds.set([7, 8, 8, 7, -1]);
  set.mlmIds.fill(-1, 5);
  assertEquals(mostFrequentTarget(set), { id: 7, count: 2, share: 0.5 });
});
