#!/usr/bin/env python3
"""Mutation check of the Python layer: plants one typical bug at a time in the packed modules
(bnn_kernels/nn), the op wrappers and their fakes (bnn_kernels/ops), serialization, the
graph fusion, the deployment entry points (bnn_kernels.compile, export) and the converter
(bnn_kernels/convert), and reports whether the tests catch it.

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

import glob
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from plant_cpu_bugs import (  # noqa: E402
    M,
    apply,
    choose,
    final_status,
    mutant_parser,
    print_score,
    run_all,
    run_tests,
    sync,
    tested_status,
)
from py_mutants_convert import CONVERT_MUTANTS  # noqa: E402
from py_mutants_deploy import DEPLOY_MUTANTS  # noqa: E402
from py_mutants_fusion import FUSION_MUTANTS  # noqa: E402
from py_mutants_nn import NN_MUTANTS  # noqa: E402
from py_mutants_ops import OPS_MUTANTS  # noqa: E402

MUTANTS = [M(*m) for m in NN_MUTANTS + OPS_MUTANTS + FUSION_MUTANTS + DEPLOY_MUTANTS + CONVERT_MUTANTS]

# Files no mutant may touch: the oracle the tests compare with.
FORBIDDEN = ("bnn_kernels/reference.py",)


def forbidden(m) -> str | None:
    """Why m may not be planted (it edits the oracle), or None."""
    return f"{m.file} is not mutated (the oracle)" if m.file.startswith(FORBIDDEN) else None


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
    return final_status(m, tested_status(rc), detail)


def main() -> int:
    args = mutant_parser(__doc__, "bnn_kernels_py_mutants", 600).parse_args()
    chosen = choose(MUTANTS, args, forbidden)
    if chosen is None:
        return 0
    work = args.workdir
    os.makedirs(work, exist_ok=True)
    sync(ROOT, work)
    if not copy_extension(ROOT, work):
        raise SystemExit(f"no built extension in {ROOT}/bnn_kernels: run setup.py build_ext --inplace first")
    return print_score(run_all(work, chosen, run_mutant, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
