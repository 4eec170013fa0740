"""Where blobs were last seen: the record that makes cross-repository mounts possible.

Docker keeps the same record (distribution metadata, "V2MetadataService"): after a
push or pull, each blob digest is remembered with the registry and repository it is
in, so a later push of the same blob to another repository of that registry can mount
it instead of uploading it. Stored in SQLite, which makes concurrent updates safe.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

MAX_CANDIDATES = 3


class BlobLocations:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS blob_locations (digest TEXT, registry TEXT, "
            "repository TEXT, seen REAL, PRIMARY KEY (digest, registry, repository))"
        )
        return conn

    def record(self, registry: str, repository: str, digests: Iterable[str]) -> None:
        now = time.time()
        rows = [(d, registry, repository, now) for d in digests]
        try:
            with self._connect() as conn:
                conn.executemany("INSERT OR REPLACE INTO blob_locations VALUES (?, ?, ?, ?)", rows)
        except sqlite3.Error:
            pass  # a cache: losing a record only costs an upload

    def candidates(self, registry: str, digest: str, *, exclude: str) -> tuple[str, ...]:
        """Other repositories of *registry* that held *digest*, most recent first."""
        return self.candidates_of(registry, [digest], exclude=exclude)[digest]

    def candidates_of(
        self, registry: str, digests: Iterable[str], *, exclude: str
    ) -> dict[str, tuple[str, ...]]:
        """candidates() for several digests through one connection."""
        found: dict[str, tuple[str, ...]] = {digest: () for digest in digests}
        try:
            with contextlib.closing(self._connect()) as conn:
                for digest in found:
                    rows = conn.execute(
                        "SELECT repository FROM blob_locations WHERE digest=? AND registry=? "
                        "AND repository<>? ORDER BY seen DESC LIMIT ?",
                        (digest, registry, exclude, MAX_CANDIDATES),
                    ).fetchall()
                    found[digest] = tuple(r[0] for r in rows)
        except sqlite3.Error:
            pass  # a cache: without it, blobs are checked and uploaded
        return found

    def knows_repository(self, registry: str, repository: str) -> bool:
        """Whether an earlier push or pull recorded any blob in *repository*."""
        try:
            with contextlib.closing(self._connect()) as conn:
                row = conn.execute(
                    "SELECT 1 FROM blob_locations WHERE registry=? AND repository=? LIMIT 1",
                    (registry, repository),
                ).fetchone()
        except sqlite3.Error:
            return False
        return row is not None

    def forget(self, registry: str, repository: str, digest: str) -> None:
        try:
            with self._connect() as conn:
                conn.execute(
                    "DELETE FROM blob_locations WHERE digest=? AND registry=? AND repository=?",
                    (digest, registry, repository),
                )
        except sqlite3.Error:
            pass
