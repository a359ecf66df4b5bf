"""A small BTF writer for synthetic kernels (the format of
include/uapi/linux/btf.h: header, ``struct btf_type`` records with their
kind-specific trailers, a string section).

Only the kinds a synthetic kernel needs: INT, PTR, ARRAY, STRUCT (with
bitfields: kind_flag set, member offset = ``bitfield_size << 24 | bit
offset``) and ENUM. References may name a struct that is added later
(``"struct task_struct"``); they are resolved when the blob is written.
"""
from __future__ import annotations

import struct
from typing import Dict, List, Sequence, Tuple, Union

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_ENUM = 1, 2, 3, 4, 6
BTF_MAGIC = 0xEB9F

#: A type reference: an id, or "struct NAME" resolved at write time.
Ref = Union[int, str]


class BtfWriter:
    def __init__(self):
        self._types: List[Tuple] = []  # (name, kind, vlen, size_or_ref, trailer items, kflag)
        self._structs: Dict[str, int] = {}
        self._ints: Dict[str, int] = {}

    def _add(self, name: str, kind: int, vlen: int, st: Ref, trailer=(), kflag: int = 0) -> int:
        self._types.append((name, kind, vlen, st, tuple(trailer), kflag))
        return len(self._types)

    def int(self, name: str, size: int, signed: bool = False) -> int:
        if name not in self._ints:
            enc = (1 << 24) if signed else 0
            if name == "char":
                enc = 2 << 24
            self._ints[name] = self._add(name, KIND_INT, 0, size, (("u32", enc | (8 * size)),))
        return self._ints[name]

    def ptr(self, target: Ref) -> int:
        return self._add("", KIND_PTR, 0, target)

    def array(self, elem: Ref, n: int) -> int:
        index = self.int("int", 4, signed=True)
        return self._add("", KIND_ARRAY, 0, 0, (("ref", elem), ("u32", index), ("u32", n)))

    def struct(self, name: str, size: int,
               members: Sequence[Tuple[str, Ref, int, int]]) -> int:
        """``members``: (name, type, bit offset, bitfield bits or 0)."""
        kflag = int(any(bits for _, _, _, bits in members))
        trailer = []
        for mname, mtype, bit_off, bits in members:
            trailer += [("str", mname), ("ref", mtype), ("u32", (bits << 24) | bit_off if kflag else bit_off)]
        tid = self._add(name, KIND_STRUCT, len(members), size, trailer, kflag)
        self._structs[name] = tid
        return tid

    def enum(self, name: str, values: Dict[str, int]) -> int:
        trailer = []
        for n, v in values.items():
            trailer += [("str", n), ("u32", v & 0xFFFFFFFF)]
        return self._add(name, KIND_ENUM, len(values), 4, trailer)

    def _resolve(self, ref: Ref) -> int:
        if isinstance(ref, int):
            return ref
        kind, _, name = ref.partition(" ")
        if kind != "struct" or name not in self._structs:
            raise ValueError(f"BTF writer: unknown type {ref!r}")
        return self._structs[name]

    def blob(self) -> bytes:
        strings = bytearray(b"\0")
        offsets: Dict[str, int] = {}

        def s(text: str) -> int:
            if not text:
                return 0
            if text not in offsets:
                offsets[text] = len(strings)
                strings.extend(text.encode() + b"\0")
            return offsets[text]

        types = bytearray()
        for name, kind, vlen, st, trailer, kflag in self._types:
            st_val = self._resolve(st) if kind == KIND_PTR else st
            types += struct.pack("<III", s(name), (kflag << 31) | (kind << 24) | vlen, st_val)
            for what, val in trailer:
                if what == "str":
                    val = s(val)
                elif what == "ref":
                    val = self._resolve(val)
                types += struct.pack("<I", val)
        hdr = struct.pack("<HBBIIIII", BTF_MAGIC, 1, 0, 24, 0, len(types), len(types), len(strings))
        return hdr + bytes(types) + bytes(strings)
