"""Every error a user can see is in mpkit.errors, and its --json code names it alone."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import mpkit
from mpkit import errors
from mpkit.errors import MpkitError
from mpkit.imagebuild.dockerfile import NeedsEngineError


def mpkit_error_classes() -> set[type[MpkitError]]:
    """Every MpkitError subclass defined anywhere in mpkit (each module imported)."""
    found: set[type[MpkitError]] = set()
    for module_info in pkgutil.walk_packages(mpkit.__path__, "mpkit."):
        if module_info.name.endswith(".__main__"):
            continue  # running it is what importing it does
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, MpkitError) and cls.__module__.startswith("mpkit"):
                found.add(cls)
    return found


def test_every_error_lives_in_mpkit_errors() -> None:
    classes = mpkit_error_classes()
    assert len(classes) > 30  # the walk did find them
    elsewhere = sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in classes
                       if cls.__module__ != errors.__name__)  # fmt: skip
    assert elsewhere == []


def test_every_code_names_one_error() -> None:
    owners: dict[str, list[str]] = {}
    for cls in mpkit_error_classes():
        if "code" in vars(cls):  # a subclass without a code refines its parent's error
            owners.setdefault(cls.code, []).append(cls.__name__)
    shared = {code: names for code, names in owners.items() if len(names) > 1}
    assert shared == {}


def test_the_engine_fallback_is_a_signal_not_an_error() -> None:
    assert not issubclass(NeedsEngineError, MpkitError)
