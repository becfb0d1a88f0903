"""Where trained weights, downloaded wheels and other reusable files are cached: $ONEBYONE_CACHE, else the user's
cache directory (platformdirs: `~/.cache/onebyone` on Linux, under $XDG_CACHE_HOME when set), so a command run from
any working directory finds what an earlier one trained or fetched."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    override = os.environ.get("ONEBYONE_CACHE")
    return Path(override) if override else Path(platformdirs.user_cache_dir("onebyone"))
