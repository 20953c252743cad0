"""Full-size networks: Bi-Real Net 18, ReActNet-A and a binary-weight ResNet-18 (random weights
are fine for conversion and latency measurements; `bnn-kernels bench model` uses them)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .families import BinaryConv2dSTE, BiRealBlock, BWNConv2d, RPReLU, RSign


class _BiRealBasicBlock(nn.Module):
    """ResNet-18 basic block of Bi-Real Net: two 3x3 binary convs, a shortcut around each."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.unit1 = BiRealBlock(cin, cout, stride)
        self.unit2 = BiRealBlock(cout, cout)

    def forward(self, x):
        return self.unit2(self.unit1(x))


class _ResNet18(nn.Module):
    """The ResNet-18 layout: 7x7 stem with BatchNorm (and ReLU where stem_relu), max pool, four
    stages of two blocks (block(cin, cout, stride)), average pool, fc."""

    stem_relu = False

    def __init__(self, block, num_classes: int, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        layers, cin = [], width
        for i, c in enumerate([width, 2 * width, 4 * width, 8 * width]):
            layers.append(nn.Sequential(block(cin, c, 1 if i == 0 else 2), block(c, c)))
            cin = c
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.bn1(self.conv1(x))
        x = self.maxpool(F.relu(x) if self.stem_relu else x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


class BiRealNet18(_ResNet18):
    def __init__(self, num_classes: int = 1000, width: int = 64):
        super().__init__(_BiRealBasicBlock, num_classes, width)


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
    STAGES = (
        [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)]
        + [(512, 512, 1)] * 5
        + [(512, 1024, 2), (1024, 1024, 1)]
    )

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


class _BWNBasicBlock(nn.Module):
    """ResNet-18 basic block with binary weights and real activations (BWN / BinaryConnect): two
    3x3 convs on sign(w) * mean|w| weights, BN, ReLU; a 1x1 binary-weight shortcut with BN where
    the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = BWNConv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = BWNConv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(BWNConv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        sc = x if self.down is None else self.down(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + sc)


class BWNResNet18(_ResNet18):
    stem_relu = True

    def __init__(self, num_classes: int = 1000, width: int = 64):
        super().__init__(_BWNBasicBlock, num_classes, width)


def bwn_resnet18(num_classes: int = 1000, width: int = 64) -> BWNResNet18:
    """ResNet-18 with binary weights and real activations (BWN): 16 binary-weight 3x3 convs and 3
    binary-weight 1x1 shortcuts; real stem and fc."""
    return BWNResNet18(num_classes, width)
