"""The SDK's global config and finding the project to work on.

mpkit reads the SDK's own file so existing users keep their settings:
``$HOME/.vmware-aria-operations-integration-sdk/config.json``, on Windows
``%LocalAppData%\\VMware\\Aria Operations Integration SDK\\config.json``; ``$MPKIT_SDK_CONFIG``
overrides the path. Unlike the SDK, reading never writes the file.

Finding a project works like mp-build: ``-p PATH`` wins; else the current directory if it
holds manifest.txt (only that directory, not its parents, as in the SDK); else the known
``projects`` of the global config, for the CLI to offer on a TTY.

Remembering projects: the SDK adds every project it opens to ``projects``. mpkit does the
same through :func:`remember_project`, but only into an existing global config file (an
SDK user's), so it never creates the SDK's directory for people who never installed it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PureWindowsPath
from typing import Any

from mpkit.errors import ConfigError
from mpkit.jsonfile import load_json_object, rewrite_json_file
from mpkit.project.load import MANIFEST_NAME, Problem, is_project_dir, problems_error
from mpkit.project.model import GlobalConfig

SDK_CONFIG_ENV = "MPKIT_SDK_CONFIG"
SDK_CONFIG_DIR_POSIX = ".vmware-aria-operations-integration-sdk"
SDK_CONFIG_DIR_WINDOWS = ("VMware", "Aria Operations Integration SDK")
CONFIG_FILE_NAME = "config.json"
DEFAULT_CONTAINER_PORT = 8080
_LABEL = "SDK global config"
_HINT = (
    'the SDK\'s global config is JSON like {"default_container_registry_path": '
    '"harbor.example.com/my-project/", "container_port": 8080, "projects": ["/path/to/project"]}'
)
_NO_PROJECT_HINT = (
    "run mpkit in the project directory (the one holding manifest.txt) or pass -p PATH; "
    "a new project is created with the SDK's mp-init"
)


def global_config_path(
    environ: Mapping[str, str] | None = None, *, os_name: str | None = None
) -> Path:
    """Where the SDK keeps its global config; *os_name* defaults to ``os.name``."""
    env = os.environ if environ is None else environ
    override = env.get(SDK_CONFIG_ENV)
    if override:
        return Path(override)
    if (os.name if os_name is None else os_name) == "nt":
        local = env.get("LocalAppData") or env.get("LOCALAPPDATA")
        base = PureWindowsPath(local) if local else PureWindowsPath(Path.home(), "AppData", "Local")
        return Path(str(base.joinpath(*SDK_CONFIG_DIR_WINDOWS, CONFIG_FILE_NAME)))
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / SDK_CONFIG_DIR_POSIX / CONFIG_FILE_NAME


def load_global_config(environ: Mapping[str, str] | None = None) -> GlobalConfig:
    """Read and validate the SDK's global config; an absent file gives the defaults.

    The SDK writes ``null`` for keys it asked about but never got a value for; null means
    "not set" for every key here.
    """
    path = global_config_path(environ)
    data = load_json_object(path, _LABEL, hint=_HINT) or {}
    return _parse(path, data)


def _parse(path: Path, data: dict[str, Any]) -> GlobalConfig:
    problems: list[Problem] = []
    registry_path = data.get("default_container_registry_path")
    if registry_path is not None and not isinstance(registry_path, str):
        problems.append(
            Problem(
                "default_container_registry_path",
                f"is {registry_path!r}, not a string",
                'set it to a registry and path ending in "/", e.g. '
                '"harbor.example.com/my-project/"',
            )
        )
        registry_path = None
    port = data.get("container_port")
    if port is None:
        port = DEFAULT_CONTAINER_PORT
    elif isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        problems.append(
            Problem(
                "container_port",
                f"is {port!r}, not a port number (1-65535)",
                f'set "container_port" to a number such as {DEFAULT_CONTAINER_PORT}',
            )
        )
    projects = data.get("projects")
    if projects is None:
        projects = []
    elif not isinstance(projects, list) or not all(isinstance(p, str) for p in projects):
        problems.append(
            Problem(
                "projects",
                "is not a list of directory paths",
                'set "projects" to a list of strings such as ["/home/me/my-adapter"], or []',
            )
        )
        projects = []
    if problems:
        raise problems_error(path, problems, label=_LABEL)
    return GlobalConfig(
        path=path,
        data=data,
        default_container_registry_path=registry_path or None,
        container_port=port,
        projects=tuple(Path(p).expanduser() for p in projects),
    )


def _absolute(path: Path, cwd: Path) -> Path:
    """Like the SDK's ``os.path.abspath``: joined to *cwd*, ``..`` folded, links kept."""
    return Path(os.path.normpath(cwd / path.expanduser()))


def find_project(path: Path | None, *, cwd: Path, global_config: GlobalConfig) -> Path | list[Path]:
    """The project root to use, or the known projects to choose from (maybe none).

    ``-p`` (*path*) must be a project directory; else *cwd* if it is one; else the
    existing projects of the global config, in its order without duplicates. For an
    empty list, or without a TTY, the CLI raises :func:`no_project_error`.
    """
    if path is not None:
        root = _absolute(path, cwd)
        if not is_project_dir(root):
            raise ConfigError(
                f"-p/--path {path}: {_not_a_project(root)}",
                path=str(root),
                hint="pass -p with the directory that holds the project's manifest.txt",
            )
        return root
    if is_project_dir(cwd):
        return cwd
    seen: set[Path] = set()
    candidates: list[Path] = []
    for project in global_config.projects:
        root = _absolute(project, cwd)
        if root not in seen and is_project_dir(root):
            seen.add(root)
            candidates.append(root)
    return candidates


def _not_a_project(root: Path) -> str:
    if not root.exists():
        return f"{root} does not exist"
    if not root.is_dir():
        return f"{root} is not a directory"
    return f"{root} has no {MANIFEST_NAME}, so it is not a management pack project"


def no_project_error(
    cwd: Path, candidates: Sequence[Path], global_config: GlobalConfig
) -> ConfigError:
    """The error when no project was chosen: *cwd* is none, and no prompt is possible."""
    if candidates:
        listed = ", ".join(str(c) for c in candidates)
        known = f"the {_LABEL} {global_config.path} knows {len(candidates)}: {listed}"
        hint = f"choose one with -p, e.g. -p {candidates[0]}"
    else:
        known = f"the {_LABEL} {global_config.path} lists no existing project"
        hint = _NO_PROJECT_HINT
    return ConfigError(
        f"no project given: the current directory {cwd} has no {MANIFEST_NAME}, there is no "
        f"terminal to ask which project to use, and {known}",
        hint=hint,
    )


def remember_project(
    global_config: GlobalConfig, root: Path, *, create: bool = False
) -> GlobalConfig:
    """Add *root* to the global ``projects`` list, as the SDK does; returns the new config.

    The file is read again, the path appended (other keys and their order kept) and
    written atomically. Nothing is written when the path is already listed, or when the
    file does not exist and *create* is false.
    """
    path = global_config.path
    current = load_json_object(path, _LABEL, hint=_HINT)
    if current is None and not create:
        return global_config
    data = {} if current is None else current
    latest = _parse(path, data)
    entry = str(Path(os.path.normpath(root.absolute())))
    if any(os.path.normpath(p) == entry for p in map(str, latest.projects)):
        return latest
    data["projects"] = [*(data.get("projects") or []), entry]
    try:
        rewrite_json_file(path, data, indent=4)
    except OSError as exc:
        raise ConfigError(
            f"cannot add {entry} to the projects of the {_LABEL} {path}: {exc.strerror or exc}",
            path=str(path),
            hint=f"make {path.parent} writable; the build itself is not affected",
        ) from None
    return _parse(path, data)
