"""Fixtures shared by the registry client's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Mpkit, isolated_env


@pytest.fixture
def cli(tmp_path: Path) -> Mpkit:
    """The real `python -m mpkit`, with home, docker config and state under tmp_path."""
    root = tmp_path / "user"
    return Mpkit(root=root, env=isolated_env(root))
