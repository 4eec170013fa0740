"""Run the real `mpkit` command in a subprocess with an isolated home, config and cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Mpkit:
    """`python -m mpkit` with every user-level location under one tmp dir."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def docker_config(self) -> Path:
        return self.root / "docker" / "config.json"

    def run(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        cwd: Path | None = None,
    ) -> CommandResult:
        argv = [sys.executable, "-m", "mpkit", *args]
        full_env = {**self.env, **(env or {})}
        stdin = None if input is not None else subprocess.DEVNULL
        proc = subprocess.run(
            argv, input=input, stdin=stdin, env=full_env, capture_output=True, text=True,
            timeout=timeout, check=False, cwd=cwd,
        )  # fmt: skip
        return CommandResult(argv, proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, **kwargs: Any) -> CommandResult:
        result = self.run(*args, **kwargs)
        assert result.returncode == 0, f"mpkit {' '.join(args)} failed:\n{result.output}"
        return result


def isolated_env(root: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent environment minus anything that would leak the developer's setup."""
    drop = (
        "DOCKER_CONFIG",
        "REGISTRY_AUTH_FILE",
        "MPKIT_",
        "XDG_",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    home = root / "home"
    for sub in ("home", "docker", "run", "state", "cache", "xdg-config"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    env.update({
        "HOME": str(home),
        "DOCKER_CONFIG": str(root / "docker"),
        "XDG_RUNTIME_DIR": str(root / "run"),
        "XDG_CONFIG_HOME": str(root / "xdg-config"),
        "MPKIT_STATE_DIR": str(root / "state"),
        "MPKIT_CACHE_DIR": str(root / "cache"),
        "COLUMNS": "200",
        "MPKIT_DAEMON": "off",  # tests/buildserver turn the resident build server on
    })  # fmt: skip
    env.update(extra or {})
    return env


@pytest.fixture
def mpkit(tmp_path: Path) -> Mpkit:
    root = tmp_path / "user"
    return Mpkit(root=root, env=isolated_env(root))


def creds_env(users: Mapping[str, str], user: str = "alice") -> dict[str, str]:
    return {"MPKIT_REGISTRY_USERNAME": user, "MPKIT_REGISTRY_PASSWORD": users[user]}


def blob_files(layout: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir()}


def flags_for(*args: Sequence[str]) -> list[str]:
    return [a for group in args for a in group]
