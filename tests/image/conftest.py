"""Fixtures for image tests: real skopeo/umoci runners and an isolated layer cache."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.tools import require_tool

Runner = Callable[..., str]


def _runner(tool: str, *prefix: str) -> Runner:
    path = require_tool(tool)

    def run(*args: str | Path) -> str:
        done = subprocess.run(
            [path, *prefix, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"{tool} {args} failed ({done.returncode}):\n{done.stderr}")
        return done.stdout

    return run


@pytest.fixture
def skopeo() -> Runner:
    """Run skopeo; copies between local files need no signature policy."""
    return _runner("skopeo", "--insecure-policy")


@pytest.fixture
def umoci() -> Runner:
    return _runner("umoci")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never let a test write to the user's real cache directory."""
    cache = tmp_path / "mpkit-cache"
    monkeypatch.setenv("MPKIT_CACHE_DIR", str(cache))
    return cache
