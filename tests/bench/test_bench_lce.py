"""`bench model --lce-python PY`: the Larq Compute Engine baseline row, with stand-ins for the
LCE interpreter (LCE itself is not a dependency: its TensorFlow stack lives in another
environment). Nothing here asserts anything about speed."""

import json
import subprocess
import sys
import textwrap

import pytest

from bnn_kernels.__main__ import main
from bnn_kernels.bench import lce
from bnn_kernels.bench import model as bm

from .test_bench_model import TINY

ARGS = ["bench", "model", "--device", "cpu", "--size", "32", "--repeats", "1", "--no-compile", "--quiet"]


def _fake_python(tmp_path, body: str):
    """An executable standing in for the LCE environment's python: records its arguments."""
    script = tmp_path / "fake_python"
    script.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\n{body}\n')
    script.chmod(0o755)
    return str(script)


def test_lce_row_for_models_with_a_larq_zoo_counterpart(tmp_path, monkeypatch):
    monkeypatch.setattr(bm, "MODELS", TINY)
    out = '{"ms": 30.0, "runs": [30.0], "threads": 1, "versions": {"larq_compute_engine": "0.16.0"}}'
    py = _fake_python(tmp_path, f"echo 'loading...'\necho '{out}'")
    args = ARGS + ["--batches", "1", "32", "--lce-python", py, "--out", str(tmp_path), "--name", "r"]
    assert main(args) == 0
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    lce_rows = [r for r in rows if r["impl"] == "Larq Compute Engine"]
    assert [r["case"] for r in lce_rows] == ["birealnet18 1x3x32x32"]  # batch 1 only; reactnet has none
    assert lce_rows[0]["ms"] == 30.0 and not lce_rows[0]["checked"] and "0.16.0" in lce_rows[0]["note"]
    vs = [r for r in rows if r["baseline"] == "Larq Compute Engine"]
    assert len(vs) == 1 and vs[0]["impl"] == "bnn_kernels.convert(model)"
    assert vs[0]["speedup"] == pytest.approx(30.0 / vs[0]["ms"])
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 2  # before and after ours
    assert all(lce.LCE_CHILD in c and "--model BiRealNet" in c and "--res 32" in c for c in calls)


@pytest.mark.parametrize(
    "body, message",
    [
        ("echo \"ModuleNotFoundError: No module named 'larq_compute_engine'\" >&2; exit 1", "larq_compute_engine"),
        ("echo 'not json'", "unexpected output"),
        ("echo '{\"runs\": []}'", "unexpected output"),
    ],
)
def test_lce_failure_names_the_interpreter(tmp_path, monkeypatch, body, message):
    monkeypatch.setattr(bm, "MODELS", TINY)
    py = _fake_python(tmp_path, body)
    with pytest.raises(lce.LceError, match=message) as e:
        main(ARGS + ["--batches", "1", "--lce-python", py])
    assert "--lce-python" in str(e.value)


def test_lce_missing_interpreter(tmp_path):
    with pytest.raises(lce.LceError, match="--lce-python"):
        lce.time_lce(str(tmp_path / "no_such_python"), "BiRealNet", 32, 1, 1)


def test_lce_child_protocol_without_torch(tmp_path):
    """lce_child.py against stand-in larq modules, in an interpreter where importing torch or
    bnn_kernels fails: it builds, converts, times and prints its JSON line."""
    stubs = tmp_path / "stubs"
    (stubs / "larq_compute_engine").mkdir(parents=True)
    (stubs / "larq_zoo").mkdir()
    (stubs / "torch.py").write_text("raise ImportError('lce_child must not import torch')\n")
    (stubs / "bnn_kernels.py").write_text("raise ImportError('lce_child must not import bnn_kernels')\n")
    (stubs / "larq_compute_engine" / "__init__.py").write_text(
        textwrap.dedent(
            """
            __version__ = "stub"
            def convert_keras_model(model):
                return b"flatbuffer:" + model.name.encode()
            class testing:
                class Interpreter:
                    def __init__(self, fb, num_threads, **opts):
                        assert fb == b"flatbuffer:BiRealNet" and num_threads == 2
                        assert set(opts) <= {"use_xnnpack", "use_indirect_bgemm"}
                    def predict(self, x):
                        assert x.shape == (1, 40, 40, 3) and str(x.dtype) == "float32"
            """
        )
    )
    (stubs / "larq_zoo" / "__init__.py").write_text(
        textwrap.dedent(
            """
            class literature:
                class BiRealNet:
                    name = "BiRealNet"
                    def __init__(self, weights, input_shape):
                        assert weights is None and input_shape == (40, 40, 3)
            """
        )
    )
    cmd = [sys.executable, lce.LCE_CHILD, "--model", "BiRealNet", "--res", "40", "--threads", "2", "--repeats", "3"]
    env = {"PYTHONPATH": str(stubs), "PATH": "/usr/bin:/bin"}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout.strip().splitlines()[-1])
    assert len(data["runs"]) == 3 and data["ms"] >= 0 and data["threads"] == 2
    assert data["versions"]["larq_compute_engine"] == "stub" and isinstance(data["options"], dict)
