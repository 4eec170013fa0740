"""One exception hierarchy for mpkit; the CLI maps it to messages and exit codes.

Every error carries a one-paragraph ``message`` (what is wrong, where) and an
optional ``hint`` (how to fix it). Messages must never contain secrets.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class MpkitError(Exception):
    """Base class: a failure the user can act on. Never shown with a traceback."""

    code = "error"
    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out


class UsageError(MpkitError):
    """The command line itself is wrong (exit 2)."""

    code = "usage"
    exit_code = EXIT_USAGE


class InvalidReferenceError(MpkitError):
    """An image reference or repository name does not parse."""

    code = "invalid_reference"


class ConfigError(MpkitError):
    """A configuration or project file is unreadable or invalid."""

    code = "invalid_config"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.line = line
        self.column = column


class CredentialError(MpkitError):
    """Credentials could not be read, stored or erased (helper failure, bad file)."""

    code = "credentials"


class ImageFormatError(MpkitError):
    """An image layout, archive, manifest or config is malformed."""

    code = "invalid_image"


class RegistryError(MpkitError):
    """A registry operation failed."""

    code = "registry"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        registry: str | None = None,
        repository: str | None = None,
        status: int | None = None,
        error_codes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, hint=hint)
        self.registry = registry
        self.repository = repository
        self.status = status
        self.error_codes = error_codes

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for key in ("registry", "repository", "status"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.error_codes:
            out["registry_errors"] = list(self.error_codes)
        return out


class RegistryUnreachableError(RegistryError):
    code = "registry_unreachable"


class TLSVerificationError(RegistryError):
    code = "tls_untrusted"


class AuthenticationError(RegistryError):
    """The registry (or its token service) rejected the credentials."""

    code = "authentication_failed"


class AccessDeniedError(RegistryError):
    """Authenticated (or anonymous) but not allowed to do this."""

    code = "access_denied"

    def __init__(self, message: str, *, anonymous: bool, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.anonymous = anonymous

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["anonymous"] = self.anonymous
        return out


class NotFoundError(RegistryError):
    """Repository, manifest or blob does not exist."""

    code = "not_found"


class DigestMismatchError(RegistryError):
    """Content did not hash to the digest it was fetched or pushed by."""

    code = "digest_mismatch"


class RegistryProtocolError(RegistryError):
    """The registry answered in a way the distribution spec does not allow."""

    code = "registry_protocol"


class RetriesExhaustedError(RegistryError):
    """Transient failures (5xx, 429, dropped connections) did not clear in time."""

    code = "retries_exhausted"


class BuildServerError(MpkitError):
    """The resident build server could not be started or reached."""

    code = "build_server"


class ContainerEngineError(MpkitError):
    """A container engine (podman, docker, buildah) is missing or failed, or the container
    it ran did. The message ends with the tail of the engine's output."""

    code = "container_engine"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        engine: str | None = None,
        exit_status: int | None = None,
        output: str = "",
    ) -> None:
        super().__init__(message, hint=hint)
        self.engine = engine  # "podman", "docker" or "buildah"
        self.exit_status = exit_status  # None: the program did not start or did not finish
        self.output = output  # the tail of its output, as in the message

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.engine is not None:
            out["engine"] = self.engine
        if self.exit_status is not None:
            out["exit_status"] = self.exit_status
        return out
