"""Pack build benchmark: ``mpkit build`` (image, push and pack) against podman.

Run from the repository root::

    python bench/packbuild.py --runs 5

What is timed is what an adapter developer waits for after an edit: from the command's
start to a finished pack (``mpkit build``: build the image, push what the registry
lacks, write ``build/<name>_<version>.pak``), next to ``podman build`` + ``podman push`` of
the same project, which gives only the pushed image (the SDK's mp-build does those two
with docker, then writes the pack). Two scenarios, alternating the tools:

* **no-change**: the same project again, right after a build of it;
* **app-only**: one line of ``app/adapter.py`` changed.

Both tools first build and push the project once, untimed (the cold build is measured by
``bench/build.py``), each into its own fresh registry on 127.0.0.1; the SDK base is the
Debian stand-in of ``tests/fixtures/baseimage.py`` behind a mirror. Every run is verified:
mpkit's pack records the digest the registry serves, an unchanged project uploads nothing
and rewrites a byte-identical pack, and an app-only change re-pushes only the app layer.
Results go to the ``bench:packbuild`` section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from _common import (
    CONTAINERS_SYSTEM_CACHE,
    WORK_DIR,
    BenchError,
    ServedManifest,
    ToolHome,
    add_profile_argument,
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
    profile_section,
    profiled_argv,
    require_tools,
    run_main,
    run_timed,
    seconds_text,
    served_manifest,
    timed_text,
    times_table,
    utc_now,
    write_results,
)
from _podman import (
    BenchPodman,
    Results,
    ToolRun,
    base_registry,
    mpkit_command_text,
    podman_command_text,
)

# isort: split
from tests.e2e.sdkproject import (
    KIND,
    PACK_NAME,
    change_app,
    read_pack,
    sdk_mirror,
    write_sdk_project,
)
from tests.fixtures.registry import RegistryServer
from tests.imagebuild.projects import DEFAULT_REQUIREMENTS, SDK_DOCKERFILE

SECTION = "packbuild"
REPOSITORY = "bench/adapter"
PODMAN_TAG = "bench"
SCENARIOS = ("no-change", "app-only")
TOOLS = ("mpkit", "podman")
RUNROOT_PREFIX = "mpkit-bench-pb"
APP_ONLY_BLOBS = 2  # the app layer and the image config
PROFILE_ROWS = 10


# -- the tools ---------------------------------------------------------------------------------


class MpkitTool:
    """``mpkit build PROJECT --json --no-ttl``: image, push and pack in one command, run
    through the resident build server (``MPKIT_DAEMON=on``; the untimed first build
    starts it in *server_dir*)."""

    name = "mpkit"

    def __init__(
        self, home: ToolHome, project: Path, registry: RegistryServer, base: str, server_dir: Path
    ):
        self.home = home
        self.project = project
        self.registry = registry
        self.env = {
            **home.env,
            "MPKIT_MIRRORS": sdk_mirror(base),
            "MPKIT_SDK_CONFIG": str(home.root / "sdk-config.json"),
            "MPKIT_DAEMON": "on",
            "MPKIT_DAEMON_DIR": str(server_dir),
        }
        self.last_tag = ""  # the tag of the last build, as mpkit reported it

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", "mpkit", "build", str(self.project), "--json", "--no-ttl"]

    @property
    def pack(self) -> Path:
        return self.project / "build" / PACK_NAME

    def run(self) -> ToolRun:
        done = run_timed(self.argv, env=self.env, preexec=self.home.preexec)
        report = json.loads(done.stdout)
        return ToolRun(done.seconds, {"in-process": float(report["seconds"])}, report)

    def served(self) -> ServedManifest:
        return served_manifest(self.registry.host, REPOSITORY, self.last_tag)


class PodmanTool(BenchPodman):
    """podman build + push of *project* into *registry* (see BenchPodman)."""

    def __init__(
        self, binary: str, root: Path, home: ToolHome, project: Path, registry: RegistryServer,
        base: str,
    ) -> None:  # fmt: skip
        super().__init__(binary, root, home, base, RUNROOT_PREFIX)
        self.project = project
        self.registry = registry
        self.allow(registry.host)

    @property
    def target(self) -> str:
        return f"{self.registry.host}/{REPOSITORY}:{PODMAN_TAG}"

    def run(self) -> ToolRun:
        return self.build_and_push(self.project, self.target)

    def served(self) -> ServedManifest:
        return served_manifest(self.registry.host, REPOSITORY, PODMAN_TAG)


# -- checks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    tool: str
    scenario: str
    run: ToolRun
    manifest: ServedManifest


def check_mpkit(tool: MpkitTool, scenario: str, previous: Measurement | None) -> Measurement:
    """The pack records what the registry serves; no-change and app-only push what they
    should; an unchanged project gives a byte-identical pack."""
    before = tool.pack.read_bytes() if tool.pack.exists() else None
    run = tool.run()
    report = run.report
    assert report is not None
    tool.last_tag = str(report["tag"])
    manifest = tool.served()
    where = f"{scenario} mpkit"
    if report["digest"] != manifest.digest:
        raise BenchError(f"{where}: reported {report['digest']}, served {manifest.digest}")
    if report["builder"] != "native":
        raise BenchError(f"{where}: built with {report['builder']}, not natively")
    conf = read_pack(tool.pack).kind_conf(KIND)
    if conf.get("DIGEST") != manifest.digest or conf.get("REGISTRY") != tool.registry.host:
        raise BenchError(f"{where}: the pack records {conf}, the registry serves {manifest.digest}")
    uploaded = int(report["push"]["blobs_uploaded"])
    if scenario == "no-change":
        if uploaded or (previous and previous.manifest.digest != manifest.digest):
            raise BenchError(f"{where}: uploaded {uploaded} blob(s) or changed the digest")
        if before is not None and tool.pack.read_bytes() != before:
            raise BenchError(f"{where}: the pack is not byte-identical to the previous one")
    elif scenario == "app-only":
        pip = [s for s in report["layers"] if s["instruction"].startswith("RUN")]
        if uploaded > APP_ONLY_BLOBS or not all(s["cached"] for s in pip):
            raise BenchError(f"{where}: uploaded {uploaded} blob(s) or re-ran pip: {report}")
    return Measurement(tool.name, scenario, run, manifest)


def check_podman(tool: PodmanTool, scenario: str, previous: Measurement | None) -> Measurement:
    run = tool.run()
    manifest = tool.served()
    if previous is not None:
        below = [layer["digest"] for layer in manifest.layers[:-1]]
        if below != [layer["digest"] for layer in previous.manifest.layers[:-1]]:
            raise BenchError(f"{scenario} podman: layers below the app layer changed")
        same_app = manifest.layers[-1]["digest"] == previous.manifest.layers[-1]["digest"]
        if same_app != (scenario == "no-change"):
            raise BenchError(
                f"{scenario} podman: the app layer {'did not change' if same_app else 'changed'}"
            )
    return Measurement(tool.name, scenario, run, manifest)


# -- the runs ----------------------------------------------------------------------------------


@contextlib.contextmanager
def tools_for(
    scratch: Path, podman_binary: str, base_host: str
) -> Iterator[tuple[MpkitTool, PodmanTool]]:
    """Both tools, each with its own project copy, home and fresh target registry."""
    with contextlib.ExitStack() as stack:
        registries = {
            name: stack.enter_context(fresh_registry(scratch / f"registry-{name}"))
            for name in TOOLS
        }
        projects = {
            name: write_sdk_project(
                scratch / f"project-{name}",
                config={"container_repository": f"{registries[name].host}/{REPOSITORY}"},
                requirements=DEFAULT_REQUIREMENTS,
            )
            for name in TOOLS
        }
        server_dir = Path(tempfile.mkdtemp(prefix="mpd-", dir="/tmp"))  # short: a socket
        stack.callback(shutil.rmtree, server_dir, ignore_errors=True)
        mpkit_tool = MpkitTool(
            isolated_home(scratch / "home-mpkit"), projects["mpkit"], registries["mpkit"],
            base_host, server_dir,
        )  # fmt: skip
        stack.callback(run_timed, [sys.executable, "-m", "mpkit", "daemon", "stop"],
                       env=mpkit_tool.env)  # fmt: skip
        podman_tool = PodmanTool(
            podman_binary, scratch / "podman", isolated_home(scratch / "home-podman"),
            projects["podman"], registries["podman"], base_host,
        )  # fmt: skip
        stack.callback(podman_tool.close)
        yield mpkit_tool, podman_tool


def run_all(mpkit_tool: MpkitTool, podman_tool: PodmanTool, runs: int) -> Results[Measurement]:
    log("first (untimed) build of each tool: base pull, requirements, full push")
    last: dict[str, Measurement] = {
        "mpkit": check_mpkit(mpkit_tool, "first", None),
        "podman": check_podman(podman_tool, "first", None),
    }
    results: Results[Measurement] = Results()
    for number in range(1, runs + 1):
        for scenario in SCENARIOS:
            if scenario == "app-only":
                for project in (mpkit_tool.project, podman_tool.project):
                    change_app(project, f"benchmark run {number}")
            last["mpkit"] = check_mpkit(mpkit_tool, scenario, last["mpkit"])
            last["podman"] = check_podman(podman_tool, scenario, last["podman"])
            results.measurements += [last["mpkit"], last["podman"]]
        found = results.measurements[-4:]
        log(f"run {number}/{runs}: " + ", ".join(
            f"{m.scenario} {m.tool} {m.run.seconds:.2f}s" for m in found
        ))  # fmt: skip
    return results


PROFILE_ENCLOSING = ("__main__.py", "cli/__init__.py", "cli/build.py")
PROFILE_SKIP = ("build_pack_flow",)  # the build flow's entry point encloses most of the run


def profile_no_change(tool: MpkitTool, output: Path) -> None:
    """One more no-change mpkit build under cProfile (not timed), in-process: through the
    server, the profile would show only its client."""
    env = {**tool.env, "MPKIT_DAEMON": "off"}
    run_timed(profiled_argv(tool.argv, output), env=env, preexec=tool.home.preexec)


# -- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportInputs:
    runs: int
    command: str
    commands: Mapping[str, str]
    load_before: str
    base_digest: str
    profile: Path | None


def report(results: Results[Measurement], inputs: ReportInputs) -> str:
    times = times_table(
        (scenario, tool, results.summary(scenario, tool))
        for scenario in SCENARIOS
        for tool in TOOLS
    )
    speedups = markdown_table(
        ["scenario", "podman median / mpkit median"],
        [[scenario, f"{results.speedup(scenario):.2f}x"] for scenario in SCENARIOS],
    )
    parts = markdown_table(
        ["scenario", "mpkit in-process s", "podman build s", "podman push s"],
        [
            [
                scenario,
                seconds_text(results.summary(scenario, "mpkit", "in-process").median),
                seconds_text(results.summary(scenario, "podman", "build").median),
                seconds_text(results.summary(scenario, "podman", "push").median),
            ]
            for scenario in SCENARIOS
        ],
    )
    tools = {"podman": ["podman", "--version"], "registry": ["docker-registry", "--version"]}
    machine = machine_text(tools, inputs.load_before, uncached_tool="podman")
    timed = timed_text(inputs.commands)
    profile = profile_section(
        inputs.profile,
        "one more no-change mpkit build, in-process (MPKIT_DAEMON=off)",
        enclosing=PROFILE_ENCLOSING,
        skip=PROFILE_SKIP,
        limit=PROFILE_ROWS,
    )
    requirements = ", ".join(f"`{r}`" for r in DEFAULT_REQUIREMENTS)
    dockerfile = "\n".join(f"    {line}" for line in SDK_DOCKERFILE.splitlines())
    return f"""## Pack build: `mpkit build` vs `podman build` + `podman push`

Produced by `{inputs.command}` on {utc_now()}, {inputs.runs} run(s) per tool and scenario.

Time from the command's start to a finished pack (mpkit: image built, pushed, pack
written) or to a pushed image (podman: build, then push; the pack would still be to
write). Speedup = podman's median / mpkit's median (above 1: mpkit is faster). mpkit runs
through its resident build server (`MPKIT_DAEMON=on`, started by the untimed first build).

{speedups}

{times}

Where the time goes (medians): mpkit's own measure from its start-up to the pack (`--json`
`seconds`; the rest of the wall time is the client and the server's fork), podman's two
commands:

{parts}
{profile}
Project: `tests/e2e/sdkproject.py`, an SDK project with the full pack tree (manifest.txt,
eula, icon, scripts, conf/describe.xml, resources, content/dashboards, reports, alertdefs),
`commands.cfg`, `app/` (adapter and a helpers package), `adapter_requirements.txt` with
{requirements}, and the SDK's Dockerfile:

{dockerfile}

Set-up, untimed: the Debian stand-in for the SDK base (`{inputs.base_digest}`) in a fresh
registry on 127.0.0.1, reached under its SDK name through a mirror (`MPKIT_MIRRORS` for
mpkit, a registries.conf entry for podman); for each tool a fresh target registry, its own
copy of the project, a fresh HOME/`DOCKER_CONFIG`/`XDG_*`/auth file, and one first build and
push (mpkit: into an empty `MPKIT_CACHE_DIR`; podman: a new overlay graphroot with the engine
settings podman needs here (runc, cgroupfs, ulimits below the hard limit), root's blob-info
cache `{CONTAINERS_SYSTEM_CACHE}` replaced by an empty directory in a private mount namespace).

Runs, alternating the tools (no-change mpkit, no-change podman, app-only mpkit, app-only
podman, next run):
- **no-change**: the project as the previous run left it. Checked: mpkit uploads no blob,
  keeps the digest and rewrites a byte-identical pack; podman's layers are unchanged.
- **app-only**: one line of `app/adapter.py` changed in both copies. Checked: mpkit reuses
  its pip layer and uploads at most the app layer and the config; podman changes only its
  app layer.
- Always: mpkit's reported digest is the manifest digest the registry serves, and the
  pack's `{KIND}.conf` records it with the registry host.
mpkit runs with its bytecode compiled beforehand (`PYTHONPYCACHEPREFIX` under `bench/.work/`).

Timed commands (wall clock, spawn to exit, `time.perf_counter`; podman's two are timed
separately and added):

{timed}

Machine:

{machine}
"""


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs per tool and scenario")
    add_profile_argument(parser, "skip the extra profiled no-change mpkit build after the runs")
    add_results_argument(parser)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be positive")
    return args


def command_texts() -> dict[str, str]:
    target = f"127.0.0.1:PORT/{REPOSITORY}:{PODMAN_TAG}"
    return {
        "mpkit": mpkit_command_text(
            "MPKIT_DAEMON=on MPKIT_DAEMON_DIR=DIR python -m mpkit build PROJECT --json --no-ttl"
        ),
        "podman": podman_command_text(target),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line("packbuild.py", argv)
    paths = require_tools("podman", "runc", "docker-registry")
    prime_mpkit_bytecode()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="packbuild-runs.", dir=WORK_DIR))
    try:
        with base_registry(scratch) as (registry, base_digest, _, _):
            load_before = load_average()
            profile = scratch / "no-change.prof" if args.profile else None
            with tools_for(scratch, paths["podman"], registry.host) as (mine, theirs):
                results = run_all(mine, theirs, args.runs)
                if profile is not None:
                    profile_no_change(mine, profile)
            inputs = ReportInputs(
                args.runs, command, command_texts(), load_before, base_digest, profile
            )
            section = report(results, inputs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    write_results(SECTION, section, args.results)
    return 0


if __name__ == "__main__":
    run_main(main, "pack build")
