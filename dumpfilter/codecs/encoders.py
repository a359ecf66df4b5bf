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
zlib      the system zlib's ``compress2`` from C       Python's zlib module
          (makedumpfile's exact bytes)
zlib      ``--zlib-encoder isal``: ISA-L (``isal``)    -
zstd      the system libzstd from C, level 1           the ``zstandard`` wheel
snappy    ``cramjam``'s snappy                         -
========  ===========================================  =====================

Every encoder is thread-safe: per-thread state (LZO work memory, zstd
contexts) lives in thread-local storage. A page whose compressed form is
not smaller than the page is stored raw (its size is the page size).
"""
from __future__ import annotations

import threading
import zlib
from typing import Callable

from dumpfilter._core import check, ffi, lib
from dumpfilter.errors import UsageError

#: zlib-format encoders for -c: "zlib" is what makedumpfile uses (byte-
#: identical, reproducible output); "isal" (Intel ISA-L, the ``isal`` wheel)
#: is several times faster and its output is still read by zlib's
#: uncompress(), but its bytes vary from run to run (ISA-L's match finder
#: reads stale hash-table memory), so it is opt-in.
ZLIB_ENCODERS = ("zlib", "isal")

#: Compression level of -c and -z (makedumpfile's).
LEVEL = 1


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

    def compress(self, view, idx, k: int, sizes) -> bytearray:
        out = bytearray(max(1, k) * self.ps)
        n = ffi.new("size_t *")
        check(self._call(ffi.from_buffer(view), ffi.from_buffer(out, require_writable=True),
                         len(out), idx, k, sizes, n), f"{self.description}: compressing pages")
        del out[n[0]:]
        return out


class LzoPages(_CBatch):
    description = "lzo: LZO1X-1 (dumpfilter's C core)"

    def _call(self, src, out, cap, idx, k, sizes, n):
        loc = self._local
        wrkmem = getattr(loc, "wrkmem", None)
        if wrkmem is None:
            wrkmem = loc.wrkmem = ffi.new("uint8_t[]", lib.DF_LZO1X_1_WORKMEM_SIZE)
        return lib.df_lzo1x_1_compress_pages(src, self.ps, idx, k, out, cap, wrkmem, sizes, n)


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
        return lib.df_compress_pages_fn(native.desc, src, self.ps, idx, k, out, cap, sizes, n)


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
    # makedumpfile: ZSTD_compressCCtx(..., level 1); no checksum, the
    # content size in the frame header.
    return zstandard.ZstdCompressor(level=LEVEL).compress


def _snappy():
    try:
        import cramjam
    except ImportError:
        raise UsageError("-p needs the 'cramjam' package (pip install cramjam)") from None
    return lambda page: bytes(cramjam.snappy.compress_raw(page))


def page_compressor(codec: str, zlib_encoder: str = "zlib",
                    page_size: int = 4096) -> PageCompressor:
    """The encoder ``codec`` uses on this machine (see the table above)."""
    from dumpfilter.codecs import native

    if codec == "lzo":
        return LzoPages(page_size)
    if codec == "zlib":
        if zlib_encoder == "isal":
            _isal()  # fail early, with the message
            return PythonPages(_isal, "zlib: ISA-L level 1 (isal; bytes vary by run)", page_size)
        if zlib_encoder != "zlib":
            raise UsageError(f"unknown zlib encoder {zlib_encoder!r} "
                             f"(choose from {', '.join(ZLIB_ENCODERS)})")
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
            return NativePages(lambda: native.zstd_compressor(LEVEL),
                               f"zstd: zstd {version} level {LEVEL} (libzstd.so.1)", page_size)
        _zstandard()
        import zstandard

        version = ".".join(map(str, zstandard.ZSTD_VERSION))
        return PythonPages(_zstandard, f"zstd: zstd {version} level {LEVEL} "
                           "(zstandard wheel; libzstd.so.1 not found)", page_size)
    if codec == "snappy":
        _snappy()
        return PythonPages(_snappy, "snappy: cramjam", page_size)
    raise UsageError(f"unknown codec {codec!r}")

