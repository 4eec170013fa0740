"""End to end: `mpkit init` → set the registry → build the image (native, with the real
vmware-aria-operations-integration-sdk-lib from PyPI) → push → ask the adapter for its
definition both ways → describe.xml → the pack.

tests/describe/test_build_cli_e2e.py does the same through the `mpkit` command line; this
test drives the library pieces.
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from mpkit.describe import adapter_definition, generate_describe
from mpkit.describe.convert import parse_units
from mpkit.describe.schema import describe_problems
from mpkit.engine import EngineChoice
from mpkit.imagebuild.builder import BuildRequest, build_image
from mpkit.init import InitOptions, create_project
from mpkit.pack.writer import ImageLocation, build_pack
from mpkit.project.load import load_project
from mpkit.reference import parse_reference
from mpkit.registry import ClientOptions, open_client, push_image
from mpkit.settings import Settings
from tests.describe.conftest import GOLDEN
from tests.describe.test_generate import (
    NS,
    SAMPLE_CREDENTIAL_FIELDS,
    SAMPLE_IDENTIFIERS,
    SAMPLE_KIND,
    SAMPLE_METRICS,
    SAMPLE_NAME,
    SAMPLE_PROPERTIES,
    attribute_paths,
    properties_of,
)
from tests.fixtures.baseimage import SdkBase
from tests.fixtures.podman import Podman
from tests.fixtures.registry import RegistryServer


def test_init_project_builds_into_a_pack_with_the_generated_describe(
    tmp_path: Path,
    sdk_base: SdkBase,
    registry_open: RegistryServer,
    podman_env: Podman,
    sdk_schema: Path,
) -> None:
    root = create_project(InitOptions(tmp_path / "local-machine", SAMPLE_NAME, SAMPLE_KIND,
                                      "Reports on the local machine", "Example Inc."))  # fmt: skip
    repository = f"{registry_open.host}/e2e/localmachine"
    config = json.loads((root / "config.json").read_text())
    config["container_repository"] = repository  # the one edit a new project needs
    (root / "config.json").write_text(json.dumps(config, indent=4))
    project = load_project(root)
    assert project.config.container_repository == repository

    cache = tmp_path / "cache"
    settings = Settings(mirrors={k: (v,) for k, v in sdk_base.mirror.items()})
    built = build_image(BuildRequest(project=root, cache_root=cache, settings=settings,
                                     client_options=ClientOptions(),
                                     engine=EngineChoice.NONE))  # fmt: skip
    assert built.builder == "native"
    image = built.image
    tag = f"1.0.0_{image.digest.partition(':')[2][:12]}"
    with open_client(registry_open.host, options=ClientOptions(), anonymous=True) as client:
        pushed = push_image(client, image, parse_reference(f"{repository}:{tag}"))
    assert pushed.digest == image.digest

    logged: list[str] = []
    reference = f"{repository}:{tag}"
    in_image = adapter_definition(
        project, image, way="image", pushed_reference=reference, log=logged.append
    )
    assert in_image.way == "image" and in_image.engine == "podman", logged
    on_host = adapter_definition(project, image, way="host", cache_dir=cache)
    golden_definition = json.loads((GOLDEN / "sample_definition.json").read_text())
    golden_units = parse_units(json.loads((GOLDEN / "sdk_lib_units.json").read_text()))
    assert in_image.definition == on_host.definition == golden_definition
    assert in_image.units == on_host.units == golden_units
    assert in_image.api_version == "1.0.0"

    describe_xml, properties = generate_describe(in_image.definition, project, units=in_image.units)
    assert (describe_xml, properties) == generate_describe(
        on_host.definition, project, units=on_host.units
    )
    assert describe_xml == (GOLDEN / "sample_describe.xml").read_bytes()

    pack = build_pack(
        project,
        ImageLocation(registry=registry_open.host, repository="/e2e/localmachine",
                      digest=image.digest, tag=tag),
        api_version=in_image.api_version,
        describe_xml=describe_xml,
        resources_properties=properties,
    )  # fmt: skip
    with zipfile.ZipFile(pack) as outer:
        adapter = zipfile.ZipFile(io.BytesIO(outer.read("adapter.zip")))
    packed = adapter.read(f"{SAMPLE_KIND}/conf/describe.xml")
    names = properties_of(adapter.read(f"{SAMPLE_KIND}/conf/resources/resources.properties"))
    kind_conf = adapter.read(f"{SAMPLE_KIND}.conf").decode()
    assert "API_VERSION=1.0.0" in kind_conf and f"DIGEST={image.digest}" in kind_conf
    assert describe_problems(packed, root / "conf" / "describeSchema.xsd") == []
    assert describe_problems(packed, sdk_schema) == []

    describe = ET.fromstring(packed)  # noqa: S314
    attributes = attribute_paths(describe, "local_system")
    for key in [*SAMPLE_METRICS, *SAMPLE_PROPERTIES]:
        assert names[attributes[key].get("nameKey", "")], key
    for kind, keys in SAMPLE_IDENTIFIERS.items():
        resource = describe.find(f"{NS}ResourceKinds/{NS}ResourceKind[@key='{kind}']")
        assert resource is not None
        for key in keys:
            element = resource.find(f"{NS}ResourceIdentifier[@key='{key}']")
            assert element is not None and names[element.get("nameKey", "")], key
    for kind, fields in SAMPLE_CREDENTIAL_FIELDS.items():
        for field in fields:
            path = f"{NS}CredentialKinds/{NS}CredentialKind[@key='{kind}']/{NS}CredentialField"
            element = describe.find(f"{path}[@key='{field}']")
            assert element is not None and names[element.get("nameKey", "")], field
