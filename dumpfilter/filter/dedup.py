"""``--dedup``: a page identical to one already stored shares its block.

The pages of a window are hashed (xxh3) on the worker; in order, on the
main thread, a page whose hash was seen is checked byte for byte against
the block stored for it (equal compressed blocks of a deterministic codec
mean equal pages) and then points at that block instead of storing its own.
Readers need no change: two descriptors may name the same data.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, List, Tuple

from dumpfilter._core import ffi
from dumpfilter.errors import UsageError

#: Most hashes the table remembers (oldest forgotten first): bounds its
#: memory (~10 MiB) whatever the dump size.
DEDUP_TABLE_ENTRIES = 1 << 16


def page_hasher():
    """xxh3-64 of a page, as an int."""
    try:
        import xxhash
    except ImportError:
        raise UsageError("--dedup needs the 'xxhash' package (pip install xxhash)") from None
    return xxhash.xxh3_64_intdigest


class Deduplicator:
    """Remembers where recent blocks were stored, by page hash."""

    def __init__(self, read_back: Callable[[int, int], bytes], entries: int = DEDUP_TABLE_ENTRIES):
        self._table: "OrderedDict[int, Tuple[int, int]]" = OrderedDict()
        self._entries = entries
        self._read_back = read_back
        self.pages = 0
        self.bytes_saved = 0

    def apply(self, win, data_offset: int):
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
