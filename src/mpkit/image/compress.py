"""Deterministic gzip for layers, hashing input and output in the same pass."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from mpkit.errors import ImageFormatError
from mpkit.image.digest import CHUNK_SIZE, iter_chunks, new_hasher

# Same input -> same bytes: zlib level 6, raw deflate, input fed in fixed 1 MiB chunks,
# and a fixed RFC 1952 header: no file name, MTIME 0, XFL 0, OS 255 ("unknown", as Go
# writes it). The output can still differ across zlib versions; the LayerCache keeps
# the first result so one machine always pushes the same digest.
GZIP_LEVEL = 6
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


@dataclass(frozen=True)
class LayerDigests:
    """Digest and size of a compressed layer, and of its uncompressed tar (diff_id)."""

    digest: str
    size: int
    diff_id: str
    uncompressed_size: int


class GzipHashingWriter:
    """A write-only file: gzips what it is given into *sink*, hashing both sides.

    One pass: every byte written is hashed (diff_id), compressed and hashed again
    (digest) as it arrives, so a layer is never read twice.
    """

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self._raw_hash = new_hasher()
        self._out_hash = new_hasher()
        self._compressor = zlib.compressobj(
            GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL
        )
        self._crc = 0
        self._raw_size = 0
        self._out_size = 0
        self._emit(GZIP_HEADER)

    def _emit(self, data: bytes) -> None:
        if data:
            self._out_hash.update(data)
            self._sink.write(data)
            self._out_size += len(data)

    def write(self, data: bytes) -> int:
        self._raw_hash.update(data)
        self._crc = zlib.crc32(data, self._crc)
        self._raw_size += len(data)
        self._emit(self._compressor.compress(data))
        return len(data)

    def finish(self) -> LayerDigests:
        self._emit(self._compressor.flush(zlib.Z_FINISH))
        self._emit(struct.pack("<II", self._crc & 0xFFFFFFFF, self._raw_size & 0xFFFFFFFF))
        return LayerDigests(
            digest=f"sha256:{self._out_hash.hexdigest()}",
            size=self._out_size,
            diff_id=f"sha256:{self._raw_hash.hexdigest()}",
            uncompressed_size=self._raw_size,
        )


def gzip_layer(source: BinaryIO, sink: BinaryIO) -> LayerDigests:
    """Compress *source* into *sink*; one read of the input, one write of the output."""
    writer = GzipHashingWriter(sink)
    for chunk in iter_chunks(source, CHUNK_SIZE):
        writer.write(chunk)
    return writer.finish()


def gunzip_digests(source: BinaryIO, name: str = "layer") -> LayerDigests:
    """Digests of a gzip stream and of its decompressed content, in one pass.

    Concatenated gzip members (as pigz may write) are decompressed in turn.
    """
    out_hash = new_hasher()
    raw_hash = new_hasher()
    size = 0
    raw_size = 0
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        for chunk in iter_chunks(source, CHUNK_SIZE):
            out_hash.update(chunk)
            size += len(chunk)
            while chunk:
                data = decompressor.decompress(chunk)
                raw_hash.update(data)
                raw_size += len(data)
                chunk = b""
                if decompressor.eof:
                    chunk = decompressor.unused_data
                    if chunk.strip(b"\0"):
                        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    else:
                        chunk = b""
        tail = decompressor.flush()
    except zlib.error as exc:
        raise ImageFormatError(f"{name} is not valid gzip: {exc}") from None
    raw_hash.update(tail)
    raw_size += len(tail)
    if not decompressor.eof:
        raise ImageFormatError(f"{name} is a truncated gzip stream")
    return LayerDigests(
        digest=f"sha256:{out_hash.hexdigest()}",
        size=size,
        diff_id=f"sha256:{raw_hash.hexdigest()}",
        uncompressed_size=raw_size,
    )
