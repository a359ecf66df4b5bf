"""kdump-compressed ("KDUMP   ", header_version 6) writer.

Layout (makedumpfile-reference.md §1): block 0 main header; block 1 sub
header with the input's note blob right after it; 1st and 2nd bitmap (two
equal block-aligned halves); one 24-byte descriptor per set bit of the 2nd
bitmap, in pfn order; page data, appended in the same order (all zero
pages share one block written first when dump level bit 1 is set).

Writes go through a *sink* (``pwrite(data, offset)``), so the same writer
produces a regular file or a flattened stream. The headers are written
last: an interrupted run never leaves a file that looks complete.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Optional

from dumpfilter.elfnotes import find_vmcoreinfo, prstatus_notes
from dumpfilter.kdumpformat import (  # noqa: F401 - PAGE_DESC is re-exported
    DISK_HEADER,
    HEADER_VERSION,
    KDUMP_SIGNATURE,
    PAGE_DESC,
    SUB_HEADER,
)

UINT_MAX = 0xFFFFFFFF


class Sink:
    """Where output bytes go. ``pread`` is only needed for reading the
    2nd bitmap back; sinks that cannot read return None."""

    def pwrite(self, data, offset: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def pread(self, size: int, offset: int) -> Optional[bytes]:
        return None

    def flush(self) -> None:
        pass


class FileSink(Sink):
    """A regular file opened by the caller. ``limit`` (bytes, -L) makes a
    write past it fail as if the disk were full."""

    def __init__(self, fd: int, limit: Optional[int] = None):
        self.fd = fd
        self.bytes_written = 0
        self.limit = limit

    def pwrite(self, data, offset: int) -> None:
        view = memoryview(data)
        if self.limit is not None and offset + len(view) > self.limit:
            room = max(0, self.limit - offset)
            if room:
                self.pwrite(view[:room], offset)
            raise OSError(errno.ENOSPC, f"output size limit of {self.limit} bytes (-L) reached")
        while view:
            n = os.pwrite(self.fd, view, offset)
            view = view[n:]
            offset += n
            self.bytes_written += n

    def pread(self, size: int, offset: int) -> Optional[bytes]:
        return os.pread(self.fd, size, offset)


@dataclass(frozen=True)
class KdumpLayout:
    """File offsets, all derived from page size, max_mapnr and note size."""

    block_size: int
    max_mapnr: int
    size_note: int

    @property
    def sub_hdr_size(self) -> int:  # blocks, sub header + notes
        return -(-(SUB_HEADER.size + self.size_note) // self.block_size)

    @property
    def bitmap_half_blocks(self) -> int:
        return -(-(-(-self.max_mapnr // 8)) // self.block_size)

    @property
    def bitmap_blocks(self) -> int:
        return 2 * self.bitmap_half_blocks

    @property
    def bitmap1_offset(self) -> int:
        return (1 + self.sub_hdr_size) * self.block_size

    @property
    def bitmap2_offset(self) -> int:
        return self.bitmap1_offset + self.bitmap_half_blocks * self.block_size

    @property
    def desc_offset(self) -> int:
        return (1 + self.sub_hdr_size + self.bitmap_blocks) * self.block_size

    @property
    def note_offset(self) -> int:
        return self.block_size + SUB_HEADER.size


@dataclass
class KdumpHeaderFields:
    """What the headers say about the dump, besides the layout."""

    utsname: bytes  # 390 bytes: 6 x 65 (sysname .. domainname)
    crashtime: int
    phys_base: int
    dump_level: int
    notes: bytes
    status: int = 0  # compression flag(s), INCOMPLETE, EXCLUDED_VMEMMAP
    split: bool = False
    start_pfn: int = 0
    end_pfn: int = 0
    eraseinfo_offset: int = 0
    eraseinfo_size: int = 0


def pack_headers(layout: KdumpLayout, f: KdumpHeaderFields) -> bytes:
    """Block 0 and the sub-header blocks (with the notes), ready to write
    at offset 0."""
    bs = layout.block_size
    nr_cpus = len(prstatus_notes(f.notes))
    disk = DISK_HEADER.pack(
        KDUMP_SIGNATURE, HEADER_VERSION, f.utsname.ljust(390, b"\0")[:390],
        f.crashtime, 0,  # timestamp: tv_sec = CRASHTIME, tv_usec = 0
        f.status, bs, layout.sub_hdr_size, layout.bitmap_blocks,
        min(layout.max_mapnr, UINT_MAX), 0, 0, 0, 0, nr_cpus,
    )
    vi = find_vmcoreinfo(f.notes)
    off_vmcoreinfo, size_vmcoreinfo = (layout.note_offset + vi[0], vi[1]) if vi else (0, 0)
    sub = SUB_HEADER.pack(
        f.phys_base & 0xFFFFFFFFFFFFFFFF, f.dump_level, 1 if f.split else 0,
        min(f.start_pfn, UINT_MAX) if f.split else 0,
        min(f.end_pfn, UINT_MAX) if f.split else 0,
        off_vmcoreinfo, size_vmcoreinfo,
        layout.note_offset if f.notes else 0, len(f.notes),
        f.eraseinfo_offset, f.eraseinfo_size,
        f.start_pfn if f.split else 0, f.end_pfn if f.split else 0,
        layout.max_mapnr,
    )
    out = bytearray((1 + layout.sub_hdr_size) * bs)
    out[: len(disk)] = disk
    out[bs : bs + len(sub)] = sub
    out[layout.note_offset : layout.note_offset + len(f.notes)] = f.notes
    return bytes(out)


class PageStream:
    """Buffers descriptors and page data and writes them in order: data
    is flushed before the descriptors that describe it, so a run cut short
    leaves descriptors only for data that reached the file."""

    def __init__(self, sink: Sink, desc_offset: int, data_offset: int,
                 buffer_bytes: int = 1 << 20):
        self.sink = sink
        self.desc_pos = desc_offset
        self.data_pos = data_offset
        self._desc = bytearray()
        self._data = bytearray()
        self._limit = buffer_bytes
        self.pages = 0

    @property
    def next_data_offset(self) -> int:
        return self.data_pos + len(self._data)

    def add(self, data, flags: int) -> None:
        """Append one stored page (raw or compressed)."""
        self._desc += PAGE_DESC.pack(self.next_data_offset, len(data), flags, 0)
        self._data += data
        self.pages += 1
        if len(self._data) >= self._limit:
            self.flush()

    def add_shared(self, offset: int, size: int, flags: int = 0) -> None:
        """A descriptor pointing at data written earlier (shared zero page)."""
        self._desc += PAGE_DESC.pack(offset, size, flags, 0)
        self.pages += 1
        if len(self._desc) >= self._limit:
            self.flush()

    def add_descriptors(self, packed: bytes, data: bytes, pages: int) -> None:
        """Append a batch built elsewhere (C): descriptors already carry
        absolute offsets computed from ``next_data_offset``."""
        self._desc += packed
        self._data += data
        self.pages += pages
        if len(self._data) >= self._limit or len(self._desc) >= self._limit:
            self.flush()

    def write_raw_data(self, data) -> int:
        """Write data without a descriptor (the shared zero page); returns
        its offset."""
        off = self.next_data_offset
        self._data += data
        return off

    def read_back(self, offset: int, size: int) -> bytes:
        """Data written earlier at ``offset`` (still buffered, or from the
        sink, which must be able to read)."""
        if offset >= self.data_pos:
            rel = offset - self.data_pos
            return bytes(self._data[rel:rel + size])
        return self.sink.pread(size, offset)

    def flush(self) -> None:
        # Data before the descriptors that point at it: if the disk fills
        # up in between, no descriptor describes data that is not there
        # (an unwritten descriptor reads as offset 0: "page incomplete").
        if self._data:
            self.sink.pwrite(self._data, self.data_pos)
            self.data_pos += len(self._data)
            self._data = bytearray()
        if self._desc:
            self.sink.pwrite(self._desc, self.desc_pos)
            self.desc_pos += len(self._desc)
            self._desc = bytearray()
