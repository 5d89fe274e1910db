/**
 * Loading a BERT-Base-sized checkpoint from each weights format: `model.safetensors`, PyTorch `pytorch_model.bin`
 * (zip) and a Google TensorFlow checkpoint. The three folders are generated once into
 * `outputs/bench/load_formats/` from one random BERT-Base (BertForSequenceClassification) with lib/io's writers.
 * Each measurement runs in a fresh child process so that its peak resident memory (VmHWM) is its own:
 *
 * - `read`: the weights as Hugging Face tensors (`readCheckpointWeights`);
 * - `load`: the whole `loadCheckpoint` (config, vocabulary, weights into the model's variables).
 *
 * Usage: deno task bench:load [--runs 3] [--backend blas] [--shape base|tiny] [--modes read,load]
 * (CPU time is reported beside wall time: on a busy machine it is the steadier figure.)
 * @module
 */
import { initBackend } from "../../lib/backends/backend.ts";
import { loadCheckpoint, modelToTensors, readCheckpointWeights } from "../../lib/model/checkpoint.ts";
import { ensureDir, exists } from "../../lib/io/fsutil.ts";
import { writePytorchBin } from "../../lib/io/pytorch_bin.ts";
import { hfNameToGoogle, transposeEntry, writeTfCheckpoint } from "../../lib/io/tf_checkpoint.ts";
import { BertModel, configFromJson, configToJson } from "../../lib/model/model.ts";
import { writeSafetensors } from "../../lib/io/safetensors.ts";

const FORMATS = ["safetensors", "pytorch", "tensorflow"] as const;
const ROOT = "outputs/bench/load_formats";

function flag(name: string, fallback: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : fallback;
}

/**
 * The process's peak resident set (VmHWM), MB. Not getrusage: its ru_maxrss survives execve, so a child would
 * report its parent's peak. Deno grants /proc/self only with all permissions, hence `-A` for the children.
 */
function peakRssMb(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return Number(status.match(/VmHWM:\s+(\d+)/)![1]) / 1024;
}

/** User + system CPU time of the process so far (/proc/self/stat, 100 ticks a second), ms. */
function cpuMs(): number {
  const fields = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const SHAPES: Record<string, Record<string, number>> = {
  base: { hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072 },
  tiny: { hidden_size: 128, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 512 },
};

/** Writes the three folders from one random model (skipped when they exist). */
async function generate(shape: string): Promise<void> {
  const root = `${ROOT}/${shape}`;
  if (await exists(`${root}/tensorflow/bert_model.ckpt.index`)) return;
  console.log(`generating a random ${shape} checkpoint in 3 formats under ${root}/ ...`);
  await initBackend({ backend: "cpu", quiet: true });
  const config = configFromJson({
    ...SHAPES[shape],
    vocab_size: 30522,
    max_position_embeddings: 512,
    type_vocab_size: 2,
    model_type: "bert",
  });
  const model = new BertModel(config, { head: "classification", numLabels: 2, seed: 1 });
  const tensors = modelToTensors(model);
  model.dispose();
  const vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ...Array.from({ length: 995 }, (_, i) => `w${i}`)];
  const json = JSON.stringify(configToJson(config, { head: "classification", numLabels: 2 }), null, 2);
  for (const format of FORMATS) {
    const dir = `${root}/${format}`;
    await ensureDir(dir);
    await Deno.writeTextFile(`${dir}/vocab.txt`, vocab.join("\n") + "\n");
    if (format === "safetensors") {
      await Deno.writeTextFile(`${dir}/config.json`, json);
      await writeSafetensors(`${dir}/model.safetensors`, tensors, { format: "pt" });
    } else if (format === "pytorch") {
      await Deno.writeTextFile(`${dir}/config.json`, json);
      await writePytorchBin(`${dir}/pytorch_model.bin`, tensors);
    } else {
      await Deno.writeTextFile(`${dir}/bert_config.json`, json);
      const google: Record<string, (typeof tensors)[string]> = {};
      for (const [name, t] of Object.entries(tensors)) {
        const g = hfNameToGoogle(name);
        google[g.name] = g.transpose ? transposeEntry(t) : t;
      }
      await writeTfCheckpoint(`${dir}/bert_model.ckpt`, google);
    }
  }
}

async function sizeOf(dir: string): Promise<number> {
  let total = 0;
  for await (const e of Deno.readDir(dir)) {
    if (!/\.(txt|json)$/.test(e.name)) total += (await Deno.stat(`${dir}/${e.name}`)).size;
  }
  return total;
}

if (Deno.args[0] === "--child") {
  // One measurement: --child read|load DIR BACKEND
  const [, mode, dir, backend] = Deno.args;
  await initBackend({ backend: backend as "blas", quiet: true });
  const before = peakRssMb();
  const c0 = cpuMs();
  const t0 = performance.now();
  if (mode === "read") {
    const { tensors } = await readCheckpointWeights(dir);
    if (!Object.keys(tensors).length) throw new Error("no tensors");
  } else {
    const { model } = await loadCheckpoint(dir, { head: "classification", quiet: true, announceWeights: false });
    model.dispose();
  }
  const ms = performance.now() - t0;
  console.log(JSON.stringify({ ms, cpu: cpuMs() - c0, startRss: before, peakRss: peakRssMb() }));
  Deno.exit(0);
}

const runs = Number(flag("runs", "3"));
const backend = flag("backend", "blas");
const shape = flag("shape", "base");
const modes = flag("modes", "read,load").split(",");
await generate(shape);
const results: Record<string, { ms: number[]; cpu: number[]; peak: number[]; start: number }> = {};
for (let r = 0; r < runs; r++) {
  for (const mode of modes) {
    for (const format of FORMATS) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          import.meta.filename!,
          "--child",
          mode,
          `${ROOT}/${shape}/${format}`,
          backend,
        ],
        stdout: "piped",
        stderr: "inherit",
      }).output();
      if (!out.success) throw new Error(`child ${mode} ${format} failed`);
      const m = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
      const key = `${mode} ${format}`;
      results[key] ??= { ms: [], cpu: [], peak: [], start: m.startRss };
      results[key].ms.push(m.ms);
      results[key].cpu.push(m.cpu);
      results[key].peak.push(m.peakRss);
    }
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`\n${shape} (${backend} backend), median of ${runs} runs, each in a fresh process:`);
console.log("| step | format | file MB | wall ms | CPU ms | peak RSS MB (before the step) |");
console.log("| --- | --- | ---: | ---: | ---: | ---: |");
for (const [key, r] of Object.entries(results)) {
  const [mode, format] = key.split(" ");
  const mb = (await sizeOf(`${ROOT}/${shape}/${format}`)) / 1e6;
  console.log(
    `| ${mode} | ${format} | ${mb.toFixed(0)} | ${median(r.ms).toFixed(0)} | ${median(r.cpu).toFixed(0)} | ` +
      `${median(r.peak).toFixed(0)} ` +
      `(${r.start.toFixed(0)}) |`,
  );
}
