"""The push-access check of ``mpkit build`` (``workflow.access``): before the build for a
repository new to the records, while it runs for one pushed to before; either way a
refused login is asked for again on a terminal, and reported with its fix otherwise.
Real token-auth registry behind the recording proxy."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mpkit.credentials import Credential
from mpkit.errors import AuthenticationError
from mpkit.reference import parse_repository
from mpkit.registry import blob_locations
from mpkit.registry.transport import ClientOptions
from mpkit.workflow.access import SESSIONS_AHEAD, PushAccess, connect_for_push
from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.registry import RegistryServer

MakeFaultProxy = Callable[..., FaultProxy]
OPTIONS = ClientOptions(remember_pings=True)
UPLOADS = r"/blobs/uploads/$"


class Terminal:
    """A prompter whose user types *answers* in turn; ``asked`` lists the questions."""

    interactive = True

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    def ask(self, question: str, default: str | None = None) -> str:
        self.asked.append(question)
        return self.answers.pop(0)

    def secret(self, question: str) -> str:
        return self.ask(question)

    def choose(self, question: str, options: list[str]) -> int:
        raise AssertionError(question)


class NoTerminal(Terminal):
    interactive = False


class Said:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    def warn(self, message: str) -> None:
        self.lines.append(message)

    def progress(self, verb: str) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MPKIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    for name in ("MPKIT_REGISTRY_USERNAME", "MPKIT_REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    yield


def alice(registry: RegistryServer, password: str | None = None) -> Credential:
    return Credential(username="alice", password=password or registry.users["alice"],
                      source="test")  # fmt: skip


def pushed_before(proxy: FaultProxy, path: str) -> None:
    blob_locations().record(proxy.host, path, ["sha256:" + "a" * 64])


def access(proxy: FaultProxy, path: str, prompter: Terminal, credential: Credential | None
           ) -> PushAccess:  # fmt: skip
    return connect_for_push(parse_repository(f"{proxy.host}/{path}"), options=OPTIONS,
                            explicit=credential, prompter=prompter, reporter=Said())  # fmt: skip


def test_a_new_repository_is_checked_before_the_build(
    registry_token: RegistryServer, make_fault_proxy: MakeFaultProxy
) -> None:
    proxy = make_fault_proxy(registry_token)
    with access(proxy, "private/new", NoTerminal(), alice(registry_token)) as found:
        assert proxy.count("POST", UPLOADS) == 1  # done when connect_for_push returned
        found.proven()
    assert proxy.count("DELETE") == 1  # the session no push used, once (no delete grant)


def held(proxy: FaultProxy) -> threading.Event:
    """Hold every request at the proxy until the returned event is set."""
    gate = threading.Event()
    take_fault = proxy.take_fault

    def waiting(method: str, target: str) -> Any:
        gate.wait(60)
        return take_fault(method, target)

    proxy.take_fault = waiting  # type: ignore[method-assign]
    return gate


def test_a_rebuild_is_checked_while_it_builds(
    registry_token: RegistryServer, make_fault_proxy: MakeFaultProxy
) -> None:
    proxy = make_fault_proxy(registry_token)
    path = f"private/again-{uuid.uuid4().hex[:6]}"
    pushed_before(proxy, path)
    gate = held(proxy)
    with access(proxy, path, NoTerminal(), alice(registry_token)) as found:
        # Returned while the registry has not answered anything: the build goes on.
        assert proxy.seen == []
        gate.set()
        client = found.proven()
        assert proxy.count("POST", UPLOADS) == SESSIONS_AHEAD
        assert client is found.client  # the one the build read with


def test_a_refused_login_found_during_the_build_is_asked_for_on_a_terminal(
    registry_token: RegistryServer, make_fault_proxy: MakeFaultProxy, tmp_path: Path
) -> None:
    proxy = make_fault_proxy(registry_token)
    path = "private/changed-password"
    pushed_before(proxy, path)
    terminal = Terminal("alice", registry_token.users["alice"])
    with access(proxy, path, terminal, None) as found:
        client = found.proven()
        assert client is found.client  # the login typed goes into the build's client
        assert terminal.asked == [f"Username for {proxy.host}",
                                  f"Password or token for alice@{proxy.host}"]  # fmt: skip
        location, _ = client.start_upload(path)
        client.cancel_upload(location, path)
    assert (tmp_path / "docker" / "config.json").is_file()  # stored once it worked


def test_a_refused_login_without_a_terminal_names_the_fix(
    registry_token: RegistryServer, make_fault_proxy: MakeFaultProxy
) -> None:
    proxy = make_fault_proxy(registry_token)
    path = "private/wrong"
    pushed_before(proxy, path)
    wrong = alice(registry_token, "Wr0ng-Passw0rd")
    with (
        access(proxy, path, NoTerminal(), wrong) as found,
        pytest.raises(AuthenticationError, match="rejected the credentials") as raised,
    ):
        found.proven()
    assert "mpkit login" in (raised.value.hint or "")
    assert "Wr0ng-Passw0rd" not in str(raised.value) + (raised.value.hint or "")


def test_a_failed_build_stops_the_check_without_waiting_for_it(
    registry_token: RegistryServer, make_fault_proxy: MakeFaultProxy
) -> None:
    proxy = make_fault_proxy(registry_token)
    path = "private/failed-build"
    pushed_before(proxy, path)
    proxy.fail(None, "", 503, times=None)  # the check would retry for seconds
    with (
        pytest.raises(RuntimeError, match="the build failed"),
        access(proxy, path, NoTerminal(), alice(registry_token)),
    ):
        raise RuntimeError("the build failed")
    assert not [t for t in threading.enumerate() if t.name == "mpkit-push-access"]
    assert len(proxy.seen) < OPTIONS.retry.attempts  # stopped, not retried to the end
