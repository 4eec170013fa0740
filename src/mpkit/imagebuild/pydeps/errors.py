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
