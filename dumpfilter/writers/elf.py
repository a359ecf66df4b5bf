"""ELF output (``-E``), makedumpfile's layout (makedumpfile-reference.md §3).

Layout: ELF header, PT_NOTE program header, the PT_LOAD program headers,
[one SHT_NULL section header for extended numbering], the input's note blob
verbatim, then the segments' data.

Each input PT_LOAD is cut into output PT_LOADs by makedumpfile's rule: a run
of >= 256 (``PFN_EXCLUDED``) non-dumpable pages ends a segment, whose
``p_memsz`` still covers the run while ``p_filesz`` stops before it; shorter
runs are kept as data (copied from memory as they are). Zero pages (dump
level bit 1) are found in pass 1 and cleared from the bitmap, because every
header must be known before the first data byte is placed.

``plan_loads`` cuts the segments from the job's 2nd bitmap; ``ElfWriter``
only writes: segment data as the job copies it, then the notes and the
headers last (a run cut short leaves no ELF header).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, List, Sequence, Tuple

from dumpfilter.formats.bitmap import set_runs
from dumpfilter.formats.elf import (
    EHDR,
    ELFCLASS64,
    ELFDATA2LSB,
    ELFMAG,
    EM_X86_64,
    ET_CORE,
    EV_CURRENT,
    PHDR,
    PN_XNUM,
    PT_LOAD,
    PT_NOTE,
    SHDR,
)

DUMP_ELF_INCOMPLETE = 1
#: makedumpfile's PFN_EXCLUDED: shorter excluded runs stay in the file.
PFN_EXCLUDED = 256

_PF_RWX = 7
_CHUNK_PFNS = 1 << 18


@dataclass(frozen=True)
class OutLoad:
    """One output PT_LOAD: physical ``[paddr, paddr+memsz)``, the first
    ``filesz`` bytes stored at ``offset`` (0 when ``filesz`` is 0)."""

    paddr: int
    vaddr: int
    filesz: int
    memsz: int
    offset: int = 0


def plan_load(paddr: int, vaddr: int, memsz: int, page_size: int,
              runs: Iterable[Tuple[int, int]]) -> List[OutLoad]:
    """Cut one input PT_LOAD by makedumpfile's rule. ``runs`` are the
    dumpable pfn runs inside it, ascending. Offsets are assigned later."""
    ps = page_size
    lo, end_byte = paddr // ps, paddr + memsz
    out: List[OutLoad] = []
    seg_start = paddr  # bytes
    file_end = None  # pfn just past the last dumpable page of the segment

    def close(mem_end: int) -> None:
        fe = seg_start if file_end is None else min(file_end * ps, end_byte)
        out.append(OutLoad(seg_start, vaddr + (seg_start - paddr), fe - seg_start,
                           mem_end - seg_start))

    for a, b in runs:
        gap = a - (file_end if file_end is not None else lo)
        if gap >= PFN_EXCLUDED:
            close(a * ps)
            seg_start, file_end = a * ps, None
        file_end = b
    close(end_byte)
    return out


def assign_offsets(loads: List[OutLoad], data_offset: int) -> List[OutLoad]:
    out, pos = [], data_offset
    for ld in loads:
        if ld.filesz:
            out.append(OutLoad(ld.paddr, ld.vaddr, ld.filesz, ld.memsz, pos))
            pos += ld.filesz
        else:
            out.append(OutLoad(ld.paddr, ld.vaddr, 0, ld.memsz, 0))
    return out


def headers_size(nloads: int) -> int:
    size = EHDR.size + (1 + nloads) * PHDR.size
    if 1 + nloads >= PN_XNUM:
        size += SHDR.size
    return size


def pack_elf_headers(loads: Sequence[OutLoad], note_size: int, e_machine: int = EM_X86_64,
                     e_flags: int = 0) -> bytes:
    """ELF header + program headers (+ extended-numbering section header);
    the notes follow immediately at ``len(result)``."""
    phnum = 1 + len(loads)
    xnum = phnum >= PN_XNUM
    ph_end = EHDR.size + phnum * PHDR.size
    note_off = ph_end + (SHDR.size if xnum else 0)
    ident = ELFMAG + bytes([ELFCLASS64, ELFDATA2LSB, EV_CURRENT, 0]) + bytes(8)
    out = bytearray(EHDR.pack(
        ident, ET_CORE, e_machine, EV_CURRENT, 0, EHDR.size, ph_end if xnum else 0, e_flags,
        EHDR.size, PHDR.size, PN_XNUM if xnum else phnum,
        SHDR.size if xnum else 0, 1 if xnum else 0, 0))
    out += PHDR.pack(PT_NOTE, 0, note_off, 0, 0, note_size, note_size, 0)
    for ld in loads:
        out += PHDR.pack(PT_LOAD, _PF_RWX, ld.offset, ld.vaddr, ld.paddr, ld.filesz, ld.memsz, 0)
    if xnum:
        out += SHDR.pack(0, 0, 0, 0, 0, 0, 0, phnum, 0, 0)
    return bytes(out)


def plan_loads(segments, page_size: int, max_pfn: int, bitmap2: Callable[[int, int], bytes],
               note_size: int) -> Tuple[List[OutLoad], int, int]:
    """The output PT_LOADs of the input ``segments`` (in input order,
    makedumpfile's) with their file offsets; returns (loads, notes offset,
    data offset). ``bitmap2(start_pfn, nbytes)`` reads the 2nd bitmap."""
    planned: List[OutLoad] = []
    ps = page_size
    for seg in segments:
        end = min(-(-(seg.paddr + seg.memsz) // ps), max_pfn)
        planned += plan_load(seg.paddr, seg.vaddr, seg.memsz, ps,
                             _runs_in(bitmap2, seg.paddr // ps, end))
    note_off = headers_size(len(planned))
    data_off = note_off + note_size  # not page aligned, as makedumpfile
    return assign_offsets(planned, data_off), note_off, data_off


def _runs_in(bitmap2, lo: int, hi: int) -> Iterator[Tuple[int, int]]:
    """Dumpable runs inside pfns ``[lo, hi)``, merged across chunk edges."""
    pending = None
    for start in range(lo - lo % 8, hi, _CHUNK_PFNS):
        n = min(_CHUNK_PFNS, hi - start)
        data = bitmap2(start, (n + 7) // 8).ljust((n + 7) // 8, b"\0")
        for a, b in set_runs(data, start):
            a, b = max(a, lo), min(b, hi)
            if a >= b:
                continue
            if pending and pending[1] == a:
                pending = (pending[0], b)
                continue
            if pending:
                yield pending
            pending = (a, b)
    if pending:
        yield pending


class ElfWriter:
    """An ELF dump into ``sink``: data first, headers last."""

    def __init__(self, sink):
        self.sink = sink

    def write_data(self, data, offset: int) -> None:
        self.sink.pwrite(data, offset)

    def finish(self, loads: Sequence[OutLoad], notes: bytes, note_off: int,
               e_machine: int) -> None:
        self.sink.pwrite(notes, note_off)
        self.sink.pwrite(pack_elf_headers(loads, len(notes), e_machine), 0)
        self.sink.flush()
