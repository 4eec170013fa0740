"""What ``mpkit cache show`` reports and what ``mpkit cache prune`` removes.

``prune`` removes what nothing refers to: temps of killed runs (and of older mpkit
versions), blobs that no cached base image and no dependency-layer record names, and the
records and listings of blobs that are gone. ``--older-than DAYS`` first forgets what
was not used for that long; ``--all`` removes every area. Symbolic links under the root
are removed, never followed.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpkit.atomicfile import remove_stale, remove_tree, tree_size
from mpkit.cache.root import AREAS, CacheRoot

REF_NAME = "org.opencontainers.image.ref.name"
MAX_DOCUMENT = 4 * 1024 * 1024  # manifests and indexes are far smaller (distribution: 4 MiB)
LEGACY_AGE = 3600.0  # temps of older mpkit versions carry no owner: removed after this long
_HEX = re.compile(r"^[0-9a-f]{64}$")
_LAYER_ENTRY = re.compile(r"^(?P<hex>[0-9a-f]{64})\.(json|files)$")  # fsindex, per layer
_FSINDEX_DERIVED = ("merged-", "target-")  # fsindex files for a chain of layers


@dataclass(frozen=True)
class AreaUsage:
    name: str
    what: str
    entries: int  # directly inside (a file counts as one)
    bytes: int
    link: str | None = None  # where a symbolic link points (it is not followed)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"what": self.what, "entries": self.entries, "bytes": self.bytes}
        if self.link is not None:
            out["link"] = self.link
        return out


@dataclass(frozen=True)
class CacheSummary:
    root: Path
    format: int | None
    blobs: int
    bytes: int  # of the blobs
    images: dict[str, str]  # base reference → manifest digest
    layer_records: int
    areas: list[AreaUsage] = field(default_factory=list)  # the ones present
    others: list[str] = field(default_factory=list)  # under the root, but not mpkit's

    @property
    def total_bytes(self) -> int:
        return sum(area.bytes for area in self.areas)

    def to_dict(self) -> dict[str, Any]:
        return {"root": str(self.root), "format": self.format, "blobs": self.blobs,
                "bytes": self.bytes, "total_bytes": self.total_bytes, "images": self.images,
                "layer_records": self.layer_records,
                "areas": {area.name: area.to_dict() for area in self.areas},
                "others": self.others}  # fmt: skip


def summarize(cache: CacheRoot) -> CacheSummary:
    blobs = [p for p in _entries(cache.blobs) if p.is_file() and not p.name.startswith(".")]
    registered = {area.name for area in AREAS}
    try:
        present = sorted(p.name for p in cache.path.iterdir())
    except OSError:
        present = []
    return CacheSummary(
        root=cache.path,
        format=cache.format(),
        blobs=len(blobs),
        bytes=sum(p.stat().st_size for p in blobs),
        images=_images(cache),
        layer_records=len(list(cache.layer_records.glob("*.json"))),
        areas=[_usage(cache, area.name, area.what) for area in AREAS if area.name in present],
        others=[name for name in present if name not in registered],
    )


def prune(
    cache: CacheRoot, *, everything: bool = False, older_than_days: float | None = None
) -> int:
    """Remove what nothing refers to (or everything); the bytes freed."""
    if everything:
        return remove_all(cache)
    freed = cache.clean_temps() + _legacy_leftovers(cache)
    if older_than_days is not None:
        freed += _drop_unused(cache, time.time() - older_than_days * 86400)
    return freed + _collect_garbage(cache)


def remove_all(cache: CacheRoot) -> int:
    """Remove every area; temps still being written by a running process stay."""
    freed = remove_stale(cache.path, also=_legacy_name, age=0)
    for area in AREAS:
        path = cache.path / area.name
        if path == cache.tmp and not path.is_symlink():
            freed += cache.clean_temps()
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        else:
            freed += remove_tree(path)
    return freed


# -- show ------------------------------------------------------------------------------------


def _usage(cache: CacheRoot, name: str, what: str) -> AreaUsage:
    path = cache.path / name
    if path.is_symlink():
        return AreaUsage(name, what, 0, 0, link=str(path.readlink()))
    if path == cache.blobs.parent:
        return AreaUsage(name, what, len(_entries(cache.blobs)), tree_size(path))
    entries = len(_entries(path)) if path.is_dir() else 1
    return AreaUsage(name, what, entries, tree_size(path))


def _entries(directory: Path) -> list[Path]:
    try:
        return [Path(entry.path) for entry in os.scandir(directory)]
    except OSError:
        return []


def _images(cache: CacheRoot) -> dict[str, str]:
    out = {}
    for entry in _index(cache).get("manifests", []):
        name = (entry.get("annotations") or {}).get(REF_NAME) if isinstance(entry, dict) else None
        if name:
            out[str(name)] = str(entry.get("digest"))
    return out


def _index(cache: CacheRoot) -> dict[str, Any]:
    try:
        index = json.loads(cache.index_file.read_bytes())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


# -- prune -----------------------------------------------------------------------------------


def _legacy_name(name: str) -> bool:
    return name.startswith(".tmp-")


def _legacy_leftovers(cache: CacheRoot) -> int:
    """Temps that mpkit versions before the ``tmp/`` area left next to their targets."""
    freed = remove_stale(cache.pydeps, also=lambda n: n.startswith("tmp-"), age=LEGACY_AGE)
    freed += remove_stale(cache.hostfs, also=lambda n: n.startswith("."), age=LEGACY_AGE)
    for directory in _legacy_places(cache):
        freed += remove_stale(directory, also=_legacy_name, age=LEGACY_AGE)
    return freed


def _legacy_places(cache: CacheRoot) -> Iterator[Path]:
    yield from (cache.path, cache.blobs, cache.diffids, cache.layer_records, cache.base_checks)
    yield from (cache.fsindex, cache.describe_valid)
    yield from (p for p in _entries(cache.fsindex) if p.name.endswith(".files"))
    yield from (p for p in _entries(cache.pydeps) if _HEX.match(p.name))


def _drop_unused(cache: CacheRoot, cutoff: float) -> int:
    """Forget what was last used before *cutoff* (a use refreshes the modification time)."""
    freed = _remove_old(cache.layer_records, cutoff, lambda n: n.endswith(".json"))
    for directory in (cache.base_checks, cache.pydeps, cache.hostfs, cache.describe_valid):
        freed += _remove_old(directory, cutoff, lambda _n: True)
    freed += _remove_old(cache.fsindex, cutoff, lambda n: n.startswith(_FSINDEX_DERIVED))
    index = _index(cache)
    try:
        stale_index = cache.index_file.stat().st_mtime < cutoff and index.get("manifests")
    except OSError:
        stale_index = False
    if stale_index:
        index["manifests"] = []
        cache.write_bytes(cache.index_file, json.dumps(index).encode())
    return freed


def _remove_old(directory: Path, cutoff: float, chosen: Callable[[str], bool]) -> int:
    return remove_stale(directory, also=chosen, age=time.time() - cutoff)


def _collect_garbage(cache: CacheRoot) -> int:
    """Blobs nothing refers to, then the records and listings of blobs that are gone."""
    keep = _referenced(cache)
    freed = 0
    for path in _entries(cache.blobs):
        if _HEX.match(path.name) and path.name not in keep:
            freed += remove_tree(path)
    for record in _entries(cache.diffids):
        try:
            digest = record.read_text().strip()
        except OSError:
            continue
        if digest.partition(":")[2] not in keep:
            freed += remove_tree(record)
    for path in _entries(cache.fsindex):
        match = _LAYER_ENTRY.match(path.name)
        if match and match["hex"] not in keep:
            freed += remove_tree(path)
    return freed


def _referenced(cache: CacheRoot) -> set[str]:
    """Hex digests of every blob that a cached base image or a layer record names."""
    keep: set[str] = set()
    pending = [d for d in _images(cache).values() if ":" in d]
    while pending:
        hex_digest = pending.pop().partition(":")[2]
        if hex_digest in keep:
            continue
        keep.add(hex_digest)
        path = cache.blobs / hex_digest
        try:
            if path.stat().st_size > MAX_DOCUMENT:
                continue  # a layer, not a manifest or an index
            document = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if not isinstance(document, dict):
            continue
        # image-spec: a manifest names its config and layers, an index its manifests.
        children = [document.get("config"), *document.get("layers", [])]
        children += document.get("manifests", [])
        pending += [c["digest"] for c in children if isinstance(c, dict) and "digest" in c]
    for record in cache.layer_records.glob("*.json"):
        try:
            keep.add(str(json.loads(record.read_bytes())["digest"]).partition(":")[2])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return keep
