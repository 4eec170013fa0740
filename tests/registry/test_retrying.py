"""The retry layer on its own (httpx.MockTransport): what is retried, how often, what is
final at once, and what a failure that remains says."""

from __future__ import annotations

import errno
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from mpkit.errors import (
    Failure,
    NoAnswerError,
    RegistryUnreachableError,
    RetriesExhaustedError,
    TLSVerificationError,
)
from mpkit.registry.retry import RetryPolicy
from mpkit.registry.retrying import Retrying, TransferAborted, classify
from mpkit.registry.stats import TransferStats

QUICK = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.002)
URL = "https://registry.example.com/v2/team/app/blobs/sha256:abc"

Step = Callable[[httpx.Request], httpx.Response]


@dataclass
class Script:
    """A MockTransport handler that plays *steps* in order and records each request."""

    steps: list[Step]
    requests: list[httpx.Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(request.read())
        step = self.steps[min(len(self.requests), len(self.steps)) - 1]
        return step(request)


def answer(status: int, **kwargs: object) -> Step:
    return lambda request: httpx.Response(status, **kwargs)  # type: ignore[arg-type]


def fail(error: type[httpx.TransportError], cause: BaseException | None = None) -> Step:
    def step(request: httpx.Request) -> httpx.Response:
        raise error("boom", request=request) from cause

    return step


RESET = fail(httpx.ReadError, ConnectionResetError(errno.ECONNRESET, "Connection reset"))
REFUSED = fail(httpx.ConnectError, ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
TIMEOUT = fail(httpx.ReadTimeout)


def retrying(script: Script, policy: RetryPolicy = QUICK) -> Retrying:
    return Retrying(
        "registry.example.com",
        connect=lambda: httpx.Client(transport=httpx.MockTransport(script)),
        policy=policy,
    )


def send(
    script: Script, method: str = "HEAD", *, policy: RetryPolicy = QUICK, **kwargs: object
) -> httpx.Response:
    layer = retrying(script, policy)
    request = layer.client.build_request(method, URL, content=kwargs.pop("content", None))  # type: ignore[arg-type]
    return layer.send(request, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("transient", [503, 429, 408, 500, 502, 504])
def test_a_transient_answer_is_retried_until_one_is_not(transient: int) -> None:
    script = Script([answer(transient), answer(transient), answer(200)])
    stats = TransferStats()
    assert send(script, stats=stats).status_code == 200
    assert len(script.requests) == 3
    assert stats.retries == 2


@pytest.mark.parametrize("final", [200, 201, 400, 401, 403, 404, 416])
def test_other_answers_are_returned_at_once(final: int) -> None:
    script = Script([answer(final)])
    assert send(script).status_code == final
    assert len(script.requests) == 1


@pytest.mark.parametrize("failure", [RESET, TIMEOUT, fail(httpx.RemoteProtocolError)])
def test_a_broken_connection_is_retried(failure: Step) -> None:
    script = Script([failure, failure, answer(200)])
    assert send(script).status_code == 200
    assert len(script.requests) == 3


def test_a_body_is_sent_whole_on_every_try() -> None:
    class Body:  # iterable more than once, like an upload body
        def __iter__(self) -> Iterator[bytes]:
            yield from (b"first-", b"second")

    script = Script([RESET, answer(503), answer(201)])
    assert send(script, "PUT", content=Body()).status_code == 201
    assert script.bodies == [b"first-second"] * 3


def test_a_refused_connection_is_final_at_once() -> None:
    script = Script([REFUSED])
    with pytest.raises(NoAnswerError) as info:
        send(script)
    assert info.value.failure is Failure.UNREACHABLE
    assert len(script.requests) == 1
    assert "cannot reach registry registry.example.com" in info.value.message
    assert "HEAD /v2/team/app/blobs/sha256:abc" in info.value.message


def test_tls_to_a_plain_http_server_is_final_with_the_insecure_hint() -> None:
    plain = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    script = Script([fail(httpx.ConnectError, plain)])
    with pytest.raises(NoAnswerError) as info:
        send(script)
    assert info.value.failure is Failure.PLAIN_HTTP
    assert len(script.requests) == 1
    assert info.value.hint is not None
    assert "--insecure-registry registry.example.com" in info.value.hint


def test_an_untrusted_certificate_fails_closed_with_the_certs_d_hint() -> None:
    untrusted = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] self-signed")
    script = Script([fail(httpx.ConnectError, untrusted)])
    with pytest.raises(TLSVerificationError) as info:
        send(script)
    assert len(script.requests) == 1
    assert info.value.hint is not None
    assert "/etc/docker/certs.d/registry.example.com/ca.crt" in info.value.hint


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), Failure.UNREACHABLE),
        (socket.gaierror(socket.EAI_AGAIN, "Temporary failure"), Failure.TRANSIENT),
        (OSError(errno.EHOSTUNREACH, "No route to host"), Failure.UNREACHABLE),
        (ConnectionResetError(errno.ECONNRESET, "reset"), Failure.TRANSIENT),
        (TimeoutError("timed out"), Failure.TRANSIENT),
        (ssl.SSLError(1, "[SSL: RECORD_LAYER_FAILURE] record layer failure"), Failure.PLAIN_HTTP),
        (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), Failure.TRANSIENT),
    ],
)
def test_classify_by_cause(cause: BaseException, expected: Failure) -> None:
    try:
        raise httpx.ConnectError("connect failed") from cause
    except httpx.ConnectError as exc:
        assert classify(exc) is expected


def test_persistent_answers_name_the_request_and_the_last_answer() -> None:
    body = {"errors": [{"code": "UNAVAILABLE", "message": "maintenance until noon"}]}
    script = Script([answer(503, json=body)])
    with pytest.raises(RetriesExhaustedError) as info:
        send(script, "GET")
    message = info.value.message
    assert "GET /v2/team/app/blobs/sha256:abc answered HTTP 503 on each of 4 tries" in message
    assert "maintenance until noon" in message
    assert info.value.status == 503
    assert len(script.requests) == QUICK.attempts


def test_mixed_failures_name_the_last_answer_and_the_last_drop() -> None:
    script = Script([answer(429), answer(503), RESET, RESET])
    with pytest.raises(RetriesExhaustedError) as info:
        send(script)
    message = info.value.message
    assert "HEAD /v2/team/app/blobs/sha256:abc failed on each of 4 tries" in message
    assert "the last answer was HTTP 503" in message
    assert "the last try got no answer" in message
    assert info.value.status == 503


def test_a_connection_that_keeps_breaking_names_the_request() -> None:
    script = Script([RESET])
    with pytest.raises(NoAnswerError) as info:
        send(script)
    assert info.value.failure is Failure.TRANSIENT
    assert "did not answer HEAD /v2/team/app/blobs/sha256:abc on any of 4 tries" in (
        info.value.message
    )
    assert "insecure" not in (info.value.hint or "")


def test_rate_limiting_gets_its_own_hint() -> None:
    script = Script([answer(429, headers={"RateLimit-Remaining": "0;w=21600"})])
    with pytest.raises(RetriesExhaustedError) as info:
        send(script)
    assert "rate limit" in info.value.message
    assert info.value.hint is not None and "rate-limiting" in info.value.hint


def test_retry_after_is_honoured_and_too_long_a_wait_gives_up_at_once() -> None:
    assert RetryPolicy().delay(1, "3") == 3.0
    assert RetryPolicy(max_retry_after=5).delay(1, "600") == 5.0
    script = Script([answer(503, headers={"Retry-After": "3600"})])
    with pytest.raises(RetriesExhaustedError) as info:
        send(script)
    assert len(script.requests) == 1
    assert "asked to wait 3600 s" in info.value.message


def test_a_caller_that_starts_over_itself_gets_the_transient_answer() -> None:
    script = Script([answer(503)])
    assert send(script, "PUT", attempts=1, return_transient=True).status_code == 503
    script = Script([RESET])
    with pytest.raises(RegistryUnreachableError):
        send(script, "PUT", attempts=1, return_transient=True)
    assert len(script.requests) == 1


def test_one_try_that_fails_is_an_error_naming_the_answer() -> None:
    script = Script([answer(429)])
    with pytest.raises(RetriesExhaustedError) as info:
        send(script, attempts=1)
    assert "HEAD /v2/team/app/blobs/sha256:abc answered HTTP 429" in info.value.message


def test_backoff_grows_and_is_jittered() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 8.0)]:
        delays = {policy.delay(attempt) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1


def test_abort_stops_a_request_waiting_to_retry() -> None:
    slow = RetryPolicy(attempts=3, base_delay=30.0, max_delay=30.0)
    script = Script([answer(503)])
    layer = retrying(script, slow)
    request = layer.client.build_request("GET", URL)
    threading.Timer(0.1, layer.abort.set).start()
    with pytest.raises(TransferAborted):
        layer.send(request)
    assert len(script.requests) == 1
