"""A ``--split`` set (makedumpfile-reference.md §1.12) read as one dump."""
from __future__ import annotations

import os
from typing import Iterable, List, Sequence, Tuple, Union

from dumpfilter.errors import CorruptDumpError
from dumpfilter.readers.base import DumpHeaderInfo, DumpSource, byte_view
from dumpfilter.readers.kdump import KdumpSource
from dumpfilter.vmcoreinfo import VmcoreInfo


class KdumpSplitSet(DumpSource):
    """The pieces of a ``makedumpfile --split`` dump read as one dump: each
    piece holds the pages of its ``[start_pfn, end_pfn)``; reads are routed
    by pfn (pfns no piece covers are absent). Header, notes and RAM map come
    from the first piece (``incomplete`` if any piece is)."""

    format_name = "split kdump"

    def __init__(self, pieces: Iterable[Union[str, "os.PathLike[str]", KdumpSource]]):
        opened: List[KdumpSource] = []
        try:
            for p in pieces:
                opened.append(p if isinstance(p, KdumpSource) else KdumpSource(p))
            if not opened:
                raise CorruptDumpError("split dump: no pieces given")
            for p in opened:
                if not p.split:
                    raise CorruptDumpError(f"{p.path}: not a split dump piece (split = 0)")
            opened.sort(key=lambda p: (p.start_pfn, p.end_pfn))
            first = opened[0]
            for p in opened[1:]:
                if p.page_size != first.page_size or p.max_pfn != first.max_pfn:
                    raise CorruptDumpError(
                        f"{p.path}: block_size/max_mapnr ({p.page_size}, {p.max_pfn}) differ"
                        f" from {first.path} ({first.page_size}, {first.max_pfn})"
                    )
            for a, b in zip(opened, opened[1:]):
                if b.start_pfn < a.end_pfn:
                    raise CorruptDumpError(
                        f"split pieces {a.path} and {b.path} overlap ([{a.start_pfn:#x},"
                        f" {a.end_pfn:#x}) and [{b.start_pfn:#x}, {b.end_pfn:#x}))"
                    )
        except BaseException:
            for p in opened:
                p.close()
            raise
        self.pieces: Tuple[KdumpSource, ...] = tuple(opened)
        self.path = ", ".join(p.path for p in opened)
        self.page_size = first.page_size
        self.max_pfn = first.max_pfn
        self.notes = first.notes
        self.disk_header = first.disk_header
        self.sub_header = first.sub_header
        self.utsname_raw = first.utsname_raw
        self.e_machine = first.e_machine
        h = first.header
        self.header = DumpHeaderInfo(
            dump_level=h.dump_level,
            compression=h.compression,
            incomplete=any(p.header.incomplete for p in opened),
            excluded_vmemmap=h.excluded_vmemmap,
            phys_base=h.phys_base,
            eraseinfo=h.eraseinfo,
        )

    @property
    def vmcoreinfo_raw(self) -> bytes:
        return self.pieces[0].vmcoreinfo_raw

    @property
    def vmcoreinfo(self) -> VmcoreInfo:
        return self.pieces[0].vmcoreinfo

    def ram_pfn_ranges(self) -> Sequence[Tuple[int, int]]:
        return self.pieces[0].ram_pfn_ranges()

    def _overlaps(self, start: int, n: int):
        end = start + n
        for p in self.pieces:
            lo, hi = max(start, p.start_pfn), min(end, p.end_pfn)
            if lo < hi:
                yield p, lo, hi

    def present_bitmap(self, start_pfn: int, npages: int, out: bytearray) -> None:
        v = 0
        for p, lo, hi in self._overlaps(start_pfn, npages):
            tmp = bytearray((hi - lo + 7) // 8)
            p.present_bitmap(lo, hi - lo, tmp)
            v |= int.from_bytes(tmp, "little") << (lo - start_pfn)
        nbytes = (npages + 7) // 8
        out[:nbytes] = v.to_bytes(nbytes, "little")

    def read_pages(self, start_pfn: int, npages: int, out: memoryview) -> None:
        ps = self.page_size
        mv = byte_view(out)
        parts = list(self._overlaps(start_pfn, npages))
        if sum(hi - lo for _p, lo, hi in parts) < npages:  # some pfns in no piece
            mv[: npages * ps] = bytes(npages * ps)
        for p, lo, hi in parts:
            p.read_pages(lo, hi - lo, mv[(lo - start_pfn) * ps : (hi - start_pfn) * ps])

    def close(self) -> None:
        for p in self.pieces:
            p.close()


def missing_pieces(pieces: Sequence[KdumpSource]) -> List[Tuple[int, int]]:
    """The pfn ranges ``[lo, hi)`` of ``[0, max_mapnr)`` that no piece of a
    split set covers (the pieces' ranges from their sub headers); empty
    for a complete set."""
    missing = []
    at = 0
    for p in sorted(pieces, key=lambda p: p.start_pfn):
        if p.start_pfn > at:
            missing.append((at, p.start_pfn))
        at = max(at, p.end_pfn)
    if pieces and at < pieces[0].max_pfn:
        missing.append((at, pieces[0].max_pfn))
    return missing


def incomplete_message(pieces: Sequence[KdumpSource]) -> str:
    """One line: how many pieces the set has at least and which are
    missing (by pfn range), for a set ``missing_pieces`` finds holes in."""
    gaps = missing_pieces(pieces)
    names = ", ".join(os.path.basename(p.path) for p in pieces)
    n = len(pieces) + len(gaps)
    ranges = ", ".join(f"pfns {lo:#x}-{hi - 1:#x}" for lo, hi in gaps)
    return (f"{names}: {len(pieces)} piece{'s' if len(pieces) > 1 else ''} of a --split dump"
            f" that has at least {n} pieces; missing the piece{'s' if len(gaps) > 1 else ''}"
            f" holding {ranges}: give all pieces together")


def open_split(paths: Sequence[Union[str, "os.PathLike[str]"]]) -> KdumpSplitSet:
    """Open the pieces of a split dump as one source."""
    return KdumpSplitSet(paths)
