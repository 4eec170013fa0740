"""`mpkit cache` and `mpkit cache prune`."""

from __future__ import annotations

import argparse

from mpkit.cache.prune import prune, summarize
from mpkit.cache.root import CacheRoot
from mpkit.cli.common import add_output_options
from mpkit.cli.output import Output, human_size
from mpkit.engine.health import EngineHealth


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cache = subparsers.add_parser("cache", help="show or prune mpkit's image and layer cache")
    add_output_options(cache)
    cache.set_defaults(handler=cmd_show)
    verbs = cache.add_subparsers(dest="verb", metavar="VERB")
    show = verbs.add_parser("show", help="where the cache is and what it holds (default)")
    add_output_options(show)
    show.set_defaults(handler=cmd_show)
    drop = verbs.add_parser(
        "prune",
        help="delete what nothing refers to and what killed runs left (or everything), and "
        "forget which container engines could not run containers",
    )
    drop.add_argument("--all", action="store_true", help="empty the cache completely")
    drop.add_argument(
        "--older-than",
        type=float,
        metavar="DAYS",
        help="first forget bases, dependency layers and other entries unused for DAYS days",
    )
    add_output_options(drop)
    drop.set_defaults(handler=cmd_prune)


def cmd_show(args: argparse.Namespace, out: Output) -> int:
    summary = summarize(CacheRoot.default())
    version = f"format {summary.format}" if summary.format is not None else "empty"
    lines = [
        f"Cache:        {summary.root} ({version}, {human_size(summary.total_bytes)})",
        f"Blobs:        {summary.blobs} ({human_size(summary.bytes)})",
        f"Dependency layers: {summary.layer_records}",
        "Base images:" if summary.images else "Base images:  none",
    ]
    lines += [f"  {name}  {digest}" for name, digest in sorted(summary.images.items())]
    if summary.areas:
        lines.append("Contents:")
    for area in summary.areas:
        size = f"-> {area.link}" if area.link is not None else human_size(area.bytes)
        lines.append(f"  {area.name:<18} {size:>10}  {area.what}")
    if summary.others:
        lines.append(f"Not mpkit's (left alone): {', '.join(summary.others)}")
    out.result(summary.to_dict(), "\n".join(lines))
    return 0


def cmd_prune(args: argparse.Namespace, out: Output) -> int:
    freed = prune(CacheRoot.default(), everything=args.all, older_than_days=args.older_than)
    forgotten = EngineHealth.default().forget()
    text = f"freed {human_size(freed)}"
    if forgotten:
        text += f"; forgot {forgotten} container engine(s) found unable to run containers"
    out.result({"freed_bytes": freed, "engine_verdicts_forgotten": forgotten}, text)
    return 0
