"""Reader for makedumpfile's kdump-compressed format ("KDUMP   "), also when
flattened (read in place), and for the old "DISKDUMP" flavour.

Layout (64-bit little-endian, as on x86_64; see makedumpfile-reference §1):

    block 0                     struct disk_dump_header (464 bytes)
    block 1 .. sub_hdr_size     struct kdump_sub_header (104 bytes) + note blob
    (1 + sub_hdr_size) blocks   1st bitmap (RAM) | 2nd bitmap (dumpable)
    (1 + sub_hdr_size + bitmap_blocks) blocks
                                page_desc[number of set bits of the 2nd bitmap]
                                page data (not aligned), eraseinfo

Memory stays bounded whatever the dump size: bitmaps are read a block at a
time (a few cached), and a pfn's descriptor index is the number of set bits
of the 2nd bitmap below it, found from a prefix-count table with one integer
per 32768-pfn section (like crash's ``valid_pages[]``) plus one C popcount.
Pages are read in batches: one read for the batch's descriptors, one read per
coalesced run of page data.

All file access goes through a tiny "pread" interface
(``dumpfilter.readers.files``: ``PlainFile``, or ``FlattenedFile`` for
flattened streams), so both work the same way. A ``--split`` set is read as
one dump by ``dumpfilter.readers.splitset``.
"""
from __future__ import annotations

import importlib
import itertools
import os
import re
import struct
from array import array
from bisect import bisect_right
from collections import OrderedDict
from typing import Iterator, List, Optional, Sequence, Tuple, Union

from dumpfilter.formats.bitmap import count_bits
from dumpfilter.codecs import codec_for_flag, decompress_page
from dumpfilter.formats.elf import E_MACHINES
from dumpfilter.formats.elfnotes import find_vmcoreinfo
from dumpfilter.errors import (
    CodecError,
    CorruptDumpError,
    DumpFilterError,
    NotAVmcoreError,
    TruncatedDumpError,
    UnsupportedDumpError,
)
from dumpfilter.formats.kdump import (
    DiskDumpHeader,
    KdumpSubHeader,
    cstr,
    parse_sub_header,
    BLOCK_SIZE_OFFSET_32BIT,
    CODEC_FLAGS,
    DISK_HEADER,
    DISKDUMP_SIGNATURE,
    FLAG_EXCLUDED_VMEMMAP,
    FLAG_INCOMPLETE,
    FLAG_LZO,
    FLAG_SNAPPY,
    FLAG_ZLIB,
    FLAG_ZSTD,
    HEADER_VERSION as MAX_HEADER_VERSION,
    HEADER_VERSION_OFFSET,
    KDUMP_SIGNATURE,
    PAGE_DESC,
    SUB_HEADER,
)
from dumpfilter import limits
from dumpfilter.readers.base import DumpHeaderInfo, DumpSource, byte_view
from dumpfilter.readers.files import Preadable, open_preadable
from dumpfilter.readers.flattened import FlattenedFile
from dumpfilter.vmcoreinfo import VmcoreInfo

MIN_BLOCK_SIZE = 4096
MAX_BLOCK_SIZE = 262144

SECTION_PFNS = 32768  # pfns per prefix-count entry and per cached bitmap block
_SECTION_BYTES = SECTION_PFNS // 8
_BITMAP_CACHE = 32  # cached bitmap sections (128 KiB)
BATCH_PAGES = 1024  # pfns per internal read batch
_RUN_GAP = 64 << 10  # coalesce page data reads across gaps up to this
_RUN_MAX = 16 << 20
_VALID_PAGE_FLAGS = frozenset((0, FLAG_ZLIB, FLAG_LZO, FLAG_SNAPPY, FLAG_ZSTD))
_CODEC_MODULES = {
    FLAG_ZLIB: "zlib",
    FLAG_LZO: "dumpfilter.codecs.lzo",
    FLAG_SNAPPY: "cramjam",
    FLAG_ZSTD: "zstandard",
}
_BITPOS = [tuple(i for i in range(8) if b >> i & 1) for b in range(256)]
_UNIFORM = re.compile(rb"\x00+|\xff+")


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _is_block_size(v: int) -> bool:
    return MIN_BLOCK_SIZE <= v <= MAX_BLOCK_SIZE and v & (v - 1) == 0


class KdumpSource(DumpSource):
    """A kdump-compressed dump (plain file or flattened stream).

    Attributes beyond ``DumpSource``: ``disk_header`` (DiskDumpHeader),
    ``sub_header`` (KdumpSubHeader; all zero for version 0 / DISKDUMP),
    ``file`` (the Preadable), ``flattened``, ``split``, ``start_pfn`` /
    ``end_pfn`` (the pfn range whose pages this file holds),
    ``num_descriptors``, ``bitmap1_offset``, ``bitmap2_offset``,
    ``bitmap_bytes`` (of one bitmap), ``desc_offset``.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], *, file: Optional[Preadable] = None):
        self.path = os.fspath(path)
        self.file: Preadable = file if file is not None else open_preadable(self.path)
        self.flattened = isinstance(self.file, FlattenedFile)
        self._bm_cache: "OrderedDict[Tuple[int, int], bytes]" = OrderedDict()
        self._codec_ok: set = {0}
        self._ram_ranges: Optional[Tuple[Tuple[int, int], ...]] = None
        self._zeros = b""
        try:
            self._open()
        except BaseException:
            if file is None:
                self.file.close()
            raise

    # ------------------------------------------------------------- opening

    def _open(self) -> None:
        f, name = self.file, self.path
        raw = f.pread(0, DISK_HEADER.size)
        sig = raw[:8]
        if sig not in (KDUMP_SIGNATURE, DISKDUMP_SIGNATURE):
            raise NotAVmcoreError(f"{name}: no KDUMP or DISKDUMP signature")
        if len(raw) < DISK_HEADER.size:
            raise TruncatedDumpError(
                f"{name}: file is {f.size} bytes, too short for the {DISK_HEADER.size}-byte"
                " kdump header"
            )
        v = DISK_HEADER.unpack(raw)
        self.utsname_raw = v[2]
        uts = tuple(cstr(v[2][i * 65 : (i + 1) * 65]) for i in range(6))
        self.e_machine = E_MACHINES.get(uts[4])
        hdr = DiskDumpHeader(v[0], v[1], uts, *v[3:])  # type: ignore[arg-type]
        self.disk_header = hdr
        self.diskdump = sig == DISKDUMP_SIGNATURE
        self.format_name = ("flattened " if self.flattened else "") + (
            "diskdump" if self.diskdump else "kdump"
        )
        self._check_layout(raw, hdr)
        bs = hdr.block_size
        self.page_size = bs
        version = hdr.header_version

        # Sub header (KDUMP, version >= 1): one block at block_size.
        if self.diskdump or version == 0:
            sub = KdumpSubHeader()
        else:
            if hdr.sub_hdr_size < 1:
                raise CorruptDumpError(
                    f"{name}: sub_hdr_size {hdr.sub_hdr_size}: a version {version} header"
                    " needs at least one sub header block"
                )
            raw_sub = f.pread(bs, SUB_HEADER.size)
            if len(raw_sub) < SUB_HEADER.size:
                raise TruncatedDumpError(f"{name}: file ends inside the kdump sub header")
            sub = parse_sub_header(raw_sub, version)
        self.sub_header = sub
        if hdr.sub_hdr_size < 0:
            raise CorruptDumpError(f"{name}: negative sub_hdr_size {hdr.sub_hdr_size}")

        max_mapnr = hdr.max_mapnr
        if version >= 6 and sub.max_mapnr_64:
            max_mapnr = sub.max_mapnr_64
        # Physical memory within the widest address space (the dump's own
        # MAX_PHYSMEM_BITS is in VMCOREINFO, read later and only if needed).
        limits.check_phys_end(name, "max_mapnr", max_mapnr * bs, limits.DEFAULT_PHYS_BITS)
        self.max_pfn = max_mapnr

        # Bitmaps.
        self.bitmap1_offset = (1 + hdr.sub_hdr_size) * bs
        total = hdr.bitmap_blocks * bs
        need = (max_mapnr + 7) // 8
        if total < need:
            raise CorruptDumpError(
                f"{name}: bitmap_blocks {hdr.bitmap_blocks} ({total} bytes) too small for"
                f" max_mapnr {max_mapnr} ({need} bytes per bitmap)"
            )
        if total // 2 >= need:
            self.bitmap_bytes = total // 2
            self.bitmap2_offset = self.bitmap1_offset + total // 2
        else:  # one bitmap serves both roles (crash, libkdumpfile)
            self.bitmap_bytes = total
            self.bitmap2_offset = self.bitmap1_offset
        self.desc_offset = self.bitmap1_offset + total
        if self.desc_offset > f.size:
            raise TruncatedDumpError(
                f"{name}: bitmaps end at {self.desc_offset}, beyond the end of the file"
                f" ({f.size} bytes)"
            )
        if self.flattened:
            # A flattened stream's logical file may have holes (they read as
            # zeros): the bitmaps must be in the stream, not claimed by one
            # record far away (the prefix count reads all of them).
            held = self.file.written_bytes(self.bitmap2_offset, self.bitmap2_offset + need)
            if held < need:
                limits.fail(name, "max_mapnr", max_mapnr,
                            f"needs a {need}-byte bitmap, the stream holds {held} bytes of it")

        # Pfn range held by this file.
        self.split = bool(version >= 2 and sub.split and not self.diskdump)
        if self.split:
            lo, hi = (
                (sub.start_pfn_64, sub.end_pfn_64) if version >= 6 else (sub.start_pfn, sub.end_pfn)
            )
            if not 0 <= lo <= hi <= max_mapnr:
                raise CorruptDumpError(
                    f"{name}: split piece pfn range [{lo:#x}, {hi:#x}) outside [0, {max_mapnr:#x})"
                )
            self.start_pfn, self.end_pfn = lo, hi
        else:
            self.start_pfn, self.end_pfn = 0, max_mapnr

        self._build_prefix()
        #: Set bits of the whole 2nd bitmap (a split piece reserves a
        #: descriptor for each, whatever its own range).
        self.dumpable_pages = self._prefix[-1]
        self._piece_base = self._count_below(self.start_pfn)
        self.num_descriptors = self._count_below(self.end_pfn) - self._piece_base
        entry = bs if self.diskdump else PAGE_DESC.size
        end = self.desc_offset + self.num_descriptors * entry
        self.incomplete = bool(hdr.status & FLAG_INCOMPLETE) and not self.diskdump
        if end > f.size and not self.incomplete:
            what = "page data" if self.diskdump else "page descriptor table"
            raise TruncatedDumpError(
                f"{name}: {what} for {self.num_descriptors} pages ends at {end}, beyond the end"
                f" of the file ({f.size} bytes)"
            )

        # Notes, VMCOREINFO, eraseinfo.
        self.notes = b""
        if version >= 4 and sub.offset_note and sub.size_note:
            self.notes = self._blob(sub.offset_note, sub.size_note, "ELF note blob")
        vmci = b""
        if self.notes:
            try:
                loc = find_vmcoreinfo(self.notes)
            except CorruptDumpError as e:
                raise CorruptDumpError(f"{name}: {e}") from None
            if loc is not None:
                vmci = self.notes[loc[0] : loc[0] + loc[1]]
        if not vmci and version >= 3 and sub.offset_vmcoreinfo and sub.size_vmcoreinfo:
            vmci = self._blob(sub.offset_vmcoreinfo, sub.size_vmcoreinfo, "VMCOREINFO")
        self._vmcoreinfo_raw = vmci
        erase = b""
        if version >= 5 and sub.offset_eraseinfo and sub.size_eraseinfo:
            erase = self._blob(sub.offset_eraseinfo, sub.size_eraseinfo, "eraseinfo")

        bits = hdr.status & CODEC_FLAGS
        try:
            codec = codec_for_flag(bits)
            comp = codec.name if codec else "none"
        except CodecError:
            comp = f"unknown({bits:#x})"
        if self.diskdump:  # legacy status: 1 = incomplete, 8 = "compressed" (never used)
            comp, self.incomplete = "none", bool(hdr.status & 1)
        self.header = DumpHeaderInfo(
            dump_level=sub.dump_level,
            compression=comp,
            incomplete=self.incomplete,
            excluded_vmemmap=bool(hdr.status & FLAG_EXCLUDED_VMEMMAP),
            phys_base=None if self.diskdump or version == 0 else _signed64(sub.phys_base),
            eraseinfo=erase,
        )

    def _check_layout(self, raw: bytes, hdr: DiskDumpHeader) -> None:
        name = self.path
        if not 0 <= hdr.header_version <= MAX_HEADER_VERSION:
            (be_version,) = struct.unpack_from(">i", raw, HEADER_VERSION_OFFSET)
            if 0 <= be_version <= MAX_HEADER_VERSION:
                raise UnsupportedDumpError(
                    f"{name}: big-endian kdump header; only little-endian 64-bit dumps"
                    " are supported"
                )
            raise UnsupportedDumpError(
                f"{name}: kdump header_version {hdr.header_version} unknown (supported: 0-6)"
            )
        if not _is_block_size(hdr.block_size):
            (bs32,) = struct.unpack_from("<i", raw, BLOCK_SIZE_OFFSET_32BIT)
            if _is_block_size(bs32):
                raise UnsupportedDumpError(
                    f"{name}: 32-bit kdump header layout; only 64-bit dumps are supported"
                )
            raise CorruptDumpError(
                f"{name}: block_size {hdr.block_size} is not a power of two in"
                f" [{MIN_BLOCK_SIZE}, {MAX_BLOCK_SIZE}]"
            )

    def _blob(self, offset: int, size: int, what: str) -> bytes:
        if offset < 0 or size > limits.MAX_BLOB:
            raise CorruptDumpError(f"{self.path}: {what} at offset {offset}, size {size}: invalid")
        data = self.file.pread(offset, size) if offset + size <= self.file.size else b""
        if len(data) != size:
            raise TruncatedDumpError(
                f"{self.path}: {what} [{offset}, {offset + size}) runs past the end of the file"
                f" ({self.file.size} bytes)"
            )
        return data

    def _build_prefix(self) -> None:
        """prefix[s] = set bits of the 2nd bitmap below pfn s * SECTION_PFNS,
        streamed through the C popcount 1 MiB at a time."""
        nsec = (self.max_pfn + SECTION_PFNS - 1) // SECTION_PFNS
        prefix = array("Q", bytes(8 * (nsec + 1)))
        total, sec, step = 0, 0, 256  # sections per read
        while sec < nsec:
            n = min(step, nsec - sec)
            buf = self.file.pread(self.bitmap2_offset + sec * _SECTION_BYTES, n * _SECTION_BYTES)
            mv = memoryview(buf)
            for i in range(n):
                nbits = min(SECTION_PFNS, self.max_pfn - (sec + i) * SECTION_PFNS)
                prefix[sec + i] = total
                total += count_bits(mv[i * _SECTION_BYTES : (i + 1) * _SECTION_BYTES], nbits)
            sec += n
        prefix[nsec] = total
        self._prefix = prefix

    # ------------------------------------------------------------- bitmaps

    def _section(self, which: int, sec: int) -> bytes:
        """Raw bytes of one bitmap section (4096 bytes, fewer at the end)."""
        key = (which, sec)
        data = self._bm_cache.get(key)
        if data is not None:
            self._bm_cache.move_to_end(key)
            return data
        base = self.bitmap1_offset if which == 1 else self.bitmap2_offset
        off = sec * _SECTION_BYTES
        data = self.file.pread(base + off, min(_SECTION_BYTES, self.bitmap_bytes - off))
        self._bm_cache[key] = data
        if len(self._bm_cache) > _BITMAP_CACHE:
            self._bm_cache.popitem(last=False)
        return data

    def _count_below(self, pfn: int) -> int:
        """Set bits of the 2nd bitmap for pfns < ``pfn``."""
        pfn = min(max(pfn, 0), self.max_pfn)
        sec, rem = divmod(pfn, SECTION_PFNS)
        n = self._prefix[sec]
        if rem:
            n += count_bits(self._section(2, sec), rem)
        return n

    def _bits(self, which: int, start: int, n: int) -> int:
        """Bits of bitmap ``which`` for pfns [start, start+n) as an int
        (bit i = pfn start+i); pfns >= max_pfn read as 0."""
        lim = min(n, self.max_pfn - start)
        if lim <= 0 or start < 0:
            return 0
        first, last = start >> 3, (start + lim - 1) >> 3
        sec = first // _SECTION_BYTES
        if sec == last // _SECTION_BYTES:
            base = sec * _SECTION_BYTES
            raw = self._section(which, sec)[first - base : last - base + 1]
        else:
            off = self.bitmap1_offset if which == 1 else self.bitmap2_offset
            raw = self.file.pread(off + first, last - first + 1)
        return (int.from_bytes(raw, "little") >> (start & 7)) & ((1 << lim) - 1)

    def _present_bits(self, start: int, n: int) -> int:
        """2nd bitmap bits restricted to this file's pfn range."""
        lo, hi = max(start, self.start_pfn), min(start + n, self.end_pfn)
        if lo >= hi:
            return 0
        return self._bits(2, lo, hi - lo) << (lo - start)

    def present_bitmap(self, start_pfn: int, npages: int, out: bytearray) -> None:
        nbytes = (npages + 7) // 8
        if not self.incomplete:
            out[:nbytes] = self._present_bits(start_pfn, npages).to_bytes(nbytes, "little")
            return
        # Incomplete dump: also leave out pages whose descriptor never got
        # written (offset 0), batch by batch (BATCH_PAGES is a multiple of 8).
        for pos in range(0, npages, BATCH_PAGES):
            cnt = min(BATCH_PAGES, npages - pos)
            v = self._present_bits(start_pfn + pos, cnt)
            for i, desc in self._batch_descs(start_pfn + pos, cnt, v):
                if desc[0] == 0:
                    v &= ~(1 << i)
            out[pos // 8 : (pos + cnt + 7) // 8] = v.to_bytes((cnt + 7) // 8, "little")

    def ram_pfn_ranges(self) -> Sequence[Tuple[int, int]]:
        if self._ram_ranges is None:
            self._ram_ranges = tuple(self._runs(1))
        return self._ram_ranges

    def _runs(self, which: int) -> List[Tuple[int, int]]:
        """Runs of set bits of a bitmap, streamed 1 MiB at a time."""
        runs: List[Tuple[int, int]] = []
        state, start, pos = 0, 0, 0
        for val, nbits in self._bit_pieces(which):
            if val != state:
                if state:
                    runs.append((start, pos))
                else:
                    start = pos
                state = val
            pos += nbits
        if state:
            runs.append((start, pos))
        return [(a, min(b, self.max_pfn)) for a, b in runs if a < self.max_pfn]

    def _bit_pieces(self, which: int) -> Iterator[Tuple[int, int]]:
        """``(value, nbits)`` pieces of a bitmap: whole runs of 0x00/0xff
        bytes at once, other bytes bit by bit."""
        nbytes = (self.max_pfn + 7) // 8
        base = self.bitmap1_offset if which == 1 else self.bitmap2_offset
        for coff in range(0, nbytes, 1 << 20):
            chunk = self.file.pread(base + coff, min(1 << 20, nbytes - coff))
            i = 0
            for m in itertools.chain(_UNIFORM.finditer(chunk), (None,)):
                for byte in chunk[i : m.start() if m else len(chunk)]:
                    for bit in range(8):
                        yield byte >> bit & 1, 1
                if m:
                    yield (1 if chunk[m.start()] == 0xFF else 0), 8 * (m.end() - m.start())
                    i = m.end()

    # ---------------------------------------------------------- descriptors

    def _read_descs(self, idx: int, k: int) -> List[Tuple[int, int, int, int]]:
        """Descriptors idx .. idx+k-1 of this file, with one read."""
        if self.diskdump:  # raw pages, one block each, in bitmap order
            bs, base = self.page_size, self.desc_offset
            return [(base + (idx + i) * bs, bs, 0, 0) for i in range(k)]
        size = k * PAGE_DESC.size
        raw = self.file.pread(self.desc_offset + idx * PAGE_DESC.size, size)
        if len(raw) < size:
            if not self.incomplete:
                raise TruncatedDumpError(
                    f"{self.path}: page descriptor table cut short at {self.file.size}"
                )
            raw += bytes(size - len(raw))  # never written: offset 0 = lost page
        return list(PAGE_DESC.iter_unpack(raw))

    def _batch_descs(
        self, start: int, n: int, bits: int
    ) -> List[Tuple[int, Tuple[int, int, int, int]]]:
        """``(i, descriptor)`` for each set bit i of ``bits`` (pfn start+i)."""
        if not bits:
            return []
        first = start + ((bits & -bits).bit_length() - 1)
        positions: List[int] = []
        raw = bits.to_bytes((n + 7) // 8, "little")
        for bi, b in enumerate(raw):
            if b:
                base = bi * 8
                positions.extend(base + p for p in _BITPOS[b])
        idx = self._count_below(first) - self._piece_base
        return list(zip(positions, self._read_descs(idx, len(positions))))

    def descriptors(self, start_pfn: int, npages: int) -> List[Tuple[int, int, int, int, int]]:
        """``(pfn, offset, size, flags, page_flags)`` of every page of
        ``[start_pfn, start_pfn+npages)`` that this file holds, raw (not
        validated). For tools that copy stored pages without decoding."""
        out: List[Tuple[int, int, int, int, int]] = []
        pos = 0
        while pos < npages:
            cnt = min(BATCH_PAGES, npages - pos)
            s = start_pfn + pos
            for i, d in self._batch_descs(s, cnt, self._present_bits(s, cnt)):
                out.append((s + i, *d))
            pos += cnt
        return out

    # ---------------------------------------------------------------- pages

    def read_pages(self, start_pfn: int, npages: int, out: memoryview) -> None:
        ps = self.page_size
        mv = byte_view(out)
        if mv.nbytes < npages * ps:
            raise ValueError(f"read_pages: buffer of {mv.nbytes} bytes for {npages} pages")
        pos = 0
        while pos < npages:
            cnt = min(BATCH_PAGES, npages - pos)
            self._read_batch(start_pfn + pos, cnt, mv[pos * ps : (pos + cnt) * ps])
            pos += cnt

    def _zero(self, view: memoryview) -> None:
        if len(self._zeros) < len(view):
            self._zeros = bytes(BATCH_PAGES * self.page_size)
        view[:] = memoryview(self._zeros)[: len(view)]

    def _check_codec(self, flags: int, pfn: int) -> None:
        modname = _CODEC_MODULES[flags]
        try:
            importlib.import_module(modname)
        except Exception as e:
            codec = codec_for_flag(flags)
            raise UnsupportedDumpError(
                f"{self.path}: pfn {pfn:#x} is compressed with {codec.name if codec else flags},"
                f" which this installation cannot decode ({modname}: {e})"
            ) from None
        self._codec_ok.add(flags)

    def _read_batch(self, start: int, n: int, view: memoryview) -> None:
        bits = self._present_bits(start, n)
        if bits != (1 << n) - 1:
            self._zero(view)
        if not bits:
            return
        ps, fsize, name = self.page_size, self.file.size, self.path
        items = self._batch_descs(start, n, bits)
        wanted = []
        for i, (off, size, flags, _pf) in items:
            if off == 0 and self.incomplete:  # lost: its descriptor never got written
                self._zero(view[i * ps : (i + 1) * ps])
                continue
            if off <= 0 or size <= 0 or size > ps:
                raise CorruptDumpError(
                    f"{name}: pfn {start + i:#x}: invalid page descriptor (offset {off},"
                    f" size {size}, block_size {ps})"
                )
            if flags not in _VALID_PAGE_FLAGS:
                raise CorruptDumpError(
                    f"{name}: pfn {start + i:#x}: page descriptor has unknown flags {flags:#x}"
                )
            if flags == 0 and size != ps:
                raise CorruptDumpError(
                    f"{name}: pfn {start + i:#x}: uncompressed page of {size} bytes,"
                    f" expected {ps}"
                )
            if off + size > fsize:
                raise TruncatedDumpError(
                    f"{name}: pfn {start + i:#x}: page data [{off}, {off + size}) runs past"
                    f" the end of the file ({fsize} bytes)"
                )
            if flags not in self._codec_ok:
                self._check_codec(flags, start + i)
            wanted.append((off, size))
        # Coalesce the data reads: sorted distinct extents, merged into runs.
        runs: List[List[int]] = []
        for off, size in sorted(set(wanted)):
            if runs and off - runs[-1][1] <= _RUN_GAP and off + size - runs[-1][0] <= _RUN_MAX:
                if off + size > runs[-1][1]:
                    runs[-1][1] = off + size
            else:
                runs.append([off, off + size])
        where = {}
        for lo, hi in runs:
            data = self.file.pread(lo, hi - lo)
            if len(data) != hi - lo:
                raise TruncatedDumpError(f"{name}: file cut short at {lo + len(data)}")
            where[lo] = memoryview(data)
        starts = [r[0] for r in runs]
        for i, (off, size, flags, _pf) in items:
            if off == 0:
                continue  # lost page of an incomplete dump: zeros
            lo = starts[bisect_right(starts, off) - 1]
            data = where[lo][off - lo : off - lo + size]
            dst = view[i * ps : (i + 1) * ps]
            if flags == 0:
                dst[:] = data
                continue
            try:
                dst[:] = decompress_page(flags, data, ps)
            except DumpFilterError as e:
                raise CorruptDumpError(f"{name}: pfn {start + i:#x}: {e}") from None

    # --------------------------------------------------------------- other

    @property
    def vmcoreinfo_raw(self) -> bytes:
        return self._vmcoreinfo_raw

    @property
    def vmcoreinfo(self) -> VmcoreInfo:
        """The VMCOREINFO note, parsed."""
        return VmcoreInfo.parse(self._vmcoreinfo_raw)

    def close(self) -> None:
        self.file.close()
        self._bm_cache.clear()

    def __repr__(self) -> str:
        return (
            f"<KdumpSource {self.path!r} {self.format_name} v{self.disk_header.header_version}"
            f" pfns [{self.start_pfn:#x}, {self.end_pfn:#x}) {self.num_descriptors} pages>"
        )
