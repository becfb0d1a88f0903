"""The Restrictions column of TensorRT's operator tables, made mechanical: each sentence a table can hold maps to a
check of a node (`check_for`). The sentences come from the tables (operators.py), so a release that drops or adds a
restriction changes what is checked without a code change; a sentence no pattern knows is reported, never passed
over (tests/test_preflight_tables.py holds every sentence of every known table to a check).

A check answers None (the node keeps the rule) or a `Finding`: what the node does instead, and whether the parser
refuses it (`refused`) or only warns. Where the file alone cannot tell (an input computed at run time for a rule about
its value), the finding is a warning that says so."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import onnx_ir as ir

from onebyone.runtime.preflight.facts import Facts


class Finding(NamedTuple):
    detail: str
    refused: bool = True


Check = Callable[[ir.Node, Facts], Finding | None]
NAMES = re.compile(r"`\s*(\w+)\s*`")
ALIASES = {"is_training": "training_mode"}  # the table's word → the ONNX schema's input name
ATTRIBUTE_PHRASES = {  # Resize's "Supported <phrase>: `a`, `b`" → (attribute, ONNX default)
    "resize transformation modes": ("coordinate_transformation_mode", "half_pixel"),
    "resize modes": ("mode", "nearest"),
    "nearest modes": ("nearest_mode", "round_prefer_floor"),
    "aspect ratio policy": ("keep_aspect_ratio_policy", "stretch"),
}
DESCRIPTIVE = {  # sentences that describe how a supported feature is spelled; the rules beside them check it
    "`q_num_heads` and `kv_num_heads` attributes are supported via being specified as the second dimension of `Q` "
    "and `K`/`V`'s shapes respectively",
}


def _names(text: str) -> list[str]:
    return [ALIASES.get(name, name) for name in NAMES.findall(text)]


def _each_input(names: list[str], problem: Callable[[ir.Value, Facts], str | None]) -> Check:
    def check(node: ir.Node, facts: Facts) -> Finding | None:
        found = [f"`{name}` {detail}" for name in names
                 if (value := facts.input(node, name)) is not None and value.name
                 and (detail := problem(value, facts)) is not None]
        return Finding("; ".join(found)) if found else None
    return check


def _initializer(names: list[str]) -> Check:
    return _each_input(names, lambda v, f: None if f.initializer(v) else "is computed in the graph")


def _build_time(names: list[str]) -> Check:
    return _each_input(names, lambda v, f: None if f.build_time(v) else "is only known at run time")


def _rank(names: list[str], ranks: tuple[int, ...]) -> Check:
    def problem(value: ir.Value, facts: Facts) -> str | None:
        rank = facts.rank(value)
        return None if rank is None or rank in ranks else f"has rank {rank}"
    return _each_input(names, problem)


def _input0_rank(ranks: tuple[int, ...]) -> Check:
    def check(node: ir.Node, facts: Facts) -> Finding | None:
        rank = facts.rank(node.inputs[0])
        return None if rank is None or rank in ranks else Finding(f"input has rank {rank}")
    return check


def _equals(name: str, wanted: int) -> Check:
    """`name` must be `wanted`: an input (a build-time constant holding only `wanted`) or an attribute."""
    def check(node: ir.Node, facts: Facts) -> Finding | None:
        if facts.has_attribute(node, name):
            schema_default = facts.schema(node).attributes[name].default_value
            default = ir.from_proto(schema_default).value if schema_default.name else None
            value = facts.attribute(node, name, default)
            return None if value == wanted else Finding(f"`{name}` is {value}")
        value = facts.input(node, name)
        if value is None or not value.name:
            return None
        array = facts.constant(value)
        if array is None:
            return Finding(f"`{name}` is not a build-time constant")
        return None if np.all(array == wanted) else Finding(f"`{name}` holds {np.unique(array)[:4].tolist()}")
    return check


def _less_than(name: str, bound: int) -> Check:
    def check(node: ir.Node, facts: Facts) -> Finding | None:
        value = facts.input(node, name)
        array = facts.constant(value)
        if array is None:
            return Finding(f"`{name}` is computed at run time; TensorRT refuses it if it reaches {bound}", False)
        return None if np.all(array < bound) else Finding(f"`{name}` is {array.max()}")
    return check


def _absent_inputs(names: list[str]) -> Check:
    return _each_input(names, lambda v, f: "is given")


def _unused_outputs(names: list[str]) -> Check:
    def check(node: ir.Node, facts: Facts) -> Finding | None:
        used = [name for name in names if facts.used(facts.output(node, name))]
        return Finding(f"{', '.join(f'`{n}`' for n in used)} used") if used else None
    return check


def _later_outputs_unused(node: ir.Node, facts: Facts) -> Finding | None:
    used = [value.name for value in node.outputs[1:] if facts.used(value)]
    return Finding(f"outputs {used} are used") if used else None


def _absent_attributes(names: list[str]) -> Check:
    def check(node: ir.Node, facts: Facts) -> Finding | None:
        given = [name for name in names if facts.attribute(node, name) not in (None, 0, "")]
        return Finding(f"{', '.join(f'`{n}`' for n in given)} set") if given else None
    return check


def _attribute_in(attribute: str, default: str, allowed: list[str]) -> Check:
    def check(node: ir.Node, facts: Facts) -> Finding | None:
        value = facts.attribute(node, attribute, default)
        return None if value in allowed else Finding(f"`{attribute}` is {value!r}")
    return check


def _pooling_2d_3d(node: ir.Node, facts: Facts) -> Finding | None:
    kernel = facts.attribute(node, "kernel_shape")
    return None if kernel is None or len(kernel) in (2, 3) else Finding(f"{len(kernel)}D pooling")


def _dilations_ones(node: ir.Node, facts: Facts) -> Finding | None:
    dilations = facts.attribute(node, "dilations")
    return None if not dilations or all(d == 1 for d in dilations) else Finding(f"`dilations` is {list(dilations)}")


def _static_input(node: ir.Node, facts: Facts) -> Finding | None:
    value = node.inputs[0]
    return None if value.shape is None or facts.static(value) else Finding(f"input shape is {value.shape}")


def _symmetric_pads(node: ir.Node, facts: Facts) -> Finding | None:
    pads = list(facts.attribute(node, "pads") or [])
    half = len(pads) // 2
    return None if pads[:half] == pads[half:] else Finding(f"`pads` is {pads}")


def _not_training(node: ir.Node, facts: Facts) -> Finding | None:
    value = facts.input(node, "training_mode")
    if value is None or not value.name:
        return None
    array = facts.constant(value)
    if not facts.initializer(value) or array is None:
        return Finding("`training_mode` is computed in the graph")
    return None if not array.any() else Finding("`training_mode` is True")


def _same_activations(node: ir.Node, facts: Facts) -> Finding | None:
    activations = list(facts.attribute(node, "activations") or [])
    if facts.attribute(node, "direction", "forward") != "bidirectional" or not activations:
        return None
    half = len(activations) // 2
    return None if activations[:half] == activations[half:] else Finding(f"`activations` is {activations}")


def _axis_dimension_static(node: ir.Node, facts: Facts) -> Finding | None:
    shape = node.inputs[0].shape
    axis = facts.attribute(node, "axis", -1)
    if shape is None or not shape:
        return None
    return None if isinstance(shape[axis], int) else Finding(f"dimension {axis} is {shape[axis]}")


def _branch_outputs(same: Callable[[ir.Value, ir.Value], bool], what: str) -> Check:
    def check(node: ir.Node, facts: Facts) -> Finding | None:
        then, other = facts.attribute(node, "then_branch"), facts.attribute(node, "else_branch")
        if then is None or other is None:
            return None
        pairs = enumerate(zip(then.outputs, other.outputs, strict=False))
        found = [f"output {i}: {a.name} / {b.name}" for i, (a, b) in pairs if a.name == b.name or not same(a, b)]
        return Finding(f"{what} differ or names repeat at {found}") if found else None
    return check


def _same_rank(a: ir.Value, b: ir.Value) -> bool:
    return a.shape is None or b.shape is None or len(a.shape) == len(b.shape)


def _broadcastable(a: ir.Value, b: ir.Value) -> bool:
    if a.shape is None or b.shape is None:
        return True
    return all(x == y or 1 in (x, y) or not (isinstance(x, int) and isinstance(y, int))
               for x, y in zip(reversed(a.shape), reversed(b.shape), strict=False))


def _static_scan_length(node: ir.Node, facts: Facts) -> Finding | None:
    if len(node.outputs) <= len(node.inputs) - 2:  # no scan outputs: only the loop-carried values come out
        return None
    trip = node.inputs[0]
    if trip is not None and trip.name and facts.build_time(trip):
        return None
    return Finding("a loop with scan outputs has no trip count known when the engine is built")


def _carried_shapes_kept(node: ir.Node, facts: Facts) -> Finding | None:
    body = facts.attribute(node, "body")
    if body is None:
        return None
    changed = [i for i, (start, end) in enumerate(zip(body.inputs[2:], body.outputs[1:], strict=False))
               if facts.static(start) and facts.static(end) and start.shape != end.shape]
    return Finding(f"carried values {changed} change shape") if changed else None


def _seed_ignored(node: ir.Node, facts: Facts) -> Finding | None:
    return Finding("`seed` is set; TensorRT draws other numbers", False) if "seed" in node.attributes else None


def _iota_axes(node: ir.Node, facts: Facts) -> Finding | None:
    axes = facts.attribute(node, "axes")
    rank = facts.rank(node.inputs[0])
    if axes is None or rank is None:
        return None
    return None if list(axes) == list(range(rank)) else Finding(f"`axes` is {list(axes)}")


def _no_antialias(node: ir.Node, facts: Facts) -> Finding | None:
    return Finding("`antialias` is set") if facts.attribute(node, "antialias", 0) else None


def _real_signal(node: ir.Node, facts: Facts) -> Finding | None:
    shape = node.inputs[0].shape
    return None if shape is None or shape[-1] in (1,) or not isinstance(shape[-1], int) else Finding(
        f"the signal's last dimension is {shape[-1]} (complex)")


def _no_reduction(node: ir.Node, facts: Facts) -> Finding | None:
    reduction = facts.attribute(node, "reduction", "none")
    return None if reduction == "none" else Finding(f"`reduction` is {reduction!r}")


def _int64(names: list[str]) -> Check:
    return _each_input(names, lambda v, f: None if v.dtype in (None, ir.DataType.INT64) else f"is {v.dtype}")


PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], Check]]] = [
    (re.compile(r"(`\w+`)(?: and `\w+`)? must be an initializer", re.I), lambda m: _initializer(_names(m[0]))),
    (re.compile(r"`(\w+)` must be (?:a build-time constant|resolvable to a constant|a constant tensor)"),
     lambda m: _build_time(_names(m[0]))),
    (re.compile(r"`\w+` dimension of input must be a build-time constant"), lambda m: _axis_dimension_static),
    (re.compile(r"`is_training` must be an initializer and evaluate to False"), lambda m: _not_training),
    (re.compile(r"`(\w+)`(?: attribute)? must be (-?\d+|zero)"),
     lambda m: _equals(m[1], 0 if m[2] == "zero" else int(m[2]))),
    (re.compile(r"`(\w+)` input must be less than (\d+)"), lambda m: _less_than(m[1], int(m[2]))),
    (re.compile(r"(.+) inputs are unsupported"), lambda m: _absent_inputs(_names(m[1]))),
    (re.compile(r"(.+) outputs are unsupported|`(\w+)` output tensor unsupported"),
     lambda m: _unused_outputs(_names(m[0]))),
    (re.compile(r"Only the first output `\w+` is supported"), lambda m: _later_outputs_unused),
    (re.compile(r"(.+) attributes are unsupported"), lambda m: _absent_attributes(_names(m[1]))),
    (re.compile(r"(.+) must be 4D"), lambda m: _rank(_names(m[1]), (4,))),
    (re.compile(r"Input must be 4D input"), lambda m: _input0_rank((4,))),
    (re.compile(r"`(\w+)` must be INT64"), lambda m: _int64(_names(m[0]))),
    (re.compile(r"2D or 3D pooling only", re.I), lambda m: _pooling_2d_3d),
    (re.compile(r"`dilations` must be empty or all ones"), lambda m: _dilations_ones),
    (re.compile(r"`input` must have 1D or 2D spatial dimensions"), lambda m: _input0_rank((3, 4))),
    (re.compile(r"`input` must have static dimensions"), lambda m: _static_input),
    (re.compile(r"`pads` for the beginning and end along each spatial axis must be the same"),
     lambda m: _symmetric_pads),
    (re.compile(r"For bidirectional \w+, activation functions must be the same for both the forward and reverse "
                r"pass"), lambda m: _same_activations),
    (re.compile(r"Output tensors of the two conditional branches must have the same rank and must have different "
                r"names"), lambda m: _branch_outputs(_same_rank, "ranks")),
    (re.compile(r"Output tensors of the two conditional branches must have broadcastable shapes, and must have "
                r"different names"), lambda m: _branch_outputs(_broadcastable, "shapes")),
    (re.compile(r"Scan output length cannot be dynamic"), lambda m: _static_scan_length),
    (re.compile(r"The shape of Loop carried dependencies must be the same across all loop iterations"),
     lambda m: _carried_shapes_kept),
    (re.compile(r"`seed` value is ignored by TensorRT"), lambda m: _seed_ignored),
    (re.compile(r"Supported ([a-z ]+): (.+)"),
     lambda m: _attribute_in(*ATTRIBUTE_PHRASES[m[1]], NAMES.findall(m[2])) if m[1] in ATTRIBUTE_PHRASES else None),
    (re.compile(r"When `scales` is a tensor input, `axes` must be an iota vector of length rank\(input\)"),
     lambda m: _iota_axes),
    (re.compile(r"Antialiasing is not supported"), lambda m: _no_antialias),
    (re.compile(r"Input must be real-valued"), lambda m: _real_signal),
    (re.compile(r"`reduction`(?: other than `none`)? is not supported"), lambda m: _no_reduction),
]


def check_for(sentence: str) -> Check | None:
    """The check a Restrictions sentence states; None for a sentence no pattern knows. A descriptive sentence
    (DESCRIPTIVE) checks nothing."""
    if sentence in DESCRIPTIVE:
        return lambda node, facts: None
    for pattern, make in PATTERNS:
        match = pattern.fullmatch(sentence)
        if match is not None and (check := make(match)) is not None:
            return check
    return None
