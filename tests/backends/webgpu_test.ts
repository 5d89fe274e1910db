/**
 * The `webgpu` backend, where this machine has a WebGPU adapter (a real GPU, or Mesa's software `llvmpipe`): the
 * classification trainer (updates, gradient clipping, evaluation, checkpoints and optimiser state) runs on it and
 * reproduces the cpu run's losses, metrics and saved weights. Skips with a message when there is no adapter.
 */
import { assert, assertEquals, withTemp } from "../shared.ts";
import { initBackend, tf, webgpuAdapterName } from "../../lib/backends/backend.ts";
import { train } from "../../lib/training/train.ts";
import { readSafetensors, toFloat32 } from "../../lib/io/safetensors.ts";
import { tinyFeatures, tinyModel, writeTinyVocab } from "../fixtures/tiny_training.ts";
import { classificationTask } from "../../lib/tasks/classification/task.ts";

const adapter = (await webgpuAdapterName()) !== undefined;
if (!adapter) console.warn("webgpu_test: skipped — no WebGPU adapter on this machine");

Deno.test({
  name: "webgpu: training with evaluation, clipping and checkpoints matches the cpu run",
  ignore: !adapter,
  sanitizeResources: false, // the GPU device stays open for the process
  sanitizeOps: false,
}, async () => {
  await withTemp(async (dir) => {
    const vocabPath = await writeTinyVocab(dir);
    const trainSet = await tinyFeatures({ n: 16, seed: 1, vocabPath });
    const dev = await tinyFeatures({ n: 8, seed: 2, vocabPath });
    const runOn = async (backend: "cpu" | "webgpu") => {
      await initBackend({ backend, quiet: true });
      const model = tinyModel({ seed: 3 });
      try {
        return await train({
          model,
          vocabPath,
          task: classificationTask({ train: trainSet, dev }),
          outputDir: `${dir}/${backend}`,
          learningRate: 5e-3,
          batchSize: 4,
          epochs: 1,
          maxGradNorm: 0.5,
          seed: 7,
          quiet: true,
        });
      } finally {
        model.dispose();
      }
    };
    try {
      const cpu = await runOn("cpu");
      const gpu = await runOn("webgpu");
      const losses = (r: typeof cpu) => r.logHistory.map((l) => (l as { loss?: number }).loss ?? NaN);
      assertEquals(losses(gpu).length, losses(cpu).length);
      losses(gpu).forEach((l, i) =>
        assert(Math.abs(l - losses(cpu)[i]) < 1e-4, `loss ${i}: ${l} vs ${losses(cpu)[i]}`)
      );
      assertEquals(gpu.finalEval!.scalars.accuracy, cpu.finalEval!.scalars.accuracy);
      assert(Math.abs(gpu.finalEval!.scalars.loss - cpu.finalEval!.scalars.loss) < 1e-4, "evaluation loss");
      const weights = async (r: typeof cpu) => (await readSafetensors(`${r.lastCheckpoint}/model.safetensors`)).tensors;
      const [a, b] = [await weights(cpu), await weights(gpu)];
      for (const name of Object.keys(a)) {
        const x = toFloat32(a[name]), y = toFloat32(b[name]);
        let err = 0;
        for (let i = 0; i < x.length; i++) err = Math.max(err, Math.abs(x[i] - y[i]));
        assert(err < 1e-4, `${name}: saved weights differ by ${err}`);
      }
      const state = await readSafetensors(`${gpu.lastCheckpoint}/training_state.safetensors`);
      assert(Object.keys(state.tensors).some((k) => k.startsWith("exp_avg_sq.")), "optimiser state saved on webgpu");
    } finally {
      await initBackend({ backend: "cpu", quiet: true });
      assertEquals(tf.getBackend(), "cpu");
    }
  });
});
