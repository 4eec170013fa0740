"""The merged view of base layers: whiteouts, opaque directories, and its on-disk cache."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from mpkit.cache.root import CacheRoot
from mpkit.image import mediatypes
from mpkit.image.types import Blob, Descriptor
from mpkit.imagebuild import marshalfile
from mpkit.imagebuild.basefs import MERGED_VERSION, LayeredFilesystem, merged_view_path
from mpkit.imagebuild.fsview import FileInfo

Member = tuple[str, str, int, bytes | str]  # name, kind, mode, content or link target


def layer(*members: Member) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, mode, payload in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.uid = info.gid = 1000 if name.startswith("home") else 0
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(payload)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(payload)
            data = payload if isinstance(payload, bytes) and kind == "file" else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


LOWER = layer(
    ("./", "dir", 0o750, b""),
    ("etc/", "dir", 0o755, b""),
    ("etc/passwd", "file", 0o644, b"root:x:0:0::/root:/bin/sh\n"),
    ("etc/hard", "hardlink", 0o644, "etc/passwd"),
    ("usr/lib/python3/x.py", "file", 0o644, b"x = 1\n"),
    ("opt/old/a", "file", 0o600, b"a"),
    ("opt/old/sub/b", "file", 0o600, b"b"),
    ("var/keep/file", "file", 0o644, b"kept"),
    ("data", "file", 0o644, b"a file, later a directory"),
    ("link", "symlink", 0o777, "/etc"),
    ("home/adapter/", "dir", 0o700, b""),
)
MIDDLE = layer(
    ("etc/.wh.passwd", "file", 0o644, b""),
    ("opt/old/.wh..wh..opq", "file", 0o644, b""),
    ("opt/old/new", "file", 0o644, b"new"),
    ("data/", "dir", 0o755, b""),
    ("data/inner", "file", 0o644, b"inner"),
    ("var/keep", "file", 0o644, b"a directory, now a file"),
    ("srv/deep/file", "file", 0o644, b"deep"),
    ("usr/.wh.lib", "file", 0o644, b""),
)
UPPER = layer(
    ("etc/passwd", "file", 0o640, b"root:x:0:0::/root:/bin/bash\n"),
    ("srv/.wh..wh..opq", "file", 0o644, b""),
)


class CountingBlob(Blob):
    """A layer blob that counts how often it is opened."""

    def __init__(self, data: bytes) -> None:
        digest = Blob.from_bytes(data, mediatypes.OCI_LAYER_GZIP).descriptor
        super().__init__(Descriptor(mediatypes.OCI_LAYER_GZIP, digest.digest, len(data)),
                         self._open)  # fmt: skip
        self.data = data
        self.opened = 0

    def _open(self) -> BinaryIO:
        self.opened += 1
        return io.BytesIO(self.data)


def layers() -> list[CountingBlob]:
    return [CountingBlob(LOWER), CountingBlob(MIDDLE), CountingBlob(UPPER)]


def every_path(view: LayeredFilesystem) -> Iterator[str]:
    """Every path of the view, plus some that are not in it."""
    pending = ["/"]
    while pending:
        path = pending.pop()
        yield path
        yield path.rstrip("/") + "/missing"
        pending += [f"{path.rstrip('/')}/{name}" for name in view.listdir(path)]
    yield from ("/etc/passwd", "/opt/old/a", "/opt/old/sub/b", "/var/keep/file", "/usr/lib")


def answers(view: LayeredFilesystem, paths: list[str]) -> list[object]:
    return [(p, view.info(p), view.listdir(p), view.read_file(p)) for p in paths]


def test_whiteouts_and_opaque_directories_hide_lower_content() -> None:
    view = LayeredFilesystem(layers())
    assert view.info("/") == FileInfo("dir", 0o750)
    assert view.listdir("/") == ["data", "etc", "home", "link", "opt", "srv", "usr", "var"]
    assert view.info("/etc/passwd") == FileInfo("file", 0o640, size=28)
    assert view.read_file("/etc/passwd") == b"root:x:0:0::/root:/bin/bash\n"
    assert view.read_file("/etc/hard") == b"root:x:0:0::/root:/bin/bash\n"
    assert view.listdir("/opt/old") == ["new"]  # opaque: the lower a and sub/ are gone
    assert view.info("/opt/old/sub/b") is None
    assert view.info("/data") == FileInfo("dir", 0o755)  # a file replaced by a directory
    assert view.listdir("/data") == ["inner"]
    assert view.info("/var/keep") == FileInfo("file", 0o644, size=23)  # and the reverse
    assert view.info("/var/keep/file") is None
    assert view.info("/srv") == FileInfo("dir", 0o755)  # an implicit parent ...
    assert view.listdir("/srv") == []  # ... emptied by an opaque marker above it
    assert view.info("/usr/lib/python3/x.py") is None  # a whited-out directory
    assert view.listdir("/usr") == []
    assert view.info("/link") == FileInfo("symlink", 0o777, linkname="/etc")
    assert view.info("/home/adapter") == FileInfo("dir", 0o700, 1000, 1000)


def test_the_cached_view_gives_the_same_answers_without_reading_the_layers(
    tmp_path: Path,
) -> None:
    cache = CacheRoot(tmp_path)
    uncached = LayeredFilesystem(layers())
    paths = sorted(set(every_path(uncached)))
    expected = answers(uncached, paths)

    first = layers()
    assert answers(LayeredFilesystem(first, cache=cache), paths) == expected
    assert merged_view_path(cache, first).is_file()

    again = layers()
    view = LayeredFilesystem(again, cache=cache)
    assert [blob.opened for blob in again] == [0, 0, 0]  # nothing listed again
    assert answers(view, paths) == expected
    assert [blob.opened for blob in again] == [0, 0, 0]  # file contents were kept too


def test_the_cache_is_per_ordered_list_of_layers(tmp_path: Path) -> None:
    cache = CacheRoot(tmp_path)
    forward, backward = layers(), layers()[::-1]
    assert merged_view_path(cache, forward) != merged_view_path(cache, backward)
    LayeredFilesystem(forward, cache=cache)
    reordered = LayeredFilesystem(backward, cache=cache)
    assert reordered.info("/opt/old/a") == FileInfo("file", 0o600, size=1)
    assert reordered.info("/etc/passwd") == FileInfo("file", 0o644, size=26)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[:-1] + bytes([data[-1] ^ 1]), id="flipped-bit"),
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: b"not a cache file at all", id="foreign"),
    ],
)
def test_a_damaged_cache_file_is_ignored_and_rewritten(tmp_path: Path, damage: object) -> None:
    cache = CacheRoot(tmp_path)
    blobs = layers()
    expected = answers(LayeredFilesystem(blobs, cache=cache), ["/", "/etc", "/opt/old"])
    path = merged_view_path(cache, blobs)
    assert callable(damage)
    path.write_bytes(damage(path.read_bytes()))

    again = layers()
    assert answers(LayeredFilesystem(again, cache=cache), ["/", "/etc", "/opt/old"]) == (expected)
    assert marshalfile.read(path, b"mpkit-fsview", MERGED_VERSION) is not None  # rewritten
    assert_cache_is_used(cache, expected)


def test_a_cache_file_of_another_format_version_is_rewritten(tmp_path: Path) -> None:
    cache = CacheRoot(tmp_path)
    blobs = layers()
    expected = answers(LayeredFilesystem(blobs, cache=cache), ["/", "/etc", "/opt/old"])
    path = merged_view_path(cache, blobs)
    # Same kind of file, readable, but written by a version with other semantics.
    stale = (("dir", 0o700, 0, 0, 0, "", -1), {"/": b""})
    marshalfile.write(path, b"mpkit-fsview", MERGED_VERSION + 1, stale)

    view = LayeredFilesystem(layers(), cache=cache)
    assert view.info("/") == FileInfo("dir", 0o750)
    assert_cache_is_used(cache, expected)


def assert_cache_is_used(cache: CacheRoot, expected: list[object]) -> None:
    blobs = layers()
    view = LayeredFilesystem(blobs, cache=cache)
    assert [blob.opened for blob in blobs] == [0, 0, 0]
    assert answers(view, ["/", "/etc", "/opt/old"]) == expected


def test_marshalfile_round_trip_and_refusals(tmp_path: Path) -> None:
    value = ({"a": (1, "x", None)}, [b"bytes"], {"set"})
    data = marshalfile.encode(b"kind", 3, value)
    assert marshalfile.decode(b"kind", 3, data) == value
    assert marshalfile.decode(b"other", 3, data) is None
    assert marshalfile.decode(b"kind", 4, data) is None
    assert marshalfile.decode(b"kind", 3, data[:-1]) is None
    assert marshalfile.read(tmp_path / "absent", b"kind", 3) is None
    marshalfile.write(tmp_path / "f", b"kind", 3, value)
    assert marshalfile.read(tmp_path / "f", b"kind", 3) == value
