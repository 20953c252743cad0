"""Every planted Python-layer bug of scripts/plant_py_bugs.py still anchors: its snippet occurs
exactly once (ignoring whitespace) in the current bnn_kernels sources, so an edit of a module
cannot silently turn a mutant into a no-op. No mutant is run here."""

import os

import pytest

from tests.helpers import ROOT, load_script

PLANT = load_script("plant_py_bugs")
mutated = load_script("plant_cpu_bugs").mutated  # the snippet matching both scripts use


@pytest.mark.parametrize("m", PLANT.MUTANTS, ids=lambda m: m.name)
def test_mutant_anchors_exactly_once(m):
    assert m.file.startswith("bnn_kernels/") and m.file.endswith(".py"), m.file
    assert not m.file.startswith(PLANT.FORBIDDEN), f"{m.name}: {m.file} must not be mutated"
    original, planted, count = mutated(ROOT, m)
    assert count == 1, f"{m.name}: snippet occurs {count} times in {m.file}; re-anchor it"
    assert planted != original, f"{m.name}: the replacement does not change {m.file}"
    compile(planted, m.file, "exec")  # a planted bug is a wrong program, not a syntax error
    assert m.tests, f"{m.name}: no test files"
    for t in m.tests:
        assert os.path.exists(os.path.join(ROOT, t)), f"{m.name}: test file {t} is missing"


def test_mutant_names_unique():
    names = [m.name for m in PLANT.MUTANTS]
    assert len(names) == len(set(names))
