"""Page encoding for pass 2: batches of kept pages in, encoded batches (which
pages are zero, the stored blocks and their sizes) out, in pfn order.

A *batch* is a run of 256-pfn windows holding about ``BATCH_PAGES`` kept
pages, so that every task carries the same amount of compression work
whether the dump keeps 2 % of its pages, scattered, or all of them. A task
gathers the batch's kept pages into one buffer (the source maps dense
windows and reads sparse ones with pread), finds the zero pages and
compresses the rest in C (``dumpfilter.codecs.encoders``), all with the GIL
released. With ``threads > 1`` tasks run on a thread pool and — for sources
whose windows can be read from any thread — read their pages there too.
Results are consumed strictly in batch order, so the output is
byte-identical whatever the thread count.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Deque, List, Optional, Tuple

from dumpfilter._core import check, ffi, lib
from dumpfilter.codecs.encoders import PageCompressor
from dumpfilter.filter.dedup import page_hasher
from dumpfilter.filter.pages import find_zero_pages, select_pages

#: Kept pages per batch (1 MiB at 4 KiB pages): enough C work per task
#: that the Python around it is noise, small enough for even sharing.
BATCH_PAGES = 256


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


@dataclass
class Batch:
    """Windows ``(start_pfn, npages, mask)`` and how many pages their
    masks keep, in pfn order."""

    windows: List[Tuple[int, int, bytes]] = field(default_factory=list)
    kept: int = 0


@dataclass
class EncodedWindow:
    """An encoded batch: its ``npages`` kept pages, in pfn order."""

    mask: bytes  # all ones: every gathered page has a descriptor
    zero: Optional[bytes]  # zero pages among them (None: no zero test)
    zero_count: int
    npages: int
    sizes: object  # cffi uint32_t[] of stored sizes, one per selected page
    data: bytes  # the stored blocks, concatenated
    hashes: Optional[List[int]]  # per selected page, with dedup


#: Copies the kept pages of one window into a buffer:
#: ``gather(start_pfn, npages, mask, out)``.
Gather = Callable[[int, int, bytes, memoryview], None]


def _ones(n: int) -> bytes:
    return ((1 << n) - 1).to_bytes((n + 7) // 8, "little")


class PageEncoder:
    """Encode batches, possibly in parallel; hand them back in order.
    ``compressor`` None stores every page raw."""

    def __init__(self, compressor: Optional[PageCompressor], page_size: int, gather: Gather,
                 threads: int = 1, zero_test: bool = False, dedup: bool = False,
                 gather_on_workers: bool = False):
        self.compressor = compressor
        self.ps = page_size
        self.gather = gather
        self.threads = max(1, threads)
        self.zero_test = zero_test
        self.gather_on_workers = gather_on_workers and self.threads > 1
        self._hash = page_hasher() if dedup else None
        self._local = threading.local()
        self._pool = None
        if self.threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads)
        self._pending: Deque[Future] = deque()

    def _scratch(self, size: int) -> memoryview:
        """This thread's gather buffer (reused across batches)."""
        buf = getattr(self._local, "buf", None)
        if buf is None or len(buf) < size:
            buf = self._local.buf = bytearray(size)
        return memoryview(buf)[:size]

    def _read(self, batch: Batch, out: memoryview) -> None:
        ps, pos = self.ps, 0
        for start, n, mask in batch.windows:
            kept = bin(int.from_bytes(mask, "little")).count("1")
            self.gather(start, n, mask, out[pos:pos + kept * ps])
            pos += kept * ps

    # -- one batch (runs on a worker) --------------------------------------
    def _task(self, batch: Batch, view: Optional[memoryview]) -> EncodedWindow:
        ps, k = self.ps, batch.kept
        if view is None:
            view = self._scratch(k * ps)
            self._read(batch, view)
        zero, zero_count = None, 0
        if self.zero_test:
            zero, zero_count = find_zero_pages(view, k, ps, None)
        idx, m = select_pages(_ones(k), zero, k)
        sizes = ffi.new("uint32_t[]", max(1, m))
        if self.compressor is not None:
            data = self.compressor.compress(view, idx, m, sizes)
        else:  # stored raw
            out = bytearray(m * ps)
            src, dst = ffi.from_buffer(view), ffi.from_buffer(out, require_writable=True)
            check(lib.df_gather_pages(src, len(src), ps, idx, len(idx), m, dst, len(dst)),
                  "gathering pages")
            for j in range(m):
                sizes[j] = ps
            data = bytes(out)
        hashes = None
        if self._hash is not None:
            h = self._hash
            hashes = [h(view[idx[j] * ps:(idx[j] + 1) * ps]) for j in range(m)]
        return EncodedWindow(_ones(k), zero, zero_count, k, sizes, data, hashes)

    # -- pipeline ----------------------------------------------------------
    def submit(self, batch: Batch) -> None:
        """Queue one batch."""
        if not batch.kept:
            return
        if self._pool is None:
            fut: Future = Future()
            fut.set_result(self._task(batch, None))
        elif self.gather_on_workers:
            fut = self._pool.submit(self._task, batch, None)
        else:  # the source is read on this thread only
            view = memoryview(bytearray(batch.kept * self.ps))
            self._read(batch, view)
            fut = self._pool.submit(self._task, batch, view)
        self._pending.append(fut)

    def ready(self, drain: bool = False):
        """Finished batches in submission order. Without ``drain``, keeps up
        to ``2 * threads`` batches in flight (bounded memory)."""
        limit = 0 if self._pool is None else 2 * self.threads
        while self._pending and (drain or len(self._pending) > limit):
            yield self._pending.popleft().result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
