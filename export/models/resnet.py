"""ResNet with Bottleneck blocks (1x1 reduce → 3x3 → 1x1 expand), module names as in torchvision.models.resnet.

A torchvision `resnet50().state_dict()` loads into `resnet50()` here key for key. As in torchvision, later stages may
trade their stride for dilation (`dilate`, the dense-prediction backbones of export/models/segmentation.py) and the
classifier may be left off (`num_classes=None`: `features` returns every stage's map). Two generalisations beyond
torchvision: `stride_in_1x1` (the original paper's block, "ResNet v1", stride in the first 1x1 conv) and a small
stem/fewer stages for low-resolution inputs (`digits_resnet`, `digits_segmenter`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from onebyone.export.models.init import init_like_torchvision


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation, groups=groups,
                     dilation=dilation, bias=False)


class Bottleneck(nn.Module):
    """y = relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        stride_in_1x1: bool = False,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width, stride if stride_in_1x1 else 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, 1 if stride_in_1x1 else stride, groups, dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Stem, stages `layer1..layerN` of Bottleneck blocks, global average pool, `fc` (none when `num_classes` is
    None). `dilate[i]`: stage i + 2 keeps its resolution and dilates its 3x3 convs instead (torchvision's
    `replace_stride_with_dilation`)."""

    def __init__(
        self,
        layers: Sequence[int],
        num_classes: int | None = 1000,
        groups: int = 1,
        width_per_group: int = 64,
        stride_in_1x1: bool = False,
        in_channels: int = 3,
        small_input: bool = False,
        stage_planes: Sequence[int] = (64, 128, 256, 512),
        dilate: Sequence[bool] = (),
    ) -> None:
        super().__init__()
        if len(layers) > len(stage_planes):
            raise ValueError(f"{len(layers)} stages but only {len(stage_planes)} stage widths")
        self.groups = groups
        self.base_width = width_per_group
        self.stride_in_1x1 = stride_in_1x1
        self.inplanes = stage_planes[0]
        self.dilation = 1
        if small_input:  # 3x3 stride-1 stem, no max-pool: keeps an 8x8 image's resolution
            self.conv1 = conv3x3(in_channels, self.inplanes)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.stage_names = [f"layer{i + 1}" for i in range(len(layers))]
        for i, (name, blocks) in enumerate(zip(self.stage_names, layers, strict=True)):
            dilated = i > 0 and i - 1 < len(dilate) and dilate[i - 1]
            setattr(self, name, self._make_layer(stage_planes[i], blocks, stride=1 if i == 0 else 2, dilate=dilated))
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(stage_planes[len(layers) - 1] * Bottleneck.expansion, num_classes)
        init_like_torchvision(self)

    def _make_layer(self, planes: int, blocks: int, stride: int, dilate: bool = False) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * Bottleneck.expansion, stride),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        block_args = {"groups": self.groups, "base_width": self.base_width, "stride_in_1x1": self.stride_in_1x1}
        stage = [Bottleneck(self.inplanes, planes, stride, downsample, dilation=previous_dilation, **block_args)]
        self.inplanes = planes * Bottleneck.expansion
        stage += [Bottleneck(self.inplanes, planes, dilation=self.dilation, **block_args) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage, `layer1` first."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        maps = []
        for name in self.stage_names:
            x = getattr(self, name)(x)
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)[-1]), 1))


def resnet50() -> ResNet:
    return ResNet([3, 4, 6, 3])


def resnet101() -> ResNet:
    return ResNet([3, 4, 23, 3])


def resnet152() -> ResNet:
    return ResNet([3, 8, 36, 3])


def resnet50_v1() -> ResNet:
    """He et al. 2015 as published: the stride sits in each stage's first 1x1 conv, beside the downsample conv."""
    return ResNet([3, 4, 6, 3], stride_in_1x1=True)


def resnext50_32x4d() -> ResNet:
    return ResNet([3, 4, 6, 3], groups=32, width_per_group=4)


def wide_resnet50_2() -> ResNet:
    return ResNet([3, 4, 6, 3], width_per_group=64 * 2)
