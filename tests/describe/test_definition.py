"""Asking a built adapter for its definition: in the image (podman) and on the host."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from mpkit.describe import adapter_definition, describe_for_build, generate_describe
from mpkit.describe.definition import DefinitionResult
from mpkit.engine import EngineChoice
from mpkit.errors import AdapterDefinitionError, AdapterKindMismatchError, DescribeError
from tests.describe.conftest import MakeAdapter, sample_definition
from tests.describe.test_generate import ScriptedPrompter
from tests.fixtures.baseimage import USER_ID, WORKDIR
from tests.fixtures.fakeengine import FakeEngine
from tests.fixtures.podman import Podman

HOST_LOG = Path("/var/log/adapter.log")


def report(result: DefinitionResult) -> dict[str, Any]:
    """What the test adapter said about where it ran (a REPORT line on stderr)."""
    line = next(x for x in result.stderr.splitlines() if x.startswith("REPORT "))
    data: dict[str, Any] = json.loads(line.removeprefix("REPORT "))
    return data


def host_log_state() -> tuple[float, int] | None:
    return (HOST_LOG.stat().st_mtime, HOST_LOG.stat().st_size) if HOST_LOG.exists() else None


def test_both_ways_give_the_same_definition_and_describe(
    make_adapter: MakeAdapter, podman_env: Podman, build_cache: Path
) -> None:
    built = make_adapter({"definition": sample_definition(), "stderr": "warming up\n"})
    image = built.build.image
    before = host_log_state()
    in_image = adapter_definition(built.project, image, way="image")
    on_host = adapter_definition(built.project, image, way="host", cache_dir=build_cache)
    assert host_log_state() == before  # the host's /var/log was not touched

    assert in_image.way == "image" and in_image.engine == "podman"
    assert on_host.way == "host" and on_host.engine is None
    assert in_image.definition == on_host.definition == sample_definition()
    assert in_image.api_version == on_host.api_version == "1.0.0"
    assert "GET /apiVersion" in in_image.api_version_source
    assert "default" in on_host.api_version_source
    assert "warming up" in in_image.stderr and "warming up" in on_host.stderr

    inside, outside = report(in_image), report(on_host)
    assert (inside["uid"], inside["cwd"]) == (USER_ID, WORKDIR)
    assert outside["cwd"].endswith(WORKDIR) and outside["cwd"] != WORKDIR
    assert outside["python"] == ".".join(map(str, sys.version_info[:3]))

    describe = generate_describe(in_image.definition, built.project, units=in_image.units)
    assert describe == generate_describe(on_host.definition, built.project, units=on_host.units)


def test_auto_prefers_the_image_when_podman_works(
    make_adapter: MakeAdapter, podman_env: Podman
) -> None:
    built = make_adapter({"definition": sample_definition()})
    result = adapter_definition(built.project, built.build.image)
    assert result.way == "image"
    assert "podman ran the built image" in result.reason
    assert result.to_dict()["way"] == "image"


@pytest.mark.usefixtures("no_engine")
def test_without_an_engine_auto_uses_the_host(make_adapter: MakeAdapter, build_cache: Path) -> None:
    built = make_adapter({"definition": sample_definition()})
    result = adapter_definition(built.project, built.build.image, cache_dir=build_cache)
    assert result.way == "host"
    assert "no container engine (podman or docker) is installed" in result.reason
    assert "can load the image's packages" in result.reason
    result = adapter_definition(built.project, built.build.image, engine=EngineChoice.NONE,
                                cache_dir=build_cache)  # fmt: skip
    assert "--engine none rules out container engines" in result.reason
    with pytest.raises(AdapterDefinitionError, match="podman is not installed"):
        adapter_definition(
            built.project, built.build.image, engine=EngineChoice.PODMAN, way="image"
        )


def test_a_broken_engine_falls_back_to_the_host_and_is_remembered(
    make_adapter: MakeAdapter, build_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    podman = FakeEngine(fake_bin, "podman")
    podman.respond(exit=125, stderr="Error: no storage here")
    monkeypatch.setenv("PATH", f"{fake_bin}:{Path(sys.executable).parent}:/usr/bin:/bin")
    built = make_adapter({"definition": sample_definition()})
    logged: list[str] = []
    result = adapter_definition(built.project, built.build.image, engine=EngineChoice.PODMAN,
                                cache_dir=build_cache, log=logged.append)  # fmt: skip
    assert result.way == "host"
    assert "podman cannot run containers here (Error: no storage here)" in result.reason
    assert (
        "podman cannot run containers here (Error: no storage here); using the host's Python"
        in (logged)
    )
    tried = len(podman.calls)
    # The next build knows: podman is not asked, and the error says why and how to retry.
    with pytest.raises(AdapterDefinitionError) as caught:
        adapter_definition(
            built.project, built.build.image, engine=EngineChoice.PODMAN, way="image"
        )
    assert "podman could not run containers here 0 min ago (Error: no storage here)" in (
        caught.value.message
    )
    assert "MPKIT_ENGINE_RECHECK=1 or 'mpkit cache prune' tries it again" in caught.value.message
    assert len(podman.calls) == tried
    monkeypatch.setenv("MPKIT_ENGINE_RECHECK", "1")
    with pytest.raises(AdapterDefinitionError, match="podman cannot run containers here"):
        adapter_definition(
            built.project, built.build.image, engine=EngineChoice.PODMAN, way="image"
        )
    assert len(podman.calls) > tried


BROKEN = {
    "crash": (
        {"crash": "definition exploded", "stderr": "loading the definition\n"},
        ["failed with exit status 1", "RuntimeError: definition exploded",
         "loading the definition", "adapter log: adapter_definition"],
    ),
    "invalid-json": ({"raw": "{not json", "stderr": "half way\n"},
                     ["wrote invalid JSON", "'{not json'", "half way"]),
    "no-output": ({"raw": "", "stderr": "nothing to say\n"},
                  ["wrote no definition", "nothing to say"]),
    "not-a-definition": ({"raw": "[1, 2]"}, ["not an adapter definition"]),
}  # fmt: skip


@pytest.mark.parametrize(
    ("way", "case"),
    [("image", "crash"), ("image", "invalid-json"), ("host", "crash"), ("host", "invalid-json"),
     ("host", "no-output"), ("host", "not-a-definition")],
)  # fmt: skip
def test_a_failing_definition_command_fails_quoting_its_output(
    make_adapter: MakeAdapter, podman_env: Podman, build_cache: Path, way: str, case: str
) -> None:
    behaviour, expected = BROKEN[case]
    built = make_adapter(behaviour)
    with pytest.raises(AdapterDefinitionError) as caught:
        adapter_definition(built.project, built.build.image, way=way, cache_dir=build_cache)
    message = caught.value.message
    assert "/usr/local/bin/python app/adapter.py adapter_definition" in message or way == "host"
    for text in expected:
        assert text in message, f"{text!r} not in:\n{message}"
    assert caught.value.hint
    assert "Traceback" not in os.linesep.join(message.splitlines()[:1])


def test_describe_for_build_generates_or_checks_the_projects_own(
    make_adapter: MakeAdapter, build_cache: Path
) -> None:
    built = make_adapter({"definition": sample_definition("Renamed")}, manifest_kind="Old")
    with pytest.raises(AdapterKindMismatchError):
        describe_for_build(
            built.project, built.build.image, engine=EngineChoice.NONE, cache_dir=build_cache
        )
    answered = ScriptedPrompter(interactive=True, answer=0)
    outcome = describe_for_build(built.project, built.build.image, engine=EngineChoice.NONE,
                                 cache_dir=build_cache, prompter=answered)  # fmt: skip
    assert outcome.project.manifest.adapter_kind == "Renamed"
    assert outcome.describe_xml and outcome.resources_properties
    assert outcome.definition is not None and outcome.definition.way == "host"

    conf = outcome.project.root / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "describe.xml").write_bytes(outcome.describe_xml)
    static = describe_for_build(outcome.project, built.build.image, engine=EngineChoice.NONE)
    assert (static.describe_xml, static.definition, static.api_version) == (None, None, "1.0.0")
    (conf / "describe.xml").write_bytes(
        outcome.describe_xml.replace(b'version="1"', b'version="x"')
    )
    with pytest.raises(DescribeError, match="does not satisfy"):
        describe_for_build(outcome.project, built.build.image, engine=EngineChoice.NONE)
