"""The built-in registry against the distribution-spec, request by request (raw HTTP)."""

from __future__ import annotations

import io
import json
import re
import socket
from collections.abc import Iterator

import httpx
import pytest

from mpkit.server import Server
from mpkit.server.server import wait_until
from tests.server.helpers import (
    OCI_INDEX,
    OCI_MANIFEST,
    error_codes,
    fsck,
    image_manifest,
    push_blob,
    push_image,
    sha256,
)

BLOB = bytes(range(256)) * 40  # 10240 bytes


def test_ping_says_v2_and_logs_one_line_per_request(server: Server, http: httpx.Client) -> None:
    response = http.get("/v2/")
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    http.get("/v2/none/manifests/latest")
    log = server.access_log
    assert isinstance(log, io.StringIO)
    # The line is written just after the response is sent: give the thread a moment.
    assert wait_until(lambda: len(log.getvalue().splitlines()) == 2, 5)
    lines = log.getvalue().splitlines()
    assert '"GET /v2/ HTTP/1.1" 200' in lines[0]
    assert '"GET /v2/none/manifests/latest HTTP/1.1" 404' in lines[1]


def test_monolithic_upload_then_get_and_head(server: Server, http: httpx.Client) -> None:
    start = http.post("/v2/team/app/blobs/uploads/")
    assert start.status_code == 202
    assert start.headers["Range"] == "0-0"
    assert start.headers["Location"].startswith("/v2/team/app/blobs/uploads/")
    done = http.put(start.headers["Location"], params={"digest": sha256(BLOB)}, content=BLOB)
    assert done.status_code == 201
    assert done.headers["Location"] == f"/v2/team/app/blobs/{sha256(BLOB)}"
    assert done.headers["Docker-Content-Digest"] == sha256(BLOB)
    head = http.head(f"/v2/team/app/blobs/{sha256(BLOB)}")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(BLOB))
    assert head.headers["Docker-Content-Digest"] == sha256(BLOB)
    got = http.get(f"/v2/team/app/blobs/{sha256(BLOB)}")
    assert got.content == BLOB
    assert fsck(server.config.root) == 1


def test_single_post_upload(http: httpx.Client) -> None:
    response = http.post("/v2/one/blobs/uploads/", params={"digest": sha256(BLOB)}, content=BLOB)
    assert response.status_code == 201
    assert http.get(f"/v2/one/blobs/{sha256(BLOB)}").content == BLOB


def test_chunked_upload_with_out_of_order_chunk_and_status(http: httpx.Client) -> None:
    location = http.post("/v2/chunks/blobs/uploads/").headers["Location"]
    first = http.patch(location, content=BLOB[:4000], headers={"Content-Range": "0-3999"})
    assert first.status_code == 202
    assert first.headers["Range"] == "0-3999"
    location = first.headers["Location"]
    skipped = http.patch(location, content=BLOB[5000:6000], headers={"Content-Range": "5000-5999"})
    assert skipped.status_code == 416
    assert skipped.headers["Range"] == "0-3999"
    assert skipped.headers["Location"] == location
    status = http.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-3999"
    second = http.patch(location, content=BLOB[4000:9000], headers={"Content-Range": "4000-8999"})
    assert second.status_code == 202
    final = http.put(
        location,
        params={"digest": sha256(BLOB)},
        content=BLOB[9000:],
        headers={"Content-Range": f"9000-{len(BLOB) - 1}"},
    )
    assert final.status_code == 201, final.text
    assert http.get(f"/v2/chunks/blobs/{sha256(BLOB)}").content == BLOB


def test_streamed_patch_with_chunked_transfer_encoding(http: httpx.Client) -> None:
    location = http.post("/v2/stream/blobs/uploads/").headers["Location"]

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(BLOB), 3000):
            yield BLOB[i : i + 3000]

    patched = http.patch(location, content=pieces())  # no length: chunked framing
    assert patched.status_code == 202, patched.text
    assert patched.headers["Range"] == f"0-{len(BLOB) - 1}"
    done = http.put(patched.headers["Location"], params={"digest": sha256(BLOB)})
    assert done.status_code == 201


def test_cancelled_upload_is_gone(http: httpx.Client) -> None:
    location = http.post("/v2/gone/blobs/uploads/").headers["Location"]
    assert http.delete(location).status_code == 204
    response = http.get(location)
    assert response.status_code == 404
    assert error_codes(response) == ["BLOB_UPLOAD_UNKNOWN"]


def test_blob_is_visible_only_in_repositories_that_hold_it(http: httpx.Client) -> None:
    digest = push_blob(http, "source/repo", BLOB)
    assert http.head(f"/v2/other/repo/blobs/{digest}").status_code == 404
    fallback = http.post("/v2/other/repo/blobs/uploads/", params={"mount": digest, "from": "nope"})
    assert fallback.status_code == 202  # distribution-spec: mount not possible → session
    mounted = http.post(
        "/v2/other/repo/blobs/uploads/", params={"mount": digest, "from": "source/repo"}
    )
    assert mounted.status_code == 201
    assert mounted.headers["Docker-Content-Digest"] == digest
    assert http.head(f"/v2/other/repo/blobs/{digest}").status_code == 200


def test_blob_ranges(http: httpx.Client) -> None:
    digest = push_blob(http, "ranges", BLOB)
    url = f"/v2/ranges/blobs/{digest}"
    part = http.get(url, headers={"Range": "bytes=500-1499"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 500-1499/{len(BLOB)}"
    assert part.content == BLOB[500:1500]
    assert http.get(url, headers={"Range": "bytes=-100"}).content == BLOB[-100:]
    assert http.get(url, headers={"Range": "bytes=10000-"}).content == BLOB[10000:]
    assert http.get(url, headers={"Range": "bytes=500-0"}).status_code == 416
    assert http.get(url, headers={"Range": "bytes=99999-"}).status_code == 416


def test_manifest_by_tag_and_digest(http: httpx.Client) -> None:
    image = push_image(http, "team/adapter", "1.0.0")
    for reference in ("1.0.0", image.digest):
        got = http.get(f"/v2/team/adapter/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
        assert got.status_code == 200
        assert got.content == image.manifest  # the exact bytes pushed
        assert got.headers["Content-Type"] == OCI_MANIFEST
        assert got.headers["Docker-Content-Digest"] == image.digest
        head = http.head(f"/v2/team/adapter/manifests/{reference}")
        assert head.headers["Content-Length"] == str(len(image.manifest))
    by_digest = http.put(
        f"/v2/team/adapter/manifests/{image.digest}",
        content=image.manifest,
        headers={"Content-Type": OCI_MANIFEST},
        params=[("tag", "a"), ("tag", "b")],
    )
    assert by_digest.status_code == 201
    assert by_digest.headers["OCI-Tag"] == "a, b"
    missing = http.get("/v2/team/adapter/manifests/nope")
    assert missing.status_code == 404
    assert error_codes(missing) == ["MANIFEST_UNKNOWN"]


def test_manifest_naming_unknown_blobs_is_refused(http: httpx.Client) -> None:
    config = b'{"architecture":"amd64","os":"linux"}'
    push_blob(http, "refs", config)
    manifest = image_manifest(config, [b"never pushed", b"nor this"])
    response = http.put(
        "/v2/refs/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 400
    assert error_codes(response) == ["MANIFEST_BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN"]
    assert response.json()["errors"][0]["detail"] == {"digest": sha256(b"never pushed")}


def test_index_needs_its_manifests(http: httpx.Client) -> None:
    child = push_image(http, "multi", "child")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": child.digest,
                    "size": len(child.manifest),
                    "platform": {"os": "linux", "architecture": "amd64"},
                }
            ],
        }
    ).encode()
    ok = http.put("/v2/multi/manifests/latest", content=index, headers={"Content-Type": OCI_INDEX})
    assert ok.status_code == 201
    elsewhere = http.put(
        "/v2/other/manifests/latest", content=index, headers={"Content-Type": OCI_INDEX}
    )
    assert elsewhere.status_code == 400
    assert error_codes(elsewhere) == ["MANIFEST_BLOB_UNKNOWN"]


def test_tag_list_pages(http: httpx.Client) -> None:
    image = push_image(http, "paged", "v1")
    for tag in ("b", "a", "C", "v2"):
        http.put(
            f"/v2/paged/manifests/{tag}",
            content=image.manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
    assert http.get("/v2/paged/tags/list").json() == {
        "name": "paged",
        "tags": ["C", "a", "b", "v1", "v2"],
    }
    first = http.get("/v2/paged/tags/list", params={"n": 2})
    assert first.json()["tags"] == ["C", "a"]
    assert first.headers["Link"] == '</v2/paged/tags/list?n=2&last=a>; rel="next"'
    rest = http.get("/v2/paged/tags/list", params={"n": 10, "last": "a"})
    assert rest.json()["tags"] == ["b", "v1", "v2"]
    assert "Link" not in rest.headers
    assert http.get("/v2/paged/tags/list", params={"n": 0}).json()["tags"] == []
    unknown = http.get("/v2/unknown/tags/list")
    assert unknown.status_code == 404
    assert error_codes(unknown) == ["NAME_UNKNOWN"]


def test_delete_tag_then_manifest(http: httpx.Client) -> None:
    image = push_image(http, "del", "v1")
    http.put("/v2/del/manifests/v2", content=image.manifest, headers={"Content-Type": OCI_MANIFEST})
    assert http.delete("/v2/del/manifests/v1").status_code == 202
    assert http.get("/v2/del/manifests/v1").status_code == 404
    assert http.get("/v2/del/manifests/v2").status_code == 200
    assert http.delete(f"/v2/del/manifests/{image.digest}").status_code == 202
    assert http.get("/v2/del/manifests/v2").status_code == 404  # its tags went with it
    assert http.get(f"/v2/del/manifests/{image.digest}").status_code == 404
    assert http.get("/v2/del/tags/list").json()["tags"] == []


def test_referrers(http: httpx.Client) -> None:
    subject = push_image(http, "art", "v1")
    empty = b"{}"
    push_blob(http, "art", empty)
    sbom = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom.v1",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": sha256(empty),
                "size": 2,
            },
            "layers": [],
            "subject": {
                "mediaType": OCI_MANIFEST,
                "digest": subject.digest,
                "size": len(subject.manifest),
            },
            "annotations": {"org.example.kind": "sbom"},
        }
    ).encode()
    put = http.put(
        f"/v2/art/manifests/{sha256(sbom)}", content=sbom, headers={"Content-Type": OCI_MANIFEST}
    )
    assert put.status_code == 201
    assert put.headers["OCI-Subject"] == subject.digest
    listed = http.get(f"/v2/art/referrers/{subject.digest}")
    assert listed.status_code == 200
    assert listed.headers["Content-Type"] == OCI_INDEX
    assert listed.json()["manifests"] == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": sha256(sbom),
            "size": len(sbom),
            "artifactType": "application/vnd.example.sbom.v1",
            "annotations": {"org.example.kind": "sbom"},
        }
    ]
    filtered = http.get(f"/v2/art/referrers/{subject.digest}", params={"artifactType": "x/y"})
    assert filtered.json()["manifests"] == []
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    http.delete(f"/v2/art/manifests/{sha256(sbom)}")
    assert http.get(f"/v2/art/referrers/{subject.digest}").json()["manifests"] == []
    assert http.get("/v2/art/referrers/sha256:bad").status_code == 400


def test_catalog(http: httpx.Client) -> None:
    push_image(http, "b/two")
    push_image(http, "a")
    assert http.get("/v2/_catalog").json() == {"repositories": ["a", "b/two"]}


def test_keep_alive_survives_errors(server: Server) -> None:
    """Several requests, including refused ones with bodies, over one connection."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        requests = (
            b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"
            b"PUT /v2/a/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"
            b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(requests)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
    assert statuses == [b"200", b"400", b"200"]


def test_https_probe_on_the_plain_port_ends_at_once(server: Server) -> None:
    """Clients try https first; a hello without a newline byte must not wait for one."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01\x00\x05hello")
        assert sock.recv(100) == b""  # closed, no 120 s wait for a request line
    with httpx.Client(trust_env=False, timeout=5) as https, pytest.raises(httpx.HTTPError):
        https.get(f"https://{server.address}/v2/")  # fails fast; clients then try http
