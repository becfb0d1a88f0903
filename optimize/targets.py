"""The graph passes by name, and what each deployment target runs by default (docs/optimize.md says why; `make bench`
measures it). Names only, so the command line lists them without loading a pass; optimize/pipeline.py maps each name
to its pass class (tests/test_optimize.py checks the two agree)."""

from __future__ import annotations

PASS_NAMES = ("cleanup", "fold_batchnorm", "fold_affine", "merge_conv_chain", "merge_siblings", "gemm_as_conv",
              "conv_as_gemm", "fuse_conv_activation")

# A merged sibling Conv is followed by a Split, which costs ORT's CPU kernels and TensorRT their Conv+Add+Relu
# fusion, so only `generic` (the smallest graph, for runtimes without fusions of their own) merges siblings.
PORTABLE = ("cleanup", "fold_batchnorm", "fold_affine", "merge_conv_chain")
TARGETS: dict[str, tuple[str, ...]] = {
    "generic": (*PORTABLE, "merge_siblings", "cleanup"),
    "ort": (*PORTABLE, "cleanup", "fuse_conv_activation"),
    "trt": (*PORTABLE, "cleanup"),
}
