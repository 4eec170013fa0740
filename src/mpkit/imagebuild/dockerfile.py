"""Dockerfile front end: parse a Dockerfile into stages of instructions.

The rules follow BuildKit's dockerfile frontend (``frontend/dockerfile/parser`` and
``instructions/parse.go``): the parser keeps each instruction's 1-based start line,
honours ``# escape=``, drops comment lines inside continuations and allows empty
continuation lines. Variable expansion lives in ``shellwords``, and what the
instructions do to the image config in ``stage``.

Heredocs, multi-stage builds and ``COPY --from`` are not supported natively: they raise
``NeedsEngineError`` (a signal, not an error) so that the caller can fall back to an engine.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from mpkit.errors import DockerfileError

ENGINE_HINT = (
    "Build this Dockerfile with an engine instead (mpkit build --engine), or rewrite the "
    "instruction with the natively supported subset: FROM, ARG, ENV, LABEL, USER, WORKDIR, "
    "COPY/ADD of local files, EXPOSE, CMD, ENTRYPOINT, STOPSIGNAL, HEALTHCHECK and pip installs."
)

# Instructions whose words Docker expands (dockerfile2llb: SupportsSingleWordExpansion + FROM).
EXPANDED_INSTRUCTIONS = frozenset(
    {
        "ADD",
        "ARG",
        "COPY",
        "ENV",
        "EXPOSE",
        "FROM",
        "LABEL",
        "ONBUILD",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    }
)

_BOOL, _STRING, _STRINGS = "bool", "string", "strings"
# instructions/parse.go: the flags each instruction accepts (BFlags).
_FLAGS: dict[str, dict[str, str]] = {
    "ADD": {
        "chown": _STRING,
        "chmod": _STRING,
        "link": _BOOL,
        "keep-git-dir": _BOOL,
        "checksum": _STRING,
        "unpack": _BOOL,
        "exclude": _STRINGS,
    },
    "COPY": {
        "chown": _STRING,
        "chmod": _STRING,
        "from": _STRING,
        "link": _BOOL,
        "parents": _BOOL,
        "exclude": _STRINGS,
    },
    "FROM": {"platform": _STRING},
    "RUN": {"mount": _STRINGS, "network": _STRING, "security": _STRING, "device": _STRINGS},
    "HEALTHCHECK": {
        "interval": _STRING,
        "timeout": _STRING,
        "start-period": _STRING,
        "start-interval": _STRING,
        "retries": _STRING,
    },
}
_KNOWN = frozenset(
    {
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    }
)

_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_DIRECTIVE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"(?:^|\s)\d*<<-?\s*[^\s<]")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")


class NeedsEngineError(Exception):
    """A Dockerfile feature the native builder does not do, but an engine can.

    A signal, not a user error: the builder catches it and hands the build to an engine;
    when no engine can take it, the builder raises the user error naming the line."""

    def __init__(
        self,
        reason: str,
        *,
        feature: str,
        path: str = "Dockerfile",
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(f"{path} line {line}: {reason}" if line else f"{path}: {reason}")
        self.reason = reason
        self.feature = feature  # e.g. "heredoc", "copy-from", "run"
        self.path = path
        self.line = line
        self.hint = hint or ENGINE_HINT

    def at(self, *, path: str, line: int | None) -> NeedsEngineError:
        """The same signal located at *path*/*line* (when it was raised without one)."""
        if self.line is not None:
            return self
        return NeedsEngineError(
            self.reason, feature=self.feature, path=path, line=line, hint=self.hint
        )


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Instruction:
    """One instruction as written (nothing expanded yet).

    ``args`` by keyword: COPY/ADD/VOLUME/EXPOSE/FROM: the words (or the JSON array);
    RUN/CMD/ENTRYPOINT/SHELL: the JSON array, or ``[command line]`` in shell form;
    ENV/LABEL: ``["KEY=VALUE", ...]`` with values still quoted (the legacy form
    ``ENV KEY a b`` gives ``["KEY=a b"]``);
    ARG: ``["NAME=default", "NAME"]``; USER/WORKDIR/STOPSIGNAL/MAINTAINER/ONBUILD: one
    string; HEALTHCHECK: ``["CMD", *command]`` or ``["NONE"]``.
    """

    line: int
    keyword: str
    args: list[str]
    flags: dict[str, str]
    json_form: bool
    original: str
    end_line: int = 0
    raw_flags: tuple[str, ...] = ()

    def flag(self, name: str) -> str | None:
        return self.flags.get(name)

    def flag_values(self, name: str) -> list[str]:
        """Every value of a repeatable flag (``--exclude``, ``--mount``), in order."""
        prefix = f"--{name}="
        return [word[len(prefix) :] for word in self.raw_flags if word.startswith(prefix)]

    def pairs(self) -> list[tuple[str, str]]:
        """ENV/LABEL key/value pairs, unexpanded."""
        return [(key, value) for key, _, value in (arg.partition("=") for arg in self.args)]


@dataclass(frozen=True)
class Stage:
    base: str  # unexpanded image reference, "scratch", or an earlier stage's name
    name: str | None
    platform: str | None  # unexpanded --platform
    instructions: list[Instruction]
    line: int


@dataclass(frozen=True)
class Dockerfile:
    stages: list[Stage]
    global_args: list[Instruction]  # ARG lines before the first FROM
    path: str = "Dockerfile"
    escape: str = "\\"

    @property
    def is_multi_stage(self) -> bool:
        return len(self.stages) > 1

    @property
    def final_stage(self) -> Stage:
        return self.stages[-1]

    def global_arg_defaults(self) -> dict[str, str]:
        """Raw defaults of the ARGs before the first FROM (ARGs without one are left out).
        ``stage.meta_args`` gives the values Docker actually uses in FROM lines."""
        out: dict[str, str] = {}
        for instr in self.global_args:
            for key, default in arg_pairs(instr, path=self.path):
                if default is not None:
                    out[key] = default
        return out


# --------------------------------------------------------------------------- parser


def parse_dockerfile(text: str, *, path: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile *text* into stages; raise DockerfileError (with a line) when invalid."""
    instructions, escape = _Parser(text, path).parse()
    stages: list[Stage] = []
    global_args: list[Instruction] = []
    for instr in instructions:
        if instr.keyword == "FROM":
            stages.append(_new_stage(instr, path))
        elif stages:
            stages[-1].instructions.append(instr)
        elif instr.keyword == "ARG":
            global_args.append(instr)
        else:
            raise DockerfileError(
                f"{instr.keyword} comes before the first FROM; only ARG may precede FROM",
                path=path,
                line=instr.line,
                hint="Start the Dockerfile with FROM (optionally preceded by ARG lines).",
            )
    if not stages:
        raise DockerfileError(
            "no FROM instruction: there is no build stage",
            path=path,
            hint="A Dockerfile must contain a FROM line naming the base image.",
        )
    return Dockerfile(stages=stages, global_args=global_args, path=path, escape=escape)


def _new_stage(instr: Instruction, path: str) -> Stage:
    args = instr.args
    name: str | None = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise DockerfileError(
                f"invalid build stage name {args[2]!r}: it must start with a letter and "
                "contain only letters, digits, '-', '_' and '.'",
                path=path,
                line=instr.line,
            )
    elif len(args) != 1:
        raise DockerfileError(
            "FROM takes either one argument (the image) or three (image AS name)",
            path=path,
            line=instr.line,
        )
    return Stage(
        base=args[0], name=name, platform=instr.flag("platform"), instructions=[], line=instr.line
    )


class _Parser:
    """parser.Parse: lines → logical instructions with their start lines."""

    def __init__(self, text: str, path: str) -> None:
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if lines:
            lines[0] = lines[0].removeprefix("\ufeff")
        self.lines = lines
        self.path = path
        self.escape = "\\"
        self.continuation = _continuation_regex("\\")
        self.directives_done = False
        self.seen_directives: set[str] = set()

    def parse(self) -> tuple[list[Instruction], str]:
        out: list[Instruction] = []
        index = 0
        while index < len(self.lines):
            raw = self.lines[index]
            index += 1
            start = index
            text = raw.rstrip("\r").lstrip()
            self._directive(text, start)
            if _is_comment(text):
                text = ""
            text, complete = self._trim_continuation(text)
            if complete and not text:
                continue
            parts = [text]
            while not complete and index < len(self.lines):
                raw = self.lines[index]
                index += 1
                self.directives_done = True
                if _is_comment(raw) or not raw.strip():
                    continue  # comment lines and empty lines inside a continuation are dropped
                text, complete = self._trim_continuation(raw.rstrip("\r"))
                parts.append(text)
            out.append(self._instruction("".join(parts), start, index))
        if not out:
            raise DockerfileError(
                "the file has no instructions",
                path=self.path,
                hint="A Dockerfile must contain at least a FROM line.",
            )
        return out, self.escape

    def _directive(self, text: str, line: int) -> None:
        if self.directives_done:
            return
        if not text.startswith("#"):
            self.directives_done = True
            return
        match = _DIRECTIVE.match(text[1:].lstrip())
        if not match or match.group(1).lower() not in ("syntax", "escape", "check"):
            self.directives_done = True
            return
        key, value = match.group(1).lower(), match.group(2)
        if key in self.seen_directives:
            raise DockerfileError(
                f"only one {key} parser directive can be used", path=self.path, line=line
            )
        self.seen_directives.add(key)
        if key == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(
                    f"invalid escape token {value!r}: only \\ and ` are allowed",
                    path=self.path,
                    line=line,
                )
            self.escape = value
            self.continuation = _continuation_regex(value)

    def _trim_continuation(self, text: str) -> tuple[str, bool]:
        if self.continuation.search(text):
            return self.continuation.sub(r"\1", text), False
        return text, True

    def _instruction(self, text: str, start: int, end: int) -> Instruction:
        try:
            return _build_instruction(text, start, end, self.escape)
        except (DockerfileError, NeedsEngineError) as exc:
            raise exc.at(path=self.path, line=start) from None


def _continuation_regex(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(rf"([^{e}]){e}[ \t]*\Z|^{e}[ \t]*\Z")


def _is_comment(text: str) -> bool:
    return text.lstrip().startswith("#")


def _build_instruction(text: str, start: int, end: int, escape: str) -> Instruction:
    pieces = _WHITESPACE.split(text.strip(), maxsplit=1)
    word = pieces[0]
    keyword = word.upper()
    rest = pieces[1] if len(pieces) == 2 else ""
    rest, raw_flags = _extract_flags(rest, escape)
    rest = rest.strip()
    if keyword not in _KNOWN:
        raise DockerfileError(
            f"unknown instruction: {word}",
            hint="Check the spelling; instruction names are case-insensitive.",
        )
    flags = _parse_flags(keyword, raw_flags)
    args, json_form = _parse_args(keyword, rest, escape)
    instr = Instruction(
        line=start,
        keyword=keyword,
        args=args,
        flags=flags,
        json_form=json_form,
        original=text,
        end_line=end,
        raw_flags=tuple(raw_flags),
    )
    _validate(instr, escape)
    return instr


def _extract_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """split_command.go extractBuilderFlags: leading ``--name=value`` words."""
    words: list[str] = []
    word: list[str] = []
    in_word = in_quote = blank_ok = False
    quote = ""
    pos = 0
    n = len(line)
    while pos <= n:
        ch = line[pos] if pos < n else ""
        if not in_word and not in_quote:
            if pos == n:
                break
            if ch.isspace():
                pos += 1
                continue
            if ch != "-" or pos + 1 == n or line[pos + 1] != "-":
                return line[pos:], words
            in_word = True
        if pos == n:
            text = "".join(word)
            if text != "--" and (blank_ok or text):
                words.append(text)
            break
        if in_quote and ch == quote:
            in_quote, in_word = False, True
            pos += 1
            continue
        if not in_quote and ch.isspace():
            text = "".join(word)
            in_word = False
            if text == "--":
                return line[pos:], words
            if blank_ok or text:
                words.append(text)
            word, blank_ok = [], False
            pos += 1
            continue
        if not in_quote and ch in ("'", '"'):
            quote, blank_ok, in_quote, in_word = ch, True, True, False
            pos += 1
            continue
        if ch == escape:  # inside quotes too: the next character is taken as it is
            if pos + 1 == n:  # a trailing escape is dropped
                pos += 1
                continue
            pos += 1
            ch = line[pos]
        word.append(ch)
        pos += 1
    return "", words


def _parse_flags(keyword: str, raw_flags: list[str]) -> dict[str, str]:
    """bflag.go Parse: known flags only, values required for strings, booleans normalised."""
    known = _FLAGS.get(keyword, {})
    values: dict[str, str] = {}
    for word in raw_flags:
        if word == "--":
            break
        if not word.startswith("--"):
            raise DockerfileError(f"{keyword} flag {word!r} should start with --")
        name, has_value, value = word[2:].partition("=")
        kind = known.get(name)
        if kind is None:
            allowed = ", ".join(f"--{f}" for f in known) or "none"
            raise DockerfileError(
                f"unknown flag for {keyword}: --{name} (allowed: {allowed})",
            )
        if name in values and kind != _STRINGS:
            raise DockerfileError(f"duplicate flag specified: --{name}")
        if kind == _BOOL:
            if has_value and value == "":
                raise DockerfileError(f"missing a value on flag: --{name}")
            if value.lower() not in ("", "true", "false"):
                raise DockerfileError(f"expecting a boolean value for flag --{name}, not {value}")
            values[name] = "false" if value.lower() == "false" else "true"
        else:
            if not has_value:
                raise DockerfileError(f"missing a value on flag: --{name} (write --{name}=VALUE)")
            values[name] = value
    return values


def _parse_args(keyword: str, rest: str, escape: str) -> tuple[list[str], bool]:
    if keyword in ("ADD", "COPY", "VOLUME"):
        parsed = _maybe_json(rest)
        if parsed is not None:
            return parsed, True
        return _split_whitespace(rest), False
    if keyword in ("RUN", "CMD", "ENTRYPOINT", "SHELL"):
        if not rest:
            return [], False
        parsed = _maybe_json(rest)
        if parsed is not None:
            return parsed, True
        return [rest], False
    if keyword in ("ENV", "LABEL"):
        return _name_values(keyword, rest, escape), False
    if keyword == "ARG":
        return _parse_words(rest, escape), False
    if keyword in ("EXPOSE", "FROM"):
        return _split_whitespace(rest), False
    if keyword == "HEALTHCHECK":
        first = re.split(r"\s", rest, maxsplit=1)
        kind = first[0]
        command = first[1].lstrip() if len(first) == 2 else ""
        if not kind:
            return [], False
        parsed = _maybe_json(command) if command else None
        if parsed is not None:
            return [kind, *parsed], True
        return ([kind, command] if command else [kind]), False
    return ([rest] if rest else []), False  # USER WORKDIR STOPSIGNAL MAINTAINER ONBUILD


def _maybe_json(rest: str) -> list[str] | None:
    """line_parsers.go parseJSON: a JSON array of strings, or None when it is not JSON."""
    text = rest.lstrip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise DockerfileError(
            "when using JSON array syntax, arrays must be comprised of strings only"
        )
    return value


def _split_whitespace(rest: str) -> list[str]:
    return [w for w in _WHITESPACE.split(rest) if w] if rest else []


def _parse_words(rest: str, escape: str) -> list[str]:
    """line_parsers.go parseWords: split on spaces, keeping quotes and escapes for later."""
    words: list[str] = []
    word: list[str] = []
    phase = "spaces"
    quote = ""
    blank_ok = False
    pos = 0
    n = len(rest)
    while pos <= n:
        ch = rest[pos] if pos < n else ""
        if phase == "spaces":
            if pos == n:
                break
            if ch.isspace():
                pos += 1
                continue
            phase = "word"
        if pos == n:
            if blank_ok or word:
                words.append("".join(word))
            break
        if phase == "word" and ch.isspace():
            phase = "spaces"
            if blank_ok or word:
                words.append("".join(word))
            word, blank_ok = [], False
            pos += 1
            continue
        if phase == "word" and ch in ("'", '"'):
            quote, blank_ok, phase = ch, True, "quote"
        elif phase == "quote" and ch == quote:
            phase = "word"
        elif ch == escape and not (phase == "quote" and quote == "'"):
            if pos + 1 == n:  # a trailing escape is dropped
                pos += 1
                continue
            word.append(ch)
            pos += 1
            ch = rest[pos]
        word.append(ch)
        pos += 1
    return words


def _name_values(keyword: str, rest: str, escape: str) -> list[str]:
    """line_parsers.go parseNameVal: ``K=V K2="v 2"`` or the legacy ``K value with spaces``."""
    words = _parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise DockerfileError(
                f"{keyword} needs a value: write {keyword} NAME=VALUE",
            )
        return [f"{parts[0]}={parts[1]}"]
    for word in words:
        if "=" not in word:
            raise DockerfileError(
                f"{keyword}: can't find = in {word!r}; each item must be NAME=VALUE",
            )
    return words


def _validate(instr: Instruction, escape: str) -> None:
    """The argument checks of instructions/parse.go, plus heredoc detection."""
    kw, args = instr.keyword, instr.args
    if kw in ("ADD", "COPY", "RUN") and not instr.json_form and _has_heredoc(instr):
        raise NeedsEngineError(
            f"heredocs (<<EOF) in {kw} are not supported natively", feature="heredoc"
        )
    if kw in ("ADD", "COPY") and len(args) < 2:
        raise DockerfileError(
            f"{kw} needs at least two arguments (source and destination)",
            hint=f"Write {kw} SOURCE... DESTINATION, e.g. {kw} app/ /opt/app/",
        )
    if kw in ("ENV", "LABEL", "ARG", "EXPOSE", "VOLUME", "ONBUILD", "HEALTHCHECK") and not args:
        raise DockerfileError(f"{kw} needs at least one argument")
    if kw in ("ENV", "LABEL") and any(key == "" for key, _ in instr.pairs()):
        raise DockerfileError(f"{kw} names can not be blank")
    if kw == "ARG" and any(word.startswith("=") for word in args):
        raise DockerfileError("ARG names can not be blank")
    if kw in ("USER", "WORKDIR", "STOPSIGNAL", "MAINTAINER") and len(args) != 1:
        raise DockerfileError(f"{kw} needs exactly one argument")
    if kw == "VOLUME" and any(not v.strip() for v in args):
        raise DockerfileError("VOLUME can not be an empty string")
    if kw == "SHELL" and (not instr.json_form or not args):
        raise DockerfileError(
            'SHELL needs the JSON array form, e.g. SHELL ["/bin/bash", "-c"]',
        )
    if kw == "HEALTHCHECK":
        parse_healthcheck(instr)
    if kw == "ONBUILD":
        trigger = _WHITESPACE.split(args[0].strip(), maxsplit=1)[0].upper()
        if trigger in ("ONBUILD", "FROM", "MAINTAINER"):
            raise DockerfileError(f"{trigger} isn't allowed as an ONBUILD trigger")
        _build_instruction(args[0], instr.line, instr.end_line, escape)


def _has_heredoc(instr: Instruction) -> bool:
    return any(_HEREDOC.search(arg) for arg in instr.args)


# --------------------------------------------------------------------------- arguments


def arg_pairs(instr: Instruction, *, path: str) -> list[tuple[str, str | None]]:
    """An ARG line's ``(name, default)`` pairs; the default is None when not given."""
    out: list[tuple[str, str | None]] = []
    for word in instr.args:
        key, has_value, value = word.partition("=")
        if not key:
            raise DockerfileError("ARG names can not be blank", path=path, line=instr.line)
        out.append((key, value if has_value else None))
    return out


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9}
_UNIT_NS.update({"m": 60 * 10**9, "h": 3600 * 10**9})


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration ("1m30s", "500ms") → nanoseconds."""
    if text in ("0", "+0", "-0"):
        return 0
    if not text or not re.fullmatch(rf"(?:{_DURATION_PART.pattern})+", text):
        raise DockerfileError(f"invalid duration {text!r}", hint="Use e.g. 30s, 1m30s or 500ms.")
    total = 0.0
    for number, unit in _DURATION_PART.findall(text):
        total += float(number) * _UNIT_NS[unit]
    return int(total)


def parse_healthcheck(instr: Instruction) -> dict[str, Any]:
    """The config's Healthcheck object for ``HEALTHCHECK [OPTIONS] CMD …`` or ``NONE``."""
    kind = instr.args[0].upper()
    command = instr.args[1:]
    if kind == "NONE":
        if command:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if kind != "CMD":
        raise DockerfileError(
            f"unknown type {instr.args[0]!r} in HEALTHCHECK (try CMD)",
        )
    if not command:
        raise DockerfileError("missing command after HEALTHCHECK CMD")
    test = ["CMD", *command] if instr.json_form else ["CMD-SHELL", " ".join(command)]
    out: dict[str, Any] = {"Test": test}
    for flag, key in (
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
        ("start-interval", "StartInterval"),
    ):
        value = instr.flag(flag)
        if value:
            nanos = parse_duration(value)
            if 0 < nanos < 10**6:
                raise DockerfileError(f"HEALTHCHECK --{flag} cannot be less than 1ms")
            if nanos:
                out[key] = nanos
    retries = instr.flag("retries")
    if retries:
        if not re.fullmatch(r"[+-]?\d+", retries):
            raise DockerfileError(f"HEALTHCHECK --retries must be a number, not {retries!r}")
        if int(retries) < 0:
            raise DockerfileError(f"HEALTHCHECK --retries cannot be negative ({retries})")
        if int(retries):
            out["Retries"] = int(retries)
    return out
