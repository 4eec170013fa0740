"""Requirements published only as source distributions, built on this host for the image.

pip inside the image builds such a requirement into a wheel with the image's Python and
installs that. uv does the same here, with the same build backend in an isolated build
environment, using a Python of the image's major.minor when this machine has one (else
this host's). Its result is accepted only when it is pure Python (every tag ``*-none-any``
and no extension module), since only then is it what the image would have built. Anything
else is native code that only the image's own compiler, headers and Python can build:
:class:`SourceBuildError`, which the builder answers by running the line with a container
engine. A platform wheel built on this host never goes into the image.

uv keeps what it built in its cache, by the source distribution (its hash-checked download
and the build settings), so an unchanged sdist is built once.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mpkit.childproc import run
from mpkit.errors import SourceBuildError
from mpkit.imagebuild.target import canonical_name

PYTHON_FIND_TIMEOUT = 60
# uv's report of each distribution it built ("      Built purepkg==1.0").
_BUILT = re.compile(r"^\s*Built (\S+?)(?:==| @ )(\S+)\s*$", re.MULTILINE)
_FAILED_BUILD = re.compile(r"Failed to (?:download and )?build `([^`]+)`")
_BACKEND_FAILED = ("The build backend returned an error", "Build backend failed", "Call to `")
_PLATFORM_WHEEL = re.compile(r"The built wheel `([^`]+)` is not compatible")
_COMPILER_WORDS = re.compile(
    r"\b(?:gcc|g\+\+|cc1|clang|cc|c\+\+|rustc|cargo|cmake|meson|ninja|pg_config|"
    r"mysql_config|Python\.h|compiler)\b",
    re.IGNORECASE,
)
_NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
_BUILD_INFO = "uv_build.json"  # uv writes it into the dist-info of what it built


@dataclass(frozen=True)
class BuildPython:
    """The interpreter that builds source distributions, and its major.minor."""

    path: str
    version: str


@dataclass(frozen=True)
class NativeBuild:
    """A requirement whose source only the image can build, and what showed it."""

    name: str
    reason: str


def build_python(version: str, uv: str, env: Mapping[str, str]) -> BuildPython:
    """A Python of *version* ("3.9") that uv finds on this machine without downloading,
    else the one running mpkit."""
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    if version == host:
        return BuildPython(sys.executable, host)
    try:
        found = run(
            [uv, "python", "find", "--system", "--no-python-downloads", "--no-config", version],
            env=dict(env), stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=PYTHON_FIND_TIMEOUT, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return BuildPython(sys.executable, host)
    path = found.stdout.strip().splitlines()[-1:] if found.returncode == 0 else []
    return BuildPython(path[0], version) if path else BuildPython(sys.executable, host)


def built_names(tree: Path, stderr: str) -> set[str]:
    """Canonical names of the distributions uv built from source for *tree*."""
    names = {canonical_name(match[1]) for match in _BUILT.finditer(stderr)}
    for info in tree.glob("*.dist-info"):
        if (info / _BUILD_INFO).is_file():
            names.add(canonical_name(_dist_name(info)))
    return names


def native_builds(tree: Path, built: Iterable[str]) -> list[NativeBuild]:
    """The distributions among *built* whose wheel, as installed in *tree*, is not pure."""
    wanted = set(built)
    found = []
    for info in sorted(tree.glob("*.dist-info")):
        name = canonical_name(_dist_name(info))
        if name not in wanted:
            continue
        tags = _wheel_tags(info)
        impure = [tag for tag in tags if not tag.endswith("-none-any")]
        modules = _extension_modules(info)
        if impure or modules or not tags:
            shown = ", ".join(impure or tags) or "no tag"
            what = f"a wheel tagged {shown}" + (f" with {modules[0]}" if modules else "")
            found.append(NativeBuild(name, f"built on this host it gives {what}"))
    return found


def failed_builds(stderr: str) -> list[NativeBuild]:
    """Source builds that uv reports as failed (or as giving a wheel for another platform),
    with the reason in a few words and the end of the build's output."""
    flat = " ".join(stderr.split())  # uv wraps long lines at the terminal's width
    names = [_requirement_name(m) for m in _FAILED_BUILD.findall(flat)]
    if not names:
        return []
    platform = _PLATFORM_WHEEL.search(flat)
    if platform:
        reason = f"built on this host it gives {platform[1]}, a wheel for this host only"
    elif any(marker in flat for marker in _BACKEND_FAILED):
        compiler = " (it needs a compiler)" if _COMPILER_WORDS.search(stderr) else ""
        reason = f"its build failed on this host{compiler}: {_tail(stderr)}"
    else:
        return []  # e.g. its build requirements could not be resolved or downloaded
    return [NativeBuild(name, reason) for name in dict.fromkeys(names)]


def source_build_error(found: list[NativeBuild], *, wheel_target: str) -> SourceBuildError:
    """The error for requirements only the image can build (*wheel_target*: e.g.
    'cp311-manylinux_2_36_x86_64')."""
    names = tuple(dict.fromkeys(b.name for b in found))
    details = "; ".join(f"{b.name}: {b.reason}" for b in found)
    listed = ", ".join(names)
    return SourceBuildError(
        f"only a source distribution of {listed} fits the image, and this host cannot build "
        f"it into a pure-Python wheel ({details}): pip inside the image builds it with the "
        "image's own compiler, headers and Python",
        hint="install podman or docker, and mpkit runs this pip install in the image with it; "
        f"or build a wheel of {listed} for {wheel_target} (e.g. 'pip wheel' inside the image) "
        "and pass its directory with --wheelhouse DIR",
        requirements=names,
    )


def _dist_name(info: Path) -> str:
    try:
        for line in (info / "METADATA").read_text("utf-8", "replace").splitlines():
            if line.lower().startswith("name:"):
                return line.partition(":")[2].strip()
            if not line.strip():
                break
    except OSError:
        pass
    return info.name.rsplit("-", 1)[0]


def _wheel_tags(info: Path) -> list[str]:
    try:
        text = (info / "WHEEL").read_text("utf-8", "replace")
    except OSError:
        return []
    return [line.partition(":")[2].strip() for line in text.splitlines()
            if line.lower().startswith("tag:")]  # fmt: skip


def _extension_modules(info: Path) -> list[str]:
    try:
        rows = (info / "RECORD").read_text("utf-8", "replace").splitlines()
    except OSError:
        return []
    paths = (row.split(",", 1)[0] for row in rows)
    return [p for p in paths if p.endswith(_NATIVE_SUFFIXES) or ".so." in p.rsplit("/", 1)[-1]]


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    return canonical_name(match[0]) if match else requirement


def _tail(stderr: str, lines: int = 6) -> str:
    """The end of the build backend's own output (what uv shows after '[stderr]')."""
    _, marker, backend = stderr.rpartition("[stderr]")
    text = backend if marker else stderr
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    kept = [line for line in kept if not line.startswith(("hint:", "Using ", "Resolved "))]
    return " | ".join(kept[-lines:])[:800]
