"""Digests, media types, Platform/Descriptor/Blob/Image and platform selection."""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from mpkit.errors import ImageFormatError, UsageError
from mpkit.image import mediatypes as mt
from mpkit.image.digest import (
    HashingReader,
    HashingWriter,
    digest_hex,
    hash_stream,
    sha256_digest,
    validate_digest,
)
from mpkit.image.select import DEFAULT_PLATFORM, platform_matches, select_platform
from mpkit.image.types import Blob, Descriptor, Image, ImageIndex, Layer, Platform

HEX = "a" * 64


def test_sha256_digest_and_hex() -> None:
    assert sha256_digest(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert digest_hex(f"sha256:{HEX}") == HEX


@pytest.mark.parametrize("good", [f"sha256:{HEX}", "sha512:" + "0" * 128])
def test_validate_digest_accepts(good: str) -> None:
    assert validate_digest(good) == good


@pytest.mark.parametrize(
    "bad",
    ["", HEX, "sha256:" + "a" * 63, "sha256:" + "A" * 64, "md5:" + "a" * 32, "sha512:" + HEX],
)
def test_validate_digest_rejects(bad: str) -> None:
    with pytest.raises(ImageFormatError) as info:
        validate_digest(bad)
    assert info.value.hint


def test_hashing_writer_reader_and_stream_agree() -> None:
    data = bytes(range(256)) * 10000  # > 1 MiB, several chunks
    sink = io.BytesIO()
    writer = HashingWriter(sink)
    writer.write(data[:1000])
    writer.write(data[1000:])
    reader = HashingReader(io.BytesIO(data))
    while reader.read(4096):
        pass
    expected = "sha256:" + hashlib.sha256(data).hexdigest()
    assert writer.digest == reader.digest == expected
    assert writer.size == reader.size == len(data) == len(sink.getvalue())
    assert hash_stream(io.BytesIO(data)) == (expected, len(data))


def test_accept_header_names_all_four_types() -> None:
    for media_type in (mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST):
        assert media_type in mt.ACCEPT_MANIFESTS
    assert {
        mt.OCI_INDEX,
        mt.OCI_MANIFEST,
        mt.DOCKER_MANIFEST,
        mt.DOCKER_MANIFEST_LIST,
    } == mt.MANIFEST_MEDIA_TYPES | mt.INDEX_MEDIA_TYPES


def test_platform_parse_str_and_dict() -> None:
    assert Platform.parse("linux/amd64") == DEFAULT_PLATFORM
    arm = Platform.parse("linux/arm64/v8")
    assert arm == Platform("linux", "arm64", "v8")
    assert str(arm) == "linux/arm64/v8"
    assert Platform.parse("linux/x86_64") == Platform("linux", "amd64")
    assert arm.to_dict() == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert Platform.from_dict(arm.to_dict()) == arm
    for bad in ("linux", "linux/", "a/b/c/d"):
        with pytest.raises(UsageError):
            Platform.parse(bad)
    with pytest.raises(ImageFormatError):
        Platform.from_dict({"os": "linux"})


def test_descriptor_round_trip_and_validation() -> None:
    raw = {
        "mediaType": mt.OCI_MANIFEST,
        "digest": f"sha256:{HEX}",
        "size": 12,
        "annotations": {"org.opencontainers.image.ref.name": "v1"},
        "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
    }
    descriptor = Descriptor.from_dict(raw)
    assert descriptor.to_dict() == raw
    assert descriptor.annotation("org.opencontainers.image.ref.name") == "v1"
    assert hash(descriptor) == hash(Descriptor.from_dict(raw))
    for broken in (
        {**raw, "digest": "sha256:zz"},
        {**raw, "size": -1},
        {**raw, "size": True},
        {k: v for k, v in raw.items() if k != "mediaType"},
        {**raw, "annotations": {"a": 1}},
    ):
        with pytest.raises(ImageFormatError, match="layer 3"):
            Descriptor.from_dict(broken, where="layer 3")


def _descriptor(platform: str | None, n: int) -> Descriptor:
    return Descriptor(
        mt.OCI_MANIFEST,
        "sha256:" + f"{n:x}" * 64,
        1,
        platform=Platform.parse(platform) if platform else None,
    )


def test_select_platform_rules() -> None:
    entries = [
        _descriptor(None, 1),  # e.g. an attestation manifest
        _descriptor("linux/amd64/v3", 2),
        _descriptor("linux/amd64", 3),
        _descriptor("linux/arm64", 4),
        _descriptor("linux/arm/v6", 5),
    ]
    assert select_platform(entries, DEFAULT_PLATFORM) is entries[2]
    assert select_platform(entries, Platform.parse("linux/amd64/v3")) is entries[1]
    # arm64 without a variant means v8.
    assert select_platform(entries, Platform.parse("linux/arm64/v8")) is entries[3]
    assert select_platform(entries, Platform.parse("linux/arm64")) is entries[3]
    with pytest.raises(ImageFormatError) as info:
        select_platform(entries, Platform.parse("linux/arm/v7"))
    message = info.value.message
    assert "linux/arm/v7" in message
    assert "linux/amd64, linux/amd64/v3, linux/arm/v6, linux/arm64" in message
    # amd64 variant is ignored unless asked for.
    only_v3 = [_descriptor("linux/amd64/v3", 6)]
    assert select_platform(only_v3, DEFAULT_PLATFORM) is only_v3[0]
    assert not platform_matches(Platform.parse("linux/arm64/v9"), Platform.parse("linux/arm64"))
    assert not platform_matches(Platform.parse("windows/amd64"), DEFAULT_PLATFORM)


def _image_parts() -> tuple[bytes, Blob, list[Layer]]:
    config = Blob.from_bytes(
        json.dumps(
            {
                "architecture": "arm64",
                "os": "linux",
                "variant": "v8",
                "rootfs": {"type": "layers", "diff_ids": [f"sha256:{HEX}"]},
            }
        ).encode(),
        mt.OCI_CONFIG,
    )
    layer = Layer.from_blob(Blob.from_bytes(b"layer-bytes", mt.OCI_LAYER_GZIP), f"sha256:{HEX}")
    manifest = {
        "schemaVersion": 2,
        "config": config.descriptor.to_dict(),
        "layers": [layer.descriptor.to_dict(), layer.descriptor.to_dict()],
    }
    return json.dumps(manifest, indent=3).encode(), config, [layer, layer]


def test_image_properties_come_from_exact_bytes() -> None:
    manifest_bytes, config, layers = _image_parts()
    image = Image(manifest_bytes, config, layers)
    assert image.digest == sha256_digest(manifest_bytes)  # never re-serialised
    assert image.media_type == mt.OCI_MANIFEST  # inferred: no mediaType in the JSON
    assert image.platform == Platform("linux", "arm64", "v8")
    assert image.blobs() == [config, layers[0]]  # unique by digest
    assert image.size == len(manifest_bytes) + config.size + layers[0].size
    assert image.diff_ids == [f"sha256:{HEX}"]
    assert image.config_bytes == config.read_bytes()
    with layers[0].open() as stream:
        assert stream.read() == b"layer-bytes"


def test_image_refuses_blobs_that_do_not_match_the_manifest() -> None:
    manifest_bytes, config, layers = _image_parts()
    other = Layer.from_blob(Blob.from_bytes(b"other", mt.OCI_LAYER_GZIP))
    with pytest.raises(ImageFormatError, match="layer 1"):
        Image(manifest_bytes, config, [layers[0], other])
    with pytest.raises(ImageFormatError, match="config"):
        Image(manifest_bytes, Blob.from_bytes(b"{}", mt.OCI_CONFIG), layers)


def test_blob_read_bytes_checks_digest() -> None:
    good = Blob.from_bytes(b"abc", "application/octet-stream")
    lying = Blob.in_memory(good.descriptor, b"abd")
    assert good.read_bytes() == b"abc"
    with pytest.raises(ImageFormatError, match="does not match"):
        lying.read_bytes()


def test_image_index_parses_children() -> None:
    entries = [_descriptor("linux/amd64", 1).to_dict(), _descriptor("linux/arm64", 2).to_dict()]
    raw = json.dumps({"schemaVersion": 2, "manifests": entries}).encode()
    index = ImageIndex(raw)
    assert index.media_type == mt.OCI_INDEX
    assert index.digest == sha256_digest(raw)
    assert [str(d.platform) for d in index.manifests] == ["linux/amd64", "linux/arm64"]
    with pytest.raises(ImageFormatError, match="cannot load"):
        index.image(index.manifests[0])
    with pytest.raises(ImageFormatError, match="manifests"):
        ImageIndex(b'{"schemaVersion":2}')
