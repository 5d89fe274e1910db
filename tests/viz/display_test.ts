import { assert, assertEquals, assertThrows } from "../shared.ts";
import {
  createProgress,
  escapeHtml,
  flushOutput,
  formatCell,
  formatDuration,
  htmlToText,
  iopubBytesInFlight,
  isNotebook,
  tableHtml,
  tableText,
} from "../../lib/viz/display.ts";

Deno.test("isNotebook: false outside the Jupyter kernel (where reading Deno.jupyter throws)", () => {
  assertEquals(isNotebook(), false);
});

Deno.test("escapeHtml: all five special characters", () => {
  assertEquals(
    escapeHtml(`<a href="x">Tom & 'Jerry'</a>`),
    "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;",
  );
  assertEquals(escapeHtml(42), "42");
  assertEquals(htmlToText(escapeHtml("<b> & </b>")), "<b> & </b>");
});

Deno.test("formatCell: integers, floats, tiny/huge numbers, arrays, missing values", () => {
  assertEquals(formatCell(3), "3");
  assertEquals(formatCell(0.123456), "0.1235");
  assertEquals(formatCell(2e-5), "2.000e-5");
  assertEquals(formatCell(0.5, 2), "0.5");
  assertEquals(formatCell([1, 0.25]), "1 0.25");
  assertEquals(formatCell(undefined), "");
  assertEquals(formatCell(NaN), "NaN");
});

Deno.test("tableHtml: escapes every cell, caption and header; right-aligns numeric columns", () => {
  const html = tableHtml([{ "text<": "<script>x</script>", n: 1 }, { "text<": "a & b", n: 22 }], { caption: "A<B" });
  assert(!html.includes("<script>"), html);
  assert(html.includes("&lt;script&gt;x&lt;/script&gt;"));
  assert(html.includes("<caption") && html.includes("A&lt;B"));
  assert(html.includes('<th style="text-align:left;padding:2px 8px">text&lt;</th>'));
  assert(html.includes('<td style="text-align:right;padding:2px 8px">22</td>'));
  assert(html.includes('<td style="text-align:left;padding:2px 8px">a &amp; b</td>'));
});

Deno.test("tableText: aligned columns, numbers right-aligned, long text cut, maxRows note", () => {
  const rows = [["short", 1], ["a much longer text", 123]];
  const text = tableText(rows, { columns: ["text", "n"], maxTextWidth: 10, caption: "T" });
  assertEquals(text.split("\n"), [
    "T",
    "text          n",
    "----------  ---",
    "short         1",
    "a much lo…  123",
  ]);
  const limited = tableText([{ a: 1 }, { a: 2 }, { a: 3 }], { maxRows: 1 });
  assertEquals(limited.split("\n"), ["a", "-", "1", "… 2 more rows"]);
  assertEquals(tableText([]), "\n");
});

Deno.test("formatDuration", () => {
  assertEquals(formatDuration(5), "0:05");
  assertEquals(formatDuration(125), "2:05");
  assertEquals(formatDuration(3725), "1:02:05");
  assertEquals(formatDuration(NaN), "?");
});

Deno.test("createProgress (tty): one \\r-redrawn line, rate-limited, final state drawn with a newline", async () => {
  let t = 0;
  const out: string[] = [];
  const p = createProgress({
    total: 4,
    label: "convert",
    mode: "tty",
    barWidth: 4,
    minIntervalMs: 100,
    write: (s) => out.push(s),
    now: () => t,
  });
  await p.update({ step: 1, loss: 0.5 }); // drawn (first)
  t = 50;
  await p.update({ step: 2 }); // skipped: within 100 ms
  t = 200;
  await p.update({ step: 3, lr: 2e-5 }); // drawn
  await p.done({ step: 4 }); // always drawn
  assertEquals(out.length, 3);
  assert(out.every((s) => s.startsWith("\r\x1b[2K")));
  assertEquals(out[0], "\r\x1b[2Kconvert █░░░  25%  step 1/4  loss 0.5000");
  assertEquals(out[1], "\r\x1b[2Kconvert ███░  75%  step 3/4  loss 0.5000  lr 2.00e-5");
  assertEquals(out[2], "\r\x1b[2Kconvert ████ 100%  step 4/4  loss 0.5000  lr 2.00e-5\n");
  await p.update({ step: 5 }); // ignored after done
  assertEquals(out.length, 3);
});

Deno.test("createProgress (lines): a line per 10% or per interval, not per update", async () => {
  let t = 0;
  const out: string[] = [];
  const p = createProgress({
    total: 100,
    mode: "lines",
    lineIntervalMs: 1000,
    write: (s) => out.push(s),
    now: () => t,
  });
  for (let done = 1; done <= 95; done++) await p.update({ done, examplesPerSec: 10, etaSeconds: 100 - done });
  assertEquals(out.length, 10); // at 1%, then 10%, 20%, … 90% (time never advances)
  assert(out[9].includes(" 90/100"), out[9]);
  t = 5000;
  await p.update({ done: 95, etaSeconds: 4 });
  assertEquals(out.length, 11); // the interval elapsed
  t = 5001;
  await p.update({ done: 95, etaSeconds: 4 });
  assertEquals(out.length, 11); // nothing new to say
  await p.done({ done: 100, etaSeconds: 0 });
  assertEquals(out.length, 12);
  assert(out.every((s) => s.endsWith("\n") && !s.includes("\r")));
  assert(out[11].includes("100/100") && out[11].includes("10.0 ex/s") && out[11].includes("ETA 0:00"), out[11]);
});

Deno.test("createProgress: extra fields are shown; bad total is an error", async () => {
  const out: string[] = [];
  const p = createProgress({ total: 2, mode: "lines", write: (s) => out.push(s) });
  await p.done({ step: 2, accuracy: 0.91234, split: "dev" });
  assert(out[0].includes("accuracy 0.9123") && out[0].includes("split dev"), out[0]);
  assertThrows(() => createProgress({ total: NaN }), Error, "total");
});

Deno.test("iopubBytesInFlight: the kernel's send queue plus the client's receive queue of established connections", () => {
  // Lines as in /proc/net/tcp: the listening socket (st 0A) and both ends of one loopback connection to :AA01.
  const table = [
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
    "   0: 0100007F:AA01 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0",
    "   1: 0100007F:AA01 0100007F:DD1E 01 00016193:00000000 01:00000014 00000000     0        0 2 1 0 20 4 30 10 -1",
    "   2: 0100007F:DD1E 0100007F:AA01 01 00000000:00015000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1",
    "   3: 0100007F:1F90 0100007F:DD1F 01 00000400:00000000 00:00000000 00000000     0        0 4 1 0 20 4 30 10 -1",
  ].join("\n");
  assertEquals(iopubBytesInFlight(0xAA01, [table]), 0x16193 + 0x15000);
  assertEquals(iopubBytesInFlight(0x1F90, [table]), 0x400);
  assertEquals(iopubBytesInFlight(0x1234, [table]), 0);
});

Deno.test("flushOutput: outside a notebook it only waits a timer turn", async () => {
  const started = performance.now();
  await flushOutput();
  assert(performance.now() - started < 1000);
});
