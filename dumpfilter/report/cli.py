"""``dumpfilter-report``: a crash-style report of a dump without a vmlinux.

Usage: ``dumpfilter-report [--vmlinux PATH [--prefer-vmlinux]] [--log] [--ps]
[--bt] [--mod] [--regs] [--json] [--utc] DUMPFILE...``

Symbols and types come from the dump (kallsyms, Linux >= 6.0, and BTF). For
older kernels or kernels without CONFIG_DEBUG_INFO_BTF, ``--vmlinux`` names
the matching (debug) vmlinux: it fills in what the dump lacks (its
``.symtab``, and its ``.BTF`` or else its DWARF). ``--prefer-vmlinux`` uses
the vmlinux first and the dump only for what the vmlinux cannot give.

Without section options it prints crash's ``sys`` banner and a
"FILTERED" block (dump level, codec, pages present/excluded by class).
With options, only the sections asked for (``--log`` alone is byte-for-byte
``makedumpfile --dump-dmesg``). ``--json`` prints everything as one JSON
document. Several DUMPFILEs are read as the pieces of a ``--split`` dump.

Exit status:
  0  the report is complete;
  1  fatal error (one ``dumpfilter-report: ...`` line on stderr);
  3  the report was printed but some section is partial: data missing from
     the dump (excluded or absent pages) or corrupt (BTF, kallsyms, printk
     ring, ORC); each such line says what is missing and why.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import struct
import sys
from typing import Dict, List, Optional

from dumpfilter.errors import CorruptDumpError, DumpFilterError, FaultError, UsageError
from dumpfilter.exits import EXIT_FAILED as EXIT_FATAL, EXIT_OK, EXIT_PARTIAL  # noqa: F401 - re-exported

PROG = "dumpfilter-report"
SECTIONS = ("log", "ps", "bt", "mod", "regs")
#: Sections only printed when asked for (also under --json).
EXTRA_SECTIONS = ("bt_all", "foreach_bt", "kmem", "runq", "mount", "files", "net")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="crash-style report of a Linux crash dump, no vmlinux needed",
                epilog="exit status: 0 complete, 3 printed but partial (missing or corrupt data), "
                       "1 fatal error")
    p.add_argument("--vmlinux", metavar="PATH", help="the dump's (debug) vmlinux: symbols "
                   "(.symtab) and types (.BTF, else DWARF) for what the dump lacks (no kallsyms "
                   "before Linux 6.0, no BTF without CONFIG_DEBUG_INFO_BTF)")
    p.add_argument("--prefer-vmlinux", action="store_true", help="take symbols and types from "
                   "--vmlinux even when the dump has its own")
    p.add_argument("--log", action="store_true", help="kernel log as makedumpfile --dump-dmesg")
    p.add_argument("--ps", action="store_true", help="task list in crash's ps format")
    p.add_argument("--bt", action="store_true", help="backtrace of the panic task")
    p.add_argument("--mod", action="store_true", help="loaded modules")
    p.add_argument("--regs", action="store_true", help="per-CPU registers from NT_PRSTATUS")
    p.add_argument("--bt-all", action="store_true", help="backtrace of the active task of "
                   "every CPU (crash's bt -a)")
    p.add_argument("--foreach-bt", action="store_true", help="backtrace of every task "
                   "(crash's foreach bt); see --state")
    p.add_argument("--state", metavar="LIST", help="with --foreach-bt: only tasks in these "
                   "states, comma-separated letters as ps shows them (R,S,D,T,t,X,Z,P,I) or "
                   "crash's two-letter names (RU,IN,UN,...)")
    p.add_argument("--kmem", action="store_true", help="memory summary (crash's kmem -i)")
    p.add_argument("--runq", action="store_true", help="run queues of every CPU (crash's runq)")
    p.add_argument("-T", "--log-time", action="store_true", help="kernel log with wall-clock "
                   "timestamps (crash's log -T); implies --log")
    p.add_argument("--mount", action="store_true", help="mounts of the panic task's mount "
                   "namespace (crash's mount)")
    p.add_argument("--files", metavar="PID", type=int, help="open files of task PID "
                   "(crash's files PID)")
    p.add_argument("--net", action="store_true", help="network devices and their IPv4 "
                   "addresses (crash's net)")
    p.add_argument("--force", action="store_true", help="use a --vmlinux whose build differs "
                   "from the dump's")
    p.add_argument("--json", action="store_true", help="everything as one JSON document")
    p.add_argument("--utc", action="store_true", help="print DATE in UTC (default: local time)")
    p.add_argument("-D", "--debug", action="store_true",
                   help="show a traceback for internal errors")
    p.add_argument("dumpfiles", nargs="+", metavar="DUMPFILE")
    return p


# --------------------------------------------------------------------------- opening

def open_context(paths: List[str], vmlinux: Optional[str] = None, prefer_vmlinux: bool = False):
    from dumpfilter.report.context import ReportContext, open_source

    from dumpfilter.readers.kdump import KdumpSource
    from dumpfilter.readers.splitset import KdumpSplitSet, incomplete_message, missing_pieces

    if len(paths) == 1:
        source = open_source(paths[0])
        pieces = [source] if isinstance(source, KdumpSource) and source.split else []
    else:
        source = KdumpSplitSet(paths)
        pieces = list(source.pieces)
    if pieces and missing_pieces(pieces):
        msg = incomplete_message(pieces)
        source.close()
        raise CorruptDumpError(msg)
    return ReportContext(source, vmlinux=vmlinux, prefer_vmlinux=prefer_vmlinux)


# --------------------------------------------------------------------------- sections

def _kernel(ctx, vmlinux: Optional[str]) -> Dict:
    info = ctx.info
    rel = info.osrelease or "unknown release"
    bid = info.build_id
    if vmlinux:
        text = vmlinux
    else:
        text = f"(no vmlinux; {rel}" + (f", build-id {bid})" if bid else ")")
    return {"text": text, "vmlinux": vmlinux, "osrelease": info.osrelease, "build_id": bid}


def _dumpfile(ctx, paths: List[str]) -> Dict:
    h = ctx.source.header
    tags = []
    if h.dump_level > 0:
        tags.append("PARTIAL DUMP")
    if h.incomplete:
        tags.append("INCOMPLETE")
    if h.excluded_vmemmap:
        tags.append("EXCLUDED VMEMMAP")
    return {"files": [os.path.basename(p) for p in paths], "paths": list(paths), "tags": tags}


#: pfns per bitmap chunk when counting present pages (128 KiB per chunk):
#: memory stays bounded whatever the highest pfn.
_COUNT_CHUNK = 1 << 20


def _present_ram_pages(src) -> int:
    """RAM pfns whose bit is set in the dump's page bitmap, counted chunk
    by chunk over the RAM ranges only."""
    from dumpfilter.formats.bitmap import ranges_to_bitmap

    ranges = src.ram_pfn_ranges()
    total = 0
    for lo, hi in ranges:
        for start in range(lo - lo % 8, hi, _COUNT_CHUNK):  # byte-aligned chunks
            n = min(_COUNT_CHUNK, hi - start)
            bm = bytearray((n + 7) // 8)
            src.present_bitmap(start, n, bm)
            ram_bm = bytearray(len(bm))
            ranges_to_bitmap([(lo, hi)], start, n, ram_bm)  # this range only: no double count
            both = (int.from_bytes(bm, "little") & int.from_bytes(ram_bm, "little"))
            total += both.bit_count()
    return total


def _filtered(ctx, errors: List[str]) -> Dict:
    """Dump level and codec from the header; RAM pfns from the RAM map
    (1st bitmap / PT_LOADs), present pfns from the 2nd bitmap; excluded
    pages per class by re-running the classifier at the header's level
    over the struct pages (which every level keeps)."""
    from dumpfilter.formats.bitmap import ranges_to_bitmap

    src = ctx.source
    h = src.header
    out = {"format": src.format_name, "dump_level": h.dump_level, "compression": h.compression,
           "ram_pages": None, "present_pages": None, "excluded_pages": None,
           "excluded_by_class": {}, "how": "", "errors": []}
    try:
        ram = sum(e - s for s, e in src.ram_pfn_ranges())
        present = _present_ram_pages(src)
        out.update(ram_pages=ram, present_pages=present, excluded_pages=ram - present)
    except DumpFilterError as e:
        out["errors"].append(f"page bitmaps unreadable: {e}")
        errors.append(f"filtered: page bitmaps unreadable: {e}")
        return out
    if h.dump_level & 0x1E and out["excluded_pages"]:
        try:
            out["excluded_by_class"], how = _class_counts(ctx, h.dump_level, out["excluded_pages"])
            out["how"] = how
        except DumpFilterError as e:
            out["errors"].append(f"per-class counts unavailable: {e}")
            errors.append(f"filtered: per-class counts unavailable: {e}")
    else:
        out["how"] = "RAM pages from the RAM map, present pages from the dump's page bitmap"
    return out


def _class_counts(ctx, level: int, excluded: int):
    from dumpfilter.filter.classify import CLASS_NAMES, Classifier

    # Classify every RAM page, not just the ones still present.
    c = Classifier(ctx.source, ctx.info, level, mem=ctx.mem, all_ram=True)
    for _ in c.cycles():
        pass
    if c.result.warnings:
        raise DumpFilterError("; ".join(c.result.warnings[:2]))
    counts = {CLASS_NAMES.get(i, str(i)): v for i, v in enumerate(c.result.counts)
              if v and i in CLASS_NAMES}
    if level & 1:
        counts["zero"] = max(0, excluded - sum(v for k, v in counts.items() if k != "zero"))
    return counts, (f"classes re-derived by classifying the dump's struct pages at level {level}"
                    + ("; zero = excluded minus classified" if level & 1 else ""))


def _sysinfo(ctx, log, tasks, tz, log_error: Optional[str] = None) -> Dict:
    from dumpfilter.report.sysinfo import read_sysinfo

    si = read_sysinfo(ctx, log=log, tasks=tasks, tz=tz)
    pt = si.panic_task
    if log is None and log_error:
        si.values["PANIC"] = f"(unavailable: kernel log: {log_error})"
    if "PID" not in si.values:  # say why the panic-task lines are missing
        why = "; ".join(e.split(": ", 1)[1] for e in si.errors if e.startswith("panic task:"))
        si.values["PID"] = f"(unavailable: {why or 'panic task not found'})"
    return {"values": dict(si.values), "errors": list(si.errors), "hz": si.hz,
            "hz_source": si.hz_source, "crashtime": si.crashtime, "jiffies_64": si.jiffies_64,
            "panic_task": None if pt is None or pt.task is None else
            {"pid": pt.task.pid, "comm": pt.task.comm, "task": f"{pt.task.address:#x}",
             "cpu": pt.cpu}}


def _ps(ctx, tasks) -> Dict:
    """Rows of crash's ps; VSZ/RSS/%MEM from ``mm_struct.total_vm`` and
    the ``rss_stat`` counters (file + anon pages as crash counts them, plus each
    thread's cached ``task_struct.rss_stat`` when the kernel has it)."""
    errors: List[str] = list(tasks.errors)
    btf = ctx.btf
    mem = None
    try:
        mm_off = btf.member_offset("task_struct", "mm")
        tvm_off = btf.member_offset("mm_struct", "total_vm")
        if not btf.has_member("mm_struct", "rss_stat.count"):
            raise DumpFilterError("mm_struct.rss_stat has no count[] (per-cpu counters)")
        cnt_off = btf.member_offset("mm_struct", "rss_stat.count")
        # crash's RSS: file + anon pages (shmem pages are not counted).
        idx = [btf.enumerator(n) for n in ("MM_FILEPAGES", "MM_ANONPAGES")]
        idx = [i for i in idx if i is not None]
        trss = (btf.member_offset("task_struct", "rss_stat.count")
                if btf.has_member("task_struct", "rss_stat.count") else None)
        total_addr = ctx.symbol("_totalram_pages")
        totalram = ctx.u64(total_addr) if total_addr else None
        mem = (mm_off, tvm_off, cnt_off, idx, trss, totalram)
    except DumpFilterError as e:
        errors.append(f"VSZ/RSS/%MEM shown as '-': {e}")
    page_kb = (ctx.info.page_size or 4096) // 1024
    mms: Dict[int, int] = {}
    rows = []
    for t in tasks.tasks:
        mm = None
        if mem is not None:
            try:
                mm = ctx.u64(t.address + mem[0])
            except FaultError:
                mm = None
        mms[t.address] = mm
    rss_extra: Dict[int, int] = {}
    if mem is not None and mem[4] is not None:
        for t in tasks.tasks:
            mm = mms.get(t.address)
            if mm:
                try:
                    raw = ctx.read(t.address + mem[4], 4 * (max(mem[3]) + 1))
                    v = struct.unpack("<%di" % (max(mem[3]) + 1), raw)
                    rss_extra[mm] = rss_extra.get(mm, 0) + sum(v[i] for i in mem[3])
                except FaultError:
                    pass
    for t in sorted(tasks.tasks, key=lambda t: (t.pid, not t.idle, t.cpu)):
        mm = mms.get(t.address)
        vsz = rss = pmem = None
        kthread = t.idle or (mem is not None and mm == 0) or (mem is None and t.ppid in (0, 2) and t.pid != 1)
        if mem is not None:
            if mm == 0:
                vsz = rss = 0
                pmem = 0.0
            elif mm is not None:
                try:
                    vsz = ctx.u64(mm + mem[1]) * page_kb
                    n = max(mem[3]) + 1
                    v = struct.unpack("<%dq" % n, ctx.read(mm + mem[2], 8 * n))
                    pages = max(0, sum(v[i] for i in mem[3]) + rss_extra.get(mm, 0))
                    rss = pages * page_kb
                    pmem = (pages * 100.0 / mem[5]) if mem[5] else None
                except FaultError as e:
                    errors.append(f"pid {t.pid}: mm_struct {mm:#x} not in the dump ({e.message})")
            else:
                errors.append(f"pid {t.pid}: task_struct.mm not readable")
        rows.append({"pid": t.pid, "ppid": t.ppid, "cpu": t.cpu, "task": f"{t.address:x}",
                     "state": t.state, "pmem": pmem, "vsz": vsz, "rss": rss, "comm": t.comm,
                     "kthread": bool(kthread), "active": t.running_on_cpu is not None,
                     "tgid": t.tgid})
    return {"rows": rows, "errors": errors}


def _online(ctx) -> Optional[List[int]]:
    try:
        from dumpfilter.report.tasks import TaskReader

        return TaskReader(ctx).cpumask("__cpu_online_mask")
    except DumpFilterError:
        return None


def _regs(ctx) -> Dict:
    from dumpfilter.report.backtrace import cpu_registers, pc_of

    regs = cpu_registers(ctx, _online(ctx))
    cpus = []
    for cpu, r in sorted(regs.items()):
        sym, mod = ctx.symbolize(pc_of(r.regs))
        if mod:
            sym += f" [{mod}]"
        cpus.append({"cpu": cpu, "note": r.index, "pid": r.pid, "rip_symbol": sym,
                     "regs": {k: f"{v:#x}" for k, v in r.regs.items()}})
    return {"cpus": cpus}


def _bt(ctx, sysinfo: Dict) -> Dict:
    from dumpfilter.report.backtrace import backtrace, cpu_registers
    from dumpfilter.report.btall import bt_dict

    pt = sysinfo.get("panic_task")
    if pt is None:
        raise DumpFilterError("no panic task: " + "; ".join(
            e for e in sysinfo["errors"] if e.startswith("panic task")) or "not found")
    regs = cpu_registers(ctx, _online(ctx))
    if pt["cpu"] not in regs:
        raise DumpFilterError(f"no NT_PRSTATUS note for CPU {pt['cpu']}")
    bt = backtrace(ctx, pt["pid"], int(pt["task"], 16), pt["cpu"], pt["comm"],
                   regs[pt["cpu"]].regs)
    return bt_dict(bt)


def _log_time(log, sysinfo: Dict, tz, errors: List[str]) -> Optional[str]:
    from dumpfilter.report.logtime import boot_date, log_time_text

    if log.format == "legacy":
        errors.append("log -T: the legacy log ring has no record timestamps")
        return None
    if sysinfo.get("crashtime") is None or not sysinfo.get("hz") or sysinfo.get("jiffies_64") is None:
        errors.append("log -T: the boot date needs CRASHTIME, jiffies_64 and HZ")
        return None
    return log_time_text(log, boot_date(sysinfo["crashtime"], sysinfo["jiffies_64"],
                                        sysinfo["hz"]), tz)


def _mod(ctx) -> Dict:
    from dumpfilter.report.modules import read_modules

    return read_modules(ctx)


# --------------------------------------------------------------------------- collect

def collect(ctx, paths: List[str], sections, vmlinux: Optional[str] = None,
            tz: Optional[str] = None, options: Optional[Dict] = None) -> Dict:
    """The report as a JSON-able dict. ``rep["errors"]`` lists every
    partial section ("section: why"); empty means complete. ``options``:
    ``log_time`` (bool), ``states`` (foreach-bt filter), ``files_pid``."""
    options = options or {}
    from dumpfilter.report.printk import read_printk
    from dumpfilter.report.tasks import TaskReader

    errors: List[str] = []
    rep: Dict = {"kernel": _kernel(ctx, vmlinux), "dumpfile": _dumpfile(ctx, paths)}
    log = None
    try:
        log = read_printk(ctx.mem, ctx.info)
    except DumpFilterError as e:
        errors.append(f"log: {e}")
        rep["log"] = {"error": str(e), "text": None}
    tasks = None
    tasks_error = None
    try:
        tasks = TaskReader(ctx).walk()
    except DumpFilterError as e:
        tasks_error = str(e)
        errors.append(f"tasks: {e}")
    need_sys = bool({"sys", "bt", "bt_all", "foreach_bt", "mount", "net"} & set(sections)) or \
        bool(options.get("log_time"))
    if need_sys:
        rep["sys"] = _sysinfo(ctx, log, tasks, tz, (rep.get("log") or {}).get("error"))
        errors.extend(f"sys: {e}" for e in rep["sys"]["errors"]
                      if not (log is None and e.startswith("printk log")))
    if "sys" in sections:
        rep["filtered"] = _filtered(ctx, errors)
    if "log" in sections and log is not None:
        rep["log"] = {"format": log.format, "records": len(log.records),
                      "text": log.dump_dmesg().decode("latin-1")}
        if options.get("log_time"):
            rep["log"]["time_text"] = _log_time(log, rep["sys"], tz, errors)
    for name, fn in (("ps", lambda: _ps(ctx, tasks)), ("regs", lambda: _regs(ctx)),
                     ("bt", lambda: _bt(ctx, rep["sys"])), ("mod", lambda: _mod(ctx))):
        if name not in sections:
            continue
        if name == "ps" and tasks is None:
            rep["ps"] = {"rows": [], "errors": [f"task list unavailable: {tasks_error}"]}
            continue
        try:
            rep[name] = fn()
        except DumpFilterError as e:
            rep[name] = {"error": str(e)}
            errors.append(f"{name}: {e}")
            continue
        sec_errors = rep[name].get("errors") or []
        errors.extend(f"{name}: {e}" for e in sec_errors)
    from dumpfilter.report.extra import collect_extra

    collect_extra(ctx, rep, sections, tasks, tasks_error, options, errors)
    di = ctx.debuginfo
    if di is not None:
        rep["debuginfo"] = {"symbols": di["symbols"], "types": di["types"],
                            "notes": list(di["notes"])}
    rep["errors"] = errors
    rep["complete"] = not errors
    return rep


def run(argv: Optional[List[str]] = None, stdout=None) -> int:
    """Parse ``argv``, write the report to ``stdout``; return the exit
    status. Raises DumpFilterError/OSError on fatal errors."""
    from dumpfilter.report.render import render_text

    stdout = stdout if stdout is not None else sys.stdout
    args = build_parser().parse_args(argv)
    if stdout is None:  # started with file descriptor 1 closed
        raise OSError(errno.EBADF, "standard output is closed: nowhere to write the report")
    if args.log_time:
        args.log = True
    chosen = {s for s in SECTIONS + EXTRA_SECTIONS if getattr(args, s, None) not in (None, False)}
    if args.state and not args.foreach_bt:
        raise UsageError("--state goes with --foreach-bt")
    options = {"log_time": args.log_time, "states": _states(args.state) if args.state else None,
               "files_pid": args.files}
    if args.json:
        # Without section options, the default document (as dumpfilter-triage
        # records it); with them, the banner and those sections.
        sections = {"sys", *chosen} if chosen else {"sys", *SECTIONS}
    else:
        sections = chosen or {"sys"}
    tz = "UTC" if args.utc else None
    if args.force and not args.vmlinux:
        raise UsageError("--force goes with --vmlinux PATH")
    if args.prefer_vmlinux and not args.vmlinux:
        raise UsageError("--prefer-vmlinux needs --vmlinux PATH")
    if args.vmlinux and not os.path.isfile(args.vmlinux):
        raise UsageError(f"--vmlinux {args.vmlinux}: no such file")
    if args.vmlinux or args.prefer_vmlinux:
        ctx = open_context(args.dumpfiles, args.vmlinux, args.prefer_vmlinux)
    else:
        ctx = open_context(args.dumpfiles)
    try:
        if args.vmlinux:
            from dumpfilter.report.match import check_vmlinux

            check_vmlinux(ctx, args.force)
        rep = collect(ctx, args.dumpfiles, sections, args.vmlinux, tz, options)
    finally:
        ctx.close()
    if args.json:
        stdout.write(json.dumps(rep, indent=1) + "\n")
    elif sections == {"log"} and rep["log"].get("text") is not None and not args.log_time:
        stdout.write(rep["log"]["text"])
    else:
        stdout.write(render_text(rep, sections))
    if rep["errors"] and not args.json:
        stdout.flush()
        for e in rep["errors"]:
            sys.stderr.write(f"{PROG}: partial: {e}\n")
    return EXIT_PARTIAL if rep["errors"] else EXIT_OK


def _states(text: str) -> List[str]:
    from dumpfilter.report.render import PS_STATES

    names = {v: k for k, v in PS_STATES.items()}
    out = []
    for item in text.split(","):
        item = item.strip()
        letter = item if item in PS_STATES else names.get(item.upper())
        if letter is None:
            raise UsageError(f"--state {item!r}: not a task state (one of "
                             f"{','.join(PS_STATES)} or {','.join(PS_STATES.values())})")
        out.append(letter)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    from dumpfilter.exits import run_main

    argv = sys.argv[1:] if argv is None else argv
    return run_main(PROG, lambda: run(argv), debug=lambda: "-D" in argv or "--debug" in argv)


if __name__ == "__main__":
    sys.exit(main())
