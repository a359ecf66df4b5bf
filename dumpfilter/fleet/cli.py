"""``dumpfilter-triage``: many dumps, one record each, bucketed by crash
signature, on Dask.

Usage: ``dumpfilter-triage PATH... --out DIR [--scheduler tcp://HOST:8786 |
--workers N] [--timeout SECONDS] [--shrink [-d LEVEL] [-c|-l|-p|-z]
--shrink-dir DIR2] [--progress | --no-progress]``

PATHs are dump files or directories (searched recursively; the pieces of a
``--split`` dump are grouped into one dump). Writes ``DIR/dumps.jsonl``
(one record per dump), ``DIR/buckets.jsonl`` (one row per signature),
``DIR/dumps.parquet`` when pyarrow is installed, and prints the bucket
table. A re-run with the same ``--out`` triages only the dumps that have no
record yet (or whose size or mtime changed).

Exit status: 0 when every dump has a record (error records included); 1 on
a usage error or when the cluster cannot be used.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from dumpfilter.errors import UsageError

PROG = "dumpfilter-triage"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="triage many crash dumps on Dask: one record per dump, "
                "bucketed by crash signature")
    p.add_argument("paths", nargs="+", metavar="PATH", help="dump files or directories")
    p.add_argument("--out", required=True, metavar="DIR", help="where dumps.jsonl, buckets.jsonl "
                   "(and dumps.parquet) go; a re-run with the same DIR resumes")
    p.add_argument("--scheduler", metavar="ADDR", help="an existing Dask scheduler "
                   "(tcp://HOST:8786); default: a local cluster of worker processes")
    p.add_argument("--workers", type=int, metavar="N", help="worker processes of the local "
                   "cluster (default: the number of CPUs)")
    p.add_argument("--timeout", type=float, default=600, metavar="SECONDS",
                   help="per-dump limit; a dump over it is tried once more, then recorded as an "
                   "error (default 600)")
    p.add_argument("--shrink", action="store_true", help="also re-filter each dump into "
                   "--shrink-dir (the original is never touched)")
    p.add_argument("--shrink-dir", metavar="DIR2")
    p.add_argument("-d", dest="level", type=int, default=31, metavar="LEVEL",
                   help="dump level of --shrink (default 31)")
    codec = p.add_mutually_exclusive_group()
    for flag, name in (("-c", "zlib"), ("-l", "lzo"), ("-p", "snappy"), ("-z", "zstd")):
        codec.add_argument(flag, dest="codec", action="store_const", const=name,
                           help=f"--shrink output compressed with {name}")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="progress bar on stderr (default: when stderr is a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--no-isolate", action="store_true", help="run each triage in the worker "
                   "process itself (no fork, no --timeout)")
    p.add_argument("-D", "--debug", action="store_true", help="tracebacks for internal errors")
    return p


def _check(args) -> None:
    if args.shrink and not args.shrink_dir:
        raise UsageError("--shrink needs --shrink-dir DIR2")
    if args.shrink_dir and not args.shrink:
        raise UsageError("--shrink-dir needs --shrink")
    if not 0 <= args.level <= 31:
        raise UsageError(f"-d {args.level}: the dump level is 0 to 31")
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.scheduler and args.workers:
        raise UsageError("--workers is for the local cluster; not with --scheduler")
    for d in (args.out, args.shrink_dir):
        if d and os.path.exists(d) and not os.path.isdir(d):
            raise UsageError(f"{d}: not a directory")


def run(argv: Optional[List[str]] = None, stdout=None) -> int:
    from dumpfilter.fleet import store
    from dumpfilter.fleet.discover import discover
    from dumpfilter.fleet.engine import run_batch

    stdout = stdout if stdout is not None else sys.stdout
    args = build_parser().parse_args(argv)
    _check(args)
    out_dir = os.path.abspath(args.out)
    shrink = None
    if args.shrink:
        shrink_dir = os.path.abspath(args.shrink_dir)
        os.makedirs(shrink_dir, exist_ok=True)
        shrink = {"dir": shrink_dir, "level": args.level, "codec": args.codec}
    items = discover(args.paths, skip=[out_dir] + ([shrink["dir"]] if shrink else []))
    log = store.RecordLog(out_dir)
    todo = [it for it in items if it.key not in log.done]
    opts = {"timeout": None if args.no_isolate else args.timeout, "isolate": not args.no_isolate,
            "shrink": shrink}
    payload = [{"files": [f.as_list() for f in it.files], "key": it.key, "note": it.note,
                "stat_error": it.stat_error} for it in todo]
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    counts = {"complete": 0, "partial": 0, "error": 0}

    def on_record(rec):
        log.append(rec)
        counts[rec["status"]] = counts.get(rec["status"], 0) + 1

    try:
        info = run_batch(payload, opts, on_record, scheduler=args.scheduler, workers=args.workers,
                         progress=progress)
    finally:
        log.close()
    records = store.RecordLog(out_dir)
    try:
        recs = records.compact()
    finally:
        records.close()
    rows = store.buckets(recs)
    store.write_buckets(out_dir, rows)
    parquet = store.write_parquet(out_dir, recs)
    done = f"{len(items)} dumps found, {len(items) - len(todo)} already recorded; "
    if todo:
        done += (f"triaged {len(todo)} on {info['workers']} workers ({info['cluster']}): "
                 f"{counts['complete']} complete, {counts['partial']} partial, {counts['error']} error")
    else:
        done += "nothing to triage"
    stdout.write(done + "\n")
    stdout.write(f"records: {log.path}" + (f", {parquet}" if parquet else "") + "\n\n")
    stdout.write(store.format_table(rows))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from dumpfilter.exits import run_main

    argv = sys.argv[1:] if argv is None else argv
    return run_main(PROG, lambda: run(argv), debug=lambda: "-D" in argv or "--debug" in argv)


if __name__ == "__main__":
    sys.exit(main())
