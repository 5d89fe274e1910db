import { assert, assertEquals } from "./shared.ts";
import { checkNotebook, notebookAsModule, overrideSource, SMALL_DATA } from "./run_notebooks.ts";

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
  assertEquals(src.split("\n").slice(1), ['run = "a\\"b";', "limit = 300;", "full = false;"]);
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
