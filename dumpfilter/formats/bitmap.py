"""LSB-first pfn bitmaps (the layout of kdump-compressed bitmaps), built and
counted by the C core in whole batches."""
from __future__ import annotations

from typing import Sequence, Tuple

import threading

from dumpfilter._core import check, ffi, lib

_tls = threading.local()


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
        check(lib.df_bitmap_set_range(buf, len(buf), max(lo, start_pfn) - start_pfn,
                                      min(hi, end_pfn) - start_pfn), "setting bitmap bits")


def count_bits(bitmap, nbits: int) -> int:
    """Number of set bits among the first ``nbits``."""
    out = getattr(_tls, "count", None)
    if out is None:
        out = _tls.count = ffi.new("uint64_t *")
    buf = ffi.from_buffer(bitmap)
    check(lib.df_bitmap_count(buf, len(buf), nbits, out), "counting bitmap bits")
    return int(out[0])


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


def bit_slice(bitmap, start: int, n: int) -> bytes:
    """Bits ``[start, start+n)`` of an LSB-first bitmap as a new bitmap
    (touches only those bytes)."""
    lo, hi = start // 8, (start + n + 7) // 8 + 1
    v = int.from_bytes(bitmap[lo:hi], "little") >> (start % 8)
    return (v & ((1 << n) - 1)).to_bytes((n + 7) // 8, "little")


def clear_bits(bitmap: bytearray, start: int, n: int, bits: bytes) -> None:
    """Clear in ``bitmap`` the bits set in ``bits`` (a bitmap of pfns
    ``[start, start+n)`` relative to ``bitmap``'s first bit)."""
    lo, hi = start // 8, (start + n + 7) // 8
    z = (int.from_bytes(bits, "little") & ((1 << n) - 1)) << (start % 8)
    v = int.from_bytes(bitmap[lo:hi], "little") & ~z
    bitmap[lo:hi] = v.to_bytes(hi - lo, "little")


def clip_bits(bitmap: bytes, start: int, npages: int, lo: int, hi: int) -> bytes:
    """``bitmap`` (pfns ``[start, start+npages)``) with the bits outside
    ``[lo, hi)`` cleared."""
    a, b = max(lo, start) - start, min(hi, start + npages) - start
    if a <= 0 and b >= npages:
        return bitmap
    if a >= b:
        return bytes(len(bitmap))
    keep = ((1 << (b - a)) - 1) << a
    return (int.from_bytes(bitmap, "little") & keep).to_bytes(len(bitmap), "little")


def set_runs(bitmap: bytes, base: int):
    """``[start, end)`` runs of set bits of an LSB-first bitmap, offset by
    ``base``."""
    v = int.from_bytes(bitmap, "little")
    pos = 0
    while v:
        skip = (v & -v).bit_length() - 1
        v >>= skip
        pos += skip
        ones = (~v & (v + 1)).bit_length() - 1
        yield base + pos, base + pos + ones
        v >>= ones
        pos += ones
