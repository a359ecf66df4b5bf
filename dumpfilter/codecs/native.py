"""Compression libraries, handed to the C core.

The C core never opens libraries; this module finds ``compress2`` (zlib:
the library CPython's own zlib module uses), ``ZSTD_compressCCtx`` (libzstd)
and ``libdeflate_zlib_compress`` (libdeflate, from the ``deflate`` wheel)
with ctypes and describes them in a ``struct df_page_compressor``
for ``df_compress_pages_fn``, so a whole window of pages is compressed in
one C call with the GIL released.

ctypes, not cffi's ABI mode: only symbol addresses and two small calls are
needed, and parsing a cdef at start-up would cost more than the whole filter
run on a small dump.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Optional

from dumpfilter._core import ffi, lib

_libs: dict = {}
_lock = threading.Lock()

#: sonames tried, in order (no ``find_library``: it runs ldconfig or a
#: compiler, tens of milliseconds).
SONAMES = {"z": ("libz.so.1",), "zstd": ("libzstd.so.1",)}


def _deflate_wheel() -> tuple:
    """libdeflate as the ``deflate`` wheel ships it: its extension module
    exports the whole libdeflate API, so its bytes are the wheel's, not
    whatever the machine has."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("deflate._deflate")
    except ImportError:
        return ()
    return (spec.origin,) if spec is not None and spec.origin else ()


def load(name: str):
    """The ctypes handle of library ``name`` ("z", "zstd", "deflate"), or
    None."""
    with _lock:
        if name not in _libs:
            handle = None
            for soname in (_deflate_wheel() if name == "deflate" else SONAMES[name]):
                try:
                    handle = ctypes.CDLL(soname)
                    break
                except OSError:
                    continue
            _libs[name] = handle
        return _libs[name]


def _address(handle, symbol: str) -> int:
    return ctypes.cast(handle[symbol], ctypes.c_void_p).value


def zlib_version() -> Optional[str]:
    z = load("z")
    if z is None:
        return None
    fn = z.zlibVersion
    fn.restype = ctypes.c_char_p
    return fn().decode()


def zstd_version() -> Optional[str]:
    z = load("zstd")
    if z is None:
        return None
    fn = z.ZSTD_versionString
    fn.restype = ctypes.c_char_p
    return fn().decode()


class NativeCompressor:
    """A ``struct df_page_compressor``. zstd contexts are not shared:
    one per thread."""

    def __init__(self, kind: int, level: int, fn_compress: int, fn_is_error: int = 0,
                 ctx: int = 0):
        self.desc = ffi.new("struct df_page_compressor *")
        self.desc.kind = kind
        self.desc.level = level
        self.desc.fn_compress = ffi.cast("void *", fn_compress)
        self.desc.fn_is_error = ffi.cast("void *", fn_is_error)
        self.desc.ctx = ffi.cast("void *", ctx)


def zlib_compressor(level: int = 1) -> Optional[NativeCompressor]:
    z = load("z")
    if z is None:
        return None
    return NativeCompressor(lib.DF_PC_ZLIB, level, _address(z, "compress2"))


def zstd_compressor(level: int = 1) -> Optional[NativeCompressor]:
    z = load("zstd")
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


def libdeflate_version() -> Optional[str]:
    """The ``deflate`` wheel's version (it pins its libdeflate), or None."""
    if load("deflate") is None:
        return None
    import deflate

    return f"deflate {deflate.__version__}"


def libdeflate_compressor(level: int) -> Optional[NativeCompressor]:
    d = load("deflate")
    if d is None:
        return None
    alloc = d.libdeflate_alloc_compressor
    alloc.restype = ctypes.c_void_p
    alloc.argtypes = [ctypes.c_int]
    comp = alloc(level)
    if not comp:
        return None
    # One compressor per worker thread, kept for the life of the process.
    return NativeCompressor(lib.DF_PC_LIBDEFLATE, level, _address(d, "libdeflate_zlib_compress"),
                            0, comp)
