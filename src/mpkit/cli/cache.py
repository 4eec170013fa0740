"""`mpkit cache` and `mpkit cache prune`."""

from __future__ import annotations

import argparse

from mpkit.cli.common import add_output_options
from mpkit.cli.output import Output, human_size
from mpkit.describe import forget_results
from mpkit.image.cache import default_cache_dir
from mpkit.imagebuild.cachedir import prune, summarize


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
        help="delete unreferenced blobs (or everything) and forget which container engines "
        "could not run containers",
    )
    drop.add_argument(
        "--all",
        action="store_true",
        help="empty the cache completely (also the adapter definitions found before)",
    )
    drop.add_argument(
        "--older-than",
        type=float,
        metavar="DAYS",
        help="first forget bases and dependency layers unused for DAYS days",
    )
    add_output_options(drop)
    drop.set_defaults(handler=cmd_prune)


def cmd_show(args: argparse.Namespace, out: Output) -> int:
    summary = summarize(default_cache_dir())
    lines = [
        f"Cache:        {summary.root}",
        f"Blobs:        {summary.blobs} ({human_size(summary.bytes)})",
        f"Dependency layers: {summary.layer_records}",
        "Base images:" if summary.images else "Base images:  none",
    ]
    lines += [f"  {name}  {digest}" for name, digest in sorted(summary.images.items())]
    out.result(summary.to_dict(), "\n".join(lines))
    return 0


def cmd_prune(args: argparse.Namespace, out: Output) -> int:
    root = default_cache_dir()
    freed = prune(root, everything=args.all, older_than_days=args.older_than)
    results_freed, forgotten = forget_results(root, everything=args.all)
    freed += results_freed
    text = f"freed {human_size(freed)}"
    if forgotten:
        text += f"; forgot {forgotten} container engine(s) found unable to run containers"
    out.result({"freed_bytes": freed, "engine_verdicts_forgotten": forgotten}, text)
    return 0
