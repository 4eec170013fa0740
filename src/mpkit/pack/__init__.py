"""Management packs: the .pak and its adapter.zip, entry for entry as the SDK writes them."""

from __future__ import annotations

from mpkit.pack.conf import ImageLocation
from mpkit.pack.reader import PackContents, check_consistency, open_pack
from mpkit.pack.writer import build_pack

__all__ = [
    "ImageLocation",
    "PackContents",
    "build_pack",
    "check_consistency",
    "open_pack",
]
