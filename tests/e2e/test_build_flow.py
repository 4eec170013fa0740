"""End to end: ``mpkit build`` / ``mp-build`` from project to pack: the project's files,
mp-build's flags and repository precedence, the pack's entries and docker's credentials.

Every build runs the real CLI in a subprocess against real registries (CNCF distribution
in open, basic and token modes), with the SDK base stand-in reached through
``MPKIT_MIRRORS``. Packs are unzipped and compared entry by entry with what the SDK writes;
digests are checked with skopeo. Failures must leave the pack and config.json of an
earlier successful build exactly as they were (bytes and mtime).

Speed: one MPKIT_CACHE_DIR per module (base pull, uv downloads, dependency layer) for
the tests that do not examine caching; a build then takes about two seconds.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.e2e.conftest import CommandResult, Mpkit
from tests.e2e.sdkproject import (
    KIND,
    VERSION,
    PackContents,
    assert_unchanged,
    change_app,
    expected_pack_entries,
    flow_env,
    pack_path,
    read_config,
    read_pack,
    sdk_mirror,
    snapshot,
    write_config,
    write_sdk_project,
)
from tests.fixtures.baseimage import SdkBase
from tests.fixtures.buildserver import BuildServer
from tests.fixtures.fakeregistry import ClosingListener, FakeRegistry, Reply, Request
from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.procs import ManagedProcess, free_port, http_ready
from tests.fixtures.registry import RegistryServer
from tests.fixtures.skopeo import Endpoint, Skopeo
from tests.fixtures.tools import unavailable

MakeRegistry = Callable[..., RegistryServer]
MakeFaultProxy = Callable[..., FaultProxy]

BUILD_TIMEOUT = 180.0
ECR_ACCOUNT = "123456789012"
ECR_REGION = "us-east-1"
ECR_HOST = f"{ECR_ACCOUNT}.dkr.ecr.{ECR_REGION}.amazonaws.com"
ECR_NAME = "my-adapter"
MOTO_PASSWORD = f"{ECR_ACCOUNT}-auth-token"  # what moto's GetAuthorizationToken answers
WRONG_PASSWORD = "Wr0ng-Passw0rd-Zq"
REMOTE_REGISTRY = "registry.example.com:5000"
DOCKER_HUB_LIMIT = "100;w=21600"
DOCKER_HUB_REMAINING = "76;w=21600"
VCOPS_NAMESPACE = "http://schemas.vmware.com/vcops/schema"
BUILT_IN_REGISTRY_ROOT = ".local/share/mpkit/registry"  # under HOME (platformdirs)


# -- running builds ----------------------------------------------------------------------------


@dataclass
class Flow:
    """One project and an isolated mpkit user to build it."""

    project: Path
    cli: Mpkit

    @property
    def pack(self) -> Path:
        return pack_path(self.project)

    @property
    def config(self) -> Path:
        return self.project / "config.json"

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> CommandResult:
        return self.cli.run("build", str(self.project), *args, env=env, timeout=BUILD_TIMEOUT)

    def ok(self, *args: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """``mpkit build --json``, which must succeed; its report."""
        result = self.run("--json", *args, env=env)
        assert result.returncode == 0, f"mpkit build failed:\n{result.output}"
        assert "Traceback" not in result.output, result.output
        report: dict[str, Any] = result.json()
        return report

    def fails(self, *args: str, env: Mapping[str, str] | None = None) -> CommandResult:
        """``mpkit build`` that must fail cleanly: exit 1, an error line, no traceback."""
        result = self.run(*args, env=env)
        assert_clean_failure(result)
        return result


def assert_clean_failure(result: CommandResult, code: int = 1) -> None:
    assert result.returncode == code, f"expected exit {code}, got {result.returncode}:\n" + (
        result.output
    )
    assert "Traceback" not in result.output, result.output
    assert "internal error" not in result.output, result.output
    assert "error: " in result.stderr, result.output


MakeFlow = Callable[..., Flow]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MPKIT_CACHE_DIR for the module: the base and the dependency layer once."""
    return tmp_path_factory.mktemp("flow-cache")


@pytest.fixture
def make_flow(tmp_path: Path, sdk_base: SdkBase, shared_cache: Path) -> Iterator[MakeFlow]:
    """``make_flow(config={...}, sdk_config={...}, env={...})``: a fresh project and user.

    A built-in registry that mpkit build started for a user (for a loopback target nobody
    serves) is stopped afterwards with ``mpkit registry stop``.
    """
    made = 0
    flows: list[Flow] = []

    def make(
        *,
        config: Mapping[str, Any] | None = None,
        sdk_config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Flow:
        nonlocal made
        made += 1
        root = tmp_path / f"flow{made}"
        project = write_sdk_project(root / "project", config=config)
        user = root / "user"
        environ = flow_env(
            user,
            base_registry_host=sdk_base.registry.host,
            cache=shared_cache,
            sdk_config=sdk_config,
            extra=env,
        )
        flow = Flow(project=project, cli=Mpkit(root=user, env=environ))
        flows.append(flow)
        return flow

    yield make
    for flow in flows:
        if (Path(flow.cli.env["HOME"]) / BUILT_IN_REGISTRY_ROOT).exists():
            flow.cli.run("registry", "stop")


@pytest.fixture(params=["in-process", "build-server"])
def runner_env(request: pytest.FixtureRequest, build_server: BuildServer) -> dict[str, str]:
    """Run the command in-process, or through the resident build server (which must not
    change what a terminal user sees: prompts, Ctrl-C, output)."""
    return {} if request.param == "in-process" else build_server.env


def alice(registry: RegistryServer) -> tuple[str, str]:
    return ("alice", registry.users["alice"])


def creds(registry: RegistryServer, password: str | None = None) -> dict[str, str]:
    return {
        "MPKIT_REGISTRY_USERNAME": "alice",
        "MPKIT_REGISTRY_PASSWORD": password or registry.users["alice"],
    }


def served_digest(
    skopeo: Skopeo, endpoint: Endpoint, image: str, login: tuple[str, str] | None = None
) -> str:
    """The digest skopeo reads for *image* (``host/path:tag`` or ``@digest``), checked
    against the sha256 of the raw manifest bytes it is served."""
    args = skopeo.args_for(endpoint, "", login)
    info = json.loads(skopeo.run("inspect", *args, f"docker://{image}").stdout)
    raw = skopeo.run("inspect", "--raw", *args, f"docker://{image}").stdout.encode()
    digest: str = info["Digest"]
    assert digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    return digest


# -- what a pack must hold ----------------------------------------------------------------------


def check_pack(
    flow: Flow,
    *,
    registry: str | None,
    repository: str,
    digest: str,
    protocol: str = "https",
    port: str = "443",
) -> PackContents:
    """Compare the pack with the SDK's entries one by one; return it for further checks."""
    contents = read_pack(flow.pack)
    tag = f"{VERSION}_{digest.removeprefix('sha256:')[:12]}"
    expected_pack, expected_adapter = expected_pack_entries(flow.project)

    assert set(contents.entries) == {*expected_pack, "manifest.txt", "adapter.zip"}
    for name, data in expected_pack.items():
        assert contents.entries[name] == data, f"pack entry {name} differs from the project"
    generated = {f"{KIND}.conf", "manifest.txt", f"{KIND}/conf/version.txt"}
    assert set(contents.adapter) == {*expected_adapter, *generated}
    for name, data in expected_adapter.items():
        assert contents.adapter[name] == data, f"adapter.zip entry {name} differs"
    assert contents.adapter[f"{KIND}/conf/version.txt"] == (
        b"Major-Version=1\nMinor-Version=2\nImplementation-Version=3\n"
    )
    assert set(contents.modes.values()) <= {0o644, 0o755}, contents.modes

    # manifest.txt: the project's (unchanged on disk), plus container_image.
    project_manifest = json.loads((flow.project / "manifest.txt").read_text())
    image: dict[str, str] = {"repository": f"/{repository}", "digest": digest, "tag": tag}
    if registry is not None:
        image = {"registry": registry, **image}
    assert contents.manifest == {**project_manifest, "container_image": image}
    assert "container_image" not in project_manifest
    assert contents.adapter["manifest.txt"] == contents.entries["manifest.txt"]

    # <KIND>.conf: the SDK's lines in the SDK's order, agreeing with manifest.txt.
    lines = [f"KINDKEY={KIND}", "API_VERSION=1.0.0", f"API_PROTOCOL={protocol}"]
    lines += [f"API_PORT={port}"]
    lines += [f"REGISTRY={registry}"] if registry is not None else []
    lines += [f"REPOSITORY=/{repository}", f"DIGEST={digest}"]
    assert contents.adapter[f"{KIND}.conf"].decode().splitlines() == lines
    return contents


def assert_secret_nowhere(secret: str, *texts: str, files: Sequence[Path] = ()) -> None:
    for text in texts:
        assert secret not in text
    for path in files:
        assert secret.encode() not in path.read_bytes(), f"the password is in {path}"


# -- a fresh project on a terminal -------------------------------------------------------------


def spawn_build(flow: Flow, *args: str) -> tuple[pexpect.spawn, io.StringIO]:
    transcript = io.StringIO()
    child = pexpect.spawn(
        sys.executable, ["-m", "mpkit", "build", str(flow.project), *args],
        env=flow.cli.env, encoding="utf-8", timeout=BUILD_TIMEOUT, dimensions=(50, 200),
    )  # fmt: skip
    child.logfile_read = transcript
    return child, transcript


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    status: int = child.exitstatus if child.exitstatus is not None else -1
    return status


def test_fresh_project_on_a_terminal_asks_for_repository_and_credentials(
    make_flow: MakeFlow,
    registry_token: RegistryServer,
    skopeo: Skopeo,
    runner_env: dict[str, str],
) -> None:
    host = registry_token.host
    password = registry_token.users["alice"]
    repository = "private/myadapter"
    flow = make_flow(
        config={"default_memory_limit": 2048, "custom_key": {"kept": True}},
        sdk_config={"default_container_registry_path": f"{host}/private/", "projects": []},
        env=runner_env,
    )
    flow.cli.docker_config.write_text(json.dumps({"psFormat": "table", "auths": {}}))
    flow.config.chmod(0o640)

    child, transcript = spawn_build(flow)
    # As mp-build: the prompt's default is default_container_registry_path + the kind.
    child.expect_exact(f"Container repository [{host}/{repository}]: ")
    child.sendline("Not a repository!")  # asked again, with the reason
    child.expect_exact(f"Container repository [{host}/{repository}]: ")
    child.sendline("")
    for attempt in (WRONG_PASSWORD, password):  # a typo is asked again, not fatal
        child.expect_exact(f"Username for {host}: ")
        child.sendline("alice")
        child.expect_exact(f"Password or token for alice@{host}: ")
        child.sendline(attempt)
    status = finish(child)
    output = transcript.getvalue()
    assert status == 0, output
    assert "needs credentials" in output
    assert "rejected the credentials" in output
    assert f"credentials for {host} stored in" in output

    # The repository is saved after the push; the other keys are kept in their order.
    config = read_config(flow.project)
    assert config == {
        "default_memory_limit": 2048,
        "custom_key": {"kept": True},
        "container_repository": f"{host}/{repository}",
    }
    assert list(config) == ["default_memory_limit", "custom_key", "container_repository"]
    assert stat.S_IMODE(flow.config.stat().st_mode) == 0o640

    # Stored the way docker login stores them: auths[host], 0600, keys kept.
    docker = json.loads(flow.cli.docker_config.read_text())
    assert docker["psFormat"] == "table"
    stored = base64.b64decode(docker["auths"][host]["auth"]).decode()
    assert stored == f"alice:{password}"
    assert stat.S_IMODE(flow.cli.docker_config.stat().st_mode) == 0o600

    login = alice(registry_token)
    digest = served_digest(skopeo, registry_token, f"{host}/{repository}:{_tag_of(flow)}", login)
    contents = check_pack(flow, registry=host, repository=repository, digest=digest)
    assert contents.kind_conf()["DIGEST"] == contents.manifest["container_image"]["digest"]
    assert served_digest(skopeo, registry_token, f"{host}/{repository}@{digest}", login) == digest

    # The SDK remembers every project it builds in its global config; so does mpkit.
    sdk_config = json.loads((flow.cli.root / "sdk-config.json").read_text())
    assert sdk_config["projects"] == [str(flow.project)]

    log = flow.project / "logs" / "build.log"
    assert log.is_file()
    assert_secret_nowhere(password, output, files=[log])
    assert_secret_nowhere(WRONG_PASSWORD, output, files=[log, flow.cli.docker_config])

    # The stored credentials serve the next build without a terminal.
    again = flow.ok("--no-ttl")
    assert again["digest"] == digest
    assert again["push"]["blobs_uploaded"] == 0
    assert_secret_nowhere(password, json.dumps(again), files=[log])


def _tag_of(flow: Flow) -> str:
    tag: str = read_pack(flow.pack).manifest["container_image"]["tag"]
    return tag


# -- rebuilds and repository changes -----------------------------------------------------------


def test_second_build_without_changes_uploads_nothing_and_writes_the_same_pack(
    make_flow: MakeFlow, registry_open: RegistryServer, runner_env: dict[str, str]
) -> None:
    flow = make_flow(
        config={"container_repository": f"{registry_open.host}/mp/rebuild{len(runner_env)}"},
        env=runner_env,
    )
    first = flow.ok()
    assert first["push"]["blobs_uploaded"] > 0
    # The base came from this registry (the SDK mirror): its layer is mounted, not uploaded.
    assert first["push"]["blobs_mounted"] >= 1
    assert first["push"]["bytes_uploaded"] < first["push"]["bytes_mounted"]
    assert first["saved_container_repository"] is None  # config.json already said so
    pack_bytes, config_bytes = flow.pack.read_bytes(), flow.config.read_bytes()

    # Same inputs, other file times (a fresh checkout): the same image and pack.
    later = time.time() + 3600
    for path in flow.project.rglob("*"):
        if path.is_file() and "build" not in path.relative_to(flow.project).parts:
            os.utime(path, (later, later))
    second = flow.ok()
    assert second["push"]["blobs_uploaded"] == 0
    assert second["push"]["bytes_uploaded"] == 0
    assert second["digest"] == first["digest"]
    assert second["tag"] == first["tag"]
    assert flow.pack.read_bytes() == pack_bytes
    assert flow.config.read_bytes() == config_bytes


def test_edited_container_repository_is_used_and_validated(
    make_flow: MakeFlow,
    registry_open: RegistryServer,
    registry_basic: RegistryServer,
    skopeo: Skopeo,
) -> None:
    host = registry_open.host
    flow = make_flow(config={"container_repository": f"{host}/mp/first", "other": [1, 2]})
    first = flow.ok()

    # FAQ: "replace the key-value for container_repository ... the new tag will be used
    # and validated."
    write_config(flow.project, {"container_repository": "Not A/Repository!", "other": [1, 2]})
    before = snapshot(flow.pack, flow.config)
    invalid = flow.fails()
    assert "container_repository" in invalid.stderr
    assert "(line 2)" in invalid.stderr
    assert_unchanged(before)

    # Pointing at a registry that needs a login is found out before the image build.
    locked = f"{registry_basic.host}/mp/locked"
    write_config(flow.project, {"container_repository": locked, "other": [1, 2]})
    before = snapshot(flow.pack, flow.config)
    denied = flow.fails()
    assert f"mpkit login {registry_basic.host}" in denied.stderr
    assert "installing requirements" not in denied.output
    assert_unchanged(before)

    write_config(flow.project, {"container_repository": f"{host}/mp/second", "other": [1, 2]})
    config_bytes = flow.config.read_bytes()
    second = flow.ok()
    assert second["digest"] == first["digest"]
    assert second["pushed_to"].startswith(f"{host}/mp/second:")
    check_pack(flow, registry=host, repository="mp/second", digest=second["digest"])
    image = f"{host}/mp/second@{second['digest']}"
    assert served_digest(skopeo, registry_open, image) == second["digest"]
    assert flow.config.read_bytes() == config_bytes  # nothing to save: it already says so


def test_push_repository_is_honoured_and_the_pull_repository_recorded(
    make_flow: MakeFlow, registry_open: RegistryServer, skopeo: Skopeo
) -> None:
    host = registry_open.host
    config = {
        "container_repository": f"{host}/mp/pull-side",
        "container_push_repository": f"{host}/staging/push-side",
    }
    flow = make_flow(config=config)
    config_bytes = flow.config.read_bytes()
    report = flow.ok()
    digest = report["digest"]

    assert report["pushed_to"].startswith(f"{host}/staging/push-side:")
    assert report["image"].startswith(f"{host}/mp/pull-side:")
    check_pack(flow, registry=host, repository="mp/pull-side", digest=digest)
    assert flow.config.read_bytes() == config_bytes  # never replaced by the push repository
    assert served_digest(skopeo, registry_open, f"{host}/staging/push-side@{digest}") == digest
    missing = skopeo.run(
        "inspect", *skopeo.args_for(registry_open, ""), f"docker://{host}/mp/pull-side@{digest}",
        check=False,
    )  # fmt: skip
    assert missing.returncode != 0  # pushed only where it was told to

    # --push-registry overrides container_push_repository the same way.
    flagged = flow.ok("--push-registry", f"{host}/staging/flag-side")
    assert flagged["pushed_to"].startswith(f"{host}/staging/flag-side:")
    check_pack(flow, registry=host, repository="mp/pull-side", digest=digest)
    assert flow.config.read_bytes() == config_bytes


# -- no repository and no terminal -------------------------------------------------------------


def test_without_a_terminal_and_a_repository_the_build_names_the_flag_and_key(
    make_flow: MakeFlow,
) -> None:
    flow = make_flow(config=None)
    result = flow.fails()
    assert "--registry-tag" in result.stderr
    assert "container_repository" in result.stderr
    assert flow.run("--json").json()["error"] == "no_registry"
    assert not flow.config.exists()
    assert not flow.pack.exists()


def test_no_ttl_on_a_terminal_never_prompts(make_flow: MakeFlow) -> None:
    flow = make_flow(config={})
    child, transcript = spawn_build(flow, "--no-ttl")
    status = finish(child)
    output = transcript.getvalue()
    assert status == 1, output
    assert "Container repository" not in output
    assert "--registry-tag" in output
    assert "container_repository" in output
    assert "Traceback" not in output
    assert read_config(flow.project) == {}


# -- failures leave the previous pack and config.json alone ------------------------------------


@pytest.fixture(scope="module")
def built_project(
    tmp_path_factory: pytest.TempPathFactory,
    sdk_base: SdkBase,
    registry_open: RegistryServer,
    shared_cache: Path,
) -> Path:
    """A project with a pack and a config.json from a successful build (copy before use)."""
    root = tmp_path_factory.mktemp("built")
    project = write_sdk_project(
        root / "project", config={"container_repository": f"{registry_open.host}/mp/built"}
    )
    env = flow_env(root / "user", base_registry_host=sdk_base.registry.host, cache=shared_cache)
    result = Mpkit(root=root / "user", env=env).run("build", str(project), timeout=BUILD_TIMEOUT)
    assert result.returncode == 0, result.output
    return project


def _break_manifest(project: Path) -> str:
    """A doubled comma after "vendor"; returns where the JSON error is."""
    lines = (project / "manifest.txt").read_text().splitlines(keepends=True)
    number = next(n for n, line in enumerate(lines) if '"vendor"' in line)
    lines[number] = lines[number].replace('",', '",,')
    (project / "manifest.txt").write_text("".join(lines))
    return f"line {number + 1}, column {lines[number].index(',,') + 2}"


def _break_config(project: Path) -> str:
    """A missing comma between two keys."""
    (project / "config.json").write_text('{\n    "container_repository": "a/b"\n    "x": 1\n}\n')
    return "line 3, column 5"


def _remove_eula(project: Path) -> str:
    (project / "eula.txt").unlink()
    return "eula.txt"


def _invalidate_describe(project: Path) -> str:
    """describe.xml without the vcops namespace: not an element of the SDK's schema."""
    path = project / "conf" / "describe.xml"
    path.write_bytes(path.read_bytes().replace(f' xmlns="{VCOPS_NAMESPACE}"'.encode(), b""))
    return "AdapterKind"


def _nest_manifest(project: Path) -> str:
    """100000 nested lists: a RecursionError for Python's json module."""
    (project / "manifest.txt").write_text('{"platform": ' + "[" * 100_000)
    return "nesting deeper than 100 levels at line 1, column 113"


def _copy_nothing(project: Path) -> str:
    """A COPY whose wildcard matches nothing (podman and Docker's classic builder fail it)."""
    dockerfile = project / "Dockerfile"
    lines = dockerfile.read_text().splitlines()
    dockerfile.write_text("\n".join([*lines, "COPY nomatch*.txt /x/"]) + "\n")
    return f"line {len(lines) + 1}: COPY nomatch*.txt /x/: no file in the build context matches"


def _link_eula_outside(project: Path) -> str:
    host = project.parent / "host-eula.txt"
    host.write_text("a file of this machine\n")
    (project / "eula.txt").unlink()
    (project / "eula.txt").symlink_to(host)
    return f"the symbolic link 'eula.txt' points outside the project {project}"


FAILURES: dict[str, tuple[Callable[[Path], str], str]] = {
    "malformed-manifest": (_break_manifest, "manifest.txt"),
    "malformed-config": (_break_config, "config.json"),
    "missing-eula": (_remove_eula, "eula_file"),
    "invalid-describe": (_invalidate_describe, "describe.xml"),
    "deeply-nested-manifest": (_nest_manifest, "manifest.txt"),
    "copy-matching-nothing": (_copy_nothing, "Dockerfile"),
    "eula-linked-outside": (_link_eula_outside, "--allow-external-links"),
}


def copy_of(built_project: Path, make_flow: MakeFlow, **kwargs: Any) -> Flow:
    """A fresh user with a copy of *built_project* (its pack and config.json included)."""
    flow = make_flow(**kwargs)
    shutil.rmtree(flow.project)
    shutil.copytree(built_project, flow.project)
    return flow


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_broken_project_files_fail_clearly_and_touch_nothing(
    case: str, built_project: Path, make_flow: MakeFlow
) -> None:
    flow = copy_of(built_project, make_flow)
    breakage, file_or_key = FAILURES[case]
    where = breakage(flow.project)
    before = snapshot(flow.pack, flow.config)
    result = flow.fails()
    assert file_or_key in result.stderr, result.stderr
    assert where in result.stderr, result.stderr
    assert_unchanged(before)


def test_links_out_of_the_project_need_the_opt_in(
    make_flow: MakeFlow, registry_open: RegistryServer, tmp_path: Path
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "eula.txt").write_text("the company-wide EULA\n")
    (host / "alerts.xml").write_text("<AlertDefinitions shared='yes'/>\n")
    (host / "helper.py").write_text("HELPER = 1\n")
    flow = make_flow(config={"container_repository": f"{registry_open.host}/mp/links"})
    (flow.project / "eula.txt").unlink()
    (flow.project / "eula.txt").symlink_to(host / "eula.txt")
    (flow.project / "content/alertdefs/shared.xml").symlink_to(host / "alerts.xml")
    (flow.project / "app/helper.py").symlink_to(host / "helper.py")
    (flow.project / "app/alias.py").symlink_to("adapter.py")  # inside: always fine

    refused = flow.fails()
    assert "the symbolic link 'eula.txt' points outside the project" in refused.stderr
    assert "installing requirements" not in refused.output  # found before the image build

    report = flow.ok("--allow-external-links")
    contents = check_pack(flow, registry=registry_open.host, repository="mp/links",
                          digest=report["digest"])  # fmt: skip
    assert contents.entries["eula.txt"] == b"the company-wide EULA\n"
    assert contents.entries["content/alertdefs/shared.xml"].startswith(b"<AlertDefinitions")
    # The same opt-in from the environment, and through mp-build: the same image.
    again = run_mp_build(flow, "--no-ttl", env={"MPKIT_ALLOW_EXTERNAL_LINKS": "1"})
    assert again.returncode == 0, again.output
    assert read_pack(flow.pack).manifest["container_image"]["digest"] == report["digest"]
    flagged = run_mp_build(flow, "--no-ttl", "--allow-external-links")
    assert flagged.returncode == 0, flagged.output


def _properties_in_dashboards(project: Path) -> str:
    (project / "content" / "dashboards" / "Extra.properties").write_text("a=b\n")
    return "found the properties file content/dashboards/Extra.properties"


def _describe_of_another_kind(project: Path) -> str:
    """describe.xml's key is not manifest.txt's adapter kind (the SDK checks it first)."""
    path = project / "conf" / "describe.xml"
    path.write_bytes(path.read_bytes().replace(b'key="MyAdapter"', b'key="OtherKind"', 1))
    return "'OtherKind'"


def _invalid_describe(project: Path) -> str:
    _invalidate_describe(project)
    return "describe.xml"


BEFORE_THE_BUILD: dict[str, Callable[[Path], str]] = {
    "invalid-describe": _invalid_describe,
    "properties-in-dashboards": _properties_in_dashboards,
    "describe-of-another-kind": _describe_of_another_kind,
}


@pytest.mark.parametrize("case", sorted(BEFORE_THE_BUILD))
def test_what_needs_no_image_fails_before_the_image_build(
    case: str, built_project: Path, make_flow: MakeFlow
) -> None:
    flow = copy_of(built_project, make_flow)
    change_app(flow.project, "a change that would need a push")
    expected = BEFORE_THE_BUILD[case](flow.project)
    result = flow.fails()
    assert expected in result.stderr, result.stderr
    assert "installing requirements" not in result.output
    assert "uploaded" not in result.output


@dataclass(frozen=True)
class RegistryCase:
    args: list[str]
    env: dict[str, str]
    expected: list[str]  # in the message
    code: str  # the --json error code


def _wrong_credentials(request: pytest.FixtureRequest) -> RegistryCase:
    registry: RegistryServer = request.getfixturevalue("registry_token")
    return RegistryCase(
        ["--registry-tag", f"{registry.host}/private/wrong"],
        creds(registry, WRONG_PASSWORD),
        ["rejected the credentials", registry.host],
        "authentication_failed",
    )


def _connection_dropped(request: pytest.FixtureRequest) -> RegistryCase:
    """A registry that is down behind a load balancer: connections are accepted and cut."""
    listener = ClosingListener().__enter__()
    request.addfinalizer(lambda: listener.__exit__(None, None, None))
    # A dropped connection may be transient: by default it is retried for ~10 s.
    args = ["--registry-tag", f"{listener.host}/mp/unreachable", "--retries", "2"]
    return RegistryCase(args, {}, [listener.host], "registry_unreachable")


def _proxy_down(request: pytest.FixtureRequest) -> RegistryCase:
    """A remote registry behind the HTTPS proxy, which is down (nothing leaves loopback)."""
    return RegistryCase(
        ["--registry-tag", f"{REMOTE_REGISTRY}/mp/proxied"],
        {"HTTPS_PROXY": f"http://127.0.0.1:{free_port()}"},
        [f"cannot reach registry {REMOTE_REGISTRY}", "HTTPS_PROXY"],
        "registry_unreachable",
    )


def _endpoint_down(request: pytest.FixtureRequest) -> RegistryCase:
    """A remote registry reached through a local endpoint (a tunnel) that is down."""
    endpoint = f"127.0.0.1:{free_port()}"
    return RegistryCase(
        ["--registry-tag", f"{REMOTE_REGISTRY}/mp/tunnelled"],
        {"MPKIT_REGISTRY_ENDPOINTS": f"{REMOTE_REGISTRY}={endpoint}"},
        [REMOTE_REGISTRY, endpoint],
        "registry_unreachable",
    )


def _denied(request: pytest.FixtureRequest) -> RegistryCase:
    registry: RegistryServer = request.getfixturevalue("registry_basic")
    return RegistryCase(
        ["--registry-tag", f"{registry.host}/mp/denied"],
        {},
        ["denied", f"mpkit login {registry.host}"],
        "access_denied",
    )


REGISTRY_FAILURES: dict[str, Callable[[pytest.FixtureRequest], RegistryCase]] = {
    "wrong-credentials": _wrong_credentials,
    "connection-dropped": _connection_dropped,
    "proxy-down": _proxy_down,
    "endpoint-down": _endpoint_down,
    "basic-auth-without-credentials": _denied,
}


@pytest.mark.parametrize(
    "case",
    [pytest.param(name) for name in sorted(REGISTRY_FAILURES)],
)
def test_registry_failures_are_clear_and_touch_nothing(
    case: str, built_project: Path, make_flow: MakeFlow, request: pytest.FixtureRequest
) -> None:
    failure = REGISTRY_FAILURES[case](request)
    flow = copy_of(built_project, make_flow, env=failure.env)
    before = snapshot(flow.pack, flow.config)
    result = flow.fails(*failure.args)
    for text in failure.expected:
        assert text in result.stderr, result.stderr
    assert_unchanged(before)
    as_json = flow.run("--json", *failure.args)  # for CI: one JSON object, same exit code
    assert as_json.returncode == 1
    assert as_json.json()["error"] == failure.code
    assert_unchanged(before)
    assert WRONG_PASSWORD not in result.output
    assert WRONG_PASSWORD.encode() not in (flow.project / "logs" / "build.log").read_bytes()
    # Checked before the image build: a failure costs no build time.
    assert "installing requirements" not in result.output


# -- AWS ECR through moto ----------------------------------------------------------------------


def require_module(name: str) -> None:
    """Like ``require_tool``, for a Python module: skip locally, fail under CI."""
    if importlib.util.find_spec(name.partition(".")[0]) is None:
        message = f"the Python package {name.partition('.')[0]!r} is not installed"
        unavailable(message)


@pytest.fixture
def moto_ecr(tmp_path: Path) -> Iterator[dict[str, str]]:
    """moto in server mode on 127.0.0.1; the AWS environment that points boto3 at it."""
    require_module("moto.server")
    port = free_port()
    process = ManagedProcess(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        log_path=tmp_path / "moto.log", name=f"moto:{port}",
    )  # fmt: skip
    process.start(http_ready("127.0.0.1", port, "/moto-api/"), timeout=30)
    try:
        yield {
            "AWS_ENDPOINT_URL_ECR": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": ECR_REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        }
    finally:
        process.stop()


def test_ecr_missing_repository_then_push_with_the_aws_token(
    make_flow: MakeFlow, make_registry: MakeRegistry, moto_ecr: dict[str, str], skopeo: Skopeo
) -> None:
    require_module("boto3")
    import boto3

    # The registry standing in for ECR accepts only the token moto hands out.
    registry = make_registry(mode="basic", users={"AWS": MOTO_PASSWORD})
    flow = make_flow(
        config={}, env={**moto_ecr, "MPKIT_REGISTRY_ENDPOINTS": f"{ECR_HOST}={registry.host}"}
    )
    config_bytes = flow.config.read_bytes()
    missing = flow.fails("--registry-tag", f"{ECR_HOST}/{ECR_NAME}")
    expected_hint = f"aws ecr create-repository --repository-name {ECR_NAME} --region {ECR_REGION}"
    assert expected_hint in missing.stderr
    assert flow.config.read_bytes() == config_bytes
    assert not flow.pack.exists()

    ecr = boto3.client(
        "ecr", region_name=ECR_REGION, endpoint_url=moto_ecr["AWS_ENDPOINT_URL_ECR"],
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    ecr.create_repository(repositoryName=ECR_NAME)
    report = flow.ok("--registry-tag", f"{ECR_HOST}/{ECR_NAME}")
    digest = report["digest"]
    check_pack(flow, registry=ECR_HOST, repository=ECR_NAME, digest=digest)
    assert read_config(flow.project) == {"container_repository": f"{ECR_HOST}/{ECR_NAME}"}
    assert MOTO_PASSWORD not in json.dumps(report)
    image = f"{registry.host}/{ECR_NAME}@{digest}"
    assert served_digest(skopeo, registry, image, ("AWS", MOTO_PASSWORD)) == digest


# -- the SDK's mp-build command line -----------------------------------------------------------


def mp_build_argv() -> list[str]:
    script = Path(sys.executable).with_name("mp-build")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from mpkit.cli.build import mp_build; mp_build()"]


def run_mp_build(flow: Flow, *args: str, env: Mapping[str, str] | None = None) -> CommandResult:
    argv = [*mp_build_argv(), "-p", str(flow.project), *args]
    done = subprocess.run(
        argv, env={**flow.cli.env, **(env or {})}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False,
    )  # fmt: skip
    return CommandResult(argv, done.returncode, done.stdout, done.stderr)


def test_mp_build_with_the_password_in_the_environment(
    make_flow: MakeFlow, registry_token: RegistryServer, skopeo: Skopeo
) -> None:
    host, password = registry_token.host, registry_token.users["alice"]
    flow = make_flow(config={})
    result = run_mp_build(
        flow, "-r", f"{host}/private/compat", "--registry-username", "alice", "--no-ttl",
        env={"MPKIT_REGISTRY_PASSWORD": password},
    )  # fmt: skip
    assert result.returncode == 0, result.output
    assert "process list" not in result.stderr  # that warning is for --registry-password
    digest = read_pack(flow.pack).manifest["container_image"]["digest"]
    check_pack(flow, registry=host, repository="private/compat", digest=digest)
    image = f"{host}/private/compat@{digest}"
    assert served_digest(skopeo, registry_token, image, alice(registry_token)) == digest
    assert read_config(flow.project) == {"container_repository": f"{host}/private/compat"}
    assert_secret_nowhere(password, result.output, files=[flow.project / "logs" / "build.log"])
    assert not flow.cli.docker_config.exists()  # flags are used, never stored


def test_mp_build_registry_password_flag_works_with_a_warning(
    make_flow: MakeFlow, registry_token: RegistryServer
) -> None:
    host, password = registry_token.host, registry_token.users["alice"]
    flow = make_flow(config={})
    result = run_mp_build(
        flow, "-r", f"{host}/private/flagged", "--registry-username", "alice",
        "--registry-password", password, "--no-ttl", "--debug",
    )  # fmt: skip
    assert result.returncode == 0, result.output
    assert "process list" in result.stderr
    assert flow.pack.is_file()
    assert_secret_nowhere(password, result.output, files=[flow.project / "logs" / "build.log"])


def test_mp_build_default_registry_and_insecure_collector(
    make_flow: MakeFlow, registry_open: RegistryServer
) -> None:
    flow = make_flow(config={})
    host = registry_open.host
    result = run_mp_build(flow, "-r", f"{host}/mp/default-registry", "--use-default-registry",
                          "-i", "--no-ttl")  # fmt: skip
    assert result.returncode == 0, result.output
    digest = read_pack(flow.pack).manifest["container_image"]["digest"]
    contents = check_pack(
        flow, registry=None, repository="mp/default-registry", digest=digest,
        protocol="http", port="8080",
    )  # fmt: skip
    assert "REGISTRY" not in contents.kind_conf()
    assert "registry" not in contents.manifest["container_image"]


# -- Docker Hub, served locally ----------------------------------------------------------------


def test_docker_hub_repository_warns_about_the_anonymous_pull_allowance(
    make_flow: MakeFlow,
) -> None:
    """docker.io is served by a local fake (MPKIT_REGISTRY_ENDPOINTS); nothing leaves the
    machine. Docker Hub answers a manifest HEAD (which costs no pull) with its RateLimit
    headers."""

    def rate_limited(request: Request) -> Reply | None:
        if request.method != "HEAD" or "/manifests/sha256:" not in request.path:
            return None
        digest = request.path.rpartition("/")[2]
        return Reply(200, {
            "Docker-Content-Digest": digest,
            "Content-Type": "application/vnd.oci.image.manifest.v1+json",
            "RateLimit-Limit": DOCKER_HUB_LIMIT, "RateLimit-Remaining": DOCKER_HUB_REMAINING,
        })  # fmt: skip

    with FakeRegistry() as hub:
        hub.route("HEAD", r"/manifests/sha256:", rate_limited)
        flow = make_flow(config={}, env={"MPKIT_REGISTRY_ENDPOINTS": f"docker.io={hub.host}"})
        result = flow.run("--registry-tag", "alice/myadapter")
        assert result.returncode == 0, result.output
        anonymous_heads = [
            s for s in hub.requests("HEAD", r"/v2/alice/myadapter/manifests/sha256:")
            if s.authorization is None
        ]  # fmt: skip
    assert anonymous_heads, "the allowance must be asked anonymously, as Aria pulls"
    assert "warning:" in result.stderr
    assert "Docker Hub limits anonymous pulls" in result.stderr
    assert DOCKER_HUB_LIMIT in result.stderr and DOCKER_HUB_REMAINING in result.stderr
    assert read_config(flow.project) == {"container_repository": "docker.io/alice/myadapter"}
    contents = read_pack(flow.pack)
    assert contents.kind_conf()["REGISTRY"] == "docker.io"
    assert contents.kind_conf()["REPOSITORY"] == "/alice/myadapter"


# -- Ctrl-C ------------------------------------------------------------------------------------


def test_ctrl_c_during_the_push_cancels_and_keeps_the_previous_outputs(
    make_flow: MakeFlow,
    registry_open: RegistryServer,
    make_fault_proxy: MakeFaultProxy,
    runner_env: dict[str, str],
) -> None:
    proxy = make_fault_proxy(registry_open)
    flow = make_flow(config={"container_repository": f"{proxy.host}/mp/cancel"}, env=runner_env)
    flow.ok()
    change_app(flow.project, "changed, so the next push uploads the app layer")
    before = snapshot(flow.pack, flow.config)
    # Uploads (and the sessions the push access check opens while the build runs) take two
    # minutes: a build that waited for one after Ctrl-C would outlast the wait below by far.
    stalled = proxy.delay(None, r"/blobs/uploads/", 120.0, times=None)

    argv = [sys.executable, "-m", "mpkit", "build", str(flow.project)]
    process = subprocess.Popen(
        argv, env=flow.cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + BUILD_TIMEOUT
        while stalled.hits == 0 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stalled.hits > 0, "the push never reached the registry"
        os.kill(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode not in (0, None), stdout + stderr
    assert "Build cancelled" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    assert_unchanged(before)
    leftovers = [p.name for p in flow.pack.parent.iterdir() if p.name != flow.pack.name]
    assert leftovers == []


def test_ctrl_c_on_a_terminal_during_the_base_pull_cancels_cleanly(
    make_flow: MakeFlow,
    registry_open: RegistryServer,
    sdk_base: SdkBase,
    make_fault_proxy: MakeFaultProxy,
    tmp_path: Path,
    runner_env: dict[str, str],
) -> None:
    """Ctrl-C on a terminal (SIGINT to the whole foreground process group) while the base
    image's layer is being downloaded into an empty cache; then the same cache still
    builds: no half-written blob was kept."""
    flow = make_flow(
        config={"container_repository": f"{registry_open.host}/mp/interrupted"}, env=runner_env
    )
    first = flow.ok()
    before = snapshot(flow.pack, flow.config)
    mirror = make_fault_proxy(sdk_base.registry)
    stalled = mirror.delay("GET", r"/blobs/sha256:", 5.0, times=None)
    flow.cli.env.update({
        "MPKIT_MIRRORS": sdk_mirror(mirror.host),
        "MPKIT_CACHE_DIR": str(tmp_path / "empty-cache"),
    })  # fmt: skip

    child, transcript = spawn_build(flow)
    deadline = time.monotonic() + BUILD_TIMEOUT
    while stalled.hits == 0 and child.isalive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stalled.hits > 0, transcript.getvalue()
    child.sendintr()
    status = finish(child)
    output = transcript.getvalue()
    assert status not in (0, -1), output
    assert "Build cancelled" in output, output
    assert "Traceback" not in output, output
    assert_unchanged(before)

    mirror.clear_faults()
    assert flow.ok()["digest"] == first["digest"]


def test_ctrl_c_at_the_repository_prompt_cancels_without_writing(
    make_flow: MakeFlow, runner_env: dict[str, str]
) -> None:
    flow = make_flow(config={"custom_key": 1}, env=runner_env)
    before = snapshot(flow.config)
    child, transcript = spawn_build(flow)
    child.expect(r"Container repository[^\n]*: ")
    # The whole prompt is out; give input() a moment to start reading the terminal, so
    # the interrupt reaches a waiting prompt (as a user's would), not its set-up.
    time.sleep(0.3)
    child.sendintr()
    status = finish(child)
    output = transcript.getvalue()
    assert status == 1, output
    assert "Build cancelled" in output, output
    assert "Traceback" not in output, output
    assert_unchanged(before)
    assert not flow.pack.exists()
