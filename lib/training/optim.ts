/**
 * The optimiser side of fine-tuning: AdamW with `torch.optim.AdamW` semantics, the linear warmup/decay schedule of
 * Hugging Face's `get_linear_schedule_with_warmup`, and global-norm gradient clipping like
 * `torch.nn.utils.clip_grad_norm_`.
 *
 * Memory: `tf.train.adam` keeps every temporary of the whole update alive until it ends, which for BERT-Base
 * exceeds the wasm backend's 4 GB heap. {@linkcode AdamW.applyGradients} therefore updates one variable per
 * `tf.tidy` and disposes each gradient as soon as it has been used.
 * @module
 */
import { tf } from "../backends/backend.ts";
import type { TensorEntry } from "../io/safetensors.ts";
import { adamwUpdate, adamwUpdateInPlace } from "../backends/blas/fused.ts";
import { onBlasF32 } from "../backends/blas/common.ts";

/** Settings of {@linkcode AdamW}. */
export interface AdamWOptions {
  /** Peak learning rate (default 2e-5); each update may pass its own (the schedule's) value. */
  lr?: number;
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-6 (the original BERT's value; PyTorch's default is 1e-8). */
  eps?: number;
  /** Decoupled weight decay (default 0.01). */
  weightDecay?: number;
  /** Which parameters get weight decay (default: {@linkcode defaultDecay}: not biases, not LayerNorm). */
  decay?: (name: string) => boolean;
}

/** BERT's rule: no weight decay on biases and LayerNorm parameters. */
export function defaultDecay(name: string): boolean {
  return !name.endsWith(".bias") && !name.includes("LayerNorm");
}

/** A gradient collection by parameter name. */
export type Gradients = Map<string, tf.Tensor>;

/**
 * AdamW (Loshchilov & Hutter), exactly as `torch.optim.AdamW` computes it, per parameter `p` with gradient `g`
 * at update `t` (1-based):
 *
 * ```
 * p ← p · (1 − lr · wd)                     (only for parameters `decay(name)` selects)
 * m ← β1 m + (1 − β1) g
 * v ← β2 v + (1 − β2) g²
 * p ← p − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
 * ```
 *
 * @example
 * ```ts
 * const opt = new AdamW(model.params, { weightDecay: 0.01 });
 * const { loss, grads } = lossAndGrads(model, lossFn); // lib/training/step.ts: grads by parameter name
 * opt.applyGradients(grads, lr);                       // disposes the gradients
 * loss.dispose();
 * ```
 */
export class AdamW {
  /** The parameters updated, by name. */
  readonly params: Map<string, tf.Variable>;
  /** Resolved settings. */
  readonly options: Required<AdamWOptions>;
  /** Number of updates applied so far (`t` after the next update is `step + 1`). */
  step = 0;
  private m = new Map<string, tf.Variable>();
  private v = new Map<string, tf.Variable>();

  constructor(params: Map<string, tf.Variable>, options: AdamWOptions = {}) {
    this.params = params;
    this.options = {
      lr: options.lr ?? 2e-5,
      beta1: options.beta1 ?? 0.9,
      beta2: options.beta2 ?? 0.999,
      eps: options.eps ?? 1e-6,
      weightDecay: options.weightDecay ?? 0.01,
      decay: options.decay ?? defaultDecay,
    };
  }

  private moments(name: string, p: tf.Variable): [tf.Variable, tf.Variable] {
    let m = this.m.get(name), v = this.v.get(name);
    if (!m || !v) {
      // tidy disposes the initial zeros tensors but keeps the variables.
      m = tf.tidy(() => tf.variable(tf.zeros(p.shape), false));
      v = tf.tidy(() => tf.variable(tf.zeros(p.shape), false));
      this.m.set(name, m);
      this.v.set(name, v);
    }
    return [m, v];
  }

  /**
   * Applies one update. `grads` maps parameter names to gradients; every gradient is disposed (and removed from
   * the map) as soon as its parameter is updated. Parameters without a gradient are left alone (their moments
   * too), as PyTorch does for `grad is None`.
   */
  applyGradients(grads: Gradients, lr: number = this.options.lr): void {
    for (const name of grads.keys()) {
      if (!this.params.has(name)) {
        for (const g of grads.values()) g.dispose();
        throw new Error(`AdamW: gradient for unknown parameter "${name}"`);
      }
    }
    this.step++;
    const { beta1, beta2, eps, weightDecay } = this.options;
    const bc1 = 1 - beta1 ** this.step;
    const bc2Sqrt = Math.sqrt(1 - beta2 ** this.step);
    const stepSize = lr / bc1;
    for (const [name, p] of this.params) {
      const g = grads.get(name);
      if (!g) continue;
      if (g.shape.join(",") !== p.shape.join(",")) {
        throw new Error(`AdamW: gradient of "${name}" has shape [${g.shape}] but the parameter is [${p.shape}]`);
      }
      const [m, v] = this.moments(name, p);
      const wd = weightDecay !== 0 && this.options.decay(name) ? weightDecay : 0;
      if (onBlasF32(p, g, m, v)) {
        // One pass over p, g, m, v on the blas backend (lib/backends/blas/fused.ts); same arithmetic as below.
        const update = { param: p, grad: g, m, v, lr, beta1, beta2, eps, weightDecay: wd, step: this.step };
        if (!adamwUpdateInPlace(update)) {
          const [pNew, mNew, vNew] = adamwUpdate(update);
          m.assign(mNew);
          v.assign(vNew);
          p.assign(pNew);
          tf.dispose([pNew, mNew, vNew]);
        }
        g.dispose();
        grads.delete(name);
        continue;
      }
      tf.tidy(() => {
        const mNew = tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1));
        const vNew = tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2));
        m.assign(mNew);
        v.assign(vNew);
        const decayed = wd !== 0 ? tf.mul(p, 1 - lr * wd) : p;
        const denom = tf.add(tf.div(tf.sqrt(vNew), bc2Sqrt), eps);
        p.assign(tf.sub(decayed, tf.mul(tf.div(mNew, denom), stepSize)));
      });
      g.dispose();
      grads.delete(name);
    }
  }

  /** The first and second moment tensors (to make readable, see lib/backends/backend.ts's `readableOnCpu`, before {@linkcode exportState}). */
  stateTensors(): tf.Tensor[] {
    return [...this.m.values(), ...this.v.values()];
  }

  /**
   * The optimiser state as safetensors records: `exp_avg.<name>` and `exp_avg_sq.<name>` (F32, in the layout of
   * the model's variables unless `transform` maps them, e.g. to Hugging Face's `[out, in]`), plus the update count.
   */
  exportState(
    transform?: (name: string, entry: TensorEntry) => TensorEntry,
  ): { tensors: Record<string, TensorEntry>; step: number } {
    const tensors: Record<string, TensorEntry> = {};
    for (const name of this.params.keys()) {
      const m = this.m.get(name), v = this.v.get(name);
      if (!m || !v) continue;
      for (const [prefix, t] of [["exp_avg", m], ["exp_avg_sq", v]] as const) {
        let entry: TensorEntry = { dtype: "F32", shape: [...t.shape], data: t.dataSync() as Float32Array };
        if (transform) entry = transform(name, entry);
        tensors[`${prefix}.${name}`] = entry;
      }
    }
    return { tensors, step: this.step };
  }

  /**
   * Restores state written by {@linkcode exportState} (with the inverse `transform`, if one was used).
   * Throws naming the tensor when a shape does not match its parameter or a moment is missing its partner.
   */
  importState(
    state: { tensors: Record<string, TensorEntry>; step: number },
    transform?: (name: string, entry: TensorEntry) => TensorEntry,
  ): void {
    for (const key of Object.keys(state.tensors)) {
      const match = /^(exp_avg|exp_avg_sq)\.(.+)$/.exec(key);
      if (!match) throw new Error(`optimizer state: unexpected tensor "${key}" (expected exp_avg.* / exp_avg_sq.*)`);
      if (!this.params.has(match[2])) throw new Error(`optimizer state: "${key}" names no parameter of the model`);
    }
    this.disposeMoments();
    for (const [name, p] of this.params) {
      let m = state.tensors[`exp_avg.${name}`], v = state.tensors[`exp_avg_sq.${name}`];
      if (!m && !v) continue;
      if (!m || !v) throw new Error(`optimizer state: "${name}" has only one of exp_avg / exp_avg_sq`);
      if (transform) {
        m = transform(name, m);
        v = transform(name, v);
      }
      for (const [key, e] of [[`exp_avg.${name}`, m], [`exp_avg_sq.${name}`, v]] as const) {
        if (e.dtype !== "F32" || e.shape.join(",") !== p.shape.join(",")) {
          throw new Error(
            `optimizer state: "${key}" is ${e.dtype} [${e.shape}], expected F32 [${p.shape}] like the parameter`,
          );
        }
      }
      const md = m.data as Float32Array, vd = v.data as Float32Array;
      this.m.set(name, tf.tidy(() => tf.variable(tf.tensor(md, p.shape, "float32"), false)));
      this.v.set(name, tf.tidy(() => tf.variable(tf.tensor(vd, p.shape, "float32"), false)));
    }
    this.step = state.step;
  }

  private disposeMoments(): void {
    for (const t of this.m.values()) t.dispose();
    for (const t of this.v.values()) t.dispose();
    this.m.clear();
    this.v.clear();
  }

  /** Frees the moment tensors (the parameters belong to the model). */
  dispose(): void {
    this.disposeMoments();
  }
}

/** Settings of {@linkcode scheduleLr}. */
export interface ScheduleOptions {
  peakLr: number;
  warmupSteps: number;
  totalSteps: number;
}

/**
 * Learning rate of update number `step` (0-based: the first update is step 0) under Hugging Face's
 * `get_linear_schedule_with_warmup`: `peakLr · step / warmupSteps` during warmup, then linear decay to 0 at
 * `totalSteps`. As in Hugging Face, the very first update uses lr 0 when there is a warmup.
 *
 * @example
 * ```ts
 * scheduleLr(5, { peakLr: 1e-4, warmupSteps: 10, totalSteps: 100 }); // 5e-5
 * scheduleLr(55, { peakLr: 1e-4, warmupSteps: 10, totalSteps: 100 }); // 5e-5
 * ```
 */
export function scheduleLr(step: number, options: ScheduleOptions): number {
  const { peakLr, warmupSteps, totalSteps } = options;
  if (step < warmupSteps) return (peakLr * step) / Math.max(1, warmupSteps);
  return peakLr * Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
}

/** Warmup steps for a warmup given as a fraction of the updates (`ceil`, like Hugging Face's `warmup_ratio`). */
export function warmupStepsFor(totalSteps: number, warmupRatio: number): number {
  if (!(warmupRatio >= 0 && warmupRatio <= 1)) throw new Error(`warmup ratio must be in [0, 1], got ${warmupRatio}`);
  return Math.ceil(totalSteps * warmupRatio);
}

/** The sum of squares of all gradients together, as a scalar tensor (the caller disposes it). */
export function globalNormSquared(grads: Gradients): tf.Scalar {
  let total: tf.Scalar = tf.scalar(0);
  for (const g of grads.values()) {
    const next = tf.tidy(() => tf.add(total, tf.sum(tf.square(g))) as tf.Scalar);
    total.dispose();
    total = next;
  }
  return total;
}

/** The L2 norm of all gradients together (one number synchronised from the backend). */
export function globalNorm(grads: Gradients): number {
  const total = globalNormSquared(grads);
  const sq = total.dataSync()[0];
  total.dispose();
  return Math.sqrt(sq);
}

/**
 * Clips gradients in place (replacing and disposing the tensors in `grads`) like `torch.nn.utils.clip_grad_norm_`:
 * `scale = maxNorm / (totalNorm + 1e-6)`, applied only when it is below 1. Returns the norm before clipping and the
 * scale applied (1 when none). Pass `norm` when it is already known (e.g. read asynchronously).
 */
export function clipGradsByGlobalNorm(
  grads: Gradients,
  maxNorm: number,
  norm: number = globalNorm(grads),
): { norm: number; scale: number } {
  const scale = maxNorm / (norm + 1e-6);
  if (!(scale < 1)) return { norm, scale: 1 };
  for (const [name, g] of grads) {
    grads.set(name, tf.mul(g, scale));
    g.dispose();
  }
  return { norm, scale };
}
