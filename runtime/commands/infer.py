"""`onebyone infer ARTIFACT --input x.npy|image.png ... [-o out.npy] [--top-k 5]`: run any artifact on files.

Images are preprocessed as the model's metadata says (resize, centre crop, normalise) and stacked into one batch;
`.npy` files hold model-ready arrays (C,H,W or N,C,H,W). Classifiers print the top-k classes per input with softmax
probabilities (and the class labels the bundle carries); `-o` saves the raw outputs (.npy for one output, .npz
keyed by name for several).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from rich.console import Console

from onebyone.runtime.bundle.labelled import top_k
from onebyone.runtime.bundle.preprocess import IMAGE_SUFFIXES, load_image
from onebyone.runtime.commands.arguments import positive_int
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.core.files import atomic_write
from onebyone.runtime.sessions.base import Session
from onebyone.runtime.sessions.opening import BACKENDS
from onebyone.runtime.sessions.opening import open as open_session

stdout = Console(highlight=False, soft_wrap=True)


BACKEND_HELP = ("auto (default): zoo name → torch, .plan → tensorrt, .onnx/bundle → onnxruntime, or openvino where "
                "`make bench` measured it faster for the artifact's kind on this CPU's class (a bf16 artifact: "
                "openvino); openvino needs onebyone[openvino]")


def backend_list(text: str) -> list[str]:
    """A comma-separated list of backends, e.g. `torch,onnxruntime,openvino`."""
    backends = text.split(",")
    if unknown := [b for b in backends if b not in BACKENDS]:
        raise argparse.ArgumentTypeError(f"unknown backend {unknown[0]!r}: choose from {', '.join(BACKENDS)}")
    return backends


def add_session_options(parser: argparse.ArgumentParser, self_check_flag: bool = True,
                        backend_per_artifact: bool = False) -> None:
    """--backend (one, or with `backend_per_artifact` a comma-separated list, one per artifact), --providers and
    (unless the command always checks) --no-self-check, for commands that open sessions."""
    if backend_per_artifact:
        parser.add_argument("--backend", type=backend_list, default=["auto"],
                            help=f"one backend for all artifacts, or one per artifact in order, e.g. "
                                 f"torch,onnxruntime,openvino; {BACKEND_HELP}")
    else:
        parser.add_argument("--backend", choices=BACKENDS, default="auto", help=BACKEND_HELP)
    parser.add_argument("--providers", type=lambda text: [p for p in text.split(",") if p],
                        help="onnxruntime execution providers in order, e.g. cuda,cpu (default: the best available)")
    if self_check_flag:
        parser.add_argument("--no-self-check", dest="self_check", action="store_false",
                            help="do not verify a bundle artifact against its golden outputs when opening it")


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    parser.add_argument("artifact", help=".onnx, .plan, bundle directory, zoo name or package.module:factory")
    parser.add_argument("--input", "-i", dest="inputs", type=Path, nargs="+", required=True,
                        help="PNG/JPEG images and/or .npy arrays, batched together in order")
    parser.add_argument("-o", "--output", type=Path, help="save the outputs (.npy, or .npz for several)")
    parser.add_argument("--top-k", type=positive_int, default=5, help="classes to print per input (default 5)")
    add_session_options(parser)
    parser.set_defaults(run=run)


def load_inputs(paths: list[Path], session: Session) -> tuple[np.ndarray, list[str]]:
    """One batch from image and .npy files, and a label per sample."""
    arrays: list[np.ndarray] = []
    labels: list[str] = []
    for path in paths:
        if not path.is_file():
            raise UserError(f"input {path} does not exist")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            if session.model.preprocess is None:
                raise UserError(f"{session.target.label} records no preprocessing, so images cannot be fed to it; "
                                "pass a model-ready .npy instead")
            arrays.append(load_image(path, session.model.preprocess)[None])
            labels.append(path.name)
        elif path.suffix.lower() == ".npy":
            try:
                array = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as err:
                raise UserError(f"cannot read {path}: {err}") from None
            rank = len(session.inputs[0].shape)
            array = array[None] if array.ndim == rank - 1 else array
            arrays.append(array)
            labels.extend([path.name] if len(array) == 1 else [f"{path.name}[{i}]" for i in range(len(array))])
        else:
            raise UserError(f"input {path}: expected {', '.join(IMAGE_SUFFIXES)} or .npy")
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise UserError(f"the inputs have different sample shapes {sorted(shapes)}; they cannot form one batch")
    return np.concatenate(arrays), labels


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def top_classes(scores: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """Per row: (class, softmax probability) for the k highest scores, best first."""
    probabilities = softmax(scores.astype(np.float64))
    return [[(int(c), float(probabilities[row, c])) for c in classes]
            for row, classes in enumerate(top_k(scores, k))]


def save_outputs(path: Path, outputs: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    if len(outputs) == 1:
        np.save(buffer, next(iter(outputs.values())))
    else:
        np.savez(buffer, **outputs)
    with atomic_write(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def run(args: argparse.Namespace) -> int:
    if args.output is not None and args.output.suffix not in (".npy", ".npz"):
        raise UserError(f"-o {args.output}: use a .npy (one output) or .npz file")
    with open_session(args.artifact, args.backend, providers=args.providers, self_check=args.self_check) as session:
        if len(session.inputs) != 1:
            raise UserError(f"{session.target.label} has {len(session.inputs)} inputs; infer feeds one-input models")
        if args.output is not None and args.output.suffix == ".npy" and len(session.outputs) > 1:
            raise UserError(f"the model has {len(session.outputs)} outputs; save them with -o FILE.npz")
        stdout.print(f"{session.describe()}\n{session.self_check_note}")
        batch, labels = load_inputs(args.inputs, session)
        outputs = session.run({session.inputs[0].name: batch})
    if args.output is not None:
        save_outputs(args.output, outputs)
        stdout.print(f"outputs {', '.join(f'{k} {list(v.shape)}' for k, v in outputs.items())} → {args.output}")
    if session.model.task == "classification":
        scores = next(iter(outputs.values()))
        names = session.model.labels if session.model.labels and len(session.model.labels) == scores.shape[-1] \
            else None

        def shown(c: int) -> str:  # the class, and its label where the model has one that says more
            return f"class {c}" + (f" ({names[c]})" if names is not None and names[c] != str(c) else "")

        for label, best in zip(labels, top_classes(scores, min(args.top_k, scores.shape[-1])), strict=True):
            ranked = "  ".join(f"{rank}. {shown(c)} {p:.4f}" for rank, (c, p) in enumerate(best, start=1))
            stdout.print(f"{label}: {ranked}")
    return 0
