"""Validate describe.xml against describeSchema.xsd (the project's, else mpkit's own).

The SDK's schema is XSD 1.1 (it has ``xs:assert``), so validation uses xmlschema's
XSD 1.1 validator. Nothing is fetched from the network: schemas may include only files
beside them, and entity expansion is refused.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import io
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from mpkit.cache.root import CacheRoot, shared_records
from mpkit.errors import DescribeError

if TYPE_CHECKING:  # xmlschema costs ~0.1 s to import: only when a describe is validated
    import xmlschema

SCHEMA_NAME = "describeSchema.xsd"
BUNDLED_SCHEMA = Path(__file__).with_name(SCHEMA_NAME)
MAX_REPORTED = 5
VALID = {"valid": True}
VALIDATION_VERSION = "xsd11-1"  # bump if what counts as valid changes


def project_schema(project_root: Path) -> Path | None:
    """``conf/describeSchema.xsd`` of the project, if it has one."""
    path = project_root / "conf" / SCHEMA_NAME
    return path if path.is_file() else None


def schema_for(project_root: Path) -> Path:
    """The schema describe.xml must satisfy: the project's, else the one mpkit ships."""
    return project_schema(project_root) or BUNDLED_SCHEMA


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, size: int) -> xmlschema.XMLSchema11:
    import xmlschema

    del mtime_ns, size  # part of the cache key only
    return xmlschema.XMLSchema11(path, allow="sandbox", defuse="always")


def load_schema(path: Path) -> xmlschema.XMLSchema11:
    import xmlschema

    try:
        stat = path.stat()
        return _load(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    except OSError as exc:
        raise DescribeError(f"cannot read the describe schema {path}: {exc}") from None
    except (xmlschema.XMLSchemaException, SyntaxError, ValueError) as exc:
        raise DescribeError(
            f"the describe schema {path} is not a usable XML schema: {_first_line(exc)}",
            hint="restore conf/describeSchema.xsd from the SDK (or from a project made by "
            "'mpkit init'), or remove it to validate with mpkit's own schema",
        ) from None


def describe_problems(describe_xml: bytes, schema_path: Path) -> list[str]:
    """Every way *describe_xml* breaks the schema (empty when it is valid)."""
    import xmlschema

    schema = load_schema(schema_path)
    resource = xmlschema.XMLResource(io.BytesIO(describe_xml), allow="none", defuse="always")
    problems = []
    for error in schema.iter_errors(resource):
        reason = getattr(error, "reason", None) or _first_line(error)
        where = getattr(error, "path", None) or "describe.xml"
        problems.append(f"{where}: {reason}")
    return problems


def validate_describe(
    describe_xml: bytes, schema_path: Path, *, what: str = "the generated describe.xml"
) -> None:
    """Raise DescribeError naming the first problems when *describe_xml* is not valid.

    A pair already found valid is remembered (by content) in the cache: loading the
    XSD 1.1 schema costs a good part of a second, on every unchanged rebuild otherwise.
    """
    cache = CacheRoot.default()
    marker = _valid_marker(cache, describe_xml, schema_path)
    if marker is not None and marker.exists():
        cache.mark_used(marker)
        return
    records = shared_records()
    name = f"describe-valid {marker.name}" if marker is not None else None
    if records is not None and name is not None and records.fetch_record(name) == VALID:
        _mark_valid(cache, marker)
        return
    try:
        problems = describe_problems(describe_xml, schema_path)
    except ET.ParseError as exc:
        raise DescribeError(f"{what} is not well-formed XML: {exc}") from None
    if not problems:
        _mark_valid(cache, marker)
        if records is not None and name is not None:
            records.remember_record(name, VALID)
        return
    shown = "; ".join(problems[:MAX_REPORTED])
    more = f" (and {len(problems) - MAX_REPORTED} more)" if len(problems) > MAX_REPORTED else ""
    raise DescribeError(
        f"{what} does not satisfy {schema_path}: {shown}{more}",
        hint="fix the adapter definition (or the conf/*.xml fragment) named above; if the "
        "schema itself is outdated, replace conf/describeSchema.xsd with the SDK's",
    )


def _valid_marker(cache: CacheRoot, describe_xml: bytes, schema_path: Path) -> Path | None:
    try:
        schema = schema_path.read_bytes()
    except OSError:
        return None
    key = hashlib.sha256()
    validator = f"{VALIDATION_VERSION} xmlschema {importlib.metadata.version('xmlschema')}"
    for part in (validator.encode(), schema, describe_xml):
        key.update(hashlib.sha256(part).digest())
    return cache.describe_valid / key.hexdigest()


def _mark_valid(cache: CacheRoot, marker: Path | None) -> None:
    if marker is not None:
        with contextlib.suppress(OSError):
            cache.write_bytes(marker, b"valid\n")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
