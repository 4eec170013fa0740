"""The pack's error type (to move into mpkit.errors when the lead merges it)."""

from __future__ import annotations

from mpkit.errors import MpkitError


class PackError(MpkitError):
    """A pack could not be written, or a .pak file is unsafe or malformed."""

    code = "pack"
