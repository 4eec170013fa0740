"""The auth layer on its own: Basic and Bearer challenges answered by an ``httpx.Auth``,
tokens cached by scope and fetched once per scope set (httpx.MockTransport)."""

from __future__ import annotations

import base64
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from mpkit.credentials import Credential
from mpkit.errors import AccessDeniedError, AuthenticationError, RegistryProtocolError
from mpkit.registry.auth import Challenge, parse_challenges
from mpkit.registry.authflow import Authenticator, RegistryAuth
from mpkit.registry.retrying import Retrying
from tests.registry.test_retrying import QUICK

REGISTRY = "registry.example.com"
REALM = "https://auth.example.com/token"
PUSH = "repository:team/app:pull,push"
SOURCE = "repository:team/base:pull"
ALICE = Credential(username="alice", password="s3cret-Pa55", source="test")
ALICE_BASIC = "Basic " + base64.b64encode(b"alice:s3cret-Pa55").decode()
BEARER = Challenge("bearer", {"realm": REALM, "service": "registry"})
BASIC = Challenge("basic", {"realm": "Registry"})


@dataclass
class Server:
    """A registry and its token service. Tokens are ``tok-N`` and grant the scopes they
    were asked for; *wants* maps a path to the scope it needs (default: PUSH)."""

    token_status: list[int] = field(default_factory=list)  # answers before a token
    wants: dict[str, str] = field(default_factory=dict)
    basic_only: bool = False
    reject_tokens: int = 0  # answer 401 to this many token-carrying requests
    token_gate: threading.Event | None = None
    issued: dict[str, frozenset[str]] = field(default_factory=dict)
    token_requests: list[httpx.Request] = field(default_factory=list)
    api_requests: list[httpx.Request] = field(default_factory=list)
    api_auth: list[str | None] = field(default_factory=list)  # as sent (the request is reused)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.com":
            return self._token(request)
        with self.lock:
            self.api_requests.append(request)
            self.api_auth.append(request.headers.get("authorization"))
        given = request.headers.get("authorization", "")
        if self.basic_only:
            if given == ALICE_BASIC:
                return httpx.Response(200)
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="Registry"'})
        needed = self.wants.get(request.url.path, PUSH)
        granted = self.issued.get(given.removeprefix("Bearer "), frozenset())
        with self.lock:
            reject = self.reject_tokens > 0 and bool(granted)
            self.reject_tokens -= reject
        if needed in granted and not reject:
            return httpx.Response(200)
        challenge = f'Bearer realm="{REALM}",service="registry",scope="{needed}"'
        if granted and not reject:
            challenge += ',error="insufficient_scope"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    def _token(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.token_requests.append(request)
            status = self.token_status.pop(0) if self.token_status else 200
        if self.token_gate is not None:
            self.token_gate.wait(5)
        if status != 200:
            return httpx.Response(status)
        if request.method == "POST":
            form = urllib.parse.parse_qs(request.read().decode())
            scopes = form.get("scope", [""])[0].split()
        else:
            scopes = request.url.params.get_list("scope")
        with self.lock:
            token = f"tok-{len(self.issued)}"
            self.issued[token] = frozenset(scopes)
        return httpx.Response(200, json={"token": token, "expires_in": 300})


def authenticator(
    server: Server,
    credential: Credential | None = ALICE,
    challenge: Challenge | None = BEARER,
    *,
    plain_http_allowed: bool = False,
) -> Authenticator:
    layer = Retrying(
        REGISTRY, connect=lambda: httpx.Client(transport=httpx.MockTransport(server)), policy=QUICK
    )
    return Authenticator(
        REGISTRY,
        credentials=(lambda: credential) if credential is not None else None,
        challenge=lambda: challenge,
        retrying=layer,
        plain_http_allowed=plain_http_allowed,
    )


def call(auth: Authenticator, path: str = "/v2/team/app/blobs/uploads/",
         scopes: tuple[str, ...] = (PUSH,)) -> httpx.Response:  # fmt: skip
    client = auth._retrying.client
    request = client.build_request("POST", f"https://{REGISTRY}{path}")
    flow = RegistryAuth(auth, scopes, action="push", repository="team/app")
    return auth._retrying.send(request, auth=flow)


def token_scopes(request: httpx.Request) -> list[str]:
    return request.url.params.get_list("scope")


def test_basic_credentials_go_with_each_request() -> None:
    server = Server(basic_only=True)
    auth = authenticator(server, challenge=BASIC)
    assert call(auth).status_code == 200
    assert server.api_auth == [ALICE_BASIC]
    assert server.token_requests == []


def test_refused_basic_credentials_are_sent_once() -> None:
    server = Server(basic_only=True)
    wrong = Credential(username="alice", password="wrong", source="test")
    assert call(authenticator(server, wrong, BASIC)).status_code == 401
    assert len(server.api_requests) == 1


def test_one_bearer_token_per_scope_set() -> None:
    server = Server()
    auth = authenticator(server)
    for _ in range(3):
        assert call(auth).status_code == 200
    (asked,) = server.token_requests
    assert token_scopes(asked) == [PUSH]
    assert asked.url.params["service"] == "registry"
    assert asked.headers["authorization"] == ALICE_BASIC
    assert server.api_auth == ["Bearer tok-0"] * 3


def test_parallel_requests_share_one_token_request() -> None:
    server = Server(token_gate=threading.Event())
    auth = authenticator(server)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(call(auth).status_code)) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    while not server.token_requests:  # the first token request is in flight
        threading.Event().wait(0.01)
    assert server.token_gate is not None
    server.token_gate.set()
    for thread in threads:
        thread.join()
    assert results == [200] * 8
    assert len(server.token_requests) == 1


def test_insufficient_scope_fetches_a_token_with_the_scope_asked_for() -> None:
    mount = "/v2/team/app/blobs/uploads/?mount=sha256:abc&from=team/base"
    server = Server(wants={"/v2/team/app/blobs/uploads/": SOURCE})
    assert call(authenticator(server), mount).status_code == 200
    assert [token_scopes(r) for r in server.token_requests] == [[PUSH], [PUSH, SOURCE]]
    assert len(server.api_requests) == 2


def test_a_rejected_token_is_replaced_once_then_the_answer_returned() -> None:
    server = Server(reject_tokens=1)
    assert call(authenticator(server)).status_code == 200
    assert len(server.token_requests) == 2

    server = Server(reject_tokens=99)
    assert call(authenticator(server)).status_code == 401  # bounded: no loop
    assert len(server.token_requests) == 2


def test_an_open_api_with_a_protected_resource_adopts_its_challenge() -> None:
    server = Server(basic_only=True)
    auth = authenticator(server, challenge=None)  # GET /v2/ answered 200
    assert call(auth).status_code == 200
    assert server.api_auth == [None, ALICE_BASIC]
    assert auth.challenge == parse_challenges(['Basic realm="Registry"'])[0]


@pytest.mark.parametrize("status", [503, 429])
def test_a_failing_token_service_is_retried(status: int) -> None:
    server = Server(token_status=[status])
    assert call(authenticator(server)).status_code == 200
    assert len(server.token_requests) == 2


def test_rejected_credentials_name_the_user_never_the_secret() -> None:
    server = Server(token_status=[401])
    with pytest.raises(AuthenticationError) as info:
        call(authenticator(server))
    assert "user 'alice'" in info.value.message
    assert ALICE.password is not None
    assert ALICE.password not in str(info.value.to_dict())


def test_anonymous_refusal_is_access_denied() -> None:
    server = Server(token_status=[403])
    with pytest.raises(AccessDeniedError) as info:
        call(authenticator(server, None))
    assert info.value.anonymous


@pytest.mark.parametrize("allowed", [False, True])
def test_credentials_never_go_to_a_plain_http_realm_unless_allowed(allowed: bool) -> None:
    server = Server()
    plain = Challenge("bearer", {"realm": "http://auth.example.com/token", "service": "registry"})
    auth = authenticator(server, challenge=plain, plain_http_allowed=allowed)
    if allowed:
        assert call(auth).status_code == 200
        return
    with pytest.raises(RegistryProtocolError) as info:
        call(auth)
    assert "plain-HTTP token service (http://auth.example.com)" in info.value.message
    assert server.token_requests == []
    # Anonymous token requests carry nothing secret: allowed.
    assert call(authenticator(Server(), None, plain)).status_code == 200


def test_a_registry_token_is_used_as_is() -> None:
    server = Server()
    server.issued["stored-token"] = frozenset({PUSH})
    credential = Credential(registry_token="stored-token", source="test")
    assert call(authenticator(server, credential)).status_code == 200
    assert server.token_requests == []


@pytest.mark.parametrize("post_status", [200, 404])
def test_an_identity_token_is_exchanged_by_oauth_post_or_get(post_status: int) -> None:
    server = Server(token_status=[post_status] if post_status != 200 else [])
    credential = Credential(identity_token="id-tok-3141", source="test")
    assert call(authenticator(server, credential)).status_code == 200
    first = server.token_requests[0]
    assert first.method == "POST"
    form = urllib.parse.parse_qs(first.read().decode())
    assert form["grant_type"] == ["refresh_token"]
    assert form["refresh_token"] == ["id-tok-3141"]
    if post_status == 404:
        assert server.token_requests[1].method == "GET"
        assert server.token_requests[1].headers["authorization"].startswith("Basic ")


def test_no_secret_reaches_the_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    server = Server(reject_tokens=1)
    with caplog.at_level(logging.DEBUG):
        call(authenticator(server))
    logged = caplog.text
    assert logged
    assert ALICE.password is not None
    for secret in (ALICE.password, ALICE_BASIC.split()[1], "tok-0", "tok-1"):
        assert secret not in logged


def test_a_token_response_without_a_token_is_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.com":
            return httpx.Response(200, content=json.dumps({"nothing": 1}).encode())
        return httpx.Response(401)

    server: Callable[[httpx.Request], httpx.Response] = handler
    layer = Retrying(
        REGISTRY, connect=lambda: httpx.Client(transport=httpx.MockTransport(server)), policy=QUICK
    )
    auth = Authenticator(REGISTRY, credentials=None, challenge=lambda: BEARER, retrying=layer,
                         plain_http_allowed=False)  # fmt: skip
    with pytest.raises(RegistryProtocolError, match="returned no token"):
        call(auth)
