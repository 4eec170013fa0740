"""The cloud proxy's view of a pack: anonymous pull checks, preload, run."""

from __future__ import annotations

from mpkit.verify.report import BlobCheck, Problem, RateLimit, VerifyReport
from mpkit.verify.target import PackImage, pack_image, read_pack
from mpkit.verify.verify import PushedImageCheck, verify_pack

__all__ = [
    "BlobCheck",
    "PackImage",
    "Problem",
    "PushedImageCheck",
    "RateLimit",
    "VerifyReport",
    "pack_image",
    "read_pack",
    "verify_pack",
]
