"""Deterministic gzip and one-pass digests of compressed layers."""

from __future__ import annotations

import gzip
import hashlib
import io
import os

import pytest

from mpkit.errors import ImageFormatError
from mpkit.image.compress import GZIP_HEADER, gunzip_digests, gzip_layer


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_gzip_layer_is_standard_gzip_and_deterministic() -> None:
    raw = os.urandom(300_000) + b"\0" * 3_000_000  # spans several 1 MiB chunks
    outs = []
    for _ in range(2):
        sink = io.BytesIO()
        result = gzip_layer(io.BytesIO(raw), sink)
        outs.append(sink.getvalue())
    assert outs[0] == outs[1]
    assert outs[0].startswith(GZIP_HEADER)
    assert gzip.decompress(outs[0]) == raw
    assert result.diff_id == _sha(raw) and result.uncompressed_size == len(raw)
    assert result.digest == _sha(outs[0]) and result.size == len(outs[0])
    assert gunzip_digests(io.BytesIO(outs[0])) == result


def test_gunzip_digests_handles_concatenated_members_and_padding() -> None:
    stream = gzip.compress(b"first ") + gzip.compress(b"second") + b"\0" * 512
    result = gunzip_digests(io.BytesIO(stream))
    assert result.diff_id == _sha(b"first second")
    assert result.digest == _sha(stream)


@pytest.mark.parametrize(
    "data",
    [b"", b"not gzip at all", gzip.compress(b"x" * 1000, mtime=0)[:-12]],
    ids=["empty", "not-gzip", "truncated"],
)
def test_gunzip_digests_rejects_broken_input(data: bytes) -> None:
    with pytest.raises(ImageFormatError, match="my layer"):
        gunzip_digests(io.BytesIO(data), "my layer")
