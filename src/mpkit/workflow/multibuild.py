"""`mpkit build DIR…`: many packs in one command.

Each project is built by its own ``mpkit build`` process (its own build log, lock,
registry and exit status, exactly as when built alone), at most *jobs* at a time. Work
common to several projects is done once, through the shared on-disk caches: the first
project of each base image (its Dockerfile's FROM lines) is built before the others of
that base start, so they find the base, and often the dependency layer, already there.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpkit.credentials import ENV_PASSWORD, ENV_USERNAME, Credential
from mpkit.errors import UsageError

MANIFEST = "manifest.txt"
GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class ProjectResult:
    """One project's build: its ``mpkit build --json`` answer, or its error."""

    project: Path
    ok: bool
    seconds: float
    answer: dict[str, Any]  # the build's JSON: the outcome, or {"error", "message", "hint"}
    stderr: str

    @property
    def message(self) -> str:
        """What went wrong, in one line (empty when it built)."""
        if self.ok:
            return ""
        text = str(self.answer.get("message") or "")
        if not text:
            lines = [line for line in self.stderr.splitlines() if line.strip()]
            text = lines[-1] if lines else "the build failed without a message"
        return text

    def to_dict(self) -> dict[str, Any]:
        push = self.answer.get("push") or {}
        return {
            "project": str(self.project),
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "pack": self.answer.get("pack"),
            "digest": self.answer.get("digest"),
            "bytes_pushed": push.get("bytes_uploaded") if self.ok else None,
            "result": self.answer if self.ok else None,
            "error": None if self.ok else {**self.answer, "message": self.message},
        }


def expand_projects(patterns: Sequence[str], *, cwd: Path | None = None) -> list[Path]:
    """The project directories named by *patterns* (paths or globs), in order, once each.

    A glob keeps only the directories with a manifest.txt; a path given as such must be a
    project, or it is a usage error naming it.
    """
    base = cwd or Path.cwd()
    found: list[Path] = []
    for pattern in patterns:
        if GLOB_CHARACTERS & set(pattern):
            matches = sorted(glob.glob(pattern, root_dir=base))  # noqa: PTH207 - root_dir
            projects = [base / m for m in matches if (base / m / MANIFEST).is_file()]
            if not projects:
                raise UsageError(
                    f"{pattern!r} matches no project directory (none with a {MANIFEST})",
                    hint="check the pattern; quote it so that mpkit expands it",
                )
            found.extend(projects)
            continue
        path = base / pattern
        if not (path / MANIFEST).is_file():
            raise UsageError(
                f"{pattern} is not a project directory (it has no {MANIFEST})",
                hint="name project directories, or a glob such as 'packs/*'",
            )
        found.append(path)
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path.resolve(), None)
    return list(unique)


def base_key(project: Path) -> str:
    """What decides which base a project builds on: its Dockerfile's FROM lines."""
    try:
        text = (project / "Dockerfile").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line.upper().startswith("FROM "))


Event = Callable[[str, Path, "ProjectResult | None"], None]


def build_many(
    projects: Sequence[Path],
    arguments: Sequence[str],
    *,
    jobs: int,
    credential: Credential | None = None,
    on_event: Event = lambda _kind, _project, _result: None,
) -> list[ProjectResult]:
    """Build every project with ``mpkit build PROJECT *arguments*``; results in order.

    *on_event* hears ``("start", project, None)`` and ``("done", project, result)``, from
    worker threads. Ctrl-C stops every build (each gets the signal, as at a terminal).
    """
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    leaders: dict[str, threading.Event] = {}
    waits: list[threading.Event | None] = []
    for project in projects:
        key = base_key(project)
        if key in leaders:
            waits.append(leaders[key])
        else:
            leaders[key] = threading.Event()
            waits.append(None)
    # The builds are mpkit too: they get the environment as it is, credentials included,
    # and *credential* through it too (never in their argv).
    env = dict(os.environ)
    if credential is not None and credential.username and credential.password:
        env.update({ENV_USERNAME: credential.username, ENV_PASSWORD: credential.password})
    runner = _Runner(arguments, env, on_event)

    def build(index: int) -> ProjectResult:
        project = projects[index]
        wait_for = waits[index]
        if wait_for is not None:
            wait_for.wait()
        try:
            return runner.run(project)
        finally:
            if wait_for is None:
                leaders[base_key(project)].set()

    pool = ThreadPoolExecutor(max_workers=min(jobs, len(projects)) or 1,
                              thread_name_prefix="mpkit-pack")  # fmt: skip
    try:
        futures = [pool.submit(build, index) for index in range(len(projects))]
        return [future.result() for future in futures]
    except BaseException:
        runner.stop_all()
        for event in leaders.values():
            event.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Runner:
    """Runs the per-project processes and can stop them all."""

    def __init__(self, arguments: Sequence[str], env: dict[str, str], on_event: Event) -> None:
        self.arguments = list(arguments)
        self.env = env
        self.on_event = on_event
        self.stopping = False
        self.processes: set[subprocess.Popen[str]] = set()
        self.lock = threading.Lock()

    def run(self, project: Path) -> ProjectResult:
        argv = [sys.executable, "-m", "mpkit", "build", str(project), *self.arguments,
                "--json", "--no-ttl"]  # fmt: skip
        started = time.monotonic()
        with self.lock:
            if self.stopping:
                raise KeyboardInterrupt
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env=self.env,
            )  # fmt: skip
            self.processes.add(process)
        self.on_event("start", project, None)
        try:
            stdout, stderr = process.communicate()
        finally:
            with self.lock:
                self.processes.discard(process)
        result = ProjectResult(project, process.returncode == 0, time.monotonic() - started,
                               _answer(stdout), stderr)  # fmt: skip
        self.on_event("done", project, result)
        return result

    def stop_all(self) -> None:
        with self.lock:
            self.stopping = True
            for process in self.processes:
                if process.poll() is None:
                    process.send_signal(2)  # SIGINT: a build cancels cleanly
        deadline = time.monotonic() + 30
        for process in list(self.processes):
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()


def _answer(stdout: str) -> dict[str, Any]:
    try:
        data = json.loads(stdout)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def default_jobs() -> int:
    """As many builds at once as there are processors, at most 4 (each is parallel)."""
    return max(1, min(4, os.cpu_count() or 1))
