"""``--bt-all`` (crash's ``bt -a``) and ``--foreach-bt [--state ...]``
(crash's ``foreach bt``): backtraces of the active task of every CPU and
of every task.

Where each unwind starts:

* the panic CPU's task: that CPU's NT_PRSTATUS registers (as ``--bt``);
* another CPU's active task: the CPU was stopped by the crash NMI, and its
  NT_PRSTATUS note holds the interrupted registers. crash shows the NMI
  handler's frames first; so do we: the NMI stack of the CPU (per-cpu
  ``cea_exception_stacks`` -> ``struct cea_exception_stacks.NMI_stack``) is
  scanned from its lowest address for return addresses; the first one in
  ``crash_nmi_callback`` (else the first whose unwind reaches the note's
  registers) is where crash starts too, and ORC unwinds
  from there through the NMI entry's ``pt_regs`` (``[exception RIP: ...]``,
  ``--- <NMI exception stack> ---``) into the interrupted stack. When that
  does not land on the note's RIP, the unwind starts at the note instead;
* a task that is not running: its ``thread.sp`` points at the
  ``struct inactive_task_frame`` that ``__switch_to_asm`` pushed
  (``bp``, ``ret_addr``): frame #0 is ``ret_addr`` shown at ``thread.sp``,
  and ORC unwinds from ``thread.sp + sizeof(inactive_task_frame)``.

Tasks come from ``tasks.TaskReader.walk`` (every thread, idle tasks
first); ``foreach bt`` prints them in crash's order (by pid, then CPU for
the idle tasks), separated by blank lines.
"""
from __future__ import annotations

import struct
from typing import Dict, List, Optional

from dumpfilter.errors import DumpFilterError, FaultError

#: The x86 crash-shutdown NMI handler (arch/x86/kernel/reboot.c), where the
#: other CPUs halt while the panic CPU writes the dump.
NMI_HANDLER = "crash_nmi_callback"


def bt_dict(bt) -> Dict:
    """A ``backtrace.Backtrace`` as JSON."""
    return {"pid": bt.pid, "task": f"{bt.task:x}", "cpu": bt.cpu, "comm": bt.comm,
            "method": bt.method, "errors": bt.errors,
            "frames": [{"level": f.level, "stack": f"{f.stack:#x}", "pc": f"{f.pc:#x}",
                        "symbol": f.symbol, "module": f.module, "scanned": f.scanned,
                        "regs": {k: f"{v:#x}" for k, v in f.regs.items()} if f.regs else None,
                        "exception_rip": f.exception_rip, "stack_name": f.stack_name,
                        "shown": f.shown}
                       for f in bt.frames]}


class _Unwinder:
    def __init__(self, ctx):
        from dumpfilter.report.backtrace import OrcTable, UnwindError, cpu_registers
        from dumpfilter.report.tasks import TaskReader

        self.ctx = ctx
        self.tr = TaskReader(ctx)
        try:
            online = self.tr.cpumask("__cpu_online_mask")
        except DumpFilterError:
            online = None
        self.regs = cpu_registers(ctx, online)
        try:
            self.orc = OrcTable(ctx)
            self.orc_error = None
        except (UnwindError, FaultError) as e:
            self.orc, self.orc_error = None, str(e)
        t = ctx.btf
        #: Sleeping tasks' saved frame (only they need it).
        self.switch_error: Optional[str] = None
        try:
            self.thread_sp = t.member_offset("task_struct", "thread.sp")
            self.itf_size = t.sizeof("inactive_task_frame")
            self.itf_bp = t.member_offset("inactive_task_frame", "bp")
            self.itf_ret = t.member_offset("inactive_task_frame", "ret_addr")
        except DumpFilterError as e:
            self.switch_error = f"cannot find a sleeping task's saved registers: {e}"
        self.nmi_stack = None
        if t.has_struct("cea_exception_stacks") and "cea_exception_stacks" in ctx.kallsyms:
            self.nmi_stack = t.member("cea_exception_stacks", "NMI_stack")

    def _new(self, task, cpu: int):
        from dumpfilter.report.backtrace import Backtrace

        return Backtrace(task.pid, task.address, cpu, task.comm, "orc")

    def _fallback(self, bt, regs: Dict[str, int], why: str) -> None:
        from dumpfilter.report.backtrace import _stack_scan

        bt.errors.append(f"{why}; using a stack scan")
        bt.method = "stack scan"
        bt.frames = []
        _stack_scan(self.ctx, regs, bt)

    def _orc(self, bt, regs: Dict[str, int], exact: bool = True,
             slot: Optional[int] = None) -> None:
        from dumpfilter.report.backtrace import _orc_unwind

        if self.orc is None:
            self._fallback(bt, regs, self.orc_error)
            return
        try:
            _orc_unwind(self.ctx, self.orc, regs, bt, exact=exact, slot=slot)
        except FaultError as e:
            bt.errors.append(f"ORC unwinding stopped: {e.message}")

    def _nmi_range(self, cpu: int, note: Dict[str, int]):
        """[lo, hi) of ``cpu``'s NMI stack, or None (unknown, or the CPU
        stopped on that stack itself: the note says it all)."""
        if self.nmi_stack is None:
            return None
        try:
            lo = self.ctx.u64(self.tr.per_cpu_addr("cea_exception_stacks", cpu)) \
                + self.nmi_stack.offset
        except (DumpFilterError, FaultError):
            return None
        hi = lo + self.nmi_stack.size
        return None if lo <= note["rsp"] < hi else (lo, hi)

    def active(self, task, cpu: int, panic: bool):
        bt = self._new(task, cpu)
        note = self.regs.get(cpu)
        if note is None:
            bt.errors.append(f"no NT_PRSTATUS note for CPU {cpu}")
            return bt
        regs = note.regs
        if panic:
            # The panic CPU: as --bt (an Oops' crash path above its exception).
            from dumpfilter.report.backtrace import backtrace

            return backtrace(self.ctx, task.pid, task.address, cpu, task.comm, regs)
        rng = self._nmi_range(cpu, regs)
        if rng is not None and self.orc is not None:
            from dumpfilter.report.backtrace import return_addresses, unwind_to

            if unwind_to(self.ctx, self.orc, return_addresses(self.ctx, *rng), regs, bt,
                         NMI_HANDLER, limit=32):
                return bt
        self._orc(bt, regs)
        if len(bt.frames) <= 2 and self.orc is not None:
            self._fallback(bt, regs, "ORC unwinding stopped early")
        return bt

    def inactive(self, task):
        bt = self._new(task, task.cpu)
        if self.switch_error:
            bt.errors.append(self.switch_error)
            return bt
        try:
            sp = self.ctx.u64(task.address + self.thread_sp)
            frame = self.ctx.read(sp, self.itf_size)
        except FaultError as e:
            bt.errors.append(f"saved stack of pid {task.pid} is not in the dump ({e.message})")
            return bt
        bp = struct.unpack_from("<Q", frame, self.itf_bp)[0]
        ret = struct.unpack_from("<Q", frame, self.itf_ret)[0]
        self._orc(bt, {"rip": ret, "rsp": sp + self.itf_size, "rbp": bp}, exact=False, slot=sp)
        return bt


def _panic_cpu(sysinfo: Optional[Dict]) -> Optional[int]:
    pt = (sysinfo or {}).get("panic_task")
    return pt["cpu"] if pt else None


def _order(tasks):
    return sorted(tasks, key=lambda t: (t.pid, not t.idle, t.cpu))


def bt_all(ctx, tasks, sysinfo: Optional[Dict]) -> Dict:
    """``bt -a``: the active task of each online CPU, panic CPU first as
    crash lists them (CPU order)."""
    u = _Unwinder(ctx)
    active = sorted((t for t in tasks.tasks if t.running_on_cpu is not None),
                    key=lambda t: t.running_on_cpu)
    panic = _panic_cpu(sysinfo)
    out = [bt_dict(u.active(t, t.running_on_cpu, t.running_on_cpu == panic)) for t in active]
    errors = [f"pid {b['pid']}: {e}" for b in out for e in b["errors"]]
    return {"tasks": out, "errors": errors}


def foreach_bt(ctx, tasks, states: Optional[List[str]] = None,
               sysinfo: Optional[Dict] = None) -> Dict:
    """``foreach bt``: every task (``states``: only those state letters)."""
    u = _Unwinder(ctx)
    panic = _panic_cpu(sysinfo)
    out = []
    for t in _order(tasks.tasks):
        if states and t.state not in states:
            continue
        if t.running_on_cpu is not None:
            b = u.active(t, t.running_on_cpu, t.running_on_cpu == panic)
        else:
            b = u.inactive(t)
        out.append(bt_dict(b))
    errors = [f"pid {b['pid']}: {e}" for b in out for e in b["errors"]]
    return {"tasks": out, "states": states, "errors": errors}


def bts_lines(sec: Dict, name: str) -> List[str]:
    from dumpfilter.report.render import frames_text

    if sec.get("error"):
        return [f"{name}: {sec['error']}"]
    out: List[str] = []
    for k, bt in enumerate(sec["tasks"]):
        if k:
            out.append("")
        head = (f'PID: {bt["pid"]:<7d}  TASK: {int(bt["task"], 16):<16x}  CPU: {bt["cpu"]:<3d}  '
                f'COMMAND: "{bt["comm"]}"')
        if bt["method"] != "orc":
            head += "  (stack scan)"
        out.append(head)
        out.extend(frames_text(bt["frames"]))
        out.extend(f"    ({e})" for e in bt["errors"])
    return out


__all__ = ["bt_all", "bt_dict", "bts_lines", "foreach_bt"]
