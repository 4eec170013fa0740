"""The adapter's display name, as Aria Operations shows it.

manifest.txt's ``display_name`` is usually a key into ``resources/resources.properties``
(mp-init writes ``"display_name": "DISPLAY_NAME"`` and ``DISPLAY_NAME=My Adapter``); the
product shows the value. Every message that names the adapter uses :func:`display_name`.
"""

from __future__ import annotations

from mpkit.javaproperties import parse_properties
from mpkit.project.model import Project

RESOURCES_PROPERTIES = ("resources", "resources.properties")


def display_name(project: Project) -> str:
    """The value that manifest.txt's display_name stands for in
    resources/resources.properties, or display_name itself when it is no key there (or
    the file is missing or unreadable)."""
    written = project.manifest.display_name
    try:
        data = project.root.joinpath(*RESOURCES_PROPERTIES).read_bytes()
    except OSError:
        return written
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # the format's own default encoding
    return parse_properties(text).get(written, "").strip() or written
