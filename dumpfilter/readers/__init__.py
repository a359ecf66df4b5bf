"""Dump readers. ``open_dump(path)`` probes the formats in turn:

1. makedumpfile flattened stream ("makedumpfile" signature) holding a
   kdump-compressed file: read in place, no rebuild;
2. kdump-compressed ("KDUMP   ") or old diskdump ("DISKDUMP");
3. ELF core (``\\x7fELF``), via ``dumpfilter.readers.elf.ElfSource``.
"""
from __future__ import annotations

import os
from typing import Union

from dumpfilter.errors import NotAVmcoreError, UnsupportedDumpError
from dumpfilter.readers.base import DumpHeaderInfo, DumpSource, LoadSegment, PhysRange

ELF_MAGIC = b"\x7fELF"

__all__ = ["open_dump", "DumpSource", "DumpHeaderInfo", "LoadSegment", "PhysRange", "ELF_MAGIC"]


def _head(path: str, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def open_dump(path: Union[str, "os.PathLike[str]"], *, use_mmap: bool = True) -> DumpSource:
    """Open a dump of any supported format. Raises ``NotAVmcoreError`` for
    an unknown file; OSError if it cannot be opened. ``use_mmap=False``
    (``--non-mmap``) reads page contents with pread only."""
    # Readers are imported for the format found only (start-up time).
    from dumpfilter.formats.flattened import is_flattened
    from dumpfilter.formats.kdump import DISKDUMP_SIGNATURE, KDUMP_SIGNATURE

    path = os.fspath(path)
    if os.path.isdir(path):
        raise NotAVmcoreError(f"{path}: is a directory, not a vmcore")
    head = _head(path, 16)
    if is_flattened(head):
        from dumpfilter.readers.flattened import FlattenedFile
        from dumpfilter.readers.kdump import KdumpSource

        flat = FlattenedFile(path)
        try:
            inner = flat.pread(0, 8)
            if inner in (KDUMP_SIGNATURE, DISKDUMP_SIGNATURE):
                return KdumpSource(path, file=flat)
            if inner[:4] == ELF_MAGIC:
                raise UnsupportedDumpError(
                    f"{path}: flattened ELF dumps are not supported; rebuild with 'makedumpfile -R'"
                )
            raise NotAVmcoreError(
                f"{path}: flattened stream holds no KDUMP or ELF dump (starts with {inner!r})"
            )
        except BaseException:
            flat.close()
            raise
    if head[:8] in (KDUMP_SIGNATURE, DISKDUMP_SIGNATURE):
        from dumpfilter.readers.kdump import KdumpSource

        return KdumpSource(path)
    if head[:4] == ELF_MAGIC:
        from dumpfilter.readers.elf import ElfSource

        return ElfSource(path, use_mmap=use_mmap)
    raise NotAVmcoreError(f"{path}: not a vmcore (no ELF, KDUMP or flattened signature)")
