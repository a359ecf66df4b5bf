"""arm64 (AArch64) virtual -> physical translation of the dumped kernel.

Everything comes from VMCOREINFO, validated before use:

* ``PAGESIZE`` 4, 16 or 64 KiB (the translation granule).
* ``NUMBER(VA_BITS)``, ``NUMBER(kimage_voffset)``, ``NUMBER(PHYS_OFFSET)``
  (kernel commit 20a166243328, "arm64: kdump: add VMCOREINFO's for
  user-space tools", v4.12).
* ``NUMBER(TCR_EL1_T1SZ)`` (bbdbc11804ff, "arm64/crash_core: Export
  TCR_EL1.T1SZ in vmcoreinfo", v5.9; spelled ``tcr_el1_t1sz`` by some
  backports): the VA size the MMU really used (``vabits_actual``), which
  differs from ``VA_BITS`` when a 52-bit kernel runs on a 48-bit CPU.
* ``NUMBER(VMEMMAP_START)`` etc. (2369f171d5c5, "arm64: crash_core: Export
  MODULES, VMALLOC, and VMEMMAP ranges", v5.18); not needed here: vmemmap
  addresses come from ``mem_section`` and are walked like any other.

Linear map. Since 14c127c957c1 ("arm64: mm: Flip kernel VA space", v5.4)
the linear map is the *lower* half of the kernel VA range, starting at
``-(1 << VA_BITS)``, and the kernel image lives in the upper half; before
it the linear map was the upper half (``~0 << (VA_BITS - 1)``). Which one a
dump uses is detected from where ``_stext`` lies, not from a version. Since
7bc1a0f9e176 ("arm64: mm: use single quantity to represent the PA to VA
translation", v5.11) ``PHYS_OFFSET`` absorbs the 52->48-bit fallback, so
``pa = va - PAGE_OFFSET(VA_BITS) + PHYS_OFFSET``; an unadjusted
``PHYS_OFFSET`` (bit 63 clear) with ``VA_BITS=52`` on a 48-bit MMU means the
older rule, ``PAGE_OFFSET(vabits_actual)``.

Page tables. The root is ``SYMBOL(swapper_pg_dir)``, a kernel-image address
(``pa = va - kimage_voffset``). The number of levels is the kernel's
``ARM64_HW_PGTABLE_LEVELS(va_bits) = (va_bits - 4) / (PAGE_SHIFT - 3)``.
With 4/16 KiB pages and ``VA_BITS=52`` (LPA2, 352b0395b505, "arm64: Enable
52-bit virtual addressing for 4k and 16k granule configs", v6.9) the top
level is folded at boot when the CPU lacks LPA2, so the walk uses
``vabits_actual``; with LPA2 active, output-address bits 51:50 sit in
descriptor bits 9:8. With 64 KiB pages and 52-bit physical addresses
(75387b92635e, "arm64: handle 52-bit physical addresses in page table
entries", v4.16) bits 51:48 sit in descriptor bits 15:12, and the 52-bit
root table is indexed with the full VA whatever ``vabits_actual`` is.
"""
from __future__ import annotations

import struct
from collections import OrderedDict
from typing import Optional, Tuple

from dumpfilter.errors import FaultError, VmcoreInfoError
from dumpfilter.memory.base import KernelMemory
from dumpfilter.vmcoreinfo import VmcoreInfo

EM_AARCH64 = 183
_U64 = (1 << 64) - 1
_PAGE_SIZES = (4096, 16384, 65536)
_VA_BITS = (36, 39, 42, 47, 48, 52)


def _neg(bits: int) -> int:
    """``-(1 << bits)`` as an unsigned 64-bit value."""
    return (-(1 << bits)) & _U64


def is_arm64(info: VmcoreInfo, e_machine: Optional[int] = None) -> bool:
    """The dump is of an arm64 kernel: ELF ``e_machine`` (or the kdump
    header's utsname machine) says so, or, when the format says nothing,
    VMCOREINFO carries arm64's own numbers."""
    if e_machine is not None:
        return e_machine == EM_AARCH64
    return info.number("kimage_voffset") is not None and info.number("VA_BITS") is not None


class Arm64Layout:
    """The arm64 address-space constants of one dump, checked."""

    def __init__(self, info: VmcoreInfo):
        ps = info.page_size
        if ps not in _PAGE_SIZES:
            raise VmcoreInfoError(f"VMCOREINFO PAGESIZE={ps}: arm64 uses 4096, 16384 or 65536")
        self.page_size = ps
        self.page_shift = ps.bit_length() - 1
        va_bits = info.number("VA_BITS")
        if va_bits not in _VA_BITS:
            raise VmcoreInfoError(f"VMCOREINFO NUMBER(VA_BITS)={va_bits}: not an arm64 VA size")
        self.va_bits = va_bits
        t1sz = info.number("TCR_EL1_T1SZ")
        if t1sz is None:
            t1sz = info.number("tcr_el1_t1sz")
        if t1sz is not None:
            actual = 64 - t1sz
            if not 36 <= actual <= va_bits:
                raise VmcoreInfoError(f"VMCOREINFO NUMBER(TCR_EL1_T1SZ)={t1sz:#x}: "
                                      f"{actual}-bit VA with VA_BITS={va_bits}")
        else:
            actual = va_bits
        self.vabits_actual = actual
        for key in ("kimage_voffset", "PHYS_OFFSET"):
            if info.number(key) is None:
                raise VmcoreInfoError(f"VMCOREINFO lacks NUMBER({key}): cannot translate arm64 addresses")
        self.kimage_voffset = info.number("kimage_voffset") & _U64
        self.phys_offset = info.number("PHYS_OFFSET") & _U64
        physmem = info.number("MAX_PHYSMEM_BITS") or 48
        if physmem not in (48, 52):
            raise VmcoreInfoError(f"VMCOREINFO NUMBER(MAX_PHYSMEM_BITS)={physmem}: arm64 has 48 or 52")
        self.physmem_bits = physmem

        # VA_BITS_MIN: 48 for a 52-bit kernel (47 with 16 KiB pages).
        va_min = va_bits if va_bits < 52 else (47 if ps == 16384 else 48)
        image = info.symbol("_stext")
        if image is None:
            image = info.symbol("swapper_pg_dir")
        if image is None:
            raise VmcoreInfoError("VMCOREINFO lacks SYMBOL(_stext) and SYMBOL(swapper_pg_dir)")
        self.flipped = image >= _neg(va_min - 1)
        if self.flipped:
            lm_bits = va_bits
            if va_bits == 52 and actual < 52 and not self.phys_offset >> 63:
                lm_bits = actual  # 5.4-5.10: PAGE_OFFSET followed vabits_actual
            self.page_offset = _neg(lm_bits)
            self.page_end = _neg(va_min - 1)
        else:
            self.page_offset = _neg(va_bits - 1)
            self.page_end = 1 << 64

        # The page-table walk.
        walk_bits = va_bits
        if ps != 65536 and va_bits == 52:
            walk_bits = actual  # LPA2 folds the top level without LPA2 hardware
        self.walk_bits = walk_bits
        self.bits_per_level = self.page_shift - 3
        self.levels = (walk_bits - 4) // self.bits_per_level
        self.lpa2 = ps != 65536 and walk_bits == 52
        self.lpa_64k = ps == 65536 and physmem == 52

    def is_linear(self, vaddr: int) -> bool:
        return self.page_offset <= vaddr < self.page_end

    def lm_to_phys(self, vaddr: int) -> int:
        return (vaddr - self.page_offset + self.phys_offset) & _U64

    def phys_to_lm(self, paddr: int) -> int:
        return (paddr - self.phys_offset + self.page_offset) & _U64

    def kimg_to_phys(self, vaddr: int) -> int:
        return (vaddr - self.kimage_voffset) & _U64

    def output_address(self, desc: int) -> int:
        """The output address of a table/block/page descriptor."""
        addr = desc & ((1 << 48) - 1) & ~((1 << self.page_shift) - 1)
        if self.lpa2:
            addr = (desc & ((1 << 50) - 1) & ~((1 << self.page_shift) - 1)) | ((desc >> 8) & 3) << 50
        elif self.lpa_64k:
            addr |= ((desc >> 12) & 0xF) << 48
        return addr


def arm64_phys_base(info: VmcoreInfo) -> int:
    """What makedumpfile records as ``phys_base`` for arm64: ``PHYS_OFFSET``."""
    v = info.number("PHYS_OFFSET")
    return 0 if v is None else v


class Arm64Memory(KernelMemory):
    """Reads the dumped arm64 kernel's virtual memory: the linear map by
    arithmetic, everything else (vmemmap, vmalloc, the kernel image)
    through ``swapper_pg_dir``."""

    def __init__(self, source, info: VmcoreInfo, cache_pages: int = 64):
        self.source = source
        self.info = info
        self.layout = lay = Arm64Layout(info)
        if source.page_size != lay.page_size:
            raise VmcoreInfoError(f"PAGESIZE={lay.page_size} but the dump has {source.page_size}-byte pages")
        self.table_size = lay.page_size
        root = info.require_symbol("swapper_pg_dir")
        self.root_vaddr = root
        self.root_paddr = lay.kimg_to_phys(root)
        self._cache = OrderedDict()
        self._cache_pages = cache_pages

    def kernel_image_vtop(self, vaddr: int) -> int:
        return self.layout.kimg_to_phys(vaddr)

    def translate(self, vaddr: int) -> Tuple[int, int]:
        lay = self.layout
        vaddr &= _U64
        if lay.is_linear(vaddr):
            return lay.lm_to_phys(vaddr), lay.page_end - vaddr
        return self.walk(vaddr)

    def walk(self, vaddr: int) -> Tuple[int, int]:
        """The page-table walk alone: (paddr, bytes left in the leaf)."""
        lay = self.layout
        bpl = lay.bits_per_level
        table = self.root_paddr
        for level in range(lay.levels):
            shift = lay.page_shift + (lay.levels - 1 - level) * bpl
            width = lay.walk_bits - shift if level == 0 else bpl
            idx = (vaddr >> shift) & ((1 << width) - 1)
            try:
                (desc,) = struct.unpack_from("<Q", self._table(table), idx * 8)
            except FaultError:
                raise FaultError("page table not in dump", vaddr) from None
            if not desc & 1:
                raise FaultError("address not mapped", vaddr)
            addr = lay.output_address(desc)
            last = level == lay.levels - 1
            if last or not desc & 2:
                if last and not desc & 2:
                    raise FaultError("reserved page descriptor", vaddr)
                size = 1 << shift
                off = vaddr & (size - 1)
                return (addr & ~(size - 1)) + off, size - off
            table = addr
        raise AssertionError("unreachable")
