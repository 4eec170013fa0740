"""Regression tests for what a review of the registry client found.

One test (or a few) per finding, each reproducing the failure the review showed: a real
docker-registry behind the FaultProxy where a real registry can be made to misbehave,
the in-memory FakeRegistry where it cannot, and plain unit calls where loopback cannot
stand in for the real host (ECR names, default ports).
"""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pexpect
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mpkit.credentials import Credential
from mpkit.errors import (
    AccessDeniedError,
    NotFoundError,
    RegistryError,
    RegistryProtocolError,
    RegistryUnreachableError,
    TLSVerificationError,
)
from mpkit.image.source import load_source
from mpkit.image.types import Blob, Image
from mpkit.reference import Reference, parse_reference
from mpkit.registry import open_client, push_image
from mpkit.registry.client import RegistryClient
from mpkit.registry.parallel import run_all
from mpkit.registry.ping import place
from mpkit.registry.progress import UPLOADED
from mpkit.registry.responses import denied, raise_for_status
from mpkit.registry.retry import RetryPolicy
from mpkit.registry.tls import build_ssl_context
from mpkit.registry.transport import ClientOptions, TransferAborted, Transport
from tests.e2e.conftest import Mpkit
from tests.fixtures.certs import CertAuthority, ServerCert, issue_server_cert
from tests.fixtures.fakeregistry import ClosingListener, FakeRegistry, Reply, error_body
from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.registry import RegistryServer
from tests.image.builders import make_oci_layout

T = TypeVar("T")
MakeFaultProxy = Callable[..., FaultProxy]

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
ALICE = Credential(username="alice", password="s3cret-Pa55", source="test")
ALICE_BASIC = "Basic " + base64.b64encode(b"alice:s3cret-Pa55").decode()
JSON = {"Content-Type": "application/json"}
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def fast(**kwargs: Any) -> ClientOptions:
    return ClientOptions(retry=FAST, **kwargs)


def incompressible(size: int, salt: str) -> bytes:
    """Bytes that gzip cannot shrink, so a layer blob is about *size* bytes."""
    blocks = (hashlib.sha256(f"{salt}-{i}".encode()).digest() for i in range(size // 32))
    return b"".join(blocks)


def unique_image(tmp_path: Path) -> tuple[Path, Image]:
    """A 3-layer image (4 blobs) whose blobs no registry has seen before."""
    salt = uuid.uuid4().hex
    layers = [
        {"etc/motd": f"adapter base {salt}\n".encode()},
        {"app/adapter.py": f"print('collect {salt}')\n".encode() * 50},
        {"app/data.bin": incompressible(64 * 1024, salt)},
    ]
    src = tmp_path / f"src-{salt[:8]}"
    make_oci_layout(src, "v1", layers)
    return src, load_source(f"oci:{src}:v1")


def random_blob(size: int = 4096) -> Blob:
    return Blob.from_bytes(incompressible(size, uuid.uuid4().hex), "application/octet-stream")


def manifest_digest(image: Image) -> str:
    return "sha256:" + hashlib.sha256(image.manifest_bytes).hexdigest()


def ref(host: str, path: str) -> Reference:
    return parse_reference(f"{host}/{path}:v1")


def bounded(fn: Callable[[], T], seconds: float) -> T:
    """Run *fn* in a thread; fail the test if it has not returned within *seconds*."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed back to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (unbounded loop?)"
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPKIT_CACHE_DIR", str(tmp_path / "mpkit-cache"))
    monkeypatch.delenv("MPKIT_CERTS_D", raising=False)


@pytest.fixture
def tls_cert(tmp_path: Path, test_ca: CertAuthority) -> ServerCert:
    return issue_server_cert(test_ca, tmp_path / "pki", stem="fake")


# -- 1. credentials and upload Locations ------------------------------------------------


def test_credentials_never_go_to_a_foreign_upload_location() -> None:
    with FakeRegistry() as sink, FakeRegistry(auth="basic") as registry:
        sink.route("PUT", r"/blobs/uploads/", Reply(201))
        registry.upload_origin = sink.url  # "hand the upload to another host"
        transport = Transport(registry.host, credentials=lambda: ALICE, options=fast())
        with RegistryClient(transport) as client:
            client.upload_blob("team/app", random_blob())
    assert sink.count("PUT") == 1
    assert [s.authorization for s in sink.seen] == [None] * len(sink.seen)
    # The registry itself did get the credentials: they were in use.
    assert all(s.authorization == ALICE_BASIC for s in registry.requests("POST"))


def test_http_location_on_the_registrys_own_host_is_upgraded_to_https(
    test_ca: CertAuthority, tls_cert: ServerCert
) -> None:
    with FakeRegistry(auth="basic", server_cert=tls_cert) as registry:
        # A registry behind a TLS-terminating proxy that believes it speaks http.
        registry.upload_origin = f"http://{registry.host}"
        options = fast(ca_certs=(test_ca.cert_path,))
        blob = random_blob()
        with RegistryClient(
            Transport(registry.host, credentials=lambda: ALICE, options=options)
        ) as client:
            assert client.upload_blob("team/app", blob) == UPLOADED
    puts = registry.requests("PUT", r"/blobs/uploads/")
    assert len(puts) == 1  # arrived over TLS, i.e. upgraded to https
    assert puts[0].authorization == ALICE_BASIC
    assert blob.descriptor.digest in registry.blobs


@pytest.mark.parametrize(
    ("base", "location", "expected", "own"),
    [
        (
            "https://harbor.example.com",
            "http://harbor.example.com/v2/u?_state=s",
            "https://harbor.example.com/v2/u?_state=s",
            True,
        ),
        (
            "https://harbor.example.com:5000",
            "http://harbor.example.com:5000/v2/u",
            "https://harbor.example.com:5000/v2/u",
            True,
        ),
        (
            "https://harbor.example.com",
            "https://harbor.example.com:443/v2/u",
            "https://harbor.example.com:443/v2/u",
            True,
        ),
        (
            "https://harbor.example.com",
            "https://storage.example.com/v2/u",
            "https://storage.example.com/v2/u",
            False,
        ),
        (
            "https://harbor.example.com",
            "https://harbor.example.com:8443/v2/u",
            "https://harbor.example.com:8443/v2/u",
            False,
        ),
        (
            "http://127.0.0.1:5000",
            "http://127.0.0.1:5001/v2/u",
            "http://127.0.0.1:5001/v2/u",
            False,
        ),
    ],
)
def test_upload_locations_are_placed_by_origin(
    base: str, location: str, expected: str, own: bool
) -> None:
    url, own_origin = place(location, base)  # base: the origin the ping chose
    assert own_origin is own
    assert httpx.URL(url) == httpx.URL(expected)


# -- 2. 416 on every PATCH ----------------------------------------------------------------


def test_416_on_every_patch_fails_in_bounded_requests(
    registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy
) -> None:
    proxy = make_fault_proxy(registry_open)
    proxy.fail("PATCH", r"/blobs/uploads/", 416, times=None, headers={"Range": "0-0"})
    client = RegistryClient(Transport(proxy.host, credentials=None, options=fast()))
    with client, pytest.raises(RegistryError):
        bounded(lambda: client.upload_blob("regress/r416", random_blob(), chunked=True), 10)
    # Each try is one PATCH (the blob is smaller than a chunk), then a fresh session.
    assert proxy.count("PATCH") <= FAST.attempts
    assert proxy.count("POST", r"/blobs/uploads/") == FAST.attempts


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_416_once_restarts_the_chunked_upload_and_succeeds(
    registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy, method: str
) -> None:
    proxy = make_fault_proxy(registry_open)
    proxy.fail(method, r"/blobs/uploads/.", 416, times=1, headers={"Range": "0-0"})
    blob = random_blob()
    with RegistryClient(Transport(proxy.host, credentials=None, options=fast())) as client:
        assert (
            bounded(lambda: client.upload_blob("regress/r416once", blob, chunked=True), 10)
            == UPLOADED
        )
        assert client.blob_size("regress/r416once", blob.descriptor.digest) == blob.descriptor.size
    assert proxy.count("POST", r"/blobs/uploads/") == 2


# -- 3. dropped downloads during `mpkit image pull` ---------------------------------------


@pytest.fixture
def pushed(registry_open: RegistryServer, tmp_path: Path) -> tuple[Path, Image, str]:
    """An image pushed to ``registry_open``: (source layout, image, repository path)."""
    src, image = unique_image(tmp_path)
    repository = f"regress/pull-{uuid.uuid4().hex[:8]}"
    with open_client(registry_open.host, anonymous=True, options=fast()) as client:
        push_image(client, image, ref(registry_open.host, repository))
    return src, image, repository


def test_pull_retries_a_blob_download_dropped_once(
    registry_open: RegistryServer,
    make_fault_proxy: MakeFaultProxy,
    pushed: tuple[Path, Image, str],
    cli: Mpkit,
    tmp_path: Path,
) -> None:
    src, image, repository = pushed
    layer = image.layers[-1].descriptor  # the big one (64 KiB)
    proxy = make_fault_proxy(registry_open)
    proxy.drop("GET", rf"/blobs/{layer.digest}", after_bytes=1000, times=1, during="response")
    dest = tmp_path / "dest"
    result = cli.run(
        "image",
        "pull",
        f"{proxy.host}/{repository}:v1",
        f"oci:{dest}:v1",
        "--json",
        "--retries",
        "3",
    )
    assert result.returncode == 0, result.output
    assert result.json()["digest"] == manifest_digest(image)
    blob_name = layer.digest.split(":", 1)[1]
    pulled = (dest / "blobs" / "sha256" / blob_name).read_bytes()
    assert pulled == (src / "blobs" / "sha256" / blob_name).read_bytes()
    assert proxy.count("GET", rf"/blobs/{layer.digest}") == 2


def test_pull_with_a_persistently_dropped_download_fails_cleanly(
    registry_open: RegistryServer,
    make_fault_proxy: MakeFaultProxy,
    pushed: tuple[Path, Image, str],
    cli: Mpkit,
    tmp_path: Path,
) -> None:
    _, image, repository = pushed
    layer = image.layers[-1].descriptor
    proxy = make_fault_proxy(registry_open)
    proxy.drop("GET", rf"/blobs/{layer.digest}", after_bytes=1000, times=None, during="response")
    source = f"{proxy.host}/{repository}:v1"

    result = cli.run("image", "pull", source, f"oci:{tmp_path}/d1:v1", "--json", "--retries", "2")
    assert result.returncode == 1, result.output
    error = result.json()  # the CI contract: one JSON object on stdout, even on failure
    assert error["error"] == "registry_unreachable"
    assert layer.digest in error["message"]
    assert "internal" not in result.output

    result = cli.run("image", "pull", source, f"oci:{tmp_path}/d2:v1", "--retries", "2")
    assert result.returncode == 1
    message = result.stderr[result.stderr.index("error: ") :]
    assert layer.digest in message
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert proxy.count("GET", rf"/blobs/{layer.digest}") == 4  # 2 tries per pull


# -- 4. plain-HTTP bearer realm on an HTTPS registry --------------------------------------


def test_https_registry_with_plain_http_realm_gets_no_credentials(
    registry_token: RegistryServer, test_ca: CertAuthority, tls_cert: ServerCert, tmp_path: Path
) -> None:
    token_server = registry_token.token_server
    assert token_server is not None
    _, image = unique_image(tmp_path)
    with open_client(registry_token.host, explicit=ALICE, options=fast()) as client:
        digest = push_image(client, image, ref(registry_token.host, "public/realm")).digest
    # TLS in front of the registry, but the challenge still names http://…/token
    # (no auth_upstream: the proxy leaves WWW-Authenticate alone).
    proxy = FaultProxy(registry_token.url, server_cert=tls_cert).start()
    try:
        assert token_server.realm.startswith("http://")
        options = fast(ca_certs=(test_ca.cert_path,))
        seen_before = len(token_server.requests)
        with open_client(proxy.host, explicit=ALICE, options=options) as client:
            client.transport.plain_http_allowed = False  # what a non-loopback host gets
            with pytest.raises(RegistryProtocolError) as info:
                client.get_manifest("public/realm", "v1")
        realm_origin = token_server.realm.rsplit("/", 1)[0]
        assert realm_origin in info.value.message
        assert info.value.hint is not None and "--insecure-registry" in info.value.hint
        assert token_server.requests[seen_before:] == []  # the password never left

        with open_client(proxy.host, anonymous=True, options=options) as client:
            client.transport.plain_http_allowed = False
            assert client.get_manifest("public/realm", "v1").digest == digest
    finally:
        proxy.stop()


# -- 5. upload session unknown (404) ------------------------------------------------------

UPLOAD_UNKNOWN = error_body("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")


def test_404_on_the_upload_put_restarts_and_the_push_succeeds(
    registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy, tmp_path: Path
) -> None:
    _, image = unique_image(tmp_path)
    proxy = make_fault_proxy(registry_open)
    proxy.fail("PUT", r"/blobs/uploads/.", 404, times=1, body=UPLOAD_UNKNOWN, headers=JSON)
    with open_client(proxy.host, anonymous=True, options=fast()) as client:
        result = push_image(client, image, ref(proxy.host, "regress/unknown-put"))
    assert result.digest == manifest_digest(image)
    assert result.stats.blobs_uploaded == 4
    assert proxy.count("POST", r"/blobs/uploads/") == 5  # one blob got a second session


def test_404_on_a_patch_restarts_and_the_upload_succeeds(
    registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy
) -> None:
    proxy = make_fault_proxy(registry_open)
    proxy.fail("PATCH", r"/blobs/uploads/.", 404, times=1, body=UPLOAD_UNKNOWN, headers=JSON)
    blob = random_blob()
    with RegistryClient(Transport(proxy.host, credentials=None, options=fast())) as client:
        assert client.upload_blob("regress/unknown-patch", blob, chunked=True) == UPLOADED
        assert client.blob_size("regress/unknown-patch", blob.descriptor.digest) is not None
    assert proxy.count("POST", r"/blobs/uploads/") == 2


# -- 6. unreachable registry, failures across workers, Ctrl-C -----------------------------


@pytest.mark.parametrize("concurrency", [1, 4])
def test_an_unreachable_registry_is_pinged_once_not_per_blob(
    tmp_path: Path, concurrency: int
) -> None:
    _, image = unique_image(tmp_path)
    with ClosingListener() as dead:
        options = fast(concurrency=concurrency)
        with open_client(dead.host, anonymous=True, options=options) as client:
            with pytest.raises(RegistryError) as info:
                push_image(client, image, ref(dead.host, "team/app"))
            # A second operation on the same client reuses the remembered failure.
            with pytest.raises(RegistryError):
                client.blob_size("team/app", image.config.descriptor.digest)
    assert not isinstance(info.value, TransferAborted)
    # One ping: a connection closed without an answer may be transient, so it gets
    # FAST.attempts rounds of one try per scheme; never a ping per blob.
    assert 1 <= dead.connections <= 2 * FAST.attempts


def test_the_first_failure_stops_the_other_workers() -> None:
    with FakeRegistry() as registry:
        transport = Transport(registry.host, credentials=None, options=fast(concurrency=2))
        started: list[int] = []
        gave_up: list[int] = []  # workers that stopped waiting without seeing the abort
        lock = threading.Lock()

        def work(item: int) -> None:
            with lock:
                started.append(item)
            if item == 0:
                raise AccessDeniedError("denied", anonymous=True, registry=registry.host)
            # A transfer in flight, checking the abort flag as uploads and downloads do.
            if not transport.abort.wait(timeout=120):
                gave_up.append(item)
            raise TransferAborted()

        with pytest.raises(AccessDeniedError):  # the root cause, not a sibling's abort
            run_all(transport, work, list(range(20)), name="test")
        transport.close()
    assert gave_up == []  # every sibling was stopped by the first failure
    assert len(started) <= 4  # queued items never start


def test_ctrl_c_stops_a_push_without_finishing_every_upload(
    registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy, cli: Mpkit, tmp_path: Path
) -> None:
    src, image = unique_image(tmp_path)
    proxy = make_fault_proxy(registry_open)
    # An upload in flight takes a minute: a push that waited for it (instead of stopping
    # at once) would outlast the wait below by far, whatever the machine's speed.
    proxy.delay("PUT", r"/blobs/uploads/", 60, times=None)
    argv = [
        sys.executable,
        "-m",
        "mpkit",
        "image",
        "push",
        f"oci:{src}:v1",
        f"{proxy.host}/regress/ctrl-c:v1",
        "--concurrency",
        "1",
    ]
    proc = subprocess.Popen(
        argv,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while proxy.count("POST", r"/blobs/uploads/") == 0:  # the first upload is under way
            assert proc.poll() is None and time.monotonic() < deadline, "push never started"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "cancelled" in stderr
    assert proxy.count("PUT", r"/blobs/uploads/") < len(image.blobs())


# -- 7. token service failures ------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 429])
def test_a_token_service_failure_once_is_retried(
    registry_token: RegistryServer, make_fault_proxy: MakeFaultProxy, tmp_path: Path, status: int
) -> None:
    _, image = unique_image(tmp_path)
    proxy = make_fault_proxy(registry_token)
    proxy.fail("GET", r"^/token", status, times=1, headers={"Retry-After": "0"})
    with open_client(proxy.host, explicit=ALICE, options=fast()) as client:
        result = push_image(client, image, ref(proxy.host, f"private/token{status}"))
    assert result.digest == manifest_digest(image)
    assert proxy.count("GET", r"^/token") >= 2


def test_concurrent_uploads_share_one_token_request(
    registry_token: RegistryServer, tmp_path: Path
) -> None:
    token_server = registry_token.token_server
    assert token_server is not None
    _, image = unique_image(tmp_path)
    repository = f"private/herd-{uuid.uuid4().hex[:8]}"
    before = len(token_server.requests)
    with open_client(registry_token.host, explicit=ALICE, options=fast(concurrency=4)) as client:
        push_image(client, image, ref(registry_token.host, repository))
    asked = [r.scopes for r in token_server.requests[before:]]
    assert asked.count((f"repository:{repository}:pull,push",)) == 1


# -- 8. identity token without OAuth POST -------------------------------------------------


@pytest.mark.parametrize("status", [404, 405])
def test_identity_token_falls_back_to_get_when_post_is_unsupported(
    tmp_path: Path, status: int
) -> None:
    _, image = unique_image(tmp_path)
    with FakeRegistry(auth="bearer", identity_tokens={"id-tok-3141": "alice"}) as registry:
        registry.route("POST", r"^/token", Reply(status))
        credential = Credential(identity_token="id-tok-3141", source="test config")
        with open_client(registry.host, explicit=credential, options=fast()) as client:
            result = push_image(client, image, ref(registry.host, "team/app"))
        assert result.digest == manifest_digest(image)
        assert registry.count("POST", r"^/token") >= 1
        gets = registry.requests("GET", r"^/token")
        assert gets and all((s.authorization or "").startswith("Basic ") for s in gets)
        assert all(s.status == 200 for s in gets)


# -- 9. compressing proxies ---------------------------------------------------------------


def test_blob_and_manifest_gets_ask_for_identity_encoding(tmp_path: Path) -> None:
    _, image = unique_image(tmp_path)
    with FakeRegistry(gzip=True) as registry:
        # The fake compresses for clients that accept gzip (httpx's default does).
        probe = httpx.get(f"{registry.url}/v2/")
        assert probe.headers.get("content-encoding") == "gzip"
        with open_client(registry.host, anonymous=True, options=fast()) as client:
            push_image(client, image, ref(registry.host, "team/app"))
            config = client.read_blob("team/app", image.config.descriptor)
            manifest = client.get_manifest("team/app", "v1")
        assert config == image.config_bytes
        assert manifest.digest == manifest_digest(image)
        gets = registry.requests("GET", r"/(blobs|manifests)/")
        assert gets and {s.request.header("accept-encoding") for s in gets} == {"identity"}


# -- 10. registry error text, ECR hints ---------------------------------------------------


def _response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    request = httpx.Request("PUT", f"https://{ECR}/v2/team/app/blobs/uploads/x")
    content = json.dumps(body).encode() if body is not None else b""
    return httpx.Response(
        status, headers={**JSON, **(headers or {})}, content=content, request=request
    )


def _raise_for(
    response: Any,
    *,
    registry: str = "registry.example.com",
    action: str = "push",
    what: str = "blob sha256:abc",
    who: str = "user 'alice'",
) -> None:
    """``raise_for_status`` for team/app, as a logged-in user."""
    raise_for_status(
        response,
        registry=registry,
        repository="team/app",
        action=action,
        what=what,
        anonymous=False,
        who=who,
    )


def test_ecr_expired_token_text_and_hint_reach_the_user() -> None:
    text = "Your authorization token has expired. Reauthenticate and try again."
    response = _response(403, {"errors": [{"code": "DENIED", "message": text}]})
    with pytest.raises(AccessDeniedError) as info:
        _raise_for(response, registry=ECR, who="user 'AWS'")
    assert text in info.value.message
    assert info.value.hint is not None
    assert "get-login-password --region eu-west-1" in info.value.hint


def test_invalid_token_challenge_text_and_clock_hint_reach_the_user() -> None:
    challenge = (
        'Bearer realm="https://auth.example.com/token",service="registry",'
        'error="invalid_token",error_description="token not yet valid"'
    )
    response = _response(401, None, {"WWW-Authenticate": challenge})
    with pytest.raises(AccessDeniedError) as info:
        _raise_for(response, action="pull", what="manifest v1")
    assert "token not yet valid" in info.value.message
    assert info.value.hint is not None and "clock" in info.value.hint


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 500])
def test_push_failure_messages_read_correctly(status: int) -> None:
    response = _response(status, {"errors": [{"code": "X", "message": "registry words"}]})
    with pytest.raises(RegistryError) as info:
        _raise_for(response)
    assert "push to of" not in info.value.message
    if status != 404:  # a 404 names what is missing instead
        assert "registry words" in info.value.message
    error = denied(
        registry="h.example.com",
        repository="team/app",
        action="push",
        anonymous=False,
        who="user 'alice'",
        status=403,
    )
    assert "may not push to h.example.com/team/app" in error.message


def test_ecr_missing_repository_hint_is_the_create_command() -> None:
    text = "The repository with name 'team/app' does not exist in the registry with id '1234'"
    body = {"errors": [{"code": "NAME_UNKNOWN", "message": text}]}
    with pytest.raises(NotFoundError) as info:
        _raise_for(_response(404, body), registry=ECR, who="user 'AWS'")
    assert info.value.hint is not None
    assert "aws ecr create-repository --repository-name team/app" in info.value.hint
    assert "--region eu-west-1" in info.value.hint
    with pytest.raises(NotFoundError) as other:
        _raise_for(_response(404, body), registry="harbor.example.com")
    assert "aws ecr" not in (other.value.hint or "")


# -- 11. bad client certificates ----------------------------------------------------------


def _client_cert_dir(root: Path, host: str, ca: CertAuthority, key: bytes) -> Path:
    host_dir = root / host
    host_dir.mkdir(parents=True)
    (host_dir / "client.cert").write_bytes(ca.cert_path.read_bytes())
    (host_dir / "client.key").write_bytes(key)
    return root


def _encrypted_key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass phrase"),
    )


MALFORMED_KEY = b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(MALFORMED_KEY, id="malformed"),
        pytest.param(_encrypted_key(), id="encrypted"),
    ],
)
def test_a_bad_client_key_is_a_tls_error(
    tmp_path: Path, test_ca: CertAuthority, key: bytes
) -> None:
    root = _client_cert_dir(tmp_path / "certs.d", "registry.example.com:5000", test_ca, key)
    with pytest.raises(TLSVerificationError) as info:
        build_ssl_context("registry.example.com:5000", search=[root])
    assert "client.key" in info.value.message


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(MALFORMED_KEY, id="malformed"),
        pytest.param(_encrypted_key(), id="encrypted"),
    ],
)
def test_a_bad_client_key_never_prompts_and_exits_cleanly(
    tmp_path: Path, test_ca: CertAuthority, cli: Mpkit, key: bytes
) -> None:
    host = "127.0.0.1:9"  # never contacted: the TLS setup fails first
    root = _client_cert_dir(tmp_path / "certs.d", host, test_ca, key)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "mpkit", "image", "inspect", f"{host}/team/app:v1"],
        env={**cli.env, "MPKIT_CERTS_D": str(root)},
        encoding="utf-8",
        timeout=30,
    )
    found = child.expect([pexpect.EOF, "(?i)pass ?phrase"])
    output = child.before or ""
    child.close(force=True)
    assert found == 0, f"mpkit prompted for a pass phrase:\n{output}"
    assert child.exitstatus == 1, output
    assert "client certificate" in output
    assert "internal error" not in output and "Traceback" not in output


# -- 12. registry arguments given as server URLs ------------------------------------------


def test_logout_accepts_the_docker_hub_credential_key(cli: Mpkit) -> None:
    result = cli.ok("logout", "https://index.docker.io/v1/", "--json")
    assert result.json()["registry"] == "docker.io"


def test_login_and_logout_accept_a_v2_url(cli: Mpkit, registry_basic: RegistryServer) -> None:
    host = registry_basic.host
    result = cli.ok(
        "login",
        f"https://{host}/v2/",
        "-u",
        "alice",
        "--password-stdin",
        "--json",
        input=registry_basic.users["alice"] + "\n",
    )
    assert result.json()["registry"] == host
    assert host in json.loads(cli.docker_config.read_text())["auths"]
    result = cli.ok("logout", f"http://{host}/v2/", "--json")
    assert result.json()["registry"] == host
    assert result.json()["removed_from"]


# -- review improvement 8: plain-HTTP registry hint ---------------------------------------


def test_a_plain_http_registry_gets_the_insecure_registry_hint(
    registry_open: RegistryServer,
) -> None:
    transport = Transport(registry_open.host, credentials=None, options=fast())
    transport.plain_http_allowed = False  # what a non-loopback host without the flag gets
    with transport, pytest.raises(RegistryUnreachableError) as info:
        transport.ping()
    assert info.value.hint is not None
    assert f"--insecure-registry {registry_open.host}" in info.value.hint
