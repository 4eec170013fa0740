"""Real clients against the built-in registry: skopeo, podman, mpkit; digests agree everywhere."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mpkit.server import Server
from tests.e2e.conftest import Mpkit
from tests.fixtures.certs import CertAuthority, issue_server_cert, make_ca
from tests.fixtures.podman import Podman
from tests.fixtures.skopeo import Skopeo, write_authfile
from tests.image.builders import make_oci_layout
from tests.server.conftest import MakeServer
from tests.server.helpers import USERS, client, fsck, sha256, write_htpasswd

LAYERS = [
    {"etc/motd": b"adapter base\n"},
    {"app/adapter.py": b"print('collect')\n" * 100, "app/data.bin": bytes(range(256)) * 512},
]
ALICE = ("alice", USERS["alice"])


@dataclass
class Endpoint:
    """What the skopeo helpers need to know about a registry."""

    host: str
    cert_dir: Path | None = None


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, str]:
    src = tmp_path / "src"
    return src, make_oci_layout(src, "v1", LAYERS)


def served_digest(server: Server, repository: str, reference: str) -> str:
    with client(server.url) as http:
        response = http.get(
            f"/v2/{repository}/manifests/{reference}",
            headers={
                "Accept": "application/vnd.oci.image.manifest.v1+json, "
                "application/vnd.docker.distribution.manifest.v2+json"
            },
        )
    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == sha256(response.content)
    return sha256(response.content)


def layout_digest(directory: Path) -> str:
    manifests = json.loads((directory / "index.json").read_text())["manifests"]
    assert len(manifests) == 1
    digest: str = manifests[0]["digest"]
    return digest


def test_skopeo_and_mpkit_push_and_pull(
    server: Server, skopeo: Skopeo, mpkit: Mpkit, layout: tuple[Path, str], tmp_path: Path
) -> None:
    src, digest = layout
    endpoint = Endpoint(server.address)
    skopeo.copy(
        f"oci:{src}:v1",
        f"docker://{server.address}/interop/skopeo:v1",
        dest_args=skopeo.args_for(endpoint, "dest"),
    )
    assert served_digest(server, "interop/skopeo", "v1") == digest
    skopeo.copy(
        f"docker://{server.address}/interop/skopeo:v1",
        f"oci:{tmp_path / 'by-skopeo'}:v1",
        src_args=skopeo.args_for(endpoint, "src"),
    )
    assert layout_digest(tmp_path / "by-skopeo") == digest

    pulled = mpkit.ok(
        "image",
        "pull",
        f"{server.address}/interop/skopeo:v1",
        f"oci:{tmp_path / 'by-mpkit'}:v1",
        "--anonymous",
        "--json",
    ).json()
    assert pulled["digest"] == digest
    assert layout_digest(tmp_path / "by-mpkit") == digest

    pushed = mpkit.ok(
        "image",
        "push",
        f"oci:{src}:v1",
        f"{server.address}/interop/mpkit:v1",
        "--mount-from",
        "interop/skopeo",
        "--json",
    ).json()
    assert pushed["digest"] == digest
    assert pushed["stats"]["blobs_mounted"] == 3  # cross-repository mounts
    inspect = skopeo.run(
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--no-creds",
        f"docker://{server.address}/interop/mpkit:v1",
    )
    assert sha256(inspect.stdout.encode()) == digest
    assert fsck(server.config.root) == 4


def test_podman_push_and_pull(
    server: Server,
    podman: Podman,
    skopeo: Skopeo,
    mpkit: Mpkit,
    layout: tuple[Path, str],
    tmp_path: Path,
) -> None:
    src, digest = layout
    podman.add_registry(server.address)
    skopeo.copy(
        f"oci:{src}:v1",
        f"docker://{server.address}/interop/source:v1",
        dest_args=skopeo.args_for(Endpoint(server.address), "dest"),
    )
    source = f"{server.address}/interop/source:v1"
    target = f"{server.address}/interop/podman:v1"
    try:
        podman.pull(source)
        assert podman.image_digest(source) == digest
        podman.run("tag", source, target)
        digestfile = tmp_path / "podman.digest"
        podman.run("push", "--tls-verify=false", "--digestfile", str(digestfile), target)
        pushed = digestfile.read_text().strip()
        assert served_digest(server, "interop/podman", "v1") == pushed
        podman.rm_image(target)
        podman.rm_image(source)
        podman.pull(target)
        assert podman.image_digest(target) == pushed
    finally:
        podman.rm_image(target)
        podman.rm_image(source)
    pulled = mpkit.ok(
        "image", "pull", target, f"oci:{tmp_path / 'by-mpkit'}:v1", "--anonymous", "--json"
    ).json()
    assert pulled["digest"] == pushed
    skopeo.copy(
        f"docker://{target}",
        f"oci:{tmp_path / 'by-skopeo'}:v1",
        src_args=skopeo.args_for(Endpoint(server.address), "src"),
    )
    assert layout_digest(tmp_path / "by-skopeo") == pushed
    fsck(server.config.root)


def test_clients_log_in_to_push_and_pull_anonymously(
    make_server: MakeServer,
    skopeo: Skopeo,
    podman: Podman,
    mpkit: Mpkit,
    layout: tuple[Path, str],
    tmp_path: Path,
) -> None:
    server = make_server(htpasswd=write_htpasswd(tmp_path / "htpasswd"))
    src, digest = layout
    endpoint = Endpoint(server.address)
    ref = f"{server.address}/secure/app:v1"
    refused = skopeo.copy(
        f"oci:{src}:v1", f"docker://{ref}", dest_args=skopeo.args_for(endpoint, "dest"), check=False
    )
    assert refused.returncode != 0
    assert "unauthorized" in refused.stderr.lower() or "authentication" in refused.stderr.lower()
    skopeo.copy(
        f"oci:{src}:v1", f"docker://{ref}", dest_args=skopeo.args_for(endpoint, "dest", ALICE)
    )
    assert served_digest(server, "secure/app", "v1") == digest
    skopeo.copy(
        f"docker://{ref}", f"oci:{tmp_path / 'anon'}:v1", src_args=skopeo.args_for(endpoint, "src")
    )
    assert layout_digest(tmp_path / "anon") == digest

    podman.add_registry(server.address)
    target = f"{server.address}/secure/podman:v1"
    authfile = write_authfile(tmp_path / "podman-auth", server.address, ALICE)
    try:
        podman.pull(ref)  # anonymously, through the token service
        assert podman.image_digest(ref) == digest
        podman.run("tag", ref, target)
        anonymous_push = podman.run("push", "--tls-verify=false", target, check=False)
        assert anonymous_push.returncode != 0
        podman.run("push", "--tls-verify=false", "--authfile", str(authfile), target)
    finally:
        podman.rm_image(target)
        podman.rm_image(ref)
    pulled = mpkit.ok(
        "image", "pull", target, f"oci:{tmp_path / 'mpkit'}:v1", "--anonymous", "--json"
    ).json()
    assert pulled["digest"] == served_digest(server, "secure/podman", "v1")
    logged_in = mpkit.ok(
        "image",
        "push",
        f"oci:{src}:v1",
        f"{server.address}/secure/mpkit:v1",
        "--json",
        env={"MPKIT_REGISTRY_USERNAME": "alice", "MPKIT_REGISTRY_PASSWORD": USERS["alice"]},
    )
    assert logged_in.json()["digest"] == digest


@pytest.fixture
def tls_server(make_server: MakeServer, tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    ca: CertAuthority = make_ca(tmp_path / "pki")
    cert = issue_server_cert(ca, tmp_path / "pki")
    server = make_server(tls_cert=cert.cert_path, tls_key=cert.key_path)
    cert_dir = tmp_path / "client-certs"
    cert_dir.mkdir()
    shutil.copyfile(ca.cert_path, cert_dir / "ca.crt")
    yield server, cert_dir


def test_tls(
    tls_server: tuple[Server, Path],
    skopeo: Skopeo,
    mpkit: Mpkit,
    layout: tuple[Path, str],
    tmp_path: Path,
) -> None:
    server, cert_dir = tls_server
    src, digest = layout
    assert server.url.startswith("https://")
    endpoint = Endpoint(server.address, cert_dir)
    skopeo.copy(
        f"oci:{src}:v1",
        f"docker://{server.address}/tls/app:v1",
        dest_args=skopeo.args_for(endpoint, "dest"),
    )
    pulled = mpkit.ok(
        "image",
        "pull",
        f"{server.address}/tls/app:v1",
        f"oci:{tmp_path / 'tls'}:v1",
        "--ca-cert",
        str(cert_dir / "ca.crt"),
        "--json",
    ).json()
    assert pulled["digest"] == digest
    untrusted = mpkit.run("image", "inspect", f"{server.address}/tls/app:v1")
    assert untrusted.returncode == 1
