"""Kernel struct page layout and page-flag semantics for the C classifier,
built once from VMCOREINFO by feature detection (never a version number).

Every field the kernel does not export stays "absent" (-1 / have_* = 0) and
the C side tests for that explicitly.
"""
from __future__ import annotations

from dumpfilter._core import ffi
from dumpfilter._core import lib
from dumpfilter import limits
from dumpfilter.errors import VmcoreInfoError
from dumpfilter.vmcoreinfo import VmcoreInfo


def _i32(value: int) -> int:
    """makedumpfile compares mapcount values as (int)NUMBER(...)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _i64(value: int) -> int:
    value &= limits.U64_MAX
    return value - (1 << 64) if value >> 63 else value


def build_page_layout(info: VmcoreInfo):
    """A ``struct df_page_layout`` (cffi, owned by the returned object)."""
    l = ffi.new("struct df_page_layout *")
    l.sizeof_page = info.require_size("page")
    l.big_endian = 0  # x86_64
    for field in ("flags", "mapping"):
        if info.offset(f"page.{field}") is None:
            raise VmcoreInfoError(f"VMCOREINFO lacks OFFSET(page.{field}): cannot classify pages")

    def off(name: str) -> int:
        v = info.offset(name)
        return -1 if v is None else v

    def num(name: str) -> int:
        v = info.number(name)
        return -1 if v is None else v

    l.off_flags = off("page.flags")
    l.off_mapping = off("page.mapping")
    l.off_mapcount = off("page._mapcount")
    l.off_private = off("page.private")
    # Linux 7.1 renamed page.compound_head to page.compound_info (makedumpfile
    # commit f50c015); bit 0 still marks a tail page.
    head = info.offset("page.compound_info")
    l.off_compound_head = head if head is not None else off("page.compound_head")
    for name, width in (("flags", 8), ("mapping", 8), ("mapcount", 4), ("private", 8),
                        ("compound_head", 8)):
        value = getattr(l, f"off_{name}")
        if value >= 0:
            limits.check_struct_field("VMCOREINFO", l.sizeof_page, f"OFFSET(page.{name})",
                                      value, width)
    for bit in ("lru", "private", "swapcache", "swapbacked", "slab", "hwpoison", "buddy", "hugetlb"):
        v = num(f"PG_{bit}")
        if v != -1:
            limits.check_range("VMCOREINFO", f"NUMBER(PG_{bit})", v, 0, 63)
        setattr(l, f"pg_{bit}", v)
    l.pg_head_mask = max(0, num("PG_head_mask")) & limits.U64_MAX
    for kind in ("buddy", "slab", "hugetlb", "offline", "unaccepted"):
        v = info.number(f"PAGE_{kind.upper()}_MAPCOUNT_VALUE")
        if v is not None:
            setattr(l, f"{kind}_mapcount", _i32(v))
            setattr(l, f"have_{kind}_mapcount", 1)
    dtor = info.number("HUGETLB_PAGE_DTOR")
    if dtor is not None:
        l.hugetlb_dtor = _i64(dtor)
        l.have_hugetlb_dtor = 1
    nr_orders = info.length("zone.free_area")
    l.nr_orders = -1 if nr_orders is None else nr_orders

    l.off_compound_order = -1
    l.off_compound_dtor = -1
    if not l.pg_head_mask:
        l.compound_style = lib.DF_COMPOUND_NONE
    elif l.have_hugetlb_mapcount or l.pg_hugetlb >= 0:
        # Since Linux kernel commit ebc1baf5c9b4 ("mm: free up a word in the
        # first tail page") (in v6.6), the order is the low byte of the first
        # tail page's flags; hugetlb is PG_hugetlb there (6.6-6.8) or a page
        # type on the head (d99e3140a4d3, v6.9).
        l.compound_style = lib.DF_COMPOUND_FLAGS1
    else:
        order = info.offset("page.compound_order")
        dtor_off = info.offset("page.compound_dtor")
        if order is None and info.offset("folio._folio_order") is not None:
            # 6.3-6.5: folio fields, relative to the folio start; page[1]
            # begins SIZE(page) bytes in.
            order = info.offset("folio._folio_order") - l.sizeof_page
            dtor_off = info.offset("folio._folio_dtor")
            dtor_off = None if dtor_off is None else dtor_off - l.sizeof_page
        if order is None and dtor_off is None:
            l.compound_style = lib.DF_COMPOUND_NONE
        else:
            for what, v in (("compound order", order), ("compound dtor", dtor_off)):
                if v is not None:
                    # a field of page[1], at most 2 bytes wide
                    limits.check_range("VMCOREINFO", f"offset of the {what} in page[1]", v, 0,
                                       l.sizeof_page - 2)
            l.off_compound_order = -1 if order is None else order
            l.off_compound_dtor = -1 if dtor_off is None else dtor_off
            # Linux 4.16 made compound_dtor/compound_order adjacent unsigned
            # chars (makedumpfile keys this on the version number); before,
            # they were wider. We detect it from the exported offsets.
            adjacent = order is not None and dtor_off is not None and abs(order - dtor_off) == 1
            l.compound_style = lib.DF_COMPOUND_FIELDS_U8 if adjacent or order is None or dtor_off is None else lib.DF_COMPOUND_FIELDS_U16
    return l


def needs_struct_page_scan(info: VmcoreInfo, dump_level: int) -> bool:
    """makedumpfile runs the struct-page scan for bits 2/4/8/16, and always
    when PG_hwpoison is exported (hwpoison pages are never dumped)."""
    return bool(dump_level & 0x1E) or info.number("PG_hwpoison") is not None \
        or info.number("PAGE_OFFLINE_MAPCOUNT_VALUE") is not None
