"""Requirement lines that the image's pip accepts and uv rejects, read as that pip reads them.

- **Legacy version specifiers**: an ordering operator with a ``.*`` version, such as
  ``requests>=2.32.*``. pip up to 24.0 vendors packaging 21.3, whose ``LegacySpecifier``
  compares ``LegacyVersion`` keys: ``>=2.32.*`` and ``>2.32.*`` admit every version whose
  release is 2.32 or later, pre- and dev releases included (a ``LegacyVersion`` is never a
  pre-release), which PEP 440 spells ``>=2.32.dev0``; ``<2.32.*`` and ``<=2.32.*`` admit
  every version below 2.32, which is ``<2.32.dev0``. pip 24.1 upgraded packaging to 24.0
  and removed legacy specifiers (pip's NEWS: "Remove support for legacy versions and
  dependency specifiers"), so it rejects the line as an invalid requirement.
- **A stray dash**: ``- wavefront-sdk-python==1.8.12``. pip's requirement-file parser
  (``req_file.break_args_options``) takes a line whose first word starts with ``-`` for an
  option line, and optparse leaves ``-`` and the name as positional arguments, which pip
  drops: every pip (9 to 26) installs nothing for it.

Such lines are rewritten for uv to what the image's pip would install, with a warning that
names the project's file and line; a line that the image's pip rejects too fails the same
way, before uv runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mpkit.errors import DependencyError
from mpkit.imagebuild.target import canonical_name

LEGACY_REMOVED_IN = (24, 1)  # the first pip whose packaging has no LegacySpecifier
_COMMENT = re.compile(r"(^|\s+)#.*$")  # pip's req_file.COMMENT_RE
_LEGACY_WILDCARD = re.compile(
    r"(?<![=!~<>])(?P<op><=|>=|<|>)\s*(?P<release>\d+(?:\.\d+)*)\.\*(?=\s*(?:[,);]|$))"
)
_STRAY_DASH = re.compile(r"^-(?:\s+(?P<rest>[^-\s]\S*(?:\s+[^-\s]\S*)*))?$")
# A named requirement and its version specifiers (extras skipped; markers cut off before).
_SPECIFIED = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[^\]]*\])?"
    r"(?P<specifiers>.*)$",
    re.DOTALL,
)

Warn = Callable[[str], None]


@dataclass(frozen=True)
class PipRules:
    """What the image's pip accepts (from its version, e.g. "23.0.1"; None: unknown)."""

    version: str | None

    @property
    def legacy_specifiers(self) -> bool:
        """Whether this pip reads legacy specifiers (unknown: assumed, as old bases had)."""
        release = _release(self.version)
        return release is None or release < LEGACY_REMOVED_IN

    @property
    def name(self) -> str:
        return f"pip {self.version}" if self.version else "the base image's pip"


class PipReader:
    """Reads requirement lines as the image's pip (*rules*) does, telling *warn* about each
    line that only that pip accepts; remembers which names old pip would take pre-releases
    of (those whose every specifier is a legacy one: a PEP 440 specifier for the same name
    filters pre-releases out again, as packaging 21.3's SpecifierSet.filter does)."""

    def __init__(self, rules: PipRules, warn: Warn) -> None:
        self.rules = rules
        self.warn = warn
        self._legacy: set[str] = set()  # names with a requirement of legacy specifiers only
        self._standard: set[str] = set()  # names with a PEP 440 specifier somewhere

    @property
    def prerelease_names(self) -> list[str]:
        """Canonical names whose pre-releases the image's pip would consider."""
        return sorted(self._legacy - self._standard)

    def file(self, data: bytes, origin: str) -> bytes:
        """*data* (a requirements file; *origin* is how the user knows it, e.g. its path in
        the project) with the lines above rewritten as the image's pip reads them; the same
        bytes when nothing needs rewriting. DependencyError for a line that pip rejects."""
        text = data.decode("utf-8", "replace")
        lines = text.splitlines(keepends=True)
        changed = False
        for first, last, line in logical_lines(text):
            where = f"{origin}:{first}"
            stray = _STRAY_DASH.match(line)
            if stray:
                self.warn(_stray_dash_warning(where, line, stray["rest"]))
                replacement = ""
            elif line.startswith("-"):
                continue
            else:
                requirement = _requirement_part(line)
                adapted = self.requirement(requirement, where)
                if adapted == requirement:
                    continue
                replacement = adapted + line[len(requirement) :]
            lines[first - 1] = replacement + _ending(lines[last - 1])
            for number in range(first, last):
                lines[number] = _ending(lines[number])
            changed = True
        return "".join(lines).encode() if changed else data

    def requirement(self, requirement: str, where: str) -> str:
        """One requirement (a file's line or a pip install argument; *where* names it),
        legacy specifiers rewritten; DependencyError when the image's pip rejects them."""
        head, marker, tail = requirement.partition(";")
        parsed = _SPECIFIED.match(head)
        if parsed is None or "@" in head:
            return requirement
        name = canonical_name(parsed["name"])
        items = [i for i in parsed["specifiers"].strip().strip("()").split(",") if i.strip()]
        legacy = [i for i in items if _LEGACY_WILDCARD.fullmatch(i.strip())]
        if len(legacy) < len(items):
            self._standard.add(name)
        if not legacy:
            return requirement
        faithful = _LEGACY_WILDCARD.sub(_pep440_equivalent, head) + marker + tail
        modern = (_LEGACY_WILDCARD.sub(_modern_spelling, head) + marker + tail).strip()
        shown = requirement.strip()
        if not self.rules.legacy_specifiers:
            raise DependencyError(
                f"{where}: {shown!r} is not a valid requirement: '.*' versions go only with "
                f"'==' or '!='. {self.rules.name} in the base image rejects it too (pip 24.1 "
                "and later do; older pip read it as a legacy version specifier)",
                hint=f"write {modern!r}",
            )
        prereleases = ""
        if len(legacy) == len(items):
            self._legacy.add(name)
            prereleases = ", pre-releases included,"
        self.warn(
            f"{where}: {shown!r} is a legacy version specifier, which pip 24.1 and later "
            f"reject; {self.rules.name} in the base image reads it as {faithful.strip()!r}"
            f"{prereleases} and mpkit installs what that pip would. Write {modern!r}"
        )
        return faithful


def logical_lines(text: str) -> Iterator[tuple[int, int, str]]:
    """(first line number, last line number, text) of each non-empty logical line, as pip's
    ``req_file.preprocess`` joins continuations and strips comments."""
    physical = text.splitlines()
    number = 0
    while number < len(physical):
        first = number
        joined = physical[number]
        while joined.endswith("\\") and not _COMMENT.match(joined) and number + 1 < len(physical):
            number += 1
            joined = joined[:-1] + physical[number]
        number += 1
        line = _COMMENT.sub("", joined).strip()
        if line:
            yield first + 1, number, line


def _requirement_part(line: str) -> str:
    """The requirement of a line, before its per-requirement options (``--hash=…``): pip's
    ``break_args_options`` ends it at the first word that starts with '-'."""
    words = line.split(" ")
    for index, word in enumerate(words):
        if word.startswith("-"):
            return " ".join(words[:index])
    return line


def _pep440_equivalent(match: re.Match[str]) -> str:
    upward = match["op"] in (">=", ">")
    return f"{'>=' if upward else '<'}{match['release']}.dev0"


def _modern_spelling(match: re.Match[str]) -> str:
    upward = match["op"] in (">=", ">")
    return f"{'>=' if upward else '<'}{match['release']}"


def _stray_dash_warning(where: str, line: str, rest: str | None) -> str:
    fix = f"write {rest!r} to install it, or delete the line" if rest else "delete the line"
    return (
        f"{where}: {line!r} installs nothing: pip reads a line that starts with '- ' as "
        f"options and ignores the words after the dash, and so does mpkit; {fix}"
    )


def _ending(line: str) -> str:
    stripped = line.rstrip("\r\n")
    return line[len(stripped) :]


def _release(version: str | None) -> tuple[int, int] | None:
    match = re.match(r"^\s*v?(\d+)(?:\.(\d+))?", version or "")
    return (int(match[1]), int(match[2] or 0)) if match else None
