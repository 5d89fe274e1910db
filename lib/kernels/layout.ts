/**
 * Layout and indexing kernels for the `blas` backend: Transpose (strided copy of merged dims), GatherV2
 * (row copies) and UnsortedSegmentSum (one pass; the cpu kernel does one masked pass per segment, i.e.
 * 30522 passes for a BERT embedding gradient).
 * @module
 */
import { backend_util, type KernelConfig, type KernelFunc, type TensorInfo, util } from "@tensorflow/tfjs-core";
import { cpuKernel, type KernelArgs, valuesOf } from "./common.ts";
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

/** Kernel configs for Transpose, GatherV2 and UnsortedSegmentSum on `backendName`. */
export function layoutKernels(backendName: string): KernelConfig[] {
  const cpuTranspose = cpuKernel("Transpose");
  const cpuGather = cpuKernel("GatherV2");
  const cpuSegmentSum = cpuKernel("UnsortedSegmentSum");

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

  return [
    { kernelName: "Transpose", backendName, kernelFunc: transpose as unknown as KernelFunc },
    { kernelName: "GatherV2", backendName, kernelFunc: gather as unknown as KernelFunc },
    { kernelName: "UnsortedSegmentSum", backendName, kernelFunc: segmentSum as unknown as KernelFunc },
  ];
}
