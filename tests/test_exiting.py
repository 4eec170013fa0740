"""mpkit.exiting: which threads would keep a finished command alive."""

from __future__ import annotations

import subprocess
import sys

# Runs in a fresh interpreter: the test process has threads of its own.
SCRIPT = """
import threading
from concurrent.futures import ThreadPoolExecutor
from mpkit.exiting import lingering_threads

print(lingering_threads())
release, started = threading.Event(), threading.Event()

def blocked():  # a transfer stuck in a read
    started.set()
    release.wait(60)

def check_in_background():  # a daemon thread whose pool's workers are daemons too
    pool = ThreadPoolExecutor(max_workers=1)
    pool.submit(blocked)
    pool.shutdown(wait=False)

maker = threading.Thread(target=check_in_background, daemon=True)
maker.start()
maker.join()
started.wait(60)
print(lingering_threads())
release.set()
"""


def test_a_pool_worker_started_by_a_daemon_thread_lingers() -> None:
    """The interpreter joins pool workers at exit even when they are daemon threads."""
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]
