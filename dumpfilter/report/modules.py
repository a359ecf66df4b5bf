"""Loaded kernel modules, from the ``modules`` list.

Reads: kallsyms ``modules`` (list_head); BTF ``struct module``: ``list``,
``name``, and the core text placement from ``mem[]`` (``struct
module_memory``: ``base``/``size``, first element = MOD_TEXT, 6.4+) or
``core_layout`` (``struct module_layout``: ``base``/``size``), whichever
exists; ``kallsyms`` -> ``struct mod_kallsyms`` (``symtab``,
``num_symtab``, ``strtab``) for each module's symbol count and symbols.
"""
from __future__ import annotations

import struct
from typing import Dict, List, Tuple

from dumpfilter.errors import DumpFilterError, FaultError

MAX_MODULES = 4096
ELF64_SYM = 24


def _layout(btf) -> Dict[str, int]:
    m = btf.member_offset
    lay = {"list": m("module", "list"), "name": m("module", "name"),
           "name_len": btf.member("module", "name").size}
    if btf.has_member("module", "mem"):
        lay["base"] = m("module", "mem") + btf.member_offset("module_memory", "base")
        lay["size"] = m("module", "mem") + btf.member_offset("module_memory", "size")
        lay["size_bytes"] = btf.member("module_memory", "size").size
    elif btf.has_member("module", "core_layout"):
        lay["base"] = m("module", "core_layout.base")
        lay["size"] = m("module", "core_layout.size")
        lay["size_bytes"] = btf.member("module", "core_layout.size").size
    else:
        raise DumpFilterError("struct module has neither mem[] nor core_layout")
    if btf.has_member("module", "kallsyms") and btf.has_struct("mod_kallsyms"):
        lay["kallsyms"] = m("module", "kallsyms")
        lay["symtab"] = btf.member_offset("mod_kallsyms", "symtab")
        lay["num_symtab"] = btf.member_offset("mod_kallsyms", "num_symtab")
        lay["strtab"] = btf.member_offset("mod_kallsyms", "strtab")
    return lay


def module_symbols(ctx, kallsyms_ptr: int, lay) -> List[Tuple[str, int]]:
    """(name, address) of a module's symbols (its ``mod_kallsyms``)."""
    symtab = ctx.u64(kallsyms_ptr + lay["symtab"])
    num = ctx.u32(kallsyms_ptr + lay["num_symtab"])
    strtab = ctx.u64(kallsyms_ptr + lay["strtab"])
    if num > 1 << 20:
        raise DumpFilterError(f"implausible num_symtab {num}")
    raw = ctx.read(symtab, num * ELF64_SYM)
    out = []
    for i in range(num):
        st_name, _info, _other, _shndx, value, _size = struct.unpack_from("<IBBHQQ", raw, i * ELF64_SYM)
        if not st_name or not value:
            continue
        name = ctx.read(strtab + st_name, 128).split(b"\0", 1)[0].decode("latin-1")
        out.append((name, value))
    return out


def read_modules(ctx, with_symbols: bool = False) -> Dict:
    """``{"modules": [...], "errors": [...]}``; one entry per module."""
    btf = ctx.btf
    lay = _layout(btf)
    head = ctx.symbol("modules")
    if head is None:
        raise DumpFilterError("kallsyms has no 'modules' list")
    mods: List[Dict] = []
    errors: List[str] = []
    try:
        node = ctx.u64(head)
    except FaultError as e:
        raise DumpFilterError(f"modules list head not in the dump ({e})") from None
    seen = {head}
    while node != head and len(mods) < MAX_MODULES:
        if node in seen:
            errors.append(f"modules list loops at {node:#x}")
            break
        seen.add(node)
        mod = node - lay["list"]
        try:
            name = ctx.read(mod + lay["name"], lay["name_len"]).split(b"\0", 1)[0].decode("latin-1")
            base = ctx.u64(mod + lay["base"])
            size = ctx.u32(mod + lay["size"])
            entry = {"address": f"{mod:x}", "name": name, "base": f"{base:x}", "size": size,
                     "nsyms": None}
            if "kallsyms" in lay:
                ptr = ctx.u64(mod + lay["kallsyms"])
                if ptr:
                    try:
                        entry["nsyms"] = ctx.u32(ptr + lay["num_symtab"])
                        if with_symbols:
                            entry["symbols"] = module_symbols(ctx, ptr, lay)
                    except FaultError as e:
                        errors.append(f"{name}: symbol table not in the dump ({e})")
            mods.append(entry)
            node = ctx.u64(node)
        except FaultError as e:
            errors.append(f"module at {mod:#x} not in the dump ({e}); rest of the list lost")
            break
    return {"modules": mods, "errors": errors}
