/**
 * Display helpers that work both in a Jupyter notebook (the Deno kernel) and in a terminal:
 * HTML snippets, tables and progress bars. In a notebook they send rich MIME bundles (HTML with a plain-text
 * fallback); in a terminal they print aligned text, a `\r` progress bar on a TTY, or periodic lines in logs.
 *
 * ```ts
 * import { createProgress, displayTable } from "./display.ts";
 * await displayTable([{ text: "a <b>", label: 1 }], { caption: "Examples" });
 * const progress = createProgress({ total: 100, label: "train" });
 * for (let step = 1; step <= 100; step++) progress.update({ step, loss: 0.5 });
 * await progress.done();
 * ```
 * @module
 */

/** A Jupyter MIME bundle: `{ "text/html": "...", "text/plain": "..." }` and friends. */
export type MimeBundle = Record<string, string | object | undefined>;

/** True when running inside the Deno Jupyter kernel (where `Deno.jupyter` is available). */
export function isNotebook(): boolean {
  try {
    // Outside `deno jupyter` merely reading `Deno.jupyter` throws.
    return typeof Deno.jupyter?.display === "function";
  } catch {
    return false;
  }
}

/** Escapes `& < > " '` so that any text can be placed in HTML element content or a quoted attribute. */
export function escapeHtml(text: unknown): string {
  return String(text)
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

/**
 * The largest display message (characters of its data) the library sends: well under the 128 KB high-water mark
 * of the Deno kernel's iopub socket (2.9.5), over which that socket drops messages; see {@linkcode flushOutput}.
 */
export const MAX_DISPLAY_CHARS = 100_000;

/**
 * The iopub port of the kernel this code runs in (from the connection file named on its command line), or
 * undefined outside a Linux Deno kernel. Read once.
 */
let iopubPortCache: { port?: number } | undefined;
function iopubPort(): number | undefined {
  if (iopubPortCache) return iopubPortCache.port;
  iopubPortCache = {};
  try {
    const args = Deno.readTextFileSync("/proc/self/cmdline").split("\0");
    const at = args.indexOf("--conn");
    if (at >= 0) {
      const port = JSON.parse(Deno.readTextFileSync(args[at + 1])).iopub_port;
      if (Number.isInteger(port)) iopubPortCache.port = port;
    }
  } catch { /* not Linux, or not a kernel: no delivery check */ }
  return iopubPortCache.port;
}

/**
 * Bytes of the iopub stream not yet read by the client: the kernel side's send queue plus the client side's
 * receive queue of every TCP connection to `port` (`/proc/net/tcp{,6}`, columns `tx_queue:rx_queue`). Undefined
 * when they cannot be read.
 */
export function iopubBytesInFlight(port: number, tables?: string[]): number | undefined {
  let total = 0;
  let seen = false;
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  for (const table of tables ?? ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = tables ? table : Deno.readTextFileSync(table);
    } catch {
      continue;
    }
    seen = true;
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 5 || f[3] !== "01") continue; // ESTABLISHED only
      const [tx, rx] = f[4].split(":").map((h) => parseInt(h, 16));
      if (f[1].endsWith(`:${hexPort}`)) total += tx; // the kernel's end: sent, not yet taken by the client
      else if (f[2].endsWith(`:${hexPort}`)) total += rx; // the client's end: arrived, not yet read
    }
  }
  return seen ? total : undefined;
}

type BroadcastOp = (type: string, content: unknown, metadata: unknown, buffers: unknown[]) => Promise<void>;

/**
 * The Deno kernel's `op_jupyter_broadcast`, whose promise `Deno.jupyter.broadcast` (2.9.5) drops; undefined when
 * this Deno does not expose it (then displays go through `Deno.jupyter.display`).
 */
function broadcastOp(): BroadcastOp | undefined {
  try {
    const internal = (Deno as unknown as { internal: symbol }).internal;
    const core = (Deno as unknown as Record<symbol, { core?: { ops?: Record<string, unknown> } }>)[internal]?.core;
    const op = core?.ops?.op_jupyter_broadcast;
    return typeof op === "function" ? op as BroadcastOp : undefined;
  } catch {
    return undefined;
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A display id no output has: an `update_display_data` for it is ignored by every front end. */
const NUDGE_ID = "bert-iopub-flush";

/** Sends a tiny message that front ends ignore; each send makes the kernel's iopub socket write what it holds. */
async function nudge(): Promise<void> {
  const content = { data: { "text/plain": "" }, metadata: {}, transient: { display_id: NUDGE_ID } };
  const send = broadcastOp();
  if (send) await send("update_display_data", content, {}, []);
  else await Deno.jupyter.broadcast("update_display_data", content);
}

/**
 * Bytes in flight on the iopub connection below which the kernel's last write cannot have been refused: far less
 * than a loopback TCP connection takes (its receive window alone starts at 64 KB).
 */
const SOCKET_NOT_FULL = 16 * 1024;

/** Options of {@linkcode flushOutput}. */
export interface FlushOutputOptions {
  /** Give up waiting for a slow client after this many milliseconds (default 60,000). */
  timeoutMs?: number;
}

/**
 * Makes sure everything this cell has sent so far (displays and `console.log` lines) has left the kernel, so
 * that it reaches the Jupyter client before the cell's `idle` and lands in this cell. Outside a notebook it only
 * waits one timer turn.
 *
 * Why (Deno 2.9.5's kernel; its iopub socket is the pure-Rust `zeromq` crate's PUB socket, read in its source):
 * - `Deno.jupyter.display()` does not wait for its send (`broadcast` drops the op's promise), and `console.log`
 *   text is sent by another task: both go out on a later turn of the event loop;
 * - the PUB socket writes with a no-op waker: bytes the OS socket does not take at once stay in the socket's own
 *   buffer until the *next* message is sent, and while that buffer is over its 128 KB high-water mark new
 *   messages are silently dropped (ZeroMQ's rule for a slow subscriber). With a client slowed by a busy CPU, a
 *   cell's last outputs thus left after its `idle` (nbclient, behind `jupyter nbconvert --execute`, drops them)
 *   or never.
 *
 * So, where `/proc/net/tcp` shows the connection (Linux): wait while the client has a socket's worth of bytes
 * unread, then send a tiny message that every front end ignores (an update of a display id no output has) — each
 * send makes the socket write what it holds — and check that the bytes in flight right after it are few, i.e.
 * that the write was not refused; twice. Elsewhere it sends a few such messages over ~50 ms.
 * {@linkcode displayBundle} calls it after every display; call it at the end of a notebook cell whose last
 * statement is a `console.log`.
 */
export async function flushOutput(options: FlushOutputOptions = {}): Promise<void> {
  await sleep(1); // console.log text: the kernel's stdout task sends it on a later turn
  if (!isNotebook()) return;
  const port = iopubPort();
  if (port === undefined || iopubBytesInFlight(port) === undefined) {
    for (const ms of [1, 5, 10, 30]) {
      await nudge();
      await sleep(ms);
    }
    return;
  }
  const deadline = performance.now() + (options.timeoutMs ?? 60_000);
  let confirmed = 0;
  let wait = 1;
  while (confirmed < 2 && performance.now() < deadline) {
    if (iopubBytesInFlight(port)! >= SOCKET_NOT_FULL) {
      confirmed = 0;
      await sleep(wait); // the client is behind: let it read
      wait = Math.min(50, wait * 2);
      continue;
    }
    wait = 1;
    await nudge();
    confirmed = iopubBytesInFlight(port)! < SOCKET_NOT_FULL ? confirmed + 1 : 0;
  }
}

/** Options of {@linkcode displayBundle}. */
export interface DisplayBundleOptions {
  /** Names the output so that later calls with `update: true` replace it in place. */
  displayId?: string;
  /** Replace the output named `displayId` instead of adding a new one. */
  update?: boolean;
}

/**
 * Sends a MIME bundle to the notebook and waits until the client has it ({@linkcode flushOutput}); keep
 * bundles under {@linkcode MAX_DISPLAY_CHARS}. Outside a notebook it prints the bundle's `text/plain` (if any) to
 * stdout instead (updates are printed as new text).
 */
export async function displayBundle(bundle: MimeBundle, options: DisplayBundleOptions = {}): Promise<void> {
  if (isNotebook()) {
    const send = broadcastOp();
    if (send) {
      // The kernel's own op, awaited: resolves once the message is queued on the iopub socket.
      const transient = options.displayId !== undefined ? { display_id: options.displayId } : {};
      await send(
        options.update ? "update_display_data" : "display_data",
        { data: bundle, metadata: {}, transient },
        {},
        [],
      );
    } else {
      const jupyterOptions: Deno.jupyter.DisplayOptions = { raw: true };
      if (options.displayId !== undefined) jupyterOptions.display_id = options.displayId;
      if (options.update) jupyterOptions.update = true;
      await Deno.jupyter.display(bundle as Deno.jupyter.MediaBundle, jupyterOptions);
    }
    await flushOutput();
    return;
  }
  const text = bundle["text/plain"];
  if (typeof text === "string") console.log(text);
}

/** Strips tags and decodes the basic entities: a crude plain-text view of an HTML snippet for terminals. */
export function htmlToText(html: string): string {
  return html
    .replace(/<(script|style)[^>]*>[\s\S]*?<\/\1>/gi, "")
    .replace(/<br\s*\/?>|<\/(p|div|tr|h\d|li)>/gi, "\n")
    .replace(/<[^>]+>/g, "")
    .replaceAll("&lt;", "<")
    .replaceAll("&gt;", ">")
    .replaceAll("&quot;", '"')
    .replaceAll("&#39;", "'")
    .replaceAll("&amp;", "&")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}

/**
 * Shows an HTML snippet in a notebook (the caller is responsible for escaping untrusted text with
 * {@linkcode escapeHtml}); in a terminal prints `options.text` or a tag-stripped version of the HTML.
 */
export async function displayHtml(html: string, options: DisplayBundleOptions & { text?: string } = {}): Promise<void> {
  await displayBundle({ "text/html": html, "text/plain": options.text ?? htmlToText(html) }, options);
}

/** A table row: an object keyed by column name (any interface), or an array in column order. */
export type TableRow = object | unknown[];

/** Options of {@linkcode displayTable}, {@linkcode tableHtml} and {@linkcode tableText}. */
export interface TableOptions {
  /** Column names (for object rows, the keys to show, in order; default: the keys of the first row). */
  columns?: string[];
  /** A caption shown above the table. */
  caption?: string;
  /** Significant digits for non-integer numbers (default 4). */
  digits?: number;
  /** Show at most this many rows, then a "… N more rows" line (default: all). */
  maxRows?: number;
  /** Longest text shown in a terminal cell before it is cut with "…" (default 60; HTML is never cut). */
  maxTextWidth?: number;
}

/** Formats one cell value: integers as is, other numbers with `digits` significant digits, arrays joined. */
export function formatCell(value: unknown, digits = 4): string {
  if (value === undefined || value === null) return "";
  if (typeof value === "number") {
    if (Number.isInteger(value) || !Number.isFinite(value)) return String(value);
    const abs = Math.abs(value);
    if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(Math.max(0, digits - 1));
    return String(Number(value.toPrecision(digits)));
  }
  if (Array.isArray(value)) return value.map((v) => formatCell(v, digits)).join(" ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function normalizeTable(rows: TableRow[], options: TableOptions): { columns: string[]; cells: unknown[][] } {
  let columns = options.columns;
  if (!columns) {
    const first = rows[0];
    if (first === undefined) columns = [];
    else if (Array.isArray(first)) columns = first.map((_, i) => String(i));
    else columns = Object.keys(first);
  }
  const cols = columns;
  const cells = rows.map((row) =>
    Array.isArray(row) ? cols.map((_, i) => row[i]) : cols.map((c) => (row as Record<string, unknown>)[c])
  );
  return { columns: cols, cells };
}

/** Whether a column holds numbers only (right-aligned). */
function numericColumns(cells: unknown[][], width: number): boolean[] {
  return Array.from(
    { length: width },
    (_, j) => cells.length > 0 && cells.every((r) => typeof r[j] === "number" || r[j] === undefined),
  );
}

/** Renders rows as an HTML `<table>` (every cell escaped; numbers right-aligned). */
export function tableHtml(rows: TableRow[], options: TableOptions = {}): string {
  const { columns, cells } = normalizeTable(rows, options);
  const digits = options.digits ?? 4;
  const shown = options.maxRows === undefined ? cells : cells.slice(0, options.maxRows);
  const numeric = numericColumns(shown, columns.length);
  const parts: string[] = ['<table class="bert-table" style="border-collapse:collapse">'];
  if (options.caption !== undefined) {
    parts.push(
      `<caption style="caption-side:top;text-align:left;font-weight:bold">${escapeHtml(options.caption)}</caption>`,
    );
  }
  parts.push("<thead><tr>");
  for (const c of columns) parts.push(`<th style="text-align:left;padding:2px 8px">${escapeHtml(c)}</th>`);
  parts.push("</tr></thead><tbody>");
  for (const row of shown) {
    parts.push("<tr>");
    row.forEach((v, j) => {
      const align = numeric[j] ? "right" : "left";
      parts.push(`<td style="text-align:${align};padding:2px 8px">${escapeHtml(formatCell(v, digits))}</td>`);
    });
    parts.push("</tr>");
  }
  parts.push("</tbody></table>");
  if (shown.length < cells.length) parts.push(`<div><i>… ${cells.length - shown.length} more rows</i></div>`);
  return parts.join("");
}

function cut(text: string, width: number): string {
  const oneLine = text.replace(/[\r\n\t]+/g, " ");
  return oneLine.length <= width ? oneLine : oneLine.slice(0, Math.max(1, width - 1)) + "…";
}

/** Renders rows as an aligned plain-text table (numbers right-aligned, long text cut with "…"). */
export function tableText(rows: TableRow[], options: TableOptions = {}): string {
  const { columns, cells } = normalizeTable(rows, options);
  const digits = options.digits ?? 4;
  const maxWidth = options.maxTextWidth ?? 60;
  const shown = options.maxRows === undefined ? cells : cells.slice(0, options.maxRows);
  const numeric = numericColumns(shown, columns.length);
  const text = shown.map((row) => row.map((v) => cut(formatCell(v, digits), maxWidth)));
  const header = columns.map((c) => cut(c, maxWidth));
  const widths = header.map((h, j) => Math.max(h.length, ...text.map((r) => r[j].length)));
  const line = (row: string[]) =>
    row.map((v, j) => (numeric[j] ? v.padStart(widths[j]) : v.padEnd(widths[j]))).join("  ").trimEnd();
  const lines: string[] = [];
  if (options.caption !== undefined) lines.push(options.caption);
  lines.push(line(header), widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of text) lines.push(line(row));
  if (shown.length < cells.length) lines.push(`… ${cells.length - shown.length} more rows`);
  return lines.join("\n");
}

/**
 * Shows a table: an HTML table in a notebook (with a text fallback), aligned text in a terminal.
 * Rows are objects (columns default to the first row's keys) or arrays (give `columns`).
 */
export async function displayTable(rows: TableRow[], options: TableOptions = {}): Promise<void> {
  await displayBundle({ "text/html": tableHtml(rows, options), "text/plain": tableText(rows, options) });
}

// ---------------------------------------------------------------------------------------------------------------
// Progress

/** Fields shown by a progress display; `step` (or `done`) counts towards `total`. Extra fields are shown too. */
export interface ProgressFields {
  step?: number;
  done?: number;
  epoch?: number;
  loss?: number;
  lr?: number;
  examplesPerSec?: number;
  etaSeconds?: number;
  [key: string]: number | string | undefined;
}

/** Where a progress display goes: notebook output updated in place, a `\r` bar on a TTY, or periodic lines. */
export type ProgressMode = "notebook" | "tty" | "lines";

/** Options of {@linkcode createProgress}. */
export interface ProgressOptions {
  /** The number of steps (or examples) that makes 100%. */
  total: number;
  /** Text in front of the bar (default "progress"). */
  label?: string;
  /** Default: notebook in the kernel, tty when stdout is a terminal, lines otherwise. */
  mode?: ProgressMode;
  /** Least time between two redraws in notebook/tty mode (default 250 ms); the final state is always drawn. */
  minIntervalMs?: number;
  /** In lines mode, print a line when this much time has passed (default 15 s) or another 10% is done. */
  lineIntervalMs?: number;
  /** Width of the text bar in characters (default 24). */
  barWidth?: number;
  /** Where text goes (default: stdout). For tests. */
  write?: (text: string) => void;
  /** Clock in ms (default `performance.now`). For tests. */
  now?: () => number;
}

/** A live progress display; see {@linkcode createProgress}. */
export interface Progress {
  /** Records new fields (merged with the previous ones) and redraws if enough time has passed. */
  update(fields: ProgressFields): Promise<void>;
  /** Draws the final state (optionally with last fields) and ends the display (a newline on a TTY). */
  done(fields?: ProgressFields): Promise<void>;
  /** The fields merged so far. */
  readonly fields: Readonly<ProgressFields>;
}

/** Formats seconds as `m:ss` or `h:mm:ss`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = h > 0 ? String(m).padStart(2, "0") : String(m);
  return `${h > 0 ? `${h}:` : ""}${mm}:${String(sec).padStart(2, "0")}`;
}

/** The fields as short `name value` strings, in a fixed order for the known ones. */
export function formatProgressFields(fields: ProgressFields, total: number): string[] {
  const parts: string[] = [];
  const count = fields.step ?? fields.done;
  if (count !== undefined) parts.push(`${fields.step !== undefined ? "step " : ""}${count}/${total}`);
  if (fields.epoch !== undefined) parts.push(`epoch ${fields.epoch.toFixed(2)}`);
  if (fields.loss !== undefined) parts.push(`loss ${fields.loss.toFixed(4)}`);
  if (fields.lr !== undefined) parts.push(`lr ${fields.lr.toExponential(2)}`);
  if (fields.examplesPerSec !== undefined) parts.push(`${fields.examplesPerSec.toFixed(1)} ex/s`);
  if (fields.etaSeconds !== undefined) parts.push(`ETA ${formatDuration(fields.etaSeconds)}`);
  const known = new Set(["step", "done", "epoch", "loss", "lr", "examplesPerSec", "etaSeconds"]);
  for (const [k, v] of Object.entries(fields)) {
    if (known.has(k) || v === undefined) continue;
    parts.push(`${k} ${formatCell(v)}`);
  }
  return parts;
}

let progressCounter = 0;

function defaultMode(): ProgressMode {
  if (isNotebook()) return "notebook";
  try {
    return Deno.stdout.isTerminal() ? "tty" : "lines";
  } catch {
    return "lines";
  }
}

function stdoutWrite(text: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(text));
}

/**
 * Creates a progress display. In a notebook it is one output updated in place (`display_id`); on a TTY a
 * single line redrawn with `\r`; otherwise (logs, CI) a line every 10% or every `lineIntervalMs`.
 * `update()` is cheap to call every step: redraws are rate-limited.
 */
export function createProgress(options: ProgressOptions): Progress {
  const total = options.total;
  if (!(total >= 0)) throw new Error(`createProgress: total must be a number >= 0, got ${total}`);
  const label = options.label ?? "progress";
  const mode = options.mode ?? defaultMode();
  const minInterval = options.minIntervalMs ?? 250;
  const lineInterval = options.lineIntervalMs ?? 15_000;
  const barWidth = options.barWidth ?? 24;
  const write = options.write ?? stdoutWrite;
  const now = options.now ?? (() => performance.now());
  const displayId = `bert-progress-${Date.now().toString(36)}-${++progressCounter}`;
  const fields: ProgressFields = {};
  let lastDraw = -Infinity;
  let lastDecile = -1;
  let lastLine = "";
  let drawn = false;
  let finished = false;
  let chain: Promise<void> = Promise.resolve();

  const fraction = () => {
    const count = fields.step ?? fields.done ?? 0;
    return total > 0 ? Math.min(1, Math.max(0, count / total)) : 1;
  };
  const textLine = () => {
    const f = fraction();
    const filled = Math.round(f * barWidth);
    const bar = "█".repeat(filled) + "░".repeat(barWidth - filled);
    return `${label} ${bar} ${(f * 100).toFixed(0).padStart(3)}%  ${formatProgressFields(fields, total).join("  ")}`;
  };
  const html = () => {
    const f = fraction();
    const parts = formatProgressFields(fields, total).map(escapeHtml).join(" &middot; ");
    return `<div class="bert-progress" style="font-family:monospace"><b>${escapeHtml(label)}</b> ` +
      `<progress value="${f.toFixed(4)}" max="1" style="width:18em;vertical-align:middle"></progress> ` +
      `${(f * 100).toFixed(0)}% &middot; ${parts}${finished ? " &middot; done" : ""}</div>`;
  };

  const draw = (final: boolean) => {
    const t = now();
    if (mode === "notebook") {
      if (!final && t - lastDraw < minInterval) return;
      lastDraw = t;
      const bundle = { "text/html": html(), "text/plain": textLine() };
      const update = drawn;
      drawn = true;
      chain = chain.then(() => displayBundle(bundle, { displayId, update }));
    } else if (mode === "tty") {
      if (!final && t - lastDraw < minInterval) return;
      lastDraw = t;
      drawn = true;
      write(`\r\x1b[2K${textLine()}${final ? "\n" : ""}`);
    } else {
      const decile = Math.floor(fraction() * 10 + 1e-9);
      const due = final || t - lastDraw >= lineInterval || decile > lastDecile;
      const text = textLine();
      if (!due || text === lastLine) return;
      lastDraw = t;
      lastDecile = decile;
      lastLine = text;
      drawn = true;
      write(text + "\n");
    }
  };

  return {
    get fields() {
      return fields;
    },
    update(next: ProgressFields): Promise<void> {
      if (finished) return chain;
      Object.assign(fields, next);
      draw(false);
      return chain;
    },
    async done(last?: ProgressFields): Promise<void> {
      if (finished) return await chain;
      if (last) Object.assign(fields, last);
      finished = true;
      draw(true);
      await chain;
    },
  };
}
