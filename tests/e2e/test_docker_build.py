"""`mpkit build --engine docker` with the real Docker Engine: a multi-stage Dockerfile with
a shell RUN goes to docker (no network needed), and the adapter's definition is asked of
the built image with docker; the pack then installs as a cloud proxy would run it."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from tests.describe.conftest import SDK_BASE, sample_definition, write_project
from tests.e2e.conftest import Mpkit, isolated_env
from tests.fixtures.baseimage import SdkBase
from tests.fixtures.dockerd import Dockerd
from tests.fixtures.registry import RegistryServer

KIND = "DockerAdapter"
STAGE_FILE = "/home/aria-ops-adapter-user/stage.txt"
CONTEXT_LIST = "/home/aria-ops-adapter-user/context.txt"
MULTI_STAGE = f"""\
FROM {SDK_BASE} AS tools
COPY . /context
RUN find /context | sort > /tmp/context.txt && echo "made in a stage" > /tmp/stage.txt

FROM {SDK_BASE}
COPY --from=tools /tmp/stage.txt {STAGE_FILE}
COPY --from=tools /tmp/context.txt {CONTEXT_LIST}
COPY commands.cfg .
COPY app app
"""


def test_multi_stage_build_and_definition_with_docker(
    tmp_path: Path, sdk_base: SdkBase, registry_open: RegistryServer, dockerd: Dockerd
) -> None:
    root = write_project(tmp_path / "project", KIND, {"definition": sample_definition(KIND)})
    (root / "Dockerfile").write_text(MULTI_STAGE)
    for leftover in ("build/old.pak", "logs/build.log", ".git/HEAD", "app/.cache"):
        (root / leftover).parent.mkdir(parents=True, exist_ok=True)
        (root / leftover).write_text("not for the image\n")
    mpkit = Mpkit(root=tmp_path / "user", env=isolated_env(tmp_path / "user"))
    env = {"MPKIT_MIRRORS": f"projects.packages.broadcom.com={sdk_base.registry.host}",
           **dockerd.client_env()}  # fmt: skip
    repository = f"{registry_open.host}/e2e/docker-build"

    built = mpkit.ok("build", str(root), "-r", repository, "--engine", "docker", "--json",
                     env=env, timeout=600)  # fmt: skip
    outcome = built.json()
    assert outcome["builder"] == "docker"
    assert outcome["describe"]["way"] == "image" and outcome["describe"]["engine"] == "docker"
    assert outcome["verify"]["ok"] is True
    with zipfile.ZipFile(outcome["pack"]) as outer:
        adapter = zipfile.ZipFile(io.BytesIO(outer.read("adapter.zip")))
    assert b'key="DockerAdapter"' in adapter.read(f"{KIND}/conf/describe.xml")
    assert f"DIGEST={outcome['digest']}" in adapter.read(f"{KIND}.conf").decode()
    temporary = dockerd.run("images", "--format", "{{.Repository}}").stdout
    # The build's own tag is gone; the image the definition ran in stays for the next
    # build (one mpkit-owned name per project), so an app-only change loads only new layers.
    assert "mpkit-build-" not in temporary

    image = f"{repository}@{outcome['digest']}"
    dockerd.run("pull", image)
    shown = dockerd.run("run", "--rm", "--network", "none", image, "cat", STAGE_FILE,
                        CONTEXT_LIST).stdout.splitlines()  # fmt: skip
    assert shown[0] == "made in a stage"
    assert sorted(shown[1:]) == [
        "/context",
        "/context/Dockerfile",
        "/context/app",
        "/context/app/adapter.py",
        "/context/app/behaviour.json",
        "/context/commands.cfg",
        "/context/manifest.txt",
    ]  # fmt: skip  (no build/, logs/ or hidden files: mpkit's build context)
    print(dockerd.run("images", "--all").stdout)
    dockerd.remove_images([image])
