"""Progress display for long work (export, training, calibration, builds); drawn on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

_stderr = Console(stderr=True)


def progress() -> Progress:
    """A rich Progress on stderr: spinner, description, bar, n/total, elapsed time. Use as a context manager."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_stderr,
    )
