"""scripts/plant_cuda_bugs.py stays in step with the kernels: every bug it plants still finds
its pattern in csrc/ (a kernel edit that removes one should update the script)."""

from __future__ import annotations

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("plant_cuda_bugs", os.path.join(ROOT, "scripts", "plant_cuda_bugs.py"))
plant_cuda_bugs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plant_cuda_bugs)


@pytest.mark.parametrize("bug", plant_cuda_bugs.BUGS, ids=[b[0] for b in plant_cuda_bugs.BUGS])
def test_bug_pattern_present(bug):
    bid, _, path, text, new, occurrence = bug
    with open(os.path.join(ROOT, "csrc", path)) as f:
        src = f.read()
    planted = plant_cuda_bugs.plant(src, text, new, occurrence)
    assert planted is not None and planted != src, f"{bid}: pattern not found in csrc/{path}"


def test_bug_ids_unique():
    ids = [b[0] for b in plant_cuda_bugs.BUGS]
    assert len(ids) == len(set(ids))
