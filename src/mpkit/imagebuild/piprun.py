"""Recognise Dockerfile RUN lines that are exactly one ``pip install``.

The native builder installs such lines itself (see ``pydeps``); anything else, including
pip options whose effect it cannot reproduce, goes to the engine fallback. Every refusal
carries a reason so that the error or log line can say why.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

_PIP_NAME = re.compile(r"^pip(?:3(?:\.\d+)?)?$")
_PYTHON_NAME = re.compile(r"^python(?:3(?:\.\d+)?)?$")
_SHELLS = ("sh", "bash", "dash", "ash")
_OPERATOR_CHARS = set("();<>|&")
# PEP 508: a requirement starts with a project name; "name @ url" is a direct reference.
_REQUIREMENT = re.compile(r"^\s*[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?\s*(?:[\[(<>=!~;@ ]|$)")
_DIRECT_REFERENCE = re.compile(r"^\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*(?:\[[^\]]*\])?\s*@")
_ARCHIVES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz")
_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")

# Options without a value: name -> PipInstall field set to True (None: accepted, no effect).
_FLAGS: dict[str, str | None] = {
    "-U": "upgrade",
    "--upgrade": "upgrade",
    "--user": "user",
    "--no-index": "no_index",
    "--pre": "pre",
    "--prefer-binary": "prefer_binary",
    "--no-deps": "no_deps",
    "--require-hashes": "require_hashes",
    "--break-system-packages": "break_system_packages",
    "--no-cache-dir": "no_cache_dir",
    "-q": None,
    "--quiet": None,
    "-v": None,
    "--verbose": None,
    "--disable-pip-version-check": None,
    "--no-warn-script-location": None,
    "--no-warn-conflicts": None,
    "--no-input": None,
    "--no-color": None,
}
# Options with a value: name -> PipInstall field (tuples collect, str fields take the last).
_VALUED: dict[str, str | None] = {
    "-r": "requirements",
    "--requirement": "requirements",
    "-c": "constraints",
    "--constraint": "constraints",
    "-i": "index_url",
    "--index-url": "index_url",
    "--extra-index-url": "extra_index_urls",
    "-f": "find_links",
    "--find-links": "find_links",
    "--trusted-host": "trusted_hosts",
    "--only-binary": "only_binary",
    "--upgrade-strategy": "upgrade_strategy",
    "--root-user-action": None,
    "--progress-bar": None,
    "--timeout": None,
    "--retries": None,
}
# pip's general options may also come before the command ("pip -q install ...").
_GENERAL = {
    "-q", "--quiet", "-v", "--verbose", "--disable-pip-version-check", "--no-cache-dir",
    "--no-input", "--no-color", "--root-user-action", "--progress-bar", "--timeout", "--retries",
}  # fmt: skip
_REFUSED = {
    "-e": "editable installs need the project's source tree; build with --engine",
    "--editable": "editable installs need the project's source tree; build with --engine",
    "-t": "--target installs are not emulated; build with --engine",
    "--target": "--target installs are not emulated; build with --engine",
    "--prefix": "--prefix installs are not emulated; build with --engine",
    "--root": "--root installs are not emulated; build with --engine",
    "--no-binary": "--no-binary needs a compiler inside the image; build with --engine",
    "--force-reinstall": "--force-reinstall is not emulated; build with --engine",
    "-I": "--ignore-installed is not emulated; build with --engine",
    "--ignore-installed": "--ignore-installed is not emulated; build with --engine",
}


def redact_url(text: str) -> str:
    """Hide the user-info part of any URL ("https://user:pw@host" -> "https://***@host")."""
    return _CREDENTIALS.sub("***@", text)


@dataclass(frozen=True, repr=False)
class PipInstall:
    """One ``pip install`` as written in the Dockerfile (paths are image paths)."""

    launcher: tuple[str, ...]  # ("pip3",) or ("python3", "-m", "pip")
    specs: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()  # -r FILE, relative to the WORKDIR
    constraints: tuple[str, ...] = ()  # -c FILE
    upgrade: bool = False
    upgrade_strategy: str = "only-if-needed"
    user: bool = False
    no_cache_dir: bool = False
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    trusted_hosts: tuple[str, ...] = ()
    pre: bool = False
    only_binary: tuple[str, ...] = ()
    prefer_binary: bool = False
    no_deps: bool = False
    require_hashes: bool = False
    break_system_packages: bool = False
    argv: tuple[str, ...] = field(default=(), compare=False)

    def __repr__(self) -> str:
        # Index URLs may carry credentials: never show them.
        parts = []
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "argv" or value == item.default:
                continue
            parts.append(f"{item.name}={redact_url(repr(value))}")
        return f"PipInstall({', '.join(parts)})"

    @property
    def python_launcher(self) -> str | None:
        """The python command for ``python -m pip`` forms, else None (a pip script)."""
        return self.launcher[0] if len(self.launcher) == 3 else None


@dataclass(frozen=True)
class PipParse:
    """The outcome of :func:`parse_pip_run`: an install, or None and the reason."""

    install: PipInstall | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.install is not None


class _Refused(Exception):
    pass


def parse_pip_run(command: str | Sequence[str]) -> PipParse:
    """Parse a RUN instruction: *command* is the shell-form string or the JSON argv."""
    try:
        argv = _shell_words(command) if isinstance(command, str) else list(command)
        if len(argv) == 3 and posixpath.basename(argv[0]) in _SHELLS and argv[1] == "-c":
            argv = _shell_words(argv[2])
        return PipParse(_parse_argv(argv))
    except _Refused as refused:
        return PipParse(None, str(refused))


def _shell_words(text: str) -> list[str]:
    """Split a /bin/sh command line, refusing what would need a shell to run."""
    text = text.replace("\\\n", "")
    if "$" in text or "`" in text:
        raise _Refused("the command uses shell expansion ($ or `)")
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    words: list[str] = []
    try:
        for word in lexer:
            if word.startswith("#"):
                break
            if word and set(word) <= _OPERATOR_CHARS:
                raise _Refused(f"the command is not a single pip install (shell operator {word!r})")
            words.append(word)
    except ValueError as exc:
        raise _Refused(f"the command does not parse as a shell command: {exc}") from exc
    return words


def _parse_argv(argv: list[str]) -> PipInstall:
    if not argv:
        raise _Refused("empty command")
    if "=" in argv[0] and not argv[0].startswith(("/", ".")):
        raise _Refused("the command sets environment variables before pip")
    launcher, rest = _split_launcher(argv)
    while rest and rest[0] != "install":
        option = rest.pop(0)
        name = option.split("=", 1)[0]
        if re.fullmatch(r"-[qv]+", name):
            continue
        if name not in _GENERAL:
            raise _Refused(f"{' '.join(launcher)} {option!r} is not 'pip install'")
        if name in _VALUED and "=" not in option:
            if not rest:
                raise _Refused(f"option {name} needs a value")
            rest.pop(0)
    if not rest:
        raise _Refused("not a 'pip install' command")
    values: dict[str, object] = {"launcher": launcher, "argv": tuple(argv)}
    _parse_install_args(rest[1:], values)
    if not values.get("specs") and not values.get("requirements"):
        raise _Refused("pip install without requirements")
    return PipInstall(**values)  # type: ignore[arg-type]


def _split_launcher(argv: list[str]) -> tuple[tuple[str, ...], list[str]]:
    name = posixpath.basename(argv[0])
    if _PIP_NAME.match(name):
        return (argv[0],), argv[1:]
    if _PYTHON_NAME.match(name):
        if argv[1:3] == ["-m", "pip"]:
            return (argv[0], "-m", "pip"), argv[3:]
        raise _Refused(f"{argv[0]} runs something other than '-m pip'")
    raise _Refused(f"the command is {argv[0]!r}, not pip")


def _parse_install_args(args: list[str], values: dict[str, object]) -> None:
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            for spec in args[index:]:
                _add_spec(spec, values)
            return
        if not arg.startswith("-") or arg == "-":
            _add_spec(arg, values)
            continue
        for name, value in _expand_option(arg):
            if value is None and name in _VALUED:
                if index >= len(args):
                    raise _Refused(f"option {name} needs a value")
                value = args[index]
                index += 1
            _apply(name, value, values)


def _expand_option(arg: str) -> list[tuple[str, str | None]]:
    """'--opt=v' / '-rFILE' / combined short flags ('-qU') into (name, value) pairs."""
    if arg.startswith("--"):
        name, eq, value = arg.partition("=")
        return [(name, value if eq else None)]
    out: list[tuple[str, str | None]] = []
    for position in range(1, len(arg)):
        name = "-" + arg[position]
        if name in _VALUED:
            attached = arg[position + 1 :]
            out.append((name, attached or None))
            return out
        out.append((name, None))
    return out


def _apply(name: str, value: str | None, values: dict[str, object]) -> None:
    if name in _REFUSED:
        raise _Refused(_REFUSED[name])
    if name in _FLAGS:
        if value is not None:
            raise _Refused(f"option {name} takes no value")
        target = _FLAGS[name]
        if target is not None:
            values[target] = True
        return
    if name not in _VALUED:
        raise _Refused(f"pip option {name} is not supported by the native builder")
    target = _VALUED[name]
    assert value is not None
    if target is None:
        return
    if target == "upgrade_strategy" and value not in ("only-if-needed", "eager"):
        raise _Refused(f"--upgrade-strategy {value} is not a pip upgrade strategy")
    if target == "only_binary":
        current = values.get(target, ())
        assert isinstance(current, tuple)
        values[target] = current + tuple(v for v in value.split(",") if v)
    elif target in ("index_url", "upgrade_strategy"):
        values[target] = value
    else:
        current = values.get(target, ())
        assert isinstance(current, tuple)
        values[target] = (*current, value)


def _add_spec(spec: str, values: dict[str, object]) -> None:
    direct = _DIRECT_REFERENCE.match(spec)
    if not direct and (not _REQUIREMENT.match(spec) or spec.endswith(_ARCHIVES)):
        raise _Refused(
            f"requirement {redact_url(spec)!r} is a local path or URL, not a package "
            "name; build with --engine"
        )
    current = values.get("specs", ())
    assert isinstance(current, tuple)
    values["specs"] = (*current, spec)
