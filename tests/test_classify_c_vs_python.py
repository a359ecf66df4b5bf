"""The C classifier and the pure-Python reference agree on random struct
page arrays, random kernel layouts and every dump level (Hypothesis)."""
import struct

from hypothesis import given, settings, strategies as st

from dumpfilter.testing import pyref as _pyref
from dumpfilter._core import ffi, lib

LAYOUT_FIELDS = [
    "off_flags", "off_mapping", "off_mapcount", "off_private", "off_compound_head",
    "off_compound_order", "off_compound_dtor",
]


def test_class_numbering_matches_c():
    assert [_pyref.KEEP, _pyref.ZERO, _pyref.CACHE, _pyref.CACHE_PRIVATE, _pyref.USER,
            _pyref.FREE, _pyref.HWPOISON, _pyref.OFFLINE] == [
        lib.DF_CLASS_KEEP, lib.DF_CLASS_ZERO, lib.DF_CLASS_CACHE, lib.DF_CLASS_CACHE_PRIVATE,
        lib.DF_CLASS_USER, lib.DF_CLASS_FREE, lib.DF_CLASS_HWPOISON, lib.DF_CLASS_OFFLINE]
    assert [_pyref.COMPOUND_NONE, _pyref.COMPOUND_FLAGS1, _pyref.COMPOUND_FIELDS_U8,
            _pyref.COMPOUND_FIELDS_U16] == [
        lib.DF_COMPOUND_NONE, lib.DF_COMPOUND_FLAGS1, lib.DF_COMPOUND_FIELDS_U8,
        lib.DF_COMPOUND_FIELDS_U16]


bitnr = st.one_of(st.just(-1), st.integers(0, 63))
mapval = st.sampled_from([-129, -257, -1, 0, 0x7F000000 - (1 << 31), -(0x10 << 24)])


@st.composite
def layouts(draw):
    size = draw(st.sampled_from([56, 64, 72]))
    l = ffi.new("struct df_page_layout *")
    l.sizeof_page = size
    l.big_endian = draw(st.booleans())
    l.compound_style = draw(st.integers(0, 3))
    # Word-aligned offsets inside the struct; absent (-1) where allowed.
    words = list(range(0, size - 7, 8))
    l.off_flags = draw(st.sampled_from(words))
    l.off_mapping = draw(st.sampled_from(words))
    l.off_mapcount = draw(st.one_of(st.just(-1), st.sampled_from(list(range(0, size - 3, 4)))))
    l.off_private = draw(st.one_of(st.just(-1), st.sampled_from(words)))
    l.off_compound_head = draw(st.one_of(st.just(-1), st.sampled_from(words)))
    l.off_compound_order = draw(st.one_of(st.just(-1), st.integers(0, size - 2)))
    l.off_compound_dtor = draw(st.one_of(st.just(-1), st.integers(0, size - 2)))
    for f in ("lru", "private", "swapcache", "swapbacked", "slab", "hwpoison", "buddy", "hugetlb"):
        setattr(l, f"pg_{f}", draw(bitnr))
    l.pg_head_mask = draw(st.sampled_from([0, 1 << 16, 1 << 15]))
    for kind in ("buddy", "slab", "hugetlb", "offline", "unaccepted"):
        setattr(l, f"{kind}_mapcount", draw(mapval))
        setattr(l, f"have_{kind}_mapcount", draw(st.booleans()))
    l.have_hugetlb_dtor = draw(st.booleans())
    l.hugetlb_dtor = draw(st.integers(0, 4))
    l.nr_orders = draw(st.sampled_from([-1, 11, 5]))
    return l


@st.composite
def page_arrays(draw, layout, npages):
    be = layout.big_endian
    o = ">" if be else "<"
    buf = bytearray(layout.sizeof_page * npages)
    interesting_bits = [b for b in (layout.pg_lru, layout.pg_private, layout.pg_swapcache,
                                    layout.pg_swapbacked, layout.pg_slab, layout.pg_hwpoison,
                                    layout.pg_buddy, layout.pg_hugetlb) if b >= 0]
    for i in range(npages):
        base = i * layout.sizeof_page
        flags = 0
        for b in draw(st.lists(st.sampled_from(interesting_bits), max_size=3)) if interesting_bits else []:
            flags |= 1 << b
        if draw(st.booleans()):
            flags |= layout.pg_head_mask | draw(st.integers(0, 12))
        struct.pack_into(o + "Q", buf, base + layout.off_flags, flags)
        struct.pack_into(o + "Q", buf, base + layout.off_mapping,
                         draw(st.sampled_from([0, 1, 0xFFFF888000001000, 0xFFFF888000001001])))
        if layout.off_mapcount >= 0:
            struct.pack_into(o + "i", buf, base + layout.off_mapcount, draw(mapval))
        if layout.off_private >= 0:
            struct.pack_into(o + "Q", buf, base + layout.off_private,
                             draw(st.one_of(st.integers(0, 12), st.integers(0, 2**64 - 1))))
        if layout.off_compound_head >= 0:
            struct.pack_into(o + "Q", buf, base + layout.off_compound_head,
                             draw(st.sampled_from([0, 0xFFFFEA0000001001, 0xFFFFEA0000001000])))
        if layout.off_compound_order >= 0 and draw(st.booleans()):
            buf[base + layout.off_compound_order] = draw(st.integers(0, 12))
        if layout.off_compound_dtor >= 0 and draw(st.booleans()):
            buf[base + layout.off_compound_dtor] = draw(st.integers(0, 4))
    return bytes(buf)


@st.composite
def cases(draw):
    layout = draw(layouts())
    npages = draw(st.integers(1, 80))
    nextra = draw(st.integers(0, 1))
    pages = draw(page_arrays(layout, npages + nextra))
    first_pfn = draw(st.sampled_from([0, 8, 512, 4096 - 16, 1 << 20]))
    exists = draw(st.binary(min_size=(npages + 7) // 8, max_size=(npages + 7) // 8))
    exists = bytes(b | draw(st.sampled_from([0, 0xFF])) for b in exists)
    level = draw(st.integers(0, 31))
    carry = (first_pfn + draw(st.integers(0, 20)), draw(st.integers(1, 7)))
    return layout, npages, nextra, pages, first_pfn, exists, level, carry


@settings(max_examples=400, deadline=None)
@given(cases())
def test_c_classifier_equals_python_reference(case):
    layout, npages, nextra, pages, first_pfn, exists, level, carry = case
    bitmap_c = bytearray(exists)
    bitmap_py = bytearray(exists)
    counts_c = ffi.new("uint64_t[]", lib.DF_NCLASSES)
    counts_py = [0] * lib.DF_NCLASSES
    classes_c = ffi.new("uint8_t[]", npages)
    carry_c = ffi.new("struct df_classify_carry *")
    carry_c.end_pfn, carry_c.class_id = carry
    status = lib.df_classify_pages(pages, len(pages), npages, nextra, first_pfn,
                                   exists, len(exists), level, layout,
                                   ffi.from_buffer(bitmap_c, require_writable=True),
                                   len(bitmap_c), counts_c, lib.DF_NCLASSES,
                                   classes_c, npages, carry_c)
    assert status == lib.DF_OK
    classes_py, carry_py = _pyref.classify_pages(pages, npages, nextra, first_pfn, exists, level,
                                                 layout, bitmap_py, counts_py, carry)
    assert list(classes_c) == classes_py
    assert bitmap_c == bitmap_py
    assert list(counts_c) == counts_py
    assert (carry_c.end_pfn, carry_c.class_id) == carry_py


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.data())
def test_zero_detection_equals_python_reference(npages, data):
    ps = data.draw(st.sampled_from([64, 4096]))
    pages = bytearray()
    for _ in range(npages):
        if data.draw(st.booleans()):
            pages += bytes(ps)
        else:
            page = bytearray(ps)
            page[data.draw(st.integers(0, ps - 1))] = data.draw(st.integers(1, 255))
            pages += page
    mask = data.draw(st.one_of(st.none(), st.binary(min_size=(npages + 7) // 8,
                                                    max_size=(npages + 7) // 8)))
    out = bytearray((npages + 7) // 8)
    count = ffi.new("uint64_t *")
    assert lib.df_find_zero_pages(bytes(pages), len(pages), npages, ps,
                                  mask if mask is not None else ffi.NULL,
                                  len(mask) if mask is not None else 0,
                                  ffi.from_buffer(out, require_writable=True), len(out),
                                  count) == lib.DF_OK
    ref, n = _pyref.find_zero_pages(bytes(pages), npages, ps, mask)
    assert bytes(out) == ref and count[0] == n


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 300), st.integers(0, 300), st.binary(min_size=40, max_size=40))
def test_bitmap_routines_equal_python_reference(a, b, init):
    start, end = min(a, b), max(a, b)
    c_map, py_map = bytearray(init), bytearray(init)
    assert lib.df_bitmap_set_range(ffi.from_buffer(c_map, require_writable=True), len(c_map),
                                   start, end) == lib.DF_OK
    _pyref.bitmap_set_range(py_map, start, end)
    assert c_map == py_map
    for nbits in (0, 1, 7, 8, 9, end, 320):
        count = ffi.new("uint64_t *")
        assert lib.df_bitmap_count(bytes(c_map), len(c_map), nbits, count) == lib.DF_OK
        assert count[0] == _pyref.bitmap_count(c_map, nbits)
