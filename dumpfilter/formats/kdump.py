"""On-disk layout of makedumpfile's kdump-compressed format
(makedumpfile-reference.md §1): the one description the readers and the
writers share. The flattened stream is in ``dumpfilter.formats.flattened``.

Only the 64-bit little-endian layout (LP64, as on x86_64) is described.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Tuple

# --------------------------------------------------------- kdump-compressed

KDUMP_SIGNATURE = b"KDUMP   "
#: The old diskdump flavour (read only).
DISKDUMP_SIGNATURE = b"DISKDUMP"
#: The header_version we write, and the highest one we read.
HEADER_VERSION = 6

#: ``struct disk_dump_header`` (block 0), 464 bytes::
#:
#:     0   char  signature[8]         "KDUMP   " or "DISKDUMP"
#:     8   int   header_version
#:     12  char  utsname[390]         6 x 65: sysname .. domainname
#:     402       (6 bytes padding)
#:     408 long  timestamp.tv_sec
#:     416 long  timestamp.tv_usec
#:     424 uint  status               FLAG_* below
#:     428 int   block_size           page size
#:     432 int   sub_hdr_size         blocks: sub header + note blob
#:     436 uint  bitmap_blocks        both bitmaps
#:     440 uint  max_mapnr            32-bit; see max_mapnr_64
#:     444 uint  total_ram_blocks
#:     448 uint  device_blocks
#:     452 uint  written_blocks
#:     456 uint  current_cpu
#:     460 int   nr_cpus
DISK_HEADER = struct.Struct("<8si390s6xqqIiiIIIIIIi")
#: Offset of ``header_version`` (read big-endian to recognise such dumps).
HEADER_VERSION_OFFSET = 8
#: Offset of ``block_size`` in the 32-bit layout (4-byte longs, no padding
#: after utsname beyond int alignment), to recognise such dumps.
BLOCK_SIZE_OFFSET_32BIT = 416

#: ``struct kdump_sub_header`` (block 1; the note blob follows it), 104
#: bytes::
#:
#:     0   ulong phys_base
#:     8   int   dump_level           header_version >= 1
#:     12  int   split                >= 2
#:     16  ulong start_pfn            >= 2 (32-bit values)
#:     24  ulong end_pfn              >= 2
#:     32  off_t offset_vmcoreinfo    >= 3
#:     40  ulong size_vmcoreinfo      >= 3
#:     48  off_t offset_note          >= 4
#:     56  ulong size_note            >= 4
#:     64  off_t offset_eraseinfo     >= 5
#:     72  ulong size_eraseinfo       >= 5
#:     80  ulong start_pfn_64         >= 6
#:     88  ulong end_pfn_64           >= 6
#:     96  ulong max_mapnr_64         >= 6
SUB_HEADER = struct.Struct("<QiiQQqQqQqQQQQ")
#: The sub header's fields, in ``SUB_HEADER`` order.
SUB_HEADER_FIELDS = (
    "phys_base", "dump_level", "split", "start_pfn", "end_pfn",
    "offset_vmcoreinfo", "size_vmcoreinfo", "offset_note", "size_note",
    "offset_eraseinfo", "size_eraseinfo", "start_pfn_64", "end_pfn_64", "max_mapnr_64",
)
#: The header_version from which each field (``SUB_HEADER`` order) is defined.
SUB_HEADER_SINCE = (1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 6)

#: ``struct page_desc``, 24 bytes: 0 off_t offset (of the page data in the
#: file), 8 uint size (stored bytes), 12 uint flags (FLAG_ZLIB ..; 0 = raw),
#: 16 ulong page_flags.
PAGE_DESC = struct.Struct("<qIIQ")

# ``DUMP_DH_*``: the same numbers in the header's ``status`` and in a page
# descriptor's ``flags`` (the compression bits).
FLAG_ZLIB = 0x01  # DUMP_DH_COMPRESSED_ZLIB
FLAG_LZO = 0x02  # DUMP_DH_COMPRESSED_LZO
FLAG_SNAPPY = 0x04  # DUMP_DH_COMPRESSED_SNAPPY
FLAG_INCOMPLETE = 0x08  # DUMP_DH_COMPRESSED_INCOMPLETE (status only)
FLAG_EXCLUDED_VMEMMAP = 0x10  # DUMP_DH_EXCLUDED_VMEMMAP (status only)
FLAG_ZSTD = 0x20  # DUMP_DH_COMPRESSED_ZSTD
CODEC_FLAGS = FLAG_ZLIB | FLAG_LZO | FLAG_SNAPPY | FLAG_ZSTD


def cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass(frozen=True)
class DiskDumpHeader:
    """``struct disk_dump_header`` as stored (block 0)."""

    signature: bytes
    header_version: int
    #: sysname, nodename, release, version, machine, domainname
    utsname: Tuple[str, str, str, str, str, str]
    timestamp_sec: int
    timestamp_usec: int
    status: int
    block_size: int
    sub_hdr_size: int
    bitmap_blocks: int
    max_mapnr: int  # the 32-bit field; see KdumpSource.max_pfn
    total_ram_blocks: int
    device_blocks: int
    written_blocks: int
    current_cpu: int
    nr_cpus: int

    @property
    def sysname(self) -> str:
        return self.utsname[0]

    @property
    def release(self) -> str:
        return self.utsname[2]

    @property
    def machine(self) -> str:
        return self.utsname[4]


@dataclass(frozen=True)
class KdumpSubHeader:
    """``struct kdump_sub_header`` (block 1), fields in ``SUB_HEADER_FIELDS``
    order. Fields the header version does not define are 0; ``phys_base``
    is the raw unsigned value."""

    phys_base: int = 0
    dump_level: int = 0
    split: int = 0
    start_pfn: int = 0
    end_pfn: int = 0
    offset_vmcoreinfo: int = 0
    size_vmcoreinfo: int = 0
    offset_note: int = 0
    size_note: int = 0
    offset_eraseinfo: int = 0
    size_eraseinfo: int = 0
    start_pfn_64: int = 0
    end_pfn_64: int = 0
    max_mapnr_64: int = 0


def parse_sub_header(raw: bytes, version: int) -> KdumpSubHeader:
    v = SUB_HEADER.unpack(raw)
    return KdumpSubHeader(*(x if version >= v0 else 0 for x, v0 in zip(v, SUB_HEADER_SINCE)))
