"""Open a registry client with the user's credentials (or none), the way commands need it."""

from __future__ import annotations

from mpkit.credentials import Credential, resolve_credential
from mpkit.credentials.ecr import ecr_credential
from mpkit.errors import InvalidReferenceError
from mpkit.reference import Repository
from mpkit.registry.client import RegistryClient
from mpkit.registry.locations import BlobLocations
from mpkit.registry.transport import ClientOptions, CredentialProvider, Transport
from mpkit.statedir import state_dir


def open_client(
    registry: str,
    *,
    options: ClientOptions | None = None,
    anonymous: bool = False,
    explicit: Credential | None = None,
) -> RegistryClient:
    """A client for *registry*.

    *explicit* (flags or MPKIT_REGISTRY_* variables) overrides the stored credentials;
    *anonymous* uses none at all, as an Aria Operations cloud proxy does.
    """
    provider: CredentialProvider | None
    if anonymous:
        provider = None
    elif explicit is not None:
        provider = lambda: explicit  # noqa: E731
    else:
        provider = lambda: _stored_or_ecr(registry)  # noqa: E731
    return RegistryClient(Transport(registry, credentials=provider, options=options))


def blob_locations() -> BlobLocations:
    return BlobLocations(state_dir() / "blob-locations.sqlite")


def _stored_or_ecr(registry: str) -> Credential | None:
    """Docker's stores first; for ECR hosts the AWS SDK when nothing is stored."""
    stored = resolve_credential(registry)
    if stored is not None:
        return stored
    try:
        repository = Repository(registry, "x")
    except InvalidReferenceError:
        return None
    return ecr_credential(repository) if repository.is_ecr else None
