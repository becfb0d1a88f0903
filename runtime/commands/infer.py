"""`onebyone infer ARTIFACT --input x.npy|image.png ... [-o out.npy] [--top-k 5]`: run any artifact on files.

Images are preprocessed as the model's metadata says (resize, centre crop, normalise) and stacked into one batch;
`.npy` files hold model-ready arrays (C,H,W or N,C,H,W). Classifiers print the top-k classes per input with softmax
probabilities (and the class labels the bundle carries); `-o` saves the raw outputs (.npy for one output, .npz
keyed by name for several).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from onebyone.runtime.commands.arguments import add_session_options, positive_int
from onebyone.runtime.core.errors import UserError

stdout = Console(highlight=False, soft_wrap=True)


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    parser.add_argument("artifact", help=".onnx, .plan, bundle directory, zoo name or package.module:factory")
    parser.add_argument("--input", "-i", dest="inputs", type=Path, nargs="+", required=True,
                        help="PNG/JPEG images and/or .npy arrays, batched together in order (a model with a "
                             "dynamic H×W: one batch per size)")
    parser.add_argument("-o", "--output", type=Path, help="save the outputs (.npy, or .npz for several)")
    parser.add_argument("--top-k", type=positive_int, default=5, help="classes to print per input (default 5)")
    add_session_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from onebyone.runtime.sessions.file_inputs import class_shares, load_inputs, save_outputs, top_classes
    from onebyone.runtime.sessions.opening import open as open_session

    if args.output is not None and args.output.suffix not in (".npy", ".npz"):
        raise UserError(f"-o {args.output}: use a .npy (one output) or .npz file")
    if missing := [str(path) for path in args.inputs if not Path(path).exists()]:  # before the model is opened
        raise UserError("; ".join(f"input {path} does not exist" for path in missing))
    with open_session(args.artifact, args.backend, providers=args.providers, self_check=args.self_check) as session:
        if len(session.inputs) != 1:
            raise UserError(f"{session.target.label} has {len(session.inputs)} inputs; infer feeds one-input models")
        if args.output is not None and args.output.suffix == ".npy" and len(session.outputs) > 1:
            raise UserError(f"the model has {len(session.outputs)} outputs; save them with -o FILE.npz")
        stdout.print(f"{session.describe()}\n{session.self_check_note}")
        groups = [(labels, "x".join(map(str, batch.shape[1:])), session.run({session.inputs[0].name: batch}))
                  for batch, labels in load_inputs(args.inputs, session)]
    if args.output is not None:
        outputs = groups[0][2] if len(groups) == 1 else {  # one batch per input size: keyed NAME@CxHxW (the input's)
            f"{name}@{size}": value for _, size, out in groups for name, value in out.items()}
        save_outputs(args.output, outputs)
        stdout.print(f"outputs {', '.join(f'{k} {list(v.shape)}' for k, v in outputs.items())} → {args.output}")
    names = session.model.labels
    classes = session.outputs[0].shape[1] if len(session.outputs[0].shape) > 1 else None

    def shown(c: int) -> str:  # the class, and its label where the model has one per class that says more
        named = names is not None and len(names) == classes and names[c] != str(c)
        return f"class {c}" + (f" ({names[c]})" if named else "")

    for labels, _, outputs in groups:
        scores = next(iter(outputs.values()))
        if session.model.task == "classification":
            for label, best in zip(labels, top_classes(scores, min(args.top_k, scores.shape[-1])), strict=True):
                ranked = "  ".join(f"{rank}. {shown(c)} {p:.4f}" for rank, (c, p) in enumerate(best, start=1))
                stdout.print(f"{label}: {ranked}")
        elif session.model.task == "segmentation":
            for label, shares in zip(labels, class_shares(scores, args.top_k), strict=True):
                size = "x".join(map(str, scores.shape[2:]))
                stdout.print(f"{label}: {size} pixels: " + "  ".join(f"{shown(c)} {share:.1%}" for c, share in shares))
    return 0
