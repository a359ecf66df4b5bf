"""Per-CPU registers (NT_PRSTATUS) and a backtrace of the panic task.

Reads:

* the dump's ELF notes: one ``CORE``/NT_PRSTATUS note per CPU that saved
  its state, in CPU order (the k-th online CPU owns note k);
* symbols (kallsyms or the vmlinux): ``__start_orc_unwind_ip``, ``__stop_orc_unwind_ip``,
  ``__start_orc_unwind`` (the built-in ORC tables, sorted at build time),
  ``_stext``/``_etext`` (kernel text bounds for the stack-scan fallback);
* the loaded modules' symbols (``modules.ModuleSymbols``): frames in
  module code are named ``func at addr [module]``; module ORC tables are
  not read, so the unwinder scans the stack past module frames;
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
        try:
            raw_ip = ctx.read(start, 4 * n)
            self.raw = ctx.read(orc, self.esize * n)
        except FaultError as e:
            raise UnwindError(f"ORC tables are not in the dump ({e})") from None
        rel = array.array("i")
        rel.frombytes(raw_ip)
        self.ips = [(start + 4 * i + v) & 0xFFFFFFFFFFFFFFFF for i, v in enumerate(rel)]
        if any(a > b for a, b in zip(self.ips[:1000], self.ips[1:1001])):
            raise UnwindError("ORC ip table is not sorted")
        self.n = n

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
        k = bisect.bisect_right(self.ips, ip) - 1
        if k < 0:
            return None
        word = int.from_bytes(self.raw[k * self.esize:(k + 1) * self.esize], "little")
        return {name: self._field(word, name) for name in
                ("sp_offset", "bp_offset", "sp_reg", "bp_reg", "type", "end", "signal")}


def _is_kernel(addr: int) -> bool:
    return addr >= 0xFFFF800000000000


def _orc_unwind(ctx, orc: OrcTable, regs: Dict[str, int], bt: Backtrace) -> None:
    ip, sp, bp = regs["rip"], regs["rsp"], regs["rbp"]
    slot = sp
    cur_regs: Optional[Dict[str, int]] = dict(regs)  # registers known for this frame
    first = True
    for level in range(MAX_FRAMES):
        bt.frames.append(_frame(ctx, level, slot, ip))
        if not _is_kernel(ip):
            return
        # Module code has its own ORC tables (not read): scan past it.
        e = None if _in_module(ctx, ip) else orc.find(ip if first else ip - 1)
        first = False
        if e is not None and (e["type"] == orc.t_eos or e.get("end")):
            return
        if e is None or e["type"] == orc.t_undef or e["sp_reg"] == REG_UNDEFINED:
            # No ORC data here (e.g. inline asm objtool skipped): find the
            # caller's return address by scanning the stack, then go on.
            found = _scan_next(ctx, sp)
            if found is None:
                bt.errors.append(f"no ORC data for {ip:#x} and no return address above it")
                return
            slot, ip = found
            sp = slot + 8
            bt.frames[-1].scanned = True
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
            bt.frames[-1].regs = cur_regs
            slot = base + IRET_OFFSET
            new_ip, new_sp = cur_regs["rip"], cur_regs["rsp"]
            if "rbp" in cur_regs:
                bp = cur_regs["rbp"]
            if not _is_kernel(new_ip):
                return  # entered from user mode: the regs are the last frame
        else:
            bt.errors.append(f"ORC: unknown frame type {e['type']} at {ip:#x}")
            return
        if new_sp <= sp and e["type"] == orc.t_call:
            bt.errors.append(f"ORC: stack pointer went backwards at {ip:#x}")
            return
        ip, sp = new_ip, new_sp
        if ip == 0:
            return


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

def backtrace(ctx, pid: int, task: int, cpu: int, comm: str,
              regs: Dict[str, int]) -> Backtrace:
    """Backtrace of an active task from its CPU's saved registers: ORC
    when possible, else a stack scan."""
    bt = Backtrace(pid, task, cpu, comm, "orc")
    if "pstate" in regs:  # arm64: frame records
        from dumpfilter.report import arm64

        arm64.backtrace(ctx, bt, regs)
        return bt
    try:
        orc = OrcTable(ctx)
        _orc_unwind(ctx, orc, regs, bt)
        if len(bt.frames) > 2:
            return bt
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
        lines.append(frame_line(f.level, f.stack, f.symbol, f.pc, f.module, f.scanned))
        if f.regs is not None:
            lines.extend(format_regs(f.regs))
    lines.extend(f"    ({e})" for e in bt.errors)
    return lines


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
           "format_regs", "frame_line", "function_names", "UnwindError"]

