"""The test harness itself: each registry mode, the token server and the fault proxy behave."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import ssl
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import MakeFaultProxy, MakeRegistry
from tests.fixtures.procs import ManagedProcess, ProcessStartError, free_port, tcp_ready
from tests.fixtures.registry import RegistryServer
from tests.fixtures.skopeo import Skopeo, skopeo_args_for
from tests.fixtures.tokenserver import REGISTRY_LEEWAY_SECONDS

ALICE = ("alice", "s3cret-Pa55")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tiny_layout(directory: Path, tag: str = "v1", content: bytes = b"hello\n") -> str:
    """Write a one-layer OCI image layout; return its manifest digest."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = _digest(data)
        (blobs / digest.split(":")[1]).write_bytes(data)
        return digest

    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime, info.mode = len(content), 0, 0o644
        tar.addfile(info, io.BytesIO(content))
    layer = gzip.compress(tar_bytes.getvalue(), mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [_digest(tar_bytes.getvalue())]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": put(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": put(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    manifest_digest = put(manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (directory / "index.json").write_text(json.dumps(index))
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return manifest_digest


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, str]:
    directory = tmp_path / "layout"
    return directory, _tiny_layout(directory, content=os.urandom(16))


def _push(
    skopeo: Skopeo,
    layout: tuple[Path, str],
    registry: RegistryServer,
    repo: str,
    creds: tuple[str, str] | None,
    *,
    check: bool = True,
) -> tuple[int, str]:
    digestfile = skopeo.workdir / "digest"
    result = skopeo.copy(
        f"oci:{layout[0]}:v1",
        f"docker://{registry.host}/{repo}:v1",
        dest_args=[*skopeo.args_for(registry, "dest", creds), "--digestfile", str(digestfile)],
        check=check,
    )
    digest = digestfile.read_text() if result.returncode == 0 else ""
    return result.returncode, result.stderr or digest


def _client(registry: RegistryServer) -> httpx.Client:
    return httpx.Client(verify=registry.ssl_context() or False, timeout=10)


def _bearer(registry: RegistryServer, scope: str, auth: tuple[str, str] | None = None) -> str:
    assert registry.token_server is not None
    with _client(registry) as client:
        answer = client.get(
            registry.token_server.realm,
            params={"service": registry.token_server.service, "scope": scope},
            auth=auth,
        )
    answer.raise_for_status()
    token: str = answer.json()["token"]
    return token


# -- processes -----------------------------------------------------------------------------


def test_managed_process_shows_log_when_it_dies(tmp_path: Path) -> None:
    process = ManagedProcess(
        [sys.executable, "-c", "print('boom: no config'); raise SystemExit(3)"],
        log_path=tmp_path / "p.log",
    )
    with pytest.raises(ProcessStartError, match="boom: no config"):
        process.start(tcp_ready("127.0.0.1", free_port()), timeout=5)
    assert process.stop() == 3


def test_managed_process_stops_only_its_group(tmp_path: Path) -> None:
    port = free_port()
    server = (
        "import socket,time;s=socket.socket();"
        f"s.bind(('127.0.0.1',{port}));s.listen();time.sleep(60)"
    )
    with ManagedProcess([sys.executable, "-c", server], log_path=tmp_path / "p.log") as process:
        process.start(tcp_ready("127.0.0.1", port), timeout=10)
        assert process.pid is not None and os.getpgid(process.pid) == process.pid
    assert not process.running
    assert process.stop() == -15


# -- open ----------------------------------------------------------------------------------


def test_open_registry_push_and_pull(
    registry_open: RegistryServer, skopeo: Skopeo, layout: tuple[Path, str], tmp_path: Path
) -> None:
    code, digest = _push(skopeo, layout, registry_open, "harness/open", None)
    assert (code, digest) == (0, layout[1])
    skopeo.copy(
        f"docker://{registry_open.host}/harness/open@{digest}",
        f"oci:{tmp_path / 'pulled'}:v1",
        src_args=skopeo.args_for(registry_open, "src"),
    )
    index = json.loads((tmp_path / "pulled" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
    manifest = json.loads(registry_open.blob_path(digest).read_text())
    assert registry_open.blob_path(manifest["layers"][0]["digest"]).is_file()


# -- basic ---------------------------------------------------------------------------------


def test_basic_rejects_anonymous_and_accepts_alice(
    registry_basic: RegistryServer, skopeo: Skopeo, layout: tuple[Path, str]
) -> None:
    with _client(registry_basic) as client:
        anonymous = client.get(f"{registry_basic.url}/v2/")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Basic ")
        assert client.get(f"{registry_basic.url}/v2/", auth=ALICE).status_code == 200
        assert client.get(f"{registry_basic.url}/v2/", auth=("alice", "wrong")).status_code == 401
    code, _ = _push(skopeo, layout, registry_basic, "harness/basic", None, check=False)
    assert code != 0
    assert _push(skopeo, layout, registry_basic, "harness/basic", ALICE) == (0, layout[1])
    assert "s3cret" not in repr(registry_basic)


# -- token ---------------------------------------------------------------------------------


def test_token_anonymous_pulls_only_public(
    registry_token: RegistryServer, skopeo: Skopeo, layout: tuple[Path, str]
) -> None:
    assert _push(skopeo, layout, registry_token, "public/x", ALICE)[0] == 0
    assert _push(skopeo, layout, registry_token, "private/x", ALICE)[0] == 0
    inspect_args = skopeo.args_for(registry_token, "")
    public = skopeo.run(
        "inspect", "--raw", *inspect_args, f"docker://{registry_token.host}/public/x:v1"
    )
    assert _digest(public.stdout.encode()) == layout[1]
    private = skopeo.run(
        "inspect",
        "--raw",
        *inspect_args,
        f"docker://{registry_token.host}/private/x:v1",
        check=False,
    )
    assert private.returncode != 0

    # The token server grants nothing (200, empty access); the registry says 401.
    token = _bearer(registry_token, "repository:private/x:pull")
    assert jwt.decode(token, options={"verify_signature": False})["access"] == []
    with _client(registry_token) as client:
        answer = client.get(
            f"{registry_token.url}/v2/private/x/manifests/v1",
            headers={"Authorization": f"Bearer {token}", "Accept": OCI_MANIFEST},
        )
    assert answer.status_code == 401
    assert 'error="insufficient_scope"' in answer.headers["www-authenticate"]

    assert registry_token.token_server is not None
    records = registry_token.token_server.requests
    assert any(r.username is None and r.granted == () for r in records)
    assert any(
        r.username == "alice" and "repository:private/x:pull,push" in r.granted for r in records
    )
    assert "s3cret" not in repr(records)


def test_token_push_needs_credentials(
    registry_token: RegistryServer, skopeo: Skopeo, layout: tuple[Path, str]
) -> None:
    code, stderr = _push(skopeo, layout, registry_token, "public/anon-push", None, check=False)
    assert code != 0
    assert "unauthorized" in stderr.lower() or "denied" in stderr.lower()
    assert _push(skopeo, layout, registry_token, "public/anon-push", ALICE) == (0, layout[1])


def test_token_password_and_refresh_token_grants(
    registry_token: RegistryServer, skopeo: Skopeo, layout: tuple[Path, str]
) -> None:
    ts = registry_token.token_server
    assert ts is not None
    assert _push(skopeo, layout, registry_token, "private/refresh", ALICE)[0] == 0
    form = {
        "service": ts.service,
        "client_id": "mpkit-tests",
        "scope": "repository:private/refresh:pull",
    }
    with _client(registry_token) as client:
        login = client.post(
            ts.realm,
            data={
                **form,
                "grant_type": "password",
                "access_type": "offline",
                "username": ALICE[0],
                "password": ALICE[1],
            },
        )
        assert login.status_code == 200
        refresh_token = login.json()["refresh_token"]
        assert refresh_token == ts.refresh_token_for("alice")

        refreshed = client.post(
            ts.realm, data={**form, "grant_type": "refresh_token", "refresh_token": refresh_token}
        )
        assert refreshed.status_code == 200
        body = refreshed.json()
        assert {"token", "access_token", "expires_in", "issued_at"} <= body.keys()
        assert "refresh_token" not in body
        manifest = client.get(
            f"{registry_token.url}/v2/private/refresh/manifests/v1",
            headers={"Authorization": f"Bearer {body['access_token']}", "Accept": OCI_MANIFEST},
        )
        assert manifest.status_code == 200
        assert _digest(manifest.content) == layout[1]

        wrong = client.post(
            ts.realm, data={**form, "grant_type": "password", "username": "alice", "password": "x"}
        )
        assert wrong.status_code == 401 and wrong.json()["error"]
        bad_refresh = client.post(
            ts.realm, data={**form, "grant_type": "refresh_token", "refresh_token": "nope"}
        )
        assert bad_refresh.status_code == 401
        no_client = client.post(
            ts.realm, data={"grant_type": "refresh_token", "refresh_token": refresh_token}
        )
        assert no_client.status_code == 400

    grants = [(r.grant_type, r.username, r.status) for r in ts.requests if r.method == "POST"]
    assert ("refresh_token", "alice", 200) in grants
    assert ("password", None, 401) in grants


def test_token_is_a_verifiable_rs256_jwt(registry_token: RegistryServer) -> None:
    ts = registry_token.token_server
    assert ts is not None
    token = _bearer(registry_token, "repository:private/x:pull,push", auth=ALICE)
    header = jwt.get_unverified_header(token)
    cert = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    claims = jwt.decode(
        token,
        public_key,
        algorithms=["RS256"],
        audience=ts.service,
        issuer=ts.issuer,
        leeway=REGISTRY_LEEWAY_SECONDS,
    )
    assert header["alg"] == "RS256"
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == ts.lifetime
    assert claims["access"] == [
        {"type": "repository", "name": "private/x", "actions": ["pull", "push"]}
    ]


def test_token_expires_after_lifetime(make_registry: MakeRegistry) -> None:
    registry = make_registry(mode="token", token_lifetime=3)
    issued = time.time()
    token = _bearer(registry, "repository:public/x:pull", auth=ALICE)
    with _client(registry) as client:
        ping = client.get(f"{registry.url}/v2/", headers={"Authorization": f"Bearer {token}"})
        assert ping.status_code == 200
        time.sleep(max(0.0, issued + 3.3 - time.time()))
        ping = client.get(f"{registry.url}/v2/", headers={"Authorization": f"Bearer {token}"})
        assert ping.status_code == 401


# -- tls -----------------------------------------------------------------------------------


def test_tls_needs_the_ca(
    registry_tls: RegistryServer, skopeo: Skopeo, layout: tuple[Path, str], certs_d: Path
) -> None:
    assert registry_tls.url.startswith("https://")
    assert _push(skopeo, layout, registry_tls, "harness/tls", None) == (0, layout[1])
    untrusted = skopeo.run(
        "inspect",
        "--raw",
        "--no-creds",
        f"docker://{registry_tls.host}/harness/tls:v1",
        check=False,
    )
    assert untrusted.returncode != 0
    assert "certificate" in untrusted.stderr
    trusted = ssl.create_default_context(cafile=str(certs_d / registry_tls.host / "ca.crt"))
    with httpx.Client(verify=trusted) as client:
        assert client.get(f"{registry_tls.url}/v2/").status_code == 200
    assert os.environ["MPKIT_CERTS_D"] == str(certs_d)


def test_token_over_tls(
    make_registry: MakeRegistry, skopeo: Skopeo, layout: tuple[Path, str]
) -> None:
    registry = make_registry(mode="token", tls=True)
    assert registry.token_server is not None
    assert registry.token_server.realm.startswith("https://")
    assert _push(skopeo, layout, registry, "private/tls", ALICE) == (0, layout[1])


# -- fault proxy ---------------------------------------------------------------------------


def test_fault_proxy_injects_503_then_passes_through(
    registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy
) -> None:
    proxy = make_fault_proxy(registry_open)
    fault = proxy.fail("GET", r"^/v2/$", 503, times=2, headers={"Retry-After": "1"})
    with httpx.Client() as client:
        statuses = [client.get(f"{proxy.url}/v2/") for _ in range(3)]
    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].headers["retry-after"] == "1"
    assert "docker-distribution-api-version" in statuses[2].headers
    assert fault.hits == 2 and fault.remaining == 0
    assert proxy.count("GET", r"^/v2/$") == 3


def test_fault_proxy_streams_uploads_and_drops_downloads(
    registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy
) -> None:
    proxy = make_fault_proxy(registry_open)
    blob = os.urandom(3 * 1024 * 1024 + 17)
    digest = _digest(blob)

    def chunks() -> Iterator[bytes]:  # no length: httpx sends it chunked
        for start in range(0, len(blob), 100_000):
            yield blob[start : start + 100_000]

    with httpx.Client(timeout=30) as client:
        started = client.post(f"{proxy.url}/v2/harness/faults/blobs/uploads/")
        assert started.status_code == 202
        location = started.headers["location"]
        assert location.startswith(proxy.url)  # rewritten from the registry's absolute URL
        patched = client.patch(
            location, content=chunks(), headers={"Content-Type": "application/octet-stream"}
        )
        assert patched.status_code == 202
        upload = httpx.URL(patched.headers["location"])
        put = client.put(upload.copy_merge_params({"digest": digest}))
        assert put.status_code == 201, put.text

        blob_url = f"{proxy.url}/v2/harness/faults/blobs/{digest}"
        proxy.drop("GET", "/blobs/sha256:", after_bytes=1000)
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(blob_url)
        assert client.get(blob_url).content == blob

        proxy.drop("PATCH", "/uploads/", after_bytes=10, during="request")
        again = client.post(f"{proxy.url}/v2/harness/faults/blobs/uploads/")
        with pytest.raises(httpx.TransportError):
            client.patch(again.headers["location"], content=chunks())
    assert proxy.count("GET", "/blobs/sha256:") == 2
    assert [r.status for r in proxy.seen if r.fault == "drop_request"] == [0]


def test_fault_proxy_keeps_token_auth_flowing_through_it(
    registry_token: RegistryServer,
    make_fault_proxy: MakeFaultProxy,
    skopeo: Skopeo,
    layout: tuple[Path, str],
) -> None:
    proxy = make_fault_proxy(registry_token)
    with httpx.Client() as client:
        challenge = client.get(f"{proxy.url}/v2/").headers["www-authenticate"]
    assert f'realm="{proxy.url}/token"' in challenge
    proxy.fail("GET", r"^/token\?", 503, times=1)
    first = skopeo.copy(
        f"oci:{layout[0]}:v1",
        f"docker://{proxy.host}/private/proxied:v1",
        dest_args=skopeo_args_for(proxy, "dest", ALICE, authfile_dir=skopeo.workdir),
        check=False,
    )
    assert first.returncode != 0 and "503" in first.stderr  # skopeo does not retry it
    skopeo.copy(
        f"oci:{layout[0]}:v1",
        f"docker://{proxy.host}/private/proxied:v1",
        dest_args=skopeo_args_for(proxy, "dest", ALICE, authfile_dir=skopeo.workdir),
    )
    assert proxy.count("GET", r"^/token\?") >= 2
    assert proxy.count("PUT", "/manifests/v1") == 1
