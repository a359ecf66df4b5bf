"""kdump-compressed ("KDUMP   ", header_version 6) writer.

Layout (makedumpfile-reference.md §1): block 0 main header; block 1 sub
header with the input's note blob right after it; 1st and 2nd bitmap (two
equal block-aligned halves); one 24-byte descriptor per set bit of the 2nd
bitmap, in pfn order; page data, appended in the same order (all zero
pages share one block written first when dump level bit 1 is set).

``KdumpWriter`` writes through a *sink* (``dumpfilter.writers.sink``), so
the same writer produces a regular file or a flattened stream. It only
writes: the filter job hands it the header fields, the bitmaps cycle by
cycle and the encoded page windows. The order keeps a run cut short
recognisable: headers marked INCOMPLETE first, page data before the
descriptors that point at it, the final headers last.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Tuple

from dumpfilter._core import buf_len, check, ffi, lib, n_items
from dumpfilter.formats.elfnotes import find_vmcoreinfo, prstatus_notes
from dumpfilter.formats.kdump import (
    DISK_HEADER,
    FLAG_INCOMPLETE,
    HEADER_VERSION,
    KDUMP_SIGNATURE,
    PAGE_DESC,
    SUB_HEADER,
)
from dumpfilter.writers.sink import Sink

UINT_MAX = 0xFFFFFFFF


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


def pack_window(win, page_size: int, codec_flag: int, data_offset: int, zero_offset: int,
                ref_offsets=None, data: Optional[bytes] = None) -> Tuple[bytes, int]:
    """Descriptors (C) for one encoded window (``filter.encode.EncodedWindow``)
    whose data starts at ``data_offset``; returns (packed descriptors,
    descriptor count)."""
    out = bytearray(PAGE_DESC.size * win.npages)
    count = ffi.new("size_t *")
    end = ffi.new("int64_t *")
    zero = win.zero if win.zero is not None else ffi.NULL
    refs = ref_offsets if ref_offsets is not None else ffi.NULL
    check(lib.df_pack_descriptors(win.mask, len(win.mask), zero, buf_len(zero), win.npages,
                                  win.sizes, n_items(win.sizes), refs, n_items(refs),
                                  page_size, codec_flag, data_offset, zero_offset,
                                  ffi.from_buffer(out, require_writable=True), len(out),
                                  count, end),
          "packing page descriptors")
    stored = win.data if data is None else data
    if end[0] - data_offset != len(stored):
        raise AssertionError("page descriptors disagree with the data they describe")
    return bytes(out[: PAGE_DESC.size * count[0]]), count[0]


class KdumpWriter:
    """One kdump-compressed file (or one ``--split`` piece) into ``sink``.

    Call order: ``begin``; ``write_bitmaps`` for every cycle, then
    ``end_bitmaps``; ``start_pages``; ``add_window`` for every encoded
    window in pfn order; ``finish``."""

    def __init__(self, sink: Sink, layout: KdumpLayout, fields: KdumpHeaderFields,
                 codec_flag: int = 0):
        self.sink = sink
        self.layout = layout
        self.fields = fields
        self.codec_flag = codec_flag
        self.stream: Optional[PageStream] = None
        self.zero_offset = 0

    def begin(self) -> None:
        """Headers marked INCOMPLETE: a run cut short (no space left, -L)
        leaves a file that says so."""
        f = replace(self.fields, status=self.fields.status | FLAG_INCOMPLETE)
        self.sink.pwrite(pack_headers(self.layout, f), 0)

    def write_bitmaps(self, start_pfn: int, bitmap1, bitmap2) -> None:
        """The bits of one cycle (``start_pfn`` a multiple of 8)."""
        lay = self.layout
        self.sink.pwrite(bitmap1, lay.bitmap1_offset + start_pfn // 8)
        self.sink.pwrite(bitmap2, lay.bitmap2_offset + start_pfn // 8)

    def end_bitmaps(self) -> None:
        """Both bitmap halves are block-aligned: pad the 2nd to its full
        size (only when the bitmap leaves a gap: one filling its blocks
        exactly would lose its last byte)."""
        lay = self.layout
        pad_at = lay.bitmap2_offset + lay.bitmap_half_blocks * lay.block_size
        if pad_at > lay.bitmap2_offset + (lay.max_mapnr + 7) // 8:
            self.sink.pwrite(b"\0", pad_at - 1)

    def start_pages(self, descriptors: int, zero_page: bool) -> None:
        """Reserve ``descriptors`` page descriptors (a split piece: those
        of the whole dump, as makedumpfile); with ``zero_page`` the shared
        zero page is the first data block."""
        lay = self.layout
        self.stream = PageStream(self.sink, lay.desc_offset,
                                 lay.desc_offset + PAGE_DESC.size * descriptors)
        if zero_page:
            self.zero_offset = self.stream.write_raw_data(bytes(lay.block_size))

    @property
    def next_data_offset(self) -> int:
        return self.stream.next_data_offset

    @property
    def pages(self) -> int:
        """Descriptors written so far."""
        return self.stream.pages

    def read_back(self, offset: int, size: int) -> bytes:
        """Page data written earlier (``--dedup`` compares blocks)."""
        return self.stream.read_back(offset, size)

    def add_window(self, win, ref_offsets=None, data: Optional[bytes] = None) -> None:
        """One encoded window; with ``ref_offsets``/``data`` (dedup) some
        pages point at blocks written earlier and only ``data`` is new."""
        desc, n = pack_window(win, self.layout.block_size, self.codec_flag,
                              self.stream.next_data_offset, self.zero_offset, ref_offsets, data)
        self.stream.add_descriptors(desc, win.data if data is None else data, n)

    def finish(self, eraseinfo: bytes = b"") -> int:
        """Flush, append ``eraseinfo`` (kept from a re-filtered input),
        write the final headers. Returns the end of the data."""
        stream = self.stream
        stream.flush()
        if eraseinfo:
            self.fields.eraseinfo_offset = stream.data_pos
            self.fields.eraseinfo_size = len(eraseinfo)
            self.sink.pwrite(eraseinfo, stream.data_pos)
        # Headers last: only a finished run has a valid signature.
        self.sink.pwrite(pack_headers(self.layout, self.fields), 0)
        self.sink.flush()
        return stream.data_pos
