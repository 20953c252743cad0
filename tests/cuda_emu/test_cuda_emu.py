"""The CUDA kernels' logic, run on the CPU: csrc/*/*_cuda.cu compiled as host C++ under a small
emulation of the CUDA execution model (emu.h: fibers per thread, barriers, warp shuffles and
ballots; emu_ptx.h: cp.async, ldmatrix and mma.sync m16n8k256 b1 AND.popc as documented in
the PTX ISA) and compared bit for bit with the CPU kernels.

This checks indexing, tails, masking, swizzles, fragment layouts, epilogues and warp-op
convergence without a GPU; it cannot check timing, asynchronous-copy ordering, or that the
hardware agrees with the documented fragment layouts (tests/ops/test_cuda.py on a GPU does).
Needs g++ and the CUDA headers (CUDA_HOME or /usr/local/cuda); about 20 s on 2 cores
(compile included).
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CSRC = os.path.join(ROOT, "csrc")
CUDA_HOME = os.environ.get("CUDA_HOME", "/usr/local/cuda")
HAVE_TOOLS = shutil.which("g++") is not None and os.path.exists(os.path.join(CUDA_HOME, "include", "cuda_runtime.h"))

pytestmark = pytest.mark.skipif(not HAVE_TOOLS, reason="needs g++ and the CUDA headers")


@pytest.fixture(scope="module")
def emu_binary(tmp_path_factory):
    out = tmp_path_factory.mktemp("cuda_emu")
    rewritten = []
    for cu in sorted(glob.glob(os.path.join(CSRC, "*", "*_cuda.cu"))):
        dst = out / (os.path.basename(cu)[:-3] + "_emu.cpp")
        subprocess.run([sys.executable, os.path.join(HERE, "rewrite.py"), cu, str(dst)], check=True)
        rewritten.append(str(dst))
    # the torch-free CPU kernels (not the torch binding, nor the C++ tests and benchmark with their own main)
    cpu = [p for p in sorted(glob.glob(os.path.join(CSRC, "*", "*.cpp")))
           if os.path.basename(os.path.dirname(p)) not in ("torch", "tests", "bench")]
    exe = out / "emu_test"
    cmd = ["g++", "-O1", "-std=c++20", "-fopenmp", "-w", f"-I{CSRC}", f"-I{HERE}", f"-I{CUDA_HOME}/include",
           "-include", os.path.join(HERE, "emu.h"), "-x", "c++", os.path.join(HERE, "test_main.cpp"), *rewritten,
           "-x", "none", *cpu, "-o", str(exe)]
    subprocess.run(cmd, check=True)
    return str(exe)


def _run(exe: str, which: str, timeout: int):
    r = subprocess.run([exe, which], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr[-5000:]
    assert " 0 failures" in r.stdout


def test_cuda_kernels_emulated(emu_binary):
    _run(emu_binary, "all", timeout=1800)
