"""``mpkit init``: write a new SDK-style Python adapter project that builds as it is.

The project is assembled in a temporary directory beside the target and renamed into
place at the end, so a failure never leaves half a project behind.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from mpkit.atomicfile import TempDir, remove_stale
from mpkit.describe.schema import BUNDLED_SCHEMA, SCHEMA_NAME
from mpkit.errors import UsageError
from mpkit.init import files

TEMPLATE_NAMES = ("sample", "minimal")
_ADAPTER_KIND = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class InitOptions:
    path: Path
    display_name: str
    adapter_kind: str
    description: str = ""
    vendor: str = ""
    eula: Path | None = None  # a text file to ship as the EULA (default: a one-line EULA)
    icon: Path | None = None  # a PNG file for the pack
    template: str = "sample"  # "sample": collects from the local machine; "minimal"


def adapter_kind_problem(key: str) -> str | None:
    """Why *key* cannot be an adapter kind key, or None when it can."""
    if not key:
        return "it is empty"
    if key[0].isdigit():
        return "it starts with a digit"
    if not _ADAPTER_KIND.fullmatch(key):
        bad = sorted({c for c in key if not (c.isascii() and (c.isalnum() or c == "_"))})
        return f"it contains {''.join(bad)!r}; only letters, digits and '_' are allowed"
    return None


def check_options(options: InitOptions) -> None:
    """Raise UsageError for the first option that cannot make a project."""
    if not options.display_name.strip():
        raise UsageError("the display name is empty", hint="pass --display-name 'My Adapter'")
    problem = adapter_kind_problem(options.adapter_kind)
    if problem:
        raise UsageError(
            f"the adapter kind key {options.adapter_kind!r} is not valid: {problem}",
            hint="use letters, digits and '_', not starting with a digit, e.g. MyAdapter "
            "(it is the key of describe.xml and cannot change once the pack is installed)",
        )
    if options.template not in TEMPLATE_NAMES:
        raise UsageError(
            f"unknown template {options.template!r}",
            hint=f"choose one of: {', '.join(TEMPLATE_NAMES)}",
        )
    for path, what in ((options.eula, "EULA"), (options.icon, "icon")):
        if path is not None and not path.is_file():
            raise UsageError(f"the {what} file {path} does not exist or is not a file")
    if options.icon is not None:
        with open(options.icon, "rb") as handle:
            if handle.read(len(PNG_MAGIC)) != PNG_MAGIC:
                raise UsageError(f"the icon {options.icon} is not a PNG image",
                                 hint="pass a .png file (256x256 is usual)")  # fmt: skip
    if options.path.exists() and (not options.path.is_dir() or any(options.path.iterdir())):
        raise UsageError(
            f"{options.path} already exists and is not an empty directory",
            hint="choose a new directory for the project",
        )


def create_project(options: InitOptions) -> Path:
    """Write the project; returns its directory."""
    check_options(options)
    target = options.path.absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent)  # what a killed 'mpkit init' left here
    with TempDir(target.parent, target.name) as work:
        _write_project(work.path, options)
        work.path.chmod(0o755)
        if target.exists():
            target.rmdir()  # empty, checked above
        work.publish(target)
    return target


def _write_project(root: Path, options: InitOptions) -> None:
    kind = options.adapter_kind
    eula_name = options.eula.name if options.eula else files.EULA_NAME
    icon_name = options.icon.name if options.icon else ""
    _text(root / "manifest.txt", json.dumps(files.manifest(kind, eula_name, icon_name), indent=4))
    _text(root / "config.json", json.dumps(files.config_json(), indent=4))
    _text(root / "Dockerfile", files.dockerfile(options.display_name))
    _text(root / "commands.cfg", files.commands_cfg())
    _text(root / "adapter_requirements.txt", files.requirements())
    _text(root / "app" / "__init__.py", "")
    _text(
        root / "app" / "adapter.py",
        files.adapter_source(options.template, options.display_name, kind),
    )
    _text(
        root / "resources" / "resources.properties",
        files.manifest_properties(options.display_name, options.description, options.vendor),
    )
    _text(root / ".gitignore", files.GITIGNORE)
    if options.eula:
        shutil.copyfile(options.eula, root / eula_name)
    else:
        _text(root / eula_name, files.DEFAULT_EULA)
    if options.icon:
        shutil.copyfile(options.icon, root / icon_name)
    conf = root / "conf"
    (conf).mkdir()
    shutil.copyfile(BUNDLED_SCHEMA, conf / SCHEMA_NAME)
    for name in files.IMAGE_DIRECTORIES:
        _text(conf / "images" / name / ".gitkeep", "")
    for name in files.CONTENT_DIRECTORIES:
        _text(root / "content" / name / ".gitkeep", "")


def _text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if text and not text.endswith("\n"):
        text += "\n"
    path.write_text(text, encoding="utf-8")
    with contextlib.suppress(OSError):
        path.chmod(0o644)
