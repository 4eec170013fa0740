"""Shared helpers for the benchmarks in ``bench/``.

Timing, medians, results sections in ``bench/RESULTS.md``, a fresh real registry per
run and isolated tool homes, so every benchmark measures the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import datetime as dt
import hashlib
import json
import os
import platform
import pstats
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "bench"
WORK_DIR = BENCH_DIR / ".work"  # git-ignored
# Bytecode for Python tools, kept out of the source tree (see ``python_bytecode_env``).
PYCACHE_DIR = WORK_DIR / "pycache"
RESULTS_PATH = BENCH_DIR / "RESULTS.md"
RESULTS_TITLE = (
    "# Benchmark results\n\n"
    "Each section is written by the benchmark it names (see README.md); do not edit by hand.\n"
)

if str(REPO_ROOT) not in sys.path:  # the registry fixture lives in tests/fixtures
    sys.path.insert(0, str(REPO_ROOT))

from tests.fixtures.registry import RegistryServer  # noqa: E402

# containers/image keeps root's blob-info cache here whatever HOME says.
CONTAINERS_SYSTEM_CACHE = Path("/var/lib/containers/cache")
LOOPBACK_NO_PROXY = "127.0.0.1,localhost"
STOP_GRACE_SECONDS = 15.0  # for a child asked to stop when the benchmark is interrupted
# Variables that would point a tool at the user's own credentials, state or registry.
_LEAKY_PREFIXES = ("MPKIT_", "REGISTRY_", "DOCKER_", "CONTAINERS_", "XDG_")


class BenchError(RuntimeError):
    """A benchmark step failed; the message says which command and what it printed."""


# --- statistics ------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Median, min and max of a series of wall-clock samples (seconds)."""

    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        if not samples:
            raise ValueError("no samples to summarise")
        return cls(tuple(samples))

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples))

    @property
    def minimum(self) -> float:
        return min(self.samples)

    @property
    def maximum(self) -> float:
        return max(self.samples)


def ratio(numerator: Summary, denominator: Summary) -> float:
    """Ratio of medians (e.g. mpkit/skopeo: below 1.0 means mpkit is faster)."""
    return numerator.median / denominator.median


# --- running commands ------------------------------------------------------------------


@dataclass(frozen=True)
class CommandRun:
    """One finished command: wall-clock seconds from spawn to exit, and its output."""

    argv: tuple[str, ...]
    seconds: float
    stdout: bytes
    stderr: bytes


def run_timed(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    preexec: Callable[[], None] | None = None,
    timeout: float = 600.0,
) -> CommandRun:
    """Run *argv* to completion and time it with ``perf_counter`` (spawn to exit).

    Every command is spawned the same way (fork, then *preexec* or nothing, then
    exec), so tools compared with each other pay the same start-up cost. If the wait is
    interrupted (timeout, SIGTERM/SIGINT turned into an exception), the child is asked to
    stop first (SIGTERM, so that e.g. podman removes its build container), then killed.
    """
    start = time.perf_counter()
    process = subprocess.Popen(
        list(argv),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=preexec or _no_preexec,  # the caller is single-threaded
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(process)
        raise BenchError(f"{shlex.join(argv)} took longer than {timeout:.0f} s") from None
    except BaseException:
        _stop(process)
        raise
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise BenchError(
            f"{shlex.join(argv)} exited with status {process.returncode}.\n"
            f"stdout: {_tail(stdout)}\nstderr: {_tail(stderr)}"
        )
    return CommandRun(tuple(argv), seconds, stdout, stderr)


def _stop(process: subprocess.Popen[bytes], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM, then SIGKILL after *grace* seconds; always reaps the child."""
    if process.poll() is None:
        process.terminate()
        try:
            process.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def _no_preexec() -> None:
    return None


def _tail(data: bytes, limit: int = 3000) -> str:
    return data.decode(errors="replace")[-limit:].strip() or "(empty)"


# --- isolation -------------------------------------------------------------------------


@dataclass
class ToolHome:
    """A throwaway HOME with empty credentials, state and caches for one tool run.

    ``env`` is the environment to run the tool with. ``private_mounts`` are
    (source, target) bind mounts applied in a private mount namespace by ``preexec``
    (used for root's system-wide containers cache, which no variable relocates).
    """

    root: Path
    env: dict[str, str]
    private_mounts: list[tuple[Path, Path]] = field(default_factory=list)

    @property
    def preexec(self) -> Callable[[], None] | None:
        return private_mounts_hook(self.private_mounts) if self.private_mounts else None


def isolated_home(root: Path, *, base_env: Mapping[str, str] | None = None) -> ToolHome:
    """Create *root* with a fresh home, docker config, auth file, state and cache dirs.

    mpkit: ``MPKIT_STATE_DIR``, ``MPKIT_CACHE_DIR``, ``DOCKER_CONFIG``. containers tools
    (skopeo): ``HOME``, ``REGISTRY_AUTH_FILE`` and ``XDG_*``; as root, their blob-info
    cache lives in ``/var/lib/containers/cache`` instead, so that directory is replaced
    by an empty one for the child when mount namespaces are available.
    """
    source = os.environ if base_env is None else base_env
    env = {k: v for k, v in source.items() if not k.startswith(_LEAKY_PREFIXES)}
    home = root / "home"
    dirs = {
        "HOME": home,
        "DOCKER_CONFIG": home / ".docker",
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_CACHE_HOME": home / ".cache",
        "XDG_DATA_HOME": home / ".local/share",
        "XDG_STATE_HOME": home / ".local/state",
        "MPKIT_STATE_DIR": root / "mpkit-state",
        "MPKIT_CACHE_DIR": root / "mpkit-cache",
    }
    for name, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    auth_file = root / "auth.json"
    auth_file.write_text(json.dumps({"auths": {}}))
    env["REGISTRY_AUTH_FILE"] = str(auth_file)
    no_proxy = ",".join(v for v in (env.get("NO_PROXY"), LOOPBACK_NO_PROXY) if v)
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    env.update(python_bytecode_env(env))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    tool_home = ToolHome(root=root, env=env)
    if os.geteuid() == 0 and private_mounts_supported():
        cache = root / "containers-cache"
        cache.mkdir(mode=0o700, exist_ok=True)
        tool_home.private_mounts.append((cache, CONTAINERS_SYSTEM_CACHE))
    return tool_home


def python_bytecode_env(env: Mapping[str, str]) -> dict[str, str]:
    """Variables that let Python tools use cached bytecode, as a pip install does.

    Without them, a ``PYTHONDONTWRITEBYTECODE=1`` environment recompiles every module of
    an editable install on each start. The cache lives in ``bench/.work/pycache``.
    """
    return {"PYTHONPYCACHEPREFIX": env.get("PYTHONPYCACHEPREFIX") or str(PYCACHE_DIR)}


def prime_bytecode(*directories: Path) -> None:
    """Compile *directories* into the bytecode cache before anything is timed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(python_bytecode_env(env))
    argv = [sys.executable, "-m", "compileall", "-q", *map(str, directories)]
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)


_CLONE_NEWNS = 0x00020000
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_libc: ctypes.CDLL | None = None
_mounts_supported: bool | None = None


def _load_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def private_mounts_hook(mounts: Sequence[tuple[Path, Path]]) -> Callable[[], None]:
    """A ``preexec_fn``: enter a private mount namespace and bind each source on its target.

    The mounts vanish with the child; nothing outside it sees them.
    """
    libc = _load_libc()  # loaded before fork: the child only makes syscalls
    pairs = [(os.fsencode(src), os.fsencode(dst)) for src, dst in mounts]
    for _, target in mounts:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)

    def check(result: int) -> None:
        if result != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    def hook() -> None:
        check(libc.unshare(_CLONE_NEWNS))
        check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None))
        for src, dst in pairs:
            check(libc.mount(src, dst, None, _MS_BIND, None))

    return hook


def private_mounts_supported() -> bool:
    """Whether this process may create mount namespaces (probed once with ``true``)."""
    global _mounts_supported
    if _mounts_supported is None:
        if not sys.platform.startswith("linux") or shutil.which("true") is None:
            _mounts_supported = False
        else:
            hook = private_mounts_hook([])
            try:
                subprocess.run(["true"], preexec_fn=hook, check=True)
                _mounts_supported = True
            except (subprocess.SubprocessError, OSError):
                _mounts_supported = False
    return _mounts_supported


# --- registry --------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_registry(workdir: Path) -> Iterator[RegistryServer]:
    """An empty CNCF distribution registry on 127.0.0.1 (plain HTTP, no auth).

    Stopped and its storage deleted on exit.
    """
    if workdir.exists():
        shutil.rmtree(workdir)
    registry = RegistryServer.start(workdir, mode="open")
    try:
        yield registry
    finally:
        registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def registry_blob_sizes(registry: RegistryServer) -> dict[str, int]:
    """Digest → size of every blob the registry stores (layers, configs and manifests).

    Read from the filesystem driver's storage, so it counts what the registry kept, not
    what a client said it sent. Comparing two snapshots gives a push's new blobs.
    """
    root = registry.storage_root / "docker/registry/v2/blobs"
    sizes: dict[str, int] = {}
    for data in root.glob("*/*/*/data"):
        blob_dir = data.parent
        algorithm = blob_dir.parent.parent.name
        sizes[f"{algorithm}:{blob_dir.name}"] = data.stat().st_size
    return sizes


MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


@dataclass(frozen=True)
class ServedManifest:
    """The manifest bytes a registry serves for a reference, and what they describe."""

    raw: bytes
    digest: str  # sha256 of raw
    config: Mapping[str, object]
    layers: tuple[Mapping[str, object], ...]

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return tuple(int(str(layer["size"])) for layer in self.layers)


def served_manifest(host: str, repository: str, reference: str) -> ServedManifest:
    """GET the image manifest of ``host/repository:reference`` over plain HTTP (loopback).

    distribution-spec: GET /v2/<name>/manifests/<reference> with an Accept header.
    """
    url = f"http://{host}/v2/{repository}/manifests/{reference}"
    request = urllib.request.Request(url, headers={"Accept": MANIFEST_ACCEPT})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    try:
        with opener.open(request, timeout=30) as response:
            raw = response.read()
    except OSError as error:
        raise BenchError(f"GET {url} failed: {error}") from error
    document = json.loads(raw)
    return ServedManifest(
        raw=raw,
        digest="sha256:" + hashlib.sha256(raw).hexdigest(),
        config=document["config"],
        layers=tuple(document["layers"]),
    )


# --- results ---------------------------------------------------------------------------


def section_markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def update_section(name: str, body: str, path: Path = RESULTS_PATH) -> None:
    """Replace the ``bench:NAME`` section of *path* (creating file or section), atomically.

    Everything outside the markers is kept as it is.
    """
    start, end = section_markers(name)
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else RESULTS_TITLE
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def seconds_text(value: float) -> str:
    return f"{value:.3f}"


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def first_line(argv: Sequence[str]) -> str:
    """The first output line of a version command, or why there is none."""
    try:
        completed = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError) as error:
        return f"unavailable ({error})"
    lines = (completed.stdout or completed.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def mpkit_version() -> str:
    """The installed mpkit version and the checkout's commit (read-only git query)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("mpkit")
    except PackageNotFoundError:
        text = "not installed"
    commit = first_line(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    if not re.fullmatch(r"[0-9a-f]{4,40}", commit):
        return text
    dirty = first_line(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "src"])
    clean = dirty == "unknown" or dirty.startswith("unavailable")  # no output, or no git
    edited = "" if clean else ", with uncommitted changes in src/"
    return f"{text} (checkout {commit}{edited})"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine_facts(tools: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """(name, value) pairs describing this machine, Python, mpkit and each tool's version."""
    facts = [
        ("CPU", f"{cpu_model()}, nproc {usable_cpus()}"),
        ("OS", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("mpkit", mpkit_version()),
    ]
    facts += [(name, first_line(argv)) for name, argv in tools.items()]
    return facts


def machine_text(
    tools: Mapping[str, Sequence[str]], load_before: str, uncached_tool: str | None = None
) -> str:
    """The report's machine list: facts, the load average around the runs and, when
    *uncached_tool*'s root blob-info cache could not be isolated, a note saying so."""
    facts = machine_facts(tools)
    facts.append(("load average (1/5/15 min) before → after", f"{load_before} → {load_average()}"))
    if uncached_tool and CONTAINERS_SYSTEM_CACHE.exists() and not private_mounts_supported():
        facts.append(("note", f"{uncached_tool}'s root blob-info cache could not be isolated"))
    return "\n".join(f"- {name}: {value}" for name, value in facts)


def timed_text(commands: Mapping[str, str]) -> str:
    """The report's list of timed commands."""
    return "\n".join(f"- {name}: `{argv}`" for name, argv in commands.items())


def display_command(argv: Sequence[str], replacements: Mapping[str, str]) -> str:
    """*argv* as a shell line, with machine-specific paths replaced by their short names."""
    text = shlex.join(argv)
    for path, name in replacements.items():
        text = text.replace(path, name)
    return text


TIMES_HEADERS = ("scenario", "tool", "median s", "min s", "max s", "all runs (s, in order)")


def summary_cells(summary: Summary) -> list[str]:
    """Median, min and max (ms precision), then every sample in order."""
    return [
        seconds_text(summary.median),
        seconds_text(summary.minimum),
        seconds_text(summary.maximum),
        " ".join(f"{x:.2f}" for x in summary.samples),
    ]


def times_table(rows: Iterable[tuple[str, str, Summary]]) -> str:
    """A (scenario, tool, summary) table under :data:`TIMES_HEADERS`."""
    return markdown_table(
        TIMES_HEADERS, [[scenario, tool, *summary_cells(s)] for scenario, tool, s in rows]
    )


def yes(value: bool) -> str:
    return "yes" if value else "**no**"


# --- profiling mpkit -------------------------------------------------------------------


def mpkit_package() -> Path:
    """The directory of the mpkit package that the benchmarks run."""
    import mpkit

    return Path(mpkit.__file__).parent


def prime_mpkit_bytecode() -> None:
    prime_bytecode(mpkit_package())


def profiled_argv(argv: Sequence[str], output: Path) -> list[str]:
    """*argv* (``python -m mpkit ...``) run under cProfile, its stats written to *output*."""
    module_at = list(argv).index("-m")
    return [*argv[:module_at], "-m", "cProfile", "-o", str(output), *argv[module_at:]]


def profile_rows(
    path: Path, *, enclosing: Collection[str], skip: Collection[str], limit: int
) -> tuple[float, list[list[str]]]:
    """Total seconds and the costliest mpkit functions (cumulative), plus all imports.

    Functions of the *enclosing* files (relative to the package) and those named in *skip*
    enclose (most of) the whole run: they are left out, as are module bodies.
    """
    stats: Any = pstats.Stats(str(path))
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats
    total = float(stats.total_tt)
    imports = max(
        (
            cumulative
            for (file, _, name), (*_, cumulative, _) in entries.items()
            if name == "_find_and_load" and "importlib" in file
        ),
        default=0.0,
    )
    package = str(mpkit_package()) + "/"
    ranked = sorted(
        (
            (cumulative, file.removeprefix(package), line, name)
            for (file, line, name), (*_, cumulative, _) in entries.items()
            if file.startswith(package)
            and name != "<module>"
            and name not in skip
            and file.removeprefix(package) not in enclosing
        ),
        reverse=True,
    )[:limit]
    rows = [["module imports (all)", seconds_text(imports), f"{imports / total:.0%}"]]
    rows += [
        [f"`{file}:{line}` {name}", seconds_text(cumulative), f"{cumulative / total:.0%}"]
        for cumulative, file, line, name in ranked
    ]
    return total, rows


def profile_section(
    path: Path | None, what: str, *, enclosing: Collection[str], skip: Collection[str], limit: int
) -> str:
    """The report's paragraph and table on where *what* (one more mpkit run) spends its
    time, from the stats in *path*; empty without a profile."""
    if path is None or not path.exists():
        return ""
    total, rows = profile_rows(path, enclosing=enclosing, skip=skip, limit=limit)
    return (
        f"\nWhere {what} spends its time (cProfile, {total:.2f} s under the profiler; "
        "cumulative, nested entries overlap):\n\n"
        + markdown_table(["function", "cumulative s", "share"], rows)
        + "\n"
    )


# --- main ------------------------------------------------------------------------------


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by the first line of the script's docstring."""
    return argparse.ArgumentParser(description=(doc or "").split("\n", 1)[0])


def add_results_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results", type=Path, default=RESULTS_PATH, help="markdown file to update"
    )


def add_profile_argument(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--no-profile", dest="profile", action="store_false", help=help)


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """How the benchmark was started, for the report (``python bench/SCRIPT ARGS``)."""
    return shlex.join(["python", f"bench/{script}", *(sys.argv[1:] if argv is None else argv)])


def write_results(section: str, body: str, path: Path) -> None:
    """Write the ``bench:SECTION`` section of *path*, show it and say where it went."""
    update_section(section, body, path)
    log(body)
    log(f"wrote the bench:{section} section of {path}")


def _stop_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: registries stopped, scratch dirs removed


def run_main(main: Callable[[], int], what: str) -> NoReturn:
    """Run a benchmark's *main* as a script: SIGTERM/SIGINT unwind it (so registries stop
    and scratch directories and podman storage go), and a BenchError ends it with 1."""
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, _stop_on_signal)
    try:
        sys.exit(main())
    except BenchError as error:
        log(f"{what} benchmark failed: {error}")
        sys.exit(1)


def log(message: str) -> None:
    """Progress for the person running the benchmark (stderr)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def require_tools(*names: str) -> dict[str, str]:
    """Absolute paths of *names*; BenchError naming the first one missing."""
    found: dict[str, str] = {}
    for name in names:
        path = shutil.which(name)
        if path is None:
            raise BenchError(f"{name} is not installed; the benchmark needs it on PATH")
        found[name] = path
    return found
