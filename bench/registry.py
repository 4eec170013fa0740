"""Registry benchmark: the built-in registry against CNCF distribution, same image and clients.

Run from the repository root::

    python bench/registry.py --runs 5

It reuses the push benchmark's cached ~250 MB image (five gzip layers, ``bench/.work``)
and, per round, for each client (``skopeo copy`` and mpkit's own ``image push/pull``)
and each registry (alternating), starts an empty registry on 127.0.0.1, then times:

* **push**: the image from the OCI layout into the empty registry;
* **pull**: the image back from that registry into a fresh OCI layout.

Each command is timed wall-clock from spawn to exit, with a fresh HOME, credentials,
state and caches, after a ``sync`` (so dirty pages of the previous run do not count).
Every run is checked: after a push the registry serves manifest bytes that hash to the
image's digest; after a pull the layout's manifest is that digest and every blob
hashes to its name. Ratios are built-in/distribution medians
(below 1.0: the built-in registry is faster); the goal is at most 1.5 for every client
and direction. Results go to the ``bench:registry`` section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from _common import (
    WORK_DIR,
    BenchError,
    Summary,
    add_results_argument,
    bench_parser,
    command_line,
    display_command,
    fresh_registry,
    isolated_home,
    load_average,
    log,
    machine_text,
    markdown_table,
    prime_mpkit_bytecode,
    python_bytecode_env,
    ratio,
    require_tools,
    run_main,
    run_timed,
    seconds_text,
    timed_text,
    utc_now,
    write_results,
    yes,
)
from push import (
    GZIP_LEVEL,
    BenchImage,
    add_image_arguments,
    check_image_arguments,
    prepared_image,
)

# isort: split
from tests.fixtures.procs import ManagedProcess, free_port, http_ready

SECTION = "registry"
TAG = "bench"
RATIO_GOAL = 1.5
REGISTRIES = ("distribution", "built-in")
OPERATIONS = ("push", "pull")
MANIFEST_ACCEPT = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class Client:
    """How one client pushes a layout to a target and pulls a target into a layout."""

    name: str
    push: Callable[[Path, str], list[str]]
    pull: Callable[[str, Path], list[str]]


def skopeo_client(binary: str) -> Client:
    base = [binary, "--insecure-policy", "copy"]
    return Client(
        "skopeo",
        lambda src, target: [
            *base,
            "--dest-tls-verify=false",
            f"oci:{src}:{TAG}",
            f"docker://{target}",
        ],
        lambda target, dest: [
            *base,
            "--src-tls-verify=false",
            f"docker://{target}",
            f"oci:{dest}:{TAG}",
        ],
    )


def mpkit_client() -> Client:
    base = [sys.executable, "-m", "mpkit", "image"]
    return Client(
        "mpkit",
        lambda src, target: [*base, "push", f"oci:{src}:{TAG}", target, "--json"],
        lambda target, dest: [*base, "pull", target, f"oci:{dest}:{TAG}", "--json"],
    )


# --- registries ------------------------------------------------------------------------


@contextlib.contextmanager
def builtin_registry(workdir: Path) -> Iterator[str]:
    """``mpkit registry serve`` on a free loopback port with an empty root; yields host:port.

    Started the way a user starts it (a foreground process, access log on stderr into a
    file), stopped with SIGTERM and its storage deleted on exit.
    """
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    env = {**isolated_home(workdir / "server-home").env}
    env.update(python_bytecode_env(env))
    for _attempt in range(3):
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "mpkit",
            "registry",
            "serve",
            "--addr",
            f"127.0.0.1:{port}",
            "--root",
            str(workdir / "root"),
        ]
        process = ManagedProcess(
            argv, log_path=workdir / "server.log", env=env, name=f"mpkit-registry:{port}"
        )
        try:
            process.start(http_ready("127.0.0.1", port), timeout=20)
        except Exception as error:  # the port was taken in between: try another
            process.stop()
            last_error: Exception = error
            continue
        try:
            yield f"127.0.0.1:{port}"
        finally:
            process.stop()
            shutil.rmtree(workdir, ignore_errors=True)
        return
    raise BenchError(f"the built-in registry did not start: {last_error}")


@contextlib.contextmanager
def registry(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "built-in":
        with builtin_registry(workdir) as host:
            yield host
    else:
        with fresh_registry(workdir) as server:
            yield server.host


# --- checks ----------------------------------------------------------------------------


def served_digest(target: str) -> str:
    """sha256 of the manifest bytes the registry serves (distribution-spec GET manifest)."""
    host, _, rest = target.partition("/")
    repository, _, tag = rest.rpartition(":")
    url = f"http://{host}/v2/{repository}/manifests/{tag}"
    request = urllib.request.Request(url, headers={"Accept": MANIFEST_ACCEPT})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        return "sha256:" + hashlib.sha256(response.read()).hexdigest()


def check_pulled(layout: Path, image: BenchImage) -> None:
    """The pulled layout names the image's manifest and every blob hashes to its name."""
    index = json.loads((layout / "index.json").read_text())
    digests = [m["digest"] for m in index.get("manifests", [])]
    if image.digest not in digests:
        raise BenchError(f"the pulled layout {layout} lists {digests}, not {image.digest}")
    blobs = sorted((layout / "blobs" / "sha256").iterdir())
    if len(blobs) != image.blob_count + 1:
        raise BenchError(
            f"the pulled layout has {len(blobs)} blobs, expected {image.blob_count + 1}"
        )
    for blob in blobs:
        hasher = hashlib.sha256()
        with open(blob, "rb") as handle:
            while chunk := handle.read(1 << 22):
                hasher.update(chunk)
        if hasher.hexdigest() != blob.name:
            raise BenchError(f"pulled blob {blob} does not hash to its name")


# --- the benchmark ---------------------------------------------------------------------

Timings = dict[tuple[str, str, str], list[float]]  # (client, operation, registry) → seconds


def run_rounds(clients: Sequence[Client], image: BenchImage, runs: int) -> Timings:
    timings: Timings = {}
    scratch = Path(tempfile.mkdtemp(prefix="registry-runs.", dir=WORK_DIR))
    try:
        for number in range(1, runs + 1):
            order = REGISTRIES if number % 2 else tuple(reversed(REGISTRIES))
            for client in clients:
                for kind in order:
                    _one_run(
                        client, kind, image, scratch / f"{number}-{client.name}-{kind}", timings
                    )
            log(
                f"round {number}/{runs}: "
                + ", ".join(
                    f"{c} {op} {kind} {timings[(c, op, kind)][-1]:.2f}s"
                    for c in (cl.name for cl in clients)
                    for op in OPERATIONS
                    for kind in REGISTRIES
                )
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return timings


def _one_run(client: Client, kind: str, image: BenchImage, workdir: Path, timings: Timings) -> None:
    with registry(kind, workdir / "registry") as host:
        target = f"{host}/bench/{client.name}:{TAG}"
        home = isolated_home(workdir / "push-home")
        os.sync()  # no writeback of an earlier run's data slows this one down
        pushed = run_timed(client.push(image.layout, target), env=home.env, preexec=home.preexec)
        served = served_digest(target)
        if served != image.digest:
            raise BenchError(
                f"{client.name} pushed to {kind}; it serves {served}, expected {image.digest}"
            )
        dest = workdir / "pulled"
        home = isolated_home(workdir / "pull-home")
        os.sync()
        pulled = run_timed(client.pull(target, dest), env=home.env, preexec=home.preexec)
        check_pulled(dest, image)
        shutil.rmtree(dest, ignore_errors=True)
    timings.setdefault((client.name, "push", kind), []).append(pushed.seconds)
    timings.setdefault((client.name, "pull", kind), []).append(pulled.seconds)


# --- the report ------------------------------------------------------------------------


def report(
    timings: Timings,
    clients: Sequence[Client],
    image: BenchImage,
    runs: int,
    command: str,
    commands: dict[str, str],
    load_before: str,
) -> str:
    megabytes = image.compressed_bytes / 1e6
    rows, ratio_rows = [], []
    all_met = True
    for client in clients:
        for op in OPERATIONS:
            summaries = {k: Summary.of(timings[(client.name, op, k)]) for k in REGISTRIES}
            for kind in REGISTRIES:
                s = summaries[kind]
                rows.append(
                    [
                        client.name,
                        op,
                        kind,
                        seconds_text(s.median),
                        f"{megabytes / s.median:.0f}",
                        seconds_text(s.minimum),
                        seconds_text(s.maximum),
                        " ".join(f"{x:.2f}" for x in s.samples),
                    ]
                )
            value = ratio(summaries["built-in"], summaries["distribution"])
            met = value <= RATIO_GOAL
            all_met = all_met and met
            ratio_rows.append([client.name, op, f"{value:.2f}", yes(met)])
    table = markdown_table(
        [
            "client",
            "operation",
            "registry",
            "median s",
            "MB/s",
            "min s",
            "max s",
            "all runs (s, in order)",
        ],
        rows,
    )
    ratios = markdown_table(["client", "operation", "built-in/distribution", "≤ 1.5"], ratio_rows)
    versions = {"skopeo": ["skopeo", "--version"], "distribution": ["docker-registry", "--version"]}
    machine = machine_text(versions, load_before)
    timed = timed_text(commands)
    verdict = "met" if all_met else "**not met**"
    return f"""## Registry: built-in (`mpkit registry serve`) vs CNCF distribution

Produced by `{command}` on {utc_now()}, {runs} run(s) per client, operation and registry.

Goal: built-in within {RATIO_GOAL}x of distribution (ratio of medians ≤ {RATIO_GOAL}) for
every client and direction: {verdict}.

{ratios}

{table}

Image: the push benchmark's linux/amd64 OCI image, {image.layer_count} gzip (level \
{GZIP_LEVEL}) layers plus a config, {megabytes:.1f} MB in {image.blob_count} blobs, manifest
`{image.digest}`; MB/s is that size over the median.

Registries: each run starts an empty one on 127.0.0.1 (plain HTTP, no auth, storage
on the same disk): CNCF distribution (`docker-registry serve`, access log off) or the
built-in one (`python -m mpkit registry serve --addr 127.0.0.1:PORT --root DIR`,
its access log on, written to a file). Order alternates between rounds, and `sync`
runs before every timed command, so no run pays for writing back the data of the one
before (both registries fsync blobs before committing them). Every push is
verified (the served manifest hashes to the digest above) and every pull too (the
pulled layout names that digest and each blob hashes to its name).

Isolation: every client run gets a fresh HOME, `DOCKER_CONFIG`, `REGISTRY_AUTH_FILE`,
`XDG_*`, `MPKIT_STATE_DIR` and `MPKIT_CACHE_DIR` (and skopeo an empty blob-info cache,
as in the push benchmark).

Timed commands (wall clock, spawn to exit):

{timed}

Machine:

{machine}
"""


# --- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs per client and registry")
    add_image_arguments(parser)
    parser.add_argument("--clients", default="skopeo,mpkit", help="comma-separated clients")
    add_results_argument(parser)
    args = parser.parse_args(argv)
    check_image_arguments(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line("registry.py", argv)
    paths = require_tools("skopeo", "docker-registry")
    available = {"skopeo": skopeo_client(paths["skopeo"]), "mpkit": mpkit_client()}
    try:
        clients = [available[name] for name in args.clients.split(",")]
    except KeyError as error:
        raise BenchError(f"unknown client {error}; choose from {', '.join(available)}") from None
    image = prepared_image(args)
    prime_mpkit_bytecode()
    load_before = load_average()
    timings = run_rounds(clients, image, args.runs)
    sample = "127.0.0.1:PORT/bench/CLIENT:bench"
    shown = {sys.executable: "python", paths["skopeo"]: "skopeo"}
    commands = {
        f"{client.name} {op}": display_command(
            client.push(Path("DIR"), sample) if op == "push" else client.pull(sample, Path("DIR")),
            shown,
        )
        for client in clients
        for op in OPERATIONS
    }
    section = report(timings, clients, image, args.runs, command, commands, load_before)
    write_results(SECTION, section, args.results)
    return 0


if __name__ == "__main__":
    run_main(main, "registry")
