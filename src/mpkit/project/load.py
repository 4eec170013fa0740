"""Load and validate an SDK project: manifest.txt and config.json.

Every problem is a :class:`~mpkit.errors.ConfigError` whose message names the file, the
key (with its line when the file has it) and what is wrong, and whose hint says how to
fix it; all semantic problems of one file are reported together.

Required manifest keys are those without which no pack can be built or installed
(``display_name``, ``name``, ``description``, ``version``, ``vcops_minimum_version``,
``adapter_kinds``). The SDK's template writes every other key too, but an empty value
there means "none", so mpkit treats those keys as optional and only checks their types
and the files they name.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from mpkit.errors import ConfigError, InvalidReferenceError
from mpkit.jsonfile import load_json_object, rewrite_json_file
from mpkit.project.model import Manifest, Project, ProjectConfig
from mpkit.project.registry import normalize_repository

MANIFEST_NAME = "manifest.txt"
CONFIG_NAME = "config.json"
DEFAULT_MEMORY_LIMIT_MB = 1024
MIN_MEMORY_LIMIT_MB = 6  # docker and podman refuse smaller limits; the SDK clamps to it
PACK_ADAPTER = "adapter.zip"
REQUIRED_MANIFEST_KEYS = (
    "display_name",
    "name",
    "description",
    "version",
    "vcops_minimum_version",
    "adapter_kinds",
)
_EXAMPLES = {
    "display_name": '"My Adapter"',
    "name": '"iSDK_MyAdapter"',
    "description": '"What the pack monitors"',
    "version": '"1.0.0"',
    "vcops_minimum_version": '"8.10.0"',
    "adapter_kinds": '["MyAdapter"] (the adapter kind key of describe.xml)',
}
SCRIPT_KEYS = ("pak_validation_script", "adapter_pre_script", "adapter_post_script")

_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+){2,}")
_DOTTED_NUMBERS = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_ADAPTER_KIND = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_FILE_NAME_FORBIDDEN = frozenset('<>:"/\\|?*')  # not allowed in Windows file names
_MANIFEST_HINT = (
    "manifest.txt is the JSON file mp-init writes, e.g. "
    '{"display_name": "My Adapter", "name": "iSDK_MyAdapter", "description": "...", '
    '"version": "1.0.0", "vcops_minimum_version": "8.10.0", "adapter_kinds": ["MyAdapter"], '
    '"adapters": ["adapter.zip"], ...}'
)
_CONFIG_HINT = (
    'config.json holds the build settings, e.g. {"container_repository": '
    '"harbor.example.com/my-project/myadapter", "default_memory_limit": 1024}; '
    "it may also be absent or {}"
)


# --- problems and where they are ---------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One semantic problem: the key (``parent.child`` for nested ones), what, and the fix."""

    key: str
    what: str
    fix: str


def key_positions(text: str) -> dict[str, tuple[int, int]]:
    """(line, column), 1-based, of each top-level key of the JSON object in *text*.

    A small scanner over valid JSON: strings are skipped whole, and a string at depth 1
    right after '{' or ',' is a key. The first occurrence of a duplicated key wins.
    """
    positions: dict[str, tuple[int, int]] = {}
    depth, line, line_start, index = 0, 1, 0, 0
    expect_key = False
    while index < len(text):
        char = text[index]
        if char == "\n":
            line, line_start = line + 1, index + 1
        elif char == '"':
            end = index + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            if depth == 1 and expect_key:
                try:
                    key = json.loads(text[index : end + 1])
                except json.JSONDecodeError:
                    key = None
                if isinstance(key, str):
                    positions.setdefault(key, (line, index - line_start + 1))
            expect_key = False
            index = end
        elif char in "{[":
            depth += 1
            expect_key = char == "{" and depth == 1
        elif char in "}]":
            depth -= 1
        elif char == "," and depth == 1:
            expect_key = True
        index += 1
    return positions


def problems_error(path: Path, problems: Sequence[Problem], *, label: str) -> ConfigError:
    """One ConfigError listing *problems* of the file *path* (called *label* in the text)."""
    try:
        positions = key_positions(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        positions = {}

    def where(problem: Problem) -> str:
        position = positions.get(problem.key.split(".", 1)[0])
        line = f" (line {position[0]})" if position else ""
        return f'"{problem.key}"{line}'

    def sentence(text: str) -> str:
        return text.rstrip(".")

    first = positions.get(problems[0].key.split(".", 1)[0])
    line, column = first if first else (None, None)
    name = str(path.absolute()) if label == path.name else f"{label} {path.absolute()}"
    if len(problems) == 1:
        message = f"{name}: {where(problems[0])} {sentence(problems[0].what)}."
        hint = problems[0].fix
    else:
        listed = "; ".join(
            f"({n}) {where(p)} {sentence(p.what)}" for n, p in enumerate(problems, 1)
        )
        message = f"{name} has {len(problems)} problems: {listed}."
        hint = (
            "Fix each one: "
            + "; ".join(f"({n}) {sentence(p.fix)}" for n, p in enumerate(problems, 1))
            + "."
        )
    return ConfigError(message, path=str(path), line=line, column=column, hint=hint)


def _describe(value: Any) -> str:
    """A JSON value as a user would write it, shortened."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


# --- manifest.txt ------------------------------------------------------------------------


def is_project_dir(path: Path) -> bool:
    """True if *path* is a directory holding manifest.txt (the SDK's own test)."""
    return path.is_dir() and (path / MANIFEST_NAME).is_file()


def load_manifest(root: Path) -> Manifest:
    """Read and validate ``root/manifest.txt``."""
    path = root / MANIFEST_NAME
    data = load_json_object(path, "manifest", hint=_MANIFEST_HINT)
    if data is None:
        raise ConfigError(
            f"{root} has no {MANIFEST_NAME}, so it is not a management pack project",
            path=str(path),
            hint="run mpkit in the project directory (the one holding manifest.txt), pass "
            "-p PATH, or create a project with the SDK's mp-init",
        )
    checker = _ManifestChecker(root, data)
    manifest = checker.check(path)
    if checker.problems:
        raise problems_error(path, checker.problems, label=MANIFEST_NAME)
    assert manifest is not None
    return manifest


class _ManifestChecker:
    """Collects every problem of one manifest instead of stopping at the first."""

    def __init__(self, root: Path, data: dict[str, Any]) -> None:
        self.root = root
        self.data = data
        self.problems: list[Problem] = []

    def add(self, key: str, what: str, fix: str) -> None:
        self.problems.append(Problem(key, what, fix))

    def check(self, path: Path) -> Manifest | None:
        for key in REQUIRED_MANIFEST_KEYS:
            if self.data.get(key) is None:
                state = "is null" if key in self.data else "is missing"
                self.add(key, f"{state}; it is required", f'add "{key}": {_EXAMPLES[key]}')
        name = self._string("name", self._check_name)
        display_name = self._string("display_name", self._check_display_name)
        self._string("description", None)
        version = self._string("version", self._check_version)
        self._string("vcops_minimum_version", self._check_minimum_version)
        kind = self._adapter_kind()
        for key in ("vendor", "license_type"):
            self._string(key, None)
        self._platform()
        self._disk_space()
        self._run_scripts_on_all_nodes()
        self._adapters()
        eula = self._file("eula_file", self.data.get("eula_file"))
        icon = self._file("pak_icon", self.data.get("pak_icon"))
        scripts = [self._script(key) for key in SCRIPT_KEYS]
        if self.problems or name is None or display_name is None:
            return None
        assert version is not None and kind is not None
        return Manifest(
            path=path,
            data=self.data,
            name=name,
            display_name=display_name,
            version=version,
            adapter_kind=kind,
            eula_file=eula,
            icon_file=icon,
            validation_script=scripts[0],
            pre_script=scripts[1],
            post_script=scripts[2],
        )

    def _string(self, key: str, check: Callable[[str], bool] | None) -> str | None:
        """The string value of *key* (None if absent or null), after *check* passes."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.add(key, f"is {_json_type(value)} ({_describe(value)})", f'make "{key}" a string')
            return None
        if check is not None and not check(value):
            return None
        return value

    def _check_name(self, name: str) -> bool:
        bad = sorted({c for c in name if c in _FILE_NAME_FORBIDDEN or not c.isprintable()})
        if not name.strip() or not name.removeprefix("iSDK_"):
            self.add("name", f"is {_describe(name)}", 'set "name" to e.g. "iSDK_MyAdapter"')
            return False
        if bad:
            self.add(
                "name",
                f"is {_describe(name)}, which has the character(s) {_describe(''.join(bad))} "
                "that cannot be part of the .pak file name",
                'use letters, digits, "_" and "-" in "name", e.g. "iSDK_MyAdapter"',
            )
            return False
        return True

    def _check_display_name(self, display_name: str) -> bool:
        if display_name.strip():
            return True
        self.add("display_name", "is blank", 'set "display_name" to e.g. "My Adapter"')
        return False

    def _check_version(self, version: str) -> bool:
        if _VERSION.fullmatch(version):
            return True
        self.add(
            "version",
            f"is {_describe(version)}, but a version needs at least three numeric parts "
            "separated by dots",
            'set "version" to e.g. "1.0.0" (major.minor.patch; digits and dots only)',
        )
        return False

    def _check_minimum_version(self, version: str) -> bool:
        if _DOTTED_NUMBERS.fullmatch(version):
            return True
        self.add(
            "vcops_minimum_version",
            f"is {_describe(version)}, which is not a dotted version number",
            'set "vcops_minimum_version" to the oldest supported release, e.g. "8.10.0"',
        )
        return False

    def _adapter_kind(self) -> str | None:
        kinds = self.data.get("adapter_kinds")
        fix = (
            'set "adapter_kinds" to a list with the adapter kind key of describe.xml, '
            'e.g. ["MyAdapter"]'
        )
        if kinds is None:
            return None
        if isinstance(kinds, dict) and len(kinds) == 1:
            key = next(iter(kinds))
            self.add(
                "adapter_kinds",
                f"is an object ({_describe(kinds)}), but the SDK writes a list",
                f'write it as ["{key}"]',
            )
            return None
        if not isinstance(kinds, list):
            self.add("adapter_kinds", f"is {_json_type(kinds)} ({_describe(kinds)})", fix)
            return None
        if len(kinds) != 1:
            self.add(
                "adapter_kinds",
                f"lists {len(kinds)} adapter kinds ({_describe(kinds)}), but a management pack "
                "built by mpkit (like mp-build) has exactly one",
                "keep only the adapter kind key of describe.xml, e.g. "
                '"adapter_kinds": ["MyAdapter"]',
            )
            return None
        kind = kinds[0]
        if not isinstance(kind, str) or not _ADAPTER_KIND.fullmatch(kind):
            self.add(
                "adapter_kinds",
                f"holds {_describe(kind)}, which is not an adapter kind key (letters, digits "
                "and '_', optionally '.' or '-')",
                fix,
            )
            return None
        return kind

    def _platform(self) -> None:
        value = self.data.get("platform")
        if value is None:
            return
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.add(
                "platform",
                f"is {_describe(value)}, not a list of strings",
                'set "platform" to e.g. ["Linux Non-VA", "Linux VA"]',
            )

    def _disk_space(self) -> None:
        value = self.data.get("disk_space_required")
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            return
        if isinstance(value, str) and value.isdigit() and value.isascii():
            return
        self.add(
            "disk_space_required",
            f"is {_describe(value)}, not a whole number of MB",
            'set "disk_space_required" to a number such as 500',
        )

    def _run_scripts_on_all_nodes(self) -> None:
        value = self.data.get("run_scripts_on_all_nodes")
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return
        self.add(
            "run_scripts_on_all_nodes",
            f"is {_describe(value)}, not true or false",
            'set "run_scripts_on_all_nodes" to "true" (as the SDK template does) or "false"',
        )

    def _adapters(self) -> None:
        value = self.data.get("adapters")
        if value is None or value == [PACK_ADAPTER]:
            return
        self.add(
            "adapters",
            f"is {_describe(value)}, but the pack holds exactly one adapter, {PACK_ADAPTER}",
            f'set "adapters" to ["{PACK_ADAPTER}"]',
        )

    def _script(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        fix = f'set "{key}" to {{"script": ""}} for none, or {{"script": "FILE"}}'
        if not isinstance(value, dict):
            self.add(key, f"is {_json_type(value)} ({_describe(value)}), not an object", fix)
            return None
        if "script" not in value:
            self.add(key, f'is {_describe(value)}, which has no "script" key', fix)
            return None
        return self._file(
            f"{key}.script",
            value["script"],
            f'put the file in the project directory and set "{key}" to {{"script": "PATH"}} '
            'with its relative path, or to {"script": ""} for none',
        )

    def _file(self, key: str, value: Any, fix: str | None = None) -> str | None:
        """A project-relative file name (None for "" or null) that must exist."""
        if value is None or value == "":
            return None
        fix = fix or (
            f'put the file in the project directory and set "{key}" to its relative path, '
            'or to "" for none'
        )
        if not isinstance(value, str):
            self.add(key, f"is {_json_type(value)} ({_describe(value)}), not a file name", fix)
            return None
        problem = _relative_file_problem(self.root, value)
        if problem:
            self.add(key, f"names {_describe(value)}, {problem}", fix)
            return None
        return value


def _relative_file_problem(root: Path, name: str) -> str | None:
    """Why *name* is not a regular file inside *root*, or None if it is."""
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute():
        return "an absolute path; the pack needs a path relative to the project root"
    if Path(os.path.normpath(name)).parts[:1] == (os.pardir,):
        return "which is outside the project directory"
    target = root / name
    if not target.exists():
        return f"which does not exist in the project directory {root.absolute()}"
    if not target.is_file():
        return "which is not a regular file"
    return None


# --- config.json -------------------------------------------------------------------------


def load_project_config(root: Path) -> ProjectConfig:
    """Read and validate ``root/config.json``; an absent or empty file gives the defaults."""
    path = root / CONFIG_NAME
    data = load_json_object(path, "project config file", hint=_CONFIG_HINT) or {}
    problems: list[Problem] = []
    repositories = {
        key: _config_repository(data, key, problems)
        for key in ("container_repository", "container_push_repository")
    }
    use_default = data.get("use_default_registry")
    if use_default is not None and not isinstance(use_default, bool):
        problems.append(
            Problem(
                "use_default_registry",
                f"is {_describe(use_default)}, not true or false",
                'set "use_default_registry" to true or false (without quotes)',
            )
        )
    memory = _memory_limit(data.get("default_memory_limit"), problems)
    if problems:
        raise problems_error(path, problems, label=CONFIG_NAME)
    return ProjectConfig(
        path=path,
        data=data,
        container_repository=repositories["container_repository"],
        container_push_repository=repositories["container_push_repository"],
        use_default_registry=use_default is True,
        default_memory_limit=memory,
    )


def _config_repository(data: dict[str, Any], key: str, problems: list[Problem]) -> str | None:
    """The normalised repository in *key*; null or "" means unset (the SDK writes null)."""
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        problems.append(
            Problem(
                key,
                f"is {_json_type(value)} ({_describe(value)}), not a repository",
                f'set "{key}" to a string such as "harbor.example.com/my-project/myadapter"',
            )
        )
        return None
    try:
        return normalize_repository(value, source=f"{CONFIG_NAME} {key}")
    except InvalidReferenceError as exc:
        reason = exc.message.removeprefix(f"{CONFIG_NAME} {key}: ")
        fix = f'correct "{key}" or remove it to be asked. {exc.hint or ""}'.strip()
        problems.append(Problem(key, f"is not a valid repository: {reason}", fix))
        return None


def _memory_limit(value: Any, problems: list[Problem]) -> int:
    if value is None:
        return DEFAULT_MEMORY_LIMIT_MB
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isdigit() and value.isascii():
        number = int(value)  # the SDK passes it on as f"{value}m", so "2048" worked there
    if number is not None and number >= MIN_MEMORY_LIMIT_MB:
        return number
    problems.append(
        Problem(
            "default_memory_limit",
            f"is {_describe(value)}, not a whole number of MB of at least {MIN_MEMORY_LIMIT_MB}",
            f'set "default_memory_limit" to the adapter\'s memory limit in MB, e.g. '
            f"{DEFAULT_MEMORY_LIMIT_MB} (the default)",
        )
    )
    return DEFAULT_MEMORY_LIMIT_MB


# --- the project -------------------------------------------------------------------------


def load_project(root: Path) -> Project:
    """The project in *root*: its manifest and its config, both validated."""
    if not root.is_dir():
        raise ConfigError(
            f"the project directory {root} does not exist or is not a directory",
            path=str(root),
            hint="pass -p with the directory that holds manifest.txt",
        )
    return Project(root=root, manifest=load_manifest(root), config=load_project_config(root))


def save_container_repository(config: ProjectConfig, repository: str) -> None:
    """Set ``container_repository`` in config.json, keeping every other key and their order.

    The file is read again first (it may have been edited during the build), written to
    a temp file and renamed over the original; on any error it is left untouched. The
    value is normalised; nothing is written when the file already says the same.
    """
    value = normalize_repository(repository, source=f"the repository to save in {CONFIG_NAME}")
    path = config.path
    current = load_json_object(path, "project config file", hint=_CONFIG_HINT)
    data = {} if current is None else current
    existing = data.get("container_repository")
    if isinstance(existing, str) and existing:
        try:
            if normalize_repository(existing, source=CONFIG_NAME) == value:
                return
        except InvalidReferenceError:
            pass  # replaced below
    data["container_repository"] = value
    try:
        rewrite_json_file(path, data, indent=4)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror or exc}; container_repository was not saved "
            f"(it would have been {value!r})",
            path=str(path),
            hint=f"make {path.parent} writable, or set container_repository in {CONFIG_NAME} "
            f"yourself, or pass --registry-tag {value} on every build",
        ) from None
