/**
 * Classification metrics against hand-worked cases and the examples printed in scikit-learn's documentation.
 */
import { assert, assertEquals, assertThrows } from "../shared.ts";
import {
  accuracy,
  averagePrecision,
  classificationReport,
  computeMetrics,
  confusionMatrix,
  greaterIsBetter,
  headlineMetric,
  logLoss,
  matthewsCorrcoef,
  metricByName,
  precisionRecallCurve,
  precisionRecallF1,
  rocAuc,
  rocCurve,
  scalarMetrics,
} from "../../lib/eval/metrics.ts";

function assertAlmostEquals(actual: number, expected: number, tolerance: number): void {
  if (!(Math.abs(actual - expected) <= tolerance)) {
    throw new Error(`expected ${expected} within ${tolerance}, got ${actual} (diff ${Math.abs(actual - expected)})`);
  }
}

Deno.test("accuracy: sklearn accuracy_score([0,2,1,3],[0,1,2,3]) = 0.5", () => {
  assertEquals(accuracy([0, 1, 2, 3], [0, 2, 1, 3]), 0.5);
  assertThrows(() => accuracy([0, 1], [0]), Error, "differ in length");
});

Deno.test("confusionMatrix: sklearn docs example", () => {
  // y_true=[2,0,2,2,0,1], y_pred=[0,0,2,2,0,2] -> [[2,0,0],[0,0,1],[1,0,2]]
  assertEquals(confusionMatrix([2, 0, 2, 2, 0, 1], [0, 0, 2, 2, 0, 2]), [[2, 0, 0], [0, 0, 1], [1, 0, 2]]);
  // numClasses pads classes never seen.
  assertEquals(confusionMatrix([0, 0], [0, 0], 2), [[2, 0], [0, 0]]);
});

Deno.test("precision/recall/F1: hand-worked binary case", () => {
  // gold [0,1,1,0,1], pred [0,1,0,1,1]: class 1 has TP=2 (i=1,4), FP=1 (i=3), FN=1 (i=2)
  // -> P = R = F1 = 2/3. Class 0: TP=1 (i=0), FP=1 (i=2), FN=1 (i=3) -> 1/2. Macro F1 = (1/2 + 2/3)/2 = 7/12.
  const gold = [0, 1, 1, 0, 1], pred = [0, 1, 0, 1, 1];
  const b = precisionRecallF1(gold, pred);
  assertAlmostEquals(b.precision, 2 / 3, 1e-12);
  assertAlmostEquals(b.recall, 2 / 3, 1e-12);
  assertAlmostEquals(b.f1, 2 / 3, 1e-12);
  assertEquals(b.support, 3);
  const m = precisionRecallF1(gold, pred, { average: "macro" });
  assertAlmostEquals(m.f1, 7 / 12, 1e-12);
  // No positive predictions: precision is 0 (zero_division=0), F1 is 0.
  const z = precisionRecallF1([1, 0], [0, 0]);
  assertEquals([z.precision, z.recall, z.f1], [0, 0, 0]);
});

Deno.test("precision/recall/F1: sklearn docs macro example", () => {
  // sklearn: y_true=[0,1,2,0,1,2], y_pred=[0,2,1,0,0,1]: macro precision 0.2222, recall 0.3333, f1 0.2667
  const m = precisionRecallF1([0, 1, 2, 0, 1, 2], [0, 2, 1, 0, 0, 1], { average: "macro" });
  assertAlmostEquals(m.precision, 2 / 9, 1e-12);
  assertAlmostEquals(m.recall, 1 / 3, 1e-12);
  assertAlmostEquals(m.f1, 0.26666666666666666, 1e-12);
});

Deno.test("matthewsCorrcoef: sklearn docs example, multi-class hand case, degenerate cases", () => {
  // sklearn: matthews_corrcoef([+1,+1,+1,-1],[+1,-1,+1,+1]) = -0.333...; with -1 -> 0:
  // TP=2, FN=1, FP=1, TN=0 -> (2*0 - 1*1)/sqrt(3*3*1*1) = -1/3.
  assertAlmostEquals(matthewsCorrcoef([1, 1, 1, 0], [1, 0, 1, 1]), -1 / 3, 1e-12);
  // 3 classes: gold [0,1,2,0,1,2], pred [0,1,1,0,2,2] -> C = [[2,0,0],[0,1,1],[0,1,1]], c=4, s=6,
  // t = p = [2,2,2]: (4*6 - 12) / sqrt((36-12)(36-12)) = 12/24 = 0.5.
  assertAlmostEquals(matthewsCorrcoef([0, 1, 2, 0, 1, 2], [0, 1, 1, 0, 2, 2]), 0.5, 1e-12);
  // Constant prediction: denominator 0 -> 0 (sklearn returns 0.0).
  assertEquals(matthewsCorrcoef([0, 1, 1, 0], [1, 1, 1, 1]), 0);
  // Perfect and inverted predictions.
  assertAlmostEquals(matthewsCorrcoef([0, 1, 1, 0], [0, 1, 1, 0]), 1, 1e-12);
  assertAlmostEquals(matthewsCorrcoef([0, 1, 1, 0], [1, 0, 0, 1]), -1, 1e-12);
});

Deno.test("rocAuc: sklearn docs example and ties", () => {
  // sklearn: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.75
  assertEquals(rocAuc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 0.75);
  // Ties: gold [0,1,0,1], scores [0.5,0.5,0.2,0.9]. Positive/negative pairs: (0.5 vs 0.5) = 1/2,
  // (0.5 vs 0.2) = 1, (0.9 vs 0.5) = 1, (0.9 vs 0.2) = 1 -> 3.5/4 = 0.875.
  assertEquals(rocAuc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]), 0.875);
  // All scores tied -> 0.5.
  assertEquals(rocAuc([0, 1, 1, 0, 1], [3, 3, 3, 3, 3]), 0.5);
  assert(Number.isNaN(rocAuc([1, 1], [0.2, 0.3])), "one class present: undefined");
});

Deno.test("rocAuc equals the trapezoidal area under rocCurve (independent computation, random data with ties)", () => {
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let trial = 0; trial < 20; trial++) {
    const n = 5 + Math.floor(rand() * 40);
    const labels = Array.from({ length: n }, () => (rand() < 0.4 ? 1 : 0));
    labels[0] = 0;
    labels[1] = 1;
    const scores = Array.from({ length: n }, () => Math.floor(rand() * 6) / 5); // few distinct values: many ties
    for (const dropIntermediate of [false, true]) {
      const { fpr, tpr } = rocCurve(labels, scores, { dropIntermediate });
      let area = 0;
      for (let i = 1; i < fpr.length; i++) area += ((fpr[i] - fpr[i - 1]) * (tpr[i] + tpr[i - 1])) / 2;
      assertAlmostEquals(rocAuc(labels, scores), area, 1e-12);
    }
  }
});

Deno.test("rocCurve: sklearn docs example", () => {
  // sklearn: y=[1,1,2,2], scores=[0.1,0.4,0.35,0.8], pos_label=2:
  // fpr [0,0,0.5,0.5,1], tpr [0,0.5,0.5,1,1], thresholds [inf,0.8,0.4,0.35,0.1]
  const c = rocCurve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], { dropIntermediate: true });
  assertEquals(c.fpr, [0, 0, 0.5, 0.5, 1]);
  assertEquals(c.tpr, [0, 0.5, 0.5, 1, 1]);
  assertEquals(c.thresholds, [Infinity, 0.8, 0.4, 0.35, 0.1]);
  // dropIntermediate removes collinear points: scores 4,3,2,1 for gold 1,1,0,0 -> keep (0,0),(0,1),(1,1).
  const d = rocCurve([1, 1, 0, 0], [4, 3, 2, 1], { dropIntermediate: true });
  assertEquals(d.tpr, [0, 0.5, 1, 1]);
  assertEquals(d.fpr, [0, 0, 0, 1]);
  const full = rocCurve([1, 1, 0, 0], [4, 3, 2, 1]);
  assertEquals(full.fpr, [0, 0, 0, 0.5, 1]);
});

Deno.test("precisionRecallCurve: sklearn docs example", () => {
  // sklearn: y_true=[0,0,1,1], y_scores=[0.1,0.4,0.35,0.8]:
  // precision [0.5, 0.667, 0.5, 1, 1], recall [1, 1, 0.5, 0.5, 0], thresholds [0.1, 0.35, 0.4, 0.8]
  const c = precisionRecallCurve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]);
  assertEquals(c.precision.length, 5);
  [0.5, 2 / 3, 0.5, 1, 1].forEach((v, i) => assertAlmostEquals(c.precision[i], v, 1e-12));
  assertEquals(c.recall, [1, 1, 0.5, 0.5, 0]);
  assertEquals(c.thresholds, [0.1, 0.35, 0.4, 0.8]);
});

Deno.test("averagePrecision: sklearn docs example and a hand-worked case", () => {
  // sklearn: average_precision_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.8333...
  // By hand: thresholds 0.8 (P 1, R 0.5), 0.4 (P 1/2, R 0.5), 0.35 (P 2/3, R 1): 0.5*1 + 0*1/2 + 0.5*2/3 = 5/6.
  assertAlmostEquals(averagePrecision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 5 / 6, 1e-12);
  // Perfect ranking -> 1; positives ranked last among 4: P at recall 1/2 = 1/3, at recall 1 = 2/4 -> 0.5*(1/3+1/2).
  assertEquals(averagePrecision([1, 1, 0], [0.9, 0.8, 0.1]), 1);
  assertAlmostEquals(averagePrecision([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]), 0.5 * (1 / 3 + 1 / 2), 1e-12);
});

Deno.test("logLoss: sklearn docs example and clipping", () => {
  // sklearn: log_loss(["spam","ham","ham","spam"], [[.1,.9],[.9,.1],[.8,.2],[.35,.65]]) = 0.21616...
  // (ham=0, spam=1): -(ln .9 + ln .9 + ln .8 + ln .65)/4
  const probs = [[0.1, 0.9], [0.9, 0.1], [0.8, 0.2], [0.35, 0.65]];
  assertAlmostEquals(logLoss([1, 0, 0, 1], probs), 0.21616187468057912, 1e-12);
  assertAlmostEquals(logLoss([1, 0, 0, 1], probs.flat(), { numClasses: 2 }), 0.21616187468057912, 1e-12);
  // A certain mistake is clipped at eps = 1e-15: -ln(1e-15) = 34.538...
  assertAlmostEquals(logLoss([0], [[0, 1]]), -Math.log(1e-15), 1e-9);
});

Deno.test("classificationReport and computeMetrics", () => {
  const rep = classificationReport([0, 1, 1, 0, 1], [0, 1, 0, 1, 1], ["neg", "pos"]);
  assertEquals(rep.map((r) => r.label), ["neg", "pos"]);
  assertEquals(rep.map((r) => r.support), [2, 3]);
  assertAlmostEquals(rep[0].f1, 0.5, 1e-12);

  // probabilities -> argmax predictions [0, 1, 0, 1, 1] (same as above)
  const probabilities = [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.45, 0.55], [0.1, 0.9]];
  const m = computeMetrics({ labels: [0, 1, 1, 0, 1], probabilities, labelNames: ["neg", "pos"] });
  assertEquals(m.n, 5);
  assertAlmostEquals(m.accuracy, 3 / 5, 1e-12);
  assertAlmostEquals(m.f1, 2 / 3, 1e-12);
  assertAlmostEquals(m.macroF1, 7 / 12, 1e-12);
  assertEquals(m.confusionMatrix, [[1, 1], [1, 2]]);
  // MCC = (TP*TN - FP*FN)/sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2*1 - 1*1)/sqrt(3*3*2*2) = 1/6
  assertAlmostEquals(m.mcc, 1 / 6, 1e-12);
  // AUC by hand: positives score .7,.4,.9, negatives .2,.55 -> pairs won: .7>{.2,.55}=2, .4>{.2}=1, .9=2 -> 5/6
  assertAlmostEquals(m.rocAuc!, 5 / 6, 1e-12);
  const expectedLogLoss = -(Math.log(0.8) + Math.log(0.7) + Math.log(0.4) + Math.log(0.45) + Math.log(0.9)) / 5;
  assertAlmostEquals(m.logLoss!, expectedLogLoss, 1e-12);
  assert(m.rocCurve && m.prCurve, "curves for a binary task with probabilities");
  // Without probabilities: no AUC/log loss; explicit predictions.
  const m2 = computeMetrics({ labels: [0, 1], predictions: [0, 1] });
  assertEquals(m2.rocAuc, undefined);
  assertEquals(m2.labelNames, ["0", "1"]);
  assertThrows(
    () => computeMetrics({ labels: [0, 2], predictions: [0, 1], labelNames: ["a", "b"] }),
    Error,
    "label names",
  );
});

Deno.test("headlineMetric and metricByName", () => {
  const m = computeMetrics({ labels: [0, 1, 1, 0, 1], predictions: [0, 1, 0, 1, 1], labelNames: ["a", "b"] });
  assertEquals(headlineMetric("accuracy", m).value, m.accuracy);
  assertEquals(headlineMetric("mcc", m).name, "mcc");
  const mrpc = headlineMetric("accuracy_f1", m);
  assertAlmostEquals(mrpc.value, (3 / 5 + 2 / 3) / 2, 1e-12);
  assertEquals(mrpc.parts.map((p) => p.name), ["accuracy", "f1"]);
  assertThrows(() => headlineMetric("bleu", m), Error, "unknown metric kind");

  assertEquals(metricByName(m, "accuracy"), 0.6);
  assertEquals(metricByName(m, "eval_accuracy"), 0.6);
  assertEquals(metricByName(m, "macroF1"), m.macroF1);
  assertEquals(metricByName(m, "macro_f1"), m.macroF1);
  const err = assertThrows(() => metricByName(m, "acuracy"), Error);
  assert(err.message.includes('"acuracy"') && err.message.includes("accuracy, f1"), err.message);
  assertThrows(() => metricByName(m, "roc_auc"), Error, "not computed");
  assertEquals(greaterIsBetter("loss"), false);
  assertEquals(greaterIsBetter("mcc"), true);
  assertEquals(Object.keys(scalarMetrics(m)).includes("roc_auc"), false);
});
