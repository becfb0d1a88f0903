"""What many test modules share: the repository folder, the zoo sweep's parameters, the file listing that shows
nothing half-written was left behind, and the fp32 bound of an export against torch."""

from __future__ import annotations

from pathlib import Path

import pytest

from onebyone.export.zoo import ZOO

REPO = Path(__file__).resolve().parent.parent
# Zoo sweeps (export, optimize, sessions): ResNet-101/152 and Wide ResNet-50-2 are ResNet-50's bottlenecks at other
# depths and widths, and EfficientNet-Lite2…4 Lite0/1's blocks at other widths, depths and resolutions
# (tests/test_zoo.py builds and runs each), so sweeps leave them out: they would add minutes and no graph the sweep
# does not already cover. ResNeXt-50 (grouped 3x3) runs as a slow case. The dense models (a dilated ResNet-50 at
# 520×520 is ~10× ResNet-50's work) have their own tests at small H×W (tests/test_dense.py), so the sweeps leave them
# out too.
REPEATS = {"resnet101", "resnet152", "wide_resnet50_2", *(f"efficientnet_lite{k}" for k in (2, 3, 4))}
DENSE = {"fcn_resnet50", "deeplabv3_resnet50", "resnet50_fpn"}
ZOO_PARAMS = [pytest.param(name, marks=pytest.mark.slow) if name == "resnext50_32x4d" else name for name in sorted(ZOO)
              if name not in REPEATS | DENSE]
FP32_REL_TOL = 1e-4  # max |ORT − torch| ≤ 1e-4 · max |torch|, over every output element


def files_under(folder: Path) -> list[str]:
    """Every file below `folder` (hidden temp files included), as relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
