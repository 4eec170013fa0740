"""Merge the describe.xml fragments an SDK project keeps in ``conf/*.xml``.

As in the SDK, a fragment is an XML file whose root is an ``AdapterKind`` element in the
describe namespace, holding one or more of the sections below. Their children are
appended to the same section of the generated describe.xml. A fragment's own ``Names``
(``<Name key="1" shortName="Text"/>``) are renumbered into the generated name keys, so
fragments never collide with each other or with the definition. Files are merged in
name order; ``describe.xml`` itself is never a fragment.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from mpkit.describe.convert import NAMESPACE, tag
from mpkit.describe.names import NameKeys
from mpkit.errors import DescribeError

SECTIONS = (
    "CustomGroupMetrics",
    "Faults",
    "LaunchConfigurations",
    "BasePolicyAnalysisSettings",
    "OOTBPolicies",
    "FavoriteGroups",
)
NAME_ATTRIBUTES = ("nameKey", "instNameKey", "unitNameKey")  # attributes holding name keys
_HINT = (
    "a describe fragment in conf/ is an XML file like <AdapterKind "
    f'xmlns="{NAMESPACE}"><Faults>…</Faults><Names><Name key="1" shortName="Text"/></Names>'
    f"</AdapterKind>, holding one or more of: {', '.join(SECTIONS)}"
)


def fragment_files(conf: Path) -> list[Path]:
    """``conf/*.xml`` except describe.xml, sorted by name."""
    if not conf.is_dir():
        return []
    return sorted(
        (p for p in conf.glob("*.xml") if p.name != "describe.xml" and p.is_file()),
        key=lambda p: p.name,
    )


def merge_fragments(
    root: ET.Element,
    conf: Path,
    names: NameKeys,
    *,
    warn: Callable[[str], None] = lambda _m: None,
) -> list[Path]:
    """Append every fragment's sections to *root*; return the fragments that were merged."""
    merged = []
    for path in fragment_files(conf):
        fragment = _parse(path)
        remap = _name_map(fragment, names, path)
        found = False
        for section in SECTIONS:
            for source in _children(fragment, section):
                if len(source) == 0:
                    continue
                found = True
                target = root.find(tag(section))
                if target is None:
                    target = ET.SubElement(root, tag(section))
                for element in list(source):
                    _into_namespace(element)
                    _remap_names(element, remap, path)
                    target.append(element)
        if found:
            merged.append(path)
        else:
            warn(
                f"{path} holds none of {', '.join(SECTIONS)}, so it was not merged into "
                "describe.xml"
            )
    return merged


def _parse(path: Path) -> ET.Element:
    try:
        root = ET.parse(path).getroot()  # noqa: S314 (the project's own file)
    except ET.ParseError as exc:
        line, column = exc.position
        raise DescribeError(
            f"the describe fragment {path} is not well-formed XML (line {line}, column "
            f"{column}): {exc}",
            hint=_HINT,
        ) from None
    except OSError as exc:
        raise DescribeError(f"cannot read the describe fragment {path}: {exc}") from None
    if _local(root.tag) != "AdapterKind" or _namespace(root.tag) not in ("", NAMESPACE):
        raise DescribeError(
            f"the describe fragment {path} has the root element <{_local(root.tag)}>, not "
            f"<AdapterKind> in the namespace {NAMESPACE}",
            hint=_HINT,
        )
    return root


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _name_map(fragment: ET.Element, names: NameKeys, path: Path) -> dict[str, str]:
    """Fragment name key → generated name key, from the fragment's first ``Names``."""
    remap: dict[str, str] = {}
    blocks = _children(fragment, "Names")
    if not blocks:
        return remap
    for entry in blocks[0]:
        if _local(entry.tag) not in ("Name", "name"):
            continue
        key, short_name = entry.get("key"), entry.get("shortName")
        if key is None or short_name is None:
            raise DescribeError(
                f"the describe fragment {path} has a <Name> without key or shortName",
                hint='write each name as <Name key="1" shortName="Text"/>',
            )
        remap[key] = names.key(short_name)
    return remap


def _remap_names(element: ET.Element, remap: dict[str, str], path: Path) -> None:
    for node in element.iter():
        for attribute in NAME_ATTRIBUTES:
            value = node.get(attribute)
            if value is None:
                continue
            if value not in remap:
                raise DescribeError(
                    f"the describe fragment {path}: <{_local(node.tag)} key="
                    f'"{node.get("key", "")}"> has {attribute}="{value}", but the fragment\'s '
                    f'<Names> has no <Name key="{value}">',
                    hint=f'add <Name key="{value}" shortName="…"/> to the fragment\'s '
                    "<Names> (its names go into resources.properties)",
                )
            node.set(attribute, remap[value])


def _into_namespace(element: ET.Element) -> None:
    """Describe-namespace (or unqualified) elements as the generated tree names them."""
    for node in element.iter():
        if isinstance(node.tag, str) and _namespace(node.tag) in ("", NAMESPACE):
            node.tag = tag(_local(node.tag))


def _local(name: str) -> str:
    return name.rpartition("}")[2]


def _namespace(name: str) -> str:
    return name[1:].partition("}")[0] if name.startswith("{") else ""
