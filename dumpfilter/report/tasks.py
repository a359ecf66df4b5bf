"""Tasks of the dumped kernel, with struct layouts from ``ctx.btf`` (the
dump's BTF, or a vmlinux's .BTF or DWARF: ``typesource.TypeSource``).

Reads (kallsyms symbols): ``init_task`` (head of the process list),
``runqueues`` (per-cpu ``struct rq``), ``__per_cpu_offset`` (per-cpu base of
each CPU), ``__cpu_possible_mask`` / ``__cpu_online_mask`` (``struct
cpumask``), ``panic_cpu`` (atomic_t, Linux >= 4.5), per-cpu
``current_task`` or ``pcpu_hot`` (x86 current-task pointer).

BTF types/members (each detected, never assumed from a version):
``task_struct.tasks`` (list_head of processes), ``task_struct.signal`` ->
``signal_struct.thread_head`` with ``task_struct.thread_node`` (threads of a
group, since 3.14, commit 0c740d0afc3b) or else ``task_struct.thread_group``
(removed in 6.7, commit 8e1f385104ac); ``pid``, ``tgid``, ``comm``,
``real_parent``; ``__state`` (renamed from ``state`` in 5.14, commit
2f064a59a11f) and ``exit_state``; the CPU from ``thread_info.cpu`` (back in
thread_info since 5.16, commit bcf9033e5449) or ``task_struct.cpu``
(4.9 .. 5.15); ``rq.curr`` and ``rq.idle``; ``pcpu_hot.current_task``.

Unreadable memory never aborts the walk: every task or list node that is not
in the dump is reported in ``TaskList.errors`` with the address and reason.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from dumpfilter.errors import CorruptDumpError, FaultError, VmcoreInfoError

#: Task state bits (include/linux/sched.h) for the report letter, as
#: ``task_state_to_char``/``__task_state_index`` compute it: the highest set
#: bit of ``(state | exit_state) & TASK_REPORT`` indexes "RSDTtXZP";
#: TASK_IDLE (UNINTERRUPTIBLE|NOLOAD) reports as "I"; TASK_RTLOCK_WAIT as
#: "D" (5.15+). Not in BTF (they are #defines); stable since 4.14.
TASK_REPORT = 0x7F
TASK_UNINTERRUPTIBLE = 0x2
TASK_NOLOAD = 0x400
TASK_IDLE = TASK_UNINTERRUPTIBLE | TASK_NOLOAD
TASK_RTLOCK_WAIT = 0x1000
STATE_CHARS = "RSDTtXZPI"
#: Longest list we follow before declaring it corrupt.
_MAX_TASKS = 1 << 20


def state_letter(state: int, exit_state: int) -> str:
    """crash/drgn-style one-letter task state."""
    if state == TASK_IDLE:
        return "I"
    if state == TASK_RTLOCK_WAIT:
        state = TASK_UNINTERRUPTIBLE
    bits = (state | exit_state) & TASK_REPORT
    return STATE_CHARS[bits.bit_length()]


#: crash's long state names (``ps``/``sys`` STATE line) by letter.
STATE_NAMES = {
    "R": "TASK_RUNNING", "S": "TASK_INTERRUPTIBLE", "D": "TASK_UNINTERRUPTIBLE",
    "T": "TASK_STOPPED", "t": "TASK_TRACED", "X": "EXIT_DEAD", "Z": "EXIT_ZOMBIE",
    "P": "TASK_PARKED", "I": "TASK_IDLE",
}


@dataclass
class Task:
    address: int
    pid: int
    tgid: int
    ppid: int
    comm: str
    state: str  # one letter
    state_raw: int
    exit_state: int
    cpu: int
    idle: bool = False
    #: CPU this task is the current task of (rq.curr), else None.
    running_on_cpu: Optional[int] = None


@dataclass
class TaskList:
    tasks: List[Task]
    errors: List[str] = field(default_factory=list)

    def by_address(self) -> Dict[int, Task]:
        return {t.address: t for t in self.tasks}

    def by_pid(self, pid: int) -> List[Task]:
        return [t for t in self.tasks if t.pid == pid]

    def __len__(self) -> int:
        return len(self.tasks)


@dataclass
class PanicTask:
    cpu: int
    task: Optional[Task]
    #: How the panic CPU was found ("panic_cpu", ...).
    source: str
    #: pr_pid of that CPU's NT_PRSTATUS note (None if no note matched).
    prstatus_pid: Optional[int]
    #: Address of the CPU's current task per the x86 per-cpu pointer
    #: (``pcpu_hot.current_task`` / ``current_task``), for cross-checking.
    percpu_current: Optional[int] = None
    warnings: List[str] = field(default_factory=list)


class _Layout:
    """The task_struct / rq offsets the walk needs, from BTF."""

    def __init__(self, btf):
        m = btf.member_offset
        self.task_size = btf.sizeof("task_struct")
        self.tasks = m("task_struct", "tasks")
        self.pid = m("task_struct", "pid")
        self.tgid = m("task_struct", "tgid")
        self.comm = m("task_struct", "comm")
        self.comm_len = btf.member("task_struct", "comm").size
        self.real_parent = m("task_struct", "real_parent")
        self.exit_state = m("task_struct", "exit_state")
        if btf.has_member("task_struct", "__state"):
            st = btf.member("task_struct", "__state")
        else:
            st = btf.member("task_struct", "state")  # before 5.14
        self.state, self.state_size = st.offset, st.size
        if btf.has_member("task_struct", "thread_info.cpu"):
            self.cpu = m("task_struct", "thread_info.cpu")
        elif btf.has_member("task_struct", "cpu"):
            self.cpu = m("task_struct", "cpu")
        else:
            self.cpu = None
        self.signal = m("task_struct", "signal")
        if btf.has_member("signal_struct", "thread_head") and btf.has_member("task_struct", "thread_node"):
            self.thread_mode = "thread_head"
            self.thread_head = m("signal_struct", "thread_head")
            self.thread_node = m("task_struct", "thread_node")
        elif btf.has_member("task_struct", "thread_group"):
            self.thread_mode = "thread_group"
            self.thread_node = m("task_struct", "thread_group")
        else:
            self.thread_mode = None
        self.rq_curr = m("rq", "curr")
        self.rq_idle = m("rq", "idle")


class TaskReader:
    """Walks the tasks of the dumped kernel (``ctx`` is a ReportContext)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.btf = ctx.btf
        self.ks = ctx.kallsyms
        self.layout = _Layout(self.btf)
        self._cpu_offsets: Optional[List[int]] = None

    # ------------------------------------------------------------ per cpu

    def cpumask(self, name: str) -> List[int]:
        """CPUs set in the cpumask variable ``name`` (e.g.
        ``__cpu_online_mask``)."""
        addr = self.ks.address(name)
        if addr is None:
            raise VmcoreInfoError(f"kallsyms has no {name}")
        size = self.btf.sizeof("cpumask")
        raw = int.from_bytes(self.ctx.read(addr, size), "little")
        return [i for i in range(8 * size) if raw >> i & 1]

    def per_cpu_offsets(self) -> List[int]:
        """``__per_cpu_offset[cpu]`` for every possible CPU id (indexable
        by CPU number; impossible CPUs hold whatever the array has)."""
        if self._cpu_offsets is None:
            addr = self.ks.require("__per_cpu_offset")
            possible = self.cpumask("__cpu_possible_mask")
            n = (max(possible) + 1) if possible else 1
            raw = self.ctx.read(addr, 8 * n)
            self._cpu_offsets = list(struct.unpack("<%dQ" % n, raw))
        return self._cpu_offsets

    def per_cpu_addr(self, symbol: str, cpu: int) -> int:
        base = self.ks.require(symbol)
        offs = self.per_cpu_offsets()
        if cpu >= len(offs):
            raise VmcoreInfoError(f"CPU {cpu} is not a possible CPU")
        return (base + offs[cpu]) & ((1 << 64) - 1)

    def rq(self, cpu: int) -> int:
        return self.per_cpu_addr("runqueues", cpu)

    def rq_curr(self, cpu: int) -> int:
        return self.ctx.u64(self.rq(cpu) + self.layout.rq_curr)

    def rq_idle(self, cpu: int) -> int:
        return self.ctx.u64(self.rq(cpu) + self.layout.rq_idle)

    def percpu_current(self, cpu: int) -> Optional[int]:
        """x86's per-cpu current task pointer, if the kernel has one:
        ``pcpu_hot.current_task`` (6.2+) or ``current_task``."""
        if "pcpu_hot" in self.ks and self.btf.has_struct("pcpu_hot"):
            off = self.btf.member_offset("pcpu_hot", "current_task")
            return self.ctx.u64(self.per_cpu_addr("pcpu_hot", cpu) + off)
        if "current_task" in self.ks:
            return self.ctx.u64(self.per_cpu_addr("current_task", cpu))
        return None

    # ------------------------------------------------------------ tasks

    def read_task(self, addr: int) -> Task:
        L = self.layout
        raw = self.ctx.read(addr, L.task_size)
        u32 = lambda off: struct.unpack_from("<I", raw, off)[0]  # noqa: E731
        s32 = lambda off: struct.unpack_from("<i", raw, off)[0]  # noqa: E731
        u64 = lambda off: struct.unpack_from("<Q", raw, off)[0]  # noqa: E731
        comm = raw[L.comm:L.comm + L.comm_len].split(b"\0", 1)[0].decode("utf-8", "replace")
        state = u64(L.state) if L.state_size == 8 else u32(L.state)
        exit_state = u32(L.exit_state)
        parent = u64(L.real_parent)
        try:
            ppid = self.ctx.s32(parent + L.tgid) if parent else 0
        except FaultError:
            ppid = -1
        cpu = u32(L.cpu) if L.cpu is not None else 0
        return Task(addr, s32(L.pid), s32(L.tgid), ppid, comm, state_letter(state, exit_state),
                    state, exit_state, cpu)

    def _list(self, head: int, what: str, errors: List[str]) -> List[int]:
        """Node addresses of a list_head list (excluding the head)."""
        out: List[int] = []
        seen = {head}
        try:
            node = self.ctx.u64(head)
        except FaultError as e:
            errors.append(f"{what}: list head at {head:#x} is not readable ({e.message})")
            return out
        while node != head:
            if node in seen or len(out) > _MAX_TASKS:
                errors.append(f"{what}: list loops or is corrupt at {node:#x}")
                break
            seen.add(node)
            out.append(node)
            try:
                node = self.ctx.u64(node)
            except FaultError as e:
                errors.append(f"{what}: list node at {node:#x} is not in the dump "
                              f"({e.message}); the rest of the list is lost")
                break
        return out

    def walk(self) -> TaskList:
        """Every thread of every process on the task list, plus each
        possible CPU's idle task; ``running_on_cpu`` from ``rq.curr``."""
        L = self.layout
        errors: List[str] = []
        init_task = self.ks.require("init_task")
        tasks: List[Task] = []
        seen = set()

        def add(addr: int, idle: bool = False) -> Optional[Task]:
            if addr in seen:
                return None
            seen.add(addr)
            try:
                t = self.read_task(addr)
            except FaultError as e:
                errors.append(f"task_struct at {addr:#x} is not in the dump ({e.message})")
                return None
            t.idle = idle
            if idle:
                # Secondary CPUs' idle tasks are forked by pid 1, but crash
                # (and the drgn ground truth) report PPID 0 for all of them.
                t.ppid = 0
            tasks.append(t)
            return t

        # Idle tasks first (CPU order), as crash lists them.
        try:
            possible = self.cpumask("__cpu_possible_mask")
        except (VmcoreInfoError, FaultError) as e:
            errors.append(f"cannot read the possible-CPU mask: {e}")
            possible = []
        curr: Dict[int, int] = {}
        for cpu in possible:
            try:
                idle = self.rq_idle(cpu)
                curr[cpu] = self.rq_curr(cpu)
            except FaultError as e:
                errors.append(f"runqueue of CPU {cpu} is not in the dump ({e.message})")
                continue
            if idle:
                add(idle, idle=True)
        if init_task not in seen:
            add(init_task, idle=True)

        leaders = [n - L.tasks for n in self._list(init_task + L.tasks, "task list", errors)]
        for leader in leaders:
            add(leader)
            if L.thread_mode == "thread_head":
                try:
                    signal = self.ctx.u64(leader + L.signal)
                except FaultError as e:
                    errors.append(f"task {leader:#x}: signal pointer not in the dump ({e.message})")
                    continue
                if not signal:
                    continue
                nodes = self._list(signal + L.thread_head, f"threads of task {leader:#x}", errors)
            elif L.thread_mode == "thread_group":
                nodes = self._list(leader + L.thread_node, f"threads of task {leader:#x}", errors)
            else:
                nodes = []
            for n in nodes:
                add(n - L.thread_node)
        for cpu, addr in curr.items():
            for t in tasks:
                if t.address == addr:
                    t.running_on_cpu = cpu
        return TaskList(tasks, errors)

    # ------------------------------------------------------------ panic

    def panic_cpu(self) -> Optional[int]:
        """``panic_cpu`` (atomic_t; -1 = no panic), else x86's
        ``crashing_cpu``; None when neither says."""
        for name in ("panic_cpu", "crashing_cpu"):
            addr = self.ks.address(name)
            if addr is not None:
                val = self.ctx.s32(addr)
                if val >= 0:
                    return val
        if "panic_cpu" in self.ks:
            return None
        return self._crash_kexec_cpu()

    def _crash_kexec_cpu(self) -> Optional[int]:
        """Without a ``panic_cpu`` symbol (it is not exported, so kallsyms
        without CONFIG_KALLSYMS_ALL lacks it): the one CPU whose NT_PRSTATUS
        pc lies in ``__crash_kexec``, where crash_setup_regs() saved the
        panicking CPU's registers (the others saved what their crash-stop
        IPI interrupted); None unless exactly one does."""
        from dumpfilter.report.backtrace import cpu_registers, pc_of

        try:
            online = self.cpumask("__cpu_online_mask")
        except (VmcoreInfoError, FaultError):
            online = None
        try:
            regs = cpu_registers(self.ctx, online)
        except CorruptDumpError:
            return None
        hits = []
        for cpu, r in regs.items():
            hit = self.ks.lookup(pc_of(r.regs))
            if hit is not None and hit[0] in ("__crash_kexec", "crash_kexec"):
                hits.append(cpu)
        return hits[0] if len(hits) == 1 else None

    def panic_task(self, tasks: Optional[TaskList] = None) -> Optional[PanicTask]:
        """The task that panicked: the panic CPU's ``rq.curr``, checked
        against the per-cpu current pointer and the CPU's NT_PRSTATUS pid."""
        cpu = self.panic_cpu()
        if cpu is None:
            return None
        warnings: List[str] = []
        tl = tasks if tasks is not None else self.walk()
        addr = self.rq_curr(cpu)
        task = tl.by_address().get(addr)
        if task is None:
            try:
                task = self.read_task(addr)
            except FaultError as e:
                warnings.append(f"panic task {addr:#x} is not in the dump ({e.message})")
        try:
            cur = self.percpu_current(cpu)
        except FaultError:
            cur = None
        if cur is not None and cur != addr:
            warnings.append(f"CPU {cpu}: rq.curr {addr:#x} != per-cpu current task {cur:#x}")
        pr_pid = self._prstatus_pid(cpu)
        if pr_pid is not None and task is not None and pr_pid != task.pid:
            warnings.append(f"CPU {cpu}: NT_PRSTATUS pr_pid {pr_pid} != pid {task.pid} of rq.curr")
        return PanicTask(cpu, task, "panic_cpu", pr_pid, cur, warnings)

    def _prstatus_pid(self, cpu: int) -> Optional[int]:
        """pr_pid of the note for ``cpu``: notes come in CPU order for the
        CPUs that saved state, so the k-th online CPU has note k."""
        from dumpfilter.formats.elfnotes import decode_prstatus_x86_64, prstatus_notes

        try:
            notes = prstatus_notes(self.ctx.source.notes)
        except CorruptDumpError:
            return None
        try:
            online = self.cpumask("__cpu_online_mask")
        except (VmcoreInfoError, FaultError):
            online = list(range(len(notes)))
        if cpu not in online:
            return None
        k = online.index(cpu)
        if len(notes) != len(online) or k >= len(notes):
            return None
        return decode_prstatus_x86_64(notes[k], k).pid


def read_tasks(ctx) -> TaskList:
    """All tasks (threads + idle tasks) of the dumped kernel."""
    return TaskReader(ctx).walk()
