"""Start, query and stop the resident build server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from mpkit.daemon import client, paths
from mpkit.errors import BuildServerError

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
POLL_SECONDS = 0.02
# What the server itself needs; a command's own environment travels with each request,
# so credentials in the starter's environment never sit in a long-lived process.
SERVER_ENV_NAMES = (
    *("PATH", "HOME", "LANG", "TZ", "TMPDIR", "XDG_RUNTIME_DIR", "VIRTUAL_ENV"),
    *("SSL_CERT_FILE", "SSL_CERT_DIR"),  # for the system-trust TLS context made in advance
)
SERVER_ENV_PREFIXES = ("LC_", "PYTHON", "MPKIT_DAEMON")


def server_environment(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    env = {
        name: value
        for name, value in environ.items()
        if name in SERVER_ENV_NAMES or name.startswith(SERVER_ENV_PREFIXES)
    }
    # The server must import this very mpkit, wherever this process found it.
    parent = str(Path(paths.package_directory()).parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (parent, env.get("PYTHONPATH")) if p)
    return env


def start_server(server: paths.ServerPaths, fingerprint: str, *, wait: bool) -> bool:
    """Start a server in the background; with *wait*, until it answers (warns if not)."""
    try:
        launch(server, fingerprint)
    except BuildServerError as exc:
        if wait:
            sys.stderr.write(f"mpkit: warning: no build server, running without one: {exc}\n")
        return False
    if not wait:
        return True
    if wait_until_ready(server, fingerprint):
        return True
    sys.stderr.write(
        f"mpkit: warning: the build server did not start within {START_TIMEOUT:.0f} s "
        f"(see {server.log}); running without it\n"
    )
    return False


def launch(server: paths.ServerPaths, fingerprint: str) -> None:
    try:
        idle = paths.idle_seconds()
        paths.ensure_private_directory(server.directory, create=True)
        paths.check_socket_path(server.socket)
        log = os.open(server.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except (ValueError, paths.UnsafeDirectoryError, OSError) as exc:
        raise BuildServerError(
            f"cannot start the build server: {exc}", hint=f"or set {paths.ENV_MODE}=off"
        ) from exc
    argv = [
        sys.executable, "-m", "mpkit.daemon.server",
        "--fingerprint", fingerprint,
        "--package", paths.package_directory(),
        "--idle", repr(idle),
    ]  # fmt: skip
    try:
        # The server forks into the background at once; this waits only for that.
        starter = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd="/",
            env=server_environment(os.environ),
            start_new_session=True,
            check=False,
            timeout=START_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildServerError(
            f"cannot start the build server with {sys.executable}: {exc}"
        ) from exc
    finally:
        os.close(log)
    if starter.returncode != 0:
        raise BuildServerError(
            f"the build server exited with status {starter.returncode}", hint=f"see {server.log}"
        )


def ensure_running(server: paths.ServerPaths, fingerprint: str) -> tuple[dict[str, object], bool]:
    """The status of a server running this code, and whether it was already running.

    A server running other mpkit code is stopped first.
    """
    found = status(server)
    if found is not None and found.get("fingerprint") == fingerprint:
        return found, True
    if found is not None:
        stop(server)
    launch(server, fingerprint)
    if not wait_until_ready(server, fingerprint):
        raise BuildServerError(
            f"the build server did not start within {START_TIMEOUT:.0f} s",
            hint=f"see {server.log}",
        )
    started = status(server)
    if started is None:
        raise BuildServerError(
            "the build server stopped right after starting", hint=f"see {server.log}"
        )
    return started, False


def wait_until_ready(
    server: paths.ServerPaths, fingerprint: str, timeout: float = START_TIMEOUT
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = status(server)
        if found is not None and found.get("fingerprint") == fingerprint:
            return True
        time.sleep(POLL_SECONDS)
    return False


def status(server: paths.ServerPaths) -> dict[str, object] | None:
    """The running server's state, or None if none answers."""
    reply = client.request(server.socket, ("status",))
    return reply if isinstance(reply, dict) else None


def stop(server: paths.ServerPaths, timeout: float = STOP_TIMEOUT) -> dict[str, object] | None:
    """Ask the server to stop; its reply, or None if none was running.

    It stops listening at once and exits when the commands it is running have finished.
    """
    reply = client.request(server.socket, ("stop",))
    if not isinstance(reply, dict):
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and status(server) is not None:
        time.sleep(POLL_SECONDS)
    return reply
