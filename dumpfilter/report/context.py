"""One opened dump, as the report modules need it: the source, its parsed
VMCOREINFO, a kernel virtual-memory reader, and (built on first use) the
symbol table and the type source.

Reads: the dump's VMCOREINFO note (through the source) and, lazily,
whatever ``kallsyms.load_kallsyms`` and ``btf.load_btf`` read, or the
``--vmlinux`` file (``vmlinux.Vmlinux``).

Where symbols and types come from (``ReportContext.debuginfo`` says which
was used, and why):

* symbols: the dump's kallsyms (VMCOREINFO ``SYMBOL(kallsyms_*)``, Linux
  >= 6.0); if that fails (not exported, pages excluded, corrupt) and a
  vmlinux was given, its ``.symtab`` relocated by KERNELOFFSET;
* types: the dump's BTF (``__start_BTF``..``__stop_BTF``); if that fails
  and a vmlinux was given, the vmlinux's ``.BTF``, else its DWARF.

``prefer_vmlinux=True`` (``--prefer-vmlinux``) turns the order around: the
vmlinux first, the dump only for what the vmlinux cannot give. Without a
vmlinux, a dump lacking kallsyms or BTF raises ``MissingDebugInfoError``
whose message ends in "pass --vmlinux <debug vmlinux>".
"""
from __future__ import annotations

import struct
from typing import Dict, Optional, Tuple

from dumpfilter.errors import DumpFilterError, FaultError, VmcoreInfoError
from dumpfilter.vmcoreinfo import VmcoreInfo


def open_source(path: str):
    """Open any dump format."""
    from dumpfilter.readers import open_dump

    return open_dump(path)


#: What every line that needs symbols or types says when the dump lacks them.
NEED_VMLINUX = "pass --vmlinux <debug vmlinux>"


class MissingDebugInfoError(VmcoreInfoError):
    """The dump carries no kallsyms/BTF and no vmlinux was given."""


class ReportContext:
    """Source + VMCOREINFO + memory, with lazily built symbol/type tables.

    ``mem`` is anything with ``read(vaddr, n)``; by default the x86_64
    page-table walker. ``vmlinux`` is a path or an opened
    ``vmlinux.Vmlinux`` (shared, not closed by ``close``)."""

    def __init__(self, source, info: Optional[VmcoreInfo] = None, mem=None,
                 vmlinux=None, prefer_vmlinux: bool = False):
        self.source = source
        self.info = info if info is not None else VmcoreInfo.parse(source.vmcoreinfo_raw)
        if not self.info:
            raise VmcoreInfoError("the dump has no VMCOREINFO note")
        if mem is None:
            from dumpfilter.memory import kernel_memory

            mem = kernel_memory(source, self.info)
            if mem is None:
                raise VmcoreInfoError("VMCOREINFO names no page-table root "
                                      "(SYMBOL(init_top_pgt)): cannot read kernel memory")
        self.mem = mem
        self._kallsyms = None
        self._btf = None
        self._modsyms = None
        self._vmlinux_arg = vmlinux
        self._vmlinux = None
        self._own_vmlinux = False
        self.prefer_vmlinux = prefer_vmlinux
        #: Which source gave the symbols/types, and why others were not used.
        self.debuginfo: Dict[str, object] = {"symbols": None, "types": None, "notes": []}

    @classmethod
    def open(cls, path: str, **kw) -> "ReportContext":
        return cls(open_source(path), **kw)

    def close(self) -> None:
        self.source.close()
        if self._own_vmlinux and self._vmlinux is not None:
            self._vmlinux.close()

    def __enter__(self) -> "ReportContext":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def vmlinux(self):
        """The opened ``--vmlinux`` (``vmlinux.Vmlinux``), or None."""
        if self._vmlinux is None and self._vmlinux_arg is not None:
            if isinstance(self._vmlinux_arg, str):
                from dumpfilter.report.vmlinux import open_vmlinux

                self._vmlinux = open_vmlinux(self._vmlinux_arg)
                self._own_vmlinux = True
            else:
                self._vmlinux = self._vmlinux_arg
        return self._vmlinux

    def _pick(self, what: str, from_dump, from_vmlinux, missing: str):
        """Load ``what`` from the dump and/or the vmlinux in the configured
        order; returns (value, source). Raises the first source's error,
        or MissingDebugInfoError when the dump lacks it and there is no
        vmlinux."""
        order = [("dump", from_dump), ("vmlinux", from_vmlinux)]
        if self.prefer_vmlinux:
            order.reverse()
        errors = []
        for name, fn in order:
            if name == "vmlinux" and self._vmlinux_arg is None:
                continue
            try:
                value, desc = fn()
            except DumpFilterError as e:
                errors.append((name, e))
                continue
            for other, e in errors:
                note = f"{what}: {other} unusable ({e}); using {desc}"
                if note not in self.debuginfo["notes"]:
                    self.debuginfo["notes"].append(note)
            self.debuginfo[what] = desc
            return value
        name, e = errors[0]
        if self._vmlinux_arg is None and isinstance(e, VmcoreInfoError):
            raise MissingDebugInfoError(f"{missing}: {NEED_VMLINUX}") from None
        if len(errors) > 1:
            raise DumpFilterError("; ".join(f"{n}: {x}" for n, x in errors)) from None
        raise e

    def _dump_kallsyms(self):
        from dumpfilter.report.kallsyms import load_kallsyms

        table = load_kallsyms(self.mem, self.info)
        if "init_task" not in table:
            # Text symbols only (CONFIG_KALLSYMS_ALL off): data symbols
            # from the kernel image's own tables (report/imagesyms.py).
            from dumpfilter.report.imagesyms import with_image_symbols

            try:
                return with_image_symbols(table, self.mem, self.info), \
                    "dump kallsyms + kernel image tables"
            except DumpFilterError as e:
                self.debuginfo["notes"].append(f"symbols: kernel image tables unusable ({e})")
        return table, "dump kallsyms"

    def _vmlinux_symbols(self):
        return self.vmlinux.symbols(self.info), "vmlinux .symtab"

    @property
    def kallsyms(self):
        """Symbol table (``kallsyms.KallsymsTable`` interface)."""
        if self._kallsyms is None:
            self._kallsyms = self._pick(
                "symbols", self._dump_kallsyms, self._vmlinux_symbols,
                "no BTF or kallsyms in this dump (VMCOREINFO has no SYMBOL(kallsyms_names), "
                "exported since Linux 6.0)")
        return self._kallsyms

    def _dump_btf(self):
        from dumpfilter.report.btf import load_btf

        return load_btf(self.mem, self.kallsyms), "dump BTF"

    def _vmlinux_types(self):
        return self.vmlinux.types()

    @property
    def btf(self):
        """Type source (``types.TypeSource``: BTF from the dump or the
        vmlinux, or the vmlinux's DWARF)."""
        if self._btf is None:
            missing = ("no BTF in this dump (kernel built without CONFIG_DEBUG_INFO_BTF)"
                       if self._has_dump_kallsyms() else
                       "no BTF or kallsyms in this dump (VMCOREINFO has no "
                       "SYMBOL(kallsyms_names), exported since Linux 6.0)")
            self._btf = self._pick("types", self._dump_btf, self._vmlinux_types, missing)
        return self._btf

    types = btf

    def _has_dump_kallsyms(self) -> bool:
        return self.info.symbol("kallsyms_names") is not None

    @property
    def module_symbols(self):
        """``modules.ModuleSymbols`` of the loaded modules, or None when
        the module list cannot be read."""
        if self._modsyms is None:
            from dumpfilter.report.modules import load_module_symbols

            try:
                self._modsyms = load_module_symbols(self)
            except DumpFilterError:
                self._modsyms = False
        return self._modsyms or None

    def symbolize(self, addr: int) -> Tuple[str, Optional[str]]:
        """(``name+0xoff`` or hex, module name or None): module symbols for
        addresses inside a loaded module, else the kernel's."""
        mods = self.module_symbols if addr >= 0xFFFF800000000000 else None
        if mods is not None:
            hit = mods.lookup(addr)
            if hit is not None:
                name, off, mod = hit
                return (f"{name}+{off:#x}" if off else name), mod
            if mods.module_at(addr) is not None:
                return f"{addr:#x}", mods.module_at(addr)
        try:
            return self.kallsyms.format_address(addr), None
        except DumpFilterError:
            return f"{addr:#x}", None

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


def read_described(mem, vaddr: int, size: int, what: str, prefix: str = "") -> bytes:
    """``mem.read`` whose FaultError says what was being read."""
    try:
        return mem.read(vaddr, size)
    except FaultError as e:
        raise FaultError(f"{prefix}cannot read {what} ({size} bytes at {vaddr:#x}): {e.message}",
                         e.address) from None
