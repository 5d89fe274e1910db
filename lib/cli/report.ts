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
  }
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
  if (r.resultsPath) console.log(`wrote ${r.resultsPath} and ${r.predictionsPath}`);
}
