"""Every error mpkit shows a user, in one hierarchy; the CLI maps it to messages and exit
codes.

Every error carries a one-paragraph ``message`` (what is wrong, where) and an
optional ``hint`` (how to fix it). Messages must never contain secrets. A class's
``code`` is the ``"error"`` value of ``--json`` output: each code belongs to one class
(a subclass that sets no code of its own refines its parent's error with more data).

Only the standard library is imported here: every layer of mpkit, the built-in registry
included, raises these.
"""

from __future__ import annotations

import enum
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


# -- what the user gave: the command line, settings, the project ----------------------------


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


class ExternalLinkError(MpkitError):
    """A symbolic link in the project leads outside it, and external links are not allowed."""

    code = "external_link"

    def __init__(self, message: str, *, link: str, target: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.link = link
        self.target = target

    def prefixed(self, where: str) -> ExternalLinkError:
        """The same error with *where* (e.g. the Dockerfile line that used the link) first."""
        return ExternalLinkError(
            f"{where}: {self.message}", link=self.link, target=self.target, hint=self.hint
        )

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "link": self.link, "target": self.target}


class NoRegistryError(MpkitError):
    """No repository is configured for the pack, and mpkit may not ask for one."""

    code = "no_registry"


# -- local state: credentials, the cache, locks, background servers -------------------------


class CredentialError(MpkitError):
    """Credentials could not be read, stored or erased (helper failure, bad file)."""

    code = "credentials"


class CacheError(MpkitError):
    """The cache directory cannot be used (e.g. a newer mpkit wrote it)."""

    code = "cache"


class BuildLockError(MpkitError):
    """The project's build lock file cannot be created."""

    code = "build_lock"


class StartError(MpkitError):
    """A background server (the built-in registry, the build server) did not start."""

    code = "server_start"


class BuildServerError(MpkitError):
    """The resident build server could not be started or reached."""

    code = "build_server"


# -- registries -----------------------------------------------------------------------------


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


class Failure(enum.Enum):
    """Why a request got no HTTP answer."""

    TRANSIENT = "transient"  # reset, dropped or timed out: worth another try
    UNREACHABLE = "unreachable"  # refused, no route, unknown host: final
    PLAIN_HTTP = "plain_http"  # TLS to a server that answers in plain HTTP: final
    UNTRUSTED = "untrusted"  # the server's certificate is not trusted: fails closed


class NoAnswerError(RegistryUnreachableError):
    """No try of a request got an HTTP answer; ``failure`` says why the last one did not."""

    def __init__(self, message: str, *, failure: Failure, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.failure = failure


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


# -- images and building them ---------------------------------------------------------------


class ImageFormatError(MpkitError):
    """An image layout, archive, manifest or config is malformed."""

    code = "invalid_image"


class BaseImageError(MpkitError):
    """A build's base image could not be named, pulled or read."""

    code = "base_image"


class SdkBaseError(MpkitError):
    """An SDK local base (``base-adapter:…``) could not be built or published."""

    code = "sdk_base"


class TargetError(MpkitError):
    """The base image's Python cannot be determined or is not supported."""

    code = "python_target"


class ContextError(MpkitError):
    """The build context is unusable: unreadable, hostile (links leaving it), or a bad
    .dockerignore."""

    code = "build_context"

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class DockerfileError(MpkitError):
    """The Dockerfile does not parse or an instruction is invalid."""

    code = "dockerfile"

    def __init__(
        self,
        reason: str,
        *,
        path: str = "Dockerfile",
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = f"{path} line {line}: " if line else f"{path}: "
        super().__init__(where + reason, hint=hint)
        self.reason = reason
        self.path = path
        self.line = line

    def at(self, *, path: str, line: int | None) -> DockerfileError:
        """The same error located at *path*/*line* (when it was raised without one)."""
        if self.line is not None:
            return self
        return DockerfileError(self.reason, path=path, line=line, hint=self.hint)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["path"] = self.path
        if self.line is not None:
            out["line"] = self.line
        return out


class DependencyError(MpkitError):
    """Python requirements could not be installed for the image."""

    code = "python_dependencies"

    def __init__(
        self, message: str, *, hint: str | None = None, requirements: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message, hint=hint)
        self.requirements = requirements


class NoWheelError(DependencyError):
    """A requirement has neither a wheel for the target nor a source distribution that
    may be built (e.g. only Windows wheels, or ``--only-binary``)."""

    code = "no_wheel"


class SourceBuildError(DependencyError):
    """A requirement comes only as a source distribution that this host cannot build into
    a pure-Python wheel: it compiles native code (or its build failed here), so only the
    image, with its own compiler, headers and Python, can build it."""

    code = "source_build"


class PackageIndexError(DependencyError):
    """The package index could not be reached or answered with an error."""

    code = "package_index"


# -- container engines ----------------------------------------------------------------------


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


class EngineUnusable(ContainerEngineError):
    """The engine itself failed: it could not store the image, or create or start a
    container (not the command that ran in one)."""


# -- the adapter's definition (describe.xml) ------------------------------------------------


class DescribeError(MpkitError):
    """describe.xml could not be generated, merged or validated."""

    code = "describe"


class AdapterDefinitionError(DescribeError):
    """The adapter's definition command could not be run, crashed or wrote no valid JSON."""

    code = "adapter_definition"

    def __init__(self, message: str, *, hint: str | None = None, stderr: str = "") -> None:
        super().__init__(message, hint=hint)
        self.stderr = stderr


class AdapterKindMismatchError(DescribeError):
    """manifest.txt's adapter_kinds does not name the adapter kind the adapter defines."""

    code = "adapter_kind_mismatch"

    def __init__(
        self, message: str, *, manifest_kind: str, describe_kind: str, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.manifest_kind = manifest_kind
        self.describe_kind = describe_kind

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["manifest_adapter_kind"] = self.manifest_kind
        out["describe_adapter_kind"] = self.describe_kind
        return out


# -- packs ----------------------------------------------------------------------------------


class PackError(MpkitError):
    """A pack could not be written, or a .pak file is unsafe or malformed."""

    code = "pack"
