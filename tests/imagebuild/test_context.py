"""Build context: default exclusions, .dockerignore patterns, symlinks and the content digest."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mpkit.errors import ContextError, ExternalLinkError
from mpkit.imagebuild.context import (
    BuildContext,
    PatternMatcher,
    glob_match,
    go_clean,
    has_wildcards,
    read_dockerignore,
)
from tests.fixtures.files import write_files


def rels(context: BuildContext, under: str = "") -> list[str]:
    return [entry.rel for entry in context.walk(under)]


# --------------------------------------------------------------------------- patterns

# Go's filepath.Match table (as moby/patternmatcher reuses it); None = bad pattern.
FILEPATH_MATCH = [
    ("abc", "abc", True),
    ("*", "abc", True),
    ("*c", "abc", True),
    ("a*", "a", True),
    ("a*", "abc", True),
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True),
    ("ab[b-d]", "abc", True),
    ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False),
    ("ab[^b-d]", "abc", False),
    ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    ("a?b", "a☺b", True),
    ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False),
    ("a[^a][^a][^a]b", "a☺b", False),
    ("[a-ζ]*", "α", True),  # noqa: RUF001
    ("*[a-ζ]", "A", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[\\-]", "-", True),
    ("[x\\-]", "x", True),
    ("[x\\-]", "-", True),
    ("[x\\-]", "z", False),
    ("[\\-x]", "x", True),
    ("[\\-x]", "-", True),
    ("[\\-x]", "a", False),
    ("[]a]", "]", None),
    ("[-]", "-", None),
    ("[x-]", "x", None),
    ("[-x]", "x", None),
    ("\\", "a", None),
    ("[a-b-c]", "a", None),
    ("[", "a", None),
    ("[^", "a", None),
    ("[^bc", "a", None),
    ("a[", "ab", None),
    ("*x", "xxx", True),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), FILEPATH_MATCH)
def test_glob_match_is_go_filepath_match(pattern: str, name: str, expected: bool | None) -> None:
    if expected is None:
        with pytest.raises(ValueError, match="bad pattern"):
            glob_match(pattern, name)
    else:
        assert glob_match(pattern, name) is expected


@pytest.mark.parametrize(("pattern", "name", "expected"), FILEPATH_MATCH)
def test_dockerignore_single_patterns_follow_filepath_match(
    pattern: str, name: str, expected: bool | None
) -> None:
    if expected is None:
        with pytest.raises(ValueError):
            PatternMatcher([pattern])
    else:
        assert PatternMatcher([pattern]).matches(name) is expected


# moby/patternmatcher TestMatches (MatchesOrParentMatches semantics).
PATTERNMATCHER_CASES = [
    ("**", "file", True),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**/**", "dir/file", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/dir2/file", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("a\\\\", "a\\", True),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\*b", "a*b", True),
    ("a*", "ab/c", True),  # a parent directory matches
]


@pytest.mark.parametrize(("pattern", "path", "expected"), PATTERNMATCHER_CASES)
def test_patternmatcher_cases(pattern: str, path: str, expected: bool) -> None:
    assert PatternMatcher([pattern]).matches(path) is expected


@pytest.mark.parametrize(
    ("patterns", "path", "expected"),
    [
        (["**", "!util/docker/web"], "util/docker/web/foo", False),
        (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
        (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0-py3-none-any.whl", False),
        (["*"], "fileutils.go", True),
        (["*.go"], "fileutils.go", True),
        (["!fileutils.go", "*.go"], "fileutils.go", True),
        (["*.go", "!fileutils.go"], "fileutils.go", False),
        (["docs", "!docs/README.md"], "docs/README.md", False),
        (["docs/", "!docs/README.md"], "docs/README.md", False),
        (["docs/*", "!docs/README.md"], "docs/README.md", False),
        ([], "any/path", False),
    ],
)
def test_last_matching_pattern_wins(patterns: list[str], path: str, expected: bool) -> None:
    assert PatternMatcher(patterns).matches(path) is expected


def test_bad_patterns() -> None:
    with pytest.raises(ValueError, match="illegal exclusion"):
        PatternMatcher(["!"])
    with pytest.raises(ValueError):
        PatternMatcher(["["])


def test_read_dockerignore() -> None:
    text = (
        "\ufeff# comment\n"
        "  *.pyc  \n"
        "\n"
        "/build-output\n"
        "./tmp/../cache//x/\n"
        "! important.pyc\n"
        " # not a comment: the line starts with a space\n"
        "/\n"
    )
    assert read_dockerignore(text) == [
        "*.pyc",
        "build-output",
        "cache/x",
        "!important.pyc",
        "# not a comment: the line starts with a space",
        "/",
    ]


@pytest.mark.parametrize(
    ("path", "clean"),
    [("", "."), ("a//b/./c/..", "a/b"), ("//x", "/x"), ("../a", "../a"), ("/../a", "/a")],
)
def test_go_clean(path: str, clean: str) -> None:
    assert go_clean(path) == clean


def test_has_wildcards() -> None:
    assert has_wildcards("app/*.py") and has_wildcards("a?") and has_wildcards("[ab]")
    assert not has_wildcards("app/main.py") and not has_wildcards("a\\*b")


# --------------------------------------------------------------------------- context


PROJECT: dict[str, str | bytes | None] = {
    "Dockerfile": "FROM x\n",
    "commands.cfg": "[Commands]\n",
    "manifest.txt": "{}",
    "app/adapter.py": "print(1)\n",
    "app/build/keep.txt": "nested build/ stays\n",
    "app/.cache/x": "hidden dir\n",
    "app/.env": "hidden file\n",
    "app/__pycache__/a.pyc": b"\x00",
    "build/out.pak": "output\n",
    "content/dashboards/d.json": "{}",
    "logs/build.log": "log\n",
    "resources/resources.properties": "a=b\n",
    ".git/config": "git\n",
    ".dockerignore": "**/__pycache__\n",
    "venv/bin/activate": "",
    "venv/bin/python": "",
    "venv/lib/site.py": "",
    "tools/win-env/Scripts/activate.bat": "",
    "tools/win-env/Lib/x.py": "",
    "tools/not-a-venv/bin/activate": "",
    "empty": None,
}


def test_default_exclusions_and_dockerignore(tmp_path: Path) -> None:
    context = BuildContext(write_files(tmp_path / "p", PROJECT))
    assert rels(context) == [
        "Dockerfile",
        "app",
        "app/adapter.py",
        "app/build",
        "app/build/keep.txt",
        "commands.cfg",
        "empty",
        "manifest.txt",
        "tools",
        "tools/not-a-venv",
        "tools/not-a-venv/bin",
        "tools/not-a-venv/bin/activate",
    ]
    assert context.is_excluded("build/out.pak") and context.is_excluded("build")
    assert context.is_excluded("app/.env") and context.is_excluded(".dockerignore")
    assert context.is_excluded("venv/lib/site.py") and context.is_excluded("tools/win-env")
    assert context.is_excluded("app/__pycache__/a.pyc")
    assert not context.is_excluded("app/build/keep.txt")
    assert not context.is_excluded("") and not context.is_excluded(".")
    assert context.excluded_by("app/__pycache__") == ".dockerignore"
    reason = context.excluded_by("content/dashboards/d.json")
    assert reason is not None and "default exclusions" in reason
    assert context.excluded_by("app/adapter.py") is None


def test_dockerignore_can_be_turned_off(tmp_path: Path) -> None:
    context = BuildContext(write_files(tmp_path / "p", PROJECT), dockerignore=False)
    assert "app/__pycache__/a.pyc" in rels(context)
    assert "app/.env" not in rels(context)  # the defaults still apply


def test_exceptions_reinclude_inside_excluded_directories(tmp_path: Path) -> None:
    root = write_files(
        tmp_path / "p",
        {
            ".dockerignore": "docs\n!docs/README.md\n*.md\n!keep.md\n.secret\n!.secret\n",
            "docs/README.md": "x",
            "docs/other.txt": "x",
            "docs/sub/deep.txt": "x",
            "keep.md": "x",
            "drop.md": "x",
            "a/b.md": "nested md is not matched by *.md",
            ".secret": "defaults cannot be re-included",
        },
    )
    context = BuildContext(root)
    assert rels(context) == ["a", "a/b.md", "docs", "docs/README.md", "keep.md"]
    assert context.is_excluded("docs/other.txt") and context.is_excluded("docs/sub/deep.txt")
    assert context.is_excluded("drop.md") and not context.is_excluded("docs/README.md")
    assert rels(context, "docs") == ["docs/README.md"]


def test_walk_is_sorted_depth_first_and_does_not_follow_links(tmp_path: Path) -> None:
    root = write_files(tmp_path / "p", {"b/z": "z", "b/a/x": "x", "a": "a", "c": None})
    (root / "link").symlink_to("b")
    (root / "outside").symlink_to("/etc")
    context = BuildContext(root)
    entries = list(context.walk())
    assert [(e.rel, e.kind) for e in entries] == [
        ("a", "file"),
        ("b", "dir"),
        ("b/a", "dir"),
        ("b/a/x", "file"),
        ("b/z", "file"),
        ("c", "dir"),
        ("link", "symlink"),
        ("outside", "symlink"),
    ]
    assert entries[-1].linkname == "/etc"
    assert rels(context, "b") == ["b/a", "b/a/x", "b/z"]


def test_copy_holds_exactly_the_context(tmp_path: Path) -> None:
    """What docker builds from: the walked entries, modes and links kept, nothing else."""
    root = write_files(tmp_path / "p", PROJECT)
    (root / "app" / "adapter.py").chmod(0o750)
    (root / "app" / "link").symlink_to("adapter.py")
    (root / "tools").chmod(0o555)
    context = BuildContext(root)
    copy = BuildContext(context.copy_to(tmp_path / "copy"), dockerignore=False)
    assert rels(copy) == rels(context)
    assert (copy.root / "app" / "adapter.py").read_text() == "print(1)\n"
    assert (copy.root / "app" / "adapter.py").stat().st_mode & 0o777 == 0o750
    assert (copy.root / "app" / "link").readlink() == Path("adapter.py")
    assert (copy.root / "tools").stat().st_mode & 0o777 == 0o555
    assert not (copy.root / ".dockerignore").exists() and not (copy.root / "build").exists()


def test_ignore_patterns_for_an_engine(tmp_path: Path) -> None:
    context = BuildContext(write_files(tmp_path / "p", PROJECT))
    patterns = context.ignore_patterns()
    assert patterns == [
        "**/__pycache__",
        "build",
        "content",
        "logs",
        "resources",
        "**/.*",
        "tools/win-env",
        "venv",
    ]
    engine_view = PatternMatcher(patterns)
    for entry in context.walk():
        assert not engine_view.matches(entry.rel), entry.rel
    for excluded in ("build/out.pak", "app/.env", "venv/bin/python", "app/__pycache__/a.pyc"):
        assert engine_view.matches(excluded)


def test_bad_dockerignore_is_a_context_error(tmp_path: Path) -> None:
    root = write_files(tmp_path / "p", {".dockerignore": "ok\n[\n"})
    with pytest.raises(ContextError, match=r"\.dockerignore: bad pattern"):
        BuildContext(root)


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="not a directory"):
        BuildContext(tmp_path / "missing")


# --------------------------------------------------------------------------- symlinks


def test_resolve_stays_inside_the_context(tmp_path: Path) -> None:
    root = write_files(tmp_path / "p", {"real/file.txt": "x", "real/sub/y": "y"})
    (root / "alias").symlink_to("real")
    (root / "real" / "up").symlink_to("../real/sub")
    (root / "abs-inside").symlink_to(root / "real" / "file.txt")
    (root / "escape").symlink_to("../outside")
    (root / "abs-outside").symlink_to("/etc/passwd")
    (root / "loop").symlink_to("loop")
    context = BuildContext(root)
    assert context.resolve("alias/file.txt") == "real/file.txt"
    assert context.resolve("alias/up/y") == "real/sub/y"
    assert context.resolve("alias", follow_last=False) == "alias"
    assert context.resolve("abs-inside") == "real/file.txt"
    with pytest.raises(ExternalLinkError, match="link 'escape' points outside the project") as e:
        context.resolve("escape")
    assert "target: ../outside" in e.value.message
    assert (e.value.link, e.value.target) == ("escape", "../outside")
    with pytest.raises(ExternalLinkError, match="target: /etc/passwd"):
        context.resolve("abs-outside")
    with pytest.raises(ContextError, match="too many levels"):
        context.resolve("loop")
    with pytest.raises(ContextError, match="outside the build context"):
        context.resolve("real/../../x")


def test_allowed_external_links_are_kept_and_read_through(tmp_path: Path) -> None:
    outside = write_files(tmp_path / "outside", {"lib/a.py": "a", "lib/b/c.py": "c"})
    root = write_files(tmp_path / "p", {"app/main.py": "m"})
    (root / "app" / "lib").symlink_to(outside / "lib")
    (outside / "lib" / "loop").symlink_to(outside)  # leads back above itself
    context = BuildContext(root, allow_external_links=True)
    assert context.resolve("app/lib/b/c.py") == "app/lib/b/c.py"
    found = context.lookup("app/lib")
    assert found is not None and found.kind == "dir"
    with pytest.raises(ContextError, match="back to a directory that contains it"):
        rels(context)
    (outside / "lib" / "loop").unlink()
    assert rels(context) == ["app", "app/lib", "app/lib/a.py", "app/lib/b", "app/lib/b/c.py",
                             "app/main.py"]  # fmt: skip
    with pytest.raises(ExternalLinkError):
        BuildContext(root).resolve("app/lib/a.py")


def test_check_symlink(tmp_path: Path) -> None:
    root = write_files(tmp_path / "p", {"app/lib/x.py": "x"})
    (root / "app" / "ok").symlink_to("lib/x.py")
    (root / "app" / "dangling").symlink_to("lib/missing.py")
    (root / "app" / "up").symlink_to("../../../etc")
    (root / "app" / "abs").symlink_to(root / "app" / "lib")
    context = BuildContext(root)
    entries = {e.rel: e for e in context.walk("app")}
    context.check_symlink(entries["app/ok"])
    context.check_symlink(entries["app/dangling"])  # inside the context, merely dangling
    with pytest.raises(ExternalLinkError, match="'app/up' points outside"):
        context.check_symlink(entries["app/up"])
    with pytest.raises(ContextError, match="'app/abs' has the absolute target"):
        context.check_symlink(entries["app/abs"])  # host-absolute targets mean nothing in an image


def test_lookup(tmp_path: Path) -> None:
    root = write_files(tmp_path / "p", {"a.txt": "a", "build/x": "x"})
    context = BuildContext(root)
    found = context.lookup("./a.txt")
    assert found is not None and (found.rel, found.kind, found.size) == ("a.txt", "file", 1)
    assert context.lookup("missing") is None
    assert context.lookup("build/x") is None
    assert context.lookup("a.txt/child") is None
    with pytest.raises(ContextError, match="outside the build context"):
        context.lookup("../x")


# --------------------------------------------------------------------------- digest


def _copy_tree_with(src: Path, dst: Path, *, mtime: int, umask_like: int) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    for path in [dst, *dst.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode & 0o777
        if path.is_file():
            path.chmod((0o777 if mode & 0o100 else 0o666) & ~umask_like)
        else:
            path.chmod(0o777 & ~umask_like)
        os.utime(path, (mtime, mtime))
    return dst


def test_digest_is_independent_of_location_mtime_and_umask(tmp_path: Path) -> None:
    original = write_files(
        tmp_path / "original",
        {"app/adapter.py": "print(1)\n", "run.sh": "#!/bin/sh\n", "commands.cfg": "x", "e": None},
    )
    (original / "run.sh").chmod(0o755)
    (original / "app" / "link.py").symlink_to("adapter.py")
    first = _copy_tree_with(original, tmp_path / "a" / "project", mtime=1_000, umask_like=0o022)
    second = _copy_tree_with(
        original, tmp_path / "b" / "x" / "y", mtime=2_000_000, umask_like=0o077
    )
    digest = BuildContext(first).digest()
    assert digest.startswith("sha256:") and len(digest) == 71
    assert BuildContext(second).digest() == digest
    assert (first / "run.sh").stat().st_mode & 0o777 != (second / "run.sh").stat().st_mode & 0o777

    # Excluded files do not count; everything the image could see does.
    (second / "build").mkdir()
    (second / "build" / "x.pak").write_text("output")
    (second / ".hidden").write_text("x")
    assert BuildContext(second).digest() == digest

    def relink(root: Path) -> None:
        (root / "app" / "link.py").unlink()
        (root / "app" / "link.py").symlink_to("x")

    changes: list[Callable[[Path], object]] = [
        lambda root: (root / "app" / "adapter.py").write_text("print(2)\n"),
        lambda root: (root / "run.sh").chmod(0o644),
        relink,
        lambda root: (root / "app" / "adapter.py").rename(root / "app" / "renamed.py"),
        lambda root: (root / "new-empty-dir").mkdir(),
    ]
    for number, change in enumerate(changes):
        changed = shutil.copytree(first, tmp_path / f"changed{number}", symlinks=True)
        change(changed)
        assert BuildContext(changed).digest() != digest, number
