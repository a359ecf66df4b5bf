"""Data symbols recovered from the kernel image when kallsyms has only text.

Kernels built without CONFIG_KALLSYMS_ALL (Debian's arm64 kernels, for
one) list only functions in kallsyms: no ``init_task``, ``jiffies_64``,
``__per_cpu_offset``, ``__start_BTF``. Three tables the kernel keeps in its
read-only data give them back, each found by its own structure and
checked, never by a kernel version:

* the exported-symbol table ``__ksymtab`` / ``__ksymtab_gpl``: with
  CONFIG_HAVE_ARCH_PREL32_RELOCATIONS (7290d5809571, "module: use relative
  references for __ksymtab entries", v4.19) each entry is
  ``{int value_offset; int name_offset;}`` plus ``int namespace_offset``
  since 8651ec01daed ("module: add support for symbol namespaces", v5.4),
  every offset relative to its own field. The table is found from the
  entry whose name field points at the string ``init_task`` (exported by
  every kernel) and walked both ways while names stay identifiers.
* the ``.BTF`` section: its header (magic 0xeb9f, version 1, ``hdr_len``
  24) gives its own length; the blob must parse.
* per-cpu variables: BTF's ``.data..percpu`` DATASEC gives each variable's
  offset in the section; an exported per-cpu variable (in both tables)
  gives the section's address, hence e.g. ``runqueues``.
* the ``modules`` list head, from the loaded modules (report/modfind.py).
"""
from __future__ import annotations

import re
import struct
from array import array
from typing import Dict, Optional, Tuple

from dumpfilter.errors import DumpFilterError, FaultError, VmcoreInfoError

#: How much of the kernel image is searched, from the lowest kallsyms
#: table: kallsyms lives in ``.rodata``, which the generic linker script
#: (include/asm-generic/vmlinux.lds.h, RO_DATA) places before ``__ksymtab``,
#: ``__ksymtab_strings`` and ``.BTF``.
IMAGE_SPAN = 40 << 20
_KALLSYMS_TABLES = ("kallsyms_offsets", "kallsyms_addresses", "kallsyms_relative_base",
                    "kallsyms_num_syms", "kallsyms_names", "kallsyms_token_table",
                    "kallsyms_token_index")
_CHUNK = 4 << 20
#: The ksymtab lies before ``__ksymtab_strings``; the anchor is searched
#: this far before the anchor string.
_KSYMTAB_WINDOW = 4 << 20
_IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_.$]*\Z")
_ANCHOR = b"init_task"
_BTF_HEADER = struct.Struct("<HBBIIIII")


class KernelImage:
    """Bytes of the kernel image from ``base`` (unreadable pages as zeros)."""

    def __init__(self, mem, base: int, span: int = IMAGE_SPAN):
        self.base = base
        buf = bytearray(span)
        readable = 0
        for off in range(0, span, _CHUNK):
            try:
                mem.read_into(base + off, memoryview(buf)[off:off + _CHUNK])
                readable += 1
            except FaultError:
                # Page by page, so one unmapped page does not blank 4 MiB.
                for p in range(off, off + _CHUNK, 4096):
                    try:
                        mem.read_into(base + p, memoryview(buf)[p:p + 4096])
                    except FaultError:
                        pass
        self.data = buf  # searched in place (no second 64 MiB copy)

    def string_at(self, addr: int, limit: int = 256) -> Optional[bytes]:
        off = addr - self.base
        if not 0 <= off < len(self.data):
            return None
        end = self.data.find(b"\0", off, off + limit)
        return None if end < 0 else bytes(self.data[off:end])

    def s32(self, addr: int) -> int:
        return struct.unpack_from("<i", self.data, addr - self.base)[0]


def _entry_name(img: KernelImage, entry: int) -> Optional[str]:
    off = entry - img.base
    if not 0 <= off <= len(img.data) - 8:
        return None
    name = img.string_at(entry + 4 + img.s32(entry + 4))
    if not name or not _IDENT.match(name):
        return None
    return name.decode("ascii")


def exported_symbols(img: KernelImage) -> Dict[str, int]:
    """name -> address of every symbol in ``__ksymtab``/``__ksymtab_gpl``
    (PREL32 entries). Raises VmcoreInfoError when the table is not found."""
    data = img.data
    pos = data.find(b"\0" + _ANCHOR + b"\0")
    if pos < 0:
        raise VmcoreInfoError("no __ksymtab_strings in the kernel image (no 'init_task' string)")
    target = pos + 1  # image offset of the anchor string
    lo = max(0, (target - _KSYMTAB_WINDOW) & ~3)
    words = array("i", data[lo:target & ~3])
    anchor = None
    for i, v in enumerate(words):
        if lo + 4 * i + v == target:
            anchor = img.base + lo + 4 * i - 4  # the entry starts at value_offset
            break
    if anchor is None:
        raise VmcoreInfoError("no __ksymtab entry names init_task (kernel without "
                              "PREL32 ksymtab entries?)")
    for stride in (12, 8):
        if _entry_name(img, anchor + stride) and _entry_name(img, anchor - stride):
            break
    else:
        raise VmcoreInfoError("__ksymtab: neighbours of the init_task entry do not decode")
    start = anchor
    while _entry_name(img, start - stride):
        start -= stride
    out: Dict[str, int] = {}
    e = start
    while True:
        name = _entry_name(img, e)
        if name is None:
            break
        out.setdefault(name, (e + img.s32(e)) & ((1 << 64) - 1))
        e += stride
    return out


def find_btf(img: KernelImage) -> Tuple[int, int]:
    """(address, length) of the kernel's ``.BTF`` section in the image."""
    from dumpfilter.report.btf import Btf, BtfError

    data = img.data
    magic = struct.pack("<HBBI", 0xEB9F, 1, 0, _BTF_HEADER.size)
    pos = data.find(magic)
    while pos >= 0:
        _m, _v, _f, hdr, t_off, t_len, s_off, s_len = _BTF_HEADER.unpack_from(data, pos)
        size = hdr + max(t_off + t_len, s_off + s_len)
        if pos + size <= len(data) and t_len and s_len:
            try:
                btf = Btf(bytes(data[pos:pos + size]))
                if len(btf) > 1000:
                    return img.base + pos, size
            except BtfError:
                pass
        pos = data.find(magic, pos + 1)
    raise VmcoreInfoError("no .BTF section in the kernel image (CONFIG_DEBUG_INFO_BTF off?)")


def percpu_symbols(btf, exported: Dict[str, int]) -> Dict[str, int]:
    """Addresses of the per-cpu variables BTF describes, placed by an
    exported per-cpu variable; {} when none is exported."""
    offsets = btf.datasec_vars(".data..percpu")
    for name, off in sorted(offsets.items()):
        if name in exported:
            start = exported[name] - off
            return {n: start + o for n, o in offsets.items()}
    return {}


def image_symbols(mem, info) -> Dict[str, int]:
    """Exported, BTF-section and per-cpu symbols of the dumped kernel."""
    from dumpfilter.report.btf import Btf

    tables = [a for a in (info.symbol(n) for n in _KALLSYMS_TABLES) if a is not None]
    if not tables:
        raise VmcoreInfoError("VMCOREINFO names no kallsyms table: cannot find the kernel's .rodata")
    img = KernelImage(mem, min(tables) & ~0xFFF)
    syms = exported_symbols(img)
    try:
        addr, size = find_btf(img)
    except DumpFilterError:
        return syms
    syms.setdefault("__start_BTF", addr)
    syms.setdefault("__stop_BTF", addr + size)
    btf = Btf(bytes(img.data[addr - img.base:addr - img.base + size]))
    for name, a in percpu_symbols(btf, syms).items():
        syms.setdefault(name, a)
    from dumpfilter.report.modfind import find_modules_head

    head = find_modules_head(mem, info, btf)
    if head is not None:
        syms.setdefault("modules", head)
    return syms


def with_image_symbols(table, mem, info):
    """``table`` (a KallsymsTable) plus the symbols ``image_symbols``
    finds that it lacks (type ``D``)."""
    from dumpfilter.report.kallsyms import KallsymsTable

    extra = {n: a for n, a in image_symbols(mem, info).items() if n not in table}
    names = table.names + list(extra)
    types = table.types + ["D"] * len(extra)
    addrs = table.addresses + list(extra.values())
    return KallsymsTable(names, types, addrs, f"{table.encoding} + kernel image tables")
