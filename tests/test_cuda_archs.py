"""setup.py's BNN_KERNELS_CUDA_ARCHS: targets below sm_80 are refused with a clear error (the
kernels use cp.async and b1 mma.sync, which older targets cannot compile)."""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def setup_module():
    spec = importlib.util.spec_from_file_location("bnn_setup", os.path.join(ROOT, "setup.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # defines the helpers; setup() runs only as a script
    return mod


@pytest.mark.parametrize(
    "value,want", [("80;90a", ["80", "90a"]), ("86, 90a,100a", ["86", "90a", "100a"]), ("90a", ["90a"])]
)
def test_arch_lists_of_sm80_or_newer(setup_module, value, want):
    assert setup_module._cuda_archs(value) == want
    assert (
        setup_module._gencode_flags(want)[0] == f"-gencode=arch=compute_{want[0]},code=[sm_{want[0]},compute_{want[0]}]"
    )


@pytest.mark.parametrize(
    "value,match",
    [
        ("75;80", "'75' is below 80"),
        ("80;70", "'70' is below 80"),
        ("sm_80", "'sm_80' is not an architecture"),
        (";", "is empty"),
    ],
)
def test_bad_arch_lists_are_refused(setup_module, value, match):
    with pytest.raises(ValueError, match=match):
        setup_module._cuda_archs(value)
