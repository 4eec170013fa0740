"""Where the server listens, and which mpkit it is (import-light: os, sys, zlib).

One server per Python environment (sys.prefix) and mpkit installation, in a private directory:
``$MPKIT_DAEMON_DIR``, else ``$XDG_RUNTIME_DIR/mpkit``, else ``$TMPDIR/mpkit-UID``.
"""

from __future__ import annotations

import os
import stat
import sys
import zlib

import mpkit

ENV_MODE = "MPKIT_DAEMON"
ENV_DIR = "MPKIT_DAEMON_DIR"
ENV_IDLE = "MPKIT_DAEMON_IDLE"
ENV_SPARE = "MPKIT_DAEMON_SPARE"
MODES = ("auto", "on", "off")
DEFAULT_IDLE_SECONDS = 15 * 60
MAX_SOCKET_PATH = 100  # sun_path is 104 (BSD) or 108 (Linux) bytes, with the NUL


class ServerPaths:
    """The server's files (a plain class: dataclasses would cost 18 ms of import)."""

    __slots__ = ("directory", "lock", "log", "socket")

    def __init__(self, directory: str, stem: str) -> None:
        self.directory = directory
        self.socket = f"{stem}.sock"
        self.lock = f"{stem}.lock"
        self.log = f"{stem}.log"


class UnsafeDirectoryError(Exception):
    """The runtime directory is missing, shared with other users, or the path is too long."""


def mode(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """``auto`` (the default), ``on`` or ``off``; ValueError for anything else."""
    value = environ.get(ENV_MODE, "").strip().lower() or "auto"
    aliases = {"1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off"}
    value = aliases.get(value, value)
    if value not in MODES:
        raise ValueError(f"{ENV_MODE} must be one of auto, on, off (not {value!r})")
    return value


def idle_seconds(environ: dict[str, str] | os._Environ[str] = os.environ) -> float:
    text = environ.get(ENV_IDLE, "").strip()
    if not text:
        return DEFAULT_IDLE_SECONDS
    seconds = float(text)
    if seconds <= 0:
        raise ValueError(f"{ENV_IDLE} must be a positive number of seconds")
    return seconds


def spares_wanted(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Whether the server keeps a child forked ahead (``MPKIT_DAEMON_SPARE=0``: no; it
    costs the memory of one more process)."""
    return environ.get(ENV_SPARE, "").strip().lower() not in ("0", "off", "false", "no")


def runtime_directory(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    explicit = environ.get(ENV_DIR)
    if explicit:
        return explicit
    xdg = environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "mpkit")
    return os.path.join(environ.get("TMPDIR") or "/tmp", f"mpkit-{os.getuid()}")


def server_paths(environ: dict[str, str] | os._Environ[str] = os.environ) -> ServerPaths:
    directory = runtime_directory(environ)
    package = package_directory()
    identity = zlib.crc32(f"{sys.prefix}\0{package}".encode())  # python, python3: one server
    stem = os.path.join(directory, f"build-server-{identity:08x}")
    return ServerPaths(directory, stem)


def ensure_private_directory(directory: str, *, create: bool) -> None:
    """Only a directory owned by us and closed to others may hold the socket."""
    if create:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    try:
        info = os.stat(directory)
    except FileNotFoundError as exc:
        raise UnsafeDirectoryError(f"{directory} does not exist") from exc
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise UnsafeDirectoryError(f"{directory} is not a directory owned by this user")
    if info.st_mode & 0o077:
        raise UnsafeDirectoryError(
            f"{directory} is open to other users (mode {stat.S_IMODE(info.st_mode):o})"
        )


def check_socket_path(path: str) -> None:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise UnsafeDirectoryError(
            f"the socket path {path} is longer than {MAX_SOCKET_PATH} bytes; "
            f"set {ENV_DIR} to a shorter directory"
        )


def fingerprint() -> str:
    """Changes whenever the code a server imported could differ from this process's.

    Covers mpkit's files (path, size, mtime), the interpreter, and the import path's
    directories with their mtimes (installing or upgrading a dependency changes
    site-packages). sys.path[0] (the script's directory, or the cwd for ``-m``) is left
    out, so that every client of one installation agrees.
    """
    package = package_directory()
    parts = [mpkit.__version__, sys.prefix, sys.version]
    for entry in sorted(set(sys.path[1:])):
        try:
            parts.append(f"{entry}:{os.stat(entry).st_mtime_ns}")
        except OSError:
            continue
    for root, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(root, name)
            try:
                info = os.stat(path)
            except OSError:
                continue
            parts.append(f"{path}:{info.st_size}:{info.st_mtime_ns}")
    text = "\n".join(parts).encode()
    return f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}{len(parts):x}"


def package_directory() -> str:
    return os.path.dirname(os.path.abspath(mpkit.__file__))
