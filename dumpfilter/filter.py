"""The filter job: a dump in, a kdump-compressed dump out.

Pass 1 classifies every pfn cycle by cycle and writes both bitmaps into the
output (or a temporary file when the output cannot be read back), counting
the dumpable pages. Pass 2 reads the 2nd bitmap back one cycle at a time,
maps the page contents in windows, finds zero pages (C), compresses the
rest and streams descriptors and data. Memory stays fixed: one cycle of
bitmaps, one window of pages, the write buffers.
"""
from __future__ import annotations

import logging
import tempfile
from functools import partial
from dataclasses import dataclass, field, replace
from typing import Callable, List, Optional, Tuple

from dumpfilter._core import check, ffi, lib
from dumpfilter.bitmaps import count_bits
from dumpfilter.classify import CLASS_NAMES, Classifier
from dumpfilter.compress import CODECS
from dumpfilter.encode import Deduplicator, PageEncoder, pack_window
from dumpfilter.kdumpformat import FLAG_INCOMPLETE
from dumpfilter.errors import DumpFilterError, FaultError, UsageError
from dumpfilter.memory.x86_64 import X86_64Memory, kernel_phys_base
from dumpfilter.readers.base import DumpSource
from dumpfilter.vmcoreinfo import VmcoreInfo
from dumpfilter.writers.kdump import (
    KdumpHeaderFields,
    PAGE_DESC,
    KdumpLayout,
    PageStream,
    Sink,
    pack_headers,
)

log = logging.getLogger(__name__)

#: Pages handed to zero detection/compression at once (1 MiB at 4 KiB):
#: small enough to keep the resident set low with several windows in flight.
WINDOW_PAGES = 256


@dataclass
class FilterOptions:
    dump_level: int = 0
    codec: Optional[str] = None  # "zlib", "lzo", "snappy", "zstd" or None
    threads: int = 1  # compression threads (--num-threads)
    zlib_encoder: str = "zlib"  # "zlib" (makedumpfile's bytes) or "isal"
    dedup: bool = False  # identical pages share one stored block
    # Called as progress(step, done, total); the CLI prints it.
    progress: Optional[Callable[[str, int, int], None]] = None
    # --split: write one piece holding only the pages of [start, end) pfns
    # (full bitmaps, split = 1, start/end_pfn in the sub header).
    split_range: Optional[Tuple[int, int]] = None


@dataclass
class FilterStats:
    """makedumpfile's report numbers, counted right (see ``original``)."""

    max_mapnr: int = 0
    original: int = 0  # pfns in the 1st bitmap (RAM pages in the input)
    excluded: dict = field(default_factory=dict)  # class name -> pages
    dumpable: int = 0  # set bits of the 2nd bitmap (zero pages included)
    zero_pages: int = 0
    pages_written: int = 0  # pages with their own data block
    bytes_written: int = 0
    dedup_pages: int = 0  # pages that share an earlier identical block
    dedup_bytes_saved: int = 0
    warnings: List[str] = field(default_factory=list)

    @property
    def excluded_total(self) -> int:
        return sum(self.excluded.values())

    @property
    def remaining(self) -> int:
        return self.original - self.excluded_total

    @property
    def memory_hole(self) -> int:
        return self.max_mapnr - self.original


def read_utsname(source: DumpSource, info: VmcoreInfo, mem: Optional[X86_64Memory]) -> bytes:
    """``struct new_utsname`` (6 x 65 bytes) of the dumped kernel: from
    ``init_uts_ns`` in memory, else from a kdump input's header."""
    addr = info.symbol("init_uts_ns")
    if addr is not None and mem is not None:
        try:
            return mem.read(addr + (info.offset("uts_namespace.name") or 0), 390)
        except FaultError:
            pass
    uts = getattr(source, "utsname_raw", None)
    if uts:
        return uts
    raise DumpFilterError(f"{source.path}: cannot read the kernel's utsname (init_uts_ns)")


def _bit_slice(bitmap: bytes, start: int, n: int) -> bytes:
    """Bits ``[start, start+n)`` of an LSB-first bitmap as a new bitmap."""
    lo, hi = start // 8, (start + n + 7) // 8 + 1
    v = int.from_bytes(bitmap[lo:hi], "little") >> (start % 8)
    return (v & ((1 << n) - 1)).to_bytes((n + 7) // 8, "little")


def _clip_bits(bitmap: bytes, start: int, npages: int, lo: int, hi: int) -> bytes:
    """``bitmap`` (pfns ``[start, start+npages)``) with the bits outside
    ``[lo, hi)`` cleared."""
    a, b = max(lo, start) - start, min(hi, start + npages) - start
    if a <= 0 and b >= npages:
        return bitmap
    if a >= b:
        return bytes(len(bitmap))
    keep = ((1 << (b - a)) - 1) << a
    return (int.from_bytes(bitmap, "little") & keep).to_bytes(len(bitmap), "little")


class _BitmapStore:
    """Where pass 2 finds the 2nd bitmap: the output itself if the sink can
    read, else an unlinked temporary file."""

    def __init__(self, sink: Sink, offset: int):
        self.sink, self.offset = sink, offset
        self.tmp = None
        if sink.pread(0, 0) is None:
            self.tmp = tempfile.TemporaryFile(prefix="dumpfilter-bitmap")

    def write(self, start_pfn: int, data: bytes) -> None:
        """Keep a copy only where the output cannot be read back."""
        if self.tmp is not None:
            self.tmp.seek(start_pfn // 8)
            self.tmp.write(data)

    def read(self, start_pfn: int, nbytes: int) -> bytes:
        if self.tmp is not None:
            self.tmp.seek(start_pfn // 8)
            return self.tmp.read(nbytes)
        return self.sink.pread(nbytes, self.offset + start_pfn // 8)


def filter_dump(source: DumpSource, sink: Sink, options: FilterOptions) -> FilterStats:
    """Filter ``source`` into a kdump-compressed file written to ``sink``."""
    info = VmcoreInfo.parse(source.vmcoreinfo_raw)
    level = options.dump_level
    prior = getattr(source, "header", None)
    if prior is not None and prior.dump_level:
        # Re-filtering keeps what the earlier run excluded excluded.
        level |= prior.dump_level
    mem = X86_64Memory(source, info) if info.symbol("init_top_pgt") or info.symbol("swapper_pg_dir") else None
    if level & 0x1E and not info:
        raise DumpFilterError(
            f"{source.path}: no VMCOREINFO; only dump levels 0 and 1 are possible")
    codec = CODECS[options.codec] if options.codec else None
    ps = source.page_size
    layout = KdumpLayout(ps, source.max_pfn, len(source.notes))
    fields = KdumpHeaderFields(
        utsname=read_utsname(source, info, mem),
        crashtime=info.crashtime or 0,
        phys_base=kernel_phys_base(info, source),
        dump_level=level,
        notes=source.notes,
        status=codec.flag if codec else 0,
    )
    lo, hi = 0, source.max_pfn
    if options.split_range is not None:
        lo, hi = options.split_range
        fields.split, fields.start_pfn, fields.end_pfn = True, lo, hi
    stats = FilterStats(max_mapnr=source.max_pfn)
    progress = options.progress or (lambda *a: None)

    # The headers go out first marked INCOMPLETE and are rewritten at the
    # end: a run cut short (no space left, -L) leaves a file that says so.
    sink.pwrite(pack_headers(layout, replace(fields, status=fields.status | FLAG_INCOMPLETE)), 0)

    # Pass 1: bitmaps.
    classifier = Classifier(source, info, level, mem=mem)
    store = _BitmapStore(sink, layout.bitmap2_offset)
    cycles = []
    progress("Excluding unnecessary pages", 0, source.max_pfn)
    for cyc in classifier.cycles():
        progress("Excluding unnecessary pages", cyc.start_pfn + cyc.npages, source.max_pfn)
        sink.pwrite(cyc.bitmap1, layout.bitmap1_offset + cyc.start_pfn // 8)
        sink.pwrite(cyc.bitmap2, layout.bitmap2_offset + cyc.start_pfn // 8)
        store.write(cyc.start_pfn, cyc.bitmap2)
        stats.original += count_bits(cyc.bitmap1, cyc.npages)
        stats.dumpable += count_bits(cyc.bitmap2, cyc.npages)
        cycles.append((cyc.start_pfn, cyc.npages))
    # Both bitmap halves are block-aligned: pad the 2nd to its full size.
    # (Only when the bitmap leaves a gap: a bitmap filling its blocks
    # exactly would lose its last byte.)
    pad_at = layout.bitmap2_offset + layout.bitmap_half_blocks * ps
    if pad_at > layout.bitmap2_offset + (source.max_pfn + 7) // 8:
        sink.pwrite(b"\0", pad_at - 1)
    stats.warnings += classifier.result.warnings
    for cid, name in CLASS_NAMES.items():
        stats.excluded[name] = classifier.result.counts[cid]

    # Pass 2: descriptors and page data (a split piece: of its range only,
    # but the descriptor area is sized for the whole dump, as makedumpfile).
    expected = stats.dumpable
    stream = PageStream(sink, layout.desc_offset, layout.desc_offset + PAGE_DESC.size * stats.dumpable)
    zero_offset = None
    if level & 1:
        zero_offset = stream.write_raw_data(bytes(ps))
    encoder = PageEncoder(codec, ps, options.threads, options.zlib_encoder,
                          zero_test=bool(level & 1), dedup=options.dedup)
    dedup = None
    if options.dedup:
        if sink.pread(0, 0) is None:
            raise UsageError("--dedup needs an output that can be read back (not -F)")
        dedup = Deduplicator(stream.read_back)
    flag = codec.flag if codec else 0
    # Sources that map windows from any thread are read on the workers.
    threaded_reads = options.threads > 1 and getattr(source, "thread_safe_windows", False)

    def drain(final: bool = False) -> None:
        for win in encoder.ready(drain=final):
            stats.zero_pages += win.zero_count
            refs = data = None
            if dedup is not None:
                refs, data = dedup.apply(win, stream.next_data_offset)
            desc, n = pack_window(win, ps, flag, stream.next_data_offset,
                                  zero_offset if zero_offset is not None else 0, refs, data)
            stream.add_descriptors(desc, win.data if data is None else data, n)

    progress("Copying data", 0, source.max_pfn)
    try:
        if options.split_range is not None:
            expected = 0
        for start, npages in cycles:
            if start >= hi or start + npages <= lo:
                continue
            bitmap2 = store.read(start, (npages + 7) // 8)
            if options.split_range is not None:
                bitmap2 = _clip_bits(bitmap2, start, npages, lo, hi)
                expected += count_bits(bitmap2, npages)
            for blk in range(0, npages, WINDOW_PAGES):
                nblk = min(WINDOW_PAGES, npages - blk)
                if not any(_bit_slice(bitmap2, blk, nblk)):
                    continue
                if threaded_reads:
                    wmask = _bit_slice(bitmap2, blk, nblk)
                    encoder.submit(partial(source.window, start + blk, nblk), nblk, wmask)
                else:
                    for pfn, n, view in source.page_windows(start + blk, nblk):
                        encoder.submit_view(view, n, _bit_slice(bitmap2, pfn - start, n))
                        view.release()
                drain()
                progress("Copying data", start + blk + nblk, source.max_pfn)
        drain(final=True)
    finally:
        encoder.close()
    if dedup is not None:
        stats.dedup_pages, stats.dedup_bytes_saved = dedup.pages, dedup.bytes_saved
    stream.flush()
    erase = getattr(getattr(source, "header", None), "eraseinfo", b"") or b""
    if erase:
        # Re-filtering keeps the record of what an earlier run erased.
        fields.eraseinfo_offset, fields.eraseinfo_size = stream.data_pos, len(erase)
        sink.pwrite(erase, stream.data_pos)
    stats.excluded["zero"] = stats.zero_pages
    stats.pages_written = stream.pages - stats.zero_pages
    if stream.pages != expected:
        raise DumpFilterError(
            f"internal error: wrote {stream.pages} descriptors for {expected} dumpable pages")
    # Headers last: only a finished run has a valid signature.
    sink.pwrite(pack_headers(layout, fields), 0)
    sink.flush()
    stats.bytes_written = stream.data_pos
    return stats

