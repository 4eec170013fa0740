"""The staging tree uv installed (``--target``) → layer entries placed, owned and
recorded as pip inside the image would, with whiteouts for the base distributions
pip's upgrade uninstalls."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import posixpath
from collections.abc import Iterable, Mapping
from pathlib import Path

from mpkit.image.layerwriter import LayerEntry
from mpkit.imagebuild.fsview import FilesystemView, normpath, resolve, stat
from mpkit.imagebuild.pydeps.requirements import READ_LIMIT
from mpkit.imagebuild.pydeps.scripts import pip_script, rewrite_shebang, script_specs
from mpkit.imagebuild.pydeps.uvrun import STUB_INSTALLER
from mpkit.imagebuild.target import PythonTarget, canonical_name

_UV_BOOKKEEPING = {"uv_cache.json", "uv_build.json"}
_DATA_ROOTS = {"share", "etc", "include"}  # where uv --target puts a wheel's .data/


def map_staging(
    staging: Path,
    *,
    target: PythonTarget,
    base: FilesystemView,
    requested: frozenset[str] | None = None,
) -> tuple[list[LayerEntry], dict[str, str], dict[str, str]]:
    """Entries for what uv put in *staging* (a ``--target`` tree), placed as pip would;
    *requested* names the top-level requirements (pip writes REQUESTED only for those).
    Returns the entries, the installed and the uninstalled distributions."""
    return _Mapper(staging, target, base, requested).run()


class _Mapper:
    def __init__(
        self,
        staging: Path,
        target: PythonTarget,
        base: FilesystemView,
        requested: frozenset[str] | None,
    ) -> None:
        self.staging = staging
        self.requested = requested
        self.unrequested: set[str] = set()  # dist-info dirs that get no REQUESTED
        self.target = target
        self.base = base
        self.uid, self.gid = target.user.uid, target.user.gid
        self.site = resolve(base, target.scheme.site)
        self.scripts = resolve(base, target.scheme.scripts)
        scheme, version = target.scheme, target.version
        self.data = resolve(base, scheme.data)
        headers = "include/site" if scheme.kind == "venv" else "include"
        self.headers = resolve(base, f"{scheme.data}/{headers}/python{version}")
        self.entries: dict[str, LayerEntry] = {}
        self.removed: set[str] = set()  # base paths pip's uninstall deletes
        self.removed_dirs: set[str] = set()  # ... whole directories among them

    def run(self) -> tuple[list[LayerEntry], dict[str, str], dict[str, str]]:
        installed = self._installed_dists()
        if self.requested is not None:
            self.unrequested = {i for n, (i, _) in installed.items() if n not in self.requested}
        replaced = {
            name: dist
            for name, dist in self.target.distributions.items()
            if name in installed and resolve(self.base, dist.site_dir) == self.site
        }
        for dist in replaced.values():
            self._plan_uninstall(resolve(self.base, dist.info_dir))
        scripts = {info: self._add_scripts(info) for info, _ in installed.values()}
        self._add_unclaimed_scripts(scripts)
        for info_dir, _ in installed.values():
            self._add_tree(self.staging / info_dir, posixpath.join(self.site, info_dir))
        for child in sorted(self.staging.iterdir()):
            if child.name in ("bin", ".lock") or child.name.endswith(".dist-info"):
                continue
            self._add_tree(child, self._image_path(child.name))
        for info_dir, _ in installed.values():
            self._rewrite_metadata(info_dir, scripts[info_dir])
        for directory in {posixpath.dirname(path) for path in self.entries}:
            self._ensure_dir(directory)
        self._add_whiteouts()  # after the directories: a recreated one is not whited out
        versions = {name: version for name, (_, version) in installed.items()}
        return list(self.entries.values()), versions, {n: d.version for n, d in replaced.items()}

    # -- what uv installed
    def _installed_dists(self) -> dict[str, tuple[str, str]]:
        """canonical name -> (dist-info dir name, version), stubs excluded."""
        found: dict[str, tuple[str, str]] = {}
        for child in sorted(self.staging.glob("*.dist-info")):
            installer = child / "INSTALLER"
            if installer.is_file() and installer.read_bytes() == STUB_INSTALLER:
                continue
            name, version = _metadata_name_version(child)
            found[canonical_name(name)] = (child.name, version)
        return found

    # -- files
    def _add_tree(self, source: Path, dest: str) -> None:
        if source.is_symlink():
            self._put(LayerEntry(dest, "symlink", 0o777, self.uid, self.gid,
                                 linkname=str(source.readlink())))  # fmt: skip
        elif source.is_dir():
            if source.name == "__pycache__":
                return  # no host-compiled bytecode
            # pip creates directories only as parents of files (_ensure_dir), never empty ones
            for child in sorted(source.iterdir()):
                self._add_tree(child, posixpath.join(dest, child.name))
        elif source.is_file() and source.suffix not in (".pyc", ".pyo"):
            if source.parent.name.endswith(".dist-info") and (
                source.name in _UV_BOOKKEEPING
                or (source.name == "REQUESTED" and source.parent.name in self.unrequested)
            ):
                return
            mode = 0o755 if source.stat().st_mode & 0o111 else 0o644
            self._put(LayerEntry(dest, "file", mode, self.uid, self.gid, source=source))

    def _add_scripts(self, info_dir: str) -> dict[str, bytes | None]:
        """The scripts pip writes for one distribution: console/gui entry points from pip's
        template, other scripts as uv staged them with the image's shebang. Name -> content
        (None: uv wrote it but pip would not, e.g. pip3.12 when the image has 3.11)."""
        staged = {row[0][len("bin/") :] for row in _record_rows(self.staging / info_dir)}
        staged = {name for name in staged if name and "/" not in name and name != ".."}
        staged &= {p.name for p in (self.staging / "bin").glob("*")}
        entry_points = self.staging / info_dir / "entry_points.txt"
        text = entry_points.read_text("utf-8", "replace") if entry_points.is_file() else ""
        specs, declared = script_specs(text, self.target.version)
        scripts: dict[str, bytes | None] = {}
        for name, spec in specs.items():
            generated = pip_script(spec, self.target.interpreter)
            if generated is not None:
                scripts[name] = generated
        for name in sorted(staged - scripts.keys()):
            if name in declared:
                scripts[name] = None
            else:
                staged_data = (self.staging / "bin" / name).read_bytes()
                scripts[name] = rewrite_shebang(staged_data, self.target.interpreter)
        for name, content in scripts.items():
            if content is not None:
                source = self.staging / "bin" / name
                executable = name not in staged or source.stat().st_mode & 0o111
                mode = 0o755 if executable else 0o644
                dest = posixpath.join(self.scripts, name)
                self._put(LayerEntry(dest, "file", mode, self.uid, self.gid, data=content))
        return scripts

    def _add_unclaimed_scripts(self, claimed: Mapping[str, Mapping[str, bytes | None]]) -> None:
        """Files in bin/ that no RECORD lists: keep them, with the image's shebang."""
        names = {name for scripts in claimed.values() for name in scripts}
        bin_dir = self.staging / "bin"
        for script in sorted(bin_dir.iterdir()) if bin_dir.is_dir() else []:
            if script.name in names:
                continue
            dest = posixpath.join(self.scripts, script.name)
            if script.is_file() and not script.is_symlink():
                data = rewrite_shebang(script.read_bytes(), self.target.interpreter)
                mode = 0o755 if script.stat().st_mode & 0o111 else 0o644
                self._put(LayerEntry(dest, "file", mode, self.uid, self.gid, data=data))
            else:
                self._add_tree(script, dest)

    def _rewrite_metadata(self, info_dir: str, scripts: Mapping[str, bytes | None]) -> None:
        """INSTALLER says pip; RECORD names the real script paths and their new hashes."""
        image_info = posixpath.join(self.site, info_dir)
        installer = b"pip\n"
        self._put(LayerEntry(f"{image_info}/INSTALLER", "file", 0o644, self.uid, self.gid,
                             data=installer))  # fmt: skip
        record = self.staging / info_dir / "RECORD"
        if not record.is_file():
            return
        rows = []
        pending = {name: data for name, data in scripts.items() if data is not None}
        for row in _record_rows(self.staging / info_dir):
            path = row[0]
            dropped = _UV_BOOKKEEPING | ({"REQUESTED"} if info_dir in self.unrequested else set())
            if path.startswith(info_dir + "/") and posixpath.basename(path) in dropped:
                continue
            if path == f"{info_dir}/INSTALLER":
                row = [path, _record_hash(installer), str(len(installer))]
            elif path.startswith("bin/"):
                name = path[len("bin/") :]
                if name in scripts and scripts[name] is None:
                    continue
                data = pending.pop(name, None)
                row = [self._script_record_path(name), *_hash_and_size(data, row)]
            elif path.split("/", 1)[0] in _DATA_ROOTS:
                row = [posixpath.relpath(self._image_path(path), self.site), *row[1:]]
            rows.append(row[:3] + [""] * (3 - len(row[:3])))
        for name, data in pending.items():  # scripts pip writes that uv did not
            rows.append([self._script_record_path(name), _record_hash(data), str(len(data))])
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(sorted(rows))
        data = out.getvalue().encode()
        self._put(LayerEntry(f"{image_info}/RECORD", "file", 0o644, self.uid, self.gid,
                             data=data))  # fmt: skip

    def _image_path(self, relative: str) -> str:
        """Where pip puts a path of the ``--target`` tree: uv writes a wheel's data files
        (share/, etc/, ...) and headers (include/<dist>/) there too; pip writes them to the
        scheme's data and headers directories. A top-level directory with these names
        that is an importable package stays in site-packages."""
        root, _, rest = relative.partition("/")
        if root in _DATA_ROOTS and not (self.staging / root / "__init__.py").exists():
            if root == "include":
                return posixpath.join(self.headers, rest) if rest else self.headers
            return posixpath.join(self.data, relative)
        return posixpath.join(self.site, relative)

    def _script_record_path(self, name: str) -> str:
        return posixpath.relpath(posixpath.join(self.scripts, name), self.site)

    def _put(self, entry: LayerEntry) -> None:
        self.entries[entry.path] = entry

    # -- directories
    def _exists(self, path: str) -> bool:
        """Whether *path* is a directory in the base that survives pip's uninstalls."""
        if path in self.removed_dirs or any(path.startswith(d + "/") for d in self.removed_dirs):
            return False
        info = stat(self.base, path)
        return info is not None and info.kind == "dir"

    def _ensure_dir(self, path: str) -> None:
        """Entries for the missing parents pip would create (owned by the installing user)."""
        while path != "/" and path not in self.entries and not self._exists(path):
            self._put(LayerEntry(path, "dir", 0o755, self.uid, self.gid))
            path = posixpath.dirname(path)

    # -- uninstalling replaced base distributions
    def _plan_uninstall(self, info_dir: str) -> None:
        data = self.base.read_file(resolve(self.base, f"{info_dir}/RECORD"), limit=READ_LIMIT)
        files = {normpath(info_dir)} | self._tree_files(info_dir)
        for row in csv.reader(io.StringIO((data or b"").decode("utf-8", "replace"))):
            if row:
                files.add(normpath(posixpath.join(self.site, row[0])))
        for path in list(files):
            if path.endswith(".py"):  # and the bytecode pip compiled for it
                cache = posixpath.join(posixpath.dirname(path), "__pycache__")
                stem = posixpath.basename(path)[:-3] + "."
                files |= {
                    posixpath.join(cache, n) for n in self.base.listdir(cache)
                    if n.startswith(stem) and n.endswith(".pyc")
                }  # fmt: skip
        present = {p for p in files if self.base.info(p) is not None}
        self.removed |= present
        candidates = {
            parent
            for path in present
            for parent in _parents(path)
            if parent.startswith((self.site + "/", self.scripts + "/"))
        }
        for directory in candidates:
            if all(p in self.removed for p in self._tree_files(directory)):
                self.removed_dirs.add(directory)

    def _tree_files(self, directory: str) -> set[str]:
        out: set[str] = set()
        for name in self.base.listdir(directory):
            path = posixpath.join(directory, name)
            info = self.base.info(path)
            if info is not None and info.kind == "dir":
                out |= self._tree_files(path)
            else:
                out.add(path)
        return out

    def _add_whiteouts(self) -> None:
        """One whiteout per removed directory that is not recreated (its content goes with
        it), and one per removed file that is neither rewritten nor inside such a directory."""
        written = set(self.entries)
        gone = {d for d in self.removed_dirs if d not in written}
        for path in sorted(self.removed | gone):
            if path in written or (path in self.removed_dirs and path not in gone):
                continue
            if not any(parent in gone for parent in _parents(path)):
                self._put(LayerEntry(path, "whiteout"))


def _record_rows(info_dir: Path) -> list[list[str]]:
    record = info_dir / "RECORD"
    if not record.is_file():
        return []
    return [row for row in csv.reader(io.StringIO(record.read_text("utf-8"))) if row]


def _hash_and_size(data: bytes | None, row: list[str]) -> list[str]:
    return [_record_hash(data), str(len(data))] if data is not None else row[1:3]


def _metadata_name_version(info_dir: Path) -> tuple[str, str]:
    name = version = ""
    metadata = info_dir / "METADATA"
    if metadata.is_file():
        for line in metadata.read_text("utf-8", "replace").splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            if key.lower() == "name":
                name = value.strip()
            elif key.lower() == "version":
                version = value.strip()
    if not name or not version:
        stem = info_dir.name[: -len(".dist-info")]
        name, _, version = stem.partition("-")
    return name, version


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _parents(path: str) -> Iterable[str]:
    parent = posixpath.dirname(path)
    while parent not in ("/", ""):
        yield parent
        parent = posixpath.dirname(parent)
