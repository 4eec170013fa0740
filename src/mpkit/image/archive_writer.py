"""Write an image as a docker-archive that `docker load`, `podman load` and `ctr import`
accept: the classic manifest.json, laid out as an OCI layout too (as Docker 25+ saves).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from mpkit.atomicfile import atomic_output
from mpkit.image import mediatypes
from mpkit.image.digest import digest_hex
from mpkit.image.types import Blob, Image

REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"


def write_docker_archive(image: Image, path: Path, repo_tags: list[str]) -> None:
    """*repo_tags* like ["harbor.example.com/team/adapter:1.0"]; written atomically."""
    blobs = {blob.digest: blob for blob in [image.config, *image.layers]}
    manifest_json = [{
        "Config": blob_name(image.config.digest),
        "RepoTags": repo_tags,
        "Layers": [blob_name(layer.digest) for layer in image.layers],
    }]  # fmt: skip
    descriptor = image.descriptor.to_dict()
    if repo_tags:
        descriptor["annotations"] = {
            IMAGE_NAME: repo_tags[0],
            REF_NAME: repo_tags[0].rsplit(":", 1)[-1],
        }
    index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": [descriptor]}
    with (
        atomic_output(path) as sink,
        tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")
        for digest in sorted(blobs):
            _add_blob(tar, blob_name(digest), blobs[digest])
        _add_bytes(tar, blob_name(image.digest), image.manifest_bytes)
        _add_bytes(tar, "index.json", json.dumps(index, separators=(",", ":")).encode())
        _add_bytes(tar, "manifest.json", json.dumps(manifest_json, separators=(",", ":")).encode())
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')


def blob_name(digest: str) -> str:
    """Where a blob lives inside the archive."""
    return f"blobs/sha256/{digest_hex(digest)}"


def _info(name: str, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uname, info.gname = size, 0o644, 0, "", ""
    return info


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = _info(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


def _add_blob(tar: tarfile.TarFile, name: str, blob: Blob) -> None:
    with blob.open() as stream:
        tar.addfile(_info(name, blob.size), stream)
