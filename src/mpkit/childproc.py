"""Programs mpkit starts end with mpkit, also when mpkit is killed.

On Ctrl-C, ``subprocess.run`` kills its child before the KeyboardInterrupt goes on. A
``kill -9`` of mpkit gives no such chance, so on Linux the child asks the kernel for
SIGKILL when its parent ends (``prctl(PR_SET_PDEATHSIG)``), between fork and exec. The
kernel means the parent *thread*: call :func:`run` from the thread that waits for the
child (as ``subprocess.run`` does), never from a thread that ends before it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from functools import lru_cache
from typing import Any

PR_SET_PDEATHSIG = 1  # linux/prctl.h


@lru_cache(maxsize=1)
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up before any fork (the child must not load anything)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # only here: a few milliseconds of start-up otherwise

    try:
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return function


def end_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this thread ends (Linux),
    or None where the kernel offers no such thing."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def arrange() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent ended before the request took effect
            os._exit(1)

    return arrange


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run`` whose child does not outlive this process (see the module)."""
    return subprocess.run(argv, preexec_fn=end_with_parent(), **kwargs)
