"""Loaded kernel modules, from the ``modules`` list.

Reads: kallsyms ``modules`` (list_head); BTF ``struct module``: ``list``,
``name``, and the core text placement from ``mem[]`` (``struct
module_memory``: ``base``/``size``, first element = MOD_TEXT, 6.4+) or
``core_layout`` (``struct module_layout``: ``base``/``size``), whichever
exists; ``kallsyms`` -> ``struct mod_kallsyms`` (``symtab``,
``num_symtab``, ``strtab``) for each module's symbol count and symbols;
``arch`` -> ``struct mod_arch_specific`` (``num_orcs``, ``orc_unwind_ip``,
``orc_unwind``: the module's ORC tables, sorted by ``module_finalize``) when
the kernel unwinds with ORC.

``ModuleSymbols`` names addresses inside a module's core text the way crash
does in ``bt``: the nearest module symbol at or below the address, printed
``func at addr [module]``.
"""
from __future__ import annotations

import bisect
import struct
from typing import Dict, List, Optional, Tuple

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
        init = btf.enumerator("MOD_INIT_TEXT")
        if init is not None:
            step = init * btf.sizeof("module_memory")
            lay["init_base"], lay["init_size"] = lay["base"] + step, lay["size"] + step
    elif btf.has_member("module", "core_layout"):
        lay["base"] = m("module", "core_layout.base")
        lay["size"] = m("module", "core_layout.size")
        lay["size_bytes"] = btf.member("module", "core_layout.size").size
        if btf.has_member("module", "init_layout"):
            lay["init_base"] = m("module", "init_layout.base")
            lay["init_size"] = m("module", "init_layout.size")
    else:
        raise DumpFilterError("struct module has neither mem[] nor core_layout")
    if btf.has_member("module", "kallsyms") and btf.has_struct("mod_kallsyms"):
        lay["kallsyms"] = m("module", "kallsyms")
        lay["symtab"] = btf.member_offset("mod_kallsyms", "symtab")
        lay["num_symtab"] = btf.member_offset("mod_kallsyms", "num_symtab")
        lay["strtab"] = btf.member_offset("mod_kallsyms", "strtab")
    if btf.has_member("module", "arch.num_orcs"):  # CONFIG_UNWINDER_ORC
        lay["num_orcs"] = m("module", "arch.num_orcs")
        lay["orc_ip"] = m("module", "arch.orc_unwind_ip")
        lay["orc"] = m("module", "arch.orc_unwind")
    return lay


#: KSYM_NAME_LEN (include/linux/kallsyms.h): no symbol name is longer, so a
#: module's string table is at most this many bytes (+ NUL) per symbol.
KSYM_NAME_LEN = 512
#: Larger string tables are read name by name (128 bytes each).
STRTAB_READ_MAX = 4 << 20


def module_symbols(ctx, kallsyms_ptr: int, lay,
                   errors: Optional[List[str]] = None) -> List[Tuple[str, int]]:
    """(name, address) of a module's symbols (its ``mod_kallsyms``).
    Symbols whose ``st_name`` lies beyond what a string table of ``num``
    names can span are left out (and said in ``errors``): a size read from
    dumped memory never sizes a read by itself."""
    symtab = ctx.u64(kallsyms_ptr + lay["symtab"])
    num = ctx.u32(kallsyms_ptr + lay["num_symtab"])
    strtab = ctx.u64(kallsyms_ptr + lay["strtab"])
    if num > 1 << 20:
        raise DumpFilterError(f"implausible num_symtab {num}")
    raw = ctx.read(symtab, num * ELF64_SYM)
    ents = [e for e in struct.iter_unpack("<IBBHQQ", raw) if e[0] and e[4]]
    bound = num * (KSYM_NAME_LEN + 1)
    bad = [e for e in ents if e[0] >= bound]
    if bad:
        ents = [e for e in ents if e[0] < bound]
        if errors is not None:
            errors.append(f"{len(bad)} symbols left out: st_name={bad[0][0]:#x} (and others) "
                          f"beyond the {bound}-byte bound of a {num}-symbol string table")
    strings = b""
    if ents and max(e[0] for e in ents) + 128 <= STRTAB_READ_MAX:
        try:  # the whole string table in one read when it is all present
            strings = ctx.read(strtab, max(e[0] for e in ents) + 128)
        except FaultError:
            strings = b""
    out = []
    for st_name, _info, _other, _shndx, value, _size in ents:
        if strings:
            end = strings.find(b"\0", st_name)
            name = strings[st_name:end if end >= 0 else len(strings)].decode("latin-1")
        else:
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
                            sym_errors: List[str] = []
                            entry["symbols"] = module_symbols(ctx, ptr, lay, sym_errors)
                            errors.extend(f"{name}: {e}" for e in sym_errors)
                    except FaultError as e:
                        errors.append(f"{name}: symbol table not in the dump ({e})")
            if "init_base" in lay:
                ib = ctx.u64(mod + lay["init_base"])
                isz = ctx.u32(mod + lay["init_size"])
                if ib and isz:  # still initializing: its init text is mapped
                    entry["init_base"], entry["init_size"] = f"{ib:x}", isz
            if "num_orcs" in lay:
                n = ctx.u32(mod + lay["num_orcs"])
                entry["orc"] = {"entries": n, "ip_table": f"{ctx.u64(mod + lay['orc_ip']):x}",
                                "table": f"{ctx.u64(mod + lay['orc']):x}"}
            mods.append(entry)
            node = ctx.u64(node)
        except FaultError as e:
            errors.append(f"module at {mod:#x} not in the dump ({e}); rest of the list lost")
            break
    return {"modules": mods, "errors": errors}


class ModuleSymbols:
    """Symbol lookup over loaded modules. ``modules`` is a list of
    ``(name, base, size, [(symbol, address), ...])``; ``orc``: module name
    -> (entries, ip table address, entry table address) of the modules
    whose ORC tables the kernel keeps (``mod_arch_specific``)."""

    def __init__(self, modules, orc: Optional[Dict[str, Tuple[int, int, int]]] = None,
                 init: Optional[Dict[str, Tuple[int, int]]] = None):
        """``init``: module name -> (base, size) of the init text of the
        modules still initializing (their ``init`` function runs there)."""
        self.orc = dict(orc or {})
        init = dict(init or {})
        ranges = [(base, base + size, name) for name, base, size, _s in modules]
        ranges += [(b, b + n, name) for name, (b, n) in init.items()]
        self._mods = sorted(ranges)
        self._starts = [m[0] for m in self._mods]
        self._syms: Dict[str, Tuple[List[int], List[str]]] = {}
        for name, base, size, syms in modules:
            ib, isz = init.get(name, (0, 0))
            inside = sorted((a, n) for n, a in syms
                            if base <= a < base + size or ib <= a < ib + isz)
            self._syms[name] = ([a for a, _n in inside], [n for _a, n in inside])

    def __len__(self) -> int:
        return len(self._mods)

    def module_at(self, addr: int) -> Optional[str]:
        """Name of the module whose core text holds ``addr``, or None."""
        k = bisect.bisect_right(self._starts, addr) - 1
        if k >= 0 and addr < self._mods[k][1]:
            return self._mods[k][2]
        return None

    def lookup(self, addr: int) -> Optional[Tuple[str, int, str]]:
        """(symbol, offset, module) for an address inside a module, or
        None (outside every module, or below its first symbol)."""
        mod = self.module_at(addr)
        if mod is None:
            return None
        addrs, names = self._syms[mod]
        k = bisect.bisect_right(addrs, addr) - 1
        if k < 0:
            return None
        return names[k], addr - addrs[k], mod


def load_module_symbols(ctx) -> ModuleSymbols:
    """Read every module's placement and ``mod_kallsyms`` symbols."""
    mods = read_modules(ctx, with_symbols=True)["modules"]
    orc = {m["name"]: (m["orc"]["entries"], int(m["orc"]["ip_table"], 16),
                       int(m["orc"]["table"], 16))
           for m in mods if m.get("orc") and m["orc"]["entries"]}
    init = {m["name"]: (int(m["init_base"], 16), m["init_size"]) for m in mods if "init_base" in m}
    return ModuleSymbols([(m["name"], int(m["base"], 16), m["size"], m.get("symbols") or [])
                          for m in mods], orc, init)
