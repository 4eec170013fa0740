"""SDK-shaped project benchmark: ``mpkit build`` vs the SDK's ``mp-build`` vs ``podman build``
+ ``podman push``, and the quick start on a machine whose podman cannot run containers.

Run from the repository root::

    python bench/sdkpack.py --runs 5

The project is what the SDK's ``mp-init`` writes for a Python adapter
(``/work/sdk/projects/mysql-pack``, copied): no ``conf/describe.xml``, so the adapter's
definition comes from the image; ``FROM base-adapter:python-1.2.0``; the SDK's adapter
library and psutil as requirements. Its base is the faithful stand-in of
``tests/fixtures/sdkserverbase.py`` (the SDK's own swagger REST server on the Debian
stand-in), pushed to a registry on 127.0.0.1 and reached by each tool as it would be:
``MPKIT_IMAGE_ALIASES`` for mpkit, a local tag for podman and for the SDK's docker.

Scenarios, every run (the tools alternate, each with its own copy, home and target
registry, after one untimed first build):

* **no-change**: the project again; mpkit must run no container and push no byte;
* **app-only**: one line of ``app/adapter.py`` changed: mpkit asks the new image for the
  definition (one container, podman);

and, mpkit only, **quick start**: ``mpkit build examples/hello-adapter`` into its built-in
registry with a podman that cannot run containers here (its default configuration, which
this machine's limits refuse), rebuilt without change after the first build.

The SDK's ``mp-build`` (``/work/sdk/venv``) needs a Docker daemon: a private ``dockerd``
(``tests/fixtures/dockerd.py``). Its ``docker build`` RUN steps have no network here, so its
copy of the base carries the requirements' wheels and a ``pip.conf`` pointing at them (the
only difference from the base the other tools use; it spares mp-build PyPI's latency). The
results go to the ``bench:sdkpack`` section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    REPO_ROOT,
    WORK_DIR,
    BenchError,
    CommandRun,
    Summary,
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
    served_manifest,
    timed_text,
    times_table,
    utc_now,
    write_results,
    yes,
)
from _podman import BenchPodman

# isort: split
from tests.e2e.sdkproject import read_pack
from tests.fixtures.baseimage import SdkBase, publish_sdk_base
from tests.fixtures.dockerd import Dockerd, private_dockerd
from tests.fixtures.podman import Podman
from tests.fixtures.procs import free_port
from tests.fixtures.registry import RegistryServer
from tests.fixtures.sdkserverbase import LOCAL_BASE, SdkServerBase, publish_server_base

SECTION = "sdkpack"
SDK_PROJECT = Path("/work/sdk/projects/mysql-pack")  # what the SDK's mp-init wrote
SDK_VENV = Path("/work/sdk/venv")
KIND = "MySQLPackMySQLPack"
PACK = "MySQLPackMySQLPack_1.0.0.pak"
REPOSITORY = "bench/mysql-pack"
PODMAN_TAG = "bench"
SCENARIOS = ("no-change", "app-only")
TOOLS = ("mpkit", "podman", "mp-build")
RUNROOT_PREFIX = "mpkit-bench-sdk"
PODMAN_KEYS = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF")
REVISION = re.compile(r"^BENCH_REVISION = .*$", re.MULTILINE)
GOALS = {"no-change": 0.5, "app-only": 1.5, "quick start": 1.0}
QUICK_START = REPO_ROOT / "examples" / "hello-adapter"
BUILD_TIMEOUT = 900.0
PROFILE_ROWS = 12
PROFILE_ENCLOSING = ("__main__.py", "launcher.py", "cli/__init__.py", "cli/build.py")
PROFILE_SKIP = ("build_pack_flow", "_build_pack_flow")  # enclose the whole build


@dataclass(frozen=True)
class Measured:
    tool: str
    scenario: str
    seconds: float
    facts: Mapping[str, Any] = field(default_factory=dict)


def copy_project(source: Path, target: Path, repository: str) -> Path:
    """The project without its outputs and virtual environments, pushing to *repository*."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("venv*", "build", "logs"))
    config = target / "config.json"
    data = json.loads(config.read_text()) if config.exists() else {}
    config.write_text(json.dumps({**data, "container_repository": repository}, indent=4))
    return target


def change_app(project: Path, text: str) -> None:
    """A one-line change of app/adapter.py (the line BENCH_REVISION, added at the end)."""
    adapter = project / "app" / "adapter.py"
    source = adapter.read_text()
    line = f"BENCH_REVISION = {json.dumps(text)}"
    source = REVISION.sub(line, source) if REVISION.search(source) else f"{source}\n{line}\n"
    adapter.write_text(source)


def pack_digest(pack: Path, kind: str) -> str:
    return read_pack(pack).kind_conf(kind).get("DIGEST", "")


def container_starts(podman: Podman) -> int:
    """How many containers this podman has started, from its own event log."""
    log_file = podman.runroot / "libpod" / "events.log"
    if not log_file.exists():
        return 0
    return sum('"Status":"start"' in line and '"Type":"container"' in line
               for line in log_file.read_text(errors="replace").splitlines())  # fmt: skip


# -- the tools ---------------------------------------------------------------------------------


class MpkitTool:
    """``mpkit build PROJECT --json --no-ttl`` in a fresh interpreter (no build server),
    describing with a podman that works here (runc, cgroupfs, ulimits below the hard limit,
    overlay storage)."""

    name = "mpkit"

    def __init__(self, home: ToolHome, project: Path, registry: RegistryServer,
                 server: SdkServerBase, podman: Podman) -> None:  # fmt: skip
        self.home = home
        self.project = project
        self.registry = registry
        self.podman = podman
        self.env = {
            **home.env,
            **{key: podman.env[key] for key in PODMAN_KEYS},
            "MPKIT_IMAGE_ALIASES": server.alias_env,
            "MPKIT_SDK_CONFIG": str(home.root / "sdk-config.json"),
        }

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", "mpkit", "build", str(self.project), "--json", "--no-ttl"]

    def run(self, scenario: str) -> Measured:
        pack = self.project / "build" / PACK
        before = pack.read_bytes() if pack.exists() else None
        starts = container_starts(self.podman)
        done = run_timed(self.argv, env=self.env, preexec=self.home.preexec,
                         timeout=BUILD_TIMEOUT)  # fmt: skip
        report = json.loads(done.stdout)
        ran = container_starts(self.podman) - starts
        served = served_manifest(self.registry.host, REPOSITORY, str(report["tag"]))
        where = f"{scenario} mpkit"
        if report["digest"] != served.digest or pack_digest(pack, KIND) != served.digest:
            raise BenchError(f"{where}: the pack does not record the digest the registry serves")
        describe, pushed = report["describe"], int(report["push"]["bytes_uploaded"])
        if scenario == "no-change" and (ran or pushed or not describe["from_cache"]
                                        or pack.read_bytes() != before):  # fmt: skip
            raise BenchError(f"{where}: {ran} container(s), {pushed} bytes pushed, or another "
                             f"pack: {describe}")  # fmt: skip
        if scenario == "app-only" and (describe["from_cache"] or describe["way"] != "image"):
            raise BenchError(f"{where}: the definition was not asked of the image: {describe}")
        facts = {"containers": ran, "bytes pushed": pushed, "in-process": report["seconds"],
                 "engine": describe.get("engine")}  # fmt: skip
        return Measured(self.name, scenario, done.seconds, facts)

    def profile(self, output: Path) -> None:
        """One more app-only build under cProfile (untimed)."""
        change_app(self.project, "profiled")
        run_timed(profiled_argv(self.argv, output), env=self.env, preexec=self.home.preexec,
                  timeout=BUILD_TIMEOUT)  # fmt: skip


class PodmanTool(BenchPodman):
    """``podman build`` + ``podman push``, the base tagged ``base-adapter:python-1.2.0``."""

    def __init__(self, binary: str, root: Path, home: ToolHome, project: Path,
                 registry: RegistryServer, server: SdkServerBase) -> None:  # fmt: skip
        super().__init__(binary, root, home, server.registry.host, RUNROOT_PREFIX)
        self.project = project
        self.registry = registry
        self.allow(registry.host)
        self.podman.pull(server.reference)
        self.podman.run("tag", server.reference, LOCAL_BASE)

    @property
    def target(self) -> str:
        return f"{self.registry.host}/{REPOSITORY}:{PODMAN_TAG}"

    def run(self, scenario: str) -> Measured:
        done = self.build_and_push(self.project, self.target)
        return Measured(self.name, scenario, done.seconds, dict(done.parts))


class MpBuildTool:
    """The SDK's ``mp-build -p PROJECT --no-ttl`` with a private dockerd."""

    name = "mp-build"

    def __init__(self, dockerd: Dockerd, home: Path, project: Path, registry: RegistryServer
                 ) -> None:  # fmt: skip
        self.dockerd = dockerd
        self.project = project
        self.registry = registry
        home.mkdir(parents=True, exist_ok=True)
        self.env = {**dockerd.env, "HOME": str(home)}
        self.port = free_port()

    @property
    def argv(self) -> list[str]:
        # An open registry: docker login accepts any name; mp-build logs in on every build.
        return [str(SDK_VENV / "bin" / "mp-build"), "-p", str(self.project), "--no-ttl",
                "--registry-username", "bench", "--registry-password", "bench",
                "-P", str(self.port)]  # fmt: skip

    def run(self, scenario: str) -> Measured:
        done = run_timed(self.argv, env=self.env, timeout=BUILD_TIMEOUT)
        digest = pack_digest(self.project / "build" / PACK, KIND)
        served = served_manifest(self.registry.host, REPOSITORY, digest)
        if served.digest != digest:
            raise BenchError(f"{scenario} mp-build: the pack records {digest}, not served")
        return Measured(self.name, scenario, done.seconds)


def sdk_wheels(requirements: str) -> Path:
    """The requirements' linux/amd64 CPython 3.11 wheels (the base's Python), downloaded once
    into bench/.work."""
    key = hashlib.sha256(requirements.encode()).hexdigest()[:16]
    wheels = WORK_DIR / f"sdk-wheels-{key}"
    if wheels.is_dir():
        return wheels
    work = Path(tempfile.mkdtemp(prefix="sdk-wheels.", dir=WORK_DIR))
    (work / "requirements.txt").write_text(requirements)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
         "--platform", "manylinux2014_x86_64", "--python-version", "3.11",
         "--implementation", "cp", "--dest", str(work / "wheels"),
         "--requirement", str(work / "requirements.txt")],
        check=True, timeout=600, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    (work / "wheels").rename(wheels)
    shutil.rmtree(work)
    return wheels


def docker_base(dockerd: Dockerd, server: SdkServerBase, requirements: str, scratch: Path
                ) -> None:  # fmt: skip
    """``base-adapter:python-1.2.0`` in dockerd: the stand-in plus the wheels and a pip.conf
    (``docker build`` RUN steps have no network here)."""
    context = scratch / "docker-base"
    context.mkdir()
    shutil.copytree(sdk_wheels(requirements), context / "wheels")
    (context / "pip.conf").write_text("[global]\nno-index = true\nfind-links = /opt/wheels\n")
    (context / "Dockerfile").write_text(
        f"FROM {server.reference}\nUSER root\nCOPY wheels /opt/wheels\n"
        "COPY pip.conf /etc/pip.conf\nUSER aria-ops-adapter-user\n"
    )
    dockerd.run("pull", server.reference, timeout=600)
    dockerd.run("build", "--quiet", "--tag", LOCAL_BASE, str(context), timeout=600)


# -- the runs ----------------------------------------------------------------------------------


@dataclass
class Bench:
    tools: list[Any]
    skipped: dict[str, str] = field(default_factory=dict)  # tool -> why it did not run


@contextlib.contextmanager
def bench_tools(scratch: Path, podman_binary: str, server: SdkServerBase) -> Iterator[Bench]:
    with contextlib.ExitStack() as stack:
        registries = {name: stack.enter_context(fresh_registry(scratch / f"registry-{name}"))
                      for name in TOOLS}  # fmt: skip
        projects = {name: copy_project(SDK_PROJECT, scratch / f"project-{name}",
                                       f"{registries[name].host}/{REPOSITORY}")
                    for name in TOOLS}  # fmt: skip
        describe_podman = Podman(
            podman_binary,
            scratch / "podman-describe",
            runroot=Path(tempfile.mkdtemp(prefix="mbsd", dir="/tmp")),
        )
        stack.callback(describe_podman.cleanup)
        mine = MpkitTool(isolated_home(scratch / "home-mpkit"), projects["mpkit"],
                         registries["mpkit"], server, describe_podman)  # fmt: skip
        theirs = PodmanTool(
            podman_binary,
            scratch / "podman",
            isolated_home(scratch / "home-podman"),
            projects["podman"],
            registries["podman"],
            server,
        )
        stack.callback(theirs.close)
        bench = Bench([mine, theirs])
        requirements = (projects["mp-build"] / "adapter_requirements.txt").read_text()
        if not (SDK_VENV / "bin" / "mp-build").exists():
            bench.skipped["mp-build"] = f"the SDK is not installed in {SDK_VENV}"
        else:
            try:
                dockerd = stack.enter_context(private_dockerd(scratch / "dockerd"))
            except BaseException as exc:  # pytest's skip, outside pytest
                bench.skipped["mp-build"] = f"no private dockerd: {exc}"
            else:
                docker_base(dockerd, server, requirements, scratch)
                bench.tools.append(
                    MpBuildTool(
                        dockerd,
                        scratch / "home-mp-build",
                        projects["mp-build"],
                        registries["mp-build"],
                    )
                )
        yield bench


def run_sdk(bench: Bench, runs: int, profile: Path | None) -> list[Measured]:
    log("first (untimed) build of each tool")
    for tool in bench.tools:
        tool.run("first")
    measured: list[Measured] = []
    for number in range(1, runs + 1):
        for scenario in SCENARIOS:
            if scenario == "app-only":
                for tool in bench.tools:
                    change_app(tool.project, f"run {number}")
            found = [tool.run(scenario) for tool in bench.tools]
            measured += found
            log(f"run {number}/{runs} {scenario}: "
                + ", ".join(f"{m.tool} {m.seconds:.2f}s" for m in found))  # fmt: skip
    if profile is not None:
        bench.tools[0].profile(profile)
    return measured


def broken_podman(binary: str, root: Path) -> Podman:
    """A podman with storage of its own but otherwise its defaults, which cannot run
    containers here (the default ulimits exceed this machine's hard limit)."""
    podman = Podman(binary, root, runroot=Path(tempfile.mkdtemp(prefix="mbqp", dir="/tmp")))
    kept = [line for line in podman.containers_conf.read_text().splitlines()
            if not line.startswith(("default_ulimits", "runtime", "cgroup_manager"))]  # fmt: skip
    podman.containers_conf.write_text("\n".join(kept) + "\n")
    return podman


def run_quick_start(scratch: Path, podman_binary: str, base: SdkBase, runs: int
                    ) -> tuple[list[Measured], str]:  # fmt: skip
    """``mpkit build examples/hello-adapter`` as the README's quick start, rebuilt."""
    checkout = scratch / "checkout"
    project = checkout / "examples" / "hello-adapter"
    shutil.copytree(QUICK_START, project, ignore=shutil.ignore_patterns("build", "logs"))
    podman = broken_podman(podman_binary, scratch / "podman-broken")
    home = isolated_home(scratch / "home-quick-start")
    env = {
        **home.env,
        **{key: podman.env[key] for key in PODMAN_KEYS},
        "MPKIT_MIRRORS": f"projects.packages.broadcom.com={base.registry.host}",
        "MPKIT_REGISTRY_ENDPOINTS": f"localhost:5000=127.0.0.1:{free_port()}",
        "MPKIT_REGISTRY_ROOT": str(scratch / "builtin-registry"),
        "MPKIT_SDK_CONFIG": str(home.root / "sdk-config.json"),
    }
    argv = [sys.executable, "-m", "mpkit", "build", str(project), "--json"]

    def build() -> CommandRun:
        return run_timed(argv, env=env, timeout=BUILD_TIMEOUT, preexec=home.preexec)

    try:
        first = build()
        said = str(json.loads(first.stdout)["describe"]["reason"])
        if "podman cannot run containers here" not in said:
            raise BenchError(f"quick start: podman was expected to fail here: {said}")
        measured = [Measured("mpkit", "quick start, first build", first.seconds)]
        for _ in range(runs):
            done = build()
            report = json.loads(done.stdout)
            if not report["describe"]["from_cache"] or done.stderr.strip():
                raise BenchError(f"quick start rebuild asked again: {report['describe']}")
            measured.append(Measured("mpkit", "quick start", done.seconds))
    finally:
        run_timed([sys.executable, "-m", "mpkit", "registry", "stop"], env=env)
        podman.cleanup()
    return measured, said


# -- the report --------------------------------------------------------------------------------


def of(measured: Sequence[Measured], scenario: str, tool: str) -> list[Measured]:
    return [m for m in measured if (m.scenario, m.tool) == (scenario, tool)]


def summary(measured: Sequence[Measured], scenario: str, tool: str) -> Summary:
    return Summary.of([m.seconds for m in of(measured, scenario, tool)])


def fact_median(measured: Sequence[Measured], scenario: str, tool: str, fact: str) -> str:
    return f"{Summary.of([float(m.facts[fact]) for m in of(measured, scenario, tool)]).median:.3f}"


SDK_NAME = "vmware-aria-operations-integration-sdk"
SDK_VERSION = f"import importlib.metadata as m; print('{SDK_NAME}', m.version('{SDK_NAME}'))"


@dataclass(frozen=True)
class ReportInputs:
    command: str
    runs: int
    load_before: str
    server: SdkServerBase
    skipped: Mapping[str, str]
    podman_said: str
    profile: Path | None


def report(measured: Sequence[Measured], quick: Sequence[Measured], inputs: ReportInputs) -> str:
    tools = [t for t in TOOLS if of(measured, "no-change", t)]
    medians = {(s, t): summary(measured, s, t).median for s in SCENARIOS for t in tools}
    quick_median = summary(quick, "quick start", "mpkit").median
    no_change = of(measured, "no-change", "mpkit")
    containers = max(int(m.facts["containers"]) for m in no_change)
    pushed = max(int(m.facts["bytes pushed"]) for m in no_change)
    goals = markdown_table(
        ["goal", "measured (median)", "met"],
        [
            ["SDK-shaped project, no-change rebuild → pack: ≤ 0.5 s, 0 containers run, "
             "0 bytes pushed", f"{medians['no-change', 'mpkit']:.3f} s, {containers} "
             f"containers, {pushed} bytes (most in any run)",
             yes(medians["no-change", "mpkit"] <= GOALS["no-change"] and not containers
                 and not pushed)],
            ["SDK-shaped project, one-line app change → pack (definition asked of the "
             "image): ≤ 1.5 s", f"{medians['app-only', 'mpkit']:.3f} s",
             yes(medians["app-only", "mpkit"] <= GOALS["app-only"])],
            ["quick start rebuild, podman unable to run containers: ≤ 1 s after the first "
             "build", f"{quick_median:.3f} s", yes(quick_median <= GOALS["quick start"])],
        ],
    )  # fmt: skip
    times = times_table(
        [(s, t, summary(measured, s, t)) for s in SCENARIOS for t in tools]
        + [(m.scenario, "mpkit", Summary.of([m.seconds])) for m in quick[:1]]
        + [("quick start rebuild", "mpkit", summary(quick, "quick start", "mpkit"))]
    )
    ratios = markdown_table(
        ["scenario", *(f"{t} / mpkit" for t in tools if t != "mpkit")],
        [[s, *(f"{medians[s, t] / medians[s, 'mpkit']:.1f}x" for t in tools if t != "mpkit")]
         for s in SCENARIOS],
    )  # fmt: skip
    parts = markdown_table(
        ["scenario", "mpkit in-process s", "podman build s", "podman push s"],
        [[s, fact_median(measured, s, "mpkit", "in-process"),
          fact_median(measured, s, "podman", "build"), fact_median(measured, s, "podman", "push")]
         for s in SCENARIOS],
    )  # fmt: skip
    skipped = "".join(f"\n**{tool} did not run**: {why}\n" for tool, why in inputs.skipped.items())
    profile = profile_section(
        inputs.profile, "one more app-only mpkit build (untimed)", enclosing=PROFILE_ENCLOSING,
        skip=PROFILE_SKIP, limit=PROFILE_ROWS,
    )  # fmt: skip
    commands = {
        "mpkit": "MPKIT_IMAGE_ALIASES=base-adapter:python-1.2.0=127.0.0.1:BASEPORT/"
        "vmware_aria_operations_integration_sdk/base-adapter:python-1.2.0 "
        "python -m mpkit build PROJECT --json --no-ttl",
        "podman": f"podman build -t 127.0.0.1:PORT/{REPOSITORY}:{PODMAN_TAG} PROJECT && "
        f"podman push --tls-verify=false 127.0.0.1:PORT/{REPOSITORY}:{PODMAN_TAG}",
        "mp-build": f"{SDK_VENV}/bin/mp-build -p PROJECT --no-ttl --registry-username bench "
        "--registry-password bench -P PORT",
        "quick start": "MPKIT_MIRRORS=projects.packages.broadcom.com=127.0.0.1:BASEPORT "
        "MPKIT_REGISTRY_ENDPOINTS=localhost:5000=127.0.0.1:PORT python -m mpkit build "
        "examples/hello-adapter --json",
    }
    versions = {
        "podman": ["podman", "--version"],
        "docker": ["/usr/bin/docker", "--version"],
        "mp-build (SDK)": [str(SDK_VENV / "bin" / "python"), "-c", SDK_VERSION],
        "registry": ["docker-registry", "--version"],
    }  # fmt: skip
    return f"""## SDK-shaped project: `mpkit build` vs the SDK's `mp-build` vs podman

Produced by `{inputs.command}` on {utc_now()}, {inputs.runs} run(s) per tool and scenario.

{goals}

{times}

Ratio of medians to mpkit (above 1: mpkit is faster):

{ratios}

Where the time goes (medians): mpkit's own measure from its start-up to the pack (`--json`
`seconds`; the rest of its wall time is Python's start-up and imports), podman's two
commands:

{parts}
{profile}{skipped}
Project: what the SDK's `mp-init` wrote for a Python adapter (`/work/sdk/projects/mysql-pack`,
copied for each tool): no `conf/describe.xml`, `FROM base-adapter:python-1.2.0`,
`vmware-aria-operations-integration-sdk-lib~=1.1.0` and `psutil==5.9.4`. Base: the SDK's
swagger REST server on the Debian stand-in (`tests/fixtures/sdkserverbase.py`,
`{inputs.server.digest}`) in a registry on 127.0.0.1, reached through
`MPKIT_IMAGE_ALIASES` by mpkit and as a local `base-adapter:python-1.2.0` by podman and by
mp-build's docker (whose copy adds the requirements' wheels and a `pip.conf` naming them:
its RUN steps have no network here, and mp-build builds without cache every time).

Each tool has its own copy of the project, a fresh HOME and a fresh target registry
(CNCF distribution, plain HTTP, no auth), and built it once untimed. Then every run: the
project again (**no-change**), then one line of `app/adapter.py` changed in every copy
(**app-only**); the tools alternate. mpkit describes with podman (runc, cgroupfs, ulimits
below the hard limit, overlay storage of its own) and runs without the resident build server
(`MPKIT_DAEMON` unset), with its bytecode compiled beforehand (`PYTHONPYCACHEPREFIX` under
`bench/.work/`) as after a pip install; this machine sets `PYTHONDONTWRITEBYTECODE=1`. mp-build
runs in the SDK's own virtual environment against a private dockerd
(`tests/fixtures/dockerd.py`). Checked every mpkit run: the pack records the digest the
registry serves; no-change: no container started (podman's event log), 0 bytes pushed, a
byte-identical pack; app-only: the definition came from the new image. mp-build: its pack
records a digest the registry serves.

**Quick start**: `examples/hello-adapter` into mpkit's built-in registry (started by the first
build, `localhost:5000` mapped to a free port), the SDK base stand-in through `MPKIT_MIRRORS`,
and a podman with storage of its own but its default engine settings, which cannot run
containers here. The first build's describe reason (`--json`): "{inputs.podman_said}". The
rebuilds (no change) must print nothing on stderr and take the definition from the cache.

Timed commands (wall clock, spawn to exit):

{timed_text(commands)}

Machine:

{machine_text(versions, inputs.load_before, uncached_tool="podman")}
"""


def parse_args(argv: Sequence[str] | None) -> tuple[int, bool, Path]:
    parser = bench_parser(__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs per tool and scenario")
    add_profile_argument(parser, "skip the extra profiled app-only mpkit build after the runs")
    add_results_argument(parser)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be positive")
    return args.runs, args.profile, args.results


def main(argv: Sequence[str] | None = None) -> int:
    runs, profiled, results = parse_args(argv)
    command = command_line("sdkpack.py", argv)
    paths = require_tools("podman", "runc", "docker-registry")
    if not SDK_PROJECT.is_dir():
        raise BenchError(f"the SDK project {SDK_PROJECT} is missing")
    prime_mpkit_bytecode()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="sdkpack-runs.", dir=WORK_DIR))
    try:
        with fresh_registry(scratch / "registry-base") as base_registry:
            base = publish_sdk_base(base_registry)
            server = publish_server_base(base, base_registry)
            load_before = load_average()
            profile = scratch / "app-only.prof" if profiled else None
            with bench_tools(scratch, paths["podman"], server) as bench:
                measured = run_sdk(bench, runs, profile)
            quick, said = run_quick_start(scratch, paths["podman"], base, runs)
            inputs = ReportInputs(command, runs, load_before, server, bench.skipped, said,
                                  profile)  # fmt: skip
            section = report(measured, quick, inputs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    write_results(SECTION, section, results)
    return 0


if __name__ == "__main__":
    run_main(main, "SDK pack")
