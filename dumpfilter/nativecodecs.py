"""Page compression from C through the system's own zlib and zstd.

The C core never opens libraries; this module finds ``compress2`` (zlib,
the library CPython's zlib module itself uses) and ``ZSTD_compressCCtx``
(libzstd) with cffi's ABI mode and hands their addresses to
``df_compress_pages_fn``, so a whole window of pages is compressed in one
C call with the GIL released — no Python per page. When a library cannot be
found the encoder falls back to the Python codec modules (same format).
"""
from __future__ import annotations

import ctypes.util
import threading
from typing import Optional

from cffi import FFI

from dumpfilter._core import ffi, lib

_abi = FFI()
_abi.cdef("""
    int compress2(unsigned char *dest, unsigned long *destLen,
                  const unsigned char *source, unsigned long sourceLen, int level);
    void *ZSTD_createCCtx(void);
    size_t ZSTD_freeCCtx(void *cctx);
    size_t ZSTD_compressCCtx(void *cctx, void *dst, size_t dstCapacity,
                             const void *src, size_t srcSize, int compressionLevel);
    unsigned ZSTD_isError(size_t code);
    unsigned ZSTD_versionNumber(void);
""")

_libs: dict = {}
_lock = threading.Lock()


def _load(name: str, sonames):
    with _lock:
        if name not in _libs:
            handle = None
            for soname in [ctypes.util.find_library(name), *sonames]:
                if not soname:
                    continue
                try:
                    handle = _abi.dlopen(soname)
                    break
                except OSError:
                    continue
            _libs[name] = handle
        return _libs[name]


def _address(fn) -> int:
    return int(_abi.cast("uintptr_t", fn))


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
    return NativeCompressor(lib.DF_PC_ZLIB, level, _address(z.compress2))


def zstd_compressor(level: int = 1) -> Optional[NativeCompressor]:
    z = _load("zstd", ["libzstd.so.1"])
    if z is None:
        return None
    cctx = z.ZSTD_createCCtx()
    if cctx == _abi.NULL:
        return None
    c = NativeCompressor(lib.DF_PC_ZSTD, level, _address(z.ZSTD_compressCCtx),
                         _address(z.ZSTD_isError), _address(cctx))
    c._cctx = cctx  # freed with the process; one per worker thread
    return c
