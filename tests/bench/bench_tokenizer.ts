/**
 * Tokenizer throughput (a script, not a test): `deno task bench:tokenizer [--yelp-copies N] [--workers N]`.
 *
 * 1. SST-2 train (67,349 sentences), single-threaded: tokenize, convert to ids with [CLS]/[SEP], truncate/pad to
 *    128. Target: under 1 s.
 * 2. Yelp-sized corpus: 560,000 reviews made by repeating the 200 real reviews of
 *    `../shared/data/yelp-polarity/head200_train.csv`, through {@linkcode tokenizeParallel}. Target: under 60 s.
 *    Repeats make the word cache hit more often than fresh reviews would; a single-threaded pass with the cache
 *    off over the 200 real reviews is printed as the cache-free per-review cost.
 * @module
 */
import Papa from "papaparse";
import { convertExample } from "../../lib/data/features.ts";
import { tokenizeParallel } from "../../lib/text/parallel.ts";
import { encodeBatch, FullTokenizer } from "../../lib/text/tokenizer.ts";
import { HAVE_SHARED, SHARED } from "../shared.ts";

function flag(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Number(Deno.args[i + 1]) : fallback;
}

function fmt(x: number): string {
  return Math.round(x).toLocaleString("en-US");
}

if (!HAVE_SHARED) {
  console.warn(`${SHARED} is absent: the tokenizer benchmark needs its SST-2 and Yelp data; nothing to do`);
  Deno.exit(0);
}

const vocabPath = `${SHARED}/data/models/bert-base-uncased-vocab/vocab.txt`;
const L = 128;

// ---- SST-2, single thread ----
const sst = (await Deno.readTextFile(`${SHARED}/data/glue/SST-2/train.tsv`)).split("\n").slice(1)
  .filter((l) => l.length > 0).map((l) => l.split("\t")[0]);
const t0 = performance.now();
const tok = await FullTokenizer.fromVocabFile(vocabPath, { lowerCase: true });
const t1 = performance.now();
const batch = encodeBatch(tok, sst, { maxSeqLength: L });
const t2 = performance.now();
let pieces = 0;
for (const n of batch.lengths) pieces += n;
const sec = (t2 - t1) / 1000;
console.log(`SST-2 train, 1 thread, uncased, max_seq_length ${L}:`);
console.log(`  vocab load ${((t1 - t0) / 1000).toFixed(3)} s`);
console.log(
  `  ${fmt(sst.length)} sentences, ${fmt(pieces)} wordpieces in ${sec.toFixed(3)} s: ` +
    `${fmt(sst.length / sec)} sentences/s, ${fmt(pieces / sec)} tokens/s (${batch.truncated} truncated)`,
);

// The same through lib/data/features.ts convertExample (what `prepare` does per example; it also builds token strings,
// token types and the attention mask), with a fresh tokenizer so that its word cache starts empty too.
const tok2 = new FullTokenizer(tok.vocab, { lowerCase: true });
const f0 = performance.now();
for (let i = 0; i < sst.length; i++) convertExample({ id: String(i), textA: sst[i], line: i + 2 }, tok2, L);
const fsec = (performance.now() - f0) / 1000;
console.log(`  via lib/data/features.ts convertExample: ${fsec.toFixed(3)} s (${fmt(sst.length / fsec)} sentences/s)`);

// ---- Yelp-sized, workers ----
const csv = await Deno.readTextFile(`${SHARED}/data/yelp-polarity/head200_train.csv`);
const rows = Papa.parse<string[]>(csv, { skipEmptyLines: true }).data.slice(1); // first line is a pandas header
const reviews = rows.map((r) => r[1]);
const copies = flag("yelp-copies", 2800);
const workers = flag("workers", navigator.hardwareConcurrency);

const cold = new FullTokenizer(tok.vocab, { lowerCase: true, cacheSize: 0 });
const c0 = performance.now();
const coldBatch = encodeBatch(cold, reviews, { maxSeqLength: L });
const coldSec = (performance.now() - c0) / 1000;
let coldPieces = 0;
for (const n of coldBatch.lengths) coldPieces += n;
console.log(
  `Yelp head200, 1 thread, no word cache: ${fmt(reviews.length / coldSec)} reviews/s, ` +
    `${fmt(coldPieces / coldSec)} tokens/s`,
);

const texts: string[] = [];
for (let c = 0; c < copies; c++) for (const r of reviews) texts.push(r);
const tenth = texts.slice(0, Math.floor(texts.length / 10));
const s0 = performance.now();
encodeBatch(new FullTokenizer(tok.vocab, { lowerCase: true }), tenth, { maxSeqLength: L });
const ssec = (performance.now() - s0) / 1000;
console.log(`Yelp-sized, first ${fmt(tenth.length)} reviews on 1 thread: ${fmt(tenth.length / ssec)} reviews/s`);
const y0 = performance.now();
const yelp = await tokenizeParallel(texts, { vocabPath, lowerCase: true, workers, maxSeqLength: L });
const ysec = (performance.now() - y0) / 1000;
let ypieces = 0;
for (const n of yelp.lengths) ypieces += n;
console.log(`Yelp-sized (${copies} x ${reviews.length} real reviews), ${workers} workers, max_seq_length ${L}:`);
console.log(
  `  ${fmt(texts.length)} reviews, ${fmt(ypieces)} wordpieces in ${ysec.toFixed(2)} s: ` +
    `${fmt(texts.length / ysec)} reviews/s, ${fmt(ypieces / ysec)} tokens/s (${fmt(yelp.truncated)} truncated)`,
);
// Sanity: the parallel result equals the single-threaded one for the first copy.
const first = encodeBatch(tok, reviews, { maxSeqLength: L });
for (let i = 0; i < first.ids.length; i++) {
  if (first.ids[i] !== yelp.ids[i]) throw new Error(`parallel and single-threaded ids differ at ${i}`);
}
