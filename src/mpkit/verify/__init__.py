"""The cloud proxy's view of a pack: anonymous pull checks, preload, run (SPEC §7)."""

from __future__ import annotations

from mpkit.verify.report import BlobCheck, Problem, RateLimit, VerifyReport
from mpkit.verify.target import PackImage, pack_image, read_pack
from mpkit.verify.verify import verify_pack

__all__ = [
    "BlobCheck",
    "PackImage",
    "Problem",
    "RateLimit",
    "VerifyReport",
    "pack_image",
    "read_pack",
    "verify_pack",
]
