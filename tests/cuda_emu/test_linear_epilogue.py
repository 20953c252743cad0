"""binary_weight_linear's float epilogue: the CUDA kernels (run under the emulation of emu.h)
and the CPU kernel agree bit for bit on inputs where a fused multiply-add would round
differently (linear_epilogue_main.cpp). On a GPU, tests/ops/test_cuda.py checks the same with
the real kernels, and tests/cuda_static checks that nvcc emitted no FMA in the GEMV epilogue."""
from __future__ import annotations

import glob
import os
import subprocess
import sys

from tests.cuda_emu.test_cuda_emu import CSRC, CUDA_HOME, HERE, pytestmark  # noqa: F401  (same skip)


def test_linear_epilogue_matches_cpu_bitwise(tmp_path):
    cu = os.path.join(CSRC, "linear", "binary_weight_linear_cuda.cu")
    emu_cpp = tmp_path / "binary_weight_linear_cuda_emu.cpp"
    subprocess.run([sys.executable, os.path.join(HERE, "rewrite.py"), cu, str(emu_cpp)], check=True)
    cpu = sorted(glob.glob(os.path.join(CSRC, "linear", "*.cpp")))
    exe = tmp_path / "linear_epilogue"
    # the CPU kernels with the project's flags (setup.py, CMakeLists.txt): no FMA contraction
    cmd = ["g++", "-O2", "-std=c++20", "-fopenmp", "-ffp-contract=off", "-w", f"-I{CSRC}", f"-I{HERE}",
           f"-I{CUDA_HOME}/include", "-include", os.path.join(HERE, "emu.h"), "-x", "c++",
           os.path.join(HERE, "linear_epilogue_main.cpp"), str(emu_cpp), "-x", "none", *cpu, "-o", str(exe)]
    subprocess.run(cmd, check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-5000:]
