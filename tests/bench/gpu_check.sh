#!/usr/bin/env bash
# GPU check (issue 16): one command, under 5 minutes, from a fresh copy of the working tree.
#
#   bash tests/bench/gpu_check.sh            # report on stdout; also to $OUT/gpu_check.txt when $OUT is set
#
# Reports:
#   1. the machine: CPU, `nvidia-smi` (driver, GPUs), Vulkan ICD files (the NVIDIA one is what wgpu needs), CUDA
#      and cuDNN libraries on the loader path (what @tensorflow/tfjs-node-gpu 4.22 needs: CUDA 11.x, cuDNN 8);
#   2. the WebGPU adapter Deno sees, with wgpu's default backends and with Vulkan only (DENO_WEBGPU_BACKEND=vulkan);
#   3. if that adapter is a hardware GPU: `bench --backend webgpu --shapes tiny,base --what train,infer`, then the
#      same on `blas` for reference (a software adapter such as llvmpipe is not benched: hours for Base; set
#      GPU_CHECK_FORCE=1 to bench it anyway);
#   4. whether @tensorflow/tfjs-node-gpu loads the way lib/backends/backend.ts loads it, and if so its Tiny/Base bench.
#   It ends with one RESULT line.
#
# Needs: bash, coreutils (timeout). Deno comes from node_modules (npm ci, run here when node_modules/.bin/deno is
# missing, with a time limit; npm ci also tries the optional tfjs-node-gpu, whose install downloads libtensorflow).
#
# Exit codes: 0 = the check ran to the end, whatever it found (including "no GPU adapter");
#             1 = a hardware WebGPU adapter was found but its bench failed or timed out;
#             2 = no Deno: node_modules/.bin/deno is missing and `npm ci` failed (no network?); the report says why.
#
# Knobs: GPU_CHECK_STEPS (measured steps, default 5), GPU_CHECK_FORCE=1 (bench a software adapter too),
#        GPU_CHECK_NO_NPM=1 (never run npm ci).
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$(pwd)
STEPS=${GPU_CHECK_STEPS:-5}
REPORT=""
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT" && REPORT="$OUT/gpu_check.txt" && : >"$REPORT"
fi
log() { # every report line goes to stdout and, when $OUT is set, to $OUT/gpu_check.txt
  if [ -n "$REPORT" ]; then printf '%s\n' "$*" | tee -a "$REPORT"; else printf '%s\n' "$*"; fi
}
logcmd() { # runs a command, reporting its output lines indented
  local out
  out=$("$@" 2>&1)
  local rc=$?
  [ -n "$out" ] && while IFS= read -r l; do log "    $l"; done <<<"$out"
  return $rc
}
T0=$(date +%s)
elapsed() { echo "$(($(date +%s) - T0)) s"; }

log "== gpu_check: $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
log "cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //'), $(nproc) cores, vector: $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | tr ' ' '\n' | grep -E '^(avx2|fma|avx512[a-z0-9_]*|amx[a-z0-9_]*)$' | sort -u | tr '\n' ' ')"

# ---- 1. the machine -------------------------------------------------------------------------------------------
HAVE_NVIDIA=0
if command -v nvidia-smi >/dev/null 2>&1; then
  if logcmd timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader; then
    HAVE_NVIDIA=1
  else
    log "nvidia-smi: present but failed (driver not loaded, or no GPU in this container)"
  fi
else
  log "nvidia-smi: not found (no NVIDIA driver on this machine or in this container)"
fi
ICDS=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json /usr/local/share/vulkan/icd.d/*.json \
  /usr/local/nvidia/share/vulkan/icd.d/*.json 2>/dev/null | tr '\n' ' ')
[ -n "${VK_DRIVER_FILES:-}" ] && log "VK_DRIVER_FILES=$VK_DRIVER_FILES (the Vulkan loader reads only these)"
log "vulkan ICDs: ${ICDS:-none in /usr/share/vulkan/icd.d, /etc/vulkan/icd.d, /usr/local/share/vulkan/icd.d, /usr/local/nvidia/share/vulkan/icd.d}"
if [ "$HAVE_NVIDIA" = 1 ] && ! echo "$ICDS" | grep -qi nvidia; then
  log "NOTE: an NVIDIA driver but no nvidia_icd.json: wgpu cannot use the GPU through Vulkan. In a container, start it"
  log "      with NVIDIA_DRIVER_CAPABILITIES=all (or include 'graphics'); on a host install the driver's Vulkan part"
  log "      (Debian: nvidia-vulkan-icd) and libvulkan1."
fi
log "libvulkan: $(ldconfig -p 2>/dev/null | grep -o 'libvulkan.so[.0-9]*' | sort -u | tr '\n' ' ' || true)"
log "cuda libs: $(ldconfig -p 2>/dev/null | grep -oE 'lib(cudart|cublas|cudnn)\.so[.0-9]*' | sort -u | tr '\n' ' ' || true)(tfjs-node-gpu 4.22 wants libcudart.so.11.0 and libcudnn.so.8)"

# ---- Deno ---------------------------------------------------------------------------------------------------------
DENO="$ROOT/node_modules/.bin/deno"
if [ ! -x "$DENO" ]; then
  if [ "${GPU_CHECK_NO_NPM:-0}" != 1 ] && command -v npm >/dev/null 2>&1; then
    log "deno: node_modules/.bin/deno missing; running npm ci (at most 180 s) ..."
    if timeout 180 npm ci --no-audit --no-fund --fetch-retries=1 --fetch-timeout=30000 >/tmp/gpu_check_npm.log 2>&1; then
      log "npm ci: done in $(elapsed)"
    else
      log "npm ci: FAILED (last lines of /tmp/gpu_check_npm.log below)"
      while IFS= read -r l; do log "    $l"; done < <(tail -5 /tmp/gpu_check_npm.log)
    fi
  fi
fi
if [ ! -x "$DENO" ] && command -v deno >/dev/null 2>&1; then
  DENO=$(command -v deno)
  log "deno: using $DENO from PATH ($($DENO --version | head -1); the project pins 2.9.5)"
fi
if ! "$DENO" --version >/dev/null 2>&1; then
  log "RESULT: no Deno (node_modules/.bin/deno missing and npm ci failed or was skipped): run 'npm ci' with network access, or copy node_modules/ along"
  exit 2
fi
log "deno: $("$DENO" --version | head -1)"
RUN=("$DENO" run --allow-read=.,../shared,/proc/cpuinfo --allow-write=outputs,.cache --allow-env --allow-ffi --allow-sys)

# ---- 2. the WebGPU adapter ------------------------------------------------------------------------------------------
ADAPTER_OUT=$(timeout 60 "${RUN[@]}" tests/bench/gpu_check.ts adapter 2>&1)
while IFS= read -r l; do log "webgpu (wgpu default backends) $l"; done <<<"$ADAPTER_OUT"
VK_OUT=$(DENO_WEBGPU_BACKEND=vulkan timeout 60 "${RUN[@]}" tests/bench/gpu_check.ts adapter 2>&1)
log "webgpu (DENO_WEBGPU_BACKEND=vulkan) $(grep -m1 '^adapter:' <<<"$VK_OUT" || echo "adapter: probe failed: $(tail -1 <<<"$VK_OUT")")"
ADAPTER=$(grep -m1 '^adapter:' <<<"$ADAPTER_OUT" | sed 's/^adapter: //')
KIND=none
if grep -q '^adapter_kind: hardware' <<<"$ADAPTER_OUT"; then KIND=hardware; elif grep -q '^adapter_kind: SOFTWARE' <<<"$ADAPTER_OUT"; then KIND=software; fi

# ---- 3. the bench on webgpu -------------------------------------------------------------------------------------------
bench() { # bench BACKEND SHAPE LIMIT_S: one shape per process, so peak RSS is that run's own
  local backend=$1 shape=$2 limit=$3 out rc
  out=$(timeout "$limit" "${RUN[@]}" lib/cli.ts bench --backend "$backend" --shapes "$shape" --what train,infer \
    --steps "$STEPS" --warmup 2 2>&1)
  rc=$?
  if [ -z "${SGEMM_SHOWN:-}" ] && grep -q '^sgemm:' <<<"$out"; then
    log "    $(grep -m1 '^sgemm:' <<<"$out")"
    SGEMM_SHOWN=1
  fi
  # the bench's closing table (header, rule, one row per measurement), aligned as printed
  while IFS= read -r l; do log "    $l"; done < <(awk '/^what /{t=""} {t=t $0 "\n"} END{printf "%s", t}' <<<"$out" |
    grep -E '^(what |-+ |train |infer )')
  if [ $rc -ne 0 ]; then
    log "    bench --backend $backend --shapes $shape: FAILED (exit $rc$([ $rc = 124 ] && echo ", over ${limit} s")); last lines:"
    while IFS= read -r l; do log "      $l"; done < <(tail -4 <<<"$out")
  fi
  return $rc
}
STATUS=0
if [ "$KIND" = hardware ] || { [ "$KIND" = software ] && [ "${GPU_CHECK_FORCE:-0}" = 1 ]; }; then
  log "bench on webgpu ($ADAPTER), $STEPS measured steps after 2 warm-up, batch x sequence as in BENCHMARKS.md:"
  bench webgpu tiny 90 || STATUS=1
  bench webgpu base 150 || STATUS=1
  log "the same on blas, for reference:"
  bench blas tiny 60 || true
  [ "$(($(date +%s) - T0))" -lt 170 ] && { bench blas base 100 || true; }
elif [ "$KIND" = software ]; then
  log "bench on webgpu: skipped: the only adapter is a software rasteriser ($ADAPTER), which measures the CPU, not a GPU"
  log "    (BENCHMARKS.md has its figures; GPU_CHECK_FORCE=1 benches it anyway)"
else
  log "bench on webgpu: skipped: no WebGPU adapter"
fi

# ---- 4. tfjs-node-gpu -------------------------------------------------------------------------------------------------
if [ -d node_modules/@tensorflow/tfjs-node-gpu ]; then
  log "tfjs-node-gpu: installed in node_modules ($(ls node_modules/@tensorflow/tfjs-node-gpu/lib 2>/dev/null | tr '\n' ' '))"
else
  log "tfjs-node-gpu: NOT installed (npm ci drops this optional dependency when its libtensorflow download or build fails; see 'npm ci --foreground-scripts')"
fi
NG_OUT=$(timeout 90 "${RUN[@]}" tests/bench/gpu_check.ts tensorflow-gpu 2>&1)
while IFS= read -r l; do log "    $l"; done < <(grep -E '^tfjs_node_gpu|Created device|Could not load dynamic library|cuda' <<<"$NG_OUT" | head -8)
NODE_GPU=no
if grep -q '^tfjs_node_gpu: loaded' <<<"$NG_OUT"; then
  NODE_GPU=yes
  log "bench on tensorflow-gpu (tfjs-node-gpu):"
  bench tensorflow-gpu tiny 60 || true
  [ "$(($(date +%s) - T0))" -lt 220 ] && { bench tensorflow-gpu base 60 || true; }
fi

# ---- result ---------------------------------------------------------------------------------------------------------
case "$KIND" in
  hardware) R="WebGPU adapter '$ADAPTER' (hardware)$([ $STATUS = 0 ] && echo ", webgpu bench ran" || echo ", webgpu bench FAILED")" ;;
  software) R="no GPU adapter: WebGPU has only the software rasteriser '$ADAPTER'" ;;
  *) R="no GPU adapter: Deno's WebGPU found none" ;;
esac
log "RESULT: $R; tfjs-node-gpu loads: $NODE_GPU; nvidia driver: $([ $HAVE_NVIDIA = 1 ] && echo yes || echo no); took $(elapsed)"
exit $STATUS
