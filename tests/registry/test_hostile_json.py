"""A registry that answers with deeply nested JSON gets a clear error, never a crash."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from mpkit.server import Server, ServerConfig
from tests.e2e.conftest import Mpkit
from tests.fixtures.fakeregistry import FakeRegistry, Reply
from tests.verify.conftest import make_pack

DEEP = b"[" * 5_000  # beyond the recursion limit, within every size limit
DIGEST = "sha256:" + "ab" * 32
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.mark.parametrize("where", ["manifest", "token"])
def test_deep_json_from_a_registry_is_named(where: str, cli: Mpkit) -> None:
    with FakeRegistry(auth="bearer" if where == "token" else "none") as fake:
        if where == "manifest":
            fake.route("GET", "/manifests/", Reply(200, {"Content-Type": MANIFEST}, DEEP))
        else:
            fake.route("GET", "/token", Reply(200, {"Content-Type": "application/json"}, DEEP))
        result = cli.run("image", "inspect", f"{fake.host}/team/app:v1")
    assert result.returncode == 1, result.output
    assert "internal error" not in result.output and "Traceback" not in result.output
    expected = "nesting deeper than 100 levels" if where == "manifest" else "non-JSON body"
    assert expected in result.stderr


def test_verify_of_a_pack_whose_registry_answers_deep_json(cli: Mpkit, tmp_path: Path) -> None:
    with FakeRegistry() as fake:
        fake.route(
            "HEAD",
            "/manifests/",
            Reply(200, {"Content-Type": MANIFEST, "Docker-Content-Digest": DIGEST}),
        )
        fake.route("GET", "/manifests/", Reply(200, {"Content-Type": MANIFEST}, DEEP))
        pack = make_pack(tmp_path / "project", fake.host, "team/app", DIGEST)
        result = cli.run("verify", str(pack))
    assert result.returncode == 1, result.output
    assert "internal error" not in result.output and "Traceback" not in result.output


def test_the_built_in_registry_refuses_a_deep_manifest(tmp_path: Path) -> None:
    with Server(ServerConfig(root=tmp_path / "root", port=0)) as server:
        answer = httpx.put(
            f"{server.url}/v2/team/app/manifests/v1",
            content=DEEP,
            headers={"Content-Type": MANIFEST},
        )
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["code"] == "MANIFEST_INVALID"
