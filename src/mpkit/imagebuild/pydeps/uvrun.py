"""Running uv: the target platform, the cache key, the staging tree uv installs into
(with stub dist-infos for the base's distributions) and uv's failures as errors.

uv installs into a temp directory of the cache (``tmp/``), which becomes
``pydeps/<key>`` only when uv succeeded and everything it built from source is pure
Python (see sourcebuild); uv itself ends with mpkit (mpkit.childproc).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path

from mpkit import __version__
from mpkit.atomicfile import TempDir
from mpkit.cache.root import CacheRoot
from mpkit.childenv import child_environment
from mpkit.childproc import run
from mpkit.errors import DependencyError, NoWheelError, PackageIndexError
from mpkit.imagebuild.piprun import PipInstall, redact_url
from mpkit.imagebuild.pydeps.pipcompat import Warn
from mpkit.imagebuild.pydeps.requirements import IndexOptions, Inputs, rebase_references
from mpkit.imagebuild.pydeps.sourcebuild import (
    BuildPython,
    build_python,
    built_names,
    failed_builds,
    native_builds,
    source_build_error,
)
from mpkit.imagebuild.target import PythonTarget

CACHE_FORMAT = 2  # 2: source distributions are built (pure Python only)
STUB_INSTALLER = b"mpkit-base-image\n"  # marks stub dist-infos planted for the base's dists
UV_TIMEOUT = 1800
# uv's --python-platform manylinux targets (uv >= 0.5), oldest first.
MANYLINUX_GLIBC_MINORS = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)
_UV_ENV_KEEP = {
    "UV_HTTP_TIMEOUT", "UV_HTTP_RETRIES", "UV_CONCURRENT_DOWNLOADS", "UV_CONCURRENT_INSTALLS",
    "UV_OFFLINE", "UV_SYSTEM_CERTS", "UV_NATIVE_TLS",
}  # fmt: skip
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


def remembered_uv_version(cache: CacheRoot) -> str:
    """``uv_version()``, remembered in *cache* while the binary is unchanged.

    Finding uv and running ``uv --version`` costs ~15 ms in a fresh process. The record
    is written only for a uv in this Python's own scripts directory, the first place
    ``uv_binary()`` looks, so no uv installed later can take precedence over it.
    """
    path = cache.pydeps / "uv-version.json"
    python = [sys.executable, sys.prefix]
    try:
        record = json.loads(path.read_bytes())
        if record["python"] == python and record["stat"] == _stat_key(record["binary"]):
            return str(record["version"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    binary = uv_binary()
    version = uv_version(binary)
    scripts = sysconfig.get_path("scripts")
    if version != "unknown" and scripts and Path(binary).parent == Path(scripts):
        record = {"python": python, "binary": binary, "stat": _stat_key(binary),
                  "version": version}  # fmt: skip
        cache.write_bytes(path, json.dumps(record).encode())
    return version


def _stat_key(path: str) -> list[int]:
    info = Path(path).stat()
    return [info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev]


@lru_cache(maxsize=8)
def _uv_has_option(option: str) -> bool:
    """Whether this uv's ``pip install`` knows *option* (newer uv versions add some)."""
    out = subprocess.run(
        [uv_binary(), "pip", "install", "--help"], capture_output=True, text=True, check=False
    )
    return option in out.stdout


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


# -- cache key ----------------------------------------------------------------------------------


def cache_key(
    install: PipInstall,
    inputs: Inputs,
    index: IndexOptions,
    target: PythonTarget,
    platform: str,
    wheelhouse: Path | None,
    *,
    cache: CacheRoot | None = None,
) -> str:
    """sha256 over everything that decides the layer's content (uv's version is
    remembered in *cache*, if given)."""
    scheme = target.scheme
    document = {
        "format": CACHE_FORMAT,
        "mpkit": __version__,
        "uv": remembered_uv_version(cache) if cache is not None else uv_version(),
        "files": sorted((p, hashlib.sha256(d).hexdigest()) for p, d in inputs.files.items()),
        "requirements": inputs.requirements,
        "constraints": inputs.constraints,
        "specs": inputs.specs,
        "prereleases": inputs.prereleases,
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


def staged(cache: CacheRoot, key: str) -> Path | None:
    """The finished staging tree of *key*, if an earlier build made it."""
    final = cache.pydeps / key
    if not (final / "complete").is_file():
        return None
    cache.mark_used(final)
    return final


def run_uv(
    install: PipInstall,
    inputs: Inputs,
    index: IndexOptions,
    target: PythonTarget,
    platform: str,
    key: str,
    cache: CacheRoot,
    wheelhouse: Path | None,
    warn: Warn = lambda _message: None,
) -> Path:
    """Run uv into a fresh staging tree and publish it under *key*; raise DependencyError
    (SourceBuildError for a source distribution that only the image can build)."""
    with cache.temp_dir("pydeps") as temp:
        work = temp.path
        for image_path, data in inputs.files.items():
            host = work / "inputs" / image_path.lstrip("/")
            host.parent.mkdir(parents=True, exist_ok=True)
            host.write_bytes(rebase_references(data, work / "inputs"))
        env = _uv_env(index, wheelhouse)
        python = build_python(target.version, uv_binary(), env)
        # pip's --prefer-binary takes an older wheel over a newer sdist: wheels only first.
        for wheels_only in (True, False) if install.prefer_binary else (False,):
            shutil.rmtree(work / "target", ignore_errors=True)
            _plant_stubs(work / "target", target)
            argv = _uv_argv(install, inputs, index, target, platform, work, cache, python,
                            wheels_only=wheels_only)  # fmt: skip
            succeeded, stderr = _run_uv(argv, env)
            if succeeded:
                break
            error = _failure(stderr, target, platform, work)
            if not (wheels_only and isinstance(error, NoWheelError)):
                raise error
        _check_source_builds(work / "target", stderr, target, platform, python, warn)
        (work / "complete").write_text(key)
        return _publish(temp, cache.pydeps / key)


def _run_uv(argv: list[str], env: dict[str, str]) -> tuple[bool, str]:
    """Run uv: whether it succeeded, and what it said (URL credentials hidden)."""
    try:
        done = run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=UV_TIMEOUT, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise PackageIndexError(
            f"installing the Python requirements took longer than {UV_TIMEOUT} s",
            hint="check the network connection to the package index",
        ) from exc
    return done.returncode == 0, redact_url(done.stderr)


def _check_source_builds(
    tree: Path,
    stderr: str,
    target: PythonTarget,
    platform: str,
    python: BuildPython,
    warn: Warn,
) -> None:
    """Refuse what uv built from source unless it is pure Python; say when it was built
    with a Python other than the image's."""
    built = built_names(tree, stderr)
    native = native_builds(tree, built)
    if native:
        tag = wheel_platform_tag(platform)
        raise source_build_error(native, wheel_target=f"{target.abi}-{tag}")
    if built and python.version != target.version:
        warn(
            f"built {', '.join(sorted(built))} from source with python {python.version} (this "
            f"machine has no python {target.version}, the image's version; pure-Python wheels "
            f"rarely differ, but 'uv python install {target.version}' makes mpkit build with it)"
        )


def _publish(temp: TempDir, final: Path) -> Path:
    """Move a finished staging tree to its key; one finished earlier (another build of
    the same key) wins and is never removed, since its files may be in use."""
    if (final / "complete").is_file():
        return final
    if final.exists():
        shutil.rmtree(final, ignore_errors=True)  # an unfinished leftover of an older mpkit
    try:
        temp.publish(final)
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
    inputs: Inputs,
    index: IndexOptions,
    target: PythonTarget,
    platform: str,
    work: Path,
    cache: CacheRoot,
    python: BuildPython,
    *,
    wheels_only: bool = False,
) -> list[str]:
    argv = [
        uv_binary(), "pip", "install",
        "--target", str(work / "target"),
        "--python", python.path, "--no-python-downloads",  # it builds source distributions
        "--python-platform", platform,
        "--python-version", target.full_version or target.version,
        "--index-strategy", "unsafe-best-match",  # pip looks at every index
        "--no-config", "--color", "never", "--no-progress",
        "--cache-dir", str(cache.uv),
    ]  # fmt: skip
    for value in (":all:",) if wheels_only else install.only_binary:
        argv += ["--only-binary", value]
    for option, paths in (("-r", inputs.requirements), ("-c", inputs.constraints)):
        for path in paths:
            if "://" not in path:
                argv += [option, str(work / "inputs" / path.lstrip("/"))]
    # Specs and remote files go through a file: they may carry credentials (never argv).
    lines = [*inputs.specs]
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
    elif inputs.prereleases and _uv_has_option("--prerelease-package"):
        for name in inputs.prereleases:  # legacy specifiers admit them (see pipcompat)
            argv += ["--prerelease-package", f"{name}=allow"]
    if install.no_deps:
        argv.append("--no-deps")
    if install.require_hashes:
        argv.append("--require-hashes")
    if index.no_index:
        argv.append("--no-index")
    for host in index.trusted_hosts:
        argv += ["--allow-insecure-host", host]
    return argv


def _uv_env(index: IndexOptions, wheelhouse: Path | None) -> dict[str, str]:
    """The host's environment without uv settings that would change the result; index
    URLs travel here, not in argv, because they may carry credentials."""
    env = {
        k: v for k, v in child_environment().items() if not k.startswith("UV_") or k in _UV_ENV_KEEP
    }
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
    native = failed_builds(stderr)
    if native:
        return source_build_error(native, wheel_target=f"{target.abi}-{tag}")
    flat = " ".join(stderr.split())  # uv wraps long lines at the terminal's width
    names = tuple(dict.fromkeys(m for p in _NO_WHEEL_NAME for m in p.findall(flat)))
    if names:
        listed = ", ".join(names)
        return NoWheelError(
            f"no wheel of {listed} fits the image (CPython {target.version} {target.abi}, "
            f"{tag}), and no source distribution may be built instead (there is none, or "
            f"the line says --only-binary). uv said: {detail}",
            hint="build with --engine podman to run pip inside the image, "
            f"or put a wheel for {target.abi}-{tag} in a wheelhouse and pass --wheelhouse DIR",
            requirements=names,
        )
    if any(marker in flat for marker in _NETWORK_HINTS):
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
