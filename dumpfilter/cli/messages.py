"""makedumpfile's message classes and streams.

``--message-level`` bits: 1 progress, 2 common, 4 error, 8 debug, 16 report.
As in makedumpfile, progress and errors go to standard error; common, debug
and report messages to standard output — or to standard error as well under
``-F``, where standard output carries the dump.

Progress: makedumpfile's ``STEP : [ 42.0 %] /  eta: 1s`` lines (``\\r``
rewritten, at most once a second) when standard error is not a terminal —
byte for byte what kdump logs show; a tqdm bar, redrawn at most once a
second, on a terminal where tqdm is installed (the capture-kernel payload
leaves it out, so a console there gets the plain lines).
"""
from __future__ import annotations

import sys
import time
from typing import List, Optional, Tuple

ML_PROGRESS, ML_COMMON, ML_ERROR, ML_DEBUG, ML_REPORT = 1, 2, 4, 8, 16


def _since_start() -> float:
    """Seconds since this process started (/proc/self/stat start time
    against /proc/uptime), or since the first call where /proc is not
    readable."""
    global _START
    if _START is None:
        try:
            import os

            with open("/proc/self/stat") as f:
                ticks = int(f.read().rsplit(")", 1)[1].split()[19])
            with open("/proc/uptime") as f:
                uptime = float(f.read().split()[0])
            _START = time.monotonic() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
        except (OSError, ValueError, IndexError):
            _START = time.monotonic()
    return time.monotonic() - _START


_START = None


class Messages:
    SPINNER = "/|\\-"

    def __init__(self, level: int, tty: Optional[bool] = None, to_stderr: bool = False):
        self.level = level
        self.tty = sys.stderr.isatty() if tty is None else tty
        #: -F: every message on stderr (stdout is the dump).
        self.to_stderr = to_stderr
        self._last_progress = 0.0
        self._step: Optional[str] = None
        self._step_start = 0.0
        self._lapse = 0
        self._bar = None
        #: a progress line without its newline is on stderr
        self._line_open = False
        self.step_times: List[Tuple[str, float]] = []

    def _out(self, text: str) -> None:
        stream = sys.stderr if self.to_stderr else sys.stdout
        print(text, file=stream, flush=True)

    def common(self, text: str) -> None:
        if self.level & ML_COMMON:
            self._out(text)

    def debug(self, text: str) -> None:
        """A debugging message, stamped with the seconds since the process
        started (where does a run's time go, e.g. in a capture kernel)."""
        if self.level & ML_DEBUG:
            self._out(f"[{_since_start():8.3f}] {text}")

    def report(self, text: str) -> None:
        if self.level & ML_REPORT:
            self._out(text)

    def error(self, text: str) -> None:
        if self.level & ML_ERROR:
            print(f"dumpfilter: {text}", file=sys.stderr, flush=True)

    def progress(self, step: str, done: int, total: int) -> None:
        """A step's progress; with the report level, ``STEP [name] : N
        seconds`` when a step ends."""
        now = time.monotonic()
        if step != self._step:
            self._step, self._step_start, self._lapse = step, now, 0
            self.debug(f"step: {step}")
        finished = done >= total
        if self.level & ML_PROGRESS:
            if not (self.tty and self._draw_bar(step, done, total)):
                self._print_line(step, done, total, now, finished)
        if finished:
            self.debug(f"step done: {step}")
            elapsed = now - self._step_start
            self.step_times.append((step, elapsed))
            self.report(f"STEP [{step}] : {elapsed:.6f} seconds")
            self._step = None

    def _print_line(self, step: str, done: int, total: int, now: float, finished: bool) -> None:
        if not finished and now - self._last_progress < 1.0:
            return
        self._last_progress = now
        permille = done * 1000 // total if total else 1000
        eta = ""
        if 0 < permille < 1000:
            eta = f"eta: {int((now - self._step_start) * (1000 - permille) / permille)}s"
        spin = self.SPINNER[self._lapse % 4]
        self._lapse += 1
        print(f"\r{step:<50}: [{permille // 10:3d}.{permille % 10} %] {spin}  {eta:>16}",
              end="\n" if finished else "", file=sys.stderr, flush=True)
        self._line_open = not finished

    def _draw_bar(self, step: str, done: int, total: int) -> bool:
        """tqdm's bar; False when tqdm is not installed."""
        if self._bar is None or self._bar.desc != step:
            try:
                from tqdm import tqdm
            except ImportError:
                return False
            if self._bar is not None:
                self._bar.close()
            self._bar = tqdm(total=total, desc=step, file=sys.stderr, mininterval=1.0,
                             leave=True, dynamic_ncols=True, unit="pfn", unit_scale=True)
        self._bar.update(max(0, done - self._bar.n))
        if done >= total:
            self._bar.close()
            self._bar = None
        return True

    def close(self) -> None:
        """End an unfinished progress line (an error or interruption
        message follows on a line of its own)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._line_open:
            self._line_open = False
            try:
                print(file=sys.stderr, flush=True)
            except (OSError, ValueError, AttributeError):
                pass


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
    if stats.dedup_pages:
        lines.append(f"Deduplicated    : 0x{stats.dedup_pages:016x} pages, "
                     f"{stats.dedup_bytes_saved} bytes not written")
    if stats.encoder:
        lines.append(f"Encoder         : {stats.encoder}")
    lines.append("")
    return "\n".join(lines)
