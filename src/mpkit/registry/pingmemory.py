"""What a registry's first request learnt, remembered for a few minutes.

The ping (``GET /v2/``, distribution-spec "API version check") tells which scheme an
endpoint speaks and how it authenticates. It carries no credentials, so the answer is
the same for every client, and registries rarely change either. Remembering it saves a
round trip per command and per client: the push and the anonymous verify of one build
share one ping, and the next command within :data:`REMEMBER_SECONDS` skips it.

A remembered ping is a hint, not a fact: :class:`~mpkit.registry.transport.Transport`
pings again, live, as soon as an answer suggests the record is stale. Records are kept
per API endpoint in this process and in a small JSON file in mpkit's state directory;
a record whose scheme is not allowed now (plain HTTP for a registry no longer marked
insecure) is never used.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpkit.atomicfile import write_bytes
from mpkit.registry.auth import Challenge
from mpkit.registry.ping import Ping
from mpkit.statedir import state_dir

REMEMBER_SECONDS = 600.0
FILE_NAME = "registry-pings.json"
FORMAT = 1
_SCHEMES = ("bearer", "basic")
_MAX_RECORDS = 200  # far more registries than anyone uses; bounds the file


@dataclass(frozen=True)
class Recalled:
    ping: Ping
    live: bool  # pinged by this process: as good as asking now


class PingMemory:
    """Pings per API endpoint (``host[:port]``), in this process and in the file *path*."""

    def __init__(self, path: Path, *, ttl: float = REMEMBER_SECONDS) -> None:
        self.path = path
        self.ttl = ttl
        self._lock = threading.Lock()
        self._live: dict[str, Ping] = {}
        self._stored: dict[str, Any] | None = None  # the file's records, read once

    def recall(self, endpoint: str, schemes: Sequence[str]) -> Recalled | None:
        """The ping of *endpoint* if one is known, fresh, and speaks one of *schemes*."""
        with self._lock:
            live = self._live.get(endpoint)
            if live is not None:
                return Recalled(live, live=True) if _scheme(live) in schemes else None
            if self._stored is None:
                self._stored = _read(self.path)
            record = self._stored.get(endpoint)
        ping = _ping_from(record, endpoint, time.time(), self.ttl)
        if ping is None or _scheme(ping) not in schemes:
            return None
        return Recalled(ping, live=False)

    def remember(self, endpoint: str, ping: Ping) -> None:
        """Keep *ping*, which was just learnt live, for this process and the next ones."""
        with self._lock:
            self._live[endpoint] = ping
            records = _read(self.path)
            now = time.time()
            records = {
                key: value for key, value in records.items()
                if key != endpoint and _ping_from(value, key, now, self.ttl) is not None
            }  # fmt: skip
            records[endpoint] = _record(ping, now)
            if len(records) > _MAX_RECORDS:
                newest = sorted(records, key=lambda key: records[key]["at"])[-_MAX_RECORDS:]
                records = {key: records[key] for key in newest}
            self._stored = records
            data = json.dumps({"format": FORMAT, "pings": records}, indent=1, sort_keys=True)
            # A hint that is cheap to lose: no fsync, and a read-only state directory only
            # costs the next command a ping.
            with contextlib.suppress(OSError):
                write_bytes(self.path, data.encode() + b"\n", mode=0o600, durable=False)

    def forget(self, endpoint: str) -> None:
        """Drop what this process knows of *endpoint* (the file is rewritten by the next
        live ping)."""
        with self._lock:
            self._live.pop(endpoint, None)
            if self._stored is not None:
                self._stored.pop(endpoint, None)


@functools.lru_cache(maxsize=4)
def _memory_at(path: Path) -> PingMemory:
    return PingMemory(path)


def ping_memory() -> PingMemory:
    """The memory of this process, kept in the current state directory."""
    return _memory_at(state_dir() / FILE_NAME)


def _scheme(ping: Ping) -> str:
    return ping.base_url.partition("://")[0]


def _record(ping: Ping, now: float) -> dict[str, Any]:
    challenge = ping.challenge
    return {
        "base_url": ping.base_url,
        "challenge": None
        if challenge is None
        else {"scheme": challenge.scheme, "params": dict(challenge.params)},
        "at": now,
    }


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}
    pings = data.get("pings")
    return dict(pings) if isinstance(pings, dict) else {}


def _ping_from(record: object, endpoint: str, now: float, ttl: float) -> Ping | None:
    """The ping in *record* if it is well-formed, for *endpoint*, and not older than *ttl*."""
    if not isinstance(record, dict):
        return None
    at, base_url, challenge = record.get("at"), record.get("base_url"), record.get("challenge")
    if not isinstance(at, (int, float)) or not 0 <= now - at < ttl:
        return None
    if base_url not in (f"https://{endpoint}", f"http://{endpoint}"):
        return None
    if challenge is None:
        return Ping(base_url=base_url, challenge=None)
    if not isinstance(challenge, dict) or challenge.get("scheme") not in _SCHEMES:
        return None
    params = challenge.get("params")
    if not isinstance(params, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in params.items()
    ):
        return None
    return Ping(base_url=base_url, challenge=Challenge(challenge["scheme"], dict(params)))
