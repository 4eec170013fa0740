"""Scheme detection and challenge discovery: the registry's first request.

distribution-spec "API version check": GET /v2/ answers 200 (no auth needed) or 401
with a WWW-Authenticate challenge (RFC 9110 §11.6.1). The request carries no
credentials, so probing a scheme leaks nothing.

Any HTTP answer proves the scheme: 200 and 401 end the ping, and a transient answer
(408/429/5xx) is retried on that scheme by the retry layer, never taken as a reason to
try the other one. A connection that breaks or times out is retried like every other
request before the next scheme is tried. Only a clear mismatch moves on at once: TLS
spoken to a plain-HTTP server, a refused connection, or a non-registry answer (a TLS
port answers a plain-HTTP request with 400).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from mpkit.errors import RegistryError, RegistryProtocolError, RetriesExhaustedError
from mpkit.registry.auth import Challenge, parse_challenges, preferred_challenge
from mpkit.registry.retrying import Failure, NoAnswerError

log = logging.getLogger("mpkit.registry")

Send = Callable[[httpx.Request], httpx.Response]


@dataclass(frozen=True)
class Ping:
    """What the first request learned: where the API is and how it authenticates."""

    base_url: str  # scheme://host[:port]
    challenge: Challenge | None  # None: the registry answered 200 without credentials


def probe_order(*, plain_http_allowed: bool, plain_http_first: bool) -> list[str]:
    """https only, unless plain HTTP is allowed (loopback, or marked insecure).

    A loopback registry without TLS settings is almost always plain HTTP
    (``localhost:5000``): asking http first saves a failed TLS handshake per command.
    """
    if not plain_http_allowed:
        return ["https"]
    return ["http", "https"] if plain_http_first else ["https", "http"]


def ping(
    send: Send, build: Callable[[str], httpx.Request], *, registry: str, endpoint: str,
    schemes: list[str],
) -> Ping:  # fmt: skip
    """Find the scheme that *endpoint* (serving *registry*) speaks, trying *schemes* in
    order, and its challenge. *build* makes a GET request for a URL; *send* sends it with
    retries."""
    errors: list[tuple[int, RegistryError]] = []
    for position, scheme in enumerate(schemes):
        base_url = f"{scheme}://{endpoint}"
        request = build(f"{base_url}/v2/")
        try:
            response = send(request)
        except RetriesExhaustedError as exc:
            if exc.status is not None:
                raise  # answered (with 5xx or 429 every time): the scheme is right
            errors.append((_weight(exc, position), exc))
            continue
        except NoAnswerError as exc:
            errors.append((_weight(exc, position), exc))
            continue
        if response.status_code == 200:
            challenge = None
        elif response.status_code == 401:
            challenge = preferred_challenge(
                parse_challenges(response.headers.get_list("www-authenticate"))
            )
        else:
            error = RegistryProtocolError(
                f"{registry} does not look like a container registry: GET {request.url} "
                f"answered HTTP {response.status_code}",
                hint="check the host and port; the OCI distribution API lives under /v2/",
                registry=registry,
                status=response.status_code,
            )
            errors.append((_weight(error, position), error))
            continue
        log.debug("registry %s speaks %s, auth %s", registry, scheme,
                  challenge.scheme if challenge else "none")  # fmt: skip
        return Ping(base_url=base_url, challenge=challenge)
    # The failure that says most about the registry: an answer, then a connection that
    # kept breaking, then a refusal, then a TLS/plain-HTTP mismatch.
    raise max(errors, key=lambda item: item[0])[1]


def _weight(error: RegistryError, position: int) -> int:
    if isinstance(error, NoAnswerError):
        evidence = {
            Failure.PLAIN_HTTP: 0,
            Failure.UNREACHABLE: 1,
            Failure.UNTRUSTED: 1,
            Failure.TRANSIENT: 2,
        }[error.failure]
    elif isinstance(error, RetriesExhaustedError):
        evidence = 2
    else:
        evidence = 3
    return evidence * 10 - position  # ties: the scheme tried first


def place(url: str, base_url: str) -> tuple[str, bool]:
    """(*url* to use, whether it is the registry's own origin *base_url*).

    A registry behind a TLS-terminating proxy may hand out http:// Locations for itself;
    they are upgraded to the scheme the ping chose, as go-containerregistry's schemer does.
    """
    target, base = httpx.URL(url), httpx.URL(base_url)
    same_host = target.host == base.host
    if same_host and _port(target) == _port(base):
        if target.scheme != base.scheme:
            return str(target.copy_with(scheme=base.scheme)), True
        return url, True
    if same_host and target.scheme == "http" and base.scheme == "https":
        return str(target.copy_with(scheme="https", port=base.port)), True
    return url, False


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)
