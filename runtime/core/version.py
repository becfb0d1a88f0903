"""The onebyone version (pyproject.toml reads it from here), and the TensorRT installed beside it."""

from importlib.metadata import PackageNotFoundError, version

__version__ = "0.1.0"


def installed_tensorrt() -> str | None:
    """The installed `tensorrt` package's version, or None (read from its metadata: TensorRT is not imported)."""
    try:
        return version("tensorrt")
    except PackageNotFoundError:
        return None
