"""Reproducible layer tarballs: sorted entries, fixed times, owners and modes from the
instruction's semantics (never the host's), gzip with a fixed header, hashed in one pass.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

from mpkit.errors import ImageFormatError
from mpkit.image.compress import GzipHashingWriter, LayerDigests

DEFAULT_EPOCH = 0  # 1970-01-01, as Jib and ko use, unless SOURCE_DATE_EPOCH says otherwise
EntryKind = Literal["file", "dir", "symlink", "whiteout"]


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH (reproducible-builds.org) or the fixed default."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    return int(value) if value.isdigit() else DEFAULT_EPOCH


@dataclass(frozen=True)
class LayerEntry:
    """One path in a layer. *path* is absolute inside the image ("/app/x.py")."""

    path: str
    kind: EntryKind
    mode: int = 0o644  # permission bits only
    uid: int = 0
    gid: int = 0
    source: Path | None = None  # file content from the host
    data: bytes | None = None  # or in memory
    linkname: str | None = None  # symlink target

    @property
    def tar_name(self) -> str:
        return str(PurePosixPath(self.path)).lstrip("/")

    def sort_key(self) -> tuple[str, ...]:
        # By components, so that "a/b" follows "a" and precedes "a-b" (parents first).
        return tuple(self.tar_name.split("/"))


def write_layer(
    entries: Iterable[LayerEntry], sink: BinaryIO, *, mtime: int | None = None
) -> LayerDigests:
    """Write *entries* as a gzip-compressed tar into *sink*; returns digest and diff_id."""
    when = source_date_epoch() if mtime is None else mtime
    ordered = sorted(_unique(entries), key=LayerEntry.sort_key)
    writer = GzipHashingWriter(sink)
    # PAX keeps long names and large ids exact; no uname/gname, integer mtimes.
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for entry in ordered:
            _add(tar, entry, when)
    return writer.finish()


def _unique(entries: Iterable[LayerEntry]) -> list[LayerEntry]:
    by_path: dict[str, LayerEntry] = {}
    for entry in entries:
        if not entry.tar_name or entry.tar_name == ".":
            continue
        by_path[entry.tar_name] = entry  # a later instruction's entry wins, as in the engine
    return list(by_path.values())


def _add(tar: tarfile.TarFile, entry: LayerEntry, mtime: int) -> None:
    name = entry.tar_name
    if entry.kind == "whiteout":
        parent, _, base = name.rpartition("/")
        name = f"{parent}/.wh.{base}" if parent else f".wh.{base}"
    info = tarfile.TarInfo(name)
    info.mtime = mtime
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mode = entry.mode & 0o7777
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.linkname or ""
        info.mode = 0o777
        tar.addfile(info)
    elif entry.kind == "whiteout":
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(b""))
    elif entry.data is not None:
        info.size = len(entry.data)
        tar.addfile(info, io.BytesIO(entry.data))
    elif entry.source is not None:
        with open(entry.source, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            info.size = size
            tar.addfile(info, handle)
    else:
        raise ImageFormatError(f"layer entry {entry.path} has no content")
