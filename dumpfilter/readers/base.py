"""The one interface every dump format implements.

A *source* answers, for one dump: page size, the raw ELF note blob, the
VMCOREINFO text, which pfns exist as RAM (1st bitmap / PT_LOADs), which of
those are present in the file (2nd bitmap; all of them for ELF), and the
contents of physical pages. Formats are probed in turn by
``dumpfilter.readers.open_dump``.

Contents are read in batches of pages into caller-owned buffers; nothing here
is called once per page on a hot path.
"""
from __future__ import annotations

import abc
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Tuple

from dumpfilter.errors import FaultError, MissingPageError


@dataclass(frozen=True)
class PhysRange:
    """Physical memory ``[start, end)`` in bytes that the source covers.

    ``file_end`` (<= end) is where bytes backed by the file stop; the rest
    reads as zeros (ELF ``p_filesz < p_memsz``).
    """

    start: int
    end: int
    file_end: int


@dataclass(frozen=True)
class LoadSegment:
    """One ELF PT_LOAD program header of the input (ELF sources only)."""

    index: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int


@dataclass(frozen=True)
class DumpHeaderInfo:
    """What a kdump-compressed source records about an earlier filtering;
    ELF sources report dump_level 0 and no codec."""

    dump_level: int = 0
    compression: str = "none"
    incomplete: bool = False
    excluded_vmemmap: bool = False
    phys_base: Optional[int] = None
    eraseinfo: bytes = b""


class DumpSource(abc.ABC):
    """A readable dump. Subclasses: ``ElfSource``, ``KdumpSource``,
    ``KdumpSplitSet``.

    Everything a caller may ask of a source is declared here, with a
    default where a format has nothing to say; callers never probe for
    attributes."""

    #: Short name of the format ("elf", "kdump", "flattened kdump", ...).
    format_name: str = "?"
    #: Page size of the dumped kernel in bytes.
    page_size: int
    #: Raw ELF note blob (PT_NOTE contents), copied verbatim into outputs.
    notes: bytes
    #: Number of pfns the dump describes (makedumpfile's max_mapnr).
    max_pfn: int
    #: Path the source was opened from (for messages).
    path: str
    #: What an earlier filtering recorded (kdump inputs); neutral otherwise.
    header: DumpHeaderInfo = DumpHeaderInfo()
    #: ELF ``e_machine`` of the dumped machine (62 x86_64, 183 aarch64), or
    #: None when the format does not say.
    e_machine: Optional[int] = None
    #: ``struct new_utsname`` (6 x 65 bytes) as the format records it
    #: (kdump header), or None.
    utsname_raw: Optional[bytes] = None
    #: ``window()`` may be called from several threads at once.
    thread_safe_windows: bool = False

    def load_segments(self) -> Sequence[LoadSegment]:
        """The input's PT_LOAD program headers, in file order (ELF only;
        other formats have none)."""
        return ()

    @property
    @abc.abstractmethod
    def vmcoreinfo_raw(self) -> bytes:
        """The VMCOREINFO note text, b"" if absent."""

    @abc.abstractmethod
    def ram_pfn_ranges(self) -> Sequence[Tuple[int, int]]:
        """Sorted, merged ``[start_pfn, end_pfn)`` ranges of pfns that exist
        (what makedumpfile's 1st bitmap marks)."""

    def present_bitmap(self, start_pfn: int, npages: int, out: bytearray) -> None:
        """Fill ``out`` (ceil(npages/8) bytes, LSB-first) with which pfns of
        ``[start_pfn, start_pfn+npages)`` have contents in the file. The
        default (ELF) is: every RAM pfn."""
        from dumpfilter.formats.bitmap import ranges_to_bitmap

        ranges_to_bitmap(self.ram_pfn_ranges(), start_pfn, npages, out)

    @abc.abstractmethod
    def read_pages(self, start_pfn: int, npages: int, out: memoryview) -> None:
        """Copy the contents of ``npages`` pages starting at ``start_pfn``
        into ``out`` (npages * page_size bytes). Pages that are not present
        in the file read as zeros; callers that care consult
        ``present_bitmap`` first."""

    def page_windows(
        self, start_pfn: int, npages: int
    ) -> Iterator[Tuple[int, int, memoryview]]:
        """Yield ``(pfn, count, view)`` windows covering the range, each
        ``view`` holding ``count`` whole pages. Zero-copy where the format
        allows (mmap'd ELF); a view is only valid until the next item is
        requested. The default copies into one reused buffer."""
        batch = max(1, (4 << 20) // self.page_size)
        buf = bytearray(batch * self.page_size)
        mv = memoryview(buf)
        pfn, end = start_pfn, start_pfn + npages
        while pfn < end:
            n = min(batch, end - pfn)
            view = mv[: n * self.page_size]
            self.read_pages(pfn, n, view)
            yield pfn, n, view
            pfn += n

    @contextmanager
    def window(self, start_pfn: int, npages: int) -> Iterator[memoryview]:
        """The contents of ``npages`` pages as one view, valid inside the
        ``with`` block. The default reads them into a new buffer; formats
        that can map the file do so (and say ``thread_safe_windows``)."""
        buf = bytearray(npages * self.page_size)
        self.read_pages(start_pfn, npages, memoryview(buf))
        yield memoryview(buf)

    def gather(self, start_pfn: int, npages: int, mask: bytes, out: memoryview) -> None:
        """Copy the pages of ``[start_pfn, start_pfn+npages)`` whose bit is
        set in ``mask`` (LSB-first) into ``out``, back to back. Safe from
        several threads when ``thread_safe_windows`` is."""
        with self.window(start_pfn, npages) as view:
            gather_pages(view, self.page_size, npages, mask, out)

    @contextmanager
    def map_phys(self, paddr: int, size: int) -> Iterator[memoryview]:
        """``size`` bytes of physical memory at ``paddr`` for the ``with``
        block, checked like ``read_phys``. The default copies; formats that
        can map their file do so."""
        yield memoryview(self.read_phys(paddr, size))

    def read_phys(self, paddr: int, size: int) -> bytes:
        """Read ``size`` bytes of physical memory. Raises ``FaultError`` if
        any page touched is not RAM or not present in the file."""
        out = bytearray(max(0, size))
        self.read_phys_into(paddr, memoryview(out))
        return bytes(out)

    def read_phys_into(self, paddr: int, out: memoryview) -> None:
        """Fill ``out`` from physical memory at ``paddr``, checking that
        every page touched is present (one bitmap query for the span)."""
        from dumpfilter.formats.bitmap import count_bits

        size = len(out)
        if size == 0:
            return
        ps = self.page_size
        first, last = paddr // ps, (paddr + size - 1) // ps
        n = last - first + 1
        present = bytearray((n + 7) // 8)
        self.present_bitmap(first, n, present)
        if count_bits(present, n) != n:
            for i in range(n):
                if not present[i >> 3] >> (i & 7) & 1:
                    raise MissingPageError("physical page not in dump", (first + i) * ps)
        off = paddr - first * ps
        if off == 0 and size == n * ps:
            self.read_pages(first, n, out)
            return
        buf = bytearray(n * ps)
        self.read_pages(first, n, memoryview(buf))
        out[:] = buf[off : off + size]

    def close(self) -> None:
        """Release files and mappings."""

    def __enter__(self) -> "DumpSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def byte_view(buf) -> memoryview:
    """``buf`` as a flat memoryview of bytes."""
    mv = memoryview(buf)
    return mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B")


def gather_pages(view, page_size: int, npages: int, mask: bytes, out) -> int:
    """The pages of ``view`` selected by ``mask``, copied into ``out`` back
    to back (one C call); returns how many."""
    from dumpfilter._core import check, ffi, lib

    idx = ffi.new("uint32_t[]", max(1, npages))
    count = ffi.new("size_t *")
    check(lib.df_select_pages(mask, len(mask), ffi.NULL, 0, npages, idx, len(idx), count),
          "selecting pages")
    n = int(count[0])
    if len(out) < n * page_size:
        raise ValueError(f"gather: {len(out)} bytes for {n} pages")
    src, dst = ffi.from_buffer(view), ffi.from_buffer(out, require_writable=True)
    check(lib.df_gather_pages(src, len(src), page_size, idx, len(idx), n, dst, len(dst)),
          "gathering pages")
    return n
