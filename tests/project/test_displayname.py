"""The adapter's display name: manifest.txt's display_name through resources.properties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpkit.project.displayname import display_name
from mpkit.project.load import load_project
from tests.fixtures.sdkmanifest import sdk_manifest


def project_with(root: Path, display: str, properties: bytes | None) -> Path:
    root.mkdir()
    (root / "manifest.txt").write_text(json.dumps(sdk_manifest(display_name=display)))
    for name in ("eula.txt", "icon.png"):
        (root / name).write_text("x")
    if properties is not None:
        (root / "resources").mkdir()
        (root / "resources" / "resources.properties").write_bytes(properties)
    return root


@pytest.mark.parametrize(
    ("display", "properties", "expected"),
    [
        ("DISPLAY_NAME", b"#c\nDISPLAY_NAME=MySQL Pack\nDESCRIPTION=x\n", "MySQL Pack"),
        ("DISPLAY_NAME", b"DISPLAY_NAME = \\u00dcber \\\n  Pack\n", "Über Pack"),
        ("DISPLAY_NAME", "DISPLAY_NAME=Café\n".encode("latin-1"), "Café"),
        ("DISPLAY_NAME", "DISPLAY_NAME=Café\n".encode(), "Café"),
        ("My Adapter", b"DISPLAY_NAME=Other\n", "My Adapter"),  # not a key there
        ("DISPLAY_NAME", b"DISPLAY_NAME=\n", "DISPLAY_NAME"),  # blank: the key is all there is
        ("DISPLAY_NAME", None, "DISPLAY_NAME"),  # no resources.properties
    ],
)
def test_display_name(
    tmp_path: Path, display: str, properties: bytes | None, expected: str
) -> None:
    project = load_project(project_with(tmp_path / "p", display, properties))
    assert display_name(project) == expected
