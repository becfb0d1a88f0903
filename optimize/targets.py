"""The one list of graph passes — each name and the class that implements it, imported only when the pass runs, so
the command line lists them without loading one — and what each deployment target runs by default (docs/optimize.md
says why; `make bench` measures it). A new pass is one module in optimize/passes/ and one line here."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onebyone.optimize.passes.base import GraphPass

DEFAULT_TARGET = "generic"
PASSES: dict[str, str] = {  # name → "module:Class" in onebyone.optimize.passes (the class's `name` is the key)
    "cleanup": "cleanup:Cleanup",
    "fold_batchnorm": "fold_batchnorm:FoldBatchNorm",
    "fold_affine": "fold_affine:FoldAffine",
    "merge_conv_chain": "merge_conv_chain:MergeConvChain",
    "merge_siblings": "merge_siblings:MergeSiblings",
    "gemm_as_conv": "gemm_as_conv:GemmAsConv",
    "conv_as_gemm": "conv_as_gemm:ConvAsGemm",
    "fuse_conv_activation": "fuse_conv_activation:FuseConvActivation",
}


def pass_class(name: str) -> type[GraphPass]:
    module, cls = PASSES[name].split(":")
    return getattr(import_module(f"onebyone.optimize.passes.{module}"), cls)


# A merged sibling Conv is followed by a Split, which costs ORT's CPU kernels and TensorRT their Conv+Add+Relu
# fusion, so only `generic` (the smallest graph, for runtimes without fusions of their own) merges siblings.
PORTABLE = ("cleanup", "fold_batchnorm", "fold_affine", "merge_conv_chain")
TARGETS: dict[str, tuple[str, ...]] = {
    "generic": (*PORTABLE, "merge_siblings", "cleanup"),
    "ort": (*PORTABLE, "cleanup", "fuse_conv_activation"),
    "trt": (*PORTABLE, "cleanup"),
}
