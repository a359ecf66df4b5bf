"""``--log -T`` / ``--log-time``: the kernel log with wall-clock
timestamps, as crash's ``log -T`` prints it.

crash's wall clock for a record is ``boot_date + ts_nsec // 10**9`` where
``boot_date`` = the dump's date (VMCOREINFO ``CRASHTIME``) minus the uptime
in whole seconds from ``jiffies_64`` (``(jiffies_64 - INITIAL_JIFFIES) //
HZ``), formatted by ``ctime_tz`` (``%a %b %e %T %Z %Y``); text bytes that are
neither printable nor space print as ``.``, a newline inside a record
continues on a line indented by the width of the prefix. The input is the
decoded printk log (``printk.PrintkLog``) and the ``sys`` numbers the
report already read (crash time, jiffies, HZ).
"""
from __future__ import annotations

from typing import List, Optional

from dumpfilter.report.sysinfo import format_date, uptime_jiffies

_PRINTABLE = bytes(range(0x20, 0x7F)) + b" \t\n\v\f\r"


def boot_date(crashtime: int, jiffies_64: int, hz: int) -> int:
    return crashtime - uptime_jiffies(jiffies_64, hz) // hz


def _clean(text: bytes, indent: int) -> str:
    out = []
    for b in text:
        if b == 0x0A:
            out.append("\n" + " " * indent)
        elif b in _PRINTABLE:
            out.append(chr(b))
        else:
            out.append(".")
    return "".join(out)


def log_time_text(log, boot: int, tz: Optional[str] = None) -> str:
    """Every record with data, ``[<ctime>] text``, one per line."""
    lines: List[str] = []
    cache = {}
    for rec in log.records:
        if rec.dataless:
            continue
        secs = rec.ts_nsec // 1_000_000_000
        stamp = cache.get(secs)
        if stamp is None:
            stamp = cache[secs] = "[%s] " % format_date(boot + secs, tz)
        lines.append(stamp + _clean(rec.text, len(stamp)))
    return "".join(ln + "\n" for ln in lines)


__all__ = ["boot_date", "log_time_text"]
