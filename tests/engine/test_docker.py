"""The Engine class against the real Docker Engine (a private dockerd, see
tests/fixtures/dockerd.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from mpkit.engine import Engine, EngineKind
from mpkit.errors import ContainerEngineError
from tests.engine.roundtrip import check_load_and_save_round_trip
from tests.fixtures.dockerd import Dockerd
from tests.fixtures.passstore import PassStore
from tests.fixtures.registry import RegistryServer
from tests.verify.conftest import alice, push, small_image


@pytest.fixture
def engine(dockerd: Dockerd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """docker bound to the private daemon; DOCKER_CONFIG is the test's own (empty)."""
    for key, value in dockerd.client_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    return Engine(EngineKind.DOCKER, str(dockerd.bin_dir / "docker"))


def test_anonymous_pull_by_digest_lookup_and_removal(
    engine: Engine, dockerd: Dockerd, registry_open: RegistryServer, tmp_path: Path
) -> None:
    pushed = push(registry_open, "engine/docker-pull", small_image(tmp_path))
    assert not engine.has_image(pushed.pinned)
    engine.pull(pushed.pinned, anonymous=True, tls_verify=False)
    assert engine.has_image(pushed.pinned)
    assert dockerd.repo_digests(pushed.pinned) == [pushed.pinned]
    engine.remove_image(pushed.pinned)
    assert not engine.has_image(pushed.pinned)


@pytest.mark.parametrize("store", ["config.json", "docker's default store"])
def test_anonymous_pull_ignores_stored_credentials(
    store: str,
    engine: Engine,
    dockerd: Dockerd,
    registry_token: RegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """The user's credentials would let the pull through; the anonymous one must not use
    them, wherever `docker login` put them. Without any login in config.json, docker keeps
    them in a store of its own choosing: pass, when docker-credential-pass is installed."""
    pushed = push(registry_token, "private/engine/docker", small_image(tmp_path),
                  credential=alice(registry_token))  # fmt: skip
    config = tmp_path / "docker-config"
    config.mkdir()
    docker_env = {"DOCKER_CONFIG": str(config)}
    if store == "config.json":
        auth = base64.b64encode(f"alice:{registry_token.users['alice']}".encode()).decode()
        logins = {"auths": {pushed.registry: {"auth": auth}}}
        (config / "config.json").write_text(json.dumps(logins))
    else:
        pass_store: PassStore = request.getfixturevalue("pass_store")
        monkeypatch.setenv("GNUPGHOME", pass_store.gnupghome)
        monkeypatch.setenv("PASSWORD_STORE_DIR", pass_store.store_dir)
        dockerd.run("login", "--username", "alice", "--password-stdin", pushed.registry,
                    input=registry_token.users["alice"], env=docker_env)  # fmt: skip
        assert json.loads((config / "config.json").read_text())["credsStore"] == "pass"

    with pytest.raises(ContainerEngineError) as refused:
        engine.pull(pushed.pinned, anonymous=True)
    assert refused.value.engine == "docker" and refused.value.exit_status
    assert "denied" in refused.value.output and refused.value.output in refused.value.message
    assert not engine.has_image(pushed.pinned)

    engine.pull(pushed.pinned)  # with the user's credentials
    assert engine.has_image(pushed.pinned)
    engine.remove_image(pushed.pinned)
    dockerd.run("logout", pushed.registry, env=docker_env)  # the pass store outlives the test


def test_load_and_save_round_trip(engine: Engine, tmp_path: Path) -> None:
    check_load_and_save_round_trip(engine, tmp_path, "localhost/mpkit-engine-test:docker")
