import { initBackend, tf } from "../../lib/backends/backend.ts";
import { dropout, gelu, layerNorm } from "../../lib/backends/blas/fused.ts";
import { selfAttention } from "../../lib/backends/blas/attention.ts";
import { simdMath } from "../../lib/backends/simd/simd.ts";
await initBackend({ backend: "blas", quiet: true });
function time(name: string, n: number, f: () => void) {
  f();
  f();
  const t: number[] = [];
  for (let i = 0; i < 5; i++) {
    const s = performance.now();
    f();
    t.push(performance.now() - s);
  }
  t.sort((a, b) => a - b);
  console.log(`${name.padEnd(28)} ${t[2].toFixed(2)} ms  ${(t[2] * 1e6 / n).toFixed(2)} ns/el`);
}
const x = tf.randomNormal([4096, 512]);
time("gelu fwd 2M", x.size, () =>
  tf.tidy(() => {
    gelu(x).dispose();
  }));
time("gelu fwd+bwd 2M", x.size, () =>
  tf.tidy(() => {
    tf.grad((t: tf.Tensor) => gelu(t))(x).dispose();
  }));
const h = tf.randomNormal([4096, 128]);
time("dropout 0.5M", h.size, () =>
  tf.tidy(() => {
    dropout(h, 0.1, 3).dispose();
  }));
const g = tf.ones([128]), b = tf.zeros([128]);
time("layernorm 0.5M", h.size, () =>
  tf.tidy(() => {
    layerNorm(h, g, b, 1e-12).dispose();
  }));
time("add 0.5M", h.size, () =>
  tf.tidy(() => {
    tf.add(h, h).dispose();
  }));
time("sum rows 2M", x.size, () =>
  tf.tidy(() => {
    tf.sum(x, 0).dispose();
  }));
const mb = tf.zeros([32, 128]);
time("attn fwd 1M", 32 * 2 * 128 * 128, () =>
  tf.tidy(() => {
    selfAttention({ q: h, k: h, v: h, maskBias: mb, batch: 32, seq: 128, heads: 2, dropoutRate: 0.1, seed: 1 })
      .dispose();
  }));
time("attn fwd+bwd 1M", 32 * 2 * 128 * 128, () =>
  tf.tidy(() => {
    tf.grads((q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) =>
      selfAttention({ q, k, v, maskBias: mb, batch: 32, seq: 128, heads: 2, dropoutRate: 0.1, seed: 1 })
    )([h, h, h]).forEach((t) => t.dispose());
  }));
const s = simdMath()!;
const arr = new Float32Array(2 << 20);
time("simd exp 2M", arr.length, () => s.exp(arr, arr));
const W = tf.randomNormal([128, 512]);
time("matmul 4096x128x512", 1, () =>
  tf.tidy(() => {
    tf.matMul(h, W).dispose();
  }));
