"""Connection phases, read deadlines and eviction, on a fake clock and real socket pairs."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mpkit.server.config import ServerConfig
from mpkit.server.connections import (
    BodyTimeout,
    Connection,
    ConnectionTable,
    DeadlineReader,
    Phase,
)

MB = 1024 * 1024
Pairs = list[tuple[socket.socket, socket.socket]]
MakeConnection = Callable[..., Connection]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def config(**limits: Any) -> ServerConfig:
    return ServerConfig(root=Path("unused"), **limits)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pairs() -> Iterator[Pairs]:
    """Socket pairs (server side, client side), all closed after the test."""
    made: Pairs = []
    yield made
    for ours, theirs in made:
        ours.close()
        theirs.close()


def new_pair(pairs: Pairs) -> tuple[socket.socket, socket.socket]:
    pairs.append(socket.socketpair())
    return pairs[-1]


@pytest.fixture
def make_connection(clock: FakeClock, pairs: Pairs) -> MakeConnection:
    """``make_connection(header_timeout=...)``: a connection on the fake clock."""

    def make(**limits: Any) -> Connection:
        return Connection(new_pair(pairs)[0], config(**limits), threading.Lock(), clock)

    return make


def test_the_head_deadline_is_total_however_the_client_trickles(
    clock: FakeClock, make_connection: MakeConnection
) -> None:
    tracked = make_connection(header_timeout=30)
    assert tracked.phase is Phase.HEAD and tracked.time_left() == 30
    for _ in range(29):  # a header line every second resets nothing
        clock.advance(1)
        tracked.received(20, waited=1)
    assert tracked.time_left() == pytest.approx(1)
    clock.advance(1)
    assert tracked.time_left() <= 0
    assert not isinstance(tracked.timeout(), BodyTimeout)


def test_idle_lasts_until_the_first_byte_then_the_head_deadline_starts(
    clock: FakeClock, make_connection: MakeConnection
) -> None:
    tracked = make_connection(idle_timeout=60, header_timeout=30)
    assert tracked.enter(Phase.IDLE)
    clock.advance(50)
    assert tracked.time_left() == pytest.approx(10)
    tracked.received(1, waited=50)
    assert tracked.phase is Phase.HEAD
    assert tracked.inside_head
    assert tracked.time_left() == pytest.approx(30)


@pytest.mark.parametrize("rate", [1100, 100 * 1024, 10 * MB])
def test_an_upload_faster_than_the_minimum_rate_never_runs_out(
    make_connection: MakeConnection, rate: int
) -> None:
    """A 500 MB layer at any rate above the minimum, however long it takes (5 days at 1100 B/s)."""
    tracked = make_connection(body_timeout=60, min_body_rate=1024)
    tracked.enter(Phase.BUSY)
    read = 64 * 1024
    lowest = tracked.time_left()
    for _ in range(500 * MB // read):
        tracked.received(read, waited=read / rate)
        lowest = min(lowest, tracked.time_left())
    assert lowest > 0
    assert tracked.time_left() == 60  # never more than body_timeout in hand


def test_a_stalled_body_runs_out_after_the_body_timeout(make_connection: MakeConnection) -> None:
    tracked = make_connection(body_timeout=60, min_body_rate=1024)
    tracked.enter(Phase.BUSY)
    tracked.received(10 * MB, waited=1)  # fast at first: that buys no more than 60 s
    tracked.received(0, waited=59)
    assert tracked.time_left() == pytest.approx(1)
    tracked.received(0, waited=1)
    assert tracked.time_left() <= 0
    assert isinstance(tracked.timeout(), BodyTimeout)


def test_a_body_trickling_below_the_minimum_rate_runs_out(make_connection: MakeConnection) -> None:
    tracked = make_connection(body_timeout=60, min_body_rate=1000)
    tracked.enter(Phase.BUSY)
    waited = 0.0
    while tracked.time_left() > 0:  # 10 bytes every 0.02 s: 500 B/s, half the minimum
        tracked.received(10, waited=0.02)
        waited += 0.02
    assert waited == pytest.approx(120, abs=0.1)  # it loses 0.5 s every second: 60 s / 0.5


def test_time_the_server_spends_elsewhere_is_not_charged(
    clock: FakeClock, make_connection: MakeConnection
) -> None:
    tracked = make_connection(body_timeout=60, min_body_rate=1024)
    tracked.enter(Phase.BUSY)
    clock.advance(3600)  # a slow disk, say: the data waited in the socket buffer
    tracked.received(64 * 1024, waited=0)
    assert tracked.time_left() == 60


def test_without_a_minimum_rate_only_stalls_count(make_connection: MakeConnection) -> None:
    tracked = make_connection(body_timeout=60, min_body_rate=0)
    tracked.enter(Phase.BUSY)
    for _ in range(1000):
        tracked.received(1, waited=59)
    assert tracked.time_left() == 60
    tracked.received(0, waited=60)
    assert tracked.time_left() <= 0


def admit(table: ConnectionTable, clock: FakeClock, pairs: Pairs) -> Connection:
    clock.advance(1)
    tracked = table.admit(new_pair(pairs)[0])
    assert tracked is not None
    return tracked


def closed_by_server(peer: socket.socket) -> bool:
    peer.settimeout(5)
    return peer.recv(1) == b""


def test_at_the_limit_the_longest_waiting_connection_makes_room(
    clock: FakeClock, pairs: Pairs
) -> None:
    table = ConnectionTable(config(max_connections=3), clock)
    first, second, third = (admit(table, clock, pairs) for _ in range(3))
    second.enter(Phase.BUSY)  # serving a request: never evicted
    third.enter(Phase.IDLE)
    newcomer = admit(table, clock, pairs)
    assert len(table) == 3
    assert [c.evicted for c in (first, second, third)] == [True, False, False]
    assert closed_by_server(pairs[0][1])  # its owner's blocked read sees end of file
    assert not first.enter(Phase.BUSY)  # and the owner serves nothing more on it
    clock.advance(1)
    newcomer.enter(Phase.IDLE)  # idle for a shorter time than `third`
    admit(table, clock, pairs)
    assert [c.evicted for c in (second, third, newcomer)] == [False, True, False]


def test_when_every_connection_is_busy_the_newcomer_is_refused(
    clock: FakeClock, pairs: Pairs
) -> None:
    table = ConnectionTable(config(max_connections=2), clock)
    for tracked in [admit(table, clock, pairs) for _ in range(2)]:
        tracked.enter(Phase.BUSY)
    assert table.admit(new_pair(pairs)[0]) is None
    assert len(table) == 2


def test_released_connections_free_their_place(clock: FakeClock, pairs: Pairs) -> None:
    table = ConnectionTable(config(max_connections=1), clock)
    first = admit(table, clock, pairs)
    table.release(first)
    admit(table, clock, pairs)
    assert not first.evicted


def test_the_reader_gives_up_at_the_phase_deadline(
    pairs: Pairs,
) -> None:
    ours, theirs = new_pair(pairs)
    tracked = Connection(ours, config(header_timeout=0.2), threading.Lock())
    reader = DeadlineReader(tracked, send_timeout=7)
    theirs.sendall(b"GET / HTTP/1.1\r\n")
    buffer = bytearray(100)
    assert reader.readinto(buffer) == 16
    with pytest.raises(TimeoutError):
        reader.readinto(buffer)  # nothing more arrives
    assert ours.gettimeout() == 7  # responses are written with the send timeout


def test_the_reader_never_hands_on_part_of_a_request_head(
    pairs: Pairs,
) -> None:
    ours, theirs = new_pair(pairs)
    reader = DeadlineReader(Connection(ours, config(), threading.Lock()), send_timeout=7)
    theirs.sendall(b"DELETE /v2/a/manifests/v1 HTTP/1.1\r\nAuthor")
    theirs.shutdown(socket.SHUT_WR)
    buffer = bytearray(100)
    assert reader.readinto(buffer) > 0
    with pytest.raises(ConnectionAbortedError):
        reader.readinto(buffer)
