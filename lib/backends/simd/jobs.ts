/**
 * The SIMD kernels' work on a range of elements, rows or attention blocks, run the same way on the main thread and
 * on the worker of lib/backends/simd/simd_worker.ts: each thread copies its part of the arrays through its own region
 * set (thread `t`'s at byte `t * THREAD_BYTES` of the shared memory) and calls the module's functions there. The
 * maths of an element (or row, or block) does not depend on the range it is part of, so a job split in two gives
 * the same bits as the whole job on one thread.
 *
 * Also the control block through which the main thread shares a job with the worker ({@linkcode encodeJob},
 * {@linkcode decodeJob}): a SharedArrayBuffer of {@linkcode CONTROL_BYTES}, `Int32Array` words (`CTL_*`) for the
 * handshake and a `Float64Array` (from byte 64) for the job. A job is cut into chunks ({@linkcode chunkUnits}) that
 * both threads claim one at a time ({@linkcode claimChunks}), so a worker that wakes late takes fewer.
 * @module
 */
import { CHUNK, GOLDEN, PARAMS_BYTES, THREAD_BYTES } from "./kernels.ts";

/** One of the module's exported functions. */
export type SimdFn = (p0: number, p1: number, p2?: number, p3?: number, p4?: number) => void;

/** Job kinds (the `kind` of a {@linkcode Job}). */
export const JOB = {
  /** `[x, out]`: `out = gelu(x)`; units are elements. */
  gelu: 1,
  /** `[x, dy, out]`: `out = gelu'(x) dy`; elements. */
  geluGrad: 2,
  /** `[src | undefined, out]`, nums `[state, threshold, scale]`: inverted dropout; elements. */
  dropout: 3,
  /** `[p, g, m, v, pn, mn, vn]` (parameters preset in each region set): one AdamW step; elements. */
  adamw: 4,
  /**
   * `[x, y, xhat | undefined, rstd, residual | undefined]`, nums `[width, eps]` (gamma, beta preset in region 2):
   * LayerNorm of `x + residual` (of `x` without one); `xhat` not written when undefined; rows.
   */
  layerNorm: 5,
  /** `[dy, xhat, rstd, dx]`, nums `[width]` (gamma and zeroed sums preset in region 2): LayerNorm's gradient; rows. */
  layerNormGrad: 6,
  /** nums `[ptr, cols, maskPtr]`: masked softmax of rows in module memory; rows. */
  softmaxRows: 7,
  /** nums `[dsPtr, pPtr, cols]`: softmax gradient of rows in module memory; rows. */
  softmaxGradRows: 8,
  /** nums `[ptr, state, threshold, scale]`: dropout in module memory; elements (split at multiples of 4). */
  dropoutAt: 9,
  /**
   * `[probs | undefined, examples | undefined]`, nums `[ptr, seq, heads, maskPtr, firstBlock, firstExample, ...drop]`
   * (`drop`: `[rate > 0, seed, threshold, scale, maskSeq]`, the mask's place as {@linkcode blockMask} says, `examples`
   * its example map): attention blocks of `seq * seq` floats at `ptr`, {@linkcode blockStride} floats apart, become
   * softmax(block + its example's mask row, at `maskPtr + 4 seq (example - firstExample)`), are copied to `probs`
   * (at their place in the whole tensor) and dropped out in place; blocks.
   */
  attentionForward: 10,
  /**
   * `[probs, examples | undefined]`, nums `[pPtr, pdPtr, seq, heads, firstBlock, ...drop]`: each block of `probs`
   * copied to `pPtr`, and with its dropout applied to `pdPtr` (blocks {@linkcode blockStride} floats apart); blocks.
   */
  attentionProbs: 11,
  /**
   * `[examples | undefined]`, nums `[dsPtr, pPtr, seq, heads, firstBlock, ...drop]`: the dropout mask, then the softmax
   * gradient, applied in place to each `ds` block (blocks {@linkcode blockStride} floats apart); blocks.
   */
  attentionGrad: 12,
  /**
   * `[q, k, v, mask, context, probs | undefined, examples | undefined]`, nums `[wsPtr, wsStride, seq, heads, hidden,
   * scale, group, rowFloats, ...drop]` (`drop` as for {@linkcode JOB.attentionForward}): the attention forward pass of
   * blocks (`(example, head)` pairs, in order), `group` at a time in the workspace of the thread (`wsPtr + thread *
   * wsStride`): `sgemm` for the scores, then {@linkcode JOB.attentionForward}, then `sgemm` for `P V` into `context`;
   * blocks. Rows of `q`, `k` and `v` are `rowFloats` apart (`hidden`, or `3 hidden` when they are the column blocks of
   * one packed array); `context`'s are `hidden` apart.
   */
  attentionForwardBlocks: 13,
  /**
   * `[dy, q, k, v, probs, dq, dk, dv, examples | undefined]`, nums as {@linkcode JOB.attentionForwardBlocks}
   * (`rowFloats` = `hidden`): the attention backward pass of blocks, with {@linkcode JOB.attentionProbs} and
   * {@linkcode JOB.attentionGrad} between the `sgemm` calls; blocks.
   */
  attentionBackwardBlocks: 14,
} as const;

/** A CBLAS `sgemm` (row-major) with the arguments of lib/backends/blas/blas.ts's `Blas.sgemm`. */
export type Sgemm = (args: {
  m: number;
  n: number;
  k: number;
  a: Float32Array;
  b: Float32Array;
  c: Float32Array;
  lda?: number;
  ldb?: number;
  ldc?: number;
  alpha?: number;
  transA?: boolean;
  transB?: boolean;
}) => void;

/**
 * How a job's steps reach the thread's means: the module's functions, a view of its memory, `sgemm` (for the
 * attention block jobs), and `sub`, which runs one step's job on `[0, units)` (on this thread, or split again).
 */
export interface JobContext {
  fns: Record<string, SimdFn>;
  mem: Float32Array;
  sgemm?: Sgemm;
  sub?: (job: Job, units: number, work: number) => void;
}

/** A kernel call's work, whole or in part (see {@linkcode runJob}). */
export interface Job {
  /** One of {@linkcode JOB}. */
  kind: number;
  /** The arrays the kind reads and writes (undefined: absent), in the order of {@linkcode JOB}'s notes. */
  arrays: (Float32Array | undefined)[];
  /** Sizes, byte offsets into the module's memory, seeds and scalars, in the order of {@linkcode JOB}'s notes. */
  nums: number[];
}

/** Vector bytes covering `n` floats (rounded up to whole 4-float vectors). */
const vecBytes = (n: number) => ((n + 3) >> 2) << 4;

/**
 * Floats from one attention block to the next in module memory: `seq * seq` rounded up to whole 4-float vectors, so
 * that a vector step over a block (dropout, `exp`) never reaches into the next one.
 */
export const blockStride = (seq: number) => ((seq * seq + 3) >> 2) << 2;

/**
 * `softmax(rows + mask)` in place on `rows` rows of `cols` floats at byte `at` of the module's memory, the mask row at
 * byte `mask`, for a width that is not a multiple of 4: the arithmetic of lib/backends/blas/attention.ts's JavaScript
 * path (the module's scalar `softmax_exact_pre`, its vector `exp`, then `softmax_exact_post`: float64 row sums), so
 * that both give the same bits. `exp` runs over whole vectors: the block needs {@linkcode blockStride} floats.
 */
function softmaxRowsExact(fns: Record<string, SimdFn>, at: number, rows: number, cols: number, mask: number): void {
  fns.softmax_exact_pre(at, rows, cols * 4, mask);
  fns.exp(at, vecBytes(rows * cols));
  fns.softmax_exact_post(at, rows, cols * 4);
}

/** The mulberry32 state before draw `offset` of the stream whose state before draw 0 is `state`. */
const stateAt = (state: number, offset: number) => (state + Math.imul(offset, GOLDEN)) | 0;

/**
 * Where the dropout mask of attention block `global` (example `global / heads`, head `global % heads`) lies in the
 * stream of draws: row `r` of the block starts at draw `base + r * rowStep`. Without `maskSeq` (0) the blocks are those
 * of the whole `[batch, heads, seq, seq]` probability tensor (`rowStep = seq`: one run of `seq * seq` draws). With it,
 * the call holds examples packed to `seq` rows (lib/model/packing.ts) whose masks are those of a padded
 * `[B, heads, maskSeq, maskSeq]` tensor, block `global`'s example being `examples[global / heads]` there.
 */
export function blockMask(
  global: number,
  seq: number,
  heads: number,
  maskSeq = 0,
  examples?: ArrayLike<number>,
): { base: number; rowStep: number } {
  if (!maskSeq) return { base: global * seq * seq, rowStep: seq };
  const example = examples![Math.floor(global / heads)], head = global % heads;
  return { base: (example * heads + head) * maskSeq * maskSeq, rowStep: maskSeq };
}

/**
 * Inverted dropout in place on attention block `global` at byte `at` (rows of `seq` floats), with the mask
 * {@linkcode blockMask} places; `drop` is `[rate > 0, seed, threshold, scale, maskSeq]`.
 */
function dropBlock(
  fns: Record<string, SimdFn>,
  at: number,
  global: number,
  seq: number,
  heads: number,
  drop: number[],
  examples?: Float32Array,
): void {
  const [, seed, threshold, scale, maskSeq] = drop;
  const { base, rowStep } = blockMask(global, seq, heads, maskSeq, examples);
  if (rowStep === seq) return fns.dropout(at, seq * seq * 4, stateAt(seed, base), threshold | 0, scale);
  if (seq % 4) throw new Error(`simd jobs: a packed attention block of ${seq} rows (not a multiple of 4)`);
  for (let r = 0; r < seq; r++) {
    fns.dropout(at + r * seq * 4, seq * 4, stateAt(seed, base + r * rowStep), threshold | 0, scale);
  }
}

/**
 * Runs units `[start, end)` of `job` on the region set at byte `base` of the module's memory (`mem`: a view of all
 * of it, made after its last growth), calling the module's functions `fns` (and for the attention block jobs,
 * `sgemm`, and `sub` for their elementwise steps: by default on this thread).
 */
export function runJob(
  fns: Record<string, SimdFn>,
  mem: Float32Array,
  base: number,
  job: Job,
  start: number,
  end: number,
  sgemm?: Sgemm,
  sub?: (job: Job, units: number, work: number) => void,
): void {
  const b = base >> 2, a = job.arrays, nums = job.nums;
  switch (job.kind) {
    case JOB.gelu:
    case JOB.geluGrad: {
      const grad = job.kind === JOB.geluGrad, x = a[0]!, dy = a[1], out = a[grad ? 2 : 1]!;
      const fn = grad ? fns.gelu_grad : fns.gelu;
      for (let s = start; s < end; s += CHUNK) {
        const n = Math.min(CHUNK, end - s);
        mem.set(x.subarray(s, s + n), b);
        if (grad) mem.set(dy!.subarray(s, s + n), b + CHUNK);
        fn(base, vecBytes(n));
        out.set(mem.subarray(b, b + n), s);
      }
      return;
    }
    case JOB.dropout: {
      const [src, out] = a, [state, threshold, scale] = nums;
      for (let s = start; s < end; s += CHUNK) {
        const n = Math.min(CHUNK, end - s);
        if (src) mem.set(src.subarray(s, s + n), b);
        else mem.fill(1, b, b + n);
        fns.dropout(base, vecBytes(n), stateAt(state, s), threshold | 0, scale);
        out!.set(mem.subarray(b, b + n), s);
      }
      return;
    }
    case JOB.adamw: {
      const [p, g, m, v, pn, mn, vn] = a as Float32Array[];
      for (let s = start; s < end; s += CHUNK) {
        const n = Math.min(CHUNK, end - s), e = s + n;
        mem.set(p.subarray(s, e), b);
        mem.set(g.subarray(s, e), b + CHUNK);
        mem.set(m.subarray(s, e), b + 2 * CHUNK);
        mem.set(v.subarray(s, e), b + 3 * CHUNK);
        fns.adamw(base, vecBytes(n), base + PARAMS_BYTES);
        pn.set(mem.subarray(b, b + n), s);
        mn.set(mem.subarray(b + 2 * CHUNK, b + 2 * CHUNK + n), s);
        vn.set(mem.subarray(b + 3 * CHUNK, b + 3 * CHUNK + n), s);
      }
      return;
    }
    case JOB.layerNorm: {
      const [x, y, xhat, rstd, residual] = a, [w, eps] = nums, per = Math.floor(CHUNK / w);
      for (let r0 = start; r0 < end; r0 += per) {
        const rows = Math.min(per, end - r0), o = r0 * w, n = rows * w;
        mem.set(x!.subarray(o, o + n), b);
        // y's region holds the residual until LayerNorm overwrites it (it adds it first).
        if (residual) mem.set(residual.subarray(o, o + n), b + CHUNK);
        fns.layernorm(base, rows, w * 4, residual ? 1 : 0, eps);
        xhat?.set(mem.subarray(b, b + n), o);
        y!.set(mem.subarray(b + CHUNK, b + CHUNK + n), o);
        rstd!.set(mem.subarray(b + 3 * CHUNK, b + 3 * CHUNK + rows), r0);
      }
      return;
    }
    case JOB.layerNormGrad: {
      const [dy, xhat, rstd, dx] = a as Float32Array[], [w] = nums, per = Math.floor(CHUNK / w);
      for (let r0 = start; r0 < end; r0 += per) {
        const rows = Math.min(per, end - r0), o = r0 * w, n = rows * w;
        mem.set(dy.subarray(o, o + n), b);
        mem.set(xhat.subarray(o, o + n), b + CHUNK);
        mem.set(rstd.subarray(r0, r0 + rows), b + 3 * CHUNK);
        fns.layernorm_grad(base, rows, w * 4);
        dx.set(mem.subarray(b, b + n), o);
      }
      return;
    }
    case JOB.softmaxRows: {
      const [ptr, cols, maskPtr] = nums;
      if (end > start) fns.softmax_rows(ptr + start * cols * 4, end - start, cols * 4, maskPtr);
      return;
    }
    case JOB.softmaxGradRows: {
      const [dsPtr, pPtr, cols] = nums, o = start * cols * 4;
      if (end > start) fns.softmax_grad_rows(dsPtr + o, pPtr + o, end - start, cols * 4);
      return;
    }
    case JOB.dropoutAt: {
      const [ptr, state, threshold, scale] = nums;
      if (end > start) fns.dropout(ptr + start * 4, (end - start) * 4, stateAt(state, start), threshold | 0, scale);
      return;
    }
    case JOB.attentionForward: {
      const [probs, examples] = a;
      const [ptr, seq, heads, maskPtr, firstBlock, firstExample, ...drop] = nums;
      const block = seq * seq, bs = blockStride(seq);
      for (let i = start; i < end; i++) {
        const at = ptr + i * bs * 4, global = firstBlock + i, po = global * block;
        const example = Math.floor(global / heads) - firstExample;
        const maskAt = maskPtr + example * seq * 4;
        if (seq % 4) softmaxRowsExact(fns, at, seq, seq, maskAt);
        else fns.softmax_rows(at, seq, seq * 4, maskAt);
        probs?.set(mem.subarray(at >> 2, (at >> 2) + block), po);
        if (drop[0]) dropBlock(fns, at, global, seq, heads, drop, examples);
      }
      return;
    }
    case JOB.attentionProbs: {
      const [probs, examples] = a, [pPtr, pdPtr, seq, heads, firstBlock, ...drop] = nums;
      const block = seq * seq, bs = blockStride(seq);
      for (let i = start; i < end; i++) {
        const p = (pPtr >> 2) + i * bs, pd = (pdPtr >> 2) + i * bs, po = (firstBlock + i) * block;
        mem.set(probs!.subarray(po, po + block), p);
        if (!drop[0]) continue;
        mem.copyWithin(pd, p, p + block);
        dropBlock(fns, pd * 4, firstBlock + i, seq, heads, drop, examples);
      }
      return;
    }
    case JOB.attentionGrad: {
      const [examples] = a, [dsPtr, pPtr, seq, heads, firstBlock, ...drop] = nums;
      const bs = blockStride(seq);
      for (let i = start; i < end; i++) {
        const ds = dsPtr + i * bs * 4, p = pPtr + i * bs * 4;
        if (drop[0]) dropBlock(fns, ds, firstBlock + i, seq, heads, drop, examples);
        if (seq % 4) fns.softmax_grad_exact(ds, p, seq, seq * 4); // float64 row sums: the JavaScript path's bits
        else fns.softmax_grad_rows(ds, p, seq, seq * 4);
      }
      return;
    }
    case JOB.attentionForwardBlocks:
    case JOB.attentionBackwardBlocks: {
      const ctx: JobContext = { fns, mem, sgemm, sub: sub ?? ((j, n) => runJob(fns, mem, base, j, 0, n)) };
      if (!sgemm) throw new Error("simd jobs: the attention block jobs need sgemm (none was given)");
      const ws = nums[0] + Math.round(base / THREAD_BYTES) * nums[1];
      if (job.kind === JOB.attentionForwardBlocks) attentionForwardRange(ctx, job, ws, start, end);
      else attentionBackwardRange(ctx, job, ws, start, end);
      return;
    }
    default:
      throw new Error(`simd jobs: unknown job kind ${job.kind} (expected one of JOB in lib/backends/simd/jobs.ts)`);
  }
}

/** The attention block geometry of a job's nums (see {@linkcode JOB.attentionForwardBlocks}). */
function blockGeometry(nums: number[]) {
  const [, , seq, heads, hidden, scale, group, rowFloats, ...drop] = nums;
  const dh = hidden / heads;
  return { seq, heads, hidden, rowFloats, dh, scale, group, drop, block: seq * seq, bs: blockStride(seq) };
}

/**
 * Where block `global` (example `b`, head `h`) starts in a `[batch * seq, ...]` array whose rows are `rowFloats`
 * apart, heads `dh` floats wide.
 */
const blockOffset = (global: number, heads: number, seq: number, rowFloats: number, dh: number) =>
  Math.floor(global / heads) * seq * rowFloats + (global % heads) * dh;

function attentionForwardRange(ctx: JobContext, job: Job, ws: number, start: number, end: number): void {
  const { mem, sgemm } = ctx, [q, k, v, mask, context, probs, examples] = job.arrays as Float32Array[];
  const { seq, heads, hidden, rowFloats, dh, scale, group, drop, block, bs } = blockGeometry(job.nums);
  const w = ws >> 2, maskPtr = ws + 4 * group * bs;
  for (let g0 = start; g0 < end; g0 += group) {
    const n = Math.min(group, end - g0), e0 = Math.floor(g0 / heads), e1 = Math.floor((g0 + n - 1) / heads);
    mem.set(mask.subarray(e0 * seq, (e1 + 1) * seq), w + group * bs);
    for (let i = 0; i < n; i++) {
      const off = blockOffset(g0 + i, heads, seq, rowFloats, dh);
      sgemm!({
        m: seq,
        n: seq,
        k: dh,
        a: q.subarray(off),
        lda: rowFloats,
        b: k.subarray(off),
        ldb: rowFloats,
        transB: true,
        c: mem.subarray(w + i * bs, w + i * bs + block),
        alpha: scale,
      });
    }
    ctx.sub!(
      {
        kind: JOB.attentionForward,
        arrays: [probs, examples],
        nums: [ws, seq, heads, maskPtr, g0, e0, ...drop],
      },
      n,
      n * block,
    );
    for (let i = 0; i < n; i++) {
      const off = blockOffset(g0 + i, heads, seq, rowFloats, dh), out = blockOffset(g0 + i, heads, seq, hidden, dh);
      sgemm!({
        m: seq,
        n: dh,
        k: seq,
        a: mem.subarray(w + i * bs, w + i * bs + block),
        b: v.subarray(off),
        ldb: rowFloats,
        c: context.subarray(out),
        ldc: hidden,
      });
    }
  }
}

function attentionBackwardRange(ctx: JobContext, job: Job, ws: number, start: number, end: number): void {
  const { mem, sgemm } = ctx, [dy, q, k, v, probs, dq, dk, dv, examples] = job.arrays as Float32Array[];
  const { seq, heads, hidden, dh, scale, group, drop, block, bs } = blockGeometry(job.nums);
  const P = 0, PD = 1, DS = 2, dropping = drop[0] !== 0;
  const at = (region: number, i: number) =>
    mem.subarray((ws >> 2) + (region * group + i) * bs, (ws >> 2) + (region * group + i) * bs + block);
  const ptr = (region: number) => ws + 4 * region * group * bs;
  for (let g0 = start; g0 < end; g0 += group) {
    const n = Math.min(group, end - g0);
    ctx.sub!(
      {
        kind: JOB.attentionProbs,
        arrays: [probs, examples],
        nums: [ptr(P), ptr(PD), seq, heads, g0, ...drop],
      },
      n,
      n * block * (dropping ? 2 : 1),
    );
    for (let i = 0; i < n; i++) {
      const off = blockOffset(g0 + i, heads, seq, hidden, dh);
      // dV = dropped^T @ dC; dP = dC @ V^T (times the dropout mask, in attentionGrad)
      sgemm!({
        m: seq,
        n: dh,
        k: seq,
        transA: true,
        a: at(dropping ? PD : P, i),
        b: dy.subarray(off),
        ldb: hidden,
        c: dv.subarray(off),
        ldc: hidden,
      });
      sgemm!({
        m: seq,
        n: seq,
        k: dh,
        a: dy.subarray(off),
        lda: hidden,
        b: v.subarray(off),
        ldb: hidden,
        transB: true,
        c: at(DS, i),
      });
    }
    const gradJob = { kind: JOB.attentionGrad, arrays: [examples], nums: [ptr(DS), ptr(P), seq, heads, g0, ...drop] };
    ctx.sub!(gradJob, n, n * block);
    for (let i = 0; i < n; i++) {
      const off = blockOffset(g0 + i, heads, seq, hidden, dh);
      // dQ = scale * dS @ K, dK = scale * dS^T @ Q
      sgemm!({
        m: seq,
        n: dh,
        k: seq,
        a: at(DS, i),
        b: k.subarray(off),
        ldb: hidden,
        c: dq.subarray(off),
        ldc: hidden,
        alpha: scale,
      });
      sgemm!({
        m: seq,
        n: dh,
        k: seq,
        transA: true,
        a: at(DS, i),
        b: q.subarray(off),
        ldb: hidden,
        c: dk.subarray(off),
        ldc: hidden,
        alpha: scale,
      });
    }
  }
}

/**
 * Units per chunk of `job` over `units` units: the pieces the two threads claim one at a time (a chunk region's
 * worth of floats, a row block, an attention block or group). LayerNorm's gradient has two fixed parts, each summed
 * in its own region set ({@linkcode perPartRegions}).
 */
export function chunkUnits(job: Job, units: number): number {
  const nums = job.nums;
  switch (job.kind) {
    case JOB.layerNorm:
      return Math.max(1, Math.floor(CHUNK / nums[0]));
    case JOB.layerNormGrad:
      return Math.max(1, Math.ceil(units / 2));
    case JOB.softmaxRows:
      return Math.max(1, Math.floor(CHUNK / nums[1]));
    case JOB.softmaxGradRows:
      return Math.max(1, Math.floor(CHUNK / nums[2]));
    case JOB.attentionForward:
    case JOB.attentionProbs:
    case JOB.attentionGrad:
      return 1;
    case JOB.attentionForwardBlocks:
    case JOB.attentionBackwardBlocks:
      return nums[6];
    default:
      return CHUNK;
  }
}

/**
 * Whether chunk `i` of `job` runs on region set `i` whichever thread claims it (LayerNorm's gradient: each part's
 * sums stay apart, and are added in the same order however the parts were run), instead of the claiming thread's.
 */
export function perPartRegions(job: Job): boolean {
  return job.kind === JOB.layerNormGrad;
}

/** Int32 words of the control block: the worker's state ({@linkcode WORKER_STATE}). */
export const CTL_STATE = 0;
/** Int32 word: the number of the last job posted (1 to 2^30, wrapping); the worker waits for it to change. */
export const CTL_POSTED = 1;
/** Int32 word: the number of the last job the worker took part in and finished (then it notifies). */
export const CTL_DONE = 2;
/** Int32 word: 1 when the worker's last job threw (its message went to stderr). */
export const CTL_FAILED = 3;
/**
 * Int32 word: the job open for the worker to join (its number), `-number` once the worker has joined it (then the
 * main thread waits for `CTL_DONE`), 0 once the main thread closed it without the worker (which then leaves it).
 */
export const CTL_OPEN = 4;
/** Int32 word: the next chunk to claim of the open job (`Atomics.add`). */
export const CTL_CLAIM = 5;
/** Int32 word: chunks the worker has run (it adds 1 per chunk). */
export const CTL_WORKER_CHUNKS = 6;
/**
 * Int32 word: the shared memory's size in 64 KiB pages when the job was posted (the main thread's, which grows it).
 * The worker's `WebAssembly.Memory` object may still report an older size (see lib/backends/simd/simd_worker.ts):
 * it then refreshes its view before running the job.
 */
export const CTL_PAGES = 7;
/** States of the worker in {@linkcode CTL_STATE}. */
export const WORKER_STATE = { starting: 0, ready: 1, failed: 2 } as const;

const MAX_NUMS = 13, MAX_ARRAYS = 9, F64_START = 8; // the job's f64s start at byte 64
/** Bytes of the control block. */
export const CONTROL_BYTES = 64 + 8 * (4 + MAX_NUMS + 2 * MAX_ARRAYS);
/**
 * Bytes after the control block for the CBLAS library's path (an Int32 length, then UTF-8), written by the main
 * thread before the first attention block job, read by the worker when it opens the library.
 */
export const LIBRARY_BYTES = 1024;

/**
 * Writes `job` over `units` units in chunks of `per` into the control block `f64` (a view of all of it), each array
 * as its address (`address(array)`) and length.
 */
export function encodeJob(
  f64: Float64Array,
  job: Job,
  units: number,
  per: number,
  address: (a: Float32Array) => number,
): void {
  if (job.nums.length > MAX_NUMS || job.arrays.length > MAX_ARRAYS) {
    throw new Error(
      `simd jobs: job ${job.kind} has ${job.nums.length} numbers / ${job.arrays.length} arrays, over ` +
        `the control block's ${MAX_NUMS} / ${MAX_ARRAYS} (raise MAX_NUMS / MAX_ARRAYS in lib/backends/simd/jobs.ts)`,
    );
  }
  const o = F64_START;
  f64[o] = job.kind, f64[o + 1] = units, f64[o + 2] = per;
  for (let i = 0; i < MAX_NUMS; i++) f64[o + 4 + i] = job.nums[i] ?? 0;
  for (let i = 0; i < MAX_ARRAYS; i++) {
    const arr = job.arrays[i], at = o + 4 + MAX_NUMS + 2 * i;
    f64[at] = arr && arr.length ? address(arr) : 0;
    f64[at + 1] = arr ? arr.length : -1;
  }
}

/** The job written by {@linkcode encodeJob}; `view(address, length)` makes an array from an address. */
export function decodeJob(
  f64: Float64Array,
  view: (address: number, length: number) => Float32Array,
): { job: Job; units: number; per: number } {
  const o = F64_START;
  const arrays: (Float32Array | undefined)[] = [];
  for (let i = 0; i < MAX_ARRAYS; i++) {
    const at = o + 4 + MAX_NUMS + 2 * i, address = f64[at], length = f64[at + 1];
    arrays.push(length < 0 ? undefined : length === 0 ? new Float32Array(0) : view(address, length));
  }
  const nums = Array.from(f64.subarray(o + 4, o + 4 + MAX_NUMS));
  return { job: { kind: f64[o], arrays, nums }, units: f64[o + 1], per: f64[o + 2] };
}

/**
 * Claims chunks of the open job (`CTL_CLAIM`) until none is left, running each with `run(start, end, base)` on the
 * claiming thread's region set `ownBase` (or the chunk's, with {@linkcode perPartRegions}).
 */
export function claimChunks(
  ctl: Int32Array,
  job: Job,
  units: number,
  per: number,
  ownBase: number,
  run: (start: number, end: number, base: number) => void,
): void {
  const chunks = Math.ceil(units / per), parts = perPartRegions(job);
  for (let i = Atomics.add(ctl, CTL_CLAIM, 1); i < chunks; i = Atomics.add(ctl, CTL_CLAIM, 1)) {
    run(i * per, Math.min(units, (i + 1) * per), parts ? i * THREAD_BYTES : ownBase);
  }
}
