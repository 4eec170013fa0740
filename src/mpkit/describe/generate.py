"""describe.xml and resources.properties from an adapter definition.

``generate_describe`` checks that manifest.txt names the adapter kind the adapter
defines, converts the definition, merges the project's conf/*.xml fragments, and
validates the result against the project's conf/describeSchema.xsd.
"""

from __future__ import annotations

import stat
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mpkit.describe.convert import (
    UnitType,
    adapter_kind_of,
    definition_to_xml,
)
from mpkit.describe.fragments import merge_fragments
from mpkit.describe.names import NameKeys
from mpkit.describe.schema import schema_for, validate_describe
from mpkit.errors import AdapterKindMismatchError, DescribeError
from mpkit.interaction import Prompter
from mpkit.jsonfile import parse_json, write_json_atomic
from mpkit.project.load import MANIFEST_NAME, load_project
from mpkit.project.model import Project

INDENT = "  "
XML_DECLARATION = "<?xml version='1.0' encoding='UTF-8'?>\n"


def generate_describe(
    definition: Mapping[str, Any],
    project: Project,
    *,
    units: Sequence[UnitType] = (),
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[bytes, bytes]:
    """(describe.xml, resources.properties) for *definition*, validated.

    *units* is the unit table of the adapter's library (``DefinitionResult.units``);
    without it describe.xml has no ``UnitDefinitions``. Raises AdapterKindMismatchError
    when manifest.txt's adapter_kinds is not the definition's adapter key.
    """
    check_adapter_kind(definition, project)
    names = NameKeys()
    root = definition_to_xml(definition, names, units)
    merged = merge_fragments(root, project.root / "conf", names, warn=log)
    for path in merged:
        log(f"merged the describe fragment {path.name} into describe.xml")
    describe_xml = serialize(root)
    schema = schema_for(project.root)
    validate_describe(describe_xml, schema)
    log(f"describe.xml is valid against {schema}")
    return describe_xml, names.properties()


def serialize(root: ET.Element) -> bytes:
    """The bytes the SDK writes (lxml's ``ElementTree.write(encoding="utf-8",
    xml_declaration=True)`` after ``indent``): its declaration, two-space indentation,
    ``<empty/>`` elements, no newline at the end."""
    ET.indent(root, space=INDENT)
    body = ET.tostring(root, encoding="unicode")
    # ElementTree closes an empty element with " />"; ">" is escaped everywhere else, so
    # this only ever meets element ends.
    return (XML_DECLARATION + body.replace(" />", "/>")).encode("utf-8")


def check_adapter_kind(definition: Mapping[str, Any], project: Project) -> None:
    """manifest.txt's single adapter kind must be the describe key (the adapter's own)."""
    defined = adapter_kind_of(definition)
    listed = project.manifest.adapter_kind
    if defined == listed:
        return
    raise AdapterKindMismatchError(
        f"{project.manifest.path} lists the adapter kind {listed!r} in adapter_kinds, but the "
        f"adapter defines the adapter kind {defined!r} (the key of describe.xml); Aria "
        "Operations would not match the pack to its adapter",
        manifest_kind=listed,
        describe_kind=defined,
        hint=f'set "adapter_kinds": ["{defined}"] in manifest.txt (on a terminal the build '
        f"offers to do it), or change the key passed to AdapterDefinition() to {listed!r}",
    )


def fix_manifest_adapter_kind(project: Project, kind: str) -> Project:
    """Rewrite manifest.txt with ``adapter_kinds: [kind]`` (other keys and their order kept,
    written atomically) and return the project loaded again."""
    path = project.root / MANIFEST_NAME
    try:
        data = parse_json(path.read_text(encoding="utf-8"))
        data["adapter_kinds"] = [kind]
        target = path.resolve() if path.is_symlink() else path
        write_json_atomic(target, dict(data), mode=stat.S_IMODE(target.stat().st_mode))
    except (OSError, ValueError) as exc:
        raise DescribeError(
            f"cannot update adapter_kinds in {path}: {exc}",
            hint=f'edit manifest.txt yourself: "adapter_kinds": ["{kind}"]',
        ) from None
    return load_project(project.root)


def offer_manifest_fix(
    project: Project, error: AdapterKindMismatchError, prompter: Prompter
) -> Project:
    """On a terminal, offer to fix manifest.txt (as the SDK's mp-build does); else re-raise."""
    if not prompter.interactive:
        raise error
    choice = prompter.choose(
        f"manifest.txt says {error.manifest_kind!r} but the adapter defines "
        f"{error.describe_kind!r}. Update manifest.txt?",
        [f'Yes: set "adapter_kinds" to ["{error.describe_kind}"]', "No: stop the build"],
    )
    if choice != 0:
        raise error
    return fix_manifest_adapter_kind(project, error.describe_kind)
