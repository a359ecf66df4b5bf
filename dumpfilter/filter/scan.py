"""Pass 1 of every filter job: the bitmaps and the per-class counts.

``scan`` classifies every pfn once, cycle by cycle (``Classifier``), hands
each cycle's 1st bitmap (RAM) and 2nd bitmap (dumpable) to the caller and
keeps the 2nd bitmap in a *bitmap store* for pass 2. Memory stays fixed:
one cycle of bitmaps at a time.

Stores: ``SinkBitmaps`` reads the 2nd bitmap back from a readable output
that already holds it (a kdump file); ``TempBitmaps`` keeps both bitmaps in
an unlinked temporary file (``--work-dir``, else ``$TMPDIR``) for outputs
that cannot be read back (``-F``), for ``-E`` and for ``--split``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from dumpfilter.filter.classify import CLASS_NAMES, Classifier
from dumpfilter.filter.pages import find_zero_pages
from dumpfilter.formats.bitmap import bit_slice, clear_bits, count_bits


class SinkBitmaps:
    """The 2nd bitmap as written into a readable sink at ``offset``."""

    def __init__(self, sink, offset: int):
        self.sink, self.offset = sink, offset

    def put(self, start_pfn: int, bitmap1, bitmap2) -> None:
        pass  # the writer put them there

    def bitmap2(self, start_pfn: int, nbytes: int) -> bytes:
        return self.sink.pread(nbytes, self.offset + start_pfn // 8)

    def close(self) -> None:
        pass


class TempBitmaps:
    """Both bitmaps of ``max_pfn`` pfns in an unlinked temporary file
    (positional I/O only: forked ``--split`` pieces read it at once)."""

    def __init__(self, max_pfn: int, work_dir: Optional[str] = None):
        import tempfile

        self.half = (max_pfn + 7) // 8
        self.tmp = tempfile.TemporaryFile(prefix="dumpfilter-bitmap", dir=work_dir)
        self.fd = self.tmp.fileno()

    def put(self, start_pfn: int, bitmap1, bitmap2) -> None:
        os.pwrite(self.fd, bitmap1, start_pfn // 8)
        os.pwrite(self.fd, bitmap2, self.half + start_pfn // 8)

    def bitmap1(self, start_pfn: int, nbytes: int) -> bytes:
        return os.pread(self.fd, nbytes, start_pfn // 8)

    def bitmap2(self, start_pfn: int, nbytes: int) -> bytes:
        return os.pread(self.fd, nbytes, self.half + start_pfn // 8)

    def close(self) -> None:
        self.tmp.close()


@dataclass
class ScanResult:
    """What pass 1 found. ``cycles``: ``(start_pfn, npages)`` in order."""

    cycles: List[Tuple[int, int]] = field(default_factory=list)
    original: int = 0  # set bits of the 1st bitmaps (RAM pages)
    dumpable: int = 0  # set bits of the 2nd bitmaps
    zero_pages: int = 0  # only when zero pages were cleared in the scan
    excluded: Dict[str, int] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)


def scan(plan, emit: Callable[[int, bytes, bytes], None], *, clear_zero_pages: bool = False,
         progress: Optional[Callable[[str, int, int], None]] = None) -> ScanResult:
    """Classify ``plan.source`` at ``plan.level``; ``emit(start_pfn,
    bitmap1, bitmap2)`` receives every cycle. With ``clear_zero_pages``
    (ELF output, where every header precedes the data) the zero pages of
    dump level bit 1 are found here, by content, and cleared."""
    source = plan.source
    ps = source.page_size
    progress = progress or (lambda *a: None)
    classifier = Classifier(source, plan.info, plan.level, mem=plan.mem)
    res = ScanResult()
    step = "Excluding unnecessary pages"
    progress(step, 0, source.max_pfn)
    for cyc in classifier.cycles():
        progress(step, cyc.start_pfn + cyc.npages, source.max_pfn)
        b2 = cyc.bitmap2
        if clear_zero_pages and plan.level & 1 and any(b2):
            for pfn, n, view in source.page_windows(cyc.start_pfn, cyc.npages):
                rel = pfn - cyc.start_pfn
                zero, count = find_zero_pages(view, n, ps, bit_slice(b2, rel, n))
                view.release()
                if count:
                    res.zero_pages += count
                    clear_bits(b2, rel, n, zero)
        res.original += count_bits(cyc.bitmap1, cyc.npages)
        res.dumpable += count_bits(b2, cyc.npages)
        res.cycles.append((cyc.start_pfn, cyc.npages))
        emit(cyc.start_pfn, cyc.bitmap1, b2)
    res.warnings += classifier.result.warnings
    for cid, name in CLASS_NAMES.items():
        res.excluded[name] = classifier.result.counts[cid]
    if clear_zero_pages:
        res.excluded["zero"] = res.zero_pages
    return res
