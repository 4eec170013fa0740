"""Pushing with blob-location records: a re-push sends only what is new, stale records
cost a retry but never a broken image, and the first push checks every blob."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from mpkit.errors import AccessDeniedError
from mpkit.image.source import load_source
from mpkit.image.types import Image
from mpkit.registry import open_client, push_image
from mpkit.registry.locations import BlobLocations
from mpkit.registry.push import OPTIMISTIC_UPLOAD, PushResult
from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.registry import RegistryServer
from tests.image.builders import make_oci_layout
from tests.registry.test_regressions import fast, incompressible, ref

MakeFaultProxy = Callable[..., FaultProxy]
HEAD_BLOB = r"/blobs/sha256:"
MANIFEST = r"/manifests/"


def image(tmp_path: Path, layers: list[dict[str, bytes]]) -> Image:
    src = tmp_path / f"src-{uuid.uuid4().hex[:8]}"
    make_oci_layout(src, "v1", layers)
    return load_source(f"oci:{src}:v1")


def shared_layers() -> list[dict[str, bytes]]:
    salt = uuid.uuid4().hex
    return [
        {"etc/motd": f"base {salt}\n".encode()},
        {"app/data.bin": incompressible(64 * 1024, salt)},
    ]


def pushed(
    proxy: FaultProxy, built: Image, repository: str, locations: BlobLocations
) -> PushResult:
    """push_image through *proxy* with a fresh client, as one mpkit command would."""
    with open_client(proxy.host, anonymous=True, options=fast()) as client:
        return push_image(client, built, ref(proxy.host, repository), locations=locations)


@pytest.fixture
def proxy(registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy) -> FaultProxy:
    """The session's open registry behind a proxy that counts (and can fail) requests."""
    return make_fault_proxy(registry_open)


@pytest.fixture
def locations(tmp_path: Path) -> BlobLocations:
    return BlobLocations(tmp_path / "locations.db")


def test_the_first_push_to_a_repository_checks_every_blob(
    tmp_path: Path, proxy: FaultProxy, locations: BlobLocations
) -> None:
    first = image(tmp_path, shared_layers())
    result = pushed(proxy, first, "records/first", locations)
    assert proxy.count("HEAD", HEAD_BLOB) == len(first.blobs())
    assert result.stats.blobs_uploaded == len(first.blobs())
    assert set(locations.candidates(proxy.host, first.config.descriptor.digest, exclude="")) == {
        "records/first"
    }


def test_a_rebuild_pushes_only_its_new_blobs_without_asking_about_any(
    tmp_path: Path, proxy: FaultProxy, locations: BlobLocations
) -> None:
    layers = shared_layers()
    target = ref(proxy.host, "records/rebuild")
    pushed(proxy, image(tmp_path, layers), target.path, locations)
    heads_before = proxy.count("HEAD", HEAD_BLOB)

    big = incompressible(OPTIMISTIC_UPLOAD + 64 * 1024, uuid.uuid4().hex)
    rebuilt = image(tmp_path, [*layers, {"app/adapter.py": b"print('changed')\n"},
                               {"app/big.bin": big}])  # fmt: skip
    with open_client(proxy.host, anonymous=True, options=fast()) as client:
        result = push_image(client, rebuilt, target, locations=locations)
        stats = result.stats.to_dict()
        assert proxy.count("HEAD", HEAD_BLOB) - heads_before == 1  # only the big new layer
        assert result.digest == push_image(client, rebuilt, target).digest  # as without records
        for blob in rebuilt.blobs():
            assert client.blob_size("records/rebuild", blob.descriptor.digest) is not None
    assert (stats["blobs_uploaded"], stats["blobs_skipped"]) == (3, 2)  # config, 2 new layers


def test_a_repush_of_the_same_image_sends_only_the_manifest(
    tmp_path: Path, proxy: FaultProxy, locations: BlobLocations
) -> None:
    built = image(tmp_path, shared_layers())
    first = pushed(proxy, built, "records/same", locations)
    before = len(proxy.seen)
    again = pushed(proxy, built, "records/same", locations)
    assert again.digest == first.digest
    assert [r.method for r in proxy.seen[before:] if "/v2/records" in r.target] == ["PUT"]
    assert again.stats.blobs_skipped == len(built.blobs())


def test_stale_records_cost_a_retry_not_a_broken_image(
    tmp_path: Path, proxy: FaultProxy, locations: BlobLocations
) -> None:
    built = image(tmp_path, shared_layers())
    digests = [b.descriptor.digest for b in built.blobs()]
    # The records say so, but the registry never got them (or collected them since).
    locations.record(proxy.host, "records/stale", digests)
    with open_client(proxy.host, anonymous=True, options=fast()) as client:
        result = push_image(client, built, ref(proxy.host, "records/stale"), locations=locations)
        for digest in digests:
            assert client.blob_size("records/stale", digest) is not None
    assert proxy.count("PUT", MANIFEST) == 2  # refused (MANIFEST_BLOB_UNKNOWN), then sent again
    stats = result.stats.to_dict()
    assert (stats["blobs_uploaded"], stats["blobs_skipped"]) == (len(digests), 0)
    assert all("records/stale" in locations.candidates(proxy.host, d, exclude="") for d in digests)


def test_a_refusal_that_is_not_about_blobs_is_not_retried(
    tmp_path: Path, proxy: FaultProxy, locations: BlobLocations
) -> None:
    built = image(tmp_path, shared_layers())
    locations.record(proxy.host, "records/denied", [b.descriptor.digest for b in built.blobs()])
    proxy.fail("PUT", MANIFEST, 403, times=None)
    with (
        open_client(proxy.host, anonymous=True, options=fast()) as client,
        pytest.raises(AccessDeniedError),
    ):
        push_image(client, built, ref(proxy.host, "records/denied"), locations=locations)
    assert proxy.count("PUT", MANIFEST) == 1
    assert proxy.count("HEAD", HEAD_BLOB) == 0
