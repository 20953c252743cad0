"""BNN definitions written the way training code writes them (plain PyTorch, no bnn_kernels).

These are the inputs ``bnn_kernels.convert`` is tested on: nothing here knows about packing.

Layer families:
- ReActNet-style: RSign (learnable per-channel shift, then sign) and RPReLU modules around a
  binary conv whose weights are sign * mean|w| (ReActBlock); a variant whose conv applies the
  learnable shift and the sign inside its own forward (ShiftSignConv2d).
- Bi-Real-style: the conv binarizes its own input with the piecewise-polynomial STE written as
  ``out_forward.detach() - out3.detach() + out3``; real-valued shortcut around every conv.
- XNOR-Net-style: BN -> Sign module -> conv on sign weights, per-channel mean|w| applied to the
  conv's output (after the call), then ReLU.
- DoReFa-style: k-bit activation quantizer (separate module, or inside the conv's forward).
- Binary-weight-only MLP (BinaryConnect / BWN): real activations, sign * mean|w| weights.
Full-size: ``birealnet18()`` (ResNet-18 Bi-Real Net) and ``reactnet_a()`` (MobileNet-style).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "sign_ste", "RSign", "RPReLU", "BinaryConv2dSTE", "ShiftSignConv2d", "ReActBlock", "BiRealConv2d", "BiRealBlock",
    "SignAct", "XNORConv2d", "XNORBlock", "DoReFaAct", "DoReFaConv2d", "DoReFaQConv2d", "DoReFaNet", "BWNLinear",
    "BWNConv2d", "BWNMLP", "ReActNetSmall", "BiRealSmall", "XNORNetSmall", "DigitsBNN", "birealnet18", "reactnet_a",
]


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
        bw = scaling * torch.sign(self.weight).detach() - torch.clamp(self.weight, -1, 1).detach() + torch.clamp(
            self.weight, -1, 1
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
            self.downsample = nn.Sequential(nn.AvgPool2d(2, 2) if stride != 1 else nn.Identity(),
                                            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

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
        self.net = nn.Sequential(BWNLinear(d_in, hidden), nn.ReLU(), BWNLinear(hidden, hidden), nn.ReLU(),
                                 BWNLinear(hidden, num_classes))

    def forward(self, x):
        return self.net(x.flatten(1))


# ---------------------------------------------------------------------------------------------
# Small whole networks (tests, demo)
# ---------------------------------------------------------------------------------------------
class ReActNetSmall(nn.Module):
    def __init__(self, width: int = 32, blocks: int = 2, num_classes: int = 10, in_ch: int = 3, shift_inside=False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_ch, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        self.blocks = nn.Sequential(*[ReActBlock(width, shift_inside=shift_inside) for _ in range(blocks)])
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class BiRealSmall(nn.Module):
    def __init__(self, width: int = 32, num_classes: int = 10, in_ch: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_ch, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        self.layers = nn.Sequential(BiRealBlock(width, width), BiRealBlock(width, 2 * width, stride=2))
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class XNORNetSmall(nn.Module):
    def __init__(self, width: int = 32, num_classes: int = 10, in_ch: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU())
        self.b1 = XNORBlock(width, width)
        self.b2 = XNORBlock(width, 2 * width, stride=2, bias=False)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.b2(self.b1(self.stem(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class DigitsBNN(nn.Module):
    """Small ReActNet-style BNN for 8x8 digits (examples/demo.py)."""

    def __init__(self, width: int = 64, blocks: int = 3, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        self.blocks = nn.Sequential(*[ReActBlock(width, shift_inside=(i % 2 == 1)) for i in range(blocks)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))


# ---------------------------------------------------------------------------------------------
# Full-size networks (random weights are fine for conversion and latency)
# ---------------------------------------------------------------------------------------------
class _BiRealBasicBlock(nn.Module):
    """ResNet-18 basic block of Bi-Real Net: two 3x3 binary convs, a shortcut around each."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.unit1 = BiRealBlock(cin, cout, stride)
        self.unit2 = BiRealBlock(cout, cout)

    def forward(self, x):
        return self.unit2(self.unit1(x))


class BiRealNet18(nn.Module):
    def __init__(self, num_classes: int = 1000, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        chans = [width, 2 * width, 4 * width, 8 * width]
        layers, cin = [], width
        for i, c in enumerate(chans):
            layers.append(nn.Sequential(_BiRealBasicBlock(cin, c, 1 if i == 0 else 2), _BiRealBasicBlock(c, c)))
            cin = c
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def birealnet18(num_classes: int = 1000, width: int = 64) -> BiRealNet18:
    """Bi-Real Net 18 (ResNet-18 layout, 16 binary 3x3 convs; real stem, 1x1 shortcuts, fc)."""
    return BiRealNet18(num_classes, width)


class _ReActABlock(nn.Module):
    """ReActNet-A block: RSign -> 3x3 binary conv (stride) -> BN -> + shortcut -> RPReLU,
    then RSign -> 1x1 binary conv(s) -> BN -> + shortcut -> RPReLU; out = 2 * in duplicates
    the 1x1 conv and concatenates."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        self.sign1 = RSign(cin)
        self.conv3x3 = BinaryConv2dSTE(cin, cin, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.act1 = RPReLU(cin)
        self.pool = nn.AvgPool2d(2, 2) if stride == 2 else None
        self.sign2 = RSign(cin)
        self.double = cout == 2 * cin
        self.pw1 = BinaryConv2dSTE(cin, cin if self.double else cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cin if self.double else cout)
        if self.double:
            self.pw2 = BinaryConv2dSTE(cin, cin, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(cin)
        self.act2 = RPReLU(cout)

    def forward(self, x):
        sc = self.pool(x) if self.pool is not None else x
        out = self.act1(self.bn1(self.conv3x3(self.sign1(x))) + sc)
        xb = self.sign2(out)
        if self.double:
            out = torch.cat([self.bn2(self.pw1(xb)) + out, self.bn3(self.pw2(xb)) + out], 1)
        else:
            out = self.bn2(self.pw1(xb)) + out
        return self.act2(out)


class ReActNetA(nn.Module):
    STAGES = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)] + [
        (512, 512, 1)
    ] * 5 + [(512, 1024, 2), (1024, 1024, 1)]

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0):
        super().__init__()

        def ch(c):
            return max(8, int(c * width_mult))

        self.stem = nn.Sequential(nn.Conv2d(3, ch(32), 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(ch(32)))
        self.features = nn.Sequential(*[_ReActABlock(ch(i), ch(o), s) for i, o, s in self.STAGES])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch(1024), num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(self.stem(x))).flatten(1))


def reactnet_a(num_classes: int = 1000, width_mult: float = 1.0) -> ReActNetA:
    """ReActNet-A (MobileNetV1 layout with 3x3 binary convs and doubled 1x1 binary convs)."""
    return ReActNetA(num_classes, width_mult)


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
