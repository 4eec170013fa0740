"""`mpkit image push|pull|inspect` against real registries, with skopeo as the peer client."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mpkit.image.source import load_source
from tests.e2e.conftest import Mpkit, blob_files, creds_env
from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.registry import RegistryServer
from tests.fixtures.skopeo import Skopeo
from tests.image.builders import make_multiplatform_layout, make_oci_layout

MODES = ["open", "basic", "token", "tls"]
LAYERS = [
    {"etc/motd": b"adapter base\n"},
    {"app/adapter.py": b"print('collect')\n" * 100},
    {"app/data.bin": bytes(range(256)) * 512},
]


@pytest.fixture(params=MODES)
def registry(request: pytest.FixtureRequest) -> RegistryServer:
    server: RegistryServer = request.getfixturevalue(f"registry_{request.param}")
    return server


def needs_auth(registry: RegistryServer) -> bool:
    return registry.mode in ("basic", "token")


def mpkit_flags(registry: RegistryServer) -> list[str]:
    return ["--ca-cert", str(registry.ca_path)] if registry.tls and registry.ca_path else []


def auth_env(registry: RegistryServer) -> dict[str, str]:
    return creds_env(registry.users) if needs_auth(registry) else {}


def creds(registry: RegistryServer) -> tuple[str, str] | None:
    return ("alice", registry.users["alice"]) if needs_auth(registry) else None


def push(mpkit: Mpkit, layout: Path, ref: str, registry: RegistryServer, *extra: str) -> dict:  # type: ignore[type-arg]
    result = mpkit.ok(
        "image", "push", f"oci:{layout}:v1", ref, "--json", *mpkit_flags(registry), *extra,
        env=auth_env(registry),
    )  # fmt: skip
    data: dict = json.loads(result.stdout)  # type: ignore[type-arg]
    return data


def test_push_is_seen_by_skopeo_and_pulls_back_identical(
    mpkit: Mpkit, registry: RegistryServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    local_digest = make_oci_layout(src, "v1", LAYERS)
    repo = f"{registry.host}/team/push-{registry.mode}{'-tls' if registry.tls else ''}"
    pushed = push(mpkit, src, f"{repo}:v1", registry)
    assert pushed["digest"] == local_digest
    assert pushed["stats"]["blobs_uploaded"] == 4  # three layers and the config

    args = skopeo.args_for(registry, "", creds(registry))
    raw = skopeo.run("inspect", "--raw", *args, f"docker://{repo}:v1").stdout.encode()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == pushed["digest"]
    info = json.loads(skopeo.run("inspect", *args, f"docker://{repo}:v1").stdout)
    assert info["Digest"] == pushed["digest"]

    back = tmp_path / "back"
    skopeo.copy(f"docker://{repo}:v1", f"oci:{back}:v1",
                src_args=skopeo.args_for(registry, "src", creds(registry)))  # fmt: skip
    assert blob_files(back) == blob_files(src)


def test_pull_of_a_skopeo_push_verifies_every_digest(
    mpkit: Mpkit, registry: RegistryServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    digest = make_oci_layout(src, "v1", LAYERS)
    repo = f"{registry.host}/team/pull-{registry.mode}{'-tls' if registry.tls else ''}"
    skopeo.copy(f"oci:{src}:v1", f"docker://{repo}:v1",
                dest_args=skopeo.args_for(registry, "dest", creds(registry)))  # fmt: skip
    dest = tmp_path / "dest"
    result = mpkit.ok(
        "image", "pull", f"{repo}:v1", f"oci:{dest}:v1", "--json", *mpkit_flags(registry),
        env=auth_env(registry),
    )  # fmt: skip
    assert result.json()["digest"] == digest
    for name, data in blob_files(dest).items():
        assert hashlib.sha256(data).hexdigest() == name
    assert blob_files(dest) == blob_files(src)
    local = json.loads(skopeo.run("inspect", f"oci:{dest}:v1").stdout)
    assert local["Digest"] == digest


def test_docker_archive_push_is_deterministic(
    mpkit: Mpkit, registry_open: RegistryServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_oci_layout(src, "v1", LAYERS)
    archive = tmp_path / "saved.tar"
    skopeo.copy(f"oci:{src}:v1", f"docker-archive:{archive}:example.com/adapter:1.0")
    ref = f"{registry_open.host}/team/from-archive:1.0"
    first = mpkit.ok("image", "push", f"docker-archive:{archive}", ref, "--json").json()
    args = skopeo.args_for(registry_open, "")
    raw = skopeo.run("inspect", "--raw", *args, f"docker://{ref}").stdout.encode()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == first["digest"]
    assert json.loads(raw)["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    # A fresh cache recompresses: the gzip output, and so the digest, must not change.
    again = mpkit.ok(
        "image",
        "push",
        f"docker-archive:{archive}:example.com/adapter:1.0",
        ref,
        "--json",
        env={"MPKIT_CACHE_DIR": str(tmp_path / "fresh-cache")},
    ).json()
    assert again["digest"] == first["digest"]
    assert again["stats"]["blobs_uploaded"] == 0


def test_repush_uploads_nothing_and_sibling_repository_mounts(
    mpkit: Mpkit, registry_token: RegistryServer, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_oci_layout(src, "v1", LAYERS)
    host = registry_token.host
    first = push(mpkit, src, f"{host}/private/mount-a:v1", registry_token)
    assert first["stats"]["blobs_uploaded"] == 4
    again = push(mpkit, src, f"{host}/private/mount-a:v1", registry_token)
    assert again["stats"]["blobs_uploaded"] == 0
    assert again["stats"]["bytes_uploaded"] == 0
    assert again["stats"]["blobs_skipped"] == 4
    sibling = push(mpkit, src, f"{host}/private/mount-b:v1", registry_token)
    assert sibling["stats"]["blobs_uploaded"] == 0
    assert sibling["stats"]["blobs_mounted"] == 4
    assert sibling["digest"] == first["digest"]


def test_explicit_mount_from(mpkit: Mpkit, registry_open: RegistryServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_oci_layout(src, "v1", LAYERS)
    push(mpkit, src, f"{registry_open.host}/team/origin:v1", registry_open)
    fresh = Mpkit(root=tmp_path / "other-user", env=dict(mpkit.env))
    fresh.env["MPKIT_STATE_DIR"] = str(tmp_path / "other-state")  # no record of the first push
    result = push(fresh, src, f"{registry_open.host}/team/copy:v1", registry_open,
                  "--mount-from", "team/origin")  # fmt: skip
    assert result["stats"]["blobs_mounted"] == 4


def test_anonymous_inspect_public_ok_private_denied(
    mpkit: Mpkit, registry_token: RegistryServer, registry_basic: RegistryServer, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_oci_layout(src, "v1", LAYERS)
    host = registry_token.host
    push(mpkit, src, f"{host}/public/adapter:v1", registry_token)
    push(mpkit, src, f"{host}/private/adapter:v1", registry_token)
    push(mpkit, src, f"{registry_basic.host}/team/adapter:v1", registry_basic)

    public = mpkit.ok("image", "inspect", "--anonymous", "--json", f"{host}/public/adapter:v1")
    info = public.json()
    assert info["platform"] == "linux/amd64"
    assert len(info["layers"]) == 3

    for ref in (f"{host}/private/adapter:v1", f"{registry_basic.host}/team/adapter:v1"):
        # Stored credentials exist (env) but --anonymous must ignore them.
        denied = mpkit.run(
            "image", "inspect", "--anonymous", ref, env=creds_env(registry_basic.users)
        )
        assert denied.returncode == 1
        assert "anonymous pull" in denied.stderr
        assert "denied" in denied.stderr
        assert "make the repository public" in denied.stderr
        assert "Traceback" not in denied.output


def test_inspect_text_output(mpkit: Mpkit, registry_open: RegistryServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    digest = make_oci_layout(src, "v1", LAYERS)
    push(mpkit, src, f"{registry_open.host}/team/text:v1", registry_open)
    out = mpkit.ok("image", "inspect", f"{registry_open.host}/team/text:v1").stdout
    assert digest in out
    assert "linux/amd64" in out
    assert "3 layer(s)" in out


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_wrong_password_is_clear_and_never_echoed(
    mpkit: Mpkit, mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    registry: RegistryServer = request.getfixturevalue(f"registry_{mode}")
    src = tmp_path / "src"
    make_oci_layout(src, "v1", LAYERS)
    secret = "Wr0ng-Secret-Value-42"
    env = {"MPKIT_REGISTRY_USERNAME": "alice", "MPKIT_REGISTRY_PASSWORD": secret}
    for extra in ([], ["--json"], ["--debug"]):
        result = mpkit.run("image", "push", f"oci:{src}:v1", f"{registry.host}/team/x:v1",
                           *extra, env=env)  # fmt: skip
        assert result.returncode == 1, result.output
        assert "rejected the credentials" in result.output
        assert "alice" in result.output
        assert secret not in result.output
        assert "Traceback" not in result.output or extra == ["--debug"]


def test_expiring_tokens_do_not_break_a_long_push(
    mpkit: Mpkit, make_registry: object, make_fault_proxy: object, tmp_path: Path
) -> None:
    # A token lives more than 1 s and at most 2 s (its claims are in whole seconds).
    registry: RegistryServer = make_registry(mode="token", token_lifetime=2)  # type: ignore[operator]
    proxy: FaultProxy = make_fault_proxy(registry)  # type: ignore[operator]
    # Each blob upload takes 0.75 s more than it should: six blobs, one at a time, outlive
    # several tokens, and a new token always outlives the upload that follows it.
    proxy.delay("PUT", r"/blobs/uploads/", 0.75, times=None)
    src = tmp_path / "src"
    layers = [{f"layer{i}.txt": f"content {i}\n".encode() * 1000} for i in range(5)]
    digest = make_oci_layout(src, "v1", layers)
    result = mpkit.ok(
        "image", "push", f"oci:{src}:v1", f"{proxy.host}/private/slow:v1", "--json",
        "--concurrency", "1", env=creds_env(registry.users),
    )  # fmt: skip
    assert result.json()["digest"] == digest
    assert registry.token_server is not None
    issued = [r for r in registry.token_server.requests if r.username == "alice"]
    assert len(issued) >= 2, "the push should have outlived its first token"


def test_tls_trusts_certs_d_and_fails_closed_without_it(
    mpkit: Mpkit, registry_tls: RegistryServer, certs_d: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    digest = make_oci_layout(src, "v1", LAYERS)
    ref = f"{registry_tls.host}/team/tls:v1"
    with_ca = mpkit.ok("image", "push", f"oci:{src}:v1", ref, "--json",
                       env={"MPKIT_CERTS_D": str(certs_d)})  # fmt: skip
    assert with_ca.json()["digest"] == digest

    without = mpkit.run("image", "inspect", ref)
    assert without.returncode == 1
    assert "not trusted" in without.stderr
    assert "certs.d" in without.stderr
    assert "Traceback" not in without.output


def test_transient_503_and_429_are_retried(
    mpkit: Mpkit,
    registry_open: RegistryServer,
    make_fault_proxy: object,
    skopeo: Skopeo,
    tmp_path: Path,
) -> None:
    proxy: FaultProxy = make_fault_proxy(registry_open)  # type: ignore[operator]
    proxy.fail("PUT", r"/blobs/uploads/", 503, times=2, headers={"Retry-After": "1"})
    proxy.fail("HEAD", r"/blobs/sha256:", 429, times=2, headers={"Retry-After": "0"})
    proxy.fail("PUT", r"/manifests/", 503, times=1)
    src = tmp_path / "src"
    digest = make_oci_layout(src, "v1", LAYERS)
    result = mpkit.ok("image", "push", f"oci:{src}:v1", f"{proxy.host}/team/flaky:v1", "--json")
    data = result.json()
    assert data["digest"] == digest
    assert data["stats"]["retries"] >= 5
    args = skopeo.args_for(registry_open, "")
    info = json.loads(
        skopeo.run("inspect", *args, f"docker://{registry_open.host}/team/flaky:v1").stdout
    )
    assert info["Digest"] == digest


def test_persistent_failures_give_up_clearly(
    mpkit: Mpkit, registry_open: RegistryServer, make_fault_proxy: object, tmp_path: Path
) -> None:
    proxy: FaultProxy = make_fault_proxy(registry_open)  # type: ignore[operator]
    proxy.fail(None, r"/blobs/", 503, times=None, headers={"Retry-After": "0"})
    src = tmp_path / "src"
    make_oci_layout(src, "v1", LAYERS)
    result = mpkit.run("image", "push", f"oci:{src}:v1", f"{proxy.host}/team/down:v1",
                       "--retries", "3")  # fmt: skip
    assert result.returncode == 1
    assert "503" in result.stderr
    assert "3 tries" in result.stderr
    assert "Traceback" not in result.output
    # bounded: 3 tries per request, no endless loop
    assert proxy.count("HEAD", r"/blobs/") <= 3 * 4


@pytest.mark.parametrize("drops", [1, 2])
def test_broken_upload_stream_is_retried_whole(
    mpkit: Mpkit,
    registry_open: RegistryServer,
    make_fault_proxy: object,
    tmp_path: Path,
    drops: int,
) -> None:
    proxy: FaultProxy = make_fault_proxy(registry_open)  # type: ignore[operator]
    src = tmp_path / "src"
    noise = b"".join(hashlib.sha256(f"{drops}-{i}".encode()).digest() for i in range(20000))
    layers = [{"big.bin": noise}]  # incompressible: the body outlasts the cut
    digest = make_oci_layout(src, "v1", layers)
    layer_hex = load_source(f"oci:{src}:v1").layers[0].descriptor.digest.split(":")[1]
    proxy.drop("PUT", rf"/blobs/uploads/.*{layer_hex}", after_bytes=1000, times=drops,
               during="request")  # fmt: skip
    result = mpkit.ok("image", "push", f"oci:{src}:v1", f"{proxy.host}/team/dropped:v1", "--json")
    assert result.json()["digest"] == digest
    assert result.json()["stats"]["retries"] >= drops
    # Each cut-off upload starts over in a new session (two blobs: config and layer): the
    # session may hold part of the body.
    assert proxy.count("POST", r"/blobs/uploads/") == 2 + drops
    # Cut off twice, the blob goes in chunks (distribution-spec allows both); once could
    # be any transient failure.
    assert (proxy.count("PATCH", r"/blobs/uploads/") >= 1) == (drops == 2)


def test_unreachable_registry_and_bad_input(mpkit: Mpkit, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_oci_layout(src, "v1", LAYERS)
    from tests.fixtures.procs import free_port

    port = free_port()
    result = mpkit.run("image", "push", f"oci:{src}:v1", f"127.0.0.1:{port}/team/x:v1",
                       "--retries", "1")  # fmt: skip
    assert result.returncode == 1
    assert "cannot reach registry" in result.stderr

    bad_ref = mpkit.run("image", "push", f"oci:{src}:v1", "127.0.0.1:5000/Team/X:v1")
    assert bad_ref.returncode == 2
    assert "lowercase" in bad_ref.stderr

    bad_source = mpkit.run("image", "push", f"tarball:{src}", "127.0.0.1:5000/team/x:v1")
    assert bad_source.returncode == 2
    assert "oci:DIR" in bad_source.stderr

    missing = mpkit.run("image", "push", f"oci:{tmp_path / 'nope'}:v1", "127.0.0.1:5000/t/x:v1")
    assert missing.returncode == 1
    assert "nope" in missing.stderr

    no_args = mpkit.run("image", "push")
    assert no_args.returncode == 2


def test_oci_archive_source(
    mpkit: Mpkit, registry_open: RegistryServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    digest = make_oci_layout(src, "v1", LAYERS)
    archive = tmp_path / "image.tar"
    skopeo.copy(f"oci:{src}:v1", f"oci-archive:{archive}:v1")
    result = mpkit.ok("image", "push", f"oci-archive:{archive}:v1",
                      f"{registry_open.host}/team/archived:v1", "--json")  # fmt: skip
    assert result.json()["digest"] == digest


def test_multi_platform_index_pull_and_inspect(
    mpkit: Mpkit, registry_open: RegistryServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    index_digest, children = make_multiplatform_layout(src, "multi")
    ref = f"{registry_open.host}/team/multi:v1"
    skopeo.copy(
        f"oci:{src}:multi",
        f"docker://{ref}",
        dest_args=["--all", *skopeo.args_for(registry_open, "dest")],
    )
    info = mpkit.ok("image", "inspect", ref, "--json").json()
    assert info["digest"] == index_digest
    assert info["index"]["platforms"] == ["linux/amd64", "linux/arm64/v8"]
    assert info["manifest"]["digest"] == children["linux/amd64"]

    dest = tmp_path / "arm"
    pulled = mpkit.ok("image", "pull", ref, f"oci:{dest}:arm", "--platform", "linux/arm64",
                      "--json").json()  # fmt: skip
    assert pulled["digest"] == children["linux/arm64/v8"]
    assert pulled["index_digest"] == index_digest
    local = json.loads(skopeo.run("inspect", f"oci:{dest}:arm").stdout)
    assert local["Architecture"] == "arm64"

    missing = mpkit.run("image", "inspect", ref, "--platform", "linux/s390x")
    assert missing.returncode == 1
    assert "linux/arm64" in missing.stderr  # lists what is available


def test_identity_and_registry_tokens_from_docker_config(
    mpkit: Mpkit, registry_token: RegistryServer, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    digest = make_oci_layout(src, "v1", LAYERS)
    server = registry_token.token_server
    assert server is not None
    host = registry_token.host
    refresh = server.refresh_token_for("alice")
    mpkit.docker_config.write_text(json.dumps({"auths": {host: {"identitytoken": refresh}}}))
    server.clear_requests()
    pushed = mpkit.ok("image", "push", f"oci:{src}:v1", f"{host}/private/idtoken:v1", "--json")
    assert pushed.json()["digest"] == digest
    assert {r.grant_type for r in server.requests} == {"refresh_token"}
    assert refresh not in pushed.output

    bearer = server.issue("alice", ["repository:private/idtoken:pull"])
    mpkit.docker_config.write_text(json.dumps({"auths": {host: {"registrytoken": bearer}}}))
    server.clear_requests()
    info = mpkit.ok("image", "inspect", f"{host}/private/idtoken:v1", "--json").json()
    assert info["digest"] == digest
    assert server.requests == []  # the registry token is used as-is


def test_loopback_registries_bypass_environment_proxies(
    mpkit: Mpkit, registry_open: RegistryServer, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    digest = make_oci_layout(src, "v1", LAYERS)
    dead_proxy = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
                  "ALL_PROXY": "http://127.0.0.1:9"}  # fmt: skip
    result = mpkit.ok("image", "push", f"oci:{src}:v1", f"{registry_open.host}/team/noproxy:v1",
                      "--json", env=dead_proxy)  # fmt: skip
    assert result.json()["digest"] == digest
