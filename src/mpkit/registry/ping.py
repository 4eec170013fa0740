"""Scheme detection and challenge discovery: the registry's first request.

distribution-spec "API version check": GET /v2/ answers 200 (no auth needed) or 401
with a WWW-Authenticate challenge (RFC 9110 §11.6.1). The request carries no
credentials, so probing a scheme leaks nothing.

Any HTTP answer proves the scheme: 200 and 401 end the ping, and a transient answer
(408/429/5xx) makes it an ordinary request on that scheme, retried by the retry layer.
A connection that breaks or times out is retried with the same backoff, and only a
clear mismatch rules a scheme out at once: TLS spoken to a plain-HTTP server, a refused
connection, or an answer that is not a registry's (a TLS port answers plain HTTP with 400).

https is never given up for http because of a transient fault: it gets every try
first. When plain HTTP comes first (a loopback registry without TLS settings), https
is tried in the same rounds, as moving up to TLS is always safe: a registry that does
not answer plain HTTP at all (down, or TLS only) costs one round of retries, not two.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from mpkit.errors import (
    Failure,
    NoAnswerError,
    RegistryError,
    RegistryProtocolError,
    RetriesExhaustedError,
)
from mpkit.registry.auth import Challenge, parse_challenges, preferred_challenge
from mpkit.registry.retry import RETRYABLE_STATUS
from mpkit.registry.retrying import Outcome, Retrying, classify

log = logging.getLogger("mpkit.registry")


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


def ping(retrying: Retrying, *, endpoint: str, schemes: list[str]) -> Ping:
    """Find the scheme that *endpoint* speaks, trying *schemes* in order, and its
    challenge; the error that says most about the registry if none answers."""
    groups = [schemes] if schemes[0] == "http" else [[scheme] for scheme in schemes]
    errors: list[RegistryError] = []
    for group in groups:
        found = _probe(retrying, endpoint, group, errors)
        if found is not None:
            return found
    # An answer that was not a registry's, then a connection that kept breaking, then a
    # refusal, then a TLS/plain-HTTP mismatch; on a tie, the scheme tried first.
    _, telling = max(enumerate(errors), key=lambda item: (_evidence(item[1]), -item[0]))
    raise telling


def _probe(
    retrying: Retrying, endpoint: str, schemes: list[str], errors: list[RegistryError]
) -> Ping | None:
    """Rounds of one try per scheme still in question, with backoff between rounds."""
    requests = {s: retrying.client.build_request("GET", f"{s}://{endpoint}/v2/") for s in schemes}
    tried: dict[str, list[Outcome]] = {scheme: [] for scheme in schemes}
    live = list(schemes)
    for attempt in range(1, retrying.policy.attempts + 1):
        if attempt > 1:
            retrying.pause(attempt - 1)
        for scheme in list(live):
            request = requests[scheme]
            outcome = retrying.try_once(request)
            tried[scheme].append(outcome)
            if isinstance(outcome, httpx.TransportError):
                failure = classify(outcome)
                if failure is not Failure.TRANSIENT:
                    live.remove(scheme)
                    errors.append(retrying.failed(request, tried[scheme], failure))
                continue
            if outcome.status_code in RETRYABLE_STATUS:  # the scheme is right: retry it
                outcome = retrying.send(request, earlier=tried[scheme])
            if outcome.status_code in (200, 401):
                return _learned(retrying.registry, scheme, endpoint, outcome)
            live.remove(scheme)
            errors.append(_not_a_registry(retrying.registry, request, outcome))
        if not live:
            return None
    errors.extend(retrying.failed(requests[s], tried[s], Failure.TRANSIENT) for s in live)
    return None


def _learned(registry: str, scheme: str, endpoint: str, response: httpx.Response) -> Ping:
    challenge = (
        preferred_challenge(parse_challenges(response.headers.get_list("www-authenticate")))
        if response.status_code == 401
        else None
    )
    log.debug("registry %s speaks %s, auth %s", registry, scheme,
              challenge.scheme if challenge else "none")  # fmt: skip
    return Ping(base_url=f"{scheme}://{endpoint}", challenge=challenge)


def _not_a_registry(
    registry: str, request: httpx.Request, response: httpx.Response
) -> RegistryProtocolError:
    return RegistryProtocolError(
        f"{registry} does not look like a container registry: GET {request.url} "
        f"answered HTTP {response.status_code}",
        hint="check the host and port; the OCI distribution API lives under /v2/",
        registry=registry,
        status=response.status_code,
    )


def _evidence(error: RegistryError) -> int:
    if isinstance(error, NoAnswerError):
        return {Failure.PLAIN_HTTP: 0, Failure.UNREACHABLE: 1, Failure.UNTRUSTED: 1,
                Failure.TRANSIENT: 2}[error.failure]  # fmt: skip
    return 2 if isinstance(error, RetriesExhaustedError) else 3


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
