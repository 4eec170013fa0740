"""The resident build server end to end: ``mpkit daemon``, and commands run through it.

A command run through the server must be indistinguishable from one run in-process:
same output, exit code, directory, environment, umask and stdin; signals reach it; a
client that dies takes its command with it. The servers run in a directory of the
test's own (fixture ``build_server``) and are stopped afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CommandResult, Mpkit, blob_files
from tests.fixtures.buildserver import BuildServer
from tests.fixtures.registry import RegistryServer, write_certs_d
from tests.image.builders import make_oci_layout

LAYERS = [{"app/adapter.py": b"print('collect')\n" * 50}]
SECRET = "S3cret-Passw0rd-Xy"
WAIT = 15.0


def status(mpkit: Mpkit, server: BuildServer) -> dict[str, Any]:
    data: dict[str, Any] = mpkit.ok("daemon", "status", "--json", env=server.env).json()
    return data


def wait_for(condition: Any, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def run_with_umask(
    mpkit: Mpkit, args: list[str], *, env: Mapping[str, str], cwd: Path, umask: int, stdin: str
) -> CommandResult:
    argv = [sys.executable, "-m", "mpkit", *args]
    proc = subprocess.run(
        argv, input=stdin, env={**mpkit.env, **env}, cwd=cwd, capture_output=True, text=True,
        timeout=120, check=False, preexec_fn=lambda: os.umask(umask),
    )  # fmt: skip
    return CommandResult(argv, proc.returncode, proc.stdout, proc.stderr)


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o7777 for p in sorted(root.rglob("*"))}


def test_start_status_and_stop(mpkit: Mpkit, build_server: BuildServer) -> None:
    assert status(mpkit, build_server)["running"] is False
    started = mpkit.ok("daemon", "start", "--json", env=build_server.env).json()
    assert started["running"] is True and started["already_running"] is False
    assert build_server.pids() == [started["pid"]]
    again = mpkit.ok("daemon", "start", "--json", env=build_server.env).json()
    assert again["already_running"] is True and again["pid"] == started["pid"]

    now = status(mpkit, build_server)
    assert now["running"] is True and now["current"] is True
    assert now["served"] == 0 and now["commands_running"] == 0
    text = mpkit.ok("daemon", "status", env=build_server.env).stdout
    assert f"pid {started['pid']}" in text and "Idle timeout" in text

    wait_for(lambda: build_server.state().get("spare_pid"), "a spare child")
    spare = status(mpkit, build_server)["spare_pid"]
    stopped = mpkit.ok("daemon", "stop", "--json", env=build_server.env).json()
    assert stopped["stopped"] is True
    wait_for(lambda: not build_server.pids(), "the server to exit")
    wait_for(lambda: not build_server.alive(spare), "its spare child to exit")
    assert status(mpkit, build_server)["running"] is False
    assert "No build server was running" in mpkit.ok("daemon", "stop", env=build_server.env).stdout
    assert not list(build_server.directory.glob("*.sock"))


@pytest.mark.parametrize(
    "args",
    [
        ("cache", "--json"),
        ("cache",),
        ("image", "inspect", "not::a-reference"),
        ("image", "--bogus"),
        ("image", "push", "--help"),
        ("verify", "no-such.pak", "--json"),
    ],
    ids=lambda args: " ".join(args),
)
def test_a_command_through_the_server_matches_in_process(
    mpkit: Mpkit, build_server: BuildServer, args: tuple[str, ...]
) -> None:
    alone = mpkit.run(*args)
    served = mpkit.run(*args, env=build_server.env)
    assert (served.returncode, served.stdout, served.stderr) == (
        alone.returncode, alone.stdout, alone.stderr,
    )  # fmt: skip
    assert build_server.state()["served"] == 1  # it really went through the server


def test_the_command_takes_the_clients_directory_environment_umask_and_stdin(
    mpkit: Mpkit, build_server: BuildServer, registry_basic: RegistryServer, tmp_path: Path
) -> None:
    make_oci_layout(tmp_path / "src", "v1", LAYERS)
    ref = f"{registry_basic.host}/team/served:v1"
    password = registry_basic.users["alice"]
    login = ["-u", "alice", "--password-stdin", "--json"]
    results = {}
    for name, env in (("alone", {}), ("served", build_server.env)):
        push = run_with_umask(
            mpkit, ["image", "push", "oci:src:v1", ref, *login],
            env=env, cwd=tmp_path, umask=0o027, stdin=password,
        )  # fmt: skip
        assert push.returncode == 0, push.output
        pull = run_with_umask(
            mpkit, ["image", "pull", ref, f"oci:{name}", *login],
            env=env, cwd=tmp_path, umask=0o027, stdin=password,
        )  # fmt: skip
        assert pull.returncode == 0, pull.output
        results[name] = pull.json()
    assert (tmp_path / "served").is_dir()  # relative to the client's directory
    assert modes(tmp_path / "served") == modes(tmp_path / "alone")
    assert blob_files(tmp_path / "served") == blob_files(tmp_path / "alone")
    assert results["served"]["digest"] == results["alone"]["digest"]

    # Each command sees its own environment, not the server's or an earlier command's.
    for cache in ("cache-one", "cache-two"):
        env = {**build_server.env, "MPKIT_CACHE_DIR": str(tmp_path / cache)}
        assert mpkit.ok("cache", "--json", env=env).json()["root"] == str(tmp_path / cache)
    assert build_server.state()["served"] == 4  # push, pull and two cache


def test_a_server_running_other_code_is_replaced(mpkit: Mpkit, build_server: BuildServer) -> None:
    import mpkit as package

    subprocess.Popen(
        [sys.executable, "-m", "mpkit.buildserver.server", "--fingerprint", "other-code",
         "--package", str(Path(package.__file__).parent), "--idle", "60"],
        env={**os.environ, **build_server.env}, cwd="/", stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    wait_for(lambda: build_server.state(), "the old server")
    before = status(mpkit, build_server)
    assert before["current"] is False
    assert "stale" in mpkit.ok("daemon", "status", env=build_server.env).stdout

    mpkit.ok("cache", "--json", env=build_server.env)
    after = status(mpkit, build_server)
    assert after["current"] is True and after["pid"] != before["pid"]
    assert after["served"] == 1
    wait_for(lambda: before["pid"] not in build_server.pids(), "the old server to exit")


def test_an_idle_server_exits_and_removes_its_socket(
    mpkit: Mpkit, build_server: BuildServer
) -> None:
    env = {**build_server.env, "MPKIT_DAEMON_IDLE": "1"}
    pid = mpkit.ok("daemon", "start", "--json", env=env).json()["pid"]
    assert build_server.pids() == [pid]
    wait_for(lambda: not build_server.pids(), "the idle server to exit")
    assert not list(build_server.directory.glob("*.sock"))
    assert "idle for 1 s" in next(build_server.directory.glob("*.log")).read_text()


def test_unsafe_directory_and_bad_settings_are_clear(mpkit: Mpkit, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    env = {"MPKIT_DAEMON": "on", "MPKIT_DAEMON_DIR": str(shared)}
    start = mpkit.run("daemon", "start", env=env)
    assert start.returncode == 1, start.output
    assert "open to other users" in start.stderr and "Traceback" not in start.output
    # A command still runs (in-process), with a warning.
    served = mpkit.run("cache", "--json", env=env)
    assert served.returncode == 0, served.output
    assert "open to other users" in served.stderr and "running without it" in served.stderr
    assert not list(shared.iterdir())

    bad = mpkit.run("cache", env={"MPKIT_DAEMON": "sometimes"})
    assert bad.returncode == 2
    assert "MPKIT_DAEMON must be one of auto, on, off" in bad.stderr
    idle = mpkit.run("daemon", "start", env={**env, "MPKIT_DAEMON_IDLE": "-5"})
    assert idle.returncode == 1 and "MPKIT_DAEMON_IDLE" in idle.stderr


def test_secrets_never_reach_the_server_process_or_its_log(
    mpkit: Mpkit, build_server: BuildServer
) -> None:
    env = {**build_server.env, "MPKIT_REGISTRY_PASSWORD": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET}
    mpkit.ok("cache", "--json", env=env)
    [pid] = build_server.pids()
    assert SECRET.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    assert SECRET.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    for log in build_server.directory.glob("*.log"):
        assert SECRET not in log.read_text()


def test_no_copy_of_a_commands_secret_stays_in_server_memory(
    mpkit: Mpkit, build_server: BuildServer
) -> None:
    """The server reads only the first frame of a request: the command's environment goes
    to the child that runs it and dies with it, so neither the server nor the spare child
    it forks next holds the password, not even in freed memory."""
    env = {**build_server.env, "MPKIT_REGISTRY_PASSWORD": SECRET}
    mpkit.ok("cache", "--json", env=env)
    mpkit.ok("cache", "--json", env=env)  # the second one runs in the spare
    wait_for(lambda: build_server.state().get("spare_pid"), "a new spare child")
    found = build_server.state()
    for pid in (found["pid"], found["spare_pid"]):
        assert SECRET.encode() not in _memory(int(pid)), f"the secret is in process {pid}"


def _memory(pid: int) -> bytes:
    """Everything readable in a process's address space (as root: /proc/PID/mem)."""
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if not fields[1].startswith("r") or (len(fields) > 5 and fields[5] == "[vvar]"):
                continue
            low, high = (int(part, 16) for part in fields[0].split("-"))
            try:
                mem.seek(low)
                chunks.append(mem.read(high - low))
            except (OSError, OverflowError, ValueError):
                continue
    return b"".join(chunks)


def _hanging_registry() -> socket.socket:
    """A loopback listener that accepts and never answers: a command waits on it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(WAIT)
    return listener


def _start_hanging_command(
    mpkit: Mpkit, server: BuildServer, listener: socket.socket
) -> tuple[subprocess.Popen[str], socket.socket]:
    host = f"127.0.0.1:{listener.getsockname()[1]}"
    argv = [
        sys.executable,
        "-m",
        "mpkit",
        "image",
        "inspect",
        f"{host}/team/app:v1",
        "--retries",
        "1",
    ]
    process = subprocess.Popen(
        argv, env={**mpkit.env, **server.env}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    conn, _ = listener.accept()  # the command is now waiting for an answer
    return process, conn


def test_ctrl_c_reaches_the_command(mpkit: Mpkit, build_server: BuildServer) -> None:
    mpkit.ok("daemon", "start", env=build_server.env)
    with _hanging_registry() as listener:
        process, conn = _start_hanging_command(mpkit, build_server, listener)
        with conn:
            os.kill(process.pid, signal.SIGINT)  # the client only: it forwards
            stdout, stderr = process.communicate(timeout=WAIT)
    assert process.returncode == 1, stdout + stderr
    assert "cancelled by the user (Ctrl-C)" in stderr
    assert "Traceback" not in stderr
    assert build_server.state()["commands_running"] == 0


def test_a_killed_client_takes_its_command_with_it(mpkit: Mpkit, build_server: BuildServer) -> None:
    mpkit.ok("daemon", "start", env=build_server.env)
    with _hanging_registry() as listener:
        process, conn = _start_hanging_command(mpkit, build_server, listener)
        with conn:
            assert build_server.state()["commands_running"] == 1
            process.kill()
            process.communicate(timeout=WAIT)
            wait_for(lambda: build_server.state()["commands_running"] == 0, "the command to stop")
    assert build_server.pids()  # the server itself carries on


def test_parallel_commands_and_garbage_on_the_socket(
    mpkit: Mpkit, build_server: BuildServer
) -> None:
    started = mpkit.ok("daemon", "start", "--json", env=build_server.env).json()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(started["socket"])
        raw.sendall(b"\x00\x00\x00\x05garbage that is not a frame")
    argv = [sys.executable, "-m", "mpkit", "cache", "--json"]
    env = {**mpkit.env, **build_server.env}
    processes = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for process in processes:
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        json.loads(stdout)
    after = build_server.state()
    assert after["pid"] == started["pid"] and after["served"] == 4


def test_trust_follows_each_commands_home_not_the_servers(
    mpkit: Mpkit, build_server: BuildServer, registry_tls: RegistryServer, tmp_path: Path
) -> None:
    """A per-user certs.d (~/.docker/certs.d) is looked up under the command's HOME."""
    server_home = tmp_path / "server-home"
    server_home.mkdir()
    mpkit.ok("daemon", "start", env={**build_server.env, "HOME": str(server_home)})
    make_oci_layout(tmp_path / "src", "v1", LAYERS)
    ref = f"{registry_tls.host}/team/trusted:v1"
    user_home = tmp_path / "user-home"
    write_certs_d(user_home / ".docker" / "certs.d", registry_tls)
    env = {**build_server.env, "HOME": str(user_home)}
    pushed = mpkit.run("image", "push", f"oci:{tmp_path / 'src'}:v1", ref, "--json", env=env)
    assert pushed.returncode == 0, pushed.output
    untrusted = mpkit.run("image", "inspect", ref, env=build_server.env)
    assert untrusted.returncode == 1 and "not trusted" in untrusted.stderr
    assert build_server.state()["served"] == 2


def test_commands_run_in_the_prepared_spare_and_work_without_one(
    mpkit: Mpkit, build_server: BuildServer
) -> None:
    """The server keeps one child forked ahead (its memory already private); a command runs
    in it, and a new spare follows. If spares keep dying, commands fork directly."""
    mpkit.ok("daemon", "start", env=build_server.env)
    wait_for(lambda: build_server.state().get("spare_pid"), "a spare child")
    first_spare = build_server.state()["spare_pid"]
    assert first_spare in build_server.all_pids()
    mpkit.ok("cache", "--json", env=build_server.env)
    wait_for(
        lambda: build_server.state().get("spare_pid") not in (None, first_spare), "a new spare"
    )
    wait_for(lambda: first_spare not in build_server.all_pids(), "the used spare to exit")

    for _ in range(3):  # spares that die unused: after three, the server stops making them
        wait_for(lambda: build_server.state().get("spare_pid"), "a spare child")
        os.kill(build_server.state()["spare_pid"], signal.SIGKILL)
        time.sleep(0.2)
    wait_for(lambda: build_server.state().get("spare_pid") is None, "no more spares")
    time.sleep(0.3)
    assert build_server.state()["spare_pid"] is None
    assert json.loads(mpkit.ok("cache", "--json", env=build_server.env).stdout)
    assert "died unused" in next(build_server.directory.glob("*.log")).read_text()
