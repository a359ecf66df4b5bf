"""Shared-library closure of ELF files, and the host paths that lead to them.

``ldd`` answers what the dynamic loader would load (RUNPATH, multiarch
directories, ld.so.cache): the payload takes exactly those files. A library
that a program ``dlopen()``s by soname (ctypes does that) is found from the
process's ``/proc/self/maps``; ``soname()`` then names the link the loader
searches for.
"""
from __future__ import annotations

import os
import re
import struct
import subprocess
from typing import Dict, Iterable, List, Optional, Set, Tuple

_LDD_LINE = re.compile(r"^\s*(?:(\S+) => )?(\S+)?(?: \(0x[0-9a-f]+\))?\s*$")

ELF_MAGIC = b"\x7fELF"


class LddError(RuntimeError):
    pass


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == ELF_MAGIC
    except OSError:
        return False


def ldd(path: str) -> List[str]:
    """Paths of the shared objects ``path`` needs (its ldd list, loader included).

    Raises LddError when a library is not found.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    env["LC_ALL"] = "C"
    r = subprocess.run(["ldd", path], capture_output=True, text=True, env=env,
                       stdin=subprocess.DEVNULL)
    text = r.stdout + r.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if r.returncode != 0:
        raise LddError(f"ldd {path} failed: {text.strip()}")
    out = []
    for line in r.stdout.splitlines():
        if "=> not found" in line:
            raise LddError(f"{path}: {line.strip()}")
        m = _LDD_LINE.match(line)
        if not m:
            continue
        target = m.group(2)
        if target and target.startswith("/"):
            out.append(target)
    return out


def closure(paths: Iterable[str]) -> List[str]:
    """The ldd closure of all ``paths`` (not including them), in first-seen order."""
    seen: Dict[str, None] = {}
    for p in paths:
        if not is_elf(p):
            continue
        for lib in ldd(p):
            seen.setdefault(lib, None)
    return list(seen)


def _dynamic_strings(path: str) -> Tuple[Optional[str], List[str]]:
    """(DT_SONAME, [DT_NEEDED...]) of a 64-bit little-endian ELF file."""
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:4] != ELF_MAGIC or data[4] != 2 or data[5] != 1:
        return None, []
    e_phoff, = struct.unpack_from("<Q", data, 0x20)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 0x36)
    loads = []
    dyn = None
    for i in range(e_phnum):
        p_type, _flags, p_offset, p_vaddr, _pa, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, e_phoff + i * e_phentsize)
        if p_type == 1:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:
            dyn = (p_offset, p_filesz)
    if dyn is None:
        return None, []

    def v2o(vaddr: int) -> Optional[int]:
        for va, off, sz in loads:
            if va <= vaddr < va + sz:
                return off + vaddr - va
        return None

    entries = []
    strtab = None
    for off in range(dyn[0], dyn[0] + dyn[1], 16):
        tag, val = struct.unpack_from("<qQ", data, off)
        if tag == 0:
            break
        if tag == 5:  # DT_STRTAB
            strtab = v2o(val)
        entries.append((tag, val))
    if strtab is None:
        return None, []

    def s(o: int) -> str:
        end = data.index(b"\0", strtab + o)
        return data[strtab + o:end].decode()

    soname = next((s(v) for t, v in entries if t == 14), None)
    needed = [s(v) for t, v in entries if t == 1]
    return soname, needed


def soname(path: str) -> Optional[str]:
    try:
        return _dynamic_strings(path)[0]
    except (OSError, struct.error, ValueError, IndexError):
        return None


def mapped_files(maps_text: str) -> List[str]:
    """File paths of the shared objects mapped in a ``/proc/PID/maps`` text."""
    out: Dict[str, None] = {}
    for line in maps_text.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/"):
            p = parts[5]
            if p.endswith(" (deleted)"):
                continue
            out.setdefault(p, None)
    return list(out)


def resolve_chain(path: str) -> Tuple[str, List[Tuple[str, str]]]:
    """Resolve ``path`` on the host like the kernel does, component by component.

    Returns (real path, [(symlink path, link target), ...]) for every symlink met on
    the way, so an archive can rebuild the same names (``/lib -> usr/lib``,
    ``libz.so.1 -> libz.so.1.2.13``).
    """
    links: List[Tuple[str, str]] = []
    todo = [c for c in path.split("/") if c]
    cur = "/"
    hops = 0
    while todo:
        comp = todo.pop(0)
        if comp == ".":
            continue
        if comp == "..":
            cur = os.path.dirname(cur) or "/"
            continue
        nxt = os.path.join(cur, comp)
        if os.path.islink(nxt):
            hops += 1
            if hops > 40:
                raise OSError(f"too many symlinks resolving {path}")
            target = os.readlink(nxt)
            links.append((nxt, target))
            todo = [c for c in target.split("/") if c] + todo
            if target.startswith("/"):
                cur = "/"
            continue
        cur = nxt
    return cur, links


def soname_link(real: str) -> Optional[str]:
    """The host path ``<dir>/<DT_SONAME>`` when it leads to ``real`` (the name dlopen() used)."""
    so = soname(real)
    if not so:
        return None
    cand = os.path.join(os.path.dirname(real), so)
    if cand != real and os.path.realpath(cand) == real:
        return cand
    # merged-/usr systems: the loader's search path may be /lib/<triplet>.
    for d in ("/lib", "/lib64", "/usr/lib", "/usr/lib64"):
        for sub in ("", "x86_64-linux-gnu", "aarch64-linux-gnu"):
            c = os.path.join(d, sub, so)
            if os.path.realpath(c) == real:
                return c
    return None


def unique(seq: Iterable[str]) -> List[str]:
    seen: Set[str] = set()
    out = []
    for s in seq:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out
