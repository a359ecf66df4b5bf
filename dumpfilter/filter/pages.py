"""Decisions on page contents, in C over whole windows: which pages are
all zeros, and which pages of a window get a data block of their own."""
from __future__ import annotations

from typing import Optional, Tuple

from dumpfilter._core import check, ffi, lib


def find_zero_pages(view, npages: int, page_size: int, mask: Optional[bytes]) -> Tuple[bytes, int]:
    """(bitmap of the all-zero pages among those ``mask`` selects, their
    count); ``view`` holds ``npages`` pages."""
    zero = bytearray((npages + 7) // 8)
    count = ffi.new("uint64_t *")
    src = ffi.from_buffer(view)
    check(lib.df_find_zero_pages(src, len(src), npages, page_size,
                                 mask if mask is not None else ffi.NULL,
                                 len(mask) if mask is not None else 0,
                                 ffi.from_buffer(zero, require_writable=True), len(zero), count),
          "finding zero pages")
    return bytes(zero), int(count[0])


def select_pages(mask: bytes, zero: Optional[bytes], npages: int):
    """(cffi ``uint32_t[]`` of the indices of the pages to store — set in
    ``mask``, clear in ``zero`` — and how many there are)."""
    idx = ffi.new("uint32_t[]", max(1, npages))
    count = ffi.new("size_t *")
    check(lib.df_select_pages(mask, len(mask), zero if zero is not None else ffi.NULL,
                              len(zero) if zero is not None else 0, npages, idx, len(idx), count),
          "selecting pages")
    return idx, int(count[0])
