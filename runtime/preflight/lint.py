"""Will TensorRT take this ONNX file? Every node against each named release's parser table (operator, opset range,
types, the Restrictions cell: restrictions.py) and the Q/DQ contract (qdq_contract.py); the tensor-type notes of the
tables (UINT8 only at the network's inputs and outputs, DOUBLE cast down); and, for quantized files, what costs speed
by TensorRT's Q/DQ placement guidance (a warning, never a refusal). Runs without TensorRT."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path

import onnx
import onnx_ir as ir

from onebyone.runtime.bundle.onnx_file import load_model
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.preflight.facts import Facts
from onebyone.runtime.preflight.operators import DEFAULT, KNOWN, ParserTable, table
from onebyone.runtime.preflight.qdq_contract import QDQ, RULES
from onebyone.runtime.preflight.restrictions import check_for

TYPE_NAMES = {ir.DataType.FLOAT: "FP32", ir.DataType.FLOAT16: "FP16", ir.DataType.BFLOAT16: "BF16",
              ir.DataType.FLOAT8E4M3FN: "FP8", ir.DataType.FLOAT4E2M1: "FP4", ir.DataType.INT4: "INT4",
              ir.DataType.INT8: "INT8", ir.DataType.INT32: "INT32", ir.DataType.INT64: "INT64",
              ir.DataType.UINT8: "UINT8", ir.DataType.BOOL: "BOOL", ir.DataType.DOUBLE: "DOUBLE"}
TYPED_BY_OUTPUT = ("Constant", "ConstantOfShape", "RandomNormal", "RandomUniform", "EyeLike")
PLACEMENT = "TensorRT developer guide, explicit quantization: Q/DQ placement"
WEIGHTED = ("Conv", "ConvTranspose")


@dataclasses.dataclass(frozen=True)
class Problem:
    node: str
    op: str
    rule: str
    source: str
    found: str = ""
    fix: str = ""

    def line(self) -> str:
        return (f"{self.node or '(graph)'} [{self.op}]: {self.rule}" + (f" — {self.found}" if self.found else "")
                + (f"; fix: {self.fix}" if self.fix else "") + f" ({self.source})")


@dataclasses.dataclass(frozen=True)
class Verdict:
    tensorrt: str
    problems: tuple[Problem, ...]  # refusals: the parser or builder stops on each
    warnings: tuple[Problem, ...]  # accepted, but costs speed or differs in a stated way

    @property
    def accepted(self) -> bool:
        return not self.problems


@dataclasses.dataclass(frozen=True)
class Lint:
    file: str
    verdicts: tuple[Verdict, ...]

    @property
    def accepted(self) -> bool:
        return all(v.accepted for v in self.verdicts)

    @property
    def versions(self) -> list[str]:
        return [v.tensorrt for v in self.verdicts]

    def refusals(self) -> list[str]:
        return [f"TensorRT {v.tensorrt}: {p.line()}" for v in self.verdicts for p in v.problems]

    def record(self) -> dict:
        return {"file": self.file, "accepted": self.accepted, "tensorrt": {
            v.tensorrt: {"accepted": v.accepted, "problems": [dataclasses.asdict(p) for p in v.problems],
                         "warnings": [dataclasses.asdict(p) for p in v.warnings]} for v in self.verdicts}}


def versions_named(names: Iterable[str] | None) -> tuple[str, ...]:
    """The releases to lint for: `names` (each one of KNOWN), or DEFAULT."""
    chosen = tuple(names or DEFAULT)
    unknown = [name for name in chosen if name not in KNOWN]
    if unknown:
        raise UserError(f"no TensorRT parser table for {', '.join(unknown)}; known: {', '.join(KNOWN)}")
    return chosen


def lint_file(path: Path, versions: Iterable[str] | None = None) -> Lint:
    """Lint the ONNX file at `path` (UserError when it is not a readable, valid ONNX file)."""
    return lint_model(load_model(path), versions, str(path))


def lint_model(model: ir.Model, versions: Iterable[str] | None = None, name: str = "") -> Lint:
    chosen = versions_named(versions)
    model = _inlined(model)
    facts = Facts(model)
    nodes = list(_all_nodes(model.graph))
    return Lint(name or model.graph.name or "model", tuple(_verdict(table(v), model, nodes, facts) for v in chosen))


def _inlined(model: ir.Model) -> ir.Model:
    """Model-local functions expanded, as the parser expands them."""
    if not model.functions:
        return model
    return ir.serde.deserialize_model(onnx.inliner.inline_local_functions(ir.serde.serialize_model(model)))


def _all_nodes(graph: ir.Graph) -> Iterator[ir.Node]:
    for node in graph:
        yield node
        for attr in node.attributes.values():
            if attr.type == ir.AttributeType.GRAPH:
                yield from _all_nodes(attr.value)
            elif attr.type == ir.AttributeType.GRAPHS:
                for sub in attr.value:
                    yield from _all_nodes(sub)


def _verdict(parser: ParserTable, model: ir.Model, nodes: list[ir.Node], facts: Facts) -> Verdict:
    problems: list[Problem] = []
    warnings: list[Problem] = []
    cited = parser.cited
    low, high = parser.opsets
    opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 0))
    if not low <= opset <= high:
        problems.append(Problem("", "", f"the default-domain opset must be in {low}..{high}", cited,
                                f"opset {opset}", f"convert with onnx.version_converter to an opset in {low}..{high}"))
    for node in nodes:
        refused, warned = _node_findings(node, parser, facts)
        problems += refused
        warnings += warned
    problems += _uint8_inside(model, cited)
    warnings += _doubles(model, cited)
    if any(node.op_type in QDQ for node in nodes):
        warnings += _placement_warnings(model)
    return Verdict(parser.tensorrt, tuple(problems), tuple(warnings))


def _node_findings(node: ir.Node, parser: ParserTable, facts: Facts) -> tuple[list[Problem], list[Problem]]:
    name, op, cited = node.name or node.outputs[0].name, node.op_type, parser.cited
    if node.domain not in ("", "ai.onnx"):
        return [Problem(name, op, f"no importer for operators of domain {node.domain!r}", cited,
                        fix="a TensorRT plugin of that name, or rewrite with standard ONNX operators")], []
    entry = parser.operators.get(op)
    if entry is None or not entry.supported:
        note = " ".join(entry.restrictions) if entry is not None else ""
        return [Problem(name, op, f"TensorRT {parser.tensorrt} has no importer for {op}", cited,
                        fix=note or _QOPERATOR_FIX.get(op, "rewrite with supported operators"))], []
    refused, warned = [], []
    typed = node.outputs[0] if op in TYPED_BY_OUTPUT or not node.inputs else node.inputs[0]
    type_name = TYPE_NAMES.get(typed.dtype) if typed is not None and typed.dtype is not None else None
    if typed is not None and typed.dtype is not None and type_name != "DOUBLE" and type_name not in entry.types:
        fix = _INT32_BIAS_FIX if op == "DequantizeLinear" and type_name == "INT32" else ""
        refused.append(Problem(name, op, f"{op} supports {', '.join(entry.types)}", cited,
                               f"{typed.name} is {type_name or typed.dtype}", fix))
    for sentence in entry.restrictions:
        check = check_for(sentence)
        if check is None:
            warned.append(Problem(name, op, sentence, cited, "onebyone has no check for this restriction yet"))
        elif (finding := check(node, facts)) is not None:
            (refused if finding.refused else warned).append(Problem(name, op, sentence, cited, finding.detail))
    if op in QDQ:
        for rule in RULES:
            if _at_least(parser.tensorrt, rule.since) and (finding := rule.check(node, facts)) is not None:
                (refused if finding.refused else warned).append(
                    Problem(name, op, rule.text, rule.source(parser.tensorrt), finding.detail, rule.fix))
    return refused, warned


def _at_least(version: str, since: str) -> bool:
    return tuple(map(int, version.split("."))) >= tuple(map(int, since.split(".")))


_INT32_BIAS_FIX = ("TensorRT quantizes biases itself: keep the bias float (`onebyone adopt` folds an INT32 bias "
                   "DequantizeLinear into a float bias)")
_QOPERATOR_FIX = dict.fromkeys(
    ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"),
    "write the quantization as QuantizeLinear/DequantizeLinear around float operators (QDQ format): "
    "`onebyone quantize --flavour trt` from the float model")


def _uint8_inside(model: ir.Model, cited: str) -> list[Problem]:
    """The tables' note: UINT8 is only supported as network input or output tensor types."""
    return [Problem(node.name, node.op_type, "UINT8 is only supported as network input or output tensor types",
                    cited, f"{value.name} is UINT8",
                    "quantize to INT8 with zero point 0 (`onebyone adopt` shifts a symmetric UINT8 zero point 128)")
            for node in model.graph for value in node.outputs
            if value.dtype == ir.DataType.UINT8 and not value.is_graph_output()]


def _doubles(model: ir.Model, cited: str) -> list[Problem]:
    count = sum(value.dtype == ir.DataType.DOUBLE for node in model.graph for value in node.outputs)
    return [Problem("", "", "TensorRT casts DOUBLE down to FLOAT, clamping to ±FLT_MAX", cited,
                    f"{count} DOUBLE tensors", "compute in FLOAT")] if count else []


def _dequantized(value: ir.Value | None) -> bool:
    producer = value.producer() if value is not None else None
    return producer is not None and producer.op_type == "DequantizeLinear"


def _quantized_weighted(value: ir.Value) -> bool:
    """The output of a Conv read through DequantizeLinear, or of a constant (bias) Add after one: TensorRT fuses
    both into the convolution."""
    producer = value.producer()
    if producer is not None and producer.op_type == "Add" and any(v.const_value is not None for v in producer.inputs):
        producer = next(v for v in producer.inputs if v.const_value is None).producer()
    return producer is not None and producer.op_type in WEIGHTED and _dequantized(producer.inputs[0])


def _placement_warnings(model: ir.Model) -> list[Problem]:
    """Where a quantized file leaves TensorRT in float: a Conv not read through DequantizeLinear (a float island
    between INT8 layers), and an Add of two activations where one is neither dequantized nor the output of a
    quantized Conv (TensorRT fuses the other into the Conv; this one forces the Add to run in float)."""
    found = []
    for node in model.graph:
        if node.op_type in WEIGHTED and not _dequantized(node.inputs[0]):
            found.append(Problem(node.name, node.op_type, "a float layer between INT8 layers", PLACEMENT,
                                 "its input is not read through DequantizeLinear",
                                 "quantize its input, or keep it float on purpose"))
        if node.op_type == "Add" and all(v is not None and v.const_value is None for v in node.inputs):
            loose = [v.name for v in node.inputs if not (_dequantized(v) or _quantized_weighted(v))]
            if (loose and len(loose) < 2) or (loose and any(_quantized_weighted(v) for v in node.inputs)):
                found.append(Problem(node.name, "Add", "a residual Add whose inputs are not both quantized",
                                     PLACEMENT, f"{', '.join(loose)} reaches it in float",
                                     "put QuantizeLinear/DequantizeLinear on the skip input"))
    return found
