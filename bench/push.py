"""Push benchmark: ``mpkit image push`` against ``skopeo copy`` on a ~250 MB image.

Run from the repository root::

    python bench/push.py --runs 5

It builds (once, cached in ``bench/.work/`` by seed) an OCI layout holding one image of
five gzip layers, then, alternating the tools, pushes it N times per tool:

* **cold**: into an empty repository of a freshly started registry, with a fresh
  HOME, credentials, state and caches for the tool (neither tool gains from earlier runs);
* **warm**: the same push again to the same repository, where every blob exists.

Each command is timed wall-clock from spawn to exit. Every push is checked: the digest
the registry serves (``skopeo inspect --raw``, hashed) must equal the layout's manifest
digest for both tools, and mpkit's ``--json`` stats must show what it uploaded/skipped.
The medians, min/max and the mpkit/skopeo ratio go to the ``bench:push`` section of
``bench/RESULTS.md``. Goals: cold ratio <= 1.0 and a warm mpkit push under 0.5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import random
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    CONTAINERS_SYSTEM_CACHE,
    WORK_DIR,
    BenchError,
    CommandRun,
    Summary,
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
    ratio,
    require_tools,
    run_main,
    run_timed,
    timed_text,
    times_table,
    utc_now,
    write_results,
    yes,
)

# isort: split
from tests.image.builders import (
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    init_layout,
    layer_tar,
    sha256,
    tag_descriptor,
    write_blob,
)

SECTION = "push"
REPOSITORY = "bench/adapter"
TAG = "bench"
IMAGE_FORMAT_VERSION = 1  # bump when the generated content changes
COLD_RATIO_GOAL = 1.0
WARM_SECONDS_GOAL = 0.5
GZIP_LEVEL = 1
RANDOM_SHARE = 0.8  # of each layer's compressed size; the rest is gzip-friendly text
TEXT_GZIP_RATIO = 3.3  # what level-1 gzip does to the generated text (measured)
FILES_PER_KIND = 4
_VOCABULARY = (
    "import def class return self value config adapter collect metric resource "
    "object property relationship event stats host cluster vcenter datastore "
    "network port request response json http client session token error retry "
    "timeout logger debug info warning none true false list dict str int float "
    "for in if else elif while with as try except finally yield lambda async await"
)
WORDS = tuple(_VOCABULARY.split())


@dataclass(frozen=True)
class BenchImage:
    """The generated image: where its layout is and what a correct push must produce."""

    layout: Path
    digest: str
    blob_count: int  # layers + config
    layer_count: int
    compressed_bytes: int  # layers + config, as pushed


@dataclass(frozen=True)
class Tool:
    """A pushing command line, built for one source layout and one target."""

    name: str
    argv: Callable[[Path, str], list[str]]


# --- the image -------------------------------------------------------------------------


def bench_image(seed: int, size_mb: int, layers: int) -> BenchImage:
    """The cached layout for these parameters, generated on first use."""
    key = f"push-image-v{IMAGE_FORMAT_VERSION}-seed{seed}-{size_mb}mb-{layers}layers"
    root = WORK_DIR / key
    facts_path = root / "bench-image.json"
    if facts_path.exists():
        facts = json.loads(facts_path.read_text())
        return BenchImage(layout=root, **facts)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    log(f"generating {size_mb} MB image ({layers} layers, seed {seed}) in {root} ...")
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=WORK_DIR))
    try:
        image = _write_image(tmp, seed, size_mb, layers)
        facts = {
            "digest": image.digest,
            "blob_count": image.blob_count,
            "layer_count": image.layer_count,
            "compressed_bytes": image.compressed_bytes,
        }
        (tmp / "bench-image.json").write_text(json.dumps(facts, indent=2))
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BenchImage(layout=root, **facts)


def _write_image(root: Path, seed: int, size_mb: int, layers: int) -> BenchImage:
    init_layout(root)
    layer_target = size_mb * 1_000_000 // layers
    tars = [_layer_tar(seed, index, layer_target) for index in range(layers)]
    blobs = [gzip.compress(t, compresslevel=GZIP_LEVEL, mtime=0) for t in tars]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in tars]},
        "history": [
            {"created": "1970-01-01T00:00:00Z", "created_by": f"bench layer {i}"}
            for i in range(layers)
        ],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **write_blob(root, config_bytes)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, **write_blob(root, b)} for b in blobs],
    }
    manifest_bytes = json.dumps(manifest, indent=2).encode()
    descriptor = {"mediaType": OCI_MANIFEST, **write_blob(root, manifest_bytes)}
    tag_descriptor(root, descriptor, TAG)
    return BenchImage(
        layout=root,
        digest=sha256(manifest_bytes),
        blob_count=layers + 1,
        layer_count=layers,
        compressed_bytes=len(config_bytes) + sum(len(b) for b in blobs),
    )


def _layer_tar(seed: int, index: int, compressed_target: int) -> bytes:
    """Incompressible "binaries" interleaved with compressible "source" files."""
    rng = random.Random(f"{seed}:{index}")
    random_size = int(compressed_target * RANDOM_SHARE) // FILES_PER_KIND
    text_size = int(compressed_target * (1 - RANDOM_SHARE) * TEXT_GZIP_RATIO) // FILES_PER_KIND
    files: dict[str, bytes] = {}
    for part in range(FILES_PER_KIND):
        files[f"opt/bench/layer{index}/part{part}.so"] = rng.randbytes(random_size)
        files[f"opt/bench/layer{index}/part{part}.py"] = _text(rng, text_size)
    return layer_tar(files)


def _text(rng: random.Random, size: int) -> bytes:
    words = rng.choices(WORDS, k=size // 5)
    lines = (" ".join(words[i : i + 12]) for i in range(0, len(words), 12))
    data = "\n".join(lines).encode()
    return (data * (size // max(1, len(data)) + 1))[:size]


def prepared_image(args: argparse.Namespace) -> BenchImage:
    """The image of the ``--seed``/``--size-mb``/``--layers`` arguments, read once."""
    image = bench_image(args.seed, args.size_mb, args.layers)
    log(f"image {image.digest}: {image.compressed_bytes / 1e6:.1f} MB in {image.blob_count} blobs")
    warm_page_cache(image.layout)
    return image


def warm_page_cache(layout: Path) -> None:
    """Read every blob once so that no timed run pays for the first disk read."""
    for path in sorted((layout / "blobs").rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                while handle.read(1 << 22):
                    pass


# --- tools and checks ------------------------------------------------------------------


def mpkit_tool(name: str, command: Sequence[str]) -> Tool:
    return Tool(name, lambda layout, target: [*command, *_mpkit_args(layout, target)])


def _mpkit_args(layout: Path, target: str) -> list[str]:
    return ["image", "push", f"oci:{layout}:{TAG}", target, "--json"]


def skopeo_tool(binary: str) -> Tool:
    def argv(layout: Path, target: str) -> list[str]:
        return [
            binary,
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            f"oci:{layout}:{TAG}",
            f"docker://{target}",
        ]

    return Tool("skopeo", argv)


def registry_digest(skopeo: str, target: str, home: ToolHome) -> str:
    """The digest of the manifest bytes the registry serves for *target*."""
    run = run_timed(
        [skopeo, "inspect", "--raw", "--tls-verify=false", "--no-creds", f"docker://{target}"],
        env=home.env,
        preexec=home.preexec,
    )
    return "sha256:" + hashlib.sha256(run.stdout).hexdigest()


def check_push(tool: Tool, run: CommandRun, image: BenchImage, scenario: str) -> None:
    """What the tool itself reports must match a cold upload or a warm skip of every blob."""
    if not tool.name.startswith("mpkit"):
        return  # skopeo reports no counts without a TTY; the served digest is checked
    report = json.loads(run.stdout)
    stats = report["stats"]
    if report["digest"] != image.digest:
        raise BenchError(f"{tool.name} reported {report['digest']}, expected {image.digest}")
    want = {"blobs_uploaded": 0, "blobs_skipped": image.blob_count}
    if scenario == "cold":
        want = {"blobs_uploaded": image.blob_count, "blobs_skipped": 0}
    got = {k: stats[k] for k in want}
    if got != want:
        raise BenchError(f"{tool.name} {scenario} push: expected {want}, got {got}")


# --- the benchmark ---------------------------------------------------------------------


@dataclass
class Timings:
    samples: dict[tuple[str, str], list[float]]

    def add(self, scenario: str, tool: str, seconds: float) -> None:
        self.samples.setdefault((scenario, tool), []).append(seconds)

    def summary(self, scenario: str, tool: str = "skopeo") -> Summary:
        return Summary.of(self.samples[(scenario, tool)])


def run_rounds(tools: Sequence[Tool], image: BenchImage, runs: int, skopeo: str) -> Timings:
    """N rounds; each: every tool cold into its own fresh registry, then every tool warm."""
    timings = Timings({})
    scratch = Path(tempfile.mkdtemp(prefix="push-runs.", dir=WORK_DIR))
    try:
        verifier = isolated_home(scratch / "verifier")
        for round_number in range(1, runs + 1):
            round_dir = scratch / f"round-{round_number}"
            _one_round(tools, image, round_dir, timings, skopeo, verifier)
            log(
                f"round {round_number}/{runs}: "
                + ", ".join(
                    f"{scenario} {tool.name} {timings.samples[(scenario, tool.name)][-1]:.3f}s"
                    for scenario in ("cold", "warm")
                    for tool in tools
                )
            )
            shutil.rmtree(round_dir, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return timings


def _one_round(
    tools: Sequence[Tool],
    image: BenchImage,
    round_dir: Path,
    timings: Timings,
    skopeo: str,
    verifier: ToolHome,
) -> None:
    with contextlib.ExitStack() as stack:
        targets: dict[str, str] = {}
        homes: dict[str, ToolHome] = {}
        for tool in tools:
            slug = re.sub(r"[^a-z0-9]+", "-", tool.name.lower()).strip("-")
            registry = stack.enter_context(fresh_registry(round_dir / f"registry-{slug}"))
            targets[tool.name] = f"{registry.host}/{REPOSITORY}:{TAG}"
            homes[tool.name] = isolated_home(round_dir / f"home-{slug}")
        for scenario in ("cold", "warm"):
            for tool in tools:  # alternate: A B A B ...
                home = homes[tool.name]
                run = run_timed(
                    tool.argv(image.layout, targets[tool.name]),
                    env=home.env,
                    preexec=home.preexec,
                )
                check_push(tool, run, image, scenario)
                served = registry_digest(skopeo, targets[tool.name], verifier)
                if served != image.digest:
                    raise BenchError(
                        f"after the {scenario} {tool.name} push the registry serves {served}, "
                        f"expected {image.digest}"
                    )
                timings.add(scenario, tool.name, run.seconds)


# --- the report ------------------------------------------------------------------------


def report(
    timings: Timings,
    tools: Sequence[Tool],
    image: BenchImage,
    runs: int,
    command: str,
    commands: dict[str, str],
    load_before: str,
) -> str:
    summary = timings.summary
    table = times_table(
        (scenario, tool.name, summary(scenario, tool.name))
        for scenario in ("cold", "warm")
        for tool in tools
    )
    ratio_rows = [
        [scenario, tool.name, f"{ratio(summary(scenario, tool.name), summary(scenario)):.2f}"]
        for scenario in ("cold", "warm")
        for tool in tools
        if tool.name != "skopeo"
    ]
    cold_ratio = ratio(timings.summary("cold", "mpkit"), timings.summary("cold", "skopeo"))
    warm_mpkit = timings.summary("warm", "mpkit").median
    goals = markdown_table(
        ["goal", "measured", "met"],
        [
            [
                f"cold push: median mpkit/skopeo ≤ {COLD_RATIO_GOAL:.1f}",
                f"{cold_ratio:.2f}",
                yes(cold_ratio <= COLD_RATIO_GOAL),
            ],
            [
                f"warm push: median mpkit < {WARM_SECONDS_GOAL} s",
                f"{warm_mpkit:.3f} s",
                yes(warm_mpkit < WARM_SECONDS_GOAL),
            ],
        ],
    )
    versions = {"skopeo": ["skopeo", "--version"], "registry": ["docker-registry", "--version"]}
    machine = machine_text(versions, load_before, uncached_tool="skopeo")
    order = ", ".join(f"{scenario} {tool.name}" for scenario in ("cold", "warm") for tool in tools)
    timed = timed_text(commands)
    return f"""## Push: `mpkit image push` vs `skopeo copy`

Produced by `{command}` on {utc_now()}, {runs} run(s) per tool and scenario.

{goals}

{table}

Ratio of medians to skopeo (below 1.0: faster than skopeo):

{markdown_table(["scenario", "tool", "ratio"], ratio_rows)}

Image: one linux/amd64 OCI image in an OCI layout (read once before timing, so every
run reads it from the page cache): {image.layer_count} gzip (level {GZIP_LEVEL}) layers \
of random bytes and text plus a config, {image.compressed_bytes / 1e6:.1f} MB in \
{image.blob_count} blobs, manifest `{image.digest}`.

Registry: CNCF distribution (`docker-registry serve`), plain HTTP on 127.0.0.1,
filesystem storage on the same disk. Each round starts one empty registry per tool;
the cold push goes into it, then the warm push repeats it (all blobs present, so only
HEAD requests and the manifest PUT). Runs alternate: {order}.
Every push is verified: the manifest the registry serves hashes to the digest above,
and mpkit's `--json` stats show every blob uploaded (cold) or skipped (warm).

Isolation: every tool run gets a fresh HOME, `DOCKER_CONFIG`, `REGISTRY_AUTH_FILE`
(empty), `XDG_*`, `MPKIT_STATE_DIR` and `MPKIT_CACHE_DIR`; as root, skopeo's
blob-info cache (`{CONTAINERS_SYSTEM_CACHE}`, which HOME does not move) is replaced \
by an empty directory in a private mount namespace. Both tools are spawned the same way.
mpkit runs with its bytecode compiled beforehand (`PYTHONPYCACHEPREFIX` under
`bench/.work/`), as after a pip install; this machine sets `PYTHONDONTWRITEBYTECODE=1`,
which would otherwise recompile mpkit's modules on every start.

Timed commands (wall clock, spawn to exit, `time.perf_counter`):

{timed}

Machine:

{machine}
"""


# --- main ------------------------------------------------------------------------------


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """``--seed``, ``--size-mb`` and ``--layers``: which generated image to push."""
    parser.add_argument("--seed", type=int, default=1, help="image content seed (cached)")
    parser.add_argument("--size-mb", type=int, default=250, help="compressed image size")
    parser.add_argument("--layers", type=int, default=5, help="number of layers")


def check_image_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.runs < 1 or args.layers < 1 or args.size_mb < 1:
        parser.error("--runs, --layers and --size-mb must be positive")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs per tool and scenario")
    add_image_arguments(parser)
    parser.add_argument(
        "--entry-point",
        action="store_true",
        help="also time the installed 'mpkit' console script next to this Python",
    )
    add_results_argument(parser)
    args = parser.parse_args(argv)
    check_image_arguments(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line("push.py", argv)
    paths = require_tools("skopeo", "docker-registry")
    tools = [mpkit_tool("mpkit", [sys.executable, "-m", "mpkit"]), skopeo_tool(paths["skopeo"])]
    if args.entry_point:
        script = Path(sys.executable).with_name("mpkit")
        if not script.exists():
            raise BenchError(f"no mpkit console script next to {sys.executable}")
        tools.insert(1, mpkit_tool("mpkit (entry point)", [str(script)]))
    image = prepared_image(args)
    prime_mpkit_bytecode()
    load_before = load_average()
    timings = run_rounds(tools, image, args.runs, paths["skopeo"])
    sample_target = "127.0.0.1:PORT/" + f"{REPOSITORY}:{TAG}"
    shown = {sys.executable: "python", paths["skopeo"]: "skopeo"}
    commands = {
        tool.name: display_command(tool.argv(Path("DIR"), sample_target), shown) for tool in tools
    }
    section = report(timings, tools, image, args.runs, command, commands, load_before)
    write_results(SECTION, section, args.results)
    return 0


if __name__ == "__main__":
    run_main(main, "push")
