"""Progress events from transfers; the CLI renders them, the library never prints."""

from __future__ import annotations

from typing import Protocol

from mpkit.image.types import Descriptor

# Outcomes reported by ``finish``.
UPLOADED, MOUNTED, SKIPPED, DOWNLOADED, CACHED = (
    "uploaded",
    "mounted",
    "skipped",
    "downloaded",
    "cached",
)


class Progress(Protocol):
    def start(self, descriptor: Descriptor, action: str) -> None: ...
    def advance(self, descriptor: Descriptor, nbytes: int) -> None: ...
    def reset(self, descriptor: Descriptor) -> None: ...
    def finish(self, descriptor: Descriptor, outcome: str) -> None: ...


class NoProgress:
    def start(self, descriptor: Descriptor, action: str) -> None:
        pass

    def advance(self, descriptor: Descriptor, nbytes: int) -> None:
        pass

    def reset(self, descriptor: Descriptor) -> None:
        pass

    def finish(self, descriptor: Descriptor, outcome: str) -> None:
        pass
