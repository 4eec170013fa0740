"""detect_target() remembered per image content, for the next build of the same base.

Detecting the target reads the image's libc, passwd and every dist-info's METADATA; the
answer depends only on the filesystem and the arguments, so it is kept under a name made
of them and of an exact identity of the filesystem (e.g. the digests of its layers).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from mpkit import __version__
from mpkit.cache.root import CacheRoot, shared_records
from mpkit.imagebuild import marshalfile
from mpkit.imagebuild.fsview import FilesystemView
from mpkit.imagebuild.target import (
    ImageUser,
    InstalledDistribution,
    InstallScheme,
    PythonTarget,
    detect_target,
)

TARGET_FORMAT = 1  # bump when detect_target's answer for the same image changes
_KIND = b"mpkit-target"


def detect_target_cached(
    fs: FilesystemView,
    config: Mapping[str, Any],
    *,
    fs_id: str,
    cache: CacheRoot,
    os: str = "linux",
    arch: str = "amd64",
    launcher: Sequence[str] = (),
    user_flag: bool = False,
) -> PythonTarget:
    """``detect_target(fs, config, ...)``; *fs_id* must identify *fs*'s content exactly."""
    identity = json.dumps(
        [TARGET_FORMAT, __version__, [f.name for f in fields(PythonTarget)], fs_id, config,
         os, arch, list(launcher), user_flag],
        sort_keys=True, default=str,
    )  # fmt: skip
    key = hashlib.sha256(identity.encode()).hexdigest()
    path = cache.fsindex / f"target-{key}.bin"
    kept = from_plain(marshalfile.read(path, _KIND, TARGET_FORMAT))
    if kept is not None:
        return kept
    records, name = shared_records(), f"python-target {key}"
    shared = records.fetch_record(name) if records is not None else None
    kept = from_plain(_decode(shared)) if shared is not None else None
    if kept is None:
        kept = detect_target(fs, config, os=os, arch=arch, launcher=launcher, user_flag=user_flag)
        if records is not None:
            records.remember_record(name, {"target": to_plain(kept)})
    marshalfile.write(path, _KIND, TARGET_FORMAT, to_plain(kept), temp_dir=cache.tmp)
    return kept


def _decode(record: Mapping[str, Any]) -> Any:
    """The plain target in a shared record: JSON from the registry (never unmarshalled,
    since another machine wrote it), its arrays turned back into to_plain's tuples."""
    return _tuples(record.get("target"))


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    if isinstance(value, dict):
        return {key: _tuples(item) for key, item in value.items()}
    return value


def to_plain(t: PythonTarget) -> tuple[Any, ...]:
    """*t* as marshal-able tuples and dicts."""
    user, scheme = t.user, t.scheme
    return (
        t.arch, t.interpreter, t.executable, t.version, t.libc, t.libc_version,
        (user.name, user.uid, user.gid, user.home, user.groups),
        (scheme.kind, scheme.site, scheme.scripts, scheme.data),
        t.site_dirs,
        {n: (d.name, d.version, d.site_dir, d.info_dir) for n, d in t.distributions.items()},
        t.full_version, t.implementation, t.venv, t.externally_managed, t.has_pip, dict(t.env),
    )  # fmt: skip


def from_plain(value: Any) -> PythonTarget | None:
    """The target :func:`to_plain` gave, or None for anything else."""
    try:
        (arch, interpreter, executable, version, libc, libc_version, user, scheme, site_dirs,
         distributions, full_version, implementation, venv, externally_managed, has_pip,
         env) = value  # fmt: skip
        return PythonTarget(
            arch=arch,
            interpreter=interpreter,
            executable=executable,
            version=version,
            libc=libc,
            libc_version=libc_version,
            user=ImageUser(*user),
            scheme=InstallScheme(*scheme),
            site_dirs=site_dirs,
            distributions={n: InstalledDistribution(*d) for n, d in distributions.items()},
            full_version=full_version,
            implementation=implementation,
            venv=venv,
            externally_managed=externally_managed,
            has_pip=has_pip,
            env=dict(env),
        )
    except (ValueError, TypeError, AttributeError):
        return None
