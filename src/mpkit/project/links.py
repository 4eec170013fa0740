"""Symbolic links in a project: one policy for what the pack and the image may read.

A link whose target, followed to the end, lies outside the project directory would put a
file of this machine into the pack or the image, wherever it is. Such a link is refused,
naming the link and its target, unless the user allows external links
(``--allow-external-links``, ``MPKIT_ALLOW_EXTERNAL_LINKS=1`` or
``"allow_external_links": true`` in the settings file); then it is followed. Links that
stay inside the project are always fine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mpkit.errors import ExternalLinkError

ALLOW_FLAG = "--allow-external-links"
ALLOW_ENV = "MPKIT_ALLOW_EXTERNAL_LINKS"
ALLOW_SETTING = "allow_external_links"


@dataclass(frozen=True)
class LinkPolicy:
    """Which symbolic links under *root* may be followed."""

    root: Path
    allow_external: bool = False
    real_root: Path = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "real_root", Path(os.path.realpath(self.root)))

    def leaves(self, path: Path) -> bool:
        """True when *path* (under root), followed through every link, ends outside root."""
        real = Path(os.path.realpath(path))
        return real != self.real_root and self.real_root not in real.parents

    def check(self, link: Path) -> bool:
        """For the symbolic link *link* under root: False when it stays inside the project,
        True when it leaves and external links are allowed; otherwise ExternalLinkError."""
        if not self.leaves(link):
            return False
        if self.allow_external:
            return True
        name = _relative_name(link, self.root)
        try:
            target = os.readlink(link)  # noqa: PTH115 (the target as written)
        except OSError:
            target = "?"
        real = os.path.realpath(link)
        via = "" if real == target else f", which is {real}"
        raise ExternalLinkError(
            f"the symbolic link {name!r} points outside the project {self.root} "
            f"(target: {target}{via})",
            link=name,
            target=target,
            hint="The pack and the image may only hold files of the project directory. Copy "
            "the file into the project (or make the link point inside it); to use files "
            f"outside the project on purpose, pass {ALLOW_FLAG} or set {ALLOW_ENV}=1.",
        )

    def check_path(self, path: Path) -> None:
        """Check every link on the way from root to *path* (a path under root)."""
        if self.allow_external:
            return
        try:
            parts = path.relative_to(self.root).parts
        except ValueError:
            return
        current = self.root
        for part in parts:
            current = current / part
            if current.is_symlink():
                self.check(current)


def _relative_name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
