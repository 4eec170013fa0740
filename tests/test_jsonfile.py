"""parse_json / load_json_object: hostile JSON fails as a positioned JSON error, not a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpkit.errors import ConfigError
from mpkit.jsonfile import MAX_JSON_DEPTH, JSONLimitError, load_json_object, parse_json


def nested(depth: int, prefix: str = "") -> str:
    return prefix + "[" * depth + "]" * depth


def test_nesting_up_to_the_limit_parses() -> None:
    value = parse_json(nested(MAX_JSON_DEPTH))
    for _ in range(MAX_JSON_DEPTH - 1):
        value = value[0]
    assert value == []


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        (nested(MAX_JSON_DEPTH + 1), 1, MAX_JSON_DEPTH + 1),
        ("[" * 100_000, 1, MAX_JSON_DEPTH + 1),  # the RecursionError case
        ('{\n  "a": ' + '{"b": ' * 200 + "1" + "}" * 201, 2, 8 + 6 * (MAX_JSON_DEPTH - 1)),
        ('["[[[", ' + nested(MAX_JSON_DEPTH) + "]", 1, 8 + MAX_JSON_DEPTH),  # "[" in a string
        ('["\\"[", ' + nested(MAX_JSON_DEPTH) + "]", 1, 8 + MAX_JSON_DEPTH),  # after an escape
    ],
    ids=["one-too-many", "unterminated", "objects-on-line-2", "string", "escaped-quote"],
)
def test_too_deep_is_positioned(text: str, line: int, column: int) -> None:
    with pytest.raises(JSONLimitError) as caught:
        parse_json(text)
    assert caught.value.msg == f"nesting deeper than {MAX_JSON_DEPTH} levels"
    assert (caught.value.lineno, caught.value.colno) == (line, column)


def test_brackets_in_strings_do_not_count() -> None:
    assert parse_json('["' + "[" * 1000 + '"]') == ["[" * 1000]


def test_an_earlier_syntax_error_is_reported_first() -> None:
    with pytest.raises(json.JSONDecodeError) as caught:
        parse_json('{"a": 1,, "b": ' + "[" * 100_000)
    assert not isinstance(caught.value, JSONLimitError)
    assert caught.value.colno == 9


def test_huge_integers_are_positioned_and_other_numbers_pass() -> None:
    with pytest.raises(JSONLimitError, match="an integer with 5000 digits") as caught:
        parse_json('{"n": 1.5, "s": "' + "9" * 5000 + '",\n "big": -' + "9" * 5000 + "}")
    assert (caught.value.lineno, caught.value.colno) == (2, 9)
    assert parse_json("[1." + "5" * 5000 + ", 1e5, -0]")[1:] == [1e5, 0]


def test_load_json_object_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_text("[" * 100_000)
    with pytest.raises(ConfigError) as caught:
        load_json_object(path, "test file", hint="see the docs")
    error = caught.value
    assert error.message == (
        f"the test file {path} is not valid JSON: nesting deeper than {MAX_JSON_DEPTH} levels "
        f"at line 1, column {MAX_JSON_DEPTH + 1}"
    )
    assert (error.path, error.line, error.column) == (str(path), 1, MAX_JSON_DEPTH + 1)
    assert error.hint is not None and "restore the file" in error.hint
    assert error.hint.endswith("see the docs")
    path.write_text('{"a": 1,}')
    with pytest.raises(ConfigError, match="column 9") as caught:
        load_json_object(path, "test file", hint="see the docs")
    assert caught.value.hint is not None and "trailing comma" in caught.value.hint
