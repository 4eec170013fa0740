"""Answering a registry's Basic and Bearer challenges, as an ``httpx.Auth``.

:class:`Authenticator` holds what one registry's requests share: the credential
(resolved once, when first needed), the challenge, and Bearer tokens keyed by the exact
set of scopes they were asked for, fetched once per set even when parallel uploads ask
at the same moment. :class:`RegistryAuth` is the per-request flow: it adds the
Authorization header and, on a 401, fetches a token with the scope the registry asks
for (distribution ``token.md``: ``insufficient_scope``) or a fresh one (expired or
revoked), then sends the request again.

Only requests to the registry's own origin get an Auth (the caller decides), so
credentials never reach an upload Location or a redirect on another host.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Generator, Sequence

import httpx

from mpkit.credentials import Credential
from mpkit.errors import AuthenticationError, RegistryError, RegistryProtocolError
from mpkit.registry.auth import (
    Challenge,
    Token,
    TokenCache,
    parse_challenges,
    parse_token_response,
    preferred_challenge,
    scope_key,
    token_requests,
)
from mpkit.registry.responses import denied, error_detail
from mpkit.registry.retrying import Retrying, origin

CredentialProvider = Callable[[], "Credential | None"]
REGISTRY_TOKEN_LIFETIME = 3600.0  # a registry token from docker config.json is used as is
AUTH_ROUNDS = 3  # the request, then with a wider scope, then with a fresh token


def basic_header(username: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()


class Authenticator:
    """Credentials, challenge and tokens for one registry."""

    def __init__(
        self,
        registry: str,
        *,
        credentials: CredentialProvider | None,
        challenge: Callable[[], Challenge | None],
        retrying: Retrying,
        plain_http_allowed: bool,
    ) -> None:
        self.registry = registry
        self.plain_http_allowed = plain_http_allowed
        self._credentials = credentials
        self._credential: Credential | None = None
        self._credential_loaded = False
        self._discovered = challenge
        self._adopted: Challenge | None = None
        self._retrying = retrying
        self._tokens = TokenCache()
        self._lock = threading.Lock()
        self._token_locks: dict[frozenset[str], threading.Lock] = {}

    @property
    def credential(self) -> Credential | None:
        """The credential for this registry, resolved once and only when first needed."""
        with self._lock:
            if not self._credential_loaded:
                self._credential = self._credentials() if self._credentials else None
                self._credential_loaded = True
            return self._credential

    def use(self, credential: Credential) -> None:
        """Answer challenges with *credential* from now on (one typed after a refusal);
        tokens fetched with the one before are dropped."""
        with self._lock:
            self._credentials = lambda: credential
            self._credential, self._credential_loaded = credential, True
            self._tokens = TokenCache()

    @property
    def who(self) -> str | None:
        cred = self.credential
        if cred is None:
            return None
        return f"user '{cred.username}'" if cred.username else f"the token from {cred.source}"

    @property
    def challenge(self) -> Challenge | None:
        return self._adopted or self._discovered()

    def adopt(self, challenge: Challenge) -> None:
        """/v2/ was open but a resource is not (some Nexus/Artifactory setups)."""
        self._adopted = challenge

    def headers(self, scopes: Sequence[str], *, action: str, repository: str | None
                ) -> dict[str, str]:  # fmt: skip
        """The Authorization header for a request needing *scopes* (none if anonymous)."""
        challenge = self.challenge
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            credential = self.credential
            if credential is None or credential.username is None:
                return {}
            return {"Authorization": basic_header(credential.username, credential.password or "")}
        if challenge.scheme == "bearer":
            token = self.token(scopes, action=action, repository=repository)
            return {"Authorization": f"Bearer {token.value}"}
        return {}

    def forget(self, scopes: Sequence[str]) -> None:
        self._tokens.drop(scopes)

    def token(self, scopes: Sequence[str], *, action: str, repository: str | None) -> Token:
        """A fresh Bearer token for *scopes*; one token request per scope set at a time."""
        cached = self._tokens.get(scopes)
        if cached is not None:
            return cached
        with self._lock:
            lock = self._token_locks.setdefault(scope_key(scopes), threading.Lock())
        with lock:
            cached = self._tokens.get(scopes)
            if cached is not None:
                return cached
            token = self._fetch_token(list(scopes), action=action, repository=repository)
            self._tokens.put(scopes, token)
            return token

    def _fetch_token(self, scopes: list[str], *, action: str, repository: str | None) -> Token:
        credential = self.credential
        if credential is not None and credential.registry_token:
            expires = time.monotonic() + REGISTRY_TOKEN_LIFETIME
            return Token(credential.registry_token, expires, REGISTRY_TOKEN_LIFETIME)
        challenge = self.challenge
        realm = challenge.realm if challenge is not None else None
        if challenge is None or not realm:
            raise RegistryProtocolError(
                f"{self.registry} asked for a bearer token but named no realm",
                registry=self.registry,
            )
        realm_url = httpx.URL(realm)
        if credential is not None and realm_url.scheme != "https" and not self.plain_http_allowed:
            raise RegistryProtocolError(
                f"{self.registry} sends logins to a plain-HTTP token service "
                f"({origin(realm_url)}); mpkit refuses to send credentials unencrypted",
                hint="fix the registry's external URL (Harbor: external_url / EXT_ENDPOINT) to "
                "use https, or mark the registry insecure with "
                f"--insecure-registry {self.registry}",
                registry=self.registry,
            )
        started = time.monotonic()
        response: httpx.Response | None = None
        client = self._retrying.client
        for ask in token_requests(challenge, scopes, credential):
            headers = {"Authorization": basic_header(*ask.basic)} if ask.basic else {}
            url = realm_url.copy_merge_params(list(ask.params)) if ask.params else realm_url
            request = client.build_request(ask.method, url, headers=headers, data=ask.form)
            response = self._retrying.send(request)
            if ask.method == "POST" and response.status_code in (404, 405):
                continue  # oauth.md is optional for token servers: fall back to GET
            break
        assert response is not None
        if response.status_code in (401, 403):
            raise self._refused(response.status_code, action=action, repository=repository)
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

    def _refused(self, status: int, *, action: str, repository: str | None) -> RegistryError:
        credential = self.credential
        if credential is None:
            return denied(registry=self.registry, repository=repository, action=action,
                          anonymous=True, who=None, status=status)  # fmt: skip
        source = f", from {credential.source}" if credential.source else ""
        return AuthenticationError(
            f"{self.registry} rejected the credentials ({self.who}{source})",
            hint=f"check them and run 'mpkit login {self.registry}', or set "
            "MPKIT_REGISTRY_USERNAME / MPKIT_REGISTRY_PASSWORD",
            registry=self.registry,
            status=status,
        )


class RegistryAuth(httpx.Auth):
    """The auth flow of one request that needs *scopes* (``repository:NAME:ACTIONS``)."""

    def __init__(
        self,
        authenticator: Authenticator,
        scopes: Sequence[str],
        *,
        action: str,
        repository: str | None,
        rounds: int = AUTH_ROUNDS,
    ) -> None:
        self.authenticator = authenticator
        self.scopes = list(scopes)
        self.action = action
        self.repository = repository
        self.rounds = rounds  # 1: send with what is at hand, never ask for another token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        auth = self.authenticator
        for auth_round in range(1, self.rounds + 1):
            request.headers.pop("Authorization", None)
            request.headers.update(
                auth.headers(self.scopes, action=self.action, repository=self.repository)
            )
            response = yield request
            if response.status_code != 401 or auth_round == self.rounds:
                return
            challenge = preferred_challenge(
                parse_challenges(response.headers.get_list("www-authenticate"))
            )
            if challenge is None:
                return
            if auth.challenge is None:
                auth.adopt(challenge)
            elif challenge.scheme != "bearer":
                return  # Basic credentials were sent and refused
            else:
                # token.md: on insufficient_scope the challenge names the scope it wants;
                # otherwise the token expired or was revoked: fetch a fresh one, once.
                wanted = [s for s in challenge.scopes if s not in self.scopes]
                if not wanted and auth_round == 2:
                    return
                auth.forget(self.scopes)
                self.scopes = [*self.scopes, *wanted]
