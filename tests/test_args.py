"""bnn_kernels._args: the int-or-pair and word-count helpers shared by the ops and the reference."""

import numpy as np
import pytest
import torch

from bnn_kernels._args import pair, words


@pytest.mark.parametrize(
    "v,want",
    [
        (3, (3, 3)),
        ((1, 2), (1, 2)),
        ([4, 5], (4, 5)),
        (np.int64(2), (2, 2)),
        ((np.int32(1), 7), (1, 7)),
        (torch.Size([2, 3]), (2, 3)),
        ((torch.tensor(2), 1), (2, 1)),
    ],
)
def test_pair_accepts_ints_and_pairs(v, want):
    got = pair(v, "stride")
    assert got == want and all(type(e) is int for e in got)


@pytest.mark.parametrize(
    "v,exc",
    [
        (True, TypeError),
        (1.0, TypeError),
        ((1.5, 2), TypeError),
        ((True, 1), TypeError),
        ("12", TypeError),
        (None, TypeError),
        ((1, 2, 3), ValueError),
        ((1,), ValueError),
        ([], ValueError),
    ],
)
def test_pair_rejects_other_values_naming_the_argument(v, exc):
    with pytest.raises(exc, match="padding must be an int or a pair of ints"):
        pair(v, "padding")


@pytest.mark.parametrize("k,want", [(1, 1), (31, 1), (32, 1), (33, 2), (64, 2), (65, 3), (1000, 32)])
def test_words(k, want):
    assert words(k) == want
