/**
 * End-to-end fault cases of issue 14 ("nothing silent, nothing lost"): the CLI runs as a subprocess with the same
 * permissions as `deno task bert` (read the project and ../shared, write outputs/ and .cache/) on tiny data
 * (64 examples of data/sample, 32 tokens), and each case asserts the clear error, the warning, or the intact data:
 * run-folder locks, atomic `prepare`, early validation, permission advice, damaged checkpoints on --resume,
 * Ctrl-C that saves a checkpoint (and then resumes bit-identically), --resume with more epochs, `predict`
 * input checks, `main` re-runs, backends.
 */
import { assert, assertEquals } from "../shared.ts";
import { acquireRunLock, join, LOCK_FILE, sha256Hex } from "../../lib/io/fsutil.ts";
import { isSoftwareAdapter } from "../../lib/backends/backend.ts";
import { loadFeatures, saveFeatures } from "../../lib/data/features.ts";
import { readSafetensors } from "../../lib/io/safetensors.ts";
import { listCheckpoints, readTrainerState } from "../../lib/training/checkpoints.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
/** Exactly the flags of the `bert` task in deno.json, minus the network. */
const TASK = [
  "run",
  "--allow-read=.,../shared",
  "--allow-write=outputs,.cache",
  "--allow-env",
  "--allow-ffi",
  "--allow-sys",
  "lib/cli.ts",
];

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function command(args: string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: [...TASK, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
}

async function bert(...args: string[]): Promise<Result> {
  const o = await command(args).output();
  const dec = new TextDecoder();
  return { code: o.code, stdout: dec.decode(o.stdout), stderr: dec.decode(o.stderr) };
}

function expectFail(r: Result, code: number, ...needles: string[]): void {
  const all = r.stdout + r.stderr;
  assertEquals(r.code, code, `exit status (output:\n${all})`);
  for (const n of needles) assert(all.includes(n), `output should mention ${JSON.stringify(n)}:\n${all}`);
  assert(!/^\s+at .*\.ts:\d+/m.test(r.stderr), `no stack trace:\n${r.stderr}`);
}

function expectOk(r: Result, ...needles: string[]): void {
  const all = r.stdout + r.stderr;
  assertEquals(r.code, 0, `exit status (output:\n${all})`);
  for (const n of needles) assert(all.includes(n), `output should mention ${JSON.stringify(n)}:\n${all}`);
}

async function fileHash(path: string): Promise<string> {
  return await sha256Hex(await Deno.readFile(join(ROOT, path)));
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(join(ROOT, path)).then(() => true, () => false);
}

/** Waits until `check` holds (polling), failing after `ms`. */
async function waitFor(what: string, check: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function weightsOf(checkpoint: string): Promise<Record<string, Float32Array>> {
  const f = await readSafetensors(join(ROOT, checkpoint, "model.safetensors"));
  return Object.fromEntries(Object.entries(f.tensors).map(([k, t]) => [k, t.data as Float32Array]));
}

Deno.test({
  name: "faults (issue 14): clear errors, intact data, Ctrl-C that saves, locks",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const id = crypto.randomUUID().slice(0, 8);
    const W = `outputs/faults-${id}`; // everything of this test (data, runs), removed at the end
    const mainRun = `faults-${id}-main`;
    await Deno.mkdir(join(ROOT, W, "data"), { recursive: true });
    const sample = (await Deno.readTextFile(join(ROOT, "data/sample/train.tsv"))).split("\n");
    const header = sample[0];
    const write = (name: string, lines: string[]) => Deno.writeTextFile(join(ROOT, W, "data", name), lines.join("\n"));
    await write("train.tsv", [header, ...sample.slice(1, 65), ""]);
    await write("dev.tsv", [header, ...sample.slice(65, 97), ""]);
    await write("header_only.tsv", [header, ""]);
    await write("dev_bad_label.tsv", [header, ...sample.slice(65, 80), "An odd review.\t7", ""]);
    const data = (name: string) => `${W}/data/${name}`;
    const prep = ["prepare", "--outputs-dir", W, "--max-seq-length", "32"];
    const trainArgs = (out: string, ...more: string[]) => [
      "train",
      "--features",
      `${W}/r/features`,
      "--output",
      out,
      "--batch-size",
      "4",
      "--epochs",
      "3",
      "--lr",
      "1e-3",
      "--save-steps",
      "5",
      ...more,
    ];
    try {
      await t.step("prepare: a good run, then a failing dev split leaves both old splits intact", async () => {
        expectOk(await bert(...prep, "--train", data("train.tsv"), "--dev", data("dev.tsv"), "--run", "r"));
        const before = [
          await fileHash(`${W}/r/features/train.safetensors`),
          await fileHash(`${W}/r/features/dev.safetensors`),
        ];
        const r = await bert(...prep, "--train", data("dev.tsv"), "--dev", data("dev_bad_label.tsv"), "--run", "r");
        expectFail(r, 1, "dev_bad_label.tsv:17", 'unknown label "7"');
        const after = [
          await fileHash(`${W}/r/features/train.safetensors`),
          await fileHash(`${W}/r/features/dev.safetensors`),
        ];
        assertEquals(after, before, "train and dev features unchanged");
      });

      await t.step(
        "prepare: empty / header-only splits are errors; --allow-unlabelled-dev accepts an empty dev",
        async () => {
          expectFail(
            await bert(...prep, "--train", data("header_only.tsv"), "--dev", data("dev.tsv"), "--run", "e"),
            1,
            "header_only.tsv: the train split has no examples",
          );
          expectFail(
            await bert(...prep, "--train", data("train.tsv"), "--dev", data("header_only.tsv"), "--run", "e"),
            1,
            "the dev split has no examples",
            "--allow-unlabelled-dev",
          );
          assert(!(await exists(`${W}/e/features`)), "no features written");
          const ok = await bert(
            ...prep,
            "--train",
            data("train.tsv"),
            "--dev",
            data("header_only.tsv"),
            "--run",
            "e",
            "--allow-unlabelled-dev",
          );
          expectOk(ok, "train will not validate");
        },
      );

      await t.step("prepare: --max-seq-length beyond 512 is refused with the limit and the fix", async () => {
        const r = await bert("prepare", "--outputs-dir", W, "--run", "long", "--max-seq-length", "1000");
        expectFail(r, 1, "--max-seq-length 1000 exceeds 512", "--max-seq-length 512 or less");
      });

      await t.step("flag values and task names are checked before any work, under their flag names", async () => {
        expectFail(
          await bert(...trainArgs(`${W}/bad`), "--batch-size", "-4"),
          2,
          "--batch-size must be an integer >= 1, got -4",
        );
        expectFail(await bert(...trainArgs(`${W}/bad`), "--task", "bogus"), 2, '--task "bogus" is not a task');
        expectFail(await bert("prepare", "--task", "bogus", "--outputs-dir", W), 2, '--task "bogus" is not a task');
        // An output folder that cannot be written fails before the model is built, naming the folder.
        await Deno.writeTextFile(join(ROOT, W, "a-file"), "not a folder");
        expectFail(await bert(...trainArgs(`${W}/a-file/run`)), 1, `${W}/a-file/run`);
        assert(!(await exists(`${W}/bad`)), "nothing created");
      });

      await t.step("a token id outside the vocabulary is reported with the features file", async () => {
        const f = await loadFeatures(join(ROOT, W, "r/features/train.safetensors"));
        f.inputIds[5] = 999999;
        await saveFeatures(join(ROOT, W, "ids/features/train.safetensors"), f);
        const r = await bert("train", "--features", `${W}/ids/features`, "--epochs", "1");
        expectFail(r, 1, `${W}/ids/features/train.safetensors`, "token id 999999", "outside the vocabulary");
      });

      await t.step("an invalid --config file names the file", async () => {
        await Deno.writeTextFile(join(ROOT, W, "bad_config.json"), "{ not json");
        const r = await bert(...trainArgs(`${W}/cfg`), "--config", `${W}/bad_config.json`);
        expectFail(r, 1, `--config ${W}/bad_config.json: not a valid config.json`);
      });

      await t.step("data outside the project and outputs outside outputs/: what to do under deno task", async () => {
        const tmp = await Deno.makeTempDir({ prefix: "faults_outside_" });
        try {
          await Deno.copyFile(join(ROOT, data("train.tsv")), join(tmp, "train.tsv"));
          const r = await bert(...prep, "--train", join(tmp, "train.tsv"), "--dev", data("dev.tsv"), "--run", "p");
          expectFail(r, 1, `Requires read access to "${tmp}/train.tsv"`, "Put the data under data/", "--allow-read=");
          assert(!r.stderr.includes("run again with the --allow-read flag"), r.stderr);
          const w = await bert(...trainArgs(join(tmp, "run")));
          expectFail(w, 1, "may write only under outputs/", "--allow-write=");
        } finally {
          await Deno.remove(tmp, { recursive: true });
        }
      });

      await t.step(
        "lock: a second writer fails at once naming the holder; a dead holder's lock is taken over",
        async () => {
          const lock = await acquireRunLock(join(ROOT, W, "locked"), { command: "bert train (the test holds it)" });
          try {
            const r = await bert(...trainArgs(`${W}/locked`));
            expectFail(
              r,
              1,
              "is in use by another run",
              `pid ${Deno.pid}`,
              "bert train (the test holds it)",
              "started ",
            );
            const p = await bert(...prep, "--train", data("train.tsv"), "--dev", data("dev.tsv"), "--run", "locked");
            expectFail(p, 1, "is in use by another run", `pid ${Deno.pid}`);
            assertEquals(await listCheckpoints(join(ROOT, W, "locked")), []);
          } finally {
            lock.release();
          }
          // A lock file left by a process that died (no OS lock held any more): taken over with a notice.
          await Deno.mkdir(join(ROOT, W, "stale"), { recursive: true });
          await Deno.writeTextFile(
            join(ROOT, W, "stale", LOCK_FILE),
            JSON.stringify({ pid: 999999, command: "bert train --old", started: "2020-01-01T00:00:00.000Z" }),
          );
          const r = await bert(...trainArgs(`${W}/stale`), "--epochs", "1", "--quiet");
          expectOk(r, "took over the lock", "pid 999999", "bert train --old");
          assert(!(await exists(`${W}/stale/${LOCK_FILE}`)), "lock released at the end");
        },
      );

      let uninterrupted = "";
      await t.step(
        "SIGINT: finish the update, save a checkpoint, print how to resume; the resumed run is exact",
        async () => {
          expectOk(await bert(...trainArgs(`${W}/a`)));
          uninterrupted = `${W}/a/checkpoint-48`;
          const child = command(trainArgs(`${W}/b`)).spawn();
          await waitFor("the first checkpoint", async () => (await listCheckpoints(join(ROOT, W, "b"))).length > 0);
          child.kill("SIGINT");
          const o = await child.output();
          const stderr = new TextDecoder().decode(o.stderr);
          assertEquals(o.code, 130, stderr);
          assert(stderr.includes("SIGINT: finishing the current update"), stderr);
          const m = /saved (\S+)\.\nResume with: deno task bert (.+)$/m.exec(stderr);
          assert(m, `the message names the checkpoint and the resume command:\n${stderr}`);
          const step = Number(/checkpoint-(\d+)$/.exec(m[1])![1]);
          assert(step > 0 && step < 48, `interrupted mid-run (step ${step})`);
          const state = await readTrainerState(join(ROOT, m[1]));
          assertEquals(state.global_step, step, "the checkpoint holds the step it was interrupted at");
          const resumeArgs = m[2].split(" ");
          assertEquals(resumeArgs.at(-1), "--resume");
          const r = await bert(...resumeArgs, "--quiet");
          expectOk(r, `resuming from ${W}/b/checkpoint-${step}`); // shown even with --quiet
          const [wa, wb] = [await weightsOf(uninterrupted), await weightsOf(`${W}/b/checkpoint-48`)];
          for (const name of Object.keys(wa)) assertEquals(wb[name], wa[name], `${name} bit-identical`);
        },
      );

      await t.step("a second Ctrl-C stops at once", async () => {
        const child = command(trainArgs(`${W}/c`)).spawn();
        await waitFor("the first checkpoint", async () => (await listCheckpoints(join(ROOT, W, "c"))).length > 0);
        child.kill("SIGINT");
        child.kill("SIGINT");
        const o = await child.output();
        const stderr = new TextDecoder().decode(o.stderr);
        assertEquals(o.code, 130, `exit status; stderr:\n${stderr}`);
        assert(/SIGINT again: stopping at once|interrupted by SIGINT/.test(stderr), stderr);
      });

      await t.step("--resume skips a damaged newest checkpoint loudly, for any of its files", async () => {
        const cps = (await listCheckpoints(join(ROOT, W, "a"))).map((c) => c.step);
        const [newest, older] = cps;
        for (const [file, damage] of [["trainer_state.json", "{"], ["training_state.safetensors", "truncate"]]) {
          const dir = `${W}/damaged-${file.split(".")[0]}`;
          await Deno.mkdir(join(ROOT, dir));
          for (const s of cps) {
            await Deno.mkdir(join(ROOT, dir, `checkpoint-${s}`));
            for await (const e of Deno.readDir(join(ROOT, W, "a", `checkpoint-${s}`))) {
              await Deno.copyFile(
                join(ROOT, W, "a", `checkpoint-${s}`, e.name),
                join(ROOT, dir, `checkpoint-${s}`, e.name),
              );
            }
          }
          const target = join(ROOT, dir, `checkpoint-${newest}`, file);
          if (damage === "truncate") {
            const bytes = await Deno.readFile(target);
            await Deno.writeFile(target, bytes.subarray(0, bytes.length - 100));
          } else await Deno.writeTextFile(target, damage);
          // --epochs 4 (one more): the run continues past its old end, and says what happens to the schedule.
          const r = await bert(...trainArgs(dir), "--epochs", "4", "--resume", "--quiet");
          expectOk(
            r,
            `WARNING: --resume skips the damaged checkpoint ${dir}/checkpoint-${newest}: ${file}`,
            `Resuming from ${dir}/checkpoint-${older} instead`,
            "the run now ends at step 64 instead of 48",
            "schedule is recomputed",
          );
          assert(await exists(`${dir}/checkpoint-64`), "trained on to the new end");
        }
      });

      await t.step("--resume with fewer epochs than done, or another --lr, is refused clearly", async () => {
        expectFail(
          await bert(...trainArgs(`${W}/a`), "--epochs", "1", "--resume"),
          1,
          "it is at step 48",
          "ends the run at step 16",
        );
        expectFail(
          await bert(...trainArgs(`${W}/a`), "--lr", "5e-4", "--resume"),
          1,
          "--lr: checkpoint 0.001, now 0.0005",
        );
      });

      await t.step("predict: empty input is an error; commas stay in a --text; pair models warn", async () => {
        expectFail(
          await bert(
            "predict",
            "--checkpoint",
            uninterrupted,
            "--input",
            data("header_only.tsv"),
            "--column",
            "sentence",
          ),
          1,
          "no texts to predict",
        );
        const r = await bert("predict", "--checkpoint", uninterrupted, "--text", "Great food, lousy service.");
        expectOk(r, "Great food, lousy service.");
        assertEquals(r.stdout.split("\n").filter((l) => l.includes("lousy")).length, 1, "one text, not two");
        // The same weights, recorded as fine-tuned on MRPC (a sentence-pair task).
        const pair = `${W}/pair-checkpoint`;
        await Deno.mkdir(join(ROOT, pair));
        for await (const e of Deno.readDir(join(ROOT, uninterrupted))) {
          await Deno.copyFile(join(ROOT, uninterrupted, e.name), join(ROOT, pair, e.name));
        }
        const state = JSON.parse(await Deno.readTextFile(join(ROOT, pair, "trainer_state.json")));
        state.train_features.task = "mrpc";
        await Deno.writeTextFile(join(ROOT, pair, "trainer_state.json"), JSON.stringify(state));
        expectOk(await bert("predict", "--checkpoint", pair, "--text", "One sentence."), "sentence PAIRS (task mrpc)");
        const both = await bert("predict", "--checkpoint", pair, "--text", "One.", "--text-pair", "Two.");
        expectOk(both);
        assert(!both.stderr.includes("PAIRS"), both.stderr);
        // A damaged config.json is named.
        await Deno.writeTextFile(join(ROOT, pair, "config.json"), "{");
        expectFail(
          await bert("predict", "--checkpoint", pair, "--text", "x"),
          1,
          `${pair}/config.json: not valid JSON`,
        );
      });

      await t.step("main: a re-run refuses without --overwrite and changes nothing", async () => {
        await Deno.mkdir(join(ROOT, "outputs", mainRun, "features"), { recursive: true });
        await Deno.writeTextFile(join(ROOT, "outputs", mainRun, "features", "train.safetensors"), "earlier");
        const r = await bert("main", "--run", mainRun, "--offline");
        expectFail(r, 2, `outputs/${mainRun} already holds a run`, "--overwrite");
        assertEquals(
          await Deno.readTextFile(join(ROOT, "outputs", mainRun, "features", "train.safetensors")),
          "earlier",
        );
      });

      await t.step("backends: help lists every backend; a backend that cannot start says why", async () => {
        for (const cmd of ["train", "predict", "evaluate", "main"]) {
          const h = await bert(cmd, "--help");
          for (const b of ["tensorflow-gpu", "tensorflow", "blas", "wasm", "cpu", "webgpu"]) {
            assert(h.stdout.includes(b), `${cmd} --help lists ${b}`);
          }
        }
        let tfjsNode = true;
        try {
          await import(["npm:@tensorflow", "tfjs-node"].join("/"));
        } catch {
          tfjsNode = false;
        }
        if (!tfjsNode) {
          const r = await bert("predict", "--checkpoint", uninterrupted, "--text", "x", "--backend", "tensorflow");
          expectFail(r, 1, 'backend "tensorflow" could not be started on this machine: ');
        }
        assert(isSoftwareAdapter("llvmpipe (LLVM 15.0.6, 256 bits)") && isSoftwareAdapter("SwiftShader Device"));
        assert(!isSoftwareAdapter("NVIDIA GeForce RTX 4090"));
        // Asked in a child that leaves through exitProcess: a process that looked for an adapter loaded libEGL, whose
        // destructor at exit could corrupt the heap (lib/backends/exit.ts); this test's own process never does.
        const asked = await new Deno.Command(Deno.execPath(), {
          args: [
            "eval",
            'import { webgpuAdapterName } from "./lib/backends/backend.ts"; import { exitProcess } from ' +
            '"./lib/backends/exit.ts"; console.log(JSON.stringify(await webgpuAdapterName() ?? null)); exitProcess(0);',
          ],
          cwd: ROOT,
          stdout: "piped",
          stderr: "piped",
        }).output();
        const said = new TextDecoder().decode(asked.stdout);
        assertEquals(asked.code, 0, `asking for the adapter: ${said}${new TextDecoder().decode(asked.stderr)}`);
        const adapter = JSON.parse(said.trim().split("\n").pop()!) as string | null;
        if (adapter && isSoftwareAdapter(adapter)) {
          const r = await bert("predict", "--checkpoint", uninterrupted, "--text", "x", "--backend", "webgpu");
          assert(r.stderr.includes("is a SOFTWARE rasteriser"), r.stderr);
          assertEquals(r.code, 0, `predict on webgpu ends cleanly (exitProcess):\n${r.stderr}`);
        } else console.log(`no software WebGPU adapter here (${adapter ?? "none"}): the loud warning is not run`);
      });
    } finally {
      await Deno.remove(join(ROOT, W), { recursive: true }).catch(() => {});
      await Deno.remove(join(ROOT, "outputs", mainRun), { recursive: true }).catch(() => {});
    }
  },
});
