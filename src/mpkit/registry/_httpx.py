"""Import httpx without the parts a synchronous client never uses.

httpx imports its command-line client (``httpx._main``, which pulls in click, rich's
console and pygments when they are installed), and httpcore imports ``trio`` and
``anyio`` for its async locks whenever they are installed. mpkit only makes synchronous
requests, and on a machine with those packages the two cost ~120 ms of every command's
start-up. This module imports httpx and httpcore once with those modules hidden (an
import of a ``None`` entry in ``sys.modules`` raises ImportError, which both libraries
treat as "not installed"), then takes the entries away again, so that anything else in
the process can still import them.
"""

from __future__ import annotations

import sys

# Never needed by a synchronous httpx client; a module already imported stays visible.
_HIDDEN = ("httpx._main", "trio", "anyio")


def _import_lean() -> None:
    if "httpcore" in sys.modules and "httpx" in sys.modules:
        return
    hidden = [name for name in _HIDDEN if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import httpcore  # noqa: F401  (httpx imports it only when the first client is made)
        import httpx  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


_import_lean()
