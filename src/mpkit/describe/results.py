"""What asking an adapter found out, kept by what determines it.

- The **definition** (with the library's unit table) is a function of the image, so it
  is kept by the image's manifest digest: an unchanged rebuild asks nobody.
- The **API version** comes from the base's REST server (the app's layers do not change
  it), so it is kept by the base image's digest and the server's command line: after an
  app-only change the definition command runs alone, without starting the server.

Both are also keyed by the version of what asks (the runner and host shim, whose code
decides what is produced, e.g. the unit table), so a new mpkit asks again. Entries are
small JSON files under ``<cache root>/describe/``, written atomically; an unreadable one
is ignored and rewritten. ``mpkit cache prune --all`` removes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpkit.cache.root import RemoteRecords
from mpkit.describe.imageway import SERVER_PORT, image_server
from mpkit.image.digest import digest_hex
from mpkit.image.types import Image
from mpkit.imagebuild.assemble import BASE_DIGEST
from mpkit.jsonfile import write_json_atomic

FORMAT = 1  # bump when what is stored, or how it is produced, changes
_HERE = Path(__file__).parent
ASKERS = (_HERE / "runner.py", _HERE / "hostshim.py")
# Outcomes of the runner's wait for GET /apiVersion that hold for every image on the base.
FINAL_OUTCOMES = ("version", "answer")


@dataclass(frozen=True)
class KnownApiVersion:
    version: str
    source: str  # where it came from when it was asked


class DescribeResults:
    """The definitions and API versions found before, under *root* (``…/describe``), and
    in *remote* when given (looked up on a local miss, and told of what is found here)."""

    def __init__(self, root: Path, remote: RemoteRecords | None = None) -> None:
        self.version = asker_version()
        self.root = root / self.version
        self.remote = remote
        self.from_remote: set[str] = set()  # names the registry already holds

    @classmethod
    def under(cls, cache_root: Path, remote: RemoteRecords | None = None) -> DescribeResults:
        return cls(cache_root / "describe", remote)

    # -- definitions, by image -------------------------------------------------------------
    def definition(self, image: Image) -> dict[str, Any] | None:
        """The stored record of *image*'s definition (see DefinitionResult.to_record)."""
        path = self._definition_path(image)
        return self._read(path) or self._fetch(f"definition {image.digest}", path)

    def store_definition(self, image: Image, record: dict[str, Any]) -> None:
        self._store(f"definition {image.digest}", self._definition_path(image), record)

    # -- API versions, by base -------------------------------------------------------------
    def api_version(self, image: Image) -> KnownApiVersion | None:
        path = self._api_version_path(image)
        if path is None:
            return None
        data = self._read(path) or self._fetch(f"api-version {path.stem}", path)
        if data is None or not isinstance(data.get("version"), str):
            return None
        return KnownApiVersion(data["version"], str(data.get("source") or ""))

    def store_api_version(self, image: Image, known: KnownApiVersion) -> None:
        path = self._api_version_path(image)
        if path is not None:
            record = {"version": known.version, "source": known.source}
            self._store(f"api-version {path.stem}", path, record)

    # -- here and remote -------------------------------------------------------------------
    def _fetch(self, name: str, path: Path) -> dict[str, Any] | None:
        if self.remote is None:
            return None
        record = self.remote.fetch_record(f"describe {self.version} {name}")
        if record is not None:
            self._write(path, record)
            self.from_remote.add(name)
        return record

    def _store(self, name: str, path: Path, record: dict[str, Any]) -> None:
        self._write(path, record)
        if self.remote is not None and name not in self.from_remote:
            self.remote.remember_record(f"describe {self.version} {name}", record)

    # -- files -----------------------------------------------------------------------------
    def _definition_path(self, image: Image) -> Path:
        return self.root / "definitions" / f"{digest_hex(image.digest)}.json"

    def _api_version_path(self, image: Image) -> Path | None:
        """Keyed by the base and the server: None when the image does not name its base."""
        base = base_digest(image)
        server = image_server(image)
        if not base or server is None:
            return None
        key = json.dumps([base, server, SERVER_PORT]).encode()
        return self.root / "api-versions" / f"{hashlib.sha256(key).hexdigest()[:40]}.json"

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def _write(path: Path, data: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # keeping results is an optimisation
            write_json_atomic(path, data, indent=1)


def base_digest(image: Image) -> str | None:
    """The base image's digest the builder recorded (image-spec annotations.md, or the same
    key as a label on Docker-format images), if any."""
    annotations = image.manifest.get("annotations") or {}
    labels = (image.config_json.get("config") or {}).get("Labels") or {}
    for source in (annotations, labels):
        value = source.get(BASE_DIGEST) if isinstance(source, dict) else None
        if isinstance(value, str) and value.startswith("sha256:"):
            return value
    return None


def asker_version() -> str:
    """A digest of the code that produces the results (and of their format)."""
    digest = hashlib.sha256(f"describe-results {FORMAT}\0".encode())
    for path in ASKERS:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
