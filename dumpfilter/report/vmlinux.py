"""Symbols and types from a kernel image (``--vmlinux PATH``), for dumps
whose kernel exports no kallsyms in VMCOREINFO (before Linux 6.0) or was
built without CONFIG_DEBUG_INFO_BTF.

Reads from the vmlinux ELF file (64-bit little-endian, x86_64), through its
own section headers (no DWARF is touched unless asked for):

* ``.symtab`` + its linked string table: every named function, object and
  no-type symbol of an allocated section (section, file and absolute
  symbols are skipped). The ``nm``-style
  type letter comes from the section's flags (text / read-only / data /
  bss; upper case for global and weak symbols). Aliases at one address are
  ordered as the kernel's kallsyms table orders them (non-weak first, then
  fewer leading underscores, then by name), so ``lookup`` names an
  address the way the dump's kallsyms would.
* KASLR: link-time addresses inside the kernel image mapping (at or above
  ``__START_KERNEL_map`` = 0xffffffff80000000 on x86_64) are moved by
  VMCOREINFO ``KERNELOFFSET``; per-cpu symbols (zero-based offsets in
  ``.data..percpu``) are not. The result is checked against
  VMCOREINFO ``SYMBOL(_stext)``; without ``KERNELOFFSET`` the offset is
  taken from ``_stext`` itself.
* ``.notes``/any SHT_NOTE section: the GNU build-id, compared with
  VMCOREINFO ``BUILD-ID`` (a mismatch means the wrong vmlinux).
* types: the ``.BTF`` section when present (parsed by ``btf.Btf``), else
  the DWARF ``.debug_info`` via pyelftools (``dwarf.DwarfTypes``, slow
  on a full kernel; loaded only when types are needed).

Both type sources answer the same queries (``types.TypeSource``).
"""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

from dumpfilter.errors import DumpFilterError

#: x86_64 ``__START_KERNEL_map``: the kernel image is linked at and above it.
KERNEL_MAP = 0xFFFFFFFF80000000
SHT_SYMTAB, SHT_NOTE, SHT_NOBITS = 2, 7, 8
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
SHN_UNDEF, SHN_ABS, SHN_XINDEX = 0, 0xFFF1, 0xFFFF
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
NT_GNU_BUILD_ID = 3
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")


class VmlinuxError(DumpFilterError):
    """The vmlinux cannot be used (not an ELF64 kernel, wrong kernel, no
    symbols or types)."""


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int


class Vmlinux:
    """A kernel image file: its sections, symbols and types (each loaded
    on first use and cached; ``timings`` records how long each took)."""

    def __init__(self, path: str):
        self.path = path
        self._f = open(path, "rb")
        self.timings: Dict[str, float] = {}
        try:
            self.sections = self._read_sections()
        except BaseException:
            self._f.close()
            raise
        self._by_name = {s.name: s for s in reversed(self.sections)}
        self._symtab_raw: Optional[list] = None
        self._tables: Dict[int, object] = {}
        self._types = None

    def close(self) -> None:
        self._f.close()

    # ----------------------------------------------------------------- ELF

    def _pread(self, off: int, n: int) -> bytes:
        self._f.seek(off)
        data = self._f.read(n)
        if len(data) != n:
            raise VmlinuxError(f"{self.path}: truncated ({n} bytes at {off} wanted, "
                               f"{len(data)} read)")
        return data

    def _read_sections(self) -> List[Section]:
        hdr = self._f.read(_EHDR.size)
        if len(hdr) < _EHDR.size or hdr[:4] != b"\x7fELF":
            raise VmlinuxError(f"{self.path}: not an ELF file")
        if hdr[4] != 2 or hdr[5] != 1:
            raise VmlinuxError(f"{self.path}: not a 64-bit little-endian ELF file")
        (_ident, _type, machine, _ver, _entry, _phoff, shoff, _flags, _ehsize, _phentsize,
         _phnum, shentsize, shnum, shstrndx) = _EHDR.unpack(hdr)
        if machine != 62:
            raise VmlinuxError(f"{self.path}: ELF machine {machine} is not x86_64 (62)")
        if not shoff or shentsize < _SHDR.size:
            raise VmlinuxError(f"{self.path}: no section headers")
        first = _SHDR.unpack(self._pread(shoff, _SHDR.size))
        if shnum == 0:
            shnum = first[5]  # sh_size of section 0 holds the real count
        if shstrndx == SHN_XINDEX:
            shstrndx = first[6]
        if not 0 < shnum < 1 << 20:
            raise VmlinuxError(f"{self.path}: implausible section count {shnum}")
        raw = self._pread(shoff, shnum * shentsize)
        hdrs = [_SHDR.unpack_from(raw, i * shentsize) for i in range(shnum)]
        if shstrndx >= shnum:
            raise VmlinuxError(f"{self.path}: section name table index {shstrndx} out of range")
        sh = hdrs[shstrndx]
        names = self._pread(sh[4], sh[5])
        out = []
        for i, (name, typ, flags, addr, off, size, link, _info, _align, _ent) in enumerate(hdrs):
            end = names.find(b"\0", name)
            nm = names[name:end if end >= 0 else len(names)].decode("latin-1")
            out.append(Section(i, nm, typ, flags, addr, off, size, link))
        return out

    def section(self, name: str) -> Optional[Section]:
        return self._by_name.get(name)

    def read_section(self, sec: Section) -> bytes:
        if sec.type == SHT_NOBITS:
            raise VmlinuxError(f"{self.path}: section {sec.name} has no contents in the file")
        return self._pread(sec.offset, sec.size)

    def build_id(self) -> Optional[str]:
        """Hex GNU build-id from the first SHT_NOTE section carrying one."""
        for sec in self.sections:
            if sec.type != SHT_NOTE or sec.size > 1 << 20:
                continue
            data = self.read_section(sec)
            pos = 0
            while pos + 12 <= len(data):
                namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
                name = data[pos + 12:pos + 12 + namesz]
                desc_at = pos + 12 + ((namesz + 3) & ~3)
                if ntype == NT_GNU_BUILD_ID and name.rstrip(b"\0") == b"GNU":
                    return data[desc_at:desc_at + descsz].hex()
                pos = desc_at + ((descsz + 3) & ~3)
        return None

    def banner(self) -> Optional[str]:
        """The ``linux_banner`` string (``.rodata``), or None."""
        addr = self.link_address("linux_banner")
        if addr is None:
            return None
        for sec in self.sections:
            if sec.type != SHT_NOBITS and sec.addr and sec.addr <= addr < sec.addr + sec.size:
                n = min(512, sec.addr + sec.size - addr)
                return self._pread(sec.offset + addr - sec.addr, n).split(b"\0", 1)[0] \
                    .decode("latin-1")
        return None

    # ----------------------------------------------------------------- symbols

    def _raw_symbols(self) -> list:
        """[(name, link address, type letter, binding)] from .symtab."""
        if self._symtab_raw is None:
            t0 = time.perf_counter()
            symtab = next((s for s in self.sections if s.type == SHT_SYMTAB), None)
            if symtab is None:
                raise VmlinuxError(f"{self.path}: no .symtab (stripped vmlinux?)")
            if not symtab.link < len(self.sections):
                raise VmlinuxError(f"{self.path}: .symtab links to a missing string table")
            data = self.read_section(symtab)
            strtab = self.read_section(self.sections[symtab.link])
            letters = [_section_letter(s) for s in self.sections]
            out = []
            find = strtab.find
            for st_name, info, _other, shndx, value, _size in _SYM.iter_unpack(
                    data[: len(data) - len(data) % _SYM.size]):
                typ, bind = info & 0xF, info >> 4
                if not st_name or typ > STT_FUNC or shndx == SHN_UNDEF:
                    continue
                if shndx == SHN_ABS:
                    continue  # absolute constants, not addresses (kallsyms drops them)
                if shndx < len(letters):
                    letter = letters[shndx]
                else:
                    continue
                if letter is None:
                    continue  # non-allocated section: not part of the image
                end = find(b"\0", st_name)
                name = strtab[st_name:end].decode("latin-1")
                if name.startswith((".L", "$", "__crc_")):
                    continue  # local labels, mapping symbols, CRC values: not in kallsyms
                if bind == STB_WEAK:
                    letter = "W" if letter in "tT" else "V"
                elif bind == STB_GLOBAL:
                    letter = letter.upper()
                out.append((name, value, letter, bind))
            self._symtab_raw = out
            self.timings["symtab"] = time.perf_counter() - t0
        return self._symtab_raw

    def link_address(self, name: str) -> Optional[int]:
        hit = [v for n, v, _l, b in self._raw_symbols() if n == name]
        return hit[0] if hit else None

    def kaslr_offset(self, info) -> int:
        """The offset between link-time and runtime kernel-image addresses,
        checked against VMCOREINFO (``_stext``, ``BUILD-ID``)."""
        bid = self.build_id()
        if bid and info.build_id and bid.lower() != info.build_id.lower():
            raise VmlinuxError(f"{self.path} does not match the dump: its build-id is {bid}, "
                               f"the dump's kernel has {info.build_id}")
        stext = self.link_address("_stext")
        runtime = info.symbol("_stext")
        offset = info.kerneloffset
        if offset is None:
            offset = runtime - stext if runtime is not None and stext is not None else 0
        if runtime is not None and stext is not None and stext + offset != runtime:
            raise VmlinuxError(
                f"{self.path} does not match the dump: _stext is {stext:#x} + KERNELOFFSET "
                f"{offset:#x} = {stext + offset:#x}, VMCOREINFO says {runtime:#x}")
        return offset

    def symbols(self, info):
        """A ``kallsyms.KallsymsTable`` of the runtime addresses."""
        from dumpfilter.report.kallsyms import KallsymsTable

        offset = self.kaslr_offset(info)
        table = self._tables.get(offset)
        if table is None:
            t0 = time.perf_counter()
            raw = self._raw_symbols()
            mask = (1 << 64) - 1
            rows = []
            for i, (name, value, letter, bind) in enumerate(raw):
                if value >= KERNEL_MAP:
                    value = (value + offset) & mask
                # kallsyms' alias order (its input is ``nm -n``, which
                # sorts aliases by name): non-weak first, fewer leading
                # underscores first, then by name.
                under = len(name) - len(name.lstrip("_"))
                rows.append((value, bind == STB_WEAK, under, name, i, letter))
            rows.sort()
            table = KallsymsTable([r[3] for r in rows], [r[5] for r in rows],
                                  [r[0] for r in rows], encoding="vmlinux .symtab")
            self._tables[offset] = table
            self.timings["symbols"] = time.perf_counter() - t0
        return table

    # ----------------------------------------------------------------- types

    @property
    def has_btf(self) -> bool:
        return self.section(".BTF") is not None

    @property
    def has_dwarf(self) -> bool:
        return self.section(".debug_info") is not None

    def types(self):
        """``(type source, description)``: ``.BTF`` if present, else DWARF."""
        if self._types is None:
            t0 = time.perf_counter()
            sec = self.section(".BTF")
            if sec is not None:
                from dumpfilter.report.btf import Btf

                self._types = (Btf(self.read_section(sec)), "vmlinux .BTF")
                self.timings["btf"] = time.perf_counter() - t0
            elif self.has_dwarf:
                from dumpfilter.report.dwarf import DwarfTypes

                self._types = (DwarfTypes(self.path), "vmlinux DWARF")
                self.timings["dwarf-open"] = time.perf_counter() - t0
            else:
                raise VmlinuxError(f"{self.path} has neither .BTF nor DWARF (.debug_info): "
                                   "pass the debug vmlinux (e.g. the -dbg/-debuginfo package)")
        return self._types


def _section_letter(sec: Section) -> Optional[str]:
    """Lower-case nm letter for symbols of ``sec`` (None if not loaded)."""
    if not sec.flags & SHF_ALLOC:
        return None
    if sec.flags & SHF_EXECINSTR:
        return "t"
    if sec.type == SHT_NOBITS:
        return "b"
    if sec.flags & SHF_WRITE:
        return "d"
    return "r"


def open_vmlinux(path: str) -> Vmlinux:
    try:
        return Vmlinux(path)
    except OSError as e:
        raise VmlinuxError(f"cannot open vmlinux {path}: {e.strerror or e}") from None
