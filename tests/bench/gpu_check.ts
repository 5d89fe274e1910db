/**
 * Helper of tests/bench/gpu_check.sh (run that): one probe per call, one `key: value` line per finding.
 *
 * - `adapter`: the WebGPU adapter this Deno sees (`DENO_WEBGPU_BACKEND=vulkan` restricts wgpu to Vulkan), whether
 *   it is a software rasteriser, and its buffer limits. Prints `adapter: none` when there is none.
 * - `tensorflow-gpu`: whether `@tensorflow/tfjs-node-gpu` loads as this project loads it (lib/backends/backend.ts), and if it
 *   does, the devices TensorFlow lists and a [2048x2048]x[2048x2048] matmul's GFLOP/s.
 *
 * Exit code 0 whatever was found (the finding is the output); 2 on a usage error.
 * @module
 */
import { initBackend, isSoftwareAdapter, tf } from "../../lib/backends/backend.ts";
import { exitProcess, webgpuRequested } from "../../lib/backends/exit.ts";

interface AdapterLike {
  info?: Record<string, unknown>;
  isFallbackAdapter?: boolean;
  limits?: Record<string, number>;
  features?: Iterable<string>;
}

async function adapter(): Promise<void> {
  const gpu = (navigator as unknown as { gpu?: { requestAdapter(o?: unknown): Promise<AdapterLike | null> } }).gpu;
  if (!gpu) {
    console.log("adapter: none (this Deno has no navigator.gpu)");
    return;
  }
  let a: AdapterLike | null = null;
  try {
    webgpuRequested(); // so that exitProcess skips libEGL's destructor (lib/backends/exit.ts)
    a = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    console.log(`adapter: none (requestAdapter() threw: ${(e as Error).message})`);
    return;
  }
  if (!a) {
    console.log("adapter: none (navigator.gpu.requestAdapter() returned null: no usable driver for wgpu's backends)");
    return;
  }
  const info = a.info ?? {};
  const description = String(info.description || info.vendor || "unknown adapter");
  const software = isSoftwareAdapter(description) || info.isFallbackAdapter === true || a.isFallbackAdapter === true;
  console.log(`adapter: ${description}`);
  console.log(
    `adapter_vendor: ${info.vendor ?? ""}; architecture: ${info.architecture ?? ""}; device: ${info.device ?? ""}`,
  );
  console.log(`adapter_kind: ${software ? "SOFTWARE (a CPU emulating a GPU)" : "hardware"}`);
  const l = a.limits ?? {};
  console.log(
    `adapter_limits: maxBufferSize ${l.maxBufferSize}, maxStorageBufferBindingSize ${l.maxStorageBufferBindingSize}, ` +
      `maxComputeWorkgroupSizeX ${l.maxComputeWorkgroupSizeX}`,
  );
  console.log(`adapter_has_f16: ${[...(a.features ?? [])].includes("shader-f16")}`);
}

async function tensorflowGpu(): Promise<void> {
  try {
    await initBackend({ backend: "tensorflow-gpu", quiet: true });
  } catch (e) {
    console.log(`tfjs_node_gpu: cannot load: ${(e as Error).message.replace(/\s+/g, " ").slice(0, 600)}`);
    return;
  }
  console.log(`tfjs_node_gpu: loaded (tf.getBackend() = ${tf.getBackend()})`);
  const a = tf.randomNormal([2048, 2048]), b = tf.randomNormal([2048, 2048]);
  const times: number[] = [];
  for (let i = 0; i < 4; i++) {
    const t0 = performance.now();
    const c = tf.matMul(a, b);
    await c.data();
    c.dispose();
    if (i > 0) times.push(performance.now() - t0);
  }
  tf.dispose([a, b]);
  const ms = times.sort((x, y) => x - y)[1];
  console.log(
    `tfjs_node_gpu_matmul: [2048x2048]x[2048x2048] ${ms.toFixed(2)} ms, ${
      (2 * 2048 ** 3 / ms / 1e6).toFixed(0)
    } GFLOP/s`,
  );
}

const mode = Deno.args[0];
if (mode === "adapter") await adapter();
else if (mode === "tensorflow-gpu") await tensorflowGpu();
else {
  console.error(`usage: gpu_check.ts adapter|tensorflow-gpu (got ${JSON.stringify(mode)})`);
  exitProcess(2);
}
exitProcess(0);
