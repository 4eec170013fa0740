"""HTTP access to one registry's /v2/ API, composed in layers like go-containerregistry's
transport package:

- :mod:`mpkit.registry.ping`: the first request picks the scheme and learns the challenge
  (:mod:`mpkit.registry.pingmemory` remembers it for a few minutes);
- :mod:`mpkit.registry.authflow`: an ``httpx.Auth`` answering Basic and Bearer challenges,
  only for the registry's own origin;
- :mod:`mpkit.registry.retrying`: every request retried on transient failures;
- :mod:`mpkit.registry.tls`: the trust settings per host.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import httpx

from mpkit import __version__
from mpkit.credentials import Credential
from mpkit.errors import (
    AuthenticationError,
    RegistryError,
    RetriesExhaustedError,
    TLSVerificationError,
)
from mpkit.reference import api_host, is_loopback_host
from mpkit.registry.auth import Challenge
from mpkit.registry.authflow import (
    AUTH_ROUNDS,
    Authenticator,
    CredentialProvider,
    RegistryAuth,
)
from mpkit.registry.ping import Ping, ping, place, probe_order
from mpkit.registry.pingmemory import PingMemory, ping_memory
from mpkit.registry.retry import RetryPolicy
from mpkit.registry.retrying import Retrying, TransferAborted
from mpkit.registry.stats import TransferStats
from mpkit.registry.tls import build_ssl_context, certs_d_dirs, host_cert_dirs

# A request body: bytes, or a function that opens the body afresh for each send.
Body = Union[bytes, Callable[[], Iterator[bytes]], None]  # noqa: UP007 - runtime alias on 3.10
# Answers that a remembered ping may explain: a TLS port asked in plain HTTP (400), or a
# registry whose authentication changed (401).
STALE_PING_STATUS = frozenset({400, 401})


@dataclass(frozen=True)
class ClientOptions:
    """How mpkit talks to registries; one value shared by a whole command."""

    insecure_registries: frozenset[str] = frozenset()
    ca_certs: tuple[Path, ...] = ()
    certs_d: tuple[Path, ...] | None = None  # None: MPKIT_CERTS_D + the system directories
    # registry → the host[:port] that actually serves its API (containers-registries.conf
    # "location"): credentials and names stay those of the registry.
    endpoints: Mapping[str, str] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: int = 4
    # Use and keep pings in mpkit's state directory (pingmemory): what commands do.
    remember_pings: bool = False
    connect_timeout: float = 15.0
    read_timeout: float = 300.0
    user_agent: str = f"mpkit/{__version__}"


class Transport:
    """Authenticated, retrying HTTP access to one registry's /v2/ API."""

    def __init__(
        self,
        registry: str,
        *,
        credentials: CredentialProvider | None,
        options: ClientOptions | None = None,
    ) -> None:
        self.registry = registry
        self.options = options or ClientOptions()
        self.anonymous = credentials is None
        self.endpoint = self.options.endpoints.get(registry) or api_host(registry)
        self.insecure = registry in self.options.insecure_registries
        self.abort = threading.Event()  # set to stop every transfer of this transport
        self.retrying = Retrying(
            registry, connect=self._connect, policy=self.options.retry, abort=self.abort
        )
        self.auth = Authenticator(
            registry,
            credentials=credentials,
            challenge=lambda: self.challenge,
            retrying=self.retrying,
            plain_http_allowed=(
                self.insecure or is_loopback_host(registry) or is_loopback_host(self.endpoint)
            ),
        )
        self._lock = threading.Lock()
        self._ping: Ping | None = None
        self._ping_error: RegistryError | None = None
        self._memory: PingMemory | None = ping_memory() if self.options.remember_pings else None
        self._ping_confirmed = True  # False while a remembered ping has had no answer

    # -- lifecycle -------------------------------------------------------
    def close(self) -> None:
        self.retrying.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def http(self) -> httpx.Client:
        return self.retrying.client

    @property
    def connections(self) -> int:
        """How many connections to the registry may be open at once."""
        return pool_size(self.options)

    def _connect(self) -> httpx.Client:
        context, _ = build_ssl_context(
            self.registry,
            ca_certs=self.options.ca_certs,
            search=self.options.certs_d,
            verify=not self.insecure,
        )
        return _make_client(context, self.options, loopback=is_loopback_host(self.endpoint))

    # -- credentials -----------------------------------------------------
    @property
    def plain_http_allowed(self) -> bool:
        return self.auth.plain_http_allowed

    @plain_http_allowed.setter
    def plain_http_allowed(self, allowed: bool) -> None:
        self.auth.plain_http_allowed = allowed

    @property
    def credential(self) -> Credential | None:
        return self.auth.credential

    def use_credential(self, credential: Credential) -> None:
        """Authenticate with *credential* from now on (see Authenticator.use)."""
        self.auth.use(credential)
        self.anonymous = False

    @property
    def who(self) -> str | None:
        return self.auth.who

    # -- ping --------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self.ping().base_url

    @property
    def challenge(self) -> Challenge | None:
        return self.ping().challenge

    def ping(self) -> Ping:
        """The first request (GET /v2/): scheme and challenge, or a remembered answer.

        The outcome, success or failure, is kept: parallel transfers must not each
        rediscover that a registry is unreachable.
        """
        with self._lock:
            if self._ping is not None:
                return self._ping
            if self._ping_error is not None:
                raise self._ping_error
            if self._memory is not None:
                recalled = self._memory.recall(self.endpoint, self._schemes())
                if recalled is not None:
                    self._ping, self._ping_confirmed = recalled.ping, recalled.live
                    return recalled.ping
            return self._live_ping()

    def _live_ping(self) -> Ping:
        """Ask the registry now (the caller holds the lock)."""
        try:
            found = ping(self.retrying, endpoint=self.endpoint, schemes=self._schemes())
        except RegistryError as exc:
            self._ping, self._ping_error = None, exc
            raise
        self._ping, self._ping_confirmed = found, True
        if self._memory is not None:
            self._memory.remember(self.endpoint, found)
        return found

    def _unconfirmed_ping(self) -> Ping | None:
        """The remembered ping in use, until an answer has confirmed it."""
        return None if self._ping_confirmed else self._ping

    def _ping_changed(self, stale: Ping) -> bool:
        """Whether a live ping (made once, by whoever asks first) differs from *stale*."""
        with self._lock:
            if self._ping_error is not None:
                raise self._ping_error
            if self._ping is stale:
                if self._memory is not None:
                    self._memory.forget(self.endpoint)
                self._live_ping()
            return self._ping != stale

    def _schemes(self) -> list[str]:
        return probe_order(
            plain_http_allowed=self.plain_http_allowed, plain_http_first=self._plain_http_first()
        )

    def _plain_http_first(self) -> bool:
        """A loopback registry with no TLS settings of its own is plain HTTP."""
        tls_configured = bool(self.options.ca_certs) or bool(
            host_cert_dirs(self.registry, self.options.certs_d or certs_d_dirs())
        )
        return is_loopback_host(self.endpoint) and not self.insecure and not tls_configured

    def authenticate(self) -> str:
        """Prove the credential against the registry (what `docker login` does).

        Returns the auth scheme the registry uses ("bearer", "basic" or "none").
        """
        self.ping()
        stale = self._unconfirmed_ping()
        if stale is not None:  # a login proves what the registry says now
            self._ping_changed(stale)
        challenge = self.challenge
        if challenge is None:
            return "none"
        if challenge.scheme == "bearer":
            # token.md: a token request with no scope authenticates the user only.
            self.auth.token([], action="log in to", repository=None)
        response = self.request("GET", "/v2/", scopes=[], action="log in to")
        if response.status_code == 401:
            who = self.who or "anonymous"
            raise AuthenticationError(
                f"{self.registry} rejected the credentials ({who})",
                hint="check the user name and password, then run "
                f"'mpkit login {self.registry}' again",
                registry=self.registry,
                status=401,
            )
        return challenge.scheme

    # -- requests ---------------------------------------------------------
    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        scopes: Sequence[str],
        action: str,
        repository: str | None = None,
        headers: dict[str, str] | None = None,
        body: Body = None,
        params: dict[str, str] | None = None,
        stream: bool = False,
        retry: bool = True,
        stats: TransferStats | None = None,
        reauthenticate: bool = True,
    ) -> httpx.Response:
        """Send one API request with auth and retries; the caller checks the status.

        With *stream* the response body is not read and the caller must close it.
        Credentials go only to the registry's own origin (go-containerregistry does
        the same): an upload Location on another host gets none. *retry* False sends
        once and returns even a transient answer (for uploads, which start over).
        *reauthenticate* False answers a 401 with no other token (best-effort requests).
        """

        def send() -> httpx.Response:
            url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
            if params:
                url = str(httpx.URL(url).copy_merge_params(params))
            url, own_origin = place(url, self.base_url)
            request = self.http.build_request(method, url, headers=headers,
                                              content=_content(body))  # fmt: skip
            rounds = AUTH_ROUNDS if reauthenticate else 1
            auth = (
                RegistryAuth(self.auth, scopes, action=action, repository=repository, rounds=rounds)
                if own_origin
                else None
            )
            return self.retrying.send(
                request, auth=auth, stream=stream, attempts=None if retry else 1, stats=stats,
                return_transient=not retry,
            )  # fmt: skip

        self.ping()
        stale = self._unconfirmed_ping()
        if stale is None:
            return send()
        try:
            response = send()
        except (RetriesExhaustedError, TLSVerificationError):
            raise  # the registry answered on this scheme, or its certificate is the problem
        except RegistryError:
            if not self._ping_changed(stale):
                raise  # the registry says the same now: the error stands
            return send()
        if response.status_code in STALE_PING_STATUS and self._ping_changed(stale):
            response.close()
            return send()
        self._ping_confirmed = True
        return response


class _Replayable:
    """A body httpx may iterate more than once (a retry, or a resend after a 401)."""

    def __init__(self, open_body: Callable[[], Iterator[bytes]]) -> None:
        self._open = open_body

    def __iter__(self) -> Iterator[bytes]:
        return self._open()


def _content(body: Body) -> bytes | _Replayable | None:
    return _Replayable(body) if callable(body) else body


def pool_size(options: ClientOptions) -> int:
    """Connections per registry: the transfers, plus as many for their auth and checks."""
    return options.concurrency * 2 + 2


def _make_client(
    context: ssl.SSLContext, options: ClientOptions, *, loopback: bool
) -> httpx.Client:
    pool = pool_size(options)
    return httpx.Client(
        verify=context,
        timeout=httpx.Timeout(options.read_timeout, connect=options.connect_timeout),
        limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
        headers={"User-Agent": options.user_agent},
        # Go's ProxyFromEnvironment never proxies loopback; neither do we.
        trust_env=not loopback,
    )


__all__ = ["Body", "ClientOptions", "CredentialProvider", "TransferAborted", "Transport"]
