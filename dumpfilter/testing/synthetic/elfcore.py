"""Minimal ELF64 (x86_64, little endian) core-file writer for synthetic vmcores.

Writes the shape of ``/proc/vmcore`` as kexec-tools/the kernel present it: one
``PT_NOTE`` followed by ``PT_LOAD`` segments, plus optional writer quirks seen
in the wild (QEMU ``dump-guest-memory``):

* ``phdrs_after_shdrs``: section headers right after the ELF header
  (``e_shoff = 64``), program headers after them (``e_phoff != 64``);
* ``bad_ehsize``: ``e_ehsize = 8`` (QEMU 7.2 wrote the size of a pointer);
* ``misalign``: segment data starts at a file offset that is not page aligned;
* a segment's ``filesz`` may be smaller than its ``memsz`` (the tail reads as
  "not in the file"; makedumpfile treats those pages as absent);
* several segments may describe the same physical memory (kernel-image alias).

Segment contents are pulled page by page from a callback and only non-zero
pages are written: the file is sparse wherever memory is zero.

Pure Python, standard library only.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

PAGE_SIZE = 4096

ET_CORE = 4
EM_X86_64 = 62
PT_LOAD = 1
PT_NOTE = 4
PF_RWX = 7
NT_PRSTATUS = 1
VMCOREINFO_NOTE_TYPE = 0

EHDR_SIZE = 64
PHDR_SIZE = 56
SHDR_SIZE = 64

PRSTATUS_SIZE = 336
PRSTATUS_PID_OFFSET = 32
PRSTATUS_REG_OFFSET = 112
#: Order of ``struct user_regs_struct`` (x86_64), i.e. of ``pr_reg[27]``.
USER_REGS = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
    "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
    "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
)


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def make_note(name: str, ntype: int, desc: bytes) -> bytes:
    """One ELF note: nhdr + name (NUL terminated, padded to 4) + desc (padded to 4)."""
    nb = name.encode() + b"\0"
    out = struct.pack("<III", len(nb), len(desc), ntype)
    out += nb + b"\0" * (_align(len(nb), 4) - len(nb))
    out += desc + b"\0" * (_align(len(desc), 4) - len(desc))
    return out


def make_prstatus(pid: int, regs: dict, signo: int = 0) -> bytes:
    """A 336-byte x86_64 ``struct elf_prstatus`` (``pr_pid`` @32, ``pr_reg`` @112)."""
    buf = bytearray(PRSTATUS_SIZE)
    struct.pack_into("<i", buf, 0, signo)  # pr_info.si_signo
    struct.pack_into("<h", buf, 12, signo)  # pr_cursig
    struct.pack_into("<i", buf, PRSTATUS_PID_OFFSET, pid)
    for i, name in enumerate(USER_REGS):
        struct.pack_into("<Q", buf, PRSTATUS_REG_OFFSET + 8 * i, regs.get(name, 0) & (2**64 - 1))
    return bytes(buf)


def make_vmcoreinfo_note(text: str) -> bytes:
    return make_note("VMCOREINFO", VMCOREINFO_NOTE_TYPE, text.encode())


@dataclass
class LoadSegment:
    """A ``PT_LOAD``: ``memsz`` bytes of physical memory at ``paddr`` (page aligned).

    ``filesz`` (default ``memsz``) bytes are stored in the file; ``vaddr`` is
    the advertised virtual address (0 for "unknown", as QEMU writes it).
    """

    paddr: int
    memsz: int
    vaddr: int = 0
    filesz: Optional[int] = None
    offset: int = 0  # filled in by write_core

    @property
    def file_bytes(self) -> int:
        return self.memsz if self.filesz is None else self.filesz


@dataclass
class CoreOptions:
    phdrs_after_shdrs: bool = False
    bad_ehsize: bool = False
    misalign: int = 0  # extra bytes before the first segment (0 = page aligned)
    e_machine: int = EM_X86_64  # 183 for the arm64 images (synthetic/arm64.py)


def write_core(
    path: str,
    notes: bytes,
    segments: Sequence[LoadSegment],
    read_page: Callable[[int], Optional[bytes]],
    options: Optional[CoreOptions] = None,
) -> List[LoadSegment]:
    """Write an ELF64 core file; return the segments with file offsets filled in.

    ``read_page(pfn)`` returns the 4096 bytes of physical page ``pfn`` or None
    when the page is all zero (not written: the file stays sparse there).
    """
    opt = options or CoreOptions()
    phnum = 1 + len(segments)
    nsh = 2 if opt.phdrs_after_shdrs else 0
    if opt.phdrs_after_shdrs:
        shoff, phoff = EHDR_SIZE, EHDR_SIZE + nsh * SHDR_SIZE
    else:
        shoff, phoff = 0, EHDR_SIZE
    note_off = phoff + phnum * PHDR_SIZE
    data_off = _align(note_off + len(notes), PAGE_SIZE) + opt.misalign

    segs = []
    off = data_off
    for s in segments:
        if s.paddr % PAGE_SIZE or s.memsz % PAGE_SIZE or s.file_bytes % PAGE_SIZE:
            raise ValueError("segments must be page aligned in physical memory")
        segs.append(LoadSegment(s.paddr, s.memsz, s.vaddr, s.filesz, off))
        off += s.file_bytes
    total = off

    ehdr = bytearray(EHDR_SIZE)
    ehdr[0:16] = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    struct.pack_into(
        "<HHIQQQIHHHHHH", ehdr, 16,
        ET_CORE, opt.e_machine, 1, 0, phoff, shoff, 0,
        8 if opt.bad_ehsize else EHDR_SIZE, PHDR_SIZE, phnum,
        SHDR_SIZE if nsh else 0, nsh, 0,
    )
    phdrs = bytearray()
    phdrs += struct.pack("<IIQQQQQQ", PT_NOTE, 0, note_off, 0, 0, len(notes), len(notes), 0)
    for s in segs:
        phdrs += struct.pack(
            "<IIQQQQQQ", PT_LOAD, PF_RWX, s.offset, s.vaddr, s.paddr, s.file_bytes, s.memsz, 0
        )
    # Two all-zero (SHT_NULL) section headers, as a stand-in for QEMU's.
    shdrs = bytes(nsh * SHDR_SIZE)

    with open(path, "wb") as fh:
        fh.write(ehdr)
        if nsh:
            fh.write(shdrs)
        fh.write(phdrs)
        fh.write(notes)
        for s in segs:
            _write_segment(fh, s, read_page)
        fh.truncate(total)
    return segs


def _write_segment(fh, seg: LoadSegment, read_page) -> None:
    """Write the non-zero pages of one segment, coalescing runs into single writes."""
    first = seg.paddr // PAGE_SIZE
    npages = seg.file_bytes // PAGE_SIZE
    run_start = None
    run: list = []

    def flush():
        if run:
            fh.seek(seg.offset + (run_start - first) * PAGE_SIZE)
            fh.write(b"".join(run))
            run.clear()

    for pfn in range(first, first + npages):
        data = read_page(pfn)
        if data is None:
            flush()
            run_start = None
            continue
        if run_start is None:
            run_start = pfn
        run.append(data)
        if len(run) >= 256:
            flush()
            run_start = pfn + 1
    flush()


# --------------------------------------------------------------------------- reading back

@dataclass
class ParsedCore:
    phoff: int
    loads: List[LoadSegment]
    notes: List[tuple]  # (name, type, desc)


def parse_core(path: str) -> ParsedCore:
    """Parse the headers and notes of an ELF64 core (for tests and the CLI summary)."""
    with open(path, "rb") as fh:
        ehdr = fh.read(EHDR_SIZE)
        if ehdr[:4] != b"\x7fELF" or ehdr[4] != 2:
            raise ValueError("not an ELF64 file")
        phoff = struct.unpack_from("<Q", ehdr, 32)[0]
        phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
        fh.seek(phoff)
        raw = fh.read(phentsize * phnum)
        loads, notes = [], []
        for i in range(phnum):
            p_type, _fl, off, va, pa, fsz, msz, _al = struct.unpack_from("<IIQQQQQQ", raw, i * phentsize)
            if p_type == PT_LOAD:
                loads.append(LoadSegment(pa, msz, va, fsz, off))
            elif p_type == PT_NOTE:
                fh.seek(off)
                notes.extend(_parse_notes(fh.read(fsz)))
    return ParsedCore(phoff, loads, notes)


def _parse_notes(buf: bytes) -> list:
    out, pos = [], 0
    while pos + 12 <= len(buf):
        namesz, descsz, ntype = struct.unpack_from("<III", buf, pos)
        pos += 12
        name = buf[pos:pos + namesz].rstrip(b"\0").decode("ascii", "replace")
        pos += _align(namesz, 4)
        out.append((name, ntype, buf[pos:pos + descsz]))
        pos += _align(descsz, 4)
    return out


def file_size_on_disk(path: str) -> int:
    """Allocated bytes of ``path`` (to show sparseness)."""
    return os.stat(path).st_blocks * 512
