#!/usr/bin/env bash
# The AVX-512 kernels tested on a CPU without AVX-512 (`make test-avx512-emu`): a copy of the
# tree in build/avx512-emu, built CPU-only with the AVX-512 intrinsics emulated
# (common/avx512.h), whose op tests then run the AVX-512 kernels under the "auto" ISA; the
# tests' AVX2 and scalar runs stay native. Incremental: the copy keeps its build folder.
#
#   scripts/test_avx512_emu.sh [PYTHON] [pytest arguments; default: tests/ops]
#
# On a CPU with AVX-512 VPOPCNTDQ it does nothing: the test suite runs those kernels natively.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-.venv/bin/python}"
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # absolute, the venv's link kept
shift || true
# (Linux spells the flag avx512_vpopcntdq in /proc/cpuinfo)
if grep -qwE 'avx512_?vpopcntdq' /proc/cpuinfo 2>/dev/null && [ "${BNN_AVX512_EMU_FORCE:-0}" != 1 ]; then
  echo "test-avx512-emu: this CPU has AVX-512 VPOPCNTDQ; the test suite runs those kernels natively"
  exit 0
fi
DIR=build/avx512-emu
mkdir -p "$DIR"
# The tree as git sees it (tracked and new files), over a copy emptied of everything but its
# build folder: files keep their times, so the build recompiles only what changed.
find "$DIR" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$DIR"
else  # a source tree without git: everything but the build outputs and the virtual environment
  tar --exclude=./build --exclude='./build-*' --exclude=./.venv --exclude='*.so' -cf - . | tar -xf - -C "$DIR"
fi
cd "$DIR"
BNN_KERNELS_CUDA=0 BNN_KERNELS_EMULATE_AVX512=1 "$PY" setup.py --quiet build_ext --inplace
# The copy's build must be the one imported, and its AVX-512 paths the ones in effect.
"$PY" - <<'EOF'
import os, sys
import bnn_kernels
here = os.path.realpath(os.getcwd())
if not os.path.realpath(bnn_kernels.__file__).startswith(here + os.sep):
    sys.exit(f"test-avx512-emu: imported {bnn_kernels.__file__}, not the emulated build in {here}")
if bnn_kernels.cpu_gemm_isa() != "avx512-vpopcntdq":
    sys.exit(f"test-avx512-emu: the GEMM runs {bnn_kernels.cpu_gemm_isa()!r}, not the emulated AVX-512 kernel")
print("test-avx512-emu: AVX-512 kernels emulated in", here)
EOF
if [ $# -eq 0 ]; then set -- tests/ops; fi
exec "$PY" -m pytest -q -p no:cacheprovider "$@"
