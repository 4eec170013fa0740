"""The .properties reader and writer against java.util.Properties' rules."""

from __future__ import annotations

import pytest

from mpkit.javaproperties import escape_key, escape_value, parse_properties

TEXT = """\
# a comment
   ! another comment

DISPLAY_NAME=MySQL Pack
spaced   =   value with = and : inside
colon:value
blank separated value
continued = first \\
            second
escaped\\ key\\:x = tab\\there\\nnewline
unicode = \\u03bcs \\ud83d\\ude00
empty
backslash = ends\\\\
"""


def test_parse_follows_java_properties() -> None:
    assert parse_properties(TEXT) == {
        "DISPLAY_NAME": "MySQL Pack",
        "spaced": "value with = and : inside",
        "colon": "value",
        "blank": "separated value",
        "continued": "first second",
        "escaped key:x": "tab\there\nnewline",
        "unicode": "μs 😀",
        "empty": "",
        "backslash": "ends\\",
    }


def test_crlf_and_a_later_duplicate_wins() -> None:
    assert parse_properties("a=1\r\nb=2\ra=3") == {"a": "3", "b": "2"}


@pytest.mark.parametrize(
    "text", ["plain", " leading blank", "tab\tnew\nline", "back\\slash", "Ünïcode μ 😀", "#!"]
)
def test_escaped_text_reads_back_unchanged(text: str) -> None:
    line = f"{escape_key(text + ' = :')} = {escape_value(text)}"
    assert line.isascii()
    assert parse_properties(line) == {text + " = :": text}
