"""A second machine learns the adapter's definition from the team's registry: the first
build records it next to the image, and a machine with an empty cache, no container engine
and no package index builds the same pack without running anything."""

from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path

from tests.describe.test_build_cli_e2e import init_sample_project
from tests.describe.test_check_before_push_e2e import tags
from tests.e2e.conftest import Mpkit, isolated_env
from tests.fixtures.baseimage import SdkBase
from tests.fixtures.podman import Podman
from tests.fixtures.registry import RegistryServer

BUILD_TIMEOUT = 600


def no_engine_path(root: Path) -> str:
    """A PATH with this Python and uv but no podman, docker or buildah."""
    bin_dir = root / "bin-without-engines"
    bin_dir.mkdir(parents=True)
    for tool in ("uv", "sh"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return f"{bin_dir}:{Path(sys.executable).parent}"


def kind_conf(pack: str) -> str:
    with zipfile.ZipFile(pack) as outer, zipfile.ZipFile(outer.open("adapter.zip")) as inner:
        [name] = [n for n in inner.namelist() if n.endswith(".conf") and "/" not in n]
        return inner.read(name).decode()


def test_a_second_machine_builds_without_engine_or_index(
    tmp_path: Path, sdk_base: SdkBase, registry_open: RegistryServer, podman: Podman
) -> None:
    init = init_sample_project(tmp_path, sdk_base, podman)
    repository = f"{registry_open.host}/e2e/shared-results"
    first = init.mpkit.ok("build", str(init.root), "-r", repository, "--json", env=init.env,
                          timeout=BUILD_TIMEOUT).json()  # fmt: skip
    assert first["describe"]["from_cache"] is False
    assert first["registry_cache"]["recorded"] >= 2  # the dependency layer and the definition
    assert sum(t.startswith("mpkit-cache-") for t in tags(registry_open, "e2e/shared-results")) >= 2

    other = Mpkit(root=tmp_path / "other", env=isolated_env(tmp_path / "other"))
    env = {
        "MPKIT_MIRRORS": init.env["MPKIT_MIRRORS"],
        "PATH": no_engine_path(tmp_path),
        "UV_OFFLINE": "1",
    }
    second = other.ok("build", str(init.root), "-r", repository, "--json", env=env,
                      timeout=BUILD_TIMEOUT).json()  # fmt: skip
    assert second["digest"] == first["digest"]
    assert second["describe"]["from_cache"] is True
    assert second["registry_cache"]["hits"] >= 2
    assert second["push"]["blobs_uploaded"] == 0
    assert kind_conf(second["pack"]) == kind_conf(first["pack"])
    assert second["verify"]["ok"] is True
