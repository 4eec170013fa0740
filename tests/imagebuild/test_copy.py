"""COPY/ADD/WORKDIR planning: Docker's rules as unit cases, then equivalence with podman."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from mpkit.errors import ContextError, DockerfileError, ExternalLinkError
from mpkit.image.layerwriter import LayerEntry, write_layer
from mpkit.imagebuild.context import BuildContext
from mpkit.imagebuild.copy import OverlayView, UserDB, plan_copy, plan_workdir
from mpkit.imagebuild.dockerfile import NeedsEngineError, parse_dockerfile
from mpkit.imagebuild.fsview import FileInfo, FilesystemView, MemoryFilesystem
from mpkit.imagebuild.stage import ImageConfig, StageEvaluator
from tests.imagebuild.conftest import Listing, MiniPodman

USER = "aria-ops-adapter-user"
APP_DIR = f"/home/{USER}/src/app"

# path → (kind, mode, uid, gid)
Summary = dict[str, tuple[str, int, int, int]]


def base_image() -> MemoryFilesystem:
    """A small stand-in for the SDK base image's filesystem."""
    fs = MemoryFilesystem()
    fs.add("/opt", FileInfo("dir", 0o700, 1000, 1000))
    fs.add_file("/opt/file", b"x")
    fs.add("/srv/existing", FileInfo("dir", 0o700, 5, 5))
    fs.add("/srv/taken/notes.txt", FileInfo("dir", 0o755))
    fs.add("/usr/bin", FileInfo("dir", 0o755))
    fs.add("/bin", FileInfo("symlink", 0o777, linkname="usr/bin"))
    fs.add_file("/usr/bin/python3", b"\x7fELF", mode=0o755)
    fs.add("/usr/bin/python", FileInfo("symlink", 0o777, linkname="python3"))
    fs.add_file(
        "/etc/passwd",
        b"root:x:0:0:root:/root:/bin/bash\n"
        + f"{USER}:x:1000:1001::/home/{USER}:/bin/sh\n".encode(),
    )
    fs.add_file("/etc/group", b"root:x:0:\nadapters:x:1001:\nstaff:x:50:\n")
    fs.add(APP_DIR, FileInfo("dir", 0o755, 1000, 1001))
    return fs


BASE_CONFIG = ImageConfig(user=USER, workdir=APP_DIR, env={"PATH": "/usr/bin"})


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    files = {
        "commands.cfg": ("[Commands]\ntest=python3 app/adapter.py test\n", 0o644),
        "adapter_requirements.txt": ("requests\n", 0o644),
        "notes.txt": ("notes\n", 0o600),
        "app/adapter.py": ("print('adapter')\n", 0o644),
        "app/run.sh": ("#!/bin/sh\n", 0o755),
        "app/pkg/__init__.py": ("", 0o644),
        "app/pkg/mod.py": ("X = 1\n", 0o644),
        "app/debug.log": ("excluded by .dockerignore\n", 0o644),
        "build/out.pak": ("excluded by default\n", 0o644),
        "etc/passwd": ("root:x:0:0::/root:/bin/sh\napp:x:4242:4343::/home/app:/bin/sh\n", 0o644),
        ".dockerignore": ("app/*.log\n", 0o644),
    }
    for rel, (content, mode) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(mode)
    (root / "app" / "pkg").chmod(0o750)
    (root / "app" / "link.py").symlink_to("adapter.py")
    (root / "lnk").symlink_to("notes.txt")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("inside.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    (root / "data.tar.gz").write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
    return root


def run_plan(
    text: str,
    root: Path,
    *,
    base: FilesystemView | None = None,
    config: ImageConfig | None = None,
    build_args: Mapping[str, str] | None = None,
    allow_external_links: bool = False,
) -> tuple[OverlayView, list[list[LayerEntry]]]:
    """Plan every COPY/ADD/WORKDIR of *text* as successive layers over *base*."""
    dockerfile = parse_dockerfile(text)
    evaluator = StageEvaluator(dockerfile, base_config=config or BASE_CONFIG, build_args=build_args)
    context = BuildContext(root, allow_external_links=allow_external_links)
    view = OverlayView(base if base is not None else base_image())
    layers: list[list[LayerEntry]] = []
    for instr in dockerfile.final_stage.instructions:
        step = evaluator.apply(instr)
        if step is None:
            continue
        if step.keyword in ("COPY", "ADD"):
            entries = plan_copy(
                step, context=context, base=view, workdir=evaluator.workdir, env=evaluator.env
            )
        elif step.keyword == "WORKDIR":
            entries = plan_workdir(step, base=view, user=evaluator.config.user)
        else:
            raise AssertionError(f"unexpected {step.keyword}")
        view.extend(entries)
        layers.append(entries)
    return view, layers


def summary(entries: list[LayerEntry]) -> Summary:
    return {e.path: (e.kind, e.mode, e.uid, e.gid) for e in entries}


def only_layer(text: str, root: Path, **kwargs: object) -> Summary:
    _, layers = run_plan(text, root, **kwargs)  # type: ignore[arg-type]
    assert len(layers) == 1
    return summary(layers[0])


# --------------------------------------------------------------------------- basic rules


def test_file_into_a_new_directory(project: Path) -> None:
    assert only_layer("FROM b\nCOPY commands.cfg /new/dir/\n", project) == {
        "/new": ("dir", 0o755, 0, 0),
        "/new/dir": ("dir", 0o755, 0, 0),
        "/new/dir/commands.cfg": ("file", 0o644, 0, 0),
    }


def test_file_renamed_without_trailing_slash(project: Path) -> None:
    view, (layer,) = run_plan("FROM b\nCOPY notes.txt /new/name.cfg\n", project)
    assert summary(layer) == {"/new": ("dir", 0o755, 0, 0), "/new/name.cfg": ("file", 0o600, 0, 0)}
    assert view.read_file("/new/name.cfg") == b"notes\n"


def test_existing_directories_get_no_entry(project: Path) -> None:
    # /opt is 0700 1000:1000 in the base; it must stay that way.
    assert only_layer("FROM b\nCOPY commands.cfg /opt\n", project) == {
        "/opt/commands.cfg": ("file", 0o644, 0, 0)
    }
    assert only_layer("FROM b\nCOPY commands.cfg /opt/\n", project) == {
        "/opt/commands.cfg": ("file", 0o644, 0, 0)
    }


def test_sdk_dockerfile_on_the_base(project: Path) -> None:
    """COPY into the base's WORKDIR as its non-root USER: files belong to root, as podman
    builds them."""
    view, layers = run_plan(
        "FROM base\nCOPY commands.cfg .\nCOPY adapter_requirements.txt ./\nCOPY app app\n",
        project,
    )
    assert [summary(layer) for layer in layers[:2]] == [
        {f"{APP_DIR}/commands.cfg": ("file", 0o644, 0, 0)},
        {f"{APP_DIR}/adapter_requirements.txt": ("file", 0o644, 0, 0)},
    ]
    assert summary(layers[2]) == {
        f"{APP_DIR}/app": ("dir", 0o755, 0, 0),
        f"{APP_DIR}/app/adapter.py": ("file", 0o644, 0, 0),
        f"{APP_DIR}/app/link.py": ("symlink", 0o777, 0, 0),
        f"{APP_DIR}/app/pkg": ("dir", 0o750, 0, 0),
        f"{APP_DIR}/app/pkg/__init__.py": ("file", 0o644, 0, 0),
        f"{APP_DIR}/app/pkg/mod.py": ("file", 0o644, 0, 0),
        f"{APP_DIR}/app/run.sh": ("file", 0o755, 0, 0),
    }
    link = view.entries[f"{APP_DIR}/app/link.py"]
    assert link.linkname == "adapter.py"
    assert view.entries[f"{APP_DIR}/app/run.sh"].source == project / "app" / "run.sh"


def test_directory_contents_and_nested_directory_metadata(project: Path) -> None:
    base = base_image()
    base.add("/srv/existing/pkg", FileInfo("dir", 0o700, 7, 7))
    layer = only_layer("FROM b\nCOPY app/ /srv/existing\n", project, base=base)
    assert "/srv/existing" not in layer  # the copy target keeps its metadata …
    assert layer["/srv/existing/pkg"] == ("dir", 0o750, 0, 0)  # … nested dirs do not
    assert layer["/srv/existing/pkg/mod.py"] == ("file", 0o644, 0, 0)


def test_copy_the_whole_context(project: Path) -> None:
    layer = only_layer("FROM b\nCOPY . /ctx/\n", project)
    assert sorted(layer) == [
        "/ctx",
        "/ctx/adapter_requirements.txt",
        "/ctx/app",
        "/ctx/app/adapter.py",
        "/ctx/app/link.py",
        "/ctx/app/pkg",
        "/ctx/app/pkg/__init__.py",
        "/ctx/app/pkg/mod.py",
        "/ctx/app/run.sh",
        "/ctx/commands.cfg",
        "/ctx/data.tar.gz",
        "/ctx/etc",
        "/ctx/etc/passwd",
        "/ctx/lnk",
        "/ctx/notes.txt",
    ]


def test_host_permission_bits_are_kept(project: Path) -> None:
    (project / "app" / "run.sh").chmod(0o4750)
    layer = only_layer("FROM b\nCOPY app/run.sh notes.txt /bin/\n", project)
    assert layer == {
        "/usr/bin/run.sh": ("file", 0o4750, 0, 0),
        "/usr/bin/notes.txt": ("file", 0o600, 0, 0),
    }


# --------------------------------------------------------------------------- sources


def test_several_sources_need_a_directory_destination(project: Path) -> None:
    with pytest.raises(DockerfileError, match="line 3: when COPY has more than one source") as e:
        run_plan("FROM b\n\nCOPY commands.cfg notes.txt /dst\n", project)
    assert e.value.hint == "Write the destination as /dst/"
    with pytest.raises(DockerfileError, match="more than one source"):
        run_plan("FROM b\nCOPY *.txt /dst\n", project)


def test_globs(project: Path) -> None:
    assert only_layer("FROM b\nCOPY *.cfg /dst/one.cfg\n", project) == {
        "/dst": ("dir", 0o755, 0, 0),
        "/dst/one.cfg": ("file", 0o644, 0, 0),
    }
    # A pattern matching nothing is fine next to sources that match (podman agrees).
    assert only_layer("FROM b\nCOPY notes.txt *.nothing /dst/\n", project) == {
        "/dst": ("dir", 0o755, 0, 0),
        "/dst/notes.txt": ("file", 0o600, 0, 0),
    }
    view, (layer,) = run_plan("FROM b\nCOPY app/*.py /py/\n", project)
    assert summary(layer) == {
        "/py": ("dir", 0o755, 0, 0),
        "/py/adapter.py": ("file", 0o644, 0, 0),
        "/py/link.py": ("file", 0o644, 0, 0),  # a matched symlink is followed
    }
    assert view.entries["/py/link.py"].source == project / "app" / "adapter.py"
    # A matched directory copies its contents; excluded files never match.
    assert sorted(only_layer("FROM b\nCOPY app/[pd]* /p/\n", project)) == [
        "/p",
        "/p/__init__.py",
        "/p/mod.py",
    ]
    assert sorted(only_layer("FROM b\nCOPY */*/mod.py /m/\n", project)) == ["/m", "/m/mod.py"]


@pytest.mark.parametrize(
    ("line", "unmatched"),
    [
        ("COPY *.nothing /dst/", "'*.nothing'"),
        ("ADD  *.nothing   app/*.none /dst/", "'*.nothing' or 'app/*.none'"),
        ("COPY app/*.log /dst/", "'app/*.log'"),  # only files .dockerignore excludes
        ("COPY notes.txt/*.x /dst/", "'notes.txt/*.x'"),
        ("COPY ${SRC}*.nothing /dst/", "'sub*.nothing'"),  # after expansion
    ],
)
def test_sources_matching_nothing_at_all_fail(project: Path, line: str, unmatched: str) -> None:
    with pytest.raises(DockerfileError) as caught:
        run_plan(f"FROM b\nARG SRC=sub\n{line}\n", project)
    written = " ".join(line.split())
    assert caught.value.message == (
        f"Dockerfile line 3: {written}: no file in the build context matches {unmatched}"
    )
    assert caught.value.line == 3 and caught.value.hint and ".dockerignore" in caught.value.hint


@pytest.mark.parametrize(
    ("line", "error", "message"),
    [
        ("COPY missing.txt /x/", DockerfileError, "source 'missing.txt' not found in the build"),
        ("COPY missing/*.py /x/", DockerfileError, "source 'missing' not found"),
        ("COPY app/debug.log /x/", DockerfileError, "excluded from the build context by .dock"),
        ("COPY build/out.pak /x/", DockerfileError, "by mpkit's default exclusions"),
        ("COPY ../outside.txt /x/", ContextError, "'../outside.txt' is outside the build"),
        ("COPY /../outside.txt /x/", ContextError, "is outside the build context"),
        ("COPY app/../../x /x/", ContextError, "is outside the build context"),
        ("COPY [a /x/", DockerfileError, "invalid source pattern"),
    ],
)
def test_bad_sources_name_the_line_and_the_path(
    project: Path, line: str, error: type[Exception], message: str
) -> None:
    (project.parent / "outside.txt").write_text("secret")
    with pytest.raises(error, match=message) as caught:
        run_plan(f"FROM b\n\n{line}\n", project)
    assert str(caught.value).startswith("Dockerfile line 3: ")


def test_absolute_sources_are_relative_to_the_context(project: Path) -> None:
    assert only_layer("FROM b\nCOPY /commands.cfg /x/\n", project) == {
        "/x": ("dir", 0o755, 0, 0),
        "/x/commands.cfg": ("file", 0o644, 0, 0),
    }


def test_symlinks(project: Path, tmp_path: Path) -> None:
    view, (layer,) = run_plan("FROM b\nCOPY lnk /l/\n", project)
    assert summary(layer)["/l/lnk"] == ("file", 0o600, 0, 0)  # named: followed, keeps its name
    assert view.entries["/l/lnk"].source == project / "notes.txt"

    (tmp_path / "outside").mkdir()
    (project / "app" / "escape").symlink_to("../../outside")
    with pytest.raises(ExternalLinkError, match="link 'app/escape' points outside") as caught:
        run_plan("FROM b\nCOPY app /a/\n", project)
    assert "target: ../../outside" in str(caught.value)
    assert str(caught.value).startswith("Dockerfile line 2: COPY: ")
    assert caught.value.link == "app/escape" and "--allow-external-links" in str(caught.value.hint)
    (project / "app" / "escape").unlink()

    (project / "evil").symlink_to("/etc/passwd")
    with pytest.raises(ExternalLinkError, match=r"'evil' points outside.*target: /etc/passwd"):
        run_plan("FROM b\nCOPY evil /x/\n", project)

    (project / "app" / "abs").symlink_to(project / "notes.txt")  # inside, but absolute
    with pytest.raises(ContextError, match="'app/abs' has the absolute target"):
        run_plan("FROM b\nCOPY app /a/\n", project)


def test_external_links_are_followed_when_allowed(project: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "lib").mkdir(parents=True)
    (shared / "lib" / "util.py").write_text("U = 1\n")
    (shared / "lib" / "alias").symlink_to("util.py")  # outside too: followed as well
    (shared / "conf.ini").write_text("[x]\n")
    (project / "app" / "shared").symlink_to(shared / "lib")
    (project / "conf.ini").symlink_to(shared / "conf.ini")
    (project / "app" / "gone").symlink_to(tmp_path / "missing")
    text = "FROM b\nCOPY conf.ini /c/\nCOPY app/shared /s/\nCOPY app/[ps]* /g/\n"
    view, layers = run_plan(text, project, allow_external_links=True)
    assert [summary(layer) for layer in layers] == [
        {"/c": ("dir", 0o755, 0, 0), "/c/conf.ini": ("file", 0o644, 0, 0)},
        {
            "/s": ("dir", 0o755, 0, 0),
            "/s/alias": ("file", 0o644, 0, 0),
            "/s/util.py": ("file", 0o644, 0, 0),
        },
        {
            "/g": ("dir", 0o755, 0, 0),
            "/g/__init__.py": ("file", 0o644, 0, 0),
            "/g/alias": ("file", 0o644, 0, 0),
            "/g/mod.py": ("file", 0o644, 0, 0),
            "/g/util.py": ("file", 0o644, 0, 0),
        },
    ]
    assert view.read_file("/s/util.py") == b"U = 1\n"
    # A whole-directory copy meets the dangling external link: named, not followed.
    with pytest.raises(ContextError, match=r"'app/gone' points outside.*does not exist"):
        run_plan("FROM b\nCOPY app /a/\n", project, allow_external_links=True)


def test_special_files_are_refused(project: Path) -> None:
    os.mkfifo(project / "app" / "pipe")
    with pytest.raises(ContextError, match="'app/pipe' is not a regular file"):
        run_plan("FROM b\nCOPY app /a/\n", project)


# --------------------------------------------------------------------------- ownership, modes


@pytest.mark.parametrize(
    ("chown", "owner"),
    [
        (USER, (1000, 1001)),
        (f"{USER}:staff", (1000, 50)),
        ("1234", (1234, 1234)),
        ("1234:adapters", (1234, 1001)),
        ("root:root", (0, 0)),
        ("$OWNER", (1000, 1001)),
    ],
)
def test_chown(project: Path, chown: str, owner: tuple[int, int]) -> None:
    layer = only_layer(
        f"FROM b\nENV OWNER={USER}\nCOPY --chown={chown} app/pkg /opt/new/\n", project
    )
    assert layer == {
        "/opt/new": ("dir", 0o755, *owner),  # a directory the copy creates: owned too
        "/opt/new/__init__.py": ("file", 0o644, *owner),
        "/opt/new/mod.py": ("file", 0o644, *owner),
    }


@pytest.mark.parametrize(
    ("chown", "message"),
    [
        ("nobody", "--chown: unknown user 'nobody': it is not in the image's /etc/passwd"),
        ("1000:nogroup", "--chown: unknown group 'nogroup'"),
        ("-1", "out of range"),
    ],
)
def test_chown_errors(project: Path, chown: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message) as caught:
        run_plan(f"FROM b\nCOPY --chown={chown} notes.txt /x/\n", project)
    assert caught.value.line == 2


def test_chown_sees_users_added_by_earlier_instructions(project: Path) -> None:
    _, layers = run_plan(
        "FROM b\nCOPY etc/passwd /etc/passwd\nCOPY --chown=app notes.txt /n/\n", project
    )
    assert summary(layers[1])["/n/notes.txt"] == ("file", 0o600, 4242, 4343)


def test_user_db() -> None:
    db = UserDB.parse("# c\nbad\nu:x:1:2::/:/bin/sh\nu:x:9:9::/:/bin/sh\n", "g:x:3:\n")
    assert db.resolve("u") == (1, 2)  # the first entry wins
    assert db.resolve("u:g") == (1, 3)
    assert db.resolve(":g") == (0, 3)
    assert db.resolve("u:") == (1, 2)
    assert UserDB.from_view(MemoryFilesystem()).users == {}


def test_chmod(project: Path) -> None:
    layer = only_layer("FROM b\nCOPY --chmod=0755 commands.cfg app/pkg /m/\n", project)
    assert layer == {
        "/m": ("dir", 0o755, 0, 0),
        "/m/commands.cfg": ("file", 0o755, 0, 0),
        "/m/__init__.py": ("file", 0o755, 0, 0),
        "/m/mod.py": ("file", 0o755, 0, 0),
    }
    layer = only_layer("FROM b\nCOPY --chmod=640 app /m2/n\n", project)
    assert layer["/m2"] == layer["/m2/n"] == ("dir", 0o755, 0, 0)  # created: 0755
    assert layer["/m2/n/pkg"] == ("dir", 0o640, 0, 0)
    assert layer["/m2/n/link.py"] == ("symlink", 0o777, 0, 0)
    assert only_layer("FROM b\nCOPY --chmod=4755 notes.txt /s/\n", project)["/s/notes.txt"][1] == (
        0o4755
    )


@pytest.mark.parametrize(
    ("chmod", "error", "message"),
    [
        ("0999", DockerfileError, "must be an octal mode between 0 and 07777"),
        ("17777", DockerfileError, "must be an octal mode"),
        ("u+x", NeedsEngineError, "symbolic --chmod=u\\+x is not supported natively"),
    ],
)
def test_chmod_errors(project: Path, chmod: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        run_plan(f"FROM b\nCOPY --chmod={chmod} notes.txt /x/\n", project)


# --------------------------------------------------------------------------- destinations


def test_destination_relative_to_workdir(project: Path) -> None:
    _, layers = run_plan(
        "FROM b\nWORKDIR /w\nCOPY notes.txt .\nCOPY notes.txt sub/\nCOPY notes.txt ./n.txt\n"
        "WORKDIR rel\nCOPY notes.txt ..\n",
        project,
    )
    assert [sorted(summary(layer)) for layer in layers] == [
        ["/w"],
        ["/w/notes.txt"],
        ["/w/sub", "/w/sub/notes.txt"],
        ["/w/n.txt"],
        ["/w/rel"],
        ["/w/notes.txt"],  # ".." is the existing directory /w
    ]


def test_destination_through_image_symlinks(project: Path) -> None:
    # /bin → usr/bin: the file lands in /usr/bin and neither /bin nor /usr/bin get entries.
    assert only_layer("FROM b\nCOPY app/run.sh /bin/\n", project) == {
        "/usr/bin/run.sh": ("file", 0o755, 0, 0)
    }
    # A destination that is a symlink is followed (BuildKit resolves the whole path).
    assert only_layer("FROM b\nCOPY notes.txt /usr/bin/python\n", project) == {
        "/usr/bin/python3": ("file", 0o600, 0, 0)
    }


def test_destination_conflicts(project: Path) -> None:
    with pytest.raises(DockerfileError, match="/opt/file exists in the image and is not a dir"):
        run_plan("FROM b\nCOPY app /opt/file/x/\n", project)
    with pytest.raises(DockerfileError, match="cannot replace the directory /srv/taken/notes"):
        run_plan("FROM b\nCOPY notes.txt /srv/taken/\n", project)
    with pytest.raises(DockerfileError, match="cannot copy the directory 'app' to /opt/file"):
        run_plan("FROM b\nCOPY app /opt/file\n", project)


def test_variables_in_sources_and_destination(project: Path) -> None:
    layer = only_layer(
        "FROM b\nARG SRC=app\nENV DEST=/opt/app\nCOPY ${SRC}/adapter.py $DEST/\n", project
    )
    assert layer == {
        "/opt/app": ("dir", 0o755, 0, 0),
        "/opt/app/adapter.py": ("file", 0o644, 0, 0),
    }


# --------------------------------------------------------------------------- ADD and flags


def test_add(project: Path) -> None:
    assert only_layer("FROM b\nADD notes.txt /x/\n", project) == {
        "/x": ("dir", 0o755, 0, 0),
        "/x/notes.txt": ("file", 0o600, 0, 0),
    }
    with pytest.raises(NeedsEngineError, match="ADD would extract the local archive") as caught:
        run_plan("FROM b\nADD data.tar.gz /x/\n", project)
    assert caught.value.feature == "add-archive" and caught.value.line == 2
    assert "/x/data.tar.gz" in only_layer("FROM b\nADD --unpack=false data.tar.gz /x/\n", project)
    assert "/x/data.tar.gz" in only_layer("FROM b\nCOPY data.tar.gz /x/\n", project)


@pytest.mark.parametrize(
    ("line", "error", "feature"),
    [
        ("ADD https://example.com/x.tgz /x/", NeedsEngineError, "add-remote"),
        ("ADD git@github.com:org/repo.git /src/", NeedsEngineError, "add-remote"),
        ("ADD --checksum=sha256:00 https://e.x/f /f", NeedsEngineError, "add-remote"),
        ("COPY --parents app/*.py /p/", NeedsEngineError, "parents"),
        ("COPY https://example.com/x /x/", DockerfileError, None),
    ],
)
def test_what_needs_an_engine(
    project: Path, line: str, error: type[DockerfileError], feature: str | None
) -> None:
    with pytest.raises(error) as caught:
        run_plan(f"FROM b\n{line}\n", project)
    assert caught.value.line == 2
    assert getattr(caught.value, "feature", None) == feature


def test_copy_from_is_refused_by_plan_copy_too(project: Path) -> None:
    (instr,) = parse_dockerfile("FROM b\nCOPY --from=builder /out /\n").final_stage.instructions
    with pytest.raises(NeedsEngineError, match="line 2: COPY --from"):
        plan_copy(instr, context=BuildContext(project), base=base_image(), workdir="/", env={})


def test_exclude_flag(project: Path) -> None:
    layer = only_layer("FROM b\nCOPY --exclude=*.sh --exclude=pkg app /e/\n", project)
    assert sorted(layer) == ["/e", "/e/adapter.py", "/e/link.py"]
    layer = only_layer("FROM b\nCOPY --exclude=pkg --exclude=!pkg/mod.py app /e/\n", project)
    assert sorted(layer) == [
        "/e",
        "/e/adapter.py",
        "/e/link.py",
        "/e/pkg",
        "/e/pkg/mod.py",
        "/e/run.sh",
    ]


# --------------------------------------------------------------------------- WORKDIR, layers


def test_workdir_creates_missing_directories_as_the_user(project: Path) -> None:
    _, layers = run_plan("FROM b\nWORKDIR /data/x\nWORKDIR /data\nWORKDIR /\n", project)
    assert [summary(layer) for layer in layers] == [
        {"/data": ("dir", 0o755, 1000, 1001), "/data/x": ("dir", 0o755, 1000, 1001)},
        {},
        {},
    ]
    with pytest.raises(DockerfileError, match="line 3: USER: unknown user 'ghost'"):
        run_plan("FROM b\nUSER ghost\nWORKDIR /g\n", project)
    with pytest.raises(DockerfileError, match="/opt/file exists in the image"):
        run_plan("FROM b\nWORKDIR /opt/file/x\n", project)


def test_overlay_view(project: Path) -> None:
    view, _ = run_plan("FROM b\nCOPY app /opt/file2/\nCOPY notes.txt /srv/existing\n", project)
    assert view.listdir("/srv") == ["existing", "taken"]
    assert view.listdir("/opt") == ["file", "file2"]
    assert "run.sh" in view.listdir("/opt/file2")
    info = view.info("/opt/file2/run.sh")
    assert info is not None and (info.kind, info.mode, info.size) == ("file", 0o755, 10)
    view.add(LayerEntry("/srv/existing", "file", data=b"now a file"))
    assert view.info("/srv/existing/notes.txt") is None  # hidden below a non-directory
    assert view.read_file("/srv/existing") == b"now a file"
    view.add(LayerEntry("/srv/taken", "whiteout"))
    assert view.info("/srv/taken") is None and view.listdir("/srv") == ["existing"]


def test_planned_entries_survive_the_layer_writer(project: Path) -> None:
    _, (layer,) = run_plan("FROM b\nCOPY --chown=1000:1001 app /opt/app/\n", project)
    sink = io.BytesIO()
    write_layer(layer, sink)
    with tarfile.open(fileobj=io.BytesIO(sink.getvalue()), mode="r:gz") as tar:
        written = {
            "/" + m.name: (
                "symlink" if m.issym() else "dir" if m.isdir() else "file",
                m.mode,
                m.uid,
                m.gid,
            )
            for m in tar.getmembers()
        }
    assert written == summary(layer)


# --------------------------------------------------------------------------- podman


PODMAN_DOCKERFILE = """\
FROM scratch
COPY etc/ /etc/
COPY a.txt /x/y/
COPY a.txt /x/renamed.txt
COPY b.sh /x
COPY dir /d1/
COPY dir/ /d2
COPY --chown=1000:1000 dir /o/p/
COPY --chown=app a.txt /own/name/
COPY --chown=app:staff dir/sub /own/group
COPY --chmod=0755 a.txt secret.txt /m/
COPY --chmod=0640 dir /m2/n
COPY *.txt /g/
COPY dir/* /g2/
COPY lnk /l/
COPY a.txt nomatch*.txt /pm/
WORKDIR /w
COPY a.txt .
COPY b.sh rel/
COPY secret.txt rel/deeper/s
"""


@pytest.fixture
def podman_project(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    files = {
        "a.txt": ("a\n", 0o644),
        "b.sh": ("#!/bin/sh\necho b\n", 0o755),
        "secret.txt": ("s\n", 0o600),
        "dir/c": ("c\n", 0o644),
        "dir/skip.log": ("ignored\n", 0o644),
        "dir/sub/d": ("dd\n", 0o640),
        "etc/passwd": ("root:x:0:0::/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\n", 0o644),
        "etc/group": ("root:x:0:\napp:x:1002:\nstaff:x:50:\n", 0o644),
        ".dockerignore": ("dir/*.log\n", 0o644),
        "Dockerfile": (PODMAN_DOCKERFILE, 0o644),
    }
    for rel, (content, mode) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(mode)
    (root / "dir" / "sub").chmod(0o700)
    for directory in (root, root / "dir", root / "etc"):
        directory.chmod(0o755)
    (root / "dir" / "link").symlink_to("c")
    (root / "lnk").symlink_to("a.txt")
    return root


def planned_listing(view: OverlayView) -> Listing:
    listing: Listing = {}
    for path, entry in view.entries.items():
        if entry.kind == "symlink":
            extra = entry.linkname or ""
        elif entry.kind == "file":
            assert entry.source is not None
            extra = str(entry.source.stat().st_size)
        else:
            extra = ""
        listing[path] = (entry.kind, entry.mode, entry.uid, entry.gid, extra)
    return listing


def test_same_result_as_podman(mini_podman: MiniPodman, podman_project: Path) -> None:
    engine = mini_podman.build_listing(podman_project, "mpkit-frontend-copy")
    view, _ = run_plan(
        PODMAN_DOCKERFILE, podman_project, base=MemoryFilesystem(), config=ImageConfig()
    )
    ours = planned_listing(view)
    assert "/d1/skip.log" not in ours and "/o/p/link" in ours
    differences = {
        path: (ours.get(path), engine.get(path))
        for path in sorted(set(ours) | set(engine))
        if ours.get(path) != engine.get(path)
    }
    assert differences == {}


@pytest.mark.parametrize(
    "line", ["COPY nomatch*.txt /x/", "ADD nomatch*.txt no[m]atch /x/", "COPY dir/*.log /x/"]
)
def test_sources_matching_nothing_fail_as_with_podman(
    mini_podman: MiniPodman, podman_project: Path, line: str
) -> None:
    text = f"FROM scratch\n{line}\n"
    (podman_project / "Dockerfile").write_text(text)
    built = mini_podman.engine.run("build", "--pull=never", str(podman_project), check=False)
    assert built.returncode != 0, built.stdout
    assert "no such file or directory" in built.stderr
    with pytest.raises(DockerfileError, match=r"line 2: .*no file in the build context matches"):
        run_plan(text, podman_project, base=MemoryFilesystem(), config=ImageConfig())
