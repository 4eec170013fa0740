"""mpkit's pack against the pak the VMware SDK's own mp-build code writes for the same project.

The SDK's ``build_pak_file`` runs for real (only Docker is replaced, see
:mod:`tests.fixtures.sdk_mp_build`) on a copy of an mp-init style project; mpkit builds
the other copy from the same adapter definition, made by the SDK's adapter library. Both
packs, and the adapter.zip in each, are compared entry by entry: the same names, the same
directory entries, the same modes and compression, the same bytes. What differs on
purpose is asserted as such (and listed in the README): the order of the entries and
their times, manifest.txt's ``container_image``, the one enum default the SDK loses, the
order of the unit types (a Python set's order in the SDK), and Java escapes in
resources.properties.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from mpkit.describe import generate_describe
from mpkit.describe.convert import parse_units
from mpkit.describe.schema import BUNDLED_SCHEMA
from mpkit.javaproperties import parse_properties
from mpkit.pack import ImageLocation, build_pack
from mpkit.pack.zipfile_det import FIXED_DATE_TIME
from mpkit.project.load import load_project
from tests.fixtures.sdkmanifest import sdk_manifest
from tests.fixtures.sdkpackaging import SdkPackaging, sdk_packaging  # noqa: F401
from tests.pack.projects import EMPTY_DIRS, PROJECT_FILES

KIND = "SdkCompare"  # the adapter key of tests.fixtures.sdk_mp_build's definition
REGISTRY = "registry.example.com:5000"
REPOSITORY = "mp/sdkcompare"
DIGEST = "sha256:" + "ab" * 32
TAG = "1.2.3_abababababab"
NS = "{http://schemas.vmware.com/vcops/schema}"
SDK_SCHEMA = "vmware_aria_operations_integration_sdk/adapter_configurations/describeSchema.xsd"
# Files of tests.pack.projects that the SDK cannot take or writes itself: a script in a
# subdirectory (mp_build copies it into a directory it never creates), conf/describe.xml
# and its properties (generated here), build outputs.
LEFT_OUT = (
    "scripts/post_install.sh",
    "conf/describe.xml",
    "conf/resources/resources.properties",
    "build/old.pak",
    "logs/build.log",
)
EXECUTABLE = ("validate.py", "pre_install.sh", "post_install.sh", "content/files/txtwidget/run.sh")


def write_sdk_project(root: Path, schema: Path) -> Path:
    """An mp-init style tree with scripts (executable), content to move and empty dirs."""
    files = {name: data for name, data in PROJECT_FILES.items() if name not in LEFT_OUT}
    files |= {
        "pre_install.sh": b"#!/bin/sh\nexit 0\n",
        "post_install.sh": b"#!/bin/sh\nexit 0\n",
        "content/files/txtwidget/run.sh": b"#!/bin/sh\n",
        "conf/images/TraversalSpec/.gitkeep": b"",
        "conf/describeSchema.xsd": schema.read_bytes(),
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for name in (*EMPTY_DIRS, "conf/empty"):
        (root / name).mkdir(parents=True, exist_ok=True)
    for name in EXECUTABLE:
        (root / name).chmod(0o755)
    manifest = sdk_manifest(
        version="1.2.3",
        adapter_kinds=[KIND],
        pak_validation_script={"script": "validate.py"},
        adapter_pre_script={"script": "pre_install.sh"},
        adapter_post_script={"script": "post_install.sh"},
    )
    (root / "manifest.txt").write_text(json.dumps(manifest, indent=4) + "\n")
    return root


@dataclass(frozen=True)
class Entry:
    """What a zip says about one entry, but its time."""

    directory: bool
    mode: int  # the Unix mode (external_attr >> 16)
    dos_bits: int  # external_attr & 0xFFFF (0x10: directory)
    compression: int
    create_system: int
    data: bytes


@dataclass(frozen=True)
class Archive:
    names: list[str]  # in archive order
    entries: dict[str, Entry]
    times: set[tuple[int, ...]]


def read_archive(data: bytes) -> Archive:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        found = {
            i.filename: Entry(i.is_dir(), i.external_attr >> 16, i.external_attr & 0xFFFF,
                              i.compress_type, i.create_system, archive.read(i))
            for i in infos
        }  # fmt: skip
    return Archive([i.filename for i in infos], found, {i.date_time for i in infos})


@dataclass(frozen=True)
class Built:
    pack: Archive
    adapter: Archive
    definition: dict[str, Any]

    def pack_entry(self, name: str) -> Entry:
        return self.pack.entries[name]

    def adapter_entry(self, name: str) -> Entry:
        return self.adapter.entries[name]


def built(pak: Path, definition: dict[str, Any]) -> Built:
    pack = read_archive(pak.read_bytes())
    return Built(pack, read_archive(pack.entries["adapter.zip"].data), definition)


@pytest.fixture(scope="module")
def both(
    sdk_packaging: SdkPackaging,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Built, Built]:
    """(the SDK's pak, mpkit's pack) for one project and one definition."""
    work = tmp_path_factory.mktemp("parity")
    definition_path = work / "definition.json"
    definition = sdk_packaging.definition(definition_path)
    units = parse_units(sdk_packaging.units())
    original = write_sdk_project(work / "project", sdk_packaging.site / SDK_SCHEMA)
    for_sdk = shutil.copytree(original, work / "sdk", symlinks=True)
    for_mpkit = shutil.copytree(original, work / "mpkit", symlinks=True)

    sdk_pak = sdk_packaging.pack(for_sdk, definition_path, registry=REGISTRY,
                                 repository=REPOSITORY, digest=DIGEST,
                                 out_dir=work / "sdk-out")  # fmt: skip
    project = load_project(for_mpkit)
    describe_xml, properties = generate_describe(definition, project, units=units)
    mpkit_pak = build_pack(
        project, ImageLocation(REGISTRY, f"/{REPOSITORY}", DIGEST, TAG),
        describe_xml=describe_xml, resources_properties=properties,
        output_dir=work / "mpkit-out",
    )  # fmt: skip
    assert sdk_pak.name == mpkit_pak.name == "MyAdapter_1.2.3.pak"
    return built(sdk_pak, definition), built(mpkit_pak, definition)


GENERATED = {  # entries whose bytes differ on purpose, compared by the tests below
    "manifest.txt",
    "adapter.zip",
    f"{KIND}/conf/describe.xml",
    f"{KIND}/conf/resources/resources.properties",
}


@pytest.mark.parametrize("archive", ["pack", "adapter.zip"])
def test_the_same_entries_modes_and_bytes(both: tuple[Built, Built], archive: str) -> None:
    sdk, mpkit = (b.pack if archive == "pack" else b.adapter for b in both)
    assert sorted(mpkit.names) == sorted(sdk.names)
    assert mpkit.names == sorted(mpkit.names)  # on purpose: the SDK's order is os.walk's
    for name in sdk.names:
        expected, found = sdk.entries[name], mpkit.entries[name]
        if name in GENERATED:
            expected, found = replace(expected, data=b""), replace(found, data=b"")
        assert found == expected, name
    assert mpkit.times == {FIXED_DATE_TIME}  # on purpose: the SDK's are the files' mtimes


def test_scripts_keep_their_execute_bits_and_directories_are_entries(
    both: tuple[Built, Built],
) -> None:
    sdk, mpkit = both
    for built_pack in both:
        for name in ("validate.py", "pre_install.sh", "post_install.sh"):
            assert built_pack.pack_entry(name).mode == 0o100755, name
        assert built_pack.pack_entry("content/files/txtwidget/run.sh").mode == 0o100755
        assert built_pack.pack_entry("eula.txt").mode == 0o100644
        for name in ("content/supermetrics/", "resources/empty/"):  # only a .gitkeep; empty
            entry = built_pack.pack_entry(name)
            assert (entry.directory, entry.mode, entry.dos_bits) == (True, 0o40755, 0x10)
        for name in (f"{KIND}/conf/images/TraversalSpec/", f"{KIND}/conf/empty/"):
            assert built_pack.adapter_entry(name).directory
        assert "content/policies/" not in built_pack.pack.entries  # empty: left out
    assert sdk.pack_entry("validate.py").data == mpkit.pack_entry("validate.py").data


def test_the_manifest_is_the_projects_plus_the_image_location(both: tuple[Built, Built]) -> None:
    sdk, mpkit = both
    for built_pack in both:
        assert built_pack.adapter_entry("manifest.txt").data == (
            built_pack.pack_entry("manifest.txt").data
        )
    expected = json.loads(sdk.pack_entry("manifest.txt").data)
    found = json.loads(mpkit.pack_entry("manifest.txt").data)
    image = found.pop("container_image")
    assert found == expected
    assert image == {"registry": REGISTRY, "repository": f"/{REPOSITORY}", "digest": DIGEST,
                     "tag": TAG}  # fmt: skip


def _split(describe: bytes) -> tuple[bytes, bytes]:
    """(everything before <UnitDefinitions>, the rest)."""
    head, marker, tail = describe.partition(b"  <UnitDefinitions>")
    assert marker, describe[-300:]
    return head, marker + tail


def _enum_defaults(definition: dict[str, Any]) -> list[str]:
    """The default of every enum parameter and credential field of *definition*."""
    fields = [*definition["adapter_instance"]["identifiers"]]
    fields += [f for kind in definition["credential_types"] for f in kind["fields"]]
    return [f["default"] for f in fields if f.get("enum") and f.get("default") is not None]


def test_describe_is_the_sdks_element_and_attribute_for_attribute(
    both: tuple[Built, Built],
) -> None:
    sdk, mpkit = both
    name = f"{KIND}/conf/describe.xml"
    sdk_head, sdk_units = _split(sdk.adapter_entry(name).data)
    mpkit_head, mpkit_units = _split(mpkit.adapter_entry(name).data)
    # The one value that differs on purpose: the SDK never marks the default enum entry.
    defaults = _enum_defaults(sdk.definition)
    assert defaults == ["slow", "b"]
    for value in defaults:
        pattern = rb'(<enum value="' + value.encode() + rb'" nameKey="\d+" default=")false"'
        sdk_head, count = re.subn(pattern, rb'\1true"', sdk_head)
        assert count == 1, value
    assert mpkit_head == sdk_head  # byte for byte, up to the unit table
    assert mpkit_units.endswith(b"</AdapterKind>") and sdk_units.endswith(b"</AdapterKind>")
    assert b"<CredentialKinds>" in mpkit_head and b"isKpi" not in mpkit_head
    assert b'unit=""' in mpkit_head and b"length=" not in mpkit_head
    # The unit table: the same types, units and names; the SDK orders the types of one
    # group by a Python set, so its order (and the name keys it hands out) varies.
    assert _unit_table(mpkit.adapter_entry(name).data, mpkit) == _unit_table(
        sdk.adapter_entry(name).data, sdk
    )


def test_without_credentials_describe_has_the_sdks_empty_elements(
    sdk_packaging: SdkPackaging,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The SDK's own describe writer on a definition like mp-init's template adapter (no
    credentials, no enum): the same bytes up to the unit table."""
    definition = _definition_without_credentials()
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(definition))
    sdk_describe, sdk_properties = sdk_packaging.describe(path, tmp_path)
    root = write_sdk_project(tmp_path / "p", BUNDLED_SCHEMA)
    units = parse_units(sdk_packaging.units())
    describe_xml, properties = generate_describe(definition, load_project(root), units=units)
    assert _split(describe_xml)[0] == _split(sdk_describe)[0]
    assert b"  <CredentialKinds/>\n" in describe_xml
    assert b'type="7" credentialKind="">' in describe_xml
    sdk_lines = sdk_properties.decode("utf-8").splitlines()
    assert properties.decode("ascii").splitlines()[:4] == sdk_lines[:4]


def _definition_without_credentials() -> dict[str, Any]:
    instance = {
        "key": f"{KIND}_adapter_instance", "label": "SDK Compare Adapter Instance",
        "identifiers": [{"key": "ID", "label": "ID", "description": "An identifier",
                         "required": True, "ident_type": 1, "enum": False, "display_order": 0,
                         "type": "string", "length": 512, "default": None}],
        "attributes": [], "groups": [],
    }  # fmt: skip
    cpu = {
        "key": "cpu", "label": "CPU", "identifiers": [], "groups": [],
        "attributes": [{"key": "user_time", "label": "User Time", "unit": "seconds",
                        "is_rate": False, "is_discrete": False, "is_kpi": False,
                        "is_impact": False, "is_key_attribute": False, "dashboard_order": 0,
                        "data_type": "float", "is_property": False}],
    }  # fmt: skip
    return {
        "adapter_key": KIND, "adapter_label": "SDK Compare", "describe_version": 1,
        "schema_version": 1, "credential_types": [], "object_types": [cpu],
        "adapter_instance": instance,
    }  # fmt: skip


def _properties(built_pack: Built) -> tuple[bytes, dict[str, str]]:
    data = built_pack.adapter_entry(f"{KIND}/conf/resources/resources.properties").data
    return data, parse_properties(data.decode("utf-8"))


def _unit_table(describe: bytes, built_pack: Built) -> dict[str, list[tuple[str, ...]]]:
    names = _properties(built_pack)[1]
    root = ET.fromstring(describe)  # noqa: S314 (written by the test)
    table = root.find(f"{NS}UnitDefinitions")
    assert table is not None
    return {str(kind.get("key")): [_unit(unit, names) for unit in kind] for kind in table}


def _unit(unit: ET.Element, names: dict[str, str]) -> tuple[str, ...]:
    text = names[str(unit.get("nameKey"))]
    return (str(unit.get("key")), text, str(unit.get("order")), str(unit.get("conversionFactor")))


def test_resources_properties_holds_the_sdks_names(both: tuple[Built, Built]) -> None:
    sdk, mpkit = both
    sdk_bytes, sdk_names = _properties(sdk)
    mpkit_bytes, mpkit_names = _properties(mpkit)
    # The names of the definition have the same keys, in the same order, written alike:
    # "key = value" lines, no header.
    head = _split(sdk.adapter_entry(f"{KIND}/conf/describe.xml").data)[0]
    used = {int(key) for key in re.findall(rb'nameKey="(\d+)"', head)}
    last = max(used)
    sdk_lines = sdk_bytes.decode("utf-8").splitlines()
    mpkit_lines = mpkit_bytes.decode("ascii").splitlines()
    definition_lines = [line for line in sdk_lines if int(line.split(" ", 1)[0].split(".")[0])
                        <= last]  # fmt: skip
    assert mpkit_lines[: len(definition_lines)] == definition_lines
    assert "9.description = Another description" in definition_lines  # one key per label
    # The unit names: the same texts (mpkit escapes what is not ASCII, e.g. "\u03bcs").
    assert sorted(mpkit_names.values()) == sorted(sdk_names.values())
    assert "\\u03bcs" in mpkit_bytes.decode("ascii") and "μs" in mpkit_names.values()
