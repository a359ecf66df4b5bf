"""``dumpfilter``: makedumpfile's command line, our engine.

Parsing and checking (``options``), messages (``messages``) and exit codes
(``dumpfilter.exits``) only; the work happens in ``dumpfilter.filter`` and
the writers. Exit status: 0 done, 1 failed (a bad command line included),
130/143 interrupted/terminated.
"""
from __future__ import annotations

import errno
import os
import sys
from typing import List, Optional

from dumpfilter import __version__
from dumpfilter.cli.messages import ML_DEBUG, ML_REPORT, Messages, format_report
from dumpfilter.cli.options import DEFAULT_MESSAGE_LEVEL, NO_EFFECT, help_text, parse
from dumpfilter.errors import IncompleteDumpError, UsageError
from dumpfilter.exits import EXIT_OK, run_main

#: errno values meaning "the output device is full" (-L raises ENOSPC too).
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _finish(msgs: Messages, stats, saved: str) -> int:
    for w in stats.warnings:
        msgs.common(f"WARNING: {w}")
    msgs.report(format_report(stats))
    msgs.common(saved)
    msgs.common("\ndumpfilter Completed.")
    return EXIT_OK


def _options(args, msgs: Messages, level: int):
    from dumpfilter.filter.encode import available_cpus
    from dumpfilter.filter.job import FilterOptions

    threads = args.num_threads or available_cpus()
    if args.work_dir is not None and not os.path.isdir(args.work_dir):
        raise UsageError(f"--work-dir {args.work_dir}: not a directory")
    return FilterOptions(level, args.codec, threads=threads, zlib_encoder=args.zlib_encoder,
                         dedup=args.dedup, progress=msgs.progress, work_dir=args.work_dir)


def _open(args, path: str):
    from dumpfilter.readers import open_dump

    return open_dump(path, use_mmap=not args.non_mmap)


def _require_elf_input(source, elf: bool) -> None:
    from dumpfilter.readers.elf import ElfSource

    if elf and not isinstance(source, ElfSource):
        raise UsageError(f"-E needs an ELF input; {source.path} is {source.format_name}")


def _job(args):
    from dumpfilter.filter.job import filter_elf, filter_kdump

    return filter_elf if args.elf else filter_kdump


def run_flat(args, msgs: Messages) -> int:
    """``-F``: the dump as a flattened stream on standard output."""
    from dumpfilter.writers.flattened import FlatSink
    from dumpfilter.writers.sink import NullSink

    if not args.dry_run:
        try:
            os.fstat(1)
        except OSError:
            raise OSError(errno.EBADF, "standard output is closed: nowhere to write the "
                                       "flattened stream") from None
    with _open(args, args.paths[0]) as source:
        _require_elf_input(source, args.elf)
        sink = NullSink() if args.dry_run else FlatSink(1)
        stats = _job(args)(source, sink, _options(args, msgs, args.levels[0]))
        if not args.dry_run:
            sink.finish()
    return _finish(msgs, stats, "The dumpfile is written to standard output.")


def run_split(args, msgs: Messages) -> int:
    from dumpfilter.filter.split import split_dump

    if args.dry_run:
        raise UsageError("--dry-run cannot be used with --split")
    with _open(args, args.paths[0]) as source:
        stats = split_dump(source, args.paths[1:], _options(args, msgs, args.levels[0]),
                           force=args.force, splitblock_kb=args.splitblock_size)
    outs = args.paths[1:]
    return _finish(msgs, stats, "The dumpfiles are saved to " + ", ".join(outs[:-1])
                   + f", and {outs[-1]}.")


def run_file(args, msgs: Messages) -> int:
    """VMCORE DUMPFILE, with the ``-d a,b,..`` fallback levels when the
    output device fills up (or ``-L`` is reached)."""
    from dumpfilter.writers.output import OutputFile, check_output_path
    from dumpfilter.writers.sink import FileSink, NullSink

    vmcore, dumpfile = args.paths
    with _open(args, vmcore) as source:
        msgs.debug(f"opened {vmcore}: {source.format_name}, {source.max_pfn} pfns")
        _require_elf_input(source, args.elf)
        job = _job(args)
        if args.dry_run:
            check_output_path(dumpfile, args.force, [vmcore])
            stats = job(source, NullSink(), _options(args, msgs, args.levels[0]))
            return _finish(msgs, stats, f"The dumpfile would be saved to {dumpfile} (--dry-run).")
        for i, level in enumerate(args.levels):
            last = i == len(args.levels) - 1
            with OutputFile(dumpfile, args.force or i > 0, [vmcore]) as out:
                try:
                    stats = job(source, FileSink(out.fd, args.limit), _options(args, msgs, level))
                except OSError as e:
                    if e.errno not in _NO_SPACE or args.elf:
                        raise
                    if not last:
                        msgs.common(f"{dumpfile}: {e.strerror}; retrying with dump level "
                                    f"{args.levels[i + 1]}")
                        out.discard()
                        continue
                    # kdump format: the headers written first say INCOMPLETE,
                    # and every descriptor on disk has its data.
                    out.keep()
                    raise IncompleteDumpError(
                        f"{dumpfile}: {e.strerror}: the dump is incomplete (marked so in its "
                        "header); it may still be analysable") from None
                out.keep()
                break
    msgs.debug("output closed")
    return _finish(msgs, stats, f"The dumpfile is saved to {dumpfile}.")


def run_rearrange(args, msgs: Messages) -> int:
    """``-R DUMPFILE``: a regular file rebuilt from a flattened stream on
    standard input (makedumpfile -R)."""
    from dumpfilter.writers.output import OutputFile
    from dumpfilter.writers.rebuild import rebuild

    (out,) = args.paths
    with OutputFile(out, args.force, [0]) as f:
        with os.fdopen(os.dup(0), "rb") as stream:
            rebuild(stream, f.fd)
        f.keep()
    msgs.common(f"The dumpfile is saved to {out}.")
    msgs.common("\ndumpfilter Completed.")
    return EXIT_OK


def run_reassemble(args, msgs: Messages) -> int:
    from dumpfilter.writers.reassemble import reassemble

    if len(args.paths) < 3:
        raise UsageError("--reassemble expects DUMPFILE1 DUMPFILE2 [...] DUMPFILE")
    reassemble(args.paths[:-1], args.paths[-1], force=args.force)
    msgs.common(f"The dumpfile is saved to {args.paths[-1]}.")
    msgs.common("\ndumpfilter Completed.")
    return EXIT_OK


def run_dump_dmesg(args, msgs: Messages) -> int:
    """``--dump-dmesg VMCORE LOGFILE``: the log as makedumpfile writes it."""
    from dumpfilter.report.context import ReportContext
    from dumpfilter.report.printk import read_printk
    from dumpfilter.writers.output import OutputFile, check_output_path

    vmcore, logfile = args.paths
    check_output_path(logfile, args.force, [vmcore])
    with ReportContext(_open(args, vmcore)) as ctx:
        text = read_printk(ctx.mem, ctx.info, partial=args.partial_dmesg).dump_dmesg()
    with OutputFile(logfile, args.force, [vmcore]) as out:
        view = memoryview(text)
        while view:
            view = view[os.write(out.fd, view):]
        out.keep()
    msgs.common(f"\nThe dmesg log is saved to {logfile}.")
    msgs.common("\ndumpfilter Completed.")
    return EXIT_OK


_RUN = {"file": run_file, "flat": run_flat, "split": run_split, "rearrange": run_rearrange,
        "reassemble": run_reassemble, "dmesg": run_dump_dmesg}


def _usage_text() -> str:
    from dumpfilter.codecs import CODECS

    return "\n".join([help_text().rstrip(), "",
                      "codecs: " + ", ".join(f"{c.option} {c.name}" for c in CODECS.values())])


def _run(argv: Optional[List[str]], state: dict) -> int:
    args, mode = parse(argv)
    state["debug"], state["mode"] = args.debug, mode
    if args.help:
        print(_usage_text())
        return EXIT_OK
    if args.version:
        print(f"dumpfilter: version {__version__}")
        return EXIT_OK
    if args.check_params:
        return EXIT_OK  # makedumpfile: the command line is valid, nothing is read
    level = DEFAULT_MESSAGE_LEVEL if args.message_level is None else args.message_level
    if args.show_stats:
        level |= ML_REPORT
    if args.debug:
        level |= ML_DEBUG
    msgs = Messages(level, to_stderr=args.flat)
    try:
        msgs.debug(f"dumpfilter: version {__version__}")
        msgs.debug("command line: " + " ".join(["dumpfilter", *(argv if argv is not None
                                                                 else sys.argv[1:])]))
        for dest, (spelling, why) in NO_EFFECT.items():
            if getattr(args, dest) not in (None, False):
                msgs.debug(f"{spelling}: accepted, not needed ({why})")
        return _RUN[mode](args, msgs)
    finally:
        msgs.close()


def main(argv: Optional[List[str]] = None) -> int:
    state = {"debug": False, "mode": None}
    # Standard output closed early is an error only when it carries the
    # dump (-F): the stream is then incomplete.
    return run_main("dumpfilter", lambda: _run(argv, state), debug=lambda: state["debug"],
                    quiet_broken_pipe=lambda: state["mode"] != "flat")


__all__ = ["main", "Messages", "format_report"]
