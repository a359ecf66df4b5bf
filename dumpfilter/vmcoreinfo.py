"""VMCOREINFO: the kernel's ``KEY=value`` note, parsed once into an
immutable object. This is the only module that knows the key spellings.

Numbers are parsed strictly: SYMBOL() and KERNELOFFSET are hex without
``0x``; SIZE/OFFSET/LENGTH/NUMBER are decimal (NUMBER may be negative, e.g.
``NUMBER(phys_base)``). A malformed value is an error, never a silent 0, and
so is a value outside the bounds of ``dumpfilter.limits`` (PAGESIZE a power
of two in [4 KiB, 64 KiB], structure sizes and offsets, array lengths).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Optional

from dumpfilter.errors import VmcoreInfoError
from dumpfilter.limits import DumpLimitError, check_page_size, check_vmcoreinfo_value

_KEY_RE = re.compile(r"^(SYMBOL|SIZE|OFFSET|LENGTH|NUMBER)\((.+)\)$")
_DEC_RE = re.compile(r"^-?[0-9]+$")
_HEX_RE = re.compile(r"^(0[xX])?[0-9a-fA-F]+$")


def _parse_dec(key: str, value: str) -> int:
    if _DEC_RE.match(value):
        return int(value, 10)
    # makedumpfile falls back to hex for these; accept an explicit 0x form.
    if value.lower().startswith("0x") and _HEX_RE.match(value):
        return int(value, 16)
    raise VmcoreInfoError(f"VMCOREINFO {key}={value!r}: not a decimal number")


def _parse_hex(key: str, value: str) -> int:
    if _HEX_RE.match(value):
        return int(value, 16)
    raise VmcoreInfoError(f"VMCOREINFO {key}={value!r}: not a hex number")


def _bounded(kind: str, name: str, value: int) -> int:
    """``value`` within ``dumpfilter.limits``' bounds for ``KIND(name)``."""
    try:
        return check_vmcoreinfo_value(kind, name, value)
    except DumpLimitError as e:
        raise VmcoreInfoError(str(e)) from None


@dataclass(frozen=True)
class VmcoreInfo:
    """Parsed VMCOREINFO. Lookups return None for a missing key; the
    ``require_*`` forms raise ``VmcoreInfoError`` naming the key."""

    raw: bytes
    entries: Mapping[str, str]
    symbols: Mapping[str, int]
    sizes: Mapping[str, int]
    offsets: Mapping[str, int]
    lengths: Mapping[str, int]
    numbers: Mapping[str, int]
    osrelease: Optional[str] = None
    page_size: Optional[int] = None
    crashtime: Optional[int] = None
    kerneloffset: Optional[int] = None
    build_id: Optional[str] = None

    @classmethod
    def parse(cls, raw: bytes) -> "VmcoreInfo":
        text = raw.split(b"\0", 1)[0].decode("ascii", "replace")
        entries: dict = {}
        groups: dict = {k: {} for k in ("SYMBOL", "SIZE", "OFFSET", "LENGTH", "NUMBER")}
        for line in text.splitlines():
            if "=" not in line:
                continue
            key, value = line.split("=", 1)
            key, value = key.strip(), value.strip()
            if not key or key in entries:
                continue  # only the first occurrence counts (makedumpfile)
            entries[key] = value
            m = _KEY_RE.match(key)
            if m:
                kind, name = m.groups()
                parse = _parse_hex if kind == "SYMBOL" else _parse_dec
                groups[kind][name] = _bounded(kind, name, parse(key, value))

        def opt(key, parse):
            return parse(key, entries[key]) if key in entries else None

        page_size = opt("PAGESIZE", _parse_dec)
        if page_size is not None:
            try:
                check_page_size("VMCOREINFO", "PAGESIZE", page_size)
            except DumpLimitError as e:
                raise VmcoreInfoError(str(e)) from None
        kerneloffset = opt("KERNELOFFSET", _parse_hex)
        if kerneloffset is not None:
            _bounded("SYMBOL", "KERNELOFFSET", kerneloffset)
        ro = MappingProxyType
        return cls(
            raw=bytes(raw),
            entries=ro(entries),
            symbols=ro(groups["SYMBOL"]),
            sizes=ro(groups["SIZE"]),
            offsets=ro(groups["OFFSET"]),
            lengths=ro(groups["LENGTH"]),
            numbers=ro(groups["NUMBER"]),
            osrelease=entries.get("OSRELEASE"),
            page_size=page_size,
            crashtime=opt("CRASHTIME", _parse_dec),
            kerneloffset=kerneloffset,
            build_id=entries.get("BUILD-ID"),
        )

    def symbol(self, name: str) -> Optional[int]:
        return self.symbols.get(name)

    def size(self, name: str) -> Optional[int]:
        return self.sizes.get(name)

    def offset(self, name: str) -> Optional[int]:
        return self.offsets.get(name)

    def length(self, name: str) -> Optional[int]:
        return self.lengths.get(name)

    def number(self, name: str) -> Optional[int]:
        return self.numbers.get(name)

    def _require(self, table: Mapping[str, int], kind: str, name: str) -> int:
        try:
            return table[name]
        except KeyError:
            raise VmcoreInfoError(f"VMCOREINFO lacks {kind}({name})") from None

    def require_symbol(self, name: str) -> int:
        return self._require(self.symbols, "SYMBOL", name)

    def require_size(self, name: str) -> int:
        return self._require(self.sizes, "SIZE", name)

    def require_offset(self, name: str) -> int:
        return self._require(self.offsets, "OFFSET", name)

    def require_length(self, name: str) -> int:
        return self._require(self.lengths, "LENGTH", name)

    def require_number(self, name: str) -> int:
        return self._require(self.numbers, "NUMBER", name)

    def __bool__(self) -> bool:
        return bool(self.entries)


EMPTY = VmcoreInfo.parse(b"")
