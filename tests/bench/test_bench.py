"""The benchmark suite runs end to end on tiny problems and writes its files (no timing asserts)."""
import csv
import json

import pytest

from bnn_kernels.__main__ import main


@pytest.mark.parametrize(
    "args",
    [
        ["gemm", "--shapes", "64", "96"],
        ["conv", "--batches", "1"],
        ["linear", "--size", "256", "--rows", "1", "3"],
        ["bitserial", "--size", "128"],
        ["peak", "--size", "128"],
        ["model", "--size", "32", "--batches", "1"],
    ],
)
def test_bench_suites_write_results(args, tmp_path, capsys, monkeypatch):
    import bnn_kernels.bench.suites as suites

    # Shrink the fixed layer sets so the suite runs in seconds.
    monkeypatch.setattr(suites, "CONV_LAYERS", [("tiny", 40, 8, 6, 1), ("tiny s2", 40, 8, 7, 2)])
    assert main(["bench", *args, "--device", "cpu", "--repeats", "2", "--out", str(tmp_path), "--name", "r", "--quiet"]) == 0
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
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0].startswith("# {")
    assert len(list(csv.DictReader(lines[1:]))) == len(rows)

