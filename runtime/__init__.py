"""onebyone.runtime: the layers under and around the pipeline's stages.

Layers, bottom to top; a module may import its own layer and those its layer lists (tests/test_layers.py keeps it,
docs/architecture.md explains it):

- `runtime.core`      errors, files (atomic writes, hashes), progress, the CPU, the ONNX Runtime session helper,
                      the cache folder, timing, version.
- `runtime.bundle`    what lies in a bundle folder: manifest, the tolerance table, golden and labelled data, the data
                      sources, the digits split, preprocessing, tensor specs, ONNX file helpers, the TensorRT plan
                      record, the INT8 overflow rule.
- `runtime.preflight` what a consumer's parser takes, known without it: TensorRT's ONNX parser tables per release,
                      the rules beside them, and `lint`.
- `runtime.parity`    measuring close enough: the one comparison, artifact and kernel checks, per-layer
                      localisation, the report.
- `export`, `optimize` the stages (onebyone.export, onebyone.optimize): they use core, bundle and parity only.
- `runtime.sessions`  `open()`: locating a target, choosing its engine, the Session base, one module per backend,
                      the self-check.
- `runtime.serve`     the KServe v2 / Triton server (HTTP, gRPC), dynamic batching, statistics and metrics, Triton
                      model repositories.
- `runtime.commands`  the `onebyone` command line: the only layer that imports argparse, and the only one that may
                      import every other; a shell over the stages (options in, result printed).
- `api`               the public `onebyone` package (runtime/api): `open()` over sessions, and the stages as Python
                      functions (`onebyone.stages`, runtime/api/stages.py) over export, optimize and sessions.
"""

LAYERS: dict[str, tuple[str, ...]] = {
    "runtime.core": (),
    "runtime.bundle": ("runtime.core",),
    "runtime.preflight": ("runtime.core", "runtime.bundle"),
    "runtime.parity": ("runtime.core", "runtime.bundle"),
    "export": ("runtime.core", "runtime.bundle", "runtime.parity"),
    "optimize": ("runtime.core", "runtime.bundle", "runtime.preflight", "runtime.parity"),
    "runtime.sessions": ("runtime.core", "runtime.bundle", "runtime.preflight", "runtime.parity", "export"),
    "runtime.serve": ("runtime.core", "runtime.bundle", "runtime.preflight", "runtime.sessions"),
    "runtime.commands": ("runtime.core", "runtime.bundle", "runtime.preflight", "runtime.parity", "export", "optimize",
                         "runtime.sessions", "runtime.serve", "api"),
    "api": ("runtime.core", "runtime.bundle", "runtime.preflight", "runtime.parity", "export", "optimize",
            "runtime.sessions"),
}
