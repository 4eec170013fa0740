"""``mpkit build`` of an SDK 1.3.x project (``FROM base-adapter:python-1.2.0``) with no
alias set: mpkit publishes the base from the SDK the project's environment holds, records
the alias, and the next build just uses it. When it cannot, one message says how, with
this project's paths.

The SDK is the synthetic one of tests.fixtures.sdkrecipe in ``venv-My Adapter`` (as
mp-init makes it); its recipe's FROM python:3.11.12-slim-bookworm reaches the test registry
through MPKIT_MIRRORS, and the real podman builds it (behind a wrapper that records what it
is asked).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.conftest import Mpkit, isolated_env
from tests.e2e.sdkproject import pack_path, write_sdk_project
from tests.fixtures.fakeengine import FakeEngine
from tests.fixtures.podman import Podman
from tests.fixtures.registry import RegistryServer
from tests.fixtures.sdkrecipe import LOCAL_PYTHON, install_fake_sdk, mirrors_env, recipe_path
from tests.imagebuild.projects import SDK_BASE, SDK_DOCKERFILE

PODMAN_ENV = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF",
              "REGISTRY_AUTH_FILE")  # fmt: skip
BUILD_TIMEOUT = 900


def sdk13_project(root: Path) -> Path:
    project = write_sdk_project(root, config=None)
    (project / "Dockerfile").write_text(SDK_DOCKERFILE.replace(SDK_BASE, LOCAL_PYTHON))
    return project


PUBLISH_FAILED = (
    f"error: FROM {LOCAL_PYTHON} names the SDK's Python base, which the VMware SDK builds from a "
    "recipe it installs, and mpkit could not publish it: "
)


@dataclass(frozen=True)
class Failed:
    lines: list[str]  # the error and its hint
    base: str  # where the base would go, beside the adapter
    settings: Path


def failing_build(
    tmp_path: Path, registry: RegistryServer, project: Path, env: Mapping[str, str]
) -> Failed:
    """``mpkit build`` of *project* that fails; nothing is written."""
    user = tmp_path / "user"
    mpkit = Mpkit(root=user, env=isolated_env(user, env))
    repository = f"{registry.host}/team-{uuid.uuid4().hex[:8]}/adapter"
    failed = mpkit.run("build", "--no-ttl", "-r", repository, str(project))
    assert failed.returncode == 1
    assert not settings_file(mpkit).exists()
    assert not pack_path(project).exists()
    lines = failed.stderr.splitlines()  # what comes before the error says what was being done
    start = next(n for n, line in enumerate(lines) if line.startswith("error: "))
    base = repository.replace("/adapter", "/base-adapter:python-1.2.0")
    return Failed(lines[start:], base, settings_file(mpkit))


def settings_file(mpkit: Mpkit) -> Path:
    return mpkit.root / "xdg-config" / "mpkit" / "settings.json"


def test_an_sdk_project_builds_with_zero_settings_and_leaves_the_alias_recorded(
    tmp_path: Path,
    podman: Podman,
    registry_open: RegistryServer,
    python_mirror: Mapping[str, str],
) -> None:
    project = sdk13_project(tmp_path / "my-adapter")
    recipe = recipe_path(install_fake_sdk(project, "venv-My Adapter"))
    wrappers = tmp_path / "engine-wrappers"
    wrappers.mkdir()
    recorded = FakeEngine(wrappers, "podman", passthrough=podman.binary)
    user = tmp_path / "user"
    mpkit = Mpkit(root=user, env=isolated_env(user, {
        **{key: podman.env[key] for key in PODMAN_ENV},
        "MPKIT_MIRRORS": mirrors_env(python_mirror),  # Docker Hub is not reachable here
        "PATH": f"{wrappers}{os.pathsep}{os.environ['PATH']}",
    }))  # fmt: skip
    assert not settings_file(mpkit).exists()
    namespace = f"team-{uuid.uuid4().hex[:8]}"
    repository = f"{registry_open.host}/{namespace}/adapter"

    first = mpkit.ok("build", "--no-ttl", "-r", repository, cwd=project, timeout=BUILD_TIMEOUT)
    aliases = json.loads(settings_file(mpkit).read_text())["aliases"]
    pinned = aliases[LOCAL_PYTHON]
    assert pinned.startswith(f"{registry_open.host}/{namespace}/base-adapter:python-1.2.0@sha256:")
    line = (
        f"built {LOCAL_PYTHON} from {recipe} with podman, pushed it to {pinned} and recorded "
        f"the alias in {settings_file(mpkit)}"
    )
    assert line in first.stderr.splitlines(), first.stderr
    assert pack_path(project).is_file()
    builds = [call for call in recorded.calls if call.argv[:1] == ["build"]]
    assert len(builds) == 1  # the base; the adapter itself builds natively on it

    asked = len(recorded.calls)
    second = mpkit.ok("build", "--no-ttl", "-r", repository, "--json", cwd=project,
                      timeout=BUILD_TIMEOUT)  # fmt: skip
    outcome = second.json()
    assert outcome["sdk_bases"] == []
    assert outcome["builder"] == "native"
    assert recorded.calls[asked:] == []  # podman was not asked anything
    assert json.loads(settings_file(mpkit).read_text())["aliases"] == {LOCAL_PYTHON: pinned}


def test_without_an_engine_the_message_has_this_projects_commands(
    tmp_path: Path, registry_open: RegistryServer
) -> None:
    project = sdk13_project(tmp_path / "my adapter")
    recipe = recipe_path(install_fake_sdk(project, "venv-My Adapter"))
    no_engines = tmp_path / "bin-without-engines"
    no_engines.mkdir()
    failed = failing_build(tmp_path, registry_open, project, {"PATH": str(no_engines)})
    lines, base, settings = failed.lines, failed.base, failed.settings
    assert lines[0].startswith(f"{PUBLISH_FAILED}{recipe}/Dockerfile line 5: ")
    assert lines[0].endswith("and no container engine (podman, docker or buildah) is installed")
    assert lines[1:5] == [
        "  hint: install podman (or docker), then publish it once:",
        f"    $ podman build --platform linux/amd64 -t {LOCAL_PYTHON} -t {base} '{recipe}'",
        f"    $ podman push --tls-verify=false {base}",
        "  or, on a machine that has podman: run the build commands above there (with the "
        "recipe directories copied), then 'podman save --format docker-archive -o "
        f"base-adapter-python-1.2.0.tar {base}' there, and here 'mpkit image push "
        f"docker-archive:base-adapter-python-1.2.0.tar {base}'",
    ]
    assert lines[5] == (
        f"  then build again: mpkit finds {base} and records the alias in {settings}; or record "
        f'it yourself: {{"aliases": {{"{LOCAL_PYTHON}": "{base}"}}}} in {settings} '
        f"(or MPKIT_IMAGE_ALIASES={LOCAL_PYTHON}={base})"
    )


def test_without_a_recipe_the_message_installs_the_sdk_into_this_project(
    tmp_path: Path, registry_open: RegistryServer
) -> None:
    project = sdk13_project(tmp_path / "my-adapter")
    failed = failing_build(tmp_path, registry_open, project, {})
    lines, base, settings = failed.lines, failed.base, failed.settings
    assert lines[0].startswith(
        f"{PUBLISH_FAILED}no installed SDK has the recipe for python-1.2.0 (looked in "
    )
    assert lines[1:4] == [
        "  hint: install the SDK that made the project into an environment in the project "
        "(mpkit looks there, as in mp-init's venv-<name>), then build again:",
        f"    $ python3 -m venv {project}/venv-sdk",
        f"    $ {project}/venv-sdk/bin/pip install vmware-aria-operations-integration-sdk==1.3.1",
    ]
    assert lines[4] == (
        f'  or point the alias at a copy you already have: {{"aliases": {{"{LOCAL_PYTHON}": '
        f'"{base}"}}}} in {settings} (or MPKIT_IMAGE_ALIASES={LOCAL_PYTHON}={base})'
    )
