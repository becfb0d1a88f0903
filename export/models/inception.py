"""GoogLeNet's Inception module: sibling 1x1 convolutions reduce channels before the 3x3s (Network-in-Network).

Names as torchvision's `googlenet().inception3a` (strip the `inception3a.` prefix to load its weights),
including torchvision's 3x3 (not 5x5) kernel in branch3.
"""

from __future__ import annotations

import torch
from torch import nn

from onebyone.export.models.init import init_like_torchvision


class BasicConv2d(nn.Module):
    """relu(bn(conv(x))), BatchNorm eps 1e-3 as in torchvision's GoogLeNet."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """concat(1x1, 1x1 → 3x3, 1x1 → 3x3, maxpool → 1x1) along channels; three 1x1s read the same input."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_channels, pool_proj, kernel_size=1))
        init_like_torchvision(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def inception_block() -> Inception:
    """GoogLeNet's inception3a: 192 channels at 28x28 in, 64 + 128 + 32 + 32 = 256 channels out."""
    return Inception(192, 64, 96, 128, 16, 32, 32)
