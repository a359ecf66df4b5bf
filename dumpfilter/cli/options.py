"""makedumpfile's command line: every option it has, parsed with its
spellings and checked with its rules (``check_params``), so that kdump
scripts — including ``kdumpctl``'s ``--check-params`` probe of
``core_collector`` — take dumpfilter where they take makedumpfile.

Options are of four kinds:

* the ones dumpfilter implements (``-c -l -p -z -E -F -R -d -L -f -D``,
  ``--split``, ``--reassemble``, ``--dump-dmesg``, ``--num-threads``,
  ``--message-level``, ``--show-stats``, ``--dry-run``, ``--check-params``,
  ``--work-dir``, ``--non-mmap``, ``--splitblock-size``) and our own
  (``--dedup``, ``--zlib-encoder``);
* makedumpfile tuning knobs with no meaning here (``-b``,
  ``--cyclic-buffer``, ``--non-cyclic``): accepted, noted at ``-D``;
* options dumpfilter does not implement (``UNSUPPORTED``): refused with a
  message naming the option.

Exit codes follow makedumpfile: a bad command line is exit 1 with one
message, and ``--check-params`` reads and writes nothing.
"""
from __future__ import annotations

import argparse
from typing import List, Optional

from dumpfilter.codecs.encoders import ZLIB_ENCODERS
from dumpfilter.errors import UsageError

DEFAULT_MESSAGE_LEVEL = 7
MAX_MESSAGE_LEVEL = 31
MAX_DUMP_LEVEL = 31
#: makedumpfile's NUM_ARRAY_DUMP_LEVEL: at most this many -d levels.
MAX_DUMP_LEVELS = MAX_DUMP_LEVEL + 1

#: makedumpfile options we do not implement (yet): dest -> spelling.
UNSUPPORTED = {
    "vmlinux": "-x", "read_vmcoreinfo": "-i", "generate_vmcoreinfo": "-g",
    "exclude_xen_dom": "-X", "config": "--config", "eppic": "--eppic",
    "mem_usage": "--mem-usage", "vtop": "--vtop", "diskset": "--diskset",
    "xen_syms": "--xen-syms", "xen_vmcoreinfo": "--xen-vmcoreinfo",
    "xen_phys_start": "--xen_phys_start", "extension": "--extension",
    "exclude_unused_vm": "-e",
}
#: Accepted tuning options that change nothing in dumpfilter, and why.
NO_EFFECT = {
    "block_order": ("-b", "dumpfilter buffers writes in 1 MiB blocks"),
    "cyclic_buffer": ("--cyclic-buffer", "the bitmaps are built in fixed 128 KiB cycles"),
    "non_cyclic": ("--non-cyclic", "the bitmaps are always built cycle by cycle"),
}

USAGE = """\
dumpfilter [-c|-l|-p|-z|-E] [-d LEVEL] [-L SIZE] [--message-level N] [--show-stats] [-f] [-D] VMCORE DUMPFILE
       dumpfilter -F [-c|-l|-p|-z|-E] [-d LEVEL] VMCORE > STREAM
       dumpfilter -R DUMPFILE < STREAM
       dumpfilter --split [-c|-l|-p|-z] [-d LEVEL] VMCORE DUMPFILE1 DUMPFILE2 [...]
       dumpfilter --reassemble DUMPFILE1 DUMPFILE2 [...] DUMPFILE
       dumpfilter --dump-dmesg [--partial-dmesg] VMCORE LOGFILE
       dumpfilter --check-params [OPTION...] [PATH...]"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, makedumpfile's exit code
        raise UsageError(message)


def _int(text: str) -> int:
    """makedumpfile's atoi(): leading digits (with a sign), else 0 —
    but a value with no digits at all is refused here."""
    t = text.strip()
    sign, digits = (t[0], t[1:]) if t[:1] in "+-" else ("", t)
    n = len(digits) - len(digits.lstrip("0123456789"))
    if n == 0:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}")
    return int(sign + digits[:n])


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dumpfilter", usage=USAGE, add_help=False,
                description="Filter and compress a Linux crash dump into the kdump-compressed "
                            "format; makedumpfile's command line.")
    comp = p.add_mutually_exclusive_group()
    for letter, name, what in (("c", "zlib", "zlib (level 1)"), ("l", "lzo", "LZO1X-1"),
                               ("p", "snappy", "snappy"), ("z", "zstd", "zstd (level 1)")):
        comp.add_argument(f"-{letter}", dest="codec", action="store_const", const=name,
                          help=f"compress each page with {what}")
    p.add_argument("-d", dest="dump_level", default=None, metavar="LEVEL",
                   help="dump level 0-31 (1 zero, 2 cache, 4 cache+private, 8 user, 16 free); "
                        "more levels, comma separated, are used in turn when the disk fills up")
    p.add_argument("-E", dest="elf", action="store_true", help="write an ELF dump (ELF input only)")
    p.add_argument("-F", dest="flat", action="store_true",
                   help="write a flattened stream to standard output")
    p.add_argument("-R", dest="rearrange", action="store_true",
                   help="rebuild DUMPFILE from a flattened stream on standard input")
    p.add_argument("-L", dest="size_limit", default=None, metavar="SIZE",
                   help="stop writing at SIZE bytes (K/M/G/T/P/E); the dump is kept, marked "
                        "incomplete, as on a full disk")
    p.add_argument("-f", dest="force", action="store_true",
                   help="overwrite an existing regular DUMPFILE")
    p.add_argument("-D", dest="debug", action="store_true",
                   help="debugging messages; internal errors show a traceback")
    p.add_argument("-h", "--help", dest="help", action="store_true", help="show this help")
    p.add_argument("-v", dest="version", action="store_true", help="show the version")
    p.add_argument("--message-level", dest="message_level", type=_int, default=None, metavar="ML",
                   help="message bitmask: 1 progress, 2 common, 4 error, 8 debug, 16 report "
                        "(default 7)")
    p.add_argument("--show-stats", action="store_true", help="print the page-count report")
    p.add_argument("--split", action="store_true",
                   help="write the dump into several files: VMCORE DUMPFILE1 DUMPFILE2 ...")
    p.add_argument("--reassemble", action="store_true",
                   help="merge split files: DUMPFILE1 DUMPFILE2 ... DUMPFILE")
    p.add_argument("--splitblock-size", type=_int, default=None, metavar="KB",
                   help="granularity of --split boundaries in KiB (default 1 GiB)")
    p.add_argument("--num-threads", type=_int, default=None, metavar="N",
                   help="compression threads (default: every CPU this process may use)")
    p.add_argument("--dump-dmesg", action="store_true",
                   help="write the kernel log of VMCORE to LOGFILE")
    p.add_argument("--partial-dmesg", action="store_true",
                   help="with --dump-dmesg: only the messages after the last 'dmesg -c'")
    p.add_argument("--dry-run", action="store_true",
                   help="do everything but write the output (the report is printed)")
    p.add_argument("--check-params", action="store_true",
                   help="only check the command line: exit 0 if it is valid, read nothing")
    p.add_argument("--work-dir", default=None, metavar="DIR",
                   help="directory for temporary files (bitmaps)")
    p.add_argument("--non-mmap", action="store_true",
                   help="read the input with pread, never mmap")
    # Tuning knobs of makedumpfile's own machinery: accepted, no effect.
    p.add_argument("-b", dest="block_order", type=_int, default=None, metavar="ORDER",
                   help="accepted for makedumpfile compatibility; no effect")
    p.add_argument("--cyclic-buffer", type=_int, default=None, metavar="KB",
                   help="accepted for makedumpfile compatibility; no effect")
    p.add_argument("--non-cyclic", action="store_true",
                   help="accepted for makedumpfile compatibility; no effect")
    # Ours.
    p.add_argument("--dedup", action="store_true",
                   help="identical pages share one stored block (kdump file output)")
    p.add_argument("--zlib-encoder", choices=ZLIB_ENCODERS, default=None,
                   help="encoder for -c: libdeflate (default; deterministic, faster and smaller "
                        "than zlib level 1), zlib (makedumpfile's exact bytes) or isal")
    # makedumpfile options not implemented here: parsed, then refused.
    unsupported = p.add_argument_group("makedumpfile options dumpfilter does not implement")
    for dest, spelling in UNSUPPORTED.items():
        takes_value = spelling not in ("-X", "--mem-usage", "-e")
        kw = {"action": "append", "metavar": "ARG"} if takes_value else {"action": "store_true"}
        unsupported.add_argument(spelling, dest=dest, default=None, help=argparse.SUPPRESS, **kw)
    p.add_argument("paths", nargs="*", metavar="PATH")
    return p


def parse_dump_levels(text: str) -> List[int]:
    """``-d 31`` or ``-d 31,11``: the level, then fallbacks used when the
    output device fills up (makedumpfile's parse_dump_level)."""
    levels = []
    for part in text.split(","):
        if not part:
            continue
        try:
            v = _int(part)
        except argparse.ArgumentTypeError:
            raise UsageError(f"invalid dump level {part!r}") from None
        if not 0 <= v <= MAX_DUMP_LEVEL:
            raise UsageError(f"dump level {v} is out of range (0-{MAX_DUMP_LEVEL})")
        if len(levels) >= MAX_DUMP_LEVELS:
            raise UsageError(f"more than {MAX_DUMP_LEVELS} dump levels")
        levels.append(v)
    if not levels:
        raise UsageError(f"invalid dump level {text!r}")
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


def _invalid(why: str):
    raise UsageError(f"invalid command line: {why}")


def check_params(args) -> str:
    """makedumpfile's parameter checks (check_param_for_*); returns the
    mode: "rearrange", "reassemble", "dmesg", "split", "flat" or "file".
    Also fills ``args.levels`` and ``args.limit``. Raises UsageError."""
    for dest, spelling in UNSUPPORTED.items():
        if getattr(args, dest):
            raise UsageError(f"option {spelling} is not supported by dumpfilter")
    args.levels = parse_dump_levels(args.dump_level) if args.dump_level is not None else [0]
    if args.message_level is not None and not 0 <= args.message_level <= MAX_MESSAGE_LEVEL:
        raise UsageError(f"message level {args.message_level} is invalid (0-{MAX_MESSAGE_LEVEL})")
    args.limit = parse_size(args.size_limit) if args.size_limit is not None else None
    if args.num_threads is not None:
        args.num_threads = max(args.num_threads, 0)  # makedumpfile: MAX(atoi, 0)
    level = args.levels[0]
    npaths = len(args.paths)
    filtering = args.codec or level or args.elf
    if args.rearrange:
        if npaths != 1:
            _invalid("-R takes exactly one DUMPFILE (the stream comes on standard input)")
        if filtering or args.flat:
            _invalid("-R cannot be combined with -c/-l/-p/-z, -d, -E or -F")
        return "rearrange"
    if args.reassemble:
        if filtering or args.flat or args.split:
            _invalid("--reassemble cannot be combined with -c/-l/-p/-z, -d, -E, -F or --split")
        if args.dry_run:
            _invalid("--dry-run cannot be used with --reassemble")
        if npaths < 1:
            _invalid("--reassemble expects DUMPFILE1 DUMPFILE2 [...] DUMPFILE")
        return "reassemble"
    # check_param_for_creating_dumpfile (also --dump-dmesg).
    if args.codec and args.elf:
        _invalid("-E cannot be combined with -c, -l, -p or -z")
    if args.dry_run and args.dump_dmesg:
        _invalid("--dry-run cannot be used with --dump-dmesg")
    if args.flat and args.split:
        _invalid("--split cannot be combined with -F")
    if args.num_threads:
        if args.split:
            _invalid("--num-threads cannot be used with --split")
        if args.elf:
            _invalid("--num-threads cannot be used with ELF format (-E)")
    if args.partial_dmesg and not args.dump_dmesg:
        _invalid("--partial-dmesg needs --dump-dmesg")
    if npaths == 2 and not args.flat and not args.split:
        mode = "dmesg" if args.dump_dmesg else "file"
    elif args.split and npaths > 2:
        if args.elf:
            _invalid("--split cannot be used with ELF format (-E)")
        mode = "split"
    elif npaths == 1 and args.flat:
        mode = "dmesg" if args.dump_dmesg else "flat"
    else:
        _invalid({True: "-F expects only VMCORE (the stream goes to standard output)",
                  False: "--split expects VMCORE DUMPFILE1 DUMPFILE2 [...]" if args.split
                  else "expected VMCORE DUMPFILE"}[bool(args.flat)])
    if mode == "dmesg" and args.flat:
        _invalid("--dump-dmesg writes LOGFILE: expected VMCORE LOGFILE")
    # dumpfilter's own rules.
    if args.dedup and mode != "file":
        _invalid("--dedup needs kdump-compressed output to a file (not -F, -E or --split)")
    if args.dedup and args.elf:
        _invalid("--dedup needs kdump-compressed output (not -E)")
    if args.splitblock_size is not None and mode != "split":
        _invalid("--splitblock-size needs --split")
    if args.splitblock_size is not None and args.splitblock_size < 1:
        _invalid("--splitblock-size must be at least 1 (KiB)")
    return mode


def parse(argv: Optional[List[str]]):
    """(args, mode); mode is None for -h/-v."""
    args = build_parser().parse_args(argv)
    if args.help or args.version:
        return args, None
    return args, check_params(args)
