"""Run transfers in parallel; the first failure (or Ctrl-C) stops all the others."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from mpkit.registry.transport import TransferAborted, Transport

T = TypeVar("T")
ABORT_GRACE_SECONDS = 2.0


def run_all(
    transport: Transport, work: Callable[[T], None], items: Sequence[T], *, name: str
) -> None:
    """Call *work* on every item with at most ``options.concurrency`` threads.

    On the first exception the transport's abort flag stops running transfers, queued
    ones never start, and that first exception is raised.
    """
    if not items:
        return
    transport.ping()  # once, before the workers: a dead registry fails fast
    workers = max(1, min(transport.options.concurrency, len(items)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"mpkit-{name}")
    futures: list[Future[None]] = []
    try:
        futures = [pool.submit(work, item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f in done and f.exception() is not None]
        if failed:
            transport.abort.set()
            # Report the root cause, not a sibling that stopped because of it.
            first = next((f for f in failed if not isinstance(f.exception(), TransferAborted)),
                         failed[0])  # fmt: skip
            error = first.exception()
            assert error is not None
            raise error
    except BaseException:
        transport.abort.set()
        # Transfers see the flag between chunks; one blocked in a read (a registry slow
        # to answer) cannot be interrupted, so it gets a moment and is then left behind
        # (mpkit.exiting ends the process without it).
        pool.shutdown(wait=False, cancel_futures=True)
        wait(futures, timeout=ABORT_GRACE_SECONDS)
        raise
    pool.shutdown(wait=True)
