#!/usr/bin/env bash
# Full check on a GPU machine that has torch (with CUDA) and a CUDA toolkit preinstalled and
# no network: build in place against the machine's torch (no build isolation), run the whole
# test suite including the CUDA tests, run compute-sanitizer memcheck on a reduced CUDA test
# selection, run the GPU benchmarks. Logs and tables go to OUTDIR (default ./gpu_out, relative
# to the current folder).
#
#   scripts/gpu_check.sh [OUTDIR]
#   PYTHON=python3 scripts/gpu_check.sh ...         (the interpreter with torch; default python)
#   SKIP_BENCH=1 ... (tests only); BENCH_SUITES="gemm linear" ... (a subset of the benchmarks)
#   WGMMA_SHAPES="8192 32768" ... (squares of the sm_90a wgmma vs mma.sync comparison)
#
# Exit status: 0 when the build, the tests and memcheck all pass.
set -uo pipefail
if [ $# -gt 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,13p' "$0" >&2
  exit 2
fi
OUTDIR="${1:-gpu_out}"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
status=0
log() { echo "[gpu_check] $*" | tee -a "$OUTDIR/summary.txt"; }
: > "$OUTDIR/summary.txt"

{
  date -u
  nvidia-smi || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.is_available() and torch.cuda.get_device_name())"
  command -v nvcc && nvcc --version
  echo "CUDA_HOME=${CUDA_HOME:-unset}"
} > "$OUTDIR/env.txt" 2>&1

# 1. build (in place, machine's torch; SASS for sm_80 and sm_90a unless told otherwise)
export BNN_KERNELS_CUDA_ARCHS="${BNN_KERNELS_CUDA_ARCHS:-80;90a}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
if "$PY" setup.py build_ext --inplace > "$OUTDIR/build.log" 2>&1; then
  log "build: ok ($(grep -m1 'CUDA kernels' "$OUTDIR/build.log"))"
else
  log "build: FAILED (see build.log)"
  exit 1
fi
if ! "$PY" -c "import bnn_kernels as b, torch, sys; sys.exit(0 if b.cuda_built() and torch.cuda.is_available() else 1)"; then
  log "CUDA kernels not built or no GPU visible: CUDA tests would be skipped"
  status=1
fi

# 2. the whole test suite, CUDA tests included
"$PY" -m pytest -q -rs tests --junitxml="$OUTDIR/pytest.xml" > "$OUTDIR/pytest.log" 2>&1
rc=$?
log "pytest (all): rc=$rc, $(tail -n 1 "$OUTDIR/pytest.log")"
[ $rc -eq 0 ] || status=1
"$PY" -m pytest -q -m cuda tests > "$OUTDIR/pytest_cuda_only.log" 2>&1
log "pytest (-m cuda): $(tail -n 1 "$OUTDIR/pytest_cuda_only.log")"

# 3. compute-sanitizer memcheck on a reduced selection (no caching allocator, so that
#    out-of-bounds accesses inside pooled blocks are seen)
SAN="$(command -v compute-sanitizer || true)"
[ -z "$SAN" ] && [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/compute-sanitizer" ] && SAN="$CUDA_HOME/bin/compute-sanitizer"
if [ -n "$SAN" ]; then
  # the CUDA cases of the device-parametrized tests in tests/ops (marked cuda)
  SEL="test_pack_bits_non_contiguous or test_unpack_bits or test_to_bitplanes or test_xnor_gemm_non_contiguous \
or (test_xnor_gemm_on_device and 130-129-1025) or (test_xnor_gemm_on_device and 5-7-33) or test_binary_conv2d_shapes \
or test_bitserial_gemm or test_binary_weight_linear_non_contiguous or (test_binary_weight_linear_exact and 100-130-257) \
or test_device_matches_cpu_scalar_bit_for_bit"
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$SAN" --tool memcheck --error-exitcode 99 --print-limit 50 \
    "$PY" -m pytest -q -x -m cuda tests/ops -k "$SEL" > "$OUTDIR/memcheck.log" 2>&1
  rc=$?
  log "memcheck: rc=$rc, $(grep -E 'ERROR SUMMARY|passed|failed' "$OUTDIR/memcheck.log" | tail -n 2 | tr '\n' ' ')"
  [ $rc -eq 0 ] || status=1
else
  log "memcheck: compute-sanitizer not found (skipped)"
fi

# 4. benchmarks: the whole suite on the GPU (tables, JSON, CSV, PNG with the environment)
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  if "$PY" -m bnn_kernels bench ${BENCH_SUITES:-peak gemm conv linear bitserial} --device cuda --out "$OUTDIR" --name bench_gpu \
      > "$OUTDIR/bench.log" 2>&1; then
    log "bench: ok (bench.log, bench_gpu.{json,csv,png})"
  else
    log "bench: FAILED (see bench.log)"
    status=1
  fi
fi
# 5. the sm_90a GEMM (opt-in GemmPath::Wgmma): did its kernel run (a profiler trace names it)?
#    Then xnor_gemm forced to mma.sync and to wgmma, each beside cuBLAS bf16 (torch.matmul) and
#    int8 (torch._int_mm) in the same run, at 8192^3 and 32768^3.
"$PY" - > "$OUTDIR/wgmma_check.log" 2>&1 <<'PYEOF'
import torch
from torch.profiler import ProfilerActivity, profile

import bnn_kernels as bk

cc = torch.cuda.get_device_capability()
a = bk.pack_bits(torch.randn(1000, 5120, device="cuda"))
b = bk.pack_bits(torch.randn(700, 5120, device="cuda"))
want = bk.reference.xnor_gemm(a.cpu(), b.cpu(), 5120)
with bk.cuda_gemm_path("wgmma"), profile(activities=[ProfilerActivity.CUDA]) as prof:
    got = bk.xnor_gemm(a, b, 5120)
    torch.cuda.synchronize()
ran = [e.key for e in prof.key_averages() if "and_gemm" in e.key]
ok = torch.equal(got.cpu(), want)
hit = any("wgmma" in k for k in ran)
print(f"compute capability {cc}: result {'exact' if ok else 'WRONG'}; kernels {ran}")
print("wgmma kernel ran" if hit else "wgmma kernel did not run (mma.sync fallback)")
raise SystemExit(0 if ok and (hit or cc != (9, 0)) else 1)
PYEOF
rc=$?
log "wgmma path: rc=$rc, $(tail -n 1 "$OUTDIR/wgmma_check.log")"
[ $rc -eq 0 ] || status=1
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  for path in mma wgmma; do
    if BNN_KERNELS_CUDA_GEMM_PATH=$path "$PY" -m bnn_kernels bench gemm --device cuda --shapes ${WGMMA_SHAPES:-8192 32768} \
        --out "$OUTDIR" --name "bench_gemm_$path" > "$OUTDIR/bench_gemm_$path.log" 2>&1; then
      log "bench gemm path=$path: ok (bench_gemm_$path.log: binary TOPS beside torch.matmul bf16 and torch._int_mm)"
    else
      log "bench gemm path=$path: FAILED (see bench_gemm_$path.log)"
      status=1
    fi
  done
fi
log "done: status=$status, outputs in $OUTDIR"
exit $status
