"""Anonymous pull, authenticated push: htpasswd (bcrypt), Basic and the built-in token service."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from mpkit.credentials import Credential
from mpkit.errors import ConfigError, MpkitError
from mpkit.image.source import load_source
from mpkit.reference import parse_reference
from mpkit.registry import ClientOptions, inspect_image, open_client, push_image
from mpkit.server import Server, ServerConfig
from mpkit.server.apierrors import ApiError
from mpkit.server.auth import ANONYMOUS, Htpasswd, TokenSigner
from tests.image.builders import make_oci_layout
from tests.server.conftest import MakeServer
from tests.server.helpers import USERS, client, error_codes, write_htpasswd
from tests.server.helpers import push_image as push_raw


@pytest.fixture
def auth_server(make_server: MakeServer, tmp_path: Path) -> Server:
    return make_server(htpasswd=write_htpasswd(tmp_path / "htpasswd"))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "not a bcrypt hash"),
        ("alice:$apr1$abc$def\n", "not a bcrypt hash"),
        ("just-a-name\n", "expected 'user:hash'"),
        ("# only a comment\n", "has no users"),
    ],
)
def test_htpasswd_files_other_than_bcrypt_are_refused(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        Htpasswd.load(path)
    assert problem in caught.value.message
    assert "htpasswd -B" in (caught.value.hint or "")
    config = ServerConfig(root=tmp_path / "root", port=0, htpasswd=path)
    with pytest.raises(ConfigError):
        Server(config).start()
    assert "secret" not in str(caught.value)


def test_ping_challenges_with_the_token_service(auth_server: Server) -> None:
    with client(auth_server.url) as http:
        ping = http.get("/v2/")
        assert ping.status_code == 401
        assert ping.headers["WWW-Authenticate"] == (
            f'Bearer realm="http://{auth_server.address}/token",service="mpkit-registry"'
        )
        assert http.get("/v2/", auth=("alice", USERS["alice"])).status_code == 200
        assert http.get("/v2/", auth=("alice", "nope")).status_code == 401
        assert http.get("/token", auth=("alice", "nope")).status_code == 401


def test_tokens_grant_pull_to_anyone_and_push_to_users(auth_server: Server) -> None:
    scope = {"scope": "repository:team/app:pull,push", "service": "mpkit-registry"}
    with client(auth_server.url) as http:
        anonymous = http.get("/token", params=scope).json()["token"]
        user = http.get("/token", params=scope, auth=("alice", USERS["alice"])).json()["token"]
        other = http.get(
            "/token",
            params={"scope": "repository:other:pull,push"},
            auth=("alice", USERS["alice"]),
        ).json()["token"]
        refused = http.post(
            "/v2/team/app/blobs/uploads/", headers={"Authorization": f"Bearer {anonymous}"}
        )
        assert refused.status_code == 401
        assert 'scope="repository:team/app:pull,push"' in refused.headers["WWW-Authenticate"]
        wrong_repo = http.post(
            "/v2/team/app/blobs/uploads/", headers={"Authorization": f"Bearer {other}"}
        )
        assert wrong_repo.status_code == 401
    with client(auth_server.url, headers={"Authorization": f"Bearer {user}"}) as http:
        image = push_raw(http, "team/app", "v1")
    with client(auth_server.url) as http:  # pulls need nothing
        assert http.get(f"/v2/team/app/manifests/{image.digest}").content == image.manifest
        podman_style = {"Authorization": "Basic " + base64.b64encode(b":").decode()}
        assert http.get("/v2/team/app/manifests/v1", headers=podman_style).status_code == 200


def test_basic_credentials_work_directly_and_by_oauth_form(auth_server: Server) -> None:
    with client(auth_server.url, auth=("alice", USERS["alice"])) as http:
        push_raw(http, "direct", "v1")
    with client(auth_server.url) as http:
        form = {
            "grant_type": "password",
            "username": "alice",
            "password": USERS["alice"],
            "scope": "repository:form:pull,push",
            "service": "mpkit-registry",
        }
        token = http.post("/token", data=form).json()["access_token"]
        refresh = http.post("/token", data={"grant_type": "refresh_token", "refresh_token": "x"})
        assert refresh.status_code == 400
    with client(auth_server.url, headers={"Authorization": f"Bearer {token}"}) as http:
        push_raw(http, "form", "v1")


def test_tokens_outlive_a_restart_and_expire(make_server: MakeServer, tmp_path: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd")
    first = make_server(htpasswd=htpasswd)
    with client(first.url) as http:
        token = http.get(
            "/token", params={"scope": "repository:kept:push"}, auth=("alice", USERS["alice"])
        ).json()["token"]
    first.shutdown()
    assert (tmp_path / "root" / "token.key").stat().st_mode & 0o777 == 0o600
    second = make_server(htpasswd=htpasswd)
    with client(second.url, headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.post("/v2/kept/blobs/uploads/").status_code == 202
    signer = TokenSigner.from_root(tmp_path / "root")
    issued = signer.issue("alice", [], now=1000.0)
    assert signer.verify(issued, now=1001.0) is not None
    assert signer.verify(issued, now=1000.0 + 10**6) is None
    assert signer.verify(issued[:-2] + "xx", now=1001.0) is None


def test_mpkit_pushes_with_a_login_and_pulls_anonymously(
    auth_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MPKIT_STATE_DIR", str(tmp_path / "state"))
    digest = make_oci_layout(tmp_path / "layout", "v1")
    image = load_source(f"oci:{tmp_path / 'layout'}:v1")
    target = parse_reference(f"{auth_server.address}/team/adapter:1.0.0")
    options = ClientOptions()
    with (
        pytest.raises(MpkitError),
        open_client(target.registry, options=options, anonymous=True) as anonymous,
    ):
        push_image(anonymous, image, target)
    login = Credential(username="alice", password=USERS["alice"], source="test")
    with open_client(target.registry, options=options, explicit=login) as pusher:
        assert push_image(pusher, image, target).digest == digest
    with open_client(target.registry, options=options, anonymous=True) as puller:
        assert inspect_image(puller, target)["digest"] == digest


def test_open_mode_denies_writes_from_other_machines(server: Server) -> None:
    authorizer = server.httpd.api.authorizer  # type: ignore[union-attr]
    authorizer.require_write(ANONYMOUS, "a", peer_loopback=True, realm="r")
    with pytest.raises(ApiError) as caught:
        authorizer.require_write(ANONYMOUS, "a", peer_loopback=False, realm="r")
    assert caught.value.status == 403
    assert caught.value.code == "DENIED"


def test_error_body_names_the_code(auth_server: Server) -> None:
    with client(auth_server.url) as http:
        assert error_codes(http.put("/v2/a/manifests/v1", content=b"{}")) == ["UNAUTHORIZED"]
