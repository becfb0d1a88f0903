"""README's demo block and `make demo`: run the demo into a scratch folder, and either compare its last lines with the
block (tests/test_readme.py) or write them into README.md (`python -m tests.readme_demo`, on the machine README
names).

Numbers and the CPU's description differ across machines (trained weights, int8 kernels), and so does the engine
`auto` opens an ONNX file on (ONNX Runtime or OpenVINO, per CPU class: runtime/sessions/choice.py), so the comparison
masks digits, the CPU and that engine; every line, label and verdict must match.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from onebyone.runtime.core.cpu import this_cpu

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
START, END = "<!-- demo -->\n```\n", "```\n<!-- /demo -->"
BUNDLE = "build/efficientnet_lite0"
FIRST = "labelled data: "  # the block starts at verify's first line
DEMO_IMAGES = 64  # the tests' demo run scores this many evaluation images in parity (the Makefile's default: 300)


def readme_block() -> list[str]:
    text = README.read_text()
    return text[text.index(START) + len(START):text.index(END)].splitlines()


def run_demo(scratch: Path, eval_samples: int | None = None) -> list[str]:
    """`make demo` with its bundle in `scratch` (its parity run on `eval_samples` images, default the Makefile's);
    stdout with the scratch path named as README does."""
    samples = [f"EVAL_SAMPLES={eval_samples}"] if eval_samples is not None else []
    done = subprocess.run(["make", "--no-print-directory", "demo", f"BUNDLE={scratch}/efficientnet_lite0", *samples],
                          cwd=REPO, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise AssertionError(f"make demo failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout.replace(f"{scratch}/efficientnet_lite0", BUNDLE).splitlines()


ENGINE_LINE = re.compile(r"^\s+(onnxruntime|openvino)\s+kernel check (PASS|FAIL)")


def masked(lines: list[str], cpu_description: str, cpu_class: str, same_class: bool = True) -> list[str]:
    """The lines with the CPU named as <cpu>/<cpu class>, the ONNX engine and its device as <engine>, the layer a
    localisation line names as <layer> (which layer quantization moves most differs with the trained weights) and
    every number as #."""
    out = []
    for line in lines:
        line = re.sub(r" on (onnxruntime|openvino) \(.*\)$", " on <engine>", line)
        line = line.replace(cpu_description, "<cpu>").replace(cpu_class, "<cpu class>")
        line = re.sub(r"(largest jump|first layer above rel-L2 \S+): \S+ \(\w+\)", r"\1: <layer>", line)
        if not same_class and ENGINE_LINE.match(line):  # which engine passes an INT8 file depends on the CPU class
            line = ENGINE_LINE.match(line).group(0).rsplit(" ", 1)[0] + " <verdict>"
        out.append(re.sub(r"\d+(\.\d+)?(e[+-]\d+)?", "#", line).rstrip())
    return out


def readme_cpu(block: list[str]) -> tuple[str, str]:
    """The CPU README's block was made on: its `cpu:` line, and the class in its parentheses."""
    description = next(line.removeprefix("cpu: ") for line in block if line.startswith("cpu: "))
    return description, re.search(r"\(([^()]+): [^()]*\)$", description).group(1)


def write(lines: list[str]) -> None:
    text = README.read_text()
    block = "\n".join(lines) + "\n"
    README.write_text(text[:text.index(START) + len(START)] + block + text[text.index(END):])


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        printed = run_demo(Path(scratch))
    tail = printed[printed.index(next(line for line in printed if line.startswith(FIRST))):]
    write(tail)
    print(f"README.md demo block: {len(tail)} lines from `make demo` on {this_cpu().describe()}", file=sys.stderr)
