/**
 * WordPiece vocabulary learning: layout, coverage of the training words, determinism, and agreement with a
 * naive from-scratch implementation of the same merge rule; plus the `build-vocab` command.
 */
import { buildVocab, buildVocabWithStats } from "../../lib/text/vocab_builder.ts";
import { basicTokenize, SPECIAL_TOKENS } from "../../lib/text/basic_tokenizer.ts";
import { FullTokenizer } from "../../lib/text/tokenizer.ts";
import { Vocab } from "../../lib/text/vocab.ts";
import { readCorpus, run as runBuildVocab, spec as buildVocabSpec } from "../../lib/cli/build_vocab.ts";
import { parseArgs } from "../../lib/cli/args.ts";
import { UsageError } from "../../lib/io/errors.ts";
import { assert, assertEquals, assertRejects, assertThrows, HAVE_SHARED, SHARED } from "../shared.ts";

const CORPUS = [
  "The cat sat on the mat.",
  "The dog sat on the log!",
  "A cat and a dog sat together; the cat purred.",
  "Cats and dogs: the eternal rivalry of the house.",
  "The mat was flat, the log was not.",
  "Running, jumping and sitting: the cat does it all.",
];

/** Words seen in `texts`, as the builder sees them. */
function wordsOf(texts: string[], lowerCase = true): string[] {
  return [...new Set(texts.flatMap((t) => basicTokenize(t, lowerCase)))];
}

/** A deterministic pseudo-random corpus with shared stems and suffixes. */
function syntheticCorpus(n: number): string[] {
  const stems = ["play", "walk", "talk", "jump", "read", "cook", "paint", "sing", "dream", "build"];
  const suffixes = ["", "s", "ed", "ing", "er", "ers", "able"];
  const small = ["the", "a", "and", "of", "to", "we", "they"];
  let seed = 12345;
  const rand = (k: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % k;
  };
  const texts: string[] = [];
  for (let i = 0; i < n; i++) {
    const words: string[] = [];
    const len = 4 + rand(8);
    for (let j = 0; j < len; j++) {
      words.push(
        rand(3) === 0 ? small[rand(small.length)] : stems[rand(stems.length)] + suffixes[rand(suffixes.length)],
      );
    }
    texts.push(words.join(" ") + (rand(2) ? "." : "!"));
  }
  return texts;
}

/**
 * Reference: the same merge rule recomputed from scratch at every step (slow, obviously right). Same alphabet
 * order, same symbol numbering, same tie-breaking (score, then pair count, then a * 2^21 + b).
 */
function naiveBuild(texts: string[], vocabSize: number, scoring: "frequency" | "likelihood"): string[] {
  const counts = new Map<string, number>();
  for (const t of texts) for (const w of basicTokenize(t, true)) counts.set(w, (counts.get(w) ?? 0) + 1);
  const words = [...counts.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const charCount = new Map<string, number>();
  for (const w of words) for (const ch of w) charCount.set(ch, (charCount.get(ch) ?? 0) + counts.get(w)!);
  const chars = [...charCount.keys()].sort((a, b) =>
    charCount.get(b)! - charCount.get(a)! || a.codePointAt(0)! - b.codePointAt(0)!
  );
  const symbols = [...chars, ...chars.map((c) => "##" + c)];
  const id = (t: string) => {
    const i = symbols.indexOf(t);
    if (i >= 0) return i;
    symbols.push(t);
    return symbols.length - 1;
  };
  let seqs = words.map((w) => [...w].map((ch, i) => id(i === 0 ? ch : "##" + ch)));
  const freq = words.map((w) => counts.get(w)!);
  const tokens = [...SPECIAL_TOKENS, ...symbols];
  while (tokens.length < vocabSize) {
    const symCount = new Map<number, number>();
    const pairCount = new Map<number, number>();
    seqs.forEach((s, wi) => {
      s.forEach((x, i) => {
        symCount.set(x, (symCount.get(x) ?? 0) + freq[wi]);
        if (i > 0) pairCount.set(s[i - 1] * 2 ** 21 + x, (pairCount.get(s[i - 1] * 2 ** 21 + x) ?? 0) + freq[wi]);
      });
    });
    let best: { key: number; score: number; count: number } | null = null;
    for (const [key, count] of pairCount) {
      if (count < 2) continue;
      const a = Math.floor(key / 2 ** 21), b = key % 2 ** 21;
      const score = scoring === "frequency" ? count : count / (symCount.get(a)! * symCount.get(b)!);
      if (
        !best || score > best.score || (score === best.score && count > best.count) ||
        (score === best.score && count === best.count && key < best.key)
      ) best = { key, score, count };
    }
    if (!best) break;
    const a = Math.floor(best.key / 2 ** 21), b = best.key % 2 ** 21;
    const merged = symbols[a] + symbols[b].slice(2);
    const c = id(merged);
    seqs = seqs.map((s) => {
      const out: number[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out.push(c);
          i++;
        } else out.push(s[i]);
      }
      return out;
    });
    if (!tokens.includes(merged)) tokens.push(merged);
  }
  return tokens;
}

Deno.test("buildVocab: special tokens first, then characters, unique tokens, size respected", () => {
  const words = wordsOf(CORPUS);
  const chars = new Set(words.flatMap((w) => [...w]));
  const size = 5 + 2 * chars.size + 15;
  const tokens = buildVocab(CORPUS, { vocabSize: size });
  assertEquals(tokens.length, size);
  assertEquals(tokens.slice(0, 5), ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]);
  assertEquals(new Set(tokens).size, tokens.length);
  const alphabet = tokens.slice(5, 5 + 2 * chars.size);
  assertEquals(new Set(alphabet), new Set([...chars, ...[...chars].map((c) => "##" + c)]));
  assertEquals(tokens[5], "t"); // the most frequent character
  const custom = buildVocab(CORPUS, { vocabSize: 60, specialTokens: ["<pad>", "<unk>"] });
  assertEquals(custom.slice(0, 2), ["<pad>", "<unk>"]);
  assertEquals(custom.length, 60);
});

Deno.test("buildVocab: every training word tokenizes without [UNK]; frequent words become single tokens", () => {
  for (const scoring of ["frequency", "likelihood"] as const) {
    const tokens = buildVocab(CORPUS, { vocabSize: 120, scoring });
    const tok = new FullTokenizer(Vocab.fromTokens(tokens));
    for (const text of CORPUS) assert(!tok.tokenize(text).includes("[UNK]"), `${scoring}: [UNK] in "${text}"`);
    for (const w of wordsOf(CORPUS)) assert(!tok.tokenize(w).includes("[UNK]"), `${scoring}: ${w}`);
  }
  const tok = new FullTokenizer(Vocab.fromTokens(buildVocab(CORPUS, { vocabSize: 90 })));
  assertEquals(tok.tokenize("The cat sat on the mat"), ["the", "cat", "sat", "on", "the", "mat"]);
  // With generous room every word seen at least twice ends up whole (pairs need 2 occurrences by default).
  const all = new FullTokenizer(Vocab.fromTokens(buildVocab(CORPUS, { vocabSize: 10_000, scoring: "likelihood" })));
  assertEquals(all.tokenize("the cat and dog sat on the log"), ["the", "cat", "and", "dog", "sat", "on", "the", "log"]);
});

Deno.test("buildVocab: deterministic and independent of text order", () => {
  const texts = syntheticCorpus(60);
  for (const scoring of ["frequency", "likelihood"] as const) {
    const a = buildVocab(texts, { vocabSize: 150, scoring });
    assertEquals(buildVocab(texts, { vocabSize: 150, scoring }), a);
    assertEquals(buildVocab([...texts].reverse(), { vocabSize: 150, scoring }), a);
  }
});

Deno.test("buildVocab: incremental merges equal a from-scratch reference implementation", () => {
  const texts = [...syntheticCorpus(40), ...CORPUS];
  for (const scoring of ["frequency", "likelihood"] as const) {
    for (const size of [90, 160, 100_000]) {
      const got = buildVocab(texts, { vocabSize: size, scoring });
      assertEquals(got, naiveBuild(texts, size, scoring), `${scoring}, vocabSize ${size}`);
    }
  }
});

Deno.test("buildVocab: stops when no pair is frequent enough; minFrequency 1 makes every word whole", () => {
  const { tokens, stats } = buildVocabWithStats(CORPUS, { vocabSize: 100_000 });
  assert(stats.exhausted);
  assert(tokens.length < 100_000);
  assertEquals(stats.words, CORPUS.flatMap((t) => basicTokenize(t, true)).length);
  assertEquals(stats.distinctWords, wordsOf(CORPUS).length);
  const every = buildVocab(CORPUS, { vocabSize: 100_000, minFrequency: 1 });
  for (const w of wordsOf(CORPUS)) assert(every.includes(w), `"${w}" should be a whole token`);
});

Deno.test("buildVocab: a vocabulary too small for the alphabet keeps the most frequent characters", () => {
  const { tokens, stats } = buildVocabWithStats(["aaaa bbb cc d"], { vocabSize: 9 });
  assertEquals(tokens, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "##a", "##b"]);
  assertEquals(stats.droppedCharacters, ["c", "d"]);
  assertThrows(() => buildVocab(["x"], { vocabSize: 3 }), Error, "vocabSize");
  assertThrows(() => buildVocab(["x"], { vocabSize: 50, specialTokens: ["[UNK]", "[UNK]"] }), Error, "duplicate");
});

Deno.test("buildVocab: cased keeps upper case and accents; special tokens in the text are not counted", () => {
  const cased = buildVocab(["Héllo hello [CLS] [SEP]"], { vocabSize: 100, lowerCase: false });
  assert(cased.includes("H") && cased.includes("h") && cased.includes("##é"));
  const uncased = buildVocab(["Héllo hello [CLS] [SEP]"], { vocabSize: 100 });
  assert(!uncased.includes("H") && !uncased.includes("##é") && uncased.includes("hello"));
  for (const t of ["c", "s", "##p", "["]) assert(!uncased.includes(t), `"${t}": [CLS]/[SEP] must not be counted`);
});

Deno.test("cli build-vocab: txt and TSV inputs, atomic vocab.txt, clear errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a.txt`, CORPUS.slice(0, 3).join("\n") + "\n\n");
    await Deno.writeTextFile(
      `${dir}/b.tsv`,
      "sentence\tlabel\n" + CORPUS.slice(3).map((t, i) => `${t}\t${i % 2}`).join("\n") + "\n",
    );
    const args = parseArgs([
      "--input",
      `${dir}/a.txt,${dir}/b.tsv`,
      "--column",
      "sentence",
      "--vocab-size",
      "70",
      "--output",
      `${dir}/out/vocab.txt`,
    ], buildVocabSpec);
    await runBuildVocab(args);
    const written = await Deno.readTextFile(`${dir}/out/vocab.txt`);
    assertEquals(written, buildVocab(CORPUS, { vocabSize: 70 }).join("\n") + "\n");
    assertEquals((await Vocab.load(`${dir}/out/vocab.txt`)).size, 70);

    assertEquals(readCorpus('label,text\n1,"a, b"\n0,"say ""hi"""\n', "x.csv", "text"), ["a, b", 'say "hi"']);
    assertThrows(() => readCorpus("sentence\tlabel\nx\t1\n", "b.tsv", "text"), Error, 'b.tsv:1: no column "text"');
    assertThrows(() => readCorpus("sentence\tlabel\nx\t1\n", "b.tsv"), UsageError, "--column");
    assertThrows(() => readCorpus("a\tb\nx\t1\ny\n", "c.tsv", "b"), Error, "c.tsv:3:");
    await assertRejects(
      () =>
        runBuildVocab(
          parseArgs(["--input", `${dir}/none.txt`, "--vocab-size", "50", "--output", `${dir}/v`], buildVocabSpec),
        ),
      Error,
      "none.txt",
    );
    await assertRejects(
      () =>
        runBuildVocab(
          parseArgs(
            ["--input", `${dir}/a.txt`, "--vocab-size", "50", "--output", `${dir}/v`, "--scoring", "x"],
            buildVocabSpec,
          ),
        ),
      UsageError,
      "--scoring",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "buildVocab: SST-2 train in seconds; the learned vocabulary covers SST-2 dev without [UNK] for seen chars",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const read = async (f: string) =>
      (await Deno.readTextFile(`${SHARED}/data/glue/SST-2/${f}`)).split("\n").slice(1).filter((l) => l)
        .map((l) => l.split("\t")[0]);
    const train = await read("train.tsv");
    const dev = await read("dev.tsv");
    const t0 = performance.now();
    const tokens = buildVocab(train, { vocabSize: 4000 });
    const sec = (performance.now() - t0) / 1000;
    assertEquals(tokens.length, 4000);
    const tok = new FullTokenizer(Vocab.fromTokens(tokens));
    const seen = new Set(tokens);
    let words = 0, pieces = 0;
    for (const s of dev) {
      for (const w of tok.basicTokenize(s)) {
        const p = tok.wordpieceIds(w);
        words++;
        pieces += p.length;
        if ([...w].every((ch) => seen.has(ch))) assert(!p.includes(tok.unkId), `[UNK] for "${w}"`);
      }
    }
    console.log(`SST-2 train -> 4,000 tokens in ${sec.toFixed(1)} s; dev: ${(pieces / words).toFixed(2)} pieces/word`);
    assert(pieces / words < 1.5, `too fragmented: ${pieces / words} pieces per word`);
  },
});
