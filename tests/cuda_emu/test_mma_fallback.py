"""The tensor-core GEMM runs only where the kernel the driver loaded holds sm_80+ code
(cudaFuncGetAttributes ptxVersion / binaryVersion), whatever the device's compute capability:
mma_fallback_main.cpp runs the gemm kernels under the emulation of emu.h with the attributes
code compiled below sm_80 would give, and checks the path taken and the result."""
from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

from tests.cuda_emu.test_cuda_emu import CSRC, CUDA_HOME, HERE, pytestmark  # noqa: F401  (same skip)


@pytest.fixture(scope="module")
def fallback_binary(tmp_path_factory):
    out = tmp_path_factory.mktemp("mma_fallback")
    emulated = []
    for cu in sorted(glob.glob(os.path.join(CSRC, "gemm", "*_cuda.cu"))):
        dst = out / (os.path.basename(cu)[:-3] + "_emu.cpp")
        subprocess.run([sys.executable, os.path.join(HERE, "rewrite.py"), cu, str(dst)], check=True)
        emulated.append(str(dst))
    cpu = [p for p in sorted(glob.glob(os.path.join(CSRC, "gemm", "*.cpp"))) if "bench" not in p]
    exe = out / "mma_fallback"
    cmd = ["g++", "-O1", "-std=c++20", "-fopenmp", "-w", f"-I{CSRC}", f"-I{HERE}", f"-I{CUDA_HOME}/include",
           "-include", os.path.join(HERE, "emu.h"), "-x", "c++", os.path.join(HERE, "mma_fallback_main.cpp"),
           *emulated, "-x", "none", *cpu, "-o", str(exe)]
    subprocess.run(cmd, check=True)
    return str(exe)


@pytest.mark.parametrize("ptx,binary,path", [
    ("75", "90", "popc"),   # compute_75 PTX JIT-compiled on sm_90: the MMA kernel would trap
    ("75", "75", "popc"),   # sm_75 SASS
    ("80", "80", "mma"),    # sm_80 SASS (A100, and sm_86 / sm_89)
    ("80", "90", "mma"),    # compute_80 PTX JIT-compiled on a newer GPU
    ("90", "90", "mma"),    # sm_90a SASS
    ("0", "fail", "popc"),  # no image for the device at all
])
def test_mma_path_needs_sm80_code(fallback_binary, ptx, binary, path):
    r = subprocess.run([fallback_binary, ptx, binary, path], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
