"""Drive the C classifier over a dump, one pfn cycle at a time.

For each cycle the caller gets the 1st bitmap (RAM) and the 2nd bitmap
(dumpable after struct-page exclusions) of a fixed number of pfns, plus the
per-class counts. Struct pages are read through the memory model in batches
of ``BATCH_PFNS``; Python never looks at a single page.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, List, Optional

from dumpfilter._core import check, ffi, lib
from dumpfilter.formats.bitmap import ranges_to_bitmap
from dumpfilter.errors import FaultError, VmcoreInfoError
from dumpfilter.filter.layout import build_page_layout, needs_struct_page_scan
from dumpfilter.memory.sparsemem import MemMapRange, mem_map_ranges
from dumpfilter.memory import kernel_memory
from dumpfilter.readers.base import DumpSource
from dumpfilter.vmcoreinfo import VmcoreInfo

#: pfns per cycle: 1 Mi pfns = 4 GiB of RAM, 128 KiB per bitmap chunk.
CYCLE_PFNS = 1 << 20
#: struct pages per C call: 32 Ki pfns = 2 MiB of struct page (one
#: vmemmap leaf at 64-byte struct pages).
BATCH_PFNS = 1 << 15

CLASS_NAMES = {
    lib.DF_CLASS_ZERO: "zero",
    lib.DF_CLASS_CACHE: "cache",
    lib.DF_CLASS_CACHE_PRIVATE: "cache_private",
    lib.DF_CLASS_USER: "user",
    lib.DF_CLASS_FREE: "free",
    lib.DF_CLASS_HWPOISON: "hwpoison",
    lib.DF_CLASS_OFFLINE: "offline",
}


@dataclass
class Cycle:
    start_pfn: int
    npages: int
    bitmap1: bytearray  # RAM
    bitmap2: bytearray  # dumpable


@dataclass
class ScanResult:
    counts: List[int] = field(default_factory=lambda: [0] * lib.DF_NCLASSES)
    warnings: List[str] = field(default_factory=list)


class Classifier:
    """Cycle-by-cycle classification of one dump at one dump level."""

    def __init__(self, source: DumpSource, info: VmcoreInfo, dump_level: int,
                 mem=None, cycle_pfns: Optional[int] = None, all_ram: bool = False):
        """``all_ram``: classify every RAM pfn, also those the input no
        longer holds (the report re-derives what an earlier run excluded)."""
        cycle_pfns = cycle_pfns or CYCLE_PFNS
        if cycle_pfns % 8:
            raise ValueError("cycle size must be a multiple of 8 pfns")
        self.source = source
        self.info = info
        self.dump_level = dump_level
        self.cycle_pfns = cycle_pfns
        self.max_pfn = source.max_pfn
        self.all_ram = all_ram
        self.result = ScanResult()
        self._ram = source.ram_pfn_ranges()
        self._scan = bool(info) and needs_struct_page_scan(info, dump_level)
        self._mm: List[MemMapRange] = []
        self._mem = mem
        if self._scan:
            self._layout = build_page_layout(info)
            self._sizeof_page = self._layout.sizeof_page
            if self._mem is None:
                self._mem = kernel_memory(source, info)
                if self._mem is None:
                    raise VmcoreInfoError("VMCOREINFO names no page-table root "
                                          "(SYMBOL(init_top_pgt)): cannot read struct pages")
            self._mm = mem_map_ranges(self._mem, info, self.max_pfn)
        self._carry = ffi.new("struct df_classify_carry *")
        self._counts = ffi.new("uint64_t[]", lib.DF_NCLASSES)

    def cycles(self) -> Iterator[Cycle]:
        for start in range(0, self.max_pfn, self.cycle_pfns):
            n = min(self.cycle_pfns, self.max_pfn - start)
            b1 = bytearray((n + 7) // 8)
            ranges_to_bitmap(self._ram, start, n, b1)
            b2 = bytearray(len(b1))
            if self.all_ram:
                b2[:] = b1
            else:
                self.source.present_bitmap(start, n, b2)
            if b2 != b1:  # re-filtering: only pages the input still holds
                both = int.from_bytes(b1, "little") & int.from_bytes(b2, "little")
                b2 = bytearray(both.to_bytes(len(b1), "little"))
            if self._scan:
                self._classify_cycle(start, n, b1, b2)
            yield Cycle(start, n, b1, b2)
        self.result.counts = [int(self._counts[i]) for i in range(lib.DF_NCLASSES)]

    def _classify_cycle(self, start: int, n: int, b1: bytearray, b2: bytearray) -> None:
        end = start + n
        b1p = ffi.from_buffer(b1)
        b2p = ffi.from_buffer(b2, require_writable=True)
        for mm in self._mm:
            lo, hi = max(mm.start_pfn, start), min(mm.end_pfn, end)
            pfn = lo
            while pfn < hi:
                # Batches end on multiples of BATCH_PFNS: with vmemmap the
                # struct pages of one batch are then one 2 MiB leaf.
                count = min(BATCH_PFNS - pfn % BATCH_PFNS, hi - pfn)
                # page[1] of the batch's last entry, when the array has it.
                extra = 1 if pfn + count < mm.end_pfn else 0
                vaddr = mm.vaddr + (pfn - mm.start_pfn) * self._sizeof_page
                try:
                    if extra and count > 8:
                        # The batch's struct pages fill one vmemmap leaf
                        # and are mapped, not copied; page[1] of its last
                        # entry lies in the next leaf, so the last 8 pfns
                        # go through a small copy.
                        with self._mem.view(vaddr, count * self._sizeof_page) as pages:
                            self._classify_batch(pages, pfn, count - 8, 1, start, b1p, b2p)
                        tail = vaddr + (count - 8) * self._sizeof_page
                        pages = self._mem.read(tail, 9 * self._sizeof_page)
                        self._classify_batch(pages, pfn + count - 8, 8, 1, start, b1p, b2p)
                    else:
                        size = (count + extra) * self._sizeof_page
                        with self._mem.view(vaddr, size) as pages:
                            self._classify_batch(pages, pfn, count, extra, start, b1p, b2p)
                except FaultError as e:
                    msg = (f"struct pages of pfns {pfn:#x}-{pfn + count - 1:#x} unreadable "
                           f"({e}); those pages are kept")
                    self.result.warnings.append(msg)
                pfn += count

    def _classify_batch(self, pages, pfn: int, count: int, extra: int, start: int,
                        b1p, b2p) -> None:
        rel = pfn - start
        if rel % 8:
            raise AssertionError("classifier batches must start on a byte boundary")
        nbytes = len(b1p) - rel // 8
        src = ffi.from_buffer(pages)
        status = lib.df_classify_pages(
            src, len(src), count, extra, pfn,
            b1p + rel // 8, nbytes, self.dump_level, self._layout,
            b2p + rel // 8, nbytes, self._counts, lib.DF_NCLASSES, ffi.NULL, 0, self._carry)
        check(status, "classifying struct pages")
