"""Kernel "profiles": struct page layout and the VMCOREINFO keys each kernel exports.

Facts taken from the kernel sources (include/linux/page-flags.h, mm_types.h,
mmzone.h, kernel/vmcore_info.c / crash_core.c, arch/x86/kernel/crash_core_64.c)
and from a real Debian 6.1 VMCOREINFO; nothing here is copied code.

* ``6.1``  — like the real Debian 6.1 dump: page types are inverted single bits
  in ``_mapcount`` (buddy -129, offline -257, table -513), slab is the flag
  ``PG_slab``, compound order/dtor are bytes 17/16 of ``page[1]``
  (``OFFSET(page.compound_order/compound_dtor)``), hugetlb = dtor byte ==
  ``NUMBER(HUGETLB_PAGE_DTOR)`` (2).
* ``6.9``  — compound order in the low byte of ``page[1].flags``; hugetlb is a
  page type on the head (``NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)`` = ~0x800);
  ``PG_slab`` still a flag.  Adds ``SYMBOL(vmemmap)`` and ``NUMBER(VMALLOC_START)``
  (both appeared in 2023, after 6.1).
* ``6.10`` — slab becomes a page type: exports ``PAGE_SLAB_MAPCOUNT_VALUE``
  (~0x1000) and drops ``NUMBER(PG_slab)``.
* ``6.12`` — one page type per page in the top byte of the 32-bit
  ``page_type``/``_mapcount`` word: the kernel stores exactly
  ``(unsigned)PGTY_x << 24`` (low 24 bits zero) and vmcore_info.c exports
  ``NUMBER(PAGE_x_MAPCOUNT_VALUE) = (PGTY_x << 24)``, printed with ``%ld`` of an
  ``int`` expression, i.e. negative (buddy = -268435456).  Equality of the
  word read as a signed 32-bit int with the exported value identifies the
  type.  Adds ``PAGE_UNACCEPTED_MAPCOUNT_VALUE``.
* ``7.1``  — like 6.12 but ``OFFSET(page.compound_info)`` replaces
  ``OFFSET(page.compound_head)`` (tail pages still have bit 0 set).

``PG_*`` bit numbers follow the x86_64 ``enum pageflags`` of each version with
CONFIG_MMU, CONFIG_MEMORY_FAILURE and (where it existed) PG_uncached.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Dict, Optional

PAGE_STRUCT_SIZE = 64
TAIL_MAPPING = 0xDEAD000000000400  # TAIL_MAPPING poison in tail pages >= 2


def _pgty(t: int) -> int:
    """6.12+ page type value as the kernel exports it (signed 32-bit)."""
    v = t << 24
    return v - (1 << 32) if v & 0x80000000 else v


@dataclass(frozen=True)
class Profile:
    name: str
    osrelease: str
    pg: Dict[str, int]  # page-flag bit numbers
    types: Dict[str, Optional[int]]  # _mapcount word values (signed 32-bit)
    compound_style: str  # "dtor" (order byte @17 of page[1]) or "flags1" (low byte of page[1].flags)
    compound_key: str = "compound_head"
    export_pg_slab: bool = True
    hugetlb_dtor: Optional[int] = None  # NUMBER(HUGETLB_PAGE_DTOR) (6.1)
    export_vmemmap: bool = False
    export_vmalloc_start: bool = False
    migrate_types: int = 5  # LENGTH(free_area.free_list)
    extra_numbers: Dict[str, int] = field(default_factory=dict)

    @property
    def head_mask(self) -> int:
        return 1 << self.pg["head"]

    def slab_is_type(self) -> bool:
        return self.types.get("slab") is not None


_PG_61 = dict(locked=0, referenced=1, uptodate=2, dirty=3, lru=4, active=5, slab=9,
              swapcache=10, reserved=12, private=13, head=16, swapbacked=19, hwpoison=23)
_PG_69 = dict(locked=0, writeback=1, referenced=2, uptodate=3, dirty=4, lru=5, head=6,
              active=8, slab=11, swapcache=12, reserved=14, private=15, swapbacked=19,
              hwpoison=23)
_PG_610 = dict(locked=0, writeback=1, referenced=2, uptodate=3, dirty=4, lru=5, head=6,
               active=8, swapcache=11, reserved=13, private=14, swapbacked=18, hwpoison=22)
_PG_612 = dict(locked=0, writeback=1, referenced=2, uptodate=3, dirty=4, lru=5, head=6,
               active=8, swapcache=10, reserved=13, private=14, swapbacked=17, hwpoison=21)
_PG_71 = dict(_PG_612, hwpoison=21)

_T_OLD = dict(buddy=-129, offline=-257, table=-513, hugetlb=None, slab=None, unaccepted=None)
_T_612 = dict(buddy=_pgty(0xF0), offline=_pgty(0xF1), table=_pgty(0xF2), guard=_pgty(0xF3),
              hugetlb=_pgty(0xF4), slab=_pgty(0xF5), zsmalloc=_pgty(0xF6),
              unaccepted=_pgty(0xF7))

PROFILES: Dict[str, Profile] = {
    "6.1": Profile("6.1", "6.1.0-56-amd64", _PG_61, _T_OLD, "dtor", hugetlb_dtor=2),
    "6.9": Profile("6.9", "6.9.12-amd64", _PG_69, dict(_T_OLD, hugetlb=~0x800), "flags1",
                   export_vmemmap=True, export_vmalloc_start=True, migrate_types=6),
    "6.10": Profile("6.10", "6.10.11-amd64", _PG_610, dict(_T_OLD, hugetlb=~0x800, slab=~0x1000),
                    "flags1", export_pg_slab=False, export_vmemmap=True,
                    export_vmalloc_start=True, migrate_types=6),
    "6.12": Profile("6.12", "6.12.38+deb13-amd64", _PG_612, _T_612, "flags1",
                    export_pg_slab=False, export_vmemmap=True, export_vmalloc_start=True,
                    migrate_types=6),
    "7.1": Profile("7.1", "7.1.0-synthetic", _PG_71, _T_612, "flags1",
                   compound_key="compound_info", export_pg_slab=False, export_vmemmap=True,
                   export_vmalloc_start=True, migrate_types=6),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose from {sorted(PROFILES)}") from None


# --------------------------------------------------------------------------- struct page

_PAGE = struct.Struct("<QQQQQQiIQ")  # flags lru.next lru.prev mapping index private _mapcount _refcount memcg


def pack_page(buf, off, flags=0, lru_next=0, lru_prev=0, mapping=0, index=0, private=0,
              mapcount=-1, refcount=0, memcg=0) -> None:
    """Write one 64-byte struct page (fields common to every profile)."""
    _PAGE.pack_into(buf, off, flags, lru_next, lru_prev, mapping, index, private,
                    mapcount, refcount, memcg)


def pack_tail(buf, off, prof: Profile, zone_flags: int, head_vaddr: int, nth: int, order: int,
              kind: str) -> None:
    """Write tail page ``nth`` (>= 1) of a compound page of ``order``.

    ``kind`` is "hugetlb", "thp" or anything else (plain compound / large folio);
    it only matters for the 6.1 ``compound_dtor`` byte.
    """
    flags = zone_flags
    if nth == 1 and prof.compound_style == "flags1":
        flags |= order  # folio->_flags_1 low byte = order (6.9+)
    mapping = TAIL_MAPPING if nth >= 2 else 0
    pack_page(buf, off, flags=flags, lru_next=head_vaddr | 1, mapping=mapping, mapcount=-1)
    if nth == 1:
        if prof.compound_style == "dtor":
            # 6.1: compound_dtor @16, compound_order @17, compound_mapcount @20 (-1),
            # compound_pincount @24, compound_nr @28
            # enum compound_dtor_id: COMPOUND_PAGE_DTOR 1, HUGETLB_PAGE_DTOR 2, TRANSHUGE_PAGE_DTOR 3
            dtor = {"hugetlb": prof.hugetlb_dtor or 2, "thp": 3}.get(kind, 1)
            struct.pack_into("<BBxxiiI", buf, off + 16, dtor, order, -1, 0, 1 << order)
        else:
            # folio: _entire_mapcount @16 (-1), _nr_pages_mapped @20, _pincount @24
            struct.pack_into("<iii", buf, off + 16, -1, 0, 0)
