"""Publishing the SDK's local bases with the real podman and a real registry.

The recipes are the synthetic SDK of tests.fixtures.sdkrecipe: the Python one starts FROM
python:3.11.12-slim-bookworm, which only mpkit's ``mirrors`` setting can resolve here (the
isolated podman knows no Docker Hub mirror), and its RUN steps work offline.
"""

from __future__ import annotations

import contextlib
import json
import tarfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mpkit.cache.root import CacheRoot
from mpkit.credentials import Credential
from mpkit.engine import EngineChoice
from mpkit.errors import SdkBaseError
from mpkit.image.layout import OCILayoutWriter, read_oci_layout
from mpkit.image.types import Image
from mpkit.imagebuild.base import BaseResolver
from mpkit.imagebuild.sdkbases import FOUND, PublishedBase, SdkBaseRequest, publish_sdk_bases
from mpkit.reference import parse_reference, parse_repository
from mpkit.registry import ClientOptions, open_client, pull_image, push_image, resolve_image
from mpkit.registry.progress import NoProgress
from mpkit.settings import Settings
from tests.fixtures.podman import Podman
from tests.fixtures.registry import RegistryServer
from tests.fixtures.sdkrecipe import (
    JAVA_MARKER,
    LOCAL_JAVA,
    LOCAL_PYTHON,
    PYTHON_FROM,
    PYTHON_MARKER,
    RECIPES,
    fake_venv,
    install_fake_sdk,
    install_sdk,
    recipe_path,
)
from tests.verify.conftest import small_image

PODMAN_ENV = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF",
              "REGISTRY_AUTH_FILE")  # fmt: skip


class Recorder:
    """A Reporter that keeps what it is told."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.warnings: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    @contextlib.contextmanager
    def progress(self, verb: str) -> Iterator[NoProgress]:
        yield NoProgress()


@pytest.fixture
def engine_env(podman: Podman, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Podman:
    for key in PODMAN_ENV:
        monkeypatch.setenv(key, podman.env[key])
    monkeypatch.setenv("MPKIT_STATE_DIR", str(tmp_path / "state"))
    return podman


@dataclass(frozen=True)
class Site:
    """The isolated podman in use, the open registry, and the mirrors setting that serves
    the recipe's FROM from it."""

    registry: RegistryServer
    mirrors: Mapping[str, str]


@pytest.fixture
def site(engine_env: Podman, registry_open: RegistryServer,
         python_mirror: Mapping[str, str]) -> Site:  # fmt: skip
    return Site(registry_open, python_mirror)


def publish(
    project: Path,
    registry: RegistryServer,
    namespace: str,
    settings: Settings,
    dockerfile: str,
    *,
    cache: Path,
    engine: EngineChoice = EngineChoice.AUTO,
    credential: Credential | None = None,
) -> tuple[Settings, list[PublishedBase], Recorder]:
    recorder = Recorder()
    target = parse_repository(f"{registry.host}/{namespace}/adapter")
    with open_client(registry.host, options=ClientOptions(), anonymous=credential is None,
                     explicit=credential) as client:  # fmt: skip
        request = SdkBaseRequest(
            project=project, target=target, client=client, settings=settings,
            client_options=ClientOptions(), cache_root=cache, engine=engine,
        )  # fmt: skip
        settings, published = publish_sdk_bases(
            request, dockerfile, reporter=recorder, log=recorder.info
        )
    return settings, published, recorder


def settings_with(mirrors: Mapping[str, str], path: Path) -> Settings:
    return Settings(mirrors={k: (v,) for k, v in mirrors.items()}, path=path)


def image_file(image: Image, name: str) -> bytes | None:
    """The file *name* in *image* (the last layer that has it wins)."""
    found = None
    for layer in image.layers:
        with layer.open() as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if member.name.removeprefix("./") == name and member.isfile():
                    extracted = tar.extractfile(member)
                    found = extracted.read() if extracted else None
    return found


def pulled(registry: RegistryServer, reference: str, tmp_path: Path) -> Image:
    layout = tmp_path / f"pulled-{uuid.uuid4().hex[:8]}"
    with open_client(registry.host, options=ClientOptions(), anonymous=True) as client:
        pull_image(client, parse_reference(reference), OCILayoutWriter(layout), tag="it")
    return read_oci_layout(layout, "it")


def test_the_python_base_is_built_pushed_next_to_the_adapter_and_aliased(
    tmp_path: Path, site: Site
) -> None:
    project = tmp_path / "project"
    packages = install_fake_sdk(project)
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps({"a_key_mpkit_does_not_know": [1, 2]}))
    namespace = f"team-{uuid.uuid4().hex[:8]}"
    cache = tmp_path / "cache"
    settings, published, recorder = publish(
        project, site.registry, namespace, settings_with(site.mirrors, settings_file),
        f"FROM {LOCAL_PYTHON}\nCOPY app app\n", cache=cache,
    )  # fmt: skip

    [base] = published
    expected = f"{site.registry.host}/{namespace}/base-adapter:python-1.2.0@"
    assert (base.name, base.how, base.recipe) == (LOCAL_PYTHON, "podman", recipe_path(packages))
    assert str(base.reference).startswith(expected)
    assert base.summary() == (
        f"built {LOCAL_PYTHON} from {recipe_path(packages)} with podman, pushed it to "
        f"{base.reference} and recorded the alias in {settings_file}"
    )
    assert recorder.lines[-1] == base.summary()
    assert settings.aliases == {LOCAL_PYTHON: str(base.reference)}
    assert json.loads(settings_file.read_text()) == {
        "a_key_mpkit_does_not_know": [1, 2], "aliases": {LOCAL_PYTHON: str(base.reference)},
    }  # fmt: skip

    image = pulled(site.registry, str(base.reference), tmp_path)
    assert image_file(image, PYTHON_MARKER.lstrip("/")) == b"python-1.2.0\n"
    assert json.loads(image.config_bytes)["config"]["User"] == "aria-ops-adapter-user"

    # The build that follows finds it in the cache, without asking the registry.
    resolver = BaseResolver(CacheRoot(cache).open(), settings=settings, options=ClientOptions())
    resolved = resolver.resolve(LOCAL_PYTHON)
    assert (resolved.digest, resolved.source) == (base.reference.digest,
                                                  "cache (pinned by digest)")  # fmt: skip

    # Elsewhere (a CI runner, a teammate) with no alias: it is found, not built again.
    elsewhere = tmp_path / "elsewhere.json"
    again, found, told = publish(
        project, site.registry, namespace, settings_with(site.mirrors, elsewhere),
        f"FROM {LOCAL_PYTHON}\n", cache=tmp_path / "other-cache",
    )  # fmt: skip
    assert [(b.how, b.reference) for b in found] == [(FOUND, base.reference)]
    assert (
        told.lines[-1]
        == f"found {LOCAL_PYTHON} at {base.reference} and recorded the alias in {elsewhere}"
    )
    assert not any(line.startswith("building") for line in told.lines)
    assert again.aliases[LOCAL_PYTHON] == str(base.reference)

    # With the alias set there is nothing to do.
    unchanged, nothing, _ = publish(project, site.registry, namespace, again,
                                    f"FROM {LOCAL_PYTHON}\n", cache=cache)  # fmt: skip
    assert (unchanged, nothing) == (again, [])


def test_the_java_base_is_built_on_the_python_base_it_names(tmp_path: Path, site: Site) -> None:
    project = tmp_path / "project"
    packages = install_fake_sdk(project, "venv-Java Pack")
    settings_file = tmp_path / "settings.json"
    namespace = f"java-{uuid.uuid4().hex[:8]}"
    settings, published, _ = publish(
        project, site.registry, namespace, settings_with(site.mirrors, settings_file),
        f"FROM {LOCAL_JAVA}\n", cache=tmp_path / "cache",
    )  # fmt: skip
    assert [(b.name, b.recipe) for b in published] == [
        (LOCAL_PYTHON, recipe_path(packages)),
        (LOCAL_JAVA, recipe_path(packages, "java-adapter")),
    ]
    aliases = json.loads(settings_file.read_text())["aliases"]
    assert aliases == {b.name: str(b.reference) for b in published} == dict(settings.aliases)
    java = pulled(site.registry, aliases[LOCAL_JAVA], tmp_path)
    assert image_file(java, JAVA_MARKER.lstrip("/")) == b"java-1.2.0\n"
    assert image_file(java, PYTHON_MARKER.lstrip("/")) == b"python-1.2.0\n"


def _error(
    tmp_path: Path,
    registry: RegistryServer,
    mirrors: Mapping[str, str],
    project: Path,
    **kwargs: Any,
) -> SdkBaseError:
    with pytest.raises(SdkBaseError) as failed:
        publish(project, registry, f"fail-{uuid.uuid4().hex[:8]}",
                settings_with(mirrors, tmp_path / "settings.json"), f"FROM {LOCAL_PYTHON}\n",
                cache=tmp_path / "cache", **kwargs)  # fmt: skip
    assert not (tmp_path / "settings.json").exists()
    return failed.value


def test_a_failing_recipe_build_says_what_failed_and_how_to_do_it_by_hand(
    tmp_path: Path, site: Site
) -> None:
    project = tmp_path / "project"
    broken = {"Dockerfile": RECIPES["base-python-adapter"]["Dockerfile"].replace(
        "RUN chmod", "RUN echo the recipe failed && false && chmod")}  # fmt: skip
    packages = install_sdk(fake_venv(project / "venv-X"),
                           recipes={"base-python-adapter": broken})  # fmt: skip
    error = _error(tmp_path, site.registry, site.mirrors, project)
    assert error.message.startswith(
        f"FROM {LOCAL_PYTHON} names the SDK's Python base, which the VMware SDK builds from a "
        f"recipe it installs, and mpkit could not publish it: building it from "
        f"{recipe_path(packages)} failed: podman build failed (exit 1):"
    )
    assert "the recipe failed" in error.message  # the engine's own words
    assert error.hint is not None
    assert f"podman build --platform linux/amd64 -t {LOCAL_PYTHON} -t " in error.hint
    assert f" {recipe_path(packages)}\n" in error.hint


def test_engine_none_and_a_recipe_that_needs_one(tmp_path: Path, site: Site) -> None:
    project = tmp_path / "project"
    packages = install_fake_sdk(project)
    error = _error(tmp_path, site.registry, {}, project, engine=EngineChoice.NONE)
    assert f"{recipe_path(packages)}/Dockerfile line 5: RUN" in error.message
    assert "--engine none rules out container engines" in error.message
    assert error.hint is not None and error.hint.startswith("publish it once with podman:")


def test_a_base_beside_the_adapter_for_another_platform_is_refused(
    tmp_path: Path, registry_open: RegistryServer
) -> None:
    namespace = f"arm-{uuid.uuid4().hex[:8]}"
    arm = small_image(tmp_path, architecture="arm64")
    target = parse_reference(f"{registry_open.host}/{namespace}/base-adapter:python-1.2.0")
    with open_client(registry_open.host, options=ClientOptions(), anonymous=True) as client:
        push_image(client, arm, target)
    with pytest.raises(SdkBaseError) as failed:
        publish(tmp_path / "project", registry_open, namespace,
                Settings(path=tmp_path / "settings.json"), f"FROM {LOCAL_PYTHON}\n",
                cache=tmp_path / "cache")  # fmt: skip
    assert failed.value.message == (
        f"{target} is a linux/arm64 image, and Aria Operations cloud proxies run linux/amd64"
    )
    assert not (tmp_path / "settings.json").exists()


def test_a_recipe_the_native_builder_can_do_needs_no_engine_and_the_push_uses_the_builds_login(
    tmp_path: Path,
    registry_basic: RegistryServer,
    python_mirror: Mapping[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MPKIT_STATE_DIR", str(tmp_path / "state"))
    project = tmp_path / "project"
    native = {"Dockerfile": f"FROM {PYTHON_FROM}\nWORKDIR /srv/recipe\nCOPY . .\n", "x.txt": "x\n"}
    packages = install_sdk(fake_venv(project / "venv-N"),
                           recipes={"base-python-adapter": native})  # fmt: skip
    alice = Credential(username="alice", password=registry_basic.users["alice"], source="test")
    namespace = f"native-{uuid.uuid4().hex[:8]}"
    _, [base], _ = publish(
        project, registry_basic, namespace, settings_with(python_mirror, tmp_path / "s.json"),
        f"FROM {LOCAL_PYTHON}\n", cache=tmp_path / "cache", engine=EngineChoice.NONE,
        credential=alice,
    )  # fmt: skip
    assert (base.how, base.recipe) == ("native", recipe_path(packages))
    assert base.summary().startswith(
        f"built {LOCAL_PYTHON} from {recipe_path(packages)} with mpkit's builder, pushed it to "
        f"{registry_basic.host}/{namespace}/base-adapter:python-1.2.0@sha256:"
    )
    with open_client(registry_basic.host, options=ClientOptions(), explicit=alice) as client:
        found = resolve_image(client, base.reference)
    assert found.manifest.digest == base.reference.digest
