"""Larq Compute Engine as a baseline of `bench model` (``--lce-python PY``).

LCE runs in another interpreter (its TensorFlow stack does not share an environment with
torch): lce_child.py times the larq_zoo counterpart of a model there, once before and once
after ours at batch 1 in the same run, and the faster of the two medians becomes the row (the
note gives both). Only models with a larq_zoo counterpart get a row (LCE_MODELS); on x86 LCE
runs its portable C++ kernels.
"""

from __future__ import annotations

import json
import os
import subprocess

from .harness import Result

LCE_MODELS = {"birealnet18": "BiRealNet"}  # bench model's name -> larq_zoo.literature class
LCE_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lce_child.py")
LCE_TIMEOUT_S = 900


class LceError(RuntimeError):
    """The LCE interpreter could not time the model (the message says why)."""


def time_lce(python: str, zoo_model: str, res: int, threads: int, repeats: int) -> dict:
    """lce_child.py's JSON for zoo_model at res x res, batch 1, under python; raises LceError."""
    cmd = [python, LCE_CHILD, "--model", zoo_model, "--res", str(res), "--threads", str(threads)]
    cmd += ["--repeats", str(repeats)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=LCE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LceError(f"--lce-python {python}: {type(e).__name__}: {e}") from e
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise LceError(f"--lce-python {python} could not time larq_zoo {zoo_model} (exit {p.returncode}): {tail}")
    try:
        data = json.loads(lines[-1])
        float(data["ms"])
    except (ValueError, KeyError, TypeError) as e:
        raise LceError(f"--lce-python {python}: unexpected output {lines[-1][:200]!r}") from e
    return data


def lce_row(case: str, device: str, before: dict, after: dict) -> Result:
    """The baseline row from the two timings around ours (the faster median)."""
    best = min(before["ms"], after["ms"])
    v = before.get("versions", {})
    note = (
        f"larq_zoo {LCE_MODELS.get(case.split()[0], '?')} with random weights, TFLite flatbuffer from "
        f"convert_keras_model, interpreter options {before.get('options')} (the fastest of LCE's), "
        f"{before.get('threads')} thread(s), NHWC float32 input; median "
        f"{before['ms']:.2f} ms before ours and {after['ms']:.2f} ms after; "
        f"larq_compute_engine {v.get('larq_compute_engine', '?')}, larq_zoo {v.get('larq_zoo', '?')}"
    )
    return Result("model", case, "Larq Compute Engine", device, best, 1.0, "img", False, note=note)
