"""One dump's record, made from the report's own collector
(``dumpfilter.report.cli.open_context`` + ``collect``, exactly what
``dumpfilter-report --json`` prints) — never from a second reading of the
dump.

A record (one JSON object) holds: ``path`` (first piece for a split set),
``paths``, ``files`` ([path, size, mtime_ns] each), ``key``, ``size``,
``status`` (``complete``, ``partial`` or ``error``), ``error`` (the
message of an error record), ``missing`` (the report's partial sections,
"section: why"), ``format``, ``codec``, ``dump_level``, ``release``,
``version``, ``machine``, ``crash_time`` (Unix seconds from VMCOREINFO
CRASHTIME), ``panic`` (the PANIC message), ``panic_task`` (pid, comm,
cpu), ``frames`` (function names of the panic stack, innermost first),
``unwind`` (``orc`` or ``stack scan``), ``taint`` (``tainted_mask`` when
the kernel has the symbol), ``modules`` (modules with code in the
backtrace), ``signature`` and ``signature_frames``
(``dumpfilter.fleet.signature``), ``note`` (what discovery noticed: an
incomplete split set), ``shrink`` (with ``--shrink``) and ``timings``.

Nothing here imports Dask: workers call :func:`make_record`.
"""
from __future__ import annotations

import os
import time
from typing import Dict, List, Optional

from dumpfilter.fleet.signature import signature, signature_frames

#: The sections ``dumpfilter-report --json`` collects.
JSON_SECTIONS = frozenset({"sys", "log", "ps", "bt", "mod", "regs"})

RECORD_KEYS = ("path", "paths", "files", "key", "size", "status", "error", "missing", "format",
               "codec", "dump_level", "release", "version", "machine", "crash_time", "panic",
               "panic_task", "frames", "unwind", "taint", "modules", "signature",
               "signature_frames", "note", "shrink", "timings", "worker", "attempts")


def error_message(exc: BaseException) -> str:
    """One line, as the command-line tools would say it."""
    from dumpfilter.errors import DumpFilterError

    if isinstance(exc, DumpFilterError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    if isinstance(exc, MemoryError):
        return "out of memory"
    return f"internal error: {type(exc).__name__}: {exc}"


def blank_record(item: Dict) -> Dict:
    """The record of ``item`` (``discover.Item`` as a dict) before triage."""
    files = item["files"]
    rec = {k: None for k in RECORD_KEYS}
    rec.update(path=files[0][0], paths=[f[0] for f in files], files=[list(f) for f in files],
               key=item["key"], size=sum(f[1] for f in files), note=item.get("note"),
               frames=[], modules=[], missing=[], signature_frames=[], timings={})
    return rec


def error_record(item: Dict, message: str, timings: Optional[Dict] = None) -> Dict:
    rec = blank_record(item)
    rec.update(status="error", error=message,
               timings={k: round(v, 4) for k, v in (timings or {}).items()})
    return rec


def _unquote(v: Optional[str]) -> Optional[str]:
    if v and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return v[1:-1]
    return v


def fields_from_report(rep: Dict) -> Dict:
    """The record fields that come from a report (``collect``'s dict or
    ``dumpfilter-report --json`` parsed): the same function for both."""
    sysi = rep.get("sys") or {}
    values = sysi.get("values") or {}
    flt = rep.get("filtered") or {}
    bt = rep.get("bt") or {}
    frames: List[str] = [f["symbol"] for f in bt.get("frames") or []]
    modules = sorted({f["module"] for f in bt.get("frames") or [] if f.get("module")})
    pt = sysi.get("panic_task")
    panic = _unquote(values.get("PANIC"))
    if panic is not None and (panic.startswith("(unavailable") or panic == ""):
        panic = None
    machine = values.get("MACHINE")
    errors = list(rep.get("errors") or [])
    return {
        "status": "complete" if not errors else "partial",
        "missing": errors,
        "format": flt.get("format"),
        "codec": flt.get("compression"),
        "dump_level": flt.get("dump_level"),
        "release": (rep.get("kernel") or {}).get("osrelease") or values.get("RELEASE"),
        "version": values.get("VERSION"),
        "machine": machine.split()[0] if machine else None,
        "crash_time": sysi.get("crashtime"),
        "panic": panic,
        "panic_task": None if pt is None else {"pid": pt["pid"], "comm": pt["comm"], "cpu": pt["cpu"]},
        "frames": frames,
        "unwind": bt.get("method"),
        "modules": modules,
        "signature": signature(frames),
        "signature_frames": signature_frames(frames),
    }


def _taint(ctx) -> Optional[int]:
    from dumpfilter.errors import DumpFilterError

    try:
        addr = ctx.symbol("tainted_mask")
        return None if addr is None else ctx.u64(addr)
    except DumpFilterError:
        return None


def make_record(item: Dict, shrink: Optional[Dict] = None) -> Dict:
    """Triage one item: open, collect the report, derive the record;
    with ``shrink`` ({"dir", "level", "codec"}), re-filter it too. Any
    failure becomes an error record; nothing is raised."""
    from dumpfilter.report.cli import collect, open_context

    t0 = time.monotonic()
    if item.get("stat_error"):
        return error_record(item, f"{item['files'][0][0]}: {item['stat_error']}")
    paths = [f[0] for f in item["files"]]
    timings: Dict[str, float] = {}
    try:
        ctx = open_context(paths)
    except BaseException as e:  # noqa: B902 - every failure is a record
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return error_record(item, error_message(e), {"total": time.monotonic() - t0})
    timings["open"] = time.monotonic() - t0
    try:
        rep = collect(ctx, paths, JSON_SECTIONS)
        taint = _taint(ctx)
    except Exception as e:
        return error_record(item, error_message(e), {"total": time.monotonic() - t0})
    finally:
        ctx.close()
    timings["report"] = time.monotonic() - t0 - timings["open"]
    rec = blank_record(item)
    rec.update(fields_from_report(rep))
    rec["taint"] = taint
    if shrink:
        from dumpfilter.fleet.shrink import shrink_item

        t1 = time.monotonic()
        rec["shrink"] = shrink_item(item, paths, shrink)
        timings["shrink"] = time.monotonic() - t1
    timings["total"] = time.monotonic() - t0
    rec["timings"] = {k: round(v, 4) for k, v in timings.items()}
    rec["worker"] = f"{os.uname().nodename}:{os.getpid()}"
    return rec


#: What a triage imports: loaded in the worker process before it forks, so
#: that a child starts with them (no import per dump).
WARM_MODULES = (
    "dumpfilter.report.cli", "dumpfilter.report.context", "dumpfilter.report.kallsyms",
    "dumpfilter.report.btf", "dumpfilter.report.printk", "dumpfilter.report.tasks",
    "dumpfilter.report.sysinfo", "dumpfilter.report.backtrace", "dumpfilter.report.modules",
    "dumpfilter.readers.elf", "dumpfilter.readers.kdump", "dumpfilter.readers.flattened",
    "dumpfilter.readers.splitset", "dumpfilter.memory.x86_64", "dumpfilter.memory.arm64",
    "dumpfilter.memory.sparsemem",
    "dumpfilter.filter.classify", "dumpfilter._core",
)
SHRINK_MODULES = ("dumpfilter.fleet.shrink", "dumpfilter.filter.job", "dumpfilter.writers.output",
                  "dumpfilter.codecs.encoders")


def warm_up(shrink: bool = False) -> None:
    import importlib

    for name in WARM_MODULES + (SHRINK_MODULES if shrink else ()):
        importlib.import_module(name)


def triage_item(item: Dict, opts: Dict) -> Dict:
    """The task one Dask worker runs for one dump: :func:`make_record` in
    a forked child (``isolate.run_isolated``: ``opts["timeout"]`` seconds,
    a death or a timeout tried once more), always returning a record."""
    from dumpfilter.fleet.isolate import run_isolated

    t0 = time.monotonic()
    warm_up(bool(opts.get("shrink")))
    kind, value, attempts = run_isolated(make_record, (item, opts.get("shrink")), opts.get("timeout"),
                                         opts.get("isolate", True))
    if kind == "ok":
        rec = value
    elif kind == "raised":
        rec = error_record(item, value)
    elif kind == "timeout":
        rec = error_record(item, f"triage ran past the --timeout of {value:g} s ({attempts} attempts)")
    else:
        rec = error_record(item, f"the triage process was {value} ({attempts} attempts)"
                           if value.startswith("killed") else f"the triage process {value} "
                           f"({attempts} attempts)")
    rec["attempts"] = attempts
    rec["timings"] = dict(rec.get("timings") or {}, task=round(time.monotonic() - t0, 4))
    return rec
