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


def gzip_layer(source: BinaryIO, sink: BinaryIO) -> LayerDigests:
    """Compress *source* into *sink*; one read of the input, one write of the output."""
    raw_hash = new_hasher()
    out_hash = new_hasher()
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL)
    crc = 0
    raw_size = 0
    out_size = 0

    def emit(data: bytes) -> None:
        nonlocal out_size
        if data:
            out_hash.update(data)
            sink.write(data)
            out_size += len(data)

    emit(GZIP_HEADER)
    for chunk in iter_chunks(source, CHUNK_SIZE):
        raw_hash.update(chunk)
        crc = zlib.crc32(chunk, crc)
        raw_size += len(chunk)
        emit(compressor.compress(chunk))
    emit(compressor.flush(zlib.Z_FINISH))
    emit(struct.pack("<II", crc & 0xFFFFFFFF, raw_size & 0xFFFFFFFF))
    return LayerDigests(
        digest=f"sha256:{out_hash.hexdigest()}",
        size=out_size,
        diff_id=f"sha256:{raw_hash.hexdigest()}",
        uncompressed_size=raw_size,
    )


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
