"""describe.xml and resources.properties from a definition: the golden sample, the mapping
of every element, fragments, validation against mpkit's and the SDK's schemas, the
adapter-kind check and the manifest fix."""

from __future__ import annotations

import copy
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from mpkit.describe import fix_manifest_adapter_kind, generate_describe, offer_manifest_fix
from mpkit.describe.convert import parse_units
from mpkit.describe.names import NameKeys
from mpkit.describe.schema import BUNDLED_SCHEMA, describe_problems
from mpkit.errors import AdapterDefinitionError, AdapterKindMismatchError, DescribeError
from mpkit.init import InitOptions, create_project
from mpkit.javaproperties import escape_value, parse_properties
from mpkit.project.load import load_project
from mpkit.project.model import Project
from tests.describe.conftest import GOLDEN

NS = "{http://schemas.vmware.com/vcops/schema}"
SAMPLE_KIND = "LocalMachine"
SAMPLE_NAME = "Local Machine"
# What the sample template's adapter defines (app/adapter.py of 'mpkit init').
SAMPLE_METRICS = {
    "uptime": "seconds", "cpu|logical_cpus": None, "cpu|load_1m": None, "cpu|load_5m": None,
    "cpu|load_15m": None, "memory|total": "kibibyte", "memory|available": "kibibyte",
    "memory|used": "percent", "disk|total": "byte", "disk|free": "byte", "disk|used": "percent",
}  # fmt: skip
SAMPLE_PROPERTIES = ("hostname", "operating_system", "kernel_release", "python_version")
SAMPLE_IDENTIFIERS = {
    "local_system": ["machine_id"],
    f"{SAMPLE_KIND}_adapter_instance": ["disk_path", "container_memory_limit"],
}
SAMPLE_CREDENTIAL_FIELDS = {"local_account": ["user_name", "password"]}


def sample_project(tmp_path: Path) -> Project:
    root = create_project(
        InitOptions(
            tmp_path / "sample",
            SAMPLE_NAME,
            SAMPLE_KIND,
            "Reports on the local machine",
            "Example Inc.",
        )
    )
    return load_project(root)


def golden_inputs() -> tuple[dict[str, Any], Any]:
    definition = json.loads((GOLDEN / "sample_definition.json").read_text())
    units = parse_units(json.loads((GOLDEN / "sdk_lib_units.json").read_text()))
    return definition, units


def properties_of(data: bytes) -> dict[str, str]:
    return parse_properties(data.decode("ascii"))


def attribute_paths(describe: ET.Element, kind: str) -> dict[str, ET.Element]:
    """'group|key' → ResourceAttribute element of the resource kind *kind*."""
    found: dict[str, ET.Element] = {}
    resource = describe.find(f"{NS}ResourceKinds/{NS}ResourceKind[@key='{kind}']")
    assert resource is not None, kind

    def walk(element: ET.Element, prefix: str) -> None:
        for child in element:
            if child.tag == f"{NS}ResourceAttribute":
                found[prefix + child.get("key", "")] = child
            elif child.tag == f"{NS}ResourceGroup":
                walk(child, f"{prefix}{child.get('key')}|")

    walk(resource, "")
    return found


# -- the golden sample ----------------------------------------------------------------


def test_sample_describe_matches_the_reviewed_golden_files(tmp_path: Path) -> None:
    definition, units = golden_inputs()
    describe_xml, properties = generate_describe(definition, sample_project(tmp_path), units=units)
    if os.environ.get("MPKIT_UPDATE_GOLDEN"):
        (GOLDEN / "sample_describe.xml").write_bytes(describe_xml)
        (GOLDEN / "sample_resources.properties").write_bytes(properties)
    assert describe_xml == (GOLDEN / "sample_describe.xml").read_bytes()
    assert properties == (GOLDEN / "sample_resources.properties").read_bytes()


def test_every_defined_item_is_in_describe_and_properties(tmp_path: Path) -> None:
    definition, units = golden_inputs()
    describe_xml, properties = generate_describe(definition, sample_project(tmp_path), units=units)
    root = ET.fromstring(describe_xml)  # noqa: S314
    names = properties_of(properties)
    assert root.get("key") == SAMPLE_KIND and root.get("version") == "1"
    assert names[root.get("nameKey", "")] == SAMPLE_NAME

    attributes = attribute_paths(root, "local_system")
    for key, unit in SAMPLE_METRICS.items():
        element = attributes[key]
        assert element.get("isProperty") == "false", key
        assert element.get("unit") == (unit or ""), key  # the SDK writes unit="" too
        assert element.get("dataType") in ("float", "integer")
        assert names[element.get("nameKey", "")], key
    for key in SAMPLE_PROPERTIES:
        element = attributes[key]
        assert element.get("isProperty") == "true" and element.get("dataType") == "string"
    assert "isKpi" not in attributes["memory|used"].attrib  # as the SDK: not written
    assert attributes["cpu|logical_cpus"].get("isDiscrete") == "true"

    for kind, keys in SAMPLE_IDENTIFIERS.items():
        resource = root.find(f"{NS}ResourceKinds/{NS}ResourceKind[@key='{kind}']")
        assert resource is not None
        found = [e.get("key") for e in resource.findall(f"{NS}ResourceIdentifier")]
        assert found == keys
    instance = root.find(f"{NS}ResourceKinds/{NS}ResourceKind[@type='7']")
    assert instance is not None and instance.get("credentialKind") == "local_account"
    disk_path = instance.find(f"{NS}ResourceIdentifier[@key='disk_path']")
    assert disk_path is not None and disk_path.get("default") == "/"
    key = disk_path.get("nameKey", "")
    assert names[key] == "Disk path" and names[f"{key}.description"].startswith("The file")
    memory_limit = instance.find(f"{NS}ResourceIdentifier[@key='container_memory_limit']")
    assert memory_limit is not None and memory_limit.get("identType") == "2"

    for kind, fields in SAMPLE_CREDENTIAL_FIELDS.items():
        credential = root.find(f"{NS}CredentialKinds/{NS}CredentialKind[@key='{kind}']")
        assert credential is not None
        assert [f.get("key") for f in credential] == fields
        assert credential[1].get("password") == "true"
    unit_keys = {u.get("key") for u in root.iter(f"{NS}Unit")}
    assert {"seconds", "kibibyte", "byte", "percent"} <= unit_keys
    for element in root.iter():
        if "nameKey" in element.attrib:
            assert element.get("nameKey") in names, element.attrib


def test_the_golden_describe_is_valid_for_the_vmware_sdk_schema(sdk_schema: Path) -> None:
    assert describe_problems((GOLDEN / "sample_describe.xml").read_bytes(), sdk_schema) == []


def test_the_bundled_schema_refuses_what_the_sdk_schema_refuses(sdk_schema: Path) -> None:
    good = (GOLDEN / "sample_describe.xml").read_bytes()
    broken = [
        good.replace(b'nameKey="8"', b'nameKey="eight"', 1),  # name keys are integers
        good.replace(b'type="7"', b'type="5"', 1),  # no such resource kind type
        good.replace(b'isRate="false"', b'isRate="yes"', 1),
        good.replace(b"<ResourceKinds>", b"<ResourceKinds><Unknown/>", 1),
    ]
    for document in broken:
        assert describe_problems(document, BUNDLED_SCHEMA), document[:80]
        assert describe_problems(document, sdk_schema), document[:80]
    # The SDK schema means to refuse a string metric too, but its assertion never fails.
    string_metric = good.replace(b'dataType="float"', b'dataType="string"', 1)
    assert describe_problems(string_metric, BUNDLED_SCHEMA)


def test_generation_is_deterministic(tmp_path: Path) -> None:
    definition, units = golden_inputs()
    project = sample_project(tmp_path)
    first = generate_describe(definition, project, units=units)
    again = generate_describe(copy.deepcopy(definition), project, units=units)
    assert first == again


# -- mapping details ------------------------------------------------------------------


def minimal_definition(kind: str = SAMPLE_KIND) -> dict[str, Any]:
    return {
        "adapter_key": kind, "adapter_label": "Ünïcode Adapter", "describe_version": 3,
        "schema_version": 1,
        "adapter_instance": {"key": f"{kind}_instance", "label": "Instance", "identifiers": [
            {"key": "mode", "label": "Mode", "description": "How:\nfast = better",
             "required": True, "ident_type": 1, "enum": True, "display_order": 0,
             "type": "string", "default": "slow",
             "enum_values": [{"key": "slow", "label": "Slow", "display_order": 1},
                             {"key": "fast", "label": "Fast", "display_order": 0}]},
        ], "attributes": [], "groups": []},
        "credential_types": [],
        "object_types": [{"key": "thing", "label": "Thing", "identifiers": [], "attributes": [],
                          "groups": [{"key": "nic", "label": "NIC", "instanced": True,
                                      "instance_required": False, "attributes": [
                              {"key": "rx", "label": "Received", "unit": "kbitps",
                               "is_rate": True, "is_discrete": False, "is_kpi": False,
                               "is_impact": True, "is_key_attribute": True,
                               "dashboard_order": 0, "data_type": "float",
                               "is_property": False}], "groups": []}]}],
    }  # fmt: skip


def test_enums_groups_flags_and_escaped_names(tmp_path: Path) -> None:
    describe_xml, properties = generate_describe(minimal_definition(), sample_project(tmp_path))
    root = ET.fromstring(describe_xml)  # noqa: S314
    assert root.get("version") == "3"
    credentials = root.find(f"{NS}CredentialKinds")  # none defined: empty, as the SDK has it
    assert credentials is not None and len(credentials) == 0
    instance = root.find(f"{NS}ResourceKinds/{NS}ResourceKind[@type='7']")
    assert instance is not None and instance.get("credentialKind") == ""
    enums = instance.findall(f"{NS}ResourceIdentifier/{NS}enum")
    assert [(e.get("value"), e.get("default")) for e in enums] == [("fast", "false"),
                                                                   ("slow", "true")]  # fmt: skip
    group = root.find(f".//{NS}ResourceGroup[@key='nic']")
    assert group is not None and group.get("instanced") == "true"
    assert group.get("instanceRequired") == "false"
    rx = group.find(f"{NS}ResourceAttribute")
    assert rx is not None
    assert (rx.get("unit"), rx.get("isRate"), rx.get("isImpact"), rx.get("keyAttribute")) == (
        "kbitps", "true", "true", "true")  # fmt: skip
    text = properties.decode("ascii")
    assert "1 = \\u00dcn\\u00efcode Adapter\n" in text
    assert ".description = How:\\nfast = better\n" in text
    assert properties_of(properties)["1"] == "Ünïcode Adapter"


def test_name_keys_are_shared_by_equal_labels_and_stable() -> None:
    names = NameKeys()
    assert [names.key("Total"), names.key("Free"), names.key("Total")] == ["1", "2", "1"]
    assert names.key("Total", "with a description") == "1"  # one key per label
    assert names.key("Total", "said again") == "1"
    assert names.entries == {"1": "Total", "2": "Free", "1.description": "said again"}
    assert escape_value(" lead # x\\") == "\\ lead # x\\\\"
    assert escape_value("#comment") == "\\#comment"
    assert escape_value("😀") == "\\ud83d\\ude00"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("adapter_instance"), "adapter_instance is missing"),
        (lambda d: d["object_types"][0].update(key=""), "object_types[0].key must be"),
        (lambda d: d["object_types"][0]["groups"][0]["attributes"][0].update(data_type="text"),
         "object_types[0].groups[0].attributes[0].data_type is 'text'"),
        (lambda d: d["object_types"][0]["groups"][0]["attributes"][0].update(data_type="string"),
         "only a property may be"),
        (lambda d: d.update(object_types={}), "object_types must be a list"),
    ],
)  # fmt: skip
def test_a_malformed_definition_names_the_json_path(
    tmp_path: Path, change: Any, message: str
) -> None:
    definition = minimal_definition()
    change(definition)
    with pytest.raises(AdapterDefinitionError) as caught:
        generate_describe(definition, sample_project(tmp_path))
    assert message in caught.value.message
    assert "send_results" in (caught.value.hint or "")


# -- fragments --------------------------------------------------------------------------

FRAGMENT = """<?xml version="1.0"?>
<AdapterKind xmlns="http://schemas.vmware.com/vcops/schema">
  <Faults>
    <FaultState key="disk_full" nameKey="7" type="1">
      <ProblemEvent key="full" nameKey="8" condition="Disk is full"/>
      <ClearEvent key="ok" nameKey="9" condition="Disk has room"/>
    </FaultState>
  </Faults>
  <Names>
    <Name key="7" shortName="Disk full"/>
    <Name key="8" shortName="Disk is full"/>
    <Name key="9" shortName="Disk has room"/>
  </Names>
</AdapterKind>
"""


def test_fragments_are_merged_with_their_names_renumbered(tmp_path: Path) -> None:
    project = sample_project(tmp_path)
    (project.root / "conf" / "faults.xml").write_text(FRAGMENT)
    (project.root / "conf" / "other.xml").write_text("<AdapterKind/>")
    warnings: list[str] = []
    definition, units = golden_inputs()
    describe_xml, properties = generate_describe(definition, project, units=units,
                                                 log=warnings.append)  # fmt: skip
    root = ET.fromstring(describe_xml)  # noqa: S314
    fault = root.find(f"{NS}Faults/{NS}FaultState")
    assert fault is not None and fault.get("key") == "disk_full"
    names = properties_of(properties)
    assert names[fault.get("nameKey", "")] == "Disk full"
    events = {e.get("key"): names[e.get("nameKey", "")] for e in fault}
    assert events == {"full": "Disk is full", "ok": "Disk has room"}
    assert any("other.xml holds none of" in w for w in warnings)
    assert any("faults.xml" in w for w in warnings)


def test_a_fragment_name_key_without_a_name_is_an_error(tmp_path: Path) -> None:
    project = sample_project(tmp_path)
    (project.root / "conf" / "faults.xml").write_text(
        FRAGMENT.replace('<Name key="9" shortName="Disk has room"/>', "")
    )
    with pytest.raises(DescribeError, match=r'nameKey="9", but the fragment'):
        generate_describe(minimal_definition(), project)


def test_a_broken_fragment_names_file_and_line(tmp_path: Path) -> None:
    project = sample_project(tmp_path)
    (project.root / "conf" / "faults.xml").write_text("<AdapterKind>\n<Faults>\n</AdapterKind>")
    with pytest.raises(DescribeError, match=r"faults.xml is not well-formed XML \(line 3"):
        generate_describe(minimal_definition(), project)


# -- validation against the project's schema -------------------------------------------------


def test_the_projects_own_schema_is_used(tmp_path: Path) -> None:
    project = sample_project(tmp_path)
    schema = project.root / "conf" / "describeSchema.xsd"
    text = schema.read_text()
    stricter = text.replace('"version" type="xs:integer"', '"version" type="xs:negativeInteger"')
    schema.write_text(stricter)
    with pytest.raises(DescribeError) as caught:
        generate_describe(minimal_definition(), project)
    assert str(schema) in caught.value.message
    assert "version" in caught.value.message


# -- adapter kind ---------------------------------------------------------------------------


def test_an_adapter_kind_mismatch_names_the_fix(tmp_path: Path) -> None:
    project = sample_project(tmp_path)
    with pytest.raises(AdapterKindMismatchError) as caught:
        generate_describe(minimal_definition("OtherKind"), project)
    error = caught.value
    assert (error.manifest_kind, error.describe_kind) == (SAMPLE_KIND, "OtherKind")
    assert '"adapter_kinds": ["OtherKind"]' in (error.hint or "")
    assert error.to_dict()["describe_adapter_kind"] == "OtherKind"


class ScriptedPrompter:
    def __init__(self, interactive: bool, answer: int = 0) -> None:
        self.interactive = interactive
        self.answer = answer
        self.questions: list[str] = []

    def ask(self, question: str, default: str | None = None) -> str:
        raise AssertionError(question)

    def secret(self, question: str) -> str:
        raise AssertionError(question)

    def choose(self, question: str, options: list[str]) -> int:
        self.questions.append(question)
        return self.answer


def test_a_terminal_offers_to_fix_the_manifest(tmp_path: Path) -> None:
    project = sample_project(tmp_path)
    manifest = project.root / "manifest.txt"
    before = list(json.loads(manifest.read_text()))
    try:
        generate_describe(minimal_definition("OtherKind"), project)
    except AdapterKindMismatchError as error:
        with pytest.raises(AdapterKindMismatchError):
            offer_manifest_fix(project, error, ScriptedPrompter(interactive=False))
        with pytest.raises(AdapterKindMismatchError):
            offer_manifest_fix(project, error, ScriptedPrompter(interactive=True, answer=1))
        prompter = ScriptedPrompter(interactive=True, answer=0)
        fixed = offer_manifest_fix(project, error, prompter)
    assert "Update manifest.txt?" in prompter.questions[0]
    assert fixed.manifest.adapter_kind == "OtherKind"
    data = json.loads(manifest.read_text())
    assert data["adapter_kinds"] == ["OtherKind"] and list(data) == before
    generate_describe(minimal_definition("OtherKind"), fixed)


def test_fix_manifest_keeps_the_file_mode(tmp_path: Path) -> None:
    project = sample_project(tmp_path)
    manifest = project.root / "manifest.txt"
    manifest.chmod(0o600)
    fix_manifest_adapter_kind(project, "Renamed")
    assert manifest.stat().st_mode & 0o777 == 0o600
