"""COPY, ADD (local sources) and WORKDIR planned as layer entries, with BuildKit's rules.

The semantics follow BuildKit (dockerfile2llb/convert_copy.go, the file-op backend and
tonistiigi/fsutil's ``copy``):

* sources are relative to the context root ("/x" means "x"); a source that leaves the
  context (``../x``) is refused, where BuildKit would silently clamp it to the root;
* wildcards use Go's filepath.Match; a wildcard that matches nothing copies nothing, but
  an instruction whose sources match nothing at all fails, as it does with Docker's
  classic builder and buildah (BuildKit would copy nothing);
* a directory source copies its *contents*; a symlink named as a source (or matched
  by a wildcard) is followed, symlinks inside a copied directory are copied as links;
  a link leading out of the project is refused unless external links are allowed, and
  then followed (see :mod:`mpkit.imagebuild.context`);
* several sources, or a wildcard matching several, need a destination ending in "/";
  a relative destination is relative to WORKDIR; a file copied onto an existing
  directory lands inside it;
* the destination is resolved through the image's symlinks (/bin → /usr/bin);
* without ``--chown`` everything is 0:0; ``--chown`` (names looked up in the image's
  /etc/passwd and /etc/group) also owns the directories the copy creates;
* files and directories keep the context's permission bits (``st_mode & 0o7777``, as
  Docker does) unless ``--chmod`` gives an octal mode;
* directories the copy creates are 0755 (BuildKit before 0.21, buildah and kaniko; newer
  BuildKit applies ``--chmod`` to them too), and directories that already exist in the
  image get no entry, so the base's ownership and modes stay intact. Directories inside a
  copied tree do get entries: BuildKit overwrites their metadata.
"""

from __future__ import annotations

import os
import posixpath
import re
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mpkit.errors import ContextError, DockerfileError, ExternalLinkError
from mpkit.image.layerwriter import LayerEntry
from mpkit.imagebuild.context import (
    BuildContext,
    ContextFile,
    PatternMatcher,
    glob_regex,
    go_clean,
    has_wildcards,
)
from mpkit.imagebuild.dockerfile import Instruction, NeedsEngineError
from mpkit.imagebuild.fsview import FileInfo, FilesystemView, normpath, resolve
from mpkit.imagebuild.shellwords import expand

CREATED_DIR_MODE = 0o755
MAX_USER_FILE_BYTES = 10 << 20  # BuildKit reads at most 10 MiB of /etc/passwd
_REMOTE_PREFIXES = ("http://", "https://", "git://", "git@", "ssh://")
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


# --------------------------------------------------------------------------- users


@dataclass(frozen=True)
class UserDB:
    """Users and groups of an image (/etc/passwd, /etc/group)."""

    users: Mapping[str, tuple[int, int]]  # name → (uid, primary gid)
    groups: Mapping[str, int]  # name → gid

    @classmethod
    def parse(cls, passwd: str = "", group: str = "") -> UserDB:
        users: dict[str, tuple[int, int]] = {}
        for fields in _colon_records(passwd, 4):
            if fields[2].isdecimal() and fields[3].isdecimal():
                users.setdefault(fields[0], (int(fields[2]), int(fields[3])))
        groups: dict[str, int] = {}
        for fields in _colon_records(group, 3):
            if fields[2].isdecimal():
                groups.setdefault(fields[0], int(fields[2]))
        return cls(users, groups)

    @classmethod
    def from_view(cls, view: FilesystemView) -> UserDB:
        return cls.parse(_read_text(view, "/etc/passwd"), _read_text(view, "/etc/group"))

    def resolve(self, spec: str, *, what: str = "--chown") -> tuple[int, int]:
        """``user[:group]`` (names or ids) → (uid, gid), the way BuildKit reads them:
        a numeric user without a group gets gid = uid; a named user its primary group.
        Unknown names are an error (BuildKit would silently use 0)."""
        user, has_group, group = spec.partition(":")
        uid, gid = 0, 0
        if user:
            number = _numeric_id(user, what)
            if number is not None:
                uid = gid = number
            elif user in self.users:
                uid, gid = self.users[user]
            else:
                raise DockerfileError(
                    f"{what}: unknown user {user!r}: it is not in the image's /etc/passwd",
                    hint="Create the user in the base image before this instruction, or use "
                    "numeric ids (e.g. --chown=1000:1000).",
                )
        if has_group and group:
            number = _numeric_id(group, what)
            if number is not None:
                gid = number
            elif group in self.groups:
                gid = self.groups[group]
            else:
                raise DockerfileError(
                    f"{what}: unknown group {group!r}: it is not in the image's /etc/group",
                    hint="Create the group in the base image, or use a numeric gid.",
                )
        return uid, gid


def _numeric_id(text: str, what: str) -> int | None:
    if text == "root":
        return 0
    if not re.fullmatch(r"[+-]?\d+", text):
        return None
    value = int(text)
    if not 0 <= value < 2**31:
        raise DockerfileError(f"{what}: id {text} is out of range")
    return value


def _colon_records(text: str, minimum: int) -> Iterable[list[str]]:
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) >= minimum:
            yield fields


def _read_text(view: FilesystemView, path: str) -> str:
    data = view.read_file(resolve(view, path), limit=MAX_USER_FILE_BYTES)
    return data.decode("utf-8", "replace") if data else ""


# --------------------------------------------------------------------------- overlay


class OverlayView:
    """A FilesystemView of *base* with layer entries on top (later entries win).

    Pass it as ``base`` to the next ``plan_copy`` so that instructions see the files
    and directories that earlier ones planned.
    """

    def __init__(self, base: FilesystemView, entries: Iterable[LayerEntry] = ()) -> None:
        self.base = base
        self.entries: dict[str, LayerEntry] = {}
        self._ancestors: set[str] = set()  # of every planned path (a superset after deletes)
        self.extend(entries)

    def add(self, entry: LayerEntry) -> None:
        path = normpath(entry.path)
        if entry.kind != "dir" and path in self._ancestors:
            previous = self.info(path)
            if previous is not None and previous.kind == "dir":
                # A non-directory replaces a directory: what was planned below it is gone.
                prefix = path.rstrip("/") + "/"
                for below in [p for p in self.entries if p.startswith(prefix)]:
                    del self.entries[below]
        self.entries[path] = entry
        parent = posixpath.dirname(path)
        while parent not in self._ancestors:
            self._ancestors.add(parent)
            parent = posixpath.dirname(parent)

    def extend(self, entries: Iterable[LayerEntry]) -> None:
        for entry in entries:
            self.add(entry)

    def info(self, path: str) -> FileInfo | None:
        path = normpath(path)
        entry = self.entries.get(path)
        if entry is not None:
            return None if entry.kind == "whiteout" else _entry_info(entry)
        if self._hidden(path):
            return None
        return self.base.info(path)

    def listdir(self, path: str) -> list[str]:
        path = normpath(path)
        names = set() if self._hidden(path) else set(self.base.listdir(path))
        prefix = path.rstrip("/") + "/"
        for entry_path, entry in self.entries.items():
            rest = entry_path[len(prefix) :] if entry_path.startswith(prefix) else ""
            if rest and "/" not in rest:
                if entry.kind == "whiteout":
                    names.discard(rest)
                else:
                    names.add(rest)
        return sorted(names)

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes | None:
        path = normpath(path)
        entry = self.entries.get(path)
        if entry is None:
            return None if self._hidden(path) else self.base.read_file(path, limit)
        if entry.kind != "file":
            return None
        if entry.data is not None:
            return entry.data[:limit]
        if entry.source is not None:
            with open(entry.source, "rb") as handle:
                return handle.read(limit)
        return None

    def _hidden(self, path: str) -> bool:
        """True when an entry above *path* replaced a directory with a non-directory."""
        parent = posixpath.dirname(path)
        while parent != path:
            entry = self.entries.get(parent)
            if entry is not None:
                return entry.kind != "dir"
            path, parent = parent, posixpath.dirname(parent)
        return False


def _entry_info(entry: LayerEntry) -> FileInfo:
    size = 0
    if entry.data is not None:
        size = len(entry.data)
    elif entry.source is not None:
        size = entry.source.stat().st_size
    return FileInfo(entry.kind, entry.mode, entry.uid, entry.gid, size, entry.linkname or "")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- planning


def plan_copy(
    instr: Instruction,
    *,
    context: BuildContext,
    base: FilesystemView,
    workdir: str,
    env: Mapping[str, str],
    user_db: UserDB | None = None,
    dockerfile_path: str = "Dockerfile",
    escape: str = "\\",
) -> list[LayerEntry]:
    """The layer entries a COPY or ADD of local files produces on top of *base*.

    *workdir* is the absolute WORKDIR in effect, *env* the build-time variables (see
    ``StageEvaluator.env``), *user_db* the users for ``--chown`` (default: read from
    *base*). Raises DockerfileError, ContextError or NeedsEngineError (URLs, archives
    that ADD would extract, ``--from``, ``--parents``, symbolic ``--chmod``).
    """
    planner = _Planner(context, OverlayView(base), user_db, escape)
    try:
        return planner.copy(instr, workdir=workdir, env=env)
    except (DockerfileError, NeedsEngineError) as exc:
        raise exc.at(path=dockerfile_path, line=instr.line) from None
    except ContextError as exc:
        raise ContextError(
            f"{dockerfile_path} line {instr.line}: {instr.keyword}: {exc.message}",
            path=exc.path,
            hint=exc.hint,
        ) from None
    except ExternalLinkError as exc:
        raise exc.prefixed(f"{dockerfile_path} line {instr.line}: {instr.keyword}") from None


def plan_workdir(
    instr: Instruction,
    *,
    base: FilesystemView,
    user: str = "",
    user_db: UserDB | None = None,
    dockerfile_path: str = "Dockerfile",
) -> list[LayerEntry]:
    """The directories WORKDIR creates: missing ones only, 0755, owned by the current
    USER (BuildKit's mkdir -p with WithUser; buildah creates them as root). *instr* is
    what StageEvaluator.apply returned: its single arg is the absolute working directory."""
    planner = _Planner(None, OverlayView(base), user_db, "\\")
    try:
        owner = planner.owner(user, what="USER") if user else (0, 0)
        planner.mkdir_all(instr.args[0], owner)
    except DockerfileError as exc:
        raise exc.at(path=dockerfile_path, line=instr.line) from None
    return list(planner.entries.values())


@dataclass(frozen=True)
class _Options:
    owner: tuple[int, int]
    chmod: int | None
    excludes: PatternMatcher | None
    unpack: bool


class _Planner:
    def __init__(
        self,
        context: BuildContext | None,
        view: OverlayView,
        user_db: UserDB | None,
        escape: str,
    ) -> None:
        self.context = context
        self.view = view
        self.user_db = user_db
        self.escape = escape
        self.entries: dict[str, LayerEntry] = {}

    def emit(self, entry: LayerEntry) -> None:
        self.entries.pop(entry.path, None)  # keep the order of the last write
        self.entries[entry.path] = entry
        self.view.add(entry)

    def owner(self, spec: str, *, what: str) -> tuple[int, int]:
        if self.user_db is None:
            self.user_db = UserDB.from_view(self.view)
        return self.user_db.resolve(spec, what=what)

    # -- the instruction

    def copy(self, instr: Instruction, *, workdir: str, env: Mapping[str, str]) -> list[LayerEntry]:
        keyword = instr.keyword
        if keyword not in ("COPY", "ADD"):
            raise DockerfileError(f"plan_copy handles COPY and ADD, not {keyword}")
        _refuse_engine_only_flags(instr)

        def expanded(word: str) -> str:
            return expand(word, env, escape=self.escape)

        words = [expanded(arg) for arg in instr.args]
        sources, dest = words[:-1], words[-1]
        for source in sources:
            if source.startswith(_REMOTE_PREFIXES):
                _refuse_remote(keyword, source)
        chown = expanded(instr.flag("chown") or "")
        options = _Options(
            owner=self.owner(chown, what="--chown") if chown else (0, 0),
            chmod=_parse_chmod(expanded(instr.flag("chmod") or "")),
            excludes=_excludes(instr.flag_values("exclude")),
            unpack=keyword == "ADD" and instr.flag("unpack") != "false",
        )
        into_dir = dest in ("", ".") or dest.endswith(("/", "/."))
        dest_abs = _clean_abs(dest if dest.startswith("/") else f"{workdir}/{dest}")

        items: list[str] = []
        several = len(sources) > 1
        for source in sources:
            rel = _source_rel(source)
            if has_wildcards(rel):
                matches = self._glob(rel)
                several = several or len(matches) > 1
                items.extend(matches)
            else:
                items.append(rel)
        if not items:
            raise _nothing_matched(instr, sources)
        if several and not into_dir:
            raise DockerfileError(
                f"when {keyword} has more than one source file, the destination must be a "
                f"directory and end with a /: {dest}",
                hint=f"Write the destination as {dest.rstrip('/')}/",
            )
        for rel in items:
            self._copy_source(rel, dest_abs, into_dir, options)
        return list(self.entries.values())

    def _glob(self, rel: str) -> list[str]:
        """fsutil ResolveWildcards: the fixed prefix is resolved (following links), the
        rest matched with filepath.Match; a matched directory is not descended into."""
        assert self.context is not None
        parts = rel.split("/")
        first = next(i for i, part in enumerate(parts) if has_wildcards(part))
        fixed = "/".join(parts[:first])
        pattern = "/".join(parts[first:])
        try:
            regex = glob_regex(pattern)
        except ValueError as exc:
            raise DockerfileError(f"invalid source pattern {rel!r}: {exc}") from None
        base = self.context.resolve(fixed) if fixed else ""
        if base:
            found = self.context.lookup(base)
            if found is None:
                raise self._missing(fixed, base)
            if found.kind != "dir":
                return []
        depth = pattern.count("/") + 1
        matches: list[str] = []
        skip: str | None = None
        for entry in self.context.walk(base):
            if skip is not None and entry.rel.startswith(skip):
                continue
            relative = entry.rel[len(base) + 1 :] if base else entry.rel
            if relative.count("/") + 1 > depth:
                continue
            if regex.fullmatch(relative):
                matches.append(entry.rel)
                skip = entry.rel + "/" if entry.kind == "dir" else None
        return matches

    def _copy_source(self, rel: str, dest_abs: str, into_dir: bool, opts: _Options) -> None:
        assert self.context is not None
        source = self._named_source(rel)
        if opts.unpack and source.kind == "file" and _is_archive(source.host_path):
            raise NeedsEngineError(
                f"ADD would extract the local archive {rel!r}, which is not supported natively",
                feature="add-archive",
                hint="Use COPY to copy the archive as a file, add --unpack=false, or build "
                "with --engine.",
            )
        # fsutil Copy: create the destination (or its parent), then resolve it in the image.
        self.mkdir_all(dest_abs if into_dir else posixpath.dirname(dest_abs), opts.owner)
        target = resolve(self.view, dest_abs)
        existing = self.view.info(target)
        if source.kind == "dir":
            if existing is None:
                self.mkdir_all(target, opts.owner)
            elif existing.kind != "dir":
                raise DockerfileError(
                    f"cannot copy the directory {rel or '.'!r} to {target}: "
                    "that path is not a directory in the image"
                )
            self._copy_tree(source.rel, target, opts)
            return
        if target == "/" or (existing is not None and existing.kind == "dir"):
            target = posixpath.join(target, posixpath.basename(rel))
        self._put(source, target, opts)

    def _named_source(self, rel: str) -> ContextFile:
        """The source as named: links followed inside the context, exclusions enforced."""
        assert self.context is not None
        if rel and self.context.is_excluded(rel):
            raise self._excluded(rel)
        resolved = self.context.resolve(rel) if rel else ""
        if not resolved:
            return ContextFile("", "dir", 0o755, 0, self.context.root)
        found = self.context.lookup(resolved)
        if found is None:
            raise self._missing(rel, resolved)
        return found

    def _missing(self, rel: str, resolved: str) -> DockerfileError:
        assert self.context is not None
        for candidate in (rel, resolved):
            if (
                candidate
                and self.context.is_excluded(candidate)
                and os.path.lexists(self.context.host_path(candidate))
            ):
                return self._excluded(candidate)
        via = f" (through symlinks: {resolved!r})" if resolved != rel else ""
        return DockerfileError(
            f"source {rel!r}{via} not found in the build context {self.context.root}",
            hint="Check the path: sources are relative to the project directory.",
        )

    def _excluded(self, rel: str) -> DockerfileError:
        assert self.context is not None
        reason = self.context.excluded_by(rel) or "the build context's exclusions"
        return DockerfileError(
            f"source {rel!r} is excluded from the build context by {reason}",
            hint="Remove the matching .dockerignore line, or move the file out of the "
            "excluded location.",
        )

    def _copy_tree(self, src_rel: str, target: str, opts: _Options) -> None:
        """Copy a directory's contents; BuildKit overwrites metadata of nested dirs."""
        assert self.context is not None
        chosen: list[tuple[ContextFile, str]] = []
        needed: set[str] = set()
        skip: str | None = None
        for entry in self.context.walk(src_rel):
            if skip is not None and entry.rel.startswith(skip):
                continue
            skip = None
            sub = entry.rel[len(src_rel) + 1 :] if src_rel else entry.rel
            if opts.excludes is not None and opts.excludes.matches(sub):
                if entry.kind == "dir" and not opts.excludes.has_exclusions:
                    skip = entry.rel + "/"
                elif entry.kind == "dir":
                    chosen.append((entry, "pending"))
                continue
            chosen.append((entry, sub))
            parent = posixpath.dirname(sub)
            while parent:
                needed.add(parent)
                parent = posixpath.dirname(parent)
        for entry, sub in chosen:
            if sub == "pending":
                sub = entry.rel[len(src_rel) + 1 :] if src_rel else entry.rel
                if sub not in needed:
                    continue
            self._put(entry, f"{target.rstrip('/')}/{sub}", opts)

    def _put(self, source: ContextFile, target: str, opts: _Options) -> None:
        assert self.context is not None
        uid, gid = opts.owner
        existing = self.view.info(target)
        if source.kind == "dir":
            if existing is not None and existing.kind != "dir":
                raise DockerfileError(
                    f"cannot copy the directory {source.rel!r} to {target}: "
                    "that path is not a directory in the image"
                )
            mode = opts.chmod if opts.chmod is not None else source.mode
            self.emit(LayerEntry(target, "dir", mode, uid, gid))
            return
        if existing is not None and existing.kind == "dir":
            raise DockerfileError(
                f"cannot replace the directory {target} with the file {source.rel!r}"
            )
        if source.kind == "symlink":
            self.context.check_symlink(source)
            self.emit(LayerEntry(target, "symlink", 0o777, uid, gid, linkname=source.linkname))
        elif source.kind == "file":
            mode = opts.chmod if opts.chmod is not None else source.mode
            self.emit(LayerEntry(target, "file", mode, uid, gid, source=source.host_path))
        else:
            raise ContextError(
                f"{source.rel!r} is not a regular file, directory or symlink "
                "(a socket, FIFO or device), which cannot be copied into an image natively",
                path=source.rel,
                hint="Remove it from the build context or exclude it in .dockerignore.",
            )

    def mkdir_all(self, path: str, owner: tuple[int, int]) -> None:
        """mkdir -p in the image: missing directories get entries (0755, *owner*)."""
        current = "/"
        for part in resolve(self.view, path).split("/"):
            if not part:
                continue
            current = posixpath.join(current, part)
            info = self.view.info(current)
            if info is None:
                self.emit(LayerEntry(current, "dir", CREATED_DIR_MODE, owner[0], owner[1]))
            elif info.kind != "dir":
                raise DockerfileError(
                    f"cannot create the directory {path}: {current} exists in the image "
                    "and is not a directory"
                )


def _nothing_matched(instr: Instruction, patterns: list[str]) -> DockerfileError:
    # Docker's classic builder ("no source files were specified") and buildah fail when the
    # sources together match nothing; one pattern matching nothing next to others is fine.
    names = " or ".join(repr(p) for p in patterns)
    return DockerfileError(
        f"{' '.join(instr.original.split())}: no file in the build context matches {names}",
        hint="Check the pattern against the project's files: sources are relative to the "
        "project directory, and excluded files (build/, content/, logs/, resources/, hidden "
        "files, .dockerignore) never match. Delete the line if there is nothing to copy.",
    )


def _refuse_engine_only_flags(instr: Instruction) -> None:
    keyword = instr.keyword
    if instr.flag("from") is not None:
        raise NeedsEngineError(
            f"{keyword} --from copies out of another stage or image, which needs an engine",
            feature="copy-from",
        )
    if instr.flag("parents") == "true":
        raise NeedsEngineError(f"{keyword} --parents is not supported natively", feature="parents")
    if instr.flag("checksum") is not None or instr.flag("keep-git-dir") is not None:
        raise NeedsEngineError(
            f"{keyword} --checksum/--keep-git-dir (remote sources) needs an engine",
            feature="add-remote",
        )


def _refuse_remote(keyword: str, source: str) -> None:
    if keyword == "COPY":
        raise DockerfileError(
            f"COPY cannot copy from a URL or git repository: {source}",
            hint="Download the file into the project directory first.",
        )
    raise NeedsEngineError(
        f"ADD of a URL or git repository ({source}) is not supported natively",
        feature="add-remote",
        hint="Download the file into the project directory and COPY it, or build with --engine.",
    )


def _parse_chmod(text: str) -> int | None:
    if not text:
        return None
    if re.fullmatch(r"[0-7]+", text):
        mode = int(text, 8)
        if mode <= 0o7777:
            return mode
    if re.fullmatch(r"\d+", text) or re.fullmatch(r"[0-7]+", text):
        raise DockerfileError(
            f"invalid --chmod value {text!r}: it must be an octal mode between 0 and 07777",
        )
    raise NeedsEngineError(
        f"symbolic --chmod={text} is not supported natively",
        feature="chmod-symbolic",
        hint="Use an octal mode such as --chmod=0755, or build with --engine.",
    )


def _excludes(patterns: list[str]) -> PatternMatcher | None:
    if not patterns:
        return None
    try:
        return PatternMatcher(patterns)
    except ValueError as exc:
        raise DockerfileError(f"invalid --exclude pattern: {exc}") from None


def _source_rel(source: str) -> str:
    """A context-relative source; absolute means relative to the root. ".." may not leave it."""
    cleaned = go_clean(source.lstrip("/"))
    if cleaned == ".." or cleaned.startswith("../"):
        raise ContextError(
            f"the source {source!r} is outside the build context",
            path=source,
            hint="Sources are relative to the project directory and cannot reach above it; "
            "move the file into the project.",
        )
    return "" if cleaned == "." else cleaned


def _clean_abs(path: str) -> str:
    return go_clean("/" + path.lstrip("/"))


def _is_archive(path: Path) -> bool:
    """What ADD would extract: a tar, possibly gzip/bzip2/xz/zstd-compressed."""
    with open(path, "rb") as handle:
        if handle.read(4) == _ZSTD_MAGIC:
            return True
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError, ValueError, tarfile.TarError):
        return False  # unreadable as an archive: BuildKit copies such a file as it is
