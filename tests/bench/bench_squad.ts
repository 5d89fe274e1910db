/**
 * Benchmark: SQuAD v1.1 dev (10,570 questions) -> 384-token windows with the real bert-base-uncased vocabulary,
 * the way `run_squad.py` converts it (doc_stride 128, max_query_length 64). Prints seconds and windows/s.
 *
 * Run: `deno task bench:squad` (needs ../shared; `BENCH_SQUAD_SAVE=1` also times writing the feature files to
 * outputs/bench-squad/features).
 * @module
 */
import { readSquad } from "../../lib/tasks/squad/squad.ts";
import { convertSquadExamples, saveSquadFeatures, summarizeSquadFeatures } from "../../lib/tasks/squad/features.ts";
import { FullTokenizer } from "../../lib/text/tokenizer.ts";
import { HAVE_SHARED, SHARED } from "../shared.ts";

if (!HAVE_SHARED) {
  console.warn(`bench_squad: ${SHARED} is absent; nothing to benchmark`);
  Deno.exit(0);
}
const input = `${SHARED}/data/squad-v1.1/dev-v1.1.json`;
const vocab = `${SHARED}/data/models/bert-base-uncased-vocab/vocab.txt`;

let t = performance.now();
const dataset = await readSquad(input);
const readSeconds = (performance.now() - t) / 1000;
const tokenizer = await FullTokenizer.fromVocabFile(vocab, { lowerCase: true });
t = performance.now();
const features = await convertSquadExamples(dataset, tokenizer, {
  maxSeqLength: 384,
  docStride: 128,
  maxQueryLength: 64,
});
const convertSeconds = (performance.now() - t) / 1000;
for (const line of summarizeSquadFeatures(features)) console.log(line);
console.log(`read JSON: ${readSeconds.toFixed(2)} s`);
console.log(
  `convert: ${convertSeconds.toFixed(2)} s, ${(features.n / convertSeconds).toFixed(0)} windows/s, ` +
    `${(dataset.examples.length / convertSeconds).toFixed(0)} questions/s`,
);
console.log(`total (read + convert): ${(readSeconds + convertSeconds).toFixed(2)} s`);
if (Deno.env.get("BENCH_SQUAD_SAVE")) {
  t = performance.now();
  await saveSquadFeatures("outputs/bench-squad/features/dev.safetensors", features);
  console.log(`save: ${((performance.now() - t) / 1000).toFixed(2)} s`);
}
