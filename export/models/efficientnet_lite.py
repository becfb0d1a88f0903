"""EfficientNet-Lite0…4 (Tan & Le 2019; TensorFlow's lite variants): inverted-bottleneck MBConv blocks — 1x1 expand
conv → BN → ReLU6 → depthwise k×k → BN → ReLU6 → 1x1 project conv → BN (+ identity) — without squeeze-excite or swish,
with the stem (32) and head (1280) unscaled and the first and last stages' repeats unscaled. Parameter names are the
EfficientNet-PyTorch ones (`_conv_stem`, `_blocks.N._expand_conv`, `_fc`) that the published Lite state dicts use, so
they load with `strict=True`; convolutions pad like TensorFlow's "SAME" and BatchNorm's eps is 1e-3, as trained."""

from __future__ import annotations

import math

import torch
from torch import nn

BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon, which the weights were trained with
STEM, HEAD = 32, 1280

# (repeats, kernel, stride, expansion, input filters, output filters) of EfficientNet-B0's seven stages; a stage's
# input is the previous stage's output.
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]

# name → (width multiplier, depth multiplier, resolution, dropout): TensorFlow's efficientnet_lite_builder.py.
VARIANTS = {"efficientnet_lite0": (1.0, 1.0, 224, 0.2), "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
            "efficientnet_lite2": (1.1, 1.2, 260, 0.3), "efficientnet_lite3": (1.2, 1.4, 280, 0.3),
            "efficientnet_lite4": (1.4, 1.8, 300, 0.3)}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by `width`, rounded to a multiple of `divisor`, never more than 10% below the scaled value."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


class SameConv2d(nn.Conv2d):
    """A Conv2d padded as TensorFlow's "SAME": output = ceil(input / stride), the padding total split with the extra
    pixel at the bottom/right. The padding is computed from the input's size as plain integers, so an export holds
    constants: symmetric padding (every stride-1 conv) is the Conv's own, asymmetric (stride 2 on even sizes) a Pad
    before it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before, after = [], []
        for size, kernel, stride, dilation in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation,
                                                  strict=True):
            size = int(size)  # a constant in the exported graph
            total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
            before.append(total // 2)
            after.append(total - total // 2)
        if before == after:
            return nn.functional.conv2d(x, self.weight, self.bias, self.stride, tuple(before), self.dilation,
                                        self.groups)
        x = nn.functional.pad(x, [before[1], after[1], before[0], after[0]])
        return nn.functional.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def conv_bn(in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1,
            groups: int = 1) -> tuple[SameConv2d, nn.BatchNorm2d]:
    return (SameConv2d(in_channels, out_channels, kernel, stride, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels, eps=BN_EPS))


class MBConvBlock(nn.Module):
    """y = BN(project(ReLU6(BN(depthwise(ReLU6(BN(expand(x)))))))) (+ x when stride 1 and channels match); no
    expansion conv when the ratio is 1."""

    def __init__(self, inp: int, oup: int, kernel: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        if expand_ratio != 1:
            self._expand_conv, self._bn0 = conv_bn(inp, hidden)
        self._depthwise_conv, self._bn1 = conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        self._project_conv, self._bn2 = conv_bn(hidden, oup)
        self.residual = stride == 1 and inp == oup

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if hasattr(self, "_expand_conv"):
            x = nn.functional.relu6(self._bn0(self._expand_conv(x)))
        x = nn.functional.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.residual else x


class EfficientNetLite(nn.Module):
    def __init__(self, width: float, depth: float, dropout: float, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem, self._bn0 = conv_bn(3, STEM, 3, 2)
        blocks: list[nn.Module] = []
        channels = STEM  # what reaches the next block: the unscaled stem's 32 for the first (TensorFlow's layers
        # take their input channels from the tensor, not from the stage's scaled input_filters)
        for index, (repeats, kernel, stride, expand, _, oup) in enumerate(STAGES):
            oup = round_filters(oup, width)
            if 0 < index < len(STAGES) - 1:
                repeats = math.ceil(depth * repeats)
            for repeat in range(repeats):
                blocks.append(MBConvBlock(channels, oup, kernel, stride if repeat == 0 else 1, expand))
                channels = oup
        self._blocks = nn.ModuleList(blocks)
        self._conv_head, self._bn1 = conv_bn(round_filters(STAGES[-1][5], width), HEAD)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD, num_classes)
        for module in self.modules():  # TensorFlow's initializers: normal fan-out convs, uniform dense
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0, math.sqrt(2.0 / (module.out_channels // module.groups
                                                                   * module.kernel_size[0] * module.kernel_size[1])))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1 / math.sqrt(module.out_features)
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = nn.functional.relu6(self._bn1(self._conv_head(x)))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self._fc(self._dropout(x))


def build(name: str) -> EfficientNetLite:
    width, depth, _, dropout = VARIANTS[name]
    return EfficientNetLite(width, depth, dropout)


def efficientnet_lite0() -> EfficientNetLite:
    return build("efficientnet_lite0")


def efficientnet_lite1() -> EfficientNetLite:
    return build("efficientnet_lite1")


def efficientnet_lite2() -> EfficientNetLite:
    return build("efficientnet_lite2")


def efficientnet_lite3() -> EfficientNetLite:
    return build("efficientnet_lite3")


def efficientnet_lite4() -> EfficientNetLite:
    return build("efficientnet_lite4")
