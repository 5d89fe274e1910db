/**
 * Checkpoint formats other than safetensors (issue 11): PyTorch `pytorch_model.bin` in zip and legacy format,
 * sharded, Google TensorFlow checkpoints, folder precedence, `inspect`, `convert`, the pickle whitelist and errors
 * on damaged files. The fixtures (../shared/golden/checkpoint-formats, see its PROVENANCE.md) were written by
 * PyTorch 1.13 and by an independent TensorBundle writer; logits must match the safetensors original on every
 * backend, and `convert` must give back the original tensors byte for byte. Small cases (views, strides, float16,
 * bfloat16, malicious globals) are built here byte by byte.
 */
import { initBackend, tf } from "../../lib/backends/backend.ts";
import { convertCheckpoint, loadCheckpoint } from "../../lib/model/checkpoint.ts";
import { crc32c, maskCrc } from "../../lib/io/crc.ts";
import { ForbiddenGlobalError, unpickle } from "../../lib/io/pickle.ts";
import { PYTORCH_GLOBALS, readPytorchBin, writePytorchBin } from "../../lib/io/pytorch_bin.ts";
import {
  googleNameToHf,
  hfNameToGoogle,
  readTfCheckpoint,
  readTfIndex,
  writeTfCheckpoint,
} from "../../lib/io/tf_checkpoint.ts";
import { findWeights, listTensors } from "../../lib/io/weights.ts";
import { writeZip } from "../../lib/io/zip.ts";
import { registerBlasBackend } from "../../lib/backends/blas/blas_backend.ts";
import { bf16ToFloat32, f16ToFloat32, readSafetensors, type TensorEntry } from "../../lib/io/safetensors.ts";
import { assert, assertEquals, assertRejects, assertThrows, HAVE_SHARED, SHARED } from "../shared.ts";

const TINY = `${SHARED}/data/models/tiny-random-BertForSequenceClassification.FALLBACK-RANDOM-WEIGHTS`;
const FORMATS = `${SHARED}/golden/checkpoint-formats`;
const LEGACY = `${FORMATS}/tiny-random-cls.pytorch-legacy`;
const GOOGLE = `${FORMATS}/tiny-random-cls.google-tf`;
const REAL_INDEX = `${FORMATS}/google-tf-real-index/bert_model.ckpt.index`;

const HAVE_BLAS = registerBlasBackend() !== undefined;
const BACKENDS: ("cpu" | "wasm" | "blas")[] = HAVE_BLAS ? ["cpu", "wasm", "blas"] : ["cpu", "wasm"];
if (!HAVE_BLAS) console.warn("checkpoint_formats_test: no CBLAS library: the blas backend is skipped");

const ROOT = await Deno.makeTempDir({ prefix: "checkpoint_formats_test_" });
globalThis.addEventListener("unload", () => Deno.removeSync(ROOT, { recursive: true }));

/** A fresh folder under ROOT holding copies of `files` (paths), each under its base name. */
async function folderWith(...files: string[]): Promise<string> {
  const dir = await Deno.makeTempDir({ dir: ROOT });
  for (const f of files) await Deno.copyFile(f, `${dir}/${f.split("/").pop()}`);
  return dir;
}

function bytesOf(e: TensorEntry): Uint8Array {
  return new Uint8Array(e.data.buffer, e.data.byteOffset, e.data.byteLength);
}

function sameEntry(a: TensorEntry, b: TensorEntry): boolean {
  const x = bytesOf(a);
  const y = bytesOf(b);
  return a.dtype === b.dtype && a.shape.join() === b.shape.join() && x.length === y.length &&
    x.every((v, i) => v === y[i]);
}

/** Logits of a classification checkpoint on a fixed batch (two sequences, one padded). */
async function logitsOf(dir: string): Promise<Float32Array> {
  const { model } = await loadCheckpoint(dir, { head: "classification", quiet: true, announceWeights: false });
  const inputs = {
    inputIds: tf.tensor2d([[2, 100, 200, 300, 400, 3], [2, 7, 900, 3, 0, 0]], undefined, "int32"),
    tokenTypeIds: tf.tensor2d([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 0, 0]], undefined, "int32"),
    attentionMask: tf.tensor2d([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], undefined, "int32"),
  };
  const out = model.forward(inputs);
  const logits = (await out.logits!.data()) as Float32Array;
  tf.dispose([...Object.values(out).flat(), ...Object.values(inputs)] as tf.Tensor[]);
  model.dispose();
  return logits;
}

const shared = { ignore: !HAVE_SHARED, sanitizeResources: false, sanitizeOps: false };

Deno.test({
  ...shared,
  name: "every fixture format gives the safetensors original's logits (within 1e-6) on every backend",
  fn: async () => {
    const zipBin = await folderWith(`${TINY}/config.json`, `${TINY}/vocab.txt`, `${TINY}/pytorch_model.bin`);
    for (const backend of BACKENDS) {
      await initBackend({ backend, quiet: true });
      const reference = await logitsOf(TINY);
      for (const [label, dir] of [["zip .bin", zipBin], ["legacy .bin", LEGACY], ["Google TF", GOOGLE]]) {
        const logits = await logitsOf(dir);
        let err = 0;
        for (let i = 0; i < reference.length; i++) err = Math.max(err, Math.abs(logits[i] - reference[i]));
        console.log(`${backend}: ${label}: max |logit diff| ${err}`);
        assert(err <= 1e-6, `${label} on ${backend}: logits differ by ${err}`);
      }
    }
  },
});

Deno.test({
  ...shared,
  name: "folder precedence: safetensors, then .bin, then TensorFlow; loadCheckpoint says which it read",
  fn: async () => {
    await initBackend({ backend: "wasm", quiet: true });
    const dir = await folderWith(
      `${TINY}/config.json`,
      `${TINY}/vocab.txt`,
      `${TINY}/model.safetensors`,
      `${TINY}/pytorch_model.bin`,
      `${GOOGLE}/bert_model.ckpt.index`,
      `${GOOGLE}/bert_model.ckpt.data-00000-of-00001`,
    );
    const expect = async (format: string, notRead: number) => {
      const found = await findWeights(dir);
      assertEquals([found.chosen?.format, found.present.length - 1], [format, notRead]);
      const messages: string[] = [];
      const warn = console.warn;
      console.warn = (m: string) => messages.push(m);
      try {
        const loaded = await loadCheckpoint(dir, { head: "classification", quiet: true });
        assertEquals(loaded.weights.format, format);
        assertEquals(loaded.weights.notRead.length, notRead);
        loaded.model.dispose();
      } finally {
        console.warn = warn;
      }
      if (format !== "safetensors") {
        assert(messages.some((m) => m.startsWith(`reading weights from ${found.chosen!.path}`)), messages.join("\n"));
      }
    };
    await expect("safetensors", 2);
    await Deno.remove(`${dir}/model.safetensors`);
    await expect("pytorch", 1);
    await Deno.remove(`${dir}/pytorch_model.bin`);
    await expect("tensorflow", 0);
  },
});

Deno.test({
  ...shared,
  name: "inspect on Google's real Chinese BERT-Base index: all 206 variables, TF dtypes and shapes, data file tiled",
  fn: async () => {
    const index = await readTfIndex(REAL_INDEX);
    assertEquals(index.numShards, 1);
    assertEquals(index.entries.length, 206); // 12 layers x 16 + 5 embeddings + 2 pooler + 7 pre-training heads
    const byName = new Map(index.entries.map((e) => [e.name, e]));
    assertEquals(byName.get("bert/embeddings/word_embeddings")?.shape, [21128, 768]);
    assertEquals(byName.get("bert/encoder/layer_11/intermediate/dense/kernel")?.shape, [768, 3072]);
    assertEquals(byName.get("cls/seq_relationship/output_weights")?.shape, [2, 768]);
    assert(index.entries.every((e) => e.dtype === "float32"), "all float32");
    // The entries tile the 412 MB data file: sorted by offset, each starts where the previous ended.
    let end = 0;
    for (const e of [...index.entries].sort((a, b) => a.offset - b.offset)) {
      assertEquals(e.offset, end, e.name);
      assertEquals(e.size, 4 * e.shape.reduce((a, b) => a * b, 1), e.name);
      end += e.size;
    }
    // The CLI, with --json, from the index alone (no data file next to it).
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        "--allow-env",
        "--allow-ffi",
        "--allow-sys",
        "lib/cli.ts",
        "inspect",
        "--json",
        REAL_INDEX,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert(out.success, new TextDecoder().decode(out.stderr));
    const lines = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(lines.length, 206);
    assertEquals(lines.find((l) => l.name === "bert/embeddings/word_embeddings"), {
      name: "bert/embeddings/word_embeddings",
      dtype: "float32",
      shape: [21128, 768],
    });
    // Every format of the tiny model lists the same 88 weights (the .bin files also have position_ids).
    for (const path of [TINY, LEGACY, GOOGLE, `${TINY}/pytorch_model.bin`]) {
      const { tensors } = await listTensors(path);
      assert(tensors.length >= 90 - 1, `${path}: ${tensors.length} tensors`);
    }
  },
});

Deno.test({
  ...shared,
  name: "convert: each fixture round-trips to the safetensors original exactly; config.json from bert_config.json",
  fn: async () => {
    const original = (await readSafetensors(`${TINY}/model.safetensors`)).tensors;
    const zipBin = await folderWith(`${TINY}/config.json`, `${TINY}/vocab.txt`, `${TINY}/pytorch_model.bin`);
    for (const from of [zipBin, LEGACY, GOOGLE]) {
      const to = `${ROOT}/converted-${from.split("/").pop()}`;
      const result = await convertCheckpoint(from, to);
      const converted = (await readSafetensors(`${to}/model.safetensors`)).tensors;
      const names = Object.keys(original).filter((n) => n in converted);
      // Google's checkpoint has no position_ids buffer (TensorFlow computes positions); everything else is there.
      const absent = Object.keys(original).filter((n) => !(n in converted));
      assertEquals(absent, from === GOOGLE ? ["bert.embeddings.position_ids"] : [], from);
      assertEquals(Object.keys(converted).filter((n) => !(n in original)), [], from);
      for (const n of names) assert(sameEntry(converted[n], original[n]), `${from}: ${n} differs`);
      assertEquals(await Deno.readTextFile(`${to}/vocab.txt`), await Deno.readTextFile(`${TINY}/vocab.txt`));
      const config = JSON.parse(await Deno.readTextFile(`${to}/config.json`));
      const want = JSON.parse(await Deno.readTextFile(`${TINY}/config.json`));
      for (const k of ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"]) {
        assertEquals(config[k], want[k], k);
      }
      assertEquals(config.architectures, ["BertForSequenceClassification"]);
      if (from === GOOGLE) {
        assertEquals(result.architecture, "BertForSequenceClassification");
        assertEquals(result.weights.skipped, ["global_step"]);
      }
      const tc = JSON.parse(await Deno.readTextFile(`${to}/tokenizer_config.json`));
      assertEquals(typeof tc.do_lower_case, "boolean");
    }
    await assertRejects(
      () => convertCheckpoint(GOOGLE, `${ROOT}/converted-tiny-random-cls.google-tf`),
      Error,
      "exists",
    );
  },
});

// ---- hand-built pickles ----

/** A tiny pickle emitter, independent of lib/io's writer. */
class Pickle {
  bytes: number[] = [0x80, 2];
  op(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    return this.op(0x8c, b.length, ...b); // SHORT_BINUNICODE
  }
  int(n: number): this {
    return n < 256 ? this.op(0x4b, n) : this.op(0x4d, n & 0xff, n >> 8); // BININT1 / BININT2
  }
  global(module: string, name: string): this {
    return this.op(0x63, ...new TextEncoder().encode(`${module}\n${name}\n`));
  }
  tuple(...ints: number[]): this {
    this.op(0x28);
    for (const i of ints) this.int(i);
    return this.op(0x74);
  }
  /** `_rebuild_tensor_v2((storage id), offset, size, stride, False, OrderedDict())`. */
  tensor(storageType: string, key: string, numel: number, offset: number, size: number[], stride: number[]): this {
    this.global("torch._utils", "_rebuild_tensor_v2").op(0x28, 0x28).str("storage").global("torch", storageType);
    this.str(key).str("cpu").int(numel).op(0x74, 0x51).int(offset).tuple(...size).tuple(...stride).op(0x89);
    return this.global("collections", "OrderedDict").op(0x29, 0x52, 0x74, 0x52);
  }
  done(): Uint8Array {
    return new Uint8Array([...this.bytes, 0x2e]);
  }
}

function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

Deno.test("pickle: views with offsets and strides, shared storage, float16 and bfloat16 storages", async () => {
  // Storage 0: float32 0..11. "t" is its transpose as a [4, 3] view of the [3, 4] matrix; "row" is row 1 (offset 4);
  // "col" is column 2 (offset 2, stride 4). Storage 1: float16 [1, -2, 0.5]; storage 2: bfloat16 [1.5, -3].
  const pkl = new Pickle().op(0x7d, 0x28)
    .str("t").tensor("FloatStorage", "0", 12, 0, [4, 3], [1, 4])
    .str("row").tensor("FloatStorage", "0", 12, 4, [4], [1])
    .str("col").tensor("FloatStorage", "0", 12, 2, [3], [4])
    .str("half").tensor("HalfStorage", "1", 3, 0, [3], [1])
    .str("bf").tensor("BFloat16Storage", "2", 2, 0, [2], [1])
    .op(0x75).done();
  const path = `${ROOT}/views.bin`;
  await writeZip(path, [
    { name: "archive/data.pkl", data: pkl },
    { name: "archive/data/0", data: f32Bytes([...Array(12).keys()]) },
    { name: "archive/data/1", data: new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0x3800]).buffer) },
    { name: "archive/data/2", data: new Uint8Array(new Uint16Array([0x3fc0, 0xc040]).buffer) },
  ]);
  const { tensors, format } = await readPytorchBin(path);
  assertEquals(format, "zip");
  assertEquals([...tensors.t.data as Float32Array], [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
  assertEquals(tensors.t.shape, [4, 3]);
  assertEquals([...tensors.row.data as Float32Array], [4, 5, 6, 7]);
  assertEquals([...tensors.col.data as Float32Array], [2, 6, 10]);
  assertEquals([tensors.half.dtype, [...tensors.half.data as Uint16Array].map(f16ToFloat32)], ["F16", [1, -2, 0.5]]);
  assertEquals([tensors.bf.dtype, [...tensors.bf.data as Uint16Array].map(bf16ToFloat32)], ["BF16", [1.5, -3]]);
  // A view reaching past its storage is an inconsistent file.
  const bad = new Pickle().op(0x7d, 0x28).str("x").tensor("FloatStorage", "0", 12, 10, [3], [1]).op(0x75).done();
  await writeZip(path, [{ name: "archive/data.pkl", data: bad }, {
    name: "archive/data/0",
    data: f32Bytes(Array(12).fill(0)),
  }]);
  await assertRejects(() => readPytorchBin(path), Error, `${path}: tensor "x"`);
});

Deno.test("pickle: os.system, builtins.eval and other globals are refused at the opcode naming them", async () => {
  // GLOBAL os.system; MARK 'echo pwned' TUPLE; REDUCE -- refused at byte 2, before the REDUCE at the end.
  const system = new Pickle().global("os", "system").op(0x28).str("touch /tmp/pwned").op(0x74, 0x52).done();
  const err = assertThrows(
    () => unpickle(system, { source: "evil.pkl", globals: PYTORCH_GLOBALS }),
    ForbiddenGlobalError,
    'refusing global "os.system"',
  );
  assert(err.message.startsWith("evil.pkl: pickle byte 2:"), err.message);
  // Protocol 4 STACK_GLOBAL builtins.eval.
  const evalPkl = new Pickle().str("builtins").str("eval").op(0x93).str("1+1").op(0x85, 0x52).done();
  assertThrows(() => unpickle(evalPkl, { globals: PYTORCH_GLOBALS }), ForbiddenGlobalError, "builtins.eval");
  // A whitelisted global that only names a type cannot be called either.
  const storageCall = new Pickle().global("torch", "FloatStorage").op(0x29, 0x52).done();
  assertThrows(() => unpickle(storageCall, { globals: PYTORCH_GLOBALS }), Error, 'REDUCE on "torch.FloatStorage"');
  // Inside a real .bin (zip and legacy), a malicious global is refused with the file named; a handler spy shows
  // that no whitelisted handler ran after it either.
  let calls = 0;
  const spy = { "collections.OrderedDict": { call: () => (calls++, new Map()) } };
  const mixed = new Pickle().global("subprocess", "Popen").global("collections", "OrderedDict").op(0x29, 0x52).done();
  assertThrows(() => unpickle(mixed, { globals: spy }), ForbiddenGlobalError, "subprocess.Popen");
  assertEquals(calls, 0);
  const path = `${ROOT}/evil.bin`;
  await writeZip(path, [{ name: "archive/data.pkl", data: system }]);
  await assertRejects(() => readPytorchBin(path), ForbiddenGlobalError, `${path}: archive/data.pkl: pickle byte 2`);
  // Legacy: magic, protocol, sys info, then the evil pickle.
  const magic = new Uint8Array([0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]);
  const protocol = new Uint8Array([0x80, 2, 0x4d, 0xe9, 0x03, 0x2e]);
  const info = new Uint8Array([0x80, 2, 0x7d, 0x2e]);
  await Deno.writeFile(path, new Uint8Array([...magic, ...protocol, ...info, ...system]));
  await assertRejects(() => readPytorchBin(path), ForbiddenGlobalError, "os.system");
});

Deno.test({
  ...shared,
  name: "damaged files of each format: errors name the file and what is wrong",
  fn: async () => {
    const cut = async (src: string, keep: (n: number) => number, name: string) => {
      const bytes = await Deno.readFile(src);
      const path = `${ROOT}/${name}`;
      await Deno.writeFile(path, bytes.subarray(0, keep(bytes.length)));
      return path;
    };
    const flip = async (src: string, at: (n: number) => number, name: string) => {
      const bytes = await Deno.readFile(src);
      bytes[at(bytes.length)] ^= 0x40;
      const path = `${ROOT}/${name}`;
      await Deno.writeFile(path, bytes);
      return path;
    };
    // zip .bin: truncated (no central directory), a storage byte flipped (CRC-32).
    let p = await cut(`${TINY}/pytorch_model.bin`, (n) => n - 200, "cut.bin");
    await assertRejects(() => readPytorchBin(p), Error, `${p}: not a complete zip archive`);
    p = await flip(`${TINY}/pytorch_model.bin`, (n) => Math.floor(n / 2), "flip.bin");
    await assertRejects(() => readPytorchBin(p), Error, "fails its CRC-32 check");
    // legacy .bin: truncated in the storages, truncated in the pickles, a storage size that contradicts the pickle.
    p = await cut(`${LEGACY}/pytorch_model.bin`, (n) => n - 1000, "cut-legacy.bin");
    await assertRejects(() => readPytorchBin(p), Error, `${p}: `);
    await assertRejects(() => readPytorchBin(p), Error, "truncated");
    p = await cut(`${LEGACY}/pytorch_model.bin`, () => 500, "cut-legacy-pickle.bin");
    await assertRejects(() => readPytorchBin(p), Error, "truncated");
    const legacy = await Deno.readFile(`${LEGACY}/pytorch_model.bin`);
    const { tensors } = await readPytorchBin(`${LEGACY}/pytorch_model.bin`);
    // The first storage's int64 element count sits right after the storage-keys pickle: find it by its value.
    const first = tensors["bert.embeddings.position_ids"].data.length; // storage "0" (512 int64)
    const view = new DataView(legacy.buffer);
    let at = -1;
    for (let i = 0; i + 8 <= legacy.length && at < 0; i++) if (view.getBigInt64(i, true) === BigInt(first)) at = i;
    assert(at > 0, "storage size found");
    view.setBigInt64(at, BigInt(first + 1), true);
    p = `${ROOT}/inconsistent-legacy.bin`;
    await Deno.writeFile(p, legacy);
    await assertRejects(() => readPytorchBin(p), Error, "the file is inconsistent");
    // TensorFlow: truncated index, corrupt index block, missing / truncated / corrupt data file.
    const tfDir = await folderWith(`${GOOGLE}/bert_model.ckpt.index`, `${GOOGLE}/bert_model.ckpt.data-00000-of-00001`);
    const index = `${tfDir}/bert_model.ckpt.index`;
    const data = `${tfDir}/bert_model.ckpt.data-00000-of-00001`;
    const indexBytes = await Deno.readFile(index);
    const dataBytes = await Deno.readFile(data);
    await Deno.writeFile(index, indexBytes.subarray(0, indexBytes.length - 10));
    await assertRejects(() => readTfIndex(index), Error, `${index}: not a TensorFlow checkpoint index`);
    const corrupt = indexBytes.slice();
    corrupt[20] ^= 1;
    await Deno.writeFile(index, corrupt);
    await assertRejects(() => readTfIndex(index), Error, "fails its CRC-32C check");
    await Deno.writeFile(index, indexBytes);
    await Deno.writeFile(data, dataBytes.subarray(0, dataBytes.length - 100));
    await assertRejects(() => readTfCheckpoint(index), Error, `${data}: variable "`);
    await assertRejects(() => readTfCheckpoint(index), Error, "truncated");
    const flipped = dataBytes.slice();
    flipped[1000] ^= 1;
    await Deno.writeFile(data, flipped);
    await assertRejects(() => readTfCheckpoint(index), Error, "fails its CRC-32C check: the data file is corrupt");
    await Deno.remove(data);
    await assertRejects(() => readTfCheckpoint(index), Error, `${data}: file not found (data shard of ${index})`);
    // ...while the index alone still lists everything.
    assertEquals(
      (await listTensors(index)).tensors.length,
      (await readTfIndex(`${GOOGLE}/bert_model.ckpt`)).entries.length,
    );
  },
});

Deno.test("TensorFlow: compressed blocks and unknown dtypes get clear errors; name mapping both ways", async () => {
  const prefix = `${ROOT}/own/bert_model.ckpt`;
  await Deno.mkdir(`${ROOT}/own`, { recursive: true });
  await writeTfCheckpoint(prefix, {
    "bert/embeddings/word_embeddings": { dtype: "F32", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
  });
  // The index is one data block, then the empty metaindex block whose offset (the footer's first varint, < 128
  // here) is where the data block's 5-byte trailer ends.
  const original = await Deno.readFile(`${prefix}.index`);
  const blockEnd = original[original.length - 48] - 5;
  const reseal = (bytes: Uint8Array) =>
    new DataView(bytes.buffer).setUint32(blockEnd + 1, maskCrc(crc32c(bytes.subarray(0, blockEnd + 1))), true);
  // Marked Snappy-compressed (type byte 1, CRC made valid again): refused as compressed.
  const compressed = original.slice();
  compressed[blockEnd] = 1;
  reseal(compressed);
  await Deno.writeFile(`${prefix}.index`, compressed);
  await assertRejects(() => readTfIndex(prefix), Error, "the data block at 0 is Snappy-compressed");
  // The variable's dtype (field 1, after its name) turned into DT_STRING (7): listed, but not loadable.
  const stringy = original.slice();
  const name = new TextEncoder().encode("bert/embeddings/word_embeddings");
  let at = -1;
  for (let i = 0; i < stringy.length && at < 0; i++) if (name.every((b, j) => stringy[i + j] === b)) at = i;
  assertEquals([stringy[at + name.length], stringy[at + name.length + 1]], [0x08, 1]);
  stringy[at + name.length + 1] = 7;
  reseal(stringy);
  await Deno.writeFile(`${prefix}.index`, stringy);
  assertEquals((await readTfIndex(prefix)).entries.map((e) => [e.name, e.dtype]), [[
    "bert/embeddings/word_embeddings",
    "string",
  ]]);
  await assertRejects(
    () => readTfCheckpoint(prefix),
    Error,
    'variable "bert/embeddings/word_embeddings" has dtype string',
  );
  // Names: Google -> HF -> Google is the identity for every variable of the real BERT-Base index.
  if (HAVE_SHARED) {
    for (const e of (await readTfIndex(REAL_INDEX)).entries) {
      const hf = googleNameToHf(e.name);
      assertEquals(hfNameToGoogle(hf.name), { name: e.name, transpose: hf.transpose }, e.name);
    }
  }
  assertEquals(googleNameToHf("output_weights"), { name: "classifier.weight", transpose: false });
  assertEquals(googleNameToHf("bert/encoder/layer_3/attention/self/query/kernel"), {
    name: "bert.encoder.layer.3.attention.self.query.weight",
    transpose: true,
  });
});

Deno.test({
  ...shared,
  name: "sharded pytorch_model.bin.index.json and a tf_model.h5-only folder",
  fn: async () => {
    await initBackend({ backend: "wasm", quiet: true });
    const original = (await readSafetensors(`${TINY}/model.safetensors`)).tensors;
    const dir = await folderWith(`${TINY}/config.json`, `${TINY}/vocab.txt`);
    const names = Object.keys(original);
    const half = Math.floor(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const weightMap: Record<string, string> = {};
    for (const [i, part] of shards.entries()) {
      const file = `pytorch_model-0000${i + 1}-of-00002.bin`;
      await writePytorchBin(`${dir}/${file}`, Object.fromEntries(part.map((n) => [n, original[n]])));
      for (const n of part) weightMap[n] = file;
    }
    await Deno.writeTextFile(`${dir}/pytorch_model.bin.index.json`, JSON.stringify({ weight_map: weightMap }));
    const found = await findWeights(dir);
    assertEquals([found.chosen?.format, found.chosen?.files.length], ["pytorch", 2]);
    assertEquals(await logitsOf(dir), await logitsOf(TINY));
    const h5 = await folderWith(`${TINY}/config.json`, `${TINY}/vocab.txt`);
    await Deno.writeFile(`${h5}/tf_model.h5`, new Uint8Array([0x89, 0x48, 0x44, 0x46]));
    const err = await assertRejects(
      () => loadCheckpoint(h5, { head: "none" }),
      Error,
      "tf_model.h5: a Keras HDF5 file",
    );
    assert(err.message.includes("pytorch_model.bin") && err.message.includes("model.safetensors"), err.message);
  },
});
