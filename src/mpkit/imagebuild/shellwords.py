"""Shell-word expansion of Dockerfile arguments: a port of BuildKit's ``shell/lex.go``.

``expand`` is what Docker applies to the words of ADD COPY ENV EXPOSE FROM LABEL
STOPSIGNAL USER VOLUME WORKDIR ARG (never to RUN, CMD or ENTRYPOINT): ``$VAR``,
``${VAR}``, the ``${VAR:-x}`` family, ``${VAR#pattern}``/``%``/``/`` with ``*`` and ``?``
wildcards, quote removal and the Dockerfile's escape character.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from mpkit.errors import DockerfileError


class _ExpansionError(Exception):
    pass


def _unmatched(what: str) -> _ExpansionError:
    return _ExpansionError(f"unexpected end of statement while looking for matching {what}")


def expand(word: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """Expand ``$VAR``, ``${VAR}``, ``${VAR:-x}``, ``${VAR:+x}``, ``${VAR-x}`` … in one word,
    removing quotes and escapes the way Docker does (shell/lex.go ProcessWord)."""
    return _process(word, env, escape)[0]


def expand_words(text: str, env: Mapping[str, str], *, escape: str = "\\") -> list[str]:
    """Expand, then split into words outside quotes (shell/lex.go ProcessWords)."""
    return _process(text, env, escape)[1]


def _process(text: str, env: Mapping[str, str], escape: str) -> tuple[str, list[str]]:
    try:
        return _Lexer(escape).process(text, env)
    except _ExpansionError as exc:
        raise DockerfileError(f"failed to process {text!r}: {exc}") from None


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
                raise _unmatched(stop)
            return "".join(result), words.result()
        finally:
            self.raw_escapes = saved

    def _single(self) -> str:
        self._next()
        out: list[str] = []
        while True:
            ch = self._next()
            if not ch:
                raise _unmatched("single-quote")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def _double(self) -> str:
        self._next()
        out: list[str] = []
        while True:
            ch = self._peek()
            if not ch:
                raise _unmatched("double-quote")
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
