"""Page encoding for pass 2: windows of page contents in, page descriptors
and data blocks out, in pfn order.

Per window the C core finds zero pages, picks the pages to store and
gathers them into one buffer; compression runs on whole batches (LZO in C,
the other codecs through their libraries, all with the GIL released), on a
thread pool when ``threads > 1``. Results are consumed strictly in window
order, so the output is byte-identical whatever the thread count.
"""
from __future__ import annotations

import os
import threading
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Deque, Optional, Tuple

from dumpfilter._core import check, ffi, lib
from dumpfilter.compress import Codec
from dumpfilter.errors import UsageError

#: zlib-format encoders for -c: "zlib" is what makedumpfile uses (byte-
#: identical output); "isal" (Intel ISA-L, the ``isal`` wheel) is several
#: times faster and its output is still read by zlib's uncompress().
ZLIB_ENCODERS = ("zlib", "isal")


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _zlib_encoder(name: str) -> Callable[[bytes], bytes]:
    if name == "zlib":
        return lambda page: zlib.compress(page, 1)
    if name == "isal":
        try:
            from isal import isal_zlib
        except ImportError:
            raise UsageError("--zlib-encoder isal needs the 'isal' package (pip install isal)") from None
        return lambda page: isal_zlib.compress(page, 1)
    raise UsageError(f"unknown zlib encoder {name!r} (choose from {', '.join(ZLIB_ENCODERS)})")


@dataclass
class EncodedWindow:
    mask: bytes  # dumpable pages of the window
    zero: Optional[bytes]  # zero pages (None: no zero test)
    npages: int
    sizes: object  # cffi uint32_t[] of stored sizes, one per selected page
    data: bytes  # the stored blocks, concatenated


class PageEncoder:
    """Compress selected pages of windows, possibly in parallel."""

    def __init__(self, codec: Optional[Codec], page_size: int, threads: int = 1,
                 zlib_encoder: str = "zlib"):
        self.codec = codec
        self.ps = page_size
        self.threads = max(1, threads)
        self._local = threading.local()
        self._compress_one = None
        if codec is not None and codec.name == "zlib":
            self._compress_one = _zlib_encoder(zlib_encoder)
        elif codec is not None and codec.name in ("snappy", "zstd"):
            self._compress_one = codec.compress
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        self._pending: Deque[Tuple[bytes, Optional[bytes], int, Future]] = deque()

    # -- compression of one gathered batch (runs on a worker) ------------
    def _lzo_batch(self, buf: bytearray, k: int):
        loc = self._local
        if getattr(loc, "wrkmem", None) is None:
            loc.wrkmem = ffi.new("uint8_t[]", lib.DF_LZO1X_1_WORKMEM_SIZE)
        out = bytearray(k * self.ps)
        sizes = ffi.new("uint32_t[]", max(1, k))
        n = ffi.new("size_t *")
        check(lib.df_lzo1x_1_compress_pages(ffi.from_buffer(buf), k, self.ps,
                                            ffi.from_buffer(out, require_writable=True),
                                            len(out), loc.wrkmem, sizes, n),
              "LZO-compressing pages")
        del out[n[0]:]
        return sizes, bytes(out)

    def _library_batch(self, buf: bytearray, k: int):
        ps = self.ps
        mv = memoryview(buf)
        sizes = ffi.new("uint32_t[]", max(1, k))
        blocks = []
        compress = self._compress_one
        if self.codec.name == "zstd":
            # ZstdCompressor objects are not thread-safe: one per thread.
            loc = self._local
            if getattr(loc, "zstd", None) is None:
                import zstandard

                loc.zstd = zstandard.ZstdCompressor(level=1)
            compress = loc.zstd.compress
        for i in range(k):
            page = mv[i * ps:(i + 1) * ps]
            data = compress(page)
            if len(data) >= ps:
                data = page
            sizes[i] = len(data)
            blocks.append(data)
        return sizes, b"".join(blocks)

    def _raw_batch(self, buf: bytearray, k: int):
        sizes = ffi.new("uint32_t[]", max(1, k))
        for i in range(k):
            sizes[i] = self.ps
        return sizes, bytes(buf)

    def _encode(self, buf: bytearray, k: int):
        if self.codec is None:
            return self._raw_batch(buf, k)
        if self.codec.name == "lzo":
            return self._lzo_batch(buf, k)
        return self._library_batch(buf, k)

    # -- window pipeline ---------------------------------------------------
    def submit(self, view: memoryview, npages: int, mask: bytes, zero: Optional[bytes]) -> None:
        """Queue one window. ``view`` is only read during this call."""
        idx = ffi.new("uint32_t[]", max(1, npages))
        count = ffi.new("size_t *")
        check(lib.df_select_pages(mask, zero if zero is not None else ffi.NULL, npages, idx, count),
              "selecting pages")
        k = count[0]
        buf = bytearray(k * self.ps)
        if k:
            check(lib.df_gather_pages(ffi.from_buffer(view), self.ps, idx, k,
                                      ffi.from_buffer(buf, require_writable=True)),
                  "gathering pages")
        if self._pool is None:
            fut: Future = Future()
            fut.set_result(self._encode(buf, k))
        else:
            fut = self._pool.submit(self._encode, buf, k)
        self._pending.append((mask, zero, npages, fut))

    def ready(self, drain: bool = False):
        """Finished windows in submission order. Without ``drain``, keeps up
        to ``threads`` windows in flight (bounded memory)."""
        while self._pending and (drain or len(self._pending) > self.threads):
            mask, zero, npages, fut = self._pending.popleft()
            sizes, data = fut.result()
            yield EncodedWindow(mask, zero, npages, sizes, data)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def pack_window(win: EncodedWindow, page_size: int, codec_flag: int, data_offset: int,
                zero_offset: int) -> Tuple[bytes, int]:
    """Descriptors for one encoded window, its data starting at
    ``data_offset``; returns (packed descriptors, descriptor count)."""
    out = bytearray(24 * win.npages)
    count = ffi.new("size_t *")
    end = ffi.new("int64_t *")
    check(lib.df_pack_descriptors(win.mask, win.zero if win.zero is not None else ffi.NULL,
                                  win.npages, win.sizes, page_size, codec_flag, data_offset,
                                  zero_offset, ffi.from_buffer(out, require_writable=True),
                                  count, end),
          "packing page descriptors")
    if end[0] - data_offset != len(win.data):
        raise AssertionError("page descriptors disagree with the data they describe")
    return bytes(out[: 24 * count[0]]), count[0]
