"""Storage lifecycle: expiring uploads, resuming after a restart, one server per root."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpkit.errors import MpkitError
from mpkit.server import Server, ServerConfig
from mpkit.server.server import wait_until
from mpkit.server.storage import decode_tag, encode_tag
from tests.server.conftest import MakeServer
from tests.server.helpers import OCI_MANIFEST, client, fsck, push_image, sha256

DATA = bytes(range(256)) * 100


def test_abandoned_uploads_expire(make_server: MakeServer) -> None:
    server = make_server(upload_ttl=0.5, janitor_interval=0.1)
    uploads = server.config.root / "_uploads"
    with client(server.url) as http:
        idle = http.post("/v2/a/blobs/uploads/").headers["Location"]
        http.patch(idle, content=DATA[:100])
        assert len(list(uploads.iterdir())) == 1
        assert wait_until(lambda: not list(uploads.iterdir()), 5)
        gone = http.patch(idle, content=DATA[100:200], headers={"Content-Range": "100-199"})
        assert gone.status_code == 404
        assert gone.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        push_image(http, "still/fine")  # active uploads are not touched by the janitor


def test_an_upload_continues_after_a_restart(make_server: MakeServer) -> None:
    first = make_server()
    with client(first.url) as http:
        location = http.post("/v2/a/blobs/uploads/").headers["Location"]
        assert http.patch(location, content=DATA[:5000]).status_code == 202
    first.shutdown()
    second = make_server()
    with client(second.url) as http:
        status = http.get(location)
        assert status.headers["Range"] == "0-4999"
        http.patch(
            location, content=DATA[5000:], headers={"Content-Range": f"5000-{len(DATA) - 1}"}
        )
        done = http.put(location, params={"digest": sha256(DATA)})
        assert done.status_code == 201  # the hash was recomputed from the stored bytes
        assert http.get(f"/v2/a/blobs/{sha256(DATA)}").content == DATA


def test_leftover_temp_files_are_cleared_at_start(tmp_path: Path, make_server: MakeServer) -> None:
    leftover = tmp_path / "root" / "_tmp" / "half-written"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"partial")
    make_server()
    assert not leftover.exists()


def test_one_server_per_root(server: Server, tmp_path: Path) -> None:
    with pytest.raises(MpkitError) as caught:
        Server(ServerConfig(root=server.config.root, port=0)).start()
    assert "already serving" in caught.value.message


def test_tags_keep_their_case(server: Server) -> None:
    with client(server.url) as api:
        image = push_image(api, "cased", "Latest")
        api.put(
            "/v2/cased/manifests/latest",
            content=image.manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert api.get("/v2/cased/tags/list").json()["tags"] == ["Latest", "latest"]
    assert encode_tag("V1.A_b") == "%v1.%a_b"
    assert decode_tag("%v1.%a_b") == "V1.A_b"
    assert decode_tag("..") is None
    assert decode_tag("%") is None


def test_blobs_are_stored_once_across_repositories(server: Server) -> None:
    with client(server.url) as http:
        for name in ("one", "two", "three"):
            push_image(http, name, seed="same")
    assert fsck(server.config.root) == 4  # config, two layers and the manifest
    with client(server.url) as http:
        assert http.get("/v2/_catalog").json()["repositories"] == ["one", "three", "two"]
