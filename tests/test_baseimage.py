"""The SDK base stand-in is faithful: shape, pullability, and an SDK-style adapter on it."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mpkit.image import mediatypes as mt
from mpkit.image.layout import read_oci_layout
from tests.fixtures.baseimage import (
    EPOCH,
    SDK_TAG,
    STAND_IN_SERVER,
    UPSTREAM_NAME,
    USER_NAME,
    WORKDIR,
    SdkBase,
    base_image_layout,
    write_layer,
)
from tests.fixtures.podman import Podman
from tests.fixtures.procs import free_port
from tests.fixtures.stand_in_server import API_VERSION, make_server

Response = tuple[int, Any]


def request(port: int, method: str, path: str, body: Any = None, timeout: float = 30) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


ADAPTER = """\
import json
import sys

command, input_path, output_path = sys.argv[1:4]
with open(input_path) as stream:
    body = json.load(stream)
if command == "fail":
    print("adapter broke", file=sys.stderr)
    sys.exit(3)
if command == "adapter_definition" and body.get("no_definition"):
    sys.exit(0)
try:
    import mpkit_probe
    probe = mpkit_probe.VALUE
except ImportError:
    probe = None
with open(output_path, "w") as stream:
    json.dump({"command": command, "input": body, "probe": probe}, stream)
"""

COMMANDS = ("test", "collect", "adapter_definition", "endpoint_urls")


def write_commands_cfg(
    directory: Path, python: str, overrides: dict[str, str] | None = None
) -> None:
    lines = ["[Commands]"]
    for key in COMMANDS:
        lines.append(f"{key}={python} app/adapter.py {(overrides or {}).get(key, key)}")
    (directory / "commands.cfg").write_text("\n".join(lines) + "\n")


def write_adapter(directory: Path) -> None:
    (directory / "app").mkdir(parents=True, exist_ok=True)
    (directory / "app" / "adapter.py").write_text(ADAPTER)


# -- the server, on the host -----------------------------------------------------------
@pytest.fixture
def host_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    write_adapter(tmp_path)
    write_commands_cfg(tmp_path, sys.executable)
    server = make_server("127.0.0.1", 0, tmp_path)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], tmp_path
    finally:
        server.shutdown()
        server.server_close()


def test_server_runs_commands_cfg_with_input_and_output_files(
    host_server: tuple[int, Path],
) -> None:
    port, _ = host_server
    assert request(port, "GET", "/apiVersion") == (200, API_VERSION)
    status, body = request(port, "POST", "/test", {"adapter_key": {"name": "x"}})
    assert status == 200
    assert body["command"] == "test"
    assert body["input"] == {"adapter_key": {"name": "x"}}
    first = request(port, "POST", "/collect", {"a": 1})[1]["input"]
    second = request(port, "POST", "/collect", {"a": 1})[1]["input"]
    assert (first["collection_number"], second["collection_number"]) == (0, 1)
    assert second["collection_window"]["start_time"] == first["collection_window"]["end_time"]
    assert request(port, "POST", "/endpointURLs", {})[1]["command"] == "endpoint_urls"
    status, body = request(port, "GET", "/adapterDefinition")
    assert (status, body["command"], body["input"]) == (200, "adapter_definition", {})


def test_server_reports_adapter_failures(host_server: tuple[int, Path]) -> None:
    port, workdir = host_server
    assert request(port, "POST", "/test")[0] == 400  # no body
    assert request(port, "GET", "/nothing")[0] == 404
    assert request(port, "GET", "/test")[0] == 405
    write_commands_cfg(workdir, sys.executable, {"test": "fail"})
    status, message = request(port, "POST", "/test", {})
    assert status == 500
    assert "No result from adapter" in message
    assert "adapter broke" in message
    (workdir / "commands.cfg").unlink()
    status, message = request(port, "POST", "/collect", {})
    assert status == 500
    assert "commands.cfg" in message


def test_server_answers_204_without_an_adapter_definition(tmp_path: Path) -> None:
    write_adapter(tmp_path)
    (tmp_path / "commands.cfg").write_text(
        f"[Commands]\nadapter_definition={sys.executable} -c pass\n"
    )
    server = make_server("127.0.0.1", 0, tmp_path)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        assert request(server.server_address[1], "GET", "/adapterDefinition") == (204, None)
    finally:
        server.shutdown()
        server.server_close()


# -- the layer writer ------------------------------------------------------------------
def test_layer_is_reproducible_with_numeric_owners_and_clamped_mtimes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "b.conf").write_text("b")
    (root / "etc" / "a.conf").write_text("a")
    os.link(root / "etc" / "a.conf", root / "etc" / "hard")
    (root / "lib.py").write_text("x = 1\n")
    (root / "link").symlink_to("etc/a.conf")
    (root / "dev").mkdir()
    (root / "dev" / "null-ish").write_text("skipped")
    late = EPOCH + 10**6
    for path in [root / "etc" / "b.conf", root / "lib.py"]:
        os.utime(path, (late, late))
    if os.geteuid() == 0:
        os.chown(root / "etc" / "b.conf", 1000, 1000)

    digests = []
    for name in ("one.tgz", "two.tgz"):
        with open(tmp_path / name, "wb") as sink:
            digests.append(write_layer(root, sink).digest)
    assert digests[0] == digests[1]
    assert digests[0] == "sha256:" + hashlib.sha256((tmp_path / "one.tgz").read_bytes()).hexdigest()

    with tarfile.open(tmp_path / "one.tgz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        names = [m.name for m in tar.getmembers()]
    assert names == ["dev", "etc", "etc/a.conf", "etc/b.conf", "etc/hard", "lib.py", "link"]
    assert members["etc/hard"].islnk() and members["etc/hard"].linkname == "etc/a.conf"
    assert members["link"].issym() and members["link"].linkname == "etc/a.conf"
    assert members["etc/b.conf"].mtime == EPOCH  # clamped
    assert members["lib.py"].mtime == late  # .pyc files record it
    assert all(m.uname == "" and m.gname == "" for m in members.values())
    if os.geteuid() == 0:
        assert (members["etc/b.conf"].uid, members["etc/b.conf"].gid) == (1000, 1000)


# -- the image -------------------------------------------------------------------------
def test_layout_looks_like_the_sdk_base_on_harbor(sdk_base: SdkBase) -> None:
    layout, digest = base_image_layout()  # cached: same answer, instantly
    assert (layout, digest) == (sdk_base.layout, sdk_base.digest)
    image = read_oci_layout(layout, SDK_TAG)
    assert image.media_type == mt.DOCKER_MANIFEST
    assert [layer.media_type for layer in image.layers] == [mt.DOCKER_LAYER_GZIP]
    config = image.config_json
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    container = config["config"]
    assert container["User"] == USER_NAME
    assert container["WorkingDir"] == WORKDIR
    assert container["ExposedPorts"] == {"8080/tcp": {}}
    assert container["Cmd"] == ["python3", STAND_IN_SERVER]
    assert "LANG=C.UTF-8" in container["Env"]
    assert config["history"]
    assert sdk_base.upstream_name == UPSTREAM_NAME
    assert sdk_base.mirror == {"projects.packages.broadcom.com": sdk_base.registry.host}


def test_base_pulls_with_podman_and_has_the_sdk_shape(podman: Podman, sdk_base: SdkBase) -> None:
    podman.pull(sdk_base.reference)
    assert podman.image_digest(sdk_base.reference) == sdk_base.digest

    identity = podman.container_run(sdk_base.reference, "id").stdout
    assert identity.startswith("uid=1000(aria-ops-adapter-user) gid=1000(aria-ops-adapter-user)")

    script = (
        "pwd; python3 -c 'import sys; print(sys.version)'; pip3 --version; "
        "readlink /usr/local/bin/python; test -s /etc/ssl/certs/ca-certificates.crt && echo ca; "
        "ls /usr/lib/python3*/EXTERNALLY-MANAGED 2>/dev/null || echo managed-by-nobody; "
        "stat -c '%u:%g' .; ulimit -n"
    )
    lines = podman.container_run(sdk_base.reference, "sh", "-c", script).stdout.splitlines()
    assert lines[0] == WORKDIR
    assert lines[1].startswith("3.11.")
    assert lines[2].startswith("pip ") and "python 3.11" in lines[2]
    assert lines[3:] == ["/usr/bin/python3", "ca", "managed-by-nobody", "1000:1000", "10000"]


def _wheel(directory: Path) -> Path:
    """A tiny pure-python wheel (module ``mpkit_probe``), so pip needs no index."""
    files = {
        "mpkit_probe/__init__.py": b'VALUE = "probe"\n',
        "mpkit_probe-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: mpkit-probe\n"
        b"Version: 1.0\n",
        "mpkit_probe-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: mpkit-tests\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{name},sha256="
        f"{base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
        f"{len(data)}"
        for name, data in files.items()
    ]
    record.append("mpkit_probe-1.0.dist-info/RECORD,,")
    files["mpkit_probe-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    path = directory / "mpkit_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return path


def _sdk_project(directory: Path) -> Path:
    """An SDK-style build context (the SDK's Dockerfile plus an offline wheel)."""
    write_adapter(directory)
    write_commands_cfg(directory, "/usr/local/bin/python")
    (directory / "wheels").mkdir()
    wheel = _wheel(directory / "wheels")
    (directory / "adapter_requirements.txt").write_text(f"./wheels/{wheel.name}\n")
    (directory / "Dockerfile").write_text(
        f"FROM {UPSTREAM_NAME}\n"
        "COPY commands.cfg .\n"
        "COPY adapter_requirements.txt .\n"
        "COPY wheels wheels\n"
        "RUN pip3 install -r adapter_requirements.txt --upgrade\n"
        "COPY app app\n"
    )
    return directory


def _wait_until_ready(podman: Podman, container: str, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            request(port, "GET", "/apiVersion", timeout=1)
            return
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                pytest.fail(f"the adapter never answered on {port}:\n{podman.logs(container)}")
            time.sleep(0.1)


def test_sdk_style_adapter_built_on_the_base_answers_rest_calls(
    podman: Podman, sdk_base: SdkBase, tmp_path: Path
) -> None:
    podman.add_mirrors(sdk_base.mirror)  # FROM projects.packages.broadcom.com/... works
    tag = "localhost/mpkit-probe-adapter:test"
    podman.build(_sdk_project(tmp_path), tag, network="none")

    # As podman builds it here: pip as the non-root user lands in ~/.local; COPY'd files
    # belong to root.
    site = "/home/aria-ops-adapter-user/.local/lib/python3.11/site-packages/mpkit_probe"
    owners = podman.container_run(
        tag, "stat", "-c", "%n %u", site, "commands.cfg", "app/adapter.py"
    ).stdout.split("\n")
    assert owners[:3] == [f"{site} 1000", "commands.cfg 0", "app/adapter.py 0"]

    port = free_port()
    with podman.running(tag, publish=[f"127.0.0.1:{port}:8080"]) as container:
        _wait_until_ready(podman, container, port)
        assert request(port, "GET", "/apiVersion") == (200, API_VERSION)
        status, definition = request(port, "GET", "/adapterDefinition")
        assert (status, definition["command"], definition["probe"]) == (
            200,
            "adapter_definition",
            "probe",
        )
        status, result = request(port, "POST", "/test", {"adapter_key": {"name": "probe"}})
        assert (status, result["command"], result["input"]["adapter_key"]) == (
            200,
            "test",
            {"name": "probe"},
        )
