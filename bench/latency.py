"""Latency benchmark: an app-only ``mpkit build`` against a registry 50 ms away.

Run from the repository root::

    python bench/latency.py --runs 5

Every request to the target registry waits ``--delay`` seconds (default 0.05) in a delay
proxy (``tests/fixtures/faultproxy.py``) before it is forwarded, as a registry that far
away would make it wait. What is timed is an app-only change (one line of
``app/adapter.py``) to a finished pack: ``mpkit build`` (build, push, pack, and the
anonymous check of a cloud proxy's pull), next to ``podman build`` + ``podman push`` of the
same change through a delay proxy of its own. The proxies count every request and the
longest chain of requests that each waited for the one before (``in_sequence``): with 50 ms
on each, that chain is what latency costs a command.

The project is ``tests/e2e/sdkproject.py``'s (conf/describe.xml included: no container
runs); its SDK base is the Debian stand-in on a registry of its own without delay, as the
SDK base comes from Broadcom's registry, not the user's. Both tools build and push it once,
untimed; then the runs alternate. Every mpkit run is checked: the pack records the digest
the registry serves, the pip layer is reused, at most the app layer and the config are
uploaded. Results go to the ``bench:latency`` section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from _common import (
    WORK_DIR,
    BenchError,
    Summary,
    ToolHome,
    add_results_argument,
    bench_parser,
    command_line,
    fresh_registry,
    isolated_home,
    load_average,
    log,
    machine_text,
    markdown_table,
    prime_mpkit_bytecode,
    require_tools,
    run_main,
    run_timed,
    served_manifest,
    timed_text,
    times_table,
    utc_now,
    write_results,
    yes,
)
from _podman import BenchPodman, base_registry, mpkit_command_text, podman_command_text

# isort: split
from tests.e2e.sdkproject import (
    KIND,
    PACK_NAME,
    change_app,
    read_pack,
    sdk_mirror,
    write_sdk_project,
)
from tests.fixtures.faultproxy import FaultProxy, SeenRequest, described, in_sequence
from tests.fixtures.registry import RegistryServer
from tests.imagebuild.projects import DEFAULT_REQUIREMENTS

SECTION = "latency"
REPOSITORY = "bench/adapter"
PODMAN_TAG = "bench"
TOOLS = ("mpkit", "podman")
RUNROOT_PREFIX = "mpkit-bench-lat"
APP_ONLY_BLOBS = 2  # the app layer and the image config
GOAL_SECONDS = 0.8
GOAL_IN_SEQUENCE = 8


@dataclass(frozen=True)
class Run:
    tool: str
    seconds: float
    requests: tuple[SeenRequest, ...]

    @property
    def in_sequence(self) -> int:
        return len(in_sequence(self.requests))


class Target:
    """A fresh registry for one tool behind a delay proxy that records every request."""

    def __init__(self, registry: RegistryServer, delay: float) -> None:
        self.registry = registry
        self.proxy = FaultProxy.for_registry(registry).start()
        self.proxy.delay(None, "", delay, times=None)

    @property
    def host(self) -> str:
        return self.proxy.host

    def since(self, count: int) -> tuple[SeenRequest, ...]:
        return tuple(self.proxy.seen[count:])

    def close(self) -> None:
        self.proxy.stop()


class MpkitTool:
    """``mpkit build PROJECT --json --no-ttl``, in a fresh interpreter (no build server)."""

    name = "mpkit"

    def __init__(self, home: ToolHome, project: Path, target: Target, base: str) -> None:
        self.home = home
        self.project = project
        self.target = target
        self.env = {
            **home.env,
            "MPKIT_MIRRORS": sdk_mirror(base),
            "MPKIT_SDK_CONFIG": str(home.root / "sdk-config.json"),
        }
        self.env.pop("MPKIT_DAEMON", None)  # unset: no resident server

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", "mpkit", "build", str(self.project), "--json", "--no-ttl"]

    def run(self, *, check: bool) -> Run:
        before = len(self.target.proxy.seen)
        done = run_timed(self.argv, env=self.env, preexec=self.home.preexec)
        run = Run(self.name, done.seconds, self.target.since(before))
        report = json.loads(done.stdout)
        served = served_manifest(self.target.registry.host, REPOSITORY, str(report["tag"]))
        if report["digest"] != served.digest:
            raise BenchError(f"mpkit reported {report['digest']}, the registry serves "
                             f"{served.digest}")  # fmt: skip
        conf = read_pack(self.project / "build" / PACK_NAME).kind_conf(KIND)
        if conf.get("DIGEST") != served.digest:
            raise BenchError(f"the pack records {conf.get('DIGEST')}, not {served.digest}")
        if not report["verify"]["ok"]:
            raise BenchError(f"mpkit's anonymous check failed: {report['verify']}")
        if check:
            pip = [s for s in report["layers"] if s["instruction"].startswith("RUN")]
            uploaded = int(report["push"]["blobs_uploaded"])
            if uploaded > APP_ONLY_BLOBS or not all(s["cached"] for s in pip):
                raise BenchError(f"app-only mpkit uploaded {uploaded} blobs or re-ran pip")
        return run


class PodmanTool(BenchPodman):
    def __init__(self, binary: str, root: Path, home: ToolHome, project: Path, target: Target,
                 base: str) -> None:  # fmt: skip
        super().__init__(binary, root, home, base, RUNROOT_PREFIX)
        self.project = project
        self.target = target
        self.allow(target.host)

    @property
    def reference(self) -> str:
        return f"{self.target.host}/{REPOSITORY}:{PODMAN_TAG}"

    def run(self, *, check: bool) -> Run:
        before = len(self.target.proxy.seen)
        done = self.build_and_push(self.project, self.reference)
        return Run(self.name, done.seconds, self.target.since(before))


@contextlib.contextmanager
def tools_for(scratch: Path, podman: str, base: str, delay: float
              ) -> Iterator[tuple[MpkitTool, PodmanTool]]:  # fmt: skip
    with contextlib.ExitStack() as stack:
        targets: dict[str, Target] = {}
        for name in TOOLS:
            registry = stack.enter_context(fresh_registry(scratch / f"registry-{name}"))
            targets[name] = Target(registry, delay)
            stack.callback(targets[name].close)
        projects = {
            name: write_sdk_project(
                scratch / f"project-{name}",
                config={"container_repository": f"{targets[name].host}/{REPOSITORY}"},
                requirements=DEFAULT_REQUIREMENTS,
            )
            for name in TOOLS
        }
        mine = MpkitTool(isolated_home(scratch / "home-mpkit"), projects["mpkit"],
                         targets["mpkit"], base)  # fmt: skip
        theirs = PodmanTool(podman, scratch / "podman", isolated_home(scratch / "home-podman"),
                            projects["podman"], targets["podman"], base)  # fmt: skip
        stack.callback(theirs.close)
        yield mine, theirs


def run_all(mine: MpkitTool, theirs: PodmanTool, runs: int) -> list[Run]:
    log("first (untimed) build of each tool: base pull, requirements, full push")
    mine.run(check=False)
    theirs.run(check=False)
    measured: list[Run] = []
    for number in range(1, runs + 1):
        for tool in (mine, theirs):
            change_app(tool.project, f"latency run {number}")
        measured += [mine.run(check=True), theirs.run(check=True)]
        log(f"run {number}/{runs}: " + ", ".join(
            f"{r.tool} {r.seconds:.2f}s, {len(r.requests)} requests, {r.in_sequence} in sequence"
            for r in measured[-2:]
        ))  # fmt: skip
    return measured


def report(measured: Sequence[Run], *, command: str, delay: float, load_before: str) -> str:
    def of(tool: str) -> list[Run]:
        return [r for r in measured if r.tool == tool]

    times = {tool: Summary.of([r.seconds for r in of(tool)]) for tool in TOOLS}
    counts = {tool: Summary.of([float(len(r.requests)) for r in of(tool)]) for tool in TOOLS}
    chains = {tool: Summary.of([float(r.in_sequence) for r in of(tool)]) for tool in TOOLS}
    mpkit_seconds, sequence = times["mpkit"].median, chains["mpkit"].maximum
    goals = markdown_table(
        ["goal", "measured", "met"],
        [
            [f"app-only change → pack, median ≤ {GOAL_SECONDS} s", f"{mpkit_seconds:.3f} s",
             yes(mpkit_seconds <= GOAL_SECONDS)],
            [f"requests in sequence ≤ {GOAL_IN_SEQUENCE} (every run)", f"{sequence:.0f}",
             yes(sequence <= GOAL_IN_SEQUENCE)],
        ],
    )  # fmt: skip
    requests = markdown_table(
        ["tool", "requests (median)", "in sequence (median, max)", "podman/mpkit time"],
        [[tool, f"{counts[tool].median:.0f}",
          f"{chains[tool].median:.0f}, {chains[tool].maximum:.0f}",
          f"{times['podman'].median / times[tool].median:.2f}x"] for tool in TOOLS],
    )  # fmt: skip
    last = {tool: of(tool)[-1] for tool in TOOLS}
    listing = "\n".join(
        f"- {tool}: " + ", ".join(f"`{described(r)}`" for r in last[tool].requests)
        for tool in TOOLS
    )
    chain = "\n".join(
        f"- {tool}: " + " → ".join(f"`{described(r)}`" for r in in_sequence(last[tool].requests))
        for tool in TOOLS
    )
    commands = {
        "mpkit": mpkit_command_text("python -m mpkit build PROJECT --json --no-ttl"),
        "podman": podman_command_text(f"127.0.0.1:PROXYPORT/{REPOSITORY}:{PODMAN_TAG}"),
    }
    tools = {"podman": ["podman", "--version"], "registry": ["docker-registry", "--version"]}
    return f"""## Latency: app-only change → pack, registry {delay * 1000:.0f} ms away

Produced by `{command}` on {utc_now()}, {len(of("mpkit"))} run(s) per tool.

{goals}

{times_table(("app-only", tool, times[tool]) for tool in TOOLS)}

{requests}

Every request to the target registry waits {delay * 1000:.0f} ms in a delay proxy
(`tests/fixtures/faultproxy.py`) before it is forwarded; each tool has its own fresh
registry (CNCF distribution, plain HTTP on 127.0.0.1, no auth) and proxy. "In sequence" is
the longest chain of requests each of which the proxy received after it had answered the
one before: the round trips the command waited for in turn.

Requests of the last run (in the order the proxy received them; mpkit's include its
registry cache of dependency layers, whose entry for the unchanged pip layer is pushed
again, a manifest and its blobs' HEADs, by every build: `--no-registry-cache` leaves them
out):

{listing}

The longest chain of the last run:

{chain}

Project: `tests/e2e/sdkproject.py` (conf/describe.xml included, so no container runs),
its SDK base (the Debian stand-in) on a registry of its own without delay, reached through
`MPKIT_MIRRORS` and a registries.conf mirror. Both tools built and pushed it once untimed;
then each run changed one line of `app/adapter.py` in both copies and timed mpkit, then
podman. mpkit runs without the resident build server (`MPKIT_DAEMON` unset) and with its
bytecode compiled beforehand (`PYTHONPYCACHEPREFIX` under `bench/.work/`), as after a pip
install; this machine sets `PYTHONDONTWRITEBYTECODE=1`, which would otherwise recompile
mpkit's modules on every start. Checked every run: mpkit's pack records the digest the
registry serves, its anonymous check passed, the pip layer was reused and at most the app
layer and the config were uploaded.

Timed commands (wall clock, spawn to exit; podman's two timed separately and added):

{timed_text(commands)}

Machine:

{machine_text(tools, load_before, uncached_tool="podman")}
"""


def parse_args(argv: Sequence[str] | None) -> tuple[int, float, Path]:
    parser = bench_parser(__doc__)
    parser.add_argument("--runs", type=int, default=5, help="app-only runs per tool")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per request")
    add_results_argument(parser)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.delay < 0:
        parser.error("--runs must be positive and --delay not negative")
    return args.runs, args.delay, args.results


def main(argv: Sequence[str] | None = None) -> int:
    runs, delay, results = parse_args(argv)
    command = command_line("latency.py", argv)
    paths = require_tools("podman", "runc", "docker-registry")
    prime_mpkit_bytecode()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="latency-runs.", dir=WORK_DIR))
    try:
        with base_registry(scratch) as (base, _, _, _):
            load_before = load_average()
            with tools_for(scratch, paths["podman"], base.host, delay) as (mine, theirs):
                measured = run_all(mine, theirs, runs)
            section = report(measured, command=command, delay=delay, load_before=load_before)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    write_results(SECTION, section, results)
    return 0


if __name__ == "__main__":
    run_main(main, "latency")
