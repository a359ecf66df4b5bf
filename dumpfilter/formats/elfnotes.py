"""ELF note blobs (the PT_NOTE of /proc/vmcore, copied verbatim into every
kdump-compressed output): iteration, VMCOREINFO, per-CPU NT_PRSTATUS."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

from dumpfilter.errors import CorruptDumpError

NT_PRSTATUS = 1

#: x86_64 ``struct user_regs_struct`` order inside ``elf_prstatus.pr_reg``.
X86_64_REGS = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
    "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
    "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
)
#: arm64 ``struct user_pt_regs`` (``elf_prstatus.pr_reg``): x0-x30, sp, pc, pstate.
AARCH64_REGS = tuple(f"x{i}" for i in range(31)) + ("sp", "pc", "pstate")
_PRSTATUS_PID_OFF = 32
_PRSTATUS_REG_OFF = 112


@dataclass(frozen=True)
class Note:
    name: bytes  # without the trailing NUL
    type: int
    desc: bytes
    desc_offset: int  # offset of desc inside the blob


def iter_notes(blob: bytes, byteorder: str = "<") -> Iterator[Note]:
    """Walk a note blob: 12-byte header, name and desc each padded to 4.
    Stops at trailing zero padding; raises on a note that overruns."""
    off, n = 0, len(blob)
    hdr = struct.Struct(byteorder + "III")
    while off + 12 <= n:
        namesz, descsz, ntype = hdr.unpack_from(blob, off)
        if namesz == 0 and descsz == 0 and ntype == 0:
            break  # zero padding at the end of the segment
        name_off = off + 12
        desc_off = name_off + ((namesz + 3) & ~3)
        end = desc_off + ((descsz + 3) & ~3)
        if desc_off + descsz > n:
            raise CorruptDumpError(
                f"ELF note at offset {off} overruns the note segment ({n} bytes)"
            )
        name = bytes(blob[name_off : name_off + namesz]).rstrip(b"\0")
        yield Note(name, ntype, bytes(blob[desc_off : desc_off + descsz]), desc_off)
        off = end


def find_vmcoreinfo(blob: bytes) -> Optional[Tuple[int, int]]:
    """(offset, size) of the VMCOREINFO note's text inside the blob."""
    for note in iter_notes(blob):
        if note.name == b"VMCOREINFO":
            return note.desc_offset, len(note.desc)
    return None


def prstatus_notes(blob: bytes) -> List[Note]:
    """The per-CPU ``CORE``/NT_PRSTATUS notes, in order of appearance."""
    return [n for n in iter_notes(blob) if n.name == b"CORE" and n.type == NT_PRSTATUS]


@dataclass(frozen=True)
class CpuRegisters:
    """One NT_PRSTATUS note decoded for x86_64."""

    index: int  # note index (CPU order of the notes)
    pid: int
    regs: dict


def _decode_prstatus(note: Note, index: int, names: Tuple[str, ...]) -> CpuRegisters:
    need = _PRSTATUS_REG_OFF + 8 * len(names)
    if len(note.desc) < need:
        raise CorruptDumpError(f"NT_PRSTATUS note {index} is {len(note.desc)} bytes, need {need}")
    (pid,) = struct.unpack_from("<i", note.desc, _PRSTATUS_PID_OFF)
    vals = struct.unpack_from("<%dQ" % len(names), note.desc, _PRSTATUS_REG_OFF)
    return CpuRegisters(index, pid, dict(zip(names, vals)))


def decode_prstatus_x86_64(note: Note, index: int) -> CpuRegisters:
    return _decode_prstatus(note, index, X86_64_REGS)


def decode_prstatus_aarch64(note: Note, index: int) -> CpuRegisters:
    """An arm64 NT_PRSTATUS (392 bytes; ``pr_reg`` at 112 as on x86_64)."""
    return _decode_prstatus(note, index, AARCH64_REGS)


def decode_prstatus(note: Note, index: int, e_machine: Optional[int]) -> CpuRegisters:
    """The note decoded for the dumped machine (EM_AARCH64 183, else x86_64)."""
    if e_machine == 183:
        return decode_prstatus_aarch64(note, index)
    return decode_prstatus_x86_64(note, index)
