"""Turn registry error responses into typed, actionable errors.

distribution-spec "Error Codes": the body is {"errors": [{"code", "message", "detail"}]}.
"""

from __future__ import annotations

import httpx

from mpkit.errors import (
    AccessDeniedError,
    NotFoundError,
    RegistryError,
    RegistryProtocolError,
)


def error_codes(response: httpx.Response) -> tuple[str, ...]:
    try:
        body = response.json()
    except (ValueError, httpx.ResponseNotRead):
        return ()
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return ()
    return tuple(str(e.get("code")) for e in errors if isinstance(e, dict) and e.get("code"))


def error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        first = body["errors"][0]
        return str(first.get("message") or first.get("code") or "")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, httpx.ResponseNotRead):
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
) -> AccessDeniedError:
    target = f"{registry}/{repository}" if repository else registry
    if anonymous:
        message = f"anonymous {action} of {target} is denied: the registry requires credentials"
        hint = (
            "the repository is private (or does not exist). Aria Operations cloud proxies pull "
            "anonymously: make the repository public, or log in with 'mpkit login "
            f"{registry}' for this command"
        )
    else:
        message = f"{who or 'the configured user'} may not {action} {target}"
        hint = (
            "ask the registry administrator for the permission, or check that the repository "
            "path is right (some registries answer 'denied' for repositories that do not exist)"
        )
    return AccessDeniedError(
        message,
        hint=hint,
        anonymous=anonymous,
        registry=registry,
        repository=repository,
        status=status,
        error_codes=codes,
    )


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
            registry=registry,
            repository=repository,
            action=action,
            anonymous=anonymous,
            who=who,
            status=status,
            codes=codes,
        )
    if status == 404 or {"NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN"} & set(codes):
        if "NAME_UNKNOWN" in codes:
            message = f"repository {registry}/{repository} does not exist"
            hint = (
                "create it in the registry first (Harbor project, ECR repository), or fix the name"
            )
        else:
            message = f"{what} not found in {registry}/{repository}"
            hint = "check the tag or digest; 'mpkit image inspect' lists what the registry has"
        raise NotFoundError(
            message,
            hint=hint,
            registry=registry,
            repository=repository,
            status=status,
            error_codes=codes,
        )
    if status == 413:
        raise RegistryError(
            f"{registry} refused {what} as too large (HTTP 413){suffix}",
            hint="a proxy in front of the registry may limit request sizes "
            "(e.g. nginx client_max_body_size)",
            registry=registry,
            repository=repository,
            status=status,
            error_codes=codes,
        )
    if 400 <= status < 500:
        raise RegistryError(
            f"{registry} rejected {action} of {what} (HTTP {status}{_codes(codes)}){suffix}",
            registry=registry,
            repository=repository,
            status=status,
            error_codes=codes,
        )
    raise RegistryProtocolError(
        f"{registry} failed {action} of {what} with HTTP {status}{suffix}",
        hint="the registry is misbehaving; retry later or check its logs",
        registry=registry,
        repository=repository,
        status=status,
        error_codes=codes,
    )


def _codes(codes: tuple[str, ...]) -> str:
    return ", " + ", ".join(codes) if codes else ""
