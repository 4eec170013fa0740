"""OCI image layouts (image-layout.md): read an image out of one, write one.

Reading goes through a small ``BlobStore`` interface so the same logic serves a
layout directory and a layout inside a tar archive (see ``archive.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from mpkit.atomicfile import atomic_output, write_bytes
from mpkit.errors import DigestMismatchError, ImageFormatError
from mpkit.image import mediatypes as mt
from mpkit.image.digest import (
    compute_digest,
    digest_algorithm,
    digest_hex,
    hash_stream,
    iter_chunks,
    new_hasher,
    validate_digest,
)
from mpkit.image.select import (
    DEFAULT_PLATFORM,
    describe_platforms,
    platform_matches,
    select_platform,
)
from mpkit.image.types import (
    MAX_MANIFEST_SIZE,
    Blob,
    Descriptor,
    Image,
    ImageIndex,
    Layer,
    Platform,
    parse_json_object,
)

REF_NAME = "org.opencontainers.image.ref.name"  # annotations.md: the tag in index.json
_MAX_INDEX_DEPTH = 4


class BlobStore(Protocol):
    """Where a layout's files live (a directory, or members of a tar archive)."""

    @property
    def location(self) -> str:
        """Names the layout in messages, e.g. ``OCI layout /tmp/x``."""
        ...

    def read_file(self, name: str, limit: int) -> bytes | None:
        """A top-level file such as ``index.json``; None when absent."""
        ...

    def blob(self, descriptor: Descriptor) -> Blob:
        """The blob for *descriptor*; raises ImageFormatError if absent or the wrong size."""
        ...


class DirectoryStore:
    """A layout directory on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return f"OCI layout {self.root}"

    def read_file(self, name: str, limit: int) -> bytes | None:
        path = self.root / name
        try:
            if path.stat().st_size > limit:
                raise ImageFormatError(f"{path} is larger than {limit} bytes")
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def blob_path(self, digest: str) -> Path:
        # image-layout.md: blobs/<alg>/<encoded>
        return self.root / "blobs" / digest_algorithm(digest) / digest_hex(digest)

    def blob(self, descriptor: Descriptor) -> Blob:
        path = self.blob_path(descriptor.digest)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ImageFormatError(
                f"{self.location} lacks blob {descriptor.digest} "
                f"(expected the file {path.relative_to(self.root)})",
                hint="the layout is incomplete; copy it again (e.g. with skopeo copy)",
            ) from None
        if size != descriptor.size:
            raise ImageFormatError(
                f"blob {descriptor.digest} in {self.location} is {size} bytes, "
                f"but its descriptor says {descriptor.size}",
                hint="the layout is corrupt or was modified; copy it again",
            )
        return Blob.from_file(path, descriptor)


class OCILayoutReader:
    """Resolves tags and platforms in a layout and loads images from a BlobStore."""

    def __init__(self, store: BlobStore, *, verify: bool = False) -> None:
        self.store = store
        self.verify = verify

    # -- top level -------------------------------------------------------------------
    def check_layout_file(self) -> None:
        raw = self.store.read_file("oci-layout", 64 * 1024)
        if raw is None:
            raise ImageFormatError(
                f"{self.store.location} has no 'oci-layout' file, so it is not an OCI layout",
                hint="point at the directory that holds oci-layout, index.json and blobs/",
            )
        version = parse_json_object(raw, f"'oci-layout' in {self.store.location}").get(
            "imageLayoutVersion"
        )
        if version != mt.OCI_LAYOUT_VERSION:
            raise ImageFormatError(
                f"{self.store.location} has imageLayoutVersion {version!r}; "
                f"mpkit reads version {mt.OCI_LAYOUT_VERSION}",
            )

    def index(self) -> ImageIndex:
        """``index.json`` as an ImageIndex whose children load from this layout."""
        self.check_layout_file()
        raw = self.store.read_file("index.json", MAX_MANIFEST_SIZE)
        if raw is None:
            raise ImageFormatError(
                f"{self.store.location} has no index.json",
                hint="the layout is incomplete; copy it again",
            )
        try:
            return ImageIndex(raw, loader=self.load_image)
        except ImageFormatError as exc:
            raise ImageFormatError(
                f"index.json in {self.store.location} is invalid: {exc.message}",
                hint=exc.hint,
            ) from None

    def resolve(self, tag: str | None, platform: Platform | None = DEFAULT_PLATFORM) -> Image:
        """The image tagged *tag* (or the only one), for *platform* if it is an index."""
        return self.resolve_descriptor(self.select_entry(tag, platform), platform)

    def select_entry(self, tag: str | None, platform: Platform | None) -> Descriptor:
        entries = self.index().manifests
        if tag is not None:
            chosen = [d for d in entries if d.annotation(REF_NAME) == tag]
            if not chosen:
                raise ImageFormatError(
                    f"{self.store.location} has no image tagged {tag!r}; "
                    f"tags: {describe_tags(entries)}",
                    hint="use one of the listed tags after the last ':' of the source",
                )
        else:
            chosen = entries
        if len(chosen) == 1:
            return chosen[0]
        if not chosen:
            raise ImageFormatError(f"{self.store.location} holds no images (index.json is empty)")
        # Several entries under one tag, or several untagged ones, that differ only by
        # platform act like an index of their own.
        same_name = tag is not None or all(d.annotation(REF_NAME) is None for d in chosen)
        if same_name and platform is not None and all(d.platform for d in chosen):
            return select_platform(chosen, platform)
        raise ImageFormatError(
            f"{self.store.location} holds {len(chosen)} images; say which one. "
            f"Tags: {describe_tags(chosen)}",
            hint="append ':TAG' to the source, e.g. oci:DIR:latest",
        )

    # -- loading -----------------------------------------------------------------------
    def resolve_descriptor(
        self, descriptor: Descriptor, platform: Platform | None, depth: int = 0
    ) -> Image:
        """Load the image *descriptor* names, descending through indexes by *platform*."""
        if not mt.is_index(descriptor.media_type):
            return self.load_image(descriptor, platform)
        if depth >= _MAX_INDEX_DEPTH:
            raise ImageFormatError(f"image indexes in {self.store.location} nest too deeply")
        index = self.load_index(descriptor)
        if platform is None:
            raise ImageFormatError(
                f"{descriptor.digest} in {self.store.location} is a multi-platform index "
                f"({describe_platforms(index.manifests)}); a platform must be chosen",
                hint="pass a platform such as linux/amd64",
            )
        child = select_platform(index.manifests, platform)
        return self.resolve_descriptor(child, platform, depth + 1)

    def load_index(self, descriptor: Descriptor) -> ImageIndex:
        raw = self._read_small(descriptor, "image index")
        try:
            return ImageIndex(raw, loader=self.load_image)
        except ImageFormatError as exc:
            raise ImageFormatError(
                f"image index {descriptor.digest} in {self.store.location}: {exc.message}",
                hint=exc.hint,
            ) from None

    def load_image(self, descriptor: Descriptor, platform: Platform | None = None) -> Image:
        """Load the manifest *descriptor* names; check every blob is present and sized."""
        if not mt.is_manifest(descriptor.media_type):
            raise ImageFormatError(
                f"{descriptor.digest} in {self.store.location} has media type "
                f"{descriptor.media_type!r}, which is not an image manifest"
            )
        raw = self._read_small(descriptor, "manifest")
        where = f"manifest {descriptor.digest} in {self.store.location}"
        manifest = parse_json_object(raw, where)
        declared = manifest.get("mediaType")
        if declared is not None and declared != descriptor.media_type:
            raise ImageFormatError(
                f"{where} declares mediaType {declared!r} but is referenced as "
                f"{descriptor.media_type!r}"
            )
        config_desc = Descriptor.from_dict(manifest.get("config"), where=f"{where}: config")
        raw_layers = manifest.get("layers")
        if not isinstance(raw_layers, list):
            raise ImageFormatError(f"{where} has no 'layers' list")
        layer_descs = [
            Descriptor.from_dict(item, where=f"{where}: layer {i}")
            for i, item in enumerate(raw_layers)
        ]
        config = self.store.blob(config_desc)
        blobs = [self.store.blob(d) for d in layer_descs]
        if self.verify:
            for blob in [config, *blobs]:
                verify_blob(blob, self.store.location)
        diff_ids = _diff_ids(config, len(blobs))
        layers = [Layer.from_blob(b, diff_ids[i]) for i, b in enumerate(blobs)]
        try:
            image = Image(manifest_bytes=raw, config=config, layers=layers)
        except ImageFormatError as exc:
            raise ImageFormatError(f"{where}: {exc.message}", hint=exc.hint) from None
        check_platform(image, platform, where)
        return image

    def _read_small(self, descriptor: Descriptor, what: str) -> bytes:
        if descriptor.size > MAX_MANIFEST_SIZE:
            raise ImageFormatError(
                f"{what} {descriptor.digest} in {self.store.location} is {descriptor.size} "
                f"bytes; registries accept at most {MAX_MANIFEST_SIZE}"
            )
        blob = self.store.blob(descriptor)
        with blob.open() as stream:
            data = stream.read(descriptor.size + 1)
        actual = compute_digest(data, digest_algorithm(descriptor.digest))
        if len(data) != descriptor.size or actual != descriptor.digest:
            raise DigestMismatchError(
                f"{what} {descriptor.digest} in {self.store.location} hashes to {actual}",
                hint="the layout is corrupt or was modified; copy it again",
            )
        return data


def _diff_ids(config: Blob, count: int) -> list[str | None]:
    """rootfs.diff_ids of an image config, or Nones when the config has none."""
    if config.media_type not in mt.CONFIG_MEDIA_TYPES:
        return [None] * count
    rootfs = parse_json_object(config.read_bytes(), "the image config").get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or len(ids) != count:
        raise ImageFormatError(
            f"the image config {config.digest} lists "
            f"{len(ids) if isinstance(ids, list) else 'no'} rootfs.diff_ids for {count} layers"
        )
    return [validate_digest(i) for i in ids]


def check_platform(image: Image, want: Platform | None, where: str) -> None:
    """Refuse an image whose config names a platform other than *want*."""
    have = image.platform if want is not None else None
    if want is not None and have is not None and not platform_matches(have, want):
        raise ImageFormatError(
            f"{where} is an image for {have}, not {want}",
            hint=f"build or pull the image for {want}, or ask for platform {have} explicitly",
        )


def verify_blob(blob: Blob, location: str) -> None:
    with blob.open() as stream:
        actual, size = hash_stream(stream, digest_algorithm(blob.digest))
    if actual != blob.digest or size != blob.size:
        raise DigestMismatchError(
            f"blob {blob.digest} in {location} hashes to {actual} ({size} bytes)",
            hint="the image source is corrupt or was modified; recreate it",
        )


def describe_tags(entries: Sequence[Descriptor]) -> str:
    tags = [d.annotation(REF_NAME) for d in entries]
    named = sorted({t for t in tags if t})
    return ", ".join(named) if named else "none (no entry has a ref.name annotation)"


def open_oci_layout(root: Path, *, verify: bool = False) -> OCILayoutReader:
    if not root.exists():
        raise ImageFormatError(
            f"OCI layout directory {root} does not exist",
            hint="check the path after 'oci:'",
        )
    if not root.is_dir():
        raise ImageFormatError(
            f"{root} is not a directory, so it cannot be an OCI layout",
            hint="for a tar of a layout use oci-archive:FILE",
        )
    return OCILayoutReader(DirectoryStore(root), verify=verify)


def read_oci_layout(
    root: Path,
    tag: str | None = None,
    platform: Platform | None = DEFAULT_PLATFORM,
    *,
    verify: bool = False,
) -> Image:
    """The image tagged *tag* in the layout at *root* (for *platform* if multi-platform).

    With ``verify`` every blob is hashed; otherwise only presence and size are checked
    (registries verify digests on push). ``platform=None`` skips the platform check.
    """
    return open_oci_layout(root, verify=verify).resolve(tag, platform)


_EMPTY_INDEX: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}


def dump_json(value: Any) -> bytes:
    """Compact JSON in the caller's key order: the same bytes every time."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class OCILayoutWriter:
    """Writes blobs and tags into an OCI layout directory, every file atomically (the
    temps in *temp_dir*, default beside each file)."""

    def __init__(self, root: Path, *, temp_dir: Path | None = None) -> None:
        self.root = root
        self.temp_dir = temp_dir
        self._store = DirectoryStore(root)
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        layout_file = root / "oci-layout"
        if layout_file.exists():
            OCILayoutReader(self._store).check_layout_file()
        else:
            write_bytes(
                layout_file,
                dump_json({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}),
                temp_dir=temp_dir,
            )
        if not (root / "index.json").exists():
            write_bytes(root / "index.json", dump_json(_EMPTY_INDEX), temp_dir=temp_dir)

    def blob_path(self, digest: str) -> Path:
        return self._store.blob_path(digest)

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        try:
            actual = self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return False
        return size is None or actual == size

    def write_blob(self, digest: str, size: int, chunks: Iterable[bytes]) -> Path:
        """Stream *chunks* into ``blobs/``; keep them only if they hash to *digest*/*size*.

        An existing blob of the right size is kept and *chunks* is not consumed.
        """
        path = self.blob_path(digest)
        if self.has_blob(digest, size):
            return path
        hasher = new_hasher(digest_algorithm(digest))
        written = 0
        with atomic_output(path, temp_dir=self.temp_dir) as out:
            for chunk in chunks:
                written += len(chunk)
                if written > size:
                    break
                hasher.update(chunk)
                out.write(chunk)
            actual = f"{digest_algorithm(digest)}:{hasher.hexdigest()}"
            if written != size or actual != digest:
                got = f"more than {size}" if written > size else str(written)
                raise DigestMismatchError(
                    f"refused to store blob {digest} in {self.root}: received {got} bytes "
                    f"hashing to {actual}, expected {size} bytes",
                    hint="the source sent different content than announced; retry the copy",
                )
        return path

    def write_bytes_blob(
        self, data: bytes, media_type: str = "application/octet-stream"
    ) -> Descriptor:
        descriptor = Descriptor(media_type, compute_digest(data), len(data))
        self.write_blob(descriptor.digest, descriptor.size, [data])
        return descriptor

    def add_manifest(self, descriptor: Descriptor, tag: str | None = None) -> None:
        """Add *descriptor* to index.json, replacing any entry already tagged *tag*."""
        if not self.has_blob(descriptor.digest, descriptor.size):
            raise ImageFormatError(
                f"cannot tag {descriptor.digest} in {self.root}: its blob is not in the layout",
                hint="write the manifest blob before adding it to index.json",
            )
        index_path = self.root / "index.json"
        current = index_path.read_bytes()
        index = parse_json_object(current, f"index.json in {self.root}")
        entries = index.get("manifests")
        if not isinstance(entries, list):
            raise ImageFormatError(f"index.json in {self.root} has no 'manifests' list")
        entry = descriptor.to_dict()
        if tag is not None:
            entry["annotations"] = {**entry.get("annotations", {}), REF_NAME: tag}
            entries = [e for e in entries if _ref_name(e) != tag]
        elif any(_same_untagged(e, descriptor.digest) for e in entries):
            return
        entries.append(entry)
        index["manifests"] = entries
        updated = dump_json(index)
        if updated == current:
            # Unchanged (the same base pulled again): no rewrite and fsync, but the
            # modification time still says when the layout was last used.
            os.utime(index_path)
            return
        write_bytes(index_path, updated, temp_dir=self.temp_dir)

    def write_image(self, image: Image, tag: str | None = None) -> Descriptor:
        """Copy every blob of *image* and its manifest into the layout and tag it."""
        for blob in image.blobs():
            if not self.has_blob(blob.digest, blob.size):
                with blob.open() as stream:
                    self.write_blob(blob.digest, blob.size, iter_chunks(stream))
        descriptor = image.descriptor
        self.write_blob(descriptor.digest, descriptor.size, [image.manifest_bytes])
        self.add_manifest(descriptor, tag)
        return descriptor

    def write_index(self, index: ImageIndex, tag: str | None = None) -> Descriptor:
        """Store *index* (whose children must already be in the layout) and tag it."""
        descriptor = index.descriptor
        self.write_blob(descriptor.digest, descriptor.size, [index.index_bytes])
        self.add_manifest(descriptor, tag)
        return descriptor


def _ref_name(entry: object) -> str | None:
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
    return name if isinstance(name, str) else None


def _same_untagged(entry: object, digest: str) -> bool:
    return isinstance(entry, dict) and entry.get("digest") == digest and _ref_name(entry) is None
