"""Docker-compatible registry credentials: config.json, credential helpers, auth.json."""

from __future__ import annotations

from .authjson import REGISTRY_AUTH_FILE_ENV, auth_json_credential, auth_json_paths
from .dockerconfig import DOCKER_CONFIG_ENV, DockerConfig, docker_config_path, load_docker_config
from .helpers import TOKEN_USERNAME, CredentialHelper
from .resolve import (
    ENV_PASSWORD,
    ENV_USERNAME,
    env_credential,
    erase_credential,
    resolve_credential,
    store_credential,
)
from .types import Credential

__all__ = [
    "DOCKER_CONFIG_ENV",
    "ENV_PASSWORD",
    "ENV_USERNAME",
    "REGISTRY_AUTH_FILE_ENV",
    "TOKEN_USERNAME",
    "Credential",
    "CredentialHelper",
    "DockerConfig",
    "auth_json_credential",
    "auth_json_paths",
    "docker_config_path",
    "env_credential",
    "erase_credential",
    "load_docker_config",
    "resolve_credential",
    "store_credential",
]
