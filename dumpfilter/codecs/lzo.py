"""LZO1X-1 raw blocks (makedumpfile ``-l``), backed by the C core's own
implementation (csrc/lzo1x.c); no liblzo2 is needed.

``compress`` writes what liblzo2's ``lzo1x_1_compress`` would accept back
with ``lzo1x_decompress_safe``; ``decompress`` is bounds-checked for any
input and raises :class:`CorruptDumpError` for a malformed block or
:class:`CodecError` when the result would exceed ``max_out`` bytes.
"""
from __future__ import annotations

import threading
from typing import List

from dumpfilter._core import check, ffi, lib

__all__ = ["compress", "decompress", "compress_pages", "worst_size"]

_tls = threading.local()


def worst_size(n: int) -> int:
    """Largest compressed size of an ``n``-byte input."""
    return lib.df_lzo1x_worst_size(n)


class _Scratch:
    """One compressor's reusable workmem and output buffer."""

    __slots__ = ("wrkmem", "out", "cap", "out_len")

    def __init__(self, cap: int):
        self.wrkmem = ffi.new("uint8_t[]", lib.DF_LZO1X_1_WORKMEM_SIZE)
        self.out = ffi.new("uint8_t[]", cap)
        self.cap = cap
        self.out_len = ffi.new("size_t *")

    def compress(self, src, n: int) -> bytes:
        check(
            lib.df_lzo1x_1_compress(src, n, self.out, self.cap, self.wrkmem, len(self.wrkmem),
                                    self.out_len),
            "LZO1X-1 compression",
        )
        return ffi.unpack(ffi.cast("char *", self.out), self.out_len[0])


def _scratch(n: int) -> _Scratch:
    need = worst_size(n)
    s = getattr(_tls, "scratch", None)
    if s is None or s.cap < need:
        s = _Scratch(max(need, worst_size(65536)))
        _tls.scratch = s
    return s


def compress(data) -> bytes:
    """One raw LZO1X-1 block holding ``data`` (bytes-like)."""
    src = ffi.from_buffer(data)
    return _scratch(len(src)).compress(src, len(src))


def compress_pages(buf, page_size: int, npages: int) -> List[bytes]:
    """Compress ``npages`` consecutive ``page_size``-byte pages of ``buf``
    (bytes-like, read in place) each into its own block."""
    if page_size <= 0 or npages < 0:
        raise ValueError(f"bad page_size {page_size} or npages {npages}")
    src = ffi.from_buffer(buf)
    if len(src) < page_size * npages:
        raise ValueError(f"buffer of {len(src)} bytes holds fewer than {npages} pages")
    s = _scratch(page_size)
    return [s.compress(src + i * page_size, page_size) for i in range(npages)]


def decompress(data, max_out: int) -> bytes:
    """Decode one raw LZO1X block of at most ``max_out`` bytes."""
    if max_out < 0:
        raise ValueError(f"negative max_out {max_out}")
    src = ffi.from_buffer(data)
    out = ffi.new("uint8_t[]", max(max_out, 1))
    out_len = ffi.new("size_t *")
    check(
        lib.df_lzo1x_decompress_safe(src, len(src), out, max_out, out_len),
        "LZO1X decompression",
    )
    return ffi.unpack(ffi.cast("char *", out), out_len[0])
