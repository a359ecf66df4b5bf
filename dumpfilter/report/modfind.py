"""The ``modules`` list head when kallsyms does not name it.

``modules`` is a static variable (kernel/module/main.c), so kallsyms lists
it only with CONFIG_KALLSYMS_ALL and the exported-symbol table never does.
It is recovered from the modules themselves:

* module memory is vmalloc'ed: ``SYMBOL(vmap_area_list)`` with
  ``OFFSET(vmap_area.list)``/``OFFSET(vmap_area.va_start)`` (VMCOREINFO) and
  BTF's ``vmap_area.va_end`` give the areas; those within 2 GiB of
  ``_stext`` (where x86_64 and arm64 load modules) or inside
  ``NUMBER(MODULES_VADDR)``..``NUMBER(MODULES_END)`` are searched, the
  kernel image's own area excepted;
* a ``struct module`` (cache-line aligned) is recognised by its BTF layout:
  ``name`` a NUL-terminated module name, ``list`` a node whose neighbours
  point back at it;
* walking one found module's ``list``, the head is the node that is no
  found module's node; when several are (modules in unreadable pages), the
  one inside the kernel image (``_stext`` + 64 MiB).
"""
from __future__ import annotations

import re
import struct
from typing import Dict, List, Optional, Tuple

from dumpfilter.errors import DumpFilterError, FaultError

_NAME = re.compile(rb"[A-Za-z0-9_\-]{1,63}\0")
_MAX_AREAS = 1 << 16
_MAX_MODULES = 4096
_WINDOW = 2 << 30
_IMAGE = 64 << 20
_CHUNK = 4096
_U64 = (1 << 64) - 1


def _u64(mem, addr: int) -> int:
    return struct.unpack("<Q", mem.read(addr, 8))[0]


def _areas(mem, info, btf) -> List[Tuple[int, int]]:
    head = info.symbol("vmap_area_list")
    off_list, off_start = info.offset("vmap_area.list"), info.offset("vmap_area.va_start")
    if head is None or off_list is None or off_start is None:
        return []
    off_end = btf.member_offset("vmap_area", "va_end")
    out = []
    node = _u64(mem, head)
    while node != head and len(out) < _MAX_AREAS:
        area = node - off_list
        out.append((_u64(mem, area + off_start), _u64(mem, area + off_end)))
        node = _u64(mem, node)
    return out


def _candidates(mem, areas, off_name: int, off_list: int) -> Dict[int, bytes]:
    """list-node address -> name of every struct module found."""
    found: Dict[int, bytes] = {}
    for start, end in areas:
        for page in range(start & ~(_CHUNK - 1), end, _CHUNK):
            try:
                data = mem.read(page, _CHUNK)
            except FaultError:
                continue
            for off in range(0, _CHUNK - max(off_name + 64, off_list + 16) + 1, 64):
                m = _NAME.match(data, off + off_name)
                if not m:
                    continue
                nxt, prv = struct.unpack_from("<QQ", data, off + off_list)
                node = page + off + off_list
                try:
                    if _u64(mem, nxt + 8) != node or _u64(mem, prv) != node:
                        continue
                except FaultError:
                    continue
                found[node] = m.group(0)[:-1]
    return found


def find_modules_head(mem, info, btf) -> Optional[int]:
    """Address of the ``modules`` list_head, or None (no module loaded,
    or nothing recognisable)."""
    stext = info.symbol("_stext")
    if stext is None:
        return None
    try:
        off_name = btf.member_offset("module", "name")
        off_list = btf.member_offset("module", "list")
        areas = _areas(mem, info, btf)
    except (DumpFilterError, FaultError):
        return None
    lo, hi = info.number("MODULES_VADDR"), info.number("MODULES_END")
    wanted = []
    for s, e in areas:
        if s <= stext < e or not s < e:
            continue
        near = abs(s - stext) < _WINDOW
        inside = lo is not None and hi is not None and lo & _U64 <= s < hi & _U64
        if near or inside:
            wanted.append((s, e))
    found = _candidates(mem, wanted, off_name, off_list)
    if not found:
        return None
    others, node, steps = [], next(iter(found)), 0
    start = node
    try:
        while steps <= _MAX_MODULES:
            node = _u64(mem, node)
            steps += 1
            if node == start:
                break
            if node not in found:
                others.append(node)
        else:
            return None
    except FaultError:
        return None
    if len(others) > 1:
        others = [n for n in others if stext <= n < stext + _IMAGE]
    return others[0] if len(others) == 1 else None
