"""The microbenchmarks under benchmarks/micro compile (their numbers are quoted in
benchmarks/README.md; a source that no longer builds could not reproduce them)."""

import pathlib
import platform
import shutil
import subprocess

import pytest

MICRO = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "micro"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 AVX2 sources")
@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
@pytest.mark.parametrize("src", sorted(p.name for p in MICRO.glob("*.cpp")))
def test_micro_benchmark_compiles(src, tmp_path):
    out = tmp_path / "a.out"
    r = subprocess.run(
        ["g++", "-O3", "-mavx2", "-Wall", "-Werror", "-o", str(out), str(MICRO / src)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert out.exists()
