"""Packs pointing at images in the real test registries, and an isolated `mpkit` runner."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mpkit.credentials import Credential
from mpkit.image.layout import open_oci_layout, read_oci_layout
from mpkit.image.source import load_source
from mpkit.image.types import Blob, Descriptor, Image
from mpkit.pack import ImageLocation, build_pack
from mpkit.reference import parse_reference
from mpkit.registry import ClientOptions, open_client, push_image
from tests.e2e.conftest import Mpkit, isolated_env
from tests.fixtures.baseimage import SDK_TAG, base_image_layout
from tests.fixtures.podman import Podman, isolated_podman
from tests.fixtures.registry import RegistryServer
from tests.image.builders import (
    OCI_INDEX,
    OCI_MANIFEST,
    make_multiplatform_layout,
    make_oci_layout,
)
from tests.pack.projects import write_project

TAG = "1.2.3_abc"


@dataclass(frozen=True)
class Pushed:
    registry: str  # host:port
    path: str  # repository path, no leading slash
    digest: str
    image: Image | None = None

    @property
    def pinned(self) -> str:
        return f"{self.registry}/{self.path}@{self.digest}"


def alice(registry: RegistryServer) -> Credential:
    return Credential(username="alice", password=registry.users["alice"], source="test")


def small_image(tmp: Path, *, architecture: str = "amd64") -> Image:
    """A two-layer image whose blobs no registry has seen before."""
    salt = uuid.uuid4().hex
    layout = tmp / f"layout-{salt[:8]}"
    layers = [{"etc/motd": f"adapter {salt}\n".encode()}, {"app/adapter.py": salt.encode()}]
    make_oci_layout(layout, "v1", layers, architecture=architecture)
    return load_source(f"oci:{layout}:v1", platform=None)


def push(
    registry: RegistryServer, path: str, image: Image, *, credential: Credential | None = None
) -> Pushed:
    options = ClientOptions(ca_certs=(registry.ca_path,) if registry.ca_path else ())
    target = parse_reference(f"{registry.host}/{path}:{TAG}")
    with open_client(
        registry.host, options=options, anonymous=credential is None, explicit=credential
    ) as client:
        result = push_image(client, image, target)
    return Pushed(registry.host, path, result.digest, image)


def push_index(
    registry: RegistryServer, path: str, tmp: Path, platforms: tuple[str, ...]
) -> Pushed:
    """A multi-platform index (one small image per platform), children first."""
    layout = tmp / f"index-{uuid.uuid4().hex[:8]}"
    digest, children = make_multiplatform_layout(layout, "v1", platforms)
    reader = open_oci_layout(layout)
    with open_client(registry.host, anonymous=True) as client:
        for child in children.values():
            image = reader.load_image(Descriptor(OCI_MANIFEST, child, _size(layout, child)))
            push_image(client, image, parse_reference(f"{registry.host}/{path}@{child}"))
        index_bytes = (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
        assert client.put_manifest(path, TAG, index_bytes, OCI_INDEX) == digest
    return Pushed(registry.host, path, digest)


def _size(layout: Path, digest: str) -> int:
    return (layout / "blobs" / "sha256" / digest.split(":")[1]).stat().st_size


def make_pack(
    root: Path,
    registry: str | None,
    path: str,
    digest: str,
    *,
    tag: str = TAG,
    config: dict[str, object] | None = None,
) -> Path:
    """A pack written by mpkit's writer for a fresh project under *root*; in root/build/."""
    project = write_project(root)
    if config is not None:
        (root / "config.json").write_text(json.dumps(config))
    location = ImageLocation(registry=registry, repository=f"/{path}", digest=digest, tag=tag)
    return build_pack(project, location)


def pack_for(tmp: Path, pushed: Pushed, **kwargs: object) -> Path:
    return make_pack(tmp / f"project-{uuid.uuid4().hex[:6]}", pushed.registry, pushed.path,
                     pushed.digest, **kwargs)  # type: ignore[arg-type]  # fmt: skip


@pytest.fixture
def mpkit(tmp_path: Path) -> Mpkit:
    root = tmp_path / "user"
    return Mpkit(root=root, env=isolated_env(root))


def podman_env(engine: Podman) -> dict[str, str]:
    """What an mpkit subprocess needs to use *engine*'s storage and configuration."""
    keys = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF")
    return {key: engine.env[key] for key in keys}


@pytest.fixture
def fresh_podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """podman with empty storage of its own, removed after the test."""
    with isolated_podman(tmp_path_factory) as engine:
        yield engine


def sdk_image(*, cmd: list[str] | None = None) -> Image:
    """The SDK base stand-in (its server answers /apiVersion) under a config of its own,
    so every call gives an image digest no podman storage has seen."""
    layout, _ = base_image_layout()
    base = read_oci_layout(layout, SDK_TAG)
    config = json.loads(base.config_bytes)
    labels = config["config"].setdefault("Labels", {})
    labels["io.mpkit.test.salt"] = uuid.uuid4().hex
    if cmd is not None:
        config["config"]["Cmd"] = cmd
    config_blob = Blob.from_bytes(json.dumps(config).encode(), base.config.media_type)
    manifest = json.loads(base.manifest_bytes)
    manifest["config"] = config_blob.descriptor.to_dict()
    return Image(json.dumps(manifest).encode(), config_blob, base.layers)
