"""libbnn_kernels_ops.so: the op registrations without Python, loadable by any libtorch program."""

import os
import shutil
import subprocess
import sys

import pytest

import bnn_kernels


def test_op_library_sits_beside_the_package():
    path = bnn_kernels.op_library_path()
    assert os.path.basename(path) == "libbnn_kernels_ops.so"
    assert os.path.dirname(path) == os.path.dirname(os.path.abspath(bnn_kernels.__file__))


@pytest.mark.skipif(shutil.which("readelf") is None or shutil.which("nm") is None, reason="needs binutils")
def test_op_library_has_no_python():
    path = bnn_kernels.op_library_path()
    needed = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    assert "libtorch_cpu.so" in needed
    assert "python" not in needed.lower(), needed
    undefined = subprocess.run(["nm", "-D", "--undefined-only", path], capture_output=True, text=True, check=True)
    py = [s for s in undefined.stdout.split() if s.startswith(("Py", "_Py", "pybind11"))]
    assert not py, f"Python symbols in the op library: {py[:10]}"


# Run in a fresh interpreter that never imports bnn_kernels: torch.ops.load_library alone
# must register the ops, as dlopen does in a C++ program.
_STANDALONE = r"""
import sys, torch
torch.ops.load_library(sys.argv[1])
assert "bnn_kernels" not in sys.modules
g = torch.Generator().manual_seed(int(sys.argv[2]))
m, n, k = (int(torch.randint(1, 80, (1,), generator=g)) for _ in range(3))
a, b = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g)
ops = torch.ops.bnn_kernels
got = ops.xnor_gemm(ops.pack_bits(a), ops.pack_bits(b), k)
sa, sb = torch.where(a >= 0, 1, -1), torch.where(b >= 0, 1, -1)
assert torch.equal(got, (sa @ sb.T).to(torch.int32)), (m, n, k)
print("ok", m, n, k)
"""


def test_op_library_registers_ops_without_bnn_kernels(rng):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-c", _STANDALONE, bnn_kernels.op_library_path(), str(rng.randrange(2**31))],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ok")
