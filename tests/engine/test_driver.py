"""The Engine class against fake engine programs that record their argv: what each engine
is asked to do, in its own dialect, and how its failures read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mpkit.credentials import ENV_PASSWORD
from mpkit.engine import (
    ContainerSpec,
    Engine,
    EngineChoice,
    EngineKind,
    engine_environment,
    find_engine,
    find_engines,
    output_tail,
)
from mpkit.errors import ContainerEngineError
from tests.fixtures.fakeengine import FakeEngine, MakeFakeEngine

EMPTY_STORE = '{"auths": {}}\n'


def engine_for(fake: FakeEngine) -> Engine:
    return Engine(EngineKind(fake.name), str(fake.program))


# -- finding engines --------------------------------------------------------------------
def test_auto_prefers_podman_then_docker_then_buildah(fake_engines: MakeFakeEngine) -> None:
    buildah, docker = fake_engines("buildah"), fake_engines("docker")
    assert [e.name for e in find_engines(EngineChoice.AUTO)] == ["docker", "buildah"]
    assert find_engines(EngineChoice.AUTO, to_run=True) == [engine_for(docker)]
    assert find_engines(EngineChoice.BUILDAH, to_run=True) == []
    assert find_engines(EngineChoice.NONE) == []
    fake_engines("podman")
    assert find_engine(EngineChoice.AUTO).name == "podman"
    assert find_engine(EngineChoice.BUILDAH) == engine_for(buildah)


def test_no_engine_says_which_and_what_to_install(fake_engines: MakeFakeEngine) -> None:
    fake_engines("buildah")
    with pytest.raises(ContainerEngineError) as missing:
        find_engine(EngineChoice.AUTO, to_run=True)
    assert missing.value.message == "no container engine (podman or docker) is installed"
    assert missing.value.hint == "install podman (or docker)"
    assert missing.value.to_dict()["error"] == "container_engine"


# -- images -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "lookup"),
    [("podman", ["image", "exists"]), ("docker", ["image", "inspect"]),
     ("buildah", ["inspect", "--type", "image"])],
)  # fmt: skip
def test_has_image_asks_each_engine_its_own_way(
    fake_engines: MakeFakeEngine, name: str, lookup: list[str]
) -> None:
    fake = fake_engines(name)
    fake.respond("missing@sha256:0", exit=1, stderr="no such image")
    engine = engine_for(fake)
    assert engine.has_image("present@sha256:1") is True
    assert engine.has_image("missing@sha256:0") is False
    assert fake.calls[0].argv[: len(lookup)] == lookup
    assert fake.calls[0].argv[-1] == "present@sha256:1"


def test_podman_pulls_anonymously_with_an_empty_store(fake_engines: MakeFakeEngine) -> None:
    fake = fake_engines("podman")
    engine_for(fake).pull("127.0.0.1:5000/mp@sha256:1", anonymous=True, tls_verify=False)
    (call,) = fake.calls
    assert call.argv[0] == "pull"
    assert "--tls-verify=false" in call.argv and "--quiet" in call.argv
    assert call.authfile == EMPTY_STORE
    assert call.env["REGISTRY_AUTH_FILE"] == call.option("--authfile")
    assert call.env["DOCKER_CONFIG"] == str(Path(call.env["REGISTRY_AUTH_FILE"]).parent)
    assert not Path(call.env["DOCKER_CONFIG"]).exists()  # the empty store is gone again


def test_docker_pulls_anonymously_with_an_empty_config(fake_engines: MakeFakeEngine) -> None:
    fake = fake_engines("docker")
    engine_for(fake).pull("registry.example/mp@sha256:1", anonymous=True, tls_verify=False)
    (call,) = fake.calls
    assert call.argv[0] == "--config" and call.argv[2] == "pull"
    assert not any(arg.startswith("--tls-verify") for arg in call.argv)  # the daemon decides


def test_a_pull_with_credentials_leaves_them_alone(
    fake_engines: MakeFakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    fake = fake_engines("podman")
    engine_for(fake).pull("registry.example/mp:1")
    (call,) = fake.calls
    assert call.argv == ["pull", "--quiet", "registry.example/mp:1"]
    assert call.env["DOCKER_CONFIG"] == str(config)


def test_a_failed_pull_quotes_the_engine(fake_engines: MakeFakeEngine) -> None:
    fake = fake_engines("podman")
    fake.respond("pull", exit=125, stderr="Trying to pull...\n\nError: reading manifest: denied\n")
    with pytest.raises(ContainerEngineError) as failed:
        engine_for(fake).pull("registry.example/mp:1", anonymous=True)
    error = failed.value
    assert error.message == (
        "podman could not pull registry.example/mp:1: Trying to pull... | "
        "Error: reading manifest: denied"
    )
    assert error.output == "Trying to pull... | Error: reading manifest: denied"
    assert (error.engine, error.exit_status) == ("podman", 125)
    assert error.to_dict()["engine"] == "podman"


@pytest.mark.parametrize(
    ("name", "save"),
    [
        ("podman", ["save", "--format", "docker-archive", "--output", "{archive}", "{ref}"]),
        ("docker", ["save", "--output", "{archive}", "{ref}"]),
        ("buildah", ["push", "{ref}", "docker-archive:{archive}:{ref}"]),
    ],
)
def test_save_writes_a_docker_archive_in_each_dialect(
    fake_engines: MakeFakeEngine, tmp_path: Path, name: str, save: list[str]
) -> None:
    fake = fake_engines(name)
    archive, ref = tmp_path / "image.tar", "localhost/mpkit-build-x:latest"
    logged: list[str] = []
    engine_for(fake).save(ref, archive, log=logged.append)
    expected = [arg.format(archive=archive, ref=ref) for arg in save]
    assert fake.calls[0].argv == expected
    assert logged[0] == f"$ {fake.program} {' '.join(expected)}"


@pytest.mark.parametrize(
    ("name", "verb", "ignorefile"), [("podman", "build", True), ("docker", "build", False),
                                     ("buildah", "bud", True)]
)  # fmt: skip
def test_build_streams_the_engine_output(
    fake_engines: MakeFakeEngine, tmp_path: Path, name: str, verb: str, ignorefile: bool
) -> None:
    fake = fake_engines(name)
    fake.respond(verb, stdout="STEP 1/2: FROM base\nSTEP 2/2: RUN true\n")
    registries = tmp_path / "registries.conf"
    registries.write_text('registry = [{location = "127.0.0.1:5000", insecure = true}]\n')
    logged: list[str] = []
    engine_for(fake).build(tmp_path, dockerfile=tmp_path / "Dockerfile", tag="t:1",
                           platform="linux/amd64", ignore_file=tmp_path / "ignore",
                           build_args={"GREETING": "hello world", "EMPTY": ""},
                           registries_conf=registries, log=logged.append)  # fmt: skip
    (call,) = fake.calls
    assert call.argv[0] == verb and call.argv[-1] == str(tmp_path)
    assert call.option("--platform") == "linux/amd64" and call.option("--tag") == "t:1"
    assert ("--ignorefile" in call.argv) is ignorefile
    build_args = [call.argv[i + 1] for i, word in enumerate(call.argv) if word == "--build-arg"]
    assert build_args == ["GREETING=hello world", "EMPTY="]
    # Plain HTTP is the registry configuration's business, never a flag for the whole build.
    assert not any(word.startswith("--tls-verify") for word in call.argv)
    reads_conf = name != "docker"
    assert (call.registries_conf == registries.read_text()) is reads_conf
    assert (call.env.get("CONTAINERS_REGISTRIES_CONF") == str(registries)) is reads_conf
    assert logged[1:] == ["STEP 1/2: FROM base", "STEP 2/2: RUN true"]


def test_a_failed_build_quotes_its_last_lines(fake_engines: MakeFakeEngine, tmp_path: Path) -> None:
    fake = fake_engines("podman")
    output = "".join(f"line {n}\n" for n in range(30))
    fake.respond("build", exit=1, stdout=output + "Error: building at STEP 2\n")
    with pytest.raises(ContainerEngineError) as failed:
        engine_for(fake).build(tmp_path, dockerfile=tmp_path / "Dockerfile", tag="t:1",
                               platform="linux/amd64", log=lambda _line: None)  # fmt: skip
    lines = failed.value.message.splitlines()
    assert lines[0] == "podman build failed (exit 1):"
    assert lines[1:] == [f"line {n}" for n in range(11, 30)] + ["Error: building at STEP 2"]
    assert failed.value.hint == "the lines above are the engine's own output"


def test_load_and_remove_image(fake_engines: MakeFakeEngine, tmp_path: Path) -> None:
    fake = fake_engines("docker")
    engine = engine_for(fake)
    engine.load(tmp_path / "image.tar")
    fake.respond("rmi", exit=1, stderr="no such image")
    engine.remove_image("localhost/x:1")  # best effort: no error
    assert [call.argv for call in fake.calls] == [
        ["load", "--input", str(tmp_path / "image.tar")],
        ["rmi", "--force", "localhost/x:1"],
    ]
    fake.respond("load", exit=125, stderr="Error: no storage here")
    with pytest.raises(ContainerEngineError, match=r"docker load failed \(exit 125\): Error: no"):
        engine.load(tmp_path / "image.tar")


# -- containers -------------------------------------------------------------------------
def test_run_to_the_end_reports_the_container_status(
    fake_engines: MakeFakeEngine, tmp_path: Path
) -> None:
    fake = fake_engines("podman")
    fake.respond("run", exit=3, stderr="Traceback: boom\n")
    spec = ContainerSpec("localhost/img:1", "c1", command=["/io/runner.py", "/io"],
                         entrypoint="python3", network="none",
                         mounts=[(tmp_path, "/io")])  # fmt: skip
    done = engine_for(fake).run(spec, timeout=60)
    assert done.returncode == 3 and "boom" in done.stderr
    (call,) = fake.calls
    assert call.argv[:2] == ["run", "--rm"]
    assert call.argv[-3:] == ["localhost/img:1", "/io/runner.py", "/io"]
    assert "--pull=never" in call.argv
    assert call.option("--volume") == f"{tmp_path}:/io:Z"
    assert (call.option("--network"), call.option("--entrypoint")) == ("none", "python3")
    assert call.authfile == EMPTY_STORE  # podman reads credentials even with --pull=never


def test_a_container_that_outlives_its_timeout_is_removed(fake_engines: MakeFakeEngine) -> None:
    fake = fake_engines("docker")
    fake.respond("run", delay=60)
    with pytest.raises(ContainerEngineError, match="'docker run' did not finish within 1 s"):
        engine_for(fake).run(ContainerSpec("img", "c-slow"), timeout=1)
    assert fake.calls_with("rm", "--force", "c-slow")


def test_start_detached_with_limits_and_labels(fake_engines: MakeFakeEngine) -> None:
    fake = fake_engines("docker")
    fake.respond("run", stdout="f00d\n")
    spec = ContainerSpec("reg/mp@sha256:1", "mpkit-run-x", publish=["127.0.0.1:8081:8080"],
                         memory_mb=768, memory_swap_mb=1280,
                         labels={"b": "2", "a": "1"})  # fmt: skip
    assert engine_for(fake).start(spec) == "f00d"
    (call,) = fake.calls
    assert call.argv[:2] == ["run", "--detach"]
    assert (call.option("--memory"), call.option("--memory-swap")) == ("768m", "1280m")
    assert call.option("--publish") == "127.0.0.1:8081:8080"
    labels = [call.argv[i + 1] for i, arg in enumerate(call.argv) if arg == "--label"]
    assert labels == ["a=1", "b=2"]
    assert "--config" not in call.argv and call.authfile is None  # docker keeps its config


def test_container_state_logs_and_removal(fake_engines: MakeFakeEngine) -> None:
    podman, docker = fake_engines("podman"), fake_engines("docker")
    podman.respond("inspect", "gone", exit=125, stderr="no such container")
    podman.respond("inspect", stdout=json.dumps([{"State": {"Running": True}}]))
    podman.respond("logs", stdout="out\n", stderr="err\n")
    engine = engine_for(podman)
    assert engine.running("c1") is True
    assert engine.running("gone") is False and engine.inspect("gone") is None
    assert engine.logs("c1") == "out\nerr\n"
    engine.remove("c1")
    engine_for(docker).remove("c1")
    assert podman.calls[-1].argv == ["rm", "--force", "--time", "1", "c1"]
    assert docker.calls[-1].argv == ["rm", "--force", "c1"]


def test_buildah_runs_no_containers(fake_engines: MakeFakeEngine) -> None:
    fake = fake_engines("buildah")
    with pytest.raises(ContainerEngineError, match="buildah cannot run containers"):
        engine_for(fake).start(ContainerSpec("img", "c1"))
    assert fake.calls == []


def test_a_missing_program_is_an_engine_error(tmp_path: Path) -> None:
    engine = Engine(EngineKind.PODMAN, str(tmp_path / "podman"))
    with pytest.raises(ContainerEngineError, match=r"cannot run .*podman") as failed:
        engine.load(tmp_path / "image.tar")
    assert failed.value.exit_status is None


# -- environment and output ---------------------------------------------------------------
def test_engines_get_no_secret_and_no_docker_config_without_config_json(
    fake_engines: MakeFakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_PASSWORD, "s3cret")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no config.json in it
    fake = fake_engines("podman")
    engine_for(fake).has_image("img")
    (call,) = fake.calls
    assert ENV_PASSWORD not in call.env and "DOCKER_CONFIG" not in call.env
    assert call.env["PATH"] == os.environ["PATH"]
    assert engine_environment(DOCKER_CONFIG="/x")["DOCKER_CONFIG"] == "/x"


def test_output_tail() -> None:
    assert output_tail("a\n\n  \nb\nc\nd\n") == "b | c | d"
    assert output_tail("x" * 2000, limit=10) == "x" * 10
    assert output_tail(" \n") == "(no output)"
    assert output_tail("1\n2\n3\n", lines=2, separator="\n") == "2\n3"
