"""Remembering engines that cannot run containers here: what counts as broken, what the
verdict is keyed by, how it expires, and how to forget it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mpkit.engine import Engine, EngineHealth, EngineKind
from mpkit.engine.health import container_never_started, daemon_unreachable, fingerprint
from tests.e2e.conftest import Mpkit, isolated_env

RLIMIT = (
    "Error: runc: runc create failed: unable to start container process: error during "
    "container init: error setting rlimits for ready process: error setting rlimit type 7: "
    "operation not permitted: OCI permission denied"
)


@pytest.mark.parametrize(
    ("status", "output", "engine_failed"),
    [
        (126, RLIMIT, True),
        (125, "Error: creating container storage: mount overlay: permission denied", True),
        (125, "docker: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
              "Is the docker daemon running?", True),
        (127, 'Error: runc: exec: "python3": executable file not found in $PATH', False),
        (126, 'Error: runc: exec: "python3": permission denied: OCI permission denied', False),
        (125, "Error: localhost/mpkit-definition:x: image not known", False),
        (1, "Traceback (most recent call last): ... SyntaxError", False),
        (2, "python3: can't open file '/io/runner.py'", False),
    ],
)  # fmt: skip
def test_an_engine_failure_is_told_from_a_failure_in_the_container(
    status: int, output: str, engine_failed: bool
) -> None:
    assert container_never_started(status, output) is engine_failed


def test_daemon_unreachable() -> None:
    assert daemon_unreachable("error during connect: Get http://%2F%2F.%2Fpipe: open failed")
    assert not daemon_unreachable("Error: initializing source: manifest unknown")


@pytest.fixture
def podman(tmp_path: Path) -> Engine:
    program = tmp_path / "bin" / "podman"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    return Engine(EngineKind.PODMAN, str(program))


def test_a_verdict_is_kept_and_read_back(podman: Engine, tmp_path: Path) -> None:
    health = EngineHealth(tmp_path / "state")
    assert health.verdict(podman) is None
    marked = health.mark_broken(podman, f"some output\n{RLIMIT}\n")
    found = health.verdict(podman)
    assert found == marked
    assert found.reason.endswith("operation not permitted: OCI permission denied")
    assert found.reason.startswith("…") and len(found.reason) <= 201  # one line, short
    assert found.describe(found.since + 7260).startswith(
        "podman could not run containers here 2 h 1 min ago (…"
    )
    assert EngineHealth(tmp_path / "state", recheck=True).verdict(podman) is None
    assert EngineHealth(tmp_path / "state").forget() == 1
    assert health.verdict(podman) is None


def test_a_verdict_expires_and_a_corrupt_one_is_ignored(podman: Engine, tmp_path: Path) -> None:
    health = EngineHealth(tmp_path / "state", ttl=3600)
    health.mark_broken(podman, "Error: broken")
    [record] = (tmp_path / "state").glob("*.json")
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "since": time.time() - 3601}))
    assert health.verdict(podman) is None
    assert not record.exists()  # expired: dropped
    health.mark_broken(podman, "Error: broken")
    record.write_text('{"engine": "podman", "reas')
    assert health.verdict(podman) is None
    health.mark_broken(podman, "Error: broken again")  # rewritten whole
    verdict = health.verdict(podman)
    assert verdict is not None and verdict.reason == "Error: broken again"


def test_the_verdict_is_keyed_by_what_decides_whether_the_engine_works(
    podman: Engine, tmp_path: Path
) -> None:
    config_home = tmp_path / "config"
    env = {"XDG_CONFIG_HOME": str(config_home)}
    before = fingerprint(podman, env)
    assert fingerprint(podman, env) == before
    # Pointing at a working configuration, or writing one, is a new situation.
    conf = tmp_path / "containers.conf"
    conf.write_text('[engine]\nruntime = "runc"\n')
    assert fingerprint(podman, {**env, "CONTAINERS_CONF": str(conf)}) != before
    (config_home / "containers").mkdir(parents=True)
    (config_home / "containers" / "containers.conf").write_text("[engine]\n")
    edited = fingerprint(podman, env)
    assert edited != before
    # So is another version of the program.
    Path(podman.program).write_text("#!/bin/sh\n# podman 5\n")
    os.utime(podman.program, (1, 1))
    assert fingerprint(podman, env) != edited


def test_docker_is_tried_again_once_its_daemon_listens(tmp_path: Path) -> None:
    program = tmp_path / "docker"
    program.write_text("#!/bin/sh\n")
    docker = Engine(EngineKind.DOCKER, str(program))
    socket_path = tmp_path / "docker.sock"
    env = {"DOCKER_HOST": f"unix://{socket_path}"}
    stopped = fingerprint(docker, env)
    socket_path.write_text("")  # what a starting daemon creates
    assert fingerprint(docker, env) != stopped


def test_cache_prune_forgets_the_verdicts(tmp_path: Path) -> None:
    user = tmp_path / "user"
    mpkit = Mpkit(root=user, env=isolated_env(user))
    program = tmp_path / "podman"
    program.write_text("#!/bin/sh\n")
    state = Path(mpkit.env["MPKIT_STATE_DIR"]) / "engines"
    EngineHealth(state).mark_broken(Engine(EngineKind.PODMAN, str(program)), "Error: broken")
    results = Path(mpkit.env["MPKIT_CACHE_DIR"]) / "describe" / "x" / "definitions"
    results.mkdir(parents=True)
    (results / "y.json").write_text("{}")
    pruned = mpkit.ok("cache", "prune", "--json").json()
    assert pruned["engine_verdicts_forgotten"] == 1
    assert list(state.glob("*.json")) == []
    assert (results / "y.json").exists()  # kept unless --all
    assert "forgot" not in mpkit.ok("cache", "prune").stdout
    mpkit.ok("cache", "prune", "--all")
    assert not (results / "y.json").exists()
