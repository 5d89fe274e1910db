/**
 * The layout rule of ARCHITECTURE.md, checked on the source: every import in lib/ (static, `export … from`, dynamic
 * `import()`, `import type`) goes one way, `cli → lessons/bench → tasks → training → eval → model/data → backends/
 * text/viz → io`, and there is no import cycle. A new folder must be added to {@linkcode LAYERS} before it can be
 * imported from, so the rule cannot be bypassed by accident.
 * @module
 */
import { assert, assertEquals } from "./shared.ts";

const LIB = new URL("../lib/", import.meta.url).pathname;

/**
 * Which units each unit may import (a unit is a folder of lib/; `tasks/<name>` are separate units, and so are
 * lib/cli.ts and lib/cli/). Everything a unit may import is listed, not only the layer directly below.
 */
export const LAYERS: Record<string, readonly string[]> = (() => {
  const below = ["model", "data", "backends", "text", "viz", "io"]; // what eval may import
  const tasks = ["tasks/classification", "tasks/squad", "tasks/pretraining"];
  const belowTasks = ["training", "eval", ...below];
  return {
    io: [],
    text: ["io"],
    viz: ["io"],
    backends: ["io"],
    model: ["backends", "text", "io"],
    data: ["text", "viz", "io"],
    eval: below,
    training: ["eval", ...below],
    ...Object.fromEntries(tasks.map((t) => [t, belowTasks])),
    bench: belowTasks,
    lessons: [...tasks, ...belowTasks],
    cli: ["lessons", "bench", ...tasks, ...belowTasks],
  };
})();

/** All .ts files under `dir`, as paths relative to lib/. */
function listTs(dir = LIB, prefix = ""): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    if (e.isDirectory) out.push(...listTs(`${dir}${e.name}/`, `${prefix}${e.name}/`));
    else if (e.name.endsWith(".ts")) out.push(prefix + e.name);
  }
  return out.sort();
}

/** The source without comments (so that import examples in JSDoc are not taken for imports). */
export function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
}

/** Relative specifiers a module imports: static (`import`/`export … from`) and dynamic (`import("…")`). */
export function importsOf(src: string): string[] {
  const code = stripComments(src);
  const specs = new Set<string>();
  for (const m of code.matchAll(/(?:^|[;\s])(?:import|export)\s[^;]*?\sfrom\s*["'](\.{1,2}\/[^"']+)["']/g)) {
    specs.add(m[1]);
  }
  for (const m of code.matchAll(/(?:^|[;\s])import\s*["'](\.{1,2}\/[^"']+)["']/g)) specs.add(m[1]);
  for (const m of code.matchAll(/import\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g)) specs.add(m[1]);
  return [...specs];
}

/** The unit of a lib/-relative path: its first folder (`tasks/<name>` for tasks), `cli` for lib/cli.ts. */
export function unitOf(path: string): string {
  const parts = path.split("/");
  if (parts.length === 1) return path === "cli.ts" ? "cli" : `(top level: ${path})`;
  return parts[0] === "tasks" ? `tasks/${parts[1]}` : parts[0];
}

function resolve(from: string, spec: string): string {
  const parts = from.split("/").slice(0, -1);
  for (const p of spec.split("/")) {
    if (p === "..") parts.pop();
    else if (p !== ".") parts.push(p);
  }
  return parts.join("/");
}

/** The import graph of lib/: file → files it imports (lib/-relative). */
export function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const f of listTs()) {
    const deps = importsOf(Deno.readTextFileSync(LIB + f)).map((s) => resolve(f, s));
    graph.set(f, deps);
  }
  return graph;
}

/** Strongly connected components with more than one file (or a self-import): the import cycles. */
export function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>(), low = new Map<string, number>(), stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index), low.set(v, index), index++;
    stack.push(v), onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) visit(w), low.set(v, Math.min(low.get(v)!, low.get(w)!));
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!, onStack.delete(w), scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return found;
}

Deno.test("architecture: every import in lib/ resolves to a file", () => {
  const graph = importGraph();
  const missing = [...graph].flatMap(([f, deps]) => deps.filter((d) => !graph.has(d)).map((d) => `${f} -> ${d}`));
  assertEquals(missing, []);
});

Deno.test("architecture: lib/ has no import cycle", () => {
  assertEquals(cycles(importGraph()), []);
});

Deno.test("architecture: imports follow the layer rule of ARCHITECTURE.md", () => {
  const bad: string[] = [];
  for (const [f, deps] of importGraph()) {
    const from = unitOf(f);
    const allowed = LAYERS[from];
    if (!allowed) {
      bad.push(`${f}: folder '${from}' is not in LAYERS (tests/architecture_test.ts)`);
      continue;
    }
    for (const d of deps) {
      const to = unitOf(d);
      if (to !== from && !allowed.includes(to)) bad.push(`${f} -> ${d} (${from} may not import ${to})`);
    }
  }
  assertEquals(bad, []);
});

Deno.test("architecture: the checker sees cycles, dynamic imports and rule breaks (self-test)", () => {
  assertEquals(
    importsOf(`import { a } from "./a.ts";\nexport { b } from "../b.ts";\nconst c = await import("./c.ts");`),
    [
      "./a.ts",
      "../b.ts",
      "./c.ts",
    ],
  );
  assertEquals(importsOf(`/** import { x } from "./x.ts"; */\n// import { y } from "./y.ts";`), []);
  assertEquals(importsOf(`import type {\n  T,\n} from "./t.ts";`), ["./t.ts"]);
  const g = new Map([["a.ts", ["b.ts"]], ["b.ts", ["c.ts"]], ["c.ts", ["a.ts"]], ["d.ts", ["a.ts"]]]);
  assertEquals(cycles(g), [["a.ts", "b.ts", "c.ts"]]);
  assertEquals(unitOf("tasks/squad/train.ts"), "tasks/squad");
  assertEquals(unitOf("cli.ts"), "cli");
  assert(!LAYERS.model.includes("training"), "model must not import training");
});

/** Longest a lib/ file may be (issue 15: "no file in lib/ over ~900 lines"). */
export const MAX_LINES = 900;

Deno.test(`architecture: no file in lib/ is longer than ${MAX_LINES} lines`, () => {
  const long = listTs()
    .map((f) => ({ f, n: Deno.readTextFileSync(LIB + f).split("\n").length }))
    .filter(({ n }) => n > MAX_LINES)
    .map(({ f, n }) => `${f}: ${n} lines`);
  assertEquals(long, []);
});
