"""mpkit's cache: one root directory (:class:`CacheRoot`) that owns its layout and version,
and what ``mpkit cache show`` and ``mpkit cache prune`` report and remove."""

from __future__ import annotations

from mpkit.cache.root import AREAS, CacheRoot

__all__ = ["AREAS", "CacheRoot"]
