"""The team's registry as the shared build cache, many packs at once, and promotion.

Run from the repository root::

    python bench/teamcache.py --runs 3

The project is the SDK's ``mp-init`` sample (``/work/sdk/projects/mysql-pack``, copied, as in
``bench/sdkpack.py``) on the faithful SDK-server base, pushed to registries on 127.0.0.1.

* **second machine**: machine A builds the project once (untimed): the image, its dependency
  layer and the adapter's definition go to the registry. Each run is then machine B, with
  an empty cache, state and home, and uv told it is offline (``UV_OFFLINE=1``: no package
  index): ``mpkit build`` to a verified pack. Side by side: the same machine B without the
  registry cache (``--no-registry-cache``, index reachable), what it cost before.
* **many packs**: ten copies of the project (each its own app line, so its own image), one
  base, on a cold machine: ``mpkit build`` over all ten against ``mpkit build`` of one.
* **promotion**: ``mpkit promote PACK REPOSITORY`` to a second registry (only what it lacks,
  then a new pack, verified) against ``skopeo copy`` of the same image (which writes no pack
  and checks nothing); then the same promotion again, when nothing is missing.

Goals: second machine ≤ 2 s with no index request; ten packs ≤ 3x one pack; promotion moves
only the missing blobs and keeps the digest. Results: the ``bench:teamcache`` section of
``bench/RESULTS.md``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    times_table,
    utc_now,
    write_results,
    yes,
)
from sdkpack import KIND, PACK, PODMAN_KEYS, SDK_PROJECT, change_app, copy_project, pack_digest

# isort: split
from tests.fixtures.baseimage import publish_sdk_base
from tests.fixtures.podman import Podman
from tests.fixtures.registry import RegistryServer
from tests.fixtures.sdkserverbase import SdkServerBase, publish_server_base

SECTION = "teamcache"
REPOSITORY = "bench/team"
PACKS = 10
TIMEOUT = 1800.0
GOAL_SECOND_MACHINE = 2.0
GOAL_MANY = 3.0
Times = list[float]


def mpkit_env(
    home: ToolHome, server: SdkServerBase, podman: Podman, **extra: str
) -> dict[str, str]:
    return {
        **home.env,
        **{key: podman.env[key] for key in PODMAN_KEYS},
        "MPKIT_IMAGE_ALIASES": server.alias_env,
        "MPKIT_SDK_CONFIG": str(home.root / "sdk-config.json"),
        **extra,
    }


def build(argv_tail: Sequence[str], env: dict[str, str], home: ToolHome) -> tuple[float, Any]:
    argv = [sys.executable, "-m", "mpkit", "build", *argv_tail, "--json", "--no-ttl"]
    done = run_timed(argv, env=env, preexec=home.preexec, timeout=TIMEOUT)
    return done.seconds, json.loads(done.stdout)


def second_machine(
    scratch: Path, registry: RegistryServer, server: SdkServerBase, podman: Podman, runs: int
) -> tuple[Times, Times, dict[str, Any]]:
    project = copy_project(SDK_PROJECT, scratch / "team-project", f"{registry.host}/{REPOSITORY}")
    change_app(project, "team")
    first_home = isolated_home(scratch / "machine-a")
    log("machine A builds the project (untimed)")
    _, first = build([str(project)], mpkit_env(first_home, server, podman), first_home)
    cached: list[float] = []
    uncached: list[float] = []
    facts: dict[str, Any] = {"recorded": first["registry_cache"]["recorded"]}
    for number in range(runs):
        home = isolated_home(scratch / f"machine-b-{number}")
        seconds, report = build([str(project)], mpkit_env(home, server, podman, UV_OFFLINE="1"),
                                home)  # fmt: skip
        if report["digest"] != first["digest"] or not report["verify"]["ok"]:
            raise BenchError(f"second machine: another image or an unverified pack: {report}")
        facts.update(hits=report["registry_cache"]["hits"], containers_from_cache=report[
            "describe"]["from_cache"], bytes_pushed=report["push"]["bytes_uploaded"])  # fmt: skip
        cached.append(seconds)
        home = isolated_home(scratch / f"machine-c-{number}")
        seconds, report = build([str(project), "--no-registry-cache"],
                                mpkit_env(home, server, podman), home)  # fmt: skip
        if report["digest"] != first["digest"]:
            raise BenchError("second machine without the cache: another image")
        uncached.append(seconds)
        log(f"second machine run {number + 1}: {cached[-1]:.2f} s with the registry cache, "
            f"{uncached[-1]:.2f} s without")  # fmt: skip
    served = served_manifest(registry.host, REPOSITORY, str(first["tag"]))
    if pack_digest(project / "build" / PACK, KIND) != served.digest:
        raise BenchError("second machine: the pack does not name the served digest")
    return cached, uncached, facts


def many_packs(scratch: Path, registry: RegistryServer, server: SdkServerBase, podman: Podman,
               runs: int) -> tuple[list[float], list[float]]:  # fmt: skip
    one: list[float] = []
    many: list[float] = []
    for number in range(runs):
        root = scratch / f"many-{number}"
        projects = []
        for index in range(PACKS):
            repository = f"{registry.host}/bench/many-{number}-{index}"
            project = copy_project(SDK_PROJECT, root / f"pack-{index}", repository)
            change_app(project, f"pack {number}-{index}")
            projects.append(project)
        single = copy_project(SDK_PROJECT, root / "single", f"{registry.host}/bench/one-{number}")
        change_app(single, f"single {number}")
        home = isolated_home(root / "home-one")
        seconds, _ = build([str(single), "--no-registry-cache"],
                           mpkit_env(home, server, podman), home)  # fmt: skip
        one.append(seconds)
        home = isolated_home(root / "home-many")
        seconds, report = build([*(str(p) for p in projects), "--no-registry-cache"],
                                mpkit_env(home, server, podman), home)  # fmt: skip
        if not report["ok"] or len(report["results"]) != PACKS:
            raise BenchError(f"many packs: {report}")
        many.append(seconds)
        log(f"many packs run {number + 1}: one pack {one[-1]:.2f} s, {PACKS} packs "
            f"{many[-1]:.2f} s")  # fmt: skip
    return one, many


def promotion(
    scratch: Path, source: RegistryServer, server: SdkServerBase, podman: Podman, runs: int
) -> tuple[Times, Times, Times, dict[str, Any]]:
    home = isolated_home(scratch / "promote-home")
    env = mpkit_env(home, server, podman)
    project = copy_project(SDK_PROJECT, scratch / "promote-project", f"{source.host}/dev/app")
    change_app(project, "promote")
    _, built = build([str(project)], env, home)
    pack = project / "build" / PACK
    promoted: list[float] = []
    again: list[float] = []
    skopeo: list[float] = []
    facts: dict[str, Any] = {}
    for number in range(runs):
        with fresh_registry(scratch / f"production-{number}") as production:
            target = f"{production.host}/prod/app"
            argv = [sys.executable, "-m", "mpkit", "promote", str(pack), target, "--json"]
            done = run_timed(argv, env=env, preexec=home.preexec, timeout=TIMEOUT)
            report = json.loads(done.stdout)
            if report["digest"] != built["digest"] or not report["verify"]["ok"]:
                raise BenchError(f"promotion: {report}")
            facts = {"blobs_first": report["copy"]["blobs_uploaded"],
                     "bytes_first": report["copy"]["bytes_uploaded"]}  # fmt: skip
            promoted.append(done.seconds)
            done = run_timed(argv, env=env, preexec=home.preexec, timeout=TIMEOUT)
            report = json.loads(done.stdout)
            facts["blobs_again"] = report["copy"]["blobs_uploaded"]
            again.append(done.seconds)
        with fresh_registry(scratch / f"skopeo-{number}") as production:
            copy = ["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
                    "--dest-tls-verify=false", f"docker://{source.host}/dev/app@{built['digest']}",
                    f"docker://{production.host}/prod/app:{built['tag']}"]  # fmt: skip
            skopeo.append(run_timed(copy, env=home.env, preexec=home.preexec).seconds)
        log(f"promotion run {number + 1}: mpkit {promoted[-1]:.2f} s (again {again[-1]:.2f} s), "
            f"skopeo copy {skopeo[-1]:.2f} s")  # fmt: skip
    return promoted, again, skopeo, facts


def report_section(command: str, runs: int, load: str, results: dict[str, Any]) -> str:
    cached, uncached, machine = results["second"]
    one, many = results["many"]
    promoted, again, skopeo, promoted_facts = results["promotion"]
    s_cached, s_uncached = Summary.of(cached), Summary.of(uncached)
    s_one, s_many = Summary.of(one), Summary.of(many)
    ratio = s_many.median / s_one.median
    goals = markdown_table(
        ("goal", "measured", "met"),
        [
            (f"second machine to a verified pack ≤ {GOAL_SECOND_MACHINE:.0f} s, no index "
             "request", f"{s_cached.median:.2f} s (uv offline; {machine['hits']} cache hits, "
             f"definition from the registry: {machine['containers_from_cache']})",
             yes(s_cached.median <= GOAL_SECOND_MACHINE)),
            (f"{PACKS} packs ≤ {GOAL_MANY:.0f}x one pack", f"{ratio:.2f}x",
             yes(ratio <= GOAL_MANY)),
            ("promotion moves only missing blobs, digest unchanged",
             f"{promoted_facts['blobs_first']} blobs the first time, "
             f"{promoted_facts['blobs_again']} again; digest checked",
             yes(promoted_facts["blobs_again"] == 0)),
        ],
    )  # fmt: skip
    times = times_table([
        ("second machine", "mpkit build, registry cache", s_cached),
        ("second machine", "mpkit build --no-registry-cache", s_uncached),
        ("many packs", "mpkit build (one pack, cold)", s_one),
        ("many packs", f"mpkit build ({PACKS} packs, cold)", s_many),
        ("promotion", "mpkit promote (copy, new pack, verify)", Summary.of(promoted)),
        ("promotion", "mpkit promote again (nothing missing)", Summary.of(again)),
        ("promotion", "skopeo copy (image only)", Summary.of(skopeo)),
    ])  # fmt: skip
    return "\n".join([
        f"## Team cache, many packs, promotion ({utc_now()})", "",
        f"Command: `{command}` ({runs} run(s) each; load average before: {load}).", "",
        goals, "", times, "",
        machine_text({"mpkit": ["python", "-m", "mpkit", "--version"],
                      "skopeo": ["skopeo", "--version"]}, load),
    ])  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> tuple[int, Path]:
    parser = bench_parser(__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario")
    add_results_argument(parser)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be positive")
    return args.runs, args.results


def main(argv: Sequence[str] | None = None) -> int:
    runs, results_path = parse_args(argv)
    command = command_line("teamcache.py", argv)
    paths = require_tools("podman", "runc", "docker-registry", "skopeo")
    if not SDK_PROJECT.is_dir():
        raise BenchError(f"the SDK project {SDK_PROJECT} is missing")
    prime_mpkit_bytecode()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="teamcache-runs.", dir=WORK_DIR))
    podman = Podman(paths["podman"], scratch / "podman",
                    runroot=Path(tempfile.mkdtemp(prefix="mbtc", dir="/tmp")))  # fmt: skip
    try:
        with fresh_registry(scratch / "registry-base") as base_registry, \
                fresh_registry(scratch / "registry-team") as team:  # fmt: skip
            base = publish_sdk_base(base_registry)
            server = publish_server_base(base, base_registry)
            load = load_average()
            results = {
                "second": second_machine(scratch, team, server, podman, runs),
                "many": many_packs(scratch, team, server, podman, runs),
                "promotion": promotion(scratch, team, server, podman, runs),
            }
            section = report_section(command, runs, load, results)
    finally:
        podman.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)
    write_results(SECTION, section, results_path)
    return 0


if __name__ == "__main__":
    run_main(main, "team cache")
