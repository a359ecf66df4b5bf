"""arm64 registers and backtraces, as crash prints them.

Registers: the NT_PRSTATUS ``pr_reg`` is ``struct user_pt_regs`` (x0-x30,
sp, pc, pstate; ``formats.elfnotes.AARCH64_REGS``).

Backtrace: arm64 kernels are built with frame pointers; every non-leaf
function stores a frame record ``{x29 of the caller, return address}`` at
its x29. The walk starts at the saved x29/pc of the panic CPU and follows
the records until the caller's x29 is 0. On kernels whose entry code ends
the chain with a final record inside ``pt_regs`` (the member
``pt_regs.stackframe``, looked up in BTF, not assumed) the user registers
there are printed after the last frame, as crash does. With pointer
authentication (CONFIG_ARM64_PTR_AUTH_KERNEL) return addresses carry a PAC
in their upper bits: they are restored by setting the bits of
``NUMBER(KERNELPACMASK)`` (arch_crash_save_vmcoreinfo, Linux 5.7 and later)
before symbolising; without that number addresses are used as read. As crash does, each frame shows ``pc - 4`` (the call
instruction, which keeps a call that ends a ``noreturn`` function inside
it).
"""
from __future__ import annotations

import struct
from typing import Dict, List

from dumpfilter.errors import DumpFilterError, FaultError

MAX_FRAMES = 64
_U64 = (1 << 64) - 1


def is_arm64_regs(regs: Dict[str, int]) -> bool:
    return "pstate" in regs


def format_regs(r: Dict[str, int], indent: str = "    ") -> List[str]:
    """crash's arm64 register block (``bt`` exception frames)."""
    def q(name: str) -> str:
        return f"{r.get(name, 0) & _U64:016x}"

    rows = ["  ".join(f"{lab:>3}: {q(name)}" for lab, name in
                      (("PC", "pc"), ("LR", "x30"), ("SP", "sp")))]
    for hi in range(29, 1, -3):
        rows.append("  ".join(f"{'X%d' % i:>3}: {q('x%d' % i)}" for i in range(hi, hi - 3, -1)))
    tail = []
    if "orig_x0" in r:
        tail.append(f"ORIG_X0: {q('orig_x0')}")
    if "syscallno" in r:
        tail.append(f"SYSCALLNO: {r['syscallno'] & _U64:x}")
    tail.append(f"PSTATE: {r.get('pstate', 0) & 0xFFFFFFFF:08x}")
    rows.append("  ".join(tail))
    return [indent + row for row in rows]


def strip_pac(ctx, addr: int) -> int:
    """A kernel return address without its pointer-authentication code."""
    mask = ctx.info.number("KERNELPACMASK")
    # Bit 55 selects the TTBR1 (kernel) half and is never part of the PAC.
    if mask and addr >> 55 & 1:
        return (addr | mask) & _U64
    return addr


def _entry_regs(ctx, record: int):
    """User registers of the ``pt_regs`` whose final frame record is at
    ``record``, or None if the types say nothing."""
    try:
        btf = ctx.btf
        off = btf.member_offset("pt_regs", "stackframe")
        size = btf.sizeof("pt_regs")
    except DumpFilterError:
        return None
    base = record - off
    raw = ctx.read(base, size)
    names = [f"x{i}" for i in range(31)] + ["sp", "pc", "pstate"]
    regs = dict(zip(names, struct.unpack_from("<34Q", raw)))
    for name in ("orig_x0", "syscallno"):
        if btf.has_member("pt_regs", name):
            o = btf.member_offset("pt_regs", name)
            regs[name] = struct.unpack_from("<Q", raw, o)[0]
    if regs["pstate"] & 0xF:  # not an EL0 entry: the frame is the kernel's
        return None
    return regs


def backtrace(ctx, bt, regs: Dict[str, int]) -> None:
    """Fill ``bt`` (a ``backtrace.Backtrace``) from the frame records."""
    from dumpfilter.report.backtrace import _frame

    fp, pc = regs["x29"], regs["pc"]
    bt.method = "frame records"
    seen = set()
    for level in range(MAX_FRAMES):
        f = _frame(ctx, level, fp, (pc - 4) & _U64)
        bt.frames.append(f)
        if fp in seen or fp & 0xF:
            bt.errors.append(f"frame record chain is corrupt at {fp:#x}")
            return
        seen.add(fp)
        try:
            nfp, lr = struct.unpack("<QQ", ctx.read(fp, 16))
        except FaultError as e:
            bt.errors.append(f"frame record at {fp:#x} is not in the dump ({e.message})")
            return
        if nfp == 0:
            # The final record: pt_regs of the entry from user space.
            try:
                f.regs = _entry_regs(ctx, fp)
            except FaultError:
                pass
            return
        pc = strip_pac(ctx, lr)
        fp = nfp
    bt.errors.append(f"more than {MAX_FRAMES} frames; stopped")
