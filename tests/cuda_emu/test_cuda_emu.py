"""The CUDA kernels of csrc/ proven without a GPU: every csrc/**/*_cuda.cu compiled as host C++
under an emulation of the CUDA execution model (emu.h) and compared bit for bit with the CPU
kernels, while a sanitizer-grade checker watches every memory access:

- global buffers with guard zones and a shadow map: out-of-bounds loads and stores, reads of
  never-written memory, stores to inputs, outputs left unwritten;
- shared memory (static and dynamic) poisoned per block, a per-byte race detector over barrier
  epochs, cp.async landing only at the covering cp.async.wait_group;
- warps scheduled in an order drawn from a seed (each family runs under several seeds), warp
  ops checking their masks, __syncthreads reached by every thread;
- launch limits of sm_80, sm_90 and sm_75 (no mma: the fallback paths), including the
  cudaFuncSetAttribute call needed above 48 KiB of dynamic shared memory;
- the code version the driver reports as loaded (cudaFuncGetAttributes), so the choice of
  the tensor-core path by loaded code, not by device, is tested (test_mma_path_needs_sm80_code);
- binary_weight_linear's float epilogue on inputs where an FMA would round differently
  (family "epilogue");
- ldmatrix and mma.m16n8k256 .b1 checked against a table read off the PTX ISA's figures.

It cannot check timing or that the hardware agrees with the ISA (tests/ops/test_cuda.py on a
GPU does). test_line_coverage reports the line coverage of the .cu files reached here (gcov).
Needs g++, gcov and the CUDA headers (CUDA_HOME or /usr/local/cuda).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import build  # noqa: E402

HAVE_TOOLS = (
    shutil.which("g++") is not None
    and shutil.which("gcov") is not None
    and os.path.exists(os.path.join(build.CUDA_HOME, "include", "cuda_runtime.h"))
)
pytestmark = pytest.mark.skipif(not HAVE_TOOLS, reason="needs g++, gcov and the CUDA headers")

MIN_COVERAGE = 95.0
CASES = [(fam, dev, seed) for fam, runs in build.SUITE.items() for dev, seed in runs]
_done: set = set()

# bug kernel of test_kernels.cu -> what the emulator must say (None: a valid control case)
DETECTORS = {
    "oob_load": "out-of-bounds global load",
    "oob_store": "out-of-bounds global store",
    "uninit_global": "never-written memory",
    "shared_race": "static __shared__",
    "war_race": "race",
    "uninit_shared": "never written in this block",
    "misaligned_vec": "needs 16-byte alignment",
    "shared_oob": "out-of-bounds store of 4 bytes at offset 256 of static __shared__",
    "cp_async_no_wait": "cp.async still targets it",
    "cp_async_wait_short": "cp.async still targets it",
    "shfl_mask_excludes": "excludes it",
    "shfl_lane_missing": "never arrives",
    "divergent_barrier": "have exited",
    "launch_bounds": "__launch_bounds__",
    "grid_y": "invalid grid",
    "smem_no_attribute": "cudaFuncSetAttribute",
    "smem_over_max": "opt-in maximum",
    "host_deref": "host code dereferences device memory",
    "smem_with_attribute": None,
}


@pytest.fixture(scope="module")
def emu_binary(tmp_path_factory):
    return build.build(str(tmp_path_factory.mktemp("cuda_emu")))


def run_emu(exe: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("family,device,seed", CASES)
def test_kernels_emulated(emu_binary, family, device, seed):
    r = run_emu(emu_binary, family, "--device", str(device), "--seed", str(seed))
    assert r.returncode == 0 and " 0 failures" in r.stdout, r.stdout + r.stderr[-5000:]
    _done.add((family, device, seed))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_emulator_catches(emu_binary, name):
    """Each checker fires on a kernel with that bug (and stays quiet on the valid control)."""
    r = run_emu(emu_binary, f"detect:{name}", timeout=60)
    want = DETECTORS[name]
    if want is None:
        assert r.returncode == 0, r.stderr[-3000:]
    else:
        assert r.returncode != 0 and "EMU ERROR" in r.stderr and want in r.stderr, r.stdout + r.stderr[-3000:]


@pytest.mark.parametrize("device,code,path", build.FALLBACK)
def test_mma_path_needs_sm80_code(emu_binary, device, code, path):
    """The tensor-core GEMM runs only where the MMA kernel the driver loaded holds sm_80+ code,
    whatever the device's compute capability; otherwise the popc path, with the same result."""
    r = run_emu(emu_binary, *build.fallback_args(device, code, path), timeout=300)
    assert r.returncode == 0 and " 0 failures" in r.stdout, r.stdout + r.stderr[-3000:]


def line_coverage(out_dir: str) -> dict[str, tuple[int, int]]:
    """Executed and total lines of each csrc .cu file from the .gcda files in out_dir."""
    result = {}
    for obj in sorted(os.listdir(out_dir)):
        if not (obj.startswith("csrc_") and obj.endswith("_emu.o")):
            continue
        r = subprocess.run(["gcov", "-n", obj], cwd=out_dir, capture_output=True, text=True, check=True)
        for m in re.finditer(r"File '([^']+_cuda\.cu)'\nLines executed:([\d.]+)% of (\d+)", r.stdout):
            total = int(m.group(3))
            result[os.path.relpath(m.group(1), build.ROOT)] = (round(float(m.group(2)) * total / 100), total)
    return result


def test_line_coverage(emu_binary):
    """Line coverage of csrc/**/*_cuda.cu under the emulation runs above (gcov)."""
    if len(_done) != len(CASES):
        pytest.skip("needs every emulation run of this module")
    cov = line_coverage(os.path.dirname(emu_binary))
    assert set(cov) == {os.path.relpath(p, build.ROOT) for p in build.cuda_sources(os.path.join(build.ROOT, "csrc"))}
    hit, total = sum(h for h, _ in cov.values()), sum(t for _, t in cov.values())
    report = "\n".join(f"  {f}: {h}/{t} = {100 * h / t:.1f}%" for f, (h, t) in sorted(cov.items()))
    print(f"\nline coverage of the .cu files under the emulator: {hit}/{total} = {100 * hit / total:.1f}%\n{report}")
    assert 100 * hit / total >= MIN_COVERAGE, report
