"""Images inside tar archives: ``oci-archive`` and ``docker-archive`` (docker/podman save).

Blobs are served straight from the archive by member offset; nothing is extracted
(a compressed archive is decompressed once into a temporary tar).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from mpkit.errors import ImageFormatError
from mpkit.image import mediatypes as mt
from mpkit.image._tar import GZIP_MAGIC, ZSTD_MAGIC, TarIndex, TarMember
from mpkit.image.cache import LayerCache
from mpkit.image.compress import gunzip_digests
from mpkit.image.digest import digest_algorithm, digest_hex, validate_digest
from mpkit.image.layout import REF_NAME, OCILayoutReader, check_platform, dump_json
from mpkit.image.select import DEFAULT_PLATFORM
from mpkit.image.types import (
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    Blob,
    Descriptor,
    Image,
    Layer,
    Platform,
    parse_json_object,
)
from mpkit.jsonfile import parse_json

__all__ = ["LayerCache", "TarStore", "read_docker_archive", "read_oci_archive"]

CONTAINERD_IMAGE_NAME = "io.containerd.image.name"  # docker save (v25+) annotation
_INDEX_SELECTOR = re.compile(r"^@(\d+)$")


class TarStore:
    """A BlobStore over an OCI layout stored in a tar archive."""

    def __init__(self, index: TarIndex, kind: str = "OCI archive") -> None:
        self.tar = index
        self.kind = kind

    @property
    def location(self) -> str:
        return f"{self.kind} {self.tar.archive}"

    def read_file(self, name: str, limit: int) -> bytes | None:
        if self.tar.get(name) is None:
            return None
        return self.tar.read(name, limit)

    def blob(self, descriptor: Descriptor) -> Blob:
        name = f"blobs/{digest_algorithm(descriptor.digest)}/{digest_hex(descriptor.digest)}"
        member = self.tar.get(name)
        if member is None:
            raise ImageFormatError(
                f"{self.location} lacks blob {descriptor.digest} (expected the member {name})",
                hint="the archive is incomplete; create it again",
            )
        if member.size != descriptor.size:
            raise ImageFormatError(
                f"blob {descriptor.digest} in {self.location} is {member.size} bytes, "
                f"but its descriptor says {descriptor.size}",
                hint="the archive is corrupt or was modified; create it again",
            )
        return Blob(descriptor, _member_opener(self.tar, member))


def _member_opener(tar: TarIndex, member: TarMember) -> Callable[[], BinaryIO]:
    return lambda: tar.open(member)


def _require_file(path: Path, what: str) -> None:
    if not path.exists():
        raise ImageFormatError(f"{what} {path} does not exist", hint="check the path")
    if not path.is_file():
        raise ImageFormatError(f"{what} {path} is not a file")


def read_oci_archive(
    file: Path,
    tag: str | None = None,
    platform: Platform | None = DEFAULT_PLATFORM,
    *,
    verify: bool = False,
) -> Image:
    """The image tagged *tag* in a tar of an OCI layout (as ``skopeo copy … oci-archive:``)."""
    _require_file(file, "OCI archive")
    reader = OCILayoutReader(TarStore(TarIndex(file)), verify=verify)
    return reader.resolve(tag, platform)


def read_docker_archive(
    file: Path,
    ref: str | None = None,
    platform: Platform | None = DEFAULT_PLATFORM,
    cache: LayerCache | None = None,
    *,
    verify: bool = True,
) -> Image:
    """An image from a ``docker save``/``podman save`` tar, selected by RepoTag or ``@N``.

    An archive that holds an OCI layout (docker 25+) is read as that layout.
    Otherwise a Docker v2 schema 2 image is built: the config bytes unchanged and
    each layer gzip-compressed deterministically (cached in *cache* by diff_id).
    Layer contents are checked against the config's rootfs.diff_ids.
    """
    _require_file(file, "docker archive")
    tar = TarIndex(file)
    if tar.get("index.json") is not None and tar.get("oci-layout") is not None:
        reader = OCILayoutReader(TarStore(tar, "docker archive"), verify=verify)
        entry = _select_oci_entry(reader, ref)
        if entry is not None:
            return reader.resolve_descriptor(entry, platform)
    if tar.get("manifest.json") is None:
        raise ImageFormatError(
            f"{file} has no manifest.json, so it is not a docker-archive",
            hint="for a tar of an OCI layout use oci-archive:FILE",
        )
    entries = _parse_docker_manifest(tar)
    chosen = _select_docker_entry(entries, ref, file)
    return _build_docker_image(tar, chosen, platform, cache or LayerCache.default(), verify=verify)


def _select_oci_entry(reader: OCILayoutReader, ref: str | None) -> Descriptor | None:
    """The index.json entry for *ref* in a docker-save OCI layout, or None to fall back."""
    entries = reader.index().manifests
    if ref is None:
        return entries[0] if len(entries) == 1 else None
    selector = _INDEX_SELECTOR.match(ref)
    if selector:
        position = int(selector.group(1))
        return entries[position] if position < len(entries) else None
    wanted = normalize_repo_tag(ref)
    for entry in entries:
        name = entry.annotation(CONTAINERD_IMAGE_NAME)
        if (name and normalize_repo_tag(name) == wanted) or entry.annotation(REF_NAME) == ref:
            return entry
    return None


def _parse_docker_manifest(tar: TarIndex) -> list[dict[str, Any]]:
    raw = tar.read("manifest.json", MAX_MANIFEST_SIZE)
    try:
        entries = parse_json(raw)
    except ValueError as exc:
        raise ImageFormatError(f"manifest.json in {tar.archive} is not valid JSON: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise ImageFormatError(f"manifest.json in {tar.archive} is not a non-empty list")
    for i, entry in enumerate(entries):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("Config"), str)
            and isinstance(entry.get("Layers"), list)
            and all(isinstance(name, str) for name in entry["Layers"])
        ):
            raise ImageFormatError(
                f"entry {i} of manifest.json in {tar.archive} lacks 'Config' or 'Layers'"
            )
    return entries


def _repo_tags(entry: dict[str, Any]) -> list[str]:
    tags = entry.get("RepoTags")
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _select_docker_entry(
    entries: list[dict[str, Any]], ref: str | None, file: Path
) -> dict[str, Any]:
    listing = "; ".join(
        f"@{i}: {', '.join(_repo_tags(e)) or '(untagged)'}" for i, e in enumerate(entries)
    )
    if ref is None:
        if len(entries) == 1:
            return entries[0]
        raise ImageFormatError(
            f"{file} holds {len(entries)} images; say which one ({listing})",
            hint="append ':NAME:TAG' or ':@N' to the source, e.g. docker-archive:FILE:@0",
        )
    selector = _INDEX_SELECTOR.match(ref)
    if selector:
        position = int(selector.group(1))
        if position < len(entries):
            return entries[position]
        raise ImageFormatError(f"{file} has no image @{position} ({listing})")
    wanted = normalize_repo_tag(ref)
    for entry in entries:
        if any(t == ref or normalize_repo_tag(t) == wanted for t in _repo_tags(entry)):
            return entry
    raise ImageFormatError(
        f"{file} has no image named {ref!r} ({listing})",
        hint="use one of the listed names, or @N for the N-th image",
    )


def normalize_repo_tag(ref: str) -> str:
    """Docker's short-name rules, enough to compare RepoTags: ``x`` = docker.io/library/x:latest."""
    name, at, digest = ref.partition("@")
    if not at and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    first, slash, _ = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name}"
    if name.startswith("docker.io/") and name.count("/") == 1:
        name = name.replace("docker.io/", "docker.io/library/", 1)
    return f"{name}@{digest}" if at else name


def _build_docker_image(
    tar: TarIndex,
    entry: dict[str, Any],
    platform: Platform | None,
    cache: LayerCache,
    *,
    verify: bool,
) -> Image:
    where = f"image {', '.join(_repo_tags(entry)) or entry['Config']} in {tar.archive}"
    config_bytes = tar.read(entry["Config"], MAX_CONFIG_SIZE)
    config = parse_json_object(config_bytes, f"the config of {where}")
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    layer_names: list[str] = entry["Layers"]
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layer_names):
        raise ImageFormatError(
            f"the config of {where} lists "
            f"{len(diff_ids) if isinstance(diff_ids, list) else 'no'} rootfs.diff_ids "
            f"for {len(layer_names)} layers",
            hint="the archive is corrupt; save the image again",
        )
    layers = [
        _docker_layer(tar, name, validate_digest(diff_id), cache, verify, f"layer {i} of {where}")
        for i, (name, diff_id) in enumerate(zip(layer_names, diff_ids, strict=True))
    ]
    config_blob = Blob.from_bytes(config_bytes, mt.DOCKER_CONFIG)
    # Docker v2 schema 2 manifest; fixed key order and compact separators keep it stable.
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": _docker_descriptor(config_blob.descriptor),
        "layers": [_docker_descriptor(layer.descriptor) for layer in layers],
    }
    image = Image(manifest_bytes=dump_json(manifest), config=config_blob, layers=layers)
    check_platform(image, platform, where)
    return image


def _docker_descriptor(descriptor: Descriptor) -> dict[str, Any]:
    return {
        "mediaType": descriptor.media_type,
        "size": descriptor.size,
        "digest": descriptor.digest,
    }


def _docker_layer(
    tar: TarIndex, name: str, diff_id: str, cache: LayerCache, verify: bool, where: str
) -> Layer:
    member = tar.require(name)
    opener = _member_opener(tar, member)
    with opener() as stream:
        head = stream.read(4)
    if head.startswith(ZSTD_MAGIC):
        raise ImageFormatError(
            f"{where} is zstd-compressed, which a Docker v2 schema 2 image cannot carry",
            hint="save the image with uncompressed or gzip layers",
        )
    if not head.startswith(GZIP_MAGIC):
        return cache.compressed_layer(
            diff_id, opener, media_type=mt.DOCKER_LAYER_GZIP, verify=verify, where=where
        )
    # Already gzip: push the bytes as they are; still prove they decompress to diff_id.
    with opener() as stream:
        digests = gunzip_digests(stream, where)
    if digests.diff_id != diff_id:
        raise ImageFormatError(
            f"{where}: the uncompressed layer hashes to {digests.diff_id}, but the image "
            f"config's rootfs.diff_ids says {diff_id}",
            hint="the archive is corrupt or was modified; save the image again",
        )
    descriptor = Descriptor(mt.DOCKER_LAYER_GZIP, digests.digest, digests.size)
    return Layer(descriptor, opener, diff_id=diff_id)
