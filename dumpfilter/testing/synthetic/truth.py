"""Per-pfn truth table of a synthetic image and what makedumpfile's rules imply.

The builder records, for every pfn below ``max_pfn``, the class it *built* the
page as (``page_class``), whether its content is all zero (``zero``) and
whether the page is stored in the dump (``in_dump``).  The expectations below
are computed from those arrays only (never from struct page bytes), so they
are an independent oracle for a reader/filter that decodes struct pages.

makedumpfile's rules (makedumpfile-reference §4.1/§4.2): the first matching
test wins; free = buddy blocks (and unaccepted blocks), -d 16; page cache
without PG_private = -d 2 or 4; with PG_private = -d 4 only; anonymous and
hugetlb = -d 8; hwpoison and offline pages are always excluded (the
struct-page scan always runs because every profile exports
``NUMBER(PG_hwpoison)``); zero pages (-d 1) are a content test.  In the kdump
(compressed) format zero pages stay *set* in the 2nd bitmap (they get the
shared zero descriptor); in ELF output (``-E``) they are removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

# ----------------------------------------------------------------- page classes
NOT_RAM = 0  # no RAM at this pfn (hole, or beyond the end)
KERNEL = 1  # kernel image, memblock allocations (PG_reserved), crashkernel
KERNEL_ALLOC = 2  # other allocated kernel memory (vmalloc, per-cpu, ...): no flags
SLAB = 3
PGTABLE = 4  # user page tables (page type "table")
ANON = 5  # anonymous (mapping | 1), incl. anon THP folios
FILE = 6  # page cache (file), no PG_private, incl. large file folios
FILE_PRIVATE = 7  # page cache with PG_private (buffer heads)
SHMEM = 8  # shmem/tmpfs page cache
SWAPCACHE = 9  # swap cache (PG_swapcache + PG_swapbacked, not on LRU)
FREE = 10  # every page of a buddy free block
UNACCEPTED = 11  # unaccepted memory block (6.12+ profiles)
HUGETLB = 12  # every page of a hugetlb folio
HWPOISON = 13
OFFLINE = 14  # logically offline (balloon / virtio-mem)

CLASS_NAMES = {
    NOT_RAM: "not_ram", KERNEL: "kernel", KERNEL_ALLOC: "kernel_alloc", SLAB: "slab",
    PGTABLE: "pgtable", ANON: "anon", FILE: "file", FILE_PRIVATE: "file_private",
    SHMEM: "shmem", SWAPCACHE: "swapcache", FREE: "free", UNACCEPTED: "unaccepted",
    HUGETLB: "hugetlb", HWPOISON: "hwpoison", OFFLINE: "offline",
}

# makedumpfile counter name for each class, and the dump-level bits that exclude it
# (0 = excluded at every level).
_RULES = {
    FREE: ("free", 16),
    UNACCEPTED: ("free", 16),
    FILE: ("cache", 2 | 4),
    SHMEM: ("cache", 2 | 4),
    SWAPCACHE: ("cache", 2 | 4),
    FILE_PRIVATE: ("cache_private", 4),
    ANON: ("user", 8),
    HUGETLB: ("user", 8),
    HWPOISON: ("hwpoison", 0),
    OFFLINE: ("offline", 0),
}

COUNT_KEYS = ("zero", "cache", "cache_private", "user", "free", "hwpoison", "offline")


def exclusion_reason(page_class: int, dump_level: int):
    """makedumpfile counter that excludes a page of ``page_class`` at ``dump_level`` (or None)."""
    rule = _RULES.get(page_class)
    if rule is None:
        return None
    name, bits = rule
    if bits == 0 or dump_level & bits:
        return name
    return None


def _excluded_table(dump_level: int) -> bytes:
    return bytes(1 if exclusion_reason(c, dump_level) else 0 for c in range(256))


def expected_bitmap2(image, dump_level: int, kdump_format: bool = True) -> bytes:
    """Expected 2nd bitmap (LSB first, bit n = pfn n kept) for ``image`` at ``dump_level``.

    ``image`` is an :class:`ImageInfo`.  Length is ``ceil(max_pfn / 8)`` bytes.
    With ``kdump_format`` zero pages stay set (makedumpfile's kdump files);
    otherwise (ELF output) -d 1 removes them too.
    """
    excl = _excluded_table(dump_level)
    drop_zero = (dump_level & 1) and not kdump_format
    cls, zero, in_dump = image.page_class, image.zero, image.in_dump
    n = image.max_pfn
    out = bytearray((n + 7) // 8)
    for pfn in range(n):
        if not in_dump[pfn] or excl[cls[pfn]]:
            continue
        if drop_zero and zero[pfn]:
            continue
        out[pfn >> 3] |= 1 << (pfn & 7)
    return bytes(out)


def expected_counts(image, dump_level: int) -> Dict[str, int]:
    """makedumpfile's "Excluded pages" counters for ``image`` at ``dump_level``.

    Keys: zero, cache, cache_private, user, free, hwpoison, offline.  Only pages
    present in the dump are counted (makedumpfile counts cleared bits); zero
    pages are counted among the pages the struct-page rules keep.
    """
    counts = dict.fromkeys(COUNT_KEYS, 0)
    cls, zero, in_dump = image.page_class, image.zero, image.in_dump
    for pfn in range(image.max_pfn):
        if not in_dump[pfn]:
            continue
        reason = exclusion_reason(cls[pfn], dump_level)
        if reason:
            counts[reason] += 1
        elif dump_level & 1 and zero[pfn]:
            counts["zero"] += 1
    return counts


def class_counts(image, only_in_dump: bool = False) -> Dict[str, int]:
    """Number of pfns per class name (optionally only pages present in the dump)."""
    tally = [0] * 256
    for pfn, c in enumerate(image.page_class):
        if only_in_dump and not image.in_dump[pfn]:
            continue
        tally[c] += 1
    return {CLASS_NAMES[c]: n for c, n in enumerate(tally) if n and c in CLASS_NAMES}

# ----------------------------------------------------------------- the built image

PAGE = 4096
PAGE_STRUCT_SIZE = 64
ZERO_PAGE = bytes(PAGE)


@dataclass
class ImageInfo:
    """What was built.  Arrays are indexed by pfn (``0 .. max_pfn-1``)."""

    path: str
    spec: Any  # kernel.ImageSpec
    profile: Any  # profiles.Profile
    vmcoreinfo: str
    page_offset_base: int
    vmemmap_base: int
    vmalloc_start: int
    kaslr_offset: int
    kernel_vaddr: int  # _stext
    kernel_paddr: int
    kernel_size: int
    phys_base: int
    symbols: Dict[str, int]
    ram_ranges: List[Tuple[int, int]]
    crashkernel: Optional[Tuple[int, int]]
    loads: List[Any]  # elfcore.LoadSegment, as written (with file offsets)
    max_pfn: int
    sections: List[int]  # present section numbers
    page_class: bytearray
    zero: bytearray
    in_dump: bytearray
    folios: List[Tuple[int, int, str]]  # (head pfn, order, kind)
    buddy_blocks: List[Tuple[int, int]]  # (first pfn, order)
    mappings: List[Tuple[int, int, int, int]]  # (vaddr, paddr, size, page size) as mapped
    utsname: Tuple[str, ...]
    _pages: Dict[int, bytes] = field(repr=False, default_factory=dict)
    #: The panic the image carries (tasks.install_crash), or None.
    crash: Optional[Dict[str, Any]] = None

    # -- memory as the builder wrote it
    def page_bytes(self, pfn: int) -> bytes:
        """Content of physical page ``pfn`` (zeros if never written)."""
        data = self._pages.get(pfn)
        return bytes(data) if data is not None else ZERO_PAGE

    def read_phys(self, addr: int, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            off = addr % PAGE
            n = min(size, PAGE - off)
            out += self.page_bytes(addr // PAGE)[off:off + n]
            addr, size = addr + n, size - n
        return bytes(out)

    def virt_to_phys(self, vaddr: int) -> Optional[int]:
        """Translate with the builder's own record of what it mapped (not a table walk)."""
        for va, pa, size, _ps in self.mappings:
            if va <= vaddr < va + size:
                return pa + (vaddr - va)
        return None

    def struct_page_vaddr(self, pfn: int) -> int:
        return self.vmemmap_base + pfn * PAGE_STRUCT_SIZE

    def struct_page(self, pfn: int) -> bytes:
        pa = self.virt_to_phys(self.struct_page_vaddr(pfn))
        return self.read_phys(pa, PAGE_STRUCT_SIZE)

    def direct_map(self, paddr: int) -> int:
        return self.page_offset_base + paddr

    # -- expectations
    def expected_bitmap2(self, dump_level: int, kdump_format: bool = True) -> bytes:
        return expected_bitmap2(self, dump_level, kdump_format)

    def expected_counts(self, dump_level: int) -> Dict[str, int]:
        return expected_counts(self, dump_level)

    def class_counts(self, only_in_dump: bool = False) -> Dict[str, int]:
        return class_counts(self, only_in_dump)

    def describe(self) -> str:
        lines = [
            f"profile {self.profile.name} ({self.profile.osrelease}), "
            f"{'5' if self.spec.five_level else '4'}-level paging, "
            f"direct map {self.spec.direct_map_page}, vmemmap {self.spec.vmemmap_page}, "
            f"sme_mask {self.spec.sme_mask:#x}",
            f"RAM: " + ", ".join(f"{a:#x}-{b:#x}" for a, b in self.ram_ranges)
            + (f"; crashkernel {self.crashkernel[0]:#x}+{self.crashkernel[1]:#x} (not in dump)"
               if self.crashkernel else ""),
            f"max_pfn {self.max_pfn}, present sections {self.sections}",
            f"page_offset_base {self.page_offset_base:#x}  vmemmap_base {self.vmemmap_base:#x}",
            f"_stext {self.kernel_vaddr:#x} -> phys {self.kernel_paddr:#x} "
            f"(KERNELOFFSET {self.kaslr_offset:x}, phys_base {self.phys_base})",
            "PT_LOADs: " + ", ".join(
                f"[{s.paddr:#x}+{s.memsz:#x} file {s.file_bytes:#x} @{s.offset:#x}]" for s in self.loads),
            "pages per class: " + ", ".join(f"{k}={v}" for k, v in self.class_counts().items()),
            f"zero pages in dump: {sum(1 for p in range(self.max_pfn) if self.in_dump[p] and self.zero[p])}",
        ]
        c = self.expected_counts(31)
        kept = bin(int.from_bytes(self.expected_bitmap2(31, kdump_format=False), "little")).count("1")
        total = sum(self.in_dump)
        lines.append(f"makedumpfile -d 31 would exclude {c}; {kept} of {total} pages keep data")
        return "\n".join(lines)
