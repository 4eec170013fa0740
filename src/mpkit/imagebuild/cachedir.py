"""What `mpkit cache` shows and prunes: the content-addressed store under the cache root.

Layout: ``blobs/sha256`` (pulled bases, built and compressed layers), ``index.json``
(base references → manifest digests), ``layers/*.json`` (dependency layers by content
key), ``diffids/`` (compressed digest of each uncompressed layer), ``fsindex/`` (layer
listings, merged views of bases and the Python targets detected in them).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpkit.image._fs import atomic_write_bytes
from mpkit.image.digest import digest_hex

REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class CacheSummary:
    root: Path
    blobs: int
    bytes: int
    images: dict[str, str]  # base reference → manifest digest
    layer_records: int

    def to_dict(self) -> dict[str, Any]:
        return {"root": str(self.root), "blobs": self.blobs, "bytes": self.bytes,
                "images": self.images, "layer_records": self.layer_records}  # fmt: skip


def summarize(root: Path) -> CacheSummary:
    blobs = [p for p in (root / "blobs" / "sha256").glob("*") if p.is_file()]
    return CacheSummary(
        root=root,
        blobs=len(blobs),
        bytes=sum(p.stat().st_size for p in blobs),
        images=_images(root),
        layer_records=len(list((root / "layers").glob("*.json"))),
    )


def prune(root: Path, *, everything: bool = False, older_than_days: float | None = None) -> int:
    """Delete unreferenced blobs (or everything); returns the bytes freed."""
    if everything:
        freed = summarize(root).bytes
        for name in ("blobs", "layers", "diffids", "fsindex", "index.json", "oci-layout"):
            target = root / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
        return freed
    if older_than_days is not None:
        _drop_old_records(root, time.time() - older_than_days * 86400)
    keep = _referenced(root)
    freed = 0
    for path in (root / "blobs" / "sha256").glob("*"):
        if path.is_file() and (path.name not in keep or path.name.startswith(".tmp")):
            freed += path.stat().st_size
            path.unlink(missing_ok=True)
    for record in (root / "diffids" / "sha256").glob("*"):
        if record.is_file() and record.read_text().strip().partition(":")[2] not in keep:
            record.unlink(missing_ok=True)
    return freed


def _images(root: Path) -> dict[str, str]:
    try:
        index = json.loads((root / "index.json").read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for entry in index.get("manifests", []):
        name = (entry.get("annotations") or {}).get(REF_NAME)
        if name:
            out[str(name)] = str(entry.get("digest"))
    return out


def _referenced(root: Path) -> set[str]:
    keep: set[str] = set()
    blobs = root / "blobs" / "sha256"
    for digest in _images(root).values():
        keep.add(digest_hex(digest))
        try:
            manifest = json.loads((blobs / digest_hex(digest)).read_text())
        except (OSError, ValueError):
            continue
        for desc in [manifest.get("config", {}), *manifest.get("layers", [])]:
            if isinstance(desc, dict) and isinstance(desc.get("digest"), str):
                keep.add(digest_hex(desc["digest"]))
    for record in (root / "layers").glob("*.json"):
        try:
            keep.add(digest_hex(json.loads(record.read_text())["digest"]))
        except (OSError, ValueError, KeyError):
            continue
    return keep


def _drop_old_records(root: Path, cutoff: float) -> None:
    for record in (root / "layers").glob("*.json"):
        if record.stat().st_mtime < cutoff:
            record.unlink(missing_ok=True)
    index_path = root / "index.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        return
    if index_path.stat().st_mtime < cutoff:
        index["manifests"] = []
        atomic_write_bytes(index_path, json.dumps(index).encode())
