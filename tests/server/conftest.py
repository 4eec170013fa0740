"""Built-in registry fixtures: an in-process server per test on a free loopback port."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mpkit.server import Server, ServerConfig
from tests.e2e.conftest import Mpkit, isolated_env
from tests.server.helpers import ServeProcess, client

MakeServer = Callable[..., Server]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[MakeServer]:
    """``make_server(htpasswd=..., upload_ttl=...)``: a started in-process registry.

    Its root defaults to ``tmp_path/"root"``; its access log is a StringIO
    (``server.access_log``). Every server made is shut down after the test.
    """
    started: list[Server] = []

    def make(**kwargs: Any) -> Server:
        kwargs.setdefault("root", tmp_path / "root")
        janitor = kwargs.pop("janitor_interval", None)
        config = ServerConfig(host="127.0.0.1", port=0, **kwargs)
        server = Server(config, access_log=io.StringIO(), janitor_interval=janitor).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.shutdown()


@pytest.fixture
def server(make_server: MakeServer) -> Server:
    return make_server()


@pytest.fixture
def mpkit(tmp_path: Path) -> Mpkit:
    """The real ``python -m mpkit`` with an isolated home, config and cache."""
    root = tmp_path / "user"
    return Mpkit(root=root, env=isolated_env(root))


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with client(server.url) as http:
        yield http


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[ServeProcess]:
    """``python -m mpkit registry serve`` in a process of its own (not started yet).

    Whatever process it runs at the end of the test is stopped, pass or fail.
    """
    process = ServeProcess(tmp_path / "root", tmp_path / "serve.log")
    try:
        yield process
    finally:
        process.stop()
