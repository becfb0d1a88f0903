"""The parity report as one self-contained HTML file: a summary table, and matplotlib plots embedded as base64 PNG
(per-layer error per candidate, histogram of output differences, calibration ranges). No scripts, no external URLs.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from onebyone.runtime.core.files import atomic_write

STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}"
         "table{border-collapse:collapse;font-size:13px}"
         "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
         ".pass{color:#1a7f37;font-weight:bold}.fail{color:#cf222e;font-weight:bold}img{max-width:100%}")


def _finish(figure: Any, axis: Any, xlabel: str, ylabel: str, title: str) -> str:
    """Log-scale y, labels, legend, title; the figure as a PNG data URL (the figure is closed)."""
    import matplotlib.pyplot as plt

    axis.set_yscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=8)
    axis.set_title(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _layer_plot(records: list[dict[str, Any]]) -> str | None:
    import matplotlib.pyplot as plt

    with_layers = [r for r in records if r.get("layers")]
    if not with_layers:
        return None
    figure, axis = plt.subplots(figsize=(10, 4))
    for record in with_layers:
        errors = [max(layer["rel_l2"], 1e-9) for layer in record["layers"]["layers"]]
        axis.plot(errors, marker=".", label=f"{Path(record['artifact']).name} ({record['precision']})")
        first = record["layers"]["first_divergence"]
        if first is not None:
            index = [layer["tensor"] for layer in record["layers"]["layers"]].index(first["tensor"])
            axis.annotate(first["node"], (index, errors[index]), fontsize=7, rotation=20)
    return _finish(figure, axis, "layer (topological order of the FP32 graph)",
                   "relative L2 error vs FP32 graph\n(exact layers drawn at 1e-9)", "Per-layer error")


def _difference_plot(records: list[dict[str, Any]], reference: dict[str, np.ndarray]) -> str:
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4))
    for record in records:
        diffs = np.concatenate([(record["outputs"][k].astype(np.float64) - v).ravel() for k, v in reference.items()])
        diffs = diffs[np.isfinite(diffs)]
        axis.hist(diffs, bins=100, histtype="step", label=f"{Path(record['artifact']).name} ({record['precision']})")
    return _finish(figure, axis, "candidate − reference, every output element", "count", "Output differences")


def _calibration_plot(calibration: Path) -> str:
    import matplotlib.pyplot as plt

    raw = json.loads(calibration.read_text())
    tensors = raw["tensors"]
    names = list(tensors)
    observed = [max(abs(t["min"]), abs(t["max"])) for t in tensors.values()]
    chosen = [t["amax"] for t in tensors.values()]
    figure, axis = plt.subplots(figsize=(10, 4))
    axis.plot(observed, marker=".", label="max |x| observed")
    axis.plot(chosen, marker=".", label=f"amax ({raw['method']})")
    return _finish(figure, axis, f"tensor (of {len(names)}, topological order)", "range",
                   f"Calibration ranges: {calibration.name} ({raw['samples']} samples of {raw['source']})")


def _row(record: dict[str, Any]) -> str:
    m = record["metrics"]

    def number(value: float | None, form: str) -> str:
        return "—" if value is None else format(value, form)

    verdict = "<span class='fail'>FAIL</span>" if record["failures"] else "<span class='pass'>PASS</span>"
    first = (record.get("layers") or {}).get("first_divergence")
    agreement = m["top1_agreement"] if m["top1_agreement"] is not None else m["pixel_agreement"]
    accuracy = (_accuracy(record.get("accuracy")) if m["miou_candidate"] is None
                else f"mIoU {m['miou_candidate']:.2%} (reference {m['miou_reference']:.2%})")
    cells = [html.escape(record["artifact"]), record["precision"], verdict, number(m["max_rel"], ".2e"),
             number(m["rel_l2"], ".2e"), number(m["cosine"], ".6f"), number(agreement, ".2%"),
             number(m["top5_overlap"], ".2%"), accuracy,
             number((record.get("kernel") or {}).get("metrics", {}).get("rel_l2"), ".2e"),
             html.escape(f"{first['node']} ({first['rel_l2']:.2e})") if first else "—",
             html.escape("; ".join(record["failures"])) or "—"]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _per_output(records: list[dict[str, Any]]) -> list[str]:
    """A table of every output (and every output at another input size, NAME@CxHxW) of every candidate, when a
    model has more than one."""
    rows = [(record["artifact"], name, out) for record in records for name, out in record["metrics"]["outputs"].items()
            if len(record["metrics"]["outputs"]) > 1]
    if not rows:
        return []
    headers = ["artifact", "output @ input size", "max|diff|/max|ref|", "rel-L2", "cosine", "pixel argmax agree"]
    body = ["<h2>Per output and input size</h2><table><tr>" + "".join(f"<th>{h}</th>" for h in headers) + "</tr>"]
    for artifact, name, out in rows:
        agree = "—" if out["pixel_agreement"] is None else f"{out['pixel_agreement']:.2%}"
        cells = [html.escape(artifact), html.escape(name), f"{out['max_rel']:.2e}", f"{out['rel_l2']:.2e}",
                 f"{out['cosine']:.6f}", agree]
        body.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return [*body, "</table>"]


def _accuracy(accuracy: dict[str, Any] | None) -> str:
    """top-1 [95% interval] · top-5 · share of the reference's top-1, or — without labels."""
    if accuracy is None:
        return "—"
    low, high = accuracy["top1_interval"]
    return (f"{accuracy['top1']:.2%} [{low:.1%}–{high:.1%}] · top-5 {accuracy['top5']:.2%} · "
            f"{accuracy['share_of_reference']:.2%} of reference")


def write_report(path: Path, reference: str, data: str, cpu: str, records: list[dict[str, Any]],
                 reference_outputs: dict[str, np.ndarray], calibrations: list[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    headers = ["artifact", "precision", "verdict", "max|diff|/max|ref|", "rel-L2", "cosine", "top-1 (pixel) agree",
               "top-5 overlap", "accuracy", "kernel rel-L2 vs exact Q/DQ", "first divergence", "out of bounds"]
    figures = [_layer_plot(records), _difference_plot(records, reference_outputs),
               *[_calibration_plot(c) for c in calibrations]]
    reference_accuracy = next((r["reference_accuracy"] for r in records if r.get("reference_accuracy")), None)
    accuracy_line = ""
    if reference_accuracy is not None:
        low, high = reference_accuracy["top1_interval"]
        accuracy_line = (f"<br>reference accuracy: top-1 {reference_accuracy['top1']:.2%} [{low:.1%}–{high:.1%}], "
                         f"top-5 {reference_accuracy['top5']:.2%} ({reference_accuracy['samples']} images)")
    body = [f"<h1>onebyone parity</h1><p>reference: {html.escape(reference)}<br>data: {html.escape(data)}<br>"
            f"cpu: {html.escape(cpu)}{accuracy_line}</p>",
            "<table><tr>" + "".join(f"<th>{h}</th>" for h in headers) + "</tr>",
            *[_row(r) for r in records], "</table>", *_per_output(records),
            *[f"<p><img alt='plot' src='{figure}'></p>" for figure in figures if figure]]
    document = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>onebyone parity</title>"
                f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
    with atomic_write(path) as tmp:
        tmp.write_text(document)
