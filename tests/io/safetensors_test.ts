import { assert, assertEquals, assertThrows, HAVE_SHARED, SHARED } from "../shared.ts";
import {
  bf16ToFloat32,
  type DType,
  f16ToFloat32,
  f32,
  float32ToBf16,
  float32ToF16,
  fromFloat32,
  i32,
  i64,
  parseSafetensors,
  readSafetensors,
  serializeSafetensors,
  type TensorEntry,
  toFloat32,
  writeSafetensors,
} from "../../lib/io/safetensors.ts";

const TINY_MODEL =
  `${SHARED}/data/models/tiny-random-BertForSequenceClassification.FALLBACK-RANDOM-WEIGHTS/model.safetensors`;

/** Builds a file by hand from a header (object or raw text) and a data buffer, without the writer's checks. */
function rawFile(header: unknown, buffer: Uint8Array = new Uint8Array(0)): Uint8Array {
  const text = typeof header === "string" ? header : JSON.stringify(header);
  const h = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + h.length + buffer.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(buffer, 8 + h.length);
  return out;
}

function allDTypes(): Record<string, TensorEntry> {
  return {
    f32: { dtype: "F32", shape: [2, 3], data: new Float32Array([1.5, -2, 0, 3.25, -0, 1e30]) },
    f16: { dtype: "F16", shape: [3], data: new Uint16Array([0x3c00, 0x8001, 0x7c00]) },
    bf16: { dtype: "BF16", shape: [1, 2], data: new Uint16Array([0x3f80, 0xc000]) },
    i32: { dtype: "I32", shape: [4], data: new Int32Array([0, -1, 2147483647, -2147483648]) },
    i64: { dtype: "I64", shape: [2], data: new BigInt64Array([-(2n ** 63n), 2n ** 62n + 7n]) },
    u8: { dtype: "U8", shape: [3], data: new Uint8Array([0, 128, 255]) },
    bool: { dtype: "BOOL", shape: [2, 1], data: new Uint8Array([1, 0]) },
    scalar: { dtype: "F32", shape: [], data: new Float32Array([42]) },
    empty: { dtype: "F32", shape: [0, 5], data: new Float32Array(0) },
  };
}

function assertSameTensors(actual: Record<string, TensorEntry>, expected: Record<string, TensorEntry>): void {
  assertEquals(Object.keys(actual).sort(), Object.keys(expected).sort());
  for (const [name, e] of Object.entries(expected)) {
    const a = actual[name];
    assertEquals(a.dtype, e.dtype, name);
    assertEquals(a.shape, e.shape, name);
    assertEquals(a.data.constructor, e.data.constructor, name);
    // Compare the raw bytes: exact, and NaN/-0 safe.
    assertEquals(
      new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength),
      new Uint8Array(e.data.buffer, e.data.byteOffset, e.data.byteLength),
      name,
    );
  }
}

Deno.test("safetensors: round trip of every dtype, scalars and empty tensors, with metadata", () => {
  const tensors = allDTypes();
  const bytes = serializeSafetensors(tensors, { format: "pt", note: "héllo ✓" });
  const back = parseSafetensors(bytes, "mem");
  assertSameTensors(back.tensors, tensors);
  assertEquals(back.metadata, { format: "pt", note: "héllo ✓" });
  // header length is a multiple of 8, so the buffer starts 8-byte aligned
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assertEquals(n % 8, 0);
});

Deno.test("safetensors: byte-exact output for a hand-built file", () => {
  // Header worked out by hand: 130 characters of JSON, padded with 6 spaces to 136 = 0x88 bytes.
  const header = '{"__metadata__":{"k":"v"},' +
    '"a":{"dtype":"I32","shape":[],"data_offsets":[0,4]},' +
    '"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}' + "      ";
  const expected = new Uint8Array([
    0x88,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    ...new TextEncoder().encode(header),
    0xfe,
    0xff,
    0xff,
    0xff, // -2 as little-endian i32
    7,
    8,
  ]);
  assertEquals(expected.length, 150);
  // Keys given out of order: the writer sorts them.
  const bytes = serializeSafetensors(
    { b: { dtype: "U8", shape: [2], data: new Uint8Array([7, 8]) }, a: i32([], new Int32Array([-2])) },
    { k: "v" },
  );
  assertEquals(bytes, expected);
  // No metadata → no __metadata__ key at all.
  const plain = new TextDecoder().decode(serializeSafetensors({ a: i32([1], new Int32Array([1])) }));
  assert(!plain.includes("__metadata__"));
});

Deno.test("safetensors: aligned tensors are views, misaligned ones are copied", () => {
  const tensors = allDTypes();
  const bytes = serializeSafetensors(tensors);
  const aligned = parseSafetensors(bytes);
  assert(aligned.tensors.f32.data.buffer === bytes.buffer, "aligned F32 should be a view");
  // In sorted-key order "i64" starts at byte 52 of the buffer, not a multiple of 8: it must be a copy.
  assert(aligned.tensors.i64.data.buffer !== bytes.buffer, "misaligned I64 must be copied");
  const only64 = serializeSafetensors({ x: i64([2], new BigInt64Array([1n, 2n])) });
  assert(parseSafetensors(only64).tensors.x.data.buffer === only64.buffer, "aligned I64 should be a view");
  // The same file starting at an odd byte offset inside a bigger buffer.
  const big = new Uint8Array(bytes.length + 3);
  big.set(bytes, 1);
  const shifted = parseSafetensors(big.subarray(1, 1 + bytes.length));
  assertSameTensors(shifted.tensors, tensors);
  assert(shifted.tensors.f32.data.buffer !== big.buffer, "misaligned F32 must be copied");
  assert(shifted.tensors.u8.data.buffer === big.buffer, "U8 is always aligned");
});

Deno.test("safetensors: F16 and BF16 decode hand-worked bit patterns", () => {
  const f16: [number, number][] = [
    [0x3c00, 1],
    [0xc000, -2],
    [0x3555, 0.333251953125],
    [0x7bff, 65504],
    [0x0001, 2 ** -24], // smallest subnormal
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x0400, 2 ** -14], // smallest normal
    [0x0000, 0],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ];
  for (const [bits, value] of f16) assertEquals(f16ToFloat32(bits), value, `F16 0x${bits.toString(16)}`);
  assert(Object.is(f16ToFloat32(0x8000), -0), "F16 0x8000 is -0");
  assert(Number.isNaN(f16ToFloat32(0x7e00)) && Number.isNaN(f16ToFloat32(0x7c01)), "F16 NaN");

  const bf16: [number, number][] = [
    [0x3f80, 1],
    [0xc000, -2],
    [0x4049, 3.140625],
    [0x7f7f, 3.3895313892515355e38], // largest finite
    [0x0001, 2 ** -133], // smallest subnormal
    [0x0080, 2 ** -126], // smallest normal
    [0x7f80, Infinity],
    [0xff80, -Infinity],
  ];
  for (const [bits, value] of bf16) assertEquals(bf16ToFloat32(bits), value, `BF16 0x${bits.toString(16)}`);
  assert(Object.is(bf16ToFloat32(0x8000), -0), "BF16 0x8000 is -0");
  assert(Number.isNaN(bf16ToFloat32(0x7fc0)), "BF16 NaN");

  // toFloat32 over whole tensors agrees with the scalar decoders.
  const f16Entry: TensorEntry = { dtype: "F16", shape: [f16.length], data: new Uint16Array(f16.map(([b]) => b)) };
  assertEquals(Array.from(toFloat32(f16Entry)), f16.map(([, v]) => Math.fround(v)));
  const bfEntry: TensorEntry = { dtype: "BF16", shape: [bf16.length], data: new Uint16Array(bf16.map(([b]) => b)) };
  assertEquals(Array.from(toFloat32(bfEntry)), bf16.map(([, v]) => Math.fround(v)));
});

Deno.test("safetensors: F16/BF16 encoding rounds to nearest even", () => {
  assertEquals(float32ToF16(1), 0x3c00);
  assertEquals(float32ToF16(1 / 3), 0x3555);
  assertEquals(float32ToF16(65504), 0x7bff);
  assertEquals(float32ToF16(65520), 0x7c00); // halfway to 65536 → even → inf
  assertEquals(float32ToF16(65519), 0x7bff);
  assertEquals(float32ToF16(2 ** -24), 0x0001);
  assertEquals(float32ToF16(2 ** -25), 0x0000); // tie → even (0)
  assertEquals(float32ToF16(1.5 * 2 ** -25), 0x0001);
  assertEquals(float32ToF16(3 * 2 ** -25), 0x0002); // 1.5 ulp → tie → even (2)
  assertEquals(float32ToF16(1 + 2 ** -11), 0x3c00); // tie → even
  assertEquals(float32ToF16(1 + 3 * 2 ** -11), 0x3c02); // tie → even (up)
  assertEquals(float32ToF16(-0), 0x8000);
  assertEquals(float32ToF16(-Infinity), 0xfc00);
  assertEquals(float32ToF16(NaN) & 0x7c00, 0x7c00);
  assert((float32ToF16(NaN) & 0x3ff) !== 0);
  assertEquals(float32ToBf16(1), 0x3f80);
  assertEquals(float32ToBf16(1 / 3), 0x3eab); // 0x3eaaaaab rounds up
  assertEquals(float32ToBf16(1 + 2 ** -8), 0x3f80); // tie → even
  assertEquals(float32ToBf16(1 + 3 * 2 ** -8), 0x3f82); // tie → even (up)
  assertEquals(float32ToBf16(3.4e38), 0x7f80); // rounds past the largest finite → inf
  assert(Number.isNaN(bf16ToFloat32(float32ToBf16(NaN))));
  // every finite F16 value survives decode → encode
  for (let bits = 0; bits < 0x10000; bits++) {
    if ((bits & 0x7c00) === 0x7c00) continue;
    if (float32ToF16(f16ToFloat32(bits)) !== bits) throw new Error(`F16 0x${bits.toString(16)} does not round-trip`);
  }
  const entry = fromFloat32("F16", [2], new Float32Array([1, -2]));
  assertEquals(Array.from(entry.data as Uint16Array), [0x3c00, 0xc000]);
});

Deno.test("safetensors: toFloat32 converts integer dtypes numerically", () => {
  assertEquals(Array.from(toFloat32(i32([3], new Int32Array([-5, 0, 7])))), [-5, 0, 7]);
  assertEquals(Array.from(toFloat32(i64([2], new BigInt64Array([-3n, 511n])))), [-3, 511]);
  assertEquals(Array.from(toFloat32({ dtype: "U8", shape: [2], data: new Uint8Array([0, 255]) })), [0, 255]);
  assertEquals(Array.from(toFloat32({ dtype: "BOOL", shape: [2], data: new Uint8Array([1, 0]) })), [1, 0]);
  const x = new Float32Array([1, 2]);
  assert(toFloat32(f32([2], x)) === x, "F32 is returned as is");
});

Deno.test("safetensors: writeSafetensors/readSafetensors via a file, atomically", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/sub/t.safetensors`;
    await writeSafetensors(path, allDTypes(), { a: "1" });
    const back = await readSafetensors(path);
    assertSameTensors(back.tensors, allDTypes());
    assertEquals(back.metadata, { a: "1" });
    const names = [];
    for await (const e of Deno.readDir(`${dir}/sub`)) names.push(e.name);
    assertEquals(names, ["t.safetensors"]); // no temporary left behind
    const err = await readSafetensors(`${dir}/missing.safetensors`).catch((e) => e as Error);
    assert(err instanceof Error && err.message.includes(`${dir}/missing.safetensors`), String(err));
    const bad = await writeSafetensors(path, { x: f32([2], new Float32Array(2)) }, {
      n: 3 as unknown as string,
    }).catch((e) => e as Error);
    assert(bad instanceof Error && bad.message.includes(path) && bad.message.includes('"n" must be a string'));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "safetensors: reads the HF tiny BERT checkpoint and re-serialises it identically",
  ignore: !HAVE_SHARED,
  fn: async () => {
    const file = await readSafetensors(TINY_MODEL);
    const names = Object.keys(file.tensors);
    assertEquals(names.length, 90);
    assertEquals(file.metadata, { format: "pt" });
    const dtypes = names.map((n) => file.tensors[n].dtype);
    assertEquals(dtypes.filter((d) => d === "F32").length, 89);
    const pos = file.tensors["bert.embeddings.position_ids"];
    assertEquals(pos.dtype, "I64");
    assertEquals(pos.shape, [1, 512]);
    assertEquals(Array.from(pos.data as BigInt64Array, Number), Array.from({ length: 512 }, (_, i) => i));
    const word = file.tensors["bert.embeddings.word_embeddings.weight"];
    assertEquals(word.shape.length, 2);
    assertEquals((word.data as Float32Array).subarray(0, word.shape[1]).every((v) => v === 0), true); // padding row
    const again = parseSafetensors(serializeSafetensors(file.tensors, file.metadata), "reserialised");
    assertSameTensors(again.tensors, file.tensors);
    assertEquals(again.metadata, file.metadata);
    // Both files lay the tensors out contiguously in sorted-key order, so the data buffers are byte-identical.
    const original = await Deno.readFile(TINY_MODEL);
    const ours = serializeSafetensors(file.tensors, file.metadata);
    const start = (b: Uint8Array) => 8 + Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));
    assertEquals(ours.subarray(start(ours)), original.subarray(start(original)));
  },
});
if (!HAVE_SHARED) console.warn("safetensors_test: ../shared is absent; skipping the real-checkpoint test");

// ---- malformed files: one test per kind, each asserting the message names the file, tensor and problem ----

function assertParseError(bytes: Uint8Array, ...needles: string[]): void {
  const err = assertThrows(() => parseSafetensors(bytes, "bad.safetensors"), Error);
  assert(err.message.startsWith("bad.safetensors: "), err.message);
  for (const n of needles) assert(err.message.includes(n), `"${err.message}" should mention "${n}"`);
}

const ok = (dtype: DType, shape: number[], begin: number, end: number) => ({
  dtype,
  shape,
  data_offsets: [begin, end],
});

Deno.test("safetensors malformed: shorter than the 8-byte length", () => {
  assertParseError(new Uint8Array(5), "too short");
});

Deno.test("safetensors malformed: header length larger than the file", () => {
  const bytes = rawFile({ a: ok("U8", [1], 0, 1) }, new Uint8Array(1));
  new DataView(bytes.buffer).setBigUint64(0, BigInt(bytes.length), true);
  assertParseError(bytes, "header length", "larger than the rest of the file");
  new DataView(bytes.buffer).setBigUint64(0, 2n ** 63n, true);
  assertParseError(bytes, "header length");
});

Deno.test("safetensors malformed: header is not JSON / not an object / not UTF-8", () => {
  assertParseError(rawFile('{"a": {"dtype": "U8",'), "not valid JSON");
  assertParseError(rawFile("[1, 2]"), "must be a JSON object");
  const bytes = rawFile("{}      ");
  bytes[9] = 0xff;
  assertParseError(bytes, "UTF-8");
});

Deno.test("safetensors malformed: unknown dtype", () => {
  assertParseError(rawFile({ w: ok("F64" as DType, [1], 0, 8) }, new Uint8Array(8)), 'tensor "w"', '"F64"', "dtype");
});

Deno.test("safetensors malformed: shape × dtype size differs from the byte length", () => {
  assertParseError(rawFile({ w: ok("F32", [2, 2], 0, 12) }, new Uint8Array(12)), 'tensor "w"', "needs 16 bytes", "12");
});

Deno.test("safetensors malformed: bad shapes (negative, fractional, not an array)", () => {
  assertParseError(rawFile({ w: ok("F32", [-1], 0, 0) }), 'tensor "w"', "invalid dimension -1");
  assertParseError(rawFile({ w: ok("F32", [1.5], 0, 4) }, new Uint8Array(4)), 'tensor "w"', "invalid dimension 1.5");
  assertParseError(rawFile({ w: { dtype: "F32", shape: 3, data_offsets: [0, 12] } }), 'tensor "w"', "shape must be");
});

Deno.test("safetensors malformed: offsets out of range or reversed", () => {
  assertParseError(rawFile({ w: ok("U8", [4], 0, 4) }, new Uint8Array(3)), 'tensor "w"', "past the end", "3 bytes");
  assertParseError(rawFile({ w: ok("U8", [0], 2, 1) }, new Uint8Array(2)), 'tensor "w"', "begin after end");
  assertParseError(rawFile({ w: { dtype: "U8", shape: [1], data_offsets: [0] } }), 'tensor "w"', "data_offsets");
  assertParseError(rawFile({ w: { dtype: "U8", shape: [1], data_offsets: [-1, 0] } }), 'tensor "w"', "data_offsets");
});

Deno.test("safetensors malformed: overlapping tensors", () => {
  const bytes = rawFile({ a: ok("U8", [4], 0, 4), b: ok("U8", [4], 2, 6) }, new Uint8Array(6));
  assertParseError(bytes, 'tensor "b"', "overlaps", '"a"');
});

Deno.test("safetensors malformed: gap between tensors, or at the start", () => {
  assertParseError(
    rawFile({ a: ok("U8", [2], 0, 2), b: ok("U8", [2], 3, 5) }, new Uint8Array(5)),
    "gap",
    '"b"',
    "[2, 3)",
  );
  assertParseError(rawFile({ a: ok("U8", [2], 1, 3) }, new Uint8Array(3)), "gap", '"a"');
});

Deno.test("safetensors malformed: trailing bytes that belong to no tensor", () => {
  assertParseError(rawFile({ a: ok("U8", [2], 0, 2) }, new Uint8Array(5)), "3 trailing bytes");
});

Deno.test("safetensors malformed: metadata that is not string → string", () => {
  assertParseError(rawFile({ __metadata__: { n: 3 } }), "__metadata__", '"n" must be a string');
  assertParseError(rawFile({ __metadata__: ["x"] }), "__metadata__", "must be an object");
});

Deno.test("safetensors: the writer rejects inconsistent tensors and non-string metadata", () => {
  const msg = (f: () => unknown) => assertThrows(f, Error).message;
  assert(
    msg(() => serializeSafetensors({ w: f32([2], new Float32Array(2)) }, { x: 1 as unknown as string }))
      .includes('"x" must be a string'),
  );
  assert(
    msg(() => serializeSafetensors({ w: { dtype: "F32", shape: [2], data: new Int32Array(2) } }))
      .includes('tensor "w": dtype F32 needs its data in a Float32Array, got Int32Array'),
  );
  assert(
    msg(() => serializeSafetensors({ w: { dtype: "I32", shape: [3], data: new Int32Array(2) } }))
      .includes('tensor "w": shape [3] has 3 elements but the data hold 2'),
  );
  assert(
    msg(() => serializeSafetensors({ w: { dtype: "X" as DType, shape: [], data: new Int32Array(1) } }))
      .includes("unknown dtype"),
  );
  assert(msg(() => serializeSafetensors({ __metadata__: i32([], new Int32Array(1)) })).includes("reserved"));
  assert(msg(() => f32([2, 2], new Float32Array(3))).includes("4 elements"));
});
