"""Read a .pak the way an installer would, without trusting it (used by ``mpkit verify``).

Every entry of the pack and of its nested adapter.zip is checked before anything is
read: no path traversal (absolute paths, ``..``, backslashes, drive letters), no
symbolic links or special files, no encrypted or exotic compression, bounded entry
count and declared sizes, and a bounded compression ratio. While inflating, the bytes
actually produced are counted against the same limits (a zip can lie about its sizes).
"""

from __future__ import annotations

import io
import json
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mpkit.errors import PackError
from mpkit.jsonfile import parse_json
from mpkit.pack.conf import API_VERSION_PATTERN, DIGEST_PATTERN, parse_kind_conf
from mpkit.pack.zipfile_det import check_entry_name

GiB = 1 << 30
DEFAULT_MAX_ENTRIES = 20_000
RATIO_FLOOR = 1 << 20  # ratios are only checked beyond 1 MiB: small text compresses well
_CHUNK = 1 << 16
_SPOOL_IN_MEMORY = 32 << 20
_ALLOWED_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_FILE_TYPES = (0, stat.S_IFREG, stat.S_IFDIR)  # 0: no Unix mode recorded (e.g. Windows)
REQUIRED_CONF_KEYS = ("KINDKEY", "API_VERSION", "API_PROTOCOL", "API_PORT", "REPOSITORY", "DIGEST")


@dataclass(frozen=True)
class PackContents:
    manifest: dict[str, Any]  # the pack's manifest.txt
    container_image: dict[str, Any] | None  # manifest["container_image"], if an object
    kind: str  # from adapter.zip's <KIND>.conf file name
    kind_conf: dict[str, str]
    describe_xml: bytes | None  # adapter.zip's <KIND>/conf/describe.xml
    names: list[str]  # entries of the pack, in archive order
    adapter_names: list[str] = field(default_factory=list)  # entries of adapter.zip


@dataclass
class _Limits:
    max_total: int
    max_entry: int
    max_ratio: int
    max_entries: int
    inflated: int = 0  # bytes produced so far, the pack and adapter.zip together


def open_pack(
    path: Path,
    *,
    max_total: int = 2 * GiB,
    max_entry: int = 1 * GiB,
    max_ratio: int = 200,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> PackContents:
    """Check and read the pack at *path*; raise PackError if it is unsafe or malformed."""
    limits = _Limits(max_total, max_entry, max_ratio, max_entries)
    try:
        with (
            open(path, "rb") as handle,
            tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as adapter,
        ):
            return _read_pack(handle, adapter, str(path), limits)
    except OSError as exc:
        raise PackError(
            f"cannot read the pack {path}: {exc.strerror or exc}",
            hint="check the path; packs are written to the project's build/ directory",
        ) from None


def _read_pack(handle: IO[bytes], adapter: IO[bytes], where: str, limits: _Limits) -> PackContents:
    manifest_sink = io.BytesIO()
    with _open_zip(handle, where) as outer:
        names = _checked_names(outer, where, limits)
        sinks = {"manifest.txt": manifest_sink, "adapter.zip": adapter}
        found = _read_all(outer, where, limits, sinks)
    for required in ("manifest.txt", "adapter.zip"):
        if required not in found:
            raise PackError(
                f"{where} is not a management pack: it has no {required}",
                hint="build the pack with mpkit build (or the SDK's mp-build)",
            )
    manifest = _parse_manifest(manifest_sink.getvalue(), where)
    adapter.seek(0)
    inner_where = f"adapter.zip in {where}"
    with _open_zip(adapter, inner_where) as inner:
        adapter_names = _checked_names(inner, inner_where, limits)
        kind = _kind_from_names(adapter_names, inner_where)
        conf_name, describe_name = f"{kind}.conf", f"{kind}/conf/describe.xml"
        inner_sinks = {conf_name: io.BytesIO(), describe_name: io.BytesIO()}
        inner_found = _read_all(inner, inner_where, limits, inner_sinks)
    image = manifest.get("container_image")
    return PackContents(
        manifest=manifest,
        container_image=image if isinstance(image, dict) else None,
        kind=kind,
        kind_conf=parse_kind_conf(inner_sinks[conf_name].getvalue(), name=conf_name),
        describe_xml=inner_sinks[describe_name].getvalue()
        if describe_name in inner_found
        else None,
        names=names,
        adapter_names=adapter_names,
    )


def _open_zip(handle: IO[bytes], where: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise PackError(
            f"{where} is not a readable zip archive ({exc})",
            hint="rebuild the pack; a .pak is a zip file and this one is damaged or not a pack",
        ) from None


def _refuse(where: str, name: str, problem: str) -> PackError:
    return PackError(
        f"refusing {where}: entry {name[:200]!r} {problem}",
        hint="do not install this pack; rebuild it from its project with mpkit build",
    )


def _checked_names(archive: zipfile.ZipFile, where: str, limits: _Limits) -> list[str]:
    """Entry names, after every safety check that declared metadata allows."""
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise _refuse(
            where, infos[limits.max_entries].filename, f"exceeds {limits.max_entries} entries"
        )
    seen: set[str] = set()
    declared = 0
    for info in infos:
        name = info.filename
        try:
            check_entry_name(name.removesuffix("/"))
        except PackError:
            raise _refuse(where, name, "escapes the extraction directory (absolute path, "
                          "'..', backslash or drive letter)") from None  # fmt: skip
        if name in seen:
            raise _refuse(where, name, "appears twice")
        seen.add(name)
        file_type = stat.S_IFMT(info.external_attr >> 16)
        if file_type == stat.S_IFLNK:
            raise _refuse(where, name, "is a symbolic link")
        if file_type not in _FILE_TYPES:
            raise _refuse(where, name, "is a special file (device, pipe or socket)")
        if info.flag_bits & 0x1:
            raise _refuse(where, name, "is encrypted")
        if info.compress_type not in _ALLOWED_METHODS:
            raise _refuse(where, name, f"uses compression method {info.compress_type}")
        _check_size(where, name, info.file_size, info.compress_size, limits, "declares")
        declared += info.file_size
        if declared > limits.max_total:
            raise _refuse(where, name, f"brings the declared total beyond {limits.max_total} bytes")
    return [info.filename for info in infos]


def _check_size(
    where: str, name: str, size: int, compressed: int, limits: _Limits, verb: str
) -> None:
    if size > limits.max_entry:
        raise _refuse(where, name, f"{verb} {size} bytes, beyond the {limits.max_entry} allowed")
    if size > RATIO_FLOOR and size > limits.max_ratio * max(compressed, 1):
        raise _refuse(
            where, name, f"{verb} a compression ratio beyond {limits.max_ratio}:1 (a zip bomb)"
        )


def _read_all(
    archive: zipfile.ZipFile, where: str, limits: _Limits, sinks: Mapping[str, IO[bytes]]
) -> set[str]:
    """Inflate every entry (verifying CRCs and sizes) into its sink, if it has one.

    Returns the names of the entries that were found among *sinks*.
    """
    found: set[str] = set()
    for info in archive.infolist():
        sink = sinks.get(info.filename)
        _inflate(archive, info, where, limits, sink)
        if sink is not None:
            found.add(info.filename)
    return found


def _inflate(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    where: str,
    limits: _Limits,
    sink: IO[bytes] | None,
) -> None:
    produced = 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(_CHUNK):
                produced += len(chunk)
                limits.inflated += len(chunk)
                if produced > info.file_size:
                    raise _refuse(where, info.filename, "inflates beyond its declared size")
                _check_size(
                    where, info.filename, produced, info.compress_size, limits, "inflates to"
                )
                if limits.inflated > limits.max_total:
                    raise _refuse(
                        where, info.filename, f"brings the total beyond {limits.max_total} bytes"
                    )
                if sink is not None:
                    sink.write(chunk)
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        ValueError,
        NotImplementedError,
    ) as exc:
        raise _refuse(where, info.filename, f"is corrupt or lies about its size ({exc})") from None
    if produced != info.file_size:
        raise _refuse(
            where, info.filename, f"inflates to {produced} bytes, not the {info.file_size} declared"
        )


def _parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = parse_json(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackError(
            f"manifest.txt in {where} is not valid JSON ({exc})",
            hint="rebuild the pack from a project whose manifest.txt is valid JSON",
        ) from None
    if not isinstance(manifest, dict):
        raise PackError(
            f"manifest.txt in {where} is not a JSON object",
            hint="rebuild the pack from a project whose manifest.txt is a JSON object",
        )
    return manifest


def _kind_from_names(names: list[str], where: str) -> str:
    confs = [name for name in names if "/" not in name and name.endswith(".conf")]
    if len(confs) != 1:
        found = ", ".join(confs) if confs else "none"
        raise PackError(
            f"{where} must hold exactly one <KIND>.conf at its top level (found: {found})",
            hint="rebuild the pack; the installer reads REGISTRY, REPOSITORY and DIGEST from "
            "that file",
        )
    return confs[0].removesuffix(".conf")


def check_consistency(contents: PackContents) -> list[str]:
    """Problems an installer would hit: <KIND>.conf and container_image disagreeing, etc."""
    problems: list[str] = []
    conf = contents.kind_conf
    conf_name = f"{contents.kind}.conf"
    problems += [f"{conf_name} has no {key}= line" for key in REQUIRED_CONF_KEYS if key not in conf]
    if "KINDKEY" in conf and conf["KINDKEY"] != contents.kind:
        problems.append(f"{conf_name} says KINDKEY={conf['KINDKEY']}, not {contents.kind}")
    if contents.manifest.get("adapter_kinds") != [contents.kind]:
        problems.append(
            f"manifest.txt adapter_kinds is {contents.manifest.get('adapter_kinds')!r}, "
            f"not [{contents.kind!r}] as adapter.zip's {conf_name}"
        )
    if "API_VERSION" in conf and not API_VERSION_PATTERN.match(conf["API_VERSION"]):
        problems.append(f"{conf_name} API_VERSION={conf['API_VERSION']} is not a.b.c")
    if conf.get("API_PROTOCOL", "https") not in ("http", "https"):
        problems.append(f"{conf_name} API_PROTOCOL={conf['API_PROTOCOL']} is not http or https")
    port = conf.get("API_PORT", "443")
    if not port.isdigit() or not 0 < int(port) < 65536:
        problems.append(f"{conf_name} API_PORT={port} is not a port number")
    if "REPOSITORY" in conf and not conf["REPOSITORY"].startswith("/"):
        problems.append(f"{conf_name} REPOSITORY={conf['REPOSITORY']} does not start with '/'")
    if "DIGEST" in conf and not DIGEST_PATTERN.match(conf["DIGEST"]):
        problems.append(f"{conf_name} DIGEST={conf['DIGEST']} is not sha256: and 64 hex digits")
    if contents.describe_xml is None:
        problems.append(f"adapter.zip has no {contents.kind}/conf/describe.xml")
    problems += _image_problems(contents.container_image, conf, conf_name)
    return problems


def _image_problems(
    image: dict[str, Any] | None, conf: dict[str, str], conf_name: str
) -> list[str]:
    if image is None:
        return ["manifest.txt has no container_image object (registry, repository, digest, tag)"]
    problems = [
        f"manifest.txt container_image has no {key!r}"
        for key in ("repository", "digest", "tag")
        if not isinstance(image.get(key), str)
    ]
    digest = image.get("digest")
    if isinstance(digest, str) and not DIGEST_PATTERN.match(digest):
        problems.append(f"manifest.txt container_image digest {digest!r} is malformed")
    pairs = (("registry", "REGISTRY"), ("repository", "REPOSITORY"), ("digest", "DIGEST"))
    for key, conf_key in pairs:
        in_manifest, in_conf = image.get(key), conf.get(conf_key)
        if key != "registry" and (in_manifest is None or in_conf is None):
            continue  # reported above as missing
        if in_manifest != in_conf:
            problems.append(
                f"manifest.txt container_image {key} is {in_manifest!r} but {conf_name} "
                f"{conf_key} is {in_conf!r}; the installer uses {conf_name}"
            )
    return problems
