"""``--reassemble`` (makedumpfile-reference.md §1.12): a complete split set
merged back into one file: headers, notes and bitmaps from the first piece
(split fields zeroed), descriptors rebased, each piece's shared zero page
re-pointed to one zero page written first. With the same codec this is
byte-identical to an unsplit run.
"""
from __future__ import annotations

import os
from contextlib import ExitStack
from typing import Sequence

from dumpfilter.errors import CorruptDumpError
from dumpfilter.writers.output import OutputFile
from dumpfilter.formats.kdump import DISK_HEADER, PAGE_DESC, SUB_HEADER, SUB_HEADER_FIELDS

_DESC_BATCH = 4096

def _check_set(pieces) -> None:
    first = pieces[0]
    for p in pieces:
        if not p.split:
            raise CorruptDumpError(f"{p.path}: not a split dump piece (split = 0)")
    for p in pieces[1:]:
        same = (p.page_size == first.page_size and p.max_pfn == first.max_pfn
                and p.notes == first.notes and p.desc_offset == first.desc_offset
                and p.sub_header.dump_level == first.sub_header.dump_level
                and p.file.pread(0, DISK_HEADER.size) == first.file.pread(0, DISK_HEADER.size)
                and _bitmaps(p) == _bitmaps(first))
        if not same:
            raise CorruptDumpError(
                f"{p.path} is not a piece of the same dump as {first.path}")
    pos = 0
    for p in pieces:
        if p.start_pfn != pos:
            what = "overlap" if p.start_pfn < pos else "a piece is missing"
            raise CorruptDumpError(
                f"split pieces do not cover the dump ({what} at pfn {min(pos, p.start_pfn):#x},"
                f" {p.path} starts at {p.start_pfn:#x})")
        pos = p.end_pfn
    if pos != first.max_pfn:
        raise CorruptDumpError(
            f"split pieces do not cover the dump (a piece is missing from pfn {pos:#x})")


def _bitmaps(p) -> int:
    """A cheap fingerprint of both bitmaps (hash of their bytes)."""
    import hashlib

    h = hashlib.sha1()
    off, end = p.bitmap1_offset, p.desc_offset
    while off < end:
        n = min(1 << 20, end - off)
        h.update(p.file.pread(off, n))
        off += n
    return h.digest()


def reassemble(paths: Sequence[str], out: str, force: bool = False) -> None:
    from dumpfilter.readers.kdump import KdumpSource

    with ExitStack() as stack:
        pieces = [stack.enter_context(KdumpSource(p)) for p in paths]
        pieces.sort(key=lambda p: (p.start_pfn, p.end_pfn))
        _check_set(pieces)
        f = stack.enter_context(OutputFile(out, force, paths))
        _write(pieces, f.fd)
        f.keep()


def _write(pieces, fd: int) -> None:
    first = pieces[0]
    ps = first.page_size
    total = sum(p.num_descriptors for p in pieces)
    # Bitmaps (and the gap before them) verbatim from the first piece.
    off = first.bitmap1_offset
    while off < first.desc_offset:
        n = min(1 << 20, first.desc_offset - off)
        os.pwrite(fd, first.file.pread(off, n), off)
        off += n
    desc_pos = first.desc_offset
    data_start = desc_pos + PAGE_DESC.size * total
    data_pos = data_start
    zero_off = None
    if first.sub_header.dump_level & 1:
        zero_off = data_pos
        os.pwrite(fd, bytes(ps), data_pos)
        data_pos += ps
    for p in pieces:
        # This piece's shared zero page sits at its data area start; a
        # piece reserves the descriptors of the whole dump.
        p_zero = p.desc_offset + PAGE_DESC.size * p.dumpable_pages \
            if p.sub_header.dump_level & 1 else None
        for i in range(0, p.num_descriptors, _DESC_BATCH):
            k = min(_DESC_BATCH, p.num_descriptors - i)
            raw = p.file.pread(p.desc_offset + i * PAGE_DESC.size, k * PAGE_DESC.size)
            if len(raw) != k * PAGE_DESC.size:
                raise CorruptDumpError(f"{p.path}: page descriptor table cut short")
            descs = bytearray()
            data = bytearray()
            for offset, size, fl, pflags in PAGE_DESC.iter_unpack(raw):
                if offset == 0:
                    raise CorruptDumpError(f"{p.path}: incomplete piece (lost page data)")
                if zero_off is not None and offset == p_zero and fl == 0 and size == ps:
                    descs += PAGE_DESC.pack(zero_off, size, fl, pflags)
                    continue
                blob = p.file.pread(offset, size)
                if len(blob) != size:
                    raise CorruptDumpError(f"{p.path}: page data cut short at {offset}")
                descs += PAGE_DESC.pack(data_pos + len(data), size, fl, pflags)
                data += blob
            os.pwrite(fd, descs, desc_pos)
            desc_pos += len(descs)
            os.pwrite(fd, data, data_pos)
            data_pos += len(data)
    erase = first.header.eraseinfo
    eoff = 0
    if erase:
        eoff = data_pos
        os.pwrite(fd, erase, data_pos)
        data_pos += len(erase)
    # Headers last: block 0 from the piece marked incomplete (else the
    # last piece), sub header with the split fields zeroed.
    head = next((p for p in pieces if p.header.incomplete), pieces[-1])
    os.pwrite(fd, head.file.pread(0, ps), 0)
    sub = bytearray(first.file.pread(ps, first.bitmap1_offset - ps))
    fields = dict(zip(SUB_HEADER_FIELDS, SUB_HEADER.unpack_from(sub)))
    fields.update(split=0, start_pfn=0, end_pfn=0, start_pfn_64=0, end_pfn_64=0,
                  offset_eraseinfo=eoff, size_eraseinfo=len(erase))
    SUB_HEADER.pack_into(sub, 0, *fields.values())
    os.pwrite(fd, bytes(sub), ps)
    os.ftruncate(fd, data_pos)
