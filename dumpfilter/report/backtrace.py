"""Per-CPU registers (NT_PRSTATUS) and a backtrace of the panic task.

Reads:

* the dump's ELF notes: one ``CORE``/NT_PRSTATUS note per CPU that saved
  its state, in CPU order (the k-th online CPU owns note k);
* symbols (kallsyms or the vmlinux): ``__start_orc_unwind_ip``, ``__stop_orc_unwind_ip``,
  ``__start_orc_unwind`` (the built-in ORC tables, sorted at build time),
  ``_stext``/``_etext`` (kernel text bounds for the stack-scan fallback);
* the loaded modules' symbols (``modules.ModuleSymbols``): frames in
  module code are named ``func at addr [module]`` and unwound with the
  module's own ORC tables (``struct module.arch``); a module without them
  (or whose tables are not in the dump) is passed by scanning the stack;
* types (BTF or DWARF): ``struct orc_entry`` (its size and the bit positions of
  ``sp_offset``, ``bp_offset``, ``sp_reg``, ``bp_reg``, ``type``, ``end``).
  The width of ``type`` selects the numbering of the frame types: 2 bits =
  CALL 0 / REGS 1 / REGS_PARTIAL 2; 3 bits = UNDEFINED 0 / END_OF_STACK 1 /
  CALL 2 / REGS 3 / REGS_PARTIAL 4 (the later ORC format).

ORC unwinding (facts from the kernel's orc_types.h): each entry describes
how to find the caller's stack pointer (the CFA) from ``sp_reg`` +
``sp_offset`` and the caller's frame pointer from ``bp_reg`` +
``bp_offset``; for CALL frames the return address is the word just below
the CFA; REGS frames hold a full ``struct pt_regs`` at the CFA,
REGS_PARTIAL frames only its iret part (ip, cs, flags, sp, ss).

When the ORC tables are unusable the backtrace falls back to a stack scan:
every word between RSP and the top of the stack that points into kernel
text right after a call instruction; those frames are marked
``(stack scan)`` and may include stale return addresses.
"""
from __future__ import annotations

import array
import bisect
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from dumpfilter.formats.elfnotes import X86_64_REGS, CpuRegisters, decode_prstatus, prstatus_notes
from dumpfilter.errors import DumpFilterError, FaultError

#: x86_64 struct pt_regs: the first 21 words of user_regs_struct.
PT_REGS = X86_64_REGS[:21]
PT_REGS_SIZE = 8 * len(PT_REGS)
#: Offset of ``ip`` in pt_regs (start of the hardware iret frame).
IRET_OFFSET = 8 * PT_REGS.index("rip")
THREAD_SIZE = 16384
MAX_FRAMES = 64

# ORC base registers (orc_types.h; stable since the format appeared).
REG_UNDEFINED, REG_PREV_SP, REG_DX, REG_DI, REG_BP, REG_SP, REG_R10, REG_R13 = range(8)
REG_BP_INDIRECT, REG_SP_INDIRECT = 8, 9


class UnwindError(DumpFilterError):
    """The ORC tables cannot be used."""


@dataclass
class Frame:
    level: int
    stack: int  # stack slot holding ``pc`` (RSP for the first frame)
    pc: int
    symbol: str
    #: pt_regs of an exception/entry frame ending here (name -> value).
    regs: Optional[Dict[str, int]] = None
    #: The caller of this frame was found by a stack scan, not by ORC.
    scanned: bool = False
    #: Loaded module holding ``pc`` (crash prints ``at <pc> [module]``).
    module: Optional[str] = None
    #: For a frame with kernel-mode ``regs``: crash's ``[exception RIP:
    #: sym+off]`` text, and the stack the exception was taken on when it
    #: is not the interrupted one ("NMI exception stack", "IRQ stack").
    exception_rip: Optional[str] = None
    stack_name: Optional[str] = None
    #: False for the function an exception on the same stack interrupted:
    #: crash names it only in the ``[exception RIP: ...]`` line (it stays in
    #: the JSON frames; ``level`` is then the next shown frame's).
    shown: bool = True


def _frame(ctx, level: int, slot: int, pc: int) -> Frame:
    """A frame named by ``ctx.symbolize``: kernel or module symbol."""
    name, mod = ctx.symbolize(pc)
    return Frame(level, slot, pc, name.split("+")[0], module=mod)


def _in_module(ctx, addr: int) -> bool:
    mods = ctx.module_symbols
    return mods is not None and mods.module_at(addr) is not None


@dataclass
class Backtrace:
    pid: int
    task: int
    cpu: int
    comm: str
    method: str  # "orc" or "stack scan"
    frames: List[Frame] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    #: Some ORC-less frame was skipped by scanning the stack.
    scanned: bool = False


# --------------------------------------------------------------------------- registers

def cpu_registers(ctx, online: Optional[List[int]] = None) -> Dict[int, CpuRegisters]:
    """CPU number -> decoded NT_PRSTATUS. Notes are matched to the online
    CPUs in order; without a cpu mask (or a count mismatch) note k is
    reported as CPU k."""
    notes = prstatus_notes(ctx.source.notes)
    regs = [decode_prstatus(n, i, ctx.source.e_machine) for i, n in enumerate(notes)]
    if online is None or len(online) != len(regs):
        online = list(range(len(regs)))
    return dict(zip(online, regs))


def format_regs(r: Dict[str, int], indent: str = "    ") -> List[str]:
    """crash's register block (x86_64, or arm64 for arm64 registers)."""
    from dumpfilter.report import arm64

    if arm64.is_arm64_regs(r):
        return arm64.format_regs(r, indent)
    def q(name):
        return f"{r.get(name, 0):016x}"
    rows = [
        f"RIP: {q('rip')}  RSP: {q('rsp')}  RFLAGS: {r.get('eflags', 0):08x}",
        f"RAX: {q('rax')}  RBX: {q('rbx')}  RCX: {q('rcx')}",
        f"RDX: {q('rdx')}  RSI: {q('rsi')}  RDI: {q('rdi')}",
        f"RBP: {q('rbp')}   R8: {q('r8')}   R9: {q('r9')}",
        f"R10: {q('r10')}  R11: {q('r11')}  R12: {q('r12')}",
        f"R13: {q('r13')}  R14: {q('r14')}  R15: {q('r15')}",
        f"ORIG_RAX: {q('orig_rax')}  CS: {r.get('cs', 0):04x}  SS: {r.get('ss', 0):04x}",
    ]
    return [indent + row for row in rows]


# --------------------------------------------------------------------------- ORC

class OrcTable:
    """The kernel's built-in ORC unwind tables."""

    def __init__(self, ctx):
        ks, btf = ctx.kallsyms, ctx.btf
        start = ks.address("__start_orc_unwind_ip")
        stop = ks.address("__stop_orc_unwind_ip")
        orc = ks.address("__start_orc_unwind")
        if start is None or stop is None or orc is None or stop <= start:
            raise UnwindError("kallsyms has no ORC tables (__start_orc_unwind_ip ...)")
        if not btf.has_struct("orc_entry"):
            raise UnwindError("BTF has no struct orc_entry")
        self.esize = btf.sizeof("orc_entry")
        self.fields = {m.name: m for m in btf.members("orc_entry")}
        for need in ("sp_offset", "bp_offset", "sp_reg", "bp_reg", "type"):
            if need not in self.fields:
                raise UnwindError(f"struct orc_entry has no {need}")
        if self.fields["type"].bitfield_size >= 3:
            self.t_undef, self.t_eos, self.t_call, self.t_regs, self.t_partial = 0, 1, 2, 3, 4
        else:
            self.t_undef, self.t_eos, self.t_call, self.t_regs, self.t_partial = -1, -1, 0, 1, 2
        n = (stop - start) // 4
        self.ips, self.raw = self._load(ctx, start, orc, n, "the kernel's")
        self.n = n
        self._ctx = ctx
        #: module name -> (ips, raw entries), or an error string.
        self._mods: Dict[str, object] = {}
        #: Why a module's frames could not be unwound (module -> reason).
        self.module_errors: Dict[str, str] = {}

    def _load(self, ctx, ip_table: int, table: int, n: int, whose: str):
        try:
            raw_ip = ctx.read(ip_table, 4 * n)
            raw = ctx.read(table, self.esize * n)
        except FaultError as e:
            raise UnwindError(f"{whose} ORC tables are not in the dump ({e})") from None
        rel = array.array("i")
        rel.frombytes(raw_ip)
        ips = [(ip_table + 4 * i + v) & 0xFFFFFFFFFFFFFFFF for i, v in enumerate(rel)]
        if any(a > b for a, b in zip(ips[:1000], ips[1:1001])):
            raise UnwindError(f"{whose} ORC ip table is not sorted")
        return ips, raw

    def _module_table(self, ip: int):
        """(ips, raw) of the module holding ``ip``, or None (no ORC tables
        for it, or unreadable: the reason goes to ``module_errors``)."""
        mods = self._ctx.module_symbols
        name = mods.module_at(ip) if mods is not None else None
        if name is None or name not in mods.orc:
            return None
        if name not in self._mods:
            n, ip_table, table = mods.orc[name]
            try:
                if not 0 < n < 1 << 22:
                    raise UnwindError(f"module {name}: implausible ORC entry count {n}")
                self._mods[name] = self._load(self._ctx, ip_table, table, n, f"module {name}'s")
            except UnwindError as e:
                self._mods[name] = None
                self.module_errors[name] = str(e)
        return self._mods[name]

    def find_any(self, ip: int) -> Optional[Dict[str, int]]:
        """``find`` in the kernel's table, or in the table of the module
        holding ``ip`` (None when that module has no usable table)."""
        if self._ctx.module_symbols is not None and \
                self._ctx.module_symbols.module_at(ip) is not None:
            tab = self._module_table(ip)
            return None if tab is None else self._find(tab[0], tab[1], ip)
        return self.find(ip)

    def _field(self, word: int, name: str) -> Optional[int]:
        m = self.fields.get(name)
        if m is None:
            return None
        bits = m.bitfield_size or 8 * m.size
        v = (word >> m.bit_offset) & ((1 << bits) - 1)
        if name in ("sp_offset", "bp_offset") and v >> (bits - 1):
            v -= 1 << bits
        return v

    def find(self, ip: int) -> Optional[Dict[str, int]]:
        return self._find(self.ips, self.raw, ip)

    def _find(self, ips, raw, ip: int) -> Optional[Dict[str, int]]:
        k = bisect.bisect_right(ips, ip) - 1
        if k < 0:
            return None
        word = int.from_bytes(raw[k * self.esize:(k + 1) * self.esize], "little")
        return {name: self._field(word, name) for name in
                ("sp_offset", "bp_offset", "sp_reg", "bp_reg", "type", "end", "signal")}


def _is_kernel(addr: int) -> bool:
    return addr >= 0xFFFF800000000000


def _orc_unwind(ctx, orc: OrcTable, regs: Dict[str, int], bt: Backtrace,
                exact: bool = True, slot: Optional[int] = None) -> None:
    """Unwind from ``regs`` (rip, rsp, rbp; more when known). ``exact``:
    rip is where the CPU stopped (a saved register set), not a return
    address (whose call site is rip - 1). ``slot``: the stack slot shown
    for the first frame (default: rsp)."""
    ip, sp, bp = regs["rip"], regs["rsp"], regs["rbp"]
    slot = sp if slot is None else slot
    cur_regs: Optional[Dict[str, int]] = dict(regs) if exact else None
    hide = False
    shown = sum(f.shown for f in bt.frames)
    for _ in range(MAX_FRAMES):
        frame = _frame(ctx, shown, slot, ip)
        frame.shown = not hide  # (an exception on the same stack: its RIP line names it)
        shown += frame.shown
        bt.frames.append(frame)
        hide = False
        if not _is_kernel(ip):
            return
        # Module code: the module's own ORC tables; without them, scan.
        e = orc.find_any(ip if exact else ip - 1)
        exact = False
        if e is not None and (e["type"] == orc.t_eos or e.get("end")):
            return
        if e is None or e["type"] == orc.t_undef or e["sp_reg"] == REG_UNDEFINED:
            # No ORC data here (e.g. inline asm objtool skipped): find the
            # caller's return address by scanning the stack, then go on.
            for name, why in orc.module_errors.items():
                if why not in bt.errors:
                    bt.errors.append(why)
            found = _scan_next(ctx, sp)
            if found is None:
                bt.errors.append(f"no ORC data for {ip:#x} and no return address above it")
                return
            slot, ip = found
            sp = slot + 8
            frame.scanned = True
            if not frame.shown:  # shown after all: the scan began there
                frame.shown = True
                shown += 1
            bt.scanned = True
            cur_regs = None
            continue
        r = e["sp_reg"]
        if r == REG_SP:
            cfa = sp + e["sp_offset"]
        elif r == REG_BP:
            cfa = bp + e["sp_offset"]
        elif r == REG_SP_INDIRECT:
            cfa = ctx.u64(sp) + e["sp_offset"]
        elif r == REG_BP_INDIRECT:
            cfa = ctx.u64(bp + e["sp_offset"])
        elif r in (REG_R10, REG_R13, REG_DI, REG_DX) and cur_regs is not None:
            name = {REG_R10: "r10", REG_R13: "r13", REG_DI: "rdi", REG_DX: "rdx"}[r]
            cfa = cur_regs[name] + e["sp_offset"]
        else:
            bt.errors.append(f"ORC: cannot compute the frame of {ip:#x} (sp_reg {r})")
            return
        if e["type"] == orc.t_call:
            slot = cfa - 8
            new_ip = ctx.u64(slot)
            new_sp = cfa
            if e["bp_reg"] == REG_PREV_SP:
                bp = ctx.u64(cfa + e["bp_offset"])
            elif e["bp_reg"] == REG_BP:
                bp = ctx.u64(bp + e["bp_offset"])
            cur_regs = None
        elif e["type"] in (orc.t_regs, orc.t_partial):
            base = cfa if e["type"] == orc.t_regs else cfa - IRET_OFFSET
            if e["type"] == orc.t_regs:
                vals = struct.unpack("<21Q", ctx.read(base, PT_REGS_SIZE))
                cur_regs = dict(zip(PT_REGS, vals))
            else:
                vals = struct.unpack("<5Q", ctx.read(cfa, 40))
                cur_regs = dict(zip(("rip", "cs", "eflags", "rsp", "ss"), vals))
            frame.regs = cur_regs
            new_ip, new_sp = cur_regs["rip"], cur_regs["rsp"]
            if _is_kernel(new_ip):
                _mark_exception(ctx, frame, sp, new_sp, new_ip)
                # As crash: the interrupted function gets a frame line of its
                # own only when the exception ran on another stack.
                hide = frame.stack_name is None
            slot = new_sp  # crash shows the interrupted frame at its RSP
            if "rbp" in cur_regs:
                bp = cur_regs["rbp"]
            if not _is_kernel(new_ip):
                return  # entered from user mode: the regs are the last frame
            exact = True  # the interrupted rip is not a return address
            ip, sp = new_ip, new_sp
            continue
        else:
            bt.errors.append(f"ORC: unknown frame type {e['type']} at {ip:#x}")
            return
        if new_sp <= sp and e["type"] == orc.t_call:
            bt.errors.append(f"ORC: stack pointer went backwards at {ip:#x}")
            return
        ip, sp = new_ip, new_sp
        if ip == 0:
            return


def exception_rip(ctx, rip: int) -> str:
    """crash's ``sym+off`` (decimal offset, no module tag) for an
    exception RIP."""
    name, _mod = ctx.symbolize(rip)
    if "+0x" in name:
        base, off = name.split("+0x", 1)
        name = f"{base}+{int(off, 16)}"
    return name


def _mark_exception(ctx, frame: Frame, sp: int, new_sp: int, new_ip: int) -> None:
    frame.exception_rip = exception_rip(ctx, new_ip)
    if abs(new_sp - sp) >= THREAD_SIZE:  # the exception ran on its own stack
        sym = frame.symbol.lower()
        frame.stack_name = ("NMI exception stack" if "nmi" in sym else
                            "IRQ stack" if "irq" in sym or "interrupt" in sym else
                            "exception stack")


# --------------------------------------------------------------------------- stack scan

def _after_call(ctx, ret: int) -> bool:
    try:
        code = ctx.read(ret - 7, 7)
    except FaultError:
        return False
    if code[2] == 0xE8:  # call rel32
        return True
    for back in (2, 3, 6, 7):  # call *reg / *disp8 / *disp32 / *[sib+disp32]
        op = code[7 - back:]
        if op[0] == 0xFF and (op[1] >> 3) & 7 == 2:
            return True
        if back >= 3 and op[0] in (0x41, 0x42, 0x43) and op[1] == 0xFF and (op[2] >> 3) & 7 == 2:
            return True
    return False


def _return_address(ctx, v: int) -> bool:
    if _in_module(ctx, v):
        mods = ctx.module_symbols
        return mods.lookup(v) is not None and _after_call(ctx, v)
    ks = ctx.kallsyms
    lo, hi = ks.address("_stext"), ks.address("_etext")
    if lo is not None and hi is not None and not lo <= v < hi:
        return False
    return ks.lookup(v) is not None and _after_call(ctx, v)


def _scan_next(ctx, sp: int) -> Optional[tuple]:
    """(slot, return address) of the first plausible return address at or
    above ``sp`` on the same stack."""
    top = (sp | (THREAD_SIZE - 1)) + 1
    try:
        raw = ctx.read(sp, top - sp)
    except FaultError:
        return None
    for i in range(0, len(raw) - 7, 8):
        (v,) = struct.unpack_from("<Q", raw, i)
        if _is_kernel(v) and _return_address(ctx, v):
            return sp + i, v
    return None


def _stack_scan(ctx, regs: Dict[str, int], bt: Backtrace) -> None:
    rsp = regs["rsp"]
    top = (rsp | (THREAD_SIZE - 1)) + 1
    bt.frames.append(_frame(ctx, 0, rsp, regs["rip"]))
    try:
        raw = ctx.read(rsp, top - rsp)
    except FaultError as e:
        bt.errors.append(f"stack at {rsp:#x} is not in the dump ({e})")
        return
    for i in range(0, len(raw) - 7, 8):
        (v,) = struct.unpack_from("<Q", raw, i)
        if not _is_kernel(v) or not _return_address(ctx, v):
            continue
        bt.frames.append(_frame(ctx, len(bt.frames), rsp + i, v))
        if len(bt.frames) >= MAX_FRAMES:
            break


# --------------------------------------------------------------------------- entry point

#: Where the kexec crash path ends: machine_kexec jumps to the capture
#: kernel and never returns, so its frame is the live innermost one.
KEXEC_FUNCTION = "machine_kexec"


def return_addresses(ctx, lo: int, hi: int):
    """(slot, value) of each plausible return address in [lo, hi), lowest
    first."""
    try:
        raw = ctx.read(lo, hi - lo)
    except FaultError:
        return
    for i in range(0, len(raw) - 7, 8):
        (v,) = struct.unpack_from("<Q", raw, i)
        if _is_kernel(v) and _return_address(ctx, v):
            yield lo + i, v


def unwind_to(ctx, orc: OrcTable, starts, regs: Dict[str, int], bt: Backtrace,
              prefer: str, limit: int = 48) -> bool:
    """Unwind from the first of ``starts`` ((slot, return address) pairs)
    that reaches an exception frame holding ``regs`` (its rip and rsp) —
    those in function ``prefer`` first (the frame that never returned;
    calls that did return left stale return addresses below it). Leaves the
    frames in ``bt`` and returns True, or leaves ``bt`` empty."""
    starts = sorted(starts, key=lambda c: not ctx.symbolize(c[1])[0].startswith(prefer + "+"))
    for slot, ret in starts[:limit]:
        try:
            _orc_unwind(ctx, orc, {"rip": ret, "rsp": slot + 8, "rbp": regs["rbp"]}, bt,
                        exact=False, slot=slot)
        except FaultError:
            pass
        if any(f.regs and f.regs.get("rip") == regs["rip"] and f.regs.get("rsp") == regs["rsp"]
               for f in bt.frames):
            return True
        bt.frames, bt.errors = [], []
    return False


def _exception_copy(ctx, task: int, regs: Dict[str, int]) -> Optional[int]:
    """Address of a ``pt_regs`` on ``task``'s stack below ``regs['rsp']``
    whose iret frame is ``regs``': the note holds an exception's registers
    (``crash_kexec(regs)`` from ``oops_end``), and the crash path that ran
    after the exception lies below that copy."""
    try:
        base = ctx.u64(task + ctx.btf.member_offset("task_struct", "stack"))
    except (DumpFilterError, FaultError):
        return None
    rsp = regs["rsp"]
    if not base < rsp <= base + THREAD_SIZE:
        return None
    try:
        raw = ctx.read(base, rsp - base)
    except FaultError:
        return None
    want = struct.pack("<5Q", *(regs.get(k, 0) for k in ("rip", "cs", "eflags", "rsp", "ss")))
    at = raw.rfind(want)
    while at >= 0 and (at - IRET_OFFSET) % 8:
        at = raw.rfind(want, 0, at)
    return None if at < IRET_OFFSET else base + at - IRET_OFFSET


def _with_kexec_frame(ctx, orc: OrcTable, task: int, regs: Dict[str, int],
                      bt: Backtrace) -> Backtrace:
    """The panic CPU saved its registers in ``__crash_kexec`` and then
    called ``machine_kexec``, which never returned: crash shows that frame
    first, and so do we when an unwind from its return address (below the
    saved RSP) passes through every frame of ``bt`` past the first."""
    if not task or not bt.frames:
        return bt
    try:
        base = ctx.u64(task + ctx.btf.member_offset("task_struct", "stack"))
    except (DumpFilterError, FaultError):
        return bt
    if not base < regs["rsp"] <= base + THREAD_SIZE:
        return bt
    want = {(f.stack, f.pc) for f in bt.frames[1:]}
    for slot, ret in return_addresses(ctx, base, regs["rsp"]):
        if not ctx.symbolize(ret)[0].startswith(KEXEC_FUNCTION + "+"):
            continue
        alt = Backtrace(bt.pid, bt.task, bt.cpu, bt.comm, "orc")
        try:
            _orc_unwind(ctx, orc, {"rip": ret, "rsp": slot + 8, "rbp": regs["rbp"]}, alt,
                        exact=False, slot=slot)
        except FaultError:
            continue
        if len(alt.frames) > 1 and alt.frames[1].symbol == bt.frames[0].symbol and \
                want <= {(f.stack, f.pc) for f in alt.frames}:
            return alt
    return bt


def backtrace(ctx, pid: int, task: int, cpu: int, comm: str,
              regs: Dict[str, int]) -> Backtrace:
    """Backtrace of an active task from its CPU's saved registers: ORC
    when possible, else a stack scan. When the registers are an exception's
    (an Oops: ``crash_kexec`` was given the fault's pt_regs), the crash
    path above the exception comes first, as crash shows it."""
    bt = Backtrace(pid, task, cpu, comm, "orc")
    if "pstate" in regs:  # arm64: frame records
        from dumpfilter.report import arm64

        arm64.backtrace(ctx, bt, regs)
        return bt
    try:
        orc = OrcTable(ctx)
        copy = _exception_copy(ctx, task, regs) if task else None
        if copy is not None:
            base = ctx.u64(task + ctx.btf.member_offset("task_struct", "stack"))
            if unwind_to(ctx, orc, return_addresses(ctx, base, copy), regs, bt, KEXEC_FUNCTION):
                return bt
        _orc_unwind(ctx, orc, regs, bt)
        if len(bt.frames) > 2:
            return _with_kexec_frame(ctx, orc, task, regs, bt)
        bt.errors.append("ORC unwinding stopped early; using a stack scan")
    except FaultError as e:
        bt.errors.append(f"ORC unwinding failed: {e}; using a stack scan")
    except UnwindError as e:
        bt.errors.append(f"{e}; using a stack scan")
    bt.method = "stack scan"
    bt.frames = []
    _stack_scan(ctx, regs, bt)
    return bt


def format_backtrace(bt: Backtrace) -> List[str]:
    lines = [f'PID: {bt.pid:<7d}  TASK: {bt.task:<16x}  CPU: {bt.cpu:<3d}  COMMAND: "{bt.comm}"'
             + ("  (stack scan)" if bt.method == "stack scan" else "")]
    for f in bt.frames:
        if not f.shown:
            continue
        lines.extend(frame_lines(f.level, f.stack, f.symbol, f.pc, f.module, f.scanned, f.regs,
                                 f.exception_rip, f.stack_name))
    lines.extend(f"    ({e})" for e in bt.errors)
    return lines


def frame_lines(level: int, stack: int, symbol: str, pc: int, module: Optional[str] = None,
                scanned: bool = False, regs: Optional[Dict[str, int]] = None,
                exc_rip: Optional[str] = None, stack_name: Optional[str] = None) -> List[str]:
    """A frame line, then for an exception frame crash's block:
    ``[exception RIP: ...]`` (kernel-mode regs only), the registers, and
    ``--- <stack> ---`` when the exception ran on another stack."""
    out = [frame_line(level, stack, symbol, pc, module, scanned)]
    if regs is not None:
        if exc_rip:
            out.append(f"    [exception RIP: {exc_rip}]")
        out.extend(format_regs(regs))
        if stack_name:
            out.append(f"--- <{stack_name}> ---")
    return out


def frame_line(level: int, stack: int, symbol: str, pc: int, module: Optional[str] = None,
               scanned: bool = False) -> str:
    """crash's x86_64 frame line: `` #N [stack] func at pc`` plus
    `` [module]`` for module code."""
    mod = f" [{module}]" if module else ""
    mark = "  (caller found by stack scan)" if scanned else ""
    return f"{'#%d' % level:>3} [{stack:016x}] {symbol} at {pc:x}{mod}{mark}"


def pc_of(regs: Dict[str, int]) -> int:
    """The program counter of a register set (x86_64 ``rip``, arm64 ``pc``)."""
    return regs["pc"] if "pstate" in regs else regs["rip"]


def function_names(bt: Backtrace) -> List[str]:
    return [f.symbol for f in bt.frames]


__all__ = ["Backtrace", "Frame", "OrcTable", "backtrace", "cpu_registers", "format_backtrace",
           "format_regs", "frame_line", "frame_lines", "exception_rip", "function_names", "UnwindError"]

