"""The filter job: one dump in, one output of any kind out.

Every output kind runs the same three steps:

1. ``plan`` — the prologue, once: VMCOREINFO parsed, the memory model
   built, the effective dump level (a re-filtered input keeps what it
   excluded), levels above 1 refused without VMCOREINFO;
2. ``scan`` (``dumpfilter.filter.scan``) — pass 1, once: every pfn
   classified, the bitmaps and per-class counts;
3. pass 2 — the pages the bitmaps keep, window by window, handed to a
   writer that only writes: encoded windows (zero test + compression,
   ``dumpfilter.filter.encode``) for kdump-compressed files and flattened
   streams (``filter_kdump``), raw segments for ELF (``filter_elf``).
   ``--split`` (``dumpfilter.filter.split``) shares one scan between its
   pieces.
"""
from __future__ import annotations

import re
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

from dumpfilter.codecs import CODECS, Codec
from dumpfilter.codecs.encoders import page_compressor
from dumpfilter.errors import DumpFilterError, FaultError, UsageError
from dumpfilter.filter.dedup import Deduplicator
from dumpfilter.filter.encode import BATCH_PAGES, Batch, PageEncoder
from dumpfilter.filter.scan import ScanResult, SinkBitmaps, TempBitmaps, scan
from dumpfilter.formats.bitmap import clip_bits, count_bits
from dumpfilter.formats.elf import EM_X86_64
from dumpfilter.memory import kernel_memory, phys_base
from dumpfilter.readers.base import DumpSource
from dumpfilter.vmcoreinfo import VmcoreInfo
from dumpfilter.writers.elf import ElfWriter, plan_loads
from dumpfilter.writers.kdump import KdumpHeaderFields, KdumpLayout, KdumpWriter
from dumpfilter.writers.sink import Sink

#: Pages handed to zero detection/compression at once (1 MiB at 4 KiB):
#: small enough to keep the resident set low with several windows in flight.
WINDOW_PAGES = 256

Progress = Callable[[str, int, int], None]


@dataclass
class FilterOptions:
    dump_level: int = 0
    codec: Optional[str] = None  # "zlib", "lzo", "snappy", "zstd" or None
    threads: int = 1  # compression threads (--num-threads)
    #: -c encoder: "libdeflate", "zlib" (makedumpfile's bytes), "isal";
    #: None: libdeflate when the deflate wheel is there, else zlib.
    zlib_encoder: Optional[str] = None
    dedup: bool = False  # identical pages share one stored block
    # Called as progress(step, done, total); the CLI prints it.
    progress: Optional[Progress] = None
    #: Where temporary files go (--work-dir); None: $TMPDIR.
    work_dir: Optional[str] = None


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
    #: Which encoder compressed the pages (its bytes depend on it).
    encoder: str = ""
    #: --split: the pieces' pfn ranges.
    split_ranges: List[Tuple[int, int]] = field(default_factory=list)

    @property
    def excluded_total(self) -> int:
        return sum(self.excluded.values())

    @property
    def remaining(self) -> int:
        return self.original - self.excluded_total

    @property
    def memory_hole(self) -> int:
        return self.max_mapnr - self.original

    def add_scan(self, res: ScanResult) -> None:
        self.original, self.dumpable = res.original, res.dumpable
        self.excluded.update(res.excluded)
        self.warnings += res.warnings


@dataclass
class Plan:
    """What the prologue established about one input."""

    source: DumpSource
    info: VmcoreInfo
    mem: object  # the kernel memory model, or None
    level: int  # effective dump level
    options: FilterOptions

    @property
    def codec(self) -> Optional[Codec]:
        return CODECS[self.options.codec] if self.options.codec else None

    @property
    def progress(self) -> Progress:
        return self.options.progress or (lambda *a: None)


def plan(source: DumpSource, options: FilterOptions) -> Plan:
    """The prologue every output kind shares."""
    info = VmcoreInfo.parse(source.vmcoreinfo_raw)
    # Re-filtering keeps what the earlier run excluded excluded.
    level = options.dump_level | source.header.dump_level
    if level & 0x1E and not info:
        raise DumpFilterError(
            f"{source.path}: no VMCOREINFO; only dump levels 0 and 1 are possible")
    return Plan(source, info, kernel_memory(source, info), level, options)


# ------------------------------------------------------------ kdump output

def read_utsname(source: DumpSource, info: VmcoreInfo, mem) -> bytes:
    """``struct new_utsname`` (6 x 65 bytes) of the dumped kernel: from
    ``init_uts_ns`` in memory, else from a kdump input's header."""
    addr = info.symbol("init_uts_ns")
    if addr is not None and mem is not None:
        try:
            return mem.read(addr + (info.offset("uts_namespace.name") or 0), 390)
        except FaultError:
            pass
    if source.utsname_raw:
        return source.utsname_raw
    raise DumpFilterError(f"{source.path}: cannot read the kernel's utsname (init_uts_ns)")


def kdump_writer(p: Plan, sink: Sink, split_range: Optional[Tuple[int, int]] = None) -> KdumpWriter:
    """A writer for ``p``'s kdump-compressed output (one split piece when
    ``split_range`` is given)."""
    src = p.source
    codec = p.codec
    fields = KdumpHeaderFields(
        utsname=read_utsname(src, p.info, p.mem),
        crashtime=p.info.crashtime or 0,
        phys_base=phys_base(p.info, src),
        dump_level=p.level,
        notes=src.notes,
        status=codec.flag if codec else 0,
    )
    if split_range is not None:
        fields.split, (fields.start_pfn, fields.end_pfn) = True, split_range
    layout = KdumpLayout(src.page_size, src.max_pfn, len(src.notes))
    return KdumpWriter(sink, layout, fields, codec.flag if codec else 0)


_NONZERO = re.compile(rb"[^\x00]")
#: Bytes of bitmap per window (cycles start on byte boundaries).
_WINDOW_BYTES = WINDOW_PAGES // 8


def _windows(bm: bytes, npages: int):
    """``(first pfn, pfns, mask, kept pages)`` of the windows of a cycle's
    bitmap that keep something; runs of empty windows are skipped at C
    speed (a regex search for the next non-zero byte)."""
    nbytes = (npages + 7) // 8
    pos = 0
    while True:
        m = _NONZERO.search(bm, pos, nbytes)
        if m is None:
            return
        first = m.start() - m.start() % _WINDOW_BYTES
        blk = first * 8
        nblk = min(WINDOW_PAGES, npages - blk)
        chunk = bm[first:first + (nblk + 7) // 8]
        v = int.from_bytes(chunk, "little") & ((1 << nblk) - 1)
        if v:
            yield blk, nblk, v.to_bytes(len(chunk), "little"), bin(v).count("1")
        pos = first + _WINDOW_BYTES


def write_pages(p: Plan, res: ScanResult, bitmap2: Callable[[int, int], bytes],
                writer: KdumpWriter, stats: FilterStats,
                pfn_range: Optional[Tuple[int, int]] = None) -> None:
    """Pass 2 of kdump output: the dumpable pages of ``pfn_range`` (all
    when None) encoded window by window, in pfn order, into ``writer``;
    ``bitmap2(start_pfn, nbytes)`` reads the scan's 2nd bitmap."""
    opts = p.options
    src = p.source
    ps = src.page_size
    lo, hi = pfn_range if pfn_range is not None else (0, src.max_pfn)
    # A split piece reserves the descriptors of the whole dump (as
    # makedumpfile) but writes only its range's.
    writer.start_pages(res.dumpable, zero_page=bool(p.level & 1))
    compressor = page_compressor(opts.codec, opts.zlib_encoder, ps) if opts.codec else None
    stats.encoder = compressor.description if compressor else "none (pages stored raw)"
    dedup = None
    if opts.dedup:
        if not writer.sink.readable:
            raise UsageError("--dedup needs an output that can be read back (not -F)")
        dedup = Deduplicator(writer.read_back)
    expected = 0

    def drain(encoder: PageEncoder, final: bool = False) -> None:
        for win in encoder.ready(drain=final):
            stats.zero_pages += win.zero_count
            refs = data = None
            if dedup is not None:
                refs, data = dedup.apply(win, writer.next_data_offset)
            writer.add_window(win, refs, data)

    step = "Copying data"
    done = 0
    p.progress(step, done, src.max_pfn)
    with ExitStack() as stack:
        # Sources whose windows can be read from any thread are read on
        # the workers.
        encoder = PageEncoder(compressor, ps, src.gather, opts.threads,
                              zero_test=bool(p.level & 1), dedup=opts.dedup,
                              gather_on_workers=src.thread_safe_windows)
        stack.callback(encoder.close)
        batch = Batch()
        for start, npages in res.cycles:
            if start >= hi or start + npages <= lo:
                continue
            bm = clip_bits(bitmap2(start, (npages + 7) // 8), start, npages, lo, hi)
            expected += count_bits(bm, npages)
            for blk, nblk, wmask, kept in _windows(bm, npages):
                batch.windows.append((start + blk, nblk, wmask))
                batch.kept += kept
                if batch.kept >= BATCH_PAGES:
                    encoder.submit(batch)
                    batch = Batch()
                    drain(encoder)
                    done = start + blk + nblk
                    p.progress(step, done, src.max_pfn)
        encoder.submit(batch)
        drain(encoder, final=True)
    if done < src.max_pfn:
        p.progress(step, src.max_pfn, src.max_pfn)
    if dedup is not None:
        stats.dedup_pages, stats.dedup_bytes_saved = dedup.pages, dedup.bytes_saved
    if writer.pages != expected:
        raise DumpFilterError(
            f"internal error: wrote {writer.pages} descriptors for {expected} dumpable pages")
    stats.excluded["zero"] = stats.zero_pages
    stats.pages_written = writer.pages - stats.zero_pages


def filter_kdump(source: DumpSource, sink: Sink, options: FilterOptions) -> FilterStats:
    """Filter ``source`` into a kdump-compressed file (or a flattened
    stream: a ``FlatSink``) written to ``sink``."""
    p = plan(source, options)
    writer = kdump_writer(p, sink)
    stats = FilterStats(max_mapnr=source.max_pfn)
    writer.begin()
    with ExitStack() as stack:
        if sink.readable:
            store = SinkBitmaps(sink, writer.layout.bitmap2_offset)
        else:
            store = TempBitmaps(source.max_pfn, options.work_dir)
            stack.callback(store.close)

        def emit(start: int, b1, b2) -> None:
            writer.write_bitmaps(start, b1, b2)
            store.put(start, b1, b2)

        res = scan(p, emit, progress=p.progress)
        writer.end_bitmaps()
        stats.add_scan(res)
        write_pages(p, res, store.bitmap2, writer, stats)
    stats.bytes_written = writer.finish(source.header.eraseinfo)
    return stats


# -------------------------------------------------------------- ELF output

def filter_elf(source: DumpSource, sink: Sink, options: FilterOptions) -> FilterStats:
    """Filter an ELF ``source`` into an ELF dump written to ``sink``
    (``-E``, makedumpfile's layout; see ``dumpfilter.writers.elf``)."""
    p = plan(source, options)
    ps = source.page_size
    stats = FilterStats(max_mapnr=source.max_pfn)
    with ExitStack() as stack:
        store = TempBitmaps(source.max_pfn, options.work_dir)
        stack.callback(store.close)
        res = scan(p, store.put, clear_zero_pages=True, progress=p.progress)
        stats.add_scan(res)
        stats.zero_pages = res.zero_pages
        loads, note_off, data_off = plan_loads(source.load_segments(), ps, source.max_pfn,
                                               store.bitmap2, len(source.notes))
    writer = ElfWriter(sink)
    total = sum(ld.filesz for ld in loads)
    done = 0
    step = "Copying data"
    p.progress(step, 0, total)
    # Short excluded runs inside a segment are copied as they are.
    for ld in loads:
        if not ld.filesz:
            continue
        first, pos, end = ld.paddr // ps, ld.paddr, ld.paddr + ld.filesz
        for pfn, n, view in source.page_windows(first, -(-end // ps) - first):
            a, b = max(pos, pfn * ps), min(end, (pfn + n) * ps)
            writer.write_data(view[a - pfn * ps:b - pfn * ps], ld.offset + (a - ld.paddr))
            view.release()
            done += b - a
            p.progress(step, done, total)
    stats.pages_written = -(-total // ps)
    stats.bytes_written = data_off + total
    writer.finish(loads, source.notes, note_off, source.e_machine or EM_X86_64)
    return stats
