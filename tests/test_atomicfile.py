"""Atomic writes, and telling the temps of killed processes from those still being written."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from mpkit.atomicfile import (
    STALE_AFTER,
    AtomicFile,
    TempDir,
    atomic_output,
    is_stale,
    is_temp_name,
    remove_stale,
    temp_name,
    write_bytes,
)
from tests.fixtures.tempholder import Holder


def test_the_target_appears_complete_with_the_exact_mode(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "file.json"
    old_umask = os.umask(0o077)
    try:
        write_bytes(target, b"{}", mode=0o644)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"{}"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not filtered by the umask
    write_bytes(target, b"secret", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "pack.pak"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(target) as stream:
        stream.write(b"new, half")
        raise RuntimeError("the writer failed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["pack.pak"]


def test_the_name_can_be_chosen_at_commit_and_the_temp_can_live_elsewhere(
    tmp_path: Path,
) -> None:
    temps, blobs = tmp_path / "tmp", tmp_path / "blobs"
    with AtomicFile(temp_dir=temps, label="blob") as output:
        output.stream.write(b"content")
        assert output.path.parent == temps and is_temp_name(output.path.name)
        output.commit(blobs / "digest")
    assert (blobs / "digest").read_bytes() == b"content"
    assert list(temps.iterdir()) == []
    with AtomicFile(temp_dir=temps) as dropped:
        dropped.stream.write(b"the same again")
        dropped.discard()
    assert list(temps.iterdir()) == []


def test_temp_names_say_whose_they_are() -> None:
    name = temp_name("MyAdapter_1.0.0.pak")
    assert name.startswith(".MyAdapter_1.0.0.pak.") and is_temp_name(name)
    assert f".{os.getpid()}." in name
    for other in ("MyAdapter_1.0.0.pak", ".MyAdapter.pak.abcd1234.tmp", ".x.12.zz.mpkit-tmp"):
        assert not is_temp_name(other)


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_a_killed_writers_temp_is_stale_and_a_live_ones_is_not(
    tmp_path: Path, holders: list[Holder], kind: str
) -> None:
    alive, killed = Holder(tmp_path, kind), Holder(tmp_path, kind)
    holders += [alive, killed]
    killed.kill()
    assert not is_stale(alive.path)
    assert is_stale(killed.path)
    # A year-old file the live process still holds is not stale either: it holds the lock.
    os.utime(alive.path, (time.time() - 365 * 86400,) * 2)
    assert not is_stale(alive.path)

    (tmp_path / "users-file").write_bytes(b"not ours")
    remove_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.path.name, "users-file"])
    alive.kill()
    remove_stale(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["users-file"]


def test_an_unlocked_temp_of_a_running_process_waits_until_it_is_old(tmp_path: Path) -> None:
    """The pid is in use (the writer between creating and locking, or a reused pid)."""
    temp = tmp_path / temp_name("x")  # this process's pid, and nobody holds it
    temp.write_bytes(b"")
    assert not is_stale(temp)
    old = time.time() - STALE_AFTER - 60
    os.utime(temp, (old, old))
    assert is_stale(temp)


def test_temps_of_older_versions_go_once_they_are_old(tmp_path: Path) -> None:
    young, old = tmp_path / ".a.pak.abcd1234.tmp", tmp_path / ".b.pak.efgh5678.tmp"
    for path in (young, old):
        path.write_bytes(b"x")
    os.utime(old, (time.time() - 7200,) * 2)
    freed = remove_stale(tmp_path, also=lambda name: name.endswith(".tmp"))
    assert freed == 1
    assert [p.name for p in tmp_path.iterdir()] == [young.name]


def test_a_temp_dir_is_published_or_removed(tmp_path: Path) -> None:
    with TempDir(tmp_path / "tmp", "tree") as work:
        (work.path / "file").write_bytes(b"x")
        work.publish(tmp_path / "final")
    assert (tmp_path / "final" / "file").read_bytes() == b"x"
    with pytest.raises(RuntimeError), TempDir(tmp_path / "tmp", "tree") as failed:
        (failed.path / "file").write_bytes(b"x")
        raise RuntimeError("failed while filling it")
    assert list((tmp_path / "tmp").iterdir()) == []


def test_writing_a_file_removes_what_a_killed_write_of_it_left(
    tmp_path: Path, holders: list[Holder]
) -> None:
    killed = Holder(tmp_path, "file")  # was writing tmp_path/target.bin
    holders.append(killed)
    killed.kill()
    other = tmp_path / temp_name("other.bin")  # another file's, and its writer is alive
    other.write_bytes(b"")
    write_bytes(tmp_path / "target.bin", b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, "target.bin"])
