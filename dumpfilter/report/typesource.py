"""The type queries the report modules make, whatever the source.

``tasks``, ``sysinfo``, ``backtrace``, ``modules`` and the CLI's ``ps`` ask
for struct layouts only through ``ctx.btf``, and only with the methods
below. Three sources implement them:

* ``btf.Btf`` over the dump's BTF (``__start_BTF``..``__stop_BTF``);
* ``btf.Btf`` over a vmlinux's ``.BTF`` section (``vmlinux.Vmlinux``);
* ``dwarf.DwarfTypes`` over a vmlinux's (or any object's) DWARF.

Member paths are dotted names with optional array subscripts
(``"tasks.next"``, ``"rss_stat.count"``, ``"mem[0].base"``); members of
anonymous structs/unions are found transparently. Offsets are bytes from
the start of the outer struct (``bit_offset`` in bits, for bitfields).
"""
from __future__ import annotations

from typing import List, Optional, Protocol, Union, runtime_checkable

from dumpfilter.report.btf import Member, MemberInfo


@runtime_checkable
class TypeSource(Protocol):
    def sizeof(self, t: Union[str, int]) -> int:
        """Size in bytes of ``struct t`` (name) or of a type id."""

    def has_struct(self, name: str) -> bool:
        """True if a complete struct/union (or typedef of one) is named so."""

    def members(self, t: Union[str, int]) -> List[Member]:
        """Direct members of a struct/union, in declaration order."""

    def member(self, struct_name: Union[str, int], path: str) -> MemberInfo:
        """Offset/size/bitfield info of ``path`` inside the struct."""

    def member_offset(self, struct_name: Union[str, int], path: str) -> int:
        """``member(...).offset``."""

    def has_member(self, struct_name: Union[str, int], path: str) -> bool:
        """True if ``path`` resolves inside the struct."""

    def enumerator(self, name: str) -> Optional[int]:
        """Value of the enumerator ``name`` in any enum, or None."""


__all__ = ["Member", "MemberInfo", "TypeSource"]
