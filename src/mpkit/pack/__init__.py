"""Management packs: the .pak and its adapter.zip (SPEC §5)."""

from __future__ import annotations

from mpkit.pack.conf import ImageLocation
from mpkit.pack.errors import PackError
from mpkit.pack.reader import PackContents, check_consistency, open_pack
from mpkit.pack.writer import build_pack

__all__ = [
    "ImageLocation",
    "PackContents",
    "PackError",
    "build_pack",
    "check_consistency",
    "open_pack",
]
