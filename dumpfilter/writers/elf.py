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

Pass 1 keeps the 2nd bitmap in an unlinked temporary file; pass 2 plans the
segments from it and copies the pages window by window; headers and notes
are written last.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Sequence, Tuple

from dumpfilter._core import check, ffi, lib
from dumpfilter.bitmaps import count_bits
from dumpfilter.classify import CLASS_NAMES, Classifier
from dumpfilter.elfformat import (
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
from dumpfilter.errors import DumpFilterError
from dumpfilter.memory.x86_64 import X86_64Memory
from dumpfilter.vmcoreinfo import VmcoreInfo

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


def set_runs(bitmap: bytes, base: int) -> Iterator[Tuple[int, int]]:
    """``[start, end)`` runs of set bits of an LSB-first bitmap, offset by
    ``base``."""
    v = int.from_bytes(bitmap, "little")
    pos = 0
    while v:
        skip = (v & -v).bit_length() - 1
        v >>= skip
        pos += skip
        ones = (~v & (v + 1)).bit_length() - 1
        yield base + pos, base + pos + ones
        v >>= ones
        pos += ones


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


def filter_dump_elf(source, sink, options):
    """Filter an ELF ``source`` into an ELF dump written to ``sink``."""
    from dumpfilter.filter import FilterStats

    info = VmcoreInfo.parse(source.vmcoreinfo_raw)
    level = options.dump_level
    mem = X86_64Memory(source, info) if info.symbol("init_top_pgt") or info.symbol("swapper_pg_dir") else None
    if level & 0x1E and not info:
        raise DumpFilterError(
            f"{source.path}: no VMCOREINFO; only dump levels 0 and 1 are possible")
    ps = source.page_size
    stats = FilterStats(max_mapnr=source.max_pfn)
    progress = options.progress or (lambda *a: None)
    count = ffi.new("uint64_t *")

    # Pass 1: 2nd bitmap, zero pages cleared, into a temporary file.
    classifier = Classifier(source, info, level, mem=mem)
    progress("Excluding unnecessary pages", 0, source.max_pfn)
    with tempfile.TemporaryFile(prefix="dumpfilter-elf-bitmap") as tmp:
        for cyc in classifier.cycles():
            progress("Excluding unnecessary pages", cyc.start_pfn + cyc.npages, source.max_pfn)
            b2 = cyc.bitmap2
            stats.original += count_bits(cyc.bitmap1, cyc.npages)
            if level & 1 and any(b2):
                b2 = bytearray(b2)
                for pfn, n, view in source.page_windows(cyc.start_pfn, cyc.npages):
                    rel = pfn - cyc.start_pfn
                    mask = _slice_bits(b2, rel, n)
                    zero = bytearray((n + 7) // 8)
                    check(lib.df_find_zero_pages(ffi.from_buffer(view), n, ps, mask,
                                                 ffi.from_buffer(zero, require_writable=True),
                                                 count), "finding zero pages")
                    view.release()
                    if count[0]:
                        stats.zero_pages += count[0]
                        _clear_bits(b2, rel, n, zero)
            stats.dumpable += count_bits(b2, cyc.npages)
            tmp.seek(cyc.start_pfn // 8)
            tmp.write(bytes(b2))
        stats.warnings += classifier.result.warnings
        for cid, name in CLASS_NAMES.items():
            stats.excluded[name] = classifier.result.counts[cid]
        stats.excluded["zero"] = stats.zero_pages

        # Plan the output PT_LOADs, in input order (makedumpfile's).
        planned: List[OutLoad] = []
        for seg in source.segments:
            planned += plan_load(seg.paddr, seg.vaddr, seg.memsz, ps,
                                 _runs_in(tmp, seg.paddr // ps,
                                          min(-(-(seg.paddr + seg.memsz) // ps), source.max_pfn)))
    note_off = headers_size(len(planned))
    data_off = note_off + len(source.notes)  # not page aligned, as makedumpfile
    loads = assign_offsets(planned, data_off)

    # Pass 2: segment data (short excluded runs are copied as they are).
    total = sum(ld.filesz for ld in loads)
    done = 0
    progress("Copying data", 0, total)
    for ld in loads:
        if not ld.filesz:
            continue
        first, pos, end = ld.paddr // ps, ld.paddr, ld.paddr + ld.filesz
        npages = -(-end // ps) - first
        for pfn, n, view in source.page_windows(first, npages):
            a, b = max(pos, pfn * ps), min(end, (pfn + n) * ps)
            sink.pwrite(view[a - pfn * ps : b - pfn * ps], ld.offset + (a - ld.paddr))
            view.release()
            done += b - a
            progress("Copying data", done, total)
    stats.pages_written = -(-total // ps)
    stats.bytes_written = data_off + total
    # Notes and headers last: only a finished run has an ELF header.
    sink.pwrite(source.notes, note_off)
    sink.pwrite(pack_elf_headers(loads, len(source.notes), getattr(source, "e_machine", EM_X86_64)), 0)
    sink.flush()
    return stats


def _slice_bits(bitmap: bytes, start: int, n: int) -> bytes:
    """Bits ``[start, start+n)`` as a new bitmap (touches only those bytes)."""
    lo, hi = start // 8, (start + n + 7) // 8 + 1
    v = int.from_bytes(bitmap[lo:hi], "little") >> (start % 8)
    return (v & ((1 << n) - 1)).to_bytes((n + 7) // 8, "little")


def _clear_bits(bitmap: bytearray, start: int, n: int, bits: bytes) -> None:
    """Clear in ``bitmap`` the bits set in ``bits`` (pfns ``[start, start+n)``)."""
    lo, hi = start // 8, (start + n + 7) // 8
    z = (int.from_bytes(bits, "little") & ((1 << n) - 1)) << (start % 8)
    v = int.from_bytes(bitmap[lo:hi], "little") & ~z
    bitmap[lo:hi] = v.to_bytes(hi - lo, "little")


def _runs_in(tmp, lo: int, hi: int) -> Iterator[Tuple[int, int]]:
    """Dumpable runs inside pfns ``[lo, hi)`` from the temporary bitmap,
    merged across chunk edges."""
    pending = None
    for start in range(lo - lo % 8, hi, _CHUNK_PFNS):
        n = min(_CHUNK_PFNS, hi - start)
        tmp.seek(start // 8)
        data = tmp.read((n + 7) // 8).ljust((n + 7) // 8, b"\0")
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
