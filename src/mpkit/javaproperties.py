"""The ``.properties`` format of java.util.Properties: what Aria Operations reads names from.

:func:`parse_properties` reads a file as ``Properties.load`` does (comments, ``=``, ``:``
or blank separators, line continuations, backslash escapes); :func:`escape_key` and
:func:`escape_value` write text that it reads back unchanged.
"""

from __future__ import annotations

_SEPARATORS = "=: \t\f"
_BLANKS = " \t\f"
_ESCAPED = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def parse_properties(text: str) -> dict[str, str]:
    """key → value of *text*, in file order (a later duplicate key wins)."""
    found: dict[str, str] = {}
    for line in _logical_lines(text):
        key, end = _token(line, 0, stop=_SEPARATORS)
        while end < len(line) and line[end] in _BLANKS:
            end += 1
        if end < len(line) and line[end] in "=:":
            end += 1
        while end < len(line) and line[end] in _BLANKS:
            end += 1
        found[key] = _token(line, end, stop="")[0]
    return found


def _logical_lines(text: str) -> list[str]:
    """Lines without comments and blanks, continuations joined (escapes still in place)."""
    lines: list[str] = []
    pending: str | None = None
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.lstrip(_BLANKS)
        if pending is None and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        body = line[:-1] if trailing % 2 else line
        pending = body if pending is None else pending + body
        if not trailing % 2:
            lines.append(pending)
            pending = None
    if pending is not None:
        lines.append(pending)
    return lines


def _token(line: str, start: int, *, stop: str) -> tuple[str, int]:
    """The unescaped text from *start* up to an unescaped character of *stop*."""
    out: list[str] = []
    index = start
    while index < len(line):
        char = line[index]
        if char in stop:
            break
        if char == "\\" and index + 1 < len(line):
            following = line[index + 1]
            hexdigits = line[index + 2 : index + 6]
            if following == "u" and len(hexdigits) == 4 and _is_hex(hexdigits):
                out.append(chr(int(hexdigits, 16)))
                index += 6
                continue
            out.append(_ESCAPED.get(following, following))
            index += 2
            continue
        out.append(char)
        index += 1
    return _joined_surrogates("".join(out)), index


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _joined_surrogates(text: str) -> str:
    """``\\ud83d\\ude00`` (a Java string's pair) as the one character it stands for."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")


def escape_key(text: str) -> str:
    """A properties key: also escape the separators and blanks."""
    out = escape_value(text, leading_only=False)
    for char in "=:":
        out = out.replace(char, "\\" + char)
    return out


def escape_value(text: str, *, leading_only: bool = True) -> str:
    """java.util.Properties escaping: backslash, line breaks, tabs, a leading blank, comment
    characters at the start, and every non-ASCII character as ``\\uXXXX`` (readable both
    as ISO-8859-1, the format's default, and as UTF-8)."""
    out: list[str] = []
    for index, char in enumerate(text):
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif char == "\f":
            out.append("\\f")
        elif char == " " and (index == 0 or not leading_only):
            out.append("\\ ")
        elif char in "#!" and index == 0:
            out.append("\\" + char)
        elif code < 0x20 or code > 0x7E:
            if code > 0xFFFF:  # a surrogate pair, as Java strings hold it
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
            else:
                out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)
