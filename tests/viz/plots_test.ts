import { assert, assertEquals, assertThrows } from "../shared.ts";
import { MAX_DISPLAY_CHARS } from "../../lib/viz/display.ts";
import {
  barFigure,
  confusionMatrixFigure,
  createLiveLineChart,
  ema,
  heatmapFigure,
  histogramBins,
  histogramFigure,
  lineFigure,
  lrScheduleFigure,
  plotBundle,
  plotDivHtml,
  plotlyJs,
  plotlyLoaderBundles,
  prFigure,
  rocFigure,
  savePlotHtml,
  scriptJson,
} from "../../lib/viz/plots.ts";

function assertStringIncludes(actual: string, expected: string): void {
  assert(
    actual.includes(expected),
    `expected ${JSON.stringify(actual.slice(0, 200))}… to include ${JSON.stringify(expected)}`,
  );
}

Deno.test("histogramBins: one bin per integer for small integer ranges (hand-worked)", () => {
  // lengths 3,3,4,7 -> bins [3,4) [4,5) [5,6) [6,7) [7,8) with counts 2,1,0,0,1
  const { edges, counts } = histogramBins([3, 3, 4, 7]);
  assertEquals(edges, [3, 4, 5, 6, 7, 8]);
  assertEquals(counts, [2, 1, 0, 0, 1]);
});

Deno.test("histogramBins: explicit bin size and start; half-open bins; NaN ignored", () => {
  // size 5 from 0: [0,5) gets 0,4.9 ; [5,10) gets 5 ; [10,15) gets 10 (right edge of [5,10) is open)
  const { edges, counts } = histogramBins([0, 4.9, 5, 10, NaN], { binSize: 5, start: 0 });
  assertEquals(edges, [0, 5, 10, 15]);
  assertEquals(counts, [2, 1, 1]);
  assertThrows(() => histogramBins([1], { binSize: 0 }), Error, "binSize");
  assertThrows(() => histogramBins([1], { start: 2 }), Error, "start 2");
  assertEquals(histogramBins([]), { edges: [], counts: [] });
});

Deno.test("histogramBins: automatic width for a wide range keeps at most maxBins bins and counts everything", () => {
  const values = Array.from({ length: 1000 }, (_, i) => (i * 7919) % 513); // integers 0..512
  const { edges, counts } = histogramBins(values, { maxBins: 20 });
  assert(counts.length <= 21, `${counts.length} bins`);
  assertEquals(counts.reduce((a, b) => a + b, 0), 1000);
  const width = edges[1] - edges[0];
  assertEquals(width, 50); // 512 / 20 = 25.6 -> nice step 50
  assert(edges[0] <= 0 && edges[edges.length - 1] > 512);
});

Deno.test("histogramFigure: bars at bin centres with the counts, and a marker line", () => {
  const fig = histogramFigure([3, 3, 4, 7], { title: "lengths", markers: [{ x: 6, label: "max" }] });
  const bar = fig.data[0];
  assertEquals(bar.type, "bar");
  assertEquals(bar.x, [3, 4, 5, 6, 7]); // integer data: each bar centred on its integer
  assertEquals(bar.y, [2, 1, 0, 0, 1]);
  assertEquals(bar.text, ["3", "4", "5", "6", "7"]);
  const real = histogramFigure([0.5, 1.5, 1.7], { binSize: 1, start: 0 });
  assertEquals(real.data[0].x, [0.5, 1.5]); // real data: bin centres
  assertEquals(real.data[0].text, ["[0, 1)", "[1, 2)"]);
  const wide = histogramFigure([0, 4, 5, 9], { binSize: 5, start: 0 });
  assertEquals(wide.data[0].x, [2, 7]); // integers 0-4 and 5-9
  assertEquals(wide.data[0].text, ["0–4", "5–9"]);
  assertEquals((fig.layout.shapes as { x0: number }[])[0].x0, 6);
  assertEquals((fig.layout.title as { text: string }).text, "lengths");
});

Deno.test("barFigure: labels and values; mismatched lengths are an error", () => {
  const fig = barFigure({ labels: ["negative", "positive"], values: [40, 60] });
  assertEquals(fig.data[0].x, ["negative", "positive"]);
  assertEquals(fig.data[0].y, [40, 60]);
  assertThrows(() => barFigure({ labels: ["a"], values: [1, 2] }), Error, "1 labels but 2 values");
});

Deno.test("lineFigure: series, secondary axis, length check", () => {
  const fig = lineFigure({
    series: [{ name: "loss", x: [1, 2], y: [0.7, 0.5] }, { name: "lr", x: [1, 2], y: [1e-5, 2e-5], secondaryY: true }],
    logY: true,
  });
  assertEquals(fig.data.map((t) => t.name), ["loss", "lr"]);
  assertEquals(fig.data[1].yaxis, "y2");
  assertEquals((fig.layout.yaxis as { type: string }).type, "log");
  assert(fig.layout.yaxis2 !== undefined);
  assertThrows(() => lineFigure({ series: [{ name: "bad", x: [1], y: [] }] }), Error, `series "bad"`);
});

Deno.test("ema: bias-corrected smoothing (hand-worked)", () => {
  // alpha 0.5: s1 = 0.5*1 / 0.5 = 1 ; s2 = (0.25 + 0.5*3) / 0.75 = 7/3
  const out = ema([1, 3], 0.5);
  assertEquals(out[0], 1);
  assert(Math.abs(out[1] - 7 / 3) < 1e-12);
});

Deno.test("lrScheduleFigure: samples the schedule up to the last step", () => {
  const fig = lrScheduleFigure({ lr: (s) => s * 2, totalSteps: 10, warmupSteps: 3 });
  assertEquals(fig.data[0].x, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assertEquals(fig.data[0].y, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
  assertEquals((fig.layout.shapes as { x0: number }[])[0].x0, 3);
  const long = lrScheduleFigure({ lr: () => 1, totalSteps: 100_000 });
  const xs = long.data[0].x as number[];
  assert(xs.length <= 502 && xs[xs.length - 1] === 99_999);
});

Deno.test("confusionMatrixFigure: z is the matrix, text shows counts, rows are true labels top-down", () => {
  const matrix = [[5, 1], [2, 7]];
  const fig = confusionMatrixFigure({ matrix, labels: ["neg", "pos"] });
  const t = fig.data[0];
  assertEquals(t.type, "heatmap");
  assertEquals(t.z, matrix);
  assertEquals(t.text, [["5", "1"], ["2", "7"]]);
  assertEquals(t.x, ["neg", "pos"]);
  assertEquals(t.y, ["neg", "pos"]);
  assertEquals((fig.layout.yaxis as { autorange: string }).autorange, "reversed");
  const norm = confusionMatrixFigure({ matrix, labels: ["neg", "pos"], normalize: true });
  assertEquals(norm.data[0].z, [[5 / 6, 1 / 6], [2 / 9, 7 / 9]]);
  assertEquals((norm.data[0].text as string[][])[1][1], "7 (78%)");
  assertThrows(() => confusionMatrixFigure({ matrix: [[1]], labels: ["a", "b"] }), Error, "2×2");
});

Deno.test("heatmapFigure: repeated labels (tokens) stay distinct categories; ragged rows rejected", () => {
  const fig = heatmapFigure({ z: [[1, 0], [0, 1]], x: ["the", "the"], y: ["a", "b"] });
  const x = fig.data[0].x as string[];
  assertEquals(new Set(x).size, 2);
  assertEquals(x[0], "the");
  assertThrows(() => heatmapFigure({ z: [[1, 2], [3]] }), Error, "row 1 has 1 values");
});

Deno.test("rocFigure / prFigure: curve points and legend values", () => {
  const roc = rocFigure({ curves: [{ fpr: [0, 0.5, 1], tpr: [0, 1, 1], auc: 0.75 }] });
  assertEquals(roc.data[0].x, [0, 0.5, 1]);
  assertEquals(roc.data[0].y, [0, 1, 1]);
  assertStringIncludes(String(roc.data[0].name), "AUC 0.750");
  assertEquals(roc.data[1].name, "chance");
  const pr = prFigure({ curves: [{ precision: [0.5, 1, 1], recall: [1, 0.5, 0], ap: 0.8 }], positiveRate: 0.5 });
  assertEquals(pr.data[0].x, [1, 0.5, 0]);
  assertEquals(pr.data[0].y, [0.5, 1, 1]);
  assertEquals(pr.data[1].y, [0.5, 0.5]);
});

Deno.test("scriptJson / plotDivHtml: data cannot break out of the script element", () => {
  const evil = "</script><img src=x onerror=alert(1)>";
  const json = scriptJson({ s: evil, n: NaN, l: "\u2028" });
  assert(!json.includes("</script"), json);
  assert(!json.includes("<img"), json);
  assertEquals(JSON.parse(json), { s: evil, n: null, l: "\u2028" });
  const html = plotDivHtml(barFigure({ labels: [evil], values: [1], title: evil }), { divId: 'a"b' });
  assertEquals(html.split("</script>").length, 2); // only the closing tag of our own script
  assertStringIncludes(html, 'id="a&quot;b"');
});

Deno.test("plotBundle: plotly JSON, HTML fallback and text summary", () => {
  const fig = barFigure({ labels: ["a"], values: [3], title: "T" });
  const b = plotBundle(fig);
  assertEquals((b["application/vnd.plotly.v1+json"] as { data: unknown }).data, fig.data);
  assertStringIncludes(b["text/html"] as string, "Plotly.newPlot");
  assertEquals(b["text/plain"], "[plot] T: bar");
});

Deno.test("plotlyLoaderBundles: small parts that join back into plotly.js, the last one runs it", async () => {
  const bundles = await plotlyLoaderBundles();
  const src = await plotlyJs();
  assert(bundles.length > 1, `${bundles.length} parts`);
  const parts = bundles.map((b, i) => {
    const html = b["text/html"] as string;
    assert(html.length <= MAX_DISPLAY_CHARS, `part ${i}: ${html.length} characters`);
    assertEquals(html.split("</script>").length, 2, `part ${i}: one script, no stray closing tag`);
    const prefix = `__bertPlotlyParts || [])[${i}] = `;
    const start = html.indexOf(prefix);
    assert(start >= 0, `part ${i} does not store its text`);
    const end = html.indexOf(i === bundles.length - 1 ? "; if (!window.Plotly)" : ";</script>", start);
    return JSON.parse(html.slice(start + prefix.length, end)) as string;
  });
  assertEquals(parts.join(""), src);
  assertStringIncludes(bundles.at(-1)!["text/html"] as string, '(0, eval)(p.join(""))');
  assert(!(bundles[0]["text/html"] as string).includes("(0, eval)"), "only the last part runs the joined source");
});

Deno.test("savePlotHtml: standalone page with plotly inlined and the figure data", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/plots/cm.html`;
    await savePlotHtml(path, [
      confusionMatrixFigure({ matrix: [[11, 2], [3, 13]], labels: ["neg", "pos"] }),
      barFigure({ labels: ["x<y"], values: [1] }),
    ]);
    const html = await Deno.readTextFile(path);
    assert(html.startsWith("<!DOCTYPE html>"));
    assertStringIncludes(html, "<title>Confusion matrix</title>");
    assertStringIncludes(html, "plotly.js (cartesian - minified) v"); // the library banner: inlined, no network
    assert(!/<script[^>]+src=/.test(html), "no external scripts");
    assertStringIncludes(html, '"z":[[11,2],[3,13]]');
    assertStringIncludes(html, "x\\u003cy");
    assertEquals(html.match(/class="bert-plot"/g)?.length, 2);
    assertEquals([...Deno.readDirSync(`${dir}/plots`)].length, 1); // no temp file left behind
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("createLiveLineChart: collects points per series outside a notebook", async () => {
  const chart = createLiveLineChart({ series: ["train", "eval"], every: 2 });
  await chart.push("train", 1, 0.9);
  await chart.push("train", 2, 0.8);
  await chart.push("eval", 2, 0.85);
  await chart.done();
  const fig = chart.figure();
  assertEquals(fig.data.map((t) => [t.name, t.x, t.y]), [["train", [1, 2], [0.9, 0.8]], ["eval", [2], [0.85]]]);
});
