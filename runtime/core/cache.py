"""Where trained weights are cached: $ONEBYONE_CACHE, else build/cache under the working directory."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("ONEBYONE_CACHE", "build/cache"))
