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
        self._pool = _OrderedPool(self.threads) if self.threads > 1 else None
        self._pending: Deque[_Slot] = deque()

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
            fut = _Slot.done(self._task(batch, None))
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
            self._pool.shutdown()
            self._pool = None


class _Slot:
    """The result of one task, set once by a worker; ``result()`` waits for it.
    (concurrent.futures would do, but it imports logging and friends — ~6 ms
    of a collector run's start-up.)"""

    __slots__ = ("_lock", "_value", "_error")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()  # released when the value is in
        self._value = None
        self._error: Optional[BaseException] = None

    @classmethod
    def done(cls, value) -> "_Slot":
        slot = cls()
        slot._value = value
        slot._lock.release()
        return slot

    def set(self, value, error: Optional[BaseException]) -> None:
        self._value, self._error = value, error
        self._lock.release()

    def result(self):
        with self._lock:
            pass
        if self._error is not None:
            raise self._error
        return self._value


class _OrderedPool:
    """``threads`` daemon workers taking ``(slot, fn, args)`` from one queue.
    Callers keep the slots in submission order; ``shutdown()`` drops what has
    not started and waits for the rest."""

    def __init__(self, threads: int) -> None:
        from queue import SimpleQueue

        self._queue: "SimpleQueue" = SimpleQueue()
        self._stopping = False
        self._workers = [threading.Thread(target=self._work, daemon=True,
                                          name=f"dumpfilter-encode-{i}")
                         for i in range(threads)]
        for t in self._workers:
            t.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            slot, fn, args = item
            if self._stopping:
                slot.set(None, RuntimeError("encoder shut down"))
                continue
            try:
                slot.set(fn(*args), None)
            except BaseException as e:  # handed to the consumer
                slot.set(None, e)

    def submit(self, fn, *args) -> _Slot:
        slot = _Slot()
        self._queue.put((slot, fn, args))
        return slot

    def shutdown(self) -> None:
        self._stopping = True
        for _ in self._workers:
            self._queue.put(None)
        for t in self._workers:
            t.join()
