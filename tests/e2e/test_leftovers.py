"""Nothing is left behind after ``kill -9`` or Ctrl-C, and nothing outlives mpkit.

Real ``mpkit build`` runs are stopped in the middle of the uv step (a package index that
accepts connections and never answers holds uv there) and of the pack write; uv must end
with mpkit, and the next build must remove whatever the killed one left. ``mpkit cache``
must account for, and ``prune --all`` remove, every directory a real build made. A second
build of a project waits for the first.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mpkit.atomicfile import is_temp_name
from mpkit.workflow.buildlock import LOCK_NAME
from tests.e2e.conftest import Mpkit
from tests.e2e.sdkproject import PACK_NAME, flow_env, pack_path, write_sdk_project
from tests.fixtures.baseimage import SdkBase
from tests.fixtures.registry import RegistryServer
from tests.imagebuild.projects import SDK_DOCKERFILE

BUILD_TIMEOUT = 240.0
WAIT = 60.0  # only a bound for a hang; nothing here depends on speed
PIP_RUN = "RUN pip3 install -r adapter_requirements.txt --upgrade"


class SilentIndex:
    """A 'package index' on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/simple/"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def silent_index() -> Iterator[SilentIndex]:
    index = SilentIndex()
    yield index
    index.close()


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MPKIT_CACHE_DIR (base pull, uv downloads) for the builds of this module."""
    return tmp_path_factory.mktemp("leftovers-cache")


@dataclass
class Project:
    root: Path
    cli: Mpkit
    cache: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), env=self.cli.env, stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=BUILD_TIMEOUT, check=False,
        )  # fmt: skip

    def ok(self) -> dict[str, Any]:
        done = self.run("--json")
        assert done.returncode == 0, done.stdout + done.stderr
        report: dict[str, Any] = json.loads(done.stdout)
        return report

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args), env=self.cli.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mpkit", "build", str(self.root), *args]

    def pip_from(self, index_url: str | None) -> None:
        """The Dockerfile's pip line, with --index-url *index_url* (None: the default)."""
        line = PIP_RUN if index_url is None else PIP_RUN.replace(
            "install ", f"install --index-url {index_url} "
        )  # fmt: skip
        (self.root / "Dockerfile").write_text(SDK_DOCKERFILE.replace(PIP_RUN, line))

    def leftovers(self) -> list[str]:
        """Everything in build/ but the pack, and every temp in the cache."""
        build = [p.name for p in (self.root / "build").glob("*") if p.name != PACK_NAME]
        temps = [p.name for p in (self.cache / "tmp").glob("*")]
        return sorted(build + temps)


MakeProject = Callable[..., Project]


@pytest.fixture
def make_project(
    tmp_path: Path, sdk_base: SdkBase, registry_open: RegistryServer, module_cache: Path
) -> MakeProject:
    def make(cache: Path | None = None, **env: str) -> Project:
        cache = cache or module_cache
        root = write_sdk_project(
            tmp_path / "project",
            config={"container_repository": f"{registry_open.host}/mp/leftovers"},
        )
        user = tmp_path / "user"
        environ = flow_env(user, base_registry_host=sdk_base.registry.host, cache=cache,
                           extra=env)  # fmt: skip
        return Project(root, Mpkit(root=user, env=environ), cache)

    return make


# -- processes --------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of *pid*, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def uv_installs_of(parent: int) -> list[int]:
    """The ``uv pip install`` processes whose parent is *parent*."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if Path(argv[0].decode()).name == "uv" and argv[1:3] == [b"pip", b"install"]:
            info = _stat(int(entry.name))
            if info is not None and info[1] == parent:
                found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    """Ended (a zombie has ended too; only its exit status is left for its parent)."""
    info = _stat(pid)
    return info is None or info[0] == "Z"


def wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def stopped_in_uv(project: Project, silent_index: SilentIndex, sig: int) -> int:
    """Start a build, wait until uv waits for the silent index, send *sig* to mpkit;
    returns uv's pid."""
    project.pip_from(silent_index.url)
    process = project.start()
    try:
        deadline = time.monotonic() + BUILD_TIMEOUT
        while not (installs := uv_installs_of(process.pid)):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "uv never started"
            time.sleep(0.05)
        (uv,) = installs
        wait_for(lambda: silent_index.held, "uv to connect to the index")
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode != 0
    assert "Traceback" not in stderr, stderr
    return uv


# -- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_uv_ends_with_mpkit_and_the_next_build_finds_nothing_left(
    make_project: MakeProject, silent_index: SilentIndex, sig: signal.Signals
) -> None:
    # uv would wait for the index for ten minutes on its own.
    project = make_project(UV_HTTP_TIMEOUT="600")
    uv = stopped_in_uv(project, silent_index, sig)
    wait_for(lambda: gone(uv), "uv to end with mpkit")

    left = project.leftovers()
    if sig == signal.SIGINT:
        assert left == []  # a cancelled build cleans up after itself
    else:
        assert LOCK_NAME in left  # the lock file (no longer locked: its holder is gone)
        assert [n for n in left if n.startswith(".pydeps.") and is_temp_name(n)], left
    project.pip_from(None)
    report = project.ok()
    assert report["pack"] == str(pack_path(project.root))
    assert project.leftovers() == []


_STALLED_PACK_WRITE = textwrap.dedent(
    """
    import io, sys, time
    from pathlib import Path
    from mpkit.pack import writer, zipfile_det
    from mpkit.project.load import load_project

    write_to = zipfile_det.DeterministicZip.write_to

    def stalled(self, stream):
        if isinstance(stream, io.BytesIO):  # adapter.zip, made in memory
            return write_to(self, stream)
        stream.write(b"the first part of a pack" * 4096)
        stream.flush()
        print("writing", flush=True)
        time.sleep(600)

    zipfile_det.DeterministicZip.write_to = stalled
    location = writer.ImageLocation(
        registry="127.0.0.1:5000", repository="/mp/x", digest="sha256:" + "0" * 64, tag="t"
    )
    writer.build_pack(load_project(Path(sys.argv[1])), location)
    """
)


def test_a_pack_write_killed_halfway_is_removed_by_the_next_build(
    make_project: MakeProject,
) -> None:
    project = make_project()
    first = project.ok()
    before = pack_path(project.root).read_bytes()
    writer = subprocess.Popen(
        [sys.executable, "-c", _STALLED_PACK_WRITE, str(project.root)],
        env=project.cli.env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=WAIT)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        if writer.stdout is not None:
            writer.stdout.close()
    (half,) = project.leftovers()
    assert half.startswith(f".{PACK_NAME}.") and is_temp_name(half)
    assert pack_path(project.root).read_bytes() == before  # the old pack was never touched

    assert project.ok()["digest"] == first["digest"]
    assert project.leftovers() == []
    assert pack_path(project.root).read_bytes() == before


def test_cache_show_and_prune_all_cover_every_directory_a_build_made(
    make_project: MakeProject, tmp_path: Path
) -> None:
    cache = tmp_path / "own-cache"
    project = make_project(cache=cache)
    project.ok()
    made = {p.name for p in cache.iterdir()}
    # (uv and pydeps are absent when the dependency layer came from the registry cache)
    assert {"blobs", "fsindex", "describe-valid", "tmp"} <= made

    shown = project.cli.ok("cache", "show", "--json").json()
    assert set(shown["areas"]) == made and shown["others"] == []
    text = project.cli.ok("cache", "show").stdout
    assert all(f"  {name} " in text for name in made), text

    (cache / "users-notes.txt").write_text("not mpkit's")
    project.cli.ok("cache", "prune", "--all")
    assert [p.name for p in cache.iterdir()] == ["users-notes.txt"]
    emptied = project.cli.ok("cache", "show", "--json").json()
    assert (emptied["areas"], emptied["others"]) == ({}, ["users-notes.txt"])


def test_a_second_build_of_a_project_waits_for_the_first(make_project: MakeProject) -> None:
    project = make_project()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from pathlib import Path
            from mpkit.workflow.buildlock import project_build_lock
            with project_build_lock(Path(sys.argv[1]), waiting=print):
                print("building", flush=True)
                time.sleep(600)
            """), str(project.root)],
        env=project.cli.env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "building"
        build = project.start("--json")
        assert build.stderr is not None
        line = build.stderr.readline()
        assert line == (
            f"warning: another mpkit build of this project is running (process {holder.pid}); "
            "waiting for it to finish (Ctrl-C to cancel)\n"
        )
        assert build.poll() is None
        holder.send_signal(signal.SIGKILL)  # the first build dies: the second goes on
        stdout, stderr = build.communicate(timeout=BUILD_TIMEOUT)
    finally:
        for process in (holder, locals().get("build")):
            if isinstance(process, subprocess.Popen) and process.poll() is None:
                process.kill()
                process.communicate()
        if holder.stdout is not None:
            holder.stdout.close()
    assert build.returncode == 0, stderr
    assert json.loads(stdout)["pack"] == str(pack_path(project.root))
    assert project.leftovers() == []
    assert not (project.root / "build" / LOCK_NAME).exists()
