"""Byte-reproducible zip archives: fixed timestamps, sorted entries, stable modes.

Same entries in, same bytes out, whatever the source files' mtimes, owners, other mode
bits or the order they were added in. Modes are those git keeps: a file is 0755 when its
source is executable (scripts stay runnable), else 0644; a directory is 0755. Directory
entries are written only where they were added (the SDK's packs decide which), stored,
each sorting before its contents. Deflate uses zlib's default level (6) and no extra
fields are written.
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import BinaryIO

from mpkit.errors import PackError

FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip header can hold
FILE_MODE = 0o100644
EXECUTABLE_MODE = 0o100755
DIR_MODE = 0o040755
_ANY_EXECUTE = 0o111
_MSDOS_DIRECTORY = 0x10
_CREATE_SYSTEM_UNIX = 3  # so that readers honour the Unix modes in external_attr
_CHUNK = 1 << 20
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


def check_entry_name(name: str) -> None:
    """Refuse a name that a safe reader would refuse: absolute, `..`, `\\`, drive letters."""
    parts = name.split("/")
    problem = None
    if not name or name.startswith("/"):
        problem = "is empty or absolute"
    elif "\\" in name or "\x00" in name:
        problem = "contains a backslash or a NUL character"
    elif _DRIVE_LETTER.match(name):
        problem = "starts with a drive letter"
    elif any(part in ("", ".", "..") for part in parts):
        problem = "has an empty, '.' or '..' path component"
    if problem:
        raise PackError(
            f"cannot put {name!r} into a zip archive: the name {problem}",
            hint="rename the file so its path inside the project is a plain relative path",
        )


class DeterministicZip:
    """Collects entries (bytes, files on disk, directories), then writes them sorted by name."""

    def __init__(self) -> None:
        self._entries: dict[str, bytes | Path | None] = {}  # None: a directory

    def add_bytes(self, name: str, data: bytes) -> None:
        self._add(name, data)

    def add_file(self, name: str, path: Path) -> None:
        """Add *path*'s content (read when the archive is written) as *name*; its mode is
        0755 when *path* is executable then, else 0644."""
        self._add(name, path)

    def add_directory(self, name: str) -> None:
        """Add the directory entry ``name/`` (its files are added on their own)."""
        check_entry_name(name)
        if self._entries.get(name, None) is not None:
            raise _clash(name)
        self._entries[name] = None

    def _add(self, name: str, source: bytes | Path) -> None:
        check_entry_name(name)
        if name in self._entries:
            if self._entries[name] is None:
                raise _clash(name)
            raise PackError(
                f"two files would both be stored as {name!r} in the archive",
                hint="rename one of them; in content/dashboards and content/reports a file "
                "named X.ext is stored as x/X.ext, so it can clash with a directory x/",
            )
        self._entries[name] = source

    def names(self) -> list[str]:
        """Every entry name (directories end in "/"), in the order they are written."""
        parents = {
            name.rsplit("/", i)[0] for name in self._entries for i in range(1, name.count("/") + 1)
        }
        clash = sorted(
            n for n, source in self._entries.items() if source is not None and n in parents
        )
        if clash:
            raise _clash(clash[0])
        return sorted(
            name + "/" if source is None else name for name, source in self._entries.items()
        )

    def write_to(self, stream: BinaryIO) -> None:
        """Write the archive to a seekable binary *stream* (no data descriptors then)."""
        with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in self.names():
                info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
                info.create_system = _CREATE_SYSTEM_UNIX
                source = self._entries[name.removesuffix("/")]
                if source is None:
                    info.external_attr = (DIR_MODE << 16) | _MSDOS_DIRECTORY
                    info.compress_type = zipfile.ZIP_STORED
                    archive.writestr(info, b"")
                    continue
                info.compress_type = zipfile.ZIP_DEFLATED
                if isinstance(source, bytes):
                    info.external_attr = FILE_MODE << 16
                    archive.writestr(info, source)
                else:
                    _write_file(archive, info, source)


def _clash(name: str) -> PackError:
    return PackError(
        f"{name!r} would be both a file and a directory in the archive",
        hint="rename the file or the directory so that the names differ",
    )


def _write_file(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> None:
    try:
        with open(path, "rb") as handle:
            executable = os.fstat(handle.fileno()).st_mode & _ANY_EXECUTE
            info.external_attr = (EXECUTABLE_MODE if executable else FILE_MODE) << 16
            # A known size lets zipfile decide on zip64 up front (only for > ~4 GiB).
            info.file_size = _size(handle)
            with archive.open(info, "w") as dest:
                shutil.copyfileobj(handle, dest, _CHUNK)
    except OSError as exc:
        raise PackError(
            f"cannot read {path} while writing the pack: {exc.strerror or exc}",
            hint="check that the file exists, is a regular file and is readable, then "
            "build again; any earlier pack was left as it was",
        ) from None


def _size(handle: BinaryIO) -> int:
    handle.seek(0, 2)
    size = handle.tell()
    handle.seek(0)
    return size
