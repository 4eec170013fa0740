"""HTTP transport for one registry: scheme detection, TLS, auth and retries.

Built in layers like go-containerregistry's: ping (distribution-spec "API version
check") picks the scheme and learns the challenge; requests then carry Basic or Bearer
credentials (only to the registry's own origin), refetching a token when the registry
asks for a wider scope; transient failures are retried with backoff.
"""

from __future__ import annotations

import base64
import logging
import ssl
import threading
import time
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
    RegistryProtocolError,
    RegistryUnreachableError,
    RetriesExhaustedError,
    TLSVerificationError,
)
from mpkit.reference import api_host, is_loopback_host
from mpkit.registry.auth import (
    Challenge,
    Token,
    TokenCache,
    parse_challenges,
    parse_token_response,
    scope_key,
    token_requests,
)
from mpkit.registry.responses import denied, error_detail, rate_limit_note
from mpkit.registry.retry import RETRYABLE_STATUS, RetryPolicy, parse_retry_after
from mpkit.registry.stats import TransferStats
from mpkit.registry.tls import build_ssl_context, certs_d_dirs, host_cert_dirs

log = logging.getLogger("mpkit.registry")

CredentialProvider = Callable[[], "Credential | None"]
Body = Union[bytes, Callable[[], Iterator[bytes]], None]  # noqa: UP007 - runtime alias on 3.10


class TransferAborted(Exception):
    """Another transfer of the same operation failed, or the user pressed Ctrl-C."""


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
        self.abort = threading.Event()  # set to stop every transfer of this transport
        self._credentials = credentials
        self._credential: Credential | None = None
        self._credential_loaded = False
        self._tokens = TokenCache()
        self._lock = threading.Lock()
        self._token_locks: dict[frozenset[str], threading.Lock] = {}
        self._base_url: str | None = None
        self._ping_error: RegistryError | None = None
        self._challenge: Challenge | None = None
        self._http: httpx.Client | None = None
        self.endpoint = self.options.endpoints.get(registry) or api_host(registry)
        self.insecure = registry in self.options.insecure_registries
        self.plain_http_allowed = (
            self.insecure or is_loopback_host(registry) or is_loopback_host(self.endpoint)
        )

    # -- lifecycle -------------------------------------------------------
    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            context, _ = build_ssl_context(
                self.registry,
                ca_certs=self.options.ca_certs,
                search=self.options.certs_d,
                verify=not self.insecure,
            )
            self._http = _make_client(
                context, self.options, loopback=is_loopback_host(self.endpoint)
            )
        return self._http

    @property
    def credential(self) -> Credential | None:
        """The credential for this registry, resolved once and only when first needed."""
        with self._lock:
            if not self._credential_loaded:
                self._credential = self._credentials() if self._credentials else None
                self._credential_loaded = True
            return self._credential

    @property
    def who(self) -> str | None:
        cred = self.credential
        if cred is None:
            return None
        return f"user '{cred.username}'" if cred.username else f"the token from {cred.source}"

    # -- ping --------------------------------------------------------------
    @property
    def base_url(self) -> str:
        self.ping()
        assert self._base_url is not None
        return self._base_url

    @property
    def challenge(self) -> Challenge | None:
        self.ping()
        return self._challenge

    def ping(self) -> None:
        """distribution-spec: GET /v2/ → 200 (open) or 401 with WWW-Authenticate.

        The outcome, success or failure, is remembered: parallel transfers must not
        each rediscover that a registry is unreachable.
        """
        with self._lock:
            if self._base_url is not None:
                return
            if self._ping_error is not None:
                raise self._ping_error
            try:
                self._ping_locked()
            except RegistryError as exc:
                self._ping_error = exc
                raise

    def _probe_order(self) -> list[str]:
        """https only, unless plain HTTP is allowed. A loopback registry without TLS
        settings is almost always plain HTTP (``localhost:5000``): asking http first saves
        a failed TLS handshake per command, and the unauthenticated GET /v2/ carries no
        credentials, so nothing leaks if it turns out to speak TLS."""
        if not self.plain_http_allowed:
            return ["https"]
        tls_configured = bool(self.options.ca_certs) or bool(
            host_cert_dirs(self.registry, self.options.certs_d or certs_d_dirs())
        )
        if is_loopback_host(self.endpoint) and not self.insecure and not tls_configured:
            return ["http", "https"]
        return ["https", "http"]

    def _ping_locked(self) -> None:
        host = self.endpoint
        schemes = self._probe_order()
        errors: dict[str, RegistryError] = {}
        for scheme in schemes:
            url = f"{scheme}://{host}/v2/"
            # Probing the wrong scheme fails fast; don't retry a probe that has a fallback.
            attempts = 1 if scheme != schemes[-1] else 2
            try:
                response = self._send_retrying("GET", url, headers={}, body=None, attempts=attempts)
            except TLSVerificationError:
                raise
            except RegistryError as exc:
                errors[scheme] = exc
                continue
            if response.status_code == 401:
                challenges = parse_challenges(response.headers.get_list("www-authenticate"))
                self._challenge = _preferred(challenges)
            elif response.status_code != 200:
                errors[scheme] = RegistryProtocolError(
                    f"{self.registry} does not look like a container registry: GET {url} "
                    f"answered HTTP {response.status_code}",
                    hint="check the host and port; the OCI distribution API lives under /v2/",
                    registry=self.registry,
                    status=response.status_code,
                )
                continue
            self._base_url = f"{scheme}://{host}"
            log.debug(
                "registry %s speaks %s, auth %s",
                self.registry,
                scheme,
                self._challenge.scheme if self._challenge else "none",
            )
            return
        # When both failed, the https failure tells more (a plain-HTTP answer from a TLS
        # port is only "400 Bad Request").
        raise errors.get("https") or errors[schemes[0]]

    def authenticate(self) -> str:
        """Prove the credential against the registry (what `docker login` does).

        Returns the auth scheme the registry uses ("bearer", "basic" or "none").
        """
        challenge = self.challenge
        if challenge is None:
            return "none"
        if challenge.scheme == "bearer":
            # token.md: a token request with no scope authenticates the user only.
            self._token(challenge, [], action="log in to", repository=None)
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
    ) -> httpx.Response:
        """Send one API request with auth and retries; the caller checks the status.

        With *stream* the response body is not read and the caller must close it.
        Credentials go only to the registry's own origin (go-containerregistry does
        the same): an upload Location on another host gets none.
        """
        url, own_origin = self._place(self._url(path_or_url, params))
        scopes = list(scopes)
        for auth_round in range(3):
            all_headers = dict(headers or {})
            if own_origin:
                all_headers.update(self._auth_headers(scopes, action=action, repository=repository))
            response = self._send_retrying(
                method, url, headers=all_headers, body=body, stream=stream,
                attempts=self.options.retry.attempts if retry else 1, stats=stats,
            )  # fmt: skip
            if response.status_code != 401 or auth_round == 2 or not own_origin:
                return response
            challenge = _preferred(parse_challenges(response.headers.get_list("www-authenticate")))
            if challenge is None:
                return response
            if self._challenge is None:
                # /v2/ was open but this resource is not (some Nexus/Artifactory setups).
                self._challenge = challenge
            elif challenge.scheme != "bearer":
                return response
            else:
                # token.md: on insufficient_scope the challenge names the scope it wants;
                # otherwise the token expired or was revoked: fetch a fresh one, once.
                wanted = [s for s in challenge.scopes if s not in scopes]
                if not wanted and auth_round == 1:
                    return response
                self._tokens.drop(scopes)
                scopes = [*scopes, *wanted]
            if stream:
                response.close()
        raise AssertionError("unreachable")

    def _url(self, path_or_url: str, params: dict[str, str] | None) -> str:
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        if params:
            return str(httpx.URL(url).copy_merge_params(params))
        return url

    def _place(self, url: str) -> tuple[str, bool]:
        """(url to use, whether it is the registry's own origin).

        A registry behind a TLS-terminating proxy may hand out http:// Locations for
        itself; they are upgraded to the scheme the ping chose (ggcr schemer.go).
        """
        target, base = httpx.URL(url), httpx.URL(self.base_url)
        if target.host != base.host or (target.port or _default_port(target.scheme)) != (
            base.port or _default_port(base.scheme)
        ):
            if target.host == base.host and target.scheme == "http" and base.scheme == "https":
                return str(target.copy_with(scheme="https", port=base.port)), True
            return url, False
        if target.scheme != base.scheme:
            return str(target.copy_with(scheme=base.scheme)), True
        return url, True

    def _auth_headers(
        self, scopes: list[str], *, action: str, repository: str | None
    ) -> dict[str, str]:
        challenge = self.challenge
        if challenge is None:
            return {}
        credential = self.credential
        if challenge.scheme == "basic":
            if credential is None or credential.username is None:
                return {}
            return {"Authorization": _basic(credential.username, credential.password or "")}
        if challenge.scheme == "bearer":
            token = self._token(challenge, scopes, action=action, repository=repository)
            return {"Authorization": f"Bearer {token.value}"}
        return {}

    def _token(
        self, challenge: Challenge, scopes: list[str], *, action: str, repository: str | None
    ) -> Token:
        cached = self._tokens.get(scopes)
        if cached is not None:
            return cached
        with self._lock:
            lock = self._token_locks.setdefault(scope_key(scopes), threading.Lock())
        with lock:  # single flight: parallel uploads share one token request
            cached = self._tokens.get(scopes)
            if cached is not None:
                return cached
            token = self._fetch_token(challenge, scopes, action=action, repository=repository)
            self._tokens.put(scopes, token)
            return token

    def _fetch_token(
        self, challenge: Challenge, scopes: list[str], *, action: str, repository: str | None
    ) -> Token:
        credential = self.credential
        if credential is not None and credential.registry_token:
            return Token(credential.registry_token, time.monotonic() + 3600, 3600)
        realm = challenge.realm
        if not realm:
            raise RegistryProtocolError(
                f"{self.registry} asked for a bearer token but named no realm",
                registry=self.registry,
            )
        realm_url = httpx.URL(realm)
        if credential is not None and realm_url.scheme != "https" and not self.plain_http_allowed:
            raise RegistryProtocolError(
                f"{self.registry} sends logins to a plain-HTTP token service ({_origin(realm)}); "
                "mpkit refuses to send credentials unencrypted",
                hint="fix the registry's external URL (Harbor: external_url / EXT_ENDPOINT) to "
                "use https, or mark the registry insecure with "
                f"--insecure-registry {self.registry}",
                registry=self.registry,
            )
        started = time.monotonic()
        response: httpx.Response | None = None
        for request in token_requests(challenge, scopes, credential):
            headers = {"Authorization": _basic(*request.basic)} if request.basic else {}
            url = (
                str(realm_url.copy_merge_params(list(request.params))) if request.params else realm
            )
            response = self._send_retrying(
                request.method, url, headers=headers, body=None, form=request.form,
                attempts=self.options.retry.attempts,
            )  # fmt: skip
            if request.method == "POST" and response.status_code in (404, 405):
                continue  # oauth.md is optional for token servers: fall back to GET
            break
        assert response is not None
        if response.status_code in (401, 403):
            if credential is None:
                raise denied(
                    registry=self.registry, repository=repository, action=action,
                    anonymous=True, who=None, status=response.status_code,
                )  # fmt: skip
            source = f", from {credential.source}" if credential.source else ""
            raise AuthenticationError(
                f"{self.registry} rejected the credentials ({self.who}{source})",
                hint=f"check them and run 'mpkit login {self.registry}', or set "
                "MPKIT_REGISTRY_USERNAME / MPKIT_REGISTRY_PASSWORD",
                registry=self.registry,
                status=response.status_code,
            )
        if response.status_code != 200:
            detail = error_detail(response)
            raise RegistryProtocolError(
                f"the token service of {self.registry} answered HTTP {response.status_code}"
                + (f": {detail}" if detail else ""),
                hint="the registry's authentication service is failing; retry later",
                registry=self.registry,
                status=response.status_code,
            )
        return parse_token_response(response, registry=self.registry, started=started)

    def _send_retrying(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: Body,
        attempts: int,
        stream: bool = False,
        stats: TransferStats | None = None,
        form: dict[str, str] | None = None,
    ) -> httpx.Response:
        policy = self.options.retry
        last_error: Exception | None = None
        for attempt in range(1, attempts + 1):
            if self.abort.is_set():
                raise TransferAborted()
            content = body() if callable(body) else body
            request = self.http.build_request(
                method, url, headers=headers, content=content, data=form
            )
            try:
                response = self.http.send(
                    request, stream=stream, follow_redirects=method in ("GET", "HEAD")
                )
            except httpx.TransportError as exc:
                _raise_if_tls(exc, self.registry)
                last_error = exc
                log.debug(
                    "%s %s failed (try %d/%d): %s", method, _safe(url), attempt, attempts, exc
                )
                if attempt < attempts:
                    if stats is not None:
                        stats.add(retries=1)
                    policy.sleep(attempt)
                continue
            log.debug("%s %s -> %d", method, _safe(url), response.status_code)
            if response.status_code not in RETRYABLE_STATUS:
                return response
            retry_after = response.headers.get("retry-after")
            hinted = parse_retry_after(retry_after)
            too_long = hinted is not None and hinted > policy.max_retry_after
            if attempt == attempts or too_long:
                if attempts == 1 and not too_long:
                    return response  # the caller retries at a higher level
                if stream:
                    response.read()
                raise self._exhausted(method, url, response, attempt, too_long)
            if stream:
                response.close()
            if stats is not None:
                stats.add(retries=1)
            policy.sleep(attempt, retry_after)
        assert last_error is not None
        if attempts > 1 and not isinstance(last_error, httpx.ConnectError):
            raise RetriesExhaustedError(
                f"the connection to {self.registry} kept failing ({_reason(last_error)}) on "
                f"each of {attempts} tries",
                hint="check the network and the registry's health",
                registry=self.registry,
            ) from last_error
        raise RegistryUnreachableError(
            f"cannot reach registry {self.registry} at {_origin(url)}: {_reason(last_error)}",
            hint=_unreachable_hint(last_error, self.registry),
            registry=self.registry,
        ) from last_error

    def _exhausted(
        self, method: str, url: str, response: httpx.Response, tries: int, too_long: bool
    ) -> RetriesExhaustedError:
        status = response.status_code
        detail = error_detail(response)
        retry_after = response.headers.get("retry-after")
        limit = rate_limit_note(response.headers)
        what = (
            f"asked to wait {retry_after} s, longer than mpkit waits"
            if too_long
            else f"answered HTTP {status} on each of {tries} tries"
        )
        message = f"{self.registry} kept failing: {method} {_path(url)} {what}"
        if too_long:
            message += f" (HTTP {status})"
        if detail:
            message += f": {detail}"
        if limit:
            message += f"; {limit}"
        hint = (
            "the registry is rate-limiting this client: log in (a higher limit), use a "
            "mirror, or retry later"
            if status == 429
            else "the registry is overloaded or failing; retry later"
        )
        return RetriesExhaustedError(message, hint=hint, registry=self.registry, status=status)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _basic(username: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()


def _preferred(challenges: list[Challenge]) -> Challenge | None:
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


def _make_client(
    context: ssl.SSLContext, options: ClientOptions, *, loopback: bool
) -> httpx.Client:
    pool = options.concurrency * 2 + 2
    return httpx.Client(
        verify=context,
        timeout=httpx.Timeout(options.read_timeout, connect=options.connect_timeout),
        limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
        headers={"User-Agent": options.user_agent},
        # Go's ProxyFromEnvironment never proxies loopback; neither do we.
        trust_env=not loopback,
    )


def _raise_if_tls(exc: httpx.TransportError, registry: str) -> None:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        raise TLSVerificationError(
            f"the TLS certificate of {registry} is not trusted ({_reason(exc)})",
            hint=f"put the registry's CA certificate in /etc/docker/certs.d/{registry}/ca.crt, "
            "pass --ca-cert FILE, or add it to the system trust store (SSL_CERT_FILE); "
            f"for a lab registry only, mark it insecure with --insecure-registry {registry}",
            registry=registry,
        ) from exc


def _unreachable_hint(exc: Exception, registry: str) -> str:
    text = str(exc)
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text.lower():
        return (
            f"{registry} answers in plain HTTP, not HTTPS: for a lab registry pass "
            f"--insecure-registry {registry}"
        )
    return (
        "check the host name and port, that the registry is running, and any proxy "
        "settings (HTTPS_PROXY / NO_PROXY)"
    )


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode()}"


def _path(url: str) -> str:
    return httpx.URL(url).path


def _safe(url: str) -> str:
    """URL for logs: upload locations may carry state tokens; keep only origin and path."""
    return _origin(url) + _path(url)


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


__all__ = ["ClientOptions", "CredentialProvider", "TransferAborted", "Transport"]
