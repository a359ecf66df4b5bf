"""Bounds on values read from a dump: the one validation layer (issue 9).

A dump is untrusted input. Every number a reader or the report takes from
it — VMCOREINFO values, ELF and kdump header fields, flattened records,
sizes found in dumped memory — is checked here before it sizes an
allocation, a loop, a bitmap or an output. A value outside its bound
raises ``DumpLimitError`` (a ``CorruptDumpError``) naming the field and the
value, which the CLIs print as one line (exit 1).

The bounds are generous for real kernels and machines and tight enough
that the work a dump causes stays proportional to the bytes the file
actually holds:

* page size: a power of two in [4 KiB, 64 KiB] (x86_64 4 KiB; arm64 4, 16
  or 64 KiB; ppc64 64 KiB);
* physical addresses below ``2**MAX_PHYSMEM_BITS`` (VMCOREINFO
  ``NUMBER(MAX_PHYSMEM_BITS)``, exported since kernel commit 1d50e5d0c505
  "crash_core, vmcoreinfo: Append 'MAX_PHYSMEM_BITS' to vmcoreinfo"; else ``DEFAULT_PHYS_BITS``, the widest any 64-bit
  architecture supports);
* ``SIZE()``/``OFFSET()`` of a kernel structure below ``MAX_STRUCT_BYTES``,
  ``LENGTH()`` of an array at most ``MAX_LENGTH`` elements (and the buddy
  allocator's order count ``LENGTH(zone.free_area)`` at most
  ``MAX_ORDERS``: the C core shifts by the order);
* note blobs, VMCOREINFO text and other metadata at most ``MAX_BLOB``;
* zero-filled memory (PT_LOAD ``p_memsz`` beyond ``p_filesz``) at most
  ``ZERO_FILL_FACTOR`` times the file's size plus ``ZERO_FILL_SLACK``.
"""
from __future__ import annotations

from typing import Optional

from dumpfilter.errors import CorruptDumpError

PAGE_SIZE_MIN = 4096
PAGE_SIZE_MAX = 64 << 10
DEFAULT_PHYS_BITS = 52
PHYS_BITS_MIN, PHYS_BITS_MAX = 32, 64
MAX_STRUCT_BYTES = 1 << 20
MAX_LENGTH = 1 << 26
MAX_ORDERS = 32
MAX_BLOB = 64 << 20
ZERO_FILL_FACTOR = 64
ZERO_FILL_SLACK = 1 << 30
U64_MAX = (1 << 64) - 1


class DumpLimitError(CorruptDumpError):
    """A value read from a dump is outside the bound its use needs."""


def fail(where: str, field: str, value, why: str) -> None:
    """Raise ``DumpLimitError``: ``WHERE: FIELD=VALUE: WHY``."""
    shown = f"{value:#x}" if isinstance(value, int) and abs(value) >= 1 << 16 else f"{value}"
    prefix = f"{where}: " if where else ""
    raise DumpLimitError(f"{prefix}{field}={shown}: {why}")


def check_range(where: str, field: str, value: int, lo: int, hi: int) -> int:
    """``value`` if ``lo <= value <= hi``."""
    if not lo <= value <= hi:
        fail(where, field, value, f"outside [{lo}, {hi:#x}]" if hi >= 1 << 16
             else f"outside [{lo}, {hi}]")
    return value


def check_page_size(where: str, field: str, value: int) -> int:
    if value < PAGE_SIZE_MIN or value > PAGE_SIZE_MAX or value & (value - 1):
        fail(where, field, value,
             f"not a power of two in [{PAGE_SIZE_MIN}, {PAGE_SIZE_MAX}]")
    return value


def phys_bits(number: Optional[int]) -> int:
    """The physical address width a dump declares (``NUMBER(MAX_PHYSMEM_BITS)``,
    already range-checked by ``vmcoreinfo``), else ``DEFAULT_PHYS_BITS``."""
    return DEFAULT_PHYS_BITS if number is None else number


def check_phys_end(where: str, field: str, end: int, bits: int) -> None:
    """A physical range must end at or below ``2**bits``."""
    if end > 1 << bits:
        fail(where, field, end, f"beyond the {bits}-bit physical address space")


def check_blob(where: str, field: str, size: int, available: int) -> int:
    """A metadata blob of ``size`` bytes with ``available`` bytes left in the file."""
    if size < 0 or size > MAX_BLOB:
        fail(where, field, size, f"not in [0, {MAX_BLOB}] (metadata larger than this is corrupt)")
    if size > available:
        fail(where, field, size, f"beyond the end of the file ({max(available, 0)} bytes left)")
    return size


def zero_fill_allowed(file_size: int) -> int:
    return ZERO_FILL_FACTOR * max(file_size, 0) + ZERO_FILL_SLACK


# ----------------------------------------------------------------- VMCOREINFO

#: Per-key bounds beyond the generic ones (inclusive).
_SPECIAL = {
    ("LENGTH", "zone.free_area"): (1, MAX_ORDERS),
    ("LENGTH", "free_area.free_list"): (1, 64),
    ("NUMBER", "MAX_PHYSMEM_BITS"): (PHYS_BITS_MIN, PHYS_BITS_MAX),
    ("NUMBER", "SECTION_SIZE_BITS"): (12, 48),
    ("SIZE", "mem_section"): (8, PAGE_SIZE_MAX),
    ("SIZE", "page"): (8, 4096),
}


def check_vmcoreinfo_value(kind: str, name: str, value: int) -> int:
    """Bounds of one ``KIND(name)=value`` entry (KIND: SYMBOL, SIZE,
    OFFSET, LENGTH, NUMBER)."""
    key = f"{kind}({name})"
    lo_hi = _SPECIAL.get((kind, name))
    if lo_hi is not None:
        return check_range("VMCOREINFO", key, value, *lo_hi)
    if kind == "SYMBOL":
        return check_range("VMCOREINFO", key, value, 0, U64_MAX)
    if kind == "SIZE":
        return check_range("VMCOREINFO", key, value, 0, MAX_STRUCT_BYTES)
    if kind == "OFFSET":
        return check_range("VMCOREINFO", key, value, 0, MAX_STRUCT_BYTES)
    if kind == "LENGTH":
        return check_range("VMCOREINFO", key, value, 0, MAX_LENGTH)
    # NUMBER: signed or unsigned 64-bit (NUMBER(phys_base) may be negative,
    # NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE) is printed either way).
    return check_range("VMCOREINFO", key, value, -(1 << 63), U64_MAX)


def check_struct_field(where: str, struct_size: int, field: str, offset: int, width: int) -> None:
    """A field of ``width`` bytes at ``offset`` must lie inside the structure."""
    if offset + width > struct_size:
        fail(where, field, offset, f"a {width}-byte field there overruns the "
                                   f"{struct_size}-byte structure")
