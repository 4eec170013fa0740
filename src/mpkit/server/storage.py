"""Content-addressed filesystem storage for the built-in registry.

Layout under the root (every name, tag and digest is validated before it gets here)::

    blobs/<alg>/<hex[:2]>/<hex>                         blob and manifest bytes
    repositories/<name>/_layers/<alg>/<hex>             the repository holds this blob
    repositories/<name>/_manifests/revisions/<alg>/<hex>  ... this manifest (its media type)
    repositories/<name>/_manifests/tags/<tag>           tag -> digest
    repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex>  referrer descriptor (JSON)
    _uploads/<session>/                                 upload sessions (see uploads.py)
    _tmp/                                               temp files, renamed into place

A blob appears under ``blobs/`` only by an atomic rename of a file whose digest was
verified and whose bytes were synced to disk, and every other file is written to
``_tmp`` first, synced and renamed, so a crash leaves either the old state or the new
one, never a partial file. Repository links
decide visibility: like distribution, a blob or manifest that exists in storage is
still 404 in a repository that never received (or mounted) it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mpkit.atomicfile import write_bytes
from mpkit.server.names import NAME_RE, split_digest, valid_tag

TMP_DIR = "_tmp"
UPLOADS_DIR = "_uploads"
COPY_CHUNK = 1024 * 1024


def encode_tag(tag: str) -> str:
    """File name for *tag*: uppercase letters escaped, so case-insensitive disks keep
    ``Latest`` and ``latest`` apart (``%`` never occurs in a tag)."""
    return "".join(f"%{c.lower()}" if "A" <= c <= "Z" else c for c in tag)


def decode_tag(filename: str) -> str | None:
    out: list[str] = []
    chars = iter(filename)
    for c in chars:
        out.append(next(chars, "").upper() if c == "%" else c)
    tag = "".join(out)
    return tag if valid_tag(tag) and encode_tag(tag) == filename else None


class Storage:
    """Blobs, repository links, manifests, tags and referrers under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.repositories = root / "repositories"
        self.tmp = root / TMP_DIR
        self.uploads = root / UPLOADS_DIR
        for directory in (self.blobs, self.repositories, self.tmp, self.uploads):
            directory.mkdir(parents=True, exist_ok=True)

    # -- paths -----------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        algorithm, hex_part = split_digest(digest)
        return self.blobs / algorithm / hex_part[:2] / hex_part

    def _repo(self, name: str) -> Path:
        assert NAME_RE.fullmatch(name), name  # validated by the caller; never a path escape
        return self.repositories / name

    def _layer_link(self, name: str, digest: str) -> Path:
        algorithm, hex_part = split_digest(digest)
        return self._repo(name) / "_layers" / algorithm / hex_part

    def _revision(self, name: str, digest: str) -> Path:
        algorithm, hex_part = split_digest(digest)
        return self._repo(name) / "_manifests" / "revisions" / algorithm / hex_part

    def _tags_dir(self, name: str) -> Path:
        return self._repo(name) / "_manifests" / "tags"

    def _referrers_dir(self, name: str, subject: str) -> Path:
        algorithm, hex_part = split_digest(subject)
        return self._repo(name) / "_referrers" / algorithm / hex_part

    # -- atomic writes ---------------------------------------------------------------
    def temp_path(self) -> Path:
        """A fresh path in ``_tmp`` (same filesystem as the store: renames are atomic)."""
        return self.tmp / uuid.uuid4().hex

    def write_atomic(self, target: Path, data: bytes) -> None:
        # Synced before it gets its name, as distribution does.
        write_bytes(target, data, temp_dir=self.tmp)

    def clear_temp(self) -> None:
        """Delete leftovers of interrupted writes (only safe while no request runs)."""
        for entry in self.tmp.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()

    # -- blobs -----------------------------------------------------------------------
    def blob_size(self, digest: str) -> int | None:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def commit_blob(self, source: Path, digest: str) -> None:
        """Move a verified file into place as *digest* (kept if an equal one exists).

        The bytes are synced to disk first, so a blob that has its name survives a power
        cut too, not just a crash of the server.
        """
        target = self.blob_path(digest)
        if target.exists():
            source.unlink()
            return
        fd = os.open(source, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        target.parent.mkdir(parents=True, exist_ok=True)
        source.replace(target)  # same content either way: a racing commit is harmless

    def put_blob_bytes(self, digest: str, data: bytes) -> None:
        if not self.blob_path(digest).exists():
            self.write_atomic(self.blob_path(digest), data)

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def repo_blob_size(self, name: str, digest: str) -> int | None:
        """Size of *digest* if repository *name* holds it (uploaded, mounted or a manifest)."""
        if not (self._layer_link(name, digest).exists() or self._revision(name, digest).exists()):
            return None
        return self.blob_size(digest)

    def link_blob(self, name: str, digest: str) -> None:
        link = self._layer_link(name, digest)
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError), open(link, "xb"):
            pass  # an empty file created with O_EXCL: atomic

    def unlink_blob(self, name: str, digest: str) -> bool:
        try:
            self._layer_link(name, digest).unlink()
        except FileNotFoundError:
            return False
        return True

    # -- manifests and tags ----------------------------------------------------------
    def put_manifest(self, name: str, digest: str, data: bytes, media_type: str) -> None:
        self.put_blob_bytes(digest, data)
        self.write_atomic(self._revision(name, digest), media_type.encode())

    def manifest_media_type(self, name: str, digest: str) -> str | None:
        try:
            return self._revision(name, digest).read_text()
        except FileNotFoundError:
            return None

    def delete_manifest(self, name: str, digest: str) -> bool:
        """Remove the revision and every tag pointing at it."""
        try:
            self._revision(name, digest).unlink()
        except FileNotFoundError:
            return False
        for tag, target in self.iter_tags(name):
            if target == digest:
                self.delete_tag(name, tag)
        return True

    def set_tag(self, name: str, tag: str, digest: str) -> None:
        self.write_atomic(self._tags_dir(name) / encode_tag(tag), digest.encode())

    def resolve_tag(self, name: str, tag: str) -> str | None:
        try:
            return (self._tags_dir(name) / encode_tag(tag)).read_text().strip()
        except FileNotFoundError:
            return None

    def delete_tag(self, name: str, tag: str) -> bool:
        try:
            (self._tags_dir(name) / encode_tag(tag)).unlink()
        except FileNotFoundError:
            return False
        return True

    def iter_tags(self, name: str) -> Iterator[tuple[str, str]]:
        try:
            entries = list(os.scandir(self._tags_dir(name)))
        except FileNotFoundError:
            return
        for entry in entries:
            tag = decode_tag(entry.name)
            if tag is None:
                continue
            with contextlib.suppress(FileNotFoundError):
                yield tag, Path(entry.path).read_text().strip()

    def list_tags(self, name: str) -> list[str]:
        return sorted(tag for tag, _ in self.iter_tags(name))  # code-point order, as Go sorts

    def repository_exists(self, name: str) -> bool:
        repo = self._repo(name)
        return (repo / "_manifests").is_dir() or (repo / "_layers").is_dir()

    def list_repositories(self) -> list[str]:
        found: list[str] = []
        for directory, subdirs, _ in os.walk(self.repositories):
            if "_manifests" in subdirs or "_layers" in subdirs:
                found.append(Path(directory).relative_to(self.repositories).as_posix())
            subdirs[:] = [d for d in subdirs if not d.startswith("_")]
        return sorted(found)

    # -- referrers -------------------------------------------------------------------
    def add_referrer(self, name: str, subject: str, descriptor: dict[str, Any]) -> None:
        algorithm, hex_part = split_digest(str(descriptor["digest"]))
        target = self._referrers_dir(name, subject) / f"{algorithm}-{hex_part}"
        self.write_atomic(target, json.dumps(descriptor, sort_keys=True).encode())

    def remove_referrer(self, name: str, subject: str, digest: str) -> None:
        algorithm, hex_part = split_digest(digest)
        with contextlib.suppress(FileNotFoundError):
            (self._referrers_dir(name, subject) / f"{algorithm}-{hex_part}").unlink()

    def referrers(self, name: str, subject: str) -> list[dict[str, Any]]:
        try:
            entries = sorted(os.scandir(self._referrers_dir(name, subject)), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        found: list[dict[str, Any]] = []
        for entry in entries:
            with contextlib.suppress(FileNotFoundError, ValueError):
                descriptor = json.loads(Path(entry.path).read_bytes())
                if self.manifest_media_type(name, str(descriptor.get("digest"))) is not None:
                    found.append(descriptor)
        return found


def hash_file(path: Path, algorithm: str) -> str:
    """``algorithm:hex`` of a file's content, read in 1 MiB pieces."""
    hasher = hashlib.new(algorithm)
    buffer = bytearray(COPY_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            n = handle.readinto(view)
            if not n:
                break
            hasher.update(view[:n])
    return f"{algorithm}:{hasher.hexdigest()}"
