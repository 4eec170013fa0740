"""Scheme detection and challenge discovery on their own (httpx.MockTransport)."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import httpx
import pytest

from mpkit.errors import RegistryProtocolError, RegistryUnreachableError, RetriesExhaustedError
from mpkit.registry.ping import Ping, ping, probe_order
from mpkit.registry.retry import RetryPolicy
from mpkit.registry.retrying import Retrying
from tests.registry.test_retrying import QUICK, REFUSED, RESET, Script, Step, answer, fail

HOST = "registry.example.com:5000"
BEARER = 'Bearer realm="https://auth.example.com/token",service="registry"'
PLAIN_HTTP = fail(
    httpx.ConnectError, ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
)


def by_scheme(**steps: list[Step]) -> Callable[[httpx.Request], httpx.Response]:
    """A handler answering each scheme with its own script; all requests in ``seen``."""
    scripts = {scheme: Script(list(script)) for scheme, script in steps.items()}

    def handle(request: httpx.Request) -> httpx.Response:
        handle.seen.append(f"{request.method} {request.url}")  # type: ignore[attr-defined]
        return scripts[request.url.scheme](request)

    handle.seen = []  # type: ignore[attr-defined]
    return handle


def run_ping(
    handler: Callable[[httpx.Request], httpx.Response],
    schemes: list[str],
    policy: RetryPolicy = QUICK,
) -> Ping:
    layer = Retrying(
        HOST, connect=lambda: httpx.Client(transport=httpx.MockTransport(handler)), policy=policy
    )
    return ping(layer, endpoint=HOST, schemes=schemes)


def seen(handler: Callable[[httpx.Request], httpx.Response]) -> list[str]:
    return list(handler.seen)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("allowed", "first", "expected"),
    [(False, False, ["https"]), (False, True, ["https"]), (True, False, ["https", "http"]),
     (True, True, ["http", "https"])],
)  # fmt: skip
def test_probe_order(allowed: bool, first: bool, expected: list[str]) -> None:
    assert probe_order(plain_http_allowed=allowed, plain_http_first=first) == expected


def test_an_open_registry() -> None:
    handler = by_scheme(https=[answer(200)])
    assert run_ping(handler, ["https", "http"]) == Ping(f"https://{HOST}", None)
    assert seen(handler) == [f"GET https://{HOST}/v2/"]


def test_a_challenge_is_learned_bearer_preferred() -> None:
    headers = [("WWW-Authenticate", 'Basic realm="r"'), ("WWW-Authenticate", BEARER)]
    handler = by_scheme(http=[answer(401, headers=headers)])
    result = run_ping(handler, ["http", "https"])
    assert result.base_url == f"http://{HOST}"
    assert result.challenge is not None and result.challenge.scheme == "bearer"
    assert result.challenge.realm == "https://auth.example.com/token"


# What the other scheme meets: TLS to a plain-HTTP server, plain HTTP to a TLS port.
MISMATCH = {"https": PLAIN_HTTP, "http": answer(400)}


@pytest.mark.parametrize("first", [answer(503), answer(429), RESET])
@pytest.mark.parametrize("schemes", [["http", "https"], ["https", "http"]])
def test_one_transient_failure_stays_on_the_scheme(first: Step, schemes: list[str]) -> None:
    right, wrong = schemes
    handler = by_scheme(**{right: [first, answer(200)], wrong: [MISMATCH[wrong]]})
    assert run_ping(handler, schemes).base_url == f"{right}://{HOST}"
    assert seen(handler).count(f"GET {right}://{HOST}/v2/") == 2
    if right == "https" or first is not RESET:
        # Never given up for http on a transient fault; and an answer proves the scheme.
        assert all(f"{wrong}://" not in request for request in seen(handler))


def test_https_is_tried_in_the_same_rounds_when_plain_http_never_answers() -> None:
    """A TLS-only loopback registry that drops plain-HTTP connections (Python's ssl
    does) is found at once, not after every try of http."""
    handler = by_scheme(http=[RESET], https=[answer(200)])
    assert run_ping(handler, ["http", "https"]).base_url == f"https://{HOST}"
    assert seen(handler) == [f"GET http://{HOST}/v2/", f"GET https://{HOST}/v2/"]


def test_a_registry_that_is_down_costs_one_round_of_retries_not_two() -> None:
    handler = by_scheme(http=[RESET], https=[RESET])
    with pytest.raises(RegistryUnreachableError) as info:
        run_ping(handler, ["http", "https"])
    assert len(seen(handler)) == 2 * QUICK.attempts  # both schemes in each round
    assert f"did not answer GET /v2/ on any of {QUICK.attempts} tries" in info.value.message


def test_an_answer_that_keeps_failing_is_the_error_not_the_other_scheme() -> None:
    handler = by_scheme(http=[answer(503)], https=[PLAIN_HTTP])
    with pytest.raises(RetriesExhaustedError) as info:
        run_ping(handler, ["http", "https"])
    assert "GET /v2/ answered HTTP 503" in info.value.message
    assert "--insecure-registry" not in (info.value.hint or "")
    assert all("https://" not in request for request in seen(handler))


def test_with_one_try_a_transient_answer_still_proves_the_scheme() -> None:
    handler = by_scheme(http=[answer(503)], https=[answer(200)])
    with pytest.raises(RetriesExhaustedError) as info:
        run_ping(handler, ["http", "https"], RetryPolicy(attempts=1))
    assert "GET /v2/ answered HTTP 503" in info.value.message
    assert seen(handler) == [f"GET http://{HOST}/v2/"]


def test_a_tls_port_answering_plain_http_with_400_moves_to_https() -> None:
    handler = by_scheme(http=[answer(400)], https=[answer(200)])
    assert run_ping(handler, ["http", "https"]).base_url == f"https://{HOST}"


def test_a_plain_http_server_moves_https_to_http_at_once() -> None:
    handler = by_scheme(https=[PLAIN_HTTP], http=[answer(200)])
    assert run_ping(handler, ["https", "http"]).base_url == f"http://{HOST}"
    assert seen(handler) == [f"GET https://{HOST}/v2/", f"GET http://{HOST}/v2/"]


def test_a_connection_that_keeps_breaking_is_retried_before_the_other_scheme() -> None:
    handler = by_scheme(http=[RESET], https=[PLAIN_HTTP])
    with pytest.raises(RegistryUnreachableError) as info:
        run_ping(handler, ["http", "https"])
    assert seen(handler).count(f"GET http://{HOST}/v2/") == QUICK.attempts
    # The http failure says more than https's "plain HTTP" (which http is, and allowed).
    assert "did not answer GET /v2/" in info.value.message
    assert "--insecure-registry" not in (info.value.hint or "")


def test_https_only_to_a_plain_http_server_gives_the_insecure_hint() -> None:
    handler = by_scheme(https=[PLAIN_HTTP])
    with pytest.raises(RegistryUnreachableError) as info:
        run_ping(handler, ["https"])
    assert info.value.hint is not None
    assert f"--insecure-registry {HOST}" in info.value.hint


def test_nothing_listening_is_not_retried() -> None:
    handler = by_scheme(http=[REFUSED], https=[REFUSED])
    with pytest.raises(RegistryUnreachableError) as info:
        run_ping(handler, ["http", "https"])
    assert len(seen(handler)) == 2
    assert f"cannot reach registry {HOST}" in info.value.message


def test_something_else_answering_is_a_protocol_error() -> None:
    handler = by_scheme(https=[answer(404)])
    with pytest.raises(RegistryProtocolError) as info:
        run_ping(handler, ["https"])
    assert "does not look like a container registry" in info.value.message
