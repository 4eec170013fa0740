"""load_manifest: SDK manifests load; every problem names file, key, line and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mpkit.errors import ConfigError
from mpkit.project.load import key_positions, load_manifest
from tests.fixtures.sdkmanifest import DROP, sdk_manifest
from tests.project.sdkproject import write_project


def manifest_error(tmp_path: Path, **overrides: Any) -> ConfigError:
    root = write_project(tmp_path / "proj", sdk_manifest(**overrides))
    with pytest.raises(ConfigError) as caught:
        load_manifest(root)
    return caught.value


def test_sdk_template_manifest_loads(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    manifest = load_manifest(root)
    assert manifest.path == root / "manifest.txt"
    assert manifest.name == "iSDK_MyAdapter"
    assert manifest.display_name == "DISPLAY_NAME"
    assert manifest.version == "1.0.0"
    assert manifest.adapter_kind == "MyAdapter"
    assert manifest.eula_file == "eula.txt"
    assert manifest.icon_file == "icon.png"
    assert (manifest.validation_script, manifest.pre_script, manifest.post_script) == (
        None,
        None,
        None,
    )
    assert list(manifest.data) == list(sdk_manifest())  # every key, file order
    assert manifest.pack_basename == "MyAdapter_1.0.0"


def test_minimal_manifest_loads(tmp_path: Path) -> None:
    """Only the required keys: what tests/imagebuild and hand-written projects use."""
    minimal = {
        "display_name": "Mini",
        "name": "iSDK_Mini",
        "description": "",
        "version": "2.10.3.4",
        "vcops_minimum_version": "8.10.0",
        "adapter_kinds": ["Mini"],
    }
    manifest = load_manifest(write_project(tmp_path, minimal))
    assert (manifest.version, manifest.adapter_kind) == ("2.10.3.4", "Mini")
    assert manifest.eula_file is None and manifest.icon_file is None


def test_sdk_nulls_and_empty_names_mean_none(tmp_path: Path) -> None:
    manifest = load_manifest(
        write_project(
            tmp_path,
            sdk_manifest(eula_file="", pak_icon=None, adapter_post_script=None, vendor=None),
        )
    )
    assert manifest.eula_file is None and manifest.icon_file is None
    assert manifest.post_script is None


def test_scripts_that_exist_are_returned(tmp_path: Path) -> None:
    root = write_project(
        tmp_path,
        sdk_manifest(
            pak_validation_script={"script": "scripts/validate.py"},
            adapter_pre_script={"script": "pre.sh"},
            adapter_post_script={"script": "post.sh", "comment": "kept"},
        ),
        files={"scripts/validate.py": "print()\n", "pre.sh": "#!/bin/sh\n", "post.sh": ""},
    )
    manifest = load_manifest(root)
    assert manifest.validation_script == "scripts/validate.py"
    assert (manifest.pre_script, manifest.post_script) == ("pre.sh", "post.sh")


def test_missing_manifest_says_not_a_project(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_manifest(tmp_path)
    assert str(tmp_path) in caught.value.message
    assert "manifest.txt" in caught.value.message
    assert caught.value.hint and "-p" in caught.value.hint


def test_json_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    text = '{\n    "name": "iSDK_X",\n    "version": "1.0.0",,\n}\n'
    root = write_project(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_manifest(root)
    error = caught.value
    assert error.path == str(root / "manifest.txt")
    assert (error.line, error.column) == (3, 24)
    assert "line 3, column 24" in error.message
    assert str(root / "manifest.txt") in error.message
    assert error.hint and "comma" in error.hint


def test_manifest_must_be_an_object(tmp_path: Path) -> None:
    root = write_project(tmp_path, '["not", "an", "object"]')
    with pytest.raises(ConfigError, match="JSON object"):
        load_manifest(root)


@pytest.mark.parametrize(
    "key",
    ["display_name", "name", "description", "version", "vcops_minimum_version", "adapter_kinds"],
)
def test_required_key_missing(tmp_path: Path, key: str) -> None:
    error = manifest_error(tmp_path, **{key: DROP})
    assert f'"{key}" is missing' in error.message
    assert "manifest.txt" in error.message
    assert error.hint and f'add "{key}"' in error.hint
    assert error.line is None  # the key is not in the file


def test_required_key_null(tmp_path: Path) -> None:
    error = manifest_error(tmp_path, version=None)
    assert '"version" (line 5) is null' in error.message
    assert error.line == 5


# (override, key, words of the message, words of the hint)
SEMANTIC_CASES: list[tuple[dict[str, Any], str, str, str]] = [
    ({"version": "1.0"}, "version", "at least three numeric parts", '"1.0.0"'),
    ({"version": "v1.0.0"}, "version", "at least three numeric parts", '"1.0.0"'),
    ({"version": " 1.0.0"}, "version", "at least three numeric parts", '"1.0.0"'),
    ({"version": 1}, "version", "is a number", "string"),
    ({"vcops_minimum_version": "latest"}, "vcops_minimum_version", "not a dotted", '"8.10.0"'),
    ({"name": ""}, "name", 'is ""', "iSDK_MyAdapter"),
    ({"name": "iSDK_"}, "name", 'is "iSDK_"', "iSDK_MyAdapter"),
    ({"name": "iSDK_a/b"}, "name", ".pak file name", "letters, digits"),
    ({"display_name": "  "}, "display_name", "is blank", "My Adapter"),
    ({"description": ["x"]}, "description", "is a list", "string"),
    ({"adapter_kinds": ["A", "B"]}, "adapter_kinds", "lists 2 adapter kinds", '["MyAdapter"]'),
    ({"adapter_kinds": []}, "adapter_kinds", "lists 0 adapter kinds", '["MyAdapter"]'),
    ({"adapter_kinds": {"MyAdapter": {}}}, "adapter_kinds", "is an object", '["MyAdapter"]'),
    ({"adapter_kinds": "MyAdapter"}, "adapter_kinds", "is a string", '["MyAdapter"]'),
    ({"adapter_kinds": ["My Adapter"]}, "adapter_kinds", "not an adapter kind key", "describe.xml"),
    ({"adapter_kinds": [7]}, "adapter_kinds", "not an adapter kind key", "describe.xml"),
    ({"adapters": ["a.zip", "b.zip"]}, "adapters", "exactly one adapter", '["adapter.zip"]'),
    ({"platform": "Linux VA"}, "platform", "not a list of strings", '["Linux Non-VA"'),
    ({"disk_space_required": -1}, "disk_space_required", "not a whole number", "500"),
    ({"disk_space_required": "lots"}, "disk_space_required", "not a whole number", "500"),
    (
        {"run_scripts_on_all_nodes": "yes"},
        "run_scripts_on_all_nodes",
        "not true or false",
        '"true"',
    ),
    ({"vendor": 3}, "vendor", "is a number", "string"),
    ({"license_type": False}, "license_type", "is a boolean", "string"),
    ({"eula_file": "LICENSE.txt"}, "eula_file", "does not exist", "relative path"),
    ({"eula_file": "/etc/hostname"}, "eula_file", "absolute path", "relative path"),
    ({"eula_file": "../eula.txt"}, "eula_file", "outside the project", "relative path"),
    ({"eula_file": "content"}, "eula_file", "not a regular file", "relative path"),
    ({"eula_file": 5}, "eula_file", "not a file name", "relative path"),
    ({"pak_icon": "missing.png"}, "pak_icon", "does not exist", '"pak_icon"'),
    ({"pak_validation_script": ""}, "pak_validation_script", "not an object", '{"script": ""}'),
    ({"adapter_pre_script": {}}, "adapter_pre_script", 'no "script" key', '{"script": ""}'),
    (
        {"adapter_post_script": {"script": "post.sh"}},
        "adapter_post_script.script",
        "does not exist",
        '{"script": "PATH"}',
    ),
]


@pytest.mark.parametrize(
    ("override", "key", "what", "fix"),
    SEMANTIC_CASES,
    ids=[c[1] + ":" + c[2] for c in SEMANTIC_CASES],
)
def test_semantic_problem(
    tmp_path: Path, override: dict[str, Any], key: str, what: str, fix: str
) -> None:
    (tmp_path / "proj" / "content").mkdir(parents=True)
    error = manifest_error(tmp_path, **override)
    path = tmp_path / "proj" / "manifest.txt"
    assert error.message.startswith(f'{path}: "{key}" (line ')
    assert what in error.message
    assert error.hint and fix in error.hint
    assert "\n" not in error.message  # one paragraph
    lines = path.read_text(encoding="utf-8").splitlines()
    top = key.split(".")[0]
    expected_line = next(n for n, text in enumerate(lines, 1) if text.startswith(f'    "{top}":'))
    assert error.line == expected_line and error.path == str(path)


def test_all_problems_are_listed_together(tmp_path: Path) -> None:
    error = manifest_error(
        tmp_path, version="1.0", adapter_kinds=["A", "B"], eula_file="LICENSE.txt"
    )
    assert "has 3 problems" in error.message
    assert '(1) "version" (line 5)' in error.message
    assert '(2) "adapter_kinds" (line 28)' in error.message
    assert '(3) "eula_file" (line 9)' in error.message
    assert error.hint and error.hint.startswith("Fix each one: (1) ")
    assert error.line == 5


def test_key_positions_only_top_level(tmp_path: Path) -> None:
    text = json.dumps(
        {"a": {"version": 1}, "b": ["version", {"c": "}"}], "version": 'x\\"y', "d": 1},
        indent=2,
    )
    positions = key_positions(text)
    assert set(positions) == {"a", "b", "version", "d"}
    line, column = positions["version"]
    assert text.splitlines()[line - 1][column - 1 :].startswith('"version": "x')
