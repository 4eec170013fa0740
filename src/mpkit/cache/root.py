"""The cache root: where mpkit keeps what it can always make again, and how it is laid out.

Every file and directory mpkit puts under the root is registered in ``AREAS``, so that
``mpkit cache show`` accounts for all of them and ``mpkit cache prune --all`` removes all
of them. ``cache-format.json`` records the layout's version. Files are written through
temps in ``tmp/`` (the same file system, so the renames are atomic), which is therefore
the one place where a killed run leaves anything behind; :meth:`CacheRoot.open` removes
such leftovers, and never a temp that a running process still holds.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import platformdirs

from mpkit.atomicfile import AtomicFile, TempDir, remove_stale, write_bytes
from mpkit.errors import CacheError

CACHE_DIR_ENV = "MPKIT_CACHE_DIR"
FORMAT = 1  # bump when the layout changes; an older cache is then emptied
FORMAT_FILE = "cache-format.json"


@dataclass(frozen=True)
class Area:
    """A file or directory directly under the cache root, and what it holds."""

    name: str
    what: str


AREAS = (
    Area("blobs", "compressed layers, image configs and manifests, by digest"),
    Area("index.json", "base image references and the manifests they resolved to"),
    Area("oci-layout", "marks the cache root as an OCI image layout"),
    Area("diffids", "the compressed digest of each uncompressed layer"),
    Area("layers", "built dependency layers, by content key"),
    Area("base-checks", "when each base image tag was last resolved"),
    Area("fsindex", "layer listings, merged base filesystems and their Python targets"),
    Area("pydeps", "Python requirements installed by uv, by content key"),
    Area("uv", "uv's own cache: downloads, and wheels it built from source distributions"),
    Area("hostfs", "image files copied out to run the adapter on the host"),
    Area("describe-valid", "describe.xml files already validated against their schema"),
    Area("describe", "adapter definitions by image digest, API versions by base digest"),
    Area("tmp", "files being written; what killed runs left is removed"),
    Area(FORMAT_FILE, "the version of this layout"),
)


class RemoteRecords(Protocol):
    """Results another machine found, shared through the team's registry (see
    mpkit.imagebuild.registrycache): looked up on a local miss, told of what is found here."""

    def fetch_record(self, name: str) -> dict[str, Any] | None: ...

    def remember_record(self, name: str, record: dict[str, Any]) -> None: ...


_SHARED: ContextVar[RemoteRecords | None] = ContextVar("mpkit_shared_records", default=None)


@contextlib.contextmanager
def sharing(records: RemoteRecords | None) -> Iterator[None]:
    """Within the block, content-addressed results (layer listings, Python targets,
    describe.xml validations) missing here are looked up in *records*, and new ones are
    offered to it."""
    token = _SHARED.set(records)
    try:
        yield
    finally:
        _SHARED.reset(token)


def shared_records() -> RemoteRecords | None:
    """The records of the enclosing :func:`sharing` block, if any."""
    return _SHARED.get()


@dataclass(frozen=True)
class CacheRoot:
    """The cache directory (``$MPKIT_CACHE_DIR``, else the per-user cache directory)."""

    path: Path

    @classmethod
    def default(cls) -> CacheRoot:
        override = os.environ.get(CACHE_DIR_ENV)
        return cls(Path(override) if override else Path(platformdirs.user_cache_dir("mpkit")))

    # -- the layout ------------------------------------------------------------------------
    @property
    def blobs(self) -> Path:
        return self.path / "blobs" / "sha256"

    @property
    def index_file(self) -> Path:
        return self.path / "index.json"

    @property
    def diffids(self) -> Path:
        return self.path / "diffids" / "sha256"

    @property
    def layer_records(self) -> Path:
        return self.path / "layers"

    @property
    def base_checks(self) -> Path:
        return self.path / "base-checks"

    @property
    def fsindex(self) -> Path:
        return self.path / "fsindex"

    @property
    def pydeps(self) -> Path:
        return self.path / "pydeps"

    @property
    def uv(self) -> Path:
        return self.path / "uv"

    @property
    def hostfs(self) -> Path:
        return self.path / "hostfs"

    @property
    def describe_valid(self) -> Path:
        return self.path / "describe-valid"

    @property
    def tmp(self) -> Path:
        return self.path / "tmp"

    # -- writing ---------------------------------------------------------------------------
    def output(self, target: Path | None = None, *, label: str | None = None) -> AtomicFile:
        """An atomic file for *target* (or one named at commit) with its temp in ``tmp/``."""
        return AtomicFile(target, temp_dir=self.tmp, label=label)

    def write_bytes(self, target: Path, data: bytes) -> None:
        write_bytes(target, data, temp_dir=self.tmp)

    def temp_dir(self, label: str) -> TempDir:
        """A directory to fill and then move into an area (or remove)."""
        return TempDir(self.tmp, label)

    @staticmethod
    def mark_used(path: Path) -> None:
        """Note a use of *path*: 'mpkit cache prune --older-than' goes by modification time."""
        with contextlib.suppress(OSError):
            os.utime(path)

    # -- format and leftovers ----------------------------------------------------------------
    def open(self) -> CacheRoot:
        """Check the layout's version and remove what killed runs left; returns self.

        A cache without a version file is either new or from before versions were
        recorded, which is this format. An older format is emptied (everything in it can
        be made again); a newer one is refused, since this mpkit would misread it.
        """
        found = self.format()
        if found is not None and found > FORMAT:
            raise CacheError(
                f"the cache {self.path} was written by a newer mpkit (cache format {found}; "
                f"this one reads format {FORMAT})",
                hint=f"upgrade mpkit, or point {CACHE_DIR_ENV} at another directory, or "
                "empty this one with 'mpkit cache prune --all'",
            )
        if found != FORMAT:
            if found is not None:
                from mpkit.cache.prune import remove_all

                remove_all(self)
            self.path.mkdir(parents=True, exist_ok=True)
            self.write_bytes(self.path / FORMAT_FILE, json.dumps({"format": FORMAT}).encode())
        self.clean_temps()
        return self

    def clean_temps(self) -> int:
        """Remove the temps in ``tmp/`` whose writers are gone; the bytes freed."""
        return remove_stale(self.tmp)

    def format(self) -> int | None:
        """The recorded layout version (None when none is recorded)."""
        try:
            value = json.loads((self.path / FORMAT_FILE).read_bytes()).get("format")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, AttributeError):
            return 0  # unreadable: treat as an old format, so the cache is rebuilt
        return value if isinstance(value, int) else 0
