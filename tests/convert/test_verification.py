"""convert() refuses a packed layer whose integer part is off, even where the float output
cannot show it: a one-unit error under a large bias is far below the float tolerance."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bnn_kernels as bk
from bnn_kernels import ops


class SignLinear(nn.Linear):
    def forward(self, x):
        return F.linear(torch.sign(x), torch.sign(self.weight), self.bias)


class SignConv(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(torch.sign(x), torch.sign(self.weight), self.bias, self.stride, self.padding)


def _off_by_one(op):
    """op with one more in the first element of its result: a kernel bug hitting one output."""

    def wrong(*args, **kwargs):
        y = op(*args, **kwargs).clone()
        y[(0,) * y.dim()] += 1
        return y

    return wrong


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_integer_part_off_by_one_under_a_large_bias_is_refused(kind, monkeypatch, rng):
    torch.manual_seed(rng.randrange(2**31))
    cin, cout = rng.randrange(8, 70), rng.randrange(3, 20)
    layer = SignLinear(cin, cout) if kind == "linear" else SignConv(cin, cout, 3, padding=1)
    with torch.no_grad():
        layer.bias.fill_(1e6)  # one unit of the integer result is 1e-6 of the output
    model = nn.Sequential(layer).eval()
    x = torch.randn(4, cin) if kind == "linear" else torch.randn(2, cin, 5, 6)
    _, ok = bk.convert(model, (x,))
    assert "0" in ok.converted, str(ok)  # the bias alone does not stop it
    name = "xnor_gemm" if kind == "linear" else "binary_conv2d"
    monkeypatch.setattr(ops, name, _off_by_one(getattr(ops, name)))
    _, rep = bk.convert(model, (x,))
    assert "0" not in rep.converted, str(rep)
    assert "integer part differs" in rep.skipped["0"], rep.skipped["0"]


class NormalizesLargeInputs(nn.Conv2d):
    """Rescales inputs beyond |x| = 50, a branch on its input's values that neither the examples
    nor the inputs derived from them (at most a few times larger) take."""

    def forward(self, x):
        if x.abs().amax() > 50:
            x = x / x.abs().amax()
        return F.conv2d(torch.sign(x - 0.25), torch.sign(self.weight), None, self.stride, self.padding)


class LeakyThenSign(nn.Conv2d):
    """F.leaky_relu(x, 0.1, True): in place, written positionally, on the caller's tensor."""

    def forward(self, x):
        return F.conv2d(torch.sign(F.leaky_relu(x, 0.1, True) - 0.25), torch.sign(self.weight), None, 1, 1)


class ReadsItsInputAgain(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = LeakyThenSign(8, 8, 3, padding=1, bias=False)

    def forward(self, x):
        x = x * 1.0  # the block's own tensor, which the conv changes in place
        return self.conv(x) + x


def _fresh_agree(model, cm, scales):
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for s in scales:
            x = torch.randn(3, 8, 7, 9, generator=g) * s
            want = model(x.clone())
            torch.testing.assert_close(cm(x.clone()), want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def test_layer_branching_on_its_input_values_stays_float():
    model = nn.Sequential(NormalizesLargeInputs(8, 8, 3, padding=1), nn.BatchNorm2d(8)).eval()
    cm, rep = bk.convert(model, (torch.randn(4, 8, 7, 9),))
    assert "0" not in rep.converted and "reads input values into Python" in rep.skipped["0"], str(rep)
    _fresh_agree(model, cm, (1.0, 300.0))


def test_in_place_positional_argument_on_a_tensor_read_again_stays_float():
    model = ReadsItsInputAgain().eval()
    cm, rep = bk.convert(model, (torch.randn(4, 8, 7, 9),))
    assert "conv" not in rep.converted and "in place" in rep.skipped["conv"], str(rep)
    _fresh_agree(model, cm, (1.0, 3.0))
