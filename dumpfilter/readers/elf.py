"""ELF64 vmcores: /proc/vmcore, files copied from it, QEMU's
``dump-guest-memory`` output and our own ``-E`` output.

Physical memory comes from the PT_LOADs' ``p_paddr``; a PT_LOAD with
``p_filesz < p_memsz`` reads zeros for the tail. Overlapping PT_LOADs (the
kernel-image alias /proc/vmcore carries next to the direct map) are
resolved once at open time into non-overlapping pieces. Contents are served
through mmap windows (never one read() per page) that are unmapped after
use, so resident memory stays bounded whatever the dump size.
"""
from __future__ import annotations

import bisect
import mmap
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, List, Sequence, Tuple

from dumpfilter.formats.bitmap import count_bits, merge_ranges, set_runs
from dumpfilter.formats.elf import (
    EHDR,
    ELFCLASS64,
    ELFDATA2LSB,
    ELFMAG,
    ET_CORE,
    PHDR,
    PN_XNUM,
    PT_LOAD,
    PT_NOTE,
    SH_INFO,
    SHDR,
)
from dumpfilter.formats.elfnotes import find_vmcoreinfo
from dumpfilter.errors import CorruptDumpError, NotAVmcoreError, TruncatedDumpError
from dumpfilter import limits
from dumpfilter.vmcoreinfo import VmcoreInfo
from dumpfilter.readers.base import DumpSource, LoadSegment, PhysRange, gather_pages

#: Largest mmap window handed out by page_windows (bytes).
WINDOW_BYTES = 4 << 20
#: Mappings kept per thread by gather() (bytes, a multiple of the page
#: and allocation granularity).
REGION_BYTES = 4 << 20


@dataclass(frozen=True)
class _Piece:
    """Non-overlapping physical range ``[start, end)``; bytes below
    ``file_end`` live at ``offset + (paddr - start)`` in the file."""

    start: int
    end: int
    file_end: int
    offset: int


def _pieces(segments: Sequence[LoadSegment]) -> List[_Piece]:
    """Resolve overlapping PT_LOADs: the segment that starts first (the
    larger one on ties) owns the overlap."""
    out: List[_Piece] = []
    covered = 0
    for seg in sorted(segments, key=lambda s: (s.paddr, -s.memsz)):
        start, end = max(seg.paddr, covered), seg.paddr + seg.memsz
        if start >= end:
            continue
        file_end = min(end, seg.paddr + seg.filesz)
        offset = seg.offset + (start - seg.paddr)
        out.append(_Piece(start, end, max(start, file_end), offset))
        covered = end
    return out


class ElfSource(DumpSource):
    format_name = "elf"

    def __init__(self, path: str, use_mmap: bool = True):
        self.path = path
        #: False: page contents are read with pread, never mapped.
        self.use_mmap = use_mmap
        self._fd = os.open(path, os.O_RDONLY)
        try:
            self._parse()
        except BaseException:
            os.close(self._fd)
            raise

    # -- parsing -------------------------------------------------------
    def _pread(self, size: int, offset: int) -> bytes:
        # Header offsets are untrusted: beyond the file (or past 2**63,
        # which pread cannot even take) is a truncated or corrupt dump.
        data = os.pread(self._fd, size, offset) if 0 <= offset <= self._size - size else b""
        if len(data) != size:
            raise TruncatedDumpError(
                f"{self.path}: truncated: needs {size} bytes at offset {offset:#x}, "
                f"file has {self._size} bytes"
            )
        return data

    def _parse(self) -> None:
        st = os.fstat(self._fd)
        # /proc/vmcore reports its real size; a regular file's size is the
        # truth for truncation checks.
        self._size = st.st_size
        self._regions = _Regions(self._fd, self._size)
        ident = os.pread(self._fd, EHDR.size, 0)
        if len(ident) < 4 or ident[:4] != ELFMAG:
            raise NotAVmcoreError(f"{self.path}: not an ELF file")
        if len(ident) < EHDR.size:
            raise TruncatedDumpError(f"{self.path}: truncated ELF header")
        if ident[4] != ELFCLASS64:
            raise NotAVmcoreError(f"{self.path}: not an ELF64 file (only 64-bit vmcores are supported)")
        if ident[5] != ELFDATA2LSB:
            raise NotAVmcoreError(f"{self.path}: big-endian ELF is not supported")
        (_, e_type, e_machine, _, _, e_phoff, e_shoff, _, _, e_phentsize, e_phnum,
         e_shentsize, _, _) = EHDR.unpack(ident)
        if e_type != ET_CORE:
            raise NotAVmcoreError(f"{self.path}: ELF type {e_type} is not a core file")
        self.e_machine = e_machine
        if e_phnum == PN_XNUM:
            # Extended numbering: the real count is in section 0's sh_info.
            if not e_shoff:
                raise CorruptDumpError(f"{self.path}: e_phnum is PN_XNUM but there is no section header")
            sh = SHDR.unpack(self._pread(SHDR.size, e_shoff))
            e_phnum = sh[SH_INFO]
        if e_phentsize != PHDR.size and e_phnum:
            raise CorruptDumpError(f"{self.path}: program header size {e_phentsize}, expected {PHDR.size}")
        if e_phnum * PHDR.size > self._size:
            limits.fail(self.path, "e_phnum", e_phnum,
                        f"{e_phnum} program headers do not fit in the file ({self._size} bytes)")
        table = self._pread(e_phnum * PHDR.size, e_phoff)
        notes: List[bytes] = []
        loads: List[LoadSegment] = []
        for i in range(e_phnum):
            p_type, _flags, off, vaddr, paddr, filesz, memsz, _align = PHDR.unpack_from(
                table, i * PHDR.size
            )
            if p_type == PT_NOTE:
                limits.check_blob(self.path, f"PT_NOTE {i} p_filesz", filesz, self._size - off)
                notes.append(self._pread(filesz, off))
            elif p_type == PT_LOAD:
                if filesz > memsz:
                    raise CorruptDumpError(f"{self.path}: PT_LOAD {i} has p_filesz > p_memsz")
                if off + filesz > self._size:
                    raise TruncatedDumpError(
                        f"{self.path}: truncated: PT_LOAD {i} needs bytes up to "
                        f"{off + filesz:#x}, file has {self._size:#x}"
                    )
                loads.append(LoadSegment(i, off, vaddr, paddr, filesz, memsz))
        if not loads:
            raise NotAVmcoreError(f"{self.path}: ELF core without PT_LOAD segments")
        self.notes = b"".join(notes)
        vi = find_vmcoreinfo(self.notes)
        self._vmcoreinfo = self.notes[vi[0] : vi[0] + vi[1]] if vi else b""
        # Page size and physical address width come from VMCOREINFO, parsed
        # and bounded once (dumpfilter.vmcoreinfo, dumpfilter.limits).
        info = VmcoreInfo.parse(self._vmcoreinfo)
        self.page_size = info.page_size or 4096
        self._check_loads(loads, limits.phys_bits(info.number("MAX_PHYSMEM_BITS")))
        self._segments: Tuple[LoadSegment, ...] = tuple(loads)
        self._pieces = _pieces(loads)
        self._starts = [p.start for p in self._pieces]
        ps = self.page_size
        # makedumpfile's 1st bitmap: pfns from paddr_to_pfn(start) up to
        # paddr_to_pfn(end), both rounded down, so a partial last page is not
        # RAM; max_mapnr rounds the highest end up.
        self._ram = merge_ranges((s.paddr // ps, (s.paddr + s.memsz) // ps) for s in loads)
        self.max_pfn = max(-(-(s.paddr + s.memsz) // ps) for s in loads)

    def _check_loads(self, loads: Sequence[LoadSegment], bits: int) -> None:
        """Physical ranges within the declared address width; zero-filled
        memory (p_memsz beyond p_filesz) bounded by what the file holds, so
        a header claim cannot make the work unbounded."""
        zero_fill = 0
        for s in loads:
            limits.check_phys_end(self.path, f"PT_LOAD {s.index} p_paddr+p_memsz",
                                  s.paddr + s.memsz, bits)
            zero_fill += s.memsz - s.filesz
        allowed = limits.zero_fill_allowed(self._size)
        if zero_fill > allowed:
            big = max(loads, key=lambda s: s.memsz - s.filesz)
            limits.fail(self.path, f"PT_LOAD {big.index} p_memsz", big.memsz,
                        f"far beyond p_filesz {big.filesz:#x}: {zero_fill:#x} bytes of "
                        f"zero-filled memory claimed, more than {allowed:#x} for a "
                        f"{self._size}-byte file")

    # -- DumpSource ----------------------------------------------------
    @property
    def vmcoreinfo_raw(self) -> bytes:
        return self._vmcoreinfo

    def ram_pfn_ranges(self) -> Sequence[Tuple[int, int]]:
        return self._ram

    def load_segments(self) -> Sequence[LoadSegment]:
        return self._segments

    def phys_ranges(self) -> List[PhysRange]:
        return [PhysRange(p.start, p.end, p.file_end) for p in self._pieces]

    def _walk(self, paddr: int, size: int) -> Iterator[Tuple[int, int, int]]:
        """Split ``[paddr, paddr+size)`` into (paddr, length, file_offset)
        parts; file_offset is -1 for bytes that read as zero (holes and
        ``p_filesz < p_memsz`` tails)."""
        end = paddr + size
        i = max(0, bisect.bisect_right(self._starts, paddr) - 1)
        pos = paddr
        while pos < end:
            piece = self._pieces[i] if i < len(self._pieces) else None
            if piece is None or pos < piece.start:
                nxt = piece.start if piece is not None else end
                n = min(end, nxt) - pos
                yield pos, n, -1
                pos += n
                continue
            if pos >= piece.end:
                i += 1
                continue
            if pos < piece.file_end:
                n = min(end, piece.file_end) - pos
                yield pos, n, piece.offset + (pos - piece.start)
            else:
                n = min(end, piece.end) - pos
                yield pos, n, -1
            pos += n

    def read_pages(self, start_pfn: int, npages: int, out: memoryview) -> None:
        ps = self.page_size
        base = start_pfn * ps
        for pos, n, off in self._walk(base, npages * ps):
            dst = out[pos - base : pos - base + n]
            if off < 0:
                dst[:] = bytes(n)
            else:
                got = os.preadv(self._fd, [dst], off)
                if got != n:
                    raise TruncatedDumpError(f"{self.path}: short read at offset {off:#x}")

    def page_windows(self, start_pfn: int, npages: int):
        """Zero-copy mmap windows where the pages are file-backed; copies
        only at piece edges and for zero-filled parts."""
        ps = self.page_size
        per_window = max(1, WINDOW_BYTES // ps)
        pfn, end_pfn = start_pfn, start_pfn + npages
        while pfn < end_pfn:
            n = min(per_window, end_pfn - pfn)
            parts = list(self._walk(pfn * ps, n * ps))
            first = parts[0]
            if first[2] >= 0 and first[1] >= ps:
                # Map the file-backed prefix, whole pages only.
                n = first[1] // ps
                with self._mapped(first[2], n * ps) as view:
                    yield pfn, n, view
            else:
                # Zero-filled or mixed: copy this window's first part.
                n = max(1, min(n, -(-first[1] // ps)))
                buf = bytearray(n * ps)
                self.read_pages(pfn, n, memoryview(buf))
                yield pfn, n, memoryview(buf)
            pfn += n

    @contextmanager
    def _mapped(self, offset: int, size: int) -> Iterator[memoryview]:
        """``size`` bytes of the file at ``offset``, mapped read-only for the
        ``with`` block and unmapped after it (bounded resident memory); read
        with pread instead when mmap is off (``--non-mmap``)."""
        if not self.use_mmap:
            buf = bytearray(size)
            if os.preadv(self._fd, [buf], offset) != size:
                raise TruncatedDumpError(f"{self.path}: short read at offset {offset:#x}")
            yield memoryview(buf)
            return
        aligned = offset - offset % mmap.ALLOCATIONGRANULARITY
        m = mmap.mmap(self._fd, size + (offset - aligned), mmap.MAP_SHARED,
                      mmap.PROT_READ, offset=aligned)
        view = memoryview(m)[offset - aligned:offset - aligned + size]
        try:
            yield view
        finally:
            # Leaving early (an error, Ctrl-C) while a consumer (a cffi
            # buffer) still holds the view: releasing it would raise
            # BufferError and hide the real exception; the GC unmaps it.
            try:
                view.release()
                m.close()
            except BufferError:
                pass

    thread_safe_windows = True

    @contextmanager
    def window(self, start_pfn: int, npages: int) -> Iterator[memoryview]:
        """The contents of ``npages`` pages as one view, mapped (no copy)
        when they lie in one file-backed piece, else read into a buffer.
        The view is valid inside the ``with`` block only."""
        ps = self.page_size
        parts = list(self._walk(start_pfn * ps, npages * ps))
        if len(parts) == 1 and parts[0][2] >= 0:
            with self._mapped(parts[0][2], npages * ps) as view:
                yield view
        else:
            buf = bytearray(npages * ps)
            self.read_pages(start_pfn, npages, memoryview(buf))
            yield memoryview(buf)

    @contextmanager
    def map_phys(self, paddr: int, size: int) -> Iterator[memoryview]:
        """Mapped, not copied, when the range lies in one file-backed
        piece (struct-page arrays: the scan reads 1/64 of RAM this way)."""
        parts = list(self._walk(paddr, size))
        if len(parts) == 1 and parts[0][2] >= 0 and size:
            with self._mapped(parts[0][2], size) as view:
                yield view
            return
        with super().map_phys(paddr, size) as view:
            yield view

    def gather(self, start_pfn: int, npages: int, mask: bytes, out: memoryview) -> None:
        """Dense windows (a quarter or more of the pages kept) are mapped
        and the kept pages copied out in C; sparse ones are read run by run
        with pread, so no mapping is made and no page fault taken for the
        pages left out."""
        kept = count_bits(mask, npages)
        ps = self.page_size
        if self.use_mmap and 4 * kept >= npages:
            parts = list(self._walk(start_pfn * ps, npages * ps))
            if len(parts) == 1 and parts[0][2] >= 0:
                view = self._regions.view(parts[0][2], npages * ps)
                try:
                    gather_pages(view, ps, npages, mask, out)
                finally:
                    try:
                        view.release()
                    except BufferError:  # see _mapped
                        pass
                return
            super().gather(start_pfn, npages, mask, out)
            return
        pos = 0
        for a, b in set_runs(mask, start_pfn):
            n = (min(b, start_pfn + npages) - a) * ps
            self.read_pages(a, n // ps, out[pos:pos + n])
            pos += n

    def close(self) -> None:
        if self._fd >= 0:
            self._regions.close()
            os.close(self._fd)
            self._fd = -1


class _Regions:
    """Per-thread read-only mappings of REGION_BYTES of the file, kept
    while consecutive windows fall inside them: pass 2 maps /proc/vmcore a
    few MiB at a time instead of once per 1 MiB window (each mmap of
    /proc/vmcore sets up every page table entry of the range)."""

    def __init__(self, fd: int, size: int):
        import threading

        self.fd, self.size = fd, size
        self._local = threading.local()
        self._all: list = []
        self._lock = threading.Lock()

    def view(self, offset: int, size: int) -> memoryview:
        """``size`` bytes at file ``offset``; release the view after use."""
        loc = self._local
        cur = getattr(loc, "map", None)
        if cur is None or not cur[0] <= offset or offset + size > cur[0] + cur[1]:
            if cur is not None:
                self._drop(cur)
            start = offset - offset % REGION_BYTES
            length = max(min(REGION_BYTES, self.size - start), offset + size - start)
            m = mmap.mmap(self.fd, length, mmap.MAP_SHARED, mmap.PROT_READ, offset=start)
            cur = loc.map = (start, length, m)
            with self._lock:
                self._all.append(cur)
        return memoryview(cur[2])[offset - cur[0]:offset - cur[0] + size]

    def _drop(self, cur) -> None:
        with self._lock:
            if cur in self._all:
                self._all.remove(cur)
        try:
            cur[2].close()
        except BufferError:  # a view is still out: the GC unmaps it
            pass

    def close(self) -> None:
        with self._lock:
            maps, self._all = self._all, []
        for cur in maps:
            try:
                cur[2].close()
            except BufferError:
                pass

