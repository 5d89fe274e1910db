/**
 * `deno task bert bench`: training-step, inference, matmul and tokenizer benchmarks on one or more tfjs
 * backends, optionally next to PyTorch (tests/bench/pytorch_bench.py, when /usr/bin/python3 has torch).
 * @module
 */
import { defineCommand, type ParsedArgs } from "./args.ts";
import { UsageError } from "../io/errors.ts";
import { type BackendName, initBackend } from "../backends/backend.ts";
import { registerBlasBackend } from "../backends/blas/blas_backend.ts";
import {
  benchInfer,
  benchMatMul,
  type BenchRow,
  type BenchShape,
  benchTokenizer,
  benchTrain,
  formatTable,
  keptTokenRows,
  machineLines,
  matmulFlops,
  measureSgemm,
  medianOfRounds,
  sgemmDriftLine,
  sgemmShareLines,
  SHAPES,
  speedupLines,
} from "../bench/bench.ts";
import { pytorchEnv, pytorchSettingsLine } from "../bench/pytorch_env.ts";
import { pytorchTurnEngines, takeTurns, tfjsTurnEngines } from "../bench/turns.ts";

/** Flags of `bench`. */
export const spec = defineCommand({
  name: "bench",
  description: "Measures BERT training steps (forward + backward + AdamW), inference, matmul GFLOP/s and " +
    "tokenizer + feature conversion throughput, and prints a table with the machine, threads and peak memory. " +
    "Use `deno task bench` (adds --allow-run) for --pytorch.",
  usage:
    "[--shapes tiny,mini,base] [--backend blas,wasm] [--steps N] [--what train,infer,infer-cls,matmul,tokenizer] " +
    "[--pytorch [--no-paired]] [--rounds N]",
  flags: {
    shapes: { type: "list", default: ["tiny"], help: `model shapes: ${Object.keys(SHAPES).join(", ")}` },
    backend: { type: "list", default: ["auto"], help: "tfjs backends to compare (auto, blas, wasm, cpu, ...)" },
    steps: { type: "number", default: 5, help: "measured steps per benchmark (the median is reported)" },
    warmup: { type: "number", default: 2, help: "unmeasured steps first" },
    what: {
      type: "list",
      default: ["train", "infer", "infer-cls", "matmul"],
      help: "train, infer (every position, as PyTorch), infer-cls (last layer at [CLS] only, as evaluate), matmul, " +
        "tokenizer",
    },
    threads: { type: "number", help: "threads for the blas backend's BLAS (and wasm when threaded)" },
    vocab: {
      type: "string",
      default: "../shared/data/models/bert-base-uncased-vocab/vocab.txt",
      help: "vocab.txt for the tokenizer benchmark",
    },
    texts: { type: "string", default: "data/sample/train.tsv", help: "TSV whose first column is the texts" },
    pytorch: { type: "boolean", default: false, help: "also run tests/bench/pytorch_bench.py (needs --allow-run)" },
    paired: {
      type: "boolean",
      default: true,
      help: "with --pytorch and one backend: tfjs and PyTorch take turns step by step, so that the machine's drift " +
        "meets both (--no-paired: all tfjs rows, then all PyTorch rows, as before 2026-12-07)",
    },
    rounds: {
      type: "number",
      default: 1,
      help: "repeat every row this many times and report each row's median round",
    },
    python: { type: "string", default: "/usr/bin/python3", help: "Python with torch, for --pytorch" },
  },
});

const WHATS = ["train", "infer", "infer-cls", "matmul", "tokenizer"];

/** Runs the benchmarks. */
export async function run(args: ParsedArgs<typeof spec.flags>): Promise<void> {
  const shapes = args.flags.shapes.map((s) => {
    const shape = SHAPES[s];
    if (!shape) throw new UsageError(`unknown shape "${s}" (expected ${Object.keys(SHAPES).join(", ")})`);
    return shape;
  });
  const whats = args.flags.what;
  for (const w of whats) if (!WHATS.includes(w)) throw new UsageError(`unknown --what "${w}" (expected ${WHATS})`);
  const steps = args.flags.steps, warmup = args.flags.warmup;
  if (!(steps >= 1)) throw new UsageError("--steps must be at least 1");
  const threads = args.flags.threads;
  // The CPU's vector extensions and its measured sgemm rate go beside every table, so that figures from different
  // machines can be read (a train row's GFLOP/s against the sgemm line shows how close the step runs to the BLAS).
  const sgemm = await measureSgemm({ threads });
  const machine = machineLines(sgemm);
  if (args.flags.pytorch) machine.push(pytorchSettingsLine());
  for (const l of machine) console.log(l);
  const rounds: BenchRow[][] = [];
  const roundCount = args.flags.rounds;
  const paired = args.flags.pytorch && args.flags.paired && args.flags.backend.length === 1;
  if (!(roundCount >= 1)) throw new UsageError("--rounds must be at least 1");
  for (let round = 1; round <= roundCount; round++) {
    if (roundCount > 1) console.log(`-- round ${round} of ${roundCount}`);
    const rows: BenchRow[] = [];
    rounds.push(rows);
    const show = (r: BenchRow) => {
      rows.push(r);
      console.log(formatTable([r]).split("\n")[2]);
    };
    if (whats.includes("tokenizer")) {
      const texts = await readTexts(args.flags.texts);
      show(await benchTokenizer({ vocabPath: args.flags.vocab, texts }));
    }
    for (const backend of args.flags.backend) {
      const info = await initBackend({ backend: backend as BackendName | "auto", threads });
      const t = backendThreads(info.name, threads);
      const engine = `tfjs ${info.name}`;
      if (whats.includes("matmul")) { for (const r of await benchMatMul(undefined, Math.min(steps, 5), t)) show(r); }
      for (const shape of shapes) {
        const o = { shape, steps, warmup, engine, threads: t };
        if (paired) {
          for (const r of await turnRows(args, o, whats)) show(r);
          continue;
        }
        if (whats.includes("train")) show(await benchTrain(o));
        if (whats.includes("infer")) show(await benchInfer(o));
        if (whats.includes("infer-cls")) show(await benchInfer(o, { clsOnly: true }));
      }
    }
    if (args.flags.pytorch && !paired) {
      for (const r of await runPytorch(args, shapes.map((s) => s.name), whats, steps, warmup)) show(r);
    }
  }
  const rows = medianOfRounds(rounds);
  const medianNote = roundCount > 1 ? `each row: its median round of ${roundCount}\n` : "";
  console.log(`\n${machine.join("\n")}\n${medianNote}${formatTable(rows)}`);
  const speedups = speedupLines(rounds);
  if (speedups.length) {
    console.log(
      `\nspeed-up over PyTorch's best thread setting (its median ms / tfjs median ms${
        roundCount > 1 ? ", the median round" : ""
      }):\n${speedups.join("\n")}`,
    );
  }
  const packed = shapes.filter((s) =>
    rows.some((r) =>
      r.engine === "tfjs blas" && r.shape.startsWith(`${s.name} `) &&
      (r.what.startsWith("infer") || r.what === "train")
    )
  );
  if (packed.length) {
    const kept = packed.map((s) => `${s.name} ${keptTokenRows(s)} of ${s.batch * s.seqLength}`).join(", ");
    console.log(
      `\ntfjs blas train and infer rows compute each example's tokens up to its length rounded up to 4, not the ` +
        `padding past it (lib/model/packing.ts; token rows: ${kept}); GFLOP/s counts the padded batch's products, as ` +
        `PyTorch runs them; the share of sgemm below counts the products computed.`,
    );
  }
  const after = sgemm ? await measureSgemm({ threads }) : undefined;
  if (sgemm && after) console.log(`\n${sgemmDriftLine(sgemm, after)}`);
  const shares = sgemmShareLines(rows, sgemm);
  if (shares.length) {
    console.log(`\nmatrix products of a training step against the measured sgemm:\n${shares.join("\n")}`);
  }
  if (rows.filter((r) => r.peakRssMb !== undefined && !r.engine.startsWith("pytorch")).length > 1) {
    console.log(
      "\npeak RSS is this process's high-water mark so far, so later rows include earlier ones: for a row's own " +
        "figure, bench one shape and one --what per run.",
    );
  }
}

function backendThreads(name: string, threads: number | undefined): number | undefined {
  if (name === "blas") {
    return registerBlasBackend()?.threads;
  }
  if (name === "wasm" || name === "cpu") return name === "cpu" ? 1 : threads ?? 1;
  return threads;
}

async function readTexts(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(`cannot read the tokenizer benchmark texts ${path}: ${(e as Error).message}`);
  }
  const lines = text.split("\n").slice(1).map((l) => l.split("\t")[0]).filter((l) => l.trim());
  if (!lines.length) throw new Error(`${path}: no texts (expected a header line, then one text per line)`);
  const texts: string[] = [];
  while (texts.length < 5000) texts.push(...lines);
  return texts.slice(0, 5000);
}

async function runPytorch(
  args: ParsedArgs<typeof spec.flags>,
  shapes: string[],
  whats: string[],
  steps: number,
  warmup: number,
): Promise<BenchRow[]> {
  const what = whats.filter((w) => w === "train" || w === "infer");
  if (!what.length) return [];
  const script = new URL("../../tests/bench/pytorch_bench.py", import.meta.url).pathname;
  const rows: BenchRow[] = [];
  for (const threads of [1, 2]) { // one process per thread count, each with its own best setting (pytorchEnv)
    let out: Deno.CommandOutput;
    try {
      out = await new Deno.Command(args.flags.python, {
        args: [
          script,
          "--json",
          "--shapes",
          shapes.join(","),
          "--what",
          what.join(","),
          "--steps",
          String(steps),
          "--warmup",
          String(warmup),
          "--threads",
          String(threads),
        ],
        stdout: "piped",
        stderr: "piped",
        clearEnv: true,
        env: pytorchEnv(threads),
      }).output();
    } catch (e) {
      console.warn(
        `--pytorch skipped: cannot run ${args.flags.python} (${(e as Error).message}; use \`deno task bench\`)`,
      );
      return rows;
    }
    for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
      if (!line.trim()) continue;
      const r = JSON.parse(line);
      if (r.error) {
        console.warn(`--pytorch skipped: ${r.error}`);
        return rows; // the next thread count's process would say the same
      }
      const shape = SHAPES[r.shape];
      rows.push({
        what: r.what,
        engine: r.engine,
        shape: `${r.shape} ${r.batch}x${r.seq}`,
        threads: r.threads,
        msPerStep: r.ms_per_step,
        minMs: r.min_ms,
        examplesPerS: r.examples_per_s,
        gflops:
          shape && shape.batch === r.batch && shape.seqLength === r.seq && (r.what === "train" || r.what === "infer")
            ? matmulFlops(shape, r.what, 2, false) / r.ms_per_step / 1e6 // PyTorch runs the last layer everywhere
            : undefined,
        peakRssMb: r.peak_rss_mb,
        cpuPct: r.cpu_pct,
      });
    }
    if (!out.success) console.warn(new TextDecoder().decode(out.stderr).slice(-2000));
  }
  // Each shape's rows by `what`; within one, 1 thread before 2 as the processes ran (the sort is stable).
  const rank = (r: BenchRow) => [shapes.indexOf(r.shape.split(" ")[0]), (what as string[]).indexOf(r.what)];
  return rows.sort((a, b) => rank(a)[0] - rank(b)[0] || rank(a)[1] - rank(b)[1]);
}

/**
 * One shape's rows with tfjs and PyTorch taking turns (lib/bench/turns.ts): the training step, then the forward
 * passes (`infer` and `infer-cls` against PyTorch's `infer`), each group in its own turns, PyTorch on 1 and 2 threads
 * (one process each, {@linkcode pytorchEnv}).
 */
async function turnRows(
  args: ParsedArgs<typeof spec.flags>,
  o: { shape: BenchShape; steps: number; warmup: number; engine: string; threads?: number },
  whats: string[],
): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const group of [["train"], ["infer", "infer-cls"]] as const) {
    const asked = group.filter((w) => whats.includes(w));
    if (!asked.length) continue;
    const tfjs = await tfjsTurnEngines(o.shape, asked, o);
    const torch = [];
    for (const threads of [1, 2]) {
      const env = pytorchEnv(threads); // each thread count in its own process, with its own best setting
      torch.push(await pytorchTurnEngines(o.shape.name, group[0], [threads], { python: args.flags.python, env }));
      if (!torch.at(-1)) break; // PyTorch cannot run here: said once
    }
    try {
      rows.push(...await takeTurns(o.shape, [...tfjs.engines, ...torch.flatMap((t) => t?.engines ?? [])], o));
    } finally {
      tfjs.dispose();
      for (const t of torch) await t?.close();
    }
  }
  return rows;
}
