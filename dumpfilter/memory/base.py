"""What every memory model of the dumped kernel offers (x86_64, arm64).

``translate`` is the model's own page-table walk; reads are built on it,
leaf by leaf, through the source's physical reads.
"""
from __future__ import annotations

import struct
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator, Tuple


class KernelMemory:
    """Virtual memory of the dumped kernel, over a ``DumpSource``."""

    source = None  # the DumpSource, set by the subclass
    #: Bytes of one page-table page, and how many such pages stay cached.
    table_size = 4096
    _cache_pages = 64
    _cache: "OrderedDict[int, bytes]"

    def _table(self, paddr: int) -> bytes:
        """The page-table page at ``paddr``, through a small LRU cache."""
        cache = self._cache
        page = cache.get(paddr)
        if page is None:
            page = self.source.read_phys(paddr, self.table_size)
            cache[paddr] = page
            if len(cache) > self._cache_pages:
                cache.popitem(last=False)
        else:
            cache.move_to_end(paddr)
        return page

    def translate(self, vaddr: int) -> Tuple[int, int]:  # pragma: no cover - interface
        """(paddr, bytes left in this leaf mapping) for ``vaddr``; raises
        FaultError if it is not mapped."""
        raise NotImplementedError

    def vtop(self, vaddr: int) -> int:
        return self.translate(vaddr)[0]

    def read(self, vaddr: int, size: int) -> bytes:
        """Read ``size`` bytes of kernel virtual memory."""
        out = bytearray(size)
        self.read_into(vaddr, memoryview(out))
        return bytes(out)

    def read_into(self, vaddr: int, out: memoryview) -> None:
        pos, n = 0, len(out)
        while pos < n:
            paddr, left = self.translate(vaddr + pos)
            chunk = min(left, n - pos)
            self.source.read_phys_into(paddr, out[pos:pos + chunk])
            pos += chunk

    @contextmanager
    def view(self, vaddr: int, size: int) -> Iterator[memoryview]:
        """``size`` bytes at ``vaddr`` for the ``with`` block: the source's
        own mapping when they lie in one leaf (no copy: struct pages are
        read this way), else a copy."""
        paddr, left = self.translate(vaddr)
        if left >= size:
            with self.source.map_phys(paddr, size) as v:
                yield v
            return
        yield memoryview(self.read(vaddr, size))

    def read_u64(self, vaddr: int) -> int:
        return struct.unpack("<Q", self.read(vaddr, 8))[0]

    def read_u32(self, vaddr: int) -> int:
        return struct.unpack("<I", self.read(vaddr, 4))[0]
