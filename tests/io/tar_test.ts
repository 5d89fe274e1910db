/** The tar.gz reader, against archives made by the system `tar`, and its errors on damaged or truncated input. */
import { tarEntries, tarGzEntries } from "../../lib/io/tar.ts";
import { assert, assertEquals, assertRejects } from "../shared.ts";

async function haveTar(): Promise<boolean> {
  try {
    return (await new Deno.Command("tar", { args: ["--version"], stdout: "null", stderr: "null" }).output()).success;
  } catch {
    return false;
  }
}
const HAVE_TAR = await haveTar();
if (!HAVE_TAR) console.warn("warning: no system `tar`: the tar reader tests against real archives are skipped");

Deno.test({
  name: "tarEntries: reads archives written by the system tar (ustar prefix, GNU long names, pax)",
  ignore: !HAVE_TAR,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const long = `${"d".repeat(60)}/${"e".repeat(70)}/file_with_a_long_name.txt`; // > 100 bytes
      await Deno.mkdir(`${dir}/src/${long.replace(/\/[^/]+$/, "")}`, { recursive: true });
      await Deno.mkdir(`${dir}/src/sub`, { recursive: true });
      const big = "x".repeat(1500) + "end"; // spans several 512-byte blocks
      const files: Record<string, string> = {
        "a.txt": "hello",
        "sub/b.txt": big,
        "sub/empty.txt": "",
        [long]: "long name ok ü",
      };
      for (const [name, text] of Object.entries(files)) await Deno.writeTextFile(`${dir}/src/${name}`, text);
      for (const format of ["gnu", "posix", "ustar"]) {
        const names = format === "ustar" ? Object.keys(files).filter((n) => n !== long) : Object.keys(files);
        const out = await new Deno.Command("tar", {
          args: ["--format", format, "-czf", `${dir}/t.tar.gz`, "-C", `${dir}/src`, ...names],
          stderr: "piped",
        }).output();
        assert(out.success, new TextDecoder().decode(out.stderr));
        const got: Record<string, string> = {};
        const listed: string[] = [];
        for await (const e of tarGzEntries(`${dir}/t.tar.gz`, { want: (n) => n !== "sub/empty.txt" })) {
          listed.push(e.name);
          if (e.data) got[e.name] = new TextDecoder().decode(e.data);
          else assertEquals(e.size, 0);
        }
        assertEquals(listed.sort(), names.sort(), format);
        assertEquals(got, Object.fromEntries(names.filter((n) => n !== "sub/empty.txt").map((n) => [n, files[n]])));
      }
      // Leaving the loop early cancels the stream (no leaked file handle: Deno's test sanitizer checks).
      for await (const e of tarGzEntries(`${dir}/t.tar.gz`)) {
        assert(e.name.length > 0);
        break;
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("tarEntries: a damaged header or a truncated archive is a clear error", async () => {
  const stream = (bytes: Uint8Array) => ReadableStream.from([bytes]);
  const notTar = new Uint8Array(1024).fill(65);
  await assertRejects(
    async () => {
      for await (const _ of tarEntries(stream(notTar), { source: "x.tar" })) { /* drain */ }
    },
    Error,
    "x.tar: not a tar archive, or damaged: bad header checksum at byte 0",
  );
  // A valid header announcing 1000 bytes, followed by only 100.
  const h = new Uint8Array(512);
  const put = (s: string, at: number) => h.set(new TextEncoder().encode(s), at);
  put("f.txt", 0);
  put("0000644\0", 100);
  put("00000001750\0", 124); // 1000 in octal
  put("0", 156);
  put("        ", 148);
  const sum = h.reduce((a, b) => a + b, 0);
  put(sum.toString(8).padStart(6, "0") + "\0 ", 148);
  const truncated = new Uint8Array(612);
  truncated.set(h);
  await assertRejects(
    async () => {
      for await (const _ of tarEntries(stream(truncated), { source: "t.tar", want: () => true })) { /* drain */ }
    },
    Error,
    "t.tar: f.txt: the archive ends early",
  );
});
