"""describe.xml from the adapter's own definition.

Most SDK projects ship no conf/describe.xml: the build asks the adapter for its
definition (:func:`adapter_definition`, in the image or on the host) and turns it into
describe.xml plus resources.properties (:func:`generate_describe`).
:func:`describe_for_build` does both for ``mpkit build``, or checks the project's own
describe.xml when it has one. :class:`DescribeResults` keeps what the adapter said, so an
unchanged image is not asked again.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from mpkit.describe.convert import UnitType
from mpkit.describe.definition import (
    DEFAULT_API_VERSION,
    DefinitionResult,
    ImageWayDeferred,
    adapter_definition,
)
from mpkit.describe.generate import (
    check_adapter_kind,
    fix_manifest_adapter_kind,
    generate_describe,
    offer_manifest_fix,
)
from mpkit.describe.results import DescribeResults
from mpkit.describe.schema import schema_for, validate_describe
from mpkit.engine import EngineChoice
from mpkit.errors import AdapterKindMismatchError, DescribeError
from mpkit.image.types import Image
from mpkit.interaction import Prompter
from mpkit.project.model import Project

__all__ = [
    "BuildDescribe",
    "DefinitionResult",
    "DescribeResults",
    "UnitType",
    "adapter_definition",
    "check_adapter_kind",
    "describe_before_push",
    "describe_for_build",
    "fix_manifest_adapter_kind",
    "generate_describe",
    "offer_manifest_fix",
    "own_describe",
]


@dataclass(frozen=True)
class BuildDescribe:
    """What the pack writer needs: ``build_pack(describe_xml=…, resources_properties=…,
    api_version=…)``. The describe bytes are None when the project ships its own."""

    project: Project  # reloaded if manifest.txt was fixed on the terminal
    describe_xml: bytes | None
    resources_properties: bytes | None
    api_version: str
    definition: DefinitionResult | None  # None for a project with conf/describe.xml


def describe_for_build(
    project: Project,
    image: Image,
    *,
    prompter: Prompter | None = None,
    engine: EngineChoice = EngineChoice.AUTO,
    way: str = "auto",
    pushed_reference: str | None = None,
    insecure_registries: Collection[str] = (),
    cache_dir: Path | None = None,
    results: DescribeResults | None = None,
    before_push: bool = False,
    log: Callable[[str], None] = lambda _m: None,
) -> BuildDescribe:
    """describe.xml for the pack: generated from the adapter, or the project's own.

    An adapter-kind mismatch with manifest.txt is offered for fixing on a terminal
    (*prompter*), and otherwise raised with the fix named. With *results*, what the
    adapter said before about the same image is reused (see :func:`adapter_definition`,
    also for *before_push*).
    """
    own = own_describe(project, prompter)
    if own is not None:
        return own
    result = adapter_definition(
        project, image, engine=engine, way=way, pushed_reference=pushed_reference,
        insecure_registries=insecure_registries, cache_dir=cache_dir, results=results,
        before_push=before_push, log=log,
    )  # fmt: skip
    log(f"adapter definition: {result.way} way ({result.reason}); API version "
        f"{result.api_version} ({result.api_version_source})")  # fmt: skip
    try:
        describe_xml, properties = generate_describe(
            result.definition, project, units=result.units, log=log
        )
    except AdapterKindMismatchError as error:
        if prompter is None:
            raise
        project = offer_manifest_fix(project, error, prompter)
        describe_xml, properties = generate_describe(
            result.definition, project, units=result.units, log=log
        )
    return BuildDescribe(project, describe_xml, properties, result.api_version, result)


def describe_before_push(
    project: Project,
    image: Image,
    *,
    prompter: Prompter | None = None,
    engine: EngineChoice = EngineChoice.AUTO,
    cache_dir: Path | None = None,
    results: DescribeResults | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> BuildDescribe | None:
    """describe.xml for the pack, checked, when the adapter's definition can be had before
    *image* is pushed: the project's own, the definition remembered for this very image,
    or the host way when no engine will run the image. None when the image way is next:
    it runs the pushed image (call :func:`describe_for_build` after the push)."""
    try:
        return describe_for_build(
            project, image, prompter=prompter, engine=engine, cache_dir=cache_dir,
            results=results, before_push=True, log=log,
        )  # fmt: skip
    except ImageWayDeferred:
        return None


def own_describe(project: Project, prompter: Prompter | None = None) -> BuildDescribe | None:
    """The project's own conf/describe.xml, checked (schema, adapter kind), or None when it
    ships none. A build calls this before the long image build, to fail fast."""
    path = project.root / "conf" / "describe.xml"
    if not path.is_file():
        return None
    project = check_static_describe(project, path, prompter)
    return BuildDescribe(project, None, None, DEFAULT_API_VERSION, None)


def check_static_describe(project: Project, path: Path, prompter: Prompter | None) -> Project:
    """The project's own describe.xml: valid against the schema, and the manifest's kind."""
    data = path.read_bytes()
    try:
        key = ET.fromstring(data).get("key") or ""  # noqa: S314 (the project's own file)
    except ET.ParseError as exc:
        raise DescribeError(f"{path} is not well-formed XML: {exc}") from None
    validate_describe(data, schema_for(project.root), what=str(path))
    try:
        check_adapter_kind({"adapter_key": key}, project)
    except AdapterKindMismatchError as error:
        if prompter is None:
            raise
        return offer_manifest_fix(project, error, prompter)
    return project
