"""state_dict and safetensors round trips of the packed modules (bnn_kernels.save / load)."""

import copy
import json
import re

import pytest
import torch
from torch import nn

import bnn_kernels
from bnn_kernels.nn import (
    PACKED_MODULES,
    BinaryConv2d,
    BinaryLinear,
    BinaryWeightConv2d,
    BinaryWeightLinear,
    BitSerialConv2d,
    BitSerialLinear,
    BitSplitConv2d,
    BitSplitLinear,
)


def _modules():
    torch.manual_seed(0)
    conv = nn.Conv2d(40, 8, 3, stride=2, padding=1, groups=2)
    lin = nn.Linear(70, 5)
    return [
        (BinaryConv2d.from_float(conv, scale="mean_abs", input_threshold=torch.randn(40)), torch.randn(2, 40, 9, 7)),
        (BinaryLinear.from_float(lin, scale="mean_abs"), torch.randn(3, 70)),
        (BitSerialConv2d.from_float(conv, nbits=3), torch.rand(2, 40, 9, 7)),
        (BitSerialLinear.from_float(lin, nbits=2), torch.rand(3, 70)),
        (BitSplitConv2d.from_float(conv, [0.0, 0.5]), torch.randn(2, 40, 9, 7)),
        (BitSplitLinear.from_float(lin, [0.0, 0.5], plane_values="pm1", reduce=True), torch.randn(3, 70)),
        (BinaryWeightConv2d.from_float(conv), torch.randn(2, 40, 9, 7)),
        (BinaryWeightLinear.from_float(lin), torch.randn(3, 70)),
    ]


@pytest.mark.parametrize("i", range(8))
def test_state_dict_round_trip(i):
    m, x = _modules()[i]
    fresh = type(m).from_config(m.config())
    fresh.load_state_dict(m.state_dict())
    for k, v in m.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v) and fresh.state_dict()[k].dtype == v.dtype
    assert torch.equal(fresh(x), m(x))
    assert json.loads(json.dumps(m.config())) == m.config()
    assert torch.equal(copy.deepcopy(m)(x), m(x))


def test_all_packed_classes_registered():
    assert {type(m).__name__ for m, _ in _modules()} <= set(PACKED_MODULES)


def test_save_load_model(tmp_path):
    mods = _modules()
    model = nn.ModuleDict({f"m{i}": m for i, (m, _) in enumerate(mods)})
    path = tmp_path / "packed.safetensors"
    bnn_kernels.save(model, path)
    with open(path, "rb") as f:
        assert f.read(2) != b"\x80\x04"  # not a pickle
    # into a skeleton of placeholders: packed modules are rebuilt from the file's metadata
    skeleton = nn.ModuleDict({f"m{i}": nn.Identity() for i in range(len(mods))})
    loaded = bnn_kernels.load(path, skeleton)
    for i, (m, x) in enumerate(mods):
        assert type(loaded[f"m{i}"]) is type(m)
        assert torch.equal(loaded[f"m{i}"](x), m(x))
    tensors = bnn_kernels.load(path)
    assert set(tensors) == set(model.state_dict())


def test_save_load_state_dict(tmp_path):
    m, x = _modules()[0]
    bnn_kernels.save(m.state_dict(), tmp_path / "s.safetensors")
    fresh = BinaryConv2d.from_config(m.config())
    fresh.load_state_dict(bnn_kernels.load(tmp_path / "s.safetensors"))
    assert torch.equal(fresh(x), m(x))


def test_save_load_errors(tmp_path):
    with pytest.raises(TypeError, match="nn.Module or a dict"):
        bnn_kernels.save([1, 2], tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="only tensors"):
        bnn_kernels.save({"a": 1}, tmp_path / "x.safetensors")
    m, _ = _modules()[1]
    bnn_kernels.save(nn.Sequential(m), tmp_path / "y.safetensors")
    with pytest.raises(ValueError, match="no module named"):
        bnn_kernels.load(tmp_path / "y.safetensors", nn.Sequential())


class _Holder(nn.Module):
    """A bare model whose only child is named ``module``: its names start with ``module.`` too."""

    def __init__(self, inner):
        super().__init__()
        self.module = inner

    def forward(self, x):
        return self.module(x)


def test_data_parallel_prefix_matched_on_load(tmp_path):
    """A file of a model wrapped in nn.DataParallel (names ``module.*``) loads into the bare
    model and a file of the bare model into the wrapper (or any parent whose one child is
    named ``module``); a model whose names start with ``module.`` too keeps its file's names."""
    mods = _modules()
    bare = nn.ModuleDict({f"m{i}": m for i, (m, _) in enumerate(mods)})

    def skeleton():
        return nn.ModuleDict({f"m{i}": nn.Identity() for i in range(len(mods))})

    def same(loaded):
        inner = loaded.module if isinstance(loaded, (nn.DataParallel, _Holder)) else loaded
        for i, (m, x) in enumerate(mods):
            assert type(inner[f"m{i}"]) is type(m) and torch.equal(inner[f"m{i}"](x), m(x))

    bnn_kernels.save(nn.DataParallel(bare), tmp_path / "wrapped.safetensors")
    assert all(k.startswith("module.") for k in bnn_kernels.load(tmp_path / "wrapped.safetensors"))
    same(bnn_kernels.load(tmp_path / "wrapped.safetensors", skeleton()))
    same(bnn_kernels.load(tmp_path / "wrapped.safetensors", nn.DataParallel(skeleton())))
    bnn_kernels.save(bare, tmp_path / "bare.safetensors")
    same(bnn_kernels.load(tmp_path / "bare.safetensors", nn.DataParallel(skeleton())))
    bnn_kernels.save(_Holder(bare), tmp_path / "holder.safetensors")
    same(bnn_kernels.load(tmp_path / "holder.safetensors", _Holder(skeleton())))
    same(bnn_kernels.load(tmp_path / "bare.safetensors", _Holder(skeleton())))  # any wrapper-like parent
    with pytest.raises(ValueError, match="no module named 'm0'"):  # file and model disagree otherwise
        bnn_kernels.load(tmp_path / "bare.safetensors", nn.ModuleDict({"x": skeleton()}))


@pytest.mark.parametrize("i", range(8))
def test_every_packed_module_has_the_same_epilogue_buffers(i):
    m, _ = _modules()[i]
    assert {"multiplier", "bias"} <= set(dict(m.named_buffers()))


@pytest.mark.parametrize("i", [6, 7])
def test_binary_weight_files_with_the_old_scale_name_still_load(tmp_path, i):
    m, x = _modules()[i]
    old = {("scale" if k == "multiplier" else k): v for k, v in m.state_dict().items()}
    bnn_kernels.save(old, tmp_path / "old.safetensors")
    fresh = type(m).from_config(m.config())
    fresh.load_state_dict(bnn_kernels.load(tmp_path / "old.safetensors"))
    with torch.no_grad():
        assert torch.equal(fresh(x), m(x))


@pytest.mark.parametrize("i", [0, 2, 4, 6])
def test_conv_output_memory_format_follows_the_input(i):
    """As PyTorch convs do, so view(-1, C*H*W) after a packed conv works on NCHW input."""
    m, x = _modules()[i]
    if getattr(m, "reduce", True) is False:
        m.reduce = True
    with torch.no_grad():
        y = m(x)
        assert y.is_contiguous()
        y.view(y.shape[0], -1)
        ycl = m(x.contiguous(memory_format=torch.channels_last))
        assert ycl.is_contiguous(memory_format=torch.channels_last) and not ycl.is_contiguous()
        torch.testing.assert_close(ycl, y, rtol=1e-5, atol=1e-5)


def _tampered(tmp_path, name, tensors=None, meta=None):
    """A copy of a saved BinaryLinear model with some tensors or metadata entries replaced."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    src = tmp_path / "src.safetensors"
    if not src.exists():
        bnn_kernels.save(nn.Sequential(BinaryLinear.from_weight(torch.randn(8, 64))), src)
    state = load_file(src)
    with safe_open(src, "pt") as f:
        md = dict(f.metadata())
    state.update(tensors or {})
    md.update(meta or {})
    out = tmp_path / name
    save_file(state, out, metadata=md)
    return out


def test_load_refuses_packed_tensors_of_another_dtype(tmp_path):
    """load_state_dict would cast float or int16 weight bits, or int thresholds, silently: the
    packed module's tensors must come with its own dtypes; float layers keep torch's casting."""
    from safetensors.torch import load_file

    good = load_file(_tampered(tmp_path, "good.safetensors"))
    for key, dtype in [("0.weight_bits", torch.float32), ("0.weight_bits", torch.int16), ("0.threshold", torch.int32)]:
        path = _tampered(tmp_path, "bad.safetensors", {key: good[key].to(dtype)})
        with pytest.raises(ValueError, match=f"tensor '{key}' is {dtype} in the file, but the packed module '0'"):
            bnn_kernels.load(path, nn.Sequential(nn.Linear(64, 8)))
    model = nn.Sequential(nn.Linear(4, 4))
    bnn_kernels.save({"0.weight": torch.ones(4, 4, dtype=torch.float64), "0.bias": torch.zeros(4)}, tmp_path / "f.st")
    assert bnn_kernels.load(tmp_path / "f.st", model)[0].weight.dtype == torch.float32  # a float layer: cast


@pytest.mark.parametrize(
    "meta,match",
    [
        ({"bnn_kernels.format": "999"}, "file format '999'; this version reads format '1'"),
        ({"bnn_kernels.packed_modules": "{not json"}, "is not valid JSON"),
        ({"bnn_kernels.packed_modules": "[1, 2]"}, "must map module names to entries"),
        ({"bnn_kernels.packed_modules": '{"0": "BinaryLinear"}'}, "entry '0' must hold a 'class' name and a 'config'"),
        ({"bnn_kernels.packed_modules": '{"0": {"config": {}}}'}, "entry '0' must hold a 'class' name"),
        (
            {"bnn_kernels.packed_modules": '{"0": {"class": "BinaryLinear", "config": {"evil": 1}}}'},
            "the config of '0' is not a valid BinaryLinear config",
        ),
    ],
)
def test_load_names_the_file_and_entry_of_bad_metadata(tmp_path, meta, match):
    path = _tampered(tmp_path, "bad.safetensors", meta=meta)
    with pytest.raises(ValueError, match=match) as e:
        bnn_kernels.load(path, nn.Sequential(nn.Linear(64, 8)))
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    "size,key,stored,shape",
    [
        (10**12, "weight_bits", (8, 2), (8, 31250000000)),
        (100, "weight_bits", (8, 2), (8, 4)),
        (63, "threshold", (64,), (63,)),
    ],
)
def test_load_compares_config_sizes_with_the_file_before_allocating(tmp_path, size, key, stored, shape):
    """A config whose sizes disagree with the file's tensors is refused naming the tensor, before
    the module is built (in_features=10**12 would ask for terabytes; before, smaller sizes were
    allocated and then failed in load_state_dict with torch's size-mismatch RuntimeError)."""
    from safetensors import safe_open

    src = _tampered(tmp_path, "good.safetensors")
    with safe_open(src, "pt") as f:
        info = json.loads(f.metadata()["bnn_kernels.packed_modules"])
    info["0"]["config"]["in_features"] = size
    path = _tampered(tmp_path, "bad.safetensors", meta={"bnn_kernels.packed_modules": json.dumps(info)})
    msg = f"tensor '0.{key}' has shape {stored} in the file, but the config of '0' gives a BinaryLinear with shape {shape}"
    with pytest.raises(ValueError, match=re.escape(msg)) as e:
        bnn_kernels.load(path, nn.Sequential(nn.Linear(64, 8)))
    assert str(path) in str(e.value)


def test_every_packed_class_builds_on_the_meta_device():
    """load compares a config's shapes with the file's on the meta device: each packed class
    builds there from its config, with the shapes of the real module."""
    from bnn_kernels.nn import OffsetBinaryConv2d
    from bnn_kernels.nn._base import Folded
    from tests.nn.test_conv1d import packed_1d_modules

    w = torch.randn(8, 6, 3, 3)
    offset = OffsetBinaryConv2d.from_weight(w, torch.randn(8), act_scale=1.3, act_offset=0.4, padding=1)
    mods = [m for m, _ in _modules()] + [offset, Folded("x")] + [m for m, _ in packed_1d_modules()]
    assert {type(m).__name__ for m in mods} == set(PACKED_MODULES)
    for m in mods:
        with torch.device("meta"):
            probe = type(m).from_config(m.config())
        assert {k: (v.shape, v.is_meta) for k, v in probe.state_dict().items()} == {
            k: (v.shape, True) for k, v in m.state_dict().items()
        }, type(m).__name__
