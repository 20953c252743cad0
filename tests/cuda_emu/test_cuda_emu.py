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
- ldmatrix and mma.m16n8k256 .b1 checked against a table read off the PTX ISA's figures;
- the sm_90a instructions (family "sm90", SM90_DETECTORS): mbarrier phases and tx-counts, TMA
  loads landing late with the 128B swizzle, wgmma executed at a random point before its
  covering wait_group with poisoned accumulators, the async proxy, setmaxnreg; the wgmma
  fragment and descriptor layouts against literal tables, and a TMA + wgmma GEMM of the
  emulator's own with each typical defect planted;
- csrc's sm_90a GEMM (family "wgmma", GemmPath::Wgmma): bit for bit against the CPU kernels with
  the path that ran checked, also with every wgmma at its latest legal point and producers
  woken first (test_wgmma_at_latest_point), and the path a forced Wgmma takes by loaded code
  (test_wgmma_path_needs_sm90a_code).

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
# sm_90a rules (test_sm90_kernels.cu): a defect planted in the emulator's own TMA + mbarrier +
# wgmma GEMM, or a small kernel breaking one rule -> what the emulator must say (any of a tuple:
# which check fires first depends on the schedule)
SM90_DETECTORS = {
    "no_fence": "before any wgmma.fence",
    "wait_short": "unfinished wgmma still reads",
    "early_release": "unfinished wgmma still reads",
    "skip_full_wait": "TMA load",
    "tx_short": "more transaction bytes completed than expected",
    "tx_long": "deadlock: 129 threads wait forever; this one at mbarrier.try_wait.parity",
    "no_flip": ("deadlock", "phase parity not flipped"),
    "no_final_wait": "before the wgmma.wait_group",
    "tma_misaligned": "not 1024-byte aligned",
    "no_mbar_fence": "fence.mbarrier_init",
    "no_init_sync": ("holds no initialized mbarrier", "same __syncthreads interval as its mbarrier.init"),
    "over_arrive": ("an arrival too many", "unfinished wgmma still reads"),
    "desc_diverge": "differ across the warpgroup",
    "maxnreg_diverge": "setmaxnreg differs across warpgroup",
    "wgmma_no_proxy_fence": "no fence.proxy.async",
    "wgmma_wait_one": "before the wgmma.wait_group",
    "wgmma_on_sm80": "needs sm_90a",
    "wgmma_base_offset": "base offset 0, but",
    "wgmma_write_acc_no_fence": "accessed after its last wgmma.fence",
    "wgmma_read_acc_no_fence": "accessed after its last wgmma.fence",
    "wgmma_unwritten_smem": "never written in this block",
    "wgmma_desc_oob": "outside the 99328 bytes of dynamic shared memory",
    "mbar_misaligned": "not 8-byte aligned",
    "mbar_uninit": "holds no initialized mbarrier",
    "mbar_generic_store": "part of an mbarrier object",
    "mbar_deadlock": "1 of 2 arrivals pending",
    "mbar_reinit_busy": "while its phase 0 is in progress",
    "mbar_tx_overflow": "leaves +-(2^20-1)",
    "mbar_handoff_no_wait": ("read-after-write", "never written in this block"),
    "wgmma_bad_n": "m64n40k256 .b1: no such shape",
    "wgmma_partial_warpgroup": "is incomplete in a block of 96 threads",
    "maxnreg_bad": "not a multiple of 8",
}
# valid kernels that must pass: generic shared memory handed from warp to warp by an mbarrier
SM90_CONTROLS = ["mbar_handoff"]
# defects that only corrupt data: the GEMM's exact comparison must see them
SM90_WRONG_RESULTS = ["wrong_swizzle", "wrong_sbo", "wrong_kstep"]


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


@pytest.mark.parametrize("name", sorted(SM90_DETECTORS))
@pytest.mark.parametrize("seed", [1, 2])
def test_emulator_catches_sm90(emu_binary, name, seed):
    """Each sm_90a rule fires on a kernel breaking it, under two schedules."""
    r = subprocess.run(
        [emu_binary, f"detect:{name}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "EMU_SEED": str(seed)},
    )
    want = SM90_DETECTORS[name]
    want = want if isinstance(want, tuple) else (want,)
    assert r.returncode != 0 and "EMU ERROR" in r.stderr and any(w in r.stderr for w in want), r.stderr[-3000:]


@pytest.mark.parametrize("name", SM90_CONTROLS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_emulator_accepts_sm90(emu_binary, name, seed):
    """An mbarrier orders generic shared-memory accesses between warps like __syncthreads does."""
    r = subprocess.run(
        [emu_binary, f"detect:{name}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "EMU_SEED": str(seed)},
    )
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.parametrize("name", SM90_WRONG_RESULTS)
def test_emulator_sees_wrong_wgmma_layout(emu_binary, name):
    """A descriptor with the wrong swizzle, stride or k-step reads other bytes: wrong results."""
    r = run_emu(emu_binary, f"detect:{name}", timeout=60)
    assert r.returncode == 1 and "GEMM mismatch" in r.stderr, r.stdout + r.stderr[-3000:]


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


@pytest.mark.parametrize("device,seed", build.WGMMA_LATE)
def test_wgmma_at_latest_point(emu_binary, device, seed):
    """csrc's sm_90a GEMM with every wgmma deferred to its covering wait_group: a wait off by one
    or a stage released early then meets the unfinished operation on every run, not by chance."""
    r = run_emu(emu_binary, "wgmma", "--device", str(device), "--seed", str(seed), "--wgmma-late", "1")
    assert r.returncode == 0 and " 0 failures" in r.stdout, r.stdout + r.stderr[-5000:]


@pytest.mark.parametrize("device,code,path", build.WGMMA_FALLBACK)
def test_wgmma_path_needs_sm90a_code(emu_binary, device, code, path):
    """A forced Wgmma runs the wgmma kernel only where its loaded code is sm_90a on an sm_90
    device; elsewhere mma.sync (or popc), reported as such, with the same result."""
    args = ["--device", str(device)] + (["--code", code] if code else [])
    r = run_emu(emu_binary, f"wgmma-fallback:{path}", *args, timeout=300)
    assert r.returncode == 0 and " 0 failures" in r.stdout, r.stdout + r.stderr[-3000:]
