"""The BNN layer families as training code writes them (plain PyTorch, no packing):
ReActNet, Bi-Real Net, XNOR-Net, DoReFa and binary-weight-only (BWN) layers and blocks, each
family with the quirks of its public training code (see bnn_kernels.models)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """+1 for x >= 0 else -1, straight-through (clipped identity) gradient."""
    return _SignSTE.apply(x)


def binary_weight(w: torch.Tensor) -> torch.Tensor:
    """sign(w) * mean|w| per output channel (detached scale), STE through the sign."""
    scale = w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True).detach()
    return sign_ste(w) * scale


# ---------------------------------------------------------------------------------------------
# ReActNet
# ---------------------------------------------------------------------------------------------
class RSign(nn.Module):
    """ReActNet's sign with a learnable per-channel shift: sign(x + b)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        return sign_ste(x + self.bias)


class RPReLU(nn.Module):
    """ReActNet's shifted PReLU: prelu(x - gamma) + zeta."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.prelu = nn.PReLU(channels, init=0.25)
        self.zeta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        return self.prelu(x - self.gamma) + self.zeta


class BinaryConv2dSTE(nn.Conv2d):
    """Conv on already-binarized input with sign(w) * mean|w| weights (ReActNet / Bi-Real)."""

    def forward(self, x):
        return F.conv2d(x, binary_weight(self.weight), self.bias, self.stride, self.padding, self.dilation, self.groups)


class ShiftSignConv2d(nn.Conv2d):
    """Binarizes its own input with a learnable shift: conv(sign(x - shift), sign(w) * mean|w|)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.shift = nn.Parameter(torch.zeros(self.in_channels))

    def forward(self, x):
        xb = sign_ste(x - self.shift.view(1, -1, 1, 1))
        return F.conv2d(xb, binary_weight(self.weight), None, self.stride, self.padding, self.dilation, self.groups)


class ReActBlock(nn.Module):
    """RSign -> binary 3x3 conv -> BN -> + shortcut -> RPReLU (ReActNet basic unit).

    shift_inside=True uses ShiftSignConv2d instead of a separate RSign module."""

    def __init__(self, channels: int, shift_inside: bool = False):
        super().__init__()
        self.shift_inside = shift_inside
        if shift_inside:
            self.conv = ShiftSignConv2d(channels, channels, 3, padding=1, bias=False)
        else:
            self.sign = RSign(channels)
            self.conv = BinaryConv2dSTE(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.act = RPReLU(channels)

    def forward(self, x):
        out = self.conv(x if self.shift_inside else self.sign(x))
        return self.act(self.bn(out) + x)


# ---------------------------------------------------------------------------------------------
# Bi-Real Net
# ---------------------------------------------------------------------------------------------
def birealnet_sign(x: torch.Tensor) -> torch.Tensor:
    """Bi-Real's ApproxSign: forward sign(x), backward through a piecewise polynomial."""
    out_forward = torch.sign(x)
    mask1 = x < -1
    mask2 = x < 0
    mask3 = x < 1
    out1 = (-1) * mask1.type(torch.float32) + (x * x + 2 * x) * (1 - mask1.type(torch.float32))
    out2 = out1 * mask2.type(torch.float32) + (-x * x + 2 * x) * (1 - mask2.type(torch.float32))
    out3 = out2 * mask3.type(torch.float32) + 1 * (1 - mask3.type(torch.float32))
    return out_forward.detach() - out3.detach() + out3


class BiRealConv2d(nn.Conv2d):
    """Binarizes its own input (ApproxSign) and its weights (sign * mean|w|) inside forward."""

    def forward(self, x):
        xb = birealnet_sign(x)
        scaling = self.weight.abs().mean(dim=(1, 2, 3), keepdim=True).detach()
        bw = (
            scaling * torch.sign(self.weight).detach()
            - torch.clamp(self.weight, -1, 1).detach()
            + torch.clamp(self.weight, -1, 1)
        )
        return F.conv2d(xb, bw, self.bias, self.stride, self.padding, self.dilation, self.groups)


class BiRealBlock(nn.Module):
    """x -> BN(BiRealConv(x)) + shortcut(x): real-valued shortcut around every binary conv."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv = BiRealConv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(2, 2) if stride != 1 else nn.Identity(),
                nn.Conv2d(cin, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            )

    def forward(self, x):
        sc = x if self.downsample is None else self.downsample(x)
        return self.bn(self.conv(x)) + sc


# ---------------------------------------------------------------------------------------------
# XNOR-Net
# ---------------------------------------------------------------------------------------------
class SignAct(nn.Module):
    """Separate sign module (torch.sign forward, STE backward)."""

    def forward(self, x):
        return x + (torch.sign(x) - x).detach()


class XNORConv2d(nn.Conv2d):
    """conv(x, sign(w)) * alpha: the per-channel mean|w| is applied to the output, bias after."""

    def forward(self, x):
        alpha = self.weight.abs().mean(dim=(1, 2, 3)).detach()
        wb = sign_ste(self.weight)
        out = F.conv2d(x, wb, None, self.stride, self.padding, self.dilation, self.groups)
        out = out * alpha.view(1, -1, 1, 1)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out


class XNORBlock(nn.Module):
    """BN -> Sign -> XNOR conv -> ReLU (XNOR-Net ordering)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, bias: bool = True):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.sign = SignAct()
        self.conv = XNORConv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv(self.sign(self.bn(x))))


# ---------------------------------------------------------------------------------------------
# DoReFa
# ---------------------------------------------------------------------------------------------
class DoReFaAct(nn.Module):
    """k-bit activations on [0, 1]: round(clamp(x, 0, 1) * n) / n, n = 2^k - 1, STE."""

    def __init__(self, bits: int = 2):
        super().__init__()
        self.bits = bits

    def forward(self, x):
        n = 2**self.bits - 1
        x = torch.clamp(x, 0, 1)
        return x + (torch.round(x * n) / n - x).detach()


class DoReFaConv2d(nn.Conv2d):
    """1-bit DoReFa weights: sign(w) * E|w| (one scale per layer)."""

    def forward(self, x):
        e = self.weight.abs().mean().detach()
        return F.conv2d(x, sign_ste(self.weight) * e, self.bias, self.stride, self.padding, self.dilation, self.groups)


class DoReFaQConv2d(DoReFaConv2d):
    """Quantizes its own input to k bits inside forward, then the DoReFa binary-weight conv."""

    def __init__(self, *args, bits: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.bits = bits

    def forward(self, x):
        n = 2**self.bits - 1
        xq = torch.round(torch.clamp(x, 0, 1) * n) / n
        return super().forward(xq)


class DoReFaNet(nn.Module):
    """Real stem, DoReFa k-bit activation + binary-weight convs, real classifier."""

    def __init__(self, bits: int = 2, width: int = 16, num_classes: int = 10, in_ch: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(in_ch, width, 3, padding=1)
        self.act1 = DoReFaAct(bits)
        self.conv1 = DoReFaConv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = DoReFaQConv2d(width, 2 * width, 3, stride=2, padding=1, bits=bits)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.bn1(self.conv1(self.act1(x)))
        x = self.bn2(self.conv2(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# ---------------------------------------------------------------------------------------------
# Binary-weight-only (BinaryConnect / BWN)
# ---------------------------------------------------------------------------------------------
class BWNLinear(nn.Linear):
    def forward(self, x):
        return F.linear(x, binary_weight(self.weight), self.bias)


class BWNConv2d(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(x, binary_weight(self.weight), self.bias, self.stride, self.padding, self.dilation, self.groups)


class BWNMLP(nn.Module):
    """Binary weights, real activations."""

    def __init__(self, d_in: int = 64, hidden: int = 128, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            BWNLinear(d_in, hidden), nn.ReLU(), BWNLinear(hidden, hidden), nn.ReLU(), BWNLinear(hidden, num_classes)
        )

    def forward(self, x):
        return self.net(x.flatten(1))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm / RSign / RPReLU non-trivial values (as after training) for tests and demos."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            elif isinstance(m, (RSign, RPReLU, ShiftSignConv2d)):
                for p in m.parameters(recurse=False):
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model
