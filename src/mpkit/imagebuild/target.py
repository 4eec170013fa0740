"""The Python that a ``pip install`` inside the base image would install for.

Everything comes from the base image's filesystem and config, never from the host:
interpreter and version, C library, architecture, the effective user, where pip would put
packages and scripts, and which distributions the image already has.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mpkit.errors import TargetError
from mpkit.imagebuild.fsview import FilesystemView, normpath, resolve, stat

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # podman's default
DEFAULT_LAUNCHERS = (("pip3",), ("pip",), ("python3",), ("python",))
ARCHITECTURES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}
LIBC_READ_LIMIT = 16 << 20  # libc.so.6 is ~2 MB: read it whole
_PYTHON_BINARY = re.compile(r"^python(\d)\.(\d+)$")
_GLIBC_RELEASE = re.compile(rb"GNU C Library[^\n\x00]*?release version (\d+)\.(\d+)")
_GLIBC_SYMBOL = re.compile(rb"GLIBC_2\.(\d+)")
_GLIBC_FILENAME = re.compile(r"^libc-(\d+)\.(\d+)\.so$")
_DIST_INFO = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+?)(?:-py\d[\d.]*.*)?\.(?:dist|egg)-info$"
)

SchemeKind = Literal["user", "system", "venv"]


@dataclass(frozen=True)
class ImageUser:
    """The user a RUN step runs as (config ``User`` looked up in the image's /etc/passwd)."""

    name: str
    uid: int
    gid: int
    home: str
    groups: tuple[int, ...] = ()

    @property
    def is_root(self) -> bool:
        return self.uid == 0


@dataclass(frozen=True)
class InstallScheme:
    """Where pip puts things: packages (site), console scripts, and data files."""

    kind: SchemeKind
    site: str
    scripts: str
    data: str


@dataclass(frozen=True)
class InstalledDistribution:
    name: str  # canonical (PEP 503) name
    version: str
    site_dir: str  # the sys.path directory it is in
    info_dir: str  # absolute path of its .dist-info / .egg-info


@dataclass(frozen=True)
class PythonTarget:
    """What pip inside the image would see."""

    arch: str  # "x86_64" or "aarch64"
    interpreter: str  # sys.executable as pip sees it: what console-script shebangs name
    executable: str  # the real binary after symlinks
    version: str  # "3.11"
    libc: Literal["glibc", "musl"]
    libc_version: tuple[int, int] | None  # glibc (2, 36); None for musl
    user: ImageUser
    scheme: InstallScheme
    site_dirs: tuple[str, ...]  # sys.path site directories, in lookup order
    distributions: Mapping[str, InstalledDistribution] = field(default_factory=dict)
    full_version: str | None = None  # "3.11.9" when the image says so
    implementation: str = "cp"
    venv: str | None = None
    externally_managed: bool = False  # PEP 668 marker present
    has_pip: bool = True
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def abi(self) -> str:
        return f"cp{self.version.replace('.', '')}"

    @property
    def user_install(self) -> bool:
        return self.scheme.kind == "user"

    @property
    def installed(self) -> dict[str, str]:
        """Distributions already in the image: canonical name -> version."""
        return {name: dist.version for name, dist in self.distributions.items()}

    @property
    def pip_version(self) -> str | None:
        """The version of the pip that ``pip install`` runs (the first pip dist-info on
        its sys.path), None when the image has none."""
        pip = self.distributions.get("pip")
        return pip.version if pip is not None else None


def canonical_name(name: str) -> str:
    """PEP 503 normalisation ("Foo_Bar.baz" -> "foo-bar-baz")."""
    return re.sub(r"[-_.]+", "-", name).lower()


def detect_target(
    fs: FilesystemView,
    config: Mapping[str, Any],
    *,
    os: str = "linux",
    arch: str = "amd64",
    launcher: Sequence[str] = (),
    user_flag: bool = False,
) -> PythonTarget:
    """Inspect the base image.

    *config* is the image config's ``config`` object (User, Env, WorkingDir) as it stands
    at the RUN step; *launcher* is the pip command ("pip3" or "python3 -m pip"); an empty
    launcher means whatever ``pip3``/``pip``/``python3``/``python`` finds first on PATH.
    *user_flag* is pip's ``--user``.
    """
    if os != "linux":
        raise TargetError(f"the base image is for {os!r}; only linux images are supported")
    machine = ARCHITECTURES.get(arch)
    if machine is None:
        raise TargetError(
            f"the base image's architecture {arch!r} is not supported for Python packages",
            hint="build for linux/amd64 or linux/arm64, or build with --engine podman",
        )
    env = parse_env(config.get("Env") or [])
    user = effective_user(fs, str(config.get("User") or ""), env)
    path_dirs = [d for d in env.get("PATH", DEFAULT_PATH).split(":") if d.startswith("/")]
    interpreter = _find_interpreter(fs, tuple(launcher), path_dirs)
    executable = resolve(fs, interpreter)
    info = fs.info(executable)
    if info is None or info.kind != "file":
        raise TargetError(f"the image's python {interpreter} is a dangling link ({executable})")
    venv, venv_cfg = _venv(fs, interpreter)
    version = _python_version(fs, executable, venv_cfg)
    prefix = posixpath.dirname(posixpath.dirname(executable))
    debian = prefix == "/usr" and _is_dir(fs, "/usr/lib/python3/dist-packages")
    system_dirs = _system_site_dirs(prefix, version, debian)
    user_base = env.get("PYTHONUSERBASE") or posixpath.join(user.home, ".local")
    user_site = f"{user_base}/lib/python{version}/site-packages"
    if venv is not None:
        venv_site = f"{venv}/lib/python{version}/site-packages"
        include_system = venv_cfg.get("include-system-site-packages", "").lower() == "true"
        site_dirs = [venv_site, *(system_dirs if include_system else [])]
        system_scheme = InstallScheme("venv", venv_site, f"{venv}/bin", venv)
    else:
        site_dirs = [user_site, *system_dirs]
        data = "/usr/local" if debian else prefix
        system_scheme = InstallScheme("system", system_dirs[0], f"{data}/bin", data)
    pythonpath = [normpath(p) for p in env.get("PYTHONPATH", "").split(":") if p.startswith("/")]
    site_dirs = list(dict.fromkeys([*pythonpath, *site_dirs]))
    wants_user = user_flag or _truthy(env.get("PIP_USER"))
    scheme = _choose_scheme(fs, user, system_scheme, user_base, user_site, version, wants_user)
    libc, libc_version = _detect_libc(fs, machine)
    stdlib = f"{prefix}/lib/python{version}"
    return PythonTarget(
        arch=machine,
        interpreter=interpreter,
        executable=executable,
        version=version,
        libc=libc,
        libc_version=libc_version,
        user=user,
        scheme=scheme,
        site_dirs=tuple(site_dirs),
        distributions=scan_distributions(fs, site_dirs),
        full_version=_full_version(env, version),
        venv=venv,
        externally_managed=venv is None and fs.info(f"{stdlib}/EXTERNALLY-MANAGED") is not None,
        has_pip=any(_is_dir(fs, f"{d}/pip") for d in site_dirs),
        env=env,
    )


def parse_env(items: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """The config's ``Env`` list ("K=V") as a dict."""
    if isinstance(items, Mapping):
        return {str(k): str(v) for k, v in items.items()}
    env: dict[str, str] = {}
    for item in items:
        key, _, value = str(item).partition("=")
        if key:
            env[key] = value
    return env


# -- user -------------------------------------------------------------------------------


def effective_user(fs: FilesystemView, spec: str, env: Mapping[str, str]) -> ImageUser:
    """Resolve a config ``User`` ("name", "uid", "name:group", "uid:gid") like the engine."""
    user_part, _, group_part = spec.strip().partition(":")
    passwd = _read_table(fs, "/etc/passwd") if user_part not in ("", "root", "0") else []
    if user_part in ("", "root", "0"):
        name, uid, gid, home = "root", 0, 0, "/root"
    else:
        row = _find_row(passwd, user_part, id_column=2)
        if row is not None and len(row) >= 6 and row[2].isdigit() and row[3].isdigit():
            name, uid, gid, home = row[0], int(row[2]), int(row[3]), row[5] or "/"
        elif user_part.isdigit():
            name, uid, gid, home = user_part, int(user_part), 0, "/"  # runc: unknown uid
        else:
            raise TargetError(
                f"the base image's user {user_part!r} is not in its /etc/passwd",
                hint="fix the USER instruction, or create the user in the base image",
            )
    groups_table = _read_table(fs, "/etc/group") if uid != 0 or group_part else []
    if group_part:
        row = _find_row(groups_table, group_part, id_column=2)
        if row is not None and len(row) >= 3 and row[2].isdigit():
            gid = int(row[2])
        elif group_part.isdigit():
            gid = int(group_part)
        else:
            raise TargetError(f"the base image's group {group_part!r} is not in its /etc/group")
    extra = [
        int(row[2])
        for row in groups_table
        if len(row) >= 4 and row[2].isdigit() and name in row[3].split(",")
    ]
    return ImageUser(name, uid, gid, env.get("HOME") or home, tuple(dict.fromkeys([gid, *extra])))


def _read_table(fs: FilesystemView, path: str) -> list[list[str]]:
    data = fs.read_file(resolve(fs, path)) or b""
    rows = []
    for line in data.decode("utf-8", "replace").splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def _find_row(rows: list[list[str]], key: str, *, id_column: int) -> list[str] | None:
    for row in rows:
        if row[0] == key:
            return row
    if key.isdigit():
        for row in rows:
            if len(row) > id_column and row[id_column] == key:
                return row
    return None


# -- interpreter ------------------------------------------------------------------------


def _find_interpreter(fs: FilesystemView, launcher: tuple[str, ...], path: list[str]) -> str:
    candidates = [launcher] if launcher else list(DEFAULT_LAUNCHERS)
    for command in candidates:
        found = which(fs, command[0], path)
        if found is None:
            continue
        name = posixpath.basename(command[0])
        if name.startswith("python"):
            return found
        return _script_interpreter(fs, found, path)
    wanted = " ".join(launcher) if launcher else "pip3, pip, python3 or python"
    raise TargetError(
        f"the base image has no {wanted} on its PATH ({':'.join(path)})",
        hint="use a base image with Python and pip, or build with --engine podman",
    )


def which(fs: FilesystemView, command: str, path: Sequence[str]) -> str | None:
    """The first executable file *command* names on *path* (unresolved, like a shell)."""
    dirs = [""] if command.startswith("/") else list(path)
    for directory in dirs:
        candidate = normpath(posixpath.join(directory, command))
        info = stat(fs, candidate)
        if info is not None and info.kind in ("file", "hardlink") and info.mode & 0o111:
            return candidate
    return None


def _script_interpreter(fs: FilesystemView, script: str, path: list[str]) -> str:
    """The python a pip script runs: its shebang (``#!/usr/bin/env python3`` via PATH)."""
    head = fs.read_file(resolve(fs, script), limit=512) or b""
    if not head.startswith(b"#!"):
        raise TargetError(f"{script} in the base image is not a Python script")
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if not words:
        raise TargetError(f"{script} in the base image has an empty #! line")
    if posixpath.basename(words[0]) == "env" and len(words) > 1:
        found = which(fs, words[-1], path)
        if found is None:
            raise TargetError(f"{script} runs {words[-1]!r}, which is not on the image's PATH")
        return found
    return words[0]


def _venv(fs: FilesystemView, interpreter: str) -> tuple[str | None, dict[str, str]]:
    root = posixpath.dirname(resolve(fs, posixpath.dirname(interpreter)))
    data = fs.read_file(f"{root}/pyvenv.cfg", limit=64 << 10)
    if data is None:
        return None, {}
    cfg = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, eq, value = line.partition("=")
        if eq:
            cfg[key.strip().lower()] = value.strip()
    return root, cfg


def _python_version(fs: FilesystemView, executable: str, venv_cfg: Mapping[str, str]) -> str:
    name = posixpath.basename(executable)
    if name.startswith("pypy"):
        raise TargetError("the base image's python is PyPy; only CPython is supported")
    match = _PYTHON_BINARY.match(name)
    if match:
        return f"{match[1]}.{match[2]}"
    for key in ("version_info", "version"):
        parts = venv_cfg.get(key, "").split(".")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            return f"{parts[0]}.{parts[1]}"
    prefix = posixpath.dirname(posixpath.dirname(executable))
    found = sorted(
        (int(m[2]), f"{m[1]}.{m[2]}")
        for entry in fs.listdir(f"{prefix}/lib")
        if (m := _PYTHON_BINARY.match(entry)) and fs.info(f"{prefix}/lib/{entry}/os.py")
    )
    if not found:
        raise TargetError(
            f"cannot tell which Python version {executable} in the base image is",
            hint=f"expected a versioned binary (python3.X) or {prefix}/lib/python3.X/os.py",
        )
    return found[-1][1]


def _full_version(env: Mapping[str, str], version: str) -> str | None:
    declared = env.get("PYTHON_VERSION", "")  # set by the official python images
    if re.fullmatch(r"\d+\.\d+\.\d+", declared) and declared.startswith(version + "."):
        return declared
    return None


# -- scheme -----------------------------------------------------------------------------


def _system_site_dirs(prefix: str, version: str, debian: bool) -> list[str]:
    if debian:  # Debian's python: pip writes /usr/local, apt writes /usr/lib/python3
        return [
            f"/usr/local/lib/python{version}/dist-packages",
            "/usr/lib/python3/dist-packages",
            f"/usr/lib/python{version}/dist-packages",
        ]
    return [f"{prefix}/lib/python{version}/site-packages"]


def _choose_scheme(
    fs: FilesystemView,
    user: ImageUser,
    system: InstallScheme,
    user_base: str,
    user_site: str,
    version: str,
    wants_user: bool,
) -> InstallScheme:
    """pip's decide_user_install(): --user, or a non-root user who cannot write site."""
    if system.kind == "venv":
        if wants_user:
            raise TargetError(
                "pip --user cannot install into a virtual environment (the base image's "
                f"python is the venv {system.data})",
                hint="remove --user from the pip install line",
            )
        if not writable(fs, system.site, user):
            raise TargetError(
                f"user {user.name} cannot write to {system.site}: pip inside the image would "
                "fail with 'Permission denied'",
                hint="add 'USER root' before the pip install, or fix the venv's owner",
            )
        return system
    if wants_user or not writable(fs, system.site, user):
        return InstallScheme("user", user_site, f"{user_base}/bin", user_base)
    return system


def writable(fs: FilesystemView, path: str, user: ImageUser) -> bool:
    """Whether *user* could create files in *path* (or its nearest existing ancestor)."""
    if user.is_root:
        return True
    current = resolve(fs, path)
    info = fs.info(current)
    while info is None and current != "/":
        current = posixpath.dirname(current)
        info = stat(fs, current)
    if info is None:
        return False
    if info.uid == user.uid:
        return bool(info.mode & 0o200)
    if info.gid in user.groups:
        return bool(info.mode & 0o020)
    return bool(info.mode & 0o002)


# -- C library --------------------------------------------------------------------------


def _detect_libc(
    fs: FilesystemView, machine: str
) -> tuple[Literal["glibc", "musl"], tuple[int, int] | None]:
    if stat(fs, f"/lib/ld-musl-{machine}.so.1") is not None:
        return "musl", None
    for candidate in (
        f"/lib/{machine}-linux-gnu/libc.so.6",
        f"/usr/lib/{machine}-linux-gnu/libc.so.6",
        "/lib64/libc.so.6",
        "/usr/lib64/libc.so.6",
        "/lib/libc.so.6",
        "/usr/lib/libc.so.6",
    ):
        real = resolve(fs, candidate)
        info = fs.info(real)
        if info is None or info.kind not in ("file", "hardlink"):
            continue
        named = _GLIBC_FILENAME.match(posixpath.basename(real))
        if named:
            return "glibc", (int(named[1]), int(named[2]))
        version = glibc_version(fs.read_file(real, limit=LIBC_READ_LIMIT) or b"")
        if version is not None:
            return "glibc", version
        raise TargetError(f"cannot read the glibc version from {candidate} in the base image")
    raise TargetError(
        f"the base image has neither glibc ({machine}-linux-gnu/libc.so.6) nor musl "
        f"(/lib/ld-musl-{machine}.so.1) for {machine}",
        hint="check the base image's platform, or build with --engine podman",
    )


def glibc_version(data: bytes) -> tuple[int, int] | None:
    """glibc's version from the bytes of libc.so.6 (release banner, else newest symbol)."""
    release = _GLIBC_RELEASE.search(data)
    if release:
        return int(release[1]), int(release[2])
    symbols = [int(m) for m in _GLIBC_SYMBOL.findall(data)]
    return (2, max(symbols)) if symbols else None


# -- installed distributions ------------------------------------------------------------


def scan_distributions(
    fs: FilesystemView, site_dirs: Sequence[str]
) -> dict[str, InstalledDistribution]:
    """Name -> distribution from ``*.dist-info``/``*.egg-info`` names; the first on sys.path
    wins, as in importlib.metadata. Names come from directory names (no file reads)."""
    found: dict[str, InstalledDistribution] = {}
    for site in site_dirs:
        real = resolve(fs, site)
        if not _is_dir(fs, real):
            continue
        for entry in fs.listdir(real):
            match = _DIST_INFO.match(entry)
            if match is None:
                continue
            name = canonical_name(match["name"])
            if name not in found:
                found[name] = InstalledDistribution(
                    name, match["version"], site, posixpath.join(site, entry)
                )
    return found


def _is_dir(fs: FilesystemView, path: str) -> bool:
    info = stat(fs, path)
    return info is not None and info.kind == "dir"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")
