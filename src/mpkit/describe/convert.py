"""The adapter definition JSON → the describe.xml element tree.

The JSON is what ``AdapterDefinition.to_json()`` of PyPI's
vmware-aria-operations-integration-sdk-lib writes (schema_version 1; 0 has plain enum
values). The tree is the one the SDK's mp-build writes (its ``describe.json_to_xml``),
element for element and attribute for attribute, in the same order:

- ``AdapterKind`` key, the adapter label and ``version`` (describe_version);
- ``CredentialKinds`` (written even when empty): one ``CredentialKind`` per credential
  type, a ``CredentialField`` per field (required, dispOrder, password, enum, type);
- ``ResourceKinds``: the adapter instance as ``type="7"`` with its parameters as
  ``ResourceIdentifier`` (``default=""`` when it has none) and ``credentialKind`` listing
  every credential kind (``""`` when there are none), then one ``ResourceKind`` per
  object type;
- metrics and properties as ``ResourceAttribute`` (``unit=""`` when there is none),
  nested in ``ResourceGroup`` elements as the definition groups them; a group lists its
  subgroups before its attributes, as the SDK does;
- ``UnitDefinitions`` from the unit table of the adapter's own library, when known.

As in the SDK, ``isKpi`` and a string parameter's ``length`` are not written: the
product's defaults apply. One value differs on purpose: the ``enum`` entry that is the
parameter's default says ``default="true"`` (the SDK compares the whole enum entry with
the default value, so for schema_version 1 it always writes ``"false"``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mpkit.describe.names import NameKeys
from mpkit.errors import AdapterDefinitionError

NAMESPACE = "http://schemas.vmware.com/vcops/schema"
ADAPTER_INSTANCE_TYPE = "7"  # describeSchema.xsd ResourceKindType/@type: 7 = adapter instance
OBJECT_TYPE = "1"  # 1 = a general resource kind
IDENTIFIER_TYPES = ("string", "integer", "host", "ip")  # ResourceIdentifierType/@type
DATA_TYPES = ("string", "integer", "long", "float", "double")  # ResourceAttributeType/@dataType
_HINT = (
    "the adapter_definition command must write the JSON of AdapterDefinition.to_json() "
    "(vmware-aria-operations-integration-sdk-lib): call definition.send_results(), or print "
    "nothing there and ship conf/describe.xml instead"
)


def tag(name: str) -> str:
    """An element name in the describe namespace: the tree is built with local names
    under an ``xmlns`` attribute on the root (ElementTree cannot write a default
    namespace together with unqualified attributes)."""
    return name


@dataclass(frozen=True)
class Unit:
    """One unit of the adapter library's unit table."""

    key: str
    label: str
    order: int
    conversion_factor: int


@dataclass(frozen=True)
class UnitType:
    """``UnitDefinitions/UnitType``: units that convert into each other."""

    key: str
    units: tuple[Unit, ...]


def parse_units(data: Any) -> tuple[UnitType, ...]:
    """The unit table as the definition runner dumps it (a list of unit types)."""
    reader = _Reader("the adapter library's unit table")
    types: list[UnitType] = []
    for index, item in enumerate(reader.items({"types": data}, "types", "")):
        where = f"[{index}]"
        units = tuple(
            Unit(
                key=reader.text(unit, "key", f"{where}.units[{number}]"),
                label=reader.text(unit, "label", f"{where}.units[{number}]"),
                order=reader.integer(unit, "order", f"{where}.units[{number}]"),
                conversion_factor=reader.integer(
                    unit, "conversion_factor", f"{where}.units[{number}]"
                ),
            )
            for number, unit in enumerate(reader.items(item, "units", where))
        )
        types.append(UnitType(reader.text(item, "key", where), units))
    return tuple(types)


def adapter_kind_of(definition: Mapping[str, Any]) -> str:
    """The definition's adapter kind key (checked)."""
    return _Reader("the adapter definition").text(definition, "adapter_key", "")


def definition_to_xml(
    definition: Mapping[str, Any], names: NameKeys, units: Sequence[UnitType] = ()
) -> ET.Element:
    """The ``AdapterKind`` element for *definition*; names go into *names*."""
    return _Converter(definition, names).adapter_kind(units)


class _Reader:
    """Typed access to the definition JSON; a wrong shape names the JSON path."""

    def __init__(self, what: str) -> None:
        self.what = what

    def fail(self, where: str, problem: str) -> AdapterDefinitionError:
        path = where.lstrip(".") or "the top level"
        return AdapterDefinitionError(f"{self.what} is not valid: {path} {problem}", hint=_HINT)

    def value(self, obj: Any, key: str, where: str) -> Any:
        if not isinstance(obj, Mapping):
            raise self.fail(where, "is not a JSON object")
        if key not in obj:
            raise self.fail(f"{where}.{key}", "is missing")
        return obj[key]

    def text(self, obj: Any, key: str, where: str) -> str:
        value = self.value(obj, key, where)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{where}.{key}", f"must be a non-empty string, not {value!r}")
        return value

    def optional_text(self, obj: Any, key: str, where: str) -> str | None:
        value = obj.get(key) if isinstance(obj, Mapping) else None
        if value is None:
            return None
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise self.fail(f"{where}.{key}", f"must be a string, not {value!r}")
        return str(value)

    def label(self, obj: Any, where: str) -> str:
        """``label`` (the library defaults it to the key)."""
        value = obj.get("label") if isinstance(obj, Mapping) else None
        if value is None or value == "":
            return self.text(obj, "key", where)
        if not isinstance(value, str):
            raise self.fail(f"{where}.label", f"must be a string, not {value!r}")
        return value

    def boolean(self, obj: Any, key: str, where: str, default: bool | None = None) -> bool:
        if default is not None and (not isinstance(obj, Mapping) or obj.get(key) is None):
            return default
        value = self.value(obj, key, where)
        if not isinstance(value, bool):
            raise self.fail(f"{where}.{key}", f"must be true or false, not {value!r}")
        return value

    def integer(self, obj: Any, key: str, where: str, default: int | None = None) -> int:
        if default is not None and (not isinstance(obj, Mapping) or obj.get(key) is None):
            return default
        value = self.value(obj, key, where)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(f"{where}.{key}", f"must be a whole number, not {value!r}")
        return value

    def items(self, obj: Any, key: str, where: str, *, optional: bool = False) -> list[Any]:
        if optional and (not isinstance(obj, Mapping) or obj.get(key) is None):
            return []
        value = self.value(obj, key, where)
        if not isinstance(value, list):
            raise self.fail(f"{where}.{key}", "must be a list")
        return value

    def choice(self, obj: Any, key: str, where: str, allowed: Iterable[str]) -> str:
        value = self.text(obj, key, where)
        if value not in allowed:
            raise self.fail(f"{where}.{key}", f"is {value!r}; expected one of {sorted(allowed)}")
        return value


def _flag(value: bool) -> str:
    return "true" if value else "false"


class _Converter:
    def __init__(self, definition: Mapping[str, Any], names: NameKeys) -> None:
        self.json = definition
        self.names = names
        self.read = _Reader("the adapter definition")
        self.schema_version = self.read.integer(definition, "schema_version", "", default=0)

    def adapter_kind(self, units: Sequence[UnitType]) -> ET.Element:
        read = self.read
        key = read.text(self.json, "adapter_key", "")
        label = self.json.get("adapter_label") or key
        if not isinstance(label, str):
            raise read.fail("adapter_label", f"must be a string, not {label!r}")
        version = read.integer(self.json, "describe_version", "", default=1)
        root = ET.Element(
            tag("AdapterKind"),
            {
                "xmlns": NAMESPACE,
                "key": key,
                "nameKey": self.names.key(label),
                "version": str(version),
            },
        )
        credentials = ET.SubElement(root, tag("CredentialKinds"))
        credential_keys = [
            self.credential_kind(item, f"credential_types[{n}]", credentials)
            for n, item in enumerate(read.items(self.json, "credential_types", "", optional=True))
        ]
        kinds = ET.SubElement(root, tag("ResourceKinds"))
        instance = read.value(self.json, "adapter_instance", "")
        self.resource_kind(
            kinds, instance, "adapter_instance", ADAPTER_INSTANCE_TYPE, credential_keys
        )
        for number, item in enumerate(read.items(self.json, "object_types", "", optional=True)):
            self.resource_kind(kinds, item, f"object_types[{number}]", OBJECT_TYPE, None)
        if units:
            self.unit_definitions(root, units)
        return root

    # -- credentials -------------------------------------------------------------------
    def credential_kind(self, item: Any, where: str, container: ET.Element) -> str:
        read = self.read
        key = read.text(item, "key", where)
        kind = ET.SubElement(
            container,
            tag("CredentialKind"),
            {"key": key, "nameKey": self.names.key(read.label(item, where))},
        )
        fields = read.items(item, "fields", where)
        if not fields:
            raise read.fail(f"{where}.fields", "is empty; a credential kind needs a field")
        for number, field in enumerate(fields):
            spot = f"{where}.fields[{number}]"
            attributes = {
                "key": read.text(field, "key", spot),
                "nameKey": self.names.key(read.label(field, spot)),
                "required": _flag(read.boolean(field, "required", spot, default=True)),
                "dispOrder": str(read.integer(field, "display_order", spot, default=number)),
                "password": _flag(read.boolean(field, "password", spot, default=False)),
                "enum": _flag(read.boolean(field, "enum", spot, default=False)),
                "type": read.choice(field, "type", spot, IDENTIFIER_TYPES),
            }
            element = ET.SubElement(kind, tag("CredentialField"), attributes)
            self.enum_values(element, field, spot, read.optional_text(field, "default", spot))
        return key

    # -- resource kinds ----------------------------------------------------------------
    def resource_kind(
        self,
        parent: ET.Element,
        item: Any,
        where: str,
        kind_type: str,
        credential_keys: Sequence[str] | None,
    ) -> None:
        """One ``ResourceKind``; the adapter instance's (*credential_keys* not None) names
        its credential kinds, even when that list is empty."""
        read = self.read
        attributes = {
            "key": read.text(item, "key", where),
            "nameKey": self.names.key(read.label(item, where)),
            "type": kind_type,
        }
        if credential_keys is not None:
            attributes["credentialKind"] = ",".join(credential_keys)
        kind = ET.SubElement(parent, tag("ResourceKind"), attributes)
        for number, identifier in enumerate(read.items(item, "identifiers", where, optional=True)):
            self.identifier(kind, identifier, f"{where}.identifiers[{number}]")
        self.attributes(kind, item, where)
        self.groups(kind, item, where)

    def identifier(self, parent: ET.Element, item: Any, where: str) -> None:
        read = self.read
        description = read.optional_text(item, "description", where)
        default = read.optional_text(item, "default", where)
        attributes = {
            "default": default if default is not None else "",
            "key": read.text(item, "key", where),
            "nameKey": self.names.key(read.label(item, where), description),
            "required": _flag(read.boolean(item, "required", where, default=True)),
            "dispOrder": str(read.integer(item, "display_order", where, default=0)),
            "enum": _flag(read.boolean(item, "enum", where, default=False)),
            "type": read.choice(item, "type", where, IDENTIFIER_TYPES),
            "identType": str(read.integer(item, "ident_type", where, default=1)),
        }
        if attributes["identType"] not in ("1", "2"):
            raise read.fail(f"{where}.ident_type", "must be 1 (identifying) or 2 (advanced)")
        element = ET.SubElement(parent, tag("ResourceIdentifier"), attributes)
        self.enum_values(element, item, where, default)

    def enum_values(self, parent: ET.Element, item: Any, where: str, default: str | None) -> None:
        read = self.read
        values = read.items(item, "enum_values", where, optional=True)
        for number, value in enumerate(self._ordered_enum(values, where)):
            if self.schema_version >= 1 and isinstance(value, Mapping):
                spot = f"{where}.enum_values[{number}]"
                key = read.optional_text(value, "key", spot)
                if key is None:
                    raise read.fail(f"{spot}.key", "is missing")
                label = read.optional_text(value, "label", spot) or key
                attributes = {"value": key, "nameKey": self.names.key(label)}
            else:
                key = str(value)
                attributes = {"value": key}
            attributes["default"] = _flag(default is not None and key == default)
            ET.SubElement(parent, tag("enum"), attributes)

    def _ordered_enum(self, values: list[Any], where: str) -> list[Any]:
        if self.schema_version < 1 or not all(isinstance(v, Mapping) for v in values):
            return values
        return sorted(
            values,
            key=lambda v: self.read.integer(v, "display_order", f"{where}.enum_values", default=0),
        )

    def attributes(self, parent: ET.Element, item: Any, where: str) -> None:
        for number, attribute in enumerate(
            self.read.items(item, "attributes", where, optional=True)
        ):
            self.attribute(parent, attribute, f"{where}.attributes[{number}]")

    def groups(self, parent: ET.Element, item: Any, where: str) -> None:
        read = self.read
        for number, group in enumerate(read.items(item, "groups", where, optional=True)):
            spot = f"{where}.groups[{number}]"
            element = ET.SubElement(
                parent,
                tag("ResourceGroup"),
                {
                    "key": read.text(group, "key", spot),
                    "nameKey": self.names.key(read.label(group, spot)),
                    "instanced": _flag(read.boolean(group, "instanced", spot, default=False)),
                    "instanceRequired": _flag(
                        read.boolean(group, "instance_required", spot, default=True)
                    ),
                },
            )
            self.groups(element, group, spot)  # subgroups first, as the SDK writes them
            self.attributes(element, group, spot)

    def attribute(self, parent: ET.Element, item: Any, where: str) -> None:
        read = self.read
        is_property = read.boolean(item, "is_property", where, default=False)
        data_type = read.choice(item, "data_type", where, DATA_TYPES)
        if data_type == "string" and not is_property:
            raise read.fail(f"{where}.data_type", "is 'string', which only a property may be")
        attributes = {
            "key": read.text(item, "key", where),
            "nameKey": self.names.key(read.label(item, where)),
            "unit": read.optional_text(item, "unit", where) or "",
            "dashboardOrder": str(read.integer(item, "dashboard_order", where, default=0)),
            "dataType": data_type,
            "isProperty": _flag(is_property),
            "isRate": _flag(read.boolean(item, "is_rate", where, default=False)),
            "isDiscrete": _flag(read.boolean(item, "is_discrete", where, default=False)),
            "isImpact": _flag(read.boolean(item, "is_impact", where, default=False)),
            "defaultMonitored": "true",
            "keyAttribute": _flag(read.boolean(item, "is_key_attribute", where, default=False)),
        }
        ET.SubElement(parent, tag("ResourceAttribute"), attributes)

    # -- units -------------------------------------------------------------------------
    def unit_definitions(self, root: ET.Element, units: Sequence[UnitType]) -> None:
        container = ET.SubElement(root, tag("UnitDefinitions"))
        for unit_type in units:
            element = ET.SubElement(container, tag("UnitType"), {"key": unit_type.key})
            for unit in unit_type.units:
                ET.SubElement(
                    element,
                    tag("Unit"),
                    {
                        "key": unit.key,
                        "nameKey": self.names.key(unit.label),
                        "order": str(unit.order),
                        "conversionFactor": str(unit.conversion_factor),
                    },
                )
