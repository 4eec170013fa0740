"""The errors of installing a ``pip install`` line natively."""

from __future__ import annotations

from mpkit.errors import MpkitError


class DependencyError(MpkitError):
    """Python requirements could not be installed for the image."""

    code = "python_dependencies"

    def __init__(
        self, message: str, *, hint: str | None = None, requirements: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message, hint=hint)
        self.requirements = requirements


class NoWheelError(DependencyError):
    """A requirement has no wheel for the target (it would need compiling)."""

    code = "no_wheel"


class PackageIndexError(DependencyError):
    """The package index could not be reached or answered with an error."""

    code = "package_index"
