"""Hostile requests get a 4xx, and nothing is ever written outside the storage root."""

from __future__ import annotations

import http.client
import io
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mpkit.server import Server
from mpkit.server.server import wait_until
from tests.server.conftest import MakeServer
from tests.server.helpers import (
    OCI_MANIFEST,
    USERS,
    client,
    error_codes,
    fsck,
    push_image,
    sha256,
    tree,
    write_htpasswd,
)

DATA = b"0123456789" * 100  # 1000 bytes


def raw(
    server: Server, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One request with the path exactly as given (httpx would normalise ``..``)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def send_raw(server: Server, data: bytes, *, shut_write: bool = True) -> bytes:
    """Write *data* on a fresh connection (optionally half-closing it); return the reply."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


@pytest.fixture
def outside(tmp_path: Path, server: Server) -> Iterator[None]:
    """Asserts after the test that nothing appeared next to the root, and storage is sound."""
    roots = [server.config.root, tmp_path / "small"]  # "small": servers a test makes itself
    before = tree(tmp_path, skip=roots)
    yield
    assert tree(tmp_path, skip=roots) == before
    for root in roots:
        if root.exists():
            top = {p.name for p in root.iterdir()}
            assert top <= {"blobs", "repositories", "_uploads", "_tmp", "server.lock", "token.key"}
            fsck(root)


@pytest.mark.usefixtures("outside")
def test_wrong_digest_is_refused_and_nothing_is_stored(server: Server, http: httpx.Client) -> None:
    location = http.post("/v2/app/blobs/uploads/").headers["Location"]
    wrong = sha256(b"something else")
    response = http.put(location, params={"digest": wrong}, content=DATA)
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]
    assert http.get(location).status_code == 404  # the session is gone
    assert http.head(f"/v2/app/blobs/{sha256(DATA)}").status_code == 404
    assert http.head(f"/v2/app/blobs/{wrong}").status_code == 404
    assert not any((server.config.root / "blobs").rglob("*.*"))
    assert fsck(server.config.root) == 0


@pytest.mark.parametrize(
    "digest",
    ["sha256:abc", "md5:" + "0" * 32, "sha256:" + "G" * 64, "SHA256:" + "0" * 64, "nodigest"],
)
@pytest.mark.usefixtures("outside")
def test_malformed_digests_are_400(http: httpx.Client, digest: str) -> None:
    location = http.post("/v2/app/blobs/uploads/").headers["Location"]
    assert http.put(location, params={"digest": digest}, content=DATA).status_code == 400
    assert http.get(f"/v2/app/blobs/{digest}").status_code in (400, 404)


@pytest.mark.usefixtures("outside")
def test_chunk_whose_length_disagrees_with_its_range(http: httpx.Client) -> None:
    location = http.post("/v2/app/blobs/uploads/").headers["Location"]
    response = http.patch(location, content=DATA[:50], headers={"Content-Range": "0-99"})
    assert response.status_code == 416
    assert http.get(location).headers["Range"] == "0-0"


@pytest.mark.usefixtures("outside")
def test_body_shorter_than_content_length_leaves_no_blob(
    server: Server, http: httpx.Client
) -> None:
    location = http.post("/v2/app/blobs/uploads/").headers["Location"]
    ok = http.patch(location, content=DATA[:100], headers={"Content-Range": "0-99"})
    assert ok.status_code == 202
    location = ok.headers["Location"]
    head = (
        f"PUT {location}?digest={sha256(DATA)} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Length: {len(DATA) - 100}\r\n\r\n"
    ).encode()
    send_raw(server, head + DATA[100:500])  # then the client vanishes
    status = http.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-99"  # the partial chunk was cut off again
    assert http.head(f"/v2/app/blobs/{sha256(DATA)}").status_code == 404


@pytest.mark.usefixtures("outside")
def test_broken_chunked_framing_is_refused(server: Server, http: httpx.Client) -> None:
    location = http.post("/v2/app/blobs/uploads/").headers["Location"]
    request = (
        f"PATCH {location} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello world\r\n0\r\n\r\n"
    ).encode()
    reply = send_raw(server, request)
    assert reply.startswith(b"HTTP/1.1 400")
    assert http.get(location).headers["Range"] == "0-0"


@pytest.mark.parametrize(
    "path",
    [
        "/v2/../../etc/manifests/latest",
        "/v2/a/../../b/manifests/latest",
        "/v2/%2e%2e/%2e%2e/x/manifests/latest",
        "/v2/a%2f..%2f..%2fb/manifests/latest",
        "/v2//absolute/manifests/latest",
        "/v2/UPPER/manifests/latest",
        "/v2/a/manifests/..",
        "/v2/a/manifests/..%2f..%2fescape",
        "/v2/a/blobs/sha256:..%2f..%2f..",
        "/v2/a/blobs/uploads/..%2f..%2fblobs",
        "/v2/a/blobs/uploads/../../../x",
        "/v2/" + "a/" * 130 + "b/manifests/latest",
    ],
)
@pytest.mark.usefixtures("outside")
def test_traversal_names_are_refused(server: Server, path: str) -> None:
    manifest = b'{"schemaVersion": 2}'
    for method in ("GET", "PUT", "POST", "PATCH", "DELETE"):
        status, _ = raw(
            server,
            method,
            path,
            manifest if method != "GET" else b"",
            {"Content-Type": OCI_MANIFEST},
        )
        assert 400 <= status < 500, (method, path, status)
    assert raw(server, "GET", "/v2/")[0] == 200


@pytest.mark.usefixtures("outside")
def test_oversized_manifests_are_413(make_server: MakeServer, tmp_path: Path) -> None:
    server = make_server(root=tmp_path / "small", max_manifest_bytes=1024)
    big = b'{"schemaVersion": 2, "pad": "' + b"x" * 2000 + b'"}'
    with client(server.url) as http:
        declared = http.put(
            "/v2/a/manifests/v1", content=big, headers={"Content-Type": OCI_MANIFEST}
        )
        assert declared.status_code == 413
        streamed = http.put(
            "/v2/a/manifests/v1",
            content=iter([big[:1000], big[1000:]]),
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert streamed.status_code == 413
        assert http.get("/v2/a/manifests/v1").status_code == 404


@pytest.mark.usefixtures("outside")
def test_default_manifest_limit_refuses_before_reading(server: Server) -> None:
    request = (
        b"PUT /v2/a/manifests/v1 HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
        b"Content-Length: 5000000\r\n\r\n{"
    )
    assert send_raw(server, request, shut_write=False).startswith(b"HTTP/1.1 413")


@pytest.mark.usefixtures("outside")
def test_blob_size_limit(make_server: MakeServer, tmp_path: Path) -> None:
    server = make_server(root=tmp_path / "small", max_blob_bytes=500)
    with client(server.url) as http:
        location = http.post("/v2/a/blobs/uploads/").headers["Location"]
        assert http.patch(location, content=DATA).status_code == 413
        streamed = http.post("/v2/a/blobs/uploads/").headers["Location"]
        assert http.patch(streamed, content=iter([DATA[:400], DATA[400:]])).status_code == 413
    assert fsck(server.config.root) == 0


def test_too_many_open_uploads_is_429(make_server: MakeServer) -> None:
    server = make_server(max_uploads=2)
    with client(server.url) as http:
        assert http.post("/v2/a/blobs/uploads/").status_code == 202
        assert http.post("/v2/a/blobs/uploads/").status_code == 202
        refused = http.post("/v2/a/blobs/uploads/")
        assert refused.status_code == 429
        assert error_codes(refused) == ["TOOMANYREQUESTS"]


def test_unauthenticated_push_is_refused_when_auth_is_on(
    make_server: MakeServer, tmp_path: Path
) -> None:
    server = make_server(htpasswd=write_htpasswd(tmp_path / "htpasswd"))
    before = tree(tmp_path, skip=[server.config.root])
    with client(server.url) as http:
        image_bytes = b'{"schemaVersion": 2}'
        attempts = [
            http.post("/v2/a/blobs/uploads/"),
            http.post("/v2/a/blobs/uploads/", params={"digest": sha256(DATA)}, content=DATA),
            http.put("/v2/a/manifests/v1", content=image_bytes),
            http.delete("/v2/a/manifests/v1"),
            http.post("/v2/a/blobs/uploads/", auth=("alice", "wrong")),
            http.post("/v2/a/blobs/uploads/", auth=("mallory", USERS["alice"])),
            http.post("/v2/a/blobs/uploads/", headers={"Authorization": "Bearer forged.token"}),
        ]
        for response in attempts:
            assert response.status_code == 401, response.request.url
            assert error_codes(response) == ["UNAUTHORIZED"]
            assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")
        anonymous = http.get("/token", params={"scope": "repository:a:pull,push"}).json()
        with_token = http.post(
            "/v2/a/blobs/uploads/", headers={"Authorization": f"Bearer {anonymous['token']}"}
        )
        assert with_token.status_code == 401  # an anonymous token grants pull only
        assert http.get("/v2/a/tags/list").status_code == 404  # reads stay anonymous
    assert tree(tmp_path, skip=[server.config.root]) == before
    assert fsck(server.config.root) == 0
    assert not list((server.config.root / "repositories").iterdir())


def test_hostile_host_header_does_not_reach_the_challenge(
    make_server: MakeServer, tmp_path: Path
) -> None:
    server = make_server(htpasswd=write_htpasswd(tmp_path / "htpasswd"))
    status, _ = raw(server, "GET", "/v2/", headers={"Host": 'evil.example"; x="1'})
    assert status == 401
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/v2/", headers={"Host": 'evil.example", realm="http://evil/"'})
    challenge = conn.getresponse().getheader("WWW-Authenticate") or ""
    conn.close()
    assert challenge.startswith(f'Bearer realm="http://{server.address}/token"')


def test_the_server_survives_garbage(server: Server, http: httpx.Client) -> None:
    for junk in (
        b"\x00\x01\x02garbage\r\n\r\n",
        b"GET /v2/ HTTP/9.9\r\n\r\n",
        b"PATCH /v2/a/blobs/uploads/x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    ):
        reply = send_raw(server, junk)
        assert not reply.startswith(b"HTTP/1.1 2"), reply
    push_image(http, "still/works")
    log = server.access_log
    assert isinstance(log, io.StringIO)
    assert wait_until(lambda: log.getvalue().count("still/works/manifests/v1") == 1, 5)
    lines = log.getvalue().splitlines()
    assert all(line.isprintable() for line in lines)  # control bytes are escaped
    assert any('"\\x00\\x01\\x02garbage"' in line for line in lines), lines[:3]
