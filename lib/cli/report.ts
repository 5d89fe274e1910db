/**
 * How the commands print outcomes: a training run (`train`, `squad train`), several seeds, an evaluation (`evaluate`,
 * `main`).
 * @module
 */
import { basename, join } from "../io/fsutil.ts";
import { tableText } from "../viz/display.ts";
import type { EvaluationResult } from "../eval/evaluate.ts";
import type { SeedsResult, TrainResult } from "../training/train.ts";

/** Prints the outcome of a run. */
export function printResult(r: TrainResult<unknown>): void {
  console.log(`checkpoints: ${r.outputDir}/ (last ${basename(r.lastCheckpoint)})`);
  if (r.bestCheckpoint && r.bestMetric) {
    console.log(
      `best: ${r.bestCheckpoint} (${r.bestMetric.name} ${r.bestMetric.value.toFixed(4)} at step ` +
        `${r.bestMetric.step})`,
    );
  }
  if (r.finalEval) {
    const loss = r.finalEval.scalars.loss;
    console.log(`final dev ${r.finalEval.headline.text}${loss === undefined ? "" : `, loss ${loss.toFixed(4)}`}`);
    const hint = oneClassHint(r.finalEval.metrics);
    if (hint) console.log(hint);
  }
}

/**
 * A note for a classifier whose every prediction is one class, or undefined: its accuracy is then that class's share
 * and says nothing of what it learned. The usual cause is a learning rate too small for the model (BERT's 2e-5 barely
 * moves a small model such as `data/pretrained`; the main job fine-tunes it at 1e-3), or too few updates.
 * @param metrics an evaluation's metrics (classification: with a confusion matrix, rows gold, columns predicted)
 */
export function oneClassHint(metrics: unknown): string | undefined {
  const m = metrics as { confusionMatrix?: number[][]; labelNames?: string[] } | undefined;
  const cm = m?.confusionMatrix;
  if (!Array.isArray(cm) || cm.length < 2) return undefined;
  const predicted = cm[0].map((_, j) => cm.reduce((sum, row) => sum + row[j], 0)); // per predicted class
  const used = predicted.flatMap((count, j) => count > 0 ? [j] : []);
  // Only when the gold labels have more than one class: a one-class dev set predicted right needs no note.
  if (used.length !== 1 || cm.filter((row) => row.some((c) => c > 0)).length < 2) return undefined;
  const j = used[0], total = predicted[j];
  const gold = cm[j].reduce((a, b) => a + b, 0);
  const share = (100 * gold / total).toFixed(1);
  return `note: all ${total} predictions are "${m!.labelNames?.[j] ?? j}", the gold label of ${share}% of the ` +
    "examples, so accuracy is that share: the classifier has not learned to tell the classes apart. Small models " +
    "(BERT-Tiny, data/pretrained) need a larger learning rate than BERT's 2e-5: try --lr 1e-3 (the main job's) or " +
    "3e-4, or more epochs.";
}

/** Prints each seed's final headline metric and their mean ± std (sample standard deviation). */
export function printSeeds(r: SeedsResult<unknown>, outputDir: string): void {
  for (const run of r.runs) {
    const best = run.result.bestMetric;
    console.log(
      `seed ${run.seed}: ${r.metric} ${run.value.toFixed(4)} (final, step ${run.result.globalStep})` +
        `${best ? `; best ${best.name} ${best.value.toFixed(4)} at step ${best.step}` : ""} -> ${run.outputDir}`,
    );
  }
  console.log(
    `${r.metric} over ${r.runs.length} seeds: ${r.mean.toFixed(4)} ± ${r.std.toFixed(4)} (mean ± sample std; ` +
      `${join(outputDir, "seeds.json")})`,
  );
}

/** Prints one run ({@linkcode printResult}) or several seeds ({@linkcode printSeeds}). */
export function printTraining(r: TrainResult<unknown> | SeedsResult<unknown>, outputDir: string): void {
  if ("runs" in r) printSeeds(r, outputDir);
  else printResult(r);
}

/** Prints the metrics of an evaluation in a few readable lines. */
export function printEvaluation(r: EvaluationResult): void {
  const m = r.metrics;
  const fmt = (v: number | undefined) => (v === undefined ? "-" : v.toFixed(4));
  console.log(`headline: ${r.headline.text}   (n=${m.n}, loss ${fmt(m.loss)})`);
  console.log(
    `accuracy ${fmt(m.accuracy)}  precision ${fmt(m.precision)}  recall ${fmt(m.recall)}  F1 ${fmt(m.f1)}  ` +
      `macro-F1 ${fmt(m.macroF1)}  MCC ${fmt(m.mcc)}  ROC-AUC ${fmt(m.rocAuc)}  log loss ${fmt(m.logLoss)}`,
  );
  console.log("confusion matrix (rows: gold, columns: predicted):");
  console.log(
    tableText(m.confusionMatrix.map((row, i) => [m.labelNames[i], ...row]), {
      columns: ["gold \\ predicted", ...m.labelNames],
    }),
  );
  console.log(tableText(m.perClass.map((c) => ({ ...c }))));
  const hint = oneClassHint(m);
  if (hint) console.log(hint);
  if (r.resultsPath) console.log(`wrote ${r.resultsPath} and ${r.predictionsPath}`);
}
