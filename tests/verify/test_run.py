"""`mpkit run` against podman: what a cloud proxy does with the image."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Mpkit
from tests.fixtures.podman import Podman, isolated_podman
from tests.fixtures.registry import RegistryServer
from tests.verify.conftest import alice, pack_for, podman_env, push, sdk_image, small_image

MiB = 1024 * 1024


def containers(engine: Podman) -> list[str]:
    out = engine.run("ps", "--all", "--filter", "label=io.mpkit.run", "--format", "{{.Names}}")
    return out.stdout.split()


def test_run_pulls_anonymously_answers_and_cleans_up(
    registry_open: RegistryServer, fresh_podman: Podman, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_open, "mp/run", sdk_image())
    pack = pack_for(tmp_path, pushed)
    assert not fresh_podman.image_exists(pushed.pinned)

    result = mpkit.run("run", "--json", str(pack), env=podman_env(fresh_podman))
    assert result.returncode == 0, result.output
    data = result.json()
    assert data["found_locally"] is False and data["pulled"] is True
    assert data["engine"] == "podman"
    assert data["image"] == pushed.pinned
    assert data["api_version"] == {"major": 1, "minor": 0, "maintenance": 0}
    assert (data["memory_mb"], data["memory_swap_mb"]) == (1024, 1536)
    assert data["kept"] is False
    assert fresh_podman.image_exists(pushed.pinned)
    assert containers(fresh_podman) == []


def test_run_denied_pull_explains_the_fixes(
    registry_token: RegistryServer, fresh_podman: Podman, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_token, "private/mp/run-denied", small_image(tmp_path),
                  credential=alice(registry_token))  # fmt: skip
    result = mpkit.run("run", str(pack_for(tmp_path, pushed)), env=podman_env(fresh_podman))
    assert result.returncode == 1
    assert "anonymously" in result.stderr
    assert "make the repository public" in result.stderr and "preload" in result.stderr
    assert containers(fresh_podman) == []


@pytest.fixture(scope="module")
def shared_podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """One storage for the tests below, so the base layer is pulled once."""
    with isolated_podman(tmp_path_factory, "podman-run") as engine:
        yield engine


def test_keep_and_memory_from_the_project(
    registry_open: RegistryServer, shared_podman: Podman, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_open, "mp/keep", sdk_image())
    pack = pack_for(tmp_path, pushed, config={"default_memory_limit": 768})
    result = mpkit.run("run", "--keep", "--json", str(pack), env=podman_env(shared_podman))
    assert result.returncode == 0, result.output
    data = result.json()
    try:
        assert data["kept"] is True
        assert (data["memory_mb"], data["memory_swap_mb"]) == (768, 1280)
        assert data["memory_source"].endswith("config.json")
        with urllib.request.urlopen(f"{data['url']}/apiVersion", timeout=10) as response:
            assert json.loads(response.read()) == data["api_version"]
        host = json.loads(shared_podman.run("inspect", data["container"]).stdout)[0]["HostConfig"]
        assert (host["Memory"], host["MemorySwap"]) == (768 * MiB, 1280 * MiB)
    finally:
        shared_podman.run("rm", "--force", "--time", "0", data["container"], check=False)

    text = mpkit.ok("run", "--memory", "512", str(pack), env=podman_env(shared_podman))
    assert "512 MB, swap 512 MB more (--memory)" in text.stdout
    assert containers(shared_podman) == []


def test_container_that_exits_is_reported(
    registry_open: RegistryServer, shared_podman: Podman, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_open, "mp/exits", sdk_image(cmd=["sh", "-c", "echo broken >&2; exit 3"]))
    result = mpkit.run("run", str(pack_for(tmp_path, pushed)), env=podman_env(shared_podman))
    assert result.returncode == 1
    assert "stopped before answering" in result.stderr
    assert "broken" in result.stderr
    assert containers(shared_podman) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_removes_the_container(
    registry_open: RegistryServer,
    shared_podman: Podman,
    tmp_path: Path,
    mpkit: Mpkit,
    signum: signal.Signals,
) -> None:
    pushed = push(registry_open, "mp/silent", sdk_image(cmd=["sleep", "600"]))
    pack = pack_for(tmp_path, pushed)
    argv = [sys.executable, "-m", "mpkit", "run", "--timeout", "120", str(pack)]
    env = {**mpkit.env, **podman_env(shared_podman)}
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, text=True) as proc:  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not _running(shared_podman) and time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.2)
            assert _running(shared_podman), "the container never started"
            proc.send_signal(signum)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 1
    assert "cancelled" in stderr
    assert containers(shared_podman) == []


def _running(engine: Podman) -> bool:
    out = engine.run("ps", "--filter", "label=io.mpkit.run", "--filter", "status=running",
                     "--format", "{{.Names}}")  # fmt: skip
    return bool(out.stdout.split())
