"""Upload sessions opened ahead (``RegistryClient.open_uploads``): the uploads that follow
use them instead of a POST each, the ones left over are cancelled, and a session that is
too old or that the registry forgot costs a new one, never a failed push."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from mpkit.errors import AccessDeniedError
from mpkit.registry import client as client_module
from mpkit.registry import open_client, push_image
from mpkit.registry.locations import BlobLocations
from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.registry import RegistryServer
from tests.registry.test_push_records import image, shared_layers
from tests.registry.test_regressions import fast, ref

MakeFaultProxy = Callable[..., FaultProxy]
UPLOADS = r"/blobs/uploads/$"
SESSION = r"/blobs/uploads/[^?]+\?"


@pytest.fixture
def proxy(registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy) -> FaultProxy:
    return make_fault_proxy(registry_open)


def repository() -> str:
    return f"sessions/{uuid.uuid4().hex[:8]}"


def test_uploads_use_the_sessions_opened_ahead(tmp_path: Path, proxy: FaultProxy) -> None:
    layers = shared_layers()
    target = ref(proxy.host, repository())
    locations = BlobLocations(tmp_path / "locations.db")
    with open_client(proxy.host, anonymous=True, options=fast()) as client:
        push_image(client, image(tmp_path, layers), target, locations=locations)
    rebuilt = image(tmp_path, [*layers, {"app/adapter.py": b"changed\n"}])
    before = len(proxy.seen)
    with open_client(proxy.host, anonymous=True, options=fast()) as client:
        client.open_uploads(target.path, 2)
        result = push_image(client, rebuilt, target, locations=locations)
    sent = [(r.method, r.status) for r in proxy.seen[before:]]
    # The ping, then the config and the app layer go into the two sessions, the manifest
    # last; the records vouch for the other blobs.
    assert sorted(sent) == [("GET", 200), ("POST", 202), ("POST", 202), ("PUT", 201),
                            ("PUT", 201), ("PUT", 201)]  # fmt: skip
    assert result.stats.blobs_uploaded == 2


def test_sessions_left_over_are_cancelled(tmp_path: Path, proxy: FaultProxy) -> None:
    target = repository()
    with open_client(proxy.host, anonymous=True, options=fast()) as client:
        client.open_uploads(target, 2)
        location, _ = client.start_upload(target)  # takes one; the caller ends it
        client.cancel_upload(location, target)
    assert proxy.count("POST", UPLOADS) == 2
    assert [r.status for r in proxy.seen if r.method == "DELETE"] == [204, 204]


def test_a_session_too_old_is_replaced(
    tmp_path: Path, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = image(tmp_path, shared_layers())
    target = ref(proxy.host, repository())
    with open_client(proxy.host, anonymous=True, options=fast()) as client:
        client.open_uploads(target.path, 1)
        monkeypatch.setattr(client_module, "OPEN_SESSION_MAX_AGE", 0.0)
        push_image(client, built, target)
    assert proxy.count("POST", UPLOADS) == 1 + len(built.blobs())
    assert [r.status for r in proxy.seen if r.method == "DELETE"] == [204]


def test_a_session_the_registry_forgot_costs_a_new_one(tmp_path: Path, proxy: FaultProxy) -> None:
    built = image(tmp_path, shared_layers()[:1])
    target = ref(proxy.host, repository())
    with open_client(proxy.host, anonymous=True, options=fast()) as client:
        client.open_uploads(target.path, 1)
        # distribution-spec: an unknown session answers 404 BLOB_UPLOAD_UNKNOWN.
        proxy.fail("PUT", SESSION, 404, times=1)
        push_image(client, built, target)
        for blob in built.blobs():
            assert client.blob_size(target.path, blob.descriptor.digest) is not None


def test_a_refused_session_is_the_access_check(
    registry_token: RegistryServer, make_fault_proxy: MakeFaultProxy
) -> None:
    proxy = make_fault_proxy(registry_token)
    with open_client(proxy.host, anonymous=True, options=fast()) as client:
        with pytest.raises(AccessDeniedError):
            client.open_uploads("private/adapter", 2)
        assert client._sessions == []
    assert proxy.count("DELETE", SESSION) == 0
