"""What many test modules share: the repository folder, the zoo sweep's parameters, the file listing that shows
nothing half-written was left behind, and the fp32 bound of an export against torch."""

from __future__ import annotations

from pathlib import Path

import pytest

from onebyone.export.zoo import ZOO

REPO = Path(__file__).resolve().parent.parent
# Zoo sweeps (export, optimize, sessions): the large ResNets run as slow cases; EfficientNet-Lite2…4 are Lite0/1's
# blocks at other widths, depths and resolutions (tests/test_zoo.py builds and runs each), so sweeps leave them out.
# The dense models (a dilated ResNet-50 at 520×520 is ~10× ResNet-50's work) have their own tests at small H×W
# (tests/test_dense.py), so the sweeps leave them out too.
LARGE = {"resnet101", "resnet152", "resnext50_32x4d", "wide_resnet50_2"}
DENSE = {"fcn_resnet50", "deeplabv3_resnet50", "resnet50_fpn"}
ZOO_PARAMS = [pytest.param(name, marks=pytest.mark.slow) if name in LARGE else name for name in sorted(ZOO)
              if name not in {"efficientnet_lite2", "efficientnet_lite3", "efficientnet_lite4", *DENSE}]
FP32_REL_TOL = 1e-4  # max |ORT − torch| ≤ 1e-4 · max |torch|, over every output element


def files_under(folder: Path) -> list[str]:
    """Every file below `folder` (hidden temp files included), as relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
