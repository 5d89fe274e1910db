/**
 * Classification metrics, computed in plain TypeScript on label arrays (no tensors), following scikit-learn's
 * definitions so that numbers match what a Python user would get:
 *
 * - accuracy, precision / recall / F1 (binary for the positive class 1, and macro-averaged), with 0 where a
 *   ratio is undefined (sklearn's `zero_division=0`);
 * - Matthews correlation coefficient, the multi-class formula of `sklearn.metrics.matthews_corrcoef` (0 when
 *   undefined, e.g. a constant prediction);
 * - confusion matrix (rows = gold label, columns = predicted label);
 * - ROC-AUC for binary tasks (rank-based; tied scores count one half, exactly like sklearn's trapezoids);
 * - ROC and precision-recall curve points for plots;
 * - a per-class report and the log loss.
 *
 * {@linkcode computeMetrics} returns all of it; {@linkcode headlineMetric} picks the number a task is judged by
 * (MCC for CoLA, accuracy and F1 for MRPC, accuracy otherwise) and {@linkcode metricByName} looks a scalar up by
 * name (used by `--metric-for-best`).
 * @module
 */

/** Labels or predictions: class indices `0..numClasses-1`. */
export type LabelArray = ArrayLike<number>;

function checkSameLength(a: ArrayLike<unknown>, b: ArrayLike<unknown>, what: string): void {
  if (a.length !== b.length) {
    throw new Error(`${what}: labels and predictions differ in length (${a.length} vs ${b.length})`);
  }
}

function numClassesOf(...arrays: LabelArray[]): number {
  let max = -1;
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++) {
      const v = a[i];
      if (!Number.isInteger(v) || v < 0) throw new Error(`class indices must be integers >= 0, got ${v} at ${i}`);
      if (v > max) max = v;
    }
  }
  return max + 1;
}

function div(a: number, b: number): number {
  return b === 0 ? 0 : a / b;
}

/** Fraction of predictions equal to the gold label (NaN for no examples). */
export function accuracy(labels: LabelArray, predictions: LabelArray): number {
  checkSameLength(labels, predictions, "accuracy");
  if (labels.length === 0) return NaN;
  let ok = 0;
  for (let i = 0; i < labels.length; i++) if (labels[i] === predictions[i]) ok++;
  return ok / labels.length;
}

/**
 * The confusion matrix `m[gold][predicted]` (counts), `numClasses` x `numClasses`.
 *
 * @example
 * ```ts
 * confusionMatrix([0, 1, 1], [0, 0, 1]); // [[1, 0], [1, 1]]
 * ```
 */
export function confusionMatrix(labels: LabelArray, predictions: LabelArray, numClasses?: number): number[][] {
  checkSameLength(labels, predictions, "confusionMatrix");
  const k = Math.max(numClasses ?? 0, numClassesOf(labels, predictions));
  const m = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  for (let i = 0; i < labels.length; i++) m[labels[i]][predictions[i]]++;
  return m;
}

/** Precision, recall, F1 and support of one class (or an average of them). */
export interface PrecisionRecallF1 {
  precision: number;
  recall: number;
  f1: number;
  /** Number of gold examples of the class (for an average: all examples). */
  support: number;
}

function prfFromCounts(tp: number, fp: number, fn: number): { precision: number; recall: number; f1: number } {
  const precision = div(tp, tp + fp);
  const recall = div(tp, tp + fn);
  // sklearn computes F1 as 2tp / (2tp + fp + fn), which is 0 when all three are 0.
  const f1 = div(2 * tp, 2 * tp + fp + fn);
  return { precision, recall, f1 };
}

/** Per-class precision/recall/F1/support from a confusion matrix. */
export function perClassFromConfusion(matrix: number[][]): PrecisionRecallF1[] {
  const k = matrix.length;
  const out: PrecisionRecallF1[] = [];
  for (let c = 0; c < k; c++) {
    let fp = 0, fn = 0;
    for (let j = 0; j < k; j++) {
      if (j === c) continue;
      fp += matrix[j][c];
      fn += matrix[c][j];
    }
    const tp = matrix[c][c];
    out.push({ ...prfFromCounts(tp, fp, fn), support: tp + fn });
  }
  return out;
}

/** Options for {@linkcode precisionRecallF1}. */
export interface PrfOptions {
  /** `binary` (default): scores of class `positive`; `macro`: unweighted mean of the per-class scores. */
  average?: "binary" | "macro";
  /** The positive class for `binary` (default 1). */
  positive?: number;
  /** Number of classes (default: inferred from the data). */
  numClasses?: number;
}

/**
 * Precision, recall and F1 like `sklearn.metrics.precision_recall_fscore_support` with `zero_division=0`.
 * Macro F1 is the mean of per-class F1 scores (not the F1 of the mean precision and recall), as in sklearn.
 */
export function precisionRecallF1(
  labels: LabelArray,
  predictions: LabelArray,
  options: PrfOptions = {},
): PrecisionRecallF1 {
  const matrix = confusionMatrix(labels, predictions, options.numClasses ?? 2);
  const per = perClassFromConfusion(matrix);
  if ((options.average ?? "binary") === "binary") {
    const pos = options.positive ?? 1;
    if (pos >= per.length) throw new Error(`positive class ${pos} is out of range for ${per.length} classes`);
    return per[pos];
  }
  const mean = (f: (p: PrecisionRecallF1) => number) => per.reduce((s, p) => s + f(p), 0) / per.length;
  return {
    precision: mean((p) => p.precision),
    recall: mean((p) => p.recall),
    f1: mean((p) => p.f1),
    support: labels.length,
  };
}

/**
 * Matthews correlation coefficient, the general multi-class formula (Gorodkin 2004), as in sklearn:
 * `(c·s − Σ_k p_k t_k) / sqrt((s² − Σ_k p_k²) (s² − Σ_k t_k²))` with `c` correct predictions, `s` examples,
 * `t_k` gold counts and `p_k` predicted counts of class `k`. Returns 0 when the denominator is 0.
 */
export function matthewsCorrcoef(labels: LabelArray, predictions: LabelArray, numClasses?: number): number {
  const m = confusionMatrix(labels, predictions, numClasses);
  const k = m.length;
  let c = 0, s = 0, pt = 0, pp = 0, tt = 0;
  const t = new Array<number>(k).fill(0), p = new Array<number>(k).fill(0);
  for (let i = 0; i < k; i++) {
    c += m[i][i];
    for (let j = 0; j < k; j++) {
      t[i] += m[i][j];
      p[j] += m[i][j];
      s += m[i][j];
    }
  }
  for (let i = 0; i < k; i++) {
    pt += p[i] * t[i];
    pp += p[i] * p[i];
    tt += t[i] * t[i];
  }
  const denom = Math.sqrt((s * s - pp) * (s * s - tt));
  return denom === 0 ? 0 : (c * s - pt) / denom;
}

function checkBinary(labels: LabelArray, scores: ArrayLike<number>, what: string): { pos: number; neg: number } {
  checkSameLength(labels, scores, what);
  let pos = 0, neg = 0;
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] === 1) pos++;
    else if (labels[i] === 0) neg++;
    else throw new Error(`${what}: binary labels must be 0 or 1, got ${labels[i]} at ${i}`);
    if (Number.isNaN(scores[i])) throw new Error(`${what}: score ${i} is NaN`);
  }
  return { pos, neg };
}

/**
 * Area under the ROC curve for binary labels (1 = positive) and scores (higher = more positive), computed from
 * average ranks (Mann-Whitney U), so tied scores count one half, which equals sklearn's `roc_auc_score`.
 * Returns NaN when only one class is present (sklearn raises there).
 *
 * @example
 * ```ts
 * rocAuc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]); // 0.75
 * ```
 */
export function rocAuc(labels: LabelArray, scores: ArrayLike<number>): number {
  const { pos, neg } = checkBinary(labels, scores, "rocAuc");
  if (pos === 0 || neg === 0) return NaN;
  const order = Array.from({ length: labels.length }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let rankSumPos = 0;
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && scores[order[j + 1]] === scores[order[i]]) j++;
    const avgRank = (i + j) / 2 + 1; // 1-based average rank of the tie group
    for (let k = i; k <= j; k++) if (labels[order[k]] === 1) rankSumPos += avgRank;
    i = j + 1;
  }
  return (rankSumPos - (pos * (pos + 1)) / 2) / (pos * neg);
}

/** Points of a ROC curve, from the strictest threshold to the loosest. */
export interface RocCurve {
  fpr: number[];
  tpr: number[];
  /** `thresholds[i]`: predict positive when score >= it; the first is +Infinity (nothing predicted positive). */
  thresholds: number[];
}

/** Cumulative true/false positive counts at each distinct score, highest score first (sklearn's _binary_clf_curve). */
function binaryClfCurve(labels: LabelArray, scores: ArrayLike<number>) {
  const order = Array.from({ length: labels.length }, (_, i) => i).sort((a, b) => scores[b] - scores[a]);
  const tps: number[] = [], fps: number[] = [], thresholds: number[] = [];
  let tp = 0, fp = 0;
  for (let i = 0; i < order.length; i++) {
    if (labels[order[i]] === 1) tp++;
    else fp++;
    if (i === order.length - 1 || scores[order[i + 1]] !== scores[order[i]]) {
      tps.push(tp);
      fps.push(fp);
      thresholds.push(scores[order[i]]);
    }
  }
  return { tps, fps, thresholds };
}

/**
 * ROC curve points like `sklearn.metrics.roc_curve(..., drop_intermediate=False)`: one point per distinct score
 * plus the origin (threshold +Infinity). With `dropIntermediate`, collinear points are removed as sklearn's
 * default does.
 */
export function rocCurve(
  labels: LabelArray,
  scores: ArrayLike<number>,
  options: { dropIntermediate?: boolean } = {},
): RocCurve {
  const { pos, neg } = checkBinary(labels, scores, "rocCurve");
  let { tps, fps, thresholds } = binaryClfCurve(labels, scores);
  if (options.dropIntermediate && tps.length > 2) {
    // Keep a point unless it lies on a straight (horizontal or vertical) segment between its neighbours.
    const keep: number[] = [0];
    for (let i = 1; i < tps.length - 1; i++) {
      const d2f = fps[i + 1] - 2 * fps[i] + fps[i - 1];
      const d2t = tps[i + 1] - 2 * tps[i] + tps[i - 1];
      if (d2f !== 0 || d2t !== 0) keep.push(i);
    }
    keep.push(tps.length - 1);
    tps = keep.map((i) => tps[i]);
    fps = keep.map((i) => fps[i]);
    thresholds = keep.map((i) => thresholds[i]);
  }
  return {
    fpr: [0, ...fps.map((f) => (neg === 0 ? NaN : f / neg))],
    tpr: [0, ...tps.map((t) => (pos === 0 ? NaN : t / pos))],
    thresholds: [Infinity, ...thresholds],
  };
}

/** Points of a precision-recall curve in sklearn's order (increasing threshold; ends at precision 1, recall 0). */
export interface PrCurve {
  precision: number[];
  recall: number[];
  /** `thresholds[i]` gives `precision[i]`, `recall[i]`; the final point (1, 0) has no threshold. */
  thresholds: number[];
}

/**
 * Precision-recall curve like `sklearn.metrics.precision_recall_curve` (sklearn ≥ 1.1, which keeps every
 * threshold down to the lowest score).
 */
export function precisionRecallCurve(labels: LabelArray, scores: ArrayLike<number>): PrCurve {
  const { pos } = checkBinary(labels, scores, "precisionRecallCurve");
  const { tps, fps, thresholds } = binaryClfCurve(labels, scores);
  const precision = tps.map((tp, i) => div(tp, tp + fps[i]));
  const recall = tps.map((tp) => (pos === 0 ? 1 : tp / pos));
  // Reverse so that recall decreases, then append the (precision 1, recall 0) end point.
  return {
    precision: [...precision.reverse(), 1],
    recall: [...recall.reverse(), 0],
    thresholds: thresholds.reverse(),
  };
}

/**
 * Average precision like `sklearn.metrics.average_precision_score`: `Σ_n (R_n − R_{n−1}) P_n` over the thresholds
 * of the precision-recall curve (no interpolation). NaN when there is no positive example.
 */
export function averagePrecision(labels: LabelArray, scores: ArrayLike<number>): number {
  const { pos } = checkBinary(labels, scores, "averagePrecision");
  if (pos === 0) return NaN;
  const { precision, recall } = precisionRecallCurve(labels, scores);
  let ap = 0;
  // Points run from recall 1 down to recall 0: each step down in recall is weighted by the precision above it.
  for (let i = 0; i < precision.length - 1; i++) ap += (recall[i] - recall[i + 1]) * precision[i];
  return ap;
}

/**
 * Mean negative log-likelihood of the gold class: `-mean(log p[i][label[i]])`, with probabilities clipped to
 * `[eps, 1]` (eps 1e-15, as sklearn did) so a confident mistake costs ~34.5 instead of Infinity.
 * `probabilities` is `[n][numClasses]` or a flat row-major array.
 */
export function logLoss(
  labels: LabelArray,
  probabilities: ArrayLike<number>[] | ArrayLike<number>,
  options: { numClasses?: number; eps?: number } = {},
): number {
  const eps = options.eps ?? 1e-15;
  const rows = toRows(probabilities, labels.length, options.numClasses);
  if (labels.length === 0) return NaN;
  let sum = 0;
  for (let i = 0; i < labels.length; i++) {
    const row = rows[i];
    if (labels[i] < 0 || labels[i] >= row.length) {
      throw new Error(`logLoss: label ${labels[i]} at ${i} is out of range for ${row.length} classes`);
    }
    sum -= Math.log(Math.min(1, Math.max(eps, row[labels[i]])));
  }
  return sum / labels.length;
}

function toRows(p: ArrayLike<number>[] | ArrayLike<number>, n: number, numClasses?: number): ArrayLike<number>[] {
  if (n === 0) return [];
  const first = (p as ArrayLike<unknown>)[0];
  if (typeof first === "object" && first !== null) {
    const rows = p as ArrayLike<number>[];
    if (rows.length !== n) throw new Error(`probabilities have ${rows.length} rows for ${n} labels`);
    return Array.from(rows);
  }
  const flat = p as ArrayLike<number>;
  const k = numClasses ?? flat.length / n;
  if (!Number.isInteger(k) || k * n !== flat.length) {
    throw new Error(`flat probabilities of length ${flat.length} do not split into ${n} rows`);
  }
  return Array.from({ length: n }, (_, i) => Array.prototype.slice.call(flat, i * k, (i + 1) * k) as number[]);
}

/** One row of the per-class report. */
export interface ClassReport extends PrecisionRecallF1 {
  /** The label's name (or its index as a string when no names are given). */
  label: string;
}

/** Per-class precision, recall, F1 and support (sklearn's `classification_report` rows). */
export function classificationReport(
  labels: LabelArray,
  predictions: LabelArray,
  labelNames?: string[],
): ClassReport[] {
  const matrix = confusionMatrix(labels, predictions, labelNames?.length);
  return perClassFromConfusion(matrix).map((p, i) => ({ label: labelNames?.[i] ?? String(i), ...p }));
}

/** Everything {@linkcode computeMetrics} returns. Scalars are also reachable by name via {@linkcode metricByName}. */
export interface ClassificationMetrics {
  /** Number of examples evaluated. */
  n: number;
  labelNames: string[];
  accuracy: number;
  /** Binary tasks: of the positive class 1; more than two classes: macro-averaged. */
  precision: number;
  recall: number;
  f1: number;
  macroPrecision: number;
  macroRecall: number;
  macroF1: number;
  /** Matthews correlation coefficient (multi-class formula). */
  mcc: number;
  /** `m[gold][predicted]`. */
  confusionMatrix: number[][];
  perClass: ClassReport[];
  /** Binary tasks with probabilities only. */
  rocAuc?: number;
  /** Binary tasks with probabilities only: area under the precision-recall curve (sklearn's AP). */
  averagePrecision?: number;
  /** When probabilities are given. */
  logLoss?: number;
  /** Binary tasks with probabilities only (score = probability of class 1). */
  rocCurve?: RocCurve;
  prCurve?: PrCurve;
  /** Mean loss, filled in by evaluation code that computed it on the model (cross-entropy on logits). */
  loss?: number;
}

/** Inputs of {@linkcode computeMetrics}. */
export interface ComputeMetricsInput {
  /** Gold class indices. */
  labels: LabelArray;
  /** Predicted class indices (default: argmax of `probabilities`). */
  predictions?: LabelArray;
  /** `[n][numClasses]` or flat row-major. */
  probabilities?: ArrayLike<number>[] | ArrayLike<number>;
  /** Names of the classes; also fixes the number of classes. */
  labelNames?: string[];
}

/** Index of the largest value of each row (first one on ties, like numpy's argmax). */
export function argmaxRows(rows: ArrayLike<number>[]): number[] {
  return rows.map((row) => {
    let best = 0;
    for (let j = 1; j < row.length; j++) if (row[j] > row[best]) best = j;
    return best;
  });
}

/**
 * All metrics of a classification run.
 *
 * @example
 * ```ts
 * const m = computeMetrics({ labels: [0, 1, 1], probabilities: [[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]],
 *   labelNames: ["negative", "positive"] });
 * m.accuracy; // 2/3
 * ```
 */
export function computeMetrics(input: ComputeMetricsInput): ClassificationMetrics {
  const { labels } = input;
  const n = labels.length;
  const rows = input.probabilities !== undefined ? toRows(input.probabilities, n, input.labelNames?.length) : undefined;
  const predictions = input.predictions ?? (rows ? argmaxRows(rows) : undefined);
  if (!predictions) throw new Error("computeMetrics needs predictions or probabilities");
  checkSameLength(labels, predictions, "computeMetrics");
  const k = Math.max(input.labelNames?.length ?? 0, rows?.[0]?.length ?? 0, numClassesOf(labels, predictions), 2);
  const labelNames = input.labelNames ?? Array.from({ length: k }, (_, i) => String(i));
  if (labelNames.length < k) {
    throw new Error(`computeMetrics: ${labelNames.length} label names for class indices up to ${k - 1}`);
  }
  const matrix = confusionMatrix(labels, predictions, k);
  const per = perClassFromConfusion(matrix);
  const macro = precisionRecallF1(labels, predictions, { average: "macro", numClasses: k });
  const binary = k === 2 ? per[1] : macro;
  const out: ClassificationMetrics = {
    n,
    labelNames,
    accuracy: accuracy(labels, predictions),
    precision: binary.precision,
    recall: binary.recall,
    f1: binary.f1,
    macroPrecision: macro.precision,
    macroRecall: macro.recall,
    macroF1: macro.f1,
    mcc: matthewsCorrcoef(labels, predictions, k),
    confusionMatrix: matrix,
    perClass: per.map((p, i) => ({ label: labelNames[i], ...p })),
  };
  if (rows) {
    out.logLoss = logLoss(labels, rows);
    if (k === 2) {
      const scores = rows.map((r) => r[1]);
      out.rocAuc = rocAuc(labels, scores);
      out.averagePrecision = averagePrecision(labels, scores);
      let pos = 0;
      for (let i = 0; i < n; i++) pos += labels[i] === 1 ? 1 : 0;
      if (pos > 0 && pos < n) {
        out.rocCurve = rocCurve(labels, scores, { dropIntermediate: true });
        out.prCurve = precisionRecallCurve(labels, scores);
      }
    }
  }
  return out;
}

/** How a task is judged (`TaskSpec.metric` in lib/data/tasks.ts). */
export type MetricKind = "accuracy" | "mcc" | "accuracy_f1";

/** The number a task is judged by. */
export interface HeadlineMetric {
  /** A name {@linkcode metricByName} understands: `accuracy`, `mcc` or `accuracy_f1`. */
  name: string;
  value: number;
  /** The numbers it is made of (MRPC: accuracy and F1), for display. */
  parts: { name: string; value: number }[];
  /** e.g. `accuracy 0.8456 / F1 0.8901`. */
  text: string;
}

/**
 * The headline metric of a task: MCC for CoLA, accuracy and F1 for MRPC (value = their mean, GLUE's
 * "combined score"), accuracy for SST-2, Yelp and the sample.
 */
export function headlineMetric(kind: MetricKind | string, metrics: ClassificationMetrics): HeadlineMetric {
  const f = (v: number) => (Number.isFinite(v) ? v.toFixed(4) : String(v));
  switch (kind) {
    case "accuracy":
      return {
        name: "accuracy",
        value: metrics.accuracy,
        parts: [{ name: "accuracy", value: metrics.accuracy }],
        text: `accuracy ${f(metrics.accuracy)}`,
      };
    case "mcc":
      return {
        name: "mcc",
        value: metrics.mcc,
        parts: [{ name: "mcc", value: metrics.mcc }],
        text: `MCC ${f(metrics.mcc)}`,
      };
    case "accuracy_f1": {
      const value = (metrics.accuracy + metrics.f1) / 2;
      return {
        name: "accuracy_f1",
        value,
        parts: [{ name: "accuracy", value: metrics.accuracy }, { name: "f1", value: metrics.f1 }],
        text: `accuracy ${f(metrics.accuracy)} / F1 ${f(metrics.f1)}`,
      };
    }
    default:
      throw new Error(`unknown metric kind "${kind}" (expected accuracy, mcc or accuracy_f1)`);
  }
}

/** Scalar metrics by name, with whether larger is better. */
const SCALARS: Record<string, { get: (m: ClassificationMetrics) => number | undefined; greaterIsBetter: boolean }> = {
  accuracy: { get: (m) => m.accuracy, greaterIsBetter: true },
  f1: { get: (m) => m.f1, greaterIsBetter: true },
  precision: { get: (m) => m.precision, greaterIsBetter: true },
  recall: { get: (m) => m.recall, greaterIsBetter: true },
  macro_f1: { get: (m) => m.macroF1, greaterIsBetter: true },
  macro_precision: { get: (m) => m.macroPrecision, greaterIsBetter: true },
  macro_recall: { get: (m) => m.macroRecall, greaterIsBetter: true },
  mcc: { get: (m) => m.mcc, greaterIsBetter: true },
  accuracy_f1: { get: (m) => (m.accuracy + m.f1) / 2, greaterIsBetter: true },
  roc_auc: { get: (m) => m.rocAuc, greaterIsBetter: true },
  average_precision: { get: (m) => m.averagePrecision, greaterIsBetter: true },
  log_loss: { get: (m) => m.logLoss, greaterIsBetter: false },
  loss: { get: (m) => m.loss, greaterIsBetter: false },
};

/** Names {@linkcode metricByName} accepts. */
export const METRIC_NAMES: readonly string[] = Object.keys(SCALARS);

function normaliseName(name: string): string {
  // Accept `eval_accuracy` (Hugging Face style) and camelCase (`macroF1`) as well as `macro_f1`.
  return name.trim().replace(/^eval_/, "").replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

/** Throws a clear error when `name` is not a known scalar metric; returns the canonical name. */
export function checkMetricName(name: string): string {
  const canonical = normaliseName(name);
  if (!Object.hasOwn(SCALARS, canonical)) {
    throw new Error(`unknown metric "${name}"; valid names: ${METRIC_NAMES.join(", ")}`);
  }
  return canonical;
}

/** Whether a larger value of metric `name` is better (false for `loss` and `log_loss`). */
export function greaterIsBetter(name: string): boolean {
  return SCALARS[checkMetricName(name)].greaterIsBetter;
}

/**
 * A scalar metric by name (`accuracy`, `f1`, `mcc`, `roc_auc`, `loss`, ...; also `eval_accuracy`, `macroF1`).
 * Throws listing the valid names for an unknown name, and when the metric was not computed (e.g. `roc_auc`
 * without probabilities).
 */
export function metricByName(metrics: ClassificationMetrics, name: string): number {
  const canonical = checkMetricName(name);
  const value = SCALARS[canonical].get(metrics);
  if (value === undefined) {
    throw new Error(
      `metric "${name}" was not computed for this evaluation (it needs ${
        canonical === "loss" ? "the model's loss" : "probabilities of a binary task"
      })`,
    );
  }
  return value;
}

/** The scalar metrics as a flat record (for JSON logs and tables); metrics not computed are left out. */
export function scalarMetrics(metrics: ClassificationMetrics): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, s] of Object.entries(SCALARS)) {
    const v = s.get(metrics);
    if (v !== undefined) out[name] = v;
  }
  return out;
}
