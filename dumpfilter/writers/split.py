"""``--split`` and ``--reassemble`` (makedumpfile-reference.md §1.12).

``split_dump`` classifies the dump once to count dumpable pages per
splitblock, chooses piece boundaries at splitblock multiples so that each
piece gets about ``num_dumpable / n`` pages, then writes the pieces in
parallel, one forked process each (``filter_dump`` with ``split_range``):
every piece is a complete kdump file with the whole machine's bitmaps, its
``[start_pfn, end_pfn)`` in the sub header and the descriptors/data of its
range only.

``reassemble`` merges a complete set back into one file: headers, notes and
bitmaps from the first piece (split fields zeroed), descriptors rebased,
each piece's shared zero page re-pointed to one zero page written first.
With the same codec this is byte-identical to an unsplit run.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import List, Optional, Sequence, Tuple

from dumpfilter.errors import CorruptDumpError, DumpFilterError, OutputExistsError, UsageError
from dumpfilter.kdumpformat import DISK_HEADER, PAGE_DESC, SUB_HEADER, SUB_HEADER_FIELDS

#: makedumpfile's default splitblock: 1 GiB of physical address space.
DEFAULT_SPLITBLOCK_KB = 1 << 20
_DESC_BATCH = 4096


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


def _count_blocks(path: str, options, block_pfns: int) -> Tuple[List[int], int]:
    from dumpfilter.classify import Classifier
    from dumpfilter.memory.x86_64 import X86_64Memory
    from dumpfilter.readers import open_dump
    from dumpfilter.vmcoreinfo import VmcoreInfo

    with open_dump(path) as source:
        info = VmcoreInfo.parse(source.vmcoreinfo_raw)
        level = options.dump_level | getattr(source.header, "dump_level", 0)
        if level & 0x1E and not info:
            raise DumpFilterError(
                f"{source.path}: no VMCOREINFO; only dump levels 0 and 1 are possible")
        mem = (X86_64Memory(source, info)
               if info.symbol("init_top_pgt") or info.symbol("swapper_pg_dir") else None)
        counts = [0] * -(-source.max_pfn // block_pfns)
        for cyc in Classifier(source, info, level, mem=mem).cycles():
            b2 = int.from_bytes(cyc.bitmap2, "little")
            pfn, end = cyc.start_pfn, cyc.start_pfn + cyc.npages
            while pfn < end:
                nxt = min(end, (pfn // block_pfns + 1) * block_pfns)
                part = (b2 >> (pfn - cyc.start_pfn)) & ((1 << (nxt - pfn)) - 1)
                counts[pfn // block_pfns] += bin(part).count("1")
                pfn = nxt
        return counts, source.max_pfn


def _write_piece(path: str, out: str, options):
    """Child process: one piece."""
    from dumpfilter.filter import filter_dump
    from dumpfilter.readers import open_dump
    from dumpfilter.writers.kdump import FileSink

    try:
        fd = os.open(out, os.O_RDWR)
        try:
            with open_dump(path) as source:
                stats = filter_dump(source, FileSink(fd), options)
        finally:
            os.close(fd)
        return stats, None
    except DumpFilterError as e:
        return None, str(e)
    except OSError as e:
        return None, f"{out}: {e.strerror or e}"


def split_dump(path: str, outputs: Sequence[str], options, force: bool = False,
               splitblock_kb: Optional[int] = None):
    """Write ``path`` as ``len(outputs)`` split pieces; returns the stats of
    the whole dump (page counts summed over pieces)."""
    if len(outputs) < 2:
        raise UsageError("--split needs at least two DUMPFILEs")
    if len(set(map(os.path.realpath, outputs))) != len(outputs):
        raise UsageError("--split: the same DUMPFILE is given twice")
    created: List[str] = []
    done = False
    try:
        for out in outputs:
            flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
            try:
                os.close(os.open(out, flags, 0o644))
            except FileExistsError:
                raise OutputExistsError(f"{out} already exists; use -f to overwrite it") from None
            created.append(out)
        from dumpfilter.readers import open_dump

        with open_dump(path) as probe:
            ps = probe.page_size
        block_pfns = max(1, (splitblock_kb or DEFAULT_SPLITBLOCK_KB) * 1024 // ps)
        counts, max_pfn = _count_blocks(path, options, block_pfns)
        ranges = choose_ranges(counts, block_pfns, max_pfn, len(outputs))
        if options.progress:
            options.progress("Excluding unnecessary pages", 1, 1)
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(len(outputs), mp_context=ctx) as pool:
            threads = max(1, options.threads // len(outputs))
            futs = [pool.submit(_write_piece, path, out,
                                dataclasses.replace(options, split_range=rng, progress=None,
                                                    threads=threads))
                    for out, rng in zip(outputs, ranges)]
            results = [f.result() for f in futs]
        for stats, err in results:
            if err:
                raise DumpFilterError(err)
        total = results[0][0]
        total.zero_pages = sum(r[0].zero_pages for r in results)
        total.excluded["zero"] = total.zero_pages
        total.pages_written = sum(r[0].pages_written for r in results)
        total.bytes_written = sum(r[0].bytes_written for r in results)
        total.split_ranges = ranges
        if options.progress:
            options.progress("Copying data", 1, 1)
        done = True
        return total
    finally:
        if not done:
            for out in created:
                try:
                    os.unlink(out)
                except OSError:
                    pass


# ------------------------------------------------------------- reassemble

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

    pieces = []
    fd = -1
    done = False
    try:
        for p in paths:
            pieces.append(KdumpSource(p))
        pieces.sort(key=lambda p: (p.start_pfn, p.end_pfn))
        _check_set(pieces)
        first = pieces[0]
        ps = first.page_size
        total = sum(p.num_descriptors for p in pieces)
        flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
        try:
            fd = os.open(out, flags, 0o644)
        except FileExistsError:
            raise OutputExistsError(f"{out} already exists; use -f to overwrite it") from None
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
            # This piece's shared zero page sits at its data area start.
            p_zero = p.desc_offset + PAGE_DESC.size * _piece_total(p) \
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
        done = True
    finally:
        for p in pieces:
            p.close()
        if fd >= 0:
            os.close(fd)
            if not done:
                try:
                    os.unlink(out)
                except OSError:
                    pass


def _piece_total(p) -> int:
    """Descriptors reserved in a piece: the whole dump's dumpable count."""
    return p._count_below(p.max_pfn)
