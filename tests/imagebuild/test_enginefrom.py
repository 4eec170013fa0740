"""The FROM lines of an engine build through mpkit's settings: which images mpkit names and
pins, what each engine is told to pull, which registries are marked insecure, and how a
failed pull is blamed on its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpkit.engine import EngineKind
from mpkit.engine.registriesconf import Mirror, RegistryRule
from mpkit.errors import ContainerEngineError, RegistryUnreachableError
from mpkit.image import mediatypes
from mpkit.image.types import Platform
from mpkit.imagebuild.base import BaseImage
from mpkit.imagebuild.dockerfile import NeedsEngineError, parse_dockerfile
from mpkit.imagebuild.enginefrom import EngineBases, plan_bases, rewrite_from_lines, scan_bases
from mpkit.reference import parse_reference
from mpkit.settings import Settings

DIGEST = "sha256:" + "ab" * 32
LINUX = Platform("linux", "amd64")
LOCAL_BASE = "base-adapter:python-1.2.0"
SETTINGS = Settings(
    mirrors={"docker.io": ("mirror.example/hub",)},
    aliases={LOCAL_BASE: f"127.0.0.1:5000/sdk/{LOCAL_BASE}"},
    insecure_registries=frozenset({"lab.example:5000"}),
    path=Path("/home/me/.config/mpkit/settings.json"),
)
MULTI_STAGE = f"""\
ARG JDK=17
FROM gradle:8-jdk${{JDK}} AS build
RUN gradle build
FROM build AS checked
RUN true
FROM scratch AS empty
FROM {LOCAL_BASE}
COPY --from=checked /out /out
"""


class Resolver:
    """Stands in for mpkit's base pull: records what it was asked, or fails."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.asked: list[tuple[str, Platform]] = []
        self.failure = failure

    def __call__(self, name: str, platform: Platform) -> BaseImage:
        self.asked.append((name, platform))
        if self.failure is not None:
            raise self.failure
        pinned = parse_reference(SETTINGS.aliases.get(name, name)).with_digest(DIGEST)
        return BaseImage(name, pinned, str(pinned), mediatypes.OCI_MANIFEST)


def plan(text: str, resolve: Resolver | None = None, **build_args: str) -> EngineBases:
    messages: list[str] = []
    return plan_bases(
        parse_dockerfile(text), build_args=build_args, platform=LINUX, settings=SETTINGS,
        resolve=resolve or Resolver(), log=messages.append,
    )  # fmt: skip


def failure(*lines: str) -> ContainerEngineError:
    output = "\n".join(lines)
    return ContainerEngineError(f"podman build failed (exit 125):\n{output}", output=output)


def test_every_image_is_named_and_only_the_final_images_base_is_pulled() -> None:
    resolve = Resolver()
    bases = plan(MULTI_STAGE, resolve, JDK="21")
    assert resolve.asked == [(LOCAL_BASE, LINUX)]
    assert bases.final_base is not None and bases.final_base.digest == DIGEST
    assert [(s.line, s.name, str(s.upstream), s.digest) for s in bases.stages] == [
        (2, "gradle:8-jdk21", "docker.io/library/gradle:8-jdk21", None),
        (7, LOCAL_BASE, f"127.0.0.1:5000/sdk/{LOCAL_BASE}", DIGEST),
    ]


def test_podman_pulls_the_images_themselves_and_docker_their_first_mirror() -> None:
    bases = plan(MULTI_STAGE)
    pinned = f"127.0.0.1:5000/sdk/base-adapter@{DIGEST}"
    assert bases.from_rewrites(EngineKind.PODMAN, SETTINGS) == {
        2: ("gradle:8-jdk${JDK}", "docker.io/library/gradle:8-jdk17"),
        7: (LOCAL_BASE, pinned),
    }
    assert bases.from_rewrites(EngineKind.DOCKER, SETTINGS) == {
        2: ("gradle:8-jdk${JDK}", "mirror.example/hub/library/gradle:8-jdk17"),
        7: (LOCAL_BASE, pinned),
    }
    rewritten = rewrite_from_lines(MULTI_STAGE, bases.from_rewrites(EngineKind.PODMAN, SETTINGS))
    assert rewritten.splitlines()[1] == "FROM docker.io/library/gradle:8-jdk17 AS build"
    assert rewritten.splitlines()[3] == "FROM build AS checked"
    assert rewritten.splitlines()[6] == f"FROM {pinned}"


def test_only_loopback_and_insecure_registries_are_marked_insecure() -> None:
    rules = plan(MULTI_STAGE).registry_rules(SETTINGS, SETTINGS.insecure_registries)
    assert rules == [
        RegistryRule("127.0.0.1:5000", "127.0.0.1:5000", insecure=True),
        RegistryRule("docker.io", "docker.io", mirrors=(Mirror("mirror.example/hub"),)),
        RegistryRule("lab.example:5000", "lab.example:5000", insecure=True),
    ]
    endpoints = Settings(endpoints={"docker.io": "127.0.0.1:9"})
    assert EngineBases("Dockerfile").registry_rules(endpoints, frozenset()) == [
        RegistryRule("docker.io", "127.0.0.1:9", insecure=True)
    ]
    assert EngineBases("Dockerfile").registry_rules(Settings(), frozenset()) == []


def test_the_final_image_follows_from_lines_that_name_stages() -> None:
    resolve = Resolver()
    plan("FROM python:3.11-slim AS runtime\nRUN true\nFROM runtime\nCOPY a b\n", resolve)
    assert resolve.asked == [("python:3.11-slim", LINUX)]


def test_what_mpkit_cannot_pull_is_left_to_the_engine() -> None:
    unreachable = RegistryUnreachableError("cannot connect to docker.io", registry="docker.io")
    bases = plan("FROM python:3.11\nRUN true\n", Resolver(unreachable))
    (stage,) = bases.stages
    assert stage.problem is unreachable and stage.digest is None
    assert bases.from_rewrites(EngineKind.PODMAN, SETTINGS) == {
        1: ("python:3.11", "docker.io/library/python:3.11")
    }
    local = plan("FROM base-adapter:python-9\nRUN true\n")
    assert (
        local.stages[0].upstream is None and local.from_rewrites(EngineKind.PODMAN, SETTINGS) == {}
    )


PODMAN_PULL_FAILED = (
    "Trying to pull docker.io/library/gradle:8-jdk17...",
    "Error: creating build container: initializing source docker://gradle:8-jdk17: pinging "
    'container registry 127.0.0.1:9: Get "http://127.0.0.1:9/v2/": dial tcp 127.0.0.1:9: '
    "connect: connection refused",
)
DOCKER_PULL_FAILED = (
    "Step 1/6 : FROM mirror.example/hub/library/gradle:8-jdk17 AS build",
    'Get "https://mirror.example/v2/": dial tcp: lookup mirror.example: no such host',
)


@pytest.mark.parametrize(("kind", "output"), [(EngineKind.PODMAN, PODMAN_PULL_FAILED),
                                              (EngineKind.DOCKER, DOCKER_PULL_FAILED)])  # fmt: skip
def test_a_failed_pull_names_its_from_line_registry_and_the_mirrors_setting(
    kind: EngineKind, output: tuple[str, ...]
) -> None:
    blamed = plan(MULTI_STAGE).pull_failure(failure(*output), kind, SETTINGS, frozenset())
    assert blamed is not None
    assert blamed.message.startswith(
        f"Dockerfile line 2: FROM gradle:8-jdk${{JDK}}: {kind} could not pull "
        "docker.io/library/gradle:8-jdk17 from docker.io ("
    )
    assert blamed.hint is not None
    assert "the mirrors set for docker.io (mirror.example/hub) did not serve it" in blamed.hint
    assert (
        '"mirrors": {"docker.io": ["MIRROR-HOST/PATH"]} in /home/me/.config/mpkit/settings.json'
        in blamed.hint
    )
    assert "MPKIT_MIRRORS=docker.io=MIRROR-HOST/PATH" in blamed.hint
    assert '"aliases": {"gradle:8-jdk17": "HOST/PATH/gradle:8-jdk17"}' in blamed.hint


def test_a_failed_run_is_not_blamed_on_a_base() -> None:
    bases = plan(MULTI_STAGE)
    run_failed = failure(
        "[1/2] STEP 2/2: RUN gradle build",
        "/bin/sh: 1: cannot create /gradle:8-jdk17: Permission denied",
        'Error: building at STEP "RUN gradle build": while running runtime: exit status 2',
    )
    assert bases.pull_failure(run_failed, EngineKind.PODMAN, SETTINGS, frozenset()) is None


def test_docker_is_told_about_insecure_registries_through_its_daemon() -> None:
    bases = plan("FROM lab.example:5000/tools/jdk:17 AS build\nRUN true\nFROM scratch\n")
    output = (
        'Get "https://lab.example:5000/v2/": http: server gave HTTP response to HTTPS client',
    )
    insecure = SETTINGS.insecure_registries
    blamed = bases.pull_failure(failure(*output), EngineKind.DOCKER, SETTINGS, insecure)
    assert blamed is not None and blamed.hint is not None
    assert 'lists it under "insecure-registries" in /etc/docker/daemon.json' in blamed.hint
    podman = bases.pull_failure(failure(*output), EngineKind.PODMAN, SETTINGS, insecure)
    assert podman is not None and "daemon.json" not in (podman.hint or "")


def test_an_image_mpkit_cannot_name_keeps_mpkits_own_advice() -> None:
    bases = plan("FROM base-adapter:python-9 AS base\nRUN true\n")
    output = (
        "Error: creating build container: initializing source docker://base-adapter:python-9: "
        "reading manifest python-9 in docker.io/library/base-adapter: requested access to the "
        "resource is denied",
    )
    blamed = bases.pull_failure(failure(*output), EngineKind.PODMAN, SETTINGS, frozenset())
    assert blamed is not None
    assert blamed.message.startswith("Dockerfile line 1: FROM base-adapter:python-9: podman could")
    assert "no registry serves it and no image alias points at it" in blamed.message
    assert blamed.hint is not None and "publishes it by itself" in blamed.hint


def test_from_lines_of_a_dockerfile_only_an_engine_parses_follow_the_settings_too() -> None:
    heredoc = f"""\
FROM --platform=$BUILDPLATFORM gradle:8 AS build
RUN <<SCRIPT
gradle build
SCRIPT
FROM build AS again
FROM {LOCAL_BASE}
COPY --from=again /out /out
"""
    with pytest.raises(NeedsEngineError, match="heredoc"):
        parse_dockerfile(heredoc)
    bases = scan_bases(heredoc, path="Dockerfile", settings=SETTINGS)
    assert bases.final_base is None  # nothing pinned: the stages are not known for sure
    rewrites = bases.from_rewrites(EngineKind.PODMAN, SETTINGS)
    assert rewrites == {
        1: ("gradle:8", "docker.io/library/gradle:8"),
        6: (LOCAL_BASE, f"127.0.0.1:5000/sdk/{LOCAL_BASE}"),
    }
    lines = rewrite_from_lines(heredoc, rewrites).splitlines()
    assert lines[0] == "FROM --platform=$BUILDPLATFORM docker.io/library/gradle:8 AS build"
    assert lines[4] == "FROM build AS again"
    assert "127.0.0.1:5000" in {r.prefix for r in bases.registry_rules(SETTINGS, frozenset())}
