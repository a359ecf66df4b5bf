"""Where each pfn's ``struct page`` lives: SPARSEMEM (EXTREME or not) and
FLATMEM, decoded from VMCOREINFO (makedumpfile-reference.md §5.1–5.2).

The result is a short list of ``MemMapRange(start_pfn, end_pfn, vaddr)``:
consecutive sections whose mem_map arrays are virtually contiguous (always
so with SPARSEMEM_VMEMMAP) are merged, so a 1 TiB machine yields a handful of
ranges rather than 8192 sections.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import List

from dumpfilter import limits
from dumpfilter.errors import UnsupportedDumpError
from dumpfilter.vmcoreinfo import VmcoreInfo

SECTION_MARKED_PRESENT = 1 << 0
# makedumpfile masks the low 5 bits (SECTION_MAP_LAST_BIT has been 2..5
# over kernel history; every flag bit lies below bit 5 and mem_map pointers
# are at least 64-byte aligned).
SECTION_MAP_MASK = ~((1 << 5) - 1) & 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class MemMapRange:
    start_pfn: int
    end_pfn: int
    vaddr: int  # address of the struct page of start_pfn


def _merge(ranges: List[MemMapRange], sizeof_page: int) -> List[MemMapRange]:
    out: List[MemMapRange] = []
    for r in ranges:
        if out:
            last = out[-1]
            if (last.end_pfn == r.start_pfn
                    and last.vaddr + (r.start_pfn - last.start_pfn) * sizeof_page == r.vaddr):
                out[-1] = MemMapRange(last.start_pfn, r.end_pfn, last.vaddr)
                continue
        out.append(r)
    return out


def mem_map_ranges(mem, info: VmcoreInfo, max_pfn: int) -> List[MemMapRange]:
    """mem_map ranges covering pfns below ``max_pfn``. ``mem`` is a kernel
    virtual-memory reader (``X86_64Memory``)."""
    sizeof_page = info.require_size("page")
    if info.symbol("mem_section") is not None and info.size("mem_section") is not None:
        return _sparsemem(mem, info, max_pfn, sizeof_page)
    mem_map_sym = info.symbol("mem_map")
    if mem_map_sym is not None:
        # FLATMEM: SYMBOL(mem_map) is the address of the pointer variable.
        vaddr = mem.read_u64(mem_map_sym)
        return [MemMapRange(0, max_pfn, vaddr)] if vaddr else []
    raise UnsupportedDumpError(
        "VMCOREINFO has neither SYMBOL(mem_section) nor SYMBOL(mem_map): "
        "cannot locate struct pages (only dump levels 0 and 1 are possible)"
    )


def _sparsemem(mem, info: VmcoreInfo, max_pfn: int, sizeof_page: int) -> List[MemMapRange]:
    page_size = info.page_size or 4096
    page_shift = page_size.bit_length() - 1
    section_bits = info.number("SECTION_SIZE_BITS") or 27
    physmem_bits = info.number("MAX_PHYSMEM_BITS")
    if physmem_bits is None:
        physmem_bits = 52 if info.number("pgtable_l5_enabled") else 46
    if not page_shift < section_bits <= physmem_bits:
        limits.fail("VMCOREINFO", "NUMBER(SECTION_SIZE_BITS)", section_bits,
                    f"not between the page shift {page_shift} and MAX_PHYSMEM_BITS {physmem_bits}")
    pfn_section_shift = section_bits - page_shift
    pages_per_section = 1 << pfn_section_shift
    nr_mem_sections = 1 << (physmem_bits - section_bits)
    sizeof_section = info.require_size("mem_section")
    off_map = info.offset("mem_section.section_mem_map") or 0
    limits.check_struct_field("VMCOREINFO", sizeof_section, "OFFSET(mem_section.section_mem_map)",
                              off_map, 8)
    if sizeof_section > page_size:
        limits.fail("VMCOREINFO", "SIZE(mem_section)", sizeof_section,
                    f"larger than a page ({page_size} bytes)")
    sections_per_root = page_size // sizeof_section
    nr_roots = -(-nr_mem_sections // sections_per_root)
    length = info.length("mem_section")
    extreme = length is None or length == nr_roots
    symbol = info.require_symbol("mem_section")

    nr_sections = min(nr_mem_sections, -(-max_pfn // pages_per_section))
    if nr_sections == 0:
        return []
    words: List[int] = []
    if extreme:
        # SYMBOL(mem_section) is the root array's address (the kernel
        # exports the pointer's value with VMCOREINFO_SYMBOL_ARRAY).
        n_roots = -(-nr_sections // sections_per_root)
        roots = struct.unpack("<%dQ" % n_roots, mem.read(symbol, 8 * n_roots))
        for r, root in enumerate(roots):
            count = min(sections_per_root, nr_sections - r * sections_per_root)
            if not root:
                words.extend([0] * count)
                continue
            blob = mem.read(root, count * sizeof_section)
            words.extend(struct.unpack_from("<Q", blob, i * sizeof_section + off_map)[0]
                         for i in range(count))
    else:
        blob = mem.read(symbol, nr_sections * sizeof_section)
        words = [struct.unpack_from("<Q", blob, i * sizeof_section + off_map)[0]
                 for i in range(nr_sections)]

    ranges: List[MemMapRange] = []
    for nr, word in enumerate(words):
        if not word & SECTION_MARKED_PRESENT:
            continue
        encoded = word & SECTION_MAP_MASK
        if not encoded:
            continue
        first_pfn = nr << pfn_section_shift
        # The kernel stores mem_map minus first_pfn * sizeof(struct page).
        vaddr = (encoded + first_pfn * sizeof_page) & 0xFFFFFFFFFFFFFFFF
        end = min(first_pfn + pages_per_section, max_pfn)
        ranges.append(MemMapRange(first_pfn, end, vaddr))
    return _merge(ranges, sizeof_page)


def read_struct_pages(mem, mm: MemMapRange, start_pfn: int, count: int, out: memoryview,
                      sizeof_page: int) -> None:
    """Read ``count`` struct pages starting at ``start_pfn`` (inside ``mm``)
    into ``out``. Raises FaultError naming the address if the array is not
    mapped or not in the dump."""
    vaddr = mm.vaddr + (start_pfn - mm.start_pfn) * sizeof_page
    mem.read_into(vaddr, out[: count * sizeof_page])
