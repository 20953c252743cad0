"""Static SASS gates (scripts/cuda_static.py): every kernel compiled for sm_80 and sm_90a has no
spills or local memory, registers within what its __launch_bounds__ promise, static shared
memory that fits, native BMMA AND.POPC in the tensor-core kernels (no emulated sequence), and
an unfused binary_weight_linear epilogue. planted_faults.cu proves each gate fires.

Needs nvcc (CUDA_HOME or /usr/local/cuda) and cuobjdump / nvdisasm (the toolkit's, or the
nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm wheels of requirements.txt); about 30 s of
compiling on 2 cores. No GPU needed.
"""

from __future__ import annotations

import glob
import os

import pytest

from tests.helpers import load_script

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
cs = load_script("cuda_static")

_NVCC = cs.find_nvcc()
_TOOLS = {"nvcc": _NVCC, "cuobjdump": cs.find_tool("cuobjdump", _NVCC), "nvdisasm": cs.find_tool("nvdisasm", _NVCC)}
pytestmark = pytest.mark.skipif(
    not all(_TOOLS.values()),
    reason="needs " + ", ".join(t for t, p in _TOOLS.items() if not p) + " (nvcc from the CUDA toolkit; "
    "cuobjdump, nvdisasm from the nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm wheels)",
)


@pytest.fixture(scope="module")
def kernels():
    return cs.run()


def _broken(kernels, gate):
    return [
        f"{k.source} {k.name} sm_{k.arch}: {msg}" for k in kernels for msg in k.failures if msg.startswith(gate + ":")
    ]


def _defines_kernel(path: str) -> bool:
    with open(path) as f:
        return "__global__" in f.read()


def test_every_source_and_target_analysed(kernels):
    # every .cu that defines a kernel (host-only ones, such as the GEMM dispatch, have none)
    sources = {
        os.path.relpath(p, ROOT)
        for p in glob.glob(os.path.join(ROOT, "csrc", "**", "*.cu"), recursive=True)
        if _defines_kernel(p)
    }
    assert "csrc/gemm/and_gemm_mma_cuda.cu" in sources
    for arch in cs.ARCHS:
        assert {k.source for k in kernels if k.arch == arch} == sources
    for k in kernels:
        assert k.ops, f"no SASS read for {k.name} sm_{k.arch}"
    assert {k.arch for k in kernels if k.name.startswith("and_gemm_mma_kernel")} == set(cs.ARCHS)


@pytest.mark.parametrize("gate", ["spills", "registers", "smem", "bmma", "wgmma", "no-fma"])
def test_gate(kernels, gate):
    broken = _broken(kernels, gate)
    assert not broken, "\n".join(broken)


def test_mma_kernels_run_on_native_bmma(kernels):
    mma = [k for k in kernels if k.name.startswith("and_gemm_mma_kernel")]
    assert len(mma) == 2 * len(cs.ARCHS)  # Vec16 false and true
    for k in mma:
        assert k.ptx_mma_and > 0 and k.bmma_and == k.ptx_mma_and and not k.count(r"^POPC"), k.name


def test_wgmma_kernels_run_on_native_bgmma(kernels):
    """The sm_90a GEMM: one BGMMA AND.POPC per b1 wgmma, setmaxnreg 40 / 232 in the SASS, no
    spills; elsewhere the trapping stub."""
    wg = [k for k in kernels if k.name.startswith("and_gemm_wgmma_kernel")]
    assert len(wg) == 2 * len(cs.ARCHS)  # BN 128 and 256
    for k in wg:
        if k.arch == "90a":
            assert k.ptx_wgmma == 4 and k.count(r"^BGMMA\..*AND\.POPC") == 4, k.name
            assert k.setmaxnreg == (("dec", 40), ("inc", 232)) and not k.failures, (k.name, k.failures)
        else:
            assert k.count(r"^BPT\.TRAP") and not k.count(r"^BGMMA"), k.name


def test_gates_fire_on_planted_faults():
    found = cs.run(sources=[os.path.join(HERE, "planted_faults.cu")])
    by = {(k.name, k.arch): k.failures for k in found}
    want = {
        "planted_mma_xor_kernel": "bmma",
        "planted_local_kernel": "spills",
        "planted_register_kernel": "registers",
        "planted_linear_gemv_kernel": "no-fma",
        "planted_wconv_kernel": "no-fma",
        "planted_wgmma_budget_kernel": "wgmma",
    }
    for arch in cs.ARCHS:
        for name, gate in want.items():
            assert any(f.startswith(gate + ":") for f in by[(name, arch)]), (name, arch, by[(name, arch)])
    # sm_90a: XOR.popc turns into an emulated sequence of several BMMA AND.POPC
    xor90 = next(k for k in found if k.name == "planted_mma_xor_kernel" and k.arch == "90a")
    assert any("emulated" in f and "BMMA AND.POPC for" in f for f in xor90.failures), xor90.failures
