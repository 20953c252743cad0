"""bnn_kernels.cuda_paths: setting the CUDA GEMM path from Python (validation runs without a GPU;
the CUDA cases of the op tests run under each path through the gemm_device fixture)."""

from __future__ import annotations

import os

import pytest
import torch

import bnn_kernels
from bnn_kernels import cuda_paths


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(cuda_paths.ENV, raising=False)


def test_paths_and_exports():
    assert cuda_paths.CUDA_GEMM_PATHS == ("auto", "mma", "popc", "gemv", "wgmma")
    assert bnn_kernels.set_cuda_gemm_path is cuda_paths.set_cuda_gemm_path


@pytest.mark.parametrize("path", cuda_paths.CUDA_GEMM_PATHS)
def test_set_and_get(path):
    bnn_kernels.set_cuda_gemm_path(path)
    assert bnn_kernels.get_cuda_gemm_path() == path
    assert os.environ.get(cuda_paths.ENV) == (None if path == "auto" else path)
    bnn_kernels.set_cuda_gemm_path(None)
    assert cuda_paths.ENV not in os.environ and bnn_kernels.get_cuda_gemm_path() == "auto"


@pytest.mark.parametrize("bad", ["tensor", "WGMMA", "", " mma", 3, b"mma"])
def test_bad_names_raise(bad):
    with pytest.raises(ValueError, match="cuda gemm path must be one of auto, mma, popc, gemv, wgmma"):
        bnn_kernels.set_cuda_gemm_path(bad)
    with pytest.raises(ValueError, match="got"):
        with bnn_kernels.cuda_gemm_path(bad):
            pass
    assert cuda_paths.ENV not in os.environ


def test_context_manager_restores(monkeypatch):
    monkeypatch.setenv(cuda_paths.ENV, "popc")
    with bnn_kernels.cuda_gemm_path("wgmma") as p:
        assert p == "wgmma" and os.environ[cuda_paths.ENV] == "wgmma"
        with bnn_kernels.cuda_gemm_path("auto"):
            assert cuda_paths.ENV not in os.environ
        assert os.environ[cuda_paths.ENV] == "wgmma"
    assert os.environ[cuda_paths.ENV] == "popc"
    with pytest.raises(RuntimeError):
        with bnn_kernels.cuda_gemm_path("mma"):
            raise RuntimeError("inside")
    assert os.environ[cuda_paths.ENV] == "popc"


def test_cpu_ops_ignore_the_setting():
    a = torch.randint(-(2**31), 2**31 - 1, (5, 4), dtype=torch.int32)
    b = torch.randint(-(2**31), 2**31 - 1, (6, 4), dtype=torch.int32)
    want = bnn_kernels.xnor_gemm(a, b, 100)
    with bnn_kernels.cuda_gemm_path("wgmma"):
        assert torch.equal(bnn_kernels.xnor_gemm(a, b, 100), want)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available() or not bnn_kernels.cuda_built(), reason="needs a GPU build")
@pytest.mark.parametrize("m,n,k", [(200, 300, 5120), (520, 100, 7168), (130, 260, 5100), (1, 1, 128), (100, 90, 5000)])
def test_cuda_wgmma_path_exact(m, n, k):
    """Forced wgmma: exact, and on a compute capability 9.0 GPU the wgmma kernel itself ran
    (its name in a profiler trace) wherever TMA can read the rows (k of 5000: 157 words per row,
    not a 16-byte multiple, runs mma.sync)."""
    from torch.profiler import ProfilerActivity, profile

    gen = torch.Generator().manual_seed(m * n + k)
    words = (k + 31) // 32
    a = torch.randint(-(2**31), 2**31 - 1, (m, words), dtype=torch.int32, generator=gen)
    b = torch.randint(-(2**31), 2**31 - 1, (n, words), dtype=torch.int32, generator=gen)
    want = bnn_kernels.reference.xnor_gemm(a, b, k)
    with bnn_kernels.cuda_gemm_path("wgmma"), profile(activities=[ProfilerActivity.CUDA]) as prof:
        got = bnn_kernels.xnor_gemm(a.cuda(), b.cuda(), k)
        torch.cuda.synchronize()
    assert torch.equal(got.cpu(), want)
    ran = [e.key for e in prof.key_averages() if "and_gemm" in e.key]
    hopper = torch.cuda.get_device_capability() == (9, 0)
    want_wgmma = hopper and words % 4 == 0
    assert any("wgmma" in name for name in ran) == want_wgmma, ran
