"""Page encoding for pass 2: windows of page contents in, page descriptors
and data blocks out, in pfn order.

A window (up to a few hundred pages and the bitmap of which of them are
dumpable) is handled as one task: the C core finds zero pages and picks the
pages to store; compression runs over the whole batch (LZO in C, the other
codecs through their libraries, all with the GIL released). With
``threads > 1`` tasks run on a thread pool and — for sources that can map
windows from any thread — read their pages there too. Results are consumed
strictly in window order, so the output is byte-identical whatever the
thread count.

``--dedup``: the pages of a window are hashed (xxh3) on the worker; in order,
on the main thread, a page whose hash was seen is checked byte for byte
against the block stored for it (equal compressed blocks of a deterministic
codec mean equal pages) and then shares that block instead of storing its
own.
"""
from __future__ import annotations

import os
import threading
import zlib
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Deque, List, Optional, Tuple

from dumpfilter._core import check, ffi, lib
from dumpfilter.compress import Codec
from dumpfilter.errors import UsageError

#: zlib-format encoders for -c: "zlib" is what makedumpfile uses (byte-
#: identical, reproducible output); "isal" (Intel ISA-L, the ``isal`` wheel)
#: is several times faster and its output is still read by zlib's
#: uncompress(), but its bytes vary from run to run (ISA-L's match finder
#: reads stale hash-table memory), so it is opt-in.
ZLIB_ENCODERS = ("zlib", "isal")


#: Most hashes the dedup table remembers (oldest forgotten first): bounds
#: its memory (~10 MiB) whatever the dump size.
DEDUP_TABLE_ENTRIES = 1 << 16


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


def _hasher():
    try:
        import xxhash
    except ImportError:
        raise UsageError("--dedup needs the 'xxhash' package (pip install xxhash)") from None
    return xxhash.xxh3_64_intdigest


@dataclass
class EncodedWindow:
    mask: bytes  # dumpable pages of the window
    zero: Optional[bytes]  # zero pages (None: no zero test)
    zero_count: int
    npages: int
    sizes: object  # cffi uint32_t[] of stored sizes, one per selected page
    data: bytes  # the stored blocks, concatenated (bytes or bytearray)
    hashes: Optional[List[int]]  # per selected page, with dedup


#: What a task gets: a context manager that yields the window's pages.
WindowOpener = Callable[[], ContextManager[memoryview]]


class PageEncoder:
    """Encode windows, possibly in parallel; hand them back in order."""

    def __init__(self, codec: Optional[Codec], page_size: int, threads: int = 1,
                 zlib_encoder: str = "zlib", zero_test: bool = False, dedup: bool = False,
                 native: bool = True):
        self.codec = codec
        self.ps = page_size
        self.threads = max(1, threads)
        self.zero_test = zero_test
        self._hash = _hasher() if dedup else None
        self._local = threading.local()
        self._compress_one = None
        if codec is not None and codec.name == "zlib":
            self._compress_one = _zlib_encoder(zlib_encoder)
        elif codec is not None and codec.name == "snappy":
            self._compress_one = codec.compress
        # zlib (makedumpfile's encoder) and zstd go through the system
        # libraries from C when they can be found: no Python per page.
        self._native_kind = None
        if codec is not None and ((codec.name == "zlib" and zlib_encoder == "zlib")
                                  or codec.name == "zstd") and native:
            self._native_kind = codec.name
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        self._pending: Deque[Future] = deque()

    def _native(self):
        """This thread's C-side compressor for zlib/zstd, or None (isal,
        snappy, none; or the system library is missing)."""
        if self.codec is None or self._native_kind is None:
            return None
        loc = self._local
        if not hasattr(loc, "native"):
            from dumpfilter import nativecodecs

            loc.native = (nativecodecs.zlib_compressor(1) if self._native_kind == "zlib"
                          else nativecodecs.zstd_compressor(1))
        return loc.native

    def _c_batch(self, idx, k: int, sizes):
        """A call compressing the window's selected pages in C (LZO, or
        zlib/zstd through the system library), or None."""
        ps = self.ps
        if self.codec is not None and self.codec.name == "lzo":
            loc = self._local
            if getattr(loc, "wrkmem", None) is None:
                loc.wrkmem = ffi.new("uint8_t[]", lib.DF_LZO1X_1_WORKMEM_SIZE)
            wrkmem = loc.wrkmem
            return lambda src, out, cap, n: lib.df_lzo1x_1_compress_pages(
                src, ps, idx, k, out, cap, wrkmem, sizes, n)
        native = self._native()
        if native is not None:
            return lambda src, out, cap, n: lib.df_compress_pages_fn(
                native.desc, src, ps, idx, k, out, cap, sizes, n)
        return None

    # -- one window (runs on a worker) -------------------------------------
    def _compress(self, view: memoryview, idx, k: int):
        ps = self.ps
        sizes = ffi.new("uint32_t[]", max(1, k))
        batch = self._c_batch(idx, k, sizes)
        if batch is not None:
            # The whole window in one C call (GIL released): raw pages are
            # copied for pages that do not shrink.
            out = bytearray(k * ps)
            n = ffi.new("size_t *")
            check(batch(ffi.from_buffer(view), ffi.from_buffer(out, require_writable=True),
                        len(out), n), f"{self.codec.name}-compressing pages")
            del out[n[0]:]
            return sizes, out
        compress = self._compress_one
        if self.codec is not None and self.codec.name == "zstd":
            # ZstdCompressor objects are not thread-safe: one per thread.
            loc = self._local
            if getattr(loc, "zstd", None) is None:
                import zstandard

                loc.zstd = zstandard.ZstdCompressor(level=1)
            compress = loc.zstd.compress
        blocks = []
        for j in range(k):
            i = idx[j]
            page = view[i * ps:(i + 1) * ps]
            data = compress(page) if compress is not None else page
            if len(data) >= ps:
                data = page
            sizes[j] = len(data)
            blocks.append(data)
        return sizes, b"".join(blocks)

    def _task(self, open_window: WindowOpener, npages: int, mask: bytes) -> EncodedWindow:
        ps = self.ps
        with open_window() as view:
            zero = None
            zero_count = 0
            if self.zero_test:
                zero_buf = bytearray((npages + 7) // 8)
                count = ffi.new("uint64_t *")
                check(lib.df_find_zero_pages(ffi.from_buffer(view), npages, ps, mask,
                                             ffi.from_buffer(zero_buf, require_writable=True),
                                             count), "finding zero pages")
                zero, zero_count = bytes(zero_buf), int(count[0])
            idx = ffi.new("uint32_t[]", max(1, npages))
            count = ffi.new("size_t *")
            check(lib.df_select_pages(mask, zero if zero is not None else ffi.NULL, npages,
                                      idx, count), "selecting pages")
            k = count[0]
            sizes, data = self._compress(view, idx, k)
            hashes = None
            if self._hash is not None:
                h = self._hash
                hashes = [h(view[idx[j] * ps:(idx[j] + 1) * ps]) for j in range(k)]
        return EncodedWindow(mask, zero, zero_count, npages, sizes, data, hashes)

    # -- pipeline ----------------------------------------------------------
    def submit(self, open_window: WindowOpener, npages: int, mask: bytes) -> None:
        """Queue one window. ``open_window()`` must be safe to call from a
        worker thread when ``threads > 1``."""
        if self._pool is None:
            fut: Future = Future()
            fut.set_result(self._task(open_window, npages, mask))
        else:
            fut = self._pool.submit(self._task, open_window, npages, mask)
        self._pending.append(fut)

    def submit_view(self, view: memoryview, npages: int, mask: bytes) -> None:
        """Queue a window whose pages are in ``view`` (valid only during
        this call: copied when the work runs on another thread)."""
        if self._pool is not None:
            view = memoryview(bytes(view))
        self.submit(lambda: nullcontext(view), npages, mask)

    def ready(self, drain: bool = False):
        """Finished windows in submission order. Without ``drain``, keeps up
        to ``2 * threads`` windows in flight (bounded memory)."""
        limit = 0 if self._pool is None else 2 * self.threads
        while self._pending and (drain or len(self._pending) > limit):
            yield self._pending.popleft().result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class Deduplicator:
    """Remembers where recent blocks were stored, by page hash."""

    def __init__(self, read_back: Callable[[int, int], bytes], entries: int = DEDUP_TABLE_ENTRIES):
        self._table: "OrderedDict[int, Tuple[int, int]]" = OrderedDict()
        self._entries = entries
        self._read_back = read_back
        self.pages = 0
        self.bytes_saved = 0

    def apply(self, win: EncodedWindow, data_offset: int):
        """Decide, page by page in order, which blocks repeat an earlier
        one. Returns (ref_offsets, data to write) for ``pack_window``."""
        k = len(win.hashes)
        refs = ffi.new("int64_t[]", max(1, k))
        kept: List[bytes] = []
        pos = 0
        out_off = data_offset
        data = win.data
        for j in range(k):
            size = win.sizes[j]
            block = data[pos:pos + size]
            pos += size
            h = win.hashes[j]
            hit = self._table.get(h)
            if hit is not None and hit[1] == size and self._read_back(hit[0], size) == block:
                refs[j] = hit[0]
                self.pages += 1
                self.bytes_saved += size
                continue
            refs[j] = -1
            kept.append(block)
            self._table[h] = (out_off, size)
            if len(self._table) > self._entries:
                self._table.popitem(last=False)
            out_off += size
        return refs, b"".join(kept)


def pack_window(win: EncodedWindow, page_size: int, codec_flag: int, data_offset: int,
                zero_offset: int, ref_offsets=None, data: Optional[bytes] = None) -> Tuple[bytes, int]:
    """Descriptors for one encoded window whose data starts at
    ``data_offset``; returns (packed descriptors, descriptor count)."""
    out = bytearray(24 * win.npages)
    count = ffi.new("size_t *")
    end = ffi.new("int64_t *")
    check(lib.df_pack_descriptors(win.mask, win.zero if win.zero is not None else ffi.NULL,
                                  win.npages, win.sizes,
                                  ref_offsets if ref_offsets is not None else ffi.NULL,
                                  page_size, codec_flag, data_offset, zero_offset,
                                  ffi.from_buffer(out, require_writable=True), count, end),
          "packing page descriptors")
    stored = win.data if data is None else data
    if end[0] - data_offset != len(stored):
        raise AssertionError("page descriptors disagree with the data they describe")
    return bytes(out[: 24 * count[0]]), count[0]
