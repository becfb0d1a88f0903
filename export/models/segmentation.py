"""Dense prediction on a ResNet-50 backbone, module for module as torchvision builds it, so that torchvision's state
dicts (`torch.save(model.state_dict())` of `torchvision.models.segmentation.fcn_resnet50(aux_loss=True)`,
`deeplabv3_resnet50(aux_loss=True)`, and of `torchvision.models.detection.backbone_utils.resnet_fpn_backbone(
backbone_name="resnet50")`) load key for key with `--weights`.

- FCN and DeepLabV3: the ResNet-50 trades the strides of layer3 and layer4 for dilation 2 and 4 (output stride 8);
  the head is FCN's 3x3 conv + 1x1 classifier, or DeepLabV3's ASPP (a 1x1 branch, three dilated 3x3 branches and
  an image-pooling branch, joined by a 1x1 projection); the class scores are upsampled bilinearly to the input's
  H×W, so the output is N × classes × H × W at any input size. The auxiliary FCN head on layer3 is built (the
  published checkpoints hold it) but not run: it only adds a training loss, so the export has one output, `out`.
- ResNet-50 + FPN: the lateral 1x1 convs and 3x3 output convs of a feature pyramid over layer1…layer4, plus a
  stride-2 max-pool of the top map: five outputs P2…P6 (strides 4…64) with 256 channels each. The backbone's
  BatchNorms are torchvision's FrozenBatchNorm2d (a fixed affine map: Mul + Add in the export, not
  BatchNormalization), as every torchvision detection model has them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from onebyone.export.models.resnet import ResNet

VOC_CLASSES = 21  # torchvision's published segmentation weights: Pascal VOC's 20 classes + background
FPN_CHANNELS = 256
DILATED = (False, True, True)  # layer2 keeps its stride; layer3 and layer4 dilate (output stride 8)


def _backbone(dilate: tuple[bool, ...] = ()) -> ResNet:
    return ResNet([3, 4, 6, 3], num_classes=None, dilate=dilate)


class FCNHead(nn.Sequential):
    """3x3 conv to channels/4, BN, ReLU, dropout, 1x1 classifier."""

    def __init__(self, in_channels: int, classes: int) -> None:
        inter = in_channels // 4
        super().__init__(nn.Conv2d(in_channels, inter, 3, padding=1, bias=False), nn.BatchNorm2d(inter), nn.ReLU(),
                         nn.Dropout(0.1), nn.Conv2d(inter, classes, 1))


class ASPPConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


class ASPPPooling(nn.Sequential):
    """Image pooling: global average, 1x1 conv, BN, ReLU, broadcast back to the map's H×W."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return functional.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """y = project(concat(1x1(x), 3x3 dilated 12/24/36 (x), pool(x)))."""

    def __init__(self, in_channels: int, rates: tuple[int, ...] = (12, 24, 36), out_channels: int = 256) -> None:
        super().__init__()
        branches: list[nn.Module] = [nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                                   nn.BatchNorm2d(out_channels), nn.ReLU())]
        branches += [ASPPConv(in_channels, out_channels, rate) for rate in rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False),
                                     nn.BatchNorm2d(out_channels), nn.ReLU(), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
    def __init__(self, in_channels: int, classes: int) -> None:
        super().__init__(ASPP(in_channels), nn.Conv2d(256, 256, 3, padding=1, bias=False), nn.BatchNorm2d(256),
                         nn.ReLU(), nn.Conv2d(256, classes, 1))


class Segmenter(nn.Module):
    """backbone → classifier on layer4 → bilinear upsampling to the input's H×W (`aux_classifier`: see above)."""

    def __init__(self, classifier: nn.Module, aux_classifier: nn.Module) -> None:
        super().__init__()
        self.backbone = _backbone(DILATED)
        self.classifier = classifier
        self.aux_classifier = aux_classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.classifier(self.backbone.features(x)[-1])
        return functional.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)


def fcn_resnet50() -> Segmenter:
    return Segmenter(FCNHead(2048, VOC_CLASSES), FCNHead(1024, VOC_CLASSES))


def deeplabv3_resnet50() -> Segmenter:
    return Segmenter(DeepLabHead(2048, VOC_CLASSES), FCNHead(1024, VOC_CLASSES))


class FrozenBatchNorm2d(nn.Module):
    """y = x · γ/√(σ² + ε) + (β − μ·γ/√(σ² + ε)) with every term a buffer: torchvision.ops.FrozenBatchNorm2d."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.register_buffer(name, torch.full((channels,), value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight.reshape(1, -1, 1, 1) * (self.running_var.reshape(1, -1, 1, 1) + self.eps).rsqrt()
        bias = self.bias.reshape(1, -1, 1, 1) - self.running_mean.reshape(1, -1, 1, 1) * scale
        return x * scale + bias


def _freeze_batchnorm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, FrozenBatchNorm2d(child.num_features, child.eps))
        else:
            _freeze_batchnorm(child)


class FeaturePyramid(nn.Module):
    """P_i = 3x3(lateral_i(C_i) + nearest-upsampled top-down path), top first; P6 = max-pool(P5, 1, stride 2)."""

    def __init__(self, in_channels: tuple[int, ...], out_channels: int = FPN_CHANNELS) -> None:
        super().__init__()
        self.inner_blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(c, out_channels, 1)) for c in in_channels)
        self.layer_blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1))
                                          for _ in in_channels)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)
                nn.init.zeros_(module.bias)

    def forward(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        inner = self.inner_blocks[-1](maps[-1])
        results = [self.layer_blocks[-1](inner)]
        for index in range(len(maps) - 2, -1, -1):
            lateral = self.inner_blocks[index](maps[index])
            inner = lateral + functional.interpolate(inner, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, self.layer_blocks[index](inner))
        results.append(functional.max_pool2d(results[-1], 1, 2, 0))
        return tuple(results)


class ResNetFPN(nn.Module):
    """ResNet-50 (frozen BatchNorm) → FPN: outputs p2, p3, p4, p5, p6."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _backbone()
        _freeze_batchnorm(self.body)
        self.fpn = FeaturePyramid((256, 512, 1024, 2048))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.fpn(self.body.features(x))


def resnet50_fpn() -> ResNetFPN:
    return ResNetFPN()
