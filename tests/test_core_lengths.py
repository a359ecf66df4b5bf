"""Every C core entry point takes the length of each buffer and refuses a
short one with DF_ERR_INVALID (issue 9): the buffers' safety no longer
rests on the callers. For each routine Hypothesis draws buffer lengths
around the size the documented contract needs (the Python statement of
the check below) and the C status must be DF_OK exactly when every buffer
is long enough. ``dumpfilter._core.check`` maps the status to the
project's ``CoreInputError``, not to a builtin exception.
"""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dumpfilter._core import CoreInputError, check, ffi, lib
from dumpfilter.errors import CorruptDumpError


def _nbytes(nbits):
    return (nbits + 7) // 8


def _around(need):
    """A length drawn near ``need``: below, at, or above."""
    return st.integers(max(0, need - 3), need + 3)


def _expect(status, ok):
    assert status == (lib.DF_OK if ok else lib.DF_ERR_INVALID), (status, ok)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 40), st.data())
def test_classify_lengths(npages, data):
    layout = ffi.new("struct df_page_layout *")
    layout.sizeof_page = 64
    layout.off_flags, layout.off_mapping = 0, 8
    for f in ("off_mapcount", "off_private", "off_compound_head", "off_compound_order",
              "off_compound_dtor", "pg_lru", "pg_private", "pg_swapcache", "pg_swapbacked",
              "pg_slab", "pg_hwpoison", "pg_buddy", "pg_hugetlb", "nr_orders"):
        setattr(layout, f, -1)
    nextra = data.draw(st.integers(0, 1))
    pages_len = data.draw(_around((npages + nextra) * 64))
    exists_len = data.draw(_around(_nbytes(npages)))
    bm_len = data.draw(_around(_nbytes(npages)))
    ncounts = data.draw(_around(lib.DF_NCLASSES))
    class_len = data.draw(st.one_of(st.none(), _around(npages)))
    pages = ffi.new("uint8_t[]", max(1, pages_len))
    exists = ffi.new("uint8_t[]", max(1, exists_len))
    bm = ffi.new("uint8_t[]", max(1, bm_len))
    counts = ffi.new("uint64_t[]", max(1, ncounts))
    cls = ffi.NULL if class_len is None else ffi.new("uint8_t[]", max(1, class_len))
    carry = ffi.new("struct df_classify_carry *")
    st_ = lib.df_classify_pages(pages, pages_len, npages, nextra, 0, exists, exists_len, 31,
                                layout, bm, bm_len, counts, ncounts, cls, class_len or 0, carry)
    ok = (pages_len >= (npages + nextra) * 64 and exists_len >= _nbytes(npages)
          and bm_len >= _nbytes(npages) and ncounts >= lib.DF_NCLASSES
          and (class_len is None or class_len >= npages))
    _expect(st_, ok)


@pytest.mark.parametrize("nr_orders,ok", [(-1, True), (11, True), (64, True), (65, False),
                                          (100, False)])
def test_classify_refuses_order_counts_past_64(nr_orders, ok):
    """LENGTH(zone.free_area)=100 used to shift a 64-bit 1 by 99 (UBSan)."""
    layout = ffi.new("struct df_page_layout *")
    layout.sizeof_page, layout.off_flags, layout.off_mapping = 64, 0, 8
    for f in ("off_mapcount", "off_private", "off_compound_head", "off_compound_order",
              "off_compound_dtor"):
        setattr(layout, f, -1)
    layout.nr_orders = nr_orders
    layout.have_unaccepted_mapcount = 1
    pages = ffi.new("uint8_t[]", 64)
    bm = ffi.new("uint8_t[]", [1])
    counts = ffi.new("uint64_t[]", lib.DF_NCLASSES)
    st_ = lib.df_classify_pages(pages, 64, 1, 0, 0, bytes([1]), 1, 31, layout, bm, 1, counts,
                                lib.DF_NCLASSES, ffi.NULL, 0,
                                ffi.new("struct df_classify_carry *"))
    _expect(st_, ok)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 40), st.sampled_from([64, 4096]), st.data())
def test_zero_pages_lengths(npages, ps, data):
    data_len = data.draw(_around(npages * ps))
    mask_len = data.draw(st.one_of(st.none(), _around(_nbytes(npages))))
    zero_len = data.draw(_around(_nbytes(npages)))
    src = ffi.new("uint8_t[]", max(1, data_len))
    mask = ffi.NULL if mask_len is None else ffi.new("uint8_t[]", max(1, mask_len))
    zero = ffi.new("uint8_t[]", max(1, zero_len))
    st_ = lib.df_find_zero_pages(src, data_len, npages, ps, mask, mask_len or 0, zero, zero_len,
                                 ffi.new("uint64_t *"))
    _expect(st_, data_len >= npages * ps and zero_len >= _nbytes(npages)
            and (mask_len is None or mask_len >= _nbytes(npages)))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 200), st.integers(0, 200), st.data())
def test_bitmap_lengths(a, b, data):
    start, end = min(a, b), max(a, b)
    n = data.draw(_around(_nbytes(end)))
    buf = ffi.new("uint8_t[]", max(1, n))
    _expect(lib.df_bitmap_set_range(buf, n, start, end), n >= _nbytes(end))
    _expect(lib.df_bitmap_set_range(buf, n, end + 1, end), False)
    _expect(lib.df_bitmap_count(buf, n, end, ffi.new("uint64_t *")), n >= _nbytes(end))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 64), st.data())
def test_select_and_gather_lengths(npages, data):
    ps = 64
    mask = bytes(data.draw(st.binary(min_size=_nbytes(npages), max_size=_nbytes(npages))))
    mask_len = data.draw(_around(len(mask)))
    idx_cap = data.draw(_around(npages))
    m = ffi.new("uint8_t[]", max(1, mask_len))
    ffi.memmove(m, mask, min(len(mask), mask_len))
    idx = ffi.new("uint32_t[]", max(1, idx_cap))
    count = ffi.new("size_t *")
    st_ = lib.df_select_pages(m, mask_len, ffi.NULL, 0, npages, idx, idx_cap, count)
    _expect(st_, mask_len >= _nbytes(npages) and idx_cap >= npages)
    if st_ != lib.DF_OK:
        return
    n = count[0]
    src_len = data.draw(_around(npages * ps))
    out_len = data.draw(_around(n * ps))
    src = ffi.new("uint8_t[]", max(1, src_len))
    out = ffi.new("uint8_t[]", max(1, out_len))
    highest = max((idx[k] for k in range(n)), default=-1)
    st_ = lib.df_gather_pages(src, src_len, ps, idx, idx_cap, n, out, out_len)
    _expect(st_, out_len >= n * ps and (highest + 1) * ps <= src_len)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 24), st.data())
def test_compress_pages_lengths(npages, data):
    ps = 4096
    src_len = data.draw(_around(npages * ps))
    sizes_cap = data.draw(_around(npages))
    wrk_len = data.draw(st.sampled_from([lib.DF_LZO1X_1_WORKMEM_SIZE - 1,
                                         lib.DF_LZO1X_1_WORKMEM_SIZE]))
    src = ffi.new("uint8_t[]", max(1, src_len))
    dst = ffi.new("uint8_t[]", npages * ps)
    wrk = ffi.new("uint8_t[]", wrk_len)
    sizes = ffi.new("uint32_t[]", max(1, sizes_cap))
    n = ffi.new("size_t *")
    st_ = lib.df_lzo1x_1_compress_pages(src, src_len, ps, ffi.NULL, 0, npages, dst, npages * ps,
                                        wrk, wrk_len, sizes, sizes_cap, n)
    _expect(st_, src_len >= npages * ps and sizes_cap >= npages
            and wrk_len >= lib.DF_LZO1X_1_WORKMEM_SIZE)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 40), st.data())
def test_pack_descriptors_lengths(npages, data):
    mask = bytes([0xFF] * _nbytes(npages))
    mask_len = data.draw(_around(len(mask)))
    nsizes = data.draw(_around(npages))
    out_len = data.draw(_around(24 * npages))
    m = ffi.new("uint8_t[]", max(1, mask_len))
    ffi.memmove(m, mask, min(len(mask), mask_len))
    sizes = ffi.new("uint32_t[]", [4096] * max(1, nsizes))
    out = ffi.new("uint8_t[]", max(1, out_len))
    st_ = lib.df_pack_descriptors(m, mask_len, ffi.NULL, 0, npages, sizes, nsizes, ffi.NULL, 0,
                                  4096, 1, 8192, 4096, out, out_len, ffi.new("size_t *"),
                                  ffi.new("int64_t *"))
    # every page of the mask is set (pfns past npages in the last byte are
    # never looked at), so one size per page is needed
    _expect(st_, mask_len >= _nbytes(npages) and out_len >= 24 * npages and nsizes >= npages)


def test_invalid_status_is_a_project_error():
    with pytest.raises(CoreInputError) as e:
        check(lib.DF_ERR_INVALID, "classifying struct pages")
    assert isinstance(e.value, CorruptDumpError)
