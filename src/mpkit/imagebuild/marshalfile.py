"""Small derived-data cache files: ``marshal`` of plain values behind a checked header.

The header names the kind of file, its format version and the interpreter's marshal
version, and carries the payload's length and CRC-32: a file from another format,
another Python or a damaged disk reads as missing, and the caller rebuilds it.
"""

from __future__ import annotations

import marshal
import struct
import zlib
from pathlib import Path
from typing import Any

from mpkit.atomicfile import write_bytes

_HEADER = struct.Struct(">HHQI")  # format version, marshal version, payload length, CRC-32


def encode(kind: bytes, version: int, value: Any) -> bytes:
    """*value* (plain tuples, lists, dicts, sets, str, bytes, int, None) behind a header."""
    payload = marshal.dumps(value)
    header = _HEADER.pack(version, marshal.version, len(payload), zlib.crc32(payload))
    return kind + b"\n" + header + payload


def decode(kind: bytes, version: int, data: bytes) -> Any | None:
    """The value :func:`encode` stored, or None when *data* is stale or damaged."""
    magic = kind + b"\n"
    start = len(magic) + _HEADER.size
    if not data.startswith(magic) or len(data) < start:
        return None
    stored, marshal_version, length, crc = _HEADER.unpack_from(data, len(magic))
    payload = data[start:]
    if (stored, marshal_version, length) != (version, marshal.version, len(payload)):
        return None
    if zlib.crc32(payload) != crc:
        return None
    try:
        return marshal.loads(payload)  # noqa: S302 - mpkit's own checksummed cache file
    except (ValueError, EOFError, TypeError):
        return None


def write(
    path: Path, kind: bytes, version: int, value: Any, *, temp_dir: Path | None = None
) -> None:
    """Write atomically (the temp in *temp_dir*, default beside *path*), so that a reader
    never sees half a file."""
    write_bytes(path, encode(kind, version, value), temp_dir=temp_dir)


def read(path: Path, kind: bytes, version: int) -> Any | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return decode(kind, version, data)
