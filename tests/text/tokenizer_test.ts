/**
 * Tokenizer tests: id-for-id agreement with Google's FullTokenizer on the shared golden file (uncased and cased
 * bert-base vocabularies), hand-worked cases on a tiny vocabulary, the worker-parallel path and the `tokenize`
 * command.
 */
import { basicTokenize } from "../../lib/text/basic_tokenizer.ts";
import { tokenizeParallel, TokenizerPool } from "../../lib/text/parallel.ts";
import { encodeBatch, FullTokenizer } from "../../lib/text/tokenizer.ts";
import { Vocab } from "../../lib/text/vocab.ts";
import { parseTextLines, run as runTokenize, spec as tokenizeSpec } from "../../lib/cli/tokenize.ts";
import { parseArgs } from "../../lib/cli/args.ts";
import { sha256Hex } from "../../lib/io/fsutil.ts";
import { assert, assertEquals, assertRejects, assertThrows, HAVE_SHARED, SHARED } from "../shared.ts";

// ids:                  0     1     2     3      4    5   6     7      8     9   10     11    12   13 14 15
const TINY_TOKENS = ("[PAD] [UNK] [CLS] [SEP] [MASK] un ##aff ##able unaff run ##ning hello world , ! . " +
  // 16  17  18 19 20 21  22   23 24 25 26 27 28 29 30  31
  "cafe café 中 文 abc a ##bcd ##a ' s ¿ $ [ ] cls ##s").split(" ");
const tiny = (options: { lowerCase?: boolean; neverSplit?: string[]; cacheSize?: number } = {}) =>
  new FullTokenizer(Vocab.fromTokens(TINY_TOKENS), options);

// ---- golden: Google's FullTokenizer on 2,772 texts ----

interface Golden {
  text: string;
  uncased: number[];
  cased: number[];
}

async function checkGolden(kind: "uncased" | "cased"): Promise<void> {
  const lines = (await Deno.readTextFile(`${SHARED}/golden/tokenizer/public.jsonl`)).split("\n").filter((l) => l);
  assertEquals(lines.length, 2772, "golden file line count");
  const tok = await FullTokenizer.fromVocabFile(`${SHARED}/data/models/bert-base-${kind}-vocab/vocab.txt`, {
    lowerCase: kind === "uncased",
  });
  const bad: string[] = [];
  let compared = 0;
  for (const line of lines) {
    const g = JSON.parse(line) as Golden;
    const got = tok.encode(g.text);
    compared++;
    if (JSON.stringify(got.ids) !== JSON.stringify(g[kind])) {
      bad.push(
        `text:     ${JSON.stringify(g.text)}\n  expected: ${tok.convertIdsToTokens(g[kind]).join(" ")}\n` +
          `  got:      ${got.tokens.join(" ")}`,
      );
    }
  }
  if (bad.length > 0) {
    throw new Error(`${bad.length} of ${compared} ${kind} texts differ; first ones:\n${bad.slice(0, 5).join("\n")}`);
  }
}

if (!HAVE_SHARED) console.warn(`tokenizer golden tests skipped: ${SHARED} is absent`);

Deno.test(
  { name: "golden: uncased bert-base ids equal Google's FullTokenizer", ignore: !HAVE_SHARED },
  () => checkGolden("uncased"),
);
Deno.test(
  { name: "golden: cased bert-base ids equal Google's FullTokenizer", ignore: !HAVE_SHARED },
  () => checkGolden("cased"),
);

Deno.test({ name: "golden: the word cache never changes results", ignore: !HAVE_SHARED }, async () => {
  const vocab = await Vocab.load(`${SHARED}/data/models/bert-base-uncased-vocab/vocab.txt`);
  const lines = (await Deno.readTextFile(`${SHARED}/golden/tokenizer/public.jsonl`)).split("\n").filter((l) => l);
  const texts = lines.map((l) => (JSON.parse(l) as Golden).text);
  const uncached = new FullTokenizer(vocab, { cacheSize: 0 });
  const small = new FullTokenizer(vocab, { cacheSize: 50 }); // cleared many times
  const big = new FullTokenizer(vocab); // grows past its first table size
  for (let pass = 0; pass < 2; pass++) {
    for (const t of texts) {
      const want = uncached.encodeIds(t);
      assertEquals(small.encodeIds(t), want, t);
      assertEquals(big.encodeIds(t), want, t);
    }
  }
});

// ---- hand-worked cases on a tiny vocabulary ----

Deno.test("wordpiece: greedy longest match first, ## continuations", () => {
  const tok = tiny();
  assertEquals(tok.tokenize("unaffable"), ["unaff", "##able"]); // "unaff" beats "un"
  assertEquals(tok.tokenize("running"), ["run", "##ning"]);
  assertEquals(tok.tokenize("aaa"), ["a", "##a", "##a"]);
  assertEquals(tok.tokenize("hello world"), ["hello", "world"]);
  assertEquals(tok.encode("unaffable").ids, [8, 7]);
  assertEquals(tok.wordpieceIds("running"), [9, 10]);
});

Deno.test("wordpiece: an uncoverable word is one [UNK], even where another split would work", () => {
  const tok = tiny();
  assertEquals(tok.tokenize("xyz"), ["[UNK]"]);
  assertEquals(tok.tokenize("runx hello"), ["[UNK]", "hello"]); // not "run" + [UNK]
  // Greedy takes "abc", then "##d" is missing: [UNK], although "a" + "##bcd" would cover it.
  assertEquals(tok.tokenize("abcd"), ["[UNK]"]);
  assertEquals(tok.tokenize("abc"), ["abc"]);
});

Deno.test("wordpiece: words over 200 characters become [UNK]", () => {
  const tok = tiny();
  const w200 = tok.tokenize("a".repeat(200));
  assertEquals(w200.length, 200);
  assertEquals(w200[0], "a");
  assertEquals(w200[199], "##a");
  assertEquals(tok.tokenize("a".repeat(201)), ["[UNK]"]);
  assertEquals(tok.tokenize(`hello ${"a".repeat(201)} world`), ["hello", "[UNK]", "world"]);
  const short = new FullTokenizer(Vocab.fromTokens(TINY_TOKENS), { maxInputCharsPerWord: 3 });
  assertEquals(short.tokenize("aaa aaaa"), ["a", "##a", "##a", "[UNK]"]);
});

Deno.test("basic: accents are stripped and case folded only when uncased", () => {
  assertEquals(tiny().tokenize("Café CAFÉ"), ["cafe", "cafe"]);
  assertEquals(tiny({ lowerCase: false }).tokenize("café Café"), ["café", "[UNK]"]);
  assertEquals(basicTokenize("Héllo Wörld", true), ["hello", "world"]);
  assertEquals(basicTokenize("Héllo Wörld", false), ["Héllo", "Wörld"]);
  assertEquals(basicTokenize("e\u0301", true), ["e"]); // decomposed accent
  assertEquals(basicTokenize("e\u0301", false), ["e\u0301"]);
  assertEquals(basicTokenize("İstanbul", true), ["istanbul"]); // İ -> i + U+0307, mark stripped
});

Deno.test("basic: CJK ideographs are split into single characters", () => {
  assertEquals(basicTokenize("ab中文cd", true), ["ab", "中", "文", "cd"]);
  assertEquals(tiny().tokenize("中文"), ["中", "文"]);
  // Hiragana is not in BERT's CJK ranges: it stays one word.
  assertEquals(basicTokenize("日本語のテキスト", false), ["日", "本", "語", "のテキスト"]);
});

Deno.test("basic: punctuation is split off (ASCII symbols and Unicode P*)", () => {
  assertEquals(basicTokenize("hello,world!", true), ["hello", ",", "world", "!"]);
  assertEquals(basicTokenize("don't", true), ["don", "'", "t"]);
  assertEquals(basicTokenize("a$b^c`d", true), ["a", "$", "b", "^", "c", "`", "d"]); // ASCII symbols count
  assertEquals(basicTokenize("¿qué?", true), ["¿", "que", "?"]);
  assertEquals(basicTokenize("x—y…", true), ["x", "—", "y", "…"]);
  assertEquals(basicTokenize("x+y", true), ["x", "+", "y"]);
  assertEquals(basicTokenize("x×y", true), ["x×y"]); // × is a math symbol (Sm), not punctuation
  assertEquals(tiny().tokenize("Hello, world!"), ["hello", ",", "world", "!"]);
});

Deno.test("basic: control and format characters are dropped, whitespace normalised", () => {
  assertEquals(basicTokenize("hel\u0000lo", true), ["hello"]);
  assertEquals(basicTokenize("hel\u200blo wor\ufeffld", true), ["hello", "world"]); // Cf
  assertEquals(basicTokenize("hel\u0007lo\ufffd", true), ["hello"]);
  assertEquals(basicTokenize("hel\flo", true), ["hello"]); // form feed is Cc, not whitespace for BERT
  assertEquals(basicTokenize("a\tb\nc\r\nd", true), ["a", "b", "c", "d"]);
  assertEquals(basicTokenize("a\u00a0b\u3000c", true), ["a", "b", "c"]); // Zs
  assertEquals(basicTokenize("a\u2028b", true), ["a", "b"]); // Python's str.split() splits here too
  assertEquals(basicTokenize("   ", true), []);
  assertEquals(basicTokenize("", true), []);
  assertEquals(tiny().tokenize("  hello\u00ad  "), ["hello"]); // soft hyphen is Cf
});

Deno.test("basic: special tokens stay whole unless neverSplit is empty", () => {
  const tok = tiny();
  assertEquals(tok.tokenize("[CLS] hello [SEP]"), ["[CLS]", "hello", "[SEP]"]);
  assertEquals(tok.tokenize("hello [MASK]!"), ["hello", "[", "[UNK]", "]", "!"]); // not whitespace-separated
  assertEquals(tok.tokenize("héllo [MASK] [PAD]"), ["hello", "[MASK]", "[PAD]"]); // Unicode path too
  assertEquals(tok.tokenize("[cls]"), ["[", "cls", "]"]); // only the exact spelling
  const original = tiny({ neverSplit: [] }); // Google's behaviour
  assertEquals(original.tokenize("[CLS] hello"), ["[", "cls", "]", "hello"]);
  assertEquals(basicTokenize("[SEP] x", false, { neverSplit: [] }), ["[", "SEP", "]", "x"]);
  assertEquals(basicTokenize("[SEP] x", false), ["[SEP]", "x"]);
});

Deno.test("basic: characters outside the BMP are handled as code points", () => {
  assertEquals(basicTokenize("emoji 🤗😀 inside", true), ["emoji", "🤗😀", "inside"]);
  assertEquals(tiny().tokenize("hello 🤗"), ["hello", "[UNK]"]);
  assertEquals(basicTokenize("a𝒜b", false), ["a𝒜b"]);
  // 200 astral characters are 400 UTF-16 units but 200 characters: not too long.
  const tok = new FullTokenizer(Vocab.fromTokens(["[UNK]", "😀", "##😀"]));
  assertEquals(tok.tokenize("😀".repeat(200)).length, 200);
  assertEquals(tok.tokenize("😀".repeat(201)), ["[UNK]"]);
});

Deno.test("decode: joins ## pieces, skips specials on request, cleans spaces", () => {
  const tok = tiny();
  const { ids } = tok.encode("Hello, world!");
  assertEquals(tok.decode(ids), "hello, world!");
  assertEquals(tok.decode(tok.encode("unaffable running").ids), "unaffable running");
  const withSpecials = [tok.clsId, ...ids, tok.sepId, tok.padId, tok.padId];
  assertEquals(tok.decode(withSpecials, { skipSpecialTokens: true }), "hello, world!");
  assertEquals(tok.decode(withSpecials), "[CLS] hello, world! [SEP] [PAD] [PAD]");
  assertEquals(tok.decode(ids, { cleanUpSpaces: false }), "hello , world !");
  assertEquals(tok.decode(tok.encode("hello's world.").ids), "hello's world.");
  assertThrows(() => tok.decode([9999]), Error, "id 9999");
});

Deno.test("ids: conversion both ways, special ids, errors name the culprit", () => {
  const tok = tiny();
  assertEquals([tok.padId, tok.unkId, tok.clsId, tok.sepId, tok.maskId], [0, 1, 2, 3, 4]);
  assertEquals(tok.convertTokensToIds(["hello", "##able"]), [11, 7]);
  assertEquals(tok.convertIdsToTokens([11, 7]), ["hello", "##able"]);
  assertThrows(() => tok.convertTokensToIds(["hello", "nope"]), Error, '"nope"');
  assertThrows(() => tok.convertIdsToTokens([-1]), Error, "outside the vocabulary");
  assertThrows(() => new FullTokenizer(Vocab.fromTokens(["a", "b"])), Error, "[UNK]");
});

Deno.test("vocab: load strips lines, keeps ids = line numbers, hashes the canonical text", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const text = "[PAD]\n[UNK]\r\nhello \nworld\n";
    await Deno.writeTextFile(`${dir}/vocab.txt`, text);
    const v = await Vocab.load(`${dir}/vocab.txt`);
    assertEquals(v.tokens, ["[PAD]", "[UNK]", "hello", "world"]);
    assertEquals(v.size, 4);
    assertEquals(v.id("world"), 3);
    assertEquals(v.id("nope"), undefined);
    const canonical = "[PAD]\n[UNK]\nhello\nworld\n";
    assertEquals(await v.sha256(), await sha256Hex(canonical));
    assertEquals(await Vocab.fromTokens(v.tokens).sha256(), await v.sha256());
    assert((await Vocab.fromTokens(["[UNK]", "x"]).sha256()) !== (await v.sha256()));
    await v.save(`${dir}/copy.txt`);
    assertEquals(await Deno.readTextFile(`${dir}/copy.txt`), canonical);
    assertEquals(Vocab.fromText("a\nb\na\n").id("a"), 2); // like Google's dict: the last line wins
    await assertRejects(() => Vocab.load(`${dir}/missing.txt`), Error, "missing.txt");
    assertThrows(() => Vocab.fromText(""), Error, "empty");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("vocab: a real vocab file hashes like its bytes", { ignore: !HAVE_SHARED }, async () => {
  const path = `${SHARED}/data/models/bert-base-uncased-vocab/vocab.txt`;
  const v = await Vocab.load(path);
  assertEquals(v.size, 30522);
  assertEquals(await v.sha256(), await sha256Hex(await Deno.readFile(path)));
});

// ---- batches and workers ----

const SAMPLE = [
  "Hello, world!",
  "unaffable running",
  "",
  "Café 中文 ¿hello?",
  "a a a a a a a a a a a a",
  "[CLS] xyz",
];

Deno.test("encodeBatch: [CLS] ... [SEP] + [PAD] rows, truncation counted; ragged offsets", () => {
  const tok = tiny();
  const b = encodeBatch(tok, SAMPLE, { maxSeqLength: 6 });
  assertEquals(b.n, 6);
  assertEquals(b.ids.length, 36);
  assertEquals(Array.from(b.ids.subarray(0, 6)), [2, 11, 13, 12, 14, 3]); // [CLS] hello , world ! [SEP]
  assertEquals(Array.from(b.ids.subarray(6, 12)), [2, 8, 7, 9, 10, 3]);
  assertEquals(Array.from(b.ids.subarray(12, 18)), [2, 3, 0, 0, 0, 0]);
  assertEquals(Array.from(b.ids.subarray(24, 30)), [2, 21, 21, 21, 21, 3]); // truncated to 4 pieces
  assertEquals(Array.from(b.lengths), [4, 4, 0, 6, 12, 2]);
  assertEquals(b.truncated, 2);
  const r = encodeBatch(tok, SAMPLE);
  assertEquals(Array.from(r.offsets!), [0, 4, 8, 8, 14, 26, 28]);
  assertEquals(Array.from(r.ids.subarray(r.offsets![3], r.offsets![4])), tok.encodeIds(SAMPLE[3]));
  assertThrows(() => encodeBatch(tok, SAMPLE, { maxSeqLength: 1 }), Error, "maxSeqLength");
});

Deno.test("TokenizerPool / tokenizeParallel: workers give exactly the single-threaded result, in order", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const vocabPath = `${dir}/vocab.txt`;
    await Deno.writeTextFile(vocabPath, TINY_TOKENS.join("\n") + "\n");
    const texts: string[] = [];
    for (let i = 0; i < 57; i++) texts.push(`${SAMPLE[i % SAMPLE.length]} ${"a ".repeat(i % 9)}run`);
    const tok = tiny();
    const pool = await TokenizerPool.create({ vocabPath, lowerCase: true, workers: 2 });
    try {
      assertEquals(pool.size, 2);
      for (const maxSeqLength of [8, undefined]) {
        let calls = 0;
        const got = await pool.encode(texts, { chunkSize: 5, maxSeqLength, onProgress: () => calls++ });
        assertEquals(got, encodeBatch(tok, texts, { maxSeqLength }));
        assertEquals(calls, 12);
      }
      assertEquals((await pool.encode([])).n, 0);
      await assertRejects(() => pool.encode(texts, { maxSeqLength: 1 }), Error, "maxSeqLength");
    } finally {
      pool.close();
    }
    await assertRejects(() => pool.encode(texts), Error, "closed");
    const cased = await tokenizeParallel(texts.slice(0, 9), { vocabPath, lowerCase: false, workers: 1 });
    assertEquals(cased, encodeBatch(tiny({ lowerCase: false }), texts.slice(0, 9)));
    await assertRejects(
      () => tokenizeParallel(["x"], { vocabPath: `${dir}/missing.txt`, lowerCase: true, workers: 1 }),
      Error,
      "missing.txt",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- the tokenize command ----

Deno.test("cli tokenize: JSONL in, {tokens, ids} JSONL out, in order", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/vocab.txt`, TINY_TOKENS.join("\n") + "\n");
    const texts = ["Hello, world!", "Café", "", "[CLS] running"];
    await Deno.writeTextFile(`${dir}/in.jsonl`, texts.map((text) => JSON.stringify({ text, id: 1 })).join("\n"));
    const args = parseArgs(
      ["--vocab", `${dir}/vocab.txt`, "--input", `${dir}/in.jsonl`, "--output", `${dir}/out/o.jsonl`],
      tokenizeSpec,
    );
    await runTokenize(args);
    const out = (await Deno.readTextFile(`${dir}/out/o.jsonl`)).trimEnd().split("\n").map((l) => JSON.parse(l));
    const tok = tiny();
    assertEquals(out, texts.map((t) => tok.encode(t)));
    assertEquals(out[0], { tokens: ["hello", ",", "world", "!"], ids: [11, 13, 12, 14] });
    assertEquals(out[3].tokens, ["[CLS]", "run", "##ning"]);
    // --cased keeps case: "Hello" is not in the vocabulary.
    await runTokenize(parseArgs([...args.positional, "--cased", ...flagsOf(args)], tokenizeSpec));
    const cased = JSON.parse((await Deno.readTextFile(`${dir}/out/o.jsonl`)).split("\n")[0]);
    assertEquals(cased.tokens, ["[UNK]", ",", "world", "!"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function flagsOf(args: { flags: Record<string, unknown> }): string[] {
  return ["vocab", "input", "output"].flatMap((k) => [`--${k}`, String(args.flags[k])]);
}

Deno.test("cli tokenize: bad lines are errors naming file and line", () => {
  assertEquals(parseTextLines('{"text": "a"}\r\n\n{"text": "b"}\n', "in.jsonl"), ["a", "b"]);
  assertThrows(() => parseTextLines('{"text": "a"}\n{"text": oops}\n', "in.jsonl"), Error, "in.jsonl:2: invalid JSON");
  assertThrows(
    () => parseTextLines('{"text": "a"}\n\n{"txt": "b"}', "in.jsonl"),
    Error,
    'in.jsonl:3: expected an object with a string "text"',
  );
  assertThrows(() => parseTextLines('["a"]', "f.jsonl"), Error, "f.jsonl:1:");
  assertThrows(() => parseTextLines('{"text": 5}', "f.jsonl"), Error, "f.jsonl:1:");
});

Deno.test({
  name: "cli tokenize: end to end through lib/cli.ts with the task's permissions",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const dir = `outputs/.test-tokenize-${crypto.randomUUID().slice(0, 8)}`;
    await Deno.mkdir(dir, { recursive: true });
    try {
      const texts = ["The sailors rode the breeze clear of the rocks.", "naïve café"];
      await Deno.writeTextFile(`${dir}/in.jsonl`, texts.map((text) => JSON.stringify({ text })).join("\n") + "\n");
      const vocab = `${SHARED}/data/models/bert-base-uncased-vocab/vocab.txt`;
      const cli = (output: string) =>
        new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            `--allow-read=.,${SHARED}`,
            "--allow-write=outputs,.cache",
            "--allow-env",
            "lib/cli.ts",
            "tokenize",
            "--vocab",
            vocab,
            "--input",
            `${dir}/in.jsonl`,
            "--output",
            output,
          ],
          stdout: "piped",
          stderr: "piped",
        }).output();
      const ok = await cli(`${dir}/out.jsonl`);
      const err = new TextDecoder().decode(ok.stderr);
      assertEquals(ok.code, 0, err);
      const out = (await Deno.readTextFile(`${dir}/out.jsonl`)).trimEnd().split("\n").map((l) => JSON.parse(l));
      assertEquals(out[0].ids, [1996, 11279, 8469, 1996, 9478, 3154, 1997, 1996, 5749, 1012]); // golden line 1
      assertEquals(out[1].tokens, ["naive", "cafe"]);
      const denied = await cli("/tmp/not-allowed.jsonl");
      assertEquals(denied.code, 1);
      assert(new TextDecoder().decode(denied.stderr).includes("may only write under outputs/"));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
