"""Copy chosen directories of an image's filesystem out of its layers (for the host way),
and decide whether the host's Python can load the Python packages found there.

What a container would see under those directories comes from the merged view of the
layers (mpkit.imagebuild.basefs, which applies the whiteouts); each visible file is then
taken from the layer the view names, streaming every layer at most once. Nothing outside
the chosen directories is written, and no entry can escape the destination.
"""

from __future__ import annotations

import hashlib
import os
import platform
import posixpath
import re
import shutil
import sys
import sysconfig
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mpkit.cache.root import CacheRoot
from mpkit.errors import ImageFormatError
from mpkit.image.types import Blob
from mpkit.imagebuild.basefs import LayeredFilesystem, Placed
from mpkit.imagebuild.fsview import normpath

SNAPSHOT_MIN_LAYER = 1 << 20  # keep the extraction up to the last layer this big (compressed)
_MANYLINUX_ALIASES = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(.+)$")
_EXTENSION = re.compile(r"\.(cpython-\d+[a-z]*-[^.]+|abi3|pypy[^.]*)\.so$|\.so$")


def extract_paths(
    layers: Sequence[Blob],
    prefixes: Iterable[str],
    destination: Path,
    *,
    cache: CacheRoot | None = None,
) -> None:
    """Write every file under *prefixes* (absolute image paths) into *destination*.

    With *cache*, the result up to the last large layer (the base and the installed
    packages, typically) is kept in its ``hostfs`` area, keyed by those layers and the
    prefixes, so the next build of the same base starts from it.
    """
    wanted = sorted({normpath(p) for p in prefixes})
    destination.mkdir(parents=True, exist_ok=True)
    destination = destination.resolve()
    done = -1  # the destination holds the view of layers[: done + 1]
    if cache is not None:
        chain = _chain_keys(layers, wanted)
        for index in reversed(range(len(layers))):
            snapshot = cache.hostfs / chain[index]
            if snapshot.is_dir():
                shutil.copytree(snapshot, destination, symlinks=True, dirs_exist_ok=True)
                cache.mark_used(snapshot)
                done = index
                break
        large = [i for i, layer in enumerate(layers) if layer.size >= SNAPSHOT_MIN_LAYER]
        if large and large[-1] > done:
            done = _materialize(layers[: large[-1] + 1], wanted, destination, done, cache)
            _snapshot(destination, cache, chain[done])
    if done < len(layers) - 1:
        _materialize(layers, wanted, destination, done, cache)


def _chain_keys(layers: Sequence[Blob], wanted: Sequence[str]) -> list[str]:
    keys, current = [], hashlib.sha256("\0".join(wanted).encode()).hexdigest()
    for layer in layers:
        current = hashlib.sha256(f"{current}{layer.digest}".encode()).hexdigest()
        keys.append(current[:32])
    return keys


def _snapshot(source: Path, cache: CacheRoot, key: str) -> None:
    if (cache.hostfs / key).is_dir():
        return
    with cache.temp_dir("hostfs") as temp:
        try:
            shutil.copytree(source, temp.path, symlinks=True, dirs_exist_ok=True)
            temp.publish(cache.hostfs / key)
        except OSError:
            pass  # another build made it first, or no room: the next build tries again


def _materialize(
    layers: Sequence[Blob], wanted: Sequence[str], root: Path, done: int, cache: CacheRoot | None
) -> int:
    """Turn *root*, which holds the view of ``layers[: done + 1]``, into the view of all of
    *layers* (under *wanted*); returns the number of the last layer."""
    view = LayeredFilesystem(layers, cache=cache)
    target = {placed.path: placed for prefix in wanted for placed in view.walk(prefix)}
    for prefix in wanted:
        _drop_outdated(root, prefix, target, done)
    for number in range(done + 1, len(layers)):
        held = {path for path, placed in target.items() if placed.layer == number}
        if held:
            _extract_layer(layers[number], held, root)
    return len(layers) - 1


def _drop_outdated(root: Path, prefix: str, target: dict[str, Placed], done: int) -> None:
    """Remove what the view no longer has under *prefix*, or has from a layer above *done*."""
    local = _local(root, prefix)
    if local is not None:
        _drop(local, prefix, target, done)


def _drop(local: Path, image_path: str, target: dict[str, Placed], done: int) -> None:
    if not (local.exists() or local.is_symlink()):
        return
    placed = target.get(image_path)
    is_dir = local.is_dir() and not local.is_symlink()
    if placed is None or (placed.info.kind == "dir") != is_dir:
        _remove(local)
    elif is_dir:  # a directory listed again by a later layer keeps what lower ones put in it
        for child in sorted(local.iterdir()):
            _drop(child, posixpath.join(image_path, child.name), target, done)
    elif placed.layer > done:
        _remove(local)


def _extract_layer(layer: Blob, held: set[str], root: Path) -> None:
    """Write the members of *layer* whose paths are in *held*, in the tar's order."""
    try:
        with layer.open() as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                path = normpath(member.name)
                if path in held:
                    _write(tar, member, path, root)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ImageFormatError(
            f"layer {layer.digest} could not be read: {exc}",
            hint="rebuild the image; the layer cache may be damaged ('mpkit cache prune')",
        ) from exc


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, path: str, root: Path) -> None:
    target = _local(root, path)
    if target is None:
        return
    if member.isdir():
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            _remove(target)
        target.mkdir(parents=True, exist_ok=True)
        return
    _remove(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if member.isfile():
        source = tar.extractfile(member)
        if source is not None:
            with open(target, "wb") as out:
                shutil.copyfileobj(source, out)
            target.chmod(0o755 if member.mode & 0o111 else 0o644)
    elif member.issym():
        link = member.linkname
        if link.startswith("/"):  # absolute: keep it inside the extracted tree
            link = os.path.relpath(root / normpath(link).lstrip("/"), target.parent)
        target.symlink_to(link)
    elif member.islnk():
        source_path = _local(root, normpath(member.linkname))
        if source_path is not None and source_path.is_file():
            shutil.copyfile(source_path, target)


def _local(root: Path, image_path: str) -> Path | None:
    """*image_path* inside *root*, or None when a symbolic link on the way leads out."""
    path = root / image_path.lstrip("/")  # normpath already removed every ".."
    if path == root:
        return path
    parent = path.parent.resolve()  # links on the way are followed, and must stay inside
    return parent / path.name if parent == root or parent.is_relative_to(root) else None


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


# -- can the host load these packages? ------------------------------------------------


@dataclass(frozen=True)
class HostPython:
    """What the host interpreter can load."""

    version: str  # "3.11"
    system: str  # platform.system(): "Linux", "Darwin", "Windows"
    machine: str  # "x86_64", "aarch64"
    ext_suffix: str  # ".cpython-311-x86_64-linux-gnu.so"
    glibc: tuple[int, int] | None

    @classmethod
    def current(cls) -> HostPython:
        libc, libc_version = platform.libc_ver()
        glibc = None
        if libc == "glibc":
            parts = libc_version.split(".")
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                glibc = (int(parts[0]), int(parts[1]))
        machine = platform.machine().lower()
        machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
        return cls(
            version=f"{sys.version_info.major}.{sys.version_info.minor}",
            system=platform.system(),
            machine=machine,
            ext_suffix=str(sysconfig.get_config_var("EXT_SUFFIX") or ".so"),
            glibc=glibc,
        )


def compiled_problem(site_dir: Path, host: HostPython, image_arch: str) -> str | None:
    """Why the host cannot load the compiled code under *site_dir*, or None if it can.

    Pure-Python packages always load. Compiled ones load when the host is Linux on the
    image's architecture, every extension module is built for the host's ABI (or the
    stable ABI), and every binary wheel's platform tag fits the host's C library.
    """
    extensions = [p for p in site_dir.rglob("*.so") if p.is_file()]
    if not extensions:
        return None
    first = extensions[0].relative_to(site_dir)
    if host.system != "Linux" or host.machine != image_arch:
        return (
            f"the image's packages include compiled code ({first}) for linux/{image_arch}, "
            f"and this host is {host.system.lower()}/{host.machine}"
        )
    for path in extensions:
        match = _EXTENSION.search(path.name)
        tag = match.group(1) if match else None
        if tag and tag != "abi3" and not host.ext_suffix.endswith(f".{tag}.so"):
            return (
                f"{path.relative_to(site_dir)} is built for another Python ABI than this "
                f"host's ({host.ext_suffix})"
            )
    for wheel in site_dir.glob("*.dist-info/WHEEL"):
        problem = _wheel_problem(wheel, host)
        if problem:
            return problem
    return None


def _wheel_problem(wheel: Path, host: HostPython) -> str | None:
    try:
        lines = wheel.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    tags = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Tag:")]
    platforms = {t.rsplit("-", 1)[-1] for t in tags if t.count("-") == 2}
    if not platforms or any(_platform_fits(p, host) for p in platforms):
        return None
    name = wheel.parent.name.removesuffix(".dist-info")
    return f"{name} is a wheel for {', '.join(sorted(platforms))}, which this host cannot load"


def _platform_fits(tag: str, host: HostPython) -> bool:
    if tag == "any":
        return True
    if tag == f"linux_{host.machine}":
        return True
    for alias, needed in _MANYLINUX_ALIASES.items():
        if tag == f"{alias}_{host.machine}":
            return host.glibc is not None and host.glibc >= needed
    match = _MANYLINUX.match(tag)
    if match and match.group(3) == host.machine:
        needed = (int(match.group(1)), int(match.group(2)))
        return host.glibc is not None and host.glibc >= needed
    return False
