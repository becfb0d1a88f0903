"""Writing files so that a failure never leaves a half-written artifact behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from onebyone.runtime.core.errors import UserError


def ensure_writable_dir(directory: Path) -> None:
    """Create `directory` if needed and prove a file can be written there, before any slow work starts."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".onebyone-probe-"):
            pass
    except OSError as err:
        reason = err.strerror or str(err)
        raise UserError(f"cannot write to {directory}: {reason}; choose another output location with -o") from None


@contextlib.contextmanager
def staging_dir(destination: Path) -> Iterator[Path]:
    """Yield an empty directory beside `destination` for building files; it is removed afterwards in every case.

    Files staged there are moved into place with `publish`, so readers never see a partial file.
    """
    ensure_writable_dir(destination)
    stage = Path(tempfile.mkdtemp(dir=destination, prefix=".onebyone-stage-"))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(staged: Path, destination: Path) -> None:
    """Atomically move a fully written file onto its final path (same filesystem, so `os.replace` is a rename).

    Temporary files are created private (0600); the published file gets the permissions `open()` would give it.
    """
    os.chmod(staged, 0o666 & ~_umask())
    os.replace(staged, destination)


@contextlib.contextmanager
def atomic_write(destination: Path) -> Iterator[Path]:
    """Yield a temporary path beside `destination`; rename it onto `destination` only if the block succeeds."""
    ensure_writable_dir(destination.parent)
    fd, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        publish(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
