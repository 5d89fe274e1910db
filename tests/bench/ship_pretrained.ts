/**
 * Turns a finished `pretrain` run into the model shipped in `data/pretrained/` and writes its model card:
 *
 * 1. copies the newest checkpoint's Hugging Face folder (config, vocabulary, tokenizer config) and its weights
 *    without the next-sentence head when the run did not train one (`--objective mlm`);
 * 2. measures it: masked-LM top-1 accuracy on the run's held-out reviews (re-created exactly from the run's
 *    recorded data settings) and on reviews of the IMDB **test** split that pre-training never saw, each beside
 *    the most-frequent-token baseline on the same targets;
 * 3. writes `README.md`: corpus and licence, shape, steps, tokens seen, the loss curve, the held-out figures, the
 *    fine-tuning comparison (from `deno task bench:pretrained --json FILE`, when given) and how to reproduce.
 *
 * Usage: deno run -A tests/bench/ship_pretrained.ts --from outputs/pretrain-imdb [--to data/pretrained]
 *        [--finetune outputs/pretrained_vs_random.json] [--minutes M] [--before CARD --before-command CMD]
 *        [--continue-task TASK] [--grid-note TEXT] [--why TEXT]
 *
 * `--before CARD`: the run continued earlier weights (`pretrain --model ...`); CARD is their model card (a copy of the
 * previous `data/pretrained/README.md`), whose recipe, loss curves and token count become the earlier phases of the new
 * card; `--before-command` re-creates one-phase earlier weights (a card of phases lists its own commands), and
 * `--continue-task` is the `deno task` of this run (default `pretrain:shipped:continue`).
 * @module
 */
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { loadCheckpoint } from "../../lib/model/checkpoint.ts";
import { ensureDir, join, writeFileAtomic } from "../../lib/io/fsutil.ts";
import { type Corpus, readImdbCorpus, splitCorpus } from "../../lib/tasks/pretraining/corpus.ts";
import { createPretrainingData, type PretrainingSet } from "../../lib/tasks/pretraining/instances.ts";
import { disposePretrainingBatch, evaluatePretraining, pretrainingBatch } from "../../lib/tasks/pretraining/task.ts";
import { readSafetensors, serializeSafetensors, type TensorEntry } from "../../lib/io/safetensors.ts";
import { latestCheckpoint } from "../../lib/training/checkpoints.ts";
import { machineInfo } from "../../lib/bench/bench.ts";

const flag = (name: string, dflt = "") => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : dflt;
};
const runDir = flag("from", "outputs/pretrain-imdb");
const to = flag("to", "data/pretrained");
const finetuneJson = flag("finetune");
const minutes = flag("minutes");
const beforeCard = flag("before");
const beforeCommand = flag("before-command", "npx deno task pretrain:shipped");
/** The `deno task` that runs this (continued) phase. */
const continueTask = flag("continue-task", "pretrain:shipped:continue");
/** Why the grid has gaps, e.g. "on IMDB, random initialisation at 1e-4 was left out after ...". */
const gridNote = flag("grid-note");
/** The recipe's "Why this objective" text for this phase (default: a generic one for its objective). */
const why = flag("why");

await initBackend({ quiet: true });
const checkpoint = await latestCheckpoint(runDir);
if (!checkpoint) throw new Error(`${runDir}: no complete checkpoint to ship`);
const state = JSON.parse(await Deno.readTextFile(join(checkpoint, "trainer_state.json")));
const data = state.train_features as Record<string, unknown>;
const hp = state.hyper_parameters as Record<string, number>;
const withNsp = data.next_sentence !== false;
console.log(`shipping ${checkpoint} (step ${state.global_step} of ${state.total_steps}) to ${to}`);

// 1. The folder.
await ensureDir(to);
const weights = await readSafetensors(join(checkpoint, "model.safetensors"));
const kept: Record<string, TensorEntry> = {};
for (const [name, t] of Object.entries(weights.tensors)) {
  if (!withNsp && name.startsWith("cls.seq_relationship.")) continue; // untrained without NSP
  kept[name] = t;
}
const config = JSON.parse(await Deno.readTextFile(join(checkpoint, "config.json")));
config.architectures = [withNsp ? "BertForPreTraining" : "BertForMaskedLM"];
await writeFileAtomic(join(to, "model.safetensors"), serializeSafetensors(kept, { format: "pt" }));
await writeFileAtomic(join(to, "config.json"), JSON.stringify(config, null, 2) + "\n");
await Deno.copyFile(join(checkpoint, "vocab.txt"), join(to, "vocab.txt"));
await Deno.copyFile(join(checkpoint, "tokenizer_config.json"), join(to, "tokenizer_config.json"));

// 2. Held-out figures.
const { model, tokenizer } = await loadCheckpoint(to, { head: "pretraining", quiet: true });
const dataOptions = {
  maxSeqLength: data.max_seq_length as number,
  maxPredictionsPerSeq: data.max_predictions_per_seq as number,
  maskedLmProb: data.masked_lm_prob as number,
  shortSeqProb: data.short_seq_prob as number,
  dupeFactor: 1,
  seed: data.data_seed as number,
  nextSentence: withNsp,
  wholeWordMask: data.whole_word_mask === true,
};
const reviews = Number(/\((?:train), (\d+) reviews\)/.exec(String(data.source))?.[1] ?? 25000);
const corpus = await readImdbCorpus({ limit: reviews });
const evalFraction = Number(flag("eval-fraction", "0.02"));
const parts = splitCorpus(corpus, evalFraction);
const trainSet = createPretrainingData(parts.train, tokenizer, {
  ...dataOptions,
  dupeFactor: data.dupe_factor as number,
});
const meanTokens = trainSet.stats.tokens / trainSet.n;
const instancesSeen = state.global_step * hp.per_device_train_batch_size;

/** Accuracy of always answering the most frequent target of `set` (an upper bound for that baseline). */
function majorityBaseline(set: PretrainingSet): { token: string; accuracy: number } {
  const counts = new Map<number, number>();
  let n = 0;
  for (const id of set.mlmIds) {
    if (id < 0) continue;
    counts.set(id, (counts.get(id) ?? 0) + 1);
    n++;
  }
  const [id, c] = [...counts].sort((a, b) => b[1] - a[1])[0];
  return { token: tokenizer.vocab.tokens[id], accuracy: c / n };
}

/** Top-5 masked-LM accuracy (the original among the five best guesses). */
function top5(set: PretrainingSet): number {
  let hit = 0, n = 0;
  for (let start = 0; start < set.n; start += 64) {
    const rows = Array.from({ length: Math.min(64, set.n - start) }, (_, j) => start + j);
    const batch = pretrainingBatch(set, rows);
    const [idx, labels] = tf.tidy(() => {
      const out = model.forward(batch, { training: false, mlmPositions: batch.mlmPositions });
      const v = out.mlmLogits!.shape[2];
      return [tf.topk(tf.reshape(out.mlmLogits!, [-1, v]), 5).indices, tf.reshape(batch.mlmIds, [-1])];
    });
    const iv = idx.dataSync(), lv = labels.dataSync();
    tf.dispose([idx, labels]);
    disposePretrainingBatch(batch);
    for (let r = 0; r < lv.length; r++) {
      if (lv[r] < 0) continue;
      n++;
      for (let k = 0; k < 5; k++) if (iv[r * 5 + k] === lv[r]) hit++;
    }
  }
  return hit / n;
}

function measure(name: string, c: Corpus) {
  const set = createPretrainingData(c, tokenizer, dataOptions);
  const m = evaluatePretraining(model, set);
  const base = majorityBaseline(set);
  const row = {
    name,
    instances: set.n,
    targets: set.stats.predictions,
    mlmAccuracy: m.mlmAccuracy,
    top5: top5(set),
    perplexity: Math.exp(m.mlmLoss),
    baseline: base,
    nspAccuracy: m.nspAccuracy,
  };
  console.log(JSON.stringify(row));
  return row;
}
const heldOut = measure(`${parts.dev.documents.length} held-out IMDB train reviews`, parts.dev);
const test = measure("1,000 IMDB test reviews (never seen)", await readImdbCorpus({ limit: 1000, split: "test" }));
model.dispose();

// 3. The model card.
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const log = state.log_history as { step: number; loss: number }[];
const nspWeight = Number(data.nsp_weight ?? 1);
/** What the logged training loss is: `train()` logs the task's loss, masked-LM plus the weighted next-sentence loss. */
const lossName = withNsp
  ? `training loss: masked-LM + ${nspWeight === 1 ? "" : `${nspWeight} × `}next-sentence`
  : "training masked-LM loss";
const every = Math.max(1, Math.round(state.global_step / 10));
const curve: string[] = [];
for (let s = every; s <= state.global_step; s += every) {
  const window = log.filter((e) => e.step > s - every && e.step <= s);
  const mean = window.reduce((a, e) => a + e.loss, 0) / window.length;
  curve.push(`| ${s} | ${mean.toFixed(3)} |`);
}
const evals = state.eval_history as Record<string, number>[];
let finetune = "Not measured yet: run `deno task bench:pretrained` (see below).";
let gridLrs = "3e-4,1e-3,3e-3"; // the learning rates the comparison ran (from --finetune)
if (finetuneJson) {
  // One or more result files of tests/bench/pretrained_vs_random.ts (comma-separated), merged.
  type Row = { task: string; init: string; lr: number; seed: number; accuracy: number };
  const files = await Promise.all(finetuneJson.split(",").map(async (f) => JSON.parse(await Deno.readTextFile(f))));
  const all: Row[] = files.flatMap((f) => f.results);
  gridLrs = [...new Set(all.map((r) => r.lr))].sort((a, b) => a - b).join(",");
  const { trainN, testN, epochs } = files[0];
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = (xs: number[]) => Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / Math.max(1, xs.length - 1));
  const cell = (xs: number[]) => `${(100 * mean(xs)).toFixed(1)} ± ${(100 * sd(xs)).toFixed(1)}`;
  const rows: string[] = [], grid: string[] = [];
  for (const task of [...new Set(all.map((r) => r.task))]) {
    const name = task === "sst2" ? "SST-2 dev (872 sentences)" : `IMDB test sample (${testN} reviews)`;
    const best: Record<string, { lr: number; accs: number[] }> = {};
    for (const init of ["pretrained", "random"]) {
      const lrs = [...new Set(all.filter((r) => r.task === task && r.init === init).map((r) => r.lr))].sort();
      const cells = lrs.map((lr) => {
        const accs = all.filter((r) => r.task === task && r.init === init && r.lr === lr).map((r) => r.accuracy);
        if (!best[init] || mean(accs) > mean(best[init].accs)) best[init] = { lr, accs };
        return `lr ${lr}: ${cell(accs)}`;
      });
      grid.push(`| ${name} | ${init === "pretrained" ? "this model" : "random"} | ${cells.join("; ")} |`);
    }
    const p = best.pretrained, r = best.random;
    rows.push(
      `| ${name} | ${cell(p.accs)} (lr ${p.lr}) | ${cell(r.accs)} (lr ${r.lr}) | ${
        (100 * (mean(p.accs) - mean(r.accs))).toFixed(1)
      } |`,
    );
  }
  finetune = [
    `Fine-tuned on ${trainN} training examples per task (SST-2: a seeded sample of the GLUE train split, 64 tokens; ` +
    `IMDB: reviews of the train split, first 128 tokens), AdamW, batch 32, ${epochs} epochs, 10% warm-up, seeds ` +
    `${[...new Set(all.map((r) => r.seed))].join(", ")}; accuracy in %, mean ± std over the seeds, each start at ` +
    `its best learning rate. Random = the same shape and vocabulary with fresh weights.`,
    "",
    "| evaluation | this model | random initialisation | difference (points) |",
    "|---|---|---|---|",
    ...rows,
    "",
    `Every cell of the grid (a learning rate missing from a row was not run for that start${
      gridNote ? `: ${gridNote}` : ""
    }):`,
    "",
    "| evaluation | start | accuracy by learning rate |",
    "|---|---|---|",
    ...grid,
  ].join("\n");
}
const { cpu, cores } = machineInfo();
const tokensSeen = instancesSeen * meanTokens; // this run's
/**
 * The earlier phases of a continued run, from the starting weights' card: a one-phase card's recipe, loss curve and
 * evaluations become "### Phase 1" (headings one level down); a card of several phases gives its phase sections as
 * they are. `phase` is this run's number, `earlierReproduce` the earlier phases' commands.
 */
let earlier = "", earlierTokens = 0, phase = 1, earlierReproduce: string[] = [];
if (beforeCard) {
  const text = await Deno.readTextFile(beforeCard);
  const from = text.indexOf("## Recipe\n"), to = text.indexOf("## Held-out figures");
  if (from < 0 || to < from) throw new Error(`${beforeCard}: no "## Recipe" ... "## Held-out figures" sections`);
  const tokens = /about ([\d.]+)M tokens seen/.exec(text); // a card of phases states their total first
  if (!tokens) throw new Error(`${beforeCard}: no "about <N>M tokens seen" in its recipe`);
  earlierTokens = Number(tokens[1]) * 1e6;
  const recipe = text.slice(from, to).replace("## Recipe\n", "").trim();
  const phases = [...recipe.matchAll(/^### Phase (\d+)/gm)].map((m) => Number(m[1]));
  if (phases.length) {
    phase = Math.max(...phases) + 1;
    earlier = recipe.slice(recipe.indexOf("### Phase ")).replace(
      "(the starting weights, from their model card)",
      "(from its model card)",
    );
    const block = /## Reproduce\n\n```sh\n([\s\S]*?)```/.exec(text)?.[1] ?? "";
    earlierReproduce = block.split("\n").filter((l) => / # phase \d/.test(l)).map((l) =>
      l.replace(/ \(resumable: add --resume\)$/, "")
    );
  } else {
    phase = 2;
    earlier = `### Phase 1 (from its model card)\n\n${
      recipe.replace(/^## /gm, "#### ")
        // Its "why" bullet is phase 2's (same objective) and predates what phase 2 measured.
        .replace(/^- Why this objective:[\s\S]*?(?=^- )/m, "- Why this objective: as in phase 2.\n")
    }`;
    earlierReproduce = [`${beforeCommand}   # phase 1 (see its recipe above)`];
  }
}
const totalTokens = tokensSeen + earlierTokens;
const PHASES = ["One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine", "Ten"];
const isDefault = to.replace(/\/+$/, "") === "data/pretrained";
const whyText = why ||
  (withNsp
    ? `the masked-LM objective never trains the \`[CLS]\` vector or the pooler that a classifier reads;
  next-sentence pairs do (half of the pairs take their second segment from another review).`
    : `next-sentence prediction spends half of each instance on a random other review and its
  loss teaches little (RoBERTa dropped it); whole-word masking stops the model from filling \`##\` pieces from
  their neighbours. The masked-LM loss is computed only at the chosen positions, with a fused cross-entropy.
  ELECTRA's replaced-token detection lost to masked-LM at a matched small budget (\`deno task bench:electra\`: 1,500
  updates of 32 from random weights each, 1 thread): its discriminator stayed at the "never replaced" baseline (held-out
  RTD accuracy 86.1% against 86.1%) and fine-tuned to 60.0 ± 12.9% on SST-2 dev against masked-LM's 68.9 ± 0.2%; so
  masked-LM it is. No other ablation was run.`);
const card = `# bert-tiny-imdb-${withNsp ? "mlm-nsp" : "mlm"}${
  isDefault ? ": the offline default of this project" : ` (${to}): a candidate successor of data/pretrained`
}

A BERT-Tiny-shaped encoder (2 layers, hidden ${config.hidden_size}, ${config.num_attention_heads} heads, intermediate ${config.intermediate_size}, ${
  (Object.values(kept).reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0) / 1e6).toFixed(2)
}M
parameters, vocabulary of ${config.vocab_size} uncased WordPiece tokens learned from the corpus), pre-trained from
random weights by this project's own \`pretrain\` command on two CPU cores. ${
  isDefault
    ? "The main job and the notebooks fine-tune\nit when Google's `google/bert_uncased_L-2_H-128_A-2` is not in the hub cache and cannot be downloaded."
    : "It is not the default yet: the main job and the\nnotebooks still start from `data/pretrained/`, whose recorded lesson outcomes would change."
} It is a
Hugging Face folder (\`${config.architectures[0]}\`; float32 safetensors): \`--model ${to}\` works
everywhere a checkpoint folder does.

## Corpus and licence

The ${reviews.toLocaleString("en")} reviews of the IMDB **train** split (Maas et al., ACL 2011, "Learning Word
Vectors for Sentiment Analysis"; \`../shared/data/imdb/\`, no explicit licence: cite the paper), one review = one
document; the last ${pct(evalFraction)} of them (${parts.dev.documents.length} reviews) held out for the figures
below. The IMDB **test** split was never read during pre-training: it is the evaluation set of the fine-tuning
comparison. No labels were used.

## Recipe

${
  beforeCard
    ? `${
      PHASES[phase - 1] ?? phase
    } phases. Each continued the previous phase's weights (all of them: encoder and masked-LM
head) with new masks and a new learning-rate schedule; together about ${(totalTokens / 1e6).toFixed(0)}M tokens seen.

### Phase ${phase}

`
    : ""
}- Objective: ${
  withNsp ? "masked-LM + next-sentence prediction" : "masked-LM only (RoBERTa-style, no next-sentence pairs)"
}${nspWeight === 1 ? "" : ` (the next-sentence loss weighted ${nspWeight}× in the training loss)`}${
  data.whole_word_mask ? ", whole-word masking" : ""
}; ${pct(data.masked_lm_prob as number)} of the tokens chosen (80% \`[MASK]\`, 10% random, 10% unchanged),
  at most ${data.max_predictions_per_seq} per instance; instances of up to ${data.max_seq_length} tokens (consecutive
  sentences of one review), ${data.dupe_factor} masks per sentence (dupe factor).
- Why this objective: ${whyText}
- AdamW, peak learning rate ${hp.learning_rate}, batch ${hp.per_device_train_batch_size}, ${
  pct(hp.warmup_ratio)
} linear warm-up then linear decay, weight decay ${hp.weight_decay}, clipping ${hp.max_grad_norm}, seed ${hp.seed}.
- ${state.global_step.toLocaleString("en")} updates = ${instancesSeen.toLocaleString("en")} instances, about ${
  (instancesSeen * meanTokens / 1e6).toFixed(0)
}M tokens seen (${meanTokens.toFixed(0)} per instance)${
  minutes ? `, in ${minutes} minutes` : ""
} on ${cpu} (${cores} cores,
  shared with other work).

${beforeCard ? "####" : "##"} Loss curve (${lossName}, mean per window)

| step | loss |
|---|---|
${curve.join("\n")}

Held-out evaluations during the run: ${
  evals.map((e) =>
    `step ${e.step}: MLM accuracy ${pct(e.mlm_accuracy)}${
      e.nsp_accuracy === undefined ? "" : `, NSP accuracy ${pct(e.nsp_accuracy)}`
    }, perplexity ${e.perplexity.toFixed(0)}`
  ).join("; ")
}.

${beforeCard ? `${earlier}\n\n` : ""}## Held-out figures (measured on the shipped weights)

| evaluation text | instances | MLM top-1 | MLM top-5 | perplexity | baseline: always "${heldOut.baseline.token}" |${
  withNsp ? " NSP accuracy (chance 50%) |" : ""
}
|---|---|---|---|---|---|${withNsp ? "---|" : ""}
${
  [heldOut, test].map((r) =>
    `| ${r.name} | ${r.instances} | ${pct(r.mlmAccuracy)} | ${pct(r.top5)} | ${r.perplexity.toFixed(1)} | ${
      pct(r.baseline.accuracy)
    } ("${r.baseline.token}") |${withNsp && r.nspAccuracy !== undefined ? ` ${pct(r.nspAccuracy)} |` : ""}`
  ).join("\n")
}

The baseline answers every masked position with the most frequent original token of those same positions.${
  withNsp
    ? " Next-sentence pairs are half true next segments, half a segment of another review, so chance is 50%."
    : " There is no next-sentence head: it was not trained (notebook 04 teaches NSP hands-on)."
}

## What it buys: fine-tuning against random initialisation

${finetune}

## Reproduce

\`\`\`sh
${
  beforeCard
    ? `${earlierReproduce.join("\n")}
npx deno task ${continueTask}   # phase ${phase} into ${runDir}/ (resumable: add --resume)`
    : `npx deno task pretrain:shipped   # the pre-training run above into ${runDir}/ (resumable: add --resume)`
}
cp -r ${runDir}/checkpoint-${state.global_step} outputs/candidate   # the weights the comparison fine-tunes
npx deno task bench:pretrained -- --model outputs/candidate --lrs ${gridLrs} --json outputs/pretrained_vs_random.json   # the fine-tuning comparison
node_modules/.bin/deno run -A tests/bench/ship_pretrained.ts --from ${runDir}${
  isDefault ? "" : ` --to ${to}`
} --finetune outputs/pretrained_vs_random.json${
  beforeCard ? ` --before <a copy of the phase-${phase - 1} card> --continue-task ${continueTask}` : ""
}
\`\`\`

Re-runs agree figure for figure on the same code and kernels. oneDNN (used where \`libdnnl2\` is installed;
\`BERT_NO_DNNL=1\` turns it off) and OpenBLAS's kernel choice (\`OPENBLAS_CORETYPE\`) change results in the last bits,
which over thousands of updates moves the figures slightly; so does a change of those kernels in this project's code.

## Reading the figures, and what would do better

The model learned which words fit a context: masked-word accuracy is several times the baseline, on reviews it never
saw as well. With little labelled data that turns into the lead over random initialisation in the table above (a few
points), far from what Google's BERT-Tiny gives. Masked-LM puts words that fit the same contexts close together ("good"
and "bad" both fit "the film was [MASK]"), so sentiment still has to be learned from the labelled examples; ${
  withNsp
    ? `and the
next-sentence prediction that trained the \`[CLS]\` vector and the pooler reached only ${
      pct(heldOut.nspAccuracy ?? 0)
    } on held-out
reviews (BERT's own reaches about 97%). Random weights`
    : `and without
next-sentence prediction nothing trained the \`[CLS]\` vector and the pooler that the classifier reads. Random weights`
}
at a high learning rate learn a bag-of-words classifier
fast. What would change that: much more pre-training (Google's BERT-Tiny saw billions of tokens of books and
Wikipedia, this model ~${(totalTokens / 1e6).toFixed(0)}M); an objective that trains every position,
ELECTRA's replaced-token detection (ELECTRA-Small beat BERT-Small by 4.8 GLUE points for the same compute)${
  withNsp ? ", or longer next-sentence training for `[CLS]`" : ", or\nnext-sentence prediction for `[CLS]`"
}; and more text (the other train splits of \`../shared/data\`). More labelled
examples in the comparison are not the lever: the lead is largest when they are few (\`--train-n\` of \`deno task
bench:pretrained\` measures it).
`;
await writeFileAtomic(join(to, "README.md"), card);
console.log(`wrote ${to}/README.md`);
