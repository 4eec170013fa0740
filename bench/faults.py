"""Fault benchmark: correct ``mpkit image push`` and ``mpkit build`` runs at 25% faults.

Run from the repository root::

    python bench/faults.py --pushes 30 --builds 10 --skopeo 10

Every run talks to a fresh CNCF distribution registry on 127.0.0.1 through the fault
proxy of ``tests/fixtures/faultproxy.py``. At the given rate (default 25%), each request
gets a random fault, one of: HTTP 503, HTTP 429 (no Retry-After), a reset (the connection
is cut before any answer) or a 2 s delay. Run N draws its faults from a generator seeded
with N, so a run can be repeated.

* **push**: ``mpkit image push`` of a generated 5-layer image (``bench/push.py``'s, 10 MB
  by default) into a new repository, with a fresh HOME, state and cache.
* **build**: ``mpkit build`` of the SDK project of ``tests/e2e/sdkproject.py`` (the whole
  pack flow: prove push access, build, push, pack, verify anonymously) into a new
  repository. Its SDK base comes from a second registry behind a second fault proxy at the
  same rate (seeded 1000 + N). The builds share one MPKIT_CACHE_DIR, filled by one untimed
  build without faults first, so they measure the registry traffic, not PyPI.
* **skopeo**: ``skopeo copy --retry-times 5`` of the same image, seeds 0 to N - 1, for
  comparison.

A run is **correct** when the command exits 0 within the time limit (3 minutes) and the
registry itself (not through the proxy) serves the pushed manifest with the expected digest;
for a build also when the pack records that digest and its verify passed. Each failure is
listed with its error line. The counts, times and faults go to the ``bench:faults``
section of ``bench/RESULTS.md``. Goal: every mpkit run correct.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    WORK_DIR,
    BenchError,
    ToolHome,
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
    require_tools,
    run_main,
    served_manifest,
    timed_text,
    utc_now,
    write_results,
)
from push import TAG, BenchImage, bench_image, warm_page_cache

# isort: split
from tests.e2e.sdkproject import PACK_NAME, read_pack, sdk_mirror, write_sdk_project
from tests.fixtures.baseimage import publish_sdk_base
from tests.fixtures.faultproxy import CHAOS_KINDS, Chaos, FaultProxy
from tests.fixtures.registry import RegistryServer

SECTION = "faults"
TIME_LIMIT = 180.0
MIRROR_SEED_OFFSET = 1000
BUILD_REPOSITORY = "bench/build"


@dataclass(frozen=True)
class Outcome:
    """One run: correct or not, how long it took, the faults it met and why it failed."""

    seed: int
    correct: bool
    seconds: float
    faults: Counter[str]
    error: str = ""


@dataclass
class Series:
    """The runs of one command."""

    name: str
    command: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def correct(self) -> int:
        return sum(o.correct for o in self.outcomes)

    def row(self) -> list[str]:
        seconds = [o.seconds for o in self.outcomes]
        faults: Counter[str] = Counter()
        for outcome in self.outcomes:
            faults.update(outcome.faults)
        return [
            self.name,
            f"**{self.correct} of {len(self.outcomes)}**",
            f"{statistics.median(seconds):.1f}",
            f"{max(seconds):.1f}",
            " / ".join(str(faults[kind]) for kind in CHAOS_KINDS),
        ]


@dataclass(frozen=True)
class Finished:
    returncode: int | None  # None: killed at the time limit
    seconds: float
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        if self.returncode is None:
            return f"still running after {TIME_LIMIT:.0f} s"
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower() or "FATA" in line]
        return (errors or lines or [f"exit {self.returncode}"])[-1].strip()[:400]


def run_limited(argv: Sequence[str], env: dict[str, str], home: ToolHome) -> Finished:
    """Run *argv* to its end or the time limit; never raises for a failure of the tool."""
    started = time.perf_counter()
    process = subprocess.Popen(
        list(argv), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=home.preexec,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=TIME_LIMIT)
        code: int | None = process.returncode
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        code = None
    except BaseException:
        process.kill()
        process.communicate()
        raise
    return Finished(code, time.perf_counter() - started, stdout, stderr)


@contextlib.contextmanager
def faulty(registry: RegistryServer, rate: float, seed: int) -> Iterator[tuple[FaultProxy, Chaos]]:
    """A fault proxy in front of *registry*, faulting *rate* of the requests."""
    proxy = FaultProxy.for_registry(registry).start()
    try:
        yield proxy, proxy.chaos(rate, seed=seed)
    finally:
        proxy.stop()


def injected(*chaoses: Chaos) -> Counter[str]:
    faults: Counter[str] = Counter()
    for chaos in chaoses:
        faults.update(chaos.injected)
    return faults


def outcome(name: str, seed: int, done: Finished, correct: bool, faults: Counter[str]) -> Outcome:
    """The run's outcome, logged for the person running the benchmark."""
    error = "" if correct else done.error
    verdict = "correct" if correct else "FAILED"
    log(f"{name} seed {seed}: {verdict} in {done.seconds:.1f} s, faults {dict(faults)} {error}")
    return Outcome(seed, correct, done.seconds, faults, error)


def served_digest(registry: RegistryServer, repository: str, reference: str) -> str | None:
    try:
        return served_manifest(registry.host, repository, reference).digest
    except (BenchError, KeyError, ValueError):
        return None


# -- pushes ---------------------------------------------------------------------------------

PushArgv = Callable[[Path, str], list[str]]


def mpkit_push_argv(layout: Path, target: str) -> list[str]:
    return [sys.executable, "-m", "mpkit", "image", "push", f"oci:{layout}:{TAG}", target, "--json"]


def skopeo_push_argv(binary: str) -> PushArgv:
    def argv(layout: Path, target: str) -> list[str]:
        return [binary, "--insecure-policy", "copy", "--retry-times", "5",
                "--dest-tls-verify=false", f"oci:{layout}:{TAG}", f"docker://{target}"]  # fmt: skip

    return argv


def push_runs(
    name: str, argv: PushArgv, image: BenchImage, runs: int, rate: float, scratch: Path,
    registry: RegistryServer,
) -> list[Outcome]:  # fmt: skip
    outcomes = []
    for seed in range(runs):
        repository = f"bench/{name}-{seed}"
        home = isolated_home(scratch / f"home-{name}-{seed}")
        with faulty(registry, rate, seed) as (proxy, chaos):
            done = run_limited(argv(image.layout, f"{proxy.host}/{repository}:{TAG}"),
                               home.env, home)  # fmt: skip
            faults = injected(chaos)
        correct = done.returncode == 0 and served_digest(registry, repository, TAG) == image.digest
        outcomes.append(outcome(f"{name} push", seed, done, correct, faults))
        shutil.rmtree(home.root, ignore_errors=True)
    return outcomes


# -- builds ---------------------------------------------------------------------------------


def mpkit_build_argv(project: Path) -> list[str]:
    return [sys.executable, "-m", "mpkit", "build", str(project), "--json", "--no-ttl"]


def one_build(
    scratch: Path, name: str, target: RegistryServer, target_host: str, mirror_host: str,
    cache: Path,
) -> tuple[Finished, str, Path]:  # fmt: skip
    """A fresh project and home building into a new repository at *target_host*."""
    repository = f"{BUILD_REPOSITORY}-{name}"
    project = write_sdk_project(
        scratch / f"project-{name}", config={"container_repository": f"{target_host}/{repository}"}
    )
    home = isolated_home(scratch / f"home-build-{name}")
    env = {
        **home.env,
        "MPKIT_MIRRORS": sdk_mirror(mirror_host),
        "MPKIT_CACHE_DIR": str(cache),
        "MPKIT_SDK_CONFIG": str(home.root / "sdk-config.json"),
        "MPKIT_DAEMON": "off",
    }
    done = run_limited(mpkit_build_argv(project), env, home)
    shutil.rmtree(home.root, ignore_errors=True)
    return done, repository, project


def build_correct(done: Finished, target: RegistryServer, repository: str, project: Path) -> bool:
    if done.returncode != 0:
        return False
    report = json.loads(done.stdout)
    conf = read_pack(project / "build" / PACK_NAME).kind_conf()
    served = served_digest(target, repository, conf["DIGEST"])
    verified = bool(report.get("verify") and report["verify"].get("ok"))
    return verified and served == conf["DIGEST"] == report["digest"]


def build_runs(runs: int, rate: float, scratch: Path, base: RegistryServer) -> list[Outcome]:
    cache = scratch / "build-cache"
    outcomes = []
    with fresh_registry(scratch / "registry-build") as target:
        log("first (untimed) build without faults: base pull and requirements into the cache")
        done, repository, project = one_build(scratch, "warm-up", target, target.host,
                                              base.host, cache)  # fmt: skip
        if not build_correct(done, target, repository, project):
            raise BenchError(f"the build without faults failed: {done.error}\n{done.stderr}")
        for seed in range(runs):
            mirror_seed = MIRROR_SEED_OFFSET + seed
            with (
                faulty(target, rate, seed) as (proxy, chaos),
                faulty(base, rate, mirror_seed) as (mirror, mirror_chaos),
            ):
                done, repository, project = one_build(
                    scratch, str(seed), target, proxy.host, mirror.host, cache
                )
                faults = injected(chaos, mirror_chaos)
            correct = build_correct(done, target, repository, project)
            outcomes.append(outcome("mpkit build", seed, done, correct, faults))
    return outcomes


# -- report ---------------------------------------------------------------------------------


def report(series: Sequence[Series], args: argparse.Namespace, command: str, image: BenchImage,
           load_before: str) -> str:  # fmt: skip
    versions = {"skopeo": ["skopeo", "--version"], "registry": ["docker-registry", "--version"]}
    table = markdown_table(
        ["command", "correct runs", "median s", "max s",
         "faults met: " + " / ".join(CHAOS_KINDS)],
        [s.row() for s in series],
    )  # fmt: skip
    failures = [
        f"- {s.name}, seed {o.seed}: {o.error}" for s in series for o in s.outcomes if not o.correct
    ]
    mine = [s for s in series if s.name.startswith("mpkit")]
    goal = all(s.correct == len(s.outcomes) for s in mine)
    return f"""## Faults: correct runs at {args.rate:.0%} random registry faults

Written by `{command}` on {utc_now()}.

Each request to the registry (a fresh CNCF distribution registry on 127.0.0.1, behind
the fault proxy) gets, at {args.rate:.0%}, a random fault: HTTP 503, HTTP 429, a reset
before any answer, or a 2 s delay; run N is seeded with N. A run is correct when it
exits 0 within {TIME_LIMIT:.0f} s and the registry itself serves the expected manifest
digest; a build's pack must also record it, and its anonymous verify must pass. The
image: {image.layer_count} layers, {image.compressed_bytes / 1e6:.1f} MB. Builds share a
warm cache; their SDK base comes through a second fault proxy at the same rate.

{table}

Goal, every mpkit run correct: {"met" if goal else "**not met**"}.

{"Failures:" if failures else "No failures."}
{chr(10).join(failures)}

Commands:

{timed_text({s.name: s.command for s in series})}

Machine:

{machine_text(versions, load_before)}
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--pushes", type=int, default=30, help="mpkit image push runs")
    parser.add_argument("--builds", type=int, default=10, help="mpkit build runs")
    parser.add_argument("--skopeo", type=int, default=10, help="skopeo copy runs (0: none)")
    parser.add_argument("--rate", type=float, default=0.25, help="share of faulted requests")
    parser.add_argument("--size-mb", type=int, default=10, help="compressed image size")
    add_results_argument(parser)
    args = parser.parse_args(argv)
    if min(args.pushes, args.builds) < 1 or args.skopeo < 0 or not 0 <= args.rate <= 1:
        parser.error("--pushes and --builds must be positive, --rate between 0 and 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line("faults.py", argv)
    paths = require_tools("skopeo", "docker-registry")
    image = bench_image(1, args.size_mb, 5)
    warm_page_cache(image.layout)
    prime_mpkit_bytecode()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="faults-runs.", dir=WORK_DIR))
    shown = {sys.executable: "python", paths["skopeo"]: "skopeo", str(image.layout): "DIR"}
    target = f"127.0.0.1:PROXYPORT/bench/NAME:{TAG}"
    pushes = Series(
        "mpkit image push", display_command(mpkit_push_argv(image.layout, target), shown)
    )
    skopeo = Series(
        "skopeo copy --retry-times 5",
        display_command(skopeo_push_argv(paths["skopeo"])(image.layout, target), shown),
    )
    builds = Series("mpkit build", display_command(mpkit_build_argv(Path("PROJECT")), shown))
    load_before = load_average()
    try:
        with fresh_registry(scratch / "registry-push") as registry:
            pushes.outcomes = push_runs("mpkit", mpkit_push_argv, image, args.pushes, args.rate,
                                        scratch, registry)  # fmt: skip
            skopeo.outcomes = push_runs("skopeo", skopeo_push_argv(paths["skopeo"]), image,
                                        args.skopeo, args.rate, scratch, registry)  # fmt: skip
        with fresh_registry(scratch / "registry-base") as base:
            publish_sdk_base(base)
            builds.outcomes = build_runs(args.builds, args.rate, scratch, base)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    series = [pushes, builds] + ([skopeo] if skopeo.outcomes else [])
    write_results(SECTION, report(series, args, command, image, load_before), args.results)
    return 0


if __name__ == "__main__":
    run_main(main, "faults")
