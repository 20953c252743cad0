import random

import pytest
import torch

import bnn_kernels


def pytest_collection_modifyitems(config, items):
    has_gpu = torch.cuda.is_available() and bnn_kernels.cuda_built()
    skip = pytest.mark.skip(reason="needs a CUDA GPU and bnn_kernels built with CUDA")
    for item in items:
        if "cuda" in item.keywords and not has_gpu:
            item.add_marker(skip)


@pytest.fixture
def rng(request):
    """A random.Random seeded from the test id, so every failure reproduces."""
    return random.Random(request.node.nodeid)


def _on_cuda(request) -> bool:
    """The test runs on a CUDA device (one of its device fixtures is a cuda parameter)."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    return any(str(params.get(name, "")).startswith("cuda") for name in DEVICE_FIXTURES)


@pytest.fixture(params=["auto", "avx2", "scalar"])
def cpu_isa(request, monkeypatch):
    """Runs a test with the best CPU kernels, then with the choice capped at AVX2 and at scalar
    (a path the CPU lacks falls back to the next one down). A test on a CUDA device runs
    with the best CPU kernels only: the cap changes nothing on the GPU."""
    if _on_cuda(request) and request.param != "auto":
        pytest.skip("the CPU ISA cap applies to the CPU kernels only")
    if request.param == "auto":
        monkeypatch.delenv("BNN_KERNELS_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("BNN_KERNELS_CPU_ISA", request.param)
    return request.param


@pytest.fixture(params=["direct", "gemm"])
def conv_path(request, cpu_isa, monkeypatch):
    """binary_conv2d's CPU kernels under each ISA cap (cpu_isa), each forced with
    BNN_KERNELS_CONV_PATH: the direct kernel of that instruction set (direct-avx512,
    direct-avx2, or direct-scalar, the portable twin of the AVX-512 kernel's layout and
    blocking), then the implicit GEMM. On CUDA devices only the first runs (the CPU path
    changes nothing there). Returns the path in effect (bnn_kernels.cpu_conv_path())."""
    if request.param == "gemm" and _on_cuda(request):
        pytest.skip("the CPU conv path changes nothing on CUDA")
    monkeypatch.setenv("BNN_KERNELS_CONV_PATH", request.param)
    return bnn_kernels.cpu_conv_path()


# Device parametrization, as pytorch/extension-cpp writes `_test_x(device)`: every test of an
# op family runs on the CPU and, with a GPU and a CUDA build, on CUDA (skipped otherwise).
# GEMM-backed ops run on CUDA under every forced GEMM path, binary_weight_linear under every
# linear path (test hooks of csrc/torch/cuda/cuda_ops.cpp).
GEMM_PATHS = ["auto", "mma", "popc", "gemv", "wgmma"]
LINEAR_PATHS = ["auto", "gemv", "tiled"]
DEVICE_FIXTURES = ("device", "gemm_device", "linear_device")


def _cuda(name: str):
    return pytest.param(name, marks=pytest.mark.cuda)


@pytest.fixture(params=["cpu", _cuda("cuda")])
def device(request):
    return request.param


def _device_and_path(param: str, monkeypatch, env: str) -> str:
    """'cpu' -> 'cpu'; 'cuda-<path>' -> 'cuda', with the environment variable env set to path."""
    if param == "cpu":
        return "cpu"
    monkeypatch.setenv(env, param.split("-", 1)[1])
    return "cuda"


@pytest.fixture(params=["cpu"] + [_cuda(f"cuda-{p}") for p in GEMM_PATHS])
def gemm_device(request, monkeypatch):
    """'cpu' or 'cuda' (with BNN_KERNELS_CUDA_GEMM_PATH set to each path in turn)."""
    return _device_and_path(request.param, monkeypatch, "BNN_KERNELS_CUDA_GEMM_PATH")


@pytest.fixture(params=["cpu"] + [_cuda(f"cuda-{p}") for p in LINEAR_PATHS])
def linear_device(request, monkeypatch):
    """'cpu' or 'cuda' (with BNN_KERNELS_CUDA_LINEAR_PATH set to each path in turn)."""
    return _device_and_path(request.param, monkeypatch, "BNN_KERNELS_CUDA_LINEAR_PATH")


@pytest.fixture(params=[_cuda(p) for p in GEMM_PATHS])
def cuda_gemm_path(request, monkeypatch):
    """For CUDA-only tests (streams, sizes too large to be worth a CPU run): each GEMM path."""
    monkeypatch.setenv("BNN_KERNELS_CUDA_GEMM_PATH", request.param)
    return request.param
