"""The built-in OCI distribution registry (``mpkit registry serve``).

Library entry points: :class:`Server` (embed a registry in this process),
:func:`ensure_running` (a detached registry at an address, started if nothing answers),
:func:`status` and :func:`stop` (by storage root).
"""

from mpkit.server.config import DEFAULT_ADDR, ServerConfig, default_root, parse_addr
from mpkit.server.daemon import (
    ServerHandle,
    answers,
    ensure_running,
    serve_argv,
    start_detached,
    status,
    stop,
)
from mpkit.server.server import LOG_FILE, STATE_FILE, Server, ServerState

__all__ = [
    "DEFAULT_ADDR",
    "LOG_FILE",
    "STATE_FILE",
    "Server",
    "ServerConfig",
    "ServerHandle",
    "ServerState",
    "answers",
    "default_root",
    "ensure_running",
    "parse_addr",
    "serve_argv",
    "start_detached",
    "status",
    "stop",
]
