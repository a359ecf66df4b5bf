"""The values behind crash's ``sys`` banner, formatted the way crash prints
them (crash's kernel.c ``display_sys_stats``, tools.c ``convert_time`` /
``pages_to_size`` / ``ctime_tz``, memory.c ``get_memory_size``, task.c
``get_panicmsg`` / ``show_context``).

Reads:

* VMCOREINFO: ``CRASHTIME`` (DATE), ``SYMBOL(init_uts_ns)`` +
  ``OFFSET(uts_namespace.name)`` (NODENAME/RELEASE/VERSION/MACHINE),
  ``SYMBOL(node_data)``/``LENGTH(node_data)`` and ``SYMBOL(node_online_map)``
  (MEMORY on NUMA kernels), ``PAGESIZE``.
* kallsyms: ``__cpu_present_mask``, ``__cpu_online_mask`` (CPUS),
  ``jiffies_64`` (UPTIME), ``avenrun`` (LOAD AVERAGE), ``cpu_khz`` (MHz),
  ``contig_page_data`` (MEMORY without NUMA), ``tick_nsec`` or
  ``kernel_config_data`` (HZ), ``panic_cpu`` and the per-cpu run queues
  (panic task, via ``tasks``).
* types (``ctx.btf``: BTF from the dump or the vmlinux, or DWARF):
  ``cpumask`` size, ``pglist_data.node_present_pages`` /
  ``node_spanned_pages``, ``new_utsname`` layout, task layouts (``tasks``).
* the printk log (PANIC message, and HZ as a last resort).

HZ is not exported anywhere directly. In order: ``CONFIG_HZ`` from the
embedded ikconfig (``kernel_config_data``, CONFIG_IKCONFIG); else
``tick_nsec`` (ntp's ~NSEC_PER_SEC/HZ, removed in newer kernels); else the HZ
for which ``jiffies_64`` (corrected for INITIAL_JIFFIES = -300*HZ) best
matches the last printk timestamp.

Any value that cannot be read is reported as ``(unavailable: <why>)`` and
the reason is collected in ``SysInfo.errors``; nothing raises for a missing
page.
"""
from __future__ import annotations

import gzip
import re
import struct
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from dumpfilter.errors import DumpFilterError, FaultError

FSHIFT = 11
FIXED_1 = 1 << FSHIFT
GiB = 1 << 30
MiB = 1 << 20
KiB = 1 << 10
#: HZ values a kernel can be configured with (Kconfig.hz choices plus the
#: per-arch odd ones), for the jiffies/printk heuristic.
HZ_CANDIDATES = (24, 32, 48, 64, 100, 128, 200, 250, 256, 300, 500, 512, 1000, 1024, 1200)

#: crash's panic message patterns, in priority order (task.c panic_msg[]).
PANIC_PATTERNS = (
    "SysRq : Crash",
    "SysRq : Trigger a crash",
    "SysRq : Netdump",
    "Kernel panic: ",
    "Kernel panic - ",
    "Kernel BUG at",
    "kernel BUG at",
    "Unable to handle kernel paging request",
    "Unable to handle kernel NULL pointer dereference",
    "BUG: unable to handle kernel ",
    "general protection fault: ",
    "double fault: ",
    "divide error: ",
    "stack segment: ",
    "[Hardware Error]: ",
    "Bad mode in ",
    "Oops: ",
)

BANNER_ORDER = ("CPUS", "DATE", "UPTIME", "LOAD AVERAGE", "TASKS", "NODENAME", "RELEASE",
                "VERSION", "MACHINE", "MEMORY", "PANIC", "PID", "COMMAND", "TASK", "CPU", "STATE")


# --------------------------------------------------------------------------- pure formatting

def format_uptime(jiffies_64: int, hz: int) -> str:
    """crash's get_uptime + convert_time: remove INITIAL_JIFFIES
    (-300*HZ, as a 32-bit value) then ``[N days, ]HH:MM:SS``."""
    elapsed = uptime_jiffies(jiffies_64, hz)
    total = elapsed // hz
    days, total = divmod(total, 86400)
    hours, total = divmod(total, 3600)
    minutes, seconds = divmod(total, 60)
    prefix = f"{days} days, " if days else ""
    return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}"


def uptime_jiffies(jiffies_64: int, hz: int) -> int:
    """Jiffies since boot as crash computes them from ``jiffies_64``."""
    mask64 = (1 << 64) - 1
    wrapped = jiffies_64 & 0xFFFFFFFF00000000
    if wrapped:
        wrapped -= 0x100000000
        j = (jiffies_64 & 0xFFFFFFFF) | wrapped
        return (j + 300 * hz) & mask64
    initial = (-300 * hz) & 0xFFFFFFFF
    return (jiffies_64 - initial) & mask64


def format_loadavg(avenrun: Sequence[int]) -> str:
    parts = []
    for v in avenrun[:3]:
        a = (v + FIXED_1 // 200) & 0xFFFFFFFF  # crash stores into an int
        if a >= 1 << 31:
            a -= 1 << 32
        parts.append("%d.%02d" % (a >> FSHIFT, ((a & (FIXED_1 - 1)) * 100) >> FSHIFT))
    return ", ".join(parts)


def pages_to_size(pages: int, page_size: int) -> str:
    """crash tools.c pages_to_size()."""
    if pages == 0:
        return "0"
    total = float(pages) * float(page_size)
    if total >= GiB:
        s = "%.1f GB" % (total / GiB)
    elif total >= MiB:
        s = "%.1f MB" % (total / MiB)
    else:
        s = "%d KB" % int(total / KiB)
    return s.replace(".0 ", " ", 1)


def format_memory(total_bytes: int, page_size: int) -> str:
    """crash memory.c get_memory_size(): round up to the next GiB when it
    is at most 64 MiB away, then pages_to_size()."""
    next_gig = -(-total_bytes // GiB) * GiB
    if next_gig and next_gig - total_bytes <= 64 * MiB:
        total_bytes = next_gig
    return pages_to_size(total_bytes // page_size, page_size)


def format_date(epoch: int, tz: Optional[str] = None) -> str:
    """crash's ctime_tz(): strftime ``%a %b %e %T %Z %Y`` in local time
    (the process's TZ), or in UTC when ``tz == "UTC"``."""
    if tz == "UTC":
        tm = time.gmtime(epoch)
        return time.strftime("%a %b %e %H:%M:%S UTC %Y", tm)
    tm = time.localtime(epoch)
    return time.strftime("%a %b %e %H:%M:%S %Z %Y", tm)


def panic_message(lines: Sequence[str]) -> Tuple[str, bool]:
    """crash's get_panicmsg() over the log text lines: for each pattern in
    priority order, the first line containing it. Returns (message,
    sysrq) where sysrq is True when the match came from "SysRq :"."""
    for pat in PANIC_PATTERNS:
        for line in lines:
            if pat in line:
                return line.rstrip("\n"), "SysRq :" in line
    return "", False


def format_panic(msg: str) -> str:
    return '"%s"%s' % (msg, " (check log for details)" if "Oops: " in msg else "")


def format_banner(values: Dict[str, str]) -> List[str]:
    """Lines ``%12s: %s`` in crash's order for the keys present."""
    return [f"{key:>12}: {values[key]}" for key in BANNER_ORDER if key in values]


# --------------------------------------------------------------------------- reading

@dataclass
class SysInfo:
    """Raw values (None when unavailable) and the crash-formatted strings."""

    values: Dict[str, str] = field(default_factory=dict)
    errors: List[str] = field(default_factory=list)
    cpus_present: Optional[List[int]] = None
    cpus_online: Optional[List[int]] = None
    crashtime: Optional[int] = None
    jiffies_64: Optional[int] = None
    hz: Optional[int] = None
    hz_source: Optional[str] = None
    avenrun: Optional[List[int]] = None
    utsname: Optional[Dict[str, str]] = None
    cpu_khz: Optional[int] = None
    memory_bytes: Optional[int] = None
    nr_tasks: Optional[int] = None
    panic_msg: Optional[str] = None
    panic_task: Optional[object] = None  # tasks.PanicTask

    def banner_lines(self) -> List[str]:
        return format_banner(self.values)


def _cfg_hz(config_text: str) -> Optional[int]:
    m = re.search(r"^CONFIG_HZ=(\d+)$", config_text, re.M)
    return int(m.group(1)) if m else None


def detect_hz(ctx, last_ts_nsec: Optional[int] = None,
              jiffies_64: Optional[int] = None) -> Tuple[Optional[int], str]:
    """(HZ, how it was found)."""
    ks = ctx.kallsyms
    start = ks.address("kernel_config_data")
    if start is not None:
        end = ks.address("kernel_config_data_end")
        size = (end - start) if end and end > start else 256 * 1024
        try:
            blob = ctx.read(start, size)
            i = blob.find(b"IKCFG_ST")
            j = blob.find(b"IKCFG_ED", i + 8)
            if i >= 0:
                data = blob[i + 8:j if j > 0 else len(blob)]
                hz = _cfg_hz(gzip.decompress(data).decode("latin-1"))
                if hz:
                    return hz, "ikconfig CONFIG_HZ"
        except (FaultError, OSError, EOFError, ValueError):
            pass
    addr = ks.address("tick_nsec")
    if addr is not None:
        try:
            tick = ctx.u64(addr)
        except FaultError:
            tick = 0
        if 100_000 <= tick <= 100_000_000:
            hz = min(HZ_CANDIDATES, key=lambda h: abs(1e9 / h - tick))
            if abs(1e9 / hz - tick) < 0.01 * tick:
                return hz, "tick_nsec"
    if last_ts_nsec and jiffies_64 is not None:
        ts = last_ts_nsec / 1e9
        best = None
        for hz in HZ_CANDIDATES:
            up = uptime_jiffies(jiffies_64, hz) / hz
            if up > ts * 1.05 + 1:
                continue  # jiffies start after the printk clock
            err = abs(ts - up)
            if best is None or err < best[0]:
                best = (err, hz)
        if best is not None:
            return best[1], "jiffies vs. last printk timestamp"
    return None, "unknown"


def _bits(raw: bytes) -> List[int]:
    v = int.from_bytes(raw, "little")
    return [i for i in range(8 * len(raw)) if v >> i & 1]


def _unavailable(si: SysInfo, key: str, err: Exception, what: str) -> None:
    si.values[key] = f"(unavailable: {what}: {err})"
    si.errors.append(f"{key}: {what}: {err}")


def read_sysinfo(ctx, log=None, tasks=None, tz: Optional[str] = None) -> SysInfo:
    """Gather every banner value. ``log`` (printk.PrintkLog) and ``tasks``
    (tasks.TaskList) are read here when not given. ``tz="UTC"`` prints
    DATE in UTC; by default the local time zone, like crash."""
    from dumpfilter.report.printk import read_printk
    from dumpfilter.report.tasks import STATE_NAMES, TaskReader

    si = SysInfo()
    info = ctx.info
    page_size = info.page_size or 4096

    ks_error = "no kallsyms"
    try:
        ks = ctx.kallsyms
    except DumpFilterError as e:
        ks = None
        ks_error = str(e)
        si.errors.append(f"kallsyms: {e}")

    if log is None:
        try:
            log = read_printk(ctx.mem, info)
        except DumpFilterError as e:
            si.errors.append(f"printk log: {e}")

    # CPUS
    try:
        if ks is None:
            raise DumpFilterError(ks_error)
        size = ctx.btf.sizeof("cpumask")
        si.cpus_present = _bits(ctx.read(ks.require("__cpu_present_mask"), size))
        si.cpus_online = _bits(ctx.read(ks.require("__cpu_online_mask"), size))
        n = len(si.cpus_present)
        s = str(n)
        if n > len(si.cpus_online):
            s += f" [OFFLINE: {n - len(si.cpus_online)}]"
        si.values["CPUS"] = s
    except DumpFilterError as e:
        from dumpfilter.formats.elfnotes import prstatus_notes

        try:
            si.values["CPUS"] = str(len(prstatus_notes(ctx.source.notes)))
            si.errors.append(f"CPUS: counted NT_PRSTATUS notes ({e})")
        except DumpFilterError:
            _unavailable(si, "CPUS", e, "cpu masks")

    # DATE
    si.crashtime = info.crashtime
    if si.crashtime is not None:
        si.values["DATE"] = format_date(si.crashtime, tz)
    else:
        si.values["DATE"] = "(unavailable: VMCOREINFO has no CRASHTIME)"
        si.errors.append("DATE: VMCOREINFO has no CRASHTIME")

    # UPTIME
    try:
        if ks is None:
            raise DumpFilterError(ks_error)
        si.jiffies_64 = ctx.u64(ks.require("jiffies_64"))
        last_ts = log.records[-1].ts_nsec if log is not None and log.records else None
        si.hz, si.hz_source = detect_hz(ctx, last_ts, si.jiffies_64)
        if si.hz is None:
            si.values["UPTIME"] = "(cannot calculate: unknown HZ value)"
            si.errors.append("UPTIME: HZ could not be determined")
        else:
            si.values["UPTIME"] = format_uptime(si.jiffies_64, si.hz)
    except DumpFilterError as e:
        _unavailable(si, "UPTIME", e, "jiffies_64")

    # LOAD AVERAGE
    try:
        if ks is None:
            raise DumpFilterError(ks_error)
        si.avenrun = list(struct.unpack("<3Q", ctx.read(ks.require("avenrun"), 24)))
        si.values["LOAD AVERAGE"] = format_loadavg(si.avenrun)
    except DumpFilterError as e:
        _unavailable(si, "LOAD AVERAGE", e, "avenrun")

    # TASKS and the panic task
    reader = None
    reader_error = "no task layout"
    try:
        reader = TaskReader(ctx)
        if tasks is None:
            tasks = reader.walk()
        si.nr_tasks = len(tasks)
        si.values["TASKS"] = str(si.nr_tasks)
        si.errors.extend(f"TASKS: {m}" for m in tasks.errors)
    except DumpFilterError as e:
        reader_error = str(e)
        _unavailable(si, "TASKS", e, "task list")

    # utsname
    try:
        uts = info.require_symbol("init_uts_ns") + (info.offset("uts_namespace.name") or 0)
        raw = ctx.read(uts, 6 * 65)
        fields = ("sysname", "nodename", "release", "version", "machine", "domainname")
        si.utsname = {f: raw[i * 65:(i + 1) * 65].split(b"\0", 1)[0].decode("utf-8", "replace")
                      for i, f in enumerate(fields)}
        si.values["NODENAME"] = si.utsname["nodename"]
        si.values["RELEASE"] = si.utsname["release"]
        si.values["VERSION"] = si.utsname["version"]
        machine = si.utsname["machine"]
    except DumpFilterError as e:
        for k in ("NODENAME", "RELEASE", "VERSION"):
            _unavailable(si, k, e, "init_uts_ns")
        machine = "(unavailable)"
    try:
        if machine == "aarch64":
            # No CPU frequency in an arm64 kernel; crash prints the same.
            raise _NoMhz()
        if ks is None:
            raise DumpFilterError(ks_error)
        addr = ks.address("cpu_khz")
        if addr is None:
            raise DumpFilterError("kallsyms has no cpu_khz")
        si.cpu_khz = ctx.u32(addr)
        mhz = si.cpu_khz // 1000
        si.values["MACHINE"] = f"{machine}  ({mhz} Mhz)" if mhz else f"{machine}  (unknown Mhz)"
    except _NoMhz:
        si.values["MACHINE"] = f"{machine}  (unknown Mhz)"
    except DumpFilterError as e:
        si.values["MACHINE"] = f"{machine}  (unknown Mhz)"
        si.errors.append(f"MACHINE: cpu_khz: {e}")

    # MEMORY
    try:
        si.memory_bytes = _node_memory(ctx) * page_size
        si.values["MEMORY"] = format_memory(si.memory_bytes, page_size)
    except DumpFilterError as e:
        _unavailable(si, "MEMORY", e, "node_present_pages")

    # PANIC
    sysrq = False
    if log is not None:
        si.panic_msg, sysrq = panic_message(log.lines())
        si.values["PANIC"] = format_panic(si.panic_msg)
    else:
        si.values["PANIC"] = "(unavailable: no kernel log)"

    # PID / COMMAND / TASK / CPU / STATE
    try:
        if reader is None:
            raise DumpFilterError(reader_error)
        pt = reader.panic_task(tasks)
        si.panic_task = pt
        if pt is None:
            si.errors.append("panic task: panic_cpu is not set (no panic in progress)")
        elif pt.task is None:
            si.errors.extend(pt.warnings)
        else:
            t = pt.task
            si.values["PID"] = str(t.pid)
            si.values["COMMAND"] = f'"{t.comm}"'
            # x86_64 has thread_info inside task_struct at offset 0: crash
            # prints the task address as THREAD_INFO.
            ti = t.address + (ctx.btf.member_offset("task_struct", "thread_info")
                              if ctx.btf.has_member("task_struct", "thread_info") else 0)
            si.values["TASK"] = f"{t.address:x}  [THREAD_INFO: {ti:x}]"
            si.values["CPU"] = str(pt.cpu)
            suffix = "(SYSRQ)" if sysrq else "(PANIC)"
            si.values["STATE"] = f"{STATE_NAMES.get(t.state, t.state)} {suffix}"
            si.errors.extend(pt.warnings)
    except DumpFilterError as e:
        si.errors.append(f"panic task: {e}")
    return si


class _NoMhz(Exception):
    """The architecture keeps no CPU frequency (not an error)."""


def _node_memory(ctx) -> int:
    """Sum over online NUMA nodes of node_present_pages (node_spanned_pages
    when present is 0), like crash's total_node_memory()."""
    info = ctx.info
    btf = ctx.btf
    present_off = btf.member_offset("pglist_data", "node_present_pages")
    spanned_off = btf.member_offset("pglist_data", "node_spanned_pages")
    pgdats: List[int] = []
    node_data = info.symbol("node_data") or ctx.kallsyms.address("node_data")
    if node_data is not None:
        n = info.length("node_data") or 1024
        online = None
        nmap = info.symbol("node_online_map")
        if nmap is None:
            nmap = ctx.kallsyms.address("node_states")  # node_states[N_ONLINE]
        if nmap is not None and info.size("nodemask_t"):
            online = _bits(ctx.read(nmap, info.size("nodemask_t")))
        elif nmap is not None:
            online = _bits(ctx.read(nmap, (n + 7) // 8))
        ptrs = struct.unpack("<%dQ" % n, ctx.read(node_data, 8 * n))
        for node in (online if online is not None else range(n)):
            if node < n and ptrs[node]:
                pgdats.append(ptrs[node])
    else:
        contig = info.symbol("contig_page_data") or ctx.kallsyms.address("contig_page_data")
        if contig is None:
            raise DumpFilterError("neither node_data nor contig_page_data is known")
        pgdats.append(contig)
    total = 0
    for pg in pgdats:
        present = ctx.u64(pg + present_off)
        total += present if present else ctx.u64(pg + spanned_off)
    return total
