"""`mpkit preload`: the documented workaround for a private registry, in one step.

A cloud proxy looks for the image locally before it pulls anonymously, so an image
pulled beforehand with credentials lets a pack from a private repository install. The
script does that pull on a proxy; ``--archive`` also exports the image as a
docker-archive for proxies that cannot reach the registry at all.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mpkit import __version__
from mpkit.atomicfile import TempDir, remove_stale, write_bytes
from mpkit.credentials import Credential
from mpkit.errors import UsageError
from mpkit.image.archive_writer import write_docker_archive
from mpkit.image.layout import OCILayoutWriter, read_oci_layout
from mpkit.image.select import DEFAULT_PLATFORM
from mpkit.reference import Reference
from mpkit.registry import ClientOptions, open_client, pull_image
from mpkit.verify.target import pack_image, read_pack

SCRIPT_MODE = 0o755


@dataclass(frozen=True)
class ArchiveInfo:
    """An exported image archive and what identifies its content."""

    path: Path
    name: str  # REGISTRY/REPOSITORY:TAG, the name it loads under
    image_digest: str  # the linux/amd64 image manifest inside it
    config_digest: str  # the image ID docker and podman give it

    @property
    def image_id(self) -> str:
        return self.config_digest


@dataclass(frozen=True)
class Preload:
    """What ``mpkit preload`` wrote for a pack."""

    image: Reference  # REGISTRY/REPOSITORY@DIGEST, as the pack records it
    script: Path
    archive: ArchiveInfo | None
    warnings: tuple[str, ...] = ()


def preload_pack(
    pack: Path,
    script: Path,
    *,
    archive: Path | None = None,
    default_registry: str | None = None,
    options: ClientOptions | None = None,
    credential: Credential | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> Preload:
    """Write the preload script for *pack* to *script* and, with *archive*, pull the image
    with the user's credentials into that docker-archive first."""
    contents, problems = read_pack(pack)
    if problems:
        raise UsageError(
            f"{pack} is inconsistent: {problems[0]}",
            hint="run 'mpkit verify' on it and rebuild it with mpkit build",
        )
    ref = pack_image(contents).reference(default_registry)
    exported = None
    warnings: list[str] = []
    if archive is not None:
        say(f"pulling {ref.registry}/{ref.path}@{ref.digest} into {archive}")
        exported = export_archive(
            ref, archive, options=options or ClientOptions(), credential=credential
        )
        if exported.image_digest != ref.digest:
            warnings.append(
                f"the pack's digest names a multi-platform index; the archive holds its "
                f"linux/amd64 image {exported.image_digest}. A cloud proxy that looks for "
                f"{ref.digest} may not find a loaded archive: prefer the registry pull"
            )
    write_script(script, render_script(ref, pack_name=pack.name, archive=exported))
    return Preload(image=ref, script=script, archive=exported, warnings=tuple(warnings))


def local_name(ref: Reference) -> str:
    """The name the preloaded image carries: the pack's REGISTRY/REPOSITORY:TAG."""
    return f"{ref.repository}:{ref.tag or 'preloaded'}"


def export_archive(
    ref: Reference,
    path: Path,
    *,
    options: ClientOptions,
    credential: Credential | None = None,
) -> ArchiveInfo:
    """Pull *ref* (with the user's credentials) and write it to *path* as a docker-archive
    that ``docker load``, ``podman load`` and ``ctr import`` accept, named for the pack."""
    name = local_name(ref)
    path.parent.mkdir(parents=True, exist_ok=True)
    # What an earlier, killed export left here (older versions named it .mpkit-preload-*).
    remove_stale(path.parent, also=lambda name: name.startswith(".mpkit-preload-"))
    with TempDir(path.parent, f"{path.name}.layout") as work:
        layout = work.path / "layout"
        with open_client(ref.registry, options=options, explicit=credential) as client:
            pulled = pull_image(
                client, ref, OCILayoutWriter(layout), tag="preload", platform=DEFAULT_PLATFORM
            )
        image = read_oci_layout(layout, "preload", DEFAULT_PLATFORM)
        write_docker_archive(image, path, [name])
    return ArchiveInfo(
        path=path, name=name, image_digest=pulled.digest, config_digest=image.config.digest
    )


def render_script(ref: Reference, *, pack_name: str, archive: ArchiveInfo | None = None) -> str:
    """The POSIX shell script for a cloud proxy. It holds no secrets."""
    assert ref.digest is not None
    values = {
        "REGISTRY": ref.registry,
        "REPOSITORY": ref.path,
        "DIGEST": ref.digest,
        "LOCAL_NAME": local_name(ref),
        "ARCHIVE_IMAGE_ID": archive.config_digest if archive else "",
    }
    assignments = "\n".join(f"{key}={shlex.quote(value)}" for key, value in values.items())
    header = _HEADER.format(
        version=__version__,
        pack=pack_name.replace("\n", " "),
        image=f"{ref.registry}/{ref.path}@{ref.digest}",
    )
    return header + assignments + "\n" + _BODY


def write_script(path: Path, text: str) -> None:
    """Write atomically, executable."""
    write_bytes(path, text.encode("utf-8"), mode=SCRIPT_MODE)


_HEADER = """\
#!/bin/sh
# Preload the adapter image of the management pack {pack} on an Aria Operations
# cloud proxy (written by mpkit {version}). Cloud proxies pull adapter images only
# anonymously, but they look for the image locally first: run this on EVERY cloud
# proxy, as a user allowed to run docker (usually root), before installing the pack.
#
#   sh preload.sh            log in, pull {image}, check its digest, log out
#   sh preload.sh FILE.tar   load an image archive written by 'mpkit preload --archive'
#
# This file holds no secrets. The registry login comes from REGISTRY_USERNAME and
# REGISTRY_PASSWORD in the environment, or is asked for on a terminal. It is kept in a
# temporary directory that is removed at the end. CONTAINER_ENGINE=docker|podman picks
# the engine (default: docker if its daemon answers, else podman).
set -eu

"""

_BODY = r"""IMAGE="$REGISTRY/$REPOSITORY@$DIGEST"

say() { printf 'preload: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

pick_engine() {
    if [ -n "${CONTAINER_ENGINE:-}" ]; then
        ENGINE=$CONTAINER_ENGINE
    elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        ENGINE=docker
    elif command -v podman >/dev/null 2>&1; then
        ENGINE=podman
    else
        die "neither a working docker nor podman was found (set CONTAINER_ENGINE)"
    fi
    command -v "$ENGINE" >/dev/null 2>&1 || die "$ENGINE is not installed"
}

# Registry commands use a private credential store, so the proxy's own logins are
# neither used nor changed.
engine_auth() {
    sub=$1
    shift
    if [ "$ENGINE" = docker ]; then
        docker --config "$AUTH_DIR" "$sub" "$@"
    else
        "$ENGINE" "$sub" --authfile "$AUTH_DIR/auth.json" "$@"
    fi
}

has_digest() {
    # RepoDigests lists REPOSITORY@DIGEST for an image pulled by digest.
    "$ENGINE" image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$1" \
        2>/dev/null | grep -q "@$DIGEST\$"
}

image_id() {
    "$ENGINE" image inspect --format '{{.Id}}' "$1" 2>/dev/null | sed 's/^sha256://'
}

read_login() {
    user=${REGISTRY_USERNAME:-}
    if [ -z "$user" ]; then
        [ -t 0 ] || die "set REGISTRY_USERNAME and REGISTRY_PASSWORD (no terminal to ask on)"
        printf 'Username for %s: ' "$REGISTRY" >&2
        IFS= read -r user || true
    fi
    if [ -n "${REGISTRY_PASSWORD+set}" ]; then
        password=$REGISTRY_PASSWORD
        unset REGISTRY_PASSWORD
    else
        [ -t 0 ] || die "set REGISTRY_PASSWORD (no terminal to ask on)"
        printf 'Password for %s at %s: ' "$user" "$REGISTRY" >&2
        stty -echo
        IFS= read -r password || true
        stty echo
        printf '\n' >&2
    fi
    [ -n "$user" ] && [ -n "$password" ] || die "the user name and password must not be empty"
}

cleanup() {
    if [ -n "${AUTH_DIR:-}" ]; then
        [ -n "${LOGGED_OUT:-}" ] || engine_auth logout "$REGISTRY" >/dev/null 2>&1 || true
        rm -rf "$AUTH_DIR"
    fi
}

pull_from_registry() {
    AUTH_DIR=$(mktemp -d)
    chmod 700 "$AUTH_DIR"
    # Without any login in config.json docker would keep the login in a credential store
    # of its own choosing (pass, secretservice), outside this directory.
    printf '{"auths": {"%s": {}}}\n' "$REGISTRY" > "$AUTH_DIR/config.json"
    trap cleanup EXIT
    trap 'stty echo 2>/dev/null; exit 130' INT TERM HUP
    read_login
    say "logging in to $REGISTRY as $user"
    printf '%s\n' "$password" | engine_auth login --username "$user" --password-stdin "$REGISTRY" \
        >/dev/null || die "the login to $REGISTRY failed"
    password=
    say "pulling $IMAGE"
    engine_auth pull "$IMAGE" || die "the pull of $IMAGE failed"
    has_digest "$IMAGE" || die "$ENGINE does not list $IMAGE with digest $DIGEST after the pull"
    say "logging out of $REGISTRY"
    engine_auth logout "$REGISTRY" >/dev/null 2>&1 || true
    LOGGED_OUT=1
}

load_archive() {
    file=$1
    [ -n "$ARCHIVE_IMAGE_ID" ] ||
        die "written without --archive: run 'mpkit preload --archive FILE PACK' for one"
    [ -f "$file" ] || die "no archive at $file"
    say "loading $file"
    "$ENGINE" load --input "$file" || die "$ENGINE load failed for $file"
    has_digest "$LOCAL_NAME" && return
    [ "$(image_id "$LOCAL_NAME")" = "${ARCHIVE_IMAGE_ID#sha256:}" ] ||
        die "the image loaded as $LOCAL_NAME is not the pack's image ($ARCHIVE_IMAGE_ID)"
    # Docker's classic image store records a digest only when it pulls (moby/moby#22011).
    die "$ENGINE loaded the pack's image as $LOCAL_NAME, but records no digest for a" \
        "loaded image, so a cloud proxy looking for $IMAGE will not find it and will pull" \
        "it anonymously. On a proxy that reaches $REGISTRY, run this script without FILE" \
        "(a pull records the digest)."
}

pick_engine
if [ "$#" -gt 0 ]; then
    load_archive "$1"
else
    pull_from_registry
    "$ENGINE" tag "$IMAGE" "$LOCAL_NAME"
fi
say "done: $ENGINE has $LOCAL_NAME ($IMAGE) in its local storage"
"""
