"""Shared fixtures: real registries (open, basic, token, TLS), a fault proxy and skopeo.

Session-scoped servers start on first use and stop at the end of the session; under
pytest-xdist every worker has its own. Factories give a test a fresh server of its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import bytecode  # noqa: F401  (first: what follows keeps its bytecode)
from tests.fixtures.baseimage import sdk_base  # noqa: F401  (shared fixture)
from tests.fixtures.buildserver import build_server  # noqa: F401  (shared fixture)
from tests.fixtures.certs import CertAuthority, make_ca
from tests.fixtures.dockerd import dockerd  # noqa: F401  (shared fixture)
from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.passstore import pass_store  # noqa: F401  (shared fixture)
from tests.fixtures.podman import podman  # noqa: F401  (shared fixture)
from tests.fixtures.registry import Mode, RegistryServer, write_certs_d
from tests.fixtures.sdkrecipe import python_mirror  # noqa: F401  (shared fixture)
from tests.fixtures.sdkserverbase import sdk_server_base  # noqa: F401  (shared fixture)
from tests.fixtures.skopeo import Skopeo
from tests.fixtures.tempholder import holders  # noqa: F401  (shared fixture)
from tests.fixtures.tools import require_tool

# Commands run in-process unless a test asks for the resident build server: a pexpect
# test has a terminal, and "auto" would leave a server running after the session.
os.environ["MPKIT_DAEMON"] = "off"

MakeRegistry = Callable[..., RegistryServer]
MakeFaultProxy = Callable[..., FaultProxy]


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    """One CA per session (per xdist worker) for every TLS server."""
    return make_ca(tmp_path_factory.mktemp("ca"))


def _session_registry(
    tmp_path_factory: pytest.TempPathFactory, ca: CertAuthority, mode: Mode
) -> Iterator[RegistryServer]:
    require_tool("docker-registry")
    registry = RegistryServer.start(tmp_path_factory.mktemp(f"registry-{mode}"), mode=mode, ca=ca)
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def registry_open(
    tmp_path_factory: pytest.TempPathFactory, test_ca: CertAuthority
) -> Iterator[RegistryServer]:
    """Plain HTTP, no auth."""
    yield from _session_registry(tmp_path_factory, test_ca, "open")


@pytest.fixture(scope="session")
def registry_basic(
    tmp_path_factory: pytest.TempPathFactory, test_ca: CertAuthority
) -> Iterator[RegistryServer]:
    """Plain HTTP, htpasswd Basic auth on every request (user alice)."""
    yield from _session_registry(tmp_path_factory, test_ca, "basic")


@pytest.fixture(scope="session")
def registry_token(
    tmp_path_factory: pytest.TempPathFactory, test_ca: CertAuthority
) -> Iterator[RegistryServer]:
    """Plain HTTP, token auth: anonymous pull on ``public/*`` only, alice everything."""
    yield from _session_registry(tmp_path_factory, test_ca, "token")


@pytest.fixture(scope="session")
def registry_tls(
    tmp_path_factory: pytest.TempPathFactory, test_ca: CertAuthority
) -> Iterator[RegistryServer]:
    """HTTPS with a certificate from ``test_ca``, no auth."""
    yield from _session_registry(tmp_path_factory, test_ca, "tls")


@pytest.fixture
def make_registry(
    tmp_path_factory: pytest.TempPathFactory, test_ca: CertAuthority
) -> Iterator[MakeRegistry]:
    """Factory for a fresh registry: ``make_registry(mode="token", tls=True, token_lifetime=3)``.

    Keyword arguments go to :meth:`RegistryServer.start`; every registry it made is
    stopped after the test.
    """
    require_tool("docker-registry")
    started: list[RegistryServer] = []

    def make(mode: Mode = "open", **kwargs: Any) -> RegistryServer:
        kwargs.setdefault("ca", test_ca)
        registry = RegistryServer.start(
            tmp_path_factory.mktemp(f"registry-{mode}"), mode=mode, **kwargs
        )
        started.append(registry)
        return registry

    yield make
    for registry in started:
        registry.stop()


@pytest.fixture
def certs_d(tmp_path: Path, registry_tls: RegistryServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``<tmp>/certs.d/<host:port>/ca.crt`` for ``registry_tls``, exported as MPKIT_CERTS_D."""
    root = write_certs_d(tmp_path / "certs.d", registry_tls)
    monkeypatch.setenv("MPKIT_CERTS_D", str(root))
    return root


@pytest.fixture
def make_fault_proxy() -> Iterator[MakeFaultProxy]:
    """Factory: ``make_fault_proxy(registry)`` starts a :class:`FaultProxy` in front of it."""
    started: list[FaultProxy] = []

    def make(registry: RegistryServer, **kwargs: Any) -> FaultProxy:
        proxy = FaultProxy.for_registry(registry, **kwargs).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture
def skopeo(tmp_path: Path) -> Skopeo:
    """The real skopeo, isolated from ambient credentials; see ``Skopeo.args_for``."""
    return Skopeo(require_tool("skopeo"), tmp_path / "skopeo")
