"""Build small OCI layouts with known content, by hand (independent of mpkit.image).

Reusable by other test packages: ``make_oci_layout(dir)`` returns the manifest digest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"

DEFAULT_LAYERS: list[dict[str, bytes]] = [
    {"etc/greeting.txt": b"hello from layer one\n"},
    {"app/main.py": b"print('hi')\n", "app/data/blob.bin": bytes(range(256)) * 64},
]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    """A deterministic uncompressed tar of *files* (parent directories included)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(p).parent) for p in files} - {"."})
        expanded = sorted({str(parent) for d in dirs for parent in [Path(d), *Path(d).parents]})
        for name in [d for d in expanded if d != "."]:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return out.getvalue()


def write_blob(root: Path, data: bytes) -> dict[str, Any]:
    digest = sha256(data)
    path = root / "blobs" / "sha256" / digest.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


@dataclass
class BuiltImage:
    manifest_bytes: bytes
    digest: str
    config_bytes: bytes
    layer_tars: list[bytes]  # uncompressed
    layer_blobs: list[bytes]  # as stored (gzip)
    descriptor: dict[str, Any]

    @property
    def diff_ids(self) -> list[str]:
        return [sha256(t) for t in self.layer_tars]


def write_image(
    root: Path,
    layers: Sequence[dict[str, bytes]] | None = None,
    media: Literal["oci", "docker"] = "oci",
    architecture: str = "amd64",
    variant: str | None = None,
) -> BuiltImage:
    """Write config, layers and manifest blobs under *root* (index.json untouched)."""
    init_layout(root)
    docker = media == "docker"
    tars = [layer_tar(files) for files in (DEFAULT_LAYERS if layers is None else layers)]
    blobs = [gzip.compress(t, compresslevel=6, mtime=0) for t in tars]
    platform = {"architecture": architecture, "os": "linux"}
    if variant:
        platform["variant"] = variant
    config = {
        **platform,
        "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in tars]},
        "history": [
            {"created": "1970-01-01T00:00:00Z", "created_by": f"layer {i}"}
            for i in range(len(tars))
        ],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    layer_type = DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": {
            "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
            **write_blob(root, config_bytes),
        },
        "layers": [{"mediaType": layer_type, **write_blob(root, b)} for b in blobs],
    }
    manifest_bytes = json.dumps(manifest, indent=2).encode()
    descriptor = {"mediaType": manifest["mediaType"], **write_blob(root, manifest_bytes)}
    return BuiltImage(manifest_bytes, sha256(manifest_bytes), config_bytes, tars, blobs, descriptor)


def init_layout(root: Path) -> None:
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    if not (root / "index.json").exists():
        (root / "index.json").write_text('{"schemaVersion":2,"manifests":[]}')


def tag_descriptor(root: Path, descriptor: dict[str, Any], tag: str | None) -> None:
    """Add *descriptor* to index.json under *tag*, replacing an entry with that tag."""
    index = json.loads((root / "index.json").read_text())
    entry = dict(descriptor)
    if tag is not None:
        entry["annotations"] = {REF_NAME: tag}
        index["manifests"] = [
            m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != tag
        ]
    index["manifests"].append(entry)
    (root / "index.json").write_text(json.dumps(index))


def make_oci_layout(
    dir: Path,
    tag: str | None = "latest",
    layers: list[dict[str, bytes]] | None = None,
    media: Literal["oci", "docker"] = "oci",
    architecture: str = "amd64",
) -> str:
    """Create (or add to) an OCI layout at *dir* holding one small image; return its digest."""
    built = write_image(dir, layers, media, architecture)
    tag_descriptor(dir, built.descriptor, tag)
    return built.digest


def make_multiplatform_layout(
    dir: Path,
    tag: str | None = "latest",
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64/v8"),
) -> tuple[str, dict[str, str]]:
    """An index tagged *tag* over one image per platform: (index digest, {platform: digest})."""
    entries = []
    children: dict[str, str] = {}
    for i, text in enumerate(platforms):
        os_name, arch, *rest = text.split("/")
        variant = rest[0] if rest else None
        built = write_image(dir, [{f"platform-{i}.txt": text.encode()}], "oci", arch, variant)
        platform = {
            "architecture": arch,
            "os": os_name,
            **({"variant": variant} if variant else {}),
        }
        entries.append({**built.descriptor, "platform": platform})
        children[text] = built.digest
    index_bytes = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    ).encode()
    tag_descriptor(dir, {"mediaType": OCI_INDEX, **write_blob(dir, index_bytes)}, tag)
    return sha256(index_bytes), children
