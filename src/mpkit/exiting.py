"""Ending the mpkit process once its command has returned.

A cancelled transfer can leave a worker thread blocked in a socket read that nothing can
interrupt (a registry slow to answer an upload). Such a thread must not keep a finished
command alive until the read times out: every file mpkit writes is written atomically
and temp files of ended processes are removed by later runs, so ending it is safe.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from typing import NoReturn


def lingering_threads() -> bool:
    """Whether a thread besides the main one still runs that a normal exit would wait for:
    a non-daemon thread, or a thread pool's worker. The interpreter joins every pool worker
    at exit, daemon or not, and a pool made by a daemon thread (the push access check's)
    has daemon workers."""
    threading = sys.modules.get("threading")  # never imported: no threads to wait for
    if threading is None:
        return False
    main = threading.main_thread()
    # concurrent.futures keeps the workers it joins at exit in this (weak) mapping.
    pools = sys.modules.get("concurrent.futures.thread")
    workers = set(getattr(pools, "_threads_queues", {}))
    return any(
        t is not main and t.is_alive() and (not t.daemon or t in workers)
        for t in threading.enumerate()
    )


def exit_process(code: int) -> NoReturn:
    """``sys.exit(code)``, unless threads linger: then run the exit handlers, flush the
    standard streams and end the process without joining them."""
    if not lingering_threads():
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    os._exit(code)
