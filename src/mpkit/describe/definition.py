"""Ask the built adapter for its definition without a Docker daemon.

The adapter_definition command of commands.cfg is run as ``<command> <input> <output>``
and writes its definition as JSON into the output file, as under the SDK's server.
There are two ways to run it:

- **image**: inside the built image with podman or docker (the most faithful: the
  image's own Python, packages, user and working directory). The image's REST server is
  asked ``GET /apiVersion`` in the same container.
- **host**: with the host's Python on the image's installed packages and app/, copied
  out of the layers, when the host can load them (same Python major.minor; compiled
  code only for this host's platform). The API version is then the SDK's 1.0.0.

``way="auto"`` takes the image way when an engine works, else the host way, and the
result says which and why. An engine that cannot run containers here is reported once
and remembered (:class:`mpkit.engine.EngineHealth`); later builds skip it. With
:class:`DescribeResults`, an image asked before is not asked again, and the API version
of a base asked before spares starting its server.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from mpkit.describe.convert import UnitType, parse_units
from mpkit.describe.hostway import HostUnsuitable, plan_host_run, prepare_host_run, run_on_host
from mpkit.describe.imageway import image_job, kept_name, run_in_image, write_job
from mpkit.describe.results import FINAL_OUTCOMES, DescribeResults, KnownApiVersion
from mpkit.engine import Engine, EngineChoice, EngineHealth, find_engines
from mpkit.engine.health import RECHECK_ENV
from mpkit.errors import AdapterDefinitionError, ContainerEngineError, DescribeError, EngineUnusable
from mpkit.image.types import Image
from mpkit.jsonfile import parse_json
from mpkit.project.displayname import display_name
from mpkit.project.model import Project

Way = Literal["image", "host"]
WAYS = ("auto", "image", "host")
DEFAULT_API_VERSION = "1.0.0"
DEFAULT_TIMEOUT = 300.0
RUNNER = Path(__file__).with_name("runner.py")
QUOTED_LINES = 30
RECHECK_HINT = f"{RECHECK_ENV}=1 or 'mpkit cache prune' tries it again"
HOST_API_VERSION_SOURCE = (
    "default: the host way cannot run the image's REST server, whose GET /apiVersion answers "
    "1.0.0 in every SDK base"
)
_logger = logging.getLogger("mpkit.describe")


@dataclass(frozen=True)
class DefinitionResult:
    """What the adapter said about itself, and how it was asked."""

    definition: dict[str, Any]  # AdapterDefinition.to_json()
    api_version: str  # for <KIND>.conf; "1.0.0" when the adapter could not be asked
    way: Way
    reason: str  # why this way was used
    api_version_source: str  # where api_version came from
    engine: str | None = None  # "podman"/"docker" for the image way
    units: tuple[UnitType, ...] = ()  # the adapter library's unit table, if it has one
    stderr: str = ""  # what the command wrote to stderr (for the build log)
    notes: list[str] = field(default_factory=list)
    from_cache: bool = False  # found by an earlier build of the same image
    api_version_final: bool = False  # the base's server's own answer: holds for the base

    def to_dict(self) -> dict[str, Any]:
        return {
            "way": self.way,
            "reason": self.reason,
            "engine": self.engine,
            "adapter_kind": self.definition.get("adapter_key"),
            "api_version": self.api_version,
            "api_version_source": self.api_version_source,
            "unit_types": len(self.units),
            "notes": list(self.notes),
            "from_cache": self.from_cache,
        }

    def to_record(self) -> dict[str, Any]:
        """What DescribeResults keeps (from_record reads it back)."""
        return {
            "definition": self.definition, "api_version": self.api_version, "way": self.way,
            "reason": self.reason, "api_version_source": self.api_version_source,
            "engine": self.engine, "units": [asdict(unit) for unit in self.units],
            "stderr": self.stderr, "notes": list(self.notes),
        }  # fmt: skip

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> DefinitionResult | None:
        """A stored result, or None when the record is not one (it is then asked again)."""
        try:
            way, definition = record["way"], record["definition"]
            if way not in ("image", "host") or "adapter_key" not in _mapping(definition):
                return None
            return cls(
                definition=definition, api_version=str(record["api_version"]),
                way=way, reason=f"the same image as an earlier build, when {record['reason']}",
                api_version_source=str(record["api_version_source"]),
                engine=record.get("engine"), units=parse_units(record.get("units") or []),
                stderr=str(record.get("stderr") or ""), notes=list(record.get("notes") or []),
                from_cache=True,
            )  # fmt: skip
        except (KeyError, TypeError, DescribeError):
            return None


def adapter_definition(
    project: Project,
    image: Image,
    *,
    engine: EngineChoice = EngineChoice.AUTO,
    way: str = "auto",
    pushed_reference: str | None = None,
    insecure_registries: Collection[str] = (),
    cache_dir: Path | None = None,
    results: DescribeResults | None = None,
    health: EngineHealth | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    before_push: bool = False,
    log: Callable[[str], None] = lambda _m: None,
) -> DefinitionResult:
    """Run *project*'s adapter_definition command from the built *image*.

    *engine* chooses the engines to try (none, and engines that cannot run containers,
    rule out the image way). *way* forces "image" or "host". With
    *pushed_reference* (where the build pushed *image*) the engine pulls instead of
    loading an archive. *cache_dir* is the build cache (layer listings are kept there).
    With *results*, an image asked before is not asked again, and a base whose API
    version is known does not start its server. *health* remembers engines that cannot
    run containers here (default: mpkit's state directory). With *before_push* (the image
    is not in the registry yet), ImageWayDeferred is raised instead of running the image
    way: an engine gets the image fastest by pulling the pushed one.
    """
    if way not in WAYS:
        raise DescribeError(
            f"unknown way {way!r} to run the adapter", hint="use auto, image or host"
        )
    if results is not None:
        found = DefinitionResult.from_record(results.definition(image) or {})
        if found is not None and way in ("auto", found.way):
            return found
    health = health or EngineHealth.default()
    if before_push and _image_way_next(engine, way, health):
        raise ImageWayDeferred(
            "the image way runs the image the engine pulls after the push", way=way
        )
    known = results.api_version(image) if results is not None else None
    log(f"asking the adapter of {display_name(project)} for its definition")
    asker = _Asker(project, image, pushed_reference, insecure_registries, cache_dir, timeout,
                   known, health, log)  # fmt: skip
    result = asker.ask(engine, way)
    if results is not None:
        results.store_definition(image, result.to_record())
        if known is None and result.api_version_final:
            results.store_api_version(
                image, KnownApiVersion(result.api_version, result.api_version_source)
            )
    return result


class ImageWayDeferred(Exception):
    """The definition is to come from the image way, once the image has been pushed."""

    def __init__(self, reason: str, *, way: str) -> None:
        super().__init__(reason)
        self.way = way


def _image_way_next(choice: EngineChoice, way: str, health: EngineHealth) -> bool:
    """Whether the image way is the first to try: an engine that may run containers."""
    if way not in ("auto", "image"):
        return False
    return any(health.verdict(e) is None for e in find_engines(choice, to_run=True))


@dataclass
class _Asker:
    """One attempt to get the definition: the ways in order, and what each said."""

    project: Project
    image: Image
    pushed_reference: str | None
    insecure_registries: Collection[str]
    cache_dir: Path | None
    timeout: float
    known: KnownApiVersion | None  # the base's API version, when asked before
    health: EngineHealth
    log: Callable[[str], None]
    refusals: list[str] = field(default_factory=list)  # why earlier ways were not taken
    broken: list[str] = field(default_factory=list)  # engines found broken just now
    skipped: list[str] = field(default_factory=list)  # engines known to be broken (quiet)

    def ask(self, choice: EngineChoice, way: str) -> DefinitionResult:
        if way in ("auto", "image"):
            engines = find_engines(choice, to_run=True)
            if not engines:
                self.refusals.append(choice.unavailable(to_run=True))
            for candidate in engines:
                result = self._try_engine(candidate)
                if result is not None:
                    self._report_broken(f"using {candidate.name}")
                    return result
        if way in ("auto", "host"):
            try:
                result = self._host_way()
            except HostUnsuitable as exc:
                self.refusals.append(f"the host way is not possible: {exc}")
            else:
                self._report_broken("using the host's Python")
                return result
        raise AdapterDefinitionError(
            "cannot run the adapter's adapter_definition command to generate describe.xml: "
            + "; ".join([*self.skipped, *self.refusals]),
            hint="install podman (or run a docker daemon) so mpkit can run the image, or use "
            "a host Python of the image's version; or add conf/describe.xml to the project",
        )

    def _try_engine(self, engine: Engine) -> DefinitionResult | None:
        verdict = self.health.verdict(engine)
        if verdict is not None:  # said when it was found out; now only in the build log
            self.skipped.append(f"{verdict.describe()}; {RECHECK_HINT}")
            _logger.info("skipping %s: %s", engine.name, self.skipped[-1])
            return None
        try:
            return self._image_way(engine)
        except EngineUnusable as exc:
            found = self.health.mark_broken(engine, exc.output or exc.message)
            self.broken.append(f"{engine.name} cannot run containers here ({found.reason})")
            self.refusals.append(self.broken[-1])
            _logger.info("%s: %s", engine.name, exc.message)
        except ContainerEngineError as exc:
            self.refusals.append(f"{engine.name} failed: {exc.message}")
            self.log(self.refusals[-1])
        return None

    def _report_broken(self, using: str) -> None:
        """One line for the engines found broken now (the next builds skip them)."""
        if self.broken:
            self.log(f"{'; '.join(self.broken)}; {using}")

    def _image_way(self, engine: Engine) -> DefinitionResult:
        name = engine.name
        with _scratch() as io_dir:
            write_job(io_dir, image_job(self.image, self.timeout, ask_server=not self.known))
            self.log(f"running the adapter's definition command in the image with {name}")
            run_in_image(
                engine, self.image, io_dir, kept_as=kept_name(self.project),
                pushed_reference=self.pushed_reference,
                insecure_registries=self.insecure_registries, timeout=self.timeout,
                log=self.log, debug=_logger.info,
            )  # fmt: skip
            result = _read_result(io_dir)
            if result is None:
                raise ContainerEngineError(
                    f"the definition runner in {name}'s container wrote no result", engine=name
                )
            outcome = _definition(io_dir, result, "the image")
        reason = f"{name} ran the built image (the most faithful way)"
        if self.refusals:
            reason += f"; before that, {'; '.join(self.refusals)}"
        api_version, source, final = self._api_version(result, name)
        return DefinitionResult(
            definition=outcome, api_version=api_version, way="image", reason=reason,
            api_version_source=source, engine=name, units=_units(result, self.log),
            stderr=str(result.get("stderr") or ""), api_version_final=final,
        )  # fmt: skip

    def _host_way(self) -> DefinitionResult:
        plan = plan_host_run(self.image, self.cache_dir)
        with _scratch() as io_dir:
            job, env = prepare_host_run(plan, self.image, io_dir, self.timeout, self.cache_dir)
            write_job(io_dir, job)
            self.log(f"running the adapter's definition command with this host's Python "
                     f"{plan.target.version} on the image's packages")  # fmt: skip
            run_on_host(io_dir, env, self.timeout)
            result = _read_result(io_dir)
            if result is None:
                raise HostUnsuitable("the definition runner wrote no result")
            outcome = _definition(io_dir, result, "the host")
        reason = (
            f"{'; '.join(self.refusals)}; " if self.refusals else ""
        ) + f"this host's Python {plan.target.version} can load the image's packages and app"
        version, source = DEFAULT_API_VERSION, HOST_API_VERSION_SOURCE
        if self.known is not None:
            version, source = self.known.version, _remembered(self.known)
        return DefinitionResult(
            definition=outcome, api_version=version, way="host", reason=reason,
            api_version_source=source, units=_units(result, self.log),
            stderr=str(result.get("stderr") or ""),
        )  # fmt: skip

    def _api_version(self, result: Mapping[str, Any], engine: str) -> tuple[str, str, bool]:
        """(version, where it came from, whether it is the base server's final answer)."""
        if self.known is not None:
            return self.known.version, _remembered(self.known), False
        version = result.get("api_version")
        final = result.get("api_version_outcome") in FINAL_OUTCOMES
        if isinstance(version, str) and version:
            return version, f"GET /apiVersion of the image's server (run by {engine})", final
        problem = result.get("api_version_error") or "the image has no ENTRYPOINT or CMD"
        return DEFAULT_API_VERSION, f"default ({problem})", final


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _remembered(known: KnownApiVersion) -> str:
    return f"{known.source}, remembered for this base image"


class _scratch:
    """A scratch directory any container user may write, with the runner in it."""

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="mpkit-definition-"))
        self.path.chmod(0o777)
        shutil.copyfile(RUNNER, self.path / "runner.py")
        (self.path / "input.json").write_text("{}")
        output = self.path / "output.json"
        output.touch()
        output.chmod(0o666)  # a rootless engine's container user is not the file's owner
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _read_result(io_dir: Path) -> dict[str, Any] | None:
    """What the definition runner wrote, or None when it wrote nothing readable."""
    try:
        data = json.loads((io_dir / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _definition(io_dir: Path, result: Mapping[str, Any], where: str) -> dict[str, Any]:
    command = " ".join(result.get("command") or ["adapter_definition"])
    what = f"the adapter_definition command `{command}` (commands.cfg) in {where}"
    stderr = str(result.get("stderr") or "")
    quoted = _quote(result)
    if result.get("start_error"):
        raise AdapterDefinitionError(
            f"cannot start {what}: {result['start_error']}{quoted}",
            hint="check the adapter_definition line of commands.cfg: it names the program and "
            "script as the image sees them, e.g. /usr/local/bin/python app/adapter.py "
            "adapter_definition",
            stderr=stderr,
        )
    if result.get("timed_out"):
        raise AdapterDefinitionError(f"{what} did not finish in time{quoted}", stderr=stderr,
                                     hint="the definition must not wait for the network or "
                                     "for input; it only describes the adapter")  # fmt: skip
    code = result.get("exit_code")
    if code != 0:
        raise AdapterDefinitionError(
            f"{what} failed with exit status {code}{quoted}",
            hint="fix the error above in the adapter's definition code (run the command "
            "locally, e.g. 'python app/adapter.py adapter_definition in.json out.json')",
            stderr=stderr,
        )
    raw = (io_dir / "output.json").read_bytes()
    if not raw.strip():
        raise AdapterDefinitionError(
            f"{what} succeeded but wrote no definition to its output file{quoted}",
            hint="end the definition with definition.send_results() (or write the JSON to the "
            "last argument), or ship conf/describe.xml in the project",
            stderr=stderr,
        )
    try:
        data = parse_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        head = raw[:200].decode("utf-8", "replace")
        raise AdapterDefinitionError(
            f"{what} wrote invalid JSON ({exc}); it begins with {head!r}{quoted}",
            hint="write the definition with AdapterDefinition.send_results(), which writes "
            "valid JSON; print nothing else into the output file",
            stderr=stderr,
        ) from None
    if not isinstance(data, dict) or "adapter_key" not in data:
        raise AdapterDefinitionError(
            f"{what} wrote JSON that is not an adapter definition (no adapter_key){quoted}",
            hint="write the JSON of AdapterDefinition.to_json() "
            "(vmware-aria-operations-integration-sdk-lib)",
            stderr=stderr,
        )
    return data


def _quote(result: Mapping[str, Any]) -> str:
    """The command's stderr (else stdout) and changed log files, indented."""
    parts = []
    for key, label in (("stderr", "stderr"), ("stdout", "stdout")):
        text = str(result.get(key) or "").strip()
        if text:
            parts.append(f"\n{label}:\n" + _indent(text))
            break
    logs = result.get("logs") or {}
    if isinstance(logs, Mapping):
        for path, text in logs.items():
            if str(text).strip():
                parts.append(f"\nlog {path}:\n" + _indent(str(text)))
    return "".join(parts)


def _indent(text: str) -> str:
    lines = text.strip().splitlines()[-QUOTED_LINES:]
    return "\n".join(f"  {line}" for line in lines)


def _units(result: Mapping[str, Any], log: Callable[[str], None]) -> tuple[UnitType, ...]:
    if result.get("units") is None:
        if result.get("units_error"):
            log(f"no unit table from the adapter's library ({result['units_error']}); "
                "describe.xml gets no UnitDefinitions")  # fmt: skip
        return ()
    try:
        return parse_units(result["units"])
    except AdapterDefinitionError as exc:
        log(f"ignoring the adapter library's unit table: {exc.message}")
        return ()
