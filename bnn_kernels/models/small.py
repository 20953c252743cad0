"""Small whole networks of each family (a few layers; tests and quick checks)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .families import BiRealBlock, ReActBlock, XNORBlock


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
    """Small ReActNet-style BNN for 8x8 digits (examples/demo.py trains it)."""

    def __init__(self, width: int = 64, blocks: int = 3, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        self.blocks = nn.Sequential(*[ReActBlock(width, shift_inside=(i % 2 == 1)) for i in range(blocks)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))
