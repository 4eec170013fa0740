"""What a ``pip install`` line asks for: its requirement files (read from the build's
COPY sources, the base image or the context), top-level names and index options."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mpkit.errors import DependencyError
from mpkit.imagebuild.fsview import FilesystemView, normpath, resolve, stat
from mpkit.imagebuild.piprun import PipInstall
from mpkit.imagebuild.pydeps.pipcompat import PipReader, PipRules, Warn, logical_lines
from mpkit.imagebuild.target import PythonTarget, canonical_name

READ_LIMIT = 16 << 20
_REQ_FILE_OPTION = re.compile(r"^(-r|--requirement|-c|--constraint)(?:[= ]\s*|(?<=-[rc]))(\S+)")
_ABSOLUTE_REFERENCE = re.compile(
    rb"(?m)^(\s*(?:-r|--requirement|-c|--constraint)(?:[ \t]*=?[ \t]*))(/\S*)"
)
_REQ_NAME = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:[\[(<>=!~;@ ]|$)")


@dataclass
class Inputs:
    """The requirement files a line reads, and the names it asks for at the top level."""

    files: dict[str, bytes] = field(default_factory=dict)  # image path -> content
    specs: list[str] = field(default_factory=list)  # the line's requirements, as pip reads them
    prereleases: list[str] = field(default_factory=list)  # names pip takes pre-releases of
    requirements: list[str] = field(default_factory=list)  # top-level -r (image paths)
    constraints: list[str] = field(default_factory=list)  # top-level -c (image paths)
    names: list[str] = field(default_factory=list)  # top-level requirement names
    unnamed: bool = False  # a top-level requirement is a bare URL or path

    @property
    def requested(self) -> frozenset[str] | None:
        """Names pip marks REQUESTED (None: unknown, keep what uv wrote)."""
        return None if self.unnamed else frozenset(self.names)


@dataclass(frozen=True)
class _Reader:
    """Where requirement files come from, and how the image's pip reads them."""

    base: FilesystemView
    context_root: Path
    mapping: Mapping[str, Path]
    pip: PipReader

    def origin(self, host: Path | None, image_path: str) -> str:
        """How the user knows a file: its path in the project, else where it is."""
        if host is None:
            return f"{image_path} (in the base image)"
        try:
            return host.relative_to(self.context_root).as_posix()
        except ValueError:
            return str(host)


def collect_inputs(
    install: PipInstall,
    *,
    workdir: str,
    base: FilesystemView,
    context_root: Path,
    mapping: Mapping[str, Path],
    rules: PipRules | None = None,
    warn: Warn = lambda _message: None,
    line_origin: str = "the pip install line",
) -> Inputs:
    """Read the line's ``-r``/``-c`` files (and the files they name) and its names.

    Lines that the image's pip (*rules*) reads differently from uv are rewritten as that
    pip reads them, with a warning naming the file (or *line_origin*) and line.
    """
    pip = PipReader(rules or PipRules(None), warn)
    reader = _Reader(base, context_root, mapping, pip)
    inputs = Inputs(specs=[pip.requirement(spec, line_origin) for spec in install.specs])
    for spec in install.specs:
        _add_name(inputs, spec)
    for kind, args in (("r", install.requirements), ("c", install.constraints)):
        for arg in args:
            listed = inputs.requirements if kind == "r" else inputs.constraints
            if "://" in arg:  # a remote file: uv fetches it (its names stay unknown)
                listed.append(arg)
                inputs.unnamed = inputs.unnamed or kind == "r"
                continue
            image_path = normpath(posixpath.join(workdir or "/", arg))
            explicit = mapping.get(arg) or mapping.get(image_path)
            fallback = None if arg.startswith("/") else context_root / arg
            _load_file(inputs, reader, arg, image_path, explicit, fallback, top=kind == "r")
            listed.append(image_path)
    inputs.prereleases = pip.prerelease_names
    return inputs


def _load_file(
    inputs: Inputs,
    reader: _Reader,
    arg: str,
    image_path: str,
    explicit: Path | None,
    fallback: Path | None,
    *,
    top: bool,
) -> None:
    """Read one requirements file (the caller's mapping, else the base image, else the
    *fallback* host path) and, recursively, the files it names."""
    if image_path in inputs.files:
        return
    host, base = explicit, reader.base
    data: bytes | None = None
    if host is None and stat(base, image_path) is not None:
        data = base.read_file(resolve(base, image_path), limit=READ_LIMIT)
    elif host is None and fallback is not None and fallback.is_file():
        host = fallback
    if host is not None:
        data = _read_host(host, arg)
    if data is None:
        raise DependencyError(
            f"requirements file {arg!r} ({image_path} in the image) was not found in the "
            "build context or the base image",
            hint="COPY the file into the image before the pip install line",
        )
    data = reader.pip.file(data, reader.origin(host, image_path))
    inputs.files[image_path] = data
    for option, ref in _file_references(data):
        if "://" in ref:
            continue  # uv fetches remote requirement files itself
        nested = normpath(posixpath.join(posixpath.dirname(image_path), ref))
        near = None if host is None or ref.startswith("/") else host.parent / ref
        nested_top = top and option in ("-r", "--requirement")
        explicit = reader.mapping.get(nested)
        _load_file(inputs, reader, ref, nested, explicit, near, top=nested_top)
    if top:
        for line in _logical_lines(data):
            if not line.startswith("-"):
                _add_name(inputs, line)


def _read_host(path: Path, arg: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DependencyError(
            f"cannot read requirements file {arg!r} from {path}: {exc.strerror}"
        ) from exc


def _logical_lines(data: bytes) -> Iterator[str]:
    """Requirement-file lines with continuations joined and comments removed."""
    for _first, _last, line in logical_lines(data.decode("utf-8", "replace")):
        yield line


def _file_references(data: bytes) -> Iterator[tuple[str, str]]:
    for line in _logical_lines(data):
        match = _REQ_FILE_OPTION.match(line)
        if match:
            yield match[1], match[2]


def rebase_references(data: bytes, root: Path) -> bytes:
    """Point absolute ``-r``/``-c`` paths at the copies under *root* (the image's '/')."""
    prefix = str(root).encode()
    return _ABSOLUTE_REFERENCE.sub(lambda m: m[1] + prefix + m[2], data)


def _add_name(inputs: Inputs, requirement: str) -> None:
    match = _REQ_NAME.match(requirement.strip())
    if match is None:
        inputs.unnamed = True
    elif canonical_name(match[1]) not in inputs.names:
        inputs.names.append(canonical_name(match[1]))


# -- index options ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexOptions:
    """Where uv looks for distributions, as pip inside the image would."""

    index_url: str | None
    extra_index_urls: tuple[str, ...]
    find_links: tuple[str, ...]  # URLs or host paths
    no_index: bool
    trusted_hosts: tuple[str, ...]
    pre: bool


def index_options(
    install: PipInstall,
    target: PythonTarget,
    workdir: str,
    context_root: Path,
    mapping: Mapping[str, Path],
) -> IndexOptions:
    """Command-line options, else the image's PIP_* environment (as pip reads them)."""
    env = target.env
    links = install.find_links or tuple(env.get("PIP_FIND_LINKS", "").split())
    return IndexOptions(
        index_url=install.index_url or env.get("PIP_INDEX_URL") or None,
        extra_index_urls=install.extra_index_urls
        or tuple(env.get("PIP_EXTRA_INDEX_URL", "").split()),
        find_links=tuple(_find_links_location(f, workdir, context_root, mapping) for f in links),
        no_index=install.no_index or truthy(env.get("PIP_NO_INDEX")),
        trusted_hosts=install.trusted_hosts or tuple(env.get("PIP_TRUSTED_HOST", "").split()),
        pre=install.pre or truthy(env.get("PIP_PRE")),
    )


def _find_links_location(
    value: str, workdir: str, context_root: Path, mapping: Mapping[str, Path]
) -> str:
    if "://" in value:
        return value
    image_path = normpath(posixpath.join(workdir or "/", value))
    host = mapping.get(value) or mapping.get(image_path)
    if host is None and not value.startswith("/") and (context_root / value).is_dir():
        host = context_root / value
    if host is None:
        raise DependencyError(
            f"--find-links {value!r} ({image_path} in the image) is not a directory the "
            "native builder can read",
            hint="pass the wheel directory with --wheelhouse DIR, or build with --engine podman",
        )
    return str(host)


def truthy(value: str | None) -> bool:
    """A PIP_* boolean environment value, as pip reads it."""
    return (value or "").strip().lower() in ("1", "true", "yes", "on")
