"""`mpkit build` checks what it can before the first upload, and tags only what passed.

A project whose manifest.txt names another adapter kind than its adapter defines (the
mismatch the SDK's mp-build catches before it pushes):

- the first build can only learn the definition by running the image, which podman pulls
  from the registry: the image is pushed by digest alone, the check fails, and no tag is
  published;
- a second build of the same image remembers the definition: it fails before anything
  is uploaded, and a repository it was never allowed to reach stays empty;
- once manifest.txt is fixed, the build pushes under the tag.

The build's messages name the adapter by its display name (resources.properties), not by
manifest.txt's key ``DISPLAY_NAME``.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.describe.test_build_cli_e2e import init_sample_project
from tests.describe.test_generate import SAMPLE_KIND, SAMPLE_NAME
from tests.fixtures.baseimage import SdkBase
from tests.fixtures.podman import Podman
from tests.fixtures.registry import RegistryServer

BUILD_TIMEOUT = 600


def tags(registry: RegistryServer, repository: str) -> list[str]:
    """The repository's tags (distribution answers 404 for a repository without any)."""
    response = httpx.get(f"{registry.url}/v2/{repository}/tags/list", timeout=30)
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return list(response.json().get("tags") or [])


def repositories(registry: RegistryServer) -> list[str]:
    response = httpx.get(f"{registry.url}/v2/_catalog", timeout=30)
    response.raise_for_status()
    return list(response.json().get("repositories") or [])


def manifest_digests(registry: RegistryServer, repository: str) -> list[str]:
    """The manifests the repository holds, tagged or not (the filesystem driver's layout:
    the API lists tags only)."""
    revisions = (registry.storage_root / "docker/registry/v2/repositories" / repository
                 / "_manifests/revisions/sha256")  # fmt: skip
    return sorted(f"sha256:{p.name}" for p in revisions.iterdir()) if revisions.is_dir() else []


def has_manifest(registry: RegistryServer, repository: str, digest: str) -> bool:
    accept = "application/vnd.docker.distribution.manifest.v2+json, " + (
        "application/vnd.oci.image.manifest.v1+json"
    )
    response = httpx.head(f"{registry.url}/v2/{repository}/manifests/{digest}", timeout=30,
                          headers={"Accept": accept})  # fmt: skip
    return response.status_code == 200


def set_adapter_kind(root: Path, kind: str) -> None:
    manifest = json.loads((root / "manifest.txt").read_text())
    manifest["adapter_kinds"] = [kind]
    (root / "manifest.txt").write_text(json.dumps(manifest, indent=4))


def test_a_wrong_adapter_kind_publishes_no_tag_and_is_caught_before_the_upload_next_time(
    tmp_path: Path,
    sdk_base: SdkBase,
    registry_open: RegistryServer,
    podman: Podman,
) -> None:
    init = init_sample_project(tmp_path, sdk_base, podman)
    mpkit, env, root = init.mpkit, init.env, init.root
    assert json.loads((root / "manifest.txt").read_text())["display_name"] == "DISPLAY_NAME"
    set_adapter_kind(root, "WrongKind")
    first_repository = "e2e/check-first"
    second_repository = "e2e/check-second"

    # The definition needs the image in podman: pushed by digest, checked, not tagged.
    first = mpkit.run("build", str(root), "-r", f"{registry_open.host}/{first_repository}",
                      env=env, timeout=BUILD_TIMEOUT)  # fmt: skip
    assert first.returncode != 0, first.stdout + first.stderr
    assert "'WrongKind'" in first.stderr and f"'{SAMPLE_KIND}'" in first.stderr
    assert f"asking the adapter of {SAMPLE_NAME} for its definition" in first.stderr
    assert "DISPLAY_NAME" not in first.stderr
    assert "adapter definition: image way" in first.stderr
    # The image is in the registry, by digest, and untagged.
    [digest] = manifest_digests(registry_open, first_repository)
    assert has_manifest(registry_open, first_repository, digest)
    assert tags(registry_open, first_repository) == []

    # The same image again: the definition is remembered, so nothing is uploaded at all.
    second = mpkit.run("build", str(root), "-r", f"{registry_open.host}/{second_repository}",
                       env=env, timeout=BUILD_TIMEOUT)  # fmt: skip
    assert second.returncode != 0, second.stdout + second.stderr
    assert "'WrongKind'" in second.stderr
    assert second_repository not in repositories(registry_open)  # never reached
    assert not (root / "build").exists() or not list((root / "build").glob("*.pak"))

    # Fixed: the definition is still remembered, so the image goes up under its tag.
    set_adapter_kind(root, SAMPLE_KIND)
    fixed = mpkit.ok("build", str(root), "-r", f"{registry_open.host}/{second_repository}",
                     "--json", env=env, timeout=BUILD_TIMEOUT)  # fmt: skip
    outcome = fixed.json()
    assert outcome["describe"]["from_cache"] is True
    assert outcome["digest"] == digest  # the same image as the first build's
    image_tags = [
        t for t in tags(registry_open, second_repository) if not t.startswith("mpkit-cache-")
    ]
    assert image_tags == [outcome["tag"]]
    assert outcome["pushed_to"] == (
        f"{registry_open.host}/{second_repository}:{outcome['tag']}@{outcome['digest']}"
    )
