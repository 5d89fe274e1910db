/**
 * `deno task main`: the project's main job on the embedded default (data/sample), end to end into
 * `outputs/default/`: prepare features -> fine-tune -> evaluate -> plots.
 *
 * The model (lib/model/pretrained.ts's `chooseStartingModel`): `--model DIR`, else Google's BERT-Tiny
 * (google/bert_uncased_L-2_H-128_A-2) from the hub cache or a download when network access is allowed, else offline
 * the BERT-Tiny-shaped model shipped in `data/pretrained/` (pre-trained here on IMDB train reviews; a notice says
 * so). Only when that folder is missing does it start from random weights, with a vocabulary learned from the
 * sample text and a loud notice that its accuracy shows only that the pipeline works.
 * @module
 */
import { defineCommand, type ParsedArgs } from "./args.ts";
import * as F from "./flags.ts";
import { printEvaluation } from "./report.ts";
import { UsageError } from "../io/errors.ts";
import { acquireRunLock, exists, join, probeWritable } from "../io/fsutil.ts";
import { type BackendName, initBackend } from "../backends/backend.ts";
import { boxedWarning, evaluateCheckpoint } from "../eval/evaluate.ts";
import { confusionMatrixFigure, lineFigure, lossCurveFigure, prFigure, rocFigure, savePlotHtml } from "../viz/plots.ts";
import { checkRunName, prepareFeatures } from "../data/prepare.ts";
import { randomInitNotice } from "../model/configs.ts";
import { chooseStartingModel, DEFAULT_MODEL_ID } from "../model/pretrained.ts";
import { consoleProgress, train } from "../training/train.ts";
import { listCheckpoints } from "../training/checkpoints.ts";
import { buildModel } from "../tasks/classification/run.ts";
import { classificationTask } from "../tasks/classification/task.ts";

export { DEFAULT_MODEL_ID };

/** Flags of `main`. */
export const spec = defineCommand({
  name: "main",
  description: "The embedded default end to end into outputs/default/: prepare the sample's features, fine-tune " +
    `BERT-Tiny (${DEFAULT_MODEL_ID} from --model, the hub cache or a download; offline the model shipped in ` +
    "data/pretrained/, and random weights only without it), evaluate on the dev split and write " +
    "eval_results.json, predictions.tsv and plots. Takes seconds on two CPU cores (75 updates of 16 sentences).",
  usage: "[--model DIR] [--offline] [--epochs N] [--batch-size N] [--lr X] [--seed N] [--run NAME] [--overwrite] " +
    "[--backend blas|wasm|...]",
  flags: {
    model: { help: `a pre-trained checkpoint folder (default: ${DEFAULT_MODEL_ID} from the hub cache)` },
    offline: { type: "boolean", help: "never try the network (also HF_HUB_OFFLINE=1)" },
    epochs: F.epochs("data", "4 from Google's BERT-Tiny, 3 from data/pretrained or random weights"),
    "batch-size": { ...F.batchSize("examples"), default: 16 },
    lr: F.lr("2e-4 from Google's BERT-Tiny, 1e-3 from data/pretrained or random weights"),
    seed: { ...F.seed(), default: 42 },
    run: { default: "default", help: "run name: everything goes to outputs/<run>/" },
    overwrite: F.overwrite("replace an earlier run in outputs/<run> (its features, checkpoints and evaluation files)"),
    backend: F.backend(),
    threads: F.threads(),
  },
});

/** Runs the main job. */
export async function run(args: ParsedArgs<typeof spec.flags>): Promise<void> {
  if (args.positional.length) throw new UsageError(`unexpected argument "${args.positional[0]}"`);
  const f = args.flags;
  const t0 = performance.now();
  const runName = f.run;
  checkRunName(runName);
  const outDir = join("outputs", runName);
  // One writer per run folder, and a re-run does not silently replace an earlier one.
  using _lock = await acquireRunLock(outDir);
  const earlier = [
    ...(await listCheckpoints(outDir)).map((c) => c.path),
    ...(await exists(join(outDir, "features")) ? [join(outDir, "features")] : []),
    ...(await exists(join(outDir, "train_results.json")) ? [join(outDir, "train_results.json")] : []),
  ];
  if (earlier.length && f.overwrite !== true) {
    throw new UsageError(
      `${outDir} already holds a run (${earlier.join(", ")}): pass --overwrite to replace it (its checkpoints and ` +
        `the evaluation files inside them are deleted), or --run NAME to keep it and write to outputs/NAME`,
    );
  }
  await probeWritable(outDir, `run ${runName}`);
  await initBackend({ backend: f.backend as BackendName | undefined, threads: f.threads });

  // 1. The model (decides the vocabulary the features are made with).
  const pretrained = await chooseStartingModel({
    model: f.model,
    offline: f.offline === true,
    download: true,
  });
  console.log(`model: ${pretrained.why}`);
  if (pretrained.kind === "shipped") console.warn(boxedWarning(pretrained.notice!));

  // 2. Prepare: features of data/sample with the model's vocabulary, or a WordPiece vocabulary learned from it.
  console.log("\n== 1/4 prepare ==");
  const prepared = await prepareFeatures({ task: "sample", run: runName, model: pretrained.dir });
  const { train: trainSplit, dev: devSplit } = prepared.splits;

  // 3. Fine-tune.
  console.log("\n== 2/4 train ==");
  const random = !pretrained.dir;
  const seed = f.seed;
  const { model, vocabPath } = await buildModel(
    random
      ? { kind: "random", config: "tiny", vocabPath: prepared.vocabPath }
      : { kind: "checkpoint", dir: pretrained.dir! },
    { features: trainSplit.features, featuresFile: trainSplit.path, seed },
  );
  if (random) {
    console.warn(boxedWarning(randomInitNotice("a BERT-Tiny-shaped model with a vocabulary learned from the sample", [
      `For a real fine-tune: \`deno task bert download ${DEFAULT_MODEL_ID}\`,`,
      "then `deno task main` again (it finds the download in the cache).",
    ])));
  }
  const display = consoleProgress();
  let result;
  try {
    result = await train({
      model,
      vocabPath,
      task: classificationTask({ train: trainSplit.features, dev: devSplit.features }),
      outputDir: outDir,
      // Google's BERT-Tiny fine-tunes at 2e-4; random weights and the shipped model (best of the grid of
      // data/pretrained/README.md) at 1e-3.
      learningRate: f.lr ?? (random || pretrained.kind === "shipped" ? 1e-3 : 2e-4),
      epochs: f.epochs ?? (random || pretrained.kind === "shipped" ? 3 : 4),
      batchSize: f["batch-size"],
      seed,
      overwrite: true, // checked above: a re-run needs --overwrite
      handleSignals: true, // Ctrl-C: finish the update, save a checkpoint, say how to resume
      resumeHint: `deno task bert train --features ${prepared.featuresDir} --output ${outDir} --resume (then ` +
        `\`deno task bert evaluate --checkpoint ${outDir} --features ${devSplit.path}\`)`,
      onProgress: display.onProgress,
    });
    await display.done();
  } finally {
    model.dispose();
  }

  // 4. Evaluate the best checkpoint on the dev split.
  console.log("\n== 3/4 evaluate ==");
  const checkpoint = result.bestCheckpoint ?? result.lastCheckpoint;
  const evaluation = await evaluateCheckpoint({
    checkpoint,
    features: devSplit.path,
    outputDir: outDir,
    quiet: true,
  });
  console.log(`checkpoint ${checkpoint}`);
  printEvaluation(evaluation);

  // 5. Plots (standalone HTML pages that work offline).
  console.log("\n== 4/4 plots ==");
  const log = result.logHistory;
  const evals = result.evalHistory;
  const trainingPlots = join(outDir, "training_curves.html");
  await savePlotHtml(trainingPlots, [
    lossCurveFigure({ steps: log.map((e) => e.step), losses: log.map((e) => e.loss), smoothing: 0.9 }),
    lineFigure({
      title: "Learning rate",
      xTitle: "step",
      yTitle: "learning rate",
      series: [{ name: "lr", x: log.map((e) => e.step), y: log.map((e) => e.learning_rate) }],
    }),
    lineFigure({
      title: "Validation",
      xTitle: "step",
      yTitle: "accuracy",
      y2Title: "loss",
      series: [
        { name: "dev accuracy", x: evals.map((e) => e.step), y: evals.map((e) => e.accuracy) },
        { name: "dev loss", x: evals.map((e) => e.step), y: evals.map((e) => e.loss), secondaryY: true, dash: "dot" },
      ],
    }),
  ], { title: `Training: ${outDir}` });
  const m = evaluation.metrics;
  const evalFigs = [confusionMatrixFigure({ matrix: m.confusionMatrix, labels: m.labelNames, normalize: true })];
  if (m.rocCurve) {
    evalFigs.push(rocFigure({ curves: [{ name: "dev", fpr: m.rocCurve.fpr, tpr: m.rocCurve.tpr, auc: m.rocAuc }] }));
  }
  if (m.prCurve) {
    const positives = m.perClass[1]?.support ?? 0;
    evalFigs.push(prFigure({
      curves: [{ name: "dev", precision: m.prCurve.precision, recall: m.prCurve.recall, ap: m.averagePrecision }],
      positiveRate: m.n ? positives / m.n : undefined,
    }));
  }
  const evaluationPlots = join(outDir, "evaluation.html");
  await savePlotHtml(evaluationPlots, evalFigs, { title: `Evaluation: ${checkpoint}` });

  const secs = (performance.now() - t0) / 1000;
  console.log(`\ndone in ${secs.toFixed(0)} s. Everything is in ${outDir}/:`);
  const rows: [string, string][] = [
    ["features", prepared.featuresDir + "/{train,dev}.safetensors"],
    ["vocabulary", vocabPath],
    ["checkpoint (best)", checkpoint],
    ["checkpoint (last)", result.lastCheckpoint],
    ["metrics", evaluation.resultsPath!],
    ["predictions", evaluation.predictionsPath!],
    ["training plots", trainingPlots],
    ["evaluation plots", evaluationPlots],
    ["training summary", join(outDir, "train_results.json")],
  ];
  for (const [what, path] of rows) console.log(`  ${what.padEnd(18)} ${path}`);
  console.log(`dev ${evaluation.headline.text}`);
  if (random) {
    console.warn(
      "\nReminder: this model started from RANDOM weights, so its accuracy only shows the pipeline works. For a " +
        `real fine-tune: deno task bert download ${DEFAULT_MODEL_ID}, then deno task main again.`,
    );
  }
}
