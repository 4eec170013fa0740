"""Slow, stalled and idle clients: deadlines end them; room is kept for new clients.

Timeouts are made short through ServerConfig; every wait in these tests is bounded by a
generous limit and none of them measures how fast anything is.
"""

from __future__ import annotations

import http.client
import itertools
import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mpkit.server import Server
from mpkit.server.server import wait_until
from tests.fixtures.certs import issue_server_cert, make_ca
from tests.server.conftest import MakeServer
from tests.server.helpers import client, error_codes, push_blob, sha256

PATIENCE = 30.0  # the longest any test waits for the server to act


def connect(server: Server, *, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:  # set before connecting, so the window stays this small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(PATIENCE)
    sock.connect(("127.0.0.1", server.port))
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed *sock* (waits up to PATIENCE seconds)."""
    sock.settimeout(PATIENCE)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def still_open(sock: socket.socket) -> bool:
    """Nothing (not even end of file) is waiting to be read on *sock* right now."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def trickle_until_closed(sock: socket.socket, lines: Iterator[bytes], every: float) -> bytes:
    """Send one line every *every* seconds until the server closes; what it answered."""
    deadline = time.monotonic() + PATIENCE
    reply = b""
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                return reply
            if not data:
                return reply
            reply += data
            continue
        try:
            sock.sendall(next(lines))
        except (BrokenPipeError, ConnectionResetError):
            return reply
    raise AssertionError(f"the server kept the connection for {PATIENCE} s")


def header_lines() -> Iterator[bytes]:
    yield b"GET /v2/ HTTP/1.1\r\n"
    n = 0
    while True:
        n += 1
        yield f"X-Slow-{n}: still here\r\n".encode()


def response_to(sock: socket.socket, method: str) -> http.client.HTTPResponse:
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    return response


def test_a_request_head_trickled_line_by_line_is_cut_off(make_server: MakeServer) -> None:
    server = make_server(header_timeout=1.0)
    with connect(server) as sock:
        # A line every 0.1 s: a timeout per read would never fire, the head deadline does.
        assert trickle_until_closed(sock, header_lines(), every=0.1) == b""
    with client(server.url) as http:
        assert http.get("/v2/").status_code == 200


def test_a_tls_handshake_trickled_byte_by_byte_is_cut_off(
    make_server: MakeServer, tmp_path: Path
) -> None:
    cert = issue_server_cert(make_ca(tmp_path / "pki"), tmp_path / "pki")
    server = make_server(tls_cert=cert.cert_path, tls_key=cert.key_path, header_timeout=1.0)
    hello = itertools.chain([b"\x16\x03\x01\x02\x00"], itertools.repeat(b"\x01"))
    with connect(server) as sock:  # a ClientHello record header, then a byte every 0.1 s
        assert trickle_until_closed(sock, hello, every=0.1) == b""


def test_a_connection_that_sends_nothing_is_cut_off(make_server: MakeServer) -> None:
    server = make_server(header_timeout=0.5)
    with connect(server) as sock:
        assert closed_by_server(sock)


def test_keep_alive_connections_are_closed_when_idle(make_server: MakeServer) -> None:
    server = make_server(idle_timeout=0.5)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=PATIENCE)
    try:
        for _ in range(2):  # the connection is kept alive between requests ...
            conn.request("GET", "/v2/")
            response = conn.getresponse()
            response.read()
            assert response.status == 200
            assert not response.will_close
        assert conn.sock is not None
        assert closed_by_server(conn.sock)  # ... until it has been idle too long
    finally:
        conn.close()


def start_upload(http: httpx.Client) -> str:
    response = http.post("/v2/slow/blobs/uploads/")
    assert response.status_code == 202
    return response.headers["Location"]


@pytest.mark.parametrize(
    "piece",
    [b"", b"x" * 10],
    ids=["stalled", "trickling-below-the-minimum-rate"],  # 10 bytes / 0.05 s: 200 bytes/s
)
def test_a_slow_body_gets_408_and_nothing_is_kept(make_server: MakeServer, piece: bytes) -> None:
    server = make_server(body_timeout=1.0, min_body_rate=1000)
    with client(server.url) as http:
        location = start_upload(http)
        with connect(server) as sock:
            head = f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
            sock.sendall(head.encode() + b"x" * 100)
            reply = trickle_until_closed(sock, itertools.repeat(piece), every=0.05)
        assert reply.startswith(b"HTTP/1.1 408 "), reply
        assert b"slower than 1000 bytes/s" in reply
        status = http.get(location)
        assert status.status_code == 204
        assert status.headers["Range"] == "0-0"  # what arrived was cut off again


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_slow_upload_that_keeps_moving_succeeds(make_server: MakeServer, framing: str) -> None:
    server = make_server(body_timeout=1.0, min_body_rate=1000)
    pieces = [os.urandom(4000) for _ in range(8)]
    blob = b"".join(pieces)

    def slowly() -> Iterator[bytes]:
        for piece in pieces:  # 8 pauses of 0.2 s: longer in all than the body timeout
            time.sleep(0.2)
            yield piece

    headers = {"Content-Length": str(len(blob))} if framing == "content-length" else {}
    with client(server.url) as http:
        location = start_upload(http)
        done = http.put(
            location, params={"digest": sha256(blob)}, content=slowly(), headers=headers
        )
        assert done.status_code == 201, done.text
        assert http.get(f"/v2/slow/blobs/{sha256(blob)}").content == blob


def test_at_the_limit_a_new_client_takes_the_place_of_the_slowest(
    make_server: MakeServer,
) -> None:
    server = make_server(max_connections=4, header_timeout=PATIENCE * 2)
    slow = [connect(server) for _ in range(4)]
    try:
        for sock in slow:
            sock.sendall(b"GET /v2/ HTTP/1.1\r\n")  # and nothing more
        with client(server.url) as http:
            assert http.get("/v2/").status_code == 200
        assert closed_by_server(slow[0])  # the one waiting longest made room
        assert all(still_open(sock) for sock in slow[1:])
    finally:
        for sock in slow:
            sock.close()


def test_connections_serving_requests_are_never_evicted(make_server: MakeServer) -> None:
    server = make_server(max_connections=2)
    blob = os.urandom(16 * 1024 * 1024)  # far more than the socket buffers hold
    with client(server.url) as http:
        digest = push_blob(http, "big", blob)
    assert server.httpd is not None
    connections = server.httpd.connections
    assert wait_until(lambda: len(connections) == 0, PATIENCE)  # the push's connection ended
    downloads: list[socket.socket] = []
    try:
        for _ in range(2):
            sock = connect(server, receive_buffer=64 * 1024)
            downloads.append(sock)
            sock.sendall(f"GET /v2/big/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert response_to(sock, "GET").status == 200  # then we stop reading
        with client(server.url) as http:
            refused = http.get("/v2/")
            assert refused.status_code == 503
            assert error_codes(refused) == ["TOOMANYREQUESTS"]
    finally:
        for sock in downloads:
            sock.close()

    def answers() -> bool:
        with client(server.url) as http:
            return http.get("/v2/").status_code == 200

    assert wait_until(answers, PATIENCE)
