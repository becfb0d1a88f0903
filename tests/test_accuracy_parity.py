"""The accuracy-parity tests: every artifact of the pipeline — FP32 export, optimized, FP16, INT8 `trt`, INT8 `ort` —
against the torch reference through `onebyone parity`, each within its precision's bounds. digits_resnet on its
held-out test split (real labels: accuracy drops asserted; the pretrained Lite0 on ImageNet images goes through the
same command in `make demo`, tests/test_imagenet_accuracy.py); the INT8 files (default weights) also pass the kernel
check on whatever CPU runs the tests. Also the HTML report: it
parses, names the CPU, embeds its plots as PNG data, and refers to nothing outside itself."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

from onebyone.runtime.core.cpu import this_cpu
from onebyone.runtime.parity.kernel_check import KERNEL_TOLERANCE

ARTIFACTS = ["model.onnx", "model.opt.onnx", "model.opt.fp16.onnx", "model.opt.int8-trt.onnx",
             "model.opt.int8-ort.onnx"]
FP16_DROP, INT8_DROP = 0.25, 0.5  # points of held-out accuracy


def pipeline(bundle: Path, cli, calib: str) -> list[Path]:
    """optimize (--target trt: plain Conv/Add/Relu, quantizable), FP16, INT8 trt and ort from one calibration."""
    assert cli("optimize", bundle / "model.onnx", "-o", bundle / "model.opt.onnx", "--target", "trt")[0] == 0
    assert cli("quantize", bundle / "model.opt.onnx", "--precision", "fp16", "--calib", calib)[0] == 0
    assert cli("quantize", bundle / "model.opt.onnx", "--precision", "int8", "--calib", calib,
               "--flavour", "trt")[0] == 0
    assert cli("quantize", bundle / "model.opt.onnx", "--precision", "int8", "--calib",
               bundle / "model.opt.calib.json", "--flavour", "ort")[0] == 0
    return [bundle / name for name in ARTIFACTS]


class Document(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.references: list[str] = []
        self.rows = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        self.references += [v for k, v in attrs if k in ("href", "src") and v and not v.startswith("data:")]
        self.rows += tag == "tr"


def test_every_artifact_is_within_its_bounds_of_torch(bundle_copy, cli, tmp_path):
    bundle = bundle_copy("digits_resnet")
    artifacts = pipeline(bundle, cli, "digits")
    code, out, err = cli("parity", bundle, *artifacts, "--json", tmp_path / "parity.json",
                         "--report", tmp_path / "parity.html")
    assert code == 0, out + err
    report = json.loads((tmp_path / "parity.json").read_text())
    by_name = {Path(c["artifact"]).name: c for c in report["candidates"]}
    assert list(by_name) == ARTIFACTS
    assert [by_name[a]["precision"] for a in ARTIFACTS] == ["fp32", "fp32", "fp16", "int8", "int8"]
    assert report["cpu"] == this_cpu().as_record()
    for artifact, record in by_name.items():
        assert record["failures"] == [], f"{artifact}: {record['failures']}"
        assert record["layers"]["layers"], f"{artifact}: no layers compared"
        assert ("kernel" in record) == (record["precision"] == "int8"), artifact
    for artifact in ("model.opt.int8-trt.onnx", "model.opt.int8-ort.onnx"):  # default (safe) weights, this CPU
        kernel = by_name[artifact]["kernel"]
        assert kernel["ok"] and kernel["metrics"]["rel_l2"] <= KERNEL_TOLERANCE.max_rel_l2, (artifact, kernel)
        print(f"{artifact}: kernel check rel-L2 {kernel['metrics']['rel_l2']:.2e} on {this_cpu().describe()}")
    reference = by_name["model.onnx"]["metrics"]["accuracy_reference"]
    assert reference >= 0.97
    drops = {a: 100 * (reference - by_name[a]["metrics"]["accuracy_candidate"]) for a in ARTIFACTS}
    print(f"held-out accuracy {reference:.2%}; drops in points {drops}")
    assert drops["model.onnx"] == drops["model.opt.onnx"] == 0
    assert drops["model.opt.fp16.onnx"] <= FP16_DROP
    assert drops["model.opt.int8-trt.onnx"] <= INT8_DROP and drops["model.opt.int8-ort.onnx"] <= INT8_DROP
    document = Document()
    page = (tmp_path / "parity.html").read_text()
    document.feed(page)
    assert this_cpu().cpu_class in page
    assert document.rows == 1 + len(ARTIFACTS) and document.references == []
    assert len(document.images) == 3  # per-layer errors, output differences, calibration ranges
    for source in document.images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
