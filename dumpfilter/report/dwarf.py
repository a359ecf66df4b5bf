"""Struct layouts from DWARF, for a vmlinux without a ``.BTF`` section.

Implements the ``typesource.TypeSource`` queries over ``.debug_info`` with
pyelftools (an optional dependency, imported here only; its absence is
reported as a ``DwarfError`` saying what to install). DWARF relocations are
applied by pyelftools, so relocatable objects (``gcc -g -c``) work too.

Lazy by design: a full kernel has thousands of compile units, so units are
indexed one at a time, and only their top-level DIEs (named complete
structs/unions, typedefs, enumerators), until the name asked for is found.
A name that exists nowhere therefore costs a scan of every unit.

DWARF facts used: ``DW_AT_data_member_location`` is a constant (DWARF 3+) or
a ``DW_OP_plus_uconst`` expression (DWARF 2); bitfields carry
``DW_AT_bit_size`` and either ``DW_AT_data_bit_offset`` (DWARF 4+, bits from
the start of the struct) or ``DW_AT_bit_offset`` (DWARF 2/3, counted from
the most significant bit of the storage unit: on a little-endian target the
offset from the struct start is ``8 * (location + storage size) -
bit_offset - bit_size``); arrays list one ``DW_TAG_subrange_type`` per
dimension with ``DW_AT_count`` or ``DW_AT_upper_bound`` (count = bound + 1).
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

from dumpfilter.errors import CorruptDumpError
from dumpfilter.report.btf import BtfLookupError, Member, MemberInfo, MemberQueries

_QUALIFIERS = ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type",
               "DW_TAG_restrict_type", "DW_TAG_atomic_type", "DW_TAG_immutable_type")
_AGGREGATES = ("DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_class_type")
_PATH = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")
DW_OP_plus_uconst = 0x23

INSTALL_HINT = ("reading types from DWARF needs pyelftools, which is not installed "
                "(pip install pyelftools); a vmlinux with a .BTF section needs no extra package")


class DwarfError(CorruptDumpError):
    """The DWARF is unusable, or pyelftools is missing."""


class DwarfLookupError(BtfLookupError):
    """A struct, member or enumerator is not in the DWARF."""


def _uleb(data, pos: int = 0) -> int:
    val = shift = 0
    for b in data[pos:]:
        val |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return val


def _name(die) -> Optional[str]:
    a = die.attributes.get("DW_AT_name")
    if a is None:
        return None
    v = a.value
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _attr(die, name: str, default=None):
    a = die.attributes.get(name)
    return default if a is None else a.value


class DwarfTypes(MemberQueries):
    """Type source over the DWARF of an ELF file (path)."""

    def __init__(self, path: str):
        try:
            from elftools.elf.elffile import ELFFile
        except ImportError:
            raise DwarfError(INSTALL_HINT) from None
        self.path = path
        self._fh = open(path, "rb")
        try:
            elf = ELFFile(self._fh)
            if not elf.has_dwarf_info() or elf.get_section_by_name(".debug_info") is None:
                raise DwarfError(f"{path} has no DWARF (.debug_info): pass the debug vmlinux")
            self._dwarf = elf.get_dwarf_info(relocate_dwarf_sections=True)
        except DwarfError:
            self._fh.close()
            raise
        except Exception as e:  # pyelftools raises its own exception types
            self._fh.close()
            raise DwarfError(f"{path}: cannot read DWARF: {e}") from None
        self._cus = self._dwarf.iter_CUs()
        self._done = False
        self.units_scanned = 0
        self._structs: Dict[str, object] = {}
        self._typedefs: Dict[str, object] = {}
        self._enums: Dict[str, int] = {}
        self._dies: Dict[int, object] = {}
        self._layouts: Dict[int, List[Member]] = {}

    def close(self) -> None:
        self._fh.close()

    # ----------------------------------------------------------------- index

    def _scan_unit(self) -> bool:
        try:
            cu = next(self._cus, None)
            if cu is None:
                self._done = True
                return False
            self.units_scanned += 1
            for die in cu.get_top_DIE().iter_children():
                tag = die.tag
                if tag in _AGGREGATES:
                    name = _name(die)
                    if name and "DW_AT_declaration" not in die.attributes:
                        self._structs.setdefault(name, die)
                elif tag == "DW_TAG_typedef":
                    name = _name(die)
                    if name:
                        self._typedefs.setdefault(name, die)
                elif tag == "DW_TAG_enumeration_type":
                    for c in die.iter_children():
                        if c.tag == "DW_TAG_enumerator":
                            n = _name(c)
                            if n is not None:
                                self._enums.setdefault(n, _attr(c, "DW_AT_const_value", 0))
        except DwarfError:
            raise
        except Exception as e:
            raise DwarfError(f"{self.path}: corrupt DWARF: {e}") from None
        return True

    def _struct_die(self, name: str):
        while name not in self._structs and not self._done:
            self._scan_unit()
        die = self._structs.get(name)
        if die is None and name in self._typedefs:
            r = self._resolve(self._typedefs[name])
            if r is not None and r.tag in _AGGREGATES:
                die = r
        if die is None:
            raise DwarfLookupError(f"DWARF has no struct or union named {name!r}")
        self._dies[die.offset] = die
        return die

    def _die(self, t):
        """DIE of a struct name or of a type id (DIE offset)."""
        if isinstance(t, str):
            return self._struct_die(t)
        die = self._dies.get(t)
        if die is None:
            raise DwarfLookupError(f"DWARF type id {t} was not produced by this source")
        return die

    def _type_of(self, die):
        """The DIE of ``die``'s DW_AT_type (None for void)."""
        if "DW_AT_type" not in die.attributes:
            return None
        t = die.get_DIE_from_attribute("DW_AT_type")
        self._dies[t.offset] = t
        return t

    def _resolve(self, die):
        for _ in range(64):
            if die is None or die.tag not in _QUALIFIERS:
                return die
            die = self._type_of(die)
        raise DwarfError("DWARF: typedef/qualifier chain loops")

    # ----------------------------------------------------------------- sizes

    def _dims(self, die) -> List[int]:
        dims = []
        for c in die.iter_children():
            if c.tag == "DW_TAG_subrange_type":
                if "DW_AT_count" in c.attributes:
                    dims.append(_attr(c, "DW_AT_count"))
                elif "DW_AT_upper_bound" in c.attributes:
                    dims.append(_attr(c, "DW_AT_upper_bound") + 1)
                else:
                    dims.append(0)  # flexible array
        return dims or [0]

    def _sizeof_die(self, die) -> int:
        die = self._resolve(die)
        if die is None:
            raise DwarfError("DWARF: void has no size")
        if die.tag == "DW_TAG_array_type":
            if "DW_AT_byte_size" in die.attributes:
                return _attr(die, "DW_AT_byte_size")
            n = 1
            for d in self._dims(die):
                n *= d
            return n * self._sizeof_die(self._type_of(die))
        if "DW_AT_byte_size" in die.attributes:
            return _attr(die, "DW_AT_byte_size")
        if die.tag in ("DW_TAG_pointer_type", "DW_TAG_reference_type"):
            return 8
        raise DwarfError(f"DWARF type {die.tag} at {die.offset:#x} has no size")

    def sizeof(self, t) -> int:
        return self._sizeof_die(self._die(t))

    def has_struct(self, name: str) -> bool:
        try:
            self._struct_die(name)
            return True
        except DwarfLookupError:
            return False

    # ----------------------------------------------------------------- members

    def _member_list(self, die) -> List[Member]:
        die = self._resolve(die)
        if die is None or die.tag not in _AGGREGATES:
            raise DwarfLookupError(f"DWARF type at {getattr(die, 'offset', 0):#x} is not a struct/union")
        cached = self._layouts.get(die.offset)
        if cached is not None:
            return cached
        out: List[Member] = []
        for c in die.iter_children():
            if c.tag != "DW_TAG_member":
                continue
            mtype = self._type_of(c)
            loc = _attr(c, "DW_AT_data_member_location", 0)
            if isinstance(loc, (list, bytes)):
                loc = _uleb(loc, 1) if loc and loc[0] == DW_OP_plus_uconst else 0
            bsize = _attr(c, "DW_AT_bit_size", 0)
            size = self._sizeof_die(mtype) if mtype is not None else 0
            if "DW_AT_data_bit_offset" in c.attributes:
                bits = _attr(c, "DW_AT_data_bit_offset")
            elif bsize and "DW_AT_bit_offset" in c.attributes:
                storage = _attr(c, "DW_AT_byte_size", size)
                bits = 8 * (loc + storage) - _attr(c, "DW_AT_bit_offset") - bsize
            else:
                bits = 8 * loc
            out.append(Member(_name(c) or "", mtype.offset if mtype is not None else 0,
                              bits, bsize, size))
        self._layouts[die.offset] = out
        return out

    def members(self, t) -> List[Member]:
        return self._member_list(self._die(t))

    def _find_member(self, die, name: str) -> Optional[Tuple[int, Member]]:
        ms = self._member_list(die)
        for m in ms:
            if m.name == name:
                return m.bit_offset, m
        for m in ms:
            if not m.name and m.type_id:
                r = self._resolve(self._dies[m.type_id])
                if r is not None and r.tag in _AGGREGATES:
                    hit = self._find_member(r, name)
                    if hit is not None:
                        return m.bit_offset + hit[0], hit[1]
        return None

    def member(self, struct_name, path: str) -> MemberInfo:
        """Same path syntax and result as ``btf.Btf.member``."""
        cur = self._die(struct_name)
        dims: List[int] = []  # remaining array dimensions of ``cur``
        bits = 0
        last: Optional[Member] = None
        size = 0
        for part in path.split("."):
            m = _PATH.fullmatch(part)
            if not m:
                raise DwarfLookupError(f"bad member path component {part!r} in {path!r}")
            name, subs = m.group(1), m.group(2)
            r = self._resolve(cur)
            if dims or r is None or r.tag not in _AGGREGATES:
                raise DwarfLookupError(f"{path!r}: {name!r} is looked up in a non-struct")
            hit = self._find_member(r, name)
            if hit is None:
                raise DwarfLookupError(f"struct {_name(r) or '<anon>'} has no member {name!r}")
            bits += hit[0]
            last = hit[1]
            cur = self._dies.get(last.type_id)
            size = last.size
            dims = []
            for idx in re.findall(r"\[(\d+)\]", subs):
                if not dims:
                    arr = self._resolve(cur)
                    if arr is None or arr.tag != "DW_TAG_array_type":
                        raise DwarfLookupError(f"{path!r}: {name!r} is not an array")
                    dims = self._dims(arr)
                    elem = self._type_of(arr)
                n = dims.pop(0)
                i = int(idx)
                if n and i >= n:
                    raise DwarfLookupError(f"{path!r}: index {i} beyond {n} elements")
                stride = self._sizeof_die(elem)
                for d in dims:
                    stride *= d
                bits += 8 * stride * i
                size = stride
                last = None
                if not dims:
                    cur = elem
        bsize = last.bitfield_size if last is not None else 0
        tid = cur.offset if cur is not None else 0
        return MemberInfo(bits // 8, tid, size, bits, bsize)

    def enumerator(self, name: str) -> Optional[int]:
        while name not in self._enums and not self._done:
            self._scan_unit()
        return self._enums.get(name)

    def __len__(self) -> int:
        return len(self._structs)
