"""The Engine class against the real podman (isolated storage, this machine's settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpkit.engine import Engine, EngineKind
from mpkit.errors import ContainerEngineError
from tests.engine.roundtrip import check_load_and_save_round_trip
from tests.fixtures.podman import Podman
from tests.fixtures.registry import RegistryServer
from tests.verify.conftest import push, small_image

PODMAN_ENV = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF",
              "REGISTRY_AUTH_FILE", "DOCKER_CONFIG")  # fmt: skip


@pytest.fixture
def engine(podman: Podman, monkeypatch: pytest.MonkeyPatch) -> Engine:
    for key in PODMAN_ENV:
        monkeypatch.setenv(key, podman.env[key])
    return Engine(EngineKind.PODMAN, podman.binary)


def test_anonymous_pull_lookup_and_removal(
    engine: Engine, registry_open: RegistryServer, tmp_path: Path
) -> None:
    pushed = push(registry_open, "engine/pull", small_image(tmp_path))
    assert not engine.has_image(pushed.pinned)
    engine.pull(pushed.pinned, anonymous=True, tls_verify=False)
    assert engine.has_image(pushed.pinned)
    engine.remove_image(pushed.pinned)
    assert not engine.has_image(pushed.pinned)


def test_a_refused_pull_quotes_podman(engine: Engine, registry_token: RegistryServer) -> None:
    private = f"{registry_token.host}/private/engine/none@sha256:{'0' * 64}"
    with pytest.raises(ContainerEngineError) as failed:
        engine.pull(private, anonymous=True, tls_verify=False)
    assert failed.value.engine == "podman" and failed.value.exit_status
    assert failed.value.output and failed.value.output in failed.value.message


def test_load_and_save_round_trip(engine: Engine, tmp_path: Path) -> None:
    check_load_and_save_round_trip(engine, tmp_path, "localhost/mpkit-engine-test:1")
