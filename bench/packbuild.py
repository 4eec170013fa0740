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
import pstats
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    CONTAINERS_SYSTEM_CACHE,
    RESULTS_PATH,
    WORK_DIR,
    BenchError,
    CommandRun,
    ServedManifest,
    Summary,
    ToolHome,
    fresh_registry,
    isolated_home,
    load_average,
    log,
    machine_facts,
    markdown_table,
    prime_bytecode,
    private_mounts_supported,
    require_tools,
    run_timed,
    seconds_text,
    served_manifest,
    update_section,
    utc_now,
)

# isort: split
from tests.build.projects import DEFAULT_REQUIREMENTS, SDK_DOCKERFILE
from tests.e2e.sdkproject import (
    KIND,
    PACK_NAME,
    change_app,
    read_pack,
    sdk_mirror,
    write_sdk_project,
)
from tests.fixtures.baseimage import SDK_REGISTRY, SDK_REPOSITORY, SDK_TAG, publish_sdk_base
from tests.fixtures.podman import Podman
from tests.fixtures.registry import RegistryServer

import mpkit

SECTION = "packbuild"
REPOSITORY = "bench/adapter"
PODMAN_TAG = "bench"
SCENARIOS = ("no-change", "app-only")
TOOLS = ("mpkit", "podman")
RUNROOT_PREFIX = "mpkit-bench-pb"
APP_ONLY_BLOBS = 2  # the app layer and the image config
PROFILE_ROWS = 10


# -- the tools ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolRun:
    """One timed run: wall-clock seconds, its timed parts, mpkit's ``--json`` report."""

    seconds: float
    parts: Mapping[str, float] = field(default_factory=dict)
    report: Mapping[str, Any] | None = None


class MpkitTool:
    """``mpkit build PROJECT --json --no-ttl``: image, push and pack in one command."""

    name = "mpkit"

    def __init__(self, home: ToolHome, project: Path, registry: RegistryServer, base: str):
        self.home = home
        self.project = project
        self.registry = registry
        self.env = {
            **home.env,
            "MPKIT_MIRRORS": sdk_mirror(base),
            "MPKIT_SDK_CONFIG": str(home.root / "sdk-config.json"),
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


class PodmanTool:
    """``podman build -t REF PROJECT``, then ``podman push --tls-verify=false REF``.

    Its storage (overlay, SPEC §9 engine settings), registries.conf with the SDK mirror and
    auth file are its own (``tests/fixtures/podman.py``); root's blob-info cache is replaced
    by an empty directory in a private mount namespace.
    """

    name = "podman"

    def __init__(
        self, binary: str, root: Path, home: ToolHome, project: Path, registry: RegistryServer,
        base: str,
    ) -> None:  # fmt: skip
        self.binary = binary
        self.home = home
        self.project = project
        self.registry = registry
        runroot = Path(tempfile.mkdtemp(prefix=RUNROOT_PREFIX, dir="/tmp"))  # short: sockets
        self.podman = Podman(binary, root, runroot=runroot, driver="overlay")
        self.podman.add_mirrors({SDK_REGISTRY: base})
        self.podman.add_registry(registry.host)
        own = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF")
        self.env = {**home.env, **{key: self.podman.env[key] for key in own}}
        self.podman.env = self.env

    @property
    def target(self) -> str:
        return f"{self.registry.host}/{REPOSITORY}:{PODMAN_TAG}"

    def build_argv(self) -> list[str]:
        return [self.binary, "build", "-t", self.target, str(self.project)]

    def push_argv(self) -> list[str]:
        return [self.binary, "push", "--tls-verify=false", self.target]

    def run(self) -> ToolRun:
        build = self._timed(self.build_argv())
        push = self._timed(self.push_argv())
        parts = {"build": build.seconds, "push": push.seconds}
        return ToolRun(build.seconds + push.seconds, parts)

    def served(self) -> ServedManifest:
        return served_manifest(self.registry.host, REPOSITORY, PODMAN_TAG)

    def _timed(self, argv: Sequence[str]) -> CommandRun:
        return run_timed(argv, env=self.env, preexec=self.home.preexec)

    def close(self) -> None:
        self.podman.cleanup()
        shutil.rmtree(self.podman.root, ignore_errors=True)


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


@dataclass
class Results:
    measurements: list[Measurement] = field(default_factory=list)

    def of(self, scenario: str, tool: str) -> list[Measurement]:
        return [m for m in self.measurements if (m.scenario, m.tool) == (scenario, tool)]

    def summary(self, scenario: str, tool: str, part: str | None = None) -> Summary:
        found = self.of(scenario, tool)
        return Summary.of([m.run.parts[part] if part else m.run.seconds for m in found])

    def speedup(self, scenario: str) -> float:
        return self.summary(scenario, "podman").median / self.summary(scenario, "mpkit").median


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
        mpkit_tool = MpkitTool(
            isolated_home(scratch / "home-mpkit"), projects["mpkit"], registries["mpkit"],
            base_host,
        )  # fmt: skip
        podman_tool = PodmanTool(
            podman_binary, scratch / "podman", isolated_home(scratch / "home-podman"),
            projects["podman"], registries["podman"], base_host,
        )  # fmt: skip
        stack.callback(podman_tool.close)
        yield mpkit_tool, podman_tool


def run_all(mpkit_tool: MpkitTool, podman_tool: PodmanTool, runs: int) -> Results:
    log("first (untimed) build of each tool: base pull, requirements, full push")
    last: dict[str, Measurement] = {
        "mpkit": check_mpkit(mpkit_tool, "first", None),
        "podman": check_podman(podman_tool, "first", None),
    }
    results = Results()
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


def profile_no_change(tool: MpkitTool, output: Path) -> None:
    """One more no-change mpkit build under cProfile (not timed)."""
    argv = tool.argv
    at = argv.index("-m")
    profiled = [*argv[:at], "-m", "cProfile", "-o", str(output), *argv[at:]]
    run_timed(profiled, env=tool.env, preexec=tool.home.preexec)


def profile_rows(path: Path) -> tuple[float, list[list[str]]]:
    """Total seconds and the costliest mpkit functions (cumulative), plus all imports.

    ``__main__`` and ``cli/__init__`` enclose the whole run and the build flow's entry
    points enclose most of it: they are left out.
    """
    stats: Any = pstats.Stats(str(path))
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats
    total = float(stats.total_tt)
    imports = max(
        (cum for (file, _, name), (*_, cum, _) in entries.items()
         if name == "_find_and_load" and "importlib" in file),
        default=0.0,
    )  # fmt: skip
    package = str(Path(mpkit.__file__).parent) + "/"
    enclosing = {"__main__.py", "cli/__init__.py", "cli/packbuild.py"}
    ranked = sorted(
        (
            (cum, file.removeprefix(package), line, name)
            for (file, line, name), (*_, cum, _) in entries.items()
            if file.startswith(package)
            and name not in ("<module>", "build_pack_flow")
            and file.removeprefix(package) not in enclosing
        ),
        reverse=True,
    )[:PROFILE_ROWS]
    rows = [["module imports (all)", seconds_text(imports), f"{imports / total:.0%}"]]
    rows += [
        [f"`{file}:{line}` {name}", seconds_text(cum), f"{cum / total:.0%}"]
        for cum, file, line, name in ranked
    ]
    return total, rows


# -- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportInputs:
    runs: int
    command: str
    commands: Mapping[str, str]
    load_before: str
    base_digest: str
    profile: Path | None


def report(results: Results, inputs: ReportInputs) -> str:
    rows = []
    for scenario in SCENARIOS:
        for tool in TOOLS:
            s = results.summary(scenario, tool)
            rows.append([
                scenario, tool, seconds_text(s.median), seconds_text(s.minimum),
                seconds_text(s.maximum), " ".join(f"{x:.2f}" for x in s.samples),
            ])  # fmt: skip
    times = markdown_table(
        ["scenario", "tool", "median s", "min s", "max s", "all runs (s, in order)"], rows
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
    facts = machine_facts({
        "podman": ["podman", "--version"],
        "registry": ["docker-registry", "--version"],
    })  # fmt: skip
    facts.append(
        ("load average (1/5/15 min) before → after", f"{inputs.load_before} → {load_average()}")
    )
    if CONTAINERS_SYSTEM_CACHE.exists() and not private_mounts_supported():
        facts.append(("note", "podman's root blob-info cache could not be isolated"))
    machine = "\n".join(f"- {name}: {value}" for name, value in facts)
    timed = "\n".join(f"- {name}: `{argv}`" for name, argv in inputs.commands.items())
    profile = ""
    if inputs.profile is not None and inputs.profile.exists():
        total, profile_table = profile_rows(inputs.profile)
        profile = (
            f"\nWhere one more no-change mpkit build spends its time (cProfile, {total:.2f} s "
            "under the profiler; cumulative, nested entries overlap):\n\n"
            + markdown_table(["function", "cumulative s", "share"], profile_table)
            + "\n"
        )
    requirements = ", ".join(f"`{r}`" for r in DEFAULT_REQUIREMENTS)
    dockerfile = "\n".join(f"    {line}" for line in SDK_DOCKERFILE.splitlines())
    return f"""## Pack build: `mpkit build` vs `podman build` + `podman push`

Produced by `{inputs.command}` on {utc_now()}, {inputs.runs} run(s) per tool and scenario.

Time from the command's start to a finished pack (mpkit: image built, pushed, pack
written) or to a pushed image (podman: build, then push; the pack would still be to
write). Speedup = podman's median / mpkit's median (above 1: mpkit is faster).

{speedups}

{times}

Where the time goes (medians): mpkit's own measure from its start-up to the pack (`--json`
`seconds`; the rest of the wall time is the interpreter and imports), podman's two commands:

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
push (mpkit: into an empty `MPKIT_CACHE_DIR`; podman: a new overlay graphroot with SPEC §9's
engine settings, root's blob-info cache `{CONTAINERS_SYSTEM_CACHE}` replaced by an empty
directory in a private mount namespace).

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
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per tool and scenario")
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="skip the extra profiled no-change mpkit build after the runs",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS_PATH, help="markdown file to update"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be positive")
    return args


def command_texts() -> dict[str, str]:
    target = f"127.0.0.1:PORT/{REPOSITORY}:{PODMAN_TAG}"
    return {
        "mpkit": f"MPKIT_MIRRORS={SDK_REGISTRY}=127.0.0.1:BASEPORT "
        "python -m mpkit build PROJECT --json --no-ttl",
        "podman": f"podman build -t {target} PROJECT && podman push --tls-verify=false {target}",
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(
        ["python", "bench/packbuild.py", *(sys.argv[1:] if argv is None else argv)]
    )
    paths = require_tools("podman", "runc", "docker-registry")
    prime_bytecode(Path(mpkit.__file__).parent)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="packbuild-runs.", dir=WORK_DIR))
    try:
        with fresh_registry(scratch / "registry-base") as base_registry:
            base = publish_sdk_base(base_registry)
            served = served_manifest(base_registry.host, SDK_REPOSITORY, SDK_TAG)
            if served.digest != base.digest:
                raise BenchError(f"the base registry serves {served.digest}, not {base.digest}")
            load_before = load_average()
            profile = scratch / "no-change.prof" if args.profile else None
            with tools_for(scratch, paths["podman"], base_registry.host) as (mine, theirs):
                results = run_all(mine, theirs, args.runs)
                if profile is not None:
                    profile_no_change(mine, profile)
            inputs = ReportInputs(
                args.runs, command, command_texts(), load_before, base.digest, profile
            )
            section = report(results, inputs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    update_section(SECTION, section, args.results)
    log(section)
    log(f"wrote the bench:{SECTION} section of {args.results}")
    return 0


def _stop_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: registries stopped, podman storage removed


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, _stop_on_signal)
    try:
        sys.exit(main())
    except BenchError as error:
        log(f"pack build benchmark failed: {error}")
        sys.exit(1)
