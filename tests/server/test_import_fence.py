"""The built-in registry imports nothing of mpkit's core but errors and media types.

Like go-containerregistry's depcheck_test.go: every module of mpkit.server is imported in
a fresh interpreter, and any other mpkit module that comes along fails the test, named
with the server module that pulled it in.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import mpkit.server

ALLOWED = {
    "mpkit",  # the package itself: __version__
    "mpkit.errors",
    "mpkit.image",  # the package, which imports its names on first use
    "mpkit.image.mediatypes",
    # Standard library and errors only: starting and stopping detached servers, shared
    # with the build server. What it imports is checked here all the same.
    "mpkit.background",
    # Standard library only: atomic writes and flock locks, one way for all of mpkit.
    "mpkit.atomicfile",
    "mpkit.filelock",
}

PROBE = """
import importlib, json, sys
pulled = {}
for name in sys.argv[1:]:
    before = set(sys.modules)
    importlib.import_module(name)
    pulled[name] = sorted(m for m in set(sys.modules) - before
                          if m.split(".")[0] == "mpkit" and not m.startswith("mpkit.server"))
print(json.dumps(pulled))
"""


def server_modules() -> list[str]:
    found = pkgutil.iter_modules(mpkit.server.__path__, "mpkit.server.")
    return ["mpkit.server", *sorted(module.name for module in found)]


def test_server_modules_import_only_errors_and_media_types() -> None:
    modules = server_modules()
    assert "mpkit.server.handler" in modules
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *modules],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    pulled: dict[str, list[str]] = json.loads(result.stdout)
    violations = {
        module: outside for module, found in pulled.items() if (outside := set(found) - ALLOWED)
    }
    assert violations == {}, "mpkit.server must not import the rest of mpkit"


def test_importing_the_package_loads_no_server_module() -> None:
    probe = "import sys, mpkit.server; print(sorted(m for m in sys.modules if 'mpkit' in m))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "['mpkit', 'mpkit.server']"
