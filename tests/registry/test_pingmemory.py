"""Remembered pings: a command skips ``GET /v2/`` when a recent one answered, and a record
that has gone stale (another scheme, other authentication) costs one live ping, never a
failure. Real docker-registry behind the FaultProxy, which counts the requests."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mpkit.credentials import Credential
from mpkit.registry import open_client
from mpkit.registry.auth import Challenge
from mpkit.registry.ping import Ping
from mpkit.registry.pingmemory import FILE_NAME, REMEMBER_SECONDS, PingMemory, ping_memory
from mpkit.registry.retry import RetryPolicy
from mpkit.registry.transport import ClientOptions
from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.registry import RegistryServer

MakeFaultProxy = Callable[..., FaultProxy]
OPTIONS = ClientOptions(retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02),
                        remember_pings=True)  # fmt: skip
ALICE = Credential(username="alice", password="s3cret-Pa55", source="test")
PING = r"^/v2/$"
MANIFEST = "/v2/library/nothing/manifests/latest"


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state directory of the test's own: no record from elsewhere."""
    directory = tmp_path / "state"
    monkeypatch.setenv("MPKIT_STATE_DIR", str(directory))
    return directory


def look(proxy: FaultProxy, *, credential: Credential | None = None) -> None:
    """What one command does first: a HEAD that needs the scheme and the challenge."""
    with open_client(proxy.host, options=OPTIONS, anonymous=credential is None,
                     explicit=credential) as client:  # fmt: skip
        assert client.head_manifest("library/nothing", "latest") is None


def remember_in_file(state: Path, endpoint: str, ping: Ping) -> None:
    """A record an earlier command left (this process has not pinged it)."""
    PingMemory(state / FILE_NAME).remember(endpoint, ping)


def next_command(state: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What the next command finds: the same file, in a process that pinged nothing."""
    moved = state.with_name(f"{state.name}-next")
    shutil.copytree(state, moved)
    monkeypatch.setenv("MPKIT_STATE_DIR", str(moved))
    return moved


def test_the_next_command_skips_the_ping(
    registry_open: RegistryServer,
    make_fault_proxy: MakeFaultProxy,
    state: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = make_fault_proxy(registry_open)
    look(proxy)
    look(proxy)  # another client in this process: the ping it learnt
    recorded = json.loads((state / FILE_NAME).read_text())["pings"][proxy.host]
    assert recorded["base_url"] == proxy.url and recorded["challenge"] is None
    next_command(state, monkeypatch)
    look(proxy)
    assert [f"{r.method} {r.target}" for r in proxy.seen] == [
        "GET /v2/",
        f"HEAD {MANIFEST}",
        f"HEAD {MANIFEST}",
        f"HEAD {MANIFEST}",
    ]


def test_a_record_of_another_scheme_costs_one_live_ping(
    registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy, state: Path
) -> None:
    proxy = make_fault_proxy(registry_open)
    remember_in_file(state, proxy.host, Ping(f"https://{proxy.host}", None))  # it speaks http
    look(proxy)
    assert proxy.count("GET", PING) == 1
    assert proxy.count("HEAD", MANIFEST) == 1
    record = json.loads((state / FILE_NAME).read_text())["pings"][proxy.host]
    assert record["base_url"] == proxy.url  # corrected for the next command


def test_a_registry_that_now_asks_for_a_login_is_answered_without_a_ping(
    registry_token: RegistryServer, make_fault_proxy: MakeFaultProxy, state: Path
) -> None:
    proxy = make_fault_proxy(registry_token)
    remember_in_file(state, proxy.host, Ping(proxy.url, None))  # it was open then
    look(proxy, credential=ALICE)  # the 401 names the realm: answered in the same request
    assert proxy.count("GET", PING) == 0


def test_a_token_service_that_moved_costs_one_live_ping(
    registry_token: RegistryServer, make_fault_proxy: MakeFaultProxy, state: Path
) -> None:
    proxy = make_fault_proxy(registry_token)
    gone = Challenge("bearer", {"realm": "http://127.0.0.1:9/token", "service": "gone"})
    remember_in_file(state, proxy.host, Ping(proxy.url, gone))
    look(proxy, credential=ALICE)
    assert proxy.count("GET", PING) == 1


def test_a_refusal_that_a_live_ping_confirms_is_not_asked_twice(
    registry_basic: RegistryServer,
    make_fault_proxy: MakeFaultProxy,
    state: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = make_fault_proxy(registry_basic)
    look(proxy, credential=ALICE)  # the challenge, learnt live
    wrong = Credential(username="alice", password="wrong", source="test")
    next_command(state, monkeypatch)
    with open_client(proxy.host, options=OPTIONS, explicit=wrong) as client:
        response = client.transport.request("HEAD", f"{MANIFEST}", scopes=[], action="pull")
    assert response.status_code == 401
    assert proxy.count("GET", PING) == 2  # the first command's, and the check of the record
    assert proxy.count("HEAD", MANIFEST) == 2  # the first command's, and this one, once
    assert ping_memory().recall(proxy.host, ["http"]) is not None


def test_records_are_kept_only_while_fresh_and_only_for_allowed_schemes(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    ping = Ping("http://lab.example.com:5000", None)
    PingMemory(path).remember("lab.example.com:5000", ping)
    later = PingMemory(path)
    assert later.recall("lab.example.com:5000", ["https"]) is None  # not insecure any more
    assert later.recall("lab.example.com:5000", ["https", "http"]) is not None
    assert PingMemory(path, ttl=0.0).recall("lab.example.com:5000", ["https", "http"]) is None
    data = json.loads(path.read_text())
    data["pings"]["lab.example.com:5000"]["at"] = time.time() - REMEMBER_SECONDS - 1
    path.write_text(json.dumps(data))
    assert PingMemory(path).recall("lab.example.com:5000", ["https", "http"]) is None


@pytest.mark.parametrize(
    "record",
    [{"at": "x", "base_url": "http://h:1", "challenge": None},
     {"at": None, "base_url": "http://h:1", "challenge": None},
     {"base_url": "http://evil:1", "challenge": None},
     {"base_url": "http://h:1", "challenge": {"scheme": "ntlm", "params": {}}},
     {"base_url": "http://h:1", "challenge": {"scheme": "basic", "params": {"realm": 1}}}],
)  # fmt: skip
def test_a_damaged_or_foreign_record_is_ignored(tmp_path: Path, record: dict[str, object]
                                                ) -> None:  # fmt: skip
    path = tmp_path / FILE_NAME
    good = {"at": time.time(), "base_url": "http://h:1", "challenge": None}
    path.write_text(json.dumps({"format": 1, "pings": {"h:1": good}}))
    assert PingMemory(path).recall("h:1", ["https", "http"]) is not None
    path.write_text(json.dumps({"format": 1, "pings": {"h:1": {"at": time.time(), **record}}}))
    assert PingMemory(path).recall("h:1", ["https", "http"]) is None
    for text in ("", "[]", "{", '{"format": 2, "pings": {}}'):
        path.write_text(text)
        assert PingMemory(path).recall("h:1", ["https", "http"]) is None
