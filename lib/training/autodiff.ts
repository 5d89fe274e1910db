/**
 * Gradients of a scalar loss with respect to variables, as `tf.variableGrads` computes them, but releasing memory
 * during the backward pass the way PyTorch's autograd does.
 *
 * `tf.variableGrads` keeps every tensor saved for the backward pass, and every intermediate gradient, until the
 * whole backward pass ends: for BERT-Base at batch 8 x 128 that is ~2 GB held at the last node. Here the walk over
 * the tape is the same (same nodes, same order, same gradient functions, so the same numbers), but each node's
 * saved tensors (tfjs keeps private clones of them per node) and the gradients of its outputs are disposed as soon
 * as the node has been differentiated.
 *
 * It uses TensorFlow.js engine internals (`startTape`, `activeTape`, `scopedRun`); inside another gradient
 * computation (higher-order gradients) it hands over to `tf.variableGrads`.
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";

/** A recorded op on tfjs's tape (the fields used here). */
interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  saved?: tf.Tensor[];
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
}

/** The engine members used (not part of tfjs's public types). */
interface EngineInternals {
  state: { gradientDepth: number; activeTape: TapeNode[] | null };
  startTape(): void;
  endTape(): void;
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  tidy<T extends tf.TensorContainer>(name: string, f: () => T): T;
}

/** The tape's nodes on a path from one of `xs` to `y`, inputs pruned to those depending on `xs` (as tfjs does). */
function filterTape(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set(xs.map((x) => x.id)), nodesFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      for (const o of node.outputs) fromX.add(o.id);
      nodesFromX.add(node.id);
    }
  }
  const toY = new Set([y.id]), nodesToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    if (node.outputs.some((o) => toY.has(o.id))) {
      for (const t of Object.values(node.inputs)) toY.add(t.id);
      nodesToY.add(node.id);
    }
  }
  return tape.filter((n) => nodesFromX.has(n.id) && nodesToY.has(n.id)).map((n) => ({
    ...n,
    inputs: Object.fromEntries(Object.entries(n.inputs).filter(([, t]) => fromX.has(t.id))),
  }));
}

/**
 * `{ value, grads }` of the scalar `f()` with respect to `varList` (default: all trainable variables), grads keyed
 * by variable name; variables the loss does not depend on are left out. Same results as `tf.variableGrads`, with a
 * much lower peak memory (see the module notes).
 */
export function variableGrads(
  f: () => tf.Scalar,
  varList?: tf.Variable[],
): { value: tf.Scalar; grads: tf.NamedTensorMap } {
  const engine = tf.engine() as unknown as EngineInternals;
  if (engine.state.gradientDepth > 0) return tf.variableGrads(f, varList);
  const vars = (varList ?? Object.values(tf.engine().registeredVariables)).filter((v) => v.trainable);
  if (vars.length === 0) throw new Error("variableGrads: no trainable variables to differentiate with respect to");
  let y: tf.Scalar | undefined;
  try {
    y = engine.scopedRun(() => engine.startTape(), () => engine.endTape(), () => engine.tidy("forward", f));
    if (!(y instanceof tf.Tensor) || y.rank !== 0) {
      throw new Error(
        `variableGrads: f must return a scalar tensor, got ${y instanceof tf.Tensor ? `rank ${y.rank}` : typeof y}`,
      );
    }
    const scalar = y;
    const tape = engine.state.activeTape ?? [];
    return engine.tidy("backward", () => backward(engine, filterTape(tape, vars, scalar), vars, scalar));
  } catch (e) {
    if (y instanceof tf.Tensor) y.dispose();
    throw e;
  } finally {
    for (const node of engine.state.activeTape ?? []) for (const t of node.saved ?? []) t.dispose();
    engine.state.activeTape = null;
  }
}

function backward(
  engine: EngineInternals,
  tape: TapeNode[],
  vars: tf.Variable[],
  y: tf.Scalar,
): { value: tf.Scalar; grads: tf.NamedTensorMap } {
  const acc = new Map<number, tf.Tensor>([[y.id, tf.onesLike(y)]]);
  // How many map entries hold each tensor object: a gradient function may pass a dy through unchanged.
  const refs = new Map<tf.Tensor, number>([[acc.get(y.id)!, 1]]);
  const unref = (t: tf.Tensor) => {
    const n = (refs.get(t) ?? 1) - 1;
    if (n > 0) refs.set(t, n);
    else {
      refs.delete(t);
      t.dispose();
    }
  };
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    if (!node.gradient) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
    const inputGradients = node.gradient(node.outputs.map((o) => acc.get(o.id) ?? null));
    for (const [name, x] of Object.entries(node.inputs)) {
      if (!(name in inputGradients)) {
        throw new Error(`Cannot backprop through input ${name} of ${node.kernelName}.`);
      }
      const dx = engine.tidy(`grad ${node.kernelName}`, () => inputGradients[name]());
      if (dx.dtype !== "float32") {
        throw new Error(`Error in gradient for op ${node.kernelName}: the gradient of input ${name} is ${dx.dtype}`);
      }
      if (!tf.util.arraysEqual(dx.shape, x.shape)) {
        throw new Error(
          `Error in gradient for op ${node.kernelName}: the gradient of input '${name}' has shape [${dx.shape}], ` +
            `expected [${x.shape}]`,
        );
      }
      const cur = acc.get(x.id);
      const next = cur ? tf.add(cur, dx) : dx;
      if (cur) {
        unref(cur);
        if (!refs.has(dx)) dx.dispose();
      }
      acc.set(x.id, next);
      refs.set(next, (refs.get(next) ?? 0) + 1);
    }
    // This node is done: its outputs' gradients and its saved tensors have no further use.
    for (const o of node.outputs) {
      const g = acc.get(o.id);
      if (g) {
        acc.delete(o.id);
        unref(g);
      }
    }
    for (const t of node.saved ?? []) t.dispose();
  }
  const grads: tf.NamedTensorMap = {};
  for (const v of vars) {
    const g = acc.get(v.id);
    if (g) grads[v.name] = g;
  }
  if (Object.keys(grads).length === 0) {
    throw new Error("variableGrads: no variable is connected to the loss (check that f uses the variables)");
  }
  return { value: y, grads };
}
