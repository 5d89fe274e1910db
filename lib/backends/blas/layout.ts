/**
 * Layout and indexing kernels for the `blas` backend: Transpose (strided copy of merged dims), GatherV2
 * (row copies), UnsortedSegmentSum (one pass; the cpu kernel does one masked pass per segment, i.e.
 * 30522 passes for a BERT embedding gradient), ScatterNd (row adds into a pooled zero array), and Slice and
 * PadV2 as copies of contiguous runs (the cpu kernels convert every element's index to coordinates and back:
 * 2.5-6 ms to take the `[CLS]` rows of a `[32, 128, 128]` batch, against 0.04 ms as run copies), and Concat into a
 * pooled array (the cpu kernel allocates a fresh one, whose pages fault in at each call).
 * @module
 */
import {
  backend_util,
  type KernelConfig,
  type KernelFunc,
  slice_util,
  type TensorInfo,
  util,
} from "@tensorflow/tfjs-core";
import { allF32, cpuKernel, f32, type KernelArgs, output, valuesOf } from "./common.ts";
import { allocF32 } from "./pool.ts";

type Numeric = Float32Array | Int32Array | Uint8Array;

function numeric(v: unknown): v is Numeric {
  return v instanceof Float32Array || v instanceof Int32Array || v instanceof Uint8Array;
}

/** A zeroed array of the same type (Float32Arrays come from the pool). */
function like(v: Numeric, n: number, zero = true): Numeric {
  if (v instanceof Float32Array) return allocF32(n, zero);
  return new (v.constructor as new (n: number) => Numeric)(n);
}

/** Transposes `x` (shape `shape`) by `perm` into a new array of the same type. */
export function transposeValues<T extends Numeric>(x: T, shape: number[], perm: number[]): T {
  const rank = shape.length;
  const out = like(x, x.length, false) as T;
  if (x.length === 0) return out;
  // Drop size-1 dims, then merge runs of input dims that stay adjacent and in order in the output.
  const keep = perm.filter((p) => shape[p] !== 1);
  const groups: number[][] = [];
  for (const p of keep) {
    const last = groups[groups.length - 1];
    if (last && last[last.length - 1] + 1 === p) last.push(p);
    else groups.push([p]);
  }
  if (groups.length <= 1) {
    out.set(x);
    return out;
  }
  // Input strides of the original dims.
  const inStride = new Array(rank).fill(1);
  for (let d = rank - 2; d >= 0; d--) inStride[d] = inStride[d + 1] * shape[d + 1];
  const dims = groups.map((g) => g.reduce((s, d) => s * shape[d], 1)); // output order
  const strides = groups.map((g) => inStride[g[g.length - 1]]); // input stride of each merged output dim
  const r = dims.length - 1;
  const inner = dims[r], si = strides[r];
  const outer = x.length / inner;
  const idx = new Array(r).fill(0);
  let base = 0;
  for (let i = 0, o = 0; i < outer; i++) {
    if (si === 1) {
      out.set(x.subarray(base, base + inner), o);
      o += inner;
    } else {
      for (let j = 0, p = base; j < inner; j++, p += si) out[o++] = x[p];
    }
    for (let d = r - 1; d >= 0; d--) {
      idx[d]++;
      base += strides[d];
      if (idx[d] < dims[d]) break;
      base -= strides[d] * dims[d];
      idx[d] = 0;
    }
  }
  return out;
}

/** Runs shorter than this are copied by a loop (a `subarray` view costs more than copying a few values). */
const SET_MIN = 64;

/** Copies `n` values from `x[src]` to `out[dst]`. */
function copyRun(x: Numeric, src: number, out: Numeric, dst: number, n: number): void {
  if (n >= SET_MIN) out.set(x.subarray(src, src + n), dst);
  else for (let j = 0; j < n; j++) out[dst + j] = x[src + j];
}

/** Row-major element strides of `shape`. */
function stridesOf(shape: number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let d = shape.length - 2; d >= 0; d--) s[d] = s[d + 1] * shape[d + 1];
  return s;
}

/**
 * Copies the box `[begin, begin + size)` of `x` (shape `shape`; `begin` and `size` resolved, no -1) into a new
 * array of the same type. Always a copy, also for a slice that is one contiguous run: a `subarray` view would
 * share (and so keep out of the pool) the whole parent array.
 */
function sliceValues<T extends Numeric>(x: T, shape: number[], begin: number[], size: number[]): T {
  const rank = shape.length;
  const length = util.sizeFromShape(size);
  const out = like(x, length, false) as T;
  if (length === 0) return out;
  const stride = stridesOf(shape);
  let offset = 0;
  for (let d = 0; d < rank; d++) offset += begin[d] * stride[d];
  // The contiguous run: trailing dims taken whole, times the first dim above them (taken in part).
  let d = rank - 1, run = 1;
  while (d >= 0 && size[d] === shape[d]) run *= size[d--];
  if (d >= 0) run *= size[d--];
  const dims: number[] = [], steps: number[] = [];
  for (let e = 0; e <= d; e++) {
    if (size[e] === 1) continue;
    dims.push(size[e]);
    steps.push(stride[e]);
  }
  if (dims.length === 0) {
    out.set(x.subarray(offset, offset + run));
    return out;
  }
  const r = dims.length - 1, idx = new Array(dims.length).fill(0);
  for (let o = 0, src = offset; o < length; o += run) {
    copyRun(x, src, out, o, run);
    for (let e = r; e >= 0; e--) {
      src += steps[e];
      if (++idx[e] < dims[e]) break;
      src -= steps[e] * dims[e];
      idx[e] = 0;
    }
  }
  return out;
}

/**
 * `x` (shape `shape`) padded with `paddings[d] = [before, after]` values of `constantValue` per dim; returns
 * the new array (same type) and its shape.
 */
function padValues<T extends Numeric>(
  x: T,
  shape: number[],
  paddings: number[][],
  constantValue: number,
): { values: T; shape: number[] } {
  const rank = shape.length;
  const outShape = shape.map((s, d) => paddings[d][0] + s + paddings[d][1]);
  const out = like(x, util.sizeFromShape(outShape), false) as T;
  out.fill(constantValue); // memset speed; x's runs are copied over it below
  if (x.length === 0) return { values: out, shape: outShape };
  const outStride = stridesOf(outShape);
  let base = 0;
  for (let d = 0; d < rank; d++) base += paddings[d][0] * outStride[d];
  // The contiguous run: trailing unpadded dims, times the first padded dim above them (x's extent of it).
  let d = rank - 1, run = 1;
  while (d >= 0 && paddings[d][0] === 0 && paddings[d][1] === 0) run *= shape[d--];
  if (d >= 0) run *= shape[d--];
  const dims: number[] = [], steps: number[] = [];
  for (let e = 0; e <= d; e++) {
    if (shape[e] === 1) continue;
    dims.push(shape[e]);
    steps.push(outStride[e]);
  }
  // x is read in order; the destination walks the outer dims with the output's strides.
  const r = dims.length - 1, idx = new Array(dims.length).fill(0);
  for (let src = 0, dst = base; src < x.length; src += run) {
    copyRun(x, src, out, dst, run);
    for (let e = r; e >= 0; e--) {
      dst += steps[e];
      if (++idx[e] < dims[e]) break;
      dst -= steps[e] * dims[e];
      idx[e] = 0;
    }
  }
  return { values: out, shape: outShape };
}

/**
 * Concatenation of `parts` into `out`: each part holds rows of `inner[i]` values (its dims from the concat axis on), and
 * output row `o` is row `o` of every part in turn. Every part has the same number of rows.
 */
function concatInto(out: Float32Array, parts: Float32Array[], inner: number[]): void {
  const rowOut = inner.reduce((a, b) => a + b, 0);
  const rows = rowOut ? out.length / rowOut : 0;
  let at = 0;
  for (let o = 0; o < rows; o++) {
    for (let i = 0; i < parts.length; i++) {
      const n = inner[i];
      if (n === 0) continue;
      if (rows === 1) out.set(parts[i], at);
      else out.set(parts[i].subarray(o * n, (o + 1) * n), at);
      at += n;
    }
  }
}

/** Kernel configs for Concat, Transpose, GatherV2, UnsortedSegmentSum, ScatterNd, Slice and PadV2 on `backendName`. */
export function layoutKernels(backendName: string): KernelConfig[] {
  const cpuTranspose = cpuKernel("Transpose");
  const cpuGather = cpuKernel("GatherV2");
  const cpuSegmentSum = cpuKernel("UnsortedSegmentSum");
  const cpuScatterNd = cpuKernel("ScatterNd");
  const cpuSlice = cpuKernel("Slice");
  const cpuPad = cpuKernel("PadV2");
  const cpuConcat = cpuKernel("Concat");

  const transpose = (args: KernelArgs): TensorInfo => {
    const { inputs, backend, attrs } = args;
    const x = inputs.x!;
    const vals = valuesOf(backend, x);
    const perm = attrs!.perm as number[];
    if (!numeric(vals) || x.dtype === "complex64") return cpuTranspose(args as never) as TensorInfo;
    const outShape = perm.map((p) => x.shape[p]);
    return backend.makeTensorInfo(outShape, x.dtype, transposeValues(vals, x.shape, perm));
  };

  const gather = (args: KernelArgs): TensorInfo => {
    const { inputs, backend, attrs } = args;
    const x = inputs.x!, indices = inputs.indices!;
    const vals = valuesOf(backend, x), idx = valuesOf(backend, indices);
    if (!numeric(vals) || !numeric(idx) || x.dtype === "complex64") return cpuGather(args as never) as TensorInfo;
    const axis = util.parseAxisParam(attrs!.axis as number, x.shape)[0];
    const batchDims = (attrs!.batchDims as number | undefined) ?? 0;
    const dimSize = x.shape[axis];
    for (let i = 0; i < idx.length; i++) {
      const index = idx[i];
      if (!(index >= 0 && index <= dimSize - 1)) {
        throw new Error(`GatherV2: the index value ${index} is not in [0, ${dimSize - 1}]`);
      }
    }
    const info = backend_util.segment_util.collectGatherOpShapeInfo(
      x as never,
      indices as never,
      axis,
      batchDims,
    );
    const { batchSize, outerSize, sliceSize } = info;
    const nIdx = idx.length / batchSize; // indices per batch
    const out = like(vals, batchSize * outerSize * nIdx * sliceSize, false);
    // x: [batch, outer, dim, slice] -> out: [batch, outer, nIdx, slice]
    let o = 0;
    for (let b = 0; b < batchSize; b++) {
      for (let t = 0; t < outerSize; t++) {
        const xBase = (b * outerSize + t) * dimSize * sliceSize;
        for (let i = 0; i < nIdx; i++) {
          const src = xBase + idx[b * nIdx + i] * sliceSize;
          if (sliceSize === 1) out[o] = vals[src];
          else out.set(vals.subarray(src, src + sliceSize), o);
          o += sliceSize;
        }
      }
    }
    return backend.makeTensorInfo(info.outputShape, x.dtype, out);
  };

  const segmentSum = (args: KernelArgs): TensorInfo => {
    const { inputs, backend, attrs } = args;
    const x = inputs.x!, segmentIds = inputs.segmentIds!;
    const vals = valuesOf(backend, x), ids = valuesOf(backend, segmentIds);
    if (!(vals instanceof Float32Array || vals instanceof Int32Array) || !numeric(ids)) {
      return cpuSegmentSum(args as never) as TensorInfo;
    }
    const numSegments = attrs!.numSegments as number;
    const n = ids.length;
    const inner = n === 0 ? util.sizeFromShape(x.shape.slice(segmentIds.shape.length)) : vals.length / n;
    const outShape = [numSegments, ...x.shape.slice(segmentIds.shape.length)];
    const out = like(vals, numSegments * inner);
    for (let i = 0; i < n; i++) {
      const s = ids[i];
      if (s < 0 || s >= numSegments) continue; // TensorFlow drops out-of-range ids
      let p = i * inner, q = s * inner;
      for (let j = 0; j < inner; j++) out[q++] += vals[p++];
    }
    return backend.makeTensorInfo(outShape, x.dtype, out);
  };

  // float32 updates at int32 indices (the embedding gradient): rows added into a zeroed pooled array, summing
  // duplicates in index order as the cpu kernel does (so the results are bit-identical).
  const scatterNd = (args: KernelArgs): TensorInfo => {
    const { inputs, backend, attrs } = args;
    const indices = inputs.indices!, updates = inputs.updates!;
    const idx = valuesOf(backend, indices), upd = valuesOf(backend, updates);
    if (updates.dtype !== "float32" || !(upd instanceof Float32Array) || !(idx instanceof Int32Array)) {
      return cpuScatterNd(args as never) as TensorInfo;
    }
    const shape = attrs!.shape as number[];
    const { sliceRank, numUpdates, sliceSize, strides, outputSize } = backend_util.calculateShapes(
      updates as never,
      indices as never,
      shape,
    );
    const out = allocF32(outputSize, true);
    if (outputSize === 0) return backend.makeTensorInfo(shape, "float32", out);
    const rows = outputSize / sliceSize;
    for (let i = 0; i < numUpdates; i++) {
      let row = 0;
      for (let j = 0; j < sliceRank; j++) row += idx[i * sliceRank + j] * strides[j];
      if (row < 0 || row >= rows) {
        const index = Array.from(idx.subarray(i * sliceRank, (i + 1) * sliceRank));
        throw new Error(`Invalid indices: ${index} does not index into ${shape}`);
      }
      let p = i * sliceSize, q = row * sliceSize;
      for (let j = 0; j < sliceSize; j++) out[q++] += upd[p++];
    }
    return backend.makeTensorInfo(shape, "float32", out);
  };

  const slice = (args: KernelArgs): TensorInfo => {
    const { inputs, backend, attrs } = args;
    const x = inputs.x!;
    const vals = valuesOf(backend, x);
    if (!numeric(vals) || x.dtype === "complex64") return cpuSlice(args as never) as TensorInfo;
    const [begin, size] = slice_util.parseSliceParams(
      x as never,
      attrs!.begin as number | number[],
      attrs!.size as number | number[],
    );
    slice_util.assertParamsValid(x as never, begin, size);
    return backend.makeTensorInfo(size, x.dtype, sliceValues(vals, x.shape, begin, size));
  };

  const pad = (args: KernelArgs): TensorInfo => {
    const { inputs, backend, attrs } = args;
    const x = inputs.x!;
    const vals = valuesOf(backend, x);
    if (!numeric(vals) || x.dtype === "complex64") return cpuPad(args as never) as TensorInfo;
    const paddings = attrs!.paddings as number[][];
    const r = padValues(vals, x.shape, paddings, (attrs!.constantValue as number | undefined) ?? 0);
    return backend.makeTensorInfo(r.shape, x.dtype, r.values);
  };

  const concat = (args: KernelArgs): TensorInfo => {
    const { backend, attrs } = args;
    const inputs = Object.values(args.inputs) as TensorInfo[]; // Concat's inputs come as a list
    if (!inputs.length || !allF32(backend, ...inputs)) return cpuConcat(args as never) as TensorInfo;
    const axis = util.parseAxisParam(attrs!.axis as number, inputs[0].shape)[0];
    const shapes = inputs.map((t) => t.shape);
    backend_util.assertParamsConsistent(shapes, axis);
    const outShape = backend_util.computeOutShape(shapes, axis);
    const out = allocF32(util.sizeFromShape(outShape), false);
    const parts = inputs.map((t) => f32(backend, t));
    concatInto(out, parts, shapes.map((s) => util.sizeFromShape(s.slice(axis))));
    return output(backend, outShape, out);
  };

  return [
    { kernelName: "Concat", backendName, kernelFunc: concat as unknown as KernelFunc },
    { kernelName: "Transpose", backendName, kernelFunc: transpose as unknown as KernelFunc },
    { kernelName: "GatherV2", backendName, kernelFunc: gather as unknown as KernelFunc },
    { kernelName: "UnsortedSegmentSum", backendName, kernelFunc: segmentSum as unknown as KernelFunc },
    { kernelName: "ScatterNd", backendName, kernelFunc: scatterNd as unknown as KernelFunc },
    { kernelName: "Slice", backendName, kernelFunc: slice as unknown as KernelFunc },
    { kernelName: "PadV2", backendName, kernelFunc: pad as unknown as KernelFunc },
  ];
}
