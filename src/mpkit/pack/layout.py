"""Which project files go where in the pack (the SDK's mp_build rules).

The pack holds the eula and icon named in manifest.txt, the scripts it names,
``resources/**`` and ``content/**``; adapter.zip holds the eula, icon, ``resources/**`` and
``conf/**``. Symbolic links are followed (as the SDK's copytree does), within the project's
link policy (:mod:`mpkit.project.links`).

Directory entries are those the SDK's zip walk writes: every directory of ``resources/``
and ``conf/``, empty or not, and every directory of ``content/`` that holds anything (a
``.gitkeep`` counts, although the file itself is left out).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mpkit.errors import PackError
from mpkit.project.links import LinkPolicy
from mpkit.project.model import Project

SKIPPED_NAMES = frozenset({".gitkeep"})
# mp_build.build_subdirectories: each top-level file here goes into <stem lower-cased>/
ONE_DIRECTORY_PER_FILE = ("content/dashboards", "content/reports")
Files = list[tuple[str, Path]]  # (entry name, file)


@dataclass(frozen=True)
class Tree:
    """A project directory as zip entries: its files and its directory entries."""

    files: Files = field(default_factory=list)
    directories: list[str] = field(default_factory=list)  # entry names, without "/"


@dataclass(frozen=True)
class PackFiles:
    """The project files that go into a pack, by where they go."""

    named: Files  # eula and icon: the pack and adapter.zip
    scripts: Files  # validation, pre- and post-install scripts: the pack
    resources: Tree  # resources/**: the pack and adapter.zip
    content: Tree  # content/**: the pack
    conf: Tree  # conf/** (entry names start with "conf"): adapter.zip, under <KIND>/


def pack_files(project: Project, *, allow_external_links: bool = False) -> PackFiles:
    """Collect (and check) every project file the pack will hold; PackError or
    ExternalLinkError name the first problem."""
    links = LinkPolicy(project.root, allow_external_links)
    manifest = project.manifest
    root = project.root

    def named(*entries: tuple[str | None, str]) -> Files:
        return [named_file(root, name, what, links) for name, what in entries if name]

    return PackFiles(
        named=named((manifest.eula_file, "eula file"), (manifest.icon_file, "pack icon")),
        scripts=named(
            (manifest.validation_script, "pack validation script"),
            (manifest.pre_script, "adapter pre-install script"),
            (manifest.post_script, "adapter post-install script"),
        ),
        resources=tree_files(root / "resources", "resources", links),
        content=content_files(root, links),
        conf=tree_files(root / "conf", "conf", links),
    )


def tree_files(
    directory: Path, prefix: str, links: LinkPolicy, *, empty_directories: bool = True
) -> Tree:
    """Every regular file under *directory* as (``prefix/relative/path``, path), and its
    directories (*directory* itself as *prefix*).

    Symbolic links are followed unless *links* refuses them; ``.gitkeep`` files are left
    out. Without *empty_directories*, a directory with nothing in it (not even a
    ``.gitkeep``) gets no entry. A missing *directory* gives nothing.
    """
    links.check_path(directory)
    if not directory.is_dir():
        return Tree()
    tree = Tree()
    active: set[tuple[int, int]] = set()

    def walk(current: Path, arc: str) -> None:
        info = current.stat()
        key = (info.st_dev, info.st_ino)
        if key in active:
            raise PackError(
                f"{current} is a symbolic link to one of its own parent directories",
                hint="remove the link or point it elsewhere, then build again",
            )
        active.add(key)
        try:
            with os.scandir(current) as entries:
                children = sorted(entries, key=lambda entry: entry.name)
            if children or empty_directories:
                tree.directories.append(arc)
            for child in children:
                if child.name in SKIPPED_NAMES:
                    continue
                path = Path(child.path)
                if child.is_symlink():
                    links.check(path)
                kind = _file_kind(path)
                if kind == "dir":
                    walk(path, f"{arc}/{child.name}")
                else:
                    tree.files.append((f"{arc}/{child.name}", path))
        finally:
            active.discard(key)

    walk(directory, prefix)
    return tree


def _file_kind(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        what = "a broken symbolic link" if path.is_symlink() else "unreadable"
        raise PackError(
            f"{path} is {what} ({exc.strerror or exc})",
            hint="fix or remove it, then build again",
        ) from None
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    raise PackError(
        f"{path} is not a regular file (a pipe, socket or device) and cannot go into a pack",
        hint="remove it from the project, then build again",
    )


def content_files(root: Path, links: LinkPolicy) -> Tree:
    """``content/**`` with each top-level dashboard or report moved into its own directory."""
    tree = tree_files(root / "content", "content", links, empty_directories=False)
    moved = Tree(directories=list(tree.directories))
    for arc, path in tree.files:
        parent, _, name = arc.rpartition("/")
        if parent in ONE_DIRECTORY_PER_FILE:
            stem, extension = os.path.splitext(name)  # noqa: PTH122 (the SDK's exact rule)
            if extension.lower() == ".properties":
                raise _properties_error(parent, name)
            if stem.lower() != name:  # else the SDK's move would be onto the file itself
                arc = f"{parent}/{stem.lower()}/{name}"
                moved.directories.append(f"{parent}/{stem.lower()}")
        moved.files.append((arc, path))
    return moved


def _properties_error(directory: str, name: str) -> PackError:
    kind = directory.rsplit("/", 1)[-1].removesuffix("s")  # "dashboard" or "report"
    extension = "json" if kind == "dashboard" else "xml"
    return PackError(
        f"found the properties file {directory}/{name}; a .properties file cannot sit "
        f"directly in {directory}",
        hint=f"if a {kind} needs a .properties file, move the {kind} into its own "
        f"subdirectory of {directory} and the properties file into a 'resources' directory "
        f"inside that subdirectory, e.g. {directory}/myContent/myContent.{extension} and "
        f"{directory}/myContent/resources/myContent.properties (see the SDK guide "
        "'Adding Content')",
    )


def named_file(root: Path, relative: str, what: str, links: LinkPolicy) -> tuple[str, Path]:
    """A file named in manifest.txt (eula, icon, scripts): its entry name and its path."""
    pure = PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise PackError(
            f"manifest.txt names the {what} {relative!r}, which is not a path inside the project",
            hint=f"put the {what} in the project directory and name it by its relative path",
        )
    path = root.joinpath(*pure.parts)
    links.check_path(path)
    if not path.is_file():
        raise PackError(
            f"manifest.txt names the {what} {relative!r}, but {path} does not exist "
            "or is not a file",
            hint=f'add the file, or set the {what} to "" in manifest.txt',
        )
    return pure.as_posix(), path
