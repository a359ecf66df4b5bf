"""x86_64 virtual -> physical translation of the dumped kernel.

The page-table root is ``SYMBOL(init_top_pgt)`` (``init_level4_pgt`` before
Linux 4.13, ``swapper_pg_dir`` as a last resort), a kernel-image address,
turned physical with ``NUMBER(phys_base)``. 4- or 5-level paging per
``NUMBER(pgtable_l5_enabled)``; 1 GiB and 2 MiB leaves; ``NUMBER(sme_mask)``
(the AMD SME/SEV C-bit) is cleared from every entry.
"""
from __future__ import annotations

import struct
from collections import OrderedDict
from typing import Optional, Tuple

from dumpfilter.errors import FaultError, VmcoreInfoError
from dumpfilter.memory.base import KernelMemory
from dumpfilter.readers.base import DumpSource
from dumpfilter.vmcoreinfo import VmcoreInfo

START_KERNEL_MAP = 0xFFFFFFFF80000000
_PRESENT = 0x001
_PSE = 0x080
# Physical address bits 12..51 of an entry.
_ENTRY_ADDR = 0x000FFFFFFFFFF000


def kernel_phys_base(info: VmcoreInfo, source: Optional[DumpSource] = None) -> int:
    """``phys_base``: VMCOREINFO first; else the kernel-image PT_LOAD of an
    ELF source; else what a kdump header recorded; else 0."""
    pb = info.number("phys_base")
    if pb is not None:
        return pb
    if source is None:
        return 0
    for seg in source.load_segments():
        if seg.vaddr >= START_KERNEL_MAP:
            return seg.paddr - (seg.vaddr - START_KERNEL_MAP)
    if source.header.phys_base is not None:
        return source.header.phys_base
    return 0


class X86_64Memory(KernelMemory):
    """Reads the dumped kernel's virtual memory through its page tables.

    ``translate`` returns the physical address and how many bytes after it
    stay physically contiguous inside the same leaf mapping, so callers can
    read large ranges (vmemmap, log buffers) leaf by leaf.
    """

    def __init__(self, source: DumpSource, info: VmcoreInfo, cache_pages: int = 64):
        self.source = source
        self.info = info
        self.phys_base = kernel_phys_base(info, source)
        root = None
        for name in ("init_top_pgt", "init_level4_pgt", "swapper_pg_dir"):
            root = info.symbol(name)
            if root is not None:
                break
        if root is None:
            raise VmcoreInfoError("VMCOREINFO lacks SYMBOL(init_top_pgt): cannot walk page tables")
        self.root_vaddr = root
        self.root_paddr = self.kernel_image_vtop(root)
        self.levels = 5 if info.number("pgtable_l5_enabled") else 4
        sme = info.number("sme_mask") or 0
        self.entry_mask = _ENTRY_ADDR & ~sme
        self._cache = OrderedDict()
        self._cache_pages = cache_pages

    @staticmethod
    def kernel_image_vtop_with(vaddr: int, phys_base: int) -> int:
        return vaddr - START_KERNEL_MAP + phys_base

    def kernel_image_vtop(self, vaddr: int) -> int:
        """Translate an address inside the kernel image without page tables."""
        if vaddr < START_KERNEL_MAP:
            raise FaultError("not a kernel-image address", vaddr)
        return vaddr - START_KERNEL_MAP + self.phys_base

    def translate(self, vaddr: int) -> Tuple[int, int]:
        """(paddr, bytes left in this leaf mapping) for ``vaddr``; raises
        FaultError if it is not mapped."""
        table = self.root_paddr
        shift = 48 if self.levels == 5 else 39
        for level in range(self.levels):
            idx = (vaddr >> shift) & 0x1FF
            try:
                (entry,) = struct.unpack_from("<Q", self._table(table), idx * 8)
            except FaultError:
                raise FaultError("page table not in dump", vaddr) from None
            if not entry & _PRESENT:
                raise FaultError("address not mapped", vaddr)
            addr = entry & self.entry_mask
            # 1 GiB (PUD) or 2 MiB (PMD) leaf.
            if shift in (30, 21) and entry & _PSE:
                size = 1 << shift
                base = addr & ~(size - 1)
                off = vaddr & (size - 1)
                return base + off, size - off
            if shift == 12:
                off = vaddr & 0xFFF
                return addr + off, 4096 - off
            table = addr
            shift -= 9
        raise AssertionError("unreachable")
