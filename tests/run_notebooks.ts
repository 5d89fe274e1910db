/**
 * Runs every notebook in notebooks/ headless through the real Deno Jupyter kernel, on small data, and fails on
 * any cell error. `deno task test:notebooks [--no-selftest] [--selftest-only] [--no-html] [--full] [name ...]`.
 *
 * 1. Installs the Deno kernelspec into the checkout-local `.jupyter/` (the user's home is not touched) with
 *    `kernel.json` pointing at this checkout's `node_modules/.bin/deno`.
 * 2. Self-test: throwaway notebooks check that a failing cell fails the run, that outputs the kernel sends
 *    after reporting idle are kept, that in-place display updates are applied, and that parameters are injected.
 * 3. Each notebook's first code cell (tagged `parameters`) holds its parameters as `let` declarations; an
 *    override cell from {@linkcode SMALL_DATA} is injected right after it (papermill-style).
 * 4. The code cells are type-checked with `deno check` (the kernel only transpiles).
 * 5. Executed copies go to `outputs/notebooks/<name>.ipynb` (+ `.html` via nbconvert, + `.kernel.log`).
 *
 * The executor itself is `tests/run_notebooks.py` (Python's jupyter_client speaks the kernel protocol).
 * Ends with the line `N passed, M failed`; exits 1 if anything failed, 2 if Jupyter is not installed.
 * @module
 */

import { plotlyLoaderBundles } from "../lib/viz/plots.ts";
import { HAVE_SHARED, SHARED } from "./shared.ts";

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");
const JUPYTER_DIR = `${ROOT}/.jupyter`;
const OUT_DIR = `${ROOT}/outputs/notebooks`;
const SELFTEST_DIR = `${ROOT}/outputs/notebooks-selftest`;
const PYTHON = Deno.env.get("JUPYTER_PYTHON") ?? "/usr/bin/python3";
const APT_COMMAND =
  "sudo apt-get update && sudo apt-get install -y --no-install-recommends jupyter-nbconvert jupyter-client";

/**
 * Small-data parameter overrides per notebook (keys are `let` names in the notebook's parameters cell).
 * Every notebook needs an entry, so that a new notebook is never run on full data by accident.
 */
export const SMALL_DATA: Record<string, Record<string, string | number | boolean>> = {
  "01_prepare": { task: "sample", limit: 300, run: "nbtest", maxSeqLength: 64 },
  "02_train": { run: "nbtest", epochs: 2, batchSize: 16, chartEvery: 2 },
  "03_evaluate": { run: "nbtest" },
  "04_how_bert_learns": {
    run: "nbtest-04",
    documents: 150,
    vocabSize: 1500,
    maxSeqLength: 48,
    dupeFactor: 1,
    pretrainSteps: 20,
    batchSize: 16,
    finetuneExamples: 300,
    devExamples: 200,
    finetuneEpochs: 1,
    chartEvery: 2,
  },
  "05_squad": {
    run: "nbtest-squad",
    evalQuestions: 40,
    trainQuestions: 96,
    maxSeqLength: 128,
    docStride: 64,
    maxQueryLength: 32,
    batchSize: 16,
    chartEvery: 2,
  },
};

/**
 * Notebooks whose lesson needs real data that a fresh clone does not have: each lists alternative files (relative
 * to the project root); when none exists the notebook is skipped with a message instead of failing.
 */
export const NEEDS_DATA: Record<string, string[]> = {
  "04_how_bert_learns": [`${SHARED}/data/imdb/aclImdb_v1_train_test.tar.gz`],
  "05_squad": ["data/squad-v1.1/dev-v1.1.json", `${SHARED}/data/squad-v1.1/dev-v1.1.json`],
};

async function anyExists(paths: string[]): Promise<boolean> {
  for (const p of paths) {
    try {
      await Deno.stat(p.startsWith("/") ? p : `${ROOT}/${p}`);
      return true;
    } catch {
      // try the next one
    }
  }
  return false;
}

interface PlanEntry {
  name: string;
  path: string;
  out: string;
  overrides_source: string | null;
}

interface RunResult {
  name: string;
  ok: boolean;
  seconds: number;
  out: string;
  failed_cell: number | string | null;
  code_cell: number | null;
  error: string | null;
  traceback: string;
  source: string;
  late_outputs: number;
  display_updates: number;
  html?: string | null;
  kernel_log?: string;
}

/** The override cell's source: `name = value;` lines (values JSON-encoded, so strings are quoted safely). */
export function overrideSource(overrides: Record<string, unknown>): string {
  const lines = ["// Injected by tests/run_notebooks.ts: small-data parameters for the headless test run."];
  for (const [k, v] of Object.entries(overrides)) lines.push(`${k} = ${JSON.stringify(v)};`);
  // No value: the Deno kernel sends a cell's execute_result after it reports idle, where nbclient drops it.
  lines.push("undefined;");
  return lines.join("\n");
}

interface NotebookJson {
  nbformat: number;
  metadata: { kernelspec?: { name?: string } };
  cells: { cell_type: string; source: string | string[]; metadata?: { tags?: string[] }; outputs?: unknown[] }[];
}

function cellSource(cell: { source: string | string[] }): string {
  return Array.isArray(cell.source) ? cell.source.join("") : cell.source;
}

/** Checks a notebook's structure and that every override names a `let` in its parameters cell. */
export function checkNotebook(path: string, nb: NotebookJson, overrides: Record<string, unknown>): string[] {
  const problems: string[] = [];
  if (nb.nbformat !== 4) problems.push(`${path}: nbformat ${nb.nbformat}, expected 4`);
  if (nb.metadata?.kernelspec?.name !== "deno") {
    problems.push(
      `${path}: metadata.kernelspec.name is ${JSON.stringify(nb.metadata?.kernelspec?.name)}, expected "deno"`,
    );
  }
  nb.cells.forEach((c, i) => {
    if (c.cell_type === "code" && (c.outputs?.length ?? 0) > 0) {
      problems.push(`${path}: cell ${i} has stored outputs (clear them before committing)`);
    }
  });
  const first = nb.cells.findIndex((c) => c.cell_type === "code");
  if (first < 0) return [...problems, `${path}: no code cell`];
  const params = nb.cells[first];
  if (!params.metadata?.tags?.includes("parameters")) {
    problems.push(`${path}: the first code cell (cell ${first}) must be tagged "parameters"`);
  }
  const src = cellSource(params);
  for (const key of Object.keys(overrides)) {
    if (!new RegExp(`\\blet\\s+${key}\\b`).test(src)) {
      problems.push(`${path}: parameter "${key}" from SMALL_DATA is not declared with \`let ${key}\` in cell ${first}`);
    }
  }
  return problems;
}

async function commandOk(cmd: string, args: string[], env?: Record<string, string>): Promise<boolean> {
  try {
    const out = await new Deno.Command(cmd, { args, env, stdout: "null", stderr: "null" }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** Installs the kernelspec into .jupyter/ and makes sure argv[0] is this checkout's deno (absolute path). */
async function installKernel(): Promise<Record<string, string>> {
  const projectDeno = `${ROOT}/node_modules/.bin/deno`;
  let deno = Deno.execPath();
  try {
    if ((await Deno.stat(projectDeno)).isFile) deno = projectDeno;
  } catch { /* fall back to the running deno */ }
  const out = await new Deno.Command(deno, {
    args: ["jupyter", "--install", "--force", "--name", "deno", "--display", "Deno"],
    env: { XDG_DATA_HOME: JUPYTER_DIR },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`\`deno jupyter --install\` failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
  const specPath = `${JUPYTER_DIR}/jupyter/kernels/deno/kernel.json`;
  const spec = JSON.parse(await Deno.readTextFile(specPath));
  if (spec.argv?.[0] !== deno) {
    spec.argv[0] = deno;
    await Deno.writeTextFile(specPath, JSON.stringify(spec, null, 2) + "\n");
  }
  return {
    // Only the checkout-local folder: nothing is read from or written to the user's ~/.local/share/jupyter.
    JUPYTER_PATH: `${JUPYTER_DIR}/jupyter`,
    JUPYTER_DATA_DIR: `${JUPYTER_DIR}/jupyter`,
    JUPYTER_RUNTIME_DIR: `${JUPYTER_DIR}/runtime`,
    JUPYTER_CONFIG_DIR: `${JUPYTER_DIR}/config`,
    JUPYTER_PLATFORM_DIRS: "1",
  };
}

async function execute(
  entries: PlanEntry[],
  env: Record<string, string>,
  html: boolean,
  echo = true,
): Promise<RunResult[]> {
  await Deno.mkdir(OUT_DIR, { recursive: true });
  const planPath = `${OUT_DIR}/.plan-${Deno.pid}.json`;
  const resultsPath = `${OUT_DIR}/.results-${Deno.pid}.json`;
  await Deno.writeTextFile(
    planPath,
    JSON.stringify({
      kernel_name: "deno",
      cell_timeout: 600,
      quiet: 0.3,
      final_quiet: 1.0,
      html,
      echo,
      notebooks: entries,
    }),
  );
  await Deno.remove(resultsPath).catch(() => {});
  const child = new Deno.Command(PYTHON, {
    args: [`${ROOT}/tests/run_notebooks.py`, "--plan", planPath, "--results", resultsPath],
    env,
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const status = await child.status;
  let results: RunResult[] = [];
  try {
    results = JSON.parse(await Deno.readTextFile(resultsPath));
  } catch { /* crashed before writing results */ }
  await Deno.remove(planPath).catch(() => {});
  await Deno.remove(resultsPath).catch(() => {});
  if (!status.success) console.error(`tests/run_notebooks.py exited with code ${status.code}`);
  // Any notebook the executor did not get to counts as failed.
  for (const e of entries) {
    if (!results.some((r) => r.name === e.name)) {
      results.push({
        name: e.name,
        ok: false,
        seconds: 0,
        out: e.out,
        failed_cell: null,
        code_cell: null,
        error: "not run (the executor stopped early)",
        traceback: "",
        source: "",
        late_outputs: 0,
        display_updates: 0,
      });
    }
  }
  return results;
}

function notebookJson(cells: { source: string; tags?: string[]; markdown?: boolean }[]): string {
  return JSON.stringify({
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {
      kernelspec: { name: "deno", display_name: "Deno", language: "typescript" },
      language_info: { name: "typescript" },
    },
    cells: cells.map((c, i) =>
      c.markdown ? { id: `c${i}`, cell_type: "markdown", metadata: {}, source: c.source } : {
        id: `c${i}`,
        cell_type: "code",
        metadata: c.tags ? { tags: c.tags } : {},
        source: c.source,
        execution_count: null,
        outputs: [],
      }
    ),
  });
}

interface StoredOutput {
  output_type: string;
  text?: string | string[];
  data?: Record<string, string | string[]>;
}

function outputText(o: StoredOutput): string {
  const t = o.text ?? o.data?.["text/plain"] ?? "";
  return Array.isArray(t) ? t.join("") : t;
}

/** Throwaway notebooks proving that the runner catches failures and keeps late and updated outputs. */
async function selftest(env: Record<string, string>): Promise<string[]> {
  await Deno.mkdir(SELFTEST_DIR, { recursive: true });
  const write = (name: string, cells: Parameters<typeof notebookJson>[0]) =>
    Deno.writeTextFile(`${SELFTEST_DIR}/${name}.ipynb`, notebookJson(cells));
  await write("fails", [
    { source: "let x = 1;", tags: ["parameters"] },
    { source: 'console.log("before");' },
    { source: 'if (x === 1) throw new Error("deliberate failure");' },
    { source: 'console.log("never reached");' },
  ]);
  await write("bad_import", [
    { source: "let x = 1;", tags: ["parameters"] },
    { source: 'import { nothing } from "./does_not_exist.ts";\nnothing;' },
  ]);
  await write("outputs", [
    { source: "let n = 1;", tags: ["parameters"] },
    // An expression's value: the Deno kernel often sends this execute_result after it reports idle.
    { source: "n * 21" },
    { source: 'console.log("printed"); "value after print"' },
    {
      source: 'import { createProgress } from "../../lib/viz/display.ts";\n' +
        'const p = createProgress({ total: 5, label: "selftest", minIntervalMs: 0 });\n' +
        "for (let step = 1; step <= 5; step++) await p.update({ step, loss: 1 / step });\n" +
        "await p.done();",
    },
    // Displays that are not awaited go out after the kernel has already reported idle.
    { source: 'for (let i = 0; i < 5; i++) Deno.jupyter.display({ "text/plain": `late ${i}` }, { raw: true });' },
  ]);
  const entries: PlanEntry[] = ["fails", "bad_import", "outputs"].map((name) => ({
    name: `selftest/${name}`,
    path: `${SELFTEST_DIR}/${name}.ipynb`,
    out: `${SELFTEST_DIR}/executed/${name}.ipynb`,
    overrides_source: name === "outputs" ? overrideSource({ n: 2 }) : null,
  }));
  // echo off: the throwaway notebooks fail on purpose; only a wrong outcome is printed (below).
  const results = await execute(entries, env, false, false);
  const byName = new Map(results.map((r) => [r.name, r]));
  const problems: string[] = [];
  const fails = byName.get("selftest/fails")!;
  if (fails.ok) problems.push("a notebook with a throwing cell passed");
  else if (fails.failed_cell !== 2 || !fails.error?.includes("deliberate failure")) {
    problems.push(`the throwing cell was reported as cell ${fails.failed_cell}: ${fails.error}`);
  }
  const badImport = byName.get("selftest/bad_import")!;
  if (badImport.ok) problems.push("a notebook importing a missing module passed");
  const outputs = byName.get("selftest/outputs")!;
  if (!outputs.ok) problems.push(`the outputs notebook failed: ${outputs.error}\n${outputs.traceback}`);
  else {
    const nb = JSON.parse(await Deno.readTextFile(outputs.out)) as {
      cells: { cell_type: string; outputs?: StoredOutput[] }[];
    };
    const code = nb.cells.filter((c) => c.cell_type === "code");
    // code[0] = parameters, code[1] = injected override, then the cells above.
    const value = (code[2].outputs ?? []).map(outputText).join("");
    if (!value.includes("42")) problems.push(`late execute_result lost or override not applied: got ${value}`);
    const printed = (code[3].outputs ?? []).map(outputText).join("");
    if (!printed.includes("printed") || !printed.includes("value after print")) {
      problems.push(`outputs of a print + value cell lost: got ${JSON.stringify(printed)}`);
    }
    const progress = code[4].outputs ?? [];
    if (progress.length !== 1 || !outputText(progress[0]).includes("100%") || outputs.display_updates < 5) {
      problems.push(
        `progress was not updated in place: ${progress.length} outputs, ${outputs.display_updates} updates, ` +
          `last text ${JSON.stringify(progress.map(outputText))}`,
      );
    }
    const late = (code[5].outputs ?? []).map(outputText).join(" ");
    if (!/late 0.*late 1.*late 2.*late 3.*late 4/.test(late)) {
      problems.push(`outputs sent after idle were lost: got ${JSON.stringify(late)}`);
    }
    console.log(
      `   selftest: ${outputs.late_outputs} output(s) arrived after the kernel reported idle and were kept; ` +
        `${outputs.display_updates} in-place display updates applied`,
    );
  }
  return problems;
}

/**
 * The code cells of a notebook as one TypeScript module for `deno check` (the kernel itself only transpiles,
 * so a type error would otherwise go unnoticed). The file lives in outputs/notebooks/, one folder deeper than
 * notebooks/, so relative import specifiers get one more `../`.
 */
export function notebookAsModule(nb: NotebookJson): string {
  const code = nb.cells.filter((c) => c.cell_type === "code").map(cellSource).join("\n\n");
  return code.replace(/((?:from|import)\s*\(?\s*["'])\.\.\//g, "$1../../") + "\nexport {};\n";
}

/** Type-checks the notebooks' code; returns the problems (by notebook name). */
async function typeCheck(names: string[]): Promise<Map<string, string>> {
  const files = names.map((n) => `${OUT_DIR}/${n}.check.ts`);
  await Deno.mkdir(OUT_DIR, { recursive: true });
  for (const [i, n] of names.entries()) {
    const nb = JSON.parse(await Deno.readTextFile(`${ROOT}/notebooks/${n}.ipynb`)) as NotebookJson;
    await Deno.writeTextFile(files[i], notebookAsModule(nb));
  }
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["check", "--quiet", ...files],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const problems = new Map<string, string>();
  if (!out.success) {
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    // deno check stops at the first failing file set; attribute the errors to the notebooks they mention.
    for (const n of names) if (text.includes(`${n}.check.ts`)) problems.set(n, text.trim());
    if (problems.size === 0) problems.set(names[0], text.trim());
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------------------------
// Stock nbconvert: the same notebooks through `jupyter nbconvert --to notebook --execute` (nbclient), which stops
// reading a cell's outputs at its idle status; every cell must show what it showed under the runner above.

/** What one code cell showed, by kind: what the stock-nbconvert check compares with the runner's copy. */
export interface CellSignature {
  /** Plotly figures (`application/vnd.plotly.v1+json`). */
  plots: number;
  /** Tables from lib/viz/display.ts (`class="bert-table"`). */
  tables: number;
  /** Parts of the plotly.js loader (lib/viz/plots.ts `loadPlotly`). */
  loader: number;
  /** Other rich outputs (progress bars, HTML snippets, text displays). */
  displays: number;
  /** Non-empty lines printed to stdout and stderr. */
  textLines: number;
  /** `execute_result` outputs (a cell's last expression). */
  results: number;
  errors: number;
}

function outputHtml(o: StoredOutput): string {
  const h = o.data?.["text/html"] ?? "";
  return Array.isArray(h) ? h.join("") : h;
}

/** Counts a cell's outputs by kind (see {@linkcode CellSignature}). */
export function cellSignature(outputs: StoredOutput[]): CellSignature {
  const sig: CellSignature = { plots: 0, tables: 0, loader: 0, displays: 0, textLines: 0, results: 0, errors: 0 };
  for (const o of outputs) {
    if (o.output_type === "stream") {
      sig.textLines += outputText(o).split("\n").filter((line) => line.trim() !== "").length;
    } else if (o.output_type === "error") sig.errors++;
    else if (o.output_type === "execute_result") sig.results++;
    else if (o.data?.["application/vnd.plotly.v1+json"] !== undefined) sig.plots++;
    else if (outputHtml(o).includes('class="bert-table"')) sig.tables++;
    else if (outputHtml(o).includes("bert-plotly-loader")) sig.loader++;
    else sig.displays++;
  }
  return sig;
}

function describe(sig: CellSignature): string {
  return Object.entries(sig).filter(([, v]) => v > 0).map(([k, v]) => `${v} ${k}`).join(", ") || "no output";
}

/**
 * Compares two executions of the same notebook cell by cell; returns one line per code cell whose outputs differ
 * in kind or number (e.g. `code cell 7 (notebook cell 12): runner 1 plots, 3 textLines; stock 3 textLines`), and
 * a line if the plotly.js loader is incomplete or comes after the first plot (the plots would not draw).
 */
export function compareExecutions(
  expected: NotebookJson,
  actual: NotebookJson,
  options: { loaderParts: number; labels?: [string, string] } = { loaderParts: 0 },
): string[] {
  const [a, b] = options.labels ?? ["runner", "stock"];
  const codeCells = (nb: NotebookJson) =>
    nb.cells.map((c, index) => ({ c, index })).filter(({ c }) => c.cell_type === "code");
  const want = codeCells(expected);
  const got = codeCells(actual);
  const problems: string[] = [];
  if (want.length !== got.length) problems.push(`${want.length} code cells in the ${a} copy, ${got.length} in ${b}`);
  for (let i = 0; i < Math.min(want.length, got.length); i++) {
    const x = cellSignature((want[i].c.outputs ?? []) as StoredOutput[]);
    const y = cellSignature((got[i].c.outputs ?? []) as StoredOutput[]);
    if (JSON.stringify(x) !== JSON.stringify(y)) {
      problems.push(`code cell ${i} (notebook cell ${want[i].index}): ${a} ${describe(x)}; ${b} ${describe(y)}`);
    }
  }
  // The plots' HTML needs every loader part, in a cell before (or the same cell as) the first plot.
  const all = got.flatMap(({ c }) => (c.outputs ?? []) as StoredOutput[]).map((o) => cellSignature([o]));
  const firstPlot = all.findIndex((s) => s.plots > 0);
  const loaderAt = all.map((s, i) => s.loader > 0 ? i : -1).filter((i) => i >= 0);
  if (firstPlot >= 0) {
    if (loaderAt.length !== options.loaderParts) {
      problems.push(`${b}: ${loaderAt.length} of ${options.loaderParts} plotly.js loader parts (plots cannot draw)`);
    } else if (loaderAt.length > 0 && loaderAt[loaderAt.length - 1] > firstPlot) {
      problems.push(`${b}: the plotly.js loader comes after the first plot`);
    }
  }
  return problems;
}

/** The notebook with the override cell inserted after its first code cell, as tests/run_notebooks.py does. */
export function withOverrides(nb: NotebookJson, source: string | null): NotebookJson {
  if (source === null) return nb;
  const first = nb.cells.findIndex((c) => c.cell_type === "code");
  const cells = [...nb.cells];
  cells.splice(first + 1, 0, {
    cell_type: "code",
    source,
    metadata: { tags: ["injected-parameters"] },
    outputs: [],
    ...({ id: "injected-parameters", execution_count: null } as Record<string, unknown>),
  });
  return { ...nb, cells };
}

const STOCK_DIR = `${OUT_DIR}/stock`;

/**
 * Runs each notebook `runs` times with stock `jupyter nbconvert --to notebook --execute` (kernel started in
 * notebooks/, as for a user) and compares every run with the runner's executed copy. Returns problems by notebook.
 */
async function stockRuns(entries: PlanEntry[], env: Record<string, string>, runs: number): Promise<string[]> {
  await Deno.mkdir(STOCK_DIR, { recursive: true });
  const loaderParts = (await plotlyLoaderBundles()).length;
  const problems: string[] = [];
  for (const e of entries) {
    const input = withOverrides(JSON.parse(await Deno.readTextFile(e.path)), e.overrides_source);
    const inputPath = `${STOCK_DIR}/${e.name}.input.ipynb`;
    await Deno.writeTextFile(inputPath, JSON.stringify(input));
    const expected = JSON.parse(await Deno.readTextFile(e.out)) as NotebookJson;
    for (let run = 1; run <= runs; run++) {
      const out = `${STOCK_DIR}/${e.name}${runs > 1 ? `.run${run}` : ""}.ipynb`;
      const started = performance.now();
      // --stdin: the kernel starts in the current folder (notebooks/), as `jupyter nbconvert notebooks/x.ipynb`.
      const child = new Deno.Command(PYTHON, {
        args: [
          "-m",
          "nbconvert",
          "--to",
          "notebook",
          "--execute",
          "--ExecutePreprocessor.timeout=600",
          "--stdin",
          "--stdout",
        ],
        cwd: `${ROOT}/notebooks`,
        env,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(JSON.stringify(input)));
      await writer.close();
      const result = await child.output();
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const stderr = new TextDecoder().decode(result.stderr);
      if (!result.success) {
        problems.push(`${e.name} (stock run ${run}): nbconvert failed (exit ${result.code}):\n${stderr.slice(-3000)}`);
        console.log(`FAIL ${e.name} stock nbconvert run ${run} (${seconds} s)`);
        continue;
      }
      await Deno.writeFile(out, result.stdout);
      const diff = compareExecutions(expected, JSON.parse(new TextDecoder().decode(result.stdout)), { loaderParts });
      const rel = out.replace(ROOT + "/", "");
      if (diff.length) problems.push(...diff.map((d) => `${e.name} (stock run ${run}, ${rel}): ${d}`));
      console.log(`${diff.length ? "FAIL" : "PASS"} ${e.name} stock nbconvert run ${run} (${seconds} s) -> ${rel}`);
    }
  }
  return problems;
}

async function main(argv: string[]): Promise<number> {
  const stockArg = argv.find((a) => a.startsWith("--stock-runs="));
  const stockRunCount = stockArg === undefined ? 1 : Number(stockArg.slice("--stock-runs=".length));
  if (!Number.isInteger(stockRunCount) || stockRunCount < 0) {
    console.error(`--stock-runs takes a whole number >= 0 (0 = no stock nbconvert runs), got ${stockArg}`);
    return 2;
  }
  const flags = new Set(argv.filter((a) => a.startsWith("--") && a !== stockArg));
  const known = ["--no-selftest", "--selftest-only", "--no-html", "--no-check", "--full", "--help"];
  for (const f of flags) {
    if (!known.includes(f)) {
      console.error(`unknown flag ${f}; flags: ${known.join(" ")}`);
      return 2;
    }
  }
  if (flags.has("--help")) {
    console.log(
      "deno task test:notebooks [--no-selftest] [--selftest-only] [--no-html] [--no-check] [--full] [--stock-runs=N]\n" +
        "  [notebook names...]\n" +
        "--stock-runs=N: after the runner, execute each notebook N times (default 1, 0 = none) with stock\n" +
        "  `jupyter nbconvert --to notebook --execute` and fail if any cell shows other outputs than under the runner.",
    );
    return 0;
  }
  const only = argv.filter((a) => !a.startsWith("--")).map((a) => a.replace(/^.*\//, "").replace(/\.ipynb$/, ""));

  if (!(await commandOk(PYTHON, ["-c", "import jupyter_client, nbformat"]))) {
    console.error(
      `Jupyter is not installed: ${PYTHON} cannot import jupyter_client and nbformat.\n` +
        `Install it from Debian with:\n  ${APT_COMMAND}\n` +
        `(or point JUPYTER_PYTHON at a python3 that has jupyter_client and nbformat).`,
    );
    return 2;
  }
  const html = !flags.has("--no-html") && (await commandOk(PYTHON, ["-c", "import nbconvert"]));
  const env = await installKernel();

  if (!flags.has("--no-selftest")) {
    console.log("== runner self-test (throwaway notebooks in outputs/notebooks-selftest/)");
    const problems = await selftest(env);
    if (problems.length > 0) {
      console.error(`runner self-test FAILED:\n  ${problems.join("\n  ")}`);
      console.log("0 passed, 1 failed");
      return 1;
    }
    console.log("   selftest: ok (a failing cell fails the run; late and updated outputs are kept)");
    if (flags.has("--selftest-only")) return 0;
  }

  const names: string[] = [];
  for await (const e of Deno.readDir(`${ROOT}/notebooks`)) {
    if (e.isFile && e.name.endsWith(".ipynb")) names.push(e.name.replace(/\.ipynb$/, ""));
  }
  names.sort();
  const wanted = only.length ? names.filter((n) => only.includes(n)) : names;
  const selected: string[] = [];
  const skipped: string[] = [];
  for (const name of wanted) {
    if (NEEDS_DATA[name] && !(await anyExists(NEEDS_DATA[name]))) {
      console.warn(`SKIP ${name}: needs one of ${NEEDS_DATA[name].join(", ")} (see data/README.md)`);
      skipped.push(name);
    } else selected.push(name);
  }
  for (const o of only) if (!names.includes(o)) console.error(`no notebook notebooks/${o}.ipynb`);
  if (selected.length === 0) {
    console.error("no notebooks to run");
    console.log(`0 passed, 0 failed, ${skipped.length} skipped`);
    return skipped.length ? 0 : 1;
  }
  const problems: string[] = [];
  const entries: PlanEntry[] = [];
  for (const name of selected) {
    const path = `${ROOT}/notebooks/${name}.ipynb`;
    const overrides = SMALL_DATA[name];
    if (!overrides && !flags.has("--full")) {
      problems.push(`notebooks/${name}.ipynb has no entry in SMALL_DATA in tests/run_notebooks.ts`);
      continue;
    }
    const applied = flags.has("--full") ? {} : overrides;
    problems.push(...checkNotebook(`notebooks/${name}.ipynb`, JSON.parse(await Deno.readTextFile(path)), applied));
    entries.push({
      name,
      path,
      out: `${OUT_DIR}/${name}.ipynb`,
      overrides_source: Object.keys(applied).length ? overrideSource(applied) : null,
    });
  }
  if (problems.length > 0) {
    console.error(`notebook check failed:\n  ${problems.join("\n  ")}`);
    console.log(`0 passed, ${selected.length} failed`);
    return 1;
  }
  if (!flags.has("--no-check")) {
    console.log(`== deno check of the notebooks' code cells (outputs/notebooks/<name>.check.ts)`);
    const typeErrors = await typeCheck(selected);
    if (typeErrors.size > 0) {
      for (const [name, text] of typeErrors) console.error(`--- notebooks/${name}.ipynb has type errors:\n${text}`);
      console.log(`0 passed, ${selected.length} failed`);
      return 1;
    }
  }
  if (!HAVE_SHARED) console.warn(`note: ${SHARED} is absent: notebooks run with a fresh model config`);
  const results = await execute(entries, env, html);
  const failed = results.filter((r) => !r.ok);
  console.log("");
  for (const r of results) {
    console.log(`${r.ok ? "PASS" : "FAIL"} ${r.name} (${r.seconds} s) -> ${r.out.replace(ROOT + "/", "")}`);
  }
  for (const r of failed) {
    console.error(`\n--- notebooks/${r.name}.ipynb failed at cell ${r.failed_cell} (code cell ${r.code_cell}):`);
    console.error(`    ${r.error}`);
    if (r.source) console.error(`  cell source:\n${r.source.replace(/^/gm, "    | ")}`);
    if (r.traceback) console.error(`  traceback:\n${r.traceback.replace(/^/gm, "    ")}`);
    if (r.kernel_log) console.error(`  kernel log: ${r.kernel_log.replace(ROOT + "/", "")}`);
  }
  let stockProblems: string[] = [];
  if (stockRunCount > 0 && failed.length === 0) {
    console.log(
      `\n== stock \`jupyter nbconvert --execute\`, ${stockRunCount} run(s) per notebook, compared cell by cell`,
    );
    stockProblems = await stockRuns(entries, env, stockRunCount);
    for (const p of stockProblems) console.error(`  ${p}`);
  }
  const skipNote = skipped.length ? `, ${skipped.length} skipped` : "";
  const stockNote = stockRunCount > 0 && failed.length === 0
    ? `; stock nbconvert: ${
      stockProblems.length ? `${stockProblems.length} difference(s)` : "every cell as under the runner"
    }`
    : "";
  const bad = failed.length + (stockProblems.length ? 1 : 0);
  console.log(`${results.length - failed.length} passed, ${failed.length} failed${skipNote}${stockNote}`);
  return bad ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
