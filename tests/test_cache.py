"""One cache per user (runtime/core/cache.py): the same folder from every working directory, `$ONEBYONE_CACHE` over
it, `$XDG_CACHE_HOME` honoured on Linux."""

from __future__ import annotations

import sys

import pytest

from onebyone.runtime.core.cache import cache_dir


def test_the_cache_does_not_follow_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("ONEBYONE_CACHE", raising=False)
    here = cache_dir()
    monkeypatch.chdir(tmp_path)
    assert cache_dir() == here and here.is_absolute() and tmp_path not in here.parents


def test_onebyone_cache_overrides_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ONEBYONE_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_CACHE_HOME is Linux's convention")
def test_xdg_cache_home_is_honoured(tmp_path, monkeypatch):
    monkeypatch.delenv("ONEBYONE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "onebyone"
