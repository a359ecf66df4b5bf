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


class Option:
    """One option: its spellings, where its value goes and its help."""

    __slots__ = ("short", "long", "dest", "kind", "metavar", "help", "const")

    def __init__(self, short, long, dest, kind="flag", metavar=None, help="", const=None):
        self.short, self.long, self.dest, self.kind = short, long, dest, kind
        self.metavar, self.help, self.const = metavar, help, const

    @property
    def spellings(self) -> List[str]:
        return [s for s in (self.short and "-" + self.short, self.long and "--" + self.long) if s]


def _o(short, long, dest, kind="flag", metavar=None, help="", const=None) -> Option:
    return Option(short, long, dest, kind, metavar, help, const)


#: Every option, in --help order. kinds: flag (True), const (``const``),
#: str, int (makedumpfile's atoi), append (str, repeatable).
OPTIONS = [
    _o("c", None, "codec", "const", const="zlib", help="compress each page with zlib (-c), "
       "LZO1X-1 (-l), snappy (-p) or zstd (-z); the last one given counts"),
    _o("l", None, "codec", "const", const="lzo"),
    _o("p", None, "codec", "const", const="snappy"),
    _o("z", None, "codec", "const", const="zstd"),
    _o("d", None, "dump_level", "str", "LEVEL", "dump level 0-31 (1 zero, 2 cache, 4 cache+private, "
       "8 user, 16 free); more levels, comma separated, are used in turn when the disk fills up"),
    _o("E", None, "elf", help="write an ELF dump (ELF input only)"),
    _o("F", None, "flat", help="write a flattened stream to standard output"),
    _o("R", None, "rearrange", help="rebuild DUMPFILE from a flattened stream on standard input"),
    _o("L", None, "size_limit", "str", "SIZE", "stop writing at SIZE bytes (K/M/G/T/P/E); the dump "
       "is kept, marked incomplete, as on a full disk"),
    _o("f", None, "force", help="overwrite an existing regular DUMPFILE"),
    _o("D", None, "debug", help="debugging messages; internal errors show a traceback"),
    _o("h", "help", "help", help="show this help"),
    _o("v", None, "version", help="show the version"),
    _o(None, "message-level", "message_level", "int", "ML", "message bitmask: 1 progress, "
       "2 common, 4 error, 8 debug, 16 report (default 7)"),
    _o(None, "show-stats", "show_stats", help="print the page-count report"),
    _o(None, "split", "split", help="write the dump into several files: VMCORE DUMPFILE1 "
       "DUMPFILE2 ..."),
    _o(None, "reassemble", "reassemble", help="merge split files: DUMPFILE1 DUMPFILE2 ... DUMPFILE"),
    _o(None, "splitblock-size", "splitblock_size", "int", "KB", "granularity of --split "
       "boundaries in KiB (default 1 GiB)"),
    _o(None, "num-threads", "num_threads", "int", "N", "compression threads (default: every CPU "
       "this process may use)"),
    _o(None, "dump-dmesg", "dump_dmesg", help="write the kernel log of VMCORE to LOGFILE"),
    _o(None, "partial-dmesg", "partial_dmesg", help="with --dump-dmesg: only the messages after "
       "the last 'dmesg -c'"),
    _o(None, "dry-run", "dry_run", help="do everything but write the output (the report is "
       "printed)"),
    _o(None, "check-params", "check_params", help="only check the command line: exit 0 if it "
       "is valid, read nothing"),
    _o(None, "work-dir", "work_dir", "str", "DIR", "directory for temporary files (bitmaps)"),
    _o(None, "non-mmap", "non_mmap", help="read the input with pread, never mmap"),
    # Tuning knobs of makedumpfile's own machinery: accepted, no effect.
    _o("b", None, "block_order", "int", "ORDER", "accepted for makedumpfile compatibility; "
       "no effect"),
    _o(None, "cyclic-buffer", "cyclic_buffer", "int", "KB", "accepted for makedumpfile "
       "compatibility; no effect"),
    _o(None, "non-cyclic", "non_cyclic", help="accepted for makedumpfile compatibility; no "
       "effect"),
    # Ours.
    _o(None, "dedup", "dedup", help="identical pages share one stored block (kdump file "
       "output)"),
    _o(None, "zlib-encoder", "zlib_encoder", "str", "{" + ",".join(ZLIB_ENCODERS) + "}",
       "encoder for -c: libdeflate (default; deterministic, faster and smaller than zlib "
       "level 1), zlib (makedumpfile's exact bytes) or isal"),
]
# makedumpfile options not implemented here: parsed (with their value),
# then refused by name.
for _dest, _spelling in UNSUPPORTED.items():
    _takes_value = _spelling not in ("-X", "--mem-usage", "-e")
    OPTIONS.append(_o(_spelling[1] if len(_spelling) == 2 else None,
                      _spelling[2:] if _spelling.startswith("--") else None, _dest,
                      "append" if _takes_value else "flag"))


def option_strings() -> List[str]:
    """Every spelling the parser takes."""
    return [s for o in OPTIONS for s in o.spellings]


def _int(text: str, what: str) -> int:
    """makedumpfile's atoi(): leading digits (with a sign) — but a value
    with no digits at all is refused here."""
    t = text.strip()
    sign, digits = (t[0], t[1:]) if t[:1] in "+-" else ("", t)
    n = len(digits) - len(digits.lstrip("0123456789"))
    if n == 0:
        raise UsageError(f"invalid number {text!r} for {what}")
    return int(sign + digits[:n])


class Args:
    """The parsed command line: one attribute per option ``dest``, and
    ``paths``."""

    def __init__(self):
        for o in OPTIONS:
            setattr(self, o.dest, [] if o.kind == "append" else None if o.kind != "flag" else False)
        self.paths: List[str] = []


def parse_args(argv: List[str]) -> Args:
    """makedumpfile's getopt_long: options and paths in any order, short
    options clustered (``-cd31``), long options by any unique prefix."""
    import getopt

    shorts = "".join(o.short + (":" if o.kind not in ("flag", "const") else "")
                     for o in OPTIONS if o.short)
    longs = [o.long + ("=" if o.kind not in ("flag", "const") else "")
             for o in OPTIONS if o.long]
    try:
        found, paths = getopt.gnu_getopt(argv, shorts, longs)
    except getopt.GetoptError as e:
        raise UsageError(str(e)) from None
    by_spelling = {s: o for o in OPTIONS for s in o.spellings}
    args = Args()
    for spelling, value in found:
        o = by_spelling[spelling]
        if o.kind == "flag":
            setattr(args, o.dest, True)
        elif o.kind == "const":
            setattr(args, o.dest, o.const)
        elif o.kind == "int":
            setattr(args, o.dest, _int(value, spelling))
        elif o.kind == "append":
            getattr(args, o.dest).append(value)
        else:
            setattr(args, o.dest, value)
    if args.zlib_encoder is not None and args.zlib_encoder not in ZLIB_ENCODERS:
        raise UsageError(f"--zlib-encoder {args.zlib_encoder!r}: choose from "
                         f"{', '.join(ZLIB_ENCODERS)}")
    args.paths = paths
    return args


def help_text() -> str:
    lines = ["usage: " + USAGE, "",
             "Filter and compress a Linux crash dump into the kdump-compressed format; "
             "makedumpfile's command line.", "", "options:"]
    for o in OPTIONS:
        if o.dest in UNSUPPORTED:
            continue
        names = ", ".join(o.spellings) + (f" {o.metavar}" if o.metavar else "")
        if not o.help:  # -l -p -z share -c's line
            continue
        if o.dest == "codec":
            names = "-c, -l, -p, -z"
        lines.append(f"  {names}")
        lines.append(f"        {o.help}")
    lines.append("")
    lines.append("refused (makedumpfile options dumpfilter does not implement): "
                 + ", ".join(UNSUPPORTED.values()))
    return "\n".join(lines)


def parse_dump_levels(text: str) -> List[int]:
    """``-d 31`` or ``-d 31,11``: the level, then fallbacks used when the
    output device fills up (makedumpfile's parse_dump_level)."""
    levels = []
    for part in text.split(","):
        if not part:
            continue
        try:
            v = _int(part, "-d")
        except UsageError:
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
        if getattr(args, dest):  # an Args attribute per option
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
    import sys

    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.help or args.version:
        return args, None
    return args, check_params(args)
