/**
 * BERT's building blocks in TensorFlow.js (section 2 of lib/model/model.ts, which re-exports them): a dense layer,
 * batched matmul and embedding lookup with hand-written gradients (fast on the wasm backend; one fused kernel each on
 * `blas`), LayerNorm, GELU and the classification loss. Shape letters as in lib/model/model.ts.
 * @module
 */
import { tf } from "../backends/backend.ts";
import * as fused from "../backends/blas/fused.ts";
import { onBlasF32 } from "../backends/blas/common.ts";

/** The activations `configFromJson` (lib/model/model.ts) accepts for `hidden_act`. */
export const SUPPORTED_ACTIVATIONS = ["gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu"];

/**
 * `a @ b` with optional transposes. On wasm a transposed operand falls off XNNPACK's fast path (~10x slower),
 * so the transpose is done explicitly there; other backends take the flags directly.
 */
function matMul(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false): tf.Tensor {
  if (tf.getBackend() === "wasm" && (transposeA || transposeB)) {
    const swapLast = (t: tf.Tensor) => {
      const perm = t.shape.map((_, i) => i);
      [perm[t.rank - 2], perm[t.rank - 1]] = [perm[t.rank - 1], perm[t.rank - 2]];
      return tf.transpose(t, perm);
    };
    return tf.matMul(transposeA ? swapLast(a) : a, transposeB ? swapLast(b) : b);
  }
  return tf.matMul(a, b, transposeA, transposeB);
}

/**
 * A dense layer `x @ kernel + bias` with a hand-written gradient whose matmuls stay on the fast path.
 * @param x `[n, in]`
 * @param kernel `[in, out]`
 * @param bias `[out]`
 * @returns `[n, out]`
 */
export function linear(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor): tf.Tensor2D {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [a, w, b] = args as tf.Tensor2D[];
    const save = args[3] as tf.GradSaveFunc;
    save([a, w]);
    return {
      // On blas the bias is added inside the matmul kernel (no second pass over the output).
      value: onBlasF32(a, w, b) ? tf.fused.matMul({ a, b: w, bias: b }) : tf.add(tf.matMul(a, w), b), // [n, out]
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sa, sw] = saved;
        return [
          matMul(dy, sw, false, true), // dx = dy @ W^T      [n, in]
          matMul(sa, dy, true, false), // dW = x^T @ dy      [in, out]
          fused.sumRows(dy), // db = sum over rows                 [out]
        ];
      },
    };
  });
  return op(x, kernel, bias) as tf.Tensor2D;
}

/**
 * `x @ weight^T + bias` for a weight stored `[out, in]`: the MLM decoder, whose weight is the word-embedding table
 * (tied). The gradient for `x` is then a plain `dy @ weight`; no copy of the transposed table is kept.
 * @param x `[n, in]`
 * @param weight `[out, in]`
 * @param bias `[out]`
 * @returns `[n, out]`
 */
export function linearTransposed(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor): tf.Tensor2D {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [a, w, b] = args as tf.Tensor2D[];
    (args[3] as tf.GradSaveFunc)([a, w]);
    return {
      // On blas the bias is the product's starting value (one pass less over [n, out]).
      value: onBlasF32(a, w, b)
        ? tf.fused.matMul({ a, b: w, transposeB: true, bias: b })
        : tf.add(matMul(a, w, false, true), b), // [n, out]
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sa, sw] = saved;
        return [
          tf.matMul(dy, sw), // dx = dy @ W            [n, in]
          matMul(dy, sa, true, false), // dW = dy^T @ x   [out, in]
          fused.sumRows(dy), // db                           [out]
        ];
      },
    };
  });
  return op(x, weight, bias) as tf.Tensor2D;
}

/**
 * Batched matrix product `a @ b` over leading batch dimensions, with a gradient that transposes explicitly.
 * @param a `[..., m, k]`
 * @param b `[..., k, n]`
 * @returns `[..., m, n]`
 */
export function batchMatMul<T extends tf.Tensor>(a: T, b: T): T {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, y] = args as tf.Tensor[];
    (args[2] as tf.GradSaveFunc)([x, y]);
    return {
      value: tf.matMul(x, y),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [
        matMul(dy, saved[1], false, true), // da = dy @ b^T
        matMul(saved[0], dy, true, false), // db = a^T @ dy
      ],
    };
  });
  return op(a, b) as T;
}

/**
 * Row lookup `table[ids]`. Its gradient is a dense `[rows, width]` tensor built with `scatterND` (which sums
 * the rows of repeated ids): tfjs's own gradient of `gather` needs `UnsortedSegmentSum`, which the wasm backend
 * lacks and the cpu backend runs very slowly for a 30,522-row vocabulary.
 * @param table `[rows, width]`
 * @param ids int32, any shape `[...]`
 * @returns `[..., width]`
 */
export function embeddingLookup(table: tf.Tensor, ids: tf.Tensor): tf.Tensor {
  if (table.rank !== 2) throw new Error(`embeddingLookup: table must be [rows, width], got [${table.shape}]`);
  const [rows, width] = table.shape;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const t = args[0] as tf.Tensor2D;
    const flatIds = tf.reshape(ids, [-1]); // [n]
    (args[1] as tf.GradSaveFunc)([flatIds]);
    return {
      value: tf.reshape(tf.gather(t, flatIds), [...ids.shape, width]), // [..., width]
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.scatterND(tf.reshape(saved[0], [-1, 1]), tf.reshape(dy, [-1, width]), [rows, width]),
    };
  });
  return op(table);
}

/**
 * LayerNorm over the last axis: `(x - mean) / sqrt(var + eps) * gamma + beta` (biased variance, as in HF), with a
 * hand-written gradient: one pass each way on the `blas` backend, a few tf ops elsewhere (lib/backends/blas/fused.ts).
 * @param x `[..., width]`
 * @param gamma `[width]`
 * @param beta `[width]`
 */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  return fused.layerNorm(x, gamma, beta, eps);
}

/**
 * GELU, exact: `0.5 x (1 + erf(x / sqrt 2))` (HF's `gelu`, Google BERT's); one pass each way on `blas`.
 */
export function gelu(x: tf.Tensor): tf.Tensor {
  return fused.gelu(x);
}

/** GELU, tanh approximation: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` (HF's `gelu_new`). */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
}

/** The activation function named by `hidden_act`. */
export function activation(name: string): (x: tf.Tensor) => tf.Tensor {
  switch (name) {
    case "gelu":
      return gelu;
    case "gelu_new":
    case "gelu_pytorch_tanh":
    case "gelu_fast":
      return geluTanh;
    case "relu":
      return tf.relu;
    default:
      throw new Error(`unknown activation "${name}" (expected one of ${SUPPORTED_ACTIVATIONS.join(", ")})`);
  }
}

/**
 * Mean cross-entropy of integer `labels` under `softmax(logits)`. Labels below 0 (e.g. HF's -100) are ignored;
 * the mean is over the remaining ones (0 when there are none).
 * @param logits `[..., classes]`
 * @param labels int32 `[...]`
 * @returns a scalar
 */
export function softmaxCrossEntropy(logits: tf.Tensor, labels: tf.Tensor): tf.Scalar {
  const classes = logits.shape[logits.rank - 1];
  if (logits.rank !== labels.rank + 1 || labels.shape.some((d, i) => d !== logits.shape[i])) {
    throw new Error(
      `softmaxCrossEntropy: labels of shape [${labels.shape}] do not match logits of shape [${logits.shape}]`,
    );
  }
  return tf.tidy(() => {
    const flatLabels = tf.cast(tf.reshape(labels, [-1]), "int32"); // [n]
    const logProbs = tf.logSoftmax(tf.reshape(logits, [-1, classes])); // [n, classes]
    const picked = tf.sum(tf.mul(tf.oneHot(flatLabels, classes), logProbs), -1); // [n]; 0 where label < 0
    const valid = tf.sum(tf.cast(tf.greaterEqual(flatLabels, 0), "float32"));
    return tf.div(tf.sub(0, tf.sum(picked)), tf.maximum(valid, 1)) as tf.Scalar; // 0 - x: +0, not -0, when empty
  });
}
