"""Install a Dockerfile's ``pip install`` for the image's Python, from any host.

uv resolves and installs wheels for the *target* (``--python-platform`` and
``--python-version`` make it evaluate environment markers and wheel tags for the image,
not the host) into a staging directory; the staging tree is then mapped to the paths,
owners, modes and shebangs that pip running inside the image would have produced.

How pip's default ``--upgrade-strategy only-if-needed`` is emulated: every distribution
the base image already has is planted in the staging directory as a stub ``.dist-info``
(name and version only). uv, like pip, keeps installed distributions that satisfy the
requirements, so without ``--upgrade`` nothing the base satisfies is installed; with
``--upgrade`` the top-level names are passed as ``--upgrade-package`` (newest allowed
version) while dependencies the base satisfies keep the base's version; ``eager`` passes
``--upgrade``. Stubs that uv replaced are base distributions pip would uninstall: when
they live in the directory pip installs into, the layer gets whiteouts for their files
(pip leaves copies in other directories alone, e.g. Debian's /usr/lib/python3). A stub
has no Requires-Dist, so the base's own dependencies are taken as satisfied.
"""

from __future__ import annotations

import base64
import configparser
import csv
import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from mpkit import __version__
from mpkit.build.fsview import FilesystemView, normpath, resolve, stat
from mpkit.build.piprun import PipInstall, redact_url
from mpkit.build.target import PythonTarget, canonical_name
from mpkit.errors import MpkitError
from mpkit.image.layerwriter import LayerEntry

CACHE_FORMAT = 1
MAX_SHEBANG = 127  # Linux's limit; distlib falls back to a /bin/sh trampoline beyond it
# pip's console-script template (distlib's ScriptMaker.script_template).
SCRIPT_TEMPLATE = r"""# -*- coding: utf-8 -*-
import re
import sys
from %(module)s import %(import_name)s
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\.pyw|\.exe)?$', '', sys.argv[0])
    sys.exit(%(func)s())
"""
STUB_INSTALLER = b"mpkit-base-image\n"  # marks stub dist-infos planted for the base's dists
READ_LIMIT = 16 << 20
UV_TIMEOUT = 1800
# uv's --python-platform manylinux targets (uv >= 0.5), oldest first.
MANYLINUX_GLIBC_MINORS = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)
_UV_ENV_KEEP = {
    "UV_HTTP_TIMEOUT", "UV_HTTP_RETRIES", "UV_CONCURRENT_DOWNLOADS", "UV_CONCURRENT_INSTALLS",
    "UV_OFFLINE", "UV_SYSTEM_CERTS", "UV_NATIVE_TLS",
}  # fmt: skip
_UV_BOOKKEEPING = {"uv_cache.json", "uv_build.json"}
_DATA_ROOTS = {"share", "etc", "include"}  # where uv --target puts a wheel's .data/
_REQ_FILE_OPTION = re.compile(r"^(-r|--requirement|-c|--constraint)(?:[= ]\s*|(?<=-[rc]))(\S+)")
_ABSOLUTE_REFERENCE = re.compile(
    rb"(?m)^(\s*(?:-r|--requirement|-c|--constraint)(?:[ \t]*=?[ \t]*))(/\S*)"
)
_REQ_NAME = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:[\[(<>=!~;@ ]|$)")
_PEP440 = re.compile(
    r"^v?(\d+!)?\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[a-z0-9]+(\.[a-z0-9]+)*)?$",
    re.IGNORECASE,
)
_NO_WHEEL_NAME = (
    re.compile(r"Wheels are required for `([^`]+)`"),
    re.compile(r"only found wheels for `([^`]+)`"),
    re.compile(r"Wheels are available for `([^`]+)`"),
    re.compile(r"all versions of ([A-Za-z0-9._-]+) have no (?:usable )?wheels"),
    re.compile(
        r"(?:Because |[Aa]nd because |\band )([A-Za-z0-9._-]+)[^ ]* has no (?:usable )?wheels"
    ),
)
_NETWORK_HINTS = (
    "Failed to fetch", "error sending request", "Request failed", "tcp connect error",
    "dns error", "certificate", "Connection refused", "timed out", "Could not connect",
    "HTTP status client error", "HTTP status server error",
)  # fmt: skip


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


@dataclass(frozen=True)
class DependencyLayer:
    """The layer a ``pip install`` RUN step produces, and what it installed."""

    entries: list[LayerEntry]
    cache_key: str
    installed: dict[str, str]  # canonical name -> version
    uninstalled: dict[str, str] = field(default_factory=dict)  # base dists pip replaced
    staging: Path | None = None  # host files the entries read from


# -- uv -----------------------------------------------------------------------------------


def uv_binary() -> str:
    """The uv executable shipped with the ``uv`` package (a declared dependency)."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
    raise DependencyError(
        "uv is not installed: the native builder needs it to install Python requirements",
        hint="reinstall mpkit (pip install mpkit) so that its 'uv' dependency is present",
    )


@lru_cache(maxsize=4)
def uv_version(binary: str | None = None) -> str:
    """``uv --version``'s version number ("0.13.9")."""
    out = subprocess.run(
        [binary or uv_binary(), "--version"], capture_output=True, text=True, check=False
    )
    match = re.search(r"\buv (\d+\.\d+\.\d+\S*)", out.stdout)
    return match[1] if match else "unknown"


def uv_python_platform(target: PythonTarget) -> str:
    """uv's ``--python-platform`` for the target: musl, or the newest manylinux_2_N it
    supports that is not newer than the image's glibc."""
    if target.libc == "musl":
        return f"{target.arch}-unknown-linux-musl"
    major, minor = target.libc_version or (0, 0)
    usable = [m for m in MANYLINUX_GLIBC_MINORS if major == 2 and m <= minor]
    if not usable:
        raise DependencyError(
            f"the base image's glibc {major}.{minor} is older than manylinux2014 (glibc 2.17): "
            "no prebuilt wheels can target it",
            hint="build with --engine podman (the engine compiles inside the image)",
        )
    return f"{target.arch}-manylinux_2_{usable[-1]}"


def wheel_platform_tag(python_platform: str) -> str:
    """'x86_64-manylinux_2_36' -> 'manylinux_2_36_x86_64' (what wheel file names say)."""
    arch, _, rest = python_platform.partition("-")
    if rest.startswith("manylinux"):
        return f"{rest}_{arch}"
    return f"musllinux_1_2_{arch}" if rest.endswith("musl") else python_platform


# -- public entry point ---------------------------------------------------------------------


def install_requirements(
    install: PipInstall,
    *,
    context_root: Path,
    target: PythonTarget,
    workdir: str,
    cache_dir: Path,
    base: FilesystemView,
    requirement_files: Mapping[str, Path] | None = None,
    wheelhouse: Path | None = None,
) -> DependencyLayer:
    """Build the layer for *install* as pip inside the image would.

    ``-r``/``-c`` files are found, in order: in *requirement_files* (keyed by the argument
    as written, or by its absolute image path: the caller maps the files its COPY steps
    put there), in the base image, then at *context_root*/argument. Nested ``-r``/``-c``
    lines resolve relative to the file that contains them. uv's cache and the staging
    trees live under *cache_dir*; the result's entries read files from ``staging``.
    """
    _check_installable(install, target)
    inputs = _collect_inputs(
        install, workdir=workdir, base=base, context_root=context_root,
        mapping=requirement_files or {},
    )  # fmt: skip
    index = _index_options(install, target, workdir, context_root, requirement_files or {})
    platform = uv_python_platform(target)
    key = cache_key(install, inputs, index, target, platform, wheelhouse)
    staging = _staged(cache_dir, key)
    if staging is None:
        staging = _run_uv(install, inputs, index, target, platform, key, cache_dir, wheelhouse)
    entries, installed, uninstalled = map_staging(
        staging / "target", target=target, base=base, requested=inputs.requested
    )
    return DependencyLayer(entries, key, installed, uninstalled, staging)


def _check_installable(install: PipInstall, target: PythonTarget) -> None:
    if not target.has_pip:
        raise DependencyError(
            f"the base image's python ({target.interpreter}) has no pip module: "
            f"'{' '.join(install.launcher)} install' would fail inside the image",
            hint="use a base image with pip installed, or build with --engine podman",
        )
    allowed = install.break_system_packages or _truthy(target.env.get("PIP_BREAK_SYSTEM_PACKAGES"))
    if target.externally_managed and not allowed:
        raise DependencyError(
            f"the base image's python ({target.interpreter}) is marked EXTERNALLY-MANAGED "
            "(PEP 668): pip inside the image would refuse to install into it",
            hint="remove EXTERNALLY-MANAGED from the base image, use a venv, or add "
            "--break-system-packages to the pip install line",
        )


# -- requirement files ------------------------------------------------------------------------


@dataclass
class _Inputs:
    files: dict[str, bytes] = field(default_factory=dict)  # image path -> content
    requirements: list[str] = field(default_factory=list)  # top-level -r (image paths)
    constraints: list[str] = field(default_factory=list)  # top-level -c (image paths)
    names: list[str] = field(default_factory=list)  # top-level requirement names
    unnamed: bool = False  # a top-level requirement is a bare URL or path

    @property
    def requested(self) -> frozenset[str] | None:
        """Names pip marks REQUESTED (None: unknown, keep what uv wrote)."""
        return None if self.unnamed else frozenset(self.names)


def _collect_inputs(
    install: PipInstall,
    *,
    workdir: str,
    base: FilesystemView,
    context_root: Path,
    mapping: Mapping[str, Path],
) -> _Inputs:
    inputs = _Inputs()
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
            _load_file(inputs, arg, image_path, explicit, fallback, base, mapping, top=kind == "r")
            listed.append(image_path)
    return inputs


def _load_file(
    inputs: _Inputs,
    arg: str,
    image_path: str,
    explicit: Path | None,
    fallback: Path | None,
    base: FilesystemView,
    mapping: Mapping[str, Path],
    *,
    top: bool,
) -> None:
    """Read one requirements file (the caller's mapping, else the base image, else the
    *fallback* host path) and, recursively, the files it names."""
    if image_path in inputs.files:
        return
    host = explicit
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
    inputs.files[image_path] = data
    for option, ref in _file_references(data):
        if "://" in ref:
            continue  # uv fetches remote requirement files itself
        nested = normpath(posixpath.join(posixpath.dirname(image_path), ref))
        near = None if host is None or ref.startswith("/") else host.parent / ref
        nested_top = top and option in ("-r", "--requirement")
        _load_file(inputs, ref, nested, mapping.get(nested), near, base, mapping, top=nested_top)
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
    text = data.decode("utf-8", "replace").replace("\\\r\n", "").replace("\\\n", "")
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if line:
            yield line


def _file_references(data: bytes) -> Iterator[tuple[str, str]]:
    for line in _logical_lines(data):
        match = _REQ_FILE_OPTION.match(line)
        if match:
            yield match[1], match[2]


def _rebase_references(data: bytes, root: Path) -> bytes:
    """Point absolute ``-r``/``-c`` paths at the copies under *root* (the image's '/')."""
    prefix = str(root).encode()
    return _ABSOLUTE_REFERENCE.sub(lambda m: m[1] + prefix + m[2], data)


def _add_name(inputs: _Inputs, requirement: str) -> None:
    match = _REQ_NAME.match(requirement.strip())
    if match is None:
        inputs.unnamed = True
    elif canonical_name(match[1]) not in inputs.names:
        inputs.names.append(canonical_name(match[1]))


# -- index options ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _IndexOptions:
    index_url: str | None
    extra_index_urls: tuple[str, ...]
    find_links: tuple[str, ...]  # URLs or host paths
    no_index: bool
    trusted_hosts: tuple[str, ...]
    pre: bool


def _index_options(
    install: PipInstall,
    target: PythonTarget,
    workdir: str,
    context_root: Path,
    mapping: Mapping[str, Path],
) -> _IndexOptions:
    """Command-line options, else the image's PIP_* environment (as pip reads them)."""
    env = target.env
    links = install.find_links or tuple(env.get("PIP_FIND_LINKS", "").split())
    return _IndexOptions(
        index_url=install.index_url or env.get("PIP_INDEX_URL") or None,
        extra_index_urls=install.extra_index_urls
        or tuple(env.get("PIP_EXTRA_INDEX_URL", "").split()),
        find_links=tuple(_find_links_location(f, workdir, context_root, mapping) for f in links),
        no_index=install.no_index or _truthy(env.get("PIP_NO_INDEX")),
        trusted_hosts=install.trusted_hosts or tuple(env.get("PIP_TRUSTED_HOST", "").split()),
        pre=install.pre or _truthy(env.get("PIP_PRE")),
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


# -- cache key ----------------------------------------------------------------------------------


def cache_key(
    install: PipInstall,
    inputs: _Inputs,
    index: _IndexOptions,
    target: PythonTarget,
    platform: str,
    wheelhouse: Path | None,
) -> str:
    """sha256 over everything that decides the layer's content."""
    scheme = target.scheme
    document = {
        "format": CACHE_FORMAT,
        "mpkit": __version__,
        "uv": uv_version(),
        "files": sorted((p, hashlib.sha256(d).hexdigest()) for p, d in inputs.files.items()),
        "requirements": inputs.requirements,
        "constraints": inputs.constraints,
        "specs": list(install.specs),
        "options": [
            install.upgrade, install.upgrade_strategy, install.no_deps, install.require_hashes,
            list(install.only_binary), install.prefer_binary, index.pre,
        ],
        "index": [
            index.index_url, list(index.extra_index_urls), list(index.find_links),
            index.no_index, list(index.trusted_hosts),
        ],
        "wheelhouse": _directory_listing(wheelhouse),
        "find_links": [_directory_listing(Path(f)) for f in index.find_links if "://" not in f],
        "target": {
            "version": target.full_version or target.version,
            "abi": target.abi,
            "platform": platform,
            "scheme": [scheme.kind, scheme.site, scheme.scripts, scheme.data],
            "owner": [target.user.uid, target.user.gid],
            "interpreter": target.interpreter,
            "installed": sorted(
                (d.name, d.version, d.site_dir) for d in target.distributions.values()
            ),
        },
    }  # fmt: skip
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


def _directory_listing(directory: Path | None) -> list[tuple[str, int]] | None:
    if directory is None:
        return None
    return sorted((p.name, p.stat().st_size) for p in directory.iterdir() if p.is_file())


# -- running uv -----------------------------------------------------------------------------------


def _staged(cache_dir: Path, key: str) -> Path | None:
    final = cache_dir / "pydeps" / key
    return final if (final / "complete").is_file() else None


def _run_uv(
    install: PipInstall,
    inputs: _Inputs,
    index: _IndexOptions,
    target: PythonTarget,
    platform: str,
    key: str,
    cache_dir: Path,
    wheelhouse: Path | None,
) -> Path:
    root = cache_dir / "pydeps"
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tmp-", dir=root))
    try:
        for image_path, data in inputs.files.items():
            host = work / "inputs" / image_path.lstrip("/")
            host.parent.mkdir(parents=True, exist_ok=True)
            host.write_bytes(_rebase_references(data, work / "inputs"))
        _plant_stubs(work / "target", target)
        argv = _uv_argv(install, inputs, index, target, platform, work, cache_dir)
        env = _uv_env(index, wheelhouse)
        try:
            done = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=UV_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise PackageIndexError(
                f"installing the Python requirements took longer than {UV_TIMEOUT} s",
                hint="check the network connection to the package index",
            ) from exc
        if done.returncode != 0:
            raise _failure(done.stderr, target, platform, work)
        (work / "complete").write_text(key)
        return _publish(work, root / key)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _publish(work: Path, final: Path) -> Path:
    """Move a finished staging tree to its key; one finished earlier (another build of
    the same key) wins and is never removed, since its files may be in use."""
    if (final / "complete").is_file():
        return final
    if final.exists():
        shutil.rmtree(final, ignore_errors=True)  # an unfinished leftover
    try:
        work.rename(final)
    except OSError:
        if not (final / "complete").is_file():
            raise
    return final


def _plant_stubs(directory: Path, target: PythonTarget) -> None:
    """A stub .dist-info per base distribution, so uv treats it as installed."""
    directory.mkdir(parents=True)
    for dist in target.distributions.values():
        if not _PEP440.match(dist.version):
            continue
        info = f"{dist.name.replace('-', '_')}-{dist.version}.dist-info"
        path = directory / info
        path.mkdir()
        (path / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist.name}\nVersion: {dist.version}\n"
        )
        (path / "INSTALLER").write_bytes(STUB_INSTALLER)
        (path / "RECORD").write_text(
            "".join(f"{info}/{name},,\n" for name in ("INSTALLER", "METADATA", "RECORD"))
        )


def _uv_argv(
    install: PipInstall,
    inputs: _Inputs,
    index: _IndexOptions,
    target: PythonTarget,
    platform: str,
    work: Path,
    cache_dir: Path,
) -> list[str]:
    argv = [
        uv_binary(), "pip", "install",
        "--target", str(work / "target"),
        "--python", sys.executable, "--no-python-downloads",
        "--python-platform", platform,
        "--python-version", target.full_version or target.version,
        "--only-binary", ":all:",  # nothing is compiled on the host
        "--index-strategy", "unsafe-best-match",  # pip looks at every index
        "--no-config", "--color", "never", "--no-progress",
        "--cache-dir", str(cache_dir / "uv"),
    ]  # fmt: skip
    for option, paths in (("-r", inputs.requirements), ("-c", inputs.constraints)):
        for path in paths:
            if "://" not in path:
                argv += [option, str(work / "inputs" / path.lstrip("/"))]
    # Specs and remote files go through a file: they may carry credentials (never argv).
    lines = [*install.specs]
    lines += [f"-r {p}" for p in inputs.requirements if "://" in p]
    lines += [f"-c {p}" for p in inputs.constraints if "://" in p]
    if lines:
        (work / "command-line.txt").write_text("".join(f"{line}\n" for line in lines))
        argv += ["-r", str(work / "command-line.txt")]
    if install.upgrade and install.upgrade_strategy == "eager":
        argv.append("--upgrade")
    elif install.upgrade:
        for name in inputs.names:
            argv += ["--upgrade-package", name]
    if index.pre:
        argv += ["--prerelease", "allow"]
    if install.no_deps:
        argv.append("--no-deps")
    if install.require_hashes:
        argv.append("--require-hashes")
    if index.no_index:
        argv.append("--no-index")
    for host in index.trusted_hosts:
        argv += ["--allow-insecure-host", host]
    return argv


def _uv_env(index: _IndexOptions, wheelhouse: Path | None) -> dict[str, str]:
    """The host's environment without uv settings that would change the result; index
    URLs travel here, not in argv, because they may carry credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") or k in _UV_ENV_KEEP}
    if "UV_SYSTEM_CERTS" not in env and "UV_NATIVE_TLS" not in env:
        # TLS through the machine's CA store; UV_SYSTEM_CERTS replaced UV_NATIVE_TLS in 0.11.
        version = tuple(int(p) for p in re.findall(r"\d+", uv_version())[:2])
        env["UV_SYSTEM_CERTS" if version >= (0, 11) else "UV_NATIVE_TLS"] = "1"
    if index.index_url:
        env["UV_INDEX_URL"] = index.index_url
    if index.extra_index_urls:
        env["UV_EXTRA_INDEX_URL"] = " ".join(index.extra_index_urls)
    links = [*index.find_links, *([str(wheelhouse)] if wheelhouse else [])]
    if links:
        env["UV_FIND_LINKS"] = ",".join(links)
    return env


def _failure(
    stderr: str, target: PythonTarget, platform: str, work: Path | None = None
) -> DependencyError:
    """The error for a failed uv run, from uv's message (paths shown as image paths)."""
    if work is not None:
        stderr = stderr.replace(str(work / "command-line.txt"), "the pip install line")
        stderr = stderr.replace(str(work / "inputs"), "")
    lines = [
        line.rstrip()
        for line in redact_url(re.sub(r"\x1b\[[0-9;]*m", "", stderr)).splitlines()
        if line.strip() and not line.startswith(("Using CPython", "Using Python", "warning:"))
    ]
    detail = " ".join(line.strip() for line in lines)[:1500] or "uv failed without a message"
    tag = wheel_platform_tag(platform)
    names = tuple(dict.fromkeys(m for p in _NO_WHEEL_NAME for m in p.findall(stderr)))
    if names:
        listed = ", ".join(names)
        return NoWheelError(
            f"no wheel of {listed} fits the image (CPython {target.version} {target.abi}, "
            f"{tag}), and the native builder does not compile packages. uv said: {detail}",
            hint="build with --engine podman (the engine compiles it inside the image), "
            f"or put a wheel for {target.abi}-{tag} in a wheelhouse and pass --wheelhouse DIR",
            requirements=names,
        )
    if any(marker in stderr for marker in _NETWORK_HINTS):
        return PackageIndexError(
            f"the package index could not be used: {detail}",
            hint="check the network, proxy settings and index URL; TLS is verified with "
            "this machine's certificate store",
        )
    return DependencyError(
        f"the Python requirements cannot be installed for the image: {detail}",
        hint="check the requirement names, versions and markers in the pip install line "
        "and its requirements files",
    )


# -- staging -> layer ------------------------------------------------------------------------------


def map_staging(
    staging: Path,
    *,
    target: PythonTarget,
    base: FilesystemView,
    requested: frozenset[str] | None = None,
) -> tuple[list[LayerEntry], dict[str, str], dict[str, str]]:
    """Entries for what uv put in *staging* (a ``--target`` tree), placed as pip would;
    *requested* names the top-level requirements (pip writes REQUESTED only for those).
    Returns the entries, the installed and the uninstalled distributions."""
    return _Mapper(staging, target, base, requested).run()


class _Mapper:
    def __init__(
        self,
        staging: Path,
        target: PythonTarget,
        base: FilesystemView,
        requested: frozenset[str] | None,
    ) -> None:
        self.staging = staging
        self.requested = requested
        self.unrequested: set[str] = set()  # dist-info dirs that get no REQUESTED
        self.target = target
        self.base = base
        self.uid, self.gid = target.user.uid, target.user.gid
        self.site = resolve(base, target.scheme.site)
        self.scripts = resolve(base, target.scheme.scripts)
        scheme, version = target.scheme, target.version
        self.data = resolve(base, scheme.data)
        headers = "include/site" if scheme.kind == "venv" else "include"
        self.headers = resolve(base, f"{scheme.data}/{headers}/python{version}")
        self.entries: dict[str, LayerEntry] = {}
        self.removed: set[str] = set()  # base paths pip's uninstall deletes
        self.removed_dirs: set[str] = set()  # ... whole directories among them

    def run(self) -> tuple[list[LayerEntry], dict[str, str], dict[str, str]]:
        installed = self._installed_dists()
        if self.requested is not None:
            self.unrequested = {i for n, (i, _) in installed.items() if n not in self.requested}
        replaced = {
            name: dist
            for name, dist in self.target.distributions.items()
            if name in installed and resolve(self.base, dist.site_dir) == self.site
        }
        for dist in replaced.values():
            self._plan_uninstall(resolve(self.base, dist.info_dir))
        scripts = {info: self._add_scripts(info) for info, _ in installed.values()}
        self._add_unclaimed_scripts(scripts)
        for info_dir, _ in installed.values():
            self._add_tree(self.staging / info_dir, posixpath.join(self.site, info_dir))
        for child in sorted(self.staging.iterdir()):
            if child.name in ("bin", ".lock") or child.name.endswith(".dist-info"):
                continue
            self._add_tree(child, self._image_path(child.name))
        for info_dir, _ in installed.values():
            self._rewrite_metadata(info_dir, scripts[info_dir])
        for directory in {posixpath.dirname(path) for path in self.entries}:
            self._ensure_dir(directory)
        self._add_whiteouts()  # after the directories: a recreated one is not whited out
        versions = {name: version for name, (_, version) in installed.items()}
        return list(self.entries.values()), versions, {n: d.version for n, d in replaced.items()}

    # -- what uv installed
    def _installed_dists(self) -> dict[str, tuple[str, str]]:
        """canonical name -> (dist-info dir name, version), stubs excluded."""
        found: dict[str, tuple[str, str]] = {}
        for child in sorted(self.staging.glob("*.dist-info")):
            installer = child / "INSTALLER"
            if installer.is_file() and installer.read_bytes() == STUB_INSTALLER:
                continue
            name, version = _metadata_name_version(child)
            found[canonical_name(name)] = (child.name, version)
        return found

    # -- files
    def _add_tree(self, source: Path, dest: str) -> None:
        if source.is_symlink():
            self._put(LayerEntry(dest, "symlink", 0o777, self.uid, self.gid,
                                 linkname=str(source.readlink())))  # fmt: skip
        elif source.is_dir():
            if source.name == "__pycache__":
                return  # no host-compiled bytecode
            # pip creates directories only as parents of files (_ensure_dir), never empty ones
            for child in sorted(source.iterdir()):
                self._add_tree(child, posixpath.join(dest, child.name))
        elif source.is_file() and source.suffix not in (".pyc", ".pyo"):
            if source.parent.name.endswith(".dist-info") and (
                source.name in _UV_BOOKKEEPING
                or (source.name == "REQUESTED" and source.parent.name in self.unrequested)
            ):
                return
            mode = 0o755 if source.stat().st_mode & 0o111 else 0o644
            self._put(LayerEntry(dest, "file", mode, self.uid, self.gid, source=source))

    def _add_scripts(self, info_dir: str) -> dict[str, bytes | None]:
        """The scripts pip writes for one distribution: console/gui entry points from pip's
        template, other scripts as uv staged them with the image's shebang. Name -> content
        (None: uv wrote it but pip would not, e.g. pip3.12 when the image has 3.11)."""
        staged = {row[0][len("bin/") :] for row in _record_rows(self.staging / info_dir)}
        staged = {name for name in staged if name and "/" not in name and name != ".."}
        staged &= {p.name for p in (self.staging / "bin").glob("*")}
        entry_points = self.staging / info_dir / "entry_points.txt"
        text = entry_points.read_text("utf-8", "replace") if entry_points.is_file() else ""
        specs, declared = script_specs(text, self.target.version)
        scripts: dict[str, bytes | None] = {}
        for name, spec in specs.items():
            generated = pip_script(spec, self.target.interpreter)
            if generated is not None:
                scripts[name] = generated
        for name in sorted(staged - scripts.keys()):
            if name in declared:
                scripts[name] = None
            else:
                staged_data = (self.staging / "bin" / name).read_bytes()
                scripts[name] = rewrite_shebang(staged_data, self.target.interpreter)
        for name, content in scripts.items():
            if content is not None:
                source = self.staging / "bin" / name
                executable = name not in staged or source.stat().st_mode & 0o111
                mode = 0o755 if executable else 0o644
                dest = posixpath.join(self.scripts, name)
                self._put(LayerEntry(dest, "file", mode, self.uid, self.gid, data=content))
        return scripts

    def _add_unclaimed_scripts(self, claimed: Mapping[str, Mapping[str, bytes | None]]) -> None:
        """Files in bin/ that no RECORD lists: keep them, with the image's shebang."""
        names = {name for scripts in claimed.values() for name in scripts}
        bin_dir = self.staging / "bin"
        for script in sorted(bin_dir.iterdir()) if bin_dir.is_dir() else []:
            if script.name in names:
                continue
            dest = posixpath.join(self.scripts, script.name)
            if script.is_file() and not script.is_symlink():
                data = rewrite_shebang(script.read_bytes(), self.target.interpreter)
                mode = 0o755 if script.stat().st_mode & 0o111 else 0o644
                self._put(LayerEntry(dest, "file", mode, self.uid, self.gid, data=data))
            else:
                self._add_tree(script, dest)

    def _rewrite_metadata(self, info_dir: str, scripts: Mapping[str, bytes | None]) -> None:
        """INSTALLER says pip; RECORD names the real script paths and their new hashes."""
        image_info = posixpath.join(self.site, info_dir)
        installer = b"pip\n"
        self._put(LayerEntry(f"{image_info}/INSTALLER", "file", 0o644, self.uid, self.gid,
                             data=installer))  # fmt: skip
        record = self.staging / info_dir / "RECORD"
        if not record.is_file():
            return
        rows = []
        pending = {name: data for name, data in scripts.items() if data is not None}
        for row in _record_rows(self.staging / info_dir):
            path = row[0]
            dropped = _UV_BOOKKEEPING | ({"REQUESTED"} if info_dir in self.unrequested else set())
            if path.startswith(info_dir + "/") and posixpath.basename(path) in dropped:
                continue
            if path == f"{info_dir}/INSTALLER":
                row = [path, _record_hash(installer), str(len(installer))]
            elif path.startswith("bin/"):
                name = path[len("bin/") :]
                if name in scripts and scripts[name] is None:
                    continue
                data = pending.pop(name, None)
                row = [self._script_record_path(name), *_hash_and_size(data, row)]
            elif path.split("/", 1)[0] in _DATA_ROOTS:
                row = [posixpath.relpath(self._image_path(path), self.site), *row[1:]]
            rows.append(row[:3] + [""] * (3 - len(row[:3])))
        for name, data in pending.items():  # scripts pip writes that uv did not
            rows.append([self._script_record_path(name), _record_hash(data), str(len(data))])
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(sorted(rows))
        data = out.getvalue().encode()
        self._put(LayerEntry(f"{image_info}/RECORD", "file", 0o644, self.uid, self.gid,
                             data=data))  # fmt: skip

    def _image_path(self, relative: str) -> str:
        """Where pip puts a path of the ``--target`` tree: uv writes a wheel's data files
        (share/, etc/, ...) and headers (include/<dist>/) there too; pip writes them to the
        scheme's data and headers directories. A top-level directory with these names
        that is an importable package stays in site-packages."""
        root, _, rest = relative.partition("/")
        if root in _DATA_ROOTS and not (self.staging / root / "__init__.py").exists():
            if root == "include":
                return posixpath.join(self.headers, rest) if rest else self.headers
            return posixpath.join(self.data, relative)
        return posixpath.join(self.site, relative)

    def _script_record_path(self, name: str) -> str:
        return posixpath.relpath(posixpath.join(self.scripts, name), self.site)

    def _put(self, entry: LayerEntry) -> None:
        self.entries[entry.path] = entry

    # -- directories
    def _exists(self, path: str) -> bool:
        """Whether *path* is a directory in the base that survives pip's uninstalls."""
        if path in self.removed_dirs or any(path.startswith(d + "/") for d in self.removed_dirs):
            return False
        info = stat(self.base, path)
        return info is not None and info.kind == "dir"

    def _ensure_dir(self, path: str) -> None:
        """Entries for the missing parents pip would create (owned by the installing user)."""
        while path != "/" and path not in self.entries and not self._exists(path):
            self._put(LayerEntry(path, "dir", 0o755, self.uid, self.gid))
            path = posixpath.dirname(path)

    # -- uninstalling replaced base distributions
    def _plan_uninstall(self, info_dir: str) -> None:
        data = self.base.read_file(resolve(self.base, f"{info_dir}/RECORD"), limit=READ_LIMIT)
        files = {normpath(info_dir)} | self._tree_files(info_dir)
        for row in csv.reader(io.StringIO((data or b"").decode("utf-8", "replace"))):
            if row:
                files.add(normpath(posixpath.join(self.site, row[0])))
        for path in list(files):
            if path.endswith(".py"):  # and the bytecode pip compiled for it
                cache = posixpath.join(posixpath.dirname(path), "__pycache__")
                stem = posixpath.basename(path)[:-3] + "."
                files |= {
                    posixpath.join(cache, n) for n in self.base.listdir(cache)
                    if n.startswith(stem) and n.endswith(".pyc")
                }  # fmt: skip
        present = {p for p in files if self.base.info(p) is not None}
        self.removed |= present
        candidates = {
            parent
            for path in present
            for parent in _parents(path)
            if parent.startswith((self.site + "/", self.scripts + "/"))
        }
        for directory in candidates:
            if all(p in self.removed for p in self._tree_files(directory)):
                self.removed_dirs.add(directory)

    def _tree_files(self, directory: str) -> set[str]:
        out: set[str] = set()
        for name in self.base.listdir(directory):
            path = posixpath.join(directory, name)
            info = self.base.info(path)
            if info is not None and info.kind == "dir":
                out |= self._tree_files(path)
            else:
                out.add(path)
        return out

    def _add_whiteouts(self) -> None:
        """One whiteout per removed directory that is not recreated (its content goes with
        it), and one per removed file that is neither rewritten nor inside such a directory."""
        written = set(self.entries)
        gone = {d for d in self.removed_dirs if d not in written}
        for path in sorted(self.removed | gone):
            if path in written or (path in self.removed_dirs and path not in gone):
                continue
            if not any(parent in gone for parent in _parents(path)):
                self._put(LayerEntry(path, "whiteout"))


def rewrite_shebang(script: bytes, interpreter: str) -> bytes:
    """Point a staged script's ``#!`` line (uv wrote the host's python, possibly as a
    /bin/sh trampoline) at the image's python, as pip's fix_script() does."""
    lines = script.split(b"\n")
    if lines[0] == b"#!/bin/sh" and len(lines) > 2 and lines[1].startswith(b"'''exec'"):
        body = lines[3:]
    elif lines[0].startswith(b"#!") and b"python" in lines[0]:
        body = lines[1:]
    else:
        return script
    return b"\n".join([b"#!" + interpreter.encode(), *body])


def pip_shebang(interpreter: str) -> bytes:
    """The first line(s) pip's script maker (distlib) writes for *interpreter*."""
    executable = f'"{interpreter}"' if " " in interpreter else interpreter
    if " " not in executable and len(executable) + 3 <= MAX_SHEBANG:
        return f"#!{executable}\n".encode()
    return f"#!/bin/sh\n'''exec' {executable} \"$0\" \"$@\"\n' '''\n".encode()


def pip_script(spec: str, interpreter: str) -> bytes | None:
    """A console script as pip writes it for entry point *spec* ("module:attr [extra]");
    None when the spec names no callable (pip would refuse it)."""
    module, colon, attr = re.sub(r"\[.*\]", "", spec).partition(":")
    module, attr = module.strip(), attr.strip()
    if not colon or not module or not attr:
        return None
    body = SCRIPT_TEMPLATE % {"module": module, "import_name": attr.split(".")[0], "func": attr}
    return pip_shebang(interpreter) + body.encode()


def script_specs(entry_points: str, version: str) -> tuple[dict[str, str], set[str]]:
    """(script name -> spec as pip generates them, every name the file declares).
    pip renames its own and easy_install's scripts for the image's python version."""
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    try:
        parser.read_string(entry_points)
    except configparser.Error:
        return {}, set()
    console = dict(parser.items("console_scripts")) if parser.has_section("console_scripts") else {}
    gui = dict(parser.items("gui_scripts")) if parser.has_section("gui_scripts") else {}
    declared = set(console) | set(gui)
    major = version.split(".")[0]
    for name, pattern, variants in (
        ("pip", r"pip(\d+(\.\d+)?)?$", ("pip", f"pip{major}", f"pip{version}")),
        ("easy_install", r"easy_install(-\d+\.\d+)?$", ("easy_install", f"easy_install-{version}")),
    ):
        spec = console.get(name)
        if spec is not None:
            console = {k: v for k, v in console.items() if not re.match(pattern, k)}
            console.update(dict.fromkeys(variants, spec))
    return {**console, **gui}, declared


def _record_rows(info_dir: Path) -> list[list[str]]:
    record = info_dir / "RECORD"
    if not record.is_file():
        return []
    return [row for row in csv.reader(io.StringIO(record.read_text("utf-8"))) if row]


def _hash_and_size(data: bytes | None, row: list[str]) -> list[str]:
    return [_record_hash(data), str(len(data))] if data is not None else row[1:3]


def _metadata_name_version(info_dir: Path) -> tuple[str, str]:
    name = version = ""
    metadata = info_dir / "METADATA"
    if metadata.is_file():
        for line in metadata.read_text("utf-8", "replace").splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            if key.lower() == "name":
                name = value.strip()
            elif key.lower() == "version":
                version = value.strip()
    if not name or not version:
        stem = info_dir.name[: -len(".dist-info")]
        name, _, version = stem.partition("-")
    return name, version


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _parents(path: str) -> Iterable[str]:
    parent = posixpath.dirname(path)
    while parent not in ("/", ""):
        yield parent
        parent = posixpath.dirname(parent)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")
