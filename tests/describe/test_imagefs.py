"""Copying directories out of layers (whiteouts, links that lead out) and deciding whether
the host can load an image's compiled packages."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from mpkit.cache.root import CacheRoot
from mpkit.describe import imagefs
from mpkit.describe.hostshim import parse_arguments
from mpkit.describe.imagefs import HostPython, compiled_problem, extract_paths
from mpkit.image import mediatypes
from mpkit.image.types import Blob

HOST = HostPython("3.11", "Linux", "x86_64", ".cpython-311-x86_64-linux-gnu.so", (2, 36))


def layer(*entries: tuple[str, str | None, str]) -> Blob:
    """A tar layer: (path, content or None for a directory, symlink target or "")."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content, link in entries:
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data = content.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return Blob.from_bytes(buffer.getvalue(), mediatypes.OCI_LAYER_TAR)


def test_whiteouts_and_opaque_directories_apply(tmp_path: Path) -> None:
    layers = [
        layer(("site/a.py", "a", ""), ("site/old/x.py", "x", ""), ("site/gone.py", "g", ""),
              ("other/secret", "s", "")),
        layer(("site/.wh.gone.py", "", ""), ("site/old/.wh..wh..opq", "", ""),
              ("site/old/y.py", "y", ""), ("site/a.py", "a2", "")),
    ]  # fmt: skip
    extract_paths(layers, ["/site"], tmp_path / "out", cache=CacheRoot(tmp_path / "cache"))
    files = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.py"))
    assert files == ["site/a.py", "site/old/y.py"]
    assert (tmp_path / "out" / "site" / "a.py").read_text() == "a2"
    assert not (tmp_path / "out" / "other").exists()


def tree(root: Path) -> dict[str, str]:
    """Every file and link under *root*: relative path -> content or link target."""
    out = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            out[name] = "-> " + str(path.readlink())
        elif path.is_file():
            out[name] = path.read_text()
        else:
            out[name] = "/"
    return out


def test_a_kept_extraction_gives_what_a_fresh_one_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The extraction up to the last large layer is kept; a later build of an image with
    other layers above it starts from there, and must end where a fresh one ends."""
    lower = [
        layer(("site/a.py", "a", ""), ("site/old/x.py", "x", ""), ("site/gone.py", "g", ""),
              ("site/dir/", None, ""), ("site/dir/in.py", "i", "")),
        layer(("site/b.py", "b", ""), ("site/link", None, "a.py")),
    ]  # fmt: skip
    upper = layer(("site/.wh.gone.py", "", ""), ("site/old/.wh..wh..opq", "", ""),
                  ("site/old/y.py", "y", ""), ("site/b.py", "b2", ""), ("site/dir/", None, ""),
                  ("site/.wh.link", "", ""), ("site/link/", None, ""))  # fmt: skip
    cache = CacheRoot(tmp_path / "cache")
    monkeypatch.setattr(imagefs, "SNAPSHOT_MIN_LAYER", 0)  # every layer counts as large
    extract_paths(lower, ["/site"], tmp_path / "first", cache=cache)
    (kept,) = cache.hostfs.iterdir()
    assert tree(kept) == tree(tmp_path / "first")

    monkeypatch.setattr(imagefs, "SNAPSHOT_MIN_LAYER", 1 << 40)  # the upper layer is small
    extract_paths([*lower, upper], ["/site"], tmp_path / "cached", cache=cache)
    extract_paths([*lower, upper], ["/site"], tmp_path / "fresh")
    assert tree(tmp_path / "cached") == tree(tmp_path / "fresh")
    assert tree(tmp_path / "fresh") == {
        "site": "/", "site/a.py": "a", "site/b.py": "b2", "site/dir": "/",
        "site/dir/in.py": "i", "site/link": "/", "site/old": "/", "site/old/y.py": "y",
    }  # fmt: skip
    assert list(cache.tmp.iterdir()) == []


def test_a_link_that_leads_out_is_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = layer(("site/up", None, "../../../../../../../" + str(outside).lstrip("/")),
                 ("site/up/planted", "x", ""), ("site/abs", None, "/etc"),
                 ("site/abs/passwd", "x", ""))  # fmt: skip
    extract_paths([evil], ["/site"], tmp_path / "out")
    assert list(outside.iterdir()) == []
    assert (tmp_path / "out" / "etc" / "passwd").read_text() == "x"  # kept inside the tree


def test_compiled_code_must_fit_the_host(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "pure").mkdir(parents=True)
    (site / "pure" / "m.py").write_text("")
    assert compiled_problem(site, HOST, "x86_64") is None
    (site / "fast.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (site / "stable.abi3.so").write_bytes(b"")
    info = site / "fast-1.0.dist-info"
    info.mkdir()
    (info / "WHEEL").write_text("Tag: cp311-cp311-manylinux_2_17_x86_64\n")
    assert compiled_problem(site, HOST, "x86_64") is None
    assert "linux/aarch64" in (compiled_problem(site, HOST, "aarch64") or "")
    mac = HostPython("3.11", "Darwin", "arm64", ".cpython-311-darwin.so", None)
    assert "darwin/arm64" in (compiled_problem(site, mac, "x86_64") or "")
    (info / "WHEEL").write_text("Tag: cp311-cp311-manylinux_2_39_x86_64\n")
    assert "cannot load" in (compiled_problem(site, HOST, "x86_64") or "")
    (info / "WHEEL").write_text("Tag: cp311-cp311-musllinux_1_2_x86_64\n")
    assert "cannot load" in (compiled_problem(site, HOST, "x86_64") or "")
    (info / "WHEEL").write_text("Tag: cp311-cp311-linux_x86_64\n")
    (site / "old.cpython-310-x86_64-linux-gnu.so").write_bytes(b"")
    assert "another Python ABI" in (compiled_problem(site, HOST, "x86_64") or "")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["app/adapter.py", "adapter_definition", "in", "out"],
         ("script", "app/adapter.py", ["adapter_definition", "in", "out"])),
        (["-u", "-W", "ignore", "-m", "app.adapter", "x"], ("module", "app.adapter", ["x"])),
        (["-Xutf8", "-c", "print(1)", "a"], ("code", "print(1)", ["a"])),
        (["-mapp"], ("module", "app", [])),
    ],
)  # fmt: skip
def test_python_command_lines_are_understood(
    args: list[str], expected: tuple[str, str, list[str]]
) -> None:
    assert parse_arguments(args) == expected
    with pytest.raises(SystemExit):
        parse_arguments(["--unknown-option", "x"])
