"""Engine builds (podman, docker) follow mpkit's settings and keep the base's digests.

Fake engines show what each engine is asked (no ``--tls-verify=false``, the registry
configuration, build args). The real podman and docker then build a multi-stage project
whose stages name Docker Hub images: the images come from a mirror (a loopback registry
holding the Debian stand-in under its Docker Hub name), the base layer of the result is
the mirror's own blob, so the push mounts it and uploads only the new layers, and a base
that cannot be pulled names its FROM line and the mirrors setting. No test reaches Docker
Hub: every name goes to a loopback registry, through a mirror or an endpoint.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from mpkit.engine import EngineChoice
from mpkit.errors import BaseImageError, ContainerEngineError
from mpkit.image import mediatypes
from mpkit.image.layout import read_oci_layout
from mpkit.imagebuild.builder import BuildRequest, build_image
from mpkit.reference import parse_reference
from mpkit.registry import ClientOptions, open_client, push_image
from mpkit.settings import Settings
from tests.e2e.conftest import Mpkit, isolated_env
from tests.fixtures.baseimage import SDK_REPOSITORY, SDK_TAG, SdkBase
from tests.fixtures.dockerd import Dockerd
from tests.fixtures.fakeengine import FakeEngine, MakeFakeEngine
from tests.fixtures.podman import Podman
from tests.fixtures.registry import RegistryServer
from tests.fixtures.tools import require_tool
from tests.imagebuild.projects import PIP_LINE, make_sdk_project

tomllib = pytest.importorskip("tomllib")  # reads the registries.conf back (Python 3.11+)

BUILD_TIMEOUT = 600.0
HUB_NAME = "debian-stand-in"  # under Docker Hub's "library/", in the mirror
HUB_TAG = "bookworm"
SMALL_PUSH = 64 * 1024  # the new layers and the config: a few KiB
MULTI_STAGE = f"""\
ARG TOOLS={HUB_NAME}:{HUB_TAG}
FROM $TOOLS AS tools
RUN echo "made in a stage" > /tmp/stage.txt

FROM docker.io/library/{HUB_NAME}:{HUB_TAG}
ARG GREETING=hello
COPY --from=tools /tmp/stage.txt /tmp/stage.txt
RUN echo "$GREETING" > /tmp/greeting.txt
COPY app app
"""
UNREACHABLE_STAGE = f"""\
FROM gradle:8-jdk17 AS build
RUN echo built > /tmp/out

FROM docker.io/library/{HUB_NAME}:{HUB_TAG}
COPY --from=build /tmp/out /tmp/out
"""
FROM_SCRATCH = UNREACHABLE_STAGE.replace(f"docker.io/library/{HUB_NAME}:{HUB_TAG}", "scratch")
CLOSED = "127.0.0.1:9"  # the discard port: nothing listens on loopback here


# -- what each engine is asked (fake engines) ------------------------------------------------


def request_for(project: Path, tmp_path: Path, settings: Settings, **kwargs: Any) -> BuildRequest:
    options = ClientOptions(insecure_registries=settings.insecure_registries)
    return BuildRequest(project=project, cache_root=tmp_path / "cache", settings=settings,
                        client_options=options, **kwargs)  # fmt: skip


def project_with(root: Path, dockerfile: str) -> Path:
    (root / "app").mkdir(parents=True)
    (root / "app" / "adapter.py").write_text("print('adapter')\n")
    (root / "Dockerfile").write_text(dockerfile)
    return root


def test_an_explicit_engine_runs_every_run_line_even_pip(
    fake_engines: MakeFakeEngine, tmp_path: Path
) -> None:
    podman = fake_engines("podman")
    podman.respond("build", exit=1, stdout="Error: stop here\n")
    pip_only = project_with(tmp_path / "pip", "FROM scratch\nRUN pip install six\n")
    with pytest.raises(ContainerEngineError, match="stop here"):
        build_image(request_for(pip_only, tmp_path, Settings(), engine=EngineChoice.PODMAN,
                                build_args={"GREETING": "bonjour"}))  # fmt: skip
    (call,) = podman.calls
    assert call.argv[0] == "build" and call.option("--build-arg") == "GREETING=bonjour"

    copy_only = project_with(tmp_path / "copy", "FROM scratch\nCOPY app /app\n")
    built = build_image(request_for(copy_only, tmp_path, Settings(), engine=EngineChoice.PODMAN))
    assert built.builder == "native" and len(podman.calls) == 1  # nothing for an engine to run


def test_only_the_insecure_registries_are_marked_and_a_failed_pull_names_its_line(
    fake_engines: MakeFakeEngine, tmp_path: Path
) -> None:
    podman = fake_engines("podman")
    podman.respond("build", exit=125, stdout=(
        "[1/2] STEP 1/2: FROM docker.io/library/gradle:8-jdk17 AS build\n"
        "Trying to pull docker.io/library/gradle:8-jdk17...\n"
        "Error: creating build container: initializing source docker://gradle:8-jdk17: "
        f'pinging container registry {CLOSED}: Get "http://{CLOSED}/v2/": connection refused\n'
    ))  # fmt: skip
    project = project_with(tmp_path / "project", FROM_SCRATCH)
    settings = Settings(
        mirrors={"docker.io": ("127.0.0.1:8/hub", "hub-cache.example/dockerhub")},
        endpoints={"docker.io": CLOSED},
        insecure_registries=frozenset({"lab.example:5000"}),
        path=tmp_path / "settings.json",
    )
    with pytest.raises(BaseImageError) as failed:
        build_image(request_for(project, tmp_path, settings, engine=EngineChoice.AUTO))
    assert failed.value.message.startswith(
        f"{project / 'Dockerfile'} line 1: FROM gradle:8-jdk17: podman could not pull "
        "docker.io/library/gradle:8-jdk17 from docker.io (Error: creating build container"
    )
    assert failed.value.hint is not None
    assert f'"mirrors": {{"docker.io": ["MIRROR-HOST/PATH"]}} in {tmp_path}' in failed.value.hint
    assert "the mirrors set for docker.io (127.0.0.1:8/hub, hub-cache.example/dockerhub)" in (
        failed.value.hint
    )
    (call,) = podman.calls
    assert not any(word.startswith("--tls-verify") for word in call.argv)
    assert call.registries_conf is not None
    tables = {t["prefix"]: t for t in tomllib.loads(call.registries_conf)["registry"]}
    assert tables == {
        "docker.io": {"prefix": "docker.io", "location": CLOSED, "insecure": True,
                      "mirror": [{"location": "127.0.0.1:8/hub", "insecure": True},
                                 {"location": "hub-cache.example/dockerhub", "insecure": False}]},
        "lab.example:5000": {"prefix": "lab.example:5000", "location": "lab.example:5000",
                             "insecure": True},
    }  # fmt: skip
    recipe = Path(call.option("--file") or "")
    assert not recipe.exists()  # the engine's copy of the Dockerfile went with its temp dir


# -- real engines --------------------------------------------------------------------------------


@pytest.fixture
def hub_mirror(make_registry: Any, sdk_base: SdkBase) -> RegistryServer:
    """A registry that serves the stand-in as Docker Hub's library/debian-stand-in."""
    mirror: RegistryServer = make_registry()
    image = read_oci_layout(sdk_base.layout, SDK_TAG)
    target = parse_reference(f"{mirror.host}/library/{HUB_NAME}:{HUB_TAG}")
    with open_client(mirror.host, options=ClientOptions(), anonymous=True) as client:
        push_image(client, image, target)
    return mirror


def manifest(registry: RegistryServer, repository: str, reference: str) -> dict[str, Any]:
    accept = f"{mediatypes.DOCKER_MANIFEST}, {mediatypes.OCI_MANIFEST}"
    answer = httpx.get(f"http://{registry.host}/v2/{repository}/manifests/{reference}",
                       headers={"Accept": accept})  # fmt: skip
    answer.raise_for_status()
    document: dict[str, Any] = answer.json()
    return document


def manifest_digest(registry: RegistryServer, repository: str, reference: str) -> str:
    answer = httpx.head(f"http://{registry.host}/v2/{repository}/manifests/{reference}",
                        headers={"Accept": mediatypes.DOCKER_MANIFEST})  # fmt: skip
    answer.raise_for_status()
    return answer.headers["docker-content-digest"]


def layer_file(registry: RegistryServer, repository: str, digest: str, name: str) -> bytes | None:
    blob = httpx.get(f"http://{registry.host}/v2/{repository}/blobs/{digest}",
                     follow_redirects=True)  # fmt: skip
    blob.raise_for_status()
    with tarfile.open(fileobj=io.BytesIO(blob.content)) as tar:
        for member in tar:
            if member.name.removeprefix("./") == name.lstrip("/") and member.isfile():
                stream = tar.extractfile(member)
                return stream.read() if stream is not None else None
    return None


def engine_cli(tmp_path: Path, mirror: RegistryServer, **extra: str) -> Mpkit:
    root = tmp_path / "user"
    mirrors = {"MPKIT_MIRRORS": f"docker.io={mirror.host}"}
    return Mpkit(root=root, env=isolated_env(root, {**mirrors, **extra}))


def check_engine_result(report: Any, mirror: RegistryServer, repository: str) -> None:
    """The base layer is the mirror's own blob (mounted, not uploaded); only the new layers
    and the config were uploaded; the build arg reached the RUN line."""
    base = manifest(mirror, f"library/{HUB_NAME}", HUB_TAG)
    built = manifest(mirror, repository, report["digest"])
    assert [layer["digest"] for layer in built["layers"][: len(base["layers"])]] == [
        layer["digest"] for layer in base["layers"]
    ]
    assert report["base"]["digest"] == manifest_digest(mirror, f"library/{HUB_NAME}", HUB_TAG)
    push = report["push"]
    base_bytes = sum(layer["size"] for layer in base["layers"])
    assert push["bytes_mounted"] + push["bytes_skipped"] >= base_bytes
    assert push["bytes_uploaded"] < SMALL_PUSH
    assert push["blobs_uploaded"] == len(built["layers"]) - len(base["layers"]) + 1  # + config
    greeting = [layer_file(mirror, repository, layer["digest"], "/tmp/greeting.txt")
                for layer in built["layers"]]  # fmt: skip
    assert b"bonjour\n" in greeting
    stage = [layer_file(mirror, repository, layer["digest"], "/tmp/stage.txt")
             for layer in built["layers"]]  # fmt: skip
    assert b"made in a stage\n" in stage


def recording_podman(tmp_path: Path) -> FakeEngine:
    """podman itself, behind a recorder of what it is asked."""
    real = require_tool("podman")
    bin_dir = tmp_path / "recorded-bin"
    bin_dir.mkdir()
    return FakeEngine(bin_dir, "podman", passthrough=real)


def podman_env(podman: Podman, recorder: FakeEngine) -> dict[str, str]:
    engine = {k: v for k, v in podman.env.items() if k.startswith(("CONTAINERS_", "REGISTRY_"))}
    return {**engine, "PATH": f"{recorder.program.parent}:{os.environ['PATH']}"}


def test_podman_builds_docker_hub_stages_through_the_mirror_and_keeps_the_base_digests(
    tmp_path: Path, hub_mirror: RegistryServer, podman: Podman
) -> None:
    project = project_with(tmp_path / "project", MULTI_STAGE)
    recorder = recording_podman(tmp_path)
    cli = engine_cli(tmp_path, hub_mirror, **podman_env(podman, recorder))
    repository = "e2e/engine-podman"
    target = f"{hub_mirror.host}/{repository}"
    result = cli.ok("image", "build", "--json", str(project), "--engine", "podman",
                    "--build-arg", "GREETING=bonjour", "--push", f"{target}:1",
                    timeout=BUILD_TIMEOUT)  # fmt: skip
    report = result.json()
    assert report["builder"] == "podman"
    check_engine_result(report, hub_mirror, repository)

    (build,) = recorder.calls_with("build")
    assert not any("--tls-verify" in word for call in recorder.calls for word in call.argv)
    assert build.registries_conf is not None
    written = tomllib.loads(build.registries_conf)["registry"]
    hub = [table for table in written if table.get("prefix") == "docker.io"]
    assert hub == [{
        "prefix": "docker.io", "location": "docker.io", "insecure": False,
        "mirror": [{"location": hub_mirror.host, "insecure": True}],
    }]  # fmt: skip
    # Everything else is podman's own configuration, carried over unchanged.
    theirs = tomllib.loads(podman.registries_conf.read_text()).get("registry", [])
    assert [t for t in written if t not in hub] == [
        t for t in theirs if t.get("prefix") != "docker.io"
    ]

    # Again (an engine's layers carry new times): the base is still the mirror's blob.
    again = cli.ok("image", "build", "--json", str(project), "--engine", "podman",
                   "--build-arg", "GREETING=bonjour", "--push", f"{target}:2",
                   timeout=BUILD_TIMEOUT).json()  # fmt: skip
    assert again["push"]["bytes_uploaded"] < SMALL_PUSH
    assert again["push"]["bytes_mounted"] + again["push"]["bytes_skipped"] >= sum(
        layer["size"] for layer in manifest(hub_mirror, f"library/{HUB_NAME}", HUB_TAG)["layers"]
    )


def test_an_sdk_project_goes_to_the_engine_it_names_and_pushes_only_its_own_layers(
    tmp_path: Path, sdk_base: SdkBase, registry_open: RegistryServer, podman: Podman
) -> None:
    project = make_sdk_project(tmp_path / "project", requirements=())  # pip needs no index
    recorder = recording_podman(tmp_path)
    mirrors = ",".join(f"{k}={v}" for k, v in sdk_base.mirror.items())
    root = tmp_path / "user"
    env = isolated_env(root, {"MPKIT_MIRRORS": mirrors, **podman_env(podman, recorder)})
    target = f"{registry_open.host}/e2e/sdk-engine"
    report = Mpkit(root=root, env=env).ok("image", "build", "--json", str(project), "--engine",
                                          "podman", "--push", f"{target}:1",
                                          timeout=BUILD_TIMEOUT).json()  # fmt: skip
    assert report["builder"] == "podman"
    assert report["fallback_reason"] == f"line {PIP_LINE}: RUN goes to podman (--engine podman)"
    base = manifest(registry_open, SDK_REPOSITORY, sdk_base.digest)
    built = manifest(registry_open, "e2e/sdk-engine", report["digest"])
    assert built["layers"][0]["digest"] == base["layers"][0]["digest"]
    assert report["push"]["bytes_uploaded"] < SMALL_PUSH
    assert len(recorder.calls_with("build")) == 1


def test_podman_names_the_from_line_it_could_not_pull_and_the_mirrors_setting(
    tmp_path: Path, hub_mirror: RegistryServer, podman: Podman
) -> None:
    project = project_with(tmp_path / "project", UNREACHABLE_STAGE)
    recorder = recording_podman(tmp_path)
    # Docker Hub's API is a closed loopback port here, so nothing leaves the machine; the
    # final stage comes from the mirror, which holds no gradle.
    cli = engine_cli(tmp_path, hub_mirror, MPKIT_REGISTRY_ENDPOINTS=f"docker.io={CLOSED}",
                     **podman_env(podman, recorder))  # fmt: skip
    failed = cli.run("image", "build", str(project), "--engine", "podman", "--output",
                     f"oci:{tmp_path}/out", timeout=BUILD_TIMEOUT)  # fmt: skip
    assert failed.returncode == 1, failed.output
    assert "Traceback" not in failed.output
    assert (
        f"error: {project / 'Dockerfile'} line 1: FROM gradle:8-jdk17: podman could not pull "
        "docker.io/library/gradle:8-jdk17 from docker.io (" in failed.stderr
    )
    assert f"the mirrors set for docker.io ({hub_mirror.host}) did not serve it" in failed.stderr
    assert '"mirrors": {"docker.io": ["MIRROR-HOST/PATH"]}' in failed.stderr
    assert not (tmp_path / "out").exists()
    assert not any("--tls-verify" in word for call in recorder.calls for word in call.argv)


def test_docker_builds_docker_hub_stages_through_the_mirror_and_keeps_the_base_digests(
    tmp_path: Path, hub_mirror: RegistryServer, dockerd: Dockerd
) -> None:
    project = project_with(tmp_path / "project", MULTI_STAGE)
    cli = engine_cli(tmp_path, hub_mirror, **dockerd.client_env())
    repository = "e2e/engine-docker"
    target = f"{hub_mirror.host}/{repository}"
    report = cli.ok("image", "build", "--json", str(project), "--engine", "docker",
                    "--build-arg", "GREETING=bonjour", "--push", f"{target}:1",
                    timeout=BUILD_TIMEOUT).json()  # fmt: skip
    assert report["builder"] == "docker"
    check_engine_result(report, hub_mirror, repository)
    # docker's FROM lines named the mirror (loopback: docker's daemon allows plain HTTP).
    names = dockerd.run("images", "--format", "{{.Repository}}").stdout.split()
    assert f"{hub_mirror.host}/library/{HUB_NAME}" in names
    assert not any(name.startswith(("docker.io/", HUB_NAME)) for name in names)
    pinned = f"{hub_mirror.host}/library/{HUB_NAME}@{report['base']['digest']}"
    dockerd.remove_images([f"{hub_mirror.host}/library/{HUB_NAME}:{HUB_TAG}", pinned])


def test_docker_names_the_from_line_it_could_not_pull(tmp_path: Path, dockerd: Dockerd) -> None:
    # The final image starts from scratch, so mpkit pulls nothing; docker's FROM names the
    # mirror, a closed loopback port.
    project = project_with(tmp_path / "project", FROM_SCRATCH)
    root = tmp_path / "user"
    env = isolated_env(root, {"MPKIT_MIRRORS": f"docker.io={CLOSED}", **dockerd.client_env()})
    failed = Mpkit(root=root, env=env).run("image", "build", str(project), "--engine", "docker",
                                           "--output", f"oci:{tmp_path}/out",
                                           timeout=BUILD_TIMEOUT)  # fmt: skip
    assert failed.returncode == 1, failed.output
    assert (
        f"error: {project / 'Dockerfile'} line 1: FROM gradle:8-jdk17: docker could not pull "
        "docker.io/library/gradle:8-jdk17 from docker.io (" in failed.stderr
    )
    assert f"the mirrors set for docker.io ({CLOSED}) did not serve it" in failed.stderr
    assert not (tmp_path / "out").exists()
