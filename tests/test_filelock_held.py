"""filelock.held: one holder at a time (files and directories), the waiter told once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mpkit.filelock import held


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_a_second_holder_waits_and_is_told_once(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "lock"
    if kind == "directory":
        path.mkdir()
    order: list[str] = []
    waiting = threading.Event()

    def told() -> None:
        order.append("told")
        waiting.set()

    def second() -> None:
        with held(path, on_wait=told):
            order.append("second")

    with held(path):
        thread = threading.Thread(target=second)
        thread.start()
        assert waiting.wait(timeout=60)
        order.append("first done")
    thread.join(timeout=60)
    assert order == ["told", "first done", "second"]
    assert path.is_dir() if kind == "directory" else path.is_file()


def test_a_path_that_cannot_be_opened_runs_the_block_unlocked(tmp_path: Path) -> None:
    ran = []
    with held(tmp_path / "missing-directory" / "lock"):
        ran.append(True)
    assert ran == [True]
