"""Where a registry's credential comes from, and where `login`/`logout` put it, as docker
does."""

from __future__ import annotations

import os
from collections.abc import Mapping

from mpkit.errors import CredentialError
from mpkit.reference import credential_key

from .authjson import auth_json_credential
from .dockerconfig import DockerConfig, HelperChoice, load_docker_config
from .helpers import CredentialHelper
from .types import KIND_BASIC, Credential

ENV_USERNAME = "MPKIT_REGISTRY_USERNAME"
ENV_PASSWORD = "MPKIT_REGISTRY_PASSWORD"  # noqa: S105


def env_credential(environ: Mapping[str, str] | None = None) -> Credential | None:
    """The explicit override from ``$MPKIT_REGISTRY_USERNAME`` + ``$MPKIT_REGISTRY_PASSWORD``.

    ``None`` when neither is set; setting only one of them is an error (never silently
    anonymous).
    """
    env = os.environ if environ is None else environ
    username, password = env.get(ENV_USERNAME) or "", env.get(ENV_PASSWORD) or ""
    if not username and not password:
        return None
    if not username or not password:
        missing = ENV_USERNAME if not username else ENV_PASSWORD
        present = ENV_PASSWORD if not username else ENV_USERNAME
        raise CredentialError(
            f"{present} is set but {missing} is not: both are needed for a registry login.",
            hint=f"Set {missing} as well, or unset {present} to use the docker config instead.",
        )
    return Credential(
        username=username,
        password=password,
        source=f"environment ({ENV_USERNAME}/{ENV_PASSWORD})",
    )


def resolve_credential(
    registry: str,
    *,
    repository: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Credential | None:
    """The stored credential for *registry* (a normalised host, ``docker.io`` for Docker Hub).

    Docker's order: ``credHelpers[host]`` -> ``credsStore`` -> config.json ``auths``, then
    containers auth.json. Unlike docker, which stops at the first configured helper, a
    helper that has no entry falls through to the next source: a stale ``credsStore`` must
    not hide a working ``auths`` entry. A helper that is configured but missing or broken
    is an error. ``$MPKIT_REGISTRY_*`` is not consulted here (see :func:`env_credential`).
    """
    key = credential_key(registry)
    config = load_docker_config(environ=environ)
    for helper in _helpers(config, registry, key, environ):
        found = helper.get(key)
        if found is not None:
            return found
    found = config.credential(registry, key)
    if found is not None:
        return found
    return auth_json_credential(registry, repository=repository, environ=environ)


def store_credential(
    registry: str, credential: Credential, *, environ: Mapping[str, str] | None = None
) -> str:
    """Save *credential* for *registry*; returns where it went (human text).

    Through ``credHelpers[host]`` or ``credsStore`` when configured (any plaintext copy
    left in config.json for that host is then removed, as docker does); otherwise in
    config.json ``auths[key]`` (atomic write, mode 0600, all other keys kept).
    """
    _check_storable(credential)
    key = credential_key(registry)
    config = load_docker_config(environ=environ)
    helpers = _helpers(config, registry, key, environ)
    if helpers:
        helpers[0].store(key, credential)
        if config.clear_credentials(registry, key, drop_entries=False):
            config.save()
        return helpers[0].description
    config.set_credential(key, credential)
    config.save()
    return str(config.path)


def erase_credential(registry: str, *, environ: Mapping[str, str] | None = None) -> list[str]:
    """Remove every stored credential for *registry*; returns the places it was removed from.

    Erases from each configured helper (``credHelpers[host]`` and ``credsStore``, since
    lookup falls through both) and drops every config.json ``auths`` entry for the host.
    The containers auth.json belongs to podman and is left alone.
    """
    key = credential_key(registry)
    config = load_docker_config(environ=environ)
    places: list[str] = []
    removed = config.clear_credentials(registry, key, drop_entries=True)
    if removed:
        config.save()
        places += [f'{config.path} (auths["{k}"])' for k in removed]
    places += [h.description for h in _helpers(config, registry, key, environ) if h.erase(key)]
    return places


def _helpers(
    config: DockerConfig, registry: str, key: str, environ: Mapping[str, str] | None
) -> list[CredentialHelper]:
    return [_helper(choice, environ) for choice in config.helpers_for(registry, key)]


def _helper(choice: HelperChoice, environ: Mapping[str, str] | None) -> CredentialHelper:
    return CredentialHelper(choice.name, configured_by=choice.configured_by, environ=environ)


def _check_storable(credential: Credential) -> None:
    if credential.kind != KIND_BASIC:
        return
    if not credential.username or not credential.password:
        raise CredentialError(
            "Nothing to store: a login needs a username and a password (or a token).",
            hint="Pass --username and a password (e.g. with --password-stdin).",
        )
    if ":" in credential.username:
        raise CredentialError(
            "A username containing ':' cannot be stored: docker's `auth` field splits "
            "'username:password' at the first ':'.",
            hint="Use the registry's username without ':' (or an access token).",
        )
