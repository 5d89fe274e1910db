import { assert, assertEquals } from "./shared.ts";
import {
  cellSignature,
  checkNotebook,
  compareExecutions,
  notebookAsModule,
  overrideSource,
  SMALL_DATA,
  withOverrides,
} from "./run_notebooks.ts";

type Nb = Parameters<typeof checkNotebook>[1];

function nb(params: string, extra: Partial<Nb["cells"][number]>[] = [], kernel = "deno"): Nb {
  return {
    nbformat: 4,
    metadata: { kernelspec: { name: kernel } },
    cells: [
      { cell_type: "markdown", source: "# title" },
      { cell_type: "code", source: params, metadata: { tags: ["parameters"] }, outputs: [] },
      ...extra.map((c) => ({ cell_type: "code", source: "", outputs: [], ...c })),
    ],
  };
}

Deno.test("overrideSource: one assignment per parameter, values JSON-quoted", () => {
  const src = overrideSource({ run: 'a"b', limit: 300, full: false });
  assertEquals(src.split("\n").slice(1), ['run = "a\\"b";', "limit = 300;", "full = false;", "undefined;"]);
});

Deno.test("checkNotebook: accepts a well-formed notebook", () => {
  assertEquals(checkNotebook("x.ipynb", nb('let run = "sample";\nlet limit = 0;'), { run: "t", limit: 3 }), []);
});

Deno.test("checkNotebook: names every problem", () => {
  const bad = nb("let run = 1;", [{ outputs: [{}] }], "python3");
  delete bad.cells[1].metadata;
  const problems = checkNotebook("x.ipynb", bad, { run: "t", epochs: 1 });
  assertEquals(problems.length, 4, problems.join("\n"));
  assert(problems.some((p) => p.includes('kernelspec.name is "python3"')));
  assert(problems.some((p) => p.includes("cell 2 has stored outputs")));
  assert(problems.some((p) => p.includes('must be tagged "parameters"')));
  assert(problems.some((p) => p.includes('parameter "epochs"') && p.includes("let epochs")));
});

Deno.test("notebookAsModule: code cells joined, relative imports moved one folder down", () => {
  const src = notebookAsModule(nb('let run = "x";', [
    { source: 'import { a } from "../lib/a.ts";\nconst m = await import("../lib/b.ts");\nconst p = "../outputs";' },
  ]));
  assert(src.includes('import { a } from "../../lib/a.ts";'), src);
  assert(src.includes('await import("../../lib/b.ts")'), src);
  assert(src.includes('const p = "../outputs";'), src); // data paths are runtime values: untouched
  assert(!src.includes("# title"));
});

Deno.test("SMALL_DATA: an entry for every notebook in notebooks/", async () => {
  for await (const e of Deno.readDir("notebooks")) {
    if (!e.name.endsWith(".ipynb")) continue;
    const name = e.name.replace(/\.ipynb$/, "");
    assert(SMALL_DATA[name] !== undefined, `notebooks/${e.name} has no SMALL_DATA entry in tests/run_notebooks.ts`);
    const json = JSON.parse(await Deno.readTextFile(`notebooks/${e.name}`));
    assertEquals(checkNotebook(`notebooks/${e.name}`, json, SMALL_DATA[name]), []);
  }
});

Deno.test("cellSignature: counts plots, tables, loader parts, other displays, text lines and results", () => {
  const sig = cellSignature([
    { output_type: "stream", text: "a\nb\n\n" },
    { output_type: "stream", text: ["c\n"] },
    { output_type: "display_data", data: { "application/vnd.plotly.v1+json": "{}", "text/html": "<div>" } },
    { output_type: "display_data", data: { "text/html": '<table class="bert-table">' } },
    { output_type: "display_data", data: { "text/html": '<div class="bert-plotly-loader">' } },
    { output_type: "display_data", data: { "text/plain": "progress" } },
    { output_type: "execute_result", data: { "text/plain": "42" } },
  ]);
  assertEquals(sig, { plots: 1, tables: 1, loader: 1, displays: 1, textLines: 3, results: 1, errors: 0 });
});

Deno.test("compareExecutions: names the cell whose outputs differ and an incomplete plotly.js loader", () => {
  const plot = { output_type: "display_data", data: { "application/vnd.plotly.v1+json": "{}" } };
  const loader = { output_type: "display_data", data: { "text/html": '<div class="bert-plotly-loader">' } };
  const line = { output_type: "stream", text: "x\n" };
  const runner = nb("let run = 1;", [{ outputs: [loader, loader] }, { outputs: [plot, line] }]);
  const same = nb("let run = 1;", [{ outputs: [loader, loader] }, { outputs: [plot, line] }]);
  assertEquals(compareExecutions(runner, same, { loaderParts: 2 }), []);
  // The stock run lost the plot's cell's last line and one loader part.
  const lossy = nb("let run = 1;", [{ outputs: [loader] }, { outputs: [plot] }]);
  const problems = compareExecutions(runner, lossy, { loaderParts: 2 });
  assertEquals(problems.length, 3, problems.join("\n"));
  assert(problems[0].startsWith("code cell 1 (notebook cell 2): runner 2 loader; stock 1 loader"), problems[0]);
  assert(
    problems[1].startsWith("code cell 2 (notebook cell 3): runner 1 plots, 1 textLines; stock 1 plots"),
    problems[1],
  );
  assert(problems[2].includes("1 of 2 plotly.js loader parts"), problems[2]);
});

Deno.test("withOverrides: the override cell goes right after the parameters cell", () => {
  const out = withOverrides(nb("let run = 1;", [{ source: "run" }]), "run = 2;");
  assertEquals(out.cells.map((c) => c.source), ["# title", "let run = 1;", "run = 2;", "run"]);
  assertEquals(out.cells[2].metadata?.tags, ["injected-parameters"]);
});
