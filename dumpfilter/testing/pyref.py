"""Pure-Python references of the C core's routines (csrc/), written from
the same rules but independently, for tests that check C == Python.

Slow and simple on purpose; the filter itself never uses them.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

# Same numbering as enum df_page_class (checked against lib.DF_CLASS_* in
# the tests, not copied into the filter).
KEEP, ZERO, CACHE, CACHE_PRIVATE, USER, FREE, HWPOISON, OFFLINE = range(8)
COMPOUND_NONE, COMPOUND_FLAGS1, COMPOUND_FIELDS_U8, COMPOUND_FIELDS_U16 = range(4)


def _bit(flags: int, nr: int) -> bool:
    return 0 <= nr < 64 and bool(flags >> nr & 1)


def _u(buf: bytes, off: int, size: int, be: bool) -> int:
    return int.from_bytes(buf[off : off + size], "big" if be else "little")


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def classify_pages(
    pages: bytes, npages: int, nextra: int, first_pfn: int, exists: bytes,
    dump_level: int, layout, bitmap2: bytearray, counts: List[int],
    carry: Tuple[int, int],
) -> Tuple[List[int], Tuple[int, int]]:
    """Mirror of ``df_classify_pages``. ``layout`` is any object with the
    ``struct df_page_layout`` field names; ``carry`` is (end_pfn, class).
    Returns (class per pfn, new carry); updates bitmap2 and counts."""
    L = layout
    be = bool(L.big_endian)
    size = L.sizeof_page
    classes = [KEEP] * npages

    def exclude(i: int, cls: int) -> None:
        if bitmap2[i >> 3] >> (i & 7) & 1:
            bitmap2[i >> 3] &= ~(1 << (i & 7)) & 0xFF
            counts[cls] += 1
        classes[i] = cls

    def slab(flags: int, mapcount: int) -> bool:
        if L.have_slab_mapcount and mapcount == L.slab_mapcount:
            return True
        return _bit(flags, L.pg_slab)

    i = 0
    end_pfn, carry_cls = carry
    while i < npages and first_pfn + i < end_pfn:
        exclude(i, carry_cls)
        i += 1
    while i < npages:
        pfn = first_pfn + i
        if not exists[i >> 3] >> (i & 7) & 1:
            i += 1
            continue
        p = pages[i * size : (i + 1) * size]
        flags = _u(p, L.off_flags, 8, be)
        mapping = _u(p, L.off_mapping, 8, be)
        mapcount = _s32(_u(p, L.off_mapcount, 4, be)) if L.off_mapcount >= 0 else 0
        private = _u(p, L.off_private, 8, be) if L.off_private >= 0 else 0
        head = _u(p, L.off_compound_head, 8, be) if L.off_compound_head >= 0 else 0

        order, hugetlb = 0, False
        if L.pg_head_mask and flags & L.pg_head_mask and i + 1 < npages + nextra:
            p1 = pages[(i + 1) * size : (i + 2) * size]
            if L.compound_style == COMPOUND_FLAGS1:
                f1 = _u(p1, L.off_flags, 8, be)
                order = f1 & 0xFF
                hugetlb = (mapcount == L.hugetlb_mapcount) if L.have_hugetlb_mapcount \
                    else _bit(f1, L.pg_hugetlb)
            elif L.compound_style in (COMPOUND_FIELDS_U8, COMPOUND_FIELDS_U16):
                w = 2 if L.compound_style == COMPOUND_FIELDS_U16 else 1
                dtor = 0
                if L.off_compound_order >= 0:
                    order = _u(p1, L.off_compound_order, w, be)
                if L.off_compound_dtor >= 0:
                    dtor = _u(p1, L.off_compound_dtor, w, be)
                hugetlb = bool(L.have_hugetlb_dtor) and dtor == L.hugetlb_dtor
            if order >= 64 or pfn & ((1 << order) - 1):
                order = 0
        if head & 1:
            i += 1
            continue

        nr = 1 << order
        is_slab = slab(flags, mapcount)
        anon = bool(mapping & 1) and not is_slab
        lru = _bit(flags, L.pg_lru)
        cache = lru or ((L.pg_swapbacked < 0 or _bit(flags, L.pg_swapbacked))
                        and _bit(flags, L.pg_swapcache))
        priv = _bit(flags, L.pg_private)
        buddy_test = L.off_private >= 0 and (
            L.off_mapcount >= 0 if L.have_buddy_mapcount else L.pg_buddy >= 0)
        is_buddy = (not is_slab and mapcount == L.buddy_mapcount) if L.have_buddy_mapcount \
            else _bit(flags, L.pg_buddy)

        cls = KEEP
        if dump_level & 16 and buddy_test and is_buddy:
            if private < 64 and (L.nr_orders < 0 or private < L.nr_orders):
                cls, nr = FREE, 1 << private
        elif dump_level & 16 and L.have_unaccepted_mapcount and mapcount == L.unaccepted_mapcount:
            cls, nr = FREE, (1 << (L.nr_orders - 1)) if L.nr_orders > 0 else 1
        elif dump_level & 2 and cache and not priv and not anon:
            cls = CACHE
        elif dump_level & 4 and cache and not anon:
            cls = CACHE_PRIVATE if priv else CACHE
        elif dump_level & 8 and (anon or hugetlb):
            cls = USER
        elif _bit(flags, L.pg_hwpoison):
            cls = HWPOISON
        elif L.have_offline_mapcount and not is_slab and mapcount == L.offline_mapcount:
            cls = OFFLINE
        if cls == KEEP:
            i += 1
            continue
        for k in range(nr):
            if i + k >= npages:
                return classes, (pfn + nr, cls)
            exclude(i + k, cls)
        i += nr
    return classes, (end_pfn, carry_cls)


def find_zero_pages(data: bytes, npages: int, page_size: int,
                    mask: Optional[bytes]) -> Tuple[bytes, int]:
    """Mirror of ``df_find_zero_pages``."""
    out = bytearray((npages + 7) // 8)
    zero = bytes(page_size)
    n = 0
    for i in range(npages):
        if mask is not None and not mask[i >> 3] >> (i & 7) & 1:
            continue
        if data[i * page_size : (i + 1) * page_size] == zero:
            out[i >> 3] |= 1 << (i & 7)
            n += 1
    return bytes(out), n


def bitmap_count(bitmap: bytes, nbits: int) -> int:
    """Mirror of ``df_bitmap_count``."""
    return sum(bitmap[i >> 3] >> (i & 7) & 1 for i in range(nbits))


def bitmap_set_range(bitmap: bytearray, start: int, end: int) -> None:
    """Mirror of ``df_bitmap_set_range``."""
    for i in range(start, end):
        bitmap[i >> 3] |= 1 << (i & 7)

