"""A child forked before the next command arrives, with its memory already its own.

A fresh fork shares the server's pages copy-on-write, and CPython writes to every object
it touches (reference counts), so a new child spends its first ~20 ms in page faults. The
spare takes those faults while nobody waits: ``madvise(MADV_POPULATE_WRITE)`` (Linux 5.14+)
copies the private writable pages up front, a few megabytes at a time, and stops as soon
as a command arrives. Elsewhere the spare still saves the fork.
"""

from __future__ import annotations

import contextlib
import ctypes
import select
import socket
import sys
from collections.abc import Callable, Iterator
from typing import TypeVar

from mpkit.buildserver.wire import ProtocolError

MADV_POPULATE_WRITE = 23  # linux/mman.h
STEP = 4 * 1024 * 1024
_SPECIAL = ("[vvar", "[vdso", "[vsyscall")

Task = TypeVar("Task")


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


LIBC = _libc()  # loaded in the server, before it forks


def become_spare(control: socket.socket, read_task: Callable[[socket.socket], Task]) -> Task | None:
    """In a freshly forked child: prefault, then wait for the server to hand over a client
    (None when the server closes *control* instead: the caller exits)."""
    prefault(lambda: _readable(control))
    try:
        return read_task(control)
    except (OSError, ValueError, ProtocolError):
        return None


def prefault(interrupted: Callable[[], bool]) -> None:
    if LIBC is None:
        return
    for low, high in _private_writable_regions():
        for start in range(low, high, STEP):
            if interrupted():
                return
            if LIBC.madvise(start, min(STEP, high - start), MADV_POPULATE_WRITE) != 0:
                if ctypes.get_errno() == 22:  # EINVAL: the kernel has no POPULATE_WRITE
                    return
                break  # this region cannot be populated (e.g. a guard page): skip it


def _private_writable_regions() -> Iterator[tuple[int, int]]:
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            perms, name = fields[1], fields[5] if len(fields) > 5 else ""
            if perms.startswith("rw") and perms[3] == "p" and not name.startswith(_SPECIAL):
                low, high = (int(part, 16) for part in fields[0].split("-"))
                yield low, high


def _readable(sock: socket.socket) -> bool:
    ready, _, _ = select.select([sock], [], [], 0)
    return bool(ready)
