"""LSB-first pfn bitmaps (the layout of kdump-compressed bitmaps), built and
counted by the C core in whole batches."""
from __future__ import annotations

from typing import Sequence, Tuple

from dumpfilter._core import ffi, lib


def ranges_to_bitmap(
    ranges: Sequence[Tuple[int, int]], start_pfn: int, npages: int, out: bytearray
) -> None:
    """Write into ``out`` the bits of pfns ``[start_pfn, start_pfn+npages)``
    that fall in one of the sorted ``[start, end)`` pfn ranges."""
    nbytes = (npages + 7) // 8
    out[:nbytes] = bytes(nbytes)
    end_pfn = start_pfn + npages
    buf = ffi.from_buffer(out, require_writable=True)
    for lo, hi in ranges:
        if hi <= start_pfn:
            continue
        if lo >= end_pfn:
            break
        lib.df_bitmap_set_range(buf, max(lo, start_pfn) - start_pfn, min(hi, end_pfn) - start_pfn)


def count_bits(bitmap, nbits: int) -> int:
    """Number of set bits among the first ``nbits``."""
    return int(lib.df_bitmap_count(ffi.from_buffer(bitmap), nbits))


def merge_ranges(ranges) -> list:
    """Sort and merge overlapping or touching ``[start, end)`` ranges."""
    out: list = []
    for lo, hi in sorted(r for r in ranges if r[1] > r[0]):
        if out and lo <= out[-1][1]:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out
