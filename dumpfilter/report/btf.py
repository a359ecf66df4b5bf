"""The kernel's BTF type information, read from the dump's memory.

Reads the ``.BTF`` section between kallsyms symbols ``__start_BTF`` and
``__stop_BTF`` (CONFIG_DEBUG_INFO_BTF; the symbols need CONFIG_KALLSYMS_ALL)
and parses the BTF format (include/uapi/linux/btf.h): a header (magic
0xeb9f, version 1, ``hdr_len``, type and string section offsets/lengths
relative to the end of the header), then ``struct btf_type`` records with
kind-specific trailers for every kind: INT, PTR, ARRAY, STRUCT, UNION,
ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR,
DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64. Type ids start at 1 (0 is void).

Offers type lookup by name, sizes, struct layouts (with bitfields) and
nested member paths such as ``member_offset("task_struct", "tasks.next")``
or ``"thread_info.cpu"``; anonymous struct/union members are searched
transparently. Every offset read from the blob is bounds-checked: a corrupt
blob raises ``BtfError`` (a ``CorruptDumpError``), never IndexError.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from dumpfilter.errors import CorruptDumpError, FaultError, VmcoreInfoError

BTF_MAGIC = 0xEB9F

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_FWD, KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 7, 8, 9, 10, 11
KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC, KIND_FLOAT = 12, 13, 14, 15, 16
KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = 17, 18, 19

KIND_NAMES = {
    0: "UNKN", 1: "INT", 2: "PTR", 3: "ARRAY", 4: "STRUCT", 5: "UNION", 6: "ENUM",
    7: "FWD", 8: "TYPEDEF", 9: "VOLATILE", 10: "CONST", 11: "RESTRICT", 12: "FUNC",
    13: "FUNC_PROTO", 14: "VAR", 15: "DATASEC", 16: "FLOAT", 17: "DECL_TAG",
    18: "TYPE_TAG", 19: "ENUM64",
}
#: Bytes of kind-specific data after the 12-byte btf_type: (fixed, per vlen).
_TRAILER = {
    KIND_INT: (4, 0), KIND_PTR: (0, 0), KIND_ARRAY: (12, 0), KIND_STRUCT: (0, 12),
    KIND_UNION: (0, 12), KIND_ENUM: (0, 8), KIND_FWD: (0, 0), KIND_TYPEDEF: (0, 0),
    KIND_VOLATILE: (0, 0), KIND_CONST: (0, 0), KIND_RESTRICT: (0, 0), KIND_FUNC: (0, 0),
    KIND_FUNC_PROTO: (0, 8), KIND_VAR: (4, 0), KIND_DATASEC: (0, 12), KIND_FLOAT: (0, 0),
    KIND_DECL_TAG: (4, 0), KIND_TYPE_TAG: (0, 0), KIND_ENUM64: (0, 12),
}
_SIZED = (KIND_INT, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_DATASEC, KIND_FLOAT, KIND_ENUM64)
_REFERRING = frozenset((KIND_PTR, KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT,
                        KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR, KIND_DECL_TAG, KIND_TYPE_TAG))
_MODIFIERS = (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG)
_MAX_BTF_BYTES = 256 << 20
_HDR = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")


class BtfError(CorruptDumpError):
    """The BTF blob is malformed, or a type/member asked for does not exist."""


class BtfLookupError(BtfError, KeyError):
    """A type or member name is not in the BTF."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Member:
    """One struct/union member. ``offset`` is in bytes (of the storage unit
    for a bitfield); ``bit_offset`` is the full offset in bits;
    ``bitfield_size`` is 0 for a plain member."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int
    size: int

    @property
    def offset(self) -> int:
        return self.bit_offset // 8


@dataclass(frozen=True)
class MemberInfo:
    """Result of a member-path lookup: byte offset from the outer struct,
    the member's type id, its size in bytes, and bitfield details."""

    offset: int
    type_id: int
    size: int
    bit_offset: int
    bitfield_size: int


class MemberQueries:
    """Conveniences every type source derives from its ``member()``."""

    def member_offset(self, struct_name, path: str) -> int:
        """Byte offset of ``path`` inside ``struct_name``."""
        return self.member(struct_name, path).offset

    def has_member(self, struct_name, path: str) -> bool:
        """True if ``path`` resolves inside the struct."""
        try:
            self.member(struct_name, path)
            return True
        except BtfLookupError:
            return False


class Btf(MemberQueries):
    """A parsed BTF blob (vmlinux BTF: no base)."""

    def __init__(self, blob: bytes):
        self.blob = bytes(blob)
        if len(self.blob) < _HDR.size:
            raise BtfError(f"BTF blob is {len(self.blob)} bytes, shorter than its header")
        magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = _HDR.unpack_from(self.blob, 0)
        if magic != BTF_MAGIC:
            raise BtfError(f"BTF magic is {magic:#06x}, expected 0xeb9f")
        if version != 1:
            raise BtfError(f"BTF version {version} is not supported (1 is)")
        if hdr_len < _HDR.size or hdr_len > len(self.blob):
            raise BtfError(f"BTF hdr_len {hdr_len} is invalid")
        n = len(self.blob)
        t0, s0 = hdr_len + type_off, hdr_len + str_off
        if t0 + type_len > n or s0 + str_len > n:
            raise BtfError(f"BTF sections (types {t0}+{type_len}, strings {s0}+{str_len}) "
                           f"exceed the blob ({n} bytes)")
        if str_len and self.blob[s0 + str_len - 1] != 0:
            raise BtfError("BTF string section is not NUL-terminated")
        self._str0, self._strlen = s0, str_len
        # Per type id (index 0 = void): (kind, name_off, info, size_or_type, data offset)
        kinds = [0]
        name_offs = [0]
        infos = [0]
        sizes = [0]
        datas = [0]
        pos, end = t0, t0 + type_len
        unpack = _TYPE.unpack_from
        trailer = _TRAILER
        while pos < end:
            if pos + 12 > end:
                raise BtfError(f"BTF type #{len(kinds)} truncated at offset {pos}")
            name_off, info, st = unpack(self.blob, pos)
            kind = (info >> 24) & 0x1F
            tr = trailer.get(kind)
            if tr is None:
                raise BtfError(f"BTF type #{len(kinds)} has unknown kind {kind}")
            vlen = info & 0xFFFF
            kinds.append(kind)
            name_offs.append(name_off)
            infos.append(info)
            sizes.append(st)
            datas.append(pos + 12)
            pos += 12 + tr[0] + tr[1] * vlen
        if pos != end:
            raise BtfError(f"BTF type section overruns its length ({pos - t0} > {type_len})")
        self._kind, self._name_off, self._info, self._st, self._data = kinds, name_offs, infos, sizes, datas
        self._by_name: Optional[Dict[str, List[int]]] = None
        self._layouts: Dict[int, List[Member]] = {}
        ntypes = len(kinds)
        for tid in range(1, ntypes):  # validate references and names up front
            if name_offs[tid] and name_offs[tid] >= str_len:
                raise BtfError(f"BTF type #{tid}: name offset {name_offs[tid]} outside strings")
            if kinds[tid] in _REFERRING and sizes[tid] >= ntypes:
                raise BtfError(f"BTF type #{tid} ({KIND_NAMES[kinds[tid]]}) refers to type "
                               f"{sizes[tid]}, beyond the last type {ntypes - 1}")

    # ----------------------------------------------------------------- basics

    def __len__(self) -> int:
        return len(self._kind) - 1

    def _check_id(self, tid: int) -> None:
        if not 0 <= tid < len(self._kind):
            raise BtfError(f"BTF type id {tid} out of range (1..{len(self._kind) - 1})")

    def string(self, off: int) -> str:
        if not 0 <= off < max(self._strlen, 1):
            raise BtfError(f"BTF string offset {off} outside the string section")
        if not self._strlen:
            return ""
        start = self._str0 + off
        end = self.blob.index(b"\0", start, self._str0 + self._strlen)
        return self.blob[start:end].decode("utf-8", "replace")

    def kind(self, tid: int) -> int:
        self._check_id(tid)
        return self._kind[tid]

    def kind_name(self, tid: int) -> str:
        return KIND_NAMES[self.kind(tid)]

    def name(self, tid: int) -> str:
        self._check_id(tid)
        return self.string(self._name_off[tid]) if tid else "void"

    def vlen(self, tid: int) -> int:
        self._check_id(tid)
        return self._info[tid] & 0xFFFF

    def kind_flag(self, tid: int) -> bool:
        self._check_id(tid)
        return bool(self._info[tid] >> 31)

    def ref(self, tid: int) -> int:
        """The referenced type of PTR/TYPEDEF/CONST/.../FUNC/VAR/DECL_TAG."""
        self._check_id(tid)
        return self._st[tid]

    def _u32s(self, tid: int, index: int, count: int) -> Tuple[int, ...]:
        off = self._data[tid] + 4 * index
        return struct.unpack_from("<%dI" % count, self.blob, off)

    # ----------------------------------------------------------------- names

    def _index(self) -> Dict[str, List[int]]:
        if self._by_name is None:
            idx: Dict[str, List[int]] = {}
            s0, sl, blob = self._str0, self._strlen, self.blob
            cache: Dict[int, str] = {}
            for tid in range(1, len(self._kind)):
                off = self._name_off[tid]
                if not off:
                    continue
                nm = cache.get(off)
                if nm is None:
                    end = blob.index(b"\0", s0 + off, s0 + sl)
                    nm = blob[s0 + off:end].decode("utf-8", "replace")
                    cache[off] = nm
                idx.setdefault(nm, []).append(tid)
            self._by_name = idx
        return self._by_name

    def find(self, name: str, kind: Optional[int] = None) -> Optional[int]:
        """Type id named ``name`` (of ``kind`` if given); a complete
        STRUCT/UNION is preferred over a FWD. None if absent."""
        ids = self._index().get(name, ())
        if kind is not None:
            ids = [t for t in ids if self._kind[t] == kind]
        best = None
        for t in ids:
            if self._kind[t] in (KIND_FUNC, KIND_DECL_TAG, KIND_VAR):
                if kind is None:
                    continue
            if self._kind[t] != KIND_FWD:
                return t
            best = best or t
        return best

    def find_struct(self, name: str) -> int:
        """Type id of ``struct name`` (or a union, or a typedef of one)."""
        for k in (KIND_STRUCT, KIND_UNION, KIND_TYPEDEF):
            t = self.find(name, k)
            if t is not None:
                r = self.resolve(t)
                if self._kind[r] in (KIND_STRUCT, KIND_UNION):
                    return r
        raise BtfLookupError(f"BTF has no struct or union named {name!r}")

    def has_struct(self, name: str) -> bool:
        try:
            self.find_struct(name)
            return True
        except BtfLookupError:
            return False

    def datasec_vars(self, section: str) -> Dict[str, int]:
        """name -> offset of each VAR of the DATASEC ``section`` (e.g.
        ``.data..percpu``); {} when there is no such section."""
        tid = self.find(section, KIND_DATASEC)
        if tid is None:
            return {}
        out: Dict[str, int] = {}
        for i in range(self.vlen(tid)):
            var, off, _size = self._u32s(tid, 3 * i, 3)
            self._check_id(var)
            if self._kind[var] == KIND_VAR:
                out[self.name(var)] = off
        return out

    # ----------------------------------------------------------------- types

    def resolve(self, tid: int) -> int:
        """Strip typedefs and qualifiers."""
        seen = 0
        while True:
            self._check_id(tid)
            if self._kind[tid] not in _MODIFIERS:
                return tid
            tid = self._st[tid]
            seen += 1
            if seen > 64:
                raise BtfError("BTF: typedef/qualifier chain loops")

    def sizeof(self, t) -> int:
        """Size in bytes of a type id or of ``struct name``."""
        tid = self.find_struct(t) if isinstance(t, str) else t
        for _ in range(64):
            tid = self.resolve(tid)
            k = self._kind[tid]
            if k in _SIZED:
                return self._st[tid]
            if k == KIND_PTR:
                return 8
            if k == KIND_ARRAY:
                elem, _index_type, nelems = self._u32s(tid, 0, 3)
                self._check_id(elem)
                return nelems * self.sizeof(elem)
            if k in (KIND_VAR,):
                tid = self._st[tid]
                continue
            raise BtfError(f"BTF type #{tid} ({KIND_NAMES[k]}) has no size")
        raise BtfError("BTF: type chain too deep")

    def array_info(self, tid: int) -> Tuple[int, int]:
        """(element type id, number of elements) of an ARRAY."""
        tid = self.resolve(tid)
        if self._kind[tid] != KIND_ARRAY:
            raise BtfError(f"BTF type #{tid} is {KIND_NAMES[self._kind[tid]]}, not ARRAY")
        elem, _idx, n = self._u32s(tid, 0, 3)
        self._check_id(elem)
        return elem, n

    def int_info(self, tid: int) -> Tuple[int, int, int]:
        """(encoding, bit offset, bits) of an INT (encoding 1 = signed)."""
        tid = self.resolve(tid)
        if self._kind[tid] != KIND_INT:
            raise BtfError(f"BTF type #{tid} is not INT")
        (v,) = self._u32s(tid, 0, 1)
        return (v >> 24) & 0xF, (v >> 16) & 0xFF, v & 0xFF

    def enum_values(self, t) -> Dict[str, int]:
        """name -> value of an ENUM/ENUM64 (type id or enum name)."""
        tid = t if isinstance(t, int) else (self.find(t, KIND_ENUM) or self.find(t, KIND_ENUM64))
        if tid is None:
            raise BtfLookupError(f"BTF has no enum named {t!r}")
        tid = self.resolve(tid)
        k = self._kind[tid]
        signed = self.kind_flag(tid)
        out: Dict[str, int] = {}
        if k == KIND_ENUM:
            for i in range(self.vlen(tid)):
                name_off, val = self._u32s(tid, 2 * i, 2)
                if signed and val >= 1 << 31:
                    val -= 1 << 32
                out[self.string(name_off)] = val
        elif k == KIND_ENUM64:
            for i in range(self.vlen(tid)):
                name_off, lo, hi = self._u32s(tid, 3 * i, 3)
                val = lo | hi << 32
                if signed and val >= 1 << 63:
                    val -= 1 << 64
                out[self.string(name_off)] = val
        else:
            raise BtfError(f"BTF type #{tid} is not an enum")
        return out

    def enumerator(self, name: str) -> Optional[int]:
        """Value of enumerator ``name`` in any enum, or None."""
        for tid in range(1, len(self._kind)):
            if self._kind[tid] in (KIND_ENUM, KIND_ENUM64):
                vals = self.enum_values(tid)
                if name in vals:
                    return vals[name]
        return None

    def members(self, t) -> List[Member]:
        """Direct members of a STRUCT/UNION (type id or struct name)."""
        tid = self.find_struct(t) if isinstance(t, str) else self.resolve(t)
        cached = self._layouts.get(tid)
        if cached is not None:
            return cached
        k = self._kind[tid]
        if k not in (KIND_STRUCT, KIND_UNION):
            raise BtfError(f"BTF type #{tid} is {KIND_NAMES[k]}, not a struct/union")
        bitfields = self.kind_flag(tid)
        out: List[Member] = []
        for i in range(self.vlen(tid)):
            name_off, mtype, moff = self._u32s(tid, 3 * i, 3)
            self._check_id(mtype)
            if bitfields:
                bsize, boff = moff >> 24, moff & 0xFFFFFF
            else:
                bsize, boff = 0, moff
            if bsize == 0:
                # Without kind_flag an INT member may still be a bitfield
                # through the INT's own bit size.
                r = self.resolve(mtype)
                if self._kind[r] == KIND_INT:
                    _enc, ioff, bits = self.int_info(r)
                    if bits != 8 * self._st[r] or ioff:
                        bsize, boff = bits, boff + ioff
            size = self.sizeof(mtype) if mtype else 0
            out.append(Member(self.string(name_off), mtype, boff, bsize, size))
        self._layouts[tid] = out
        return out

    def struct_layout(self, name: str) -> Dict[str, Member]:
        """Named members of ``struct name`` (members of anonymous inner
        structs/unions included, with offsets from the outer struct)."""
        out: Dict[str, Member] = {}

        def walk(tid: int, base_bits: int) -> None:
            for m in self.members(tid):
                full = Member(m.name, m.type_id, base_bits + m.bit_offset, m.bitfield_size, m.size)
                if m.name:
                    out.setdefault(m.name, full)
                else:
                    r = self.resolve(m.type_id)
                    if self._kind[r] in (KIND_STRUCT, KIND_UNION):
                        walk(r, base_bits + m.bit_offset)

        walk(self.find_struct(name), 0)
        return out

    def _find_member(self, tid: int, name: str) -> Optional[Tuple[int, Member]]:
        """(bit offset from tid, member) for ``name``, looking into
        anonymous members."""
        for m in self.members(tid):
            if m.name == name:
                return m.bit_offset, m
        for m in self.members(tid):
            if not m.name:
                r = self.resolve(m.type_id)
                if self._kind[r] in (KIND_STRUCT, KIND_UNION):
                    hit = self._find_member(r, name)
                    if hit is not None:
                        return m.bit_offset + hit[0], hit[1]
        return None

    _PATH = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")

    def member(self, struct_name, path: str) -> MemberInfo:
        """Resolve ``path`` ("a.b", "a[3].c", "a->b" is not allowed: no
        pointer following) inside ``struct_name`` (name or type id)."""
        tid = self.find_struct(struct_name) if isinstance(struct_name, str) else self.resolve(struct_name)
        bits = 0
        last: Optional[Member] = None
        cur = tid
        for part in path.split("."):
            m = self._PATH.fullmatch(part)
            if not m:
                raise BtfLookupError(f"bad member path component {part!r} in {path!r}")
            name, subs = m.group(1), m.group(2)
            r = self.resolve(cur)
            if self._kind[r] not in (KIND_STRUCT, KIND_UNION):
                raise BtfLookupError(f"{path!r}: {name!r} is looked up in a non-struct "
                                     f"({KIND_NAMES[self._kind[r]]})")
            hit = self._find_member(r, name)
            if hit is None:
                raise BtfLookupError(f"struct {self.name(r)} has no member {name!r}")
            bits += hit[0]
            last = hit[1]
            cur = last.type_id
            size = last.size
            for idx in re.findall(r"\[(\d+)\]", subs):
                elem, n = self.array_info(cur)
                i = int(idx)
                if i >= n and n:
                    raise BtfLookupError(f"{path!r}: index {i} beyond {n} elements")
                esize = self.sizeof(elem)
                bits += 8 * esize * i
                cur, size = elem, esize
                last = None
        assert cur is not None
        bsize = last.bitfield_size if last is not None else 0
        return MemberInfo(bits // 8, cur, size if last is None else last.size, bits, bsize)

    def type_name(self, tid: int) -> str:
        """A C-like spelling of a type (for messages)."""
        tid_k = self.kind(tid)
        if tid == 0:
            return "void"
        nm = self.name(tid)
        if tid_k == KIND_PTR:
            return self.type_name(self._st[tid]) + " *"
        if tid_k == KIND_ARRAY:
            elem, n = self.array_info(tid)
            return f"{self.type_name(elem)}[{n}]"
        if tid_k in (KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64, KIND_FWD):
            word = {KIND_STRUCT: "struct", KIND_UNION: "union", KIND_FWD: "struct"}.get(tid_k, "enum")
            return f"{word} {nm or '<anon>'}"
        if tid_k in (KIND_CONST, KIND_VOLATILE, KIND_RESTRICT, KIND_TYPE_TAG):
            q = {KIND_CONST: "const", KIND_VOLATILE: "volatile", KIND_RESTRICT: "restrict"}.get(tid_k, "")
            return (q + " " if q else "") + self.type_name(self._st[tid])
        return nm or KIND_NAMES[tid_k].lower()


def load_btf(mem, kallsyms) -> Btf:
    """Read ``__start_BTF``..``__stop_BTF`` through ``mem`` and parse it."""
    start = kallsyms.address("__start_BTF")
    stop = kallsyms.address("__stop_BTF")
    if start is None or stop is None:
        raise VmcoreInfoError("kallsyms has no __start_BTF/__stop_BTF: the kernel was built "
                              "without CONFIG_DEBUG_INFO_BTF (or without CONFIG_KALLSYMS_ALL)")
    if not 0 < stop - start <= _MAX_BTF_BYTES:
        raise BtfError(f"BTF section {start:#x}..{stop:#x}: implausible size")
    try:
        blob = mem.read(start, stop - start)
    except FaultError as e:
        raise FaultError(f"cannot read the BTF section ({stop - start} bytes at {start:#x}): "
                         f"{e.message}", e.address) from None
    return Btf(blob)
