"""Dockerfile front end: parse, expand variables, and evaluate the config-only instructions.

The rules follow BuildKit's dockerfile frontend (``frontend/dockerfile/parser``,
``instructions/parse.go``, ``shell/lex.go`` and ``dockerfile2llb/convert.go``):

* the parser keeps each instruction's 1-based start line, honours ``# escape=``,
  drops comment lines inside continuations and allows empty continuation lines;
* ``expand`` is the shell-word expansion Docker applies to ADD COPY ENV EXPOSE FROM
  LABEL STOPSIGNAL USER VOLUME WORKDIR ARG (never to RUN, CMD or ENTRYPOINT);
* ``StageEvaluator`` applies ENV, ARG, LABEL, USER, WORKDIR, EXPOSE, CMD, ENTRYPOINT,
  SHELL, STOPSIGNAL, HEALTHCHECK, VOLUME, ONBUILD and MAINTAINER to an image config
  and hands back what needs the filesystem (COPY, ADD, WORKDIR) or a runtime (RUN).

Heredocs, multi-stage builds and ``COPY --from`` are not supported natively: they raise
``NeedsEngineError`` so that the caller can fall back to an engine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mpkit.errors import MpkitError

DEFAULT_PLATFORM = "linux/amd64"
DEFAULT_SHELL = ("/bin/sh", "-c")
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
_SIGNALS = frozenset(
    [
        "ABRT",
        "ALRM",
        "BUS",
        "CHLD",
        "CLD",
        "CONT",
        "FPE",
        "HUP",
        "ILL",
        "INT",
        "IO",
        "IOT",
        "KILL",
        "PIPE",
        "POLL",
        "PROF",
        "PWR",
        "QUIT",
        "SEGV",
        "STKFLT",
        "STOP",
        "SYS",
        "TERM",
        "TRAP",
        "TSTP",
        "TTIN",
        "TTOU",
        "URG",
        "USR1",
        "USR2",
        "VTALRM",
        "WINCH",
        "XCPU",
        "XFSZ",
    ]
)


class DockerfileError(MpkitError):
    """The Dockerfile does not parse or an instruction is invalid."""

    code = "dockerfile"

    def __init__(
        self,
        reason: str,
        *,
        path: str = "Dockerfile",
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = f"{path} line {line}: " if line else f"{path}: "
        super().__init__(where + reason, hint=hint)
        self.reason = reason
        self.path = path
        self.line = line

    def at(self, *, path: str, line: int | None) -> DockerfileError:
        """The same error located at *path*/*line* (when it was raised without one)."""
        if self.line is not None:
            return self
        located = type(self).__new__(type(self))
        located.__dict__.update(self.__dict__)
        DockerfileError.__init__(located, self.reason, path=path, line=line, hint=self.hint)
        return located

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["path"] = self.path
        if self.line is not None:
            out["line"] = self.line
        return out


class NeedsEngineError(DockerfileError):
    """A Dockerfile feature mpkit does not build natively; an engine can."""

    code = "needs_engine"

    def __init__(
        self,
        reason: str,
        *,
        feature: str,
        path: str = "Dockerfile",
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(reason, path=path, line=line, hint=hint or ENGINE_HINT)
        self.feature = feature

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["feature"] = self.feature
        return out


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

    def meta_args(
        self, build_args: Mapping[str, str] | None = None, *, platform: str = DEFAULT_PLATFORM
    ) -> dict[str, str]:
        """Values usable in FROM lines: predefined platform ARGs plus the global ARGs."""
        overrides = dict(build_args or {})
        values = {k: overrides.get(k, v) for k, v in platform_args(platform).items()}
        for instr in self.global_args:
            for key, default in _arg_pairs(instr, path=self.path):
                if key in overrides:
                    values[key] = overrides[key]
                elif default is not None:
                    values[key] = _expand_at(default, values, instr, self.path, self.escape)
        return values

    def global_arg_defaults(self) -> dict[str, str]:
        """Raw defaults of the ARGs before the first FROM (ARGs without one are left out).
        ``meta_args`` gives the values Docker actually uses in FROM lines."""
        out: dict[str, str] = {}
        for instr in self.global_args:
            for key, default in _arg_pairs(instr, path=self.path):
                if default is not None:
                    out[key] = default
        return out

    def base_image(self, stage: Stage, meta_args: Mapping[str, str]) -> str:
        """The stage's FROM reference with the global ARGs expanded."""
        value = _expand_at(stage.base, meta_args, _from_of(stage), self.path, self.escape)
        if not value:
            raise DockerfileError(
                f"FROM {stage.base} expands to an empty base image name",
                path=self.path,
                line=stage.line,
                hint="Give the ARG used in FROM a default value or pass it as a build argument.",
            )
        return value

    def stage_platform(self, stage: Stage, meta_args: Mapping[str, str]) -> str | None:
        if stage.platform is None:
            return None
        value = _expand_at(stage.platform, meta_args, _from_of(stage), self.path, self.escape)
        if not value:
            raise DockerfileError(
                f"FROM --platform={stage.platform} expands to an empty platform",
                path=self.path,
                line=stage.line,
            )
        return value


def platform_args(platform: str = DEFAULT_PLATFORM) -> dict[str, str]:
    """BuildKit's predefined ARGs. mpkit builds for the target, so BUILD* equals TARGET*."""
    os_, _, rest = platform.partition("/")
    arch, _, variant = rest.partition("/")
    values: dict[str, str] = {}
    for prefix in ("BUILD", "TARGET"):
        values[f"{prefix}PLATFORM"] = platform
        values[f"{prefix}OS"] = os_
        values[f"{prefix}ARCH"] = arch
        values[f"{prefix}VARIANT"] = variant
    return values


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


def _from_of(stage: Stage) -> Instruction:
    return Instruction(stage.line, "FROM", [stage.base], {}, False, "")


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
        except DockerfileError as exc:
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
        if in_quote:
            if ch == quote:
                in_quote, in_word = False, True
                pos += 1
                continue
            if ch == escape:
                if pos + 1 == n:
                    in_quote, in_word = False, True
                    pos += 1
                    continue
                pos += 1
                ch = line[pos]
            word.append(ch)
            pos += 1
            continue
        if ch.isspace():
            text = "".join(word)
            in_word = False
            if text == "--":
                return line[pos:], words
            if blank_ok or text:
                words.append(text)
            word, blank_ok = [], False
            pos += 1
            continue
        if ch in ("'", '"'):
            quote, blank_ok, in_quote, in_word = ch, True, True, False
            pos += 1
            continue
        if ch == escape:
            if pos + 1 == n:
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
        if phase == "word":
            if ch.isspace():
                phase = "spaces"
                if blank_ok or word:
                    words.append("".join(word))
                word, blank_ok = [], False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote, blank_ok, phase = ch, True, "quote"
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
            pos += 1
            continue
        # inside quotes
        if ch == quote:
            phase = "word"
        if ch == escape and quote != "'":
            if pos + 1 == n:
                phase = "word"
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
        _parse_healthcheck(instr)
    if kw == "ONBUILD":
        trigger = _WHITESPACE.split(args[0].strip(), maxsplit=1)[0].upper()
        if trigger in ("ONBUILD", "FROM", "MAINTAINER"):
            raise DockerfileError(f"{trigger} isn't allowed as an ONBUILD trigger")
        _build_instruction(args[0], instr.line, instr.end_line, escape)


def _has_heredoc(instr: Instruction) -> bool:
    return any(_HEREDOC.search(arg) for arg in instr.args)


# --------------------------------------------------------------------------- expansion


class _ExpansionError(Exception):
    pass


def expand(word: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """Expand ``$VAR``, ``${VAR}``, ``${VAR:-x}``, ``${VAR:+x}``, ``${VAR-x}`` … in one word,
    removing quotes and escapes the way Docker does (shell/lex.go ProcessWord)."""
    try:
        return _Lexer(escape).process(word, env)[0]
    except _ExpansionError as exc:
        raise DockerfileError(f"failed to process {word!r}: {exc}") from None


def expand_words(text: str, env: Mapping[str, str], *, escape: str = "\\") -> list[str]:
    """Expand, then split into words outside quotes (shell/lex.go ProcessWords)."""
    try:
        return _Lexer(escape).process(text, env)[1]
    except _ExpansionError as exc:
        raise DockerfileError(f"failed to process {text!r}: {exc}") from None


def _expand_at(
    word: str, env: Mapping[str, str], instr: Instruction, path: str, escape: str
) -> str:
    try:
        return expand(word, env, escape=escape)
    except DockerfileError as exc:
        raise DockerfileError(
            f"{instr.keyword}: {exc.reason}", path=path, line=instr.line, hint=exc.hint
        ) from None


class _Words:
    """wordsStruct: accumulate words, splitting on unquoted whitespace."""

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.buf:
                self.words.append("".join(self.buf))
                self.buf = []
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.buf.append(text)
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.buf:
            self.words.append("".join(self.buf))
            self.buf = []
            self.in_word = False
        return self.words


class _Lexer:
    """A port of BuildKit's shell.Lex (single-word and word-splitting expansion)."""

    def __init__(self, escape: str) -> None:
        self.escape = escape
        self.text = ""
        self.pos = 0
        self.env: Mapping[str, str] = {}
        self.raw_escapes = False

    def process(self, text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
        self.text, self.pos, self.env, self.raw_escapes = text, 0, env, False
        return self._until("", raw_escapes=False)

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _next(self) -> str:
        ch = self._peek()
        if ch:
            self.pos += 1
        return ch

    def _until(self, stop: str, *, raw_escapes: bool) -> tuple[str, list[str]]:
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            result: list[str] = []
            words = _Words()
            while self._peek():
                ch = self._peek()
                if stop and ch == stop:
                    self._next()
                    return "".join(result), words.result()
                if ch == "$":
                    value = self._dollar()
                    result.append(value)
                    words.add_string(value)
                    continue
                if ch in ("'", '"', "<"):
                    value = {"'": self._single, '"': self._double, "<": self._heredoc}[ch]()
                    result.append(value)
                    words.add_raw(value)
                    continue
                ch = self._next()
                if ch == self.escape:
                    if self.raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    ch = self._next()
                    if not ch:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
            if stop:
                raise _ExpansionError(
                    f"unexpected end of statement while looking for matching {stop}"
                )
            return "".join(result), words.result()
        finally:
            self.raw_escapes = saved

    def _single(self) -> str:
        self._next()
        out: list[str] = []
        while True:
            ch = self._next()
            if not ch:
                raise _ExpansionError(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def _double(self) -> str:
        self._next()
        out: list[str] = []
        while True:
            ch = self._peek()
            if not ch:
                raise _ExpansionError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                self._next()
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            ch = self._next()
            if ch == self.escape:
                if self.raw_escapes:
                    out.append(ch)
                following = self._peek()
                if not following:
                    continue
                if following in ('"', "$", self.escape):
                    ch = self._next()
            out.append(ch)

    def _heredoc(self) -> str:
        self._next()
        if self._peek() != "<":
            return "<"
        self._next()
        space: list[str] = []
        while self._peek() in ("\t", "\r", " ") and self._peek():
            space.append(self._next())
        return "<<" + "".join(space)

    def _name(self) -> str:
        out: list[str] = []
        while self._peek():
            ch = self._peek()
            if not out and ch.isdecimal():
                while self._peek() and self._peek().isdecimal():
                    out.append(self._next())
                return "".join(out)
            if not out and ch in "@*#?-$!0":
                return self._next()
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            out.append(self._next())
        return "".join(out)

    def _dollar(self) -> str:
        self._next()
        if self._peek() != "{":
            name = self._name()
            return self.env.get(name, "") if name else "$"
        self._next()
        if not self._peek():
            raise _ExpansionError("syntax error: missing '}'")
        if self._peek() in "{}:":
            raise _ExpansionError("syntax error: bad substitution")
        name = self._name()
        ch = self._next()
        if not ch:
            raise _ExpansionError("syntax error: missing '}'")
        if ch == "}":
            return self.env.get(name, "")
        modifier = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self._next()
            modifier += ch
        if ch in ("+", "-", "?", "#", "%"):
            raw = ch in ("#", "%")
            if null_is_unset and raw:
                raise _ExpansionError(f"unsupported modifier ({modifier}) in substitution")
            word = self._until_closing("}", raw)
            is_set = name in self.env
            value = self.env.get(name, "")
            unset = not is_set or (null_is_unset and value == "")
            if ch == "-":
                return word if unset else value
            if ch == "+":
                return "" if unset else word
            if ch == "?":
                if not is_set:
                    raise _ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise _ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            greedy = word.startswith(ch)
            if greedy:
                word = word[1:]
            return (
                _trim_suffix(word, value, greedy)
                if ch == "%"
                else _trim_prefix(word, value, greedy)
            )
        if ch == "/" and not null_is_unset:
            replace_all = self._peek() == "/"
            if replace_all:
                self._next()
            pattern = self._until_closing("/", True, missing="syntax error: missing '/' in ${}")
            replacement = self._until_closing("}", True)
            value = self.env.get(name, "")
            regex = _shell_pattern(pattern, greedy=True, anchored=False)
            return regex.sub(lambda _m: replacement, value, count=0 if replace_all else 1)
        raise _ExpansionError(f"unsupported modifier ({modifier}) in substitution")

    def _until_closing(
        self, stop: str, raw: bool, *, missing: str = "syntax error: missing '}'"
    ) -> str:
        try:
            return self._until(stop, raw_escapes=raw)[0]
        except _ExpansionError:
            if not self._peek():
                raise _ExpansionError(missing) from None
            raise


def _shell_pattern(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """convertShellPatternToRegex: ``*`` and ``?`` wildcards, no bracket expressions."""
    out = ["^"] if anchored else []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            following = pattern[i] if i < len(pattern) else ""
            if following in ("}", "/"):
                continue
            if following not in ("*", "?", "\\"):
                raise _ExpansionError(f"invalid pattern ({pattern}) in substitution")
            out.append(re.escape(following))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = _shell_pattern(pattern, greedy=greedy, anchored=True).search(value)
    return value[match.end() :] if match else value


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # Reverse both so that the shortest/longest rightmost match becomes a leftmost one.
    reversed_pattern: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            reversed_pattern.insert(0, pattern[i : i + 2])
            i += 2
        else:
            reversed_pattern.insert(0, pattern[i])
            i += 1
    return _trim_prefix("".join(reversed_pattern), value[::-1], greedy)[::-1]


# --------------------------------------------------------------------------- evaluation


@dataclass
class ImageConfig:
    """The parts of an OCI image config ("config" object) that instructions change."""

    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    workdir: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    shell: list[str] | None = None
    stop_signal: str | None = None
    healthcheck: dict[str, Any] | None = None
    volumes: list[str] = field(default_factory=list)
    onbuild: list[str] = field(default_factory=list)
    args_escaped: bool = False
    maintainer: str | None = None  # the image's top-level "author"

    @classmethod
    def from_oci(cls, config: Mapping[str, Any] | None) -> ImageConfig:
        config = config or {}
        env: dict[str, str] = {}
        for item in config.get("Env") or []:
            key, _, value = str(item).partition("=")
            env[key] = value
        return cls(
            env=env,
            user=config.get("User") or "",
            workdir=config.get("WorkingDir") or "",
            labels=dict(config.get("Labels") or {}),
            exposed_ports=sorted(config.get("ExposedPorts") or {}),
            cmd=list(config["Cmd"]) if config.get("Cmd") is not None else None,
            entrypoint=list(config["Entrypoint"]) if config.get("Entrypoint") is not None else None,
            shell=list(config["Shell"]) if config.get("Shell") else None,
            stop_signal=config.get("StopSignal") or None,
            healthcheck=dict(config["Healthcheck"]) if config.get("Healthcheck") else None,
            volumes=sorted(config.get("Volumes") or {}),
            onbuild=list(config.get("OnBuild") or []),
            args_escaped=bool(config.get("ArgsEscaped", False)),
        )

    def to_oci(self) -> dict[str, Any]:
        """The OCI/Docker "config" object, with empty fields left out."""
        out: dict[str, Any] = {}
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {port: {} for port in sorted(set(self.exposed_ports))}
        if self.env:
            out["Env"] = [f"{k}={v}" for k, v in self.env.items()]
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.volumes:
            out["Volumes"] = {v: {} for v in sorted(set(self.volumes))}
        if self.workdir:
            out["WorkingDir"] = self.workdir
        if self.labels:
            out["Labels"] = dict(sorted(self.labels.items()))
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.healthcheck:
            out["Healthcheck"] = dict(self.healthcheck)
        if self.shell:
            out["Shell"] = list(self.shell)
        if self.onbuild:
            out["OnBuild"] = list(self.onbuild)
        if self.args_escaped:
            out["ArgsEscaped"] = True
        return out


class StageEvaluator:
    """Walks one stage: applies config-only instructions, hands back the others.

    ``apply`` returns None for instructions that only change the config, the
    instruction itself for COPY/ADD/RUN (COPY/ADD are expanded by ``plan_copy`` with
    ``env``) and, for WORKDIR, an instruction whose single arg is the new absolute
    working directory (the caller creates it, owned by ``config.user``).
    """

    def __init__(
        self,
        dockerfile: Dockerfile,
        stage: Stage | None = None,
        *,
        base_config: ImageConfig | None = None,
        build_args: Mapping[str, str] | None = None,
        platform: str = DEFAULT_PLATFORM,
    ) -> None:
        self.dockerfile = dockerfile
        self.stage = stage or dockerfile.final_stage
        self.build_args = dict(build_args or {})
        self.meta_args = dockerfile.meta_args(self.build_args, platform=platform)
        base = base_config or ImageConfig()
        self.config = replace(
            base,
            env=dict(base.env),
            labels=dict(base.labels),
            exposed_ports=list(base.exposed_ports),
            volumes=list(base.volumes),
            onbuild=[],  # triggers run in the child build and are not inherited
        )
        self._env: dict[str, str] = dict(base.env)  # the build-time environment
        self._cmd_set = False

    @property
    def base_image(self) -> str:
        return self.dockerfile.base_image(self.stage, self.meta_args)

    @property
    def platform(self) -> str | None:
        return self.dockerfile.stage_platform(self.stage, self.meta_args)

    @property
    def env(self) -> Mapping[str, str]:
        """Variables for expansion and RUN: the config Env plus the ARGs in scope."""
        return dict(self._env)

    @property
    def workdir(self) -> str:
        return self.config.workdir or "/"

    def expand(self, word: str, instr: Instruction) -> str:
        return _expand_at(word, self._env, instr, self.dockerfile.path, self.dockerfile.escape)

    def apply(self, instr: Instruction) -> Instruction | None:
        handler = getattr(self, f"_apply_{instr.keyword.lower()}", None)
        if handler is None:
            raise DockerfileError(
                f"{instr.keyword} is not valid inside a stage",
                path=self.dockerfile.path,
                line=instr.line,
            )
        try:
            result: Instruction | None = handler(instr)
        except DockerfileError as exc:
            raise exc.at(path=self.dockerfile.path, line=instr.line) from None
        return result

    def _apply_env(self, instr: Instruction) -> None:
        pairs = [(self.expand(k, instr), self.expand(v, instr)) for k, v in instr.pairs()]
        for key, value in pairs:
            self.config.env[key] = value
            self._env[key] = value

    def _apply_label(self, instr: Instruction) -> None:
        for key, value in instr.pairs():
            self.config.labels[self.expand(key, instr)] = self.expand(value, instr)

    def _apply_arg(self, instr: Instruction) -> None:
        for key, default in _arg_pairs(instr, path=self.dockerfile.path):
            if key in self.build_args:
                value: str | None = self.build_args[key]
            elif default is not None:
                value = self.expand(default, instr)
            else:
                value = self.meta_args.get(key)  # a redeclared global ARG keeps its value
            if value is not None:
                self._env[key] = value

    def _apply_user(self, instr: Instruction) -> None:
        self.config.user = self.expand(instr.args[0], instr)

    def _apply_workdir(self, instr: Instruction) -> Instruction:
        requested = self.expand(instr.args[0], instr)
        joined = requested if requested.startswith("/") else f"{self.workdir}/{requested}"
        workdir = _clean_abs(joined)
        self.config.workdir = workdir
        return replace(instr, args=[workdir])

    def _apply_expose(self, instr: Instruction) -> None:
        for word in instr.args:
            for spec in expand_words(word, self._env, escape=self.dockerfile.escape):
                self.config.exposed_ports.extend(_parse_port(spec))

    def _apply_cmd(self, instr: Instruction) -> None:
        self.config.cmd = self._command(instr)
        self.config.args_escaped = True
        self._cmd_set = True

    def _apply_entrypoint(self, instr: Instruction) -> None:
        if instr.json_form and not instr.args:
            self.config.entrypoint = None
        else:
            self.config.entrypoint = self._command(instr)
        if not self._cmd_set:
            self.config.cmd = None

    def _command(self, instr: Instruction) -> list[str]:
        if instr.json_form:
            return list(instr.args)
        shell = list(self.config.shell or DEFAULT_SHELL)
        return [*shell, " ".join(instr.args)] if instr.args else shell

    def _apply_shell(self, instr: Instruction) -> None:
        self.config.shell = list(instr.args)

    def _apply_stopsignal(self, instr: Instruction) -> None:
        signal = self.expand(instr.args[0], instr)
        name = signal.upper().removeprefix("SIG")
        rt = re.fullmatch(r"RTMIN(\+\d+)?|RTMAX(-\d+)?", name)
        if not (signal.isdecimal() or name in _SIGNALS or rt):
            raise DockerfileError(
                f"STOPSIGNAL: invalid signal {signal!r}",
                hint="Use a signal name such as SIGTERM or SIGINT, or a number.",
            )
        self.config.stop_signal = signal

    def _apply_healthcheck(self, instr: Instruction) -> None:
        self.config.healthcheck = _parse_healthcheck(instr)

    def _apply_volume(self, instr: Instruction) -> None:
        for word in instr.args:
            volume = self.expand(word, instr)
            if not volume:
                raise DockerfileError("VOLUME can not be an empty string")
            self.config.volumes.append(volume)

    def _apply_onbuild(self, instr: Instruction) -> None:
        self.config.onbuild.append(instr.args[0])

    def _apply_maintainer(self, instr: Instruction) -> None:
        self.config.maintainer = instr.args[0]

    def _apply_copy(self, instr: Instruction) -> Instruction:
        if instr.flag("from") is not None:
            raise NeedsEngineError(
                "COPY --from copies out of another stage or image, which needs an engine",
                feature="copy-from",
            )
        return instr

    def _apply_add(self, instr: Instruction) -> Instruction:
        return instr

    def _apply_run(self, instr: Instruction) -> Instruction:
        return instr


def _arg_pairs(instr: Instruction, *, path: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for word in instr.args:
        key, has_value, value = word.partition("=")
        if not key:
            raise DockerfileError("ARG names can not be blank", path=path, line=instr.line)
        out.append((key, value if has_value else None))
    return out


def _clean_abs(path: str) -> str:
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def _parse_port(spec: str) -> list[str]:
    """``80``, ``80/udp``, ``8000-8002/tcp`` (and the old ``ip:public:private``) → "port/proto"."""
    port, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    port = port.rsplit(":", 1)[-1]
    start, dash, end = port.partition("-")
    if not start.isdecimal() or (dash and not end.isdecimal()):
        raise DockerfileError(f"EXPOSE: invalid port {spec!r}", hint="Write EXPOSE 8080/tcp.")
    first, last = int(start), int(end) if dash else int(start)
    if not (0 < first <= last <= 65535):
        raise DockerfileError(f"EXPOSE: invalid port range {spec!r}")
    if proto not in ("tcp", "udp", "sctp"):
        raise DockerfileError(f"EXPOSE: invalid protocol in {spec!r}")
    return [f"{p}/{proto}" for p in range(first, last + 1)]


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


def _parse_healthcheck(instr: Instruction) -> dict[str, Any]:
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
