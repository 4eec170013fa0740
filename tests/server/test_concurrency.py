"""Many clients at once, and a server killed in the middle of a push."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mpkit.image.layout import OCILayoutWriter
from mpkit.image.source import load_source
from mpkit.reference import parse_reference
from mpkit.registry import ClientOptions, open_client, pull_image, push_image
from mpkit.server.server import wait_until
from tests.image.builders import make_oci_layout
from tests.server.helpers import ServeProcess, client, fsck, sha256

PARALLEL = 20


@pytest.fixture
def served(serve_process: ServeProcess) -> ServeProcess:
    return serve_process.start()


def test_parallel_pushes_and_pulls_all_verify(
    served: ServeProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MPKIT_STATE_DIR", str(tmp_path / "state"))
    shared = {"etc/base.txt": b"a layer every image shares\n" * 200}
    digests: dict[int, str] = {}
    for i in range(PARALLEL):
        layers = [shared, {f"app/{i}.bin": os.urandom(50_000 + i)}]
        digests[i] = make_oci_layout(tmp_path / f"src-{i}", "v1", layers)
    options = ClientOptions(concurrency=4)
    warmup = parse_reference(f"{served.host}/warm/up:v1")
    with open_client(served.host, options=options) as c:
        push_image(c, load_source(f"oci:{tmp_path / 'src-0'}:v1"), warmup)

    def push(i: int) -> str:
        target = parse_reference(f"{served.host}/team/app{i % 10}:v{i}")
        with open_client(served.host, options=options) as c:
            return push_image(c, load_source(f"oci:{tmp_path / f'src-{i}'}:v1"), target).digest

    def pull(i: int) -> str:
        with open_client(served.host, options=options, anonymous=True) as c:
            writer = OCILayoutWriter(tmp_path / f"pulled-warm-{i}")
            return pull_image(c, warmup, writer, tag="v1").digest

    with ThreadPoolExecutor(max_workers=PARALLEL + 5) as pool:
        pushes = [pool.submit(push, i) for i in range(PARALLEL)]
        pulls = [pool.submit(pull, i) for i in range(5)]
        assert [f.result() for f in pushes] == [digests[i] for i in range(PARALLEL)]
        assert [f.result() for f in pulls] == [digests[0]] * 5

    def pull_back(i: int) -> str:
        ref = parse_reference(f"{served.host}/team/app{i % 10}:v{i}")
        with open_client(served.host, options=options, anonymous=True) as c:
            return pull_image(c, ref, OCILayoutWriter(tmp_path / f"pulled-{i}"), tag="v1").digest

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        assert list(pool.map(pull_back, range(PARALLEL))) == [digests[i] for i in range(PARALLEL)]
    assert fsck(served.root) == 1 + PARALLEL * 3  # one shared layer, then config+layer+manifest
    assert not list((served.root / "_uploads").iterdir())


def test_killing_the_server_mid_push_leaves_no_corrupt_blob(
    tmp_path: Path, serve_process: ServeProcess
) -> None:
    env = {**os.environ, "MPKIT_STATE_DIR": str(tmp_path / "state")}
    served = serve_process.start()
    big = os.urandom(48 * 1024 * 1024)
    digest = make_oci_layout(tmp_path / "src", "v1", [{"big.bin": big}])
    target = f"{served.host}/crash/test:v1"
    push = [
        sys.executable,
        "-m",
        "mpkit",
        "image",
        "push",
        f"oci:{tmp_path / 'src'}:v1",
        target,
        "--retries",
        "1",
        "--json",
    ]
    first = subprocess.Popen(push, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    uploads = served.root / "_uploads"

    def uploading() -> bool:
        return any(d.stat().st_size > 1024 * 1024 for d in uploads.glob("*/data"))

    try:
        assert wait_until(uploading, 30, interval=0.01), "the push never started uploading"
        served.kill()
        first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode != 0, "the push should have failed with the server gone"
    manifest_path = tmp_path / "src" / "blobs" / "sha256" / digest.split(":")[1]
    big_layer = json.loads(manifest_path.read_bytes())["layers"][0]["digest"]
    fsck(served.root)  # whatever was stored (the small config, maybe) hashes to its name
    assert not (served.root / "blobs" / "sha256" / big_layer[7:9] / big_layer[7:]).exists()
    served.start()  # same root, fresh port
    with client(served.url) as http:
        assert http.head(f"/v2/crash/test/blobs/{big_layer}").status_code == 404
    target = f"{served.host}/crash/test:v1"
    second = subprocess.run(
        [*push[:6], target, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["digest"] == digest
    with client(served.url) as http:
        manifest = http.get(f"/v2/crash/test/manifests/{digest}")
        assert sha256(manifest.content) == digest
        layer = http.get(f"/v2/crash/test/blobs/{big_layer}")
        assert sha256(layer.content) == big_layer
    assert fsck(served.root) == 3
    served.stop()
