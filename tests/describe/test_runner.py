"""The definition runner's wait for ``GET /apiVersion``, against real HTTP servers.

The runner starts the image's server and polls it: a refused connection (not up yet) and
a retryable status are asked again, any other answer is final, and a server that exits
ends the wait. The result records how the wait ended (``api_version_outcome``), which is
what these tests check: no test here measures time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from mpkit.describe.definition import RUNNER
from tests.fixtures.procs import free_port

# A real HTTP server answering GET with the statuses in argv[2] in turn (the last one
# repeats); 200 carries an API version. argv[3] seconds pass before it listens.
SERVER = """\
import json, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
statuses = [int(s) for s in sys.argv[2].split(",")]
time.sleep(float(sys.argv[3]))

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        body = json.dumps({"major": 2, "minor": 1, "maintenance": 7} if status == 200
                          else {"error": "no such path"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""
LONG_WAIT = 3600  # never reached: each wait here ends on what the server does


def run_runner(tmp_path: Path, server: list[str], port: int, wait: float) -> dict[str, Any]:
    """The runner on the host with a trivial definition command and *server*."""
    io_dir = tmp_path / "io"
    io_dir.mkdir()
    shutil.copyfile(RUNNER, io_dir / "runner.py")
    (io_dir / "input.json").write_text("{}")
    definition = "import sys; open(sys.argv[-1], 'w').write('{\"adapter_key\": \"K\"}')"
    job = {"command": [sys.executable, "-c", definition], "units": False, "server": server,
           "server_port": port, "server_timeout": wait, "log_dirs": []}  # fmt: skip
    (io_dir / "job.json").write_text(json.dumps(job))
    subprocess.run([sys.executable, str(io_dir / "runner.py"), str(io_dir)], check=True,
                   timeout=LONG_WAIT + 60, capture_output=True)  # fmt: skip
    result: dict[str, Any] = json.loads((io_dir / "result.json").read_text())
    assert result["exit_code"] == 0
    return result


def scripted_server(tmp_path: Path, port: int, statuses: str, delay: float = 0) -> list[str]:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    return [sys.executable, str(script), str(port), statuses, str(delay)]


def test_a_404_ends_the_wait_at_once(tmp_path: Path) -> None:
    port = free_port()
    result = run_runner(tmp_path, scripted_server(tmp_path, port, "404"), port, LONG_WAIT)
    assert result["api_version_outcome"] == "answer"
    assert result["api_version_error"] == "GET /apiVersion answered HTTP 404"
    assert "api_version" not in result


def test_a_static_file_server_answering_404_is_not_waited_for(tmp_path: Path) -> None:
    port = free_port()
    empty = tmp_path / "www"
    empty.mkdir()
    server = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
              str(empty), str(port)]  # fmt: skip
    result = run_runner(tmp_path, server, port, LONG_WAIT)
    assert result["api_version_outcome"] == "answer"
    assert "404" in result["api_version_error"]


def test_an_answer_that_is_not_a_version_is_final(tmp_path: Path) -> None:
    port = free_port()
    script = tmp_path / "server.py"
    script.write_text(SERVER.replace('{"major": 2, "minor": 1, "maintenance": 7}', '"v2"'))
    server = [sys.executable, str(script), str(port), "200", "0"]
    result = run_runner(tmp_path, server, port, LONG_WAIT)
    assert result["api_version_outcome"] == "answer"
    assert "not a version" in result["api_version_error"]


def test_retryable_statuses_and_a_late_server_are_waited_for(tmp_path: Path) -> None:
    port = free_port()
    server = scripted_server(tmp_path, port, "503,502,200", delay=0.5)
    result = run_runner(tmp_path, server, port, LONG_WAIT)
    assert result["api_version_outcome"] == "version"
    assert result["api_version"] == "2.1.7"
    assert result["api_version_attempts"] >= 3  # two retryable answers, then the version


def test_a_server_that_exits_ends_the_wait(tmp_path: Path) -> None:
    server = [sys.executable, "-c", "import sys; sys.exit(3)"]
    result = run_runner(tmp_path, server, free_port(), LONG_WAIT)
    assert result["api_version_outcome"] == "exited"
    assert result["api_version_error"] == "the image's server exited with status 3"


def test_a_server_that_never_listens_is_polled_until_the_deadline(tmp_path: Path) -> None:
    server = [sys.executable, "-c", "import time; time.sleep(600)"]
    result = run_runner(tmp_path, server, free_port(), 1)
    assert result["api_version_outcome"] == "deadline"
    assert "refused" in result["api_version_error"].lower()
