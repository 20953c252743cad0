"""Smoke test of examples/demo.py (tiny settings; skipped without scikit-learn and tqdm)."""

import os
import sys

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("tqdm")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))


def test_demo_runs(capsys):
    import demo

    demo.main(["--epochs", "1", "--width", "8", "--blocks", "2", "--budget", "30"])
    out = capsys.readouterr().out
    for s in ("test accuracy", "prediction agreement", "weight file (safetensors)", "latency on", "identical = True"):
        assert s in out
