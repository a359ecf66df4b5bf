"""``dumpfilter``: makedumpfile's command line, our engine.

Argument parsing, messages and exit codes only; the work happens in
``dumpfilter.filter`` and friends. Exit codes are makedumpfile's: 0 done,
1 failed (any error, including bad arguments), 2 wrong release.
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import time
from typing import List, Optional, Tuple

from dumpfilter import __version__
from dumpfilter.encode import ZLIB_ENCODERS, available_cpus
from dumpfilter.errors import DumpFilterError, IncompleteDumpError, OutputExistsError, UsageError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_WRONG_RELEASE = 2

#: errno values meaning "the output device is full" (-L raises ENOSPC too).
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

ML_PROGRESS, ML_COMMON, ML_ERROR, ML_DEBUG, ML_REPORT = 1, 2, 4, 8, 16
DEFAULT_MESSAGE_LEVEL = 7

_CODEC_OPTIONS = {"c": "zlib", "l": "lzo", "p": "snappy", "z": "zstd"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, makedumpfile's exit code
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="dumpfilter",
        usage="dumpfilter [-c|-l|-p|-z|-E] [-d LEVEL] [--message-level N] [-f] [-D] VMCORE DUMPFILE\n"
              "       dumpfilter -F [-c|-l|-p|-z|-E] [-d LEVEL] VMCORE > STREAM\n"
              "       dumpfilter -R DUMPFILE < STREAM\n"
              "       dumpfilter --split [-c|-l|-p|-z] [-d LEVEL] VMCORE DUMPFILE1 DUMPFILE2 [...]\n"
              "       dumpfilter --reassemble DUMPFILE1 DUMPFILE2 [...] DUMPFILE",
        description="Filter and compress a Linux crash dump into the kdump-compressed "
                    "format (makedumpfile-compatible options).",
        add_help=False,
    )
    comp = p.add_mutually_exclusive_group()
    comp.add_argument("-c", dest="codec", action="store_const", const="zlib",
                      help="compress each page with zlib (level 1)")
    comp.add_argument("-l", dest="codec", action="store_const", const="lzo",
                      help="compress each page with LZO1X-1")
    comp.add_argument("-p", dest="codec", action="store_const", const="snappy",
                      help="compress each page with snappy")
    comp.add_argument("-z", dest="codec", action="store_const", const="zstd",
                      help="compress each page with zstd (level 1)")
    p.add_argument("-d", dest="dump_level", default="0", metavar="LEVEL",
                   help="dump level 0-31 (1 zero, 2 cache, 4 cache+private, 8 user, 16 free); "
                        "a comma list gives fallback levels, the first is used")
    p.add_argument("-L", dest="size_limit", default=None, metavar="SIZE",
                   help="stop writing at SIZE bytes (K/M/G/T suffixes); the dump is then "
                        "marked incomplete, as on a full disk")
    p.add_argument("--message-level", type=int, default=DEFAULT_MESSAGE_LEVEL, metavar="N",
                   help="message bitmask: 1 progress, 2 common, 4 error, 8 debug, 16 report")
    p.add_argument("--show-stats", action="store_true", help="print the page-count report")
    p.add_argument("--num-threads", type=int, default=None, metavar="N",
                   help="compression threads (default: all CPUs this process may use)")
    p.add_argument("--dedup", action="store_true",
                   help="identical pages share one stored block (xxh3 + byte compare); "
                        "needs a seekable DUMPFILE")
    p.add_argument("--zlib-encoder", choices=ZLIB_ENCODERS, default="zlib",
                   help="zlib-format encoder for -c: zlib (default; makedumpfile's exact, "
                        "reproducible bytes) or isal (several times faster; bytes vary by run)")
    p.add_argument("--dump-dmesg", action="store_true",
                   help="write the kernel log of VMCORE to LOGFILE (makedumpfile's format)")
    p.add_argument("-E", dest="elf", action="store_true",
                   help="write an ELF dump instead of kdump-compressed (ELF input only)")
    p.add_argument("-F", dest="flat", action="store_true",
                   help="write the dump as a flattened stream to standard output")
    p.add_argument("-R", dest="rearrange", metavar="DUMPFILE", default=None,
                   help="rebuild DUMPFILE from a flattened stream on standard input")
    p.add_argument("--split", action="store_true",
                   help="write the dump into several files (VMCORE DUMPFILE1 DUMPFILE2 ...)")
    p.add_argument("--reassemble", action="store_true",
                   help="merge split files into one (DUMPFILE1 DUMPFILE2 ... DUMPFILE)")
    p.add_argument("--splitblock-size", type=int, default=None, metavar="KB",
                   help="granularity of --split piece boundaries in KiB (default 1 GiB)")
    p.add_argument("-f", dest="force", action="store_true", help="overwrite an existing DUMPFILE")
    p.add_argument("-D", dest="debug", action="store_true", help="print debugging messages")
    p.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    p.add_argument("-v", dest="version", action="store_true", help="show the version and exit")
    p.add_argument("paths", nargs="*", metavar="VMCORE DUMPFILE")
    return p


def parse_dump_levels(text: str) -> List[int]:
    """``-d 31`` or ``-d 31,11``: the level, then fallbacks used when the
    output device fills up."""
    levels = []
    for part in text.split(","):
        try:
            v = int(part, 10)
        except ValueError:
            raise UsageError(f"invalid dump level {part!r}") from None
        if not 0 <= v <= 31:
            raise UsageError(f"dump level {v} is out of range (0-31)")
        levels.append(v)
    return levels


_SIZE_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50,
                "E": 1 << 60}


def parse_size(text: str) -> int:
    """``-L SIZE``: bytes with an optional K/M/G/T/P/E suffix."""
    t = text.strip().upper()
    suffix = t[-1:] if t[-1:] in _SIZE_SUFFIX and not t[-1:].isdigit() else ""
    number = t[: len(t) - len(suffix)]
    if not number.isdigit() or int(number) == 0:
        raise UsageError(f"invalid size {text!r} for -L (e.g. 512M)")
    return int(number) * _SIZE_SUFFIX[suffix]


class Messages:
    """makedumpfile's message classes, on stderr."""

    SPINNER = "/|\\-"

    def __init__(self, level: int, tty: Optional[bool] = None):
        self.level = level
        self.tty = sys.stderr.isatty() if tty is None else tty
        self._last_progress = 0.0
        self._step: Optional[str] = None
        self._step_start = 0.0
        self._lapse = 0
        self.step_times: List[Tuple[str, float]] = []

    def common(self, text: str) -> None:
        if self.level & ML_COMMON:
            print(text, file=sys.stderr)

    def error(self, text: str) -> None:
        if self.level & ML_ERROR:
            print(f"dumpfilter: {text}", file=sys.stderr)

    def report(self, text: str) -> None:
        if self.level & ML_REPORT:
            print(text, file=sys.stderr)

    def progress(self, step: str, done: int, total: int) -> None:
        """A step's progress: a bar on a terminal, makedumpfile's
        ``STEP : [ 42.0 %] /  eta: 1s`` lines otherwise; with the report
        level, ``STEP [name] : N seconds`` when a step ends."""
        now = time.monotonic()
        if step != self._step:
            self._step, self._step_start, self._lapse = step, now, 0
        finished = done >= total
        if self.level & ML_PROGRESS:
            if self.tty:
                self._draw_bar(step, done, total, now)
            elif finished or now - self._last_progress >= 1.0:
                self._last_progress = now
                permille = done * 1000 // total if total else 1000
                eta = ""
                if 0 < permille < 1000:
                    eta = f"eta: {int((now - self._step_start) * (1000 - permille) / permille)}s"
                spin = self.SPINNER[self._lapse % 4]
                self._lapse += 1
                print(f"\r{step:<50}: [{permille // 10:3d}.{permille % 10} %] {spin}  {eta:>16}",
                      end="\n" if finished else "", file=sys.stderr, flush=True)
        if finished:
            elapsed = now - self._step_start
            self.step_times.append((step, elapsed))
            self.report(f"STEP [{step}] : {elapsed:.6f} seconds")
            self._step = None

    def _draw_bar(self, step: str, done: int, total: int, now: float) -> None:
        """A progress bar redrawn in place (terminals only), at most ten
        times a second."""
        finished = done >= total
        if not finished and now - self._last_progress < 0.1:
            return
        self._last_progress = now
        frac = done / total if total else 1.0
        width = 30
        fill = int(frac * width)
        elapsed = now - self._step_start
        eta = f" eta {int(elapsed * (1 - frac) / frac)}s" if 0 < frac < 1 else f" {elapsed:.1f}s"
        print(f"\r{step:<28} |{'#' * fill}{' ' * (width - fill)}| {100 * frac:5.1f}%{eta:<12}",
              end="\n" if finished else "", file=sys.stderr, flush=True)


def format_report(stats) -> str:
    """makedumpfile's page-count table. Unlike makedumpfile, pages aliased
    by two PT_LOADs (the kernel image in /proc/vmcore) are counted once."""
    ex = stats.excluded
    lines = [
        "",
        f"Original pages  : 0x{stats.original:016x}",
        f"  Excluded pages   : 0x{stats.excluded_total:016x}",
        f"    Pages filled with zero  : 0x{ex.get('zero', 0):016x}",
        f"    Non-private cache pages : 0x{ex.get('cache', 0):016x}",
        f"    Private cache pages     : 0x{ex.get('cache_private', 0):016x}",
        f"    User process data pages : 0x{ex.get('user', 0):016x}",
        f"    Free pages              : 0x{ex.get('free', 0):016x}",
        f"    Hwpoison pages          : 0x{ex.get('hwpoison', 0):016x}",
        f"    Offline pages           : 0x{ex.get('offline', 0):016x}",
        f"  Remaining pages  : 0x{stats.remaining:016x}",
    ]
    if stats.original:
        lines.append(f"  (The number of pages is reduced to {stats.remaining * 100 // stats.original}%.)")
    lines += [
        f"Memory Hole     : 0x{stats.memory_hole:016x}",
        "--------------------------------------------------",
        f"Total pages     : 0x{stats.max_mapnr:016x}",
        f"Write bytes     : {stats.bytes_written}",
    ]
    if getattr(stats, "dedup_pages", 0):
        lines.append(f"Deduplicated    : 0x{stats.dedup_pages:016x} pages, "
                     f"{stats.dedup_bytes_saved} bytes not written")
    lines.append("")
    return "\n".join(lines)


def _open_output(path: str, force: bool) -> int:
    flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        return os.open(path, flags, 0o644)
    except FileExistsError:
        raise OutputExistsError(f"{path} already exists; use -f to overwrite it") from None


def _check_mode_args(args) -> None:
    """makedumpfile's option rules (reference §6.4)."""
    if args.elf and args.codec:
        raise UsageError("-E cannot be combined with -c, -l, -p or -z")
    if args.split and args.flat:
        raise UsageError("--split cannot be combined with -F")
    if args.split and args.elf:
        raise UsageError("--split cannot be combined with -E")
    if args.dedup and (args.elf or args.flat):
        raise UsageError("--dedup needs kdump-compressed output to a file (not -E or -F)")
    if args.splitblock_size is not None and not args.split:
        raise UsageError("--splitblock-size needs --split")
    if args.splitblock_size is not None and args.splitblock_size < 1:
        raise UsageError("--splitblock-size must be at least 1 (KiB)")


def _finish_report(args, msgs: Messages, stats, saved: str) -> int:
    for w in stats.warnings:
        msgs.common(f"WARNING: {w}")
    if args.show_stats:
        msgs.level |= ML_REPORT
    msgs.report(format_report(stats))
    msgs.common(saved)
    msgs.common("\ndumpfilter Completed.")
    return EXIT_OK


def _run_job(source, sink, options, elf: bool):
    from dumpfilter.filter import filter_dump

    if elf:
        from dumpfilter.writers.elf import filter_dump_elf

        return filter_dump_elf(source, sink, options)
    return filter_dump(source, sink, options)


def _require_elf_input(source, elf: bool) -> None:
    from dumpfilter.readers.elf import ElfSource

    if elf and not isinstance(source, ElfSource):
        raise UsageError(f"-E needs an ELF input; {source.path} is {source.format_name}")


def run_filter(args, msgs: Messages) -> int:
    from dumpfilter.filter import FilterOptions
    from dumpfilter.readers import open_dump
    from dumpfilter.writers.kdump import FileSink

    _check_mode_args(args)
    levels = parse_dump_levels(args.dump_level)
    level = levels[0]
    threads = available_cpus() if args.num_threads is None else args.num_threads
    if threads < 1:
        raise UsageError("--num-threads must be at least 1")
    options = FilterOptions(level, args.codec, threads=threads,
                            zlib_encoder=args.zlib_encoder,
                            dedup=args.dedup,
                            progress=msgs.progress)
    if args.split:
        from dumpfilter.writers.split import split_dump

        if len(args.paths) < 3:
            raise UsageError("--split expects VMCORE DUMPFILE1 DUMPFILE2 [...]")
        stats = split_dump(args.paths[0], args.paths[1:], options, force=args.force,
                           splitblock_kb=args.splitblock_size)
        return _finish_report(args, msgs, stats,
                              "The dumpfiles are saved to " + ", ".join(args.paths[1:]) + ".")
    if args.flat:
        from dumpfilter.writers.flattened import FlatSink

        if len(args.paths) != 1:
            raise UsageError("-F expects only VMCORE (the stream goes to standard output)")
        source = open_dump(args.paths[0])
        try:
            _require_elf_input(source, args.elf)
            sink = FlatSink(sys.stdout.fileno())
            stats = _run_job(source, sink, options, args.elf)
            sink.finish()
        finally:
            source.close()
        return _finish_report(args, msgs, stats, "The dumpfile is written to standard output.")

    if len(args.paths) != 2:
        raise UsageError("expected VMCORE DUMPFILE")
    vmcore, dumpfile = args.paths
    limit = parse_size(args.size_limit) if args.size_limit is not None else None
    source = open_dump(vmcore)
    try:
        _require_elf_input(source, args.elf)
        for i, level in enumerate(levels):
            options.dump_level = level
            last = i == len(levels) - 1
            fd = _open_output(dumpfile, args.force or i > 0)
            keep = False
            try:
                stats = _run_job(source, FileSink(fd, limit), options, args.elf)
                keep = True
                break
            except OSError as e:
                if e.errno not in _NO_SPACE or args.elf:
                    raise
                if not last:
                    msgs.common(f"{dumpfile}: {e.strerror}; retrying with dump level {levels[i + 1]}")
                    continue
                # kdump format: the headers written first say INCOMPLETE,
                # and every descriptor on disk has its data.
                keep = True
                raise IncompleteDumpError(
                    f"{dumpfile}: {e.strerror}: the dump is incomplete (marked so in its "
                    "header); it may still be analysable") from None
            finally:
                os.close(fd)
                if not keep:
                    # Never leave a file that could pass for a finished dump.
                    try:
                        os.unlink(dumpfile)
                    except OSError:
                        pass
    finally:
        source.close()
    return _finish_report(args, msgs, stats, f"The dumpfile is saved to {dumpfile}.")


def run_rearrange(args, msgs: Messages) -> int:
    """``-R DUMPFILE``: rebuild a regular file from a flattened stream on
    standard input (makedumpfile -R)."""
    from dumpfilter.readers.flattened import rebuild

    if args.paths:
        raise UsageError("-R DUMPFILE takes the stream on standard input and no other path")
    if args.flat or args.split or args.reassemble or args.elf or args.codec:
        raise UsageError("-R cannot be combined with -F, -E, --split, --reassemble or -c/-l/-p/-z")
    out = args.rearrange
    fd = _open_output(out, args.force)
    os.close(fd)
    done = False
    try:
        rebuild(sys.stdin.buffer, out)
        done = True
    finally:
        if not done:
            try:
                os.unlink(out)
            except OSError:
                pass
    msgs.common(f"The dumpfile is saved to {out}.")
    msgs.common("\ndumpfilter Completed.")
    return EXIT_OK


def run_reassemble(args, msgs: Messages) -> int:
    from dumpfilter.writers.split import reassemble

    if len(args.paths) < 3:
        raise UsageError("--reassemble expects DUMPFILE1 DUMPFILE2 [...] DUMPFILE")
    if args.flat or args.split or args.elf:
        raise UsageError("--reassemble cannot be combined with -F, -E or --split")
    reassemble(args.paths[:-1], args.paths[-1], force=args.force)
    msgs.common(f"The dumpfile is saved to {args.paths[-1]}.")
    msgs.common("\ndumpfilter Completed.")
    return EXIT_OK


def run_dump_dmesg(args, msgs: Messages) -> int:
    """``--dump-dmesg VMCORE LOGFILE``: the log as makedumpfile writes it."""
    from dumpfilter.report.context import ReportContext
    from dumpfilter.report.printk import read_printk

    if len(args.paths) != 2:
        raise UsageError("--dump-dmesg expects VMCORE LOGFILE")
    vmcore, logfile = args.paths
    with ReportContext.open(vmcore) as ctx:
        text = read_printk(ctx.mem, ctx.info).dump_dmesg()
    fd = _open_output(logfile, args.force)
    with os.fdopen(fd, "wb") as f:
        f.write(text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape"))
    msgs.common(f"The dmesg log is saved to {logfile}.")
    return EXIT_OK


def _usage_text(parser) -> str:
    from dumpfilter.compress import CODECS

    lines = [parser.format_help().rstrip(), "", "codecs: " + ", ".join(
        f"{c.option} {c.name}" for c in CODECS.values())]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    msgs = Messages(DEFAULT_MESSAGE_LEVEL)
    try:
        args = parser.parse_args(argv)
        msgs.level = args.message_level
        if args.show_stats:
            msgs.level |= ML_REPORT
        if args.debug:
            msgs.level |= ML_DEBUG
        logging.basicConfig(
            level=logging.DEBUG if msgs.level & ML_DEBUG else logging.WARNING,
            format="dumpfilter: %(message)s")
        if args.help:
            print(_usage_text(parser))
            return EXIT_OK
        if args.version:
            print(f"dumpfilter: version {__version__}")
            return EXIT_OK
        if args.dump_dmesg:
            return run_dump_dmesg(args, msgs)
        if args.rearrange is not None:
            return run_rearrange(args, msgs)
        if args.reassemble:
            return run_reassemble(args, msgs)
        return run_filter(args, msgs)
    except UsageError as e:
        msgs.error(f"{e} (try 'dumpfilter -h')")
        return EXIT_FAILED
    except DumpFilterError as e:
        msgs.error(str(e))
        return e.exit_code
    except OSError as e:
        msgs.error(f"{str(e.filename) + ': ' if e.filename else ''}{e.strerror or e}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        msgs.error("interrupted")
        return EXIT_FAILED
    except Exception as e:  # a bug: still one line, unless debugging
        if msgs.level & ML_DEBUG:
            raise
        msgs.error(f"internal error: {type(e).__name__}: {e} (run with -D for a traceback)")
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
