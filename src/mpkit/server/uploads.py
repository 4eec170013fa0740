"""Blob upload sessions: chunks appended in order, verified, then committed atomically.

A session is ``_uploads/<id>/`` holding ``data`` (the bytes so far) and ``info.json``
(repository, start time). The running hash lives in memory; after a restart it is
recomputed from ``data`` when the upload completes. A chunk that fails half-way is cut
off again (the file is truncated to the last good offset), so the session always holds
exactly the bytes the client was told it has. Sessions idle for longer than the TTL
are deleted by :meth:`Uploads.expire`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpkit.server.apierrors import (
    BLOB_UPLOAD_INVALID,
    BLOB_UPLOAD_UNKNOWN,
    DIGEST_INVALID,
    SIZE_INVALID,
    TOOMANYREQUESTS,
    ApiError,
)
from mpkit.server.bodies import Body, too_large
from mpkit.server.names import SESSION_RE, split_digest, valid_digest
from mpkit.server.storage import COPY_CHUNK, Storage, hash_file

DEFAULT_ALGORITHM = "sha256"


@dataclass
class Session:
    id: str
    name: str
    directory: Path
    created: float
    offset: int = 0
    hasher: Any = None  # hashlib object over data[:offset]; None after a restart
    last_active: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    closed: bool = False  # completed, cancelled or expired: the id is dead

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def location(self) -> str:
        return f"/v2/{self.name}/blobs/uploads/{self.id}"

    def range_header(self) -> str:
        # distribution-spec: "Range: 0-<end-of-range>" (inclusive). Like distribution,
        # an empty session reports 0-0.
        return f"0-{max(self.offset - 1, 0)}"


class Uploads:
    """All upload sessions of one storage root."""

    def __init__(
        self, storage: Storage, *, ttl: float, max_sessions: int, max_blob_bytes: int
    ) -> None:
        self.storage = storage
        self.ttl = ttl
        self.max_sessions = max_sessions
        self.max_blob_bytes = max_blob_bytes
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------
    def create(self, name: str, algorithm: str = DEFAULT_ALGORITHM) -> Session:
        if self.count() >= self.max_sessions:
            raise ApiError(
                429,
                TOOMANYREQUESTS,
                "too many blob uploads are open; retry later",
                headers={"Retry-After": "5"},
            )
        session_id = uuid.uuid4().hex
        directory = self.storage.uploads / session_id
        directory.mkdir()
        now = time.time()
        (directory / "data").touch()
        info = {"name": name, "created": now}
        self.storage.write_atomic(directory / "info.json", json.dumps(info).encode())
        session = Session(session_id, name, directory, now, hasher=hashlib.new(algorithm))
        with self._lock:
            self._sessions[session_id] = session
        return session

    def count(self) -> int:
        try:
            return sum(1 for _ in os.scandir(self.storage.uploads))
        except FileNotFoundError:
            return 0

    def get(self, name: str, session_id: str) -> Session:
        """The open session *session_id* of repository *name*, else 404 BLOB_UPLOAD_UNKNOWN."""
        unknown = ApiError(404, BLOB_UPLOAD_UNKNOWN, f"upload {session_id[:40]!r} is not known")
        if not SESSION_RE.fullmatch(session_id):
            raise unknown
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                session = self._load(session_id)
                if session is not None:
                    self._sessions[session_id] = session
        if session is None or session.name != name or session.closed:
            raise unknown
        return session

    def _load(self, session_id: str) -> Session | None:
        """A session left by an earlier server process (its hash is recomputed later)."""
        directory = self.storage.uploads / session_id
        try:
            info = json.loads((directory / "info.json").read_bytes())
            offset = (directory / "data").stat().st_size
        except (OSError, ValueError):
            return None
        if not isinstance(info, dict) or not isinstance(info.get("name"), str):
            return None
        hasher = hashlib.new(DEFAULT_ALGORITHM) if offset == 0 else None
        created = float(info.get("created", 0))
        return Session(session_id, info["name"], directory, created, offset, hasher)

    def close(self, session: Session) -> None:
        """Forget *session* and delete its files."""
        session.closed = True
        with self._lock:
            self._sessions.pop(session.id, None)
        shutil.rmtree(session.directory, ignore_errors=True)

    def expire(self, now: float | None = None) -> int:
        """Delete sessions idle for longer than the TTL; returns how many went."""
        now = time.time() if now is None else now
        removed = 0
        try:
            entries = list(os.scandir(self.storage.uploads))
        except FileNotFoundError:
            return 0
        for entry in entries:
            with self._lock:
                session = self._sessions.get(entry.name)
            if session is not None:
                if not session.lock.acquire(blocking=False):
                    continue  # a request is using it right now
                try:
                    if now - session.last_active > self.ttl:
                        self.close(session)
                        removed += 1
                finally:
                    session.lock.release()
                continue
            with contextlib.suppress(OSError):
                if now - _last_modified(Path(entry.path)) > self.ttl:
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed += 1
        return removed

    # -- data ------------------------------------------------------------------------
    def append(
        self, session: Session, body: Body, start: int | None, length: int | None = None
    ) -> None:
        """Append *body* at the session's offset (``start``, when given, must equal it;
        ``length``, when given, is how many bytes the body must hold).

        On any failure the data file is cut back to the previous offset.
        """
        if start is not None and start != session.offset:
            raise range_not_satisfiable(session)
        offset_before = session.offset
        hasher_before = session.hasher.copy() if session.hasher is not None else None
        buffer = bytearray(COPY_CHUNK)
        view = memoryview(buffer)
        try:
            with open(session.data, "r+b", buffering=0) as out:
                out.seek(offset_before)
                while True:
                    n = body.readinto(view)
                    if not n:
                        break
                    if session.offset + n > self.max_blob_bytes:
                        raise too_large(self.max_blob_bytes, "the blob")
                    chunk = view[:n]
                    if session.hasher is not None:
                        session.hasher.update(chunk)
                    out.write(chunk)
                    session.offset += n
            if length is not None and session.offset - offset_before != length:
                raise ApiError(
                    400,
                    SIZE_INVALID,
                    f"the chunk holds {session.offset - offset_before} bytes, its "
                    f"Content-Range says {length}",
                )
        except BaseException:
            session.offset = offset_before
            session.hasher = hasher_before
            with contextlib.suppress(OSError):
                os.truncate(session.data, offset_before)
            raise
        finally:
            session.last_active = time.time()

    def finish(self, session: Session, digest: str) -> None:
        """Verify the whole upload against *digest* and commit it; the session ends."""
        try:
            if not valid_digest(digest):
                raise ApiError(
                    400,
                    DIGEST_INVALID,
                    f"digest {digest[:80]!r} is malformed or uses an unsupported algorithm "
                    "(use sha256:<64 hex> or sha512:<128 hex>)",
                )
            algorithm, _ = split_digest(digest)
            if session.hasher is not None and session.hasher.name == algorithm:
                actual = f"{algorithm}:{session.hasher.hexdigest()}"
            else:
                actual = hash_file(session.data, algorithm)
            if actual != digest:
                raise ApiError(
                    400,
                    DIGEST_INVALID,
                    f"the uploaded content ({session.offset} bytes) has digest {actual}, "
                    f"not {digest}",
                    detail={"digest": digest},
                )
            self.storage.commit_blob(session.data, digest)
            self.storage.link_blob(session.name, digest)
        finally:
            self.close(session)


def range_not_satisfiable(session: Session) -> ApiError:
    # distribution-spec: out-of-order chunk → 416 with the current Range and Location.
    return ApiError(
        416,
        BLOB_UPLOAD_INVALID,
        f"chunk does not start at the upload's current offset {session.offset}",
        headers={
            "Location": session.location(),
            "Range": session.range_header(),
            "Docker-Upload-UUID": session.id,
            "Blob-Upload-Session-ID": session.id,
        },
    )


def _last_modified(directory: Path) -> float:
    times = [directory.stat().st_mtime]
    for child in directory.iterdir():
        with contextlib.suppress(FileNotFoundError):
            times.append(child.stat().st_mtime)
    return max(times)
