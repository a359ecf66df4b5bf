"""``--split`` (makedumpfile-reference.md §1.12).

``split_dump`` scans the dump once (every pfn classified once; the
bitmaps kept in a temporary file), counts dumpable pages per splitblock,
chooses piece boundaries at splitblock multiples so that each piece gets
about ``num_dumpable / n`` pages, then writes the pieces in parallel, one
forked process each, all reading the same bitmaps: every piece is a
complete kdump file with the whole machine's bitmaps, its ``[start_pfn,
end_pfn)`` in the sub header and the descriptors/data of its range only.

``dumpfilter.writers.reassemble`` merges a set back into one file.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
from contextlib import ExitStack
from typing import List, Optional, Sequence, Tuple

from dumpfilter.errors import DumpFilterError, UsageError
from dumpfilter.filter.job import FilterOptions, FilterStats, kdump_writer, plan, write_pages
from dumpfilter.filter.scan import TempBitmaps, scan
from dumpfilter.readers.base import DumpSource
from dumpfilter.writers.output import OutputFile
from dumpfilter.writers.sink import FileSink

#: makedumpfile's default splitblock: 1 GiB of physical address space.
DEFAULT_SPLITBLOCK_KB = 1 << 20


# ------------------------------------------------------------------ split

def choose_ranges(block_counts: Sequence[int], block_pfns: int, max_pfn: int,
                  n: int) -> List[Tuple[int, int]]:
    """Piece ranges ``[start, end)``: boundaries at multiples of
    ``block_pfns``; piece k ends at the first block boundary where the
    running count reaches ``(k+1) * total / n``."""
    total = sum(block_counts)
    bounds, acc, k = [0], 0, 1
    for i, c in enumerate(block_counts):
        acc += c
        while k < n and acc * n >= k * total and total:
            bounds.append(min((i + 1) * block_pfns, max_pfn))
            k += 1
    while len(bounds) < n:
        bounds.append(max_pfn)  # nothing left: empty trailing pieces
    bounds.append(max_pfn)
    return [(bounds[i], bounds[i + 1]) for i in range(n)]


def _block_counts(res, bitmap2, block_pfns: int, max_pfn: int) -> List[int]:
    """Dumpable pages per splitblock, from the scan's 2nd bitmap."""
    counts = [0] * -(-max_pfn // block_pfns)
    for start, npages in res.cycles:
        b2 = int.from_bytes(bitmap2(start, (npages + 7) // 8), "little")
        pfn, end = start, start + npages
        while pfn < end:
            nxt = min(end, (pfn // block_pfns + 1) * block_pfns)
            part = (b2 >> (pfn - start)) & ((1 << (nxt - pfn)) - 1)
            counts[pfn // block_pfns] += bin(part).count("1")
            pfn = nxt
    return counts


#: What the forked piece writers inherit (set just before the fork).
_PIECES: dict = {}


def _write_piece(i: int):
    """Child process: piece ``i`` — the shared bitmaps copied in, then the
    pages of its range. Returns (stats, error message)."""
    st = _PIECES
    p, res, store, out, rng = st["plan"], st["scan"], st["store"], st["outputs"][i], st["ranges"][i]
    try:
        stats = FilterStats(max_mapnr=p.source.max_pfn)
        writer = kdump_writer(p, FileSink(out.fd), split_range=rng)
        writer.begin()
        for start, npages in res.cycles:
            nbytes = (npages + 7) // 8
            writer.write_bitmaps(start, store.bitmap1(start, nbytes), store.bitmap2(start, nbytes))
        writer.end_bitmaps()
        write_pages(p, res, store.bitmap2, writer, stats, pfn_range=rng)
        stats.bytes_written = writer.finish(p.source.header.eraseinfo)
        return stats, None
    except DumpFilterError as e:
        return None, str(e)
    except OSError as e:
        return None, f"{out.path}: {e.strerror or e}"


def split_dump(source: DumpSource, outputs: Sequence[str], options: FilterOptions,
               force: bool = False, splitblock_kb: Optional[int] = None) -> FilterStats:
    """Write ``source`` as ``len(outputs)`` split pieces; returns the stats
    of the whole dump (page counts summed over pieces)."""
    if len(outputs) < 2:
        raise UsageError("--split needs at least two DUMPFILEs")
    if len(set(map(os.path.realpath, outputs))) != len(outputs):
        raise UsageError("--split: the same DUMPFILE is given twice")
    ps = source.page_size
    block_pfns = max(1, (splitblock_kb or DEFAULT_SPLITBLOCK_KB) * 1024 // ps)
    with ExitStack() as stack:
        files = [stack.enter_context(OutputFile(out, force, [source.path])) for out in outputs]
        p = plan(source, options)
        store = TempBitmaps(source.max_pfn, options.work_dir)
        stack.callback(store.close)
        res = scan(p, store.put, progress=p.progress)
        ranges = choose_ranges(_block_counts(res, store.bitmap2, block_pfns, source.max_pfn),
                               block_pfns, source.max_pfn, len(outputs))
        threads = max(1, options.threads // len(outputs))
        piece_plan = dataclasses.replace(p, options=dataclasses.replace(
            options, progress=None, threads=threads))
        _PIECES.update(plan=piece_plan, scan=res, store=store, outputs=files, ranges=ranges)
        try:
            ctx = multiprocessing.get_context("fork")
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(len(outputs), mp_context=ctx) as pool:
                results = list(pool.map(_write_piece, range(len(outputs))))
        finally:
            _PIECES.clear()
        for _stats, err in results:
            if err:
                raise DumpFilterError(err)
        total = FilterStats(max_mapnr=source.max_pfn)
        total.add_scan(res)
        total.zero_pages = sum(r[0].zero_pages for r in results)
        total.excluded["zero"] = total.zero_pages
        total.pages_written = sum(r[0].pages_written for r in results)
        total.bytes_written = sum(r[0].bytes_written for r in results)
        total.encoder = results[0][0].encoder
        total.split_ranges = ranges
        p.progress("Copying data", 1, 1)
        for f in files:
            f.keep()
        return total
