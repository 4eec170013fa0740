"""Build benchmark: ``mpkit image build --push`` against ``podman build`` + ``podman push``.

Run from the repository root::

    python bench/build.py --runs 3

The project is an SDK-style adapter (``FROM`` the SDK base, ``COPY commands.cfg``, ``COPY
adapter_requirements.txt``, ``RUN pip3 install -r … --upgrade``, ``COPY app app``). The base
is the Debian stand-in of ``tests/fixtures/baseimage.py``, served by a fresh registry on
127.0.0.1 under the SDK's name through a mirror (``MPKIT_MIRRORS`` for mpkit, registries.conf
for podman). Each round, alternating the tools:

* **cold**: build and push into an empty repository of a freshly started registry, with an
  empty mpkit cache / a fresh podman graphroot (overlay; runc, cgroupfs, ulimits below the
  hard limit): both pull the base and download the requirements from the package index;
* **app-only**: change one line of ``app/adapter.py``, then build and push again with what the
  cold run left (mpkit's cache, podman's layer cache and the pushed repository); repeated
  ``--app-runs`` times (default 3) with a different edit each time.

Every push is checked against what the registry serves, and the bytes each push added to the
registry's storage are counted. Medians, speedups (podman/mpkit) and the goals go to the
``bench:build`` section of ``bench/RESULTS.md``. Goals: app-only at least 10x faster than
podman, cold at least 2x faster, and an app-only push that uploads little beyond the app layer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from _common import (
    CONTAINERS_SYSTEM_CACHE,
    WORK_DIR,
    BenchError,
    ServedManifest,
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
    registry_blob_sizes,
    require_tools,
    run_main,
    run_timed,
    seconds_text,
    served_manifest,
    timed_text,
    times_table,
    utc_now,
    write_results,
    yes,
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
from tests.fixtures.baseimage import SDK_REGISTRY, UPSTREAM_NAME
from tests.fixtures.registry import RegistryServer
from tests.fixtures.sdkmanifest import sdk_manifest

SECTION = "build"
REPOSITORY = "bench/adapter"
SCENARIOS = ("cold", "app-only")
NO_SERVER = "mpkit, no server"
TOOLS = ("mpkit", NO_SERVER, "podman")
MPKIT_TOOLS = ("mpkit", NO_SERVER)
COLD_SPEEDUP_GOAL = 2.0
APP_SPEEDUP_GOAL = 10.0
EXTRA_UPLOAD_GOAL = 16 * 1024  # bytes beyond the app layer: room for the config, no layer
NEW_LAYERS = 4  # COPY, COPY, RUN pip, COPY app
PROFILE_ROWS = 12
RUNROOT_PREFIX = "mpkit-bench-pr"

# -- the project ------------------------------------------------------------------------

DOCKERFILE = f"""\
FROM {UPSTREAM_NAME}
COPY commands.cfg .
COPY adapter_requirements.txt .
RUN pip3 install -r adapter_requirements.txt --upgrade
COPY app app
"""
REQUIREMENTS = ("requests==2.34.2", "PyYAML==6.0.4", "six==1.17.0")
COMMANDS_CFG = """\
[Commands]
test = /usr/local/bin/python app/adapter.py test
collect = /usr/local/bin/python app/adapter.py collect
adapter_definition = /usr/local/bin/python app/adapter.py adapter_definition
endpoint_urls = /usr/local/bin/python app/adapter.py endpoint_urls
"""
MANIFEST = sdk_manifest(
    name="iSDK_BenchAdapter",
    description="Build benchmark adapter",
    eula_file="",
    vendor="mpkit",
    pak_icon="",
    adapter_kinds=["BenchAdapter"],
)
CONSTANTS_PY = '''\
"""Names shared by the adapter's commands."""

ADAPTER_KIND = "BenchAdapter"
ADAPTER_NAME = "Bench Adapter"
HOST_IDENTIFIER = "host"
PORT_IDENTIFIER = "port"
USER_CREDENTIAL = "user"
PASSWORD_CREDENTIAL = "password"
DEFAULT_PORT = 443
REQUEST_TIMEOUT = 30
'''
ADAPTER_PY = '''\
"""A small adapter in the shape of the SDK's Python template."""

import json
import logging
import sys
from typing import Any, Dict, List

import requests
import yaml

import constants

ADAPTER_REVISION = "initial"

logger = logging.getLogger(__name__)


def read_input(path: str) -> Dict[str, Any]:
    with open(path) as handle:
        return json.load(handle)


def write_output(path: str, document: Dict[str, Any]) -> None:
    with open(path, "w") as handle:
        json.dump(document, handle)


def identifiers(config: Dict[str, Any]) -> Dict[str, str]:
    values = config.get("adapter_instance", {}).get("identifiers", [])
    return {item["key"]: item.get("value", "") for item in values}


def credentials(config: Dict[str, Any]) -> Dict[str, str]:
    values = config.get("adapter_instance", {}).get("credential_config", {})
    return {item["key"]: item.get("value", "") for item in values.get("credential_fields", [])}


def session_for(config: Dict[str, Any]) -> requests.Session:
    creds = credentials(config)
    session = requests.Session()
    session.auth = (creds.get(constants.USER_CREDENTIAL, ""),
                    creds.get(constants.PASSWORD_CREDENTIAL, ""))
    session.headers["User-Agent"] = f"{constants.ADAPTER_NAME}/{ADAPTER_REVISION}"
    return session


def base_url(config: Dict[str, Any]) -> str:
    ids = identifiers(config)
    host = ids.get(constants.HOST_IDENTIFIER, "localhost")
    port = ids.get(constants.PORT_IDENTIFIER, str(constants.DEFAULT_PORT))
    return f"https://{host}:{port}"


def test(config: Dict[str, Any]) -> Dict[str, Any]:
    try:
        response = session_for(config).get(base_url(config) + "/health",
                                           timeout=constants.REQUEST_TIMEOUT)
        response.raise_for_status()
    except requests.RequestException as error:
        return {"errorMessage": str(error)}
    return {}


def collect(config: Dict[str, Any]) -> Dict[str, Any]:
    objects: List[Dict[str, Any]] = []
    session = session_for(config)
    try:
        response = session.get(base_url(config) + "/inventory",
                               timeout=constants.REQUEST_TIMEOUT)
        response.raise_for_status()
        inventory = yaml.safe_load(response.text) or {}
    except requests.RequestException as error:
        return {"result": {}, "errorMessage": str(error)}
    for item in inventory.get("systems", []):
        objects.append({
            "key": {"adapterKind": constants.ADAPTER_KIND, "objectKind": "system",
                    "name": item.get("name", "unknown"), "identifiers": []},
            "metrics": [{"key": "cpu|usage", "doubleValue": float(item.get("cpu", 0))}],
            "properties": [{"key": "version", "stringValue": str(item.get("version", ""))}],
            "events": [],
        })
    return {"result": {"objects": objects, "relationships": []}}


def adapter_definition() -> Dict[str, Any]:
    return {
        "adapter_kind": constants.ADAPTER_KIND,
        "name": constants.ADAPTER_NAME,
        "identifiers": [constants.HOST_IDENTIFIER, constants.PORT_IDENTIFIER],
        "credentials": [constants.USER_CREDENTIAL, constants.PASSWORD_CREDENTIAL],
        "object_types": ["system"],
    }


def endpoint_urls(config: Dict[str, Any]) -> Dict[str, Any]:
    return {"endpointUrls": [base_url(config)]}


def main(argv: List[str]) -> int:
    logging.basicConfig(level=logging.INFO)
    command, paths = argv[1], argv[2:]
    if command == "adapter_definition":
        write_output(paths[-1], adapter_definition())
        return 0
    config = read_input(paths[0])
    handlers = {"test": test, "collect": collect, "endpoint_urls": endpoint_urls}
    if command not in handlers:
        logger.error("unknown command %s", command)
        return 1
    write_output(paths[1], handlers[command](config))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
'''
REVISION_LINE = re.compile(r'^ADAPTER_REVISION = ".*"$', re.MULTILINE)


def write_project(root: Path) -> Path:
    """An SDK-style adapter project at *root* (what ``mp-init`` generates, trimmed)."""
    (root / "app").mkdir(parents=True)
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "commands.cfg").write_text(COMMANDS_CFG)
    (root / "adapter_requirements.txt").write_text("".join(f"{r}\n" for r in REQUIREMENTS))
    (root / "manifest.txt").write_text(json.dumps(MANIFEST, indent=4) + "\n")
    (root / "app" / "constants.py").write_text(CONSTANTS_PY)
    (root / "app" / "adapter.py").write_text(ADAPTER_PY)
    return root


def change_one_line(project: Path, revision: str) -> None:
    """The app-only change: rewrite the ``ADAPTER_REVISION`` line of app/adapter.py."""
    path = project / "app" / "adapter.py"
    text, count = REVISION_LINE.subn(f'ADAPTER_REVISION = "{revision}"', path.read_text())
    if count != 1:
        raise BenchError(f"{path}: no single ADAPTER_REVISION line to change")
    path.write_text(text)


# -- the tools ----------------------------------------------------------------------------


class Session(Protocol):
    """One tool's state for one round: its home, caches or storage."""

    name: str

    def build_and_push(self, project: Path, target: str) -> ToolRun: ...


class MpkitSession:
    """``mpkit image build PROJECT --push REF --json``, one command.

    With *server_dir*, through the resident build server (``MPKIT_DAEMON=on``: the cold
    run starts it, inside its timing); else in-process (``MPKIT_DAEMON=off``).
    """

    def __init__(
        self, home: ToolHome, command: Sequence[str], base_host: str, server_dir: Path | None
    ) -> None:
        self.home = home
        self.command = list(command)
        self.name = "mpkit" if server_dir else NO_SERVER
        self.env = {**home.env, "MPKIT_MIRRORS": f"{SDK_REGISTRY}={base_host}"}
        if server_dir is None:
            self.env["MPKIT_DAEMON"] = "off"
        else:
            self.env.update({"MPKIT_DAEMON": "on", "MPKIT_DAEMON_DIR": str(server_dir)})

    def stop_server(self) -> None:
        if self.env["MPKIT_DAEMON"] == "on":
            run_timed([*self.command, "daemon", "stop"], env=self.env)

    def argv(self, project: Path, target: str) -> list[str]:
        return [*self.command, "image", "build", str(project), "--push", target, "--json"]

    def build_and_push(self, project: Path, target: str) -> ToolRun:
        run = run_timed(self.argv(project, target), env=self.env, preexec=self.home.preexec)
        return ToolRun(run.seconds, {}, json.loads(run.stdout))


class PodmanSession(BenchPodman):
    """podman build + push with its own storage under ``ROOT/podman`` (see BenchPodman)."""

    def __init__(self, binary: str, root: Path, home: ToolHome, base_host: str) -> None:
        super().__init__(binary, root / "podman", home, base_host, RUNROOT_PREFIX)

    def init_storage(self) -> None:
        """Create the empty storage untimed, as on a machine where podman was used before."""
        self.timed([self.binary, "images"])


# -- measuring ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One verified build-and-push and what it added to the target registry."""

    tool: str
    scenario: str
    run: ToolRun
    manifest: ServedManifest
    new_blobs: Mapping[str, int]  # digest -> size, blobs the registry did not have before

    @property
    def app_layer(self) -> int:
        return self.manifest.layer_sizes[-1]

    def growth(self) -> dict[str, int]:
        """Bytes the push added to the registry, by kind of blob."""
        app = str(self.manifest.layers[-1]["digest"])
        config = str(self.manifest.config["digest"])
        kinds = {"app layer": 0, "other layers": 0, "config": 0, "manifest": 0}
        for digest, size in self.new_blobs.items():
            if digest == app:
                kinds["app layer"] += size
            elif digest == config:
                kinds["config"] += size
            elif digest == self.manifest.digest:
                kinds["manifest"] += size
            else:
                kinds["other layers"] += size
        return kinds

    @property
    def reported_upload(self) -> int | None:
        """Bytes mpkit says it uploaded (layers and config; ``--json``), else None."""
        if self.run.report is None:
            return None
        return int(self.run.report["push"]["bytes_uploaded"])


def measure(
    session: Session,
    registry: RegistryServer,
    project: Path,
    scenario: str,
    tag: str,
) -> Measurement:
    target = f"{registry.host}/{REPOSITORY}:{tag}"
    before = registry_blob_sizes(registry)
    run = session.build_and_push(project, target)
    manifest = served_manifest(registry.host, REPOSITORY, tag)
    after = registry_blob_sizes(registry)
    new_blobs = {digest: size for digest, size in after.items() if digest not in before}
    return Measurement(session.name, scenario, run, manifest, new_blobs)


def check(measurement: Measurement, cold: Measurement | None, base_layers: int) -> None:
    """The push is what the tool claims, and an app-only rebuild changed only the app layer."""
    where = f"{measurement.scenario} {measurement.tool}"
    manifest = measurement.manifest
    if len(manifest.layers) != base_layers + NEW_LAYERS:
        raise BenchError(
            f"{where}: the registry serves {len(manifest.layers)} layers, "
            f"expected {base_layers} from the base + {NEW_LAYERS}"
        )
    report = measurement.run.report
    if report is not None:
        if report["digest"] != manifest.digest:
            raise BenchError(
                f"{where}: mpkit reported {report['digest']}, the registry serves {manifest.digest}"
            )
        if report["builder"] != "native":
            raise BenchError(f"{where}: mpkit built with {report['builder']}, not natively")
    if cold is None:
        return
    kept = [layer["digest"] for layer in manifest.layers[:-1]]
    if kept != [layer["digest"] for layer in cold.manifest.layers[:-1]]:
        raise BenchError(f"{where}: layers below the app layer changed after an app-only edit")
    if manifest.layers[-1]["digest"] == cold.manifest.layers[-1]["digest"]:
        raise BenchError(f"{where}: the app layer did not change after editing app/adapter.py")
    if report is not None:
        pip = [layer for layer in report["layers"] if layer["instruction"].startswith("RUN")]
        if not all(layer["cached"] for layer in pip):
            raise BenchError(f"{where}: mpkit re-ran the pip step for an app-only change")


# -- the rounds -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    podman: str
    mpkit_command: tuple[str, ...]
    base_host: str
    base_layers: int
    app_runs: int


def run_rounds(
    setup: Setup, runs: int, scratch: Path, profile: Path | None
) -> Results[Measurement]:
    results: Results[Measurement] = Results()
    for number in range(1, runs + 1):
        round_dir = scratch / f"round-{number}"
        last = number == runs
        found = _one_round(setup, number, round_dir, profile if last else None)
        results.measurements += found
        log(
            f"round {number}/{runs}: "
            + ", ".join(f"{m.scenario} {m.tool} {m.run.seconds:.2f}s" for m in found)
        )
        shutil.rmtree(round_dir, ignore_errors=True)
    return results


def _one_round(
    setup: Setup, number: int, round_dir: Path, profile: Path | None
) -> list[Measurement]:
    found: list[Measurement] = []
    with contextlib.ExitStack() as stack:
        project = write_project(round_dir / "project")
        registries: dict[str, RegistryServer] = {}
        sessions: dict[str, Session] = {}
        for tool in TOOLS:
            slug = re.sub(r"\W+", "-", tool)
            registries[tool] = stack.enter_context(fresh_registry(round_dir / f"registry-{slug}"))
            home = isolated_home(round_dir / f"home-{slug}")
            if tool in MPKIT_TOOLS:
                server_dir = None
                if tool == "mpkit":  # a short path: it holds a Unix socket
                    server_dir = Path(tempfile.mkdtemp(prefix="mpd-", dir="/tmp"))
                    stack.callback(shutil.rmtree, server_dir, ignore_errors=True)
                mpkit = MpkitSession(home, setup.mpkit_command, setup.base_host, server_dir)
                stack.callback(mpkit.stop_server)
                sessions[tool] = mpkit
            else:
                podman = PodmanSession(setup.podman, round_dir, home, setup.base_host)
                stack.callback(podman.close)
                podman.allow(registries[tool].host)
                podman.init_storage()
                sessions[tool] = podman
        cold: dict[str, Measurement] = {}
        edits = [(f"round {number}, edit {e}", f"app{e}") for e in range(1, setup.app_runs + 1)]
        for scenario, revision, tag in [("cold", None, "cold")] + [("app-only", *e) for e in edits]:
            if revision is not None:
                change_one_line(project, revision)
            for tool in TOOLS:  # alternate the tools within each scenario
                m = measure(sessions[tool], registries[tool], project, scenario, tag)
                check(m, cold.get(tool), setup.base_layers)
                cold.setdefault(tool, m)
                found.append(m)
        if profile is not None:  # in-process: a profile of the server's client says little
            session = sessions[NO_SERVER]
            assert isinstance(session, MpkitSession)
            change_one_line(project, f"round {number}, profiled")
            target = f"{registries[NO_SERVER].host}/{REPOSITORY}:profiled"
            profile_mpkit(session, project, target, profile)
    return found


# -- profiling ------------------------------------------------------------------------------


PROFILE_ENCLOSING = ("__main__.py", "cli/__init__.py")  # the entry point's wrappers


def profile_mpkit(session: MpkitSession, project: Path, target: str, output: Path) -> None:
    """One more app-only mpkit run under cProfile (not timed), its stats in *output*."""
    argv = profiled_argv(session.argv(project, target), output)
    run_timed(argv, env=session.env, preexec=session.home.preexec)


# -- the report -----------------------------------------------------------------------------


def _median_int(values: Sequence[int]) -> int:
    return int(Summary.of([float(v) for v in values]).median)


def _bytes(value: float) -> str:
    return f"{value / 1e6:.2f} MB" if value >= 1e6 else f"{value:,.0f} B"


@dataclass(frozen=True)
class ReportInputs:
    runs: int
    app_runs: int
    command: str
    commands: Mapping[str, str]
    load_before: str
    base_digest: str
    base_size: int
    profile: Path | None


def report(results: Results[Measurement], inputs: ReportInputs) -> str:
    app_mpkit = results.of("app-only", "mpkit")
    extra = _median_int([(m.reported_upload or 0) - m.app_layer for m in app_mpkit])
    uploaded = _median_int([m.reported_upload or 0 for m in app_mpkit])
    app_layer = _median_int([m.app_layer for m in app_mpkit])
    cold_speedup, app_speedup = results.speedup("cold"), results.speedup("app-only")
    no_server = {scenario: results.speedup(scenario, NO_SERVER) for scenario in SCENARIOS}
    goals = markdown_table(
        ["goal", "measured", "met"],
        [
            [
                f"cold build+push: mpkit ≥ {COLD_SPEEDUP_GOAL:.0f}x faster than podman",
                f"{cold_speedup:.2f}x",
                yes(cold_speedup >= COLD_SPEEDUP_GOAL),
            ],
            [
                f"app-only rebuild+push: mpkit ≥ {APP_SPEEDUP_GOAL:.0f}x faster than podman",
                f"{app_speedup:.2f}x",
                yes(app_speedup >= APP_SPEEDUP_GOAL),
            ],
            [
                f"app-only push: mpkit uploads ≤ app layer + {EXTRA_UPLOAD_GOAL // 1024} KiB",
                f"{uploaded:,} B for a {app_layer:,} B app layer (+{extra:,} B)",
                yes(extra <= EXTRA_UPLOAD_GOAL),
            ],
            [
                "(not a goal) without the build server, MPKIT_DAEMON=off: cold, app-only",
                f"{no_server['cold']:.2f}x, {no_server['app-only']:.2f}x",
                "—",
            ],
        ],
    )
    times = times_table(
        (scenario, tool, results.summary(scenario, tool))
        for scenario in SCENARIOS
        for tool in TOOLS
    )
    parts = markdown_table(
        ["scenario", "podman build s", "podman push s"],
        [
            [scenario]
            + [
                seconds_text(results.summary(scenario, "podman", p).median)
                for p in ("build", "push")
            ]
            for scenario in SCENARIOS
        ],
    )
    bytes_rows = []
    for scenario in SCENARIOS:
        for tool in TOOLS:
            found = results.of(scenario, tool)
            growth = [m.growth() for m in found]
            reported = [m.reported_upload for m in found]
            bytes_rows.append(
                [
                    scenario,
                    tool,
                    _bytes(_median_int([m.app_layer for m in found])),
                    _bytes(_median_int([m.get("app layer", 0) for m in growth])),
                    _bytes(_median_int([m["other layers"] for m in growth])),
                    _bytes(_median_int([m["config"] for m in growth])),
                    _bytes(_median_int([m["manifest"] for m in growth])),
                    _bytes(_median_int([r for r in reported if r is not None]))
                    if tool in MPKIT_TOOLS
                    else "—",
                ]
            )
    bytes_table = markdown_table(
        [
            "scenario",
            "tool",
            "app layer (gzip)",
            "new in registry: app layer",
            "other layers",
            "config",
            "manifest",
            "mpkit --json bytes_uploaded",
        ],
        bytes_rows,
    )
    tools = {
        "podman": ["podman", "--version"],
        "registry": ["docker-registry", "--version"],
        "uv (mpkit's resolver)": [uv_command(), "--version"],
    }
    machine = machine_text(tools, inputs.load_before, uncached_tool="podman")
    timed = timed_text(inputs.commands)
    requirements = ", ".join(f"`{r}`" for r in REQUIREMENTS)
    profile = profile_section(
        inputs.profile,
        "one more app-only mpkit build+push, in-process (MPKIT_DAEMON=off)",
        enclosing=PROFILE_ENCLOSING,
        skip=(),
        limit=PROFILE_ROWS,
    )
    dockerfile = "\n".join(f"    {line}" for line in DOCKERFILE.splitlines())
    return f"""## Build: `mpkit image build --push` vs `podman build` + `podman push`

Produced by `{inputs.command}` on {utc_now()}: {inputs.runs} round(s), each with one cold
and {inputs.app_runs} app-only build(s) per tool.

{goals}

Speedup = podman's median / mpkit's median (above 1: mpkit is faster). "mpkit" runs
through its resident build server (`MPKIT_DAEMON=on`; the cold run starts the server and
pays for that): a pre-imported mpkit that forks one child per command, which removes
Python's start-up and imports (~0.3 s) from every command. "{NO_SERVER}" is the same
command with `MPKIT_DAEMON=off`, in a fresh interpreter each time.

{times}

podman's time is its build plus its push (medians):

{parts}

Bytes each push added to its registry (medians; new blobs in the registry's storage, sorted
by the pushed manifest; a lower bound of what was sent, since a blob already stored is
not stored twice):

{bytes_table}
{profile}
Project: an SDK-style adapter (`app/adapter.py`, `app/constants.py`, `commands.cfg`,
`manifest.txt`, `adapter_requirements.txt` with {requirements}) and this Dockerfile:

{dockerfile}

Base: the Debian stand-in for the SDK base (`tests/fixtures/baseimage.py`, one layer of
{_bytes(inputs.base_size)}, `{inputs.base_digest}`), pushed once to a fresh registry on
127.0.0.1 and reached under its SDK name through a mirror: `MPKIT_MIRRORS` for mpkit,
a registries.conf entry for podman. The target registries are other fresh registries, so
the base layer is uploaded on every cold push (the usual case: the SDK base lives on
Broadcom's registry, the adapter goes to the user's).

Scenarios, each round (the tools alternate within each build: mpkit, mpkit without the
server, podman), every tool with its own fresh target registry and a fresh HOME, `DOCKER_CONFIG`,
`XDG_*` and auth file:
- **cold**: empty target repository; an empty `MPKIT_CACHE_DIR` for mpkit, a new podman
  graphroot (overlay driver, runc, cgroupfs, ulimits below the hard limit; created with an untimed
  `podman images`) and an empty blob-info cache (root's `{CONTAINERS_SYSTEM_CACHE}`, replaced
  in a private mount namespace). Both pull the base from the mirror, and both download the
  requirements from PyPI (mpkit through uv on the host with an empty cache, podman through
  pip in the build container), so the cold numbers include the package index's latency.
- **app-only**: one line of `app/adapter.py` changed, then the same build and push with
  what the cold run left: mpkit's cache, podman's layer cache, the pushed repository
  (`--app-runs` times per round, each with a different edit).
Every push is verified: the registry serves a manifest with the base's layers plus 4, mpkit's
`--json` digest equals the served manifest's digest, and after the app-only change every
layer but the app layer is unchanged (and mpkit reports its pip layer cached).
mpkit runs with its bytecode compiled beforehand (`PYTHONPYCACHEPREFIX` under `bench/.work/`).

Timed commands (wall clock, spawn to exit, `time.perf_counter`; podman's two are timed
separately and added):

{timed}

Machine:

{machine}
"""


def uv_command() -> str:
    """The uv that mpkit runs: its ``uv`` dependency's binary, else the one on PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return "uv"


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--runs", type=int, default=3, help="rounds (each: cold, then app-only)")
    parser.add_argument(
        "--app-runs", type=int, default=3, help="app-only edits and rebuilds per round"
    )
    add_profile_argument(parser, "skip the extra profiled app-only mpkit run of the last round")
    add_results_argument(parser)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.app_runs < 1:
        parser.error("--runs and --app-runs must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line("build.py", argv)
    paths = require_tools("podman", "runc", "docker-registry")
    prime_mpkit_bytecode()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="build-runs.", dir=WORK_DIR))
    profile = scratch / "app-only.prof" if args.profile else None
    try:
        with base_registry(scratch) as (registry, base_digest, base_layers, base_size):
            log(
                f"base {base_digest} ({base_layers} layer(s), {base_size / 1e6:.1f} MB) "
                f"on {registry.host}"
            )
            setup = Setup(
                paths["podman"], (sys.executable, "-m", "mpkit"), registry.host, base_layers,
                args.app_runs,
            )  # fmt: skip
            load_before = load_average()
            results = run_rounds(setup, args.runs, scratch, profile)
        commands = _command_texts(setup)
        inputs = ReportInputs(
            args.runs, args.app_runs, command, commands, load_before, base_digest, base_size,
            profile,
        )  # fmt: skip
        section = report(results, inputs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    write_results(SECTION, section, args.results)
    return 0


def _command_texts(setup: Setup) -> dict[str, str]:
    project, target = Path("PROJECT"), f"127.0.0.1:PORT/{REPOSITORY}:TAG"
    home = ToolHome(root=Path("HOME"), env={})
    mpkit_argv = MpkitSession(home, setup.mpkit_command, "BASE", None).argv(project, target)
    mpkit_text = mpkit_command_text(shlex.join(mpkit_argv).replace(sys.executable, "python"))
    return {
        "mpkit": f"MPKIT_DAEMON=on MPKIT_DAEMON_DIR=DIR {mpkit_text}",
        NO_SERVER: f"MPKIT_DAEMON=off {mpkit_text}",
        "podman": podman_command_text(target),
    }


if __name__ == "__main__":
    run_main(main, "build")
