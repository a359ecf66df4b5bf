"""Tasks and a panic in a synthetic kernel: what ``dumpfilter-report``
reads to name the panic task and unwind its stack.

:func:`install_crash` is called by the builder (``ImageSpec.crash``) after
the kernel data is laid out and before the workload takes the free RAM.
It writes, in the kernel image (text and a data area) and in memblock
memory of the direct map:

* kernel text: one 256-byte function per name of every scenario in
  :mod:`.crashes` (the same layout for every scenario, as one kernel build),
  NOPs with a ``call rel32`` (``e8``) at +0x40, so return addresses point
  right after a call (what the stack-scan fallback checks);
* the built-in ORC tables (``__start_orc_unwind_ip`` s32 place-relative ips,
  ``__start_orc_unwind`` 6-byte ``struct orc_entry`` of the 6.1 layout: s16
  sp_offset, s16 bp_offset, sp_reg:4, bp_reg:4, type:2, end:1): one entry
  per function — CALL with a fixed frame size, REGS for entry code
  (pt_regs at the stack pointer), ``end`` for ``ret_from_fork``;
* the panic task's 16 KiB stack laid out so that this ORC unwinds it into
  exactly the scenario's frames, with the panic CPU's NT_PRSTATUS
  registers (rip in the first function) pointing at its bottom;
* tasks (``init_task`` and idle tasks, init, kthreadd, a few others, a
  two-thread process, the panic task): ``task_struct`` on ``init_task.tasks``,
  thread lists through ``signal_struct.thread_head``, per-cpu ``runqueues``
  (``rq.curr``/``rq.idle``) and ``current_task`` with ``__per_cpu_offset``,
  cpu masks, ``panic_cpu``;
* a loaded module (``modules`` list, ``struct module`` with ``core_layout``
  and ``mod_kallsyms``) whose text is mapped at the module area;
* ``jiffies_64``, ``tick_nsec`` (HZ 250), ``avenrun``, ``cpu_khz``,
  ``node_present_pages``, a structured printk ring ending in the panic
  lines, the BTF describing every struct above (``__start_BTF``) and the
  kallsyms tables naming every symbol.

It returns the VMCOREINFO lines that export kallsyms and the log, and sets
the builder's per-CPU NT_PRSTATUS registers and pids.
"""
from __future__ import annotations

import struct
import zlib
from typing import Dict, List, Tuple

from . import btfgen, kallsymsgen, printkgen
from .crashes import CRASHES, CrashSpec, get_crash, is_end_frame, is_regs_frame

PAGE = 4096
THREAD_SIZE = 16384
PT_REGS_SIZE = 21 * 8
FUNC_SIZE, PC_AT, FAULT_AT, CALL_AT = 0x100, 0x10, 0x30, 0x40
IMG_TEXT = 0x10000  # functions, from _stext + this
IMG_DATA, IMG_DATA_END = 0x208000, 0x400000
MODULE_AREA = 0xFFFFFFFFC0000000
HZ, TICK_NSEC = 250, 4_000_000
#: ORC (6.1 layout): registers and frame types.
ORC_REG_UNDEFINED, ORC_REG_SP = 0, 5
ORC_TYPE_CALL, ORC_TYPE_REGS = 0, 1
PT_REGS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
           "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss")

# struct layouts (byte offsets) shared by the writer and the BTF
T_CPU, T_STATE, T_STACK, T_TASKS, T_PID, T_TGID = 20, 24, 32, 64, 96, 100
T_PARENT, T_THREAD_NODE, T_SIGNAL, T_MM, T_EXIT_STATE, T_COMM, TASK_SIZE = 104, 112, 128, 136, 144, 160, 256
SIG_THREAD_HEAD, SIG_SIZE = 16, 64
RQ_CURR, RQ_IDLE, RQ_SIZE = 0x40, 0x48, 0x100
PCPU_RQ, PCPU_CURRENT = 0, 0x200
MM_SIZE = 64
PGDAT_START_PFN, PGDAT_PRESENT, PGDAT_SPANNED, PGDAT_SIZE = 171560, 171568, 171576, 174208
MOD_LIST, MOD_NAME, MOD_CORE, MOD_KALLSYMS, MOD_ARCH, MODULE_SIZE = 8, 24, 80, 128, 160, 256


def frame_size(func: str) -> int:
    """Bytes a (non-entry) function keeps on the stack below its return address."""
    return 8 * (1 + zlib.crc32(func.encode()) % 5)


def kernel_functions() -> List[str]:
    names = {f.split(" [", 1)[0] for c in CRASHES.values() for f in c.frames if " [" not in f}
    return sorted(names)


def module_functions(mod: str) -> List[str]:
    names = {f.split(" [", 1)[0] for c in CRASHES.values() for f in c.frames if f.endswith(f"[{mod}]")}
    return sorted(names | {f"{mod}_init", f"{mod}_exit"})


def _btf() -> bytes:
    w = btfgen.BtfWriter()
    i32, u32 = w.int("int", 4, True), w.int("unsigned int", 4)
    u16, s16 = w.int("short unsigned int", 2), w.int("short int", 2, True)
    ulong, long_ = w.int("long unsigned int", 8), w.int("long int", 8, True)
    char = w.int("char", 1)
    w.struct("list_head", 16, [("next", w.ptr("struct list_head"), 0, 0),
                               ("prev", w.ptr("struct list_head"), 64, 0)])
    lh = "struct list_head"
    w.struct("thread_info", 24, [("flags", ulong, 0, 0), ("syscall_work", ulong, 64, 0),
                                 ("status", u32, 128, 0), ("cpu", u32, 160, 0)])
    w.struct("task_struct", TASK_SIZE, [
        ("thread_info", "struct thread_info", 0, 0), ("__state", u32, 8 * T_STATE, 0),
        ("stack", w.ptr(ulong), 8 * T_STACK, 0), ("tasks", lh, 8 * T_TASKS, 0),
        ("pid", i32, 8 * T_PID, 0), ("tgid", i32, 8 * T_TGID, 0),
        ("real_parent", w.ptr("struct task_struct"), 8 * T_PARENT, 0),
        ("thread_node", lh, 8 * T_THREAD_NODE, 0),
        ("signal", w.ptr("struct signal_struct"), 8 * T_SIGNAL, 0),
        ("mm", w.ptr("struct mm_struct"), 8 * T_MM, 0), ("exit_state", i32, 8 * T_EXIT_STATE, 0),
        ("comm", w.array(char, 16), 8 * T_COMM, 0)])
    w.struct("signal_struct", SIG_SIZE, [("nr_threads", i32, 0, 0),
                                         ("thread_head", lh, 8 * SIG_THREAD_HEAD, 0)])
    w.struct("rq", RQ_SIZE, [("nr_running", u32, 0, 0),
                             ("curr", w.ptr("struct task_struct"), 8 * RQ_CURR, 0),
                             ("idle", w.ptr("struct task_struct"), 8 * RQ_IDLE, 0)])
    w.struct("cpumask", 8, [("bits", w.array(ulong, 1), 0, 0)])
    w.struct("mm_rss_stat", 32, [("count", w.array(long_, 4), 0, 0)])
    w.struct("mm_struct", MM_SIZE, [("total_vm", ulong, 0, 0), ("rss_stat", "struct mm_rss_stat", 64, 0)])
    w.enum("", {"MM_FILEPAGES": 0, "MM_ANONPAGES": 1, "MM_SWAPENTS": 2, "MM_SHMEMPAGES": 3})
    w.struct("pglist_data", PGDAT_SIZE, [("node_start_pfn", ulong, 8 * PGDAT_START_PFN, 0),
                                         ("node_present_pages", ulong, 8 * PGDAT_PRESENT, 0),
                                         ("node_spanned_pages", ulong, 8 * PGDAT_SPANNED, 0)])
    w.struct("orc_entry", 6, [("sp_offset", s16, 0, 0), ("bp_offset", s16, 16, 0),
                              ("sp_reg", u32, 32, 4), ("bp_reg", u32, 36, 4),
                              ("type", u32, 40, 2), ("end", u32, 42, 1)])
    w.struct("module_layout", 16, [("base", w.ptr(ulong), 0, 0), ("size", u32, 64, 0)])
    w.struct("mod_kallsyms", 24, [("symtab", w.ptr(ulong), 0, 0), ("num_symtab", u32, 64, 0),
                                  ("strtab", w.ptr(char), 128, 0)])
    w.struct("mod_arch_specific", 24, [("num_orcs", u32, 0, 0), ("orc_unwind_ip", w.ptr(i32), 64, 0),
                                       ("orc_unwind", w.ptr("struct orc_entry"), 128, 0)])
    w.struct("module", MODULE_SIZE, [("state", u32, 0, 0), ("list", lh, 8 * MOD_LIST, 0),
                                     ("name", w.array(char, 56), 8 * MOD_NAME, 0),
                                     ("core_layout", "struct module_layout", 8 * MOD_CORE, 0),
                                     ("kallsyms", w.ptr("struct mod_kallsyms"), 8 * MOD_KALLSYMS, 0),
                                     ("arch", "struct mod_arch_specific", 8 * MOD_ARCH, 0)])
    del u16
    return w.blob()


class _Installer:
    def __init__(self, b, crash: CrashSpec):
        self.b, self.c = b, crash
        self.ncpu = b.spec.nr_cpus
        if not 0 <= crash.cpu < self.ncpu:
            raise ValueError(f"crash {crash.name!r} panics on CPU {crash.cpu}; the image has {self.ncpu}")
        self.data = IMG_DATA
        self.syms: List[Tuple[str, str, int]] = []
        self.pool: List[int] = []  # free slots of TASK_SIZE in memblock pages

    # ---------------------------------------------------------------- memory
    def u64(self, va: int, v: int) -> None:
        self.b.write_phys(self.pa(va), struct.pack("<Q", v & (2**64 - 1)))

    def pa(self, va: int) -> int:
        b = self.b
        if va >= b.kernel_vaddr:
            return b.kernel_paddr + va - b.kernel_vaddr
        return va - b.page_offset_base

    def write(self, va: int, data: bytes) -> None:
        self.b.write_phys(self.pa(va), data)

    def image_alloc(self, name: str, size: int, letter: str = "D", align: int = 64) -> int:
        self.data = -(-self.data // align) * align
        off = self.data
        self.data += size
        if self.data > IMG_DATA_END:
            raise ValueError("synthetic kernel data area is full")
        for p in range(off // PAGE, -(-self.data // PAGE)):
            self.b.structural.add(self.b.kpa(p * PAGE) // PAGE)
        va = self.b.kva(off)
        if name:
            self.syms.append((name, letter, va))
        return va

    def direct_alloc(self, pages: int, align: int = 1) -> int:
        return self.b.page_offset_base + self.b.memblock_alloc(pages, align) * PAGE

    def small_alloc(self) -> int:
        """TASK_SIZE bytes of direct-map memory."""
        if not self.pool:
            page = self.direct_alloc(1)
            self.pool = [page + i * TASK_SIZE for i in range(PAGE // TASK_SIZE)][::-1]
        return self.pool.pop()

    # ---------------------------------------------------------------- text + ORC
    def text(self) -> None:
        b = self.b
        self.func = {}
        code = bytearray(b"\x90" * FUNC_SIZE)
        code[CALL_AT:CALL_AT + 5] = b"\xe8" + struct.pack("<i", 0)
        code[FUNC_SIZE - 1] = 0xC3
        names = kernel_functions()
        for i, name in enumerate(names):
            va = b.kva(IMG_TEXT + i * FUNC_SIZE)
            self.func[name] = va
            self.syms.append((name, "T", va))
        text = bytes(code) * len(names)
        b.write_phys(b.kpa(IMG_TEXT), text)
        for p in range(IMG_TEXT // PAGE, -(-(IMG_TEXT + len(text)) // PAGE)):
            b.structural.add(b.kpa(p * PAGE) // PAGE)
        self.syms += [("_stext", "T", b.kernel_vaddr), ("_etext", "T", b.kva(0x200000))]
        entries = self.orc_entries(names, b.kva(IMG_TEXT + len(names) * FUNC_SIZE))
        n = len(entries)
        ip_va = self.image_alloc("__start_orc_unwind_ip", 4 * n, "R", 16)
        self.syms.append(("__stop_orc_unwind_ip", "R", ip_va + 4 * n))
        orc_va = self.image_alloc("__start_orc_unwind", 6 * n, "R", 16)
        self.syms.append(("__stop_orc_unwind", "R", orc_va + 6 * n))
        ips, orcs = self.orc_tables(entries, ip_va)
        self.write(ip_va, ips)
        self.write(orc_va, orcs)

    def orc_entries(self, names: List[str], end: int) -> List[Tuple[int, Tuple[int, int, int]]]:
        """ORC: one entry per function plus a terminator after the last one."""
        entries = []
        for name in names:
            if is_regs_frame(name):
                e = (0, 0, ORC_REG_SP | ORC_TYPE_REGS << 8)
            else:
                last = 1 if is_end_frame(name) else 0
                e = (frame_size(name) + 8, 0, ORC_REG_SP | ORC_TYPE_CALL << 8 | last << 10)
            entries.append((self.func[name], e))
        entries.append((end, (0, 0, ORC_REG_UNDEFINED)))
        return entries

    @staticmethod
    def orc_tables(entries, ip_va: int) -> Tuple[bytes, bytes]:
        """The s32 place-relative ip table (at ``ip_va``) and the 6-byte entries."""
        return (b"".join(struct.pack("<i", a - (ip_va + 4 * i)) for i, (a, _) in enumerate(entries)),
                b"".join(struct.pack("<hhH", *e) for _, e in entries))

    def module(self, name: str) -> None:
        """A loaded module with its text mapped in the module area."""
        b = self.b
        funcs = module_functions(name)
        text_va = MODULE_AREA + 0x1000 * (1 + zlib.crc32(name.encode()) % 256)
        pa = b.memblock_alloc(1) * PAGE
        b.map_range(text_va, pa, PAGE, PAGE, nx=False)
        code = bytearray(b"\x90" * FUNC_SIZE)
        code[CALL_AT:CALL_AT + 5] = b"\xe8" + struct.pack("<i", 0)
        b.write_phys(pa, bytes(code) * len(funcs))
        strtab = b"\0" + b"".join(f.encode() + b"\0" for f in funcs)
        symtab = bytes(24)
        pos = 1
        for i, f in enumerate(funcs):
            self.func[f] = text_va + i * FUNC_SIZE
            symtab += struct.pack("<IBBHQQ", pos, 0x12, 0, 1, text_va + i * FUNC_SIZE, FUNC_SIZE)
            pos += len(f) + 1
        mod = self.small_alloc()
        blob = self.direct_alloc(1)
        self.write(blob, symtab + strtab)
        kall = self.small_alloc()
        self.u64(kall, blob)
        self.write(kall + 8, struct.pack("<I", len(funcs) + 1))
        self.u64(kall + 16, blob + len(symtab))
        self.write(mod + MOD_NAME, name.encode()[:55])
        self.u64(mod + MOD_CORE, text_va)
        self.write(mod + MOD_CORE + 8, struct.pack("<I", PAGE))
        self.u64(mod + MOD_KALLSYMS, kall)
        # The module's own ORC tables (mod_arch_specific, as module_finalize
        # leaves them: sorted, place-relative ips).
        entries = self.orc_entries(funcs, text_va + len(funcs) * FUNC_SIZE)
        tables = text_va + PAGE  # module memory, next to its text (place-relative s32 ips)
        tables_pa = b.memblock_alloc(1) * PAGE
        b.map_range(tables, tables_pa, PAGE, PAGE, nx=True)
        ips, orcs = self.orc_tables(entries, tables)
        b.write_phys(tables_pa, ips + orcs)
        self.write(mod + MOD_ARCH, struct.pack("<I", len(entries)))
        self.u64(mod + MOD_ARCH + 8, tables)
        self.u64(mod + MOD_ARCH + 16, tables + 4 * len(entries))
        self.modules.append(mod + MOD_LIST)

    # ---------------------------------------------------------------- the stack
    def stack(self, task: int) -> Dict[str, int]:
        """Lay out the panic task's stack; return the panic CPU's registers."""
        c = self.c
        base = self.direct_alloc(THREAD_SIZE // PAGE, THREAD_SIZE // PAGE)
        self.u64(task + T_STACK, base)
        names = c.frame_names()
        top = base + THREAD_SIZE
        n = len(names)
        mem = bytearray(THREAD_SIZE)

        def put(va: int, v: int) -> None:
            struct.pack_into("<Q", mem, va - base, v & (2**64 - 1))

        def pt_regs(va: int, rip: int, rsp: int, user: bool) -> None:
            vals = {r: (0x1000 + 8 * i) for i, r in enumerate(PT_REGS)}
            vals.update(rip=rip, rsp=rsp, rbp=0, orig_rax=2**64 - 1, eflags=0x246,
                        cs=0x33 if user else 0x10, ss=0x2B if user else 0x18)
            for i, r in enumerate(PT_REGS):
                put(va + 8 * i, vals[r])

        def fill_locals(lo: int, hi: int, func: str) -> None:
            for i, va in enumerate(range(lo, hi, 8)):
                put(va, zlib.crc32(f"{func}{i}".encode()) & 0xFFFF)

        last = names[-1]
        if is_regs_frame(last):  # entered from user mode: user pt_regs at the top
            sp = top - PT_REGS_SIZE
            pt_regs(sp, 0x7F0000401000 + 0x10 * n, 0x7FFD00000000 + 0x100, user=True)
        else:
            sp = top - 64  # a kernel thread's first frame
        sps = [0] * n
        sps[n - 1] = sp
        for k in range(n - 2, -1, -1):
            caller, callee = names[k + 1], names[k]
            if is_regs_frame(callee):  # callee interrupted caller at FAULT_AT
                sp = sp - PT_REGS_SIZE
                pt_regs(sp, self.func[caller] + FAULT_AT, sps[k + 1], user=False)
            else:
                put(sp - 8, self.func[caller] + CALL_AT + 5)
                s = frame_size(callee)
                fill_locals(sp - 8 - s, sp - 8, callee)
                sp = sp - 8 - s
            sps[k] = sp
        self.write(base, bytes(mem))
        rip = self.func[names[0]] + PC_AT
        regs = {r: 0 for r in PT_REGS}
        regs.update(rip=rip, rsp=sps[0], rbp=0, cs=0x10, ss=0x18, eflags=0x246, orig_rax=2**64 - 1)
        return regs

    # ---------------------------------------------------------------- tasks
    def tasks(self) -> Dict[str, int]:
        c = self.c
        kthread_user = not is_end_frame(c.frame_names()[-1])
        plan = [(1, "init", False), (2, "kthreadd", True)]
        plan += [(pid, comm, "/" in comm or comm.startswith("k")) for pid, comm in c.others]
        if c.pid not in {p for p, _, _ in plan}:
            plan.append((c.pid, c.comm, not kthread_user))
        threads = {301: [(302, "journal-offline")]}
        init_task = self.image_alloc("init_task", TASK_SIZE, "D")
        idle = [init_task] + [self.small_alloc() for _ in range(1, self.ncpu)]
        for cpu, t in enumerate(idle):
            self.task(t, 0, 0, f"swapper/{cpu}", cpu, init_task, 0)
        by_pid = {}
        leaders = []
        for pid, comm, kthread in plan:
            t = self.small_alloc()
            parent = init_task if pid in (1, 2) else (by_pid[2] if kthread else by_pid[1])
            state = 0 if pid == c.pid else (0x402 if comm.startswith("kworker") else 1)
            cpu = c.cpu if pid == c.pid else pid % self.ncpu
            mm = 0
            if not kthread:
                mm = self.small_alloc()
                self.u64(mm, 1000 + pid)
                self.write(mm + 8, struct.pack("<4q", 10 + pid % 7, 20 + pid % 11, 0, 1))
            self.task(t, pid, pid, comm, cpu, parent, state, mm)
            by_pid[pid] = t
            leaders.append(t)
            sig = self.small_alloc()
            group = [t]
            for tpid, tcomm in threads.get(pid, []):
                th = self.small_alloc()
                self.task(th, tpid, pid, tcomm, tpid % self.ncpu, parent, 1, mm)
                self.u64(th + T_SIGNAL, sig)
                group.append(th)
            self.u64(t + T_SIGNAL, sig)
            self.link(sig + SIG_THREAD_HEAD, [g + T_THREAD_NODE for g in group])
        self.link(init_task + T_TASKS, [t + T_TASKS for t in leaders])
        panic_task = by_pid[c.pid]
        # per-cpu: runqueues and current_task, cpu masks, panic_cpu
        tmpl = self.image_alloc("", PAGE, align=PAGE)
        self.syms += [("runqueues", "D", tmpl + PCPU_RQ), ("current_task", "D", tmpl + PCPU_CURRENT)]
        offs = []
        for cpu in range(self.ncpu):
            area = self.direct_alloc(1)
            offs.append(area - tmpl)
            curr = panic_task if cpu == c.cpu else idle[cpu]
            self.u64(area + PCPU_RQ + RQ_CURR, curr)
            self.u64(area + PCPU_RQ + RQ_IDLE, idle[cpu])
            self.u64(area + PCPU_CURRENT, curr)
        va = self.image_alloc("__per_cpu_offset", 8 * self.ncpu)
        self.write(va, struct.pack("<%dQ" % self.ncpu, *[o & (2**64 - 1) for o in offs]))
        mask = struct.pack("<Q", (1 << self.ncpu) - 1)
        for name in ("__cpu_possible_mask", "__cpu_online_mask", "__cpu_present_mask"):
            self.write(self.image_alloc(name, 8, "R"), mask)
        self.write(self.image_alloc("panic_cpu", 4), struct.pack("<i", c.cpu))
        return {"panic_task": panic_task, "pid": c.pid}

    def task(self, t: int, pid: int, tgid: int, comm: str, cpu: int, parent: int, state: int,
             mm: int = 0) -> None:
        raw = bytearray(TASK_SIZE)
        struct.pack_into("<I", raw, T_CPU, cpu)
        struct.pack_into("<I", raw, T_STATE, state)
        struct.pack_into("<ii", raw, T_PID, pid, tgid)
        struct.pack_into("<Q", raw, T_PARENT, parent)
        struct.pack_into("<Q", raw, T_MM, mm)
        raw[T_COMM:T_COMM + 15] = comm.encode()[:15].ljust(15, b"\0")
        self.write(t, bytes(raw))
        self.link(t + T_THREAD_NODE, [])

    def link(self, head: int, nodes: List[int]) -> None:
        """A circular list_head list ``head`` -> nodes."""
        ring = [head] + nodes
        for i, node in enumerate(ring):
            self.u64(node, ring[(i + 1) % len(ring)])
            self.u64(node + 8, ring[i - 1])

    # ---------------------------------------------------------------- the rest
    def variables(self, uptime_s: float) -> None:
        jiffies = ((-300 * HZ) & 0xFFFFFFFF) + int(uptime_s * HZ)
        self.u64(self.image_alloc("jiffies_64", 8), jiffies)
        self.u64(self.image_alloc("tick_nsec", 8), TICK_NSEC)
        self.write(self.image_alloc("avenrun", 24), struct.pack("<3Q", 307, 61, 20))
        self.write(self.image_alloc("cpu_khz", 4), struct.pack("<I", 2_400_000))
        head = self.image_alloc("modules", 16)
        self.link(head, self.modules)
        node_data = struct.unpack("<Q", self.b.wpage(self.b.kpa(0x203000) // PAGE)[:8])[0]
        ram_pages = sum(e - s for s, e in self.b.ram) // PAGE
        self.u64(node_data + PGDAT_PRESENT, ram_pages)
        for name, addr in (("init_uts_ns", 0x201000), ("node_online_map", 0x202000),
                           ("node_data", 0x203000), ("swapper_pg_dir", 0x200000)):
            self.syms.append((name, "D", self.b.kva(addr)))

    def printk(self, uptime_s: float) -> List[str]:
        b, c = self.b, self.c
        boot = [(0, 5, f"Linux version {b.prof.osrelease} (synthetic) #1 SMP PREEMPT_DYNAMIC"),
                (1000, 6, "Command line: console=ttyS0 crashkernel=160M"),
                (2_000_000, 6, f"smp: Brought up 1 node, {self.ncpu} CPUs"),
                (3_500_000_000, 6, "synth_drv: loaded")]
        t0 = int(uptime_s * 1e9) - 1_000_000
        recs = boot + [(t0 + 1000 * i, lvl, text) for i, (lvl, text) in enumerate(c.log)]
        size = 16384
        ring, nxt = printkgen.ring(recs, size)
        buf = self.image_alloc("__log_buf", size, "b", PAGE)
        self.write(buf, ring)
        ptr = self.image_alloc("log_buf", 8)
        self.u64(ptr, buf)
        names = {"log_buf": ptr, "log_buf_len": self.image_alloc("log_buf_len", 4),
                 "log_first_idx": self.image_alloc("log_first_idx", 4),
                 "log_next_idx": self.image_alloc("log_next_idx", 4)}
        self.write(names["log_buf_len"], struct.pack("<i", size))
        self.write(names["log_first_idx"], struct.pack("<I", 0))
        self.write(names["log_next_idx"], struct.pack("<I", nxt))
        return printkgen.vmcoreinfo_lines(names)

    def btf_and_kallsyms(self) -> List[str]:
        blob = _btf()
        va = self.image_alloc("__start_BTF", len(blob), "R", 16)
        self.syms.append(("__stop_BTF", "R", va + len(blob)))
        self.write(va, blob)
        tables = kallsymsgen.kallsyms_blobs(self.syms, self.b.kernel_vaddr)
        lines = []
        for name in ("kallsyms_num_syms", "kallsyms_offsets", "kallsyms_relative_base",
                     "kallsyms_names", "kallsyms_token_table", "kallsyms_token_index"):
            data = tables[name]
            addr = self.image_alloc("", len(data) + 256, align=256)
            self.write(addr, data)
            lines.append(f"SYMBOL({name})={addr:x}")
        return lines


def install_crash(b, crash) -> List[str]:
    """Write ``crash`` (a CrashSpec or a name from CRASHES) into the
    builder ``b``; returns extra VMCOREINFO lines."""
    c = get_crash(crash)
    ins = _Installer(b, c)
    ins.modules = []
    ins.text()
    for mod in c.modules:
        ins.module(mod)
    t = ins.tasks()
    regs = ins.stack(t["panic_task"])
    uptime = 100.0 + (b.spec.seed % 1000) / 10
    ins.variables(uptime)
    lines = ins.printk(uptime)
    lines += ins.btf_and_kallsyms()
    b.cpu_regs[c.cpu] = regs
    for cpu in range(b.spec.nr_cpus):
        b.cpu_pids[cpu] = c.pid if cpu == c.cpu else 0
    b.crash = {"name": c.name, "frames": c.frame_names(), "pid": c.pid, "comm": c.comm,
               "cpu": c.cpu, "modules": c.frame_modules(), "panic_task": t["panic_task"]}
    return lines
