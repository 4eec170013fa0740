"""Fixtures: an isolated credential environment, a fake helper, and a real `pass` store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.passstore import PassStore

FAKE_HELPER = r'''
"""docker-credential-fake: a file-backed helper that logs how it was called."""
import json, os, sys, time

mode = os.environ.get("FAKE_HELPER_MODE", "")
verb = sys.argv[1] if len(sys.argv) > 1 else ""
stdin = sys.stdin.read()
with open(log_path, "a") as log:
    log.write(json.dumps({"argv": sys.argv, "env": dict(os.environ), "verb": verb}) + "\n")
try:
    with open(store_path) as f:
        store = json.load(f)
except FileNotFoundError:
    store = {}

if mode == "hang":
    time.sleep(30)
if mode == "fail":
    sys.stderr.write("helper exploded while handling: " + stdin + "\n")
    sys.exit(3)
if mode == "badjson":
    print("this is not json " + json.dumps(store))
    sys.exit(0)
if mode == "deepjson":
    print("[" * 100000)
    sys.exit(0)
if verb == "get":
    entry = store.get(stdin)
    if entry is None:
        if mode == "empty-not-found":
            print(json.dumps({"ServerURL": stdin, "Username": "", "Secret": ""}))
            sys.exit(0)
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({"ServerURL": stdin, **entry}))
elif verb == "store":
    payload = json.loads(stdin)
    store[payload["ServerURL"]] = {"Username": payload["Username"], "Secret": payload["Secret"]}
elif verb == "erase":
    if stdin not in store:
        print("credentials not found in native keychain")
        sys.exit(1)
    del store[stdin]
elif verb == "list":
    print(json.dumps({k: v["Username"] for k, v in store.items()}))
else:
    print("unknown verb " + verb)
    sys.exit(2)
with open(store_path, "w") as f:
    json.dump(store, f)
'''


@dataclass
class CredEnv:
    """Paths of an isolated credential setup (all under tmp_path)."""

    root: Path
    docker_config_dir: Path
    runtime_dir: Path
    config_home: Path
    home: Path

    @property
    def config_path(self) -> Path:
        return self.docker_config_dir / "config.json"

    @property
    def runtime_auth(self) -> Path:
        return self.runtime_dir / "containers" / "auth.json"

    @property
    def fallback_auth(self) -> Path:
        return self.config_home / "containers" / "auth.json"

    def write_config(self, data: dict[str, Any]) -> Path:
        self.docker_config_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(data, indent=2))
        return self.config_path

    def read_config(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.config_path.read_text())
        return data


@pytest.fixture
def cred_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CredEnv:
    """Point every credential location at tmp_path; the real ~ is never touched."""
    env = CredEnv(
        root=tmp_path,
        docker_config_dir=tmp_path / "docker",
        runtime_dir=tmp_path / "run",
        config_home=tmp_path / "xdg-config",
        home=tmp_path / "home",
    )
    env.home.mkdir()
    monkeypatch.setenv("HOME", str(env.home))
    monkeypatch.setenv("DOCKER_CONFIG", str(env.docker_config_dir))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(env.runtime_dir))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(env.config_home))
    for name in ("REGISTRY_AUTH_FILE", "MPKIT_REGISTRY_USERNAME", "MPKIT_REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return env


@dataclass
class FakeHelper:
    """The fake helper's on-disk store and call log."""

    store_path: Path
    log_path: Path

    def calls(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def stored(self) -> dict[str, Any]:
        if not self.store_path.exists():
            return {}
        data: dict[str, Any] = json.loads(self.store_path.read_text())
        return data

    def seed(self, server_url: str, username: str, secret: str) -> None:
        store = self.stored()
        store[server_url] = {"Username": username, "Secret": secret}
        self.store_path.write_text(json.dumps(store))


MakeFakeHelper = Callable[[str], FakeHelper]


@pytest.fixture
def make_fake_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MakeFakeHelper:
    """Factory: `docker-credential-<name>` on PATH, backed by its own JSON file in tmp_path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv("FAKE_HELPER_MODE", raising=False)

    def make(name: str) -> FakeHelper:
        helper = FakeHelper(tmp_path / f"{name}-store.json", tmp_path / f"{name}.log")
        script = bin_dir / f"docker-credential-{name}"
        paths = f"store_path = {str(helper.store_path)!r}\nlog_path = {str(helper.log_path)!r}\n"
        script.write_text(f"#!{sys.executable}\n{paths}{FAKE_HELPER}")
        script.chmod(0o755)
        return helper

    return make


@pytest.fixture
def fake_helper(make_fake_helper: MakeFakeHelper) -> FakeHelper:
    """`docker-credential-fake` on PATH."""
    return make_fake_helper("fake")


@pytest.fixture
def pass_env(pass_store: PassStore, monkeypatch: pytest.MonkeyPatch) -> PassStore:
    monkeypatch.setenv("GNUPGHOME", pass_store.gnupghome)
    monkeypatch.setenv("PASSWORD_STORE_DIR", pass_store.store_dir)
    return pass_store


@dataclass
class HelperCall:
    argv: list[str]
    env: dict[str, str] | None
    stdin: bytes


@pytest.fixture
def helper_calls(monkeypatch: pytest.MonkeyPatch) -> list[HelperCall]:
    """Records every helper process mpkit starts (argv, env, stdin) and then runs it for real."""
    calls: list[HelperCall] = []
    real_run = subprocess.run

    def recording_run(args: Any, *rest: Any, **kwargs: Any) -> Any:
        argv = [str(a) for a in args]
        if Path(argv[0]).name.startswith("docker-credential-"):
            env = kwargs.get("env")
            calls.append(HelperCall(argv, dict(env) if env else None, kwargs.get("input") or b""))
        return real_run(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording_run)
    return calls
