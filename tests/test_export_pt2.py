"""bnn_kernels.export / load_exported: converted models as AOTInductor .pt2 packages (CPU)."""

import random

import pytest
import torch
from torch import nn

import bnn_kernels as bk
from bnn_kernels import ExportError, reference
from bnn_kernels import models as M


def _trained_looking(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


MODELS = {
    "reactnet": (lambda: M.ReActNetSmall(width=16, blocks=2), (3, 8, 8)),
    "dorefa": (lambda: M.DoReFaNet(bits=2, width=16), (3, 8, 8)),
    "bwn_mlp": (lambda: M.BWNMLP(d_in=40, hidden=48), (40,)),
    "bwn_conv": (  # binary_weight_conv2d in the exported program
        lambda: nn.Sequential(
            M.BWNConv2d(3, 8, 3, padding=1), nn.ReLU(), M.BWNConv2d(8, 6, 3, stride=2, padding=1, groups=2)
        ),
        (3, 8, 8),
    ),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_export_runs_converted_model_with_any_batch(name, rng, tmp_path):
    make, shape = MODELS[name]
    torch.manual_seed(rng.randrange(2**31))
    model = _trained_looking(make(), rng.randrange(2**31))
    packed, report = bk.convert(model, (torch.randn(16, *shape),))
    assert report.converted
    packed.train()  # export traces in eval mode and gives the mode back
    path = bk.export(packed, (torch.randn(1, *shape),), tmp_path / "model.pt2")  # batch 1 example
    assert packed.training and path.endswith("model.pt2")
    packed.eval()
    run = bk.load_exported(path)
    assert run.get_metadata()["bnn_kernels_version"] == bk.__version__
    for batch in (1, rng.randrange(2, 7), rng.randrange(7, 20)):
        x = torch.randn(batch, *shape)
        with torch.no_grad():
            want = packed(x)
        got = run(x)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * max(1.0, want.abs().max().item()))


class IntegerOps(nn.Module):
    """Integer-output ops, whose exported results must equal the reference exactly."""

    def __init__(self, rng: random.Random, cin: int, hw: int):
        super().__init__()
        self.cin, self.groups = cin, rng.choice([1, 2])
        self.stride, self.padding, self.dilation = rng.choice([1, 2]), rng.choice([0, 1, 2]), rng.choice([1, 2])
        self.pad_value = rng.choice([0, 1, -1])
        w = torch.randn(self.groups * rng.randrange(2, 40), cin // self.groups, 3, 3)
        self.register_buffer("w_bits", bk.pack_bits(w.permute(0, 2, 3, 1).contiguous()))
        self.k = cin * hw * hw
        self.register_buffer("fc_bits", bk.pack_bits(torch.randn(rng.randrange(3, 70), self.k)))
        self.register_buffer("w_planes", bk.to_bitplanes(torch.randint(0, 4, (rng.randrange(3, 40), self.k)), 2))

    def conv_args(self):
        return self.cin, self.stride, self.padding, self.dilation, self.groups, self.pad_value

    def forward(self, x):
        y = bk.binary_conv2d(bk.pack_bits(x.permute(0, 2, 3, 1)), self.w_bits, *self.conv_args())
        flat = x.flatten(1)
        g = bk.xnor_gemm(bk.pack_bits(flat), self.fc_bits, self.k)
        q = torch.clamp(torch.round(flat * 2 + 2), 0, 3).to(torch.int64)
        s = bk.bitserial_gemm(bk.to_bitplanes(q, 2), self.w_planes, self.k, [1, 2], [1, 2])
        return y, g, s


def test_export_integer_ops_exact(rng, tmp_path):
    cin, hw = 2 * rng.randrange(1, 40), rng.randrange(4, 11)
    model = IntegerOps(rng, cin, hw).eval()
    run = bk.load_exported(bk.export(model, (torch.randn(rng.randrange(2, 5), cin, hw, hw),), tmp_path / "int.pt2"))
    x = torch.randn(rng.randrange(1, 9), cin, hw, hw)
    y, g, s = run(x)
    xr = reference.pack_bits(x.permute(0, 2, 3, 1))
    assert torch.equal(y, reference.binary_conv2d(xr, model.w_bits, *model.conv_args()))
    assert torch.equal(g, reference.xnor_gemm(reference.pack_bits(x.flatten(1)), model.fc_bits, model.k))
    q = torch.clamp(torch.round(x.flatten(1) * 2 + 2), 0, 3).to(torch.int64)
    want = reference.bitserial_gemm(reference.to_bitplanes(q, 2), model.w_planes, model.k, [1, 2], [1, 2])
    assert torch.equal(s, want)


class DataDependent(nn.Module):
    def forward(self, x):
        return x * 2 if x.sum() > 0 else x  # a branch on values: torch.export cannot trace it


def test_export_error_names_the_module(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), DataDependent()))
    with pytest.raises(ExportError, match=r"module '1\.1' \(DataDependent\)"):
        bk.export(model, (torch.randn(2, 3, 8, 8),), tmp_path / "bad.pt2")
    assert not (tmp_path / "bad.pt2").exists()


@pytest.mark.parametrize(
    "model, inputs, path, error, match",
    [
        ("not a module", (torch.randn(2, 3),), "m.pt2", TypeError, "model must be"),
        (nn.Linear(3, 2), (torch.randn(2, 3),), "m.onnx", ValueError, "path must end with .pt2"),
        (nn.Linear(3, 2), (), "m.pt2", TypeError, "example_inputs must be"),
        (nn.Linear(3, 2), ([1.0, 2.0],), "m.pt2", TypeError, r"example_inputs\[0\] must be a tensor"),
        (nn.Linear(3, 2), (torch.tensor(1.0),), "m.pt2", ValueError, r"example_inputs\[0\] has no batch"),
        (nn.Bilinear(3, 3, 2), (torch.randn(2, 3), torch.randn(3, 3)), "m.pt2", ValueError, "share their batch"),
        (nn.Linear(3, 2), (torch.randn(0, 3),), "m.pt2", ValueError, "empty batch"),
    ],
)
def test_export_bad_arguments(model, inputs, path, error, match, tmp_path):
    with pytest.raises(error, match=match):
        bk.export(model, inputs, tmp_path / path)


def test_load_exported_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt2"):
        bk.load_exported(tmp_path / "missing.pt2")
