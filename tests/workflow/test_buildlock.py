"""One build of a project at a time; what killed builds left is removed by the next."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpkit.workflow.buildlock import LOCK_NAME, project_build_lock
from tests.fixtures.tempholder import Holder

WAIT = 60.0  # only a bound for a hang; nothing here depends on speed

_BUILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mpkit.workflow.buildlock import project_build_lock
    with project_build_lock(Path(sys.argv[1]), waiting=print):
        print("building", flush=True)
        time.sleep(600)
    """
)


@pytest.fixture
def running_build(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process in the middle of a build of tmp_path/project."""
    process = subprocess.Popen(
        [sys.executable, "-c", _BUILD, str(tmp_path / "project")],
        stdout=subprocess.PIPE, text=True, env={**os.environ},
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "building"
    yield process
    if process.poll() is None:
        process.kill()
    process.wait(timeout=WAIT)
    process.stdout.close()


def wait_for(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def test_a_second_build_waits_says_so_once_and_goes_on_when_the_first_ends(
    tmp_path: Path, running_build: subprocess.Popen[str]
) -> None:
    project = tmp_path / "project"
    lock = project / "build" / LOCK_NAME
    told: list[str] = []
    recorded: list[str] = []
    inside = threading.Event()
    leave = threading.Event()

    def second() -> None:
        with project_build_lock(project, waiting=told.append):
            recorded.append(lock.read_text())
            inside.set()
            leave.wait(WAIT)

    thread = threading.Thread(target=second)
    thread.start()
    try:
        wait_for(lambda: told, "the waiting message")
        assert not inside.is_set()
        assert told == [
            f"another mpkit build of this project is running (process {running_build.pid}); "
            "waiting for it to finish (Ctrl-C to cancel)"
        ]
        running_build.send_signal(signal.SIGKILL)  # the kernel lets go of its lock
        wait_for(inside.is_set, "the second build to start")
        assert len(told) == 1
    finally:
        leave.set()
        thread.join(WAIT)
    assert recorded == [f"{os.getpid()}\n"]  # the holder's pid, for the next one's message
    assert not lock.exists()  # a finished build leaves no trace
    assert list((project / "build").iterdir()) == []


def test_a_build_removes_what_killed_builds_left_and_nothing_else(
    tmp_path: Path, holders: list[Holder]
) -> None:
    project, build = tmp_path / "project", tmp_path / "project" / "build"
    build.mkdir(parents=True)
    killed = [Holder(build, "file"), Holder(project, "file")]  # a pack, a config.json
    running = Holder(build, "file")  # e.g. `mpkit preload -o build/…` right now
    holders += [*killed, running]
    for holder in killed:
        holder.kill()
    old_legacy = build / ".MyAdapter_1.0.0.pak.abcd_123.tmp"  # older mpkit versions
    young_legacy = build / ".MyAdapter_1.0.0.pak.efgh4567.tmp"
    for path in (old_legacy, young_legacy):
        path.write_bytes(b"half a pack")
    os.utime(old_legacy, (time.time() - 7200,) * 2)
    users = [build / "MyAdapter_1.0.0.pak", build / ".notes.tmp", project / "config.json"]
    for path in users:
        path.write_bytes(b"the user's")

    with project_build_lock(project, waiting=lambda _message: None):
        left = {p.name for p in build.iterdir()} | {p.name for p in project.iterdir()}
    assert left == {p.name for p in users} | {running.path.name, young_legacy.name, "build",
                                              LOCK_NAME}  # fmt: skip
