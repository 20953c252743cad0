"""bnn_kernels.save / load edges: the float layers' channels_last layout restored, load strict
by default and in eval mode, tensors that share storage (tied weights, views) saved as copies.
Models of random sizes mixing float and packed layers."""

import random

import pytest
import torch
from torch import nn

import bnn_kernels
from bnn_kernels.nn import BinaryConv2d, BinaryLinear


def _model(seed):
    """A float conv, a packed conv and a packed linear of random sizes, and an input."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    c, o, h = rng.randint(3, 40), rng.randint(2, 20), rng.randint(4, 9)
    model = nn.Sequential(
        nn.Conv2d(3, c, rng.choice([1, 3]), padding="same"),
        BinaryConv2d.from_float(nn.Conv2d(c, o, 3, padding=1)),
        nn.Flatten(),
        BinaryLinear.from_float(nn.Linear(o * h * h, rng.randint(1, 9))),
    )
    return model, torch.randn(rng.randint(1, 3), 3, h, h)


def _skeleton(model):
    """The same architecture with the packed layers as placeholders and other float weights."""
    torch.manual_seed(12345)
    return nn.Sequential(
        nn.Conv2d(3, model[0].out_channels, model[0].kernel_size, padding="same"),
        nn.Identity(),
        nn.Flatten(),
        nn.Identity(),
    )


@pytest.mark.parametrize("seed", range(3))
def test_float_layers_come_back_in_channels_last(tmp_path, seed):
    model, x = _model(seed)
    model[0].to(memory_format=torch.channels_last)
    path = tmp_path / "m.safetensors"
    bnn_kernels.save(model, path)
    loaded = bnn_kernels.load(path, _skeleton(model))
    w = loaded[0].weight
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    assert torch.equal(loaded(x), model(x))
    model[0].to(memory_format=torch.contiguous_format)  # a contiguous model stays contiguous
    bnn_kernels.save(model, path)
    assert bnn_kernels.load(path, _skeleton(model))[0].weight.is_contiguous()


@pytest.mark.parametrize("seed", range(3))
def test_load_is_strict_by_default_and_returns_eval_mode(tmp_path, seed):
    model, x = _model(seed)
    path = tmp_path / "m.safetensors"
    bnn_kernels.save(model, path)
    skeleton = _skeleton(model).train()
    loaded = bnn_kernels.load(path, skeleton)
    assert not any(m.training for m in loaded.modules())
    state = bnn_kernels.load(path)
    dropped = random.Random(seed).choice(sorted(state))
    del state[dropped]
    bnn_kernels.save(state, tmp_path / "partial.safetensors")
    with pytest.raises(RuntimeError, match="Missing key"):
        bnn_kernels.load(tmp_path / "partial.safetensors", loaded)
    bnn_kernels.load(tmp_path / "partial.safetensors", loaded, strict=False)  # allowed when asked
    assert torch.equal(loaded(x), model(x))


def test_tensors_sharing_storage_are_saved_as_copies(tmp_path):
    """Tied weights (one tensor under two names) and views of one buffer save and load as
    independent tensors of the same values."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(7, 11, generator=g)
    state = {"a": base, "tied": base, "row": base[2], "cols": base[:, 3:5]}
    bnn_kernels.save(state, tmp_path / "s.safetensors")
    back = bnn_kernels.load(tmp_path / "s.safetensors")
    assert set(back) == set(state)
    for k, v in state.items():
        assert torch.equal(back[k], v)
    lin = nn.Linear(11, 11)
    tied = nn.Sequential(lin, nn.ReLU(), lin)
    bnn_kernels.save(tied, tmp_path / "tied.safetensors")
    fresh = nn.Sequential(nn.Linear(11, 11), nn.ReLU(), nn.Linear(11, 11))
    bnn_kernels.load(tmp_path / "tied.safetensors", fresh)
    assert torch.equal(fresh[2].weight, lin.weight) and torch.equal(fresh[0].weight, lin.weight)
