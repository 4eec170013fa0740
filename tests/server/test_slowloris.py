"""``mpkit registry serve`` keeps serving real clients while slow clients hold every slot."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from pathlib import Path

from mpkit.server.config import DEFAULT_MAX_CONNECTIONS
from mpkit.server.server import wait_until
from tests.fixtures.skopeo import Skopeo
from tests.image.builders import make_oci_layout
from tests.server.helpers import ServeProcess, client, fsck

SLOW_CLIENTS = DEFAULT_MAX_CONNECTIONS  # as many as the server serves at once
LAYERS = [{"etc/motd": b"slow clients\n"}, {"app/data.bin": bytes(range(256)) * 2048}]


class Slowloris:
    """Connections that each send a request line, then one header line every *every* seconds.

    A connection the server drops is opened again at once, as an attacker would do; the
    number dropped so far is ``dropped``.
    """

    def __init__(self, port: int, count: int, every: float) -> None:
        self.port = port
        self.every = every
        self.dropped = 0
        self._stop = threading.Event()
        self._sockets = [self._open() for _ in range(count)]
        self._thread = threading.Thread(target=self._run, name="slowloris", daemon=True)

    def _open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.settimeout(None)  # blocking: a MSG_DONTWAIT read returns at once
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: slow\r\n")
        return sock

    def _run(self) -> None:
        line = 0
        while not self._stop.wait(self.every):
            line += 1
            for index, sock in enumerate(self._sockets):
                if self._stop.is_set():
                    return
                if self._alive(sock, f"X-Slow-{line}: 1\r\n".encode()):
                    continue
                self.dropped += 1
                sock.close()
                with contextlib.suppress(OSError):
                    self._sockets[index] = self._open()

    @staticmethod
    def _alive(sock: socket.socket, line: bytes) -> bool:
        try:
            if sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) is not None:
                return False  # end of file, or an answer: either way the server is done
        except BlockingIOError:
            pass
        except OSError:
            return False
        try:
            sock.sendall(line)
        except OSError:
            return False
        return True

    def __enter__(self) -> Slowloris:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for sock in self._sockets:
            sock.close()


def test_pulls_and_pushes_succeed_while_slow_clients_hold_every_connection(
    serve_process: ServeProcess, skopeo: Skopeo, tmp_path: Path
) -> None:
    # Slow clients are never timed out here: only making room for new clients lets them in.
    serve_process.extra += ["--header-timeout", "3600"]
    served = serve_process.start()
    digest = make_oci_layout(tmp_path / "src", "v1", LAYERS)
    image = f"docker://{served.host}/slow/app:v1"
    with Slowloris(served.port, SLOW_CLIENTS, every=1.0) as slow:
        with client(served.url) as http:
            assert http.get("/v2/").status_code == 200
        # The server was full: the request above took the place of a slow client.
        assert wait_until(lambda: slow.dropped >= 1, 30)
        skopeo.copy(
            f"oci:{tmp_path / 'src'}:v1",
            image,
            dest_args=["--dest-tls-verify=false", "--dest-no-creds"],
        )
        skopeo.copy(
            image,
            f"oci:{tmp_path / 'pulled'}:v1",
            src_args=["--src-tls-verify=false", "--src-no-creds"],
        )
    pulled = json.loads((tmp_path / "pulled" / "index.json").read_text())
    assert [m["digest"] for m in pulled["manifests"]] == [digest]
    assert fsck(served.root) == 4  # config, two layers, manifest
    assert "Traceback" not in served.log.read_text()
