"""Every planted CPU kernel bug of scripts/plant_cpu_bugs.py still anchors: its snippet occurs
exactly once (ignoring whitespace) in the current csrc, so an edit of a kernel cannot silently
turn a mutant into a no-op. No build, no kernels run."""

import os

import pytest

from tests.helpers import ROOT, load_script

PLANT = load_script("plant_cpu_bugs")


@pytest.mark.parametrize("m", PLANT.MUTANTS, ids=lambda m: m.name)
def test_mutant_anchors_exactly_once(m):
    original, planted, count = PLANT.mutated(ROOT, m)
    assert count == 1, f"{m.name}: snippet occurs {count} times in {m.file}; re-anchor it"
    assert planted != original, f"{m.name}: the replacement does not change {m.file}"
    for t in m.tests:
        assert os.path.exists(os.path.join(ROOT, t)), f"{m.name}: test file {t} is missing"


def test_mutant_names_unique():
    names = [m.name for m in PLANT.MUTANTS]
    assert len(names) == len(set(names))


def test_matcher_ignores_whitespace_and_needs_one_occurrence():
    from snippet_match import replace_once, spans

    src = "int a = b  +\n    c;\nint d = b + c;\n"
    assert spans(src, "b + c") == [(8, 18), (28, 33)]
    assert replace_once(src, "b + c", "x")[1] == 2
    new, count = replace_once(src, "a = b+c;", "  a = 0;\n")
    assert count == 1 and new == "int a = 0;\nint d = b + c;\n"
    assert replace_once(src, "e = f", "g") == (None, 0)
