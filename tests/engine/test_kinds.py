"""--engine: one choice type for building, describing and running."""

from __future__ import annotations

import pytest

from mpkit.engine import EngineChoice, EngineKind
from mpkit.errors import UsageError


def test_building_accepts_every_engine_and_running_only_those_that_run() -> None:
    assert EngineChoice.names() == ["auto", "none", "podman", "docker", "buildah"]
    assert EngineChoice.names(to_run=True) == ["auto", "podman", "docker"]
    assert [k for k in EngineKind if k.runs_containers] == [EngineKind.PODMAN, EngineKind.DOCKER]


def test_parse_names_the_accepted_values() -> None:
    assert EngineChoice.parse("buildah") is EngineChoice.BUILDAH
    with pytest.raises(UsageError) as refused:
        EngineChoice.parse("buildah", to_run=True)
    assert refused.value.hint == "use one of: auto, podman, docker"
    with pytest.raises(UsageError, match="'containerd'"):
        EngineChoice.parse("containerd")


def test_candidates_in_preference_order() -> None:
    podman, docker, buildah = EngineKind
    assert EngineChoice.AUTO.kinds() == (podman, docker, buildah)
    assert EngineChoice.AUTO.kinds(to_run=True) == (podman, docker)
    assert EngineChoice.DOCKER.kinds(to_run=True) == (docker,)
    assert EngineChoice.BUILDAH.kinds(to_run=True) == ()
    assert EngineChoice.NONE.kinds() == ()


@pytest.mark.parametrize(
    ("choice", "to_run", "reason", "hint"),
    [
        (EngineChoice.AUTO, False, "no container engine (podman, docker or buildah) is installed",
         "install podman (or docker or buildah)"),
        (EngineChoice.AUTO, True, "no container engine (podman or docker) is installed",
         "install podman (or docker)"),
        (EngineChoice.NONE, False, "--engine none rules out container engines",
         "install podman (or docker or buildah)"),
        (EngineChoice.BUILDAH, True, "--engine buildah cannot run containers",
         "install podman (or docker)"),
        (EngineChoice.DOCKER, True, "docker is not installed", "install docker"),
    ],
)  # fmt: skip
def test_why_no_engine_can_be_used(
    choice: EngineChoice, to_run: bool, reason: str, hint: str
) -> None:
    assert choice.unavailable(to_run=to_run) == reason
    assert choice.install_hint(to_run=to_run) == hint
