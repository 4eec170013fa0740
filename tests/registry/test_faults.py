"""Transient faults through the FaultProxy in front of a real registry: no single 503,
429 or connection reset fails a command, random faults at 25% do not either, and a
failure that remains names the request and its last answer.

Commands run as the user runs them (``python -m mpkit``), with the default retry policy.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest

from tests.e2e.conftest import CommandResult, Mpkit, creds_env
from tests.e2e.sdkproject import flow_env, pack_path, read_pack, write_sdk_project
from tests.fixtures.baseimage import SdkBase
from tests.fixtures.faultproxy import FaultProxy, SeenRequest
from tests.fixtures.registry import RegistryServer
from tests.image.builders import make_oci_layout
from tests.registry.test_regressions import incompressible
from tests.verify.conftest import Pushed, pack_for, push, small_image

MakeFaultProxy = Callable[..., FaultProxy]
FirstFault = Literal["503", "429", "reset"]
FIRST_FAULTS: tuple[FirstFault, ...] = ("503", "429", "reset")
RATE = 0.25
SLOW_ANSWER = 0.5  # the chaos's delay: seconds, far below any timeout of mpkit's
BUILD_TIMEOUT = 300.0


def fail_first_request(proxy: FaultProxy, fault: FirstFault) -> None:
    """The next request, whatever it is, gets *fault* (a reset: cut before any answer)."""
    if fault == "reset":
        proxy.drop(None, "", during="request", times=1)
    else:
        proxy.fail(None, "", int(fault), times=1)


def assert_first_request_faulted(proxy: FaultProxy, fault: FirstFault) -> None:
    first, second = proxy.seen[:2]
    assert (first.method, first.target) == ("GET", "/v2/")
    assert first.fault == ("drop_request" if fault == "reset" else "status")
    # Retried on the same scheme (the proxy speaks plain HTTP): the next one is answered.
    assert (second.method, second.target, second.fault) == ("GET", "/v2/", None)


def assert_clean(result: CommandResult) -> None:
    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output
    assert "insecure-registry" not in result.output


def layout(tmp_path: Path, layers: int = 3) -> tuple[Path, str]:
    """An OCI layout of fresh blobs (so every push uploads): (directory, digest)."""
    salt = uuid.uuid4().hex
    src = tmp_path / f"src-{salt[:8]}"
    content = [{f"l{i}.bin": incompressible(32 * 1024, f"{salt}-{i}")} for i in range(layers)]
    return src, make_oci_layout(src, "v1", content)


def push_cli(cli: Mpkit, src: Path, target: str, *extra: str,
             env: dict[str, str] | None = None) -> CommandResult:  # fmt: skip
    return cli.run("image", "push", f"oci:{src}:v1", target, "--json", *extra, env=env)


# -- one fault on the first request -------------------------------------------------------


@pytest.mark.parametrize("fault", FIRST_FAULTS)
def test_image_push_survives_a_fault_on_its_first_request(
    registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy, cli: Mpkit,
    tmp_path: Path, fault: FirstFault,
) -> None:  # fmt: skip
    proxy = make_fault_proxy(registry_open)
    fail_first_request(proxy, fault)
    src, digest = layout(tmp_path)
    result = push_cli(cli, src, f"{proxy.host}/faults/push-{fault}:v1")
    assert_clean(result)
    assert result.json()["digest"] == digest
    assert_first_request_faulted(proxy, fault)


@pytest.fixture
def pushed(registry_open: RegistryServer, tmp_path: Path) -> Pushed:
    return push(registry_open, f"faults/verify-{uuid.uuid4().hex[:8]}", small_image(tmp_path))


@pytest.mark.parametrize("fault", FIRST_FAULTS)
def test_verify_survives_a_fault_on_its_first_request(
    registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy, cli: Mpkit,
    tmp_path: Path, pushed: Pushed, fault: FirstFault,
) -> None:  # fmt: skip
    proxy = make_fault_proxy(registry_open)
    pack = pack_for(tmp_path, Pushed(proxy.host, pushed.path, pushed.digest, pushed.image))
    fail_first_request(proxy, fault)
    result = cli.run("verify", "--json", str(pack))
    assert_clean(result)
    assert result.json()["ok"] is True
    assert_first_request_faulted(proxy, fault)


@pytest.fixture(scope="module")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MPKIT_CACHE_DIR for the module's builds: the base and the pip layer once."""
    return tmp_path_factory.mktemp("faults-cache")


def build(root: Path, proxy: FaultProxy, sdk_base: SdkBase, cache: Path) -> CommandResult:
    """``mpkit build`` of a fresh SDK project pushing through *proxy* (a new repository)."""
    repository = f"{proxy.host}/faults/build-{uuid.uuid4().hex[:8]}"
    project = write_sdk_project(root / "project", config={"container_repository": repository})
    env = flow_env(root / "user", base_registry_host=sdk_base.registry.host, cache=cache)
    return Mpkit(root / "user", env).run(
        "build", str(project), "--json", "--no-ttl", timeout=BUILD_TIMEOUT
    )


def assert_built(result: CommandResult, registry: RegistryServer, root: Path) -> None:
    """Exit 0, verify passed, and the pack records the digest the registry serves."""
    assert_clean(result)
    report = result.json()
    assert report["verify"]["ok"] is True, report["verify"]
    conf = read_pack(pack_path(root / "project")).kind_conf()
    served = registry_manifest_digest(registry, conf["REPOSITORY"], conf["DIGEST"])
    assert served == conf["DIGEST"] == report["digest"]


def registry_manifest_digest(registry: RegistryServer, repository: str, digest: str) -> str:
    """The digest the registry itself (not the proxy) serves for *digest*."""
    url = f"{registry.url}/v2/{repository.lstrip('/')}/manifests/{digest}"
    accept = "application/vnd.oci.image.manifest.v1+json"
    request = urllib.request.Request(url, headers={"Accept": accept})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        return "sha256:" + hashlib.sha256(response.read()).hexdigest()


@pytest.mark.parametrize("fault", FIRST_FAULTS)
def test_build_survives_a_fault_on_its_first_request(
    registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy, sdk_base: SdkBase,
    build_cache: Path, tmp_path: Path, fault: FirstFault,
) -> None:  # fmt: skip
    proxy = make_fault_proxy(registry_open)
    fail_first_request(proxy, fault)
    result = build(tmp_path, proxy, sdk_base, build_cache)
    assert_built(result, registry_open, tmp_path)
    assert_first_request_faulted(proxy, fault)


# -- random faults at 25% -------------------------------------------------------------------


def faults_seen(proxy: FaultProxy) -> list[SeenRequest]:
    return [s for s in proxy.seen if s.fault is not None]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_image_push_at_25_percent_random_faults(
    registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy, cli: Mpkit,
    tmp_path: Path, seed: int,
) -> None:  # fmt: skip
    proxy = make_fault_proxy(registry_open)
    chaos = proxy.chaos(RATE, seed=seed, delay_seconds=SLOW_ANSWER)
    src, digest = layout(tmp_path, layers=5)
    result = push_cli(cli, src, f"{proxy.host}/faults/chaos-{seed}:v1")
    assert_clean(result)
    assert result.json()["digest"] == digest
    assert registry_manifest_digest(registry_open, f"faults/chaos-{seed}", digest) == digest
    assert chaos.injected, "the run met no fault"


def test_image_push_with_token_auth_at_25_percent_random_faults(
    registry_token: RegistryServer, make_fault_proxy: MakeFaultProxy, cli: Mpkit,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The token service sits behind the same faults (its paths go through the proxy)."""
    proxy = make_fault_proxy(registry_token)
    chaos = proxy.chaos(RATE, seed=7, delay_seconds=SLOW_ANSWER)
    src, digest = layout(tmp_path, layers=5)
    result = push_cli(cli, src, f"{proxy.host}/private/chaos:v1",
                      env=creds_env(registry_token.users))  # fmt: skip
    assert_clean(result)
    assert result.json()["digest"] == digest
    assert chaos.injected, "the run met no fault"
    assert any(s.target.startswith("/token") for s in proxy.seen)


def test_build_at_25_percent_random_faults(
    registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy, sdk_base: SdkBase,
    build_cache: Path, tmp_path: Path,
) -> None:  # fmt: skip
    proxy = make_fault_proxy(registry_open)
    chaos = proxy.chaos(RATE, seed=11, delay_seconds=SLOW_ANSWER)
    result = build(tmp_path, proxy, sdk_base, build_cache)
    assert_built(result, registry_open, tmp_path)
    assert chaos.injected, "the run met no fault"


# -- what a failure that remains says --------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("503", "GET /v2/ answered HTTP 503 on each of 3 tries"),
        ("429", "GET /v2/ answered HTTP 429 on each of 3 tries"),
        ("reset", "did not answer GET /v2/ on any of 3 tries"),
    ],
)
def test_a_registry_that_keeps_failing_is_named_with_request_and_answer(
    registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy, cli: Mpkit,
    tmp_path: Path, fault: FirstFault, words: str,
) -> None:  # fmt: skip
    proxy = make_fault_proxy(registry_open)
    if fault == "reset":
        proxy.drop(None, "", during="request", times=None)
    else:
        proxy.fail(None, "", int(fault), times=None)
    src, _ = layout(tmp_path, layers=1)
    result = push_cli(cli, src, f"{proxy.host}/faults/down:v1", "--retries", "3")
    assert result.returncode == 1, result.output
    error = json.loads(result.stdout)
    assert words in error["message"], error
    assert "insecure-registry" not in result.output
    assert "Traceback" not in result.output
    assert proxy.count("GET", "^/v2/$") == 3  # one scheme: the proxy answered, or might


def test_an_upload_that_keeps_failing_names_the_put_and_its_answer(
    registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy, cli: Mpkit,
    tmp_path: Path,
) -> None:  # fmt: skip
    proxy = make_fault_proxy(registry_open)
    proxy.fail("PUT", "/blobs/uploads/", 503, times=None)
    src, _ = layout(tmp_path, layers=1)
    result = push_cli(cli, src, f"{proxy.host}/faults/put-down:v1", "--retries", "2")
    assert result.returncode == 1, result.output
    message = json.loads(result.stdout)["message"]
    assert "failed 2 times" in message
    assert "PUT /v2/faults/put-down/blobs/uploads/" in message
    assert "answered HTTP 503" in message
    # Each try started over from a new session: a PUT is never retried in place.
    assert proxy.count("POST", "/blobs/uploads/") >= 2
    puts = [s.target.split("?")[0] for s in proxy.seen if s.method == "PUT"]
    assert len(puts) == len(set(puts))
