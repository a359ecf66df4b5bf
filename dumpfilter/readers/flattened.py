"""makedumpfile's *flattened* format (``-F``), read in place and rebuilt.

A flattened stream is a 4096-byte header (``"makedumpfile"`` NUL-padded to
16 bytes, then big-endian int64 ``type`` = 1 and ``version`` = 1), followed by
records ``{int64 offset; int64 size}`` (big-endian) + ``size`` bytes that the
writer would otherwise have written at ``offset`` of a seekable file, ended by
the record ``(-1, -1)``. Records come in any order and may overlap (a later
record wins, e.g. a rewritten sub header).

``FlattenedFile`` scans the records once, sorts them once by logical offset
(time linear in the records apart from that sort) and keeps a sorted,
non-overlapping index of ``(logical offset, length, file offset)`` segments in compact arrays
(24 bytes per segment, no Python object per record), then answers
``pread(offset, size)`` over the *logical* file: bytes never written read as
zeros, like the holes of the file ``makedumpfile -R`` would produce.

``dumpfilter.writers.rebuild`` is ``makedumpfile -R``.
"""
from __future__ import annotations

import os
from array import array
from bisect import bisect_right
from typing import Union

from dumpfilter.errors import TruncatedDumpError
from dumpfilter.formats.flattened import (
    FLAT_HEADER_SIZE,
    FLAT_RECORD,
    check_flat_header,
    is_flattened,
    record_header,
)

__all__ = ["FlattenedFile", "is_flattened"]


class FlattenedFile:
    """Random access to the logical file inside a flattened stream.

    Implements the small "pread" interface the kdump reader uses:
    ``pread(offset, size) -> bytes`` (short only at the logical end),
    ``size`` (logical size: end of the furthest record), ``name``,
    ``close()``.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"]):
        self.name = os.fspath(path)
        self._fd = os.open(self.name, os.O_RDONLY)
        try:
            self.file_size = os.fstat(self._fd).st_size
            check_flat_header(os.pread(self._fd, FLAT_HEADER_SIZE, 0), self.name)
            # Sorted, non-overlapping segments: logical start/end, file offset.
            self._lo = array("q")
            self._hi = array("q")
            self._fo = array("q")
            self.nrecords = 0
            self._scan()
            self.size = self._hi[-1] if len(self._hi) else 0
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise

    # ----------------------------------------------------------------- index

    def _scan(self) -> None:
        """Read every record header once (stream order), then build the
        index: one sort by logical offset, then a linear pass; records that
        overlap are resolved by stream order (the later one wins) within
        their cluster only."""
        pos, fsize, name = FLAT_HEADER_SIZE, self.file_size, self.name
        los, his, fos = array("q"), array("q"), array("q")
        while True:
            record = record_header(os.pread(self._fd, FLAT_RECORD.size, pos), name, pos)
            if record is None:
                break
            offset, size = record
            data = pos + FLAT_RECORD.size
            if data + size > fsize:
                raise TruncatedDumpError(
                    f"{name}: flattened record at {pos} ({size} bytes for offset {offset})"
                    f" runs past the end of the stream ({fsize} bytes)"
                )
            if size:
                los.append(offset)
                his.append(offset + size)
                fos.append(data)
            self.nrecords += 1
            pos = data + size
        self._build(los, his, fos)

    def _build(self, los: array, his: array, fos: array) -> None:
        n = len(los)
        if all(los[i] < los[i + 1] for i in range(n - 1)):
            order: "range | list" = range(n)  # already in order: no sort
        else:
            order = sorted(range(n), key=los.__getitem__)  # stable: stream order on ties
        i = 0
        while i < n:
            # A cluster: consecutive (sorted) records that overlap each other.
            j, reach = i + 1, his[order[i]]
            while j < n and los[order[j]] < reach:
                reach = max(reach, his[order[j]])
                j += 1
            if j == i + 1:
                k = order[i]
                self._emit(los[k], his[k], fos[k])
            else:
                self._resolve([order[x] for x in range(i, j)], los, his, fos)
            i = j

    def _emit(self, lo: int, hi: int, fo: int) -> None:
        """Append a segment beyond all others, merged with the last one
        when contiguous in both the logical file and the stream."""
        slo, shi, sfo = self._lo, self._hi, self._fo
        if slo and lo == shi[-1] and fo == sfo[-1] + (shi[-1] - slo[-1]):
            shi[-1] = hi
        else:
            slo.append(lo)
            shi.append(hi)
            sfo.append(fo)

    def _resolve(self, recs: list, los: array, his: array, fos: array) -> None:
        """Overlapping records (indices in stream order = priority): sweep
        their boundaries; each piece belongs to the latest record over it."""
        import heapq

        bounds = sorted({los[k] for k in recs} | {his[k] for k in recs})
        starts = sorted(recs, key=los.__getitem__)
        heap: list = []
        nxt = 0
        for a, b in zip(bounds, bounds[1:]):
            while nxt < len(starts) and los[starts[nxt]] <= a:
                heapq.heappush(heap, -starts[nxt])
                nxt += 1
            while heap and his[-heap[0]] <= a:
                heapq.heappop(heap)  # ended before this piece
            if heap:
                k = -heap[0]
                self._emit(a, b, fos[k] + (a - los[k]))

    def written_bytes(self, lo: int, hi: int) -> int:
        """How many bytes of the logical range ``[lo, hi)`` some record
        wrote (the rest are holes that read as zeros)."""
        los, his = self._lo, self._hi
        i = max(bisect_right(los, lo) - 1, 0)
        n = 0
        while i < len(los) and los[i] < hi:
            n += max(0, min(his[i], hi) - max(los[i], lo))
            i += 1
        return n

    @property
    def nsegments(self) -> int:
        """Number of segments in the index (<= number of records)."""
        return len(self._lo)

    # ------------------------------------------------------------------ read

    def pread(self, offset: int, size: int) -> bytes:
        """Logical bytes ``[offset, offset+size)``; holes read as zeros, the
        result is short only past the logical end."""
        if offset < 0 or size < 0:
            raise ValueError(f"pread({offset}, {size})")
        end = min(offset + size, self.size)
        if end <= offset:
            return b""
        los, his, fos = self._lo, self._hi, self._fo
        i = bisect_right(los, offset) - 1
        if i >= 0 and his[i] >= end:  # fast path: one segment
            return self._read_exact(fos[i] + offset - los[i], end - offset)
        out = bytearray(end - offset)
        i = max(i, 0)
        while i < len(los) and los[i] < end:
            a, b = max(los[i], offset), min(his[i], end)
            if a < b:
                out[a - offset : b - offset] = self._read_exact(fos[i] + a - los[i], b - a)
            i += 1
        return bytes(out)

    def _read_exact(self, pos: int, size: int) -> bytes:
        data = os.pread(self._fd, size, pos)
        if len(data) != size:  # the stream shrank under us
            raise TruncatedDumpError(
                f"{self.name}: flattened stream cut short at {pos + len(data)}"
            )
        return data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "FlattenedFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
