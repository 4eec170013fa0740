"""The mapped entries of a staging tree, kept beside it for the next build.

Mapping a staged install onto the image (paths, owners, scripts, RECORD, whiteouts) reads
every staged file's metadata and the base's dist-infos. Its result depends only on the
staging tree, the target and the base filesystem, so it is stored in the staging
directory under a name made of the target and an exact identity of the base (e.g. the
digests of its layers), and reused while they match.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from mpkit.image.layerwriter import LayerEntry
from mpkit.imagebuild import marshalfile
from mpkit.imagebuild.target import PythonTarget

MAPPING_FORMAT = 1  # bump when map_staging's result for the same inputs changes
_KIND = b"mpkit-mapped"

Mapped = tuple[list[LayerEntry], dict[str, str], dict[str, str]]


def mapping_path(staging: Path, target: PythonTarget, base_id: str) -> Path:
    """Where the mapping of *staging* for *target* over the base *base_id* is kept."""
    identity = f"{MAPPING_FORMAT}\n{base_id}\n{target!r}".encode()
    return staging / f"mapped-{hashlib.sha256(identity).hexdigest()}.bin"


def save_mapping(path: Path, tree: Path, mapped: Mapped, *, temp_dir: Path | None = None) -> None:
    """Keep *mapped* (entries reading files under *tree*) at *path* (the temp in *temp_dir*)."""
    entries, installed, uninstalled = mapped
    rows = [
        (e.path, e.kind, e.mode, e.uid, e.gid, _relative(e.source, tree), e.data, e.linkname)
        for e in entries
    ]
    marshalfile.write(path, _KIND, MAPPING_FORMAT, (rows, installed, uninstalled),
                      temp_dir=temp_dir)  # fmt: skip


def load_mapping(path: Path, tree: Path) -> Mapped | None:
    """The mapping kept at *path*, or None when it is missing, stale or damaged."""
    value = marshalfile.read(path, _KIND, MAPPING_FORMAT)
    if value is None:
        return None
    try:
        rows, installed, uninstalled = value
        return [_entry(row, tree) for row in rows], dict(installed), dict(uninstalled)
    except (ValueError, TypeError, AttributeError):
        return None


def _relative(source: Path | None, tree: Path) -> str | None:
    if source is None:
        return None
    try:
        return "./" + source.relative_to(tree).as_posix()
    except ValueError:
        return str(source)


def _entry(row: Any, tree: Path) -> LayerEntry:
    path, kind, mode, uid, gid, source, data, linkname = row
    if source is not None:
        source = tree / source[2:] if source.startswith("./") else Path(source)
    return LayerEntry(path, kind, mode, uid, gid, source=source, data=data, linkname=linkname)
