"""One server per storage root: the lock ``<root>/server.lock`` (see mpkit.background)."""

from __future__ import annotations

from pathlib import Path

from mpkit.background import ServerLock
from mpkit.background import lock_held as _lock_held

LOCK_FILE = "server.lock"


class RootLock(ServerLock):
    def __init__(self, root: Path) -> None:
        super().__init__(root / LOCK_FILE)


def lock_held(root: Path) -> bool:
    """True while some server (in any process, this one included) holds *root*'s lock."""
    return _lock_held(root / LOCK_FILE)
