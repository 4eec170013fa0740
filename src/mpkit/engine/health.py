"""Engines that cannot run containers on this machine, found out once and remembered.

Finding out costs a failed pull, load or run, seconds each time; a build that already
knows goes straight to what works. A verdict is kept for a few hours under mpkit's state
directory, keyed by everything that decides whether the engine works: its program (path,
size, mtime), the configuration files and environment it reads, and docker's socket. So
installing another version, editing containers.conf, setting CONTAINERS_CONF or starting
the docker daemon tries the engine again; so do ``MPKIT_ENGINE_RECHECK=1`` (for one
command) and ``mpkit cache prune`` (forgets every verdict).

:func:`container_never_started` tells a broken engine (it could not store, create or
start the container) from a failing command inside a container that did start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mpkit.engine.driver import Engine
from mpkit.engine.kinds import EngineKind
from mpkit.jsonfile import write_json_atomic

RECHECK_ENV = "MPKIT_ENGINE_RECHECK"
DEFAULT_TTL = 6 * 3600.0
REASON_CHARS = 200
# What each engine reads to decide how to run containers (besides its program).
PODMAN_ENV = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF",
              "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME")  # fmt: skip
DOCKER_ENV = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG")
PODMAN_FILES = ("containers.conf", "storage.conf")
PODMAN_DIRS = ("/etc/containers", "/usr/share/containers")
DOCKER_SOCKET = "/var/run/docker.sock"
# docker's own words when its daemon cannot be reached (exit 1 for most commands).
DAEMON_UNREACHABLE = ("Cannot connect to the Docker daemon", "Is the docker daemon running",
                      "error during connect")  # fmt: skip
# Exit statuses of `docker run` / `podman run` (docker run reference, "Exit status"):
# 125 the engine itself failed, 126 the command could not be invoked, 127 not found.
ENGINE_FAILED, CANNOT_INVOKE, NOT_FOUND = 125, 126, 127
# ...but 126/127 also mean the image lacks the command, and 125 that the image vanished.
IMAGE_PROBLEMS = ('exec: "', "executable file not found", "image not known", "No such image")


@dataclass(frozen=True)
class Verdict:
    """An engine found unable to run containers here, and when."""

    engine: str
    reason: str
    since: float

    def describe(self, now: float | None = None) -> str:
        minutes = max(0, int(((now or time.time()) - self.since) / 60))
        age = f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
        return f"{self.engine} could not run containers here {age} ago ({self.reason})"


def daemon_unreachable(output: str) -> bool:
    """Whether *output* says the engine's daemon cannot be reached."""
    return any(text in output for text in DAEMON_UNREACHABLE)


def container_never_started(exit_status: int, output: str) -> bool:
    """Whether a ``run`` that ended with *exit_status* and *output* failed in the engine
    (storage, runtime, limits, daemon) before the container's command could start."""
    if daemon_unreachable(output):
        return True
    if exit_status not in (ENGINE_FAILED, CANNOT_INVOKE, NOT_FOUND):
        return False
    return not any(text in output for text in IMAGE_PROBLEMS)


def short_reason(text: str) -> str:
    """The last line of an engine's complaint, short enough for one line of output."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    return last if len(last) <= REASON_CHARS else "…" + last[-REASON_CHARS:]


class EngineHealth:
    """Verdicts under *root*, one small JSON file each, written atomically (concurrent
    builds at worst both find out); unreadable or expired ones are ignored."""

    def __init__(self, root: Path, *, ttl: float = DEFAULT_TTL, recheck: bool = False) -> None:
        self.root = root
        self.ttl = ttl
        self.recheck = recheck  # ignore what is remembered (and find out again)

    @classmethod
    def default(cls) -> EngineHealth:
        from mpkit.statedir import state_dir

        recheck = os.environ.get(RECHECK_ENV, "").strip().lower() not in ("", "0", "no", "false")
        return cls(state_dir() / "engines", recheck=recheck)

    def verdict(self, engine: Engine) -> Verdict | None:
        """Why *engine* is known not to work here, or None (unknown, or it may work)."""
        if self.recheck:
            return None
        path = self._path(engine)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            found = Verdict(str(data["engine"]), str(data["reason"]), float(data["since"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not 0 <= time.time() - found.since < self.ttl:
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return found

    def mark_broken(self, engine: Engine, reason: str) -> Verdict:
        found = Verdict(engine.name, short_reason(reason), time.time())
        record = {"engine": found.engine, "program": engine.program, "reason": found.reason,
                  "since": found.since}  # fmt: skip
        with contextlib.suppress(OSError):  # remembering is an optimisation
            write_json_atomic(self._path(engine), record, mode=0o600)
        return found

    def forget(self) -> int:
        """Drop every verdict; how many there were."""
        dropped = 0
        for path in self.root.glob("*.json"):
            with contextlib.suppress(OSError):
                path.unlink()
                dropped += 1
        return dropped

    def _path(self, engine: Engine) -> Path:
        return self.root / f"{fingerprint(engine)}.json"


def fingerprint(engine: Engine, environ: Mapping[str, str] | None = None) -> str:
    """A digest of what decides whether *engine* can run containers here."""
    env = os.environ if environ is None else environ
    facts: dict[str, object] = {"kind": engine.name, "program": _file_facts(engine.program)}
    names = PODMAN_ENV if engine.kind is EngineKind.PODMAN else DOCKER_ENV
    facts["env"] = {name: env.get(name) for name in names}
    facts["files"] = {str(path): _file_facts(path) for path in _config_files(engine, env)}
    encoded = json.dumps(facts, sort_keys=True).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]


def _config_files(engine: Engine, env: Mapping[str, str]) -> Iterator[Path]:
    if engine.kind is EngineKind.DOCKER:
        host = env.get("DOCKER_HOST") or f"unix://{DOCKER_SOCKET}"
        if host.startswith("unix://"):
            yield Path(host.removeprefix("unix://"))
        return
    config_home = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    directories = [*PODMAN_DIRS, str(Path(config_home) / "containers")]
    for directory in directories:
        for name in PODMAN_FILES:
            yield Path(directory) / name
    for name in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF"):
        if env.get(name):
            yield Path(env[name])


def _file_facts(path: str | Path) -> list[int] | None:
    try:
        stat = os.stat(path)  # noqa: PTH116 (str or Path)
    except OSError:
        return None
    return [stat.st_ino, stat.st_size, stat.st_mtime_ns]
