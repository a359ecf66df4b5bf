"""The sections printed only when asked for (``--bt-all``, ``--foreach-bt``,
``--kmem``, ``--runq``, ``--mount``, ``--files PID``, ``--net``): which module reads each, and how a section that
fails is recorded. Each section's reader lives in its own module; this one
only dispatches, so ``cli.collect`` stays one loop.

A section that cannot be read becomes ``{"error": why}`` and one
``"<section>: why"`` entry in ``rep["errors"]`` (exit status 3); when the
pages it needed were left out by the dump level, ``why`` names the class
that held them (``filtered_note``).
"""
from __future__ import annotations

from typing import Dict, List, Optional

from dumpfilter.errors import DumpFilterError, MissingPageError


def filtered_note(ctx, e: DumpFilterError) -> str:
    """The error text, plus which page class the dump level left out when
    the failed read hit a page the dump does not have."""
    msg = str(e)
    if not isinstance(e, MissingPageError):
        return msg
    from dumpfilter.report.pageclass import class_of_pfn

    try:
        why = class_of_pfn(ctx, e.address // (ctx.info.page_size or 4096))
    except DumpFilterError:
        why = None
    return f"{msg} ({why})" if why else msg


def _need_tasks(tasks, tasks_error):
    if tasks is None:
        raise DumpFilterError(f"task list unavailable: {tasks_error}")
    return tasks


def collect_extra(ctx, rep: Dict, sections, tasks, tasks_error: Optional[str],
                  options: Dict, errors: List[str]) -> None:
    from dumpfilter.report import btall, kmem, net, runq, vfs

    readers = {
        "bt_all": lambda: btall.bt_all(ctx, _need_tasks(tasks, tasks_error), rep.get("sys")),
        "foreach_bt": lambda: btall.foreach_bt(ctx, _need_tasks(tasks, tasks_error),
                                               options.get("states"), rep.get("sys")),
        "kmem": lambda: kmem.read_kmem(ctx),
        "runq": lambda: runq.read_runq(ctx, _need_tasks(tasks, tasks_error)),
        "mount": lambda: vfs.read_mounts(ctx, rep.get("sys")),
        "files": lambda: vfs.read_files(ctx, _need_tasks(tasks, tasks_error),
                                        options["files_pid"]),
        "net": lambda: net.read_net(ctx, rep.get("sys")),
    }
    for name, fn in readers.items():
        if name not in sections:
            continue
        try:
            rep[name] = fn()
        except DumpFilterError as e:
            why = filtered_note(ctx, e)
            rep[name] = {"error": why}
            errors.append(f"{name}: {why}")
            continue
        errors.extend(f"{name}: {e}" for e in rep[name].get("errors") or [])


__all__ = ["collect_extra", "filtered_note"]
