"""The input sizes an export with a dynamic height/width is checked at: its own and two others."""

from __future__ import annotations

from collections.abc import Callable

from onebyone.export.options import ExportOptions
from onebyone.export.zoo import ModelSpec
from onebyone.runtime.core.errors import UserError, option


def other_sizes(height: int, width: int, dynamic: tuple[str, ...]) -> list[tuple[int, int]]:
    """The H×W a dynamic-resolution export is checked at beside its own: one taller and narrower, one shorter and
    wider (×1.25 / ×0.75, at least one step; only the dynamic axes change), in multiples of 32 (8 below 64 pixels)
    so that strided nets see whole cells."""
    step = 32 if min(height, width) >= 64 else 8

    def larger(size: int) -> int:
        return max(round(size * 1.25 / step) * step, size + step)

    def smaller(size: int) -> int:
        return max(step, min(round(size * 0.75 / step) * step, size - step))

    def changed(size: int, axis: str, resize: Callable[[int], int]) -> int:
        return resize(size) if axis in dynamic else size

    return [(changed(height, "height", larger), changed(width, "width", smaller)),
            (changed(height, "height", smaller), changed(width, "width", larger))]


def golden_sizes(spec: ModelSpec, options: ExportOptions) -> list[tuple[int, int]]:
    """Every H×W the golden samples cover, the model's own first."""
    own = (spec.input_shape[1], spec.input_shape[2])
    if not {"height", "width"} & set(options.dynamic):
        if options.check_shapes:
            raise UserError(f"{option('check_shapes', 'HxW')} needs a dynamic height or width: "
                            f"{option('dynamic', 'height,width')}")
        return [own]
    sizes = list(options.check_shapes) or other_sizes(*own, options.dynamic)
    fixed = [size for size in sizes if ("height" not in options.dynamic and size[0] != own[0])
             or ("width" not in options.dynamic and size[1] != own[1])]
    if fixed:
        raise UserError(f"{option('check_shapes', 'x'.join(map(str, fixed[0])))} changes an axis that is not "
                        f"dynamic ({option('dynamic', ','.join(options.dynamic))})")
    return [own, *(size for size in sizes if size != own)]
