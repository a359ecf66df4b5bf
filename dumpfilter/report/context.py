"""One opened dump, as the report modules need it: the source, its parsed
VMCOREINFO, a kernel virtual-memory reader, and (built on first use) the
kallsyms table and the BTF types.

Reads: the dump's VMCOREINFO note (through the source) and, lazily,
whatever ``kallsyms.load_kallsyms`` and ``btf.load_btf`` read.
"""
from __future__ import annotations

import struct
from typing import Optional

from dumpfilter.errors import DumpFilterError, VmcoreInfoError
from dumpfilter.vmcoreinfo import VmcoreInfo


def open_source(path: str):
    """Open any dump format: ``dumpfilter.readers.open_dump`` when the
    package provides it, else the ELF reader."""
    try:
        from dumpfilter.readers import open_dump  # type: ignore[attr-defined]
    except ImportError:
        open_dump = None
    if open_dump is not None:
        return open_dump(path)
    from dumpfilter.readers.elf import ElfSource

    return ElfSource(path)


class ReportContext:
    """Source + VMCOREINFO + memory, with lazily built symbol/type tables.

    ``mem`` is anything with ``read(vaddr, n)``; by default the x86_64
    page-table walker."""

    def __init__(self, source, info: Optional[VmcoreInfo] = None, mem=None):
        self.source = source
        self.info = info if info is not None else VmcoreInfo.parse(source.vmcoreinfo_raw)
        if not self.info:
            raise VmcoreInfoError("the dump has no VMCOREINFO note")
        if mem is None:
            from dumpfilter.memory.x86_64 import X86_64Memory

            mem = X86_64Memory(source, self.info)
        self.mem = mem
        self._kallsyms = None
        self._btf = None

    @classmethod
    def open(cls, path: str) -> "ReportContext":
        return cls(open_source(path))

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "ReportContext":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def kallsyms(self):
        if self._kallsyms is None:
            from dumpfilter.report.kallsyms import load_kallsyms

            self._kallsyms = load_kallsyms(self.mem, self.info)
        return self._kallsyms

    @property
    def btf(self):
        if self._btf is None:
            from dumpfilter.report.btf import load_btf

            self._btf = load_btf(self.mem, self.kallsyms)
        return self._btf

    # Small typed reads -------------------------------------------------------

    def read(self, vaddr: int, size: int) -> bytes:
        return self.mem.read(vaddr, size)

    def u64(self, vaddr: int) -> int:
        return struct.unpack("<Q", self.mem.read(vaddr, 8))[0]

    def u32(self, vaddr: int) -> int:
        return struct.unpack("<I", self.mem.read(vaddr, 4))[0]

    def s32(self, vaddr: int) -> int:
        return struct.unpack("<i", self.mem.read(vaddr, 4))[0]

    def symbol(self, name: str) -> Optional[int]:
        """Address of a kernel symbol: VMCOREINFO first, then kallsyms."""
        a = self.info.symbol(name)
        if a is not None:
            return a
        try:
            return self.kallsyms.address(name)
        except DumpFilterError:  # no kallsyms in VMCOREINFO, or unreadable
            return None
