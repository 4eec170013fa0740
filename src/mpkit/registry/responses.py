"""Turn registry error responses into typed, actionable errors.

distribution-spec "Error Codes": the body is {"errors": [{"code", "message", "detail"}]}.
Actions are verbs ("pull", "push", "mount", "log in to") used in messages.
"""

from __future__ import annotations

import httpx

from mpkit.errors import (
    AccessDeniedError,
    InvalidReferenceError,
    NotFoundError,
    RegistryError,
    RegistryProtocolError,
)
from mpkit.reference import Repository
from mpkit.registry.auth import parse_challenges


def _body(response: httpx.Response) -> object:
    try:
        return response.json()
    except (ValueError, httpx.ResponseNotRead, UnicodeDecodeError):
        return None


def error_codes(response: httpx.Response) -> tuple[str, ...]:
    body = _body(response)
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return ()
    return tuple(str(e.get("code")) for e in errors if isinstance(e, dict) and e.get("code"))


def error_detail(response: httpx.Response) -> str:
    """The registry's own words: the first error message, or a challenge's description."""
    body = _body(response)
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            return str(first.get("message") or first.get("code") or "")[:300]
        for key in ("error_description", "message", "details"):
            if isinstance(body.get(key), str):
                return str(body[key])[:300]
    for challenge in parse_challenges(response.headers.get_list("www-authenticate")):
        if challenge.params.get("error_description"):
            return challenge.params["error_description"][:300]
    return ""


def rate_limit_note(headers: httpx.Headers) -> str:
    """Docker Hub's RateLimit headers (e.g. "100;w=21600"), as a readable note."""
    limit = headers.get("ratelimit-limit")
    remaining = headers.get("ratelimit-remaining")
    if not limit and not remaining:
        return ""
    return f"rate limit {limit or '?'}, remaining {remaining or '?'}"


def _repository(registry: str, repository: str | None) -> Repository | None:
    if not repository:
        return None
    try:
        return Repository(registry, repository)
    except InvalidReferenceError:
        return None


def _challenge_error(response: httpx.Response | None) -> str:
    if response is None:
        return ""
    for challenge in parse_challenges(response.headers.get_list("www-authenticate")):
        if challenge.error:
            return challenge.error
    return ""


def denied(
    *,
    registry: str,
    repository: str | None,
    action: str,
    anonymous: bool,
    who: str | None,
    status: int,
    codes: tuple[str, ...] = (),
    response: httpx.Response | None = None,
) -> AccessDeniedError:
    target = f"{registry}/{repository}" if repository else registry
    detail = error_detail(response) if response is not None else ""
    repo = _repository(registry, repository)
    if anonymous:
        message = f"anonymous {action} of {target} is denied: the registry requires credentials"
        hint = (
            "the repository is private (or does not exist). Aria Operations cloud proxies pull "
            "anonymously: make the repository public, or preload the image on every cloud "
            f"proxy; to use credentials for this command, run 'mpkit login {registry}'"
        )
    else:
        verb = "push to" if action == "push" else action
        message = f"{who or 'the configured user'} may not {verb} {target}"
        hint = (
            "ask the registry administrator for the permission, or check that the repository "
            "path is right (some registries answer 'denied' for repositories that do not exist)"
        )
        lowered = detail.lower()
        if repo is not None and repo.is_ecr and ("expired" in lowered or "token" in lowered):
            hint = (
                "the ECR authorization token expired (they last 12 hours): log in again, e.g. "
                f"'aws ecr get-login-password --region {repo.ecr_region} | mpkit login -u AWS "
                f"--password-stdin {registry}'"
            )
        elif _challenge_error(response) == "invalid_token":
            hint = (
                "the registry refused the token as invalid: check that this machine's clock is "
                "right (tokens are time-limited), then log in again"
            )
    if detail:
        message += f" (registry says: {detail})"
    return AccessDeniedError(
        message, hint=hint, anonymous=anonymous, registry=registry, repository=repository,
        status=status, error_codes=codes,
    )  # fmt: skip


def raise_for_status(
    response: httpx.Response,
    *,
    registry: str,
    repository: str | None,
    action: str,
    what: str,
    anonymous: bool,
    who: str | None,
) -> None:
    """Raise the typed error for a failed *response*; *what* names the object asked for."""
    status = response.status_code
    if status < 400:
        return
    codes = error_codes(response)
    detail = error_detail(response)
    suffix = f": {detail}" if detail else ""
    if status in (401, 403) or "DENIED" in codes or "UNAUTHORIZED" in codes:
        raise denied(
            registry=registry, repository=repository, action=action, anonymous=anonymous,
            who=who, status=status, codes=codes, response=response,
        )  # fmt: skip
    if status == 404 or {"NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN"} & set(codes):
        raise _not_found(registry, repository, what, status, codes)
    if status == 413:
        raise RegistryError(
            f"{registry} refused {what} as too large (HTTP 413){suffix}",
            hint="a proxy in front of the registry may limit request sizes "
            "(e.g. nginx client_max_body_size)",
            registry=registry, repository=repository, status=status, error_codes=codes,
        )  # fmt: skip
    if 400 <= status < 500:
        listed = f", {', '.join(codes)}" if codes else ""
        raise RegistryError(
            f"{registry} refused the {action} of {what} (HTTP {status}{listed}){suffix}",
            registry=registry, repository=repository, status=status, error_codes=codes,
        )  # fmt: skip
    raise RegistryProtocolError(
        f"{registry} failed the {action} of {what} with HTTP {status}{suffix}",
        hint="the registry is misbehaving; retry later or check its logs",
        registry=registry, repository=repository, status=status, error_codes=codes,
    )  # fmt: skip


def _not_found(
    registry: str, repository: str | None, what: str, status: int, codes: tuple[str, ...]
) -> NotFoundError:
    repo = _repository(registry, repository)
    if "NAME_UNKNOWN" in codes:
        message = f"repository {registry}/{repository} does not exist"
        hint = "create it in the registry first (Harbor project, ECR repository), or fix the name"
        if repo is not None and repo.is_ecr:
            hint = (
                f"create it: aws ecr create-repository --repository-name {repository} "
                f"--region {repo.ecr_region} (and allow anonymous pulls for Aria Operations)"
            )
    else:
        message = f"{what} not found in {registry}/{repository}"
        hint = "check the tag or digest; 'mpkit image inspect' shows what the registry has"
    return NotFoundError(
        message, hint=hint, registry=registry, repository=repository, status=status,
        error_codes=codes,
    )  # fmt: skip
