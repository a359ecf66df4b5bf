"""Page encoders: one per codec, each compressing a batch of selected pages
of a window in one call.

Which encoder a codec uses is decided once per run, by what the machine
has, and said by ``PageCompressor.description`` (``--show-stats`` and
``-D`` print it), because the bytes of a compressed page depend on the
library that made them:

========  ===========================================  =====================
codec     encoder                                      fallback
========  ===========================================  =====================
lzo       our LZO1X-1 (C core)                         -
zlib      libdeflate level 2 (the ``deflate`` wheel)   zlib, when the wheel is
          from C                                       missing
zlib      ``--zlib-encoder zlib``: the system zlib's   Python's zlib module
          ``compress2`` from C (makedumpfile's bytes)
zlib      ``--zlib-encoder isal``: ISA-L (``isal``)    -
zstd      the system libzstd from C, level 2           the ``zstandard`` wheel
snappy    ``cramjam``'s snappy                         -
========  ===========================================  =====================

Every encoder is thread-safe: per-thread state (LZO work memory, zstd
contexts) lives in thread-local storage. A page whose compressed form is
not smaller than the page is stored raw (its size is the page size).
"""
from __future__ import annotations

import threading
import zlib
from typing import Callable, Optional

from dumpfilter._core import check, ffi, lib, n_items
from dumpfilter.errors import UsageError

#: zlib-format encoders for -c. "libdeflate" (the default; level 2, from
#: the ``deflate`` wheel) is deterministic — its bytes depend only on the
#: input and the wheel's libdeflate — and measured on real captures'
#: kept pages 0.64-0.74x the time of zlib level 1 for 0.97x the bytes
#: (bench/bench_codecs.py; libdeflate level 1 is faster but bigger than
#: zlib-1 on two of three captures). "zlib" is makedumpfile's own encoder
#: (level 1): byte-identical output. "isal" (Intel ISA-L, the ``isal``
#: wheel) is faster still and read by zlib's uncompress(), but its bytes
#: vary from run to run (its match finder reads stale memory).
ZLIB_ENCODERS = ("libdeflate", "zlib", "isal")

#: Levels: -c zlib as makedumpfile (1); libdeflate 2 (above); -z zstd 2 —
#: as fast as level 1 on real captures' kept pages and 0.4-1 % smaller
#: (makedumpfile uses 1; every reader decodes any level).
LEVEL = 1
LIBDEFLATE_LEVEL = 2
ZSTD_LEVEL = 2


class PageCompressor:
    """Compresses ``k`` pages of a window: page ``j`` is
    ``view[idx[j] * ps:(idx[j] + 1) * ps]``; returns the blocks back to
    back and fills ``sizes[j]``."""

    description = "?"

    def __init__(self, page_size: int = 4096):
        self.ps = page_size
        self._local = threading.local()

    def compress(self, view, idx, k: int, sizes) -> bytearray:  # pragma: no cover
        raise NotImplementedError

    def compress_one(self, page) -> bytes:
        """One page (tests and tools)."""
        view = memoryview(page)
        self.ps = len(view)
        idx = ffi.new("uint32_t[]", [0])
        sizes = ffi.new("uint32_t[]", 1)
        return bytes(self.compress(view, idx, 1, sizes))


class _CBatch(PageCompressor):
    """A whole window in one C call (GIL released)."""

    def _call(self, src, out, cap, idx, k, sizes, n) -> int:  # pragma: no cover
        raise NotImplementedError

    def compress(self, view, idx, k: int, sizes) -> bytes:
        # Into this thread's scratch buffer, reused: a fresh 1 MiB buffer
        # per batch costs an mmap and its page faults.
        loc = self._local
        cap = max(1, k) * self.ps
        out = getattr(loc, "out", None)
        if out is None or len(out) < cap:
            out = loc.out = bytearray(cap)
        n = ffi.new("size_t *")
        check(self._call(ffi.from_buffer(view), ffi.from_buffer(out, require_writable=True),
                         cap, idx, k, sizes, n), f"{self.description}: compressing pages")
        return bytes(memoryview(out)[:n[0]])


class LzoPages(_CBatch):
    description = "lzo: LZO1X-1 (dumpfilter's C core)"

    def _call(self, src, out, cap, idx, k, sizes, n):
        loc = self._local
        wrkmem = getattr(loc, "wrkmem", None)
        if wrkmem is None:
            wrkmem = loc.wrkmem = ffi.new("uint8_t[]", lib.DF_LZO1X_1_WORKMEM_SIZE)
        return lib.df_lzo1x_1_compress_pages(src, len(src), self.ps, idx, n_items(idx), k, out,
                                             cap, wrkmem, len(wrkmem), sizes, len(sizes), n)


class NativePages(_CBatch):
    """zlib or zstd through the system library, called from C."""

    def __init__(self, make: Callable, description: str, page_size: int = 4096):
        super().__init__(page_size)
        self._make = make
        self.description = description

    def _call(self, src, out, cap, idx, k, sizes, n):
        loc = self._local
        native = getattr(loc, "native", None)
        if native is None:
            native = loc.native = self._make()
        return lib.df_compress_pages_fn(native.desc, src, len(src), self.ps, idx, n_items(idx), k,
                                        out, cap, sizes, len(sizes), n)


class PythonPages(PageCompressor):
    """One Python call per page: the fallbacks, snappy and isal."""

    def __init__(self, make: Callable[[], Callable[[bytes], bytes]], description: str,
                 page_size: int = 4096):
        super().__init__(page_size)
        self._make = make
        self.description = description

    def compress(self, view, idx, k: int, sizes) -> bytearray:
        loc = self._local
        fn = getattr(loc, "fn", None)
        if fn is None:
            fn = loc.fn = self._make()
        ps = self.ps
        out = bytearray()
        for j in range(k):
            i = idx[j]
            page = view[i * ps:(i + 1) * ps]
            data = fn(page)
            if len(data) >= ps:
                data = page
            sizes[j] = len(data)
            out += data
        return out


def _isal():
    try:
        from isal import isal_zlib
    except ImportError:
        raise UsageError("--zlib-encoder isal needs the 'isal' package (pip install isal)") from None
    return lambda page: isal_zlib.compress(page, LEVEL)


def _zstandard():
    try:
        import zstandard
    except ImportError:
        raise UsageError("-z needs libzstd.so.1 or the 'zstandard' package") from None
    # As ZSTD_compressCCtx(): no checksum, the content size in the frame
    # header.
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress


def _snappy():
    try:
        import cramjam
    except ImportError:
        raise UsageError("-p needs the 'cramjam' package (pip install cramjam)") from None
    return lambda page: bytes(cramjam.snappy.compress_raw(page))


def page_compressor(codec: str, zlib_encoder: Optional[str] = None,
                    page_size: int = 4096) -> PageCompressor:
    """The encoder ``codec`` uses on this machine (see the table above)."""
    if codec == "lzo":
        return LzoPages(page_size)
    from dumpfilter.codecs import native
    if codec == "zlib":
        if zlib_encoder == "isal":
            _isal()  # fail early, with the message
            return PythonPages(_isal, "zlib: ISA-L level 1 (isal; bytes vary by run)", page_size)
        if zlib_encoder not in (None, "libdeflate", "zlib"):
            raise UsageError(f"unknown zlib encoder {zlib_encoder!r} "
                             f"(choose from {', '.join(ZLIB_ENCODERS)})")
        if zlib_encoder in (None, "libdeflate"):
            version = native.libdeflate_version()
            if version is not None:
                return NativePages(lambda: native.libdeflate_compressor(LIBDEFLATE_LEVEL),
                                   f"zlib: libdeflate level {LIBDEFLATE_LEVEL} ({version} wheel)",
                                   page_size)
            if zlib_encoder == "libdeflate":
                raise UsageError("--zlib-encoder libdeflate needs the 'deflate' package "
                                 "(pip install deflate)")
        version = native.zlib_version()
        if version is not None:
            return NativePages(lambda: native.zlib_compressor(LEVEL),
                               f"zlib: zlib {version} level {LEVEL} (libz.so.1)", page_size)
        return PythonPages(lambda: (lambda page: zlib.compress(page, LEVEL)),
                           f"zlib: zlib {zlib.ZLIB_RUNTIME_VERSION} level {LEVEL} "
                           "(Python's zlib module; libz.so.1 not found)", page_size)
    if codec == "zstd":
        version = native.zstd_version()
        if version is not None:
            return NativePages(lambda: native.zstd_compressor(ZSTD_LEVEL),
                               f"zstd: zstd {version} level {ZSTD_LEVEL} (libzstd.so.1)", page_size)
        _zstandard()
        import zstandard

        version = ".".join(map(str, zstandard.ZSTD_VERSION))
        return PythonPages(_zstandard, f"zstd: zstd {version} level {ZSTD_LEVEL} "
                           "(zstandard wheel; libzstd.so.1 not found)", page_size)
    if codec == "snappy":
        _snappy()
        return PythonPages(_snappy, "snappy: cramjam", page_size)
    raise UsageError(f"unknown codec {codec!r}")

