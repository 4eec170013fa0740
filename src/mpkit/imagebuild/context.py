"""The build context: which project files an image build may see, and a content hash of them.

Exclusions (the default build context of an SDK project): the top-level ``build``,
``content``, ``logs`` and ``resources`` entries, hidden files and directories at any depth,
and virtual environments (a directory with ``bin/activate`` and ``bin/python``, or
``Scripts/activate.bat``).
These are absolute: ``.dockerignore`` exceptions cannot bring them back. On top of
them, ``.dockerignore`` applies with moby/patternmatcher semantics.

Symlinks are reported as they are (never followed by ``walk``). A link whose target
leaves the context is refused only when a build uses it (``check_symlink`` and
``resolve``, through the project's link policy in :mod:`mpkit.project.links`); walking and
hashing such a context works, so that ``digest`` stays total. When external links are
allowed, the context presents such a link as what it points to (a file or a directory
that ``walk`` descends into), the way the pack collector follows it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mpkit.errors import ContextError
from mpkit.project.links import LinkPolicy

DEFAULT_EXCLUDED_TOP_LEVEL = frozenset({"build", "content", "logs", "resources"})
MAX_SYMLINK_HOPS = 40
DEFAULT_EXCLUSIONS_TEXT = (
    "mpkit's default exclusions (top-level build/, content/, logs/ and resources/, "
    "hidden files and directories, virtual environments)"
)
ContextKind = Literal["file", "dir", "symlink", "other"]


@dataclass(frozen=True)
class ContextFile:
    """One entry of the context. ``rel`` is POSIX and relative to the root ("app/x.py")."""

    rel: str
    kind: ContextKind
    mode: int  # permission bits incl. setuid/setgid/sticky (st_mode & 0o7777)
    size: int
    host_path: Path
    linkname: str | None = None  # symlink target, verbatim


# --------------------------------------------------------------------------- patterns


def go_clean(path: str) -> str:
    """Go's path.Clean: like posixpath.normpath, but "//x" becomes "/x"."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append(part)
            continue
        parts.append(part)
    out = "/".join(parts)
    return ("/" + out) if rooted else (out or ".")


def has_wildcards(path: str) -> bool:
    """True when *path* contains an unescaped ``*``, ``?`` or ``[`` (fsutil containsWildcards)."""
    i = 0
    while i < len(path):
        if path[i] == "\\":
            i += 2
            continue
        if path[i] in "*?[":
            return True
        i += 1
    return False


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match syntax as a regex: ``*`` and ``?`` never match "/", ``[...]``
    classes with ``^`` negation and ranges, ``\\`` escapes. ValueError when malformed."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i >= n:
                raise ValueError(f"bad pattern {pattern!r}: trailing backslash")
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            negate = i < n and pattern[i] == "^"
            if negate:
                i += 1
            ranges: list[str] = []
            while True:
                if i < n and pattern[i] == "]" and ranges:
                    i += 1
                    break
                low, i = _class_char(pattern, i)
                high = low
                if i < n and pattern[i] == "-":
                    high, i = _class_char(pattern, i + 1)
                if low > high:
                    raise ValueError(f"bad pattern {pattern!r}: range {low}-{high}")
                ranges.append(f"{re.escape(low)}-{re.escape(high)}")
            out.append("[" + ("^" if negate else "") + "".join(ranges) + "]")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    if i >= len(pattern) or pattern[i] in "-]":
        raise ValueError(f"bad pattern {pattern!r}: malformed character class")
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise ValueError(f"bad pattern {pattern!r}: trailing backslash")
    if i + 1 >= len(pattern):
        raise ValueError(f"bad pattern {pattern!r}: unterminated character class")
    return pattern[i], i + 1


def glob_match(pattern: str, name: str) -> bool:
    """filepath.Match(pattern, name) for POSIX paths."""
    return glob_regex(pattern).fullmatch(name) is not None


class _Pattern:
    """One .dockerignore line compiled the way moby/patternmatcher does."""

    def __init__(self, text: str) -> None:
        self.exclusion = text.startswith("!")
        if self.exclusion:
            text = text[1:]
        self.text = text
        self.kind, self.regex = _compile_pattern(text)

    def matches(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return self.regex.match(path) is not None


def _compile_pattern(pattern: str) -> tuple[str, re.Pattern[str] | None]:
    regex = "^"
    kind = "exact"
    i = index = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                if i >= n:
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        regex += ".*"
                        kind = "regexp"
                else:
                    regex += "(.*/)?"
                    kind = "regexp"
                if index == 0:
                    kind = "suffix"
            else:
                regex += "[^/]*"
                kind = "regexp"
        elif ch == "?":
            regex += "[^/]"
            kind = "regexp"
        elif ch in ".+()|{}$":
            regex += "\\" + ch
        elif ch == "\\":
            if i < n:
                regex += "\\" + pattern[i]
                i += 1
                kind = "regexp"
            else:
                regex += "\\\\"
        elif ch in "[]":
            regex += ch
            kind = "regexp"
        else:
            regex += ch
        index += 1
    if kind != "regexp":
        return kind, None
    try:
        return kind, re.compile(regex + r"\Z", re.DOTALL)
    except re.error as exc:
        raise ValueError(f"bad pattern {pattern!r}: {exc}") from None


class PatternMatcher:
    """moby/patternmatcher: the last matching pattern wins; a pattern matches a path when
    it matches the path itself or one of its parent directories."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            exclusion = text.startswith("!")
            body = go_clean(text[1:] if exclusion else text)
            if exclusion and not text[1:]:
                raise ValueError('illegal exclusion pattern: "!"')
            glob_regex(body)  # patternmatcher.New checks the filepath.Match syntax
            self.patterns.append(_Pattern(("!" if exclusion else "") + body))
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    def matches(self, path: str) -> bool:
        """MatchesOrParentMatches(path) for a clean, relative, slash-separated path."""
        matched = False
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        parents = parent.split("/") if parent else []
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.matches(path) or any(
                pattern.matches("/".join(parents[: i + 1])) for i in range(len(parents))
            )
            if hit:
                matched = not pattern.exclusion
        return matched


def read_dockerignore(text: str) -> list[str]:
    """moby/patternmatcher/ignorefile.ReadAll: comments, trimming, Clean, no leading "/"."""
    patterns: list[str] = []
    for number, line in enumerate(text.split("\n")):
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = go_clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append(("!" if invert else "") + line)
    return patterns


# --------------------------------------------------------------------------- context


class BuildContext:
    """A project directory as an image build sees it."""

    def __init__(
        self, root: Path, *, dockerignore: bool = True, allow_external_links: bool = False
    ) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ContextError(
                f"the build context {self.root} is not a directory",
                hint="Point --path at the management pack project directory.",
            )
        self.links = LinkPolicy(self.root, allow_external_links)
        self.patterns: list[str] = []
        ignore_file = self.root / ".dockerignore"
        if dockerignore and ignore_file.is_file():
            self.patterns = read_dockerignore(ignore_file.read_text(encoding="utf-8"))
        try:
            self._matcher = PatternMatcher(self.patterns)
        except ValueError as exc:
            raise ContextError(
                f"{ignore_file}: {exc}",
                path=".dockerignore",
                hint="Fix the pattern; the syntax is Go's filepath.Match plus ** and ! lines.",
            ) from None
        self._venv: dict[str, bool] = {}

    # -- exclusion

    def is_excluded(self, rel: str) -> bool:
        """True when *rel* is not part of the context (defaults or .dockerignore)."""
        rel = _normalize(rel)
        if not rel:
            return False
        return self._default_excluded(rel) or self._matcher.matches(rel)

    def excluded_by(self, rel: str) -> str | None:
        """Why *rel* is excluded ("the default exclusions", ".dockerignore"), or None."""
        rel = _normalize(rel)
        if rel and self._default_excluded(rel):
            return DEFAULT_EXCLUSIONS_TEXT
        if rel and self._matcher.matches(rel):
            return ".dockerignore"
        return None

    def ignore_patterns(self) -> list[str]:
        """.dockerignore lines that make an engine see exactly this context: the project's
        own patterns, then the default exclusions last (so that no "!" line re-includes
        them). Virtual environments are listed by path."""
        defaults = [*sorted(DEFAULT_EXCLUDED_TOP_LEVEL), "**/.*", *self._venv_dirs()]
        return [*self.patterns, *defaults]

    def _venv_dirs(self, rel_dir: str = "") -> list[str]:
        found: list[str] = []
        with os.scandir(self.host_path(rel_dir)) as scan:
            names = sorted(item.name for item in scan if item.is_dir(follow_symlinks=False))
        for name in names:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if name.startswith(".") or (not rel_dir and name in DEFAULT_EXCLUDED_TOP_LEVEL):
                continue
            if self._is_venv(rel):
                found.append(re.sub(r"([*?\[\\])", r"\\\1", rel))
            else:
                found.extend(self._venv_dirs(rel))
        return found

    def _default_excluded(self, rel: str) -> bool:
        parts = rel.split("/")
        if parts[0] in DEFAULT_EXCLUDED_TOP_LEVEL:
            return True
        if any(part.startswith(".") for part in parts):
            return True
        return any(self._is_venv("/".join(parts[: i + 1])) for i in range(len(parts)))

    def _is_venv(self, rel: str) -> bool:
        cached = self._venv.get(rel)
        if cached is None:
            host = self.root / rel
            cached = (
                os.path.lexists(host / "bin" / "activate")
                and os.path.lexists(host / "bin" / "python")
            ) or os.path.lexists(host / "Scripts" / "activate.bat")
            self._venv[rel] = cached
        return cached

    # -- lookup and walking

    def host_path(self, rel: str) -> Path:
        rel = _normalize(rel)
        return self.root / rel if rel else self.root

    def lookup(self, rel: str) -> ContextFile | None:
        """The entry at *rel*; None if absent or excluded. A final symlink is not followed,
        except an allowed one that leaves the context."""
        rel = _normalize(rel)
        if self.is_excluded(rel):
            return None
        try:
            return self._entry_at(rel, self.host_path(rel))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _entry_at(self, rel: str, host: Path) -> ContextFile:
        st = os.lstat(host)
        if stat.S_ISLNK(st.st_mode) and self.links.allow_external and self.links.leaves(host):
            with contextlib.suppress(OSError):  # dangling: stays a link, refused when used
                st = host.stat()
        return _entry(rel, host, st)

    def walk(self, under: str = "") -> Iterator[ContextFile]:
        """Non-excluded entries strictly below *under*, depth first, names sorted, each
        directory before its contents. Symlinks are not followed, except allowed ones that
        leave the context (see ``lookup``)."""
        base = _normalize(under)
        yield from self._walk(base, frozenset())

    def _walk(self, rel_dir: str, above: frozenset[tuple[int, int]]) -> Iterator[ContextFile]:
        host_dir = self.host_path(rel_dir)
        try:
            if self.links.allow_external:  # followed links could lead back up: a loop
                st = host_dir.stat()
                if (st.st_dev, st.st_ino) in above:
                    raise ContextError(
                        f"{rel_dir!r} leads (through a symbolic link) back to a directory "
                        "that contains it",
                        path=rel_dir,
                        hint="Remove the link or point it elsewhere.",
                    )
                above = above | {(st.st_dev, st.st_ino)}
            with os.scandir(host_dir) as scan:
                names = sorted(item.name for item in scan)
        except OSError as exc:
            raise ContextError(
                f"cannot read {host_dir}: {exc.strerror}", path=rel_dir or "."
            ) from None
        for name in names:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if self._default_excluded(rel):
                continue
            entry = self._entry_at(rel, host_dir / name)
            ignored = self._matcher.matches(rel)
            if entry.kind != "dir":
                if not ignored:
                    yield entry
                continue
            if not ignored:
                yield entry
                yield from self._walk(rel, above)
            elif self._matcher.has_exclusions:
                # An excluded directory still holds any re-included ("!") descendants.
                children = list(self._walk(rel, above))
                if children:
                    yield entry
                    yield from children

    def copy_to(self, target: Path) -> Path:
        """Make *target* (new) a directory holding exactly this context, for an engine that
        cannot be told the exclusions: files hard-linked where possible, else copied with
        their mode; symlinks as they are; directories with their mode. Returns *target*."""
        target.mkdir()
        directories: list[tuple[Path, int]] = []
        for entry in self.walk():
            copy = target / entry.rel
            if entry.kind == "dir":
                copy.mkdir()
                directories.append((copy, entry.mode))
            elif entry.kind == "symlink":
                copy.symlink_to(entry.linkname or "")
            elif entry.kind == "file":
                try:
                    os.link(entry.host_path, copy)
                except OSError:  # another file system, or links not allowed
                    shutil.copy2(entry.host_path, copy)
        for directory, mode in reversed(directories):  # last: a read-only one stays fillable
            directory.chmod(mode)
        return target

    def digest(self) -> str:
        """sha256 over paths, kinds, the exec bit, file contents and symlink targets.

        Independent of mtimes, owners, the umask and where the context lives; the exact
        permission bits (which COPY keeps) beyond the exec bit are not part of it.
        """
        total = hashlib.sha256()
        for entry in self.walk():
            if entry.kind == "file":
                payload = _file_sha256(entry.host_path)
            elif entry.kind == "symlink":
                payload = entry.linkname or ""
            else:
                payload = ""
            executable = entry.kind == "file" and bool(entry.mode & 0o111)
            record = json.dumps([entry.kind, entry.rel, executable, payload])
            total.update(record.encode("utf-8", "surrogateescape") + b"\n")
        return "sha256:" + total.hexdigest()

    # -- symlinks

    def resolve(self, rel: str, *, follow_last: bool = True) -> str:
        """Resolve symlinks in *rel* on the host, confined to the context: a link leading
        outside it is refused (ExternalLinkError), or kept as it is when external links are
        allowed (reading through it then follows it); "..", above the root, ContextError."""
        pending = [p for p in rel.split("/") if p]
        resolved: list[str] = []
        hops = 0
        while pending:
            name = pending.pop(0)
            if name == ".":
                continue
            if name == "..":
                if not resolved:
                    raise self._escape(rel)
                resolved.pop()
                continue
            candidate = [*resolved, name]
            host = self.root.joinpath(*candidate)
            if (pending or follow_last) and host.is_symlink():
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise ContextError(
                        f"too many levels of symbolic links at {'/'.join(candidate)}",
                        path="/".join(candidate),
                    )
                if self.links.check(host):
                    resolved = candidate
                    continue
                inside = Path(os.path.realpath(host)).relative_to(self.links.real_root)
                pending = [p for p in inside.as_posix().split("/") if p != "."] + pending
                resolved = []
                continue
            resolved = candidate
        return "/".join(resolved)

    def check_symlink(self, entry: ContextFile) -> None:
        """Refuse a link that is copied as a link but points outside the context (or to an
        absolute path, which means something else inside the image)."""
        target = entry.linkname or ""
        if self.links.check(entry.host_path):
            raise ContextError(
                f"the symlink {entry.rel!r} points outside the build context {self.root} to "
                f"{target}, which does not exist",
                path=entry.rel,
                hint="Fix or remove the link.",
            )
        if target.startswith("/"):
            raise ContextError(
                f"the symlink {entry.rel!r} has the absolute target {target}, which would "
                "point at something else inside the image",
                path=entry.rel,
                hint="Make it a relative link (e.g. ln -sfr), or replace it with the file.",
            )

    def _escape(self, rel: str) -> ContextError:
        return ContextError(
            f"{rel!r} refers to a path outside the build context {self.root}",
            path=rel,
            hint="Only files inside the project directory can be copied into the image; "
            "move the file into the project.",
        )


def _normalize(rel: str) -> str:
    """A clean context-relative path ("" for the root); ContextError if it leaves the root."""
    cleaned = go_clean(rel).lstrip("/")
    if cleaned == ".." or cleaned.startswith("../"):
        raise ContextError(
            f"{rel!r} refers to a path outside the build context",
            path=rel,
            hint="Only files inside the project directory can be used by the build.",
        )
    return "" if cleaned in (".", "") else cleaned


def _entry(rel: str, host: Path, st: os.stat_result) -> ContextFile:
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(host)  # noqa: PTH115 (verbatim, not a normalised Path)
        return ContextFile(rel, "symlink", mode, 0, host, target)
    if stat.S_ISDIR(st.st_mode):
        return ContextFile(rel, "dir", mode, 0, host)
    if stat.S_ISREG(st.st_mode):
        return ContextFile(rel, "file", mode, st.st_size, host)
    return ContextFile(rel, "other", mode, 0, host)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
