"""The benchmark suite runs end to end on tiny problems and writes its files (no timing asserts)."""

import csv
import json
import os

import pytest
import torch

import bnn_kernels
from bnn_kernels.__main__ import main


@pytest.mark.parametrize(
    "args",
    [
        ["gemm", "--shapes", "64", "96"],
        ["conv", "--batches", "1"],
        ["linear", "--size", "256", "--rows", "1", "3"],
        ["bitserial", "--size", "128"],
        ["peak", "--size", "128"],
    ],
)  # `bench model`: tests/bench/test_bench_model.py
def test_bench_suites_write_results(args, tmp_path, capsys, monkeypatch):
    import bnn_kernels.bench.suites as suites

    # Shrink the fixed layer sets so the suite runs in seconds.
    monkeypatch.setattr(suites, "CONV_LAYERS", [("tiny", 40, 8, 6, 1), ("tiny s2", 40, 8, 7, 2)])
    monkeypatch.setattr(suites, "BITSERIAL_LAYERS", [("tiny", 37, 19, 100)])
    assert (
        main(["bench", *args, "--device", "cpu", "--repeats", "2", "--out", str(tmp_path), "--name", "r", "--quiet"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "commit=" in printed and "bnn_kernels." in printed
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["environment"]["device"] == "cpu" and data["environment"]["torch"]
    rows = data["results"]
    assert rows and all(r["ms"] > 0 for r in rows)
    ours = [r for r in rows if r["impl"].startswith("bnn_kernels")]
    assert ours and all(r["checked"] for r in ours)
    if args[0] != "peak":
        compared = [r for r in ours if r["baseline"]]
        impls = {r["impl"] for r in rows}
        assert compared and all(r["speedup"] > 0 and r["baseline"] in impls for r in compared)
    if args[0] == "conv":  # binary weights x real x, against F.conv2d float32 in the same run
        bw = [r for r in compared if r["impl"] == "bnn_kernels.binary_weight_conv2d"]
        assert len(bw) == 2 and all(r["baseline"] == "F.conv2d float32 NHWC (real x)" for r in bw)
        # where the direct kernel runs, the implicit GEMM is timed beside it in the same run
        vs_gemm = [r for r in compared if r["baseline"] == "bnn_kernels.binary_conv2d implicit GEMM"]
        assert len(vs_gemm) == (2 if bnn_kernels.cpu_conv_path().startswith("direct") else 0)
        assert os.environ.get("BNN_KERNELS_CONV_PATH") is None
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0].startswith("# {")
    assert len(list(csv.DictReader(lines[1:]))) == len(rows)


def test_model_zoo_ships_with_the_package(tmp_path):
    """`bench model` needs only the installed package: copy bnn_kernels alone (no examples/,
    no tests/) and import the suite and the model zoo from that copy."""
    import os
    import shutil
    import subprocess
    import sys

    import bnn_kernels

    shutil.copytree(
        os.path.dirname(bnn_kernels.__file__), tmp_path / "bnn_kernels", ignore=shutil.ignore_patterns("__pycache__")
    )
    code = (
        "import bnn_kernels.bench.suites, bnn_kernels.models as m; "
        "m.randomize_bn(m.birealnet18(num_classes=10, width=8)); m.reactnet_a(num_classes=10); print(m.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip().startswith(str(tmp_path / "bnn_kernels" / "models"))


def test_bench_cli_restores_isa_and_threads(tmp_path, monkeypatch):
    """--isa and --threads hold for the run only: an in-process caller keeps its settings."""
    monkeypatch.setenv("BNN_KERNELS_CPU_ISA", "avx2")
    threads = torch.get_num_threads()
    args = ["bench", "gemm", "--shapes", "64", "--device", "cpu", "--isa", "scalar", "--threads", "1", "--repeats", "2"]
    assert main([*args, "--quiet"]) == 0
    assert os.environ["BNN_KERNELS_CPU_ISA"] == "avx2" and torch.get_num_threads() == threads
    monkeypatch.delenv("BNN_KERNELS_CPU_ISA")
    assert main([*args, "--quiet"]) == 0
    assert "BNN_KERNELS_CPU_ISA" not in os.environ


def test_bench_isa_cap_is_recorded(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BNN_KERNELS_CPU_ISA", raising=False)  # restored after the test
    args = ["bench", "gemm", "--shapes", "64", "--device", "cpu", "--isa", "scalar", "--repeats", "2"]
    assert main([*args, "--out", str(tmp_path), "--name", "r", "--quiet"]) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["environment"]["cpu_kernel"] in ("scalar-popcnt", "scalar")
