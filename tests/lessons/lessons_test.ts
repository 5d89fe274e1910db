import { assert, assertEquals, assertThrows } from "../shared.ts";
import {
  chooseMaxSeqLength,
  lessonLearningRate,
  loadReportRows,
  startingModelHtml,
  startingModelLabel,
} from "../../lib/lessons/lessons.ts";

Deno.test("chooseMaxSeqLength: the 99th percentile rounded up to a multiple of 8, within [8, 512]", () => {
  const lengths = Array.from({ length: 100 }, (_, i) => i + 1); // p99 = 99
  assertEquals(chooseMaxSeqLength(lengths), 104);
  assertEquals(chooseMaxSeqLength(lengths, { percent: 50 }), 56); // p50 = 50
  assertEquals(chooseMaxSeqLength([3, 4, 5]), 8);
  assertEquals(chooseMaxSeqLength([900, 1000]), 512);
  assertEquals(chooseMaxSeqLength([31, 17, 29], { multiple: 1 }), 31);
  assertThrows(() => chooseMaxSeqLength([]), Error, "no lengths");
});

Deno.test("lessonLearningRate: 1e-3 for pre-trained and random tiny models alike", () => {
  for (const kind of ["given", "hub-cache", "hub-download", "shipped"] as const) {
    assertEquals(lessonLearningRate(kind), 1e-3);
  }
  assertEquals(lessonLearningRate("random"), 1e-3);
});

Deno.test("loadReportRows: new, unused and skipped weights, 'none' when empty", () => {
  const rows = loadReportRows({
    missing: [],
    unexpected: ["cls.a", "cls.b"],
    newlyInitialised: ["classifier.weight"],
    ignored: [],
  });
  assertEquals(rows.map((r) => r.names), ["classifier.weight", "cls.a, cls.b", "none"]);
});

Deno.test("startingModelHtml: escapes the notice; label names the source", () => {
  const html = startingModelHtml({ dir: "x", kind: "shipped", why: "a <b> & c", notice: ["1 < 2"] });
  assert(html.includes("a &lt;b&gt; &amp; c") && html.includes("1 &lt; 2"), html);
  assertEquals(startingModelLabel({ kind: "random", why: "" }), "random weights");
  assertEquals(startingModelLabel({ dir: "d", kind: "hub-cache", why: "" }), "Google's BERT-Tiny (hub)");
});
