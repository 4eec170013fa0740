"""`mpkit registry serve|status|stop` and the library's ensure_running/stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpkit.errors import MpkitError, UsageError
from mpkit.server import (
    STATE_FILE,
    Server,
    ServerConfig,
    ensure_running,
    parse_addr,
    serve_argv,
    status,
    stop,
)
from mpkit.server.rootlock import lock_held
from tests.e2e.conftest import Mpkit
from tests.fixtures.procs import free_port
from tests.server.helpers import ServeProcess, client, push_image, write_htpasswd


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A registry root; whatever server is still recorded there is stopped afterwards."""
    path = tmp_path / "registry-root"
    yield path
    stop(path)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        not Path(f"/proc/{pid}/status").exists()
        or "zombie" not in Path(f"/proc/{pid}/status").read_text()
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--addr", "0.0.0.0:0"], "refusing to listen on 0.0.0.0:0 without authentication"),
        (["--addr", "[::]:0"], "without authentication"),
        (["--addr", "nonsense"], "has no port"),
        (["--tls-cert", "x.pem"], "--tls-cert and --tls-key go together"),
        (["--htpasswd", "/nonexistent/htpasswd"], "no such file"),
        (["--header-timeout", "0"], "--header-timeout must be a positive number"),
        (["--min-body-rate", "-1"], "--min-body-rate must be zero or more bytes/s"),
    ],
)
def test_unsafe_or_incomplete_settings_are_usage_errors(
    mpkit: Mpkit, root: Path, args: list[str], message: str
) -> None:
    result = mpkit.run("registry", "serve", "--root", str(root), *args, "--json")
    assert result.returncode == 2, result.output
    assert message in result.json()["message"]
    assert not (root / STATE_FILE).exists()


def test_bad_htpasswd_is_a_config_error(mpkit: Mpkit, root: Path, tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("alice:plaintext-password\n")
    result = mpkit.run(
        "registry",
        "serve",
        "--root",
        str(root),
        "--addr",
        "127.0.0.1:0",
        "--htpasswd",
        str(htpasswd),
    )
    assert result.returncode == 1
    assert "not a bcrypt hash" in result.stderr
    assert "plaintext-password" not in result.output


def test_detach_status_stop(mpkit: Mpkit, root: Path) -> None:
    started = mpkit.ok(
        "registry", "serve", "--detach", "--addr", "127.0.0.1:0", "--root", str(root), "--json"
    ).json()
    pid = started["pid"]
    assert started["started_now"] and alive(pid)
    assert pid != os.getpid()
    with client(started["url"]) as http:
        push_image(http, "detached/app")
    shown = mpkit.ok("registry", "status", "--root", str(root), "--json").json()
    assert shown["running"] and shown["pid"] == pid and shown["addr"] == started["addr"]
    again = mpkit.run("registry", "serve", "--detach", "--addr", "127.0.0.1:0", "--root", str(root))
    assert again.returncode == 1
    assert "already serves" in again.stderr
    stopped = mpkit.ok("registry", "stop", "--root", str(root), "--json").json()
    assert stopped["stopped"] and stopped["pid"] == pid
    assert not lock_held(root) and not (root / STATE_FILE).exists()
    after = mpkit.run("registry", "status", "--root", str(root), "--json")
    assert after.returncode == 1 and after.json() == {"running": False, "root": str(root)}
    log = (root / "registry.log").read_text()
    assert '"PUT /v2/detached/app/manifests/v1 HTTP/1.1" 201' in log
    assert mpkit.ok("registry", "stop", "--root", str(root), "--json").json()["stopped"] is False


def test_foreground_server_stops_cleanly_on_sigterm(
    tmp_path: Path, serve_process: ServeProcess
) -> None:
    served = serve_process.start()
    state = json.loads((tmp_path / "root" / STATE_FILE).read_text())
    assert state["pid"] == served.process.pid  # type: ignore[union-attr]
    assert state["addr"] == served.host
    assert served.process is not None
    assert served.process.stop() == 0
    assert not (tmp_path / "root" / STATE_FILE).exists()
    assert not lock_held(tmp_path / "root")
    assert "registry stopped" in served.log.read_text()


def test_stop_never_signals_a_process_that_does_not_hold_the_root(root: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        root.mkdir(parents=True)
        (root / STATE_FILE).write_text(
            json.dumps(
                {
                    "pid": bystander.pid,
                    "addr": "127.0.0.1:1",
                    "url": "http://127.0.0.1:1",
                    "root": str(root),
                    "started": "then",
                    "tls": False,
                    "auth": False,
                }
            )
        )
        assert stop(root) is None
        assert bystander.poll() is None  # untouched
        assert not (root / STATE_FILE).exists()  # the stale record is gone
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_refuses_to_signal_its_own_process(root: Path) -> None:
    server = Server(ServerConfig(root=root, port=0), record_state=True).start()
    try:
        with pytest.raises(MpkitError):
            stop(root)
    finally:
        server.shutdown()


def test_ensure_running_starts_once_and_reuses(root: Path, tmp_path: Path) -> None:
    addr = f"127.0.0.1:{free_port()}"
    first = ensure_running(addr, root)
    try:
        assert first.started_now and first.addr == addr and first.pid is not None
        second = ensure_running(addr, root)
        assert not second.started_now and second.pid == first.pid
        assert status(root) is not None
    finally:
        assert stop(root) is not None
    other_root = tmp_path / "elsewhere"
    with Server(ServerConfig(root=other_root, port=0)) as server:
        foreign = ensure_running(server.address, root)
        assert foreign.pid is None and not foreign.started_now  # something already answers
    assert status(root) is None


def test_ensure_running_passes_options(root: Path, tmp_path: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd")
    handle = ensure_running(f"127.0.0.1:{free_port()}", root, htpasswd=htpasswd)
    try:
        assert handle.auth
        with client(handle.url) as http:
            assert http.get("/v2/").status_code == 401
    finally:
        stop(root)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000", ("127.0.0.1", 5000)),
        ("[::1]:5000", ("::1", 5000)),
        ("localhost:0", ("localhost", 0)),
        (":5000", ("0.0.0.0", 5000)),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_addr(text) == expected


def test_network_listening_needs_auth_or_an_explicit_opt_in(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        ServerConfig(root=tmp_path, host="0.0.0.0").validate()
    assert "--htpasswd" in (caught.value.hint or "")
    ServerConfig(root=tmp_path, host="0.0.0.0", insecure_open=True).validate()
    ServerConfig(root=tmp_path, host="::1").validate()
    ServerConfig(root=tmp_path, host="localhost").validate()


def test_a_detached_server_keeps_every_limit(tmp_path: Path) -> None:
    """``--detach`` re-runs the server in the background: no setting may be lost."""
    config = ServerConfig(
        root=tmp_path, max_connections=7, header_timeout=3.5, idle_timeout=4.5,
        body_timeout=5.5, min_body_rate=6.5, upload_ttl=8.0,
    )  # fmt: skip
    argv = serve_argv(config)
    for flag, value in (
        ("--max-connections", "7"), ("--header-timeout", "3.5"), ("--idle-timeout", "4.5"),
        ("--body-timeout", "5.5"), ("--min-body-rate", "6.5"), ("--upload-ttl", "8.0"),
    ):  # fmt: skip
        assert argv[argv.index(flag) + 1] == value
