"""Page encoding for pass 2: windows of page contents in, encoded windows
(which pages are zero, the stored blocks and their sizes) out, in pfn order.

A window (up to a few hundred pages and the bitmap of which of them are
dumpable) is handled as one task: the C core finds zero pages and picks the
pages to store; the codec's encoder (``dumpfilter.codecs.encoders``)
compresses the whole batch. With ``threads > 1`` tasks run on a thread pool
and — for sources that can map windows from any thread — read their pages
there too. Results are consumed strictly in window order, so the output is
byte-identical whatever the thread count.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Deque, List, Optional

from dumpfilter._core import ffi
from dumpfilter.codecs.encoders import PageCompressor
from dumpfilter.filter.dedup import page_hasher
from dumpfilter.filter.pages import find_zero_pages, select_pages


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


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
    """Encode windows, possibly in parallel; hand them back in order.
    ``compressor`` None stores every page raw."""

    def __init__(self, compressor: Optional[PageCompressor], page_size: int, threads: int = 1,
                 zero_test: bool = False, dedup: bool = False):
        self.compressor = compressor
        self.ps = page_size
        self.threads = max(1, threads)
        self.zero_test = zero_test
        self._hash = page_hasher() if dedup else None
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        self._pending: Deque[Future] = deque()

    # -- one window (runs on a worker) -------------------------------------
    def _task(self, open_window: WindowOpener, npages: int, mask: bytes) -> EncodedWindow:
        ps = self.ps
        with open_window() as view:
            zero, zero_count = None, 0
            if self.zero_test:
                zero, zero_count = find_zero_pages(view, npages, ps, mask)
            idx, k = select_pages(mask, zero, npages)
            sizes = ffi.new("uint32_t[]", max(1, k))
            if self.compressor is not None:
                data = self.compressor.compress(view, idx, k, sizes)
            else:
                data = bytearray()
                for j in range(k):
                    data += view[idx[j] * ps:(idx[j] + 1) * ps]
                    sizes[j] = ps
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
