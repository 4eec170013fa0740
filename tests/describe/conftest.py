"""Fixtures for the describe tests: small adapter images built on the SDK base stand-in,
podman configured for this machine, and the VMware SDK's own describeSchema.xsd.

Adapter images are built by mpkit's native builder (COPY layers only, no requirements:
seconds) on the stand-in base in the session's open registry. ``make_adapter`` writes a
project whose stdlib-only adapter behaves as the test asks (a fixed definition, a crash,
invalid JSON, nothing), so both ways of running it can be checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mpkit.engine import EngineChoice
from mpkit.imagebuild.builder import BuildRequest, BuildResult, build_image
from mpkit.project.load import load_project
from mpkit.project.model import Project
from mpkit.registry.transport import ClientOptions
from mpkit.settings import Settings
from tests.fixtures.baseimage import SdkBase
from tests.fixtures.fakeengine import fake_engines  # noqa: F401  (shared fixture)
from tests.fixtures.podman import Podman
from tests.fixtures.testcache import default_cache_root
from tests.fixtures.tools import unavailable

SDK_BASE = (
    "projects.packages.broadcom.com/vmware_aria_operations_integration_sdk/"
    "base-adapter:python-1.0.0"
)
PODMAN_ENV = (
    "CONTAINERS_CONF",
    "CONTAINERS_STORAGE_CONF",
    "CONTAINERS_REGISTRIES_CONF",
    "REGISTRY_AUTH_FILE",
)
GOLDEN = Path(__file__).with_name("golden")
SDK_TOOLS = "vmware-aria-operations-integration-sdk==1.3.1"  # ships describeSchema.xsd
SDK_SCHEMA_MEMBER = (
    "vmware_aria_operations_integration_sdk/adapter_configurations/describeSchema.xsd"
)

# A stdlib-only adapter: what adapter_definition does comes from app/behaviour.json.
ADAPTER = """\
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    with open(os.path.join(HERE, "behaviour.json")) as handle:
        behaviour = json.load(handle)
    log_dir = os.path.join(os.sep, "var", "log")
    if os.access(log_dir, os.W_OK):
        with open(os.path.join(log_dir, "adapter.log"), "a") as log:
            log.write("adapter log: %s as uid %d\\n" % (sys.argv[1], os.getuid()))
    sys.stderr.write(behaviour.get("stderr", ""))
    if behaviour.get("crash"):
        raise RuntimeError(behaviour["crash"])
    if "raw" in behaviour:
        with open(sys.argv[-1], "w") as out:
            out.write(behaviour["raw"])
        return
    report = {"cwd": os.getcwd(), "uid": os.getuid(), "python": sys.version.split()[0]}
    sys.stderr.write("REPORT " + json.dumps(report) + "\\n")
    with open(sys.argv[-1], "w") as out:
        json.dump(behaviour["definition"], out)


if __name__ == "__main__":
    main()
"""
DOCKERFILE = f"FROM {SDK_BASE}\nCOPY commands.cfg .\nCOPY app app\n"
COMMANDS = (
    "[Commands]\nadapter_definition=/usr/local/bin/python app/adapter.py adapter_definition\n"
)


def sample_definition(kind: str = "TestAdapter") -> dict[str, Any]:
    """A definition as AdapterDefinition.to_json() writes it (schema_version 1)."""
    text = (GOLDEN / "sample_definition.json").read_text().replace('"LocalMachine', f'"{kind}')
    definition: dict[str, Any] = json.loads(text)
    return definition


def write_project(
    root: Path, kind: str, behaviour: dict[str, Any], *, manifest_kind: str | None = None
) -> Path:
    """An SDK-style project whose adapter follows *behaviour*."""
    root.mkdir(parents=True)
    manifest = {
        "display_name": "Test Adapter", "name": f"iSDK_{kind}", "description": "test",
        "version": "1.0.0", "vcops_minimum_version": "8.10.0",
        "adapter_kinds": [manifest_kind or kind], "adapters": ["adapter.zip"],
    }  # fmt: skip
    (root / "manifest.txt").write_text(json.dumps(manifest, indent=4))
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "commands.cfg").write_text(COMMANDS)
    (root / "app").mkdir()
    (root / "app" / "adapter.py").write_text(ADAPTER)
    (root / "app" / "behaviour.json").write_text(json.dumps(behaviour))
    return root


@dataclass
class Built:
    project: Project
    build: BuildResult


def build_project(root: Path, sdk_base: SdkBase, cache: Path) -> Built:
    """The project's image, built natively on the stand-in base."""
    settings = Settings(mirrors={k: (v,) for k, v in sdk_base.mirror.items()})
    request = BuildRequest(
        project=root, cache_root=cache, settings=settings, client_options=ClientOptions(),
        engine=EngineChoice.NONE,
    )  # fmt: skip
    return Built(load_project(root), build_image(request))


MakeAdapter = Callable[..., Built]


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("describe-build-cache")


@pytest.fixture
def make_adapter(tmp_path: Path, sdk_base: SdkBase, build_cache: Path) -> MakeAdapter:
    """``make_adapter(behaviour, kind=…, manifest_kind=…)`` → the built project."""
    counter = iter(range(1000))

    def make(
        behaviour: dict[str, Any], kind: str = "TestAdapter", manifest_kind: str | None = None
    ) -> Built:
        root = write_project(tmp_path / f"project-{next(counter)}", kind, behaviour,
                             manifest_kind=manifest_kind)  # fmt: skip
        return build_project(root, sdk_base, build_cache)

    return make


@pytest.fixture(autouse=True)
def own_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What mpkit remembers about engines stays with the test."""
    state = tmp_path / "mpkit-state"
    monkeypatch.setenv("MPKIT_STATE_DIR", str(state))
    monkeypatch.delenv("MPKIT_ENGINE_RECHECK", raising=False)
    return state


@pytest.fixture
def podman_env(podman: Podman, monkeypatch: pytest.MonkeyPatch) -> Podman:
    """Point mpkit's engine calls at the isolated, correctly configured podman."""
    for key in PODMAN_ENV:
        monkeypatch.setenv(key, podman.env[key])
    return podman


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A PATH without podman or docker (the host way is the only way)."""
    bin_dir = tmp_path / "bin-without-engines"
    bin_dir.mkdir()
    for tool in ("uv", "python3", "sh"):
        found = subprocess.run(["which", tool], capture_output=True, text=True, check=False)
        if found.returncode == 0:
            (bin_dir / tool).symlink_to(found.stdout.strip())
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}")


@pytest.fixture(scope="session")
def sdk_schema() -> Iterator[Path]:
    """The VMware SDK's describeSchema.xsd, from its PyPI wheel (downloaded once, cached)."""
    cache = default_cache_root() / "sdk-describe-schema"
    target = cache / "describeSchema.xsd"
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--dest", str(cache / "wheel"), SDK_TOOLS],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        wheels = sorted((cache / "wheel").glob("*.whl")) if (cache / "wheel").is_dir() else []
        if download.returncode != 0 or not wheels:
            message = f"cannot download {SDK_TOOLS} from PyPI: {download.stderr.strip()[-500:]}"
            unavailable(message)
        with zipfile.ZipFile(wheels[0]) as wheel:
            data = wheel.read(SDK_SCHEMA_MEMBER)
        temp = target.with_suffix(f".{os.getpid()}.tmp")
        temp.write_bytes(data)
        temp.replace(target)
    yield target
