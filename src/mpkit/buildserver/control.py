"""Start, query and stop the resident build server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mpkit.background import lock_held, start_background, wait_until
from mpkit.buildserver import client, paths
from mpkit.errors import BuildServerError, StartError

# Only for a server that hangs while starting: one that exits is noticed at once, so a
# slow (cold, loaded) machine gets all the time it needs.
START_TIMEOUT = 120.0
STOP_TIMEOUT = 10.0
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


def launch(server: paths.ServerPaths, fingerprint: str) -> dict[str, object]:
    """Start a server for *fingerprint* and wait until it answers; its status."""
    try:
        idle = paths.idle_seconds()
        paths.ensure_private_directory(server.directory, create=True)
        paths.check_socket_path(server.socket)
    except (ValueError, paths.UnsafeDirectoryError, OSError) as exc:
        raise BuildServerError(
            f"cannot start the build server: {exc}", hint=f"or set {paths.ENV_MODE}=off"
        ) from exc
    argv = [
        sys.executable, "-m", "mpkit.buildserver.server",
        "--fingerprint", fingerprint,
        "--package", paths.package_directory(),
        "--idle", repr(idle),
    ]  # fmt: skip

    def ready() -> dict[str, object] | None:
        found = status(server)
        return found if found is not None and found.get("fingerprint") == fingerprint else None

    try:
        return start_background(
            argv, what="the build server", log=Path(server.log), ready=ready,
            timeout=START_TIMEOUT, lock=Path(server.lock), cwd="/",
            env=server_environment(os.environ),
        )  # fmt: skip
    except StartError as exc:
        raise BuildServerError(exc.message, hint=exc.hint) from None


def ensure_running(server: paths.ServerPaths, fingerprint: str) -> tuple[dict[str, object], bool]:
    """The status of a server running this code, and whether it was already running.

    A server running other mpkit code is stopped first.
    """
    found = status(server)
    if found is not None and found.get("fingerprint") == fingerprint:
        return found, True
    if found is not None:
        stop(server)
    return launch(server, fingerprint), False


def status(server: paths.ServerPaths) -> dict[str, object] | None:
    """The running server's state, or None if none answers."""
    reply = client.request(server.socket, ("status",))
    return reply if isinstance(reply, dict) else None


def stop(server: paths.ServerPaths, timeout: float = STOP_TIMEOUT) -> dict[str, object] | None:
    """Ask the server to stop; its reply, or None if none was running.

    It stops listening and exits at once; the commands it started run to their end.
    """
    reply = client.request(server.socket, ("stop",))
    if not isinstance(reply, dict):
        return None
    wait_until(lambda: not lock_held(server.lock), timeout)
    return reply
