"""AWS ECR credentials and checks through the AWS SDK (optional extra ``mpkit[ecr]``).

ECR's credential is a 12-hour token from GetAuthorizationToken, base64 of ``AWS:password``. Used
when no credential helper (e.g. ``ecr-login``) or stored login covers the registry.
boto3 honours the usual AWS configuration (profiles, environment, ``AWS_ENDPOINT_URL_ECR``).
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

from mpkit.errors import CredentialError, NotFoundError
from mpkit.reference import Repository

from .types import Credential

REFRESH_BEFORE = 15 * 60  # seconds before expiry a cached token is replaced
_cache: dict[str, tuple[Credential, float]] = {}
_lock = threading.Lock()


def _client(region: str) -> Any | None:
    try:
        import boto3
        import botocore.exceptions  # noqa: F401
    except ImportError:
        return None
    return boto3.client("ecr", region_name=region)


def ecr_credential(repository: Repository) -> Credential | None:
    """A token for *repository*'s ECR registry, or None without boto3 or AWS credentials."""
    if not repository.is_ecr or repository.ecr_region is None:
        return None
    with _lock:
        cached = _cache.get(repository.registry)
        if cached is not None and cached[1] - time.time() > REFRESH_BEFORE:
            return cached[0]
    client = _client(repository.ecr_region)
    if client is None:
        return None
    import botocore.exceptions

    kwargs = {"registryIds": [repository.ecr_account_id]} if repository.ecr_account_id else {}
    try:
        answer = client.get_authorization_token(**kwargs)
    except botocore.exceptions.NoCredentialsError:
        return None
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise CredentialError(
            f"AWS refused an ECR token for {repository.registry}: {exc}",
            hint="check your AWS credentials and region (aws sts get-caller-identity), or log "
            "in with 'aws ecr get-login-password | mpkit login -u AWS --password-stdin "
            f"{repository.registry}'",
        ) from None
    data = answer["authorizationData"][0]
    username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    expires = data.get("expiresAt")
    expiry = expires.timestamp() if hasattr(expires, "timestamp") else time.time() + 12 * 3600
    credential = Credential(
        username=username, password=password, source="AWS SDK (ecr:GetAuthorizationToken)"
    )
    with _lock:
        _cache[repository.registry] = (credential, expiry)
    return credential


def check_ecr_repository(repository: Repository) -> None:
    """Raise NotFoundError with the create-repository command when it does not exist.

    Does nothing without boto3 or AWS credentials: the push then finds out itself.
    """
    if not repository.is_ecr or repository.ecr_region is None:
        return
    client = _client(repository.ecr_region)
    if client is None:
        return
    import botocore.exceptions

    kwargs: dict[str, Any] = {"repositoryNames": [repository.path]}
    if repository.ecr_account_id:
        kwargs["registryId"] = repository.ecr_account_id
    try:
        client.describe_repositories(**kwargs)
    except client.exceptions.RepositoryNotFoundException:
        raise NotFoundError(
            f"ECR repository {repository.path} does not exist in {repository.registry}",
            hint=f"create it: aws ecr create-repository --repository-name {repository.path} "
            f"--region {repository.ecr_region}; and allow anonymous pulls, which Aria "
            "Operations needs",
            registry=repository.registry,
            repository=repository.path,
        ) from None
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.ClientError):
        return
