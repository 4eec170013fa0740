"""What a rebuild asks of the container engine, counted with fake engines on PATH.

An unchanged image runs no container; an app-only change runs exactly one, without the
image's server (the base's API version is known) and without removing anything the new
image shares; an engine that cannot run containers is tried once, however many builds
follow. The fakes answer as podman/docker would and write what the definition runner in
the container would have written into the mounted directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mpkit.describe import DescribeResults, describe_before_push, describe_for_build
from mpkit.describe import definition as definition_module
from mpkit.describe import results as results_module
from mpkit.describe.definition import RUNNER
from mpkit.describe.hostway import HostUnsuitable
from mpkit.describe.imageway import kept_name
from mpkit.engine import EngineChoice
from mpkit.errors import AdapterDefinitionError, AdapterKindMismatchError
from mpkit.image import mediatypes as mt
from mpkit.image.types import Blob, Image, Layer
from mpkit.imagebuild.assemble import BASE_DIGEST, canonical_json
from mpkit.project.load import load_project
from mpkit.project.model import Project
from tests.describe.conftest import sample_definition, write_project
from tests.fixtures.fakeengine import Call, FakeEngine, MakeFakeEngine

BASE = "sha256:" + "ba5e" * 16
REPOSITORY = "127.0.0.1:5000/team/adapter"
RLIMIT = (
    "Error: runc: runc create failed: unable to start container process: error during "
    "container init: error setting rlimits for ready process: error setting rlimit type 7: "
    "operation not permitted: OCI permission denied"
)


def adapter_image(app: str, base: str = BASE) -> Image:
    """An image of the base's layer plus an app layer (the fakes never read layers)."""
    layers = [Layer.from_bytes(f"base {base}".encode(), mt.DOCKER_LAYER_GZIP),
              Layer.from_bytes(f"app {app}".encode(), mt.DOCKER_LAYER_GZIP)]  # fmt: skip
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["python3"], "Cmd": ["-m", "swagger_server"],
                   "WorkingDir": "/home/aria-ops-adapter-user/src/app",
                   "Labels": {BASE_DIGEST: base}},
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
    }  # fmt: skip
    blob = Blob.from_bytes(canonical_json(config), mt.DOCKER_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST,
                "config": blob.descriptor.to_dict(),
                "layers": [layer.descriptor.to_dict() for layer in layers]}  # fmt: skip
    return Image(canonical_json(manifest), blob, layers)


def runner_result(exit_code: int = 0, **extra: Any) -> dict[str, str]:
    """What the definition runner writes into /io when the adapter exits *exit_code*."""
    result = {
        "started": True, "command": ["/usr/local/bin/python", "app/adapter.py"],
        "exit_code": exit_code, "timed_out": False, "start_error": None,
        "stdout": "", "stderr": "adapter says hello\n", "logs": {}, **extra,
    }  # fmt: skip
    definition = json.dumps(sample_definition()) if exit_code == 0 else ""
    return {"result.json": json.dumps(result), "output.json": definition}


def working_engine(fake: FakeEngine, **result: Any) -> FakeEngine:
    """An engine that has nothing yet, pulls, tags and runs the runner successfully."""
    fake.respond("image", "exists", exit=1)
    fake.respond("image", "inspect", exit=125, stderr="Error: image not known")
    fake.respond("run", files=runner_result(**result))
    return fake


def run_calls(fake: FakeEngine) -> list[Call]:
    return [call for call in fake.calls if call.argv[:1] == ["run"]]


def job_of(call: Call) -> dict[str, Any]:
    job: dict[str, Any] = json.loads(call.mounted["job.json"])
    return job


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return load_project(write_project(tmp_path / "project", "TestAdapter",
                                      {"definition": sample_definition()}))  # fmt: skip


@pytest.fixture
def results(tmp_path: Path) -> DescribeResults:
    return DescribeResults.under(tmp_path / "cache")


def describe(
    project: Project, image: Image, results: DescribeResults, log: list[str], way: str = "auto"
) -> Any:
    return describe_for_build(
        project, image, engine=EngineChoice.AUTO, way=way,
        pushed_reference=f"{REPOSITORY}:1.0.0_x", results=results, log=log.append,
    )  # fmt: skip


def test_no_change_runs_nothing_and_an_app_change_runs_one_short_container(
    fake_engines: MakeFakeEngine, project: Project, results: DescribeResults
) -> None:
    podman = working_engine(fake_engines("podman"), api_version="2.1.0",
                            api_version_outcome="version")  # fmt: skip
    log: list[str] = []
    first = describe(project, adapter_image("v1"), results, log)
    assert first.api_version == "2.1.0" and first.definition is not None
    assert not first.definition.from_cache
    [run] = run_calls(podman)
    assert job_of(run)["server"] == ["python3", "-m", "swagger_server"]  # asked the server
    assert run.argv[-3:] == [kept_name(project), "/io/runner.py", "/io"]

    # No change: the same image digest. Not one engine command.
    before = len(podman.calls)
    again = describe(project, adapter_image("v1"), results, log)
    assert len(podman.calls) == before
    assert again.definition is not None and again.definition.from_cache
    assert (again.describe_xml, again.api_version) == (first.describe_xml, "2.1.0")

    # An app-only change (same base): one run, without the server; nothing forced out.
    old_id = "0123abcd" * 8
    previous = {"Id": old_id, "RepoTags": [kept_name(project)], "RepoDigests": []}
    podman.respond("image", "inspect", kept_name(project), stdout=json.dumps([previous]),
                   first=True)  # fmt: skip
    podman.respond("image", "inspect", old_id, stdout=json.dumps([{**previous, "RepoTags": []}]),
                   first=True)  # fmt: skip
    changed = describe(project, adapter_image("v2"), results, log)
    new_calls = podman.calls[before:]
    [run] = run_calls(podman)[1:]
    assert job_of(run)["server"] is None
    assert changed.api_version == "2.1.0"
    assert changed.definition is not None
    assert "remembered for this base image" in changed.definition.api_version_source
    assert [c.argv[0] for c in new_calls if c.argv[0] in ("pull", "load")] == ["pull"]
    removals = [call.argv for call in new_calls if call.argv[0] == "rmi"]
    pulled = next(call.argv[-1] for call in new_calls if call.argv[0] == "pull")
    # Only the pulled name (the image stays, under the kept name) and the old app image,
    # which nothing else names; never --force, so shared layers and used images stay.
    assert removals == [["rmi", pulled], ["rmi", old_id]]


def test_a_broken_engine_is_tried_once_across_builds(
    fake_engines: MakeFakeEngine, project: Project, results: DescribeResults
) -> None:
    podman = fake_engines("podman")
    podman.respond("image", "exists", exit=1)
    podman.respond("image", "inspect", exit=125, stderr="Error: image not known")
    podman.respond("run", exit=126, stderr=RLIMIT)
    docker = working_engine(fake_engines("docker"))
    log: list[str] = []
    first = describe(project, adapter_image("v1"), results, log)
    assert first.definition is not None and first.definition.engine == "docker"
    assert len(run_calls(podman)) == 1
    assert ["rmi", kept_name(project)] in [call.argv for call in podman.calls]  # keeps nothing
    [reported] = [line for line in log if line.startswith("podman cannot")]
    assert reported.startswith("podman cannot run containers here (")
    assert reported.endswith("operation not permitted: OCI permission denied); using docker")

    asked = len(podman.calls)
    log.clear()
    second = describe(project, adapter_image("v2"), results, log)
    assert len(podman.calls) == asked  # not even looked at
    assert second.definition is not None and second.definition.engine == "docker"
    assert len(run_calls(docker)) == 2
    assert not [line for line in log if "podman" in line]


@pytest.mark.parametrize(
    ("case", "answer"),
    [("the adapter fails", {"files": runner_result(exit_code=1)}),
     ("the image has no python3", {"exit": 127, "stderr": 'Error: runc: exec: "python3": '
                                   "executable file not found in $PATH"})],
)  # fmt: skip
def test_a_failure_inside_the_container_does_not_condemn_the_engine(
    fake_engines: MakeFakeEngine,
    project: Project,
    results: DescribeResults,
    case: str,
    answer: dict[str, Any],
) -> None:
    podman = fake_engines("podman")
    podman.respond("image", "exists", exit=1)
    podman.respond("image", "inspect", exit=125, stderr="Error: image not known")
    podman.respond("run", **answer)
    for attempt in (1, 2):
        with pytest.raises(AdapterDefinitionError) as caught:
            describe(project, adapter_image("v1"), results, [], way="image")
        assert "cannot run containers here" not in caught.value.message, case
        assert len(run_calls(podman)) == attempt  # asked again: the engine is fine


def test_a_corrupt_result_is_asked_again_and_rewritten(
    fake_engines: MakeFakeEngine, project: Project, results: DescribeResults
) -> None:
    podman = working_engine(fake_engines("podman"))
    describe(project, adapter_image("v1"), results, [])
    [entry] = results.root.glob("definitions/*.json")
    entry.write_text('{"definition": {"adapter_key"')  # e.g. a disk that filled up
    again = describe(project, adapter_image("v1"), results, [])
    assert again.definition is not None and not again.definition.from_cache
    assert len(run_calls(podman)) == 2
    assert json.loads(entry.read_text())["definition"] == sample_definition()
    describe(project, adapter_image("v1"), results, [])
    assert len(run_calls(podman)) == 2


def test_a_new_runner_asks_again(
    fake_engines: MakeFakeEngine,
    project: Project,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    podman = working_engine(fake_engines("podman"))
    describe(project, adapter_image("v1"), DescribeResults.under(tmp_path / "cache"), [])
    changed = tmp_path / "runner.py"
    changed.write_text(RUNNER.read_text() + "\n# a new unit table extraction\n")
    monkeypatch.setattr(results_module, "ASKERS", (changed,))
    describe(project, adapter_image("v1"), DescribeResults.under(tmp_path / "cache"), [])
    assert len(run_calls(podman)) == 2


def test_before_the_push_an_engine_defers_and_a_remembered_image_is_checked(
    fake_engines: MakeFakeEngine, project: Project, results: DescribeResults
) -> None:
    podman = working_engine(fake_engines("podman"))
    log: list[str] = []
    # The image way is next, and it is to pull the pushed image: nothing is run yet.
    assert describe_before_push(project, adapter_image("v1"), results=results,
                                log=log.append) is None  # fmt: skip
    assert podman.calls == [] and log == []

    first = describe(project, adapter_image("v1"), results, log)  # after the push
    again = describe_before_push(project, adapter_image("v1"), results=results)
    assert again is not None and again.definition is not None and again.definition.from_cache
    assert again.describe_xml == first.describe_xml
    assert len(run_calls(podman)) == 1

    # A remembered definition is checked before the push, too.
    wrong = load_project(write_project(project.root.parent / "wrong", "TestAdapter",
                                       {"definition": sample_definition()},
                                       manifest_kind="OtherKind"))  # fmt: skip
    with pytest.raises(AdapterKindMismatchError):
        describe_before_push(wrong, adapter_image("v1"), results=results)
    assert len(run_calls(podman)) == 1


def test_before_the_push_a_broken_engine_does_not_defer(
    fake_engines: MakeFakeEngine,
    project: Project,
    results: DescribeResults,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An engine known not to run containers will not be tried after the push either, so
    the way after it is taken now: the host way, which this host cannot take here."""
    tried: list[str] = []

    def no_host_way(*args: Any) -> None:
        tried.append("host")
        raise HostUnsuitable("not this host")

    monkeypatch.setattr(definition_module, "plan_host_run", no_host_way)
    podman = fake_engines("podman")
    podman.respond("image", "exists", exit=1)
    podman.respond("image", "inspect", exit=125, stderr="Error: image not known")
    podman.respond("run", exit=126, stderr=RLIMIT)
    with pytest.raises(AdapterDefinitionError):
        describe(project, adapter_image("v1"), results, [], way="image")  # found broken
    asked = len(podman.calls)
    tried.clear()
    with pytest.raises(AdapterDefinitionError, match="the host way is not possible: not this"):
        describe_before_push(project, adapter_image("v1"), results=results)
    assert len(podman.calls) == asked and tried == ["host"]
