/**
 * SQuAD end to end: the reader (run_squad.py's word splitting and offsets), the sliding windows with
 * max-context flags (hand-worked on run_squad.py's own "the man went to the store" example), answer-span
 * refinement, get_final_text, write_predictions on hand-made logits, save/load round trip, the span loss, and a
 * tiny random model over 20 real dev questions through predictions.json and the official metric.
 */
import { initBackend, tf } from "../../../lib/backends/backend.ts";
import { run as runCli } from "../../../lib/cli/squad.ts";
import { parseArgs } from "../../../lib/cli/args.ts";
import { UsageError } from "../../../lib/io/errors.ts";
import { BertModel, configFromJson } from "../../../lib/model/model.ts";
import {
  getFinalText,
  highlightAnswer,
  parseSquad,
  postprocessSquad,
  readSquad,
  splitContext,
  tokenToOrigMap,
  type WindowLogits,
} from "../../../lib/tasks/squad/squad.ts";
import {
  convertSquadExamples,
  describeWindows,
  docSpans,
  improveAnswerSpan,
  loadSquadFeatures,
  saveSquadFeatures,
  type SquadFeatures,
} from "../../../lib/tasks/squad/features.ts";
import { evaluateSquad } from "../../../lib/tasks/squad/metrics.ts";
import {
  disposeSquadBatch,
  predictSquad,
  squadBatch,
  squadLogits,
  squadLoss,
  squadTrainStep,
  trainSquad,
} from "../../../lib/tasks/squad/train.ts";
import { AdamW, scheduleLr, warmupStepsFor } from "../../../lib/training/optim.ts";
import { loadCheckpoint, modelToTensors } from "../../../lib/model/checkpoint.ts";
import { dropoutSeed, epochOrderState, Rng, shuffledOrder } from "../../../lib/training/rng.ts";
import { latestCheckpoint, listCheckpoints, readTrainerState } from "../../../lib/training/checkpoints.ts";
import { FullTokenizer } from "../../../lib/text/tokenizer.ts";
import { assert, assertEquals, assertRejects, assertThrows, HAVE_SHARED, maxAbsDiff, SHARED } from "../../shared.ts";
import { quiet, tinySquadTokenizer, TOKENS } from "../../fixtures/squad_vocab.ts";

const DEV = `${SHARED}/data/squad-v1.1/dev-v1.1.json`;
const UNCASED_VOCAB = `${SHARED}/data/models/bert-base-uncased-vocab/vocab.txt`;
if (!HAVE_SHARED) console.warn("squad_test: ../shared absent, the SQuAD dev-set tests are skipped");

const tiny = tinySquadTokenizer;
const id = (t: string) => TOKENS.indexOf(t);

function squadJson(context: string, qas: { id: string; question: string; answers: [string, number][] }[]) {
  return {
    version: "1.1",
    data: [{
      title: "Test",
      paragraphs: [{
        context,
        qas: qas.map((q) => ({
          id: q.id,
          question: q.question,
          answers: q.answers.map(([text, answer_start]) => ({ text, answer_start })),
        })),
      }],
    }],
  };
}

async function tempDir(): Promise<string> {
  await Deno.mkdir("outputs", { recursive: true });
  return await Deno.makeTempDir({ dir: "outputs", prefix: "squad_test_" });
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

Deno.test("splitContext: run_squad.py's whitespace (space, \\t, \\r, \\n, U+202F) and character -> word offsets", () => {
  const { docTokens, charToWordOffset } = splitContext("  a\u202fb\tc  d");
  assertEquals(docTokens, ["a", "b", "c", "d"]);
  // leading whitespace maps to -1, whitespace after a word to that word
  assertEquals(Array.from(charToWordOffset), [-1, -1, 0, 0, 1, 1, 2, 2, 2, 3]);
  // U+00A0 is not a separator for run_squad.py
  assertEquals(splitContext("x\u00a0y z").docTokens, ["x\u00a0y", "z"]);
});

Deno.test("parseSquad: word positions of the first answer, offsets in code points, all gold answers kept", () => {
  // "😀" is one code point (two UTF-16 units): answer_start 5 is "c" of "cd", as Python counts.
  const ds = parseSquad(
    squadJson("😀 ab cd", [{ id: "q1", question: "?", answers: [["cd", 5], ["ab cd", 2]] }]),
    "x.json",
    quiet,
  );
  const e = ds.examples[0];
  assertEquals([e.startPosition, e.endPosition, e.origAnswerText], [2, 2, "cd"]);
  assertEquals(e.answers, [{ text: "cd", answerStart: 5 }, { text: "ab cd", answerStart: 2 }]);
  assertEquals(ds.paragraphs[0].docTokens, ["😀", "ab", "cd"]);
});

Deno.test("parseSquad: malformed input names the file and the question id", () => {
  assertThrows(() => parseSquad("{not json", "bad.json"), Error, "bad.json: not valid JSON");
  assertThrows(() => parseSquad({ data: 3 }, "bad.json"), Error, "bad.json: not a SQuAD file");
  const tooFar = squadJson("ab cd", [{ id: "q-far", question: "?", answers: [["cd", 4]] }]);
  const err = assertThrows(() => parseSquad(tooFar, "f.json"), Error, "question q-far");
  assert(err.message.startsWith("f.json:") && err.message.includes("runs past the end"), err.message);
  const dup = squadJson("ab cd", [
    { id: "q", question: "?", answers: [["ab", 0]] },
    { id: "q", question: "?", answers: [["cd", 3]] },
  ]);
  assertThrows(() => parseSquad(dup, "f.json"), Error, 'f.json: question q (article "Test"): duplicate');
  const noStart = squadJson("ab", [{ id: "q7", question: "?", answers: [] }]);
  (noStart.data[0].paragraphs[0].qas[0].answers as unknown[]).push({ text: "ab" });
  assertThrows(() => parseSquad(noStart, "f.json"), Error, "question q7");
});

Deno.test("parseSquad: SQuAD 2.0 unanswerable questions are skipped with a count, or kept flagged", () => {
  const json = squadJson("ab cd", [
    { id: "ok", question: "?", answers: [["cd", 3]] },
    { id: "no", question: "?", answers: [] },
  ]);
  (json.data[0].paragraphs[0].qas[1] as Record<string, unknown>).is_impossible = true;
  json.version = "v2.0";
  const logs: string[] = [];
  const skipped = parseSquad(json, "v2.json", { log: (m) => logs.push(m) });
  assertEquals(skipped.examples.map((e) => e.id), ["ok"]);
  assertEquals(skipped.skippedImpossible, 1);
  assert(logs.length === 1 && logs[0].includes("skipped 1 unanswerable"), logs.join("\n"));
  const kept = parseSquad(json, "v2.json", { keepImpossible: true, ...quiet });
  const no = kept.examples[1];
  assertEquals([no.isImpossible, no.startPosition, no.endPosition, no.origAnswerText], [true, -1, -1, ""]);
});

Deno.test("parseSquad (training): answers not recoverable from the words are skipped, as run_squad.py does", () => {
  // "b cd" is annotated over "b\u00a0c", which is inside the single word "ab\u00a0cd": not recoverable.
  const json = squadJson("ab\u00a0cd ef", [
    { id: "weird", question: "?", answers: [["b cd", 1]] },
    { id: "fine", question: "?", answers: [["ef", 6]] },
  ]);
  const logs: string[] = [];
  const ds = parseSquad(json, "t.json", { training: true, log: (m) => logs.push(m) });
  assertEquals(ds.examples.map((e) => e.id), ["fine"]);
  assertEquals(ds.skippedUnrecoverable.map((s) => s.id), ["weird"]);
  assert(logs[0].includes("skipped 1 questions"), logs[0]);
  // Not training: kept (evaluation only needs the gold texts).
  assertEquals(parseSquad(json, "t.json", quiet).examples.length, 2);
});

// ---------------------------------------------------------------------------------------------------------------
// Windows

const STORE = "the man went to the store and bought a gallon of milk";

Deno.test("windows: run_squad.py's 'the man went to the store' example, max context worked by hand", async () => {
  // Question "who went ?" = 3 tokens; maxSeqLength 11 leaves 11 - 3 - 3 = 5 context tokens per window; stride 3.
  // Spans: A 0-4, B 3-7, C 6-10, D 9-11. Score = min(left, right) + 0.01·length; e.g. "bought" (7): B gives
  // min(4, 0) + 0.05, C gives min(1, 3) + 0.05, so C is its max-context window (the comment in run_squad.py).
  // Per token the winner is: 0-3 A; 4-6 B; 7-9 C; 10-11 D.
  assertEquals(docSpans(12, 5, 3), [{ start: 0, length: 5 }, { start: 3, length: 5 }, { start: 6, length: 5 }, {
    start: 9,
    length: 3,
  }]);
  const ds = parseSquad(
    squadJson(STORE, [
      { id: "a", question: "who went?", answers: [["bought a gallon", 30]] },
      { id: "lost", question: "who went?", answers: [["store and bought a gallon", 20]] },
    ]),
    "s.json",
    quiet,
  );
  const f = await convertSquadExamples(ds, tiny(), { maxSeqLength: 11, docStride: 3, training: true });
  assertEquals(f.n, 8);
  const w = f.windows.slice(0, 4);
  assertEquals(w.map((x) => Array.from(x.maxContext)), [[1, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 1, 1]]);
  assertEquals(w.map((x) => x.contextOffset), [5, 5, 5, 5]);
  // Window A: [CLS] who went ? [SEP] the man went to the [SEP]; D: ... gallon of milk [SEP] [PAD] [PAD].
  const row = (a: Int32Array, r: number) => Array.from(a.subarray(r * 11, (r + 1) * 11));
  assertEquals(
    row(f.inputIds, 0),
    ["[CLS]", "who", "went", "?", "[SEP]", "the", "man", "went", "to", "the", "[SEP]"].map(id),
  );
  assertEquals(
    row(f.inputIds, 3),
    ["[CLS]", "who", "went", "?", "[SEP]", "gallon", "of", "milk", "[SEP]", "[PAD]", "[PAD]"].map(id),
  );
  assertEquals(row(f.tokenTypeIds, 3), [0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0]);
  assertEquals(row(f.attentionMask, 3), [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
  // token_to_orig_map of window C: positions 5..9 -> words 6..10
  assertEquals([...tokenToOrigMap(f, 2)], [[5, 6], [6, 7], [7, 8], [8, 9], [9, 10]]);
  // "bought a gallon" = tokens 7..9 lies only in C (6-10): positions 5 + 1 .. 5 + 3; the others point at [CLS].
  assertEquals(Array.from(f.startPositions!.subarray(0, 4)), [0, 0, 6, 0]);
  assertEquals(Array.from(f.endPositions!.subarray(0, 4)), [0, 0, 8, 0]);
  // "store and bought a gallon" (5..9) fits in no 5-token window: lost to truncation.
  assertEquals(Array.from(f.startPositions!.subarray(4)), [0, 0, 0, 0]);
  assertEquals(f.stats.answersLost, 1);
  assertEquals([f.stats.examples, f.stats.windows, f.stats.multiWindowExamples, f.stats.maxWindowsPerExample], [
    2,
    8,
    2,
    4,
  ]);

  const rows = describeWindows("a", f);
  assertEquals(rows.map((r) => [r.subTokens, r.maxContext, r.answerInside, r.answerPositions]), [
    ["0–4", "0–3", false, ""],
    ["3–7", "4–6", false, ""],
    ["6–10", "7–9", true, "6–8"],
    ["9–11", "10–11", false, ""],
  ]);
});

Deno.test("windows: long questions are cut to maxQueryLength and counted; bad settings are refused", async () => {
  const ds = parseSquad(
    squadJson(STORE, [{ id: "q", question: "who went to the store ?", answers: [["milk", 49]] }]),
    "s",
    quiet,
  );
  const f = await convertSquadExamples(ds, tiny(), { maxSeqLength: 16, maxQueryLength: 2, docStride: 4 });
  assertEquals(f.queryTokens[0], ["who", "went"]);
  assertEquals(f.stats.questionsTruncated, 1);
  assertEquals(f.windows[0].contextOffset, 4);
  assertEquals(f.startPositions, undefined); // not training
  await assertRejects(
    () => convertSquadExamples(ds, tiny(), { maxSeqLength: 8, maxQueryLength: 6 }),
    Error,
    "question q has 6",
  );
});

Deno.test("improveAnswerSpan: '(1895-1943).' -> 1895; 'Japanese' stays whole", () => {
  assertEquals(improveAnswerSpan(["(", "1895", "-", "1943", ")", "."], 0, 5, ["1895"]), [1, 1]);
  assertEquals(improveAnswerSpan(["the", "japanese", "industry"], 1, 1, ["japan"]), [1, 1]);
});

// ---------------------------------------------------------------------------------------------------------------
// Post-processing

Deno.test("getFinalText: BERT's alignment restores casing and drops extra characters, else falls back", () => {
  assertEquals(getFinalText("steve smith", "Steve Smith's", true), "Steve Smith");
  assertEquals(getFinalText("Steve", "Steve's", false), "Steve"); // cased: "Steve ' s"
  assertEquals(getFinalText("steve", "Steve's", false), "Steve's"); // cased: "steve" is not in "Steve ' s"
  assertEquals(getFinalText("cafe", "Café,", true), "Café"); // accent stripped by the tokenizer, restored here
  assertEquals(getFinalText("1895", "(1895-1943).", true), "1895");
  assertEquals(getFinalText("xyz", "Steve Smith's", true), "Steve Smith's"); // not found: the original words
  // A zero-width space is dropped by the tokenizer: lengths differ, so the whole original comes back.
  assertEquals(getFinalText("abc", "ab\u200bcd", true), "ab\u200bcd");
});

function logitsFor(f: SquadFeatures, set: (w: number, start: Float32Array, end: Float32Array) => void): WindowLogits[] {
  return f.windows.map((_, w) => {
    const start = new Float32Array(f.maxSeqLength), end = new Float32Array(f.maxSeqLength);
    set(w, start, end);
    return { startLogits: start, endLogits: end };
  });
}

Deno.test("postprocessSquad: hand-made logits pick the span and map it back to the original text", async () => {
  const ds = parseSquad(
    squadJson("Steve Smith's dog bought milk.", [{ id: "q", question: "who?", answers: [["Steve Smith", 0]] }]),
    "p.json",
    quiet,
  );
  const f = await convertSquadExamples(ds, tiny(), { maxSeqLength: 16 });
  // [CLS] who ? [SEP] steve smith ' s dog bought milk . [SEP]: "steve" at 4, "smith" at 5
  assertEquals(f.windows[0].contextOffset, 4);
  const logits = logitsFor(f, (_, s, e) => {
    s[4] = 10;
    e[5] = 10;
    e[9] = 4; // "steve ... bought" scores 14: second
    s[0] = 50; // [CLS] is not in the context: never a candidate
  });
  const out = postprocessSquad(f, logits);
  assertEquals(out.predictions, { q: "Steve Smith" });
  const nb = out.nbest.q;
  assertEquals(nb[0].text, "Steve Smith");
  assertEquals([nb[0].start_logit, nb[0].end_logit], [10, 10]);
  assertEquals(nb[1].text, "Steve Smith's dog bought");
  assertEquals(new Set(nb.map((e) => e.text)).size, nb.length); // de-duplicated
  assert(nb.length <= 20);
  const total = nb.reduce((a, e) => a + e.probability, 0);
  assert(Math.abs(total - 1) < 1e-12, `probabilities sum to ${total}`);
  // softmax over start+end: p0 / p1 = e^(20 - 14)
  assert(Math.abs(nb[0].probability / nb[1].probability - Math.exp(6)) < 1e-6);
  for (let i = 1; i < nb.length; i++) assert(nb[i - 1].probability >= nb[i].probability);
  // max_answer_length 1: only one-token answers
  const short = postprocessSquad(f, logits, { maxAnswerLength: 1 });
  assert(short.nbest.q.every((e) => !e.text.includes(" ")), JSON.stringify(short.nbest.q));
});

Deno.test("postprocessSquad: a start outside its window's max context is not used", async () => {
  const ds = parseSquad(squadJson(STORE, [{ id: "q", question: "who went?", answers: [["bought", 30]] }]), "m", quiet);
  const f = await convertSquadExamples(ds, tiny(), { maxSeqLength: 11, docStride: 3 });
  // "bought" is token 7: window B (1) position 9, where B is not its max-context window; window C (2) position 6.
  const logits = logitsFor(f, (w, s, e) => {
    if (w === 1) s[9] = 100;
    if (w === 2) {
      s[6] = 5;
      e[8] = 5;
    }
  });
  assertEquals(postprocessSquad(f, logits).predictions.q, "bought a gallon");
});

Deno.test("highlightAnswer: marks the span, escapes HTML", () => {
  const html = highlightAnswer("Tom & <Jerry> won.", "<Jerry>", 0.5);
  assert(
    html.includes('Tom &amp; <mark style="background:#ffe066;padding:0 2px" title="score 0.500">&lt;Jerry&gt;</mark>'),
    html,
  );
  assert(highlightAnswer("abc", "zz").includes("not found"));
});

// ---------------------------------------------------------------------------------------------------------------
// Files, loss, model

Deno.test("save/load: features and windows round-trip; a mismatched sidecar is refused", async () => {
  const dir = await tempDir();
  try {
    const ds = parseSquad(
      squadJson(STORE, [{ id: "a", question: "who went?", answers: [["bought a gallon", 30]] }]),
      "s",
      quiet,
    );
    const f = await convertSquadExamples(ds, tiny(), { maxSeqLength: 11, docStride: 3, training: true });
    const path = `${dir}/features/train.safetensors`;
    await saveSquadFeatures(path, f);
    const g = await loadSquadFeatures(path);
    assertEquals(g.inputIds, f.inputIds);
    assertEquals(g.tokenTypeIds, f.tokenTypeIds);
    assertEquals(g.attentionMask, f.attentionMask);
    assertEquals(g.startPositions, f.startPositions);
    assertEquals(g.windows, f.windows);
    assertEquals(g.paragraphTokens, f.paragraphTokens);
    assertEquals(g.dataset.examples, f.dataset.examples);
    assertEquals(g.dataset.paragraphs, f.dataset.paragraphs);
    assertEquals(g.metadata, f.metadata);
    // A sidecar from another run: refused.
    const other = await convertSquadExamples(ds, tiny(), { maxSeqLength: 11, docStride: 3, training: true });
    await saveSquadFeatures(`${dir}/other.safetensors`, other);
    await Deno.copyFile(`${dir}/other.windows.json`, `${dir}/features/train.windows.json`);
    await assertRejects(() => loadSquadFeatures(path), Error, "different prepare runs");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("squadLoss: mean of start and end cross-entropy (hand-computed)", async () => {
  await initBackend({ quiet: true });
  // Uniform logits over 4 positions: each CE = ln 4. Start logits [0, ln 3, 0, 0] at position 1: CE = ln(6/3) = ln 2.
  const loss = tf.tidy(() =>
    squadLoss(
      tf.tensor2d([[0, Math.log(3), 0, 0]]),
      tf.tensor2d([[0, 0, 0, 0]]),
      tf.tensor1d([1], "int32"),
      tf.tensor1d([3], "int32"),
    ).dataSync()[0]
  );
  assert(Math.abs(loss - (Math.log(2) + Math.log(4)) / 2) < 1e-6, `loss ${loss}`);
});

function tinyModel(vocabSize: number, seed = 1, dropout = 0): BertModel {
  const config = configFromJson({
    vocab_size: vocabSize,
    hidden_size: 16,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    intermediate_size: 32,
    max_position_embeddings: 64,
    type_vocab_size: 2,
    hidden_dropout_prob: dropout,
    attention_probs_dropout_prob: dropout,
  });
  return new BertModel(config, { head: "question-answering", seed });
}

Deno.test("squadTrainStep: a few AdamW steps on one window drive the span loss down; no tensor leaks", async () => {
  await initBackend({ quiet: true });
  const ds = parseSquad(squadJson(STORE, [{ id: "a", question: "who went?", answers: [["milk", 49]] }]), "s", quiet);
  const f = await convertSquadExamples(ds, tiny(), { maxSeqLength: 24, training: true });
  const model = tinyModel(TOKENS.length);
  const optimizer = new AdamW(model.params, { lr: 1e-2, weightDecay: 0 });
  const before = tf.memory().numTensors;
  const losses: number[] = [];
  for (let i = 0; i < 15; i++) {
    const batch = squadBatch(f, [0]);
    losses.push(squadTrainStep({ model, optimizer, batch, lr: 1e-2 }).loss);
    disposeSquadBatch(batch);
    if (i === 1) assertEquals(tf.memory().numTensors, before + 2 * model.params.size); // + AdamW moments only
  }
  assert(losses[14] < losses[0] * 0.5, `loss ${losses[0]} -> ${losses[14]}`);
  optimizer.dispose();
  model.dispose();
});

/** Five questions over two paragraphs in the tiny vocabulary, as training windows and as dev windows. */
async function tinySquadSplits(dir: string) {
  const milk = "steve smith's dog bought milk.";
  const qa = (context: string, id: string, question: string, answer: string) => ({
    id,
    question,
    answers: [[answer, context.indexOf(answer)] as [string, number]],
  });
  const json = {
    version: "1.1",
    data: [{
      title: "Tiny",
      paragraphs: [
        {
          context: STORE,
          qas: [
            qa(STORE, "s1", "who went?", "the man"),
            qa(STORE, "s2", "what the man bought?", "a gallon of milk"),
            qa(STORE, "s3", "who went to the store?", "man"),
          ].map((q) => ({ ...q, answers: q.answers.map(([text, answer_start]) => ({ text, answer_start })) })),
        },
        {
          context: milk,
          qas: [qa(milk, "m1", "who?", "steve smith"), qa(milk, "m2", "what the dog bought?", "milk")]
            .map((q) => ({ ...q, answers: q.answers.map(([text, answer_start]) => ({ text, answer_start })) })),
        },
      ],
    }],
  };
  const opts = { maxSeqLength: 16, docStride: 4, maxQueryLength: 8 };
  const train = await convertSquadExamples(parseSquad(json, "tiny.json", { training: true, ...quiet }), tiny(), {
    ...opts,
    training: true,
  });
  const dev = await convertSquadExamples(parseSquad(json, "tiny.json", quiet), tiny(), opts);
  const vocabPath = `${dir}/vocab.txt`;
  await Deno.writeTextFile(vocabPath, TOKENS.join("\n") + "\n");
  return { train, dev, vocabPath };
}

function maxWeightDiff(a: BertModel, b: BertModel): number {
  const wa = modelToTensors(a), wb = modelToTensors(b);
  let worst = 0;
  for (const [name, e] of Object.entries(wa)) {
    worst = Math.max(worst, maxAbsDiff(e.data as Float32Array, wb[name].data as Float32Array));
  }
  return worst;
}

Deno.test("trainSquad: the shared loop equals a hand-written squadTrainStep loop; EM/F1 on dev; checkpoints", async () => {
  await initBackend({ quiet: true });
  const dir = await tempDir();
  try {
    const { train, dev, vocabPath } = await tinySquadSplits(dir);
    assert(train.n > train.dataset.examples.length, `some questions need two windows (${train.n} windows)`);
    const hp = { learningRate: 1e-2, batchSize: 4, epochs: 3, seed: 11 };
    const model = tinyModel(TOKENS.length, 5, 0.1);
    const counts: number[] = [];
    const r = await trainSquad({
      ...hp,
      model,
      vocabPath,
      features: train,
      dev,
      outputDir: `${dir}/run`,
      saveTotalLimit: 1,
      quiet: true,
      onEval: () => counts.push(tf.memory().numTensors),
    });
    const stepsPerEpoch = Math.ceil(train.n / hp.batchSize);
    const totalSteps = hp.epochs * stepsPerEpoch;
    assertEquals(r.globalStep, totalSteps);
    // Reference: run_squad.py's loop written out with squadTrainStep (AdamW, warmup/decay, clipping at 1).
    const ref = tinyModel(TOKENS.length, 5, 0.1);
    const optimizer = new AdamW(ref.params, { lr: hp.learningRate, weightDecay: 0.01 });
    const warmupSteps = warmupStepsFor(totalSteps, 0.1);
    const losses: number[] = [];
    for (let epoch = 0, step = 0; epoch < hp.epochs; epoch++) {
      const order = shuffledOrder(train.n, new Rng(epochOrderState(hp.seed, epoch)));
      for (let b = 0; b < stepsPerEpoch; b++, step++) {
        const batch = squadBatch(train, order.subarray(b * hp.batchSize, (b + 1) * hp.batchSize));
        const lr = scheduleLr(step, { peakLr: hp.learningRate, warmupSteps, totalSteps });
        losses.push(squadTrainStep({ model: ref, optimizer, batch, lr, seed: dropoutSeed(hp.seed, step, 0) }).loss);
        disposeSquadBatch(batch);
      }
    }
    optimizer.dispose();
    assertEquals(r.losses, losses);
    assertEquals(maxWeightDiff(model, ref), 0);
    // An evaluation per epoch, with the official metric of the model's own predictions.
    assertEquals(r.evalHistory.map((e) => e.step), [stepsPerEpoch, 2 * stepsPerEpoch, totalSteps]);
    const preds = (await predictSquad({ model, features: dev })).predictions;
    const scores = evaluateSquad(dev.dataset, preds, { warn: () => {} });
    assertEquals(r.finalEval!.scalars, { exact_match: scores.exact_match, f1: scores.f1 });
    assertEquals(r.finalEval!.metrics.predictions, preds);
    assertEquals(r.finalEval!.headline.name, "f1");
    assertEquals(new Set(counts).size, 1, `live tensors after each evaluation: ${counts}`);
    // Checkpoints: the newest plus the best by F1, each a question-answering checkpoint with trainer state.
    const best = r.bestMetric!;
    assertEquals(best.name, "f1");
    assertEquals(best.value, Math.max(...r.evalHistory.map((e) => e.f1)));
    assertEquals(new Set((await listCheckpoints(`${dir}/run`)).map((c) => c.step)), new Set([totalSteps, best.step]));
    const state = await readTrainerState(r.lastCheckpoint);
    assertEquals([state.task, state.head, state.metric_for_best, state.hyper_parameters.learning_rate], [
      "squad",
      "question-answering",
      "f1",
      1e-2,
    ]);
    const loaded = await loadCheckpoint(r.lastCheckpoint, { head: "question-answering", quiet: true });
    assertEquals(loaded.report.missing, []);
    assertEquals(maxWeightDiff(loaded.model, model), 0);
    loaded.model.dispose();
    // Classification features or a classification model are refused with a clear message.
    await assertRejects(
      () => trainSquad({ model, vocabPath, features: dev, outputDir: `${dir}/x`, quiet: true }),
      Error,
      "no training targets",
    );
    for (const m of [model, ref]) m.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainSquad: a run interrupted mid-epoch and resumed ends exactly like an uninterrupted one", async () => {
  await initBackend({ quiet: true });
  const dir = await tempDir();
  try {
    const { train, dev, vocabPath } = await tinySquadSplits(dir);
    const settings = {
      vocabPath,
      features: train,
      dev,
      learningRate: 1e-2,
      batchSize: 3,
      epochs: 2,
      saveSteps: 2,
      evalSteps: 3,
      seed: 3,
      quiet: true,
    };
    const full = tinyModel(TOKENS.length, 5, 0.1); // with dropout: the masks must be restored too
    const a = await trainSquad({ ...settings, model: full, outputDir: `${dir}/a` });
    const crashed = tinyModel(TOKENS.length, 5, 0.1);
    await assertRejects(
      () =>
        trainSquad({
          ...settings,
          model: crashed,
          outputDir: `${dir}/b`,
          onProgress: (e) => {
            if (e.phase === "train" && e.step === 5) throw new Error("simulated crash");
          },
        }),
      Error,
      "simulated crash",
    );
    crashed.dispose();
    assertEquals(await latestCheckpoint(`${dir}/b`), `${dir}/b/checkpoint-4`);
    const resumed = tinyModel(TOKENS.length, 77, 0.1); // other initial weights: all must come from the checkpoint
    const { learningRate: _lr, ...withoutLr } = settings; // resuming takes the checkpoint's hyper-parameters
    const b = await trainSquad({ ...withoutLr, model: resumed, outputDir: `${dir}/b`, resume: true });
    assertEquals(b.resumedFrom, `${dir}/b/checkpoint-4`);
    assertEquals(b.logHistory, a.logHistory);
    assertEquals(b.evalHistory, a.evalHistory);
    assertEquals(b.bestMetric, a.bestMetric);
    assertEquals(maxWeightDiff(full, resumed), 0);
    for (const m of [full, resumed]) m.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "SQuAD dev slice end to end: 20 questions -> windows -> tiny random model -> predictions.json -> EM/F1",
  ignore: !HAVE_SHARED,
  fn: async () => {
    await initBackend({ quiet: true });
    const dir = await tempDir();
    try {
      const ds = await readSquad(DEV, { limit: 20, ...quiet });
      assertEquals(ds.examples.length, 20);
      const tokenizer = await FullTokenizer.fromVocabFile(UNCASED_VOCAB);
      const f = await convertSquadExamples(ds, tokenizer, { maxSeqLength: 64, docStride: 32, maxQueryLength: 24 });
      assert(f.n > 20 && f.stats.multiWindowExamples > 0, `windows ${f.n}`);
      const path = `${dir}/features/dev.safetensors`;
      await saveSquadFeatures(path, f);
      const model = tinyModel(tokenizer.vocab.size);
      try {
        const before = tf.memory().numTensors;
        const logits = squadLogits(model, f, { batchSize: 16 });
        squadLogits(model, f, { batchSize: 16 });
        assertEquals(tf.memory().numTensors, before);
        const out = await predictSquad({ model, features: path, outputDir: dir, batchSize: 16 });
        // Same logits and post-processing whether features come from memory or from the files.
        assertEquals(out.predictions, postprocessSquad(f, logits).predictions);
        const written = JSON.parse(await Deno.readTextFile(`${dir}/predictions.json`));
        assertEquals(written, out.predictions);
        const nbest = JSON.parse(await Deno.readTextFile(`${dir}/nbest_predictions.json`));
        assertEquals(Object.keys(nbest), ds.examples.map((e) => e.id));
        for (const [qid, text] of Object.entries(written)) {
          const ex = ds.examples.find((e) => e.id === qid)!;
          // every answer is a piece of its context (the original characters, not the tokenizer's)
          assert(ds.paragraphs[ex.paragraphIndex].context.includes(text as string), `${qid}: ${text}`);
          assertEquals(nbest[qid][0].text, text);
        }
        const scores = evaluateSquad(ds, written);
        assertEquals([scores.total, scores.missing], [20, 0]);
        for (const v of [scores.exact_match, scores.f1]) assert(v >= 0 && v <= 100, `score ${v}`);
        assert(scores.f1 >= scores.exact_match);
      } finally {
        model.dispose();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "squadLogits: length-sorted, trimmed batches give full-length logits at every real token, in file order",
  ignore: !HAVE_SHARED,
  fn: async () => {
    await initBackend({ quiet: true });
    const ds = await readSquad(DEV, { limit: 12, ...quiet });
    const tokenizer = await FullTokenizer.fromVocabFile(UNCASED_VOCAB);
    const f = await convertSquadExamples(ds, tokenizer, { maxSeqLength: 64, docStride: 16, maxQueryLength: 24 });
    const L = f.maxSeqLength;
    const lengths = Array.from({ length: f.n }, (_, w) => f.attentionMask.subarray(w * L, (w + 1) * L).indexOf(0));
    assert(lengths.some((n) => n > 0 && n < L - 8), `some windows must be short: ${lengths}`);
    const model = tinyModel(tokenizer.vocab.size);
    try {
      const before = tf.memory().numTensors;
      const fast = squadLogits(model, f, { batchSize: 4 });
      const full = squadLogits(model, f, { batchSize: 4, sortByLength: false });
      assertEquals(tf.memory().numTensors, before);
      let maxDiff = 0, cut = 0;
      for (let w = 0; w < f.n; w++) {
        const real = lengths[w] < 0 ? L : lengths[w];
        for (const k of ["startLogits", "endLogits"] as const) {
          for (let j = 0; j < L; j++) {
            if (j < real) maxDiff = Math.max(maxDiff, Math.abs(fast[w][k][j] - full[w][k][j]));
            else if (fast[w][k][j] === -Infinity) cut++;
            else assertEquals(fast[w][k][j], full[w][k][j], `window ${w} ${k}[${j}]: padding is cut or equal`);
          }
        }
      }
      assert(maxDiff < 1e-5, `max |sorted - full| at real tokens ${maxDiff}`);
      assert(cut > 0, "no padding column was cut");
      // The only difference post-processing can see: a cut padding position never enters the top-n indexes.
      const masked = full.map((r, w) => {
        const real = lengths[w] < 0 ? L : lengths[w];
        const m = (a: ArrayLike<number>) => Float32Array.from(a, (v, j) => j < real ? v : -Infinity);
        return { startLogits: m(r.startLogits), endLogits: m(r.endLogits) };
      });
      assertEquals(postprocessSquad(f, fast).predictions, postprocessSquad(f, masked).predictions);
    } finally {
      model.dispose();
    }
  },
});

Deno.test({
  name: "CLI: squad prepare writes train/dev features; squad evaluate scores gold predictions at 100",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const dir = await tempDir();
    const { spec } = await import("../../../lib/cli/squad.ts");
    const cli = (argv: string[]) => runCli(parseArgs(argv, spec));
    const log = console.log;
    console.log = () => {};
    try {
      await assertRejects(() => cli([]), UsageError, "subcommand");
      await cli([
        "prepare",
        "--train",
        DEV,
        "--dev",
        DEV,
        "--vocab",
        UNCASED_VOCAB,
        "--limit",
        "8",
        "--outputs-dir",
        dir,
        "--run",
        "r",
        "--max-seq-length",
        "128",
        "--doc-stride",
        "64",
      ]); // deno-fmt-ignore
      const train = await loadSquadFeatures(`${dir}/r/features/train.safetensors`);
      const dev = await loadSquadFeatures(`${dir}/r/features/dev.safetensors`);
      assertEquals([train.metadata.training, dev.metadata.training, dev.dataset.examples.length], [true, false, 8]);
      assert(train.startPositions!.some((p) => p > 0));
      const gold = Object.fromEntries(dev.dataset.examples.map((e) => [e.id, e.answers[0].text]));
      await Deno.writeTextFile(`${dir}/pred.json`, JSON.stringify(gold));
      await cli(["evaluate", "--dev", DEV, "--predictions", `${dir}/pred.json`, "--limit", "8", "--output", dir]);
      const res = JSON.parse(await Deno.readTextFile(`${dir}/eval_results.json`));
      assertEquals([res.exact_match, res.f1, res.total], [100, 100, 8]);
    } finally {
      console.log = log;
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "CLI --task squad: prepare (demo split of dev) -> train (resumable, evaluated) -> evaluate the run",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const dir = await tempDir();
    const prepareCli = await import("../../../lib/cli/prepare.ts");
    const trainCli = await import("../../../lib/cli/train.ts");
    const evaluateCli = await import("../../../lib/cli/evaluate.ts");
    const model = `${SHARED}/data/models/tiny-random-BertForSequenceClassification.FALLBACK-RANDOM-WEIGHTS`;
    const out: string[] = [];
    const log = console.log, warn = console.warn;
    console.log = console.warn = (...a: unknown[]) => out.push(a.join(" "));
    try {
      const windows = ["--max-seq-length", "96", "--doc-stride", "48", "--max-query-length", "24"];
      await prepareCli.run(parseArgs([
        "--task",
        "squad",
        "--model",
        model,
        "--limit",
        "6",
        "--train-limit",
        "12",
        "--outputs-dir",
        dir,
        ...windows,
      ], prepareCli.spec));
      const text = out.join("\n");
      assert(text.includes("DEMO split of the dev file") && text.includes("no train-v1.1.json"), text);
      const features = `${dir}/squad/features`;
      const train = await loadSquadFeatures(`${features}/train.safetensors`);
      const dev = await loadSquadFeatures(`${features}/dev.safetensors`);
      assertEquals([train.dataset.examples.length, dev.dataset.examples.length], [12, 6]);
      assertEquals([train.metadata.training, dev.metadata.training, dev.maxSeqLength], [true, false, 96]);
      const devTitles = new Set(dev.dataset.paragraphs.map((p) => p.title));
      assert(train.dataset.paragraphs.every((p) => !devTitles.has(p.title)), "no evaluated article is trained on");

      const trainArgs = ["--features", features, "--model", model, "--batch-size", "16", "--lr", "1e-3", "--quiet"];
      await trainCli.run(parseArgs([...trainArgs, "--max-steps", "2", "--save-steps", "1"], trainCli.spec));
      const run = `${dir}/squad`;
      const state = await readTrainerState(`${run}/checkpoint-2`);
      assertEquals([state.task, state.head, state.global_step, state.metric_for_best], [
        "squad",
        "question-answering",
        2,
        "f1",
      ]);
      assertEquals(state.eval_history.map((e) => e.step), [2]);
      // --resume on the finished run loads it and has nothing left to do; other hyper-parameters are refused
      // (--max-steps may be raised: tests/e2e/faults_test.ts covers that).
      await trainCli.run(parseArgs([...trainArgs, "--max-steps", "2", "--resume"], trainCli.spec));
      await assertRejects(
        () =>
          trainCli.run(
            parseArgs([...trainArgs, "--max-steps", "2", "--resume", "--weight-decay", "0.5"], trainCli.spec),
          ),
        Error,
        "--weight-decay: checkpoint 0.01, now 0.5",
      );

      // evaluate --task squad on the run folder: predicts its dev features with the best checkpoint, official scores.
      await evaluateCli.run(parseArgs(["--task", "squad", "--checkpoint", run], evaluateCli.spec));
      const best = `${run}/${state.best_checkpoint}`;
      const predictions = JSON.parse(await Deno.readTextFile(`${best}/predictions.json`));
      assertEquals(Object.keys(predictions).sort(), dev.dataset.examples.map((e) => e.id).sort());
      const expected = evaluateSquad(dev.dataset, predictions, { warn: () => {} });
      const results = JSON.parse(await Deno.readTextFile(`${best}/eval_results.json`));
      assertEquals([results.exact_match, results.f1, results.total], [expected.exact_match, expected.f1, 6]);
      assertEquals(state.eval_history[0].f1, expected.f1, "the evaluation during training scored the same");
      // evaluate --task squad --predictions: gold answers score 100 against --data (first --limit questions).
      const gold = Object.fromEntries(dev.dataset.examples.map((e) => [e.id, e.answers[0].text]));
      await Deno.writeTextFile(`${dir}/gold.json`, JSON.stringify(gold));
      const goldArgs = ["--task", "squad", "--predictions", `${dir}/gold.json`, "--data", DEV, "--limit", "6"];
      await evaluateCli.run(parseArgs([...goldArgs, "--output", dir], evaluateCli.spec));
      const scored = JSON.parse(await Deno.readTextFile(`${dir}/eval_results.json`));
      assertEquals([scored.exact_match, scored.f1, scored.total], [100, 100, 6]);
      await assertRejects(
        () => evaluateCli.run(parseArgs(["--task", "squad"], evaluateCli.spec)),
        UsageError,
        "needs --predictions FILE or --checkpoint DIR",
      );
    } finally {
      console.log = log;
      console.warn = warn;
      await Deno.remove(dir, { recursive: true });
    }
  },
});
