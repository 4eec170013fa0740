"""End to end on the real SDK path: an SDK 1.3.x project (``FROM base-adapter:python-1.2.0``,
no conf/describe.xml, the SDK's adapter library and psutil) built with ``mpkit build`` on
the SDK's own REST server base, with the real podman behind a wrapper that records every
command it is given.

The first build runs the image (the definition command, and the server for
``GET /apiVersion``); a rebuild without changes runs no container at all; an app-only
change runs exactly one, without starting the server. The pack's ``<KIND>.conf`` carries
the API version the SDK's server answered.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from mpkit.init import InitOptions, create_project
from tests.describe.conftest import PODMAN_ENV
from tests.e2e.conftest import Mpkit, isolated_env
from tests.fixtures.fakeengine import Call, FakeEngine
from tests.fixtures.podman import Podman
from tests.fixtures.registry import RegistryServer
from tests.fixtures.sdkserverbase import LOCAL_BASE, SdkServerBase
from tests.imagebuild.projects import SDK_BASE, SDK_DOCKERFILE

KIND = "MySQLPack"
# What SDK 1.3.x's mp-init writes (see a generated project's Dockerfile and requirements).
DOCKERFILE = SDK_DOCKERFILE.replace(SDK_BASE, LOCAL_BASE)
REQUIREMENTS = "vmware-aria-operations-integration-sdk-lib~=1.1.0\npsutil==5.9.4\n"
BUILD_TIMEOUT = 900  # the first build resolves the requirements from PyPI


def runs(podman: FakeEngine, since: int = 0) -> list[Call]:
    return [call for call in podman.calls[since:] if call.argv[:1] == ["run"]]


def kind_conf(outcome: dict[str, Any]) -> dict[str, str]:
    with zipfile.ZipFile(outcome["pack"]) as outer:
        adapter = zipfile.ZipFile(io.BytesIO(outer.read("adapter.zip")))
    lines = adapter.read(f"{KIND}.conf").decode().splitlines()
    return dict(line.split("=", 1) for line in lines if line)


def test_sdk_project_rebuilds_run_no_container_and_app_changes_one(
    tmp_path: Path,
    sdk_server_base: SdkServerBase,
    registry_open: RegistryServer,
    podman: Podman,
) -> None:
    root = create_project(InitOptions(tmp_path / "mysql-pack", "MySQL Pack", KIND))
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "adapter_requirements.txt").write_text(REQUIREMENTS)
    assert not (root / "conf" / "describe.xml").exists()
    wrappers = tmp_path / "engine-wrappers"
    wrappers.mkdir()
    recorded = FakeEngine(wrappers, "podman", passthrough=podman.binary)  # records, runs podman
    user = tmp_path / "user"
    mpkit = Mpkit(root=user, env=isolated_env(user, {
        **{key: podman.env[key] for key in PODMAN_ENV},
        "MPKIT_IMAGE_ALIASES": sdk_server_base.alias_env,
        "PATH": f"{wrappers}{os.pathsep}{os.environ['PATH']}",
    }))  # fmt: skip
    repository = f"{registry_open.host}/e2e/sdk-rebuild"

    def build() -> dict[str, Any]:
        done = mpkit.ok("build", str(root), "-r", repository, "--json", timeout=BUILD_TIMEOUT)
        outcome: dict[str, Any] = done.json()
        return outcome

    first = build()
    describe = first["describe"]
    assert (describe["way"], describe["engine"], describe["from_cache"]) == ("image", "podman",
                                                                              False)  # fmt: skip
    assert describe["api_version_source"] == "GET /apiVersion of the image's server (run by podman)"
    [run] = runs(recorded)
    assert json.loads(run.mounted["job.json"])["server"] == ["python3", "-m", "swagger_server"]
    conf = kind_conf(first)
    assert (conf["KINDKEY"], conf["API_VERSION"], conf["DIGEST"]) == (KIND, "1.0.0",
                                                                      first["digest"])  # fmt: skip

    # No change: the same image, and not one container.
    asked = len(recorded.calls)
    second = build()
    assert second["digest"] == first["digest"]
    assert second["describe"]["from_cache"] is True
    assert recorded.calls[asked:] == []  # podman was not even asked
    assert Path(second["pack"]).read_bytes() == Path(first["pack"]).read_bytes()

    # An app-only change: one container, without the server (the base's answer is known).
    adapter = root / "app" / "adapter.py"
    adapter.write_text(adapter.read_text() + "\n# an app-only change\n")
    third = build()
    assert third["digest"] != first["digest"]
    [run] = runs(recorded, asked)
    assert json.loads(run.mounted["job.json"])["server"] is None
    assert third["describe"]["from_cache"] is False
    assert "remembered for this base image" in third["describe"]["api_version_source"]
    assert kind_conf(third)["API_VERSION"] == "1.0.0"
    forced = [call.argv for call in recorded.calls[asked:] if call.argv[0] == "rmi"
              and "--force" in call.argv]  # fmt: skip
    assert forced == []
