"""The team's registry as the shared cache of dependency layers: two machines (two cache
directories and homes), real CNCF registries, the real CLI. A machine with an empty cache
takes the layer from the registry without the package index (uv is told it is offline);
a poisoned or mismatched entry is refused with a warning, never used."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from mpkit.imagebuild.registrycache import (
    ARTIFACT_TYPE,
    DIFF_ID_ANNOTATION,
    KEY_ANNOTATION,
    TAG_PREFIX,
)
from tests.e2e.conftest import Mpkit, isolated_env
from tests.e2e.sdkproject import sdk_mirror
from tests.fixtures.baseimage import SdkBase
from tests.fixtures.registry import RegistryServer
from tests.imagebuild.projects import PURE_REQUIREMENT, make_sdk_project

MakeRegistry = Callable[..., RegistryServer]
TIMEOUT = 600.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def machine(root: Path, sdk_base: SdkBase, **extra: str) -> Mpkit:
    """A machine of its own: home, cache and state directories under *root*."""
    return Mpkit(root=root, env=isolated_env(root, {"MPKIT_MIRRORS": sdk_mirror(
        sdk_base.registry.host), **extra}))  # fmt: skip


def build(cli: Mpkit, project: Path, ref: str, *args: str, **env: str) -> dict[str, Any]:
    result = cli.run("image", "build", str(project), "--push", ref, "--json", *args, env=env,
                     timeout=TIMEOUT)  # fmt: skip
    assert result.returncode == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    data["stderr"] = result.stderr
    return data


def cache_tags(registry: RegistryServer, path: str) -> list[str]:
    tags = httpx.get(f"{registry.url}/v2/{path}/tags/list").json().get("tags") or []
    return [t for t in tags if t.startswith(TAG_PREFIX)]


def layer_tags(registry: RegistryServer, path: str) -> list[str]:
    """The cache tags holding dependency layers (the others hold build records)."""
    return [t for t in cache_tags(registry, path)
            if entry(registry, path, t)["artifactType"] == ARTIFACT_TYPE]  # fmt: skip


def entry(registry: RegistryServer, path: str, tag: str) -> dict[str, Any]:
    answer = httpx.get(f"{registry.url}/v2/{path}/manifests/{tag}",
                       headers={"Accept": OCI_MANIFEST})  # fmt: skip
    data: dict[str, Any] = answer.json()
    return data


def pip_step(result: dict[str, Any]) -> dict[str, Any]:
    step: dict[str, Any] = next(s for s in result["layers"] if "pip" in s["instruction"])
    return step


def put_entry(registry: RegistryServer, path: str, tag: str, manifest: dict[str, Any]) -> None:
    answer = httpx.put(f"{registry.url}/v2/{path}/manifests/{tag}",
                       content=json.dumps(manifest).encode(),
                       headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
    assert answer.status_code == 201, answer.text


def test_a_second_machine_takes_the_layer_from_the_registry_without_the_index(
    tmp_path: Path, sdk_base: SdkBase, make_registry: MakeRegistry, pypi: None
) -> None:
    registry = make_registry()
    project = make_sdk_project(tmp_path / "project", requirements=(PURE_REQUIREMENT,))
    ref = f"{registry.host}/team/adapter:v1"

    first = build(machine(tmp_path / "one", sdk_base), project, ref)
    assert first["registry_cache"]["hits"] == 0
    # The layer, and the records that spare the next machine work: its file listing and
    # the image's Python.
    assert first["registry_cache"]["recorded"] == len(cache_tags(registry, "team/adapter")) >= 3
    [tag] = layer_tags(registry, "team/adapter")
    recorded = entry(registry, "team/adapter", tag)
    assert recorded["artifactType"] == ARTIFACT_TYPE
    assert recorded["annotations"][KEY_ANNOTATION] == tag.removeprefix(TAG_PREFIX)
    assert recorded["layers"][0]["digest"] == pip_step(first)["digest"]

    # Another machine, nothing cached, and uv may not reach any index.
    second = build(machine(tmp_path / "two", sdk_base, UV_OFFLINE="1"), project, ref)
    assert second["digest"] == first["digest"]
    assert second["registry_cache"]["hits"] >= 1
    assert pip_step(second)["cached"] is True
    assert second["push"]["blobs_uploaded"] == 0

    # Without the registry cache, the offline machine cannot build: the hit was real.
    third = machine(tmp_path / "three", sdk_base, UV_OFFLINE="1").run(
        "image", "build", str(project), "--push", ref, "--no-registry-cache", timeout=TIMEOUT
    )
    assert third.returncode == 1, third.output


def test_a_poisoned_entry_is_refused_and_the_layer_built_again(
    tmp_path: Path, sdk_base: SdkBase, make_registry: MakeRegistry, pypi: None
) -> None:
    registry = make_registry()
    project = make_sdk_project(tmp_path / "project", requirements=(PURE_REQUIREMENT,))
    ref = f"{registry.host}/team/poisoned:v1"
    first = build(machine(tmp_path / "one", sdk_base), project, ref)
    [tag] = layer_tags(registry, "team/poisoned")
    good = entry(registry, "team/poisoned", tag)

    # Another layer of the same repository (the image's first COPY layer) under the key:
    # its content does not decompress to the recorded diff_id.
    other = next(s for s in first["layers"] if "pip" not in s["instruction"])
    poisoned = json.loads(json.dumps(good))
    poisoned["layers"][0] = {**good["layers"][0], "digest": other["digest"],
                             "size": other["size"]}  # fmt: skip
    put_entry(registry, "team/poisoned", tag, poisoned)
    second = build(machine(tmp_path / "two", sdk_base), project, ref)
    assert "ignoring the registry cache entry" in second["stderr"]
    assert pip_step(second)["cached"] is False
    assert second["digest"] == first["digest"]  # built from the index, as if never cached

    # An entry for another key under this key's tag.
    foreign = json.loads(json.dumps(good))
    foreign["annotations"][KEY_ANNOTATION] = "0" * 64
    put_entry(registry, "team/poisoned", tag, foreign)
    third = build(machine(tmp_path / "three", sdk_base), project, ref)
    assert "not mpkit's entry for this key" in third["stderr"]
    assert pip_step(third)["cached"] is False and third["digest"] == first["digest"]
    assert DIFF_ID_ANNOTATION in good["annotations"]


def test_cache_from_and_cache_to_name_other_repositories(
    tmp_path: Path, sdk_base: SdkBase, make_registry: MakeRegistry, pypi: None
) -> None:
    shared, target = make_registry(), make_registry()
    project = make_sdk_project(tmp_path / "project", requirements=(PURE_REQUIREMENT,))
    cache_repository = f"{shared.host}/ci/dependency-cache"
    first = build(machine(tmp_path / "one", sdk_base), project, f"{target.host}/a/app:v1",
                  "--cache-to", cache_repository)  # fmt: skip
    assert first["registry_cache"]["recorded"] == len(cache_tags(shared, "ci/dependency-cache"))
    assert cache_tags(target, "a/app") == [] and len(layer_tags(shared, "ci/dependency-cache")) == 1

    second = build(machine(tmp_path / "two", sdk_base), project, f"{target.host}/b/app:v1",
                   "--cache-from", cache_repository, "--no-registry-cache")  # fmt: skip
    assert second["registry_cache"] == {"hits": 0, "recorded": 0}  # --no-registry-cache wins
    assert cache_tags(target, "b/app") == []

    third = build(machine(tmp_path / "three", sdk_base, UV_OFFLINE="1"), project,
                  f"{target.host}/b/app:v1", "--cache-from", cache_repository)  # fmt: skip
    assert pip_step(third)["cached"] is True and third["digest"] == first["digest"]
