"""The built-in OCI distribution registry (``mpkit registry serve``).

Library entry points: :class:`Server` (embed a registry in this process),
:func:`ensure_running` (a detached registry at an address, started if nothing answers),
:func:`status` and :func:`stop` (by storage root).

Names are imported on first use, so ``import mpkit.cli`` does not pay for the server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mpkit.server.config import DEFAULT_ADDR as DEFAULT_ADDR
    from mpkit.server.config import LOG_FILE as LOG_FILE
    from mpkit.server.config import STATE_FILE as STATE_FILE
    from mpkit.server.config import ServerConfig as ServerConfig
    from mpkit.server.config import default_root as default_root
    from mpkit.server.config import parse_addr as parse_addr
    from mpkit.server.control import ServerHandle as ServerHandle
    from mpkit.server.control import answers as answers
    from mpkit.server.control import ensure_running as ensure_running
    from mpkit.server.control import serve_argv as serve_argv
    from mpkit.server.control import start_detached as start_detached
    from mpkit.server.control import status as status
    from mpkit.server.control import stop as stop
    from mpkit.server.server import Server as Server
    from mpkit.server.server import ServerState as ServerState

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
_HOMES = {
    **dict.fromkeys(
        ("DEFAULT_ADDR", "LOG_FILE", "STATE_FILE", "ServerConfig", "default_root", "parse_addr"),
        "config",
    ),
    **dict.fromkeys(
        (
            "ServerHandle",
            "answers",
            "ensure_running",
            "serve_argv",
            "start_detached",
            "status",
            "stop",
        ),
        "control",
    ),
    **dict.fromkeys(("Server", "ServerState"), "server"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"mpkit.server.{home}"), name)
