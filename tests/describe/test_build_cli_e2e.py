"""`mpkit init` then `mpkit build` (the CLI, nothing else) gives a
complete pack whose describe.xml comes from the adapter and validates."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mpkit.describe.schema import describe_problems
from tests.describe.conftest import GOLDEN, PODMAN_ENV
from tests.describe.test_generate import (
    SAMPLE_KIND,
    SAMPLE_METRICS,
    SAMPLE_NAME,
    SAMPLE_PROPERTIES,
    attribute_paths,
    properties_of,
)
from tests.e2e.conftest import Mpkit, isolated_env
from tests.fixtures.baseimage import SdkBase
from tests.fixtures.podman import Podman
from tests.fixtures.registry import RegistryServer


@dataclass(frozen=True)
class InitProject:
    mpkit: Mpkit
    env: dict[str, str]  # the SDK base's mirror and podman's configuration
    root: Path


def init_sample_project(tmp_path: Path, sdk_base: SdkBase, podman: Podman) -> InitProject:
    """`mpkit init` of the sample adapter, as a user would run it."""
    mpkit = Mpkit(root=tmp_path / "user", env=isolated_env(tmp_path / "user"))
    env = {
        "MPKIT_MIRRORS": f"projects.packages.broadcom.com={sdk_base.registry.host}",
        **{key: podman.env[key] for key in PODMAN_ENV},
    }
    root = tmp_path / "local-machine"
    mpkit.ok("init", str(root), "-n", SAMPLE_NAME, "-k", SAMPLE_KIND, "-d", "Reports on the "
             "local machine", "--vendor", "Example Inc.", "--no-ttl", env=env)  # fmt: skip
    return InitProject(mpkit, env, root)


def test_mpkit_init_then_mpkit_build_makes_a_complete_pack(
    tmp_path: Path,
    sdk_base: SdkBase,
    registry_open: RegistryServer,
    podman: Podman,
    sdk_schema: Path,
) -> None:
    init = init_sample_project(tmp_path, sdk_base, podman)
    mpkit, env, root = init.mpkit, init.env, init.root
    repository = f"{registry_open.host}/e2e/init-build"
    built = mpkit.ok("build", str(root), "-r", repository, "--json", env=env, timeout=600)
    outcome = built.json()
    assert outcome["builder"] == "native"
    assert outcome["verify"]["ok"] is True
    assert outcome["describe"]["way"] == "image"  # podman is there: the faithful way

    with zipfile.ZipFile(outcome["pack"]) as outer:
        adapter = zipfile.ZipFile(io.BytesIO(outer.read("adapter.zip")))
    describe_xml = adapter.read(f"{SAMPLE_KIND}/conf/describe.xml")
    assert describe_xml == (GOLDEN / "sample_describe.xml").read_bytes()
    assert describe_problems(describe_xml, sdk_schema) == []
    names = properties_of(adapter.read(f"{SAMPLE_KIND}/conf/resources/resources.properties"))
    attributes = attribute_paths(ET.fromstring(describe_xml), "local_system")  # noqa: S314
    for key in [*SAMPLE_METRICS, *SAMPLE_PROPERTIES]:
        assert names[attributes[key].get("nameKey", "")], key
    kind_conf = adapter.read(f"{SAMPLE_KIND}.conf").decode()
    assert f"DIGEST={outcome['digest']}" in kind_conf
    assert json.loads((root / "config.json").read_text())["container_repository"] == repository
