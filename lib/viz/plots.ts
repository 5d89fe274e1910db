/**
 * Plotly figures for the notebooks and the CLI. The builders are pure functions returning `{ data, layout }`
 * (plain JSON that plotly.js understands); {@linkcode showPlot} displays a figure in a notebook and
 * {@linkcode savePlotHtml} writes it as a standalone HTML page that works offline (plotly.js is inlined from
 * the `plotly.js-cartesian-dist-min` npm package).
 *
 * In a notebook each plot is sent as `application/vnd.plotly.v1+json` (rendered natively by VS Code, nteract
 * and JupyterLab with the plotly extension) plus a `text/html` fallback (a div and a script) for the classic
 * notebook, JupyterLab and nbconvert HTML. The fallback needs plotly.js in the page: {@linkcode loadPlotly}
 * (called from a notebook's set-up cell, or by the first plot) emits it once per kernel session, in small parts,
 * from the 1.4 MB "cartesian" bundle of plotly.js.
 * @module
 */

import { displayBundle, escapeHtml, isNotebook, type MimeBundle } from "./display.ts";
import { writeFileAtomic } from "../io/fsutil.ts";

/** One plotly trace (`{ type: "bar", x, y, ... }`). */
export type Trace = Record<string, unknown>;
/** A plotly layout (`{ title, xaxis, yaxis, ... }`). */
export type Layout = Record<string, unknown>;

/** A plotly figure: what `Plotly.newPlot(div, data, layout)` takes. */
export interface Figure {
  data: Trace[];
  layout: Layout;
}

/** Common options of the builders. */
export interface FigureOptions {
  title?: string;
  xTitle?: string;
  yTitle?: string;
  /** Height in pixels (default: plotly's, 450). */
  height?: number;
  width?: number;
}

function baseLayout(options: FigureOptions, extra: Layout = {}): Layout {
  const layout: Layout = {
    title: { text: options.title ?? "" },
    xaxis: { title: { text: options.xTitle ?? "" } },
    yaxis: { title: { text: options.yTitle ?? "" } },
    margin: { t: 60, r: 20, b: 60, l: 70 },
    ...extra,
  };
  if (options.height !== undefined) layout.height = options.height;
  if (options.width !== undefined) layout.width = options.width;
  return layout;
}

// ---------------------------------------------------------------------------------------------------------------
// Histogram

/** Histogram counts: bin `i` covers the half-open interval `[edges[i], edges[i + 1])`. */
export interface HistogramBins {
  edges: number[];
  counts: number[];
}

/** Options of {@linkcode histogramBins}. */
export interface BinOptions {
  /** Bin width (default: a "nice" width giving at most `maxBins` bins; 1 for small integer ranges). */
  binSize?: number;
  /** Left edge of the first bin (default: the minimum, rounded down to a multiple of the bin size). */
  start?: number;
  /** Upper bound on the number of bins when the width is chosen automatically (default 40). */
  maxBins?: number;
}

function niceStep(raw: number): number {
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

/**
 * Counts `values` into equal-width bins. Non-finite values are ignored. With the default bin size, integer
 * data whose range fits in `maxBins` gets one bin per integer.
 */
export function histogramBins(values: ArrayLike<number>, options: BinOptions = {}): HistogramBins {
  const finite: number[] = [];
  for (let i = 0; i < values.length; i++) if (Number.isFinite(values[i])) finite.push(values[i]);
  if (finite.length === 0) return { edges: [], counts: [] };
  let min = Infinity, max = -Infinity;
  for (const v of finite) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const maxBins = options.maxBins ?? 40;
  let size = options.binSize;
  if (size !== undefined && !(size > 0)) throw new Error(`histogramBins: binSize must be > 0, got ${size}`);
  if (size === undefined) {
    const range = max - min;
    const integers = finite.every(Number.isInteger);
    if (range === 0) size = 1;
    else if (integers && range + 1 <= maxBins) size = 1;
    else size = niceStep(range / maxBins);
    if (integers) size = Math.max(1, Math.ceil(size));
  }
  const start = options.start ?? Math.floor(min / size) * size;
  if (start > min) throw new Error(`histogramBins: start ${start} is above the smallest value ${min}`);
  let n = Math.max(1, Math.floor((max - start) / size) + 1);
  if (start + n * size <= max) n++; // guards against floating-point rounding in the division above
  const counts = new Array<number>(n).fill(0);
  for (const v of finite) {
    const i = Math.min(n - 1, Math.floor((v - start) / size));
    counts[i]++;
  }
  const edges = Array.from({ length: n + 1 }, (_, i) => start + i * size);
  return { edges, counts };
}

/** Options of {@linkcode histogramFigure}. */
export interface HistogramOptions extends FigureOptions, BinOptions {
  /** Name of the trace (legend/hover). */
  name?: string;
  /** Vertical marker lines, e.g. `[{ x: 128, label: "max_seq_length" }]`. */
  markers?: { x: number; label?: string }[];
}

/** A histogram (e.g. of token lengths) as a bar chart of precomputed bins, so the figure data is exact. */
export function histogramFigure(values: ArrayLike<number>, options: HistogramOptions = {}): Figure {
  const { edges, counts } = histogramBins(values, options);
  // Integer data (token counts): bin [a, b) holds a … b-1, so draw it over [a - 0.5, b - 0.5), centred on its
  // integers; a marker at 64.5 then separates "fits in 64" from "longer".
  let integers = true;
  for (let i = 0; i < values.length && integers; i++) {
    integers = !Number.isFinite(values[i]) || Number.isInteger(values[i]);
  }
  const shift = integers && edges.every(Number.isInteger) ? 0.5 : 0;
  const centres = counts.map((_, i) => (edges[i] + edges[i + 1]) / 2 - shift);
  const widths = counts.map((_, i) => edges[i + 1] - edges[i]);
  const text = counts.map((_, i) =>
    shift
      ? (edges[i + 1] - edges[i] === 1 ? `${edges[i]}` : `${edges[i]}–${edges[i + 1] - 1}`)
      : `[${edges[i]}, ${edges[i + 1]})`
  );
  const shapes = (options.markers ?? []).map((m) => ({
    type: "line",
    x0: m.x,
    x1: m.x,
    yref: "paper",
    y0: 0,
    y1: 1,
    line: { color: "#d62728", dash: "dash", width: 2 },
  }));
  const annotations = (options.markers ?? []).filter((m) => m.label).map((m) => ({
    x: m.x,
    yref: "paper",
    y: 1,
    text: m.label,
    showarrow: false,
    xanchor: "left",
    yanchor: "bottom",
    font: { color: "#d62728" },
  }));
  return {
    data: [{
      type: "bar",
      name: options.name ?? "count",
      x: centres,
      y: counts,
      width: widths,
      text,
      hovertemplate: "%{text}: %{y}<extra></extra>",
      textposition: "none",
      marker: { color: "#1f77b4", line: { color: "#ffffff", width: 0.5 } },
    }],
    layout: baseLayout(
      { xTitle: "value", yTitle: "count", ...options },
      { bargap: 0, shapes, annotations },
    ),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Bar, line

/** Options of {@linkcode barFigure}. */
export interface BarOptions extends FigureOptions {
  /** Category names (x axis). */
  labels: string[];
  /** One value per label. */
  values: number[];
  /** Show the values on the bars (default true). */
  showValues?: boolean;
}

/** A bar chart, e.g. label balance (`labels` = class names, `values` = counts). */
export function barFigure(options: BarOptions): Figure {
  if (options.labels.length !== options.values.length) {
    throw new Error(`barFigure: ${options.labels.length} labels but ${options.values.length} values`);
  }
  const trace: Trace = { type: "bar", x: options.labels, y: options.values, marker: { color: "#1f77b4" } };
  if (options.showValues ?? true) {
    trace.text = options.values.map((v) => String(v));
    trace.textposition = "auto";
  }
  return { data: [trace], layout: baseLayout({ yTitle: "count", ...options }) };
}

/** One line of a {@linkcode lineFigure}. */
export interface Series {
  name: string;
  x: number[];
  y: number[];
  /** Plotly mode (default "lines" or "lines+markers" for ≤ 30 points). */
  mode?: string;
  /** Put this series on a second y axis on the right. */
  secondaryY?: boolean;
  dash?: "solid" | "dash" | "dot";
}

/** Options of {@linkcode lineFigure}. */
export interface LineOptions extends FigureOptions {
  series: Series[];
  /** Logarithmic y axis. */
  logY?: boolean;
  /** Title of the secondary y axis. */
  y2Title?: string;
}

/** A line chart of one or more series (loss curves, learning-rate schedules, metrics over steps). */
export function lineFigure(options: LineOptions): Figure {
  const data = options.series.map((s) => {
    if (s.x.length !== s.y.length) {
      throw new Error(`lineFigure: series "${s.name}" has ${s.x.length} x values but ${s.y.length} y values`);
    }
    const t: Trace = {
      type: "scatter",
      name: s.name,
      x: s.x,
      y: s.y,
      mode: s.mode ?? (s.x.length <= 30 ? "lines+markers" : "lines"),
    };
    if (s.secondaryY) t.yaxis = "y2";
    if (s.dash) t.line = { dash: s.dash };
    return t;
  });
  // Legend above the plot, right-aligned, so it never covers the curves or the x-axis title.
  const layout = baseLayout(options, {
    legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom" },
  });
  if (options.logY) (layout.yaxis as Layout).type = "log";
  if (options.series.some((s) => s.secondaryY)) {
    layout.yaxis2 = { title: { text: options.y2Title ?? "" }, overlaying: "y", side: "right", showgrid: false };
    (layout.margin as Layout).r = 70;
  }
  return { data, layout };
}

/** A loss curve: `steps[i]` → `losses[i]`, optionally with a smoothed (EMA) line. */
export function lossCurveFigure(
  options: FigureOptions & { steps: number[]; losses: number[]; smoothing?: number },
): Figure {
  const series: Series[] = [{ name: "loss", x: options.steps, y: options.losses }];
  if (options.smoothing !== undefined && options.smoothing > 0) {
    series.push({ name: `EMA (${options.smoothing})`, x: options.steps, y: ema(options.losses, options.smoothing) });
  }
  return lineFigure({ title: "Training loss", xTitle: "step", yTitle: "loss", ...options, series });
}

/** Exponential moving average with bias correction (TensorBoard-style smoothing): `s = a*s + (1-a)*x`. */
export function ema(values: number[], alpha: number): number[] {
  const out: number[] = [];
  let s = 0;
  let weight = 0;
  for (const v of values) {
    s = alpha * s + (1 - alpha) * v;
    weight = alpha * weight + (1 - alpha);
    out.push(s / weight);
  }
  return out;
}

/** A learning-rate schedule: `lr(step)` for `step = 0 … totalSteps - 1` (or the given steps). */
export function lrScheduleFigure(
  options: FigureOptions & { lr: (step: number) => number; totalSteps: number; warmupSteps?: number },
): Figure {
  const n = Math.max(1, options.totalSteps);
  const stride = Math.max(1, Math.floor(n / 500));
  const x: number[] = [];
  for (let s = 0; s < n; s += stride) x.push(s);
  if (x[x.length - 1] !== n - 1) x.push(n - 1);
  const fig = lineFigure({
    title: "Learning-rate schedule",
    xTitle: "step",
    yTitle: "learning rate",
    ...options,
    series: [{ name: "lr", x, y: x.map((s) => options.lr(s)), mode: "lines" }],
  });
  if (options.warmupSteps) {
    fig.layout.shapes = [{
      type: "line",
      x0: options.warmupSteps,
      x1: options.warmupSteps,
      yref: "paper",
      y0: 0,
      y1: 1,
      line: { color: "#7f7f7f", dash: "dot" },
    }];
    fig.layout.annotations = [{
      x: options.warmupSteps,
      yref: "paper",
      y: 1,
      text: "end of warm-up",
      showarrow: false,
      xanchor: "left",
    }];
  }
  return fig;
}

// ---------------------------------------------------------------------------------------------------------------
// Heatmaps

/** White (low) to dark blue (high); plotly's own "Blues" runs the other way. */
const LIGHT_TO_DARK_BLUE: [number, string][] = [[0, "#f7fbff"], [0.5, "#6baed6"], [1, "#08306b"]];

/** Options of {@linkcode heatmapFigure}. */
export interface HeatmapOptions extends FigureOptions {
  /** Rows of values: `z[row][column]`. */
  z: number[][];
  /** Column labels. */
  x?: string[];
  /** Row labels. */
  y?: string[];
  /** Text written in each cell (default: none). */
  text?: string[][];
  /** A plotly colour scale name ("Viridis") or stops (default: white to dark blue). */
  colorscale?: string | [number, string][];
  /** Put the first row at the top (default true, like a matrix). */
  rowsTopDown?: boolean;
  zmin?: number;
  zmax?: number;
}

/** A heatmap of a matrix with optional cell text. */
export function heatmapFigure(options: HeatmapOptions): Figure {
  const { z } = options;
  const cols = z[0]?.length ?? 0;
  z.forEach((row, i) => {
    if (row.length !== cols) throw new Error(`heatmapFigure: row ${i} has ${row.length} values, expected ${cols}`);
  });
  if (options.x && options.x.length !== cols) {
    throw new Error(`heatmapFigure: ${options.x.length} column labels for ${cols} columns`);
  }
  if (options.y && options.y.length !== z.length) {
    throw new Error(`heatmapFigure: ${options.y.length} row labels for ${z.length} rows`);
  }
  // Labels may repeat (e.g. tokens); plotly merges equal categories, so make them unique with zero-width spaces.
  const unique = (labels: string[]) => {
    const seen = new Map<string, number>();
    return labels.map((l) => {
      const k = seen.get(l) ?? 0;
      seen.set(l, k + 1);
      return k === 0 ? l : l + "\u200b".repeat(k);
    });
  };
  const trace: Trace = {
    type: "heatmap",
    z,
    colorscale: options.colorscale ?? LIGHT_TO_DARK_BLUE,
    hoverongaps: false,
  };
  if (options.x) trace.x = unique(options.x);
  if (options.y) trace.y = unique(options.y);
  if (options.zmin !== undefined) trace.zmin = options.zmin;
  if (options.zmax !== undefined) trace.zmax = options.zmax;
  if (options.text) {
    trace.text = options.text;
    trace.texttemplate = "%{text}";
    trace.hovertemplate = "%{y} → %{x}: %{text}<extra></extra>";
  }
  const layout = baseLayout(options, {});
  (layout.xaxis as Layout).type = "category";
  (layout.yaxis as Layout).type = "category";
  if (options.rowsTopDown ?? true) (layout.yaxis as Layout).autorange = "reversed";
  return { data: [trace], layout };
}

/** Options of {@linkcode confusionMatrixFigure}. */
export interface ConfusionOptions extends FigureOptions {
  /** `matrix[trueLabel][predictedLabel]` = count. */
  matrix: number[][];
  /** Class names, in index order. */
  labels: string[];
  /** Colour by row-normalised rate (recall per class) instead of count; cells still show the counts. */
  normalize?: boolean;
}

/** A confusion matrix heatmap: rows = true label, columns = predicted label, each cell shows its count. */
export function confusionMatrixFigure(options: ConfusionOptions): Figure {
  const { matrix, labels } = options;
  if (matrix.length !== labels.length || matrix.some((r) => r.length !== labels.length)) {
    throw new Error(`confusionMatrixFigure: expected a ${labels.length}×${labels.length} matrix for labels ${labels}`);
  }
  const rowSums = matrix.map((r) => r.reduce((a, b) => a + b, 0));
  const z = options.normalize ? matrix.map((r, i) => r.map((v) => (rowSums[i] ? v / rowSums[i] : 0))) : matrix;
  const text = matrix.map((r, i) =>
    r.map((v) => (options.normalize ? `${v} (${rowSums[i] ? ((100 * v) / rowSums[i]).toFixed(0) : 0}%)` : String(v)))
  );
  return heatmapFigure({
    title: "Confusion matrix",
    xTitle: "predicted",
    yTitle: "true",
    ...options,
    z,
    x: labels,
    y: labels,
    text,
    zmin: 0,
  });
}

/** Options of {@linkcode attentionFigure}. */
export interface AttentionOptions extends FigureOptions {
  /** `weights[query][key]`, e.g. one head of one layer (rows sum to 1). */
  weights: number[][];
  /** The tokens (query and key side). */
  tokens: string[];
}

/** An attention map: which key token (column) each query token (row) attends to. */
export function attentionFigure(options: AttentionOptions): Figure {
  return heatmapFigure({
    title: "Attention",
    xTitle: "key token",
    yTitle: "query token",
    colorscale: "Viridis",
    ...options,
    z: options.weights,
    x: options.tokens,
    y: options.tokens,
    zmin: 0,
  });
}

// ---------------------------------------------------------------------------------------------------------------
// ROC and precision-recall

/** One ROC curve (e.g. `rocCurve()` from lib/eval/metrics.ts) with an optional AUC for the legend. */
export interface RocSeries {
  name?: string;
  fpr: number[];
  tpr: number[];
  auc?: number;
}

/** ROC curves with the chance diagonal. */
export function rocFigure(options: FigureOptions & { curves: RocSeries[] }): Figure {
  const data: Trace[] = options.curves.map((c) => ({
    type: "scatter",
    mode: "lines",
    name: `${c.name ?? "ROC"}${c.auc !== undefined ? ` (AUC ${c.auc.toFixed(3)})` : ""}`,
    x: c.fpr,
    y: c.tpr,
    line: { shape: "linear" },
  }));
  data.push({
    type: "scatter",
    mode: "lines",
    name: "chance",
    x: [0, 1],
    y: [0, 1],
    line: { dash: "dash", color: "#7f7f7f" },
  });
  const layout = baseLayout({
    title: "ROC curve",
    xTitle: "false positive rate",
    yTitle: "true positive rate",
    ...options,
  });
  (layout.xaxis as Layout).range = [0, 1];
  (layout.yaxis as Layout).range = [0, 1.02];
  layout.legend = { x: 0.55, y: 0.05 };
  return { data, layout };
}

/** One precision-recall curve (e.g. `precisionRecallCurve()` from lib/eval/metrics.ts). */
export interface PrSeries {
  name?: string;
  precision: number[];
  recall: number[];
  /** Average precision, shown in the legend. */
  ap?: number;
}

/** Precision-recall curves, with the positive rate as the no-skill line when `positiveRate` is given. */
export function prFigure(options: FigureOptions & { curves: PrSeries[]; positiveRate?: number }): Figure {
  const data: Trace[] = options.curves.map((c) => ({
    type: "scatter",
    mode: "lines",
    name: `${c.name ?? "PR"}${c.ap !== undefined ? ` (AP ${c.ap.toFixed(3)})` : ""}`,
    x: c.recall,
    y: c.precision,
    line: { shape: "hv" },
  }));
  if (options.positiveRate !== undefined) {
    data.push({
      type: "scatter",
      mode: "lines",
      name: "no skill",
      x: [0, 1],
      y: [options.positiveRate, options.positiveRate],
      line: { dash: "dash", color: "#7f7f7f" },
    });
  }
  const layout = baseLayout({ title: "Precision-recall curve", xTitle: "recall", yTitle: "precision", ...options });
  (layout.xaxis as Layout).range = [0, 1];
  (layout.yaxis as Layout).range = [0, 1.02];
  layout.legend = { x: 0.05, y: 0.05 };
  return { data, layout };
}

// ---------------------------------------------------------------------------------------------------------------
// HTML and display

let plotlySource: string | undefined;

/**
 * The plotly.js source text, read once: the "cartesian" partial bundle (`plotly.js-cartesian-dist-min`, 1.4 MB:
 * scatter, bar, heatmap, histogram, box, contour, pie, everything the builders here use) or, if that package is
 * missing, the full `plotly.js-dist-min` (4.9 MB).
 */
export async function plotlyJs(): Promise<string> {
  if (plotlySource === undefined) {
    const candidates = [
      new URL("../../node_modules/plotly.js-cartesian-dist-min/plotly-cartesian.min.js", import.meta.url),
      new URL("../../node_modules/plotly.js-dist-min/plotly.min.js", import.meta.url),
    ];
    const problems: string[] = [];
    for (const url of candidates) {
      try {
        plotlySource = await Deno.readTextFile(url);
        break;
      } catch (err) {
        problems.push(`${url.pathname}: ${(err as Error).message}`);
      }
    }
    if (plotlySource === undefined) {
      throw new Error(`cannot read plotly.js (is node_modules installed? run \`npm ci\`):\n  ${problems.join("\n  ")}`);
    }
  }
  return plotlySource;
}

/** JSON that is safe inside a `<script>` element (`<`, `>`, `&` and line separators escaped). */
export function scriptJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v))
    .replaceAll("<", "\\u003c")
    .replaceAll(">", "\\u003e")
    .replaceAll("&", "\\u0026")
    .replaceAll("\u2028", "\\u2028")
    .replaceAll("\u2029", "\\u2029");
}

/** plotly.js wrapped in a `<script>` element (a stray `</script` in the source is neutralised). */
export async function plotlyScriptTag(): Promise<string> {
  const src = await plotlyJs();
  return `<script type="text/javascript">${src.replaceAll("</script", "<\\/script")}</script>`;
}

let divCounter = 0;

/** A fresh element id for a plot div. */
function newDivId(): string {
  return `bert-plot-${Date.now().toString(36)}-${(++divCounter).toString(36)}`;
}

/** Options of {@linkcode plotDivHtml}. */
export interface PlotDivOptions {
  /** The div's id (default: a fresh unique id). */
  divId?: string;
  /** CSS height of the div when the layout has none (default "450px"). */
  height?: string;
}

/**
 * A `<div>` plus a `<script>` that draws `fig` with `window.Plotly` (waiting up to 10 s for it to appear, then
 * writing a hint into the div). plotly.js itself is not included: see {@linkcode plotlyScriptTag}.
 */
export function plotDivHtml(fig: Figure, options: PlotDivOptions = {}): string {
  const id = options.divId ?? newDivId();
  const height = typeof fig.layout.height === "number" ? `${fig.layout.height}px` : (options.height ?? "450px");
  const payload = scriptJson({ data: fig.data, layout: fig.layout, config: { responsive: true, displaylogo: false } });
  return `<div id="${escapeHtml(id)}" class="bert-plot" style="width:100%;height:${escapeHtml(height)}"></div>
<script type="text/javascript">(function () {
  var fig = ${payload};
  var id = ${scriptJson(id)};
  var tries = 0;
  function draw() {
    var el = document.getElementById(id);
    if (!el) return;
    if (window.Plotly) { window.Plotly.newPlot(el, fig.data, fig.layout, fig.config); return; }
    if (++tries < 100) { setTimeout(draw, 100); return; }
    el.textContent = "plotly.js is not loaded in this page: re-run the notebook from the top (its set-up cell loads it).";
  }
  draw();
})();</script>`;
}

/** Options of {@linkcode savePlotHtml} and {@linkcode plotPageHtml}. */
export interface PlotPageOptions {
  /** The page title (default: the first figure's title or "plot"). */
  title?: string;
}

function figureTitle(fig: Figure): string | undefined {
  const t = fig.layout.title;
  if (typeof t === "string") return t || undefined;
  if (t && typeof t === "object" && typeof (t as { text?: unknown }).text === "string") {
    return (t as { text: string }).text || undefined;
  }
  return undefined;
}

/** A standalone HTML page with plotly.js inlined and one div per figure; it renders offline. */
export async function plotPageHtml(figs: Figure | Figure[], options: PlotPageOptions = {}): Promise<string> {
  const list = Array.isArray(figs) ? figs : [figs];
  const title = options.title ?? (list.length ? figureTitle(list[0]) : undefined) ?? "plot";
  const divs = list.map((f) => plotDivHtml(f)).join("\n");
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(title)}</title>
${await plotlyScriptTag()}
</head>
<body>
${divs}
</body>
</html>
`;
}

/** Writes `figs` as a standalone offline HTML page to `path` (atomically). */
export async function savePlotHtml(
  path: string,
  figs: Figure | Figure[],
  options: PlotPageOptions = {},
): Promise<void> {
  await writeFileAtomic(path, await plotPageHtml(figs, options));
}

let plotlyLoaded = false;

/** Characters of plotly.js per loader output (each output's message stays under `MAX_DISPLAY_CHARS`). */
const LOADER_CHUNK = 75_000;

/**
 * The loader outputs: plotly.js cut into parts of {@linkcode LOADER_CHUNK} characters, one small `<script>` per
 * output that stores its part, the last one joining and running them (once per page: a page that already has
 * `window.Plotly` skips it). Small parts because the Deno kernel delivers a message of several MB after the cell
 * has ended, where stock Jupyter clients drop it (see `flushOutput` in display.ts).
 */
export async function plotlyLoaderBundles(chunkSize = LOADER_CHUNK): Promise<MimeBundle[]> {
  const src = await plotlyJs();
  const parts = Math.ceil(src.length / chunkSize);
  const bundles: MimeBundle[] = [];
  for (let i = 0; i < parts; i++) {
    const part = scriptJson(src.slice(i * chunkSize, (i + 1) * chunkSize));
    let script = `(window.__bertPlotlyParts = window.__bertPlotlyParts || [])[${i}] = ${part};`;
    if (i === parts - 1) {
      script += ` if (!window.Plotly) { var p = window.__bertPlotlyParts; var n = 0;` +
        ` for (var j = 0; j < ${parts}; j++) if (typeof p[j] === "string") n++;` +
        ` if (n === ${parts}) (0, eval)(p.join("")); else console.error("plotly.js: " + n + " of ${parts} parts"); }` +
        ` window.__bertPlotlyParts = undefined;`;
    }
    const note = i === parts - 1 ? "plotly.js loaded for the plots below" : `plotly.js part ${i + 1}/${parts}`;
    bundles.push({
      "text/html": `<script type="text/javascript">${script}</script>` +
        `<div class="bert-plotly-loader" style="display:none">${note}</div>`,
      "text/plain": `(${note})`,
    });
  }
  return bundles;
}

/**
 * Emits, once per kernel session, the outputs that load plotly.js into the notebook page (needed by the
 * `text/html` fallback of {@linkcode showPlot}; they also make exported HTML render offline). Call it from a
 * notebook's set-up cell; `showPlot` calls it too. `force` emits it again (e.g. after clearing its outputs).
 */
export async function loadPlotly(options: { force?: boolean } = {}): Promise<void> {
  if (!isNotebook() || (plotlyLoaded && !options.force)) return;
  plotlyLoaded = true;
  for (const bundle of await plotlyLoaderBundles()) await displayBundle(bundle);
}

/** The MIME bundle of a figure: plotly JSON, an HTML fallback and a plain-text summary. */
export function plotBundle(fig: Figure, options: PlotDivOptions = {}): MimeBundle {
  const title = figureTitle(fig) ?? "plot";
  const traces = fig.data.map((t) => `${t.type ?? "scatter"}${t.name ? ` "${t.name}"` : ""}`).join(", ");
  return {
    "application/vnd.plotly.v1+json": { data: fig.data, layout: fig.layout, config: { displaylogo: false } },
    "text/html": plotDivHtml(fig, options),
    "text/plain": `[plot] ${title}: ${traces}`,
  };
}

/**
 * Shows a figure in a notebook (plotly JSON + HTML fallback). In a terminal it prints a one-line summary;
 * use {@linkcode savePlotHtml} to keep a plot from the CLI.
 */
export async function showPlot(fig: Figure, options: { displayId?: string; update?: boolean } = {}): Promise<void> {
  if (isNotebook()) await loadPlotly();
  await displayBundle(plotBundle(fig), options);
}

/** Options of {@linkcode createLiveLineChart}. */
export interface LiveLineChartOptions extends FigureOptions {
  /** The series names, in legend order (e.g. `["train loss", "eval loss"]`). */
  series: string[];
  /** Redraw after this many new points (default 10); `flush()`/`done()` always redraw. */
  every?: number;
  /** Series drawn on a second y axis (e.g. `["lr"]`). */
  secondaryY?: string[];
  y2Title?: string;
  logY?: boolean;
}

/** A line chart that grows during training; see {@linkcode createLiveLineChart}. */
export interface LiveLineChart {
  /** Adds a point to a series; redraws in place every `every` points. */
  push(series: string, x: number, y: number): Promise<void>;
  /** Redraws now. */
  flush(): Promise<void>;
  /** Final redraw. */
  done(): Promise<void>;
  /** The current figure (e.g. to save it with {@linkcode savePlotHtml}). */
  figure(): Figure;
}

let liveCounter = 0;

/**
 * A line chart updated in place in a notebook (one output, replaced via `display_id` every `every` points).
 * Outside a notebook it only collects points (draw nothing); `figure()` returns the chart for saving.
 */
export function createLiveLineChart(options: LiveLineChartOptions): LiveLineChart {
  const every = Math.max(1, options.every ?? 10);
  const points = new Map<string, { x: number[]; y: number[] }>(options.series.map((s) => [s, { x: [], y: [] }]));
  const displayId = `bert-live-${Date.now().toString(36)}-${++liveCounter}`;
  const secondary = new Set(options.secondaryY ?? []);
  const notebook = isNotebook();
  let pending = 0;
  let shown = false;
  let chain: Promise<void> = Promise.resolve();

  const figure = (): Figure =>
    lineFigure({
      ...options,
      series: [...points.entries()].map(([name, p]) => ({
        name,
        x: [...p.x],
        y: [...p.y],
        mode: "lines",
        secondaryY: secondary.has(name),
      })),
    });
  const redraw = () => {
    pending = 0;
    if (!notebook) return chain;
    const fig = figure();
    const update = shown;
    shown = true;
    chain = chain.then(() => showPlot(fig, { displayId, update }));
    return chain;
  };
  return {
    push(series: string, x: number, y: number): Promise<void> {
      let p = points.get(series);
      if (!p) {
        p = { x: [], y: [] };
        points.set(series, p);
      }
      p.x.push(x);
      p.y.push(y);
      if (++pending >= every) return redraw();
      return chain;
    },
    flush: () => redraw(),
    done: () => redraw(),
    figure,
  };
}
