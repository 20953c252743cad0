#!/usr/bin/env python3
"""Mutation check of the Python layer: plants one typical bug at a time in the packed modules
(bnn_kernels/nn), the op wrappers and their fakes (bnn_kernels/ops), serialization and the
graph fusion, and reports whether the tests catch it.

The same design as scripts/plant_cpu_bugs.py (its Mutant, snippet matching and tree copy are
reused): each mutant is (name, file, original snippet, replacement, test files), the snippet
matched ignoring whitespace and required to occur exactly once. No rebuild is needed: the
tree is copied to a scratch folder (``--workdir``) with the built extension (bnn_kernels/*.so
of this checkout, so build in place first), and for each mutant the script edits the copy,
runs the mutant's test files there with ``pytest -x`` (PYTHONPATH pointing at the copy) and
restores the file. A mutant is caught when the tests fail. bnn_kernels/reference.py, the
tests' oracle, is never mutated.

    python scripts/plant_py_bugs.py              # every mutant, then the score table
    python scripts/plant_py_bugs.py --list
    python scripts/plant_py_bugs.py --only nn_pad_input_transposed

A few minutes per mutant file at most (the test runs): not part of CI;
tests/test_plant_py_patterns.py checks that every snippet still anchors.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from plant_cpu_bugs import M, apply, mutated, run_tests, sync  # noqa: E402
from py_mutants_fusion import FUSION_MUTANTS  # noqa: E402
from py_mutants_nn import NN_MUTANTS  # noqa: E402
from py_mutants_ops import OPS_MUTANTS  # noqa: E402

MUTANTS = [M(*m) for m in NN_MUTANTS + OPS_MUTANTS + FUSION_MUTANTS]

# Files no mutant may touch: the oracle the tests compare with, and the converter (its own
# checks cover it).
FORBIDDEN = ("bnn_kernels/reference.py", "bnn_kernels/convert/")


def copy_extension(src: str, dst: str) -> list[str]:
    """Copies the built shared objects of src's package (bnn_kernels/*.so) into dst's."""
    found = sorted(glob.glob(os.path.join(src, "bnn_kernels", "*.so")))
    for path in found:
        target = os.path.join(dst, "bnn_kernels", os.path.basename(path))
        if not os.path.exists(target) or os.path.getmtime(target) != os.path.getmtime(path):
            shutil.copy2(path, target)
    return found


def run_mutant(work: str, m, timeout: int) -> tuple[str, str]:
    """Plants m in the scratch tree, runs its tests, restores the file: (status, detail)."""
    path = os.path.join(work, m.file)
    original = apply(work, m)
    try:
        rc, detail = run_tests(work, m.tests, timeout)
    finally:
        with open(path, "w") as f:
            f.write(original)
    status = "SURVIVED" if rc == 0 else "caught" if rc is not None else "caught (hang)"
    if m.equivalent:
        status = "equivalent" if status == "SURVIVED" else status + " (equiv?)"
    return status, detail if status != "SURVIVED" else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this mutant (repeatable)")
    ap.add_argument(
        "--workdir",
        default=os.path.join(tempfile.gettempdir(), "bnn_kernels_py_mutants"),
        help="scratch copy of the tree, kept between runs (default: %(default)s)",
    )
    ap.add_argument("--timeout", type=int, default=600, help="seconds per test run (a hang counts as caught)")
    args = ap.parse_args()

    names = [m.name for m in MUTANTS]
    assert len(set(names)) == len(names), "duplicate mutant names"
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:45s} {m.file}{'  (equivalent)' if m.equivalent else ''}")
        return 0
    unknown = set(args.only) - set(names)
    if unknown:
        raise SystemExit(f"unknown mutant(s): {', '.join(sorted(unknown))} (see --list)")
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    for m in chosen:  # every snippet must match before anything runs
        if m.file.startswith(FORBIDDEN):
            raise SystemExit(f"mutant {m.name}: {m.file} is not mutated (the oracle or the converter)")
        count = mutated(ROOT, m)[2]
        if count != 1:
            raise SystemExit(f"mutant {m.name}: its snippet occurs {count} times in {m.file} (needs exactly 1)")

    work = args.workdir
    os.makedirs(work, exist_ok=True)
    sync(ROOT, work)
    if not copy_extension(ROOT, work):
        raise SystemExit(f"no built extension in {ROOT}/bnn_kernels: run setup.py build_ext --inplace first")
    base_tests = sorted({t for m in chosen for t in m.tests})
    rc, msg = run_tests(work, base_tests, args.timeout)
    if rc != 0:
        raise SystemExit(f"the unmutated tree fails its tests: {msg}")

    rows = []
    for m in chosen:
        t0 = time.time()
        status, detail = run_mutant(work, m, args.timeout)
        rows.append((m, status))
        print(f"{m.name:45s} {status:12s} {time.time() - t0:6.0f}s  {detail[:70]}", flush=True)

    scored = [r for r in rows if not r[0].equivalent]
    caught = sum(r[1].startswith("caught") for r in scored)
    print("\n| mutant | file | result |\n|---|---|---|")
    for m, status in rows:
        print(f"| {m.name} | {m.file} | {status} |")
    print(f"\nscore: {caught} / {len(scored)} mutants caught ({len(rows) - len(scored)} equivalent mutants left out)")
    return 0 if caught == len(scored) else 1


if __name__ == "__main__":
    sys.exit(main())
