"""Which page class held a page the dump left out, for the messages of
sections that need it ("user pages were filtered at -d 31").

Reads: the pfn of the page a read did not find (``errors.MissingPageError``
carries its physical address), and the struct pages (kept at every
dump level), classified by the filter's own classifier
(``filter.classify.Classifier``) once per class bit of the dump's level,
over the cycle that holds the pfn. A page no struct-page class explains
was left out for its content (zero pages, ``-d`` bit 1).
"""
from __future__ import annotations

from typing import Optional

#: Dump-level bits whose class the struct page decides, most specific first.
_BITS = ((16, "free pages"), (8, "user pages"), (2, "page-cache pages"),
         (4, "private page-cache pages"))


def class_of_pfn(ctx, pfn: int) -> Optional[str]:
    """"<class> were filtered at -d N" for page ``pfn``, or None when the
    dump level does not explain the missing page (not RAM, not filtered)."""
    from dumpfilter.filter.classify import Classifier

    level = ctx.source.header.dump_level
    if not level or not any(lo <= pfn < hi for lo, hi in ctx.source.ram_pfn_ranges()):
        return None
    for bit, words in _BITS:
        if not level & bit:
            continue
        c = Classifier(ctx.source, ctx.info, bit, mem=ctx.mem, all_ram=True)
        for cyc in c.cycles():
            if cyc.start_pfn <= pfn < cyc.start_pfn + cyc.npages:
                i = pfn - cyc.start_pfn
                if cyc.bitmap1[i >> 3] >> (i & 7) & 1 and not cyc.bitmap2[i >> 3] >> (i & 7) & 1:
                    return f"{words} were filtered at -d {level}"
                break
    if level & 1:
        return f"zero pages were filtered at -d {level}"
    return None


__all__ = ["class_of_pfn"]
