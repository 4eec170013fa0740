"""Dependencies point one way (like go-containerregistry's depcheck_test.go).

Every import between mpkit's packages, function-level ones included, is read from the
source and must go to a lower layer. The pipeline's stages sit on the shared types and
leaves, the flows sit on the stages, and only the command-line layer sits on the flows.
The built-in registry and the build server are side pieces: the core never imports
them, and the registry imports nothing of the core (tests/server/test_import_fence.py
checks what it loads at run time).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import mpkit

SOURCE = Path(mpkit.__file__).parent

# Lower numbers are lower layers; a module may import its own package and lower layers.
LAYERS: dict[str, int] = {
    # leaves: the standard library and errors only
    **dict.fromkeys(
        ("mpkit", "errors", "filelock", "childenv", "childproc", "statedir", "javaproperties"), 0
    ),
    **dict.fromkeys(("atomicfile", "exiting", "interaction", "background", "reference"), 1),
    "jsonfile": 2,
    # shared types and local state
    **dict.fromkeys(("cache", "project", "credentials", "engine"), 3),
    **dict.fromkeys(("image", "settings"), 4),
    # the stages of the pipeline
    **dict.fromkeys(("registry", "pack"), 5),
    **dict.fromkeys(("imagebuild", "verify"), 6),
    "describe": 7,
    "init": 8,
    # the flows, then the ways in
    "workflow": 9,
    "cli": 10,
    "launcher": 11,
    "buildserver": 12,
    "__main__": 13,
}
# The built-in registry: only these, whatever their layer.
SERVER_MAY_IMPORT = {"mpkit", "errors", "image.mediatypes", "background", "atomicfile",
                     "filelock"}  # fmt: skip
# Who may start or talk to the side pieces.
SIDE_PIECES = {"server": {"workflow", "cli"}, "buildserver": {"cli", "launcher"}}


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(SOURCE.rglob("*.py")):
        parts = path.relative_to(SOURCE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(("mpkit", *parts)), path


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every absolute import of mpkit in *path*."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        else:
            continue
        for name in names:
            if name == "mpkit" or name.startswith("mpkit."):
                yield node.lineno, name


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mpkit"


def test_every_package_has_a_layer() -> None:
    packages = {package(module) for module, _ in modules()}
    assert packages - {"server"} <= set(LAYERS), sorted(packages - {"server"} - set(LAYERS))


@pytest.mark.parametrize("module,path", list(modules()), ids=lambda v: str(v))
def test_imports_point_down(module: str, path: Path) -> None:
    own = package(module)
    wrong = []
    for line, name in imports(path):
        other = package(name)
        if other == own:
            continue
        if own == "server":
            allowed = name.removeprefix("mpkit.") in SERVER_MAY_IMPORT or name == "mpkit"
            if not allowed:
                wrong.append(f"line {line}: {name} (the built-in registry stands alone)")
            continue
        if other in SIDE_PIECES:
            if own not in SIDE_PIECES[other]:
                wrong.append(f"line {line}: {name} (only {sorted(SIDE_PIECES[other])} may)")
            continue
        if LAYERS[other] >= LAYERS[own]:
            wrong.append(f"line {line}: {name} (layer {LAYERS[other]} ≥ {own}'s {LAYERS[own]})")
    assert not wrong, f"{module} imports upward or sideways:\n" + "\n".join(wrong)
