"""The retry layer: send one request, again after transient failures, with backoff.

Transient (distribution-spec and RFC 9110): 408, 429 and 5xx answers, and a connection
that broke or timed out. Retry-After is honoured. A connection that cannot be made at
all (refused, unknown host), TLS spoken to a plain-HTTP server and an untrusted
certificate are final at once: trying again would fail the same way.

The request is sent again as it is, so its body must be bytes or an iterable that can
be iterated more than once; a request whose body cannot be repeated safely (an upload
into a session) is sent with ``attempts=1``, and its caller starts over instead.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Union

import httpx

from mpkit.errors import (
    Failure,
    NoAnswerError,
    RegistryError,
    RetriesExhaustedError,
    TLSVerificationError,
)
from mpkit.registry.responses import error_detail, rate_limit_note
from mpkit.registry.retry import RETRYABLE_STATUS, RetryPolicy, parse_retry_after
from mpkit.registry.stats import TransferStats

log = logging.getLogger("mpkit.registry")

# OpenSSL's words for "the peer does not speak TLS" (it answered in plain HTTP).
_PLAIN_HTTP_REASONS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG",
                       "HTTP_REQUEST", "UNKNOWN_PROTOCOL")  # fmt: skip
Outcome = Union[httpx.Response, httpx.TransportError]  # noqa: UP007 - runtime alias on 3.10
_UNREACHABLE_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})


class TransferAborted(Exception):
    """Another transfer of the same operation failed, or the user pressed Ctrl-C."""


def classify(exc: httpx.TransportError) -> Failure:
    """Why *exc* happened, and so whether another try could succeed."""
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return Failure.UNTRUSTED
        if isinstance(cause, ssl.SSLError) and any(
            reason in str(cause).upper().replace(" ", "_") for reason in _PLAIN_HTTP_REASONS
        ):
            return Failure.PLAIN_HTTP
        if isinstance(cause, socket.gaierror):
            return Failure.TRANSIENT if cause.errno == socket.EAI_AGAIN else Failure.UNREACHABLE
        if isinstance(cause, OSError) and cause.errno in _UNREACHABLE_ERRNOS:
            return Failure.UNREACHABLE
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return Failure.UNTRUSTED
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.ProxyError, httpx.LocalProtocolError)):
        return Failure.UNREACHABLE
    return Failure.TRANSIENT


class Retrying:
    """Sends a registry's requests, retrying per *policy*; *abort* stops every try.

    *connect* makes the HTTP client (its connection pool) on first use, so that TLS
    settings are read only when a request is made.
    """

    def __init__(
        self,
        registry: str,
        *,
        connect: Callable[[], httpx.Client],
        policy: RetryPolicy,
        abort: threading.Event | None = None,
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.abort = abort or threading.Event()
        self._connect = connect
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()

    def send(
        self,
        request: httpx.Request,
        *,
        auth: httpx.Auth | None = None,
        stream: bool = False,
        attempts: int | None = None,
        stats: TransferStats | None = None,
        return_transient: bool = False,
        earlier: Sequence[Outcome] = (),
    ) -> httpx.Response:
        """The first answer that is not transient; when every try failed, an error naming
        the request and its last answer, or with *return_transient* that last answer if it
        was one (for a caller that starts over in its own way, as uploads do).

        *earlier* are the outcomes of tries already made (the ping's), which count against
        *attempts*. With *stream* the body of the returned response is not read.
        """
        tries = self.policy.attempts if attempts is None else attempts
        outcomes = list(earlier)
        while True:
            if outcomes:
                last = outcomes[-1]
                if isinstance(last, httpx.TransportError):
                    failure = classify(last)
                    if failure is not Failure.TRANSIENT or len(outcomes) >= tries:
                        raise self.failed(request, outcomes, failure)
                else:
                    if last.status_code not in RETRYABLE_STATUS:
                        return last
                    too_long = self._too_long(last)
                    if len(outcomes) >= tries and return_transient and not too_long:
                        return last
                    if len(outcomes) >= tries or too_long:
                        if stream:
                            last.read()
                        raise self._exhausted(request, outcomes, too_long=too_long)
                    last.close()
                if stats is not None:
                    stats.add(retries=1)
                hint = last.headers.get("retry-after") if isinstance(last, httpx.Response) else None
                self.pause(len(outcomes), hint)
            outcomes.append(self.try_once(request, auth=auth, stream=stream))

    def try_once(
        self, request: httpx.Request, *, auth: httpx.Auth | None = None, stream: bool = False
    ) -> Outcome:
        """One try: the answer, or the transport error. An untrusted certificate raises."""
        if self.abort.is_set():
            raise TransferAborted()
        method, where = request.method, safe_url(request.url)
        try:
            response = self.client.send(
                request, auth=auth, stream=stream, follow_redirects=method in ("GET", "HEAD")
            )
        except httpx.TransportError as exc:
            log.debug("%s %s failed: %s", method, where, reason(exc))
            if classify(exc) is Failure.UNTRUSTED:
                raise self._untrusted(exc) from exc
            return exc
        log.debug("%s %s -> %d", method, where, response.status_code)
        return response

    def pause(self, attempt: int, retry_after: str | None = None) -> None:
        """Wait before try *attempt* + 1 (a server's Retry-After wins); abort ends it."""
        if self.abort.wait(self.policy.delay(attempt, retry_after)):
            raise TransferAborted()

    def failed(
        self, request: httpx.Request, outcomes: Sequence[Outcome], failure: Failure
    ) -> RegistryError:
        """The error for *request* whose tries all failed, the last one with *failure*."""
        if any(isinstance(o, httpx.Response) for o in outcomes):
            return self._exhausted(request, outcomes, too_long=False)
        return self._no_answer(request, outcomes, failure)

    def _too_long(self, response: httpx.Response) -> bool:
        hinted = parse_retry_after(response.headers.get("retry-after"))
        return hinted is not None and hinted > self.policy.max_retry_after

    def _untrusted(self, exc: httpx.TransportError) -> TLSVerificationError:
        registry = self.registry
        error = TLSVerificationError(
            f"the TLS certificate of {registry} is not trusted ({reason(exc)})",
            hint=f"put the registry's CA certificate in /etc/docker/certs.d/{registry}/ca.crt, "
            "pass --ca-cert FILE, or add it to the system trust store (SSL_CERT_FILE); "
            f"for a lab registry only, mark it insecure with --insecure-registry {registry}",
            registry=registry,
        )
        error.__cause__ = exc
        return error

    def _no_answer(
        self, request: httpx.Request, outcomes: Sequence[Outcome], failure: Failure
    ) -> NoAnswerError:
        last = outcomes[-1]
        assert isinstance(last, httpx.TransportError)
        what = f"{request.method} {request.url.path}"
        if len(outcomes) == 1:
            message = (
                f"cannot reach registry {self.registry} at {origin(request.url)} ({what}): "
                f"{reason(last)}"
            )
        else:
            message = (
                f"{self.registry} did not answer {what} on any of {len(outcomes)} tries; "
                f"the last one failed with: {reason(last)}"
            )
        hint = unreachable_hint(failure, self.registry, request.url.scheme)
        return NoAnswerError(message, failure=failure, hint=hint, registry=self.registry)

    def _exhausted(
        self, request: httpx.Request, outcomes: Sequence[Outcome], *, too_long: bool
    ) -> RetriesExhaustedError:
        answers = [o for o in outcomes if isinstance(o, httpx.Response)]
        response = answers[-1]
        status = response.status_code
        what = f"{request.method} {request.url.path}"
        retry_after = response.headers.get("retry-after")
        if too_long:
            text = f"asked to wait {retry_after} s, longer than mpkit waits (HTTP {status})"
        elif len(outcomes) == 1:
            text = f"answered HTTP {status}"
        elif len(answers) == len(outcomes) and {a.status_code for a in answers} == {status}:
            text = f"answered HTTP {status} on each of {len(outcomes)} tries"
        else:
            text = f"failed on each of {len(outcomes)} tries; the last answer was HTTP {status}"
        message = f"{self.registry} kept failing: {what} {text}"
        detail = error_detail(response)
        if detail:
            message += f": {detail}"
        if not isinstance(outcomes[-1], httpx.Response):
            message += f"; the last try got no answer ({reason(outcomes[-1])})"
        limit = rate_limit_note(response.headers)
        if limit:
            message += f"; {limit}"
        hint = (
            "the registry is rate-limiting this client: log in (a higher limit), use a "
            "mirror, or retry later"
            if status == 429
            else "the registry is overloaded or failing; retry later"
        )
        return RetriesExhaustedError(message, hint=hint, registry=self.registry, status=status)


def unreachable_hint(failure: Failure, registry: str, scheme: str) -> str:
    if failure is Failure.PLAIN_HTTP and scheme == "https":
        return (
            f"{registry} answers in plain HTTP, not HTTPS: for a lab registry pass "
            f"--insecure-registry {registry}"
        )
    if failure is Failure.TRANSIENT:
        return "the connection kept breaking: check the network path and the registry's health"
    return (
        "check the host name and port, that the registry is running, and any proxy "
        "settings (HTTPS_PROXY / NO_PROXY)"
    )


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode()}"


def safe_url(url: httpx.URL) -> str:
    """URL for logs: upload locations may carry state tokens; keep only origin and path."""
    return origin(url) + url.path


def reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
