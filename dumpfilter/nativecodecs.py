"""Page compression from C through the system's own zlib and zstd.

The C core never opens libraries; this module finds ``compress2`` (zlib,
the library CPython's zlib module itself uses) and ``ZSTD_compressCCtx``
(libzstd) with ctypes and hands their addresses to
``df_compress_pages_fn``, so a whole window of pages is compressed in one
C call with the GIL released — no Python per page. When a library cannot be
found the encoder falls back to the Python codec modules (same format).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Optional

from dumpfilter._core import ffi, lib

# ctypes, not cffi's ABI mode: only symbol addresses and two small calls
# are needed, and parsing a cdef at start-up would cost more than the
# whole filter run on a small dump.
_libs: dict = {}
_lock = threading.Lock()


def _load(name: str, sonames):
    with _lock:
        if name not in _libs:
            handle = None
            # The usual soname first: find_library() runs ldconfig or a
            # compiler, which costs tens of milliseconds.
            for soname in sonames:
                try:
                    handle = ctypes.CDLL(soname)
                    break
                except OSError:
                    continue
            if handle is None:
                found = ctypes.util.find_library(name)
                if found:
                    try:
                        handle = ctypes.CDLL(found)
                    except OSError:
                        pass
            _libs[name] = handle
        return _libs[name]


def _address(handle, symbol: str) -> int:
    return ctypes.cast(getattr(handle, symbol), ctypes.c_void_p).value


class NativeCompressor:
    """One per thread (zstd contexts are not shared)."""

    def __init__(self, kind: int, level: int, fn_compress: int, fn_is_error: int = 0,
                 ctx: int = 0):
        self.desc = ffi.new("struct df_page_compressor *")
        self.desc.kind = kind
        self.desc.level = level
        self.desc.fn_compress = ffi.cast("void *", fn_compress)
        self.desc.fn_is_error = ffi.cast("void *", fn_is_error)
        self.desc.ctx = ffi.cast("void *", ctx)


def zlib_compressor(level: int = 1) -> Optional[NativeCompressor]:
    z = _load("z", ["libz.so.1"])
    if z is None:
        return None
    return NativeCompressor(lib.DF_PC_ZLIB, level, _address(z, "compress2"))


def zstd_compressor(level: int = 1) -> Optional[NativeCompressor]:
    z = _load("zstd", ["libzstd.so.1"])
    if z is None:
        return None
    create = z.ZSTD_createCCtx
    create.restype = ctypes.c_void_p
    create.argtypes = []
    cctx = create()
    if not cctx:
        return None
    # One context per worker thread, kept for the life of the process.
    return NativeCompressor(lib.DF_PC_ZSTD, level, _address(z, "ZSTD_compressCCtx"),
                            _address(z, "ZSTD_isError"), cctx)
