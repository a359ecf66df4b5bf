#!/usr/bin/env python3
"""Large, realistic ELF vmcores built by tiling a real kdump capture.

    python3 bench/make_large_dump.py --gib 12 OUT.vmcore [--source REAL.vmcore]

The real machine's RAM is repeated at increasing physical offsets, so every
struct page and every page content comes from the real capture and the page
class mix (free, anonymous, page cache, slab, kernel...) and per-page
compressibility stay those of a real machine.  The kernel metadata that
makedumpfile and dumpfilter read is made consistent for the larger memory.

Design (``tile`` = the real RAM's span rounded up to whole memory sections,
512 MiB for the default 512 MiB capture; copy k lives at physical k * tile):

* Copy 0 is the real capture, byte for byte, except for the kernel page
  tables and mem_section pages edited below (those edits are also written
  into the kernel-image PT_LOAD, which aliases the same physical pages).
* Copy k >= 1 has copy 0's RAM ranges plus its largest hole (the 160 MiB
  crashkernel reservation, absent from the real dump) turned into RAM:
  - the first 4 MiB of that hole is a "metadata" area (reserved pages; in
    copy 1 it holds the page-table and mem_section pages this script adds,
    elsewhere it is zero),
  - the rest is filled with a copy of a 4 MiB aligned stretch of the real
    RAM (struct pages and contents), so the large machine has no 160 MiB
    hole every 512 MiB.  4 MiB alignment keeps every buddy block and every
    compound page (order <= 10) whole.
* Copy k's struct pages live at the same place relative to the copy as the
  real vmemmap backing does in copy 0 (2 MiB pages), and are mapped at
  ``vmemmap_base + k * tile / 4096 * 64`` by new PMD entries in the kernel's
  own page tables (new PMD/PUD table pages come from the metadata area).
  They are copied from the real struct pages with address fields rewritten:
  a tail's ``compound_head`` and list pointers into the vmemmap move by the
  struct-page distance between copy and original, and direct-map pointers
  (``mapping``: address_space, anon_vma|1, slab cache; lru) move by the
  copy's physical offset, so they name the copy's own objects.  ``flags``
  (page flags, buddy ``_mapcount``, order in ``private``, compound
  order/dtor in page[1]) are kept as they are.  Zone/node bits in ``flags``
  are not rewritten (memory above 4 GiB still says ZONE_DMA32): neither
  makedumpfile nor dumpfilter looks at them.
* The metadata area's own struct pages, like copy k's memmap pages, are
  copies of the real memmap pages' struct pages (PG_reserved): kept at any
  dump level, as a real kernel's mem_map is.
* mem_section: sections of copy k are copies of the real sections' 32-byte
  entries (same ``section_mem_map`` = vmemmap_base | flags, as on any
  SPARSEMEM_VMEMMAP kernel); the root array gets new section pages for
  sections >= 128 (every 16 GiB).
* The direct map is extended over the new RAM (2 MiB entries up to the
  first GiB boundary, then 1 GiB entries), so every pointer the copies hold
  is mapped.  VMCOREINFO is unchanged (nothing in it depends on RAM size).
* The output is written sparse: all-zero pages are never written (file
  holes), so a 16 GiB dump takes about 55 % of 16 GiB on disk.

Deterministic: the same source and size give the same file byte for byte.
Only x86_64, 4-level paging, SPARSEMEM_VMEMMAP sources with a PMD-mapped
vmemmap and a >= 8 MiB hole are supported (true for the real capture).
"""
from __future__ import annotations

import argparse
import math
import mmap
import os
import struct
import sys
import time
from typing import Dict, List, Tuple

import numpy as np

DEFAULT_SOURCE = "/root/.cache/dumpfilter/vmcores/kdump-6.1-512M.vmcore"
PAGE = 4096
MIB, GIB = 1 << 20, 1 << 30
START_KERNEL_MAP = 0xFFFFFFFF80000000
PT_LOAD, PT_NOTE = 1, 4
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
ADDR_MASK = 0x000FFFFFFFFFF000
P_PRESENT, P_PSE = 0x1, 0x80
TABLE_FLAGS = 0x067  # present, rw, user, accessed, dirty (as the real tables)
LEAF_FLAGS = (1 << 63) | 0x1E3  # NX, global, PSE, dirty, accessed, rw, present
SECTION_MAP_MASK = ~0x1F & 0xFFFFFFFFFFFFFFFF
META_BYTES = 4 * MIB  # metadata area at the start of each copy's filled hole
ALIGN_FILL = 4 * MIB  # 2^MAX_ORDER pages: buddy blocks / folios stay whole


class Fail(Exception):
    pass


# ---------------------------------------------------------------- source
class Source:
    """The real ELF vmcore: PT_LOADs, VMCOREINFO, physical reads (mmap)."""

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size
        self.map = mmap.mmap(self.fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ)
        self.view = memoryview(self.map)
        ehdr = EHDR.unpack_from(self.map, 0)
        if ehdr[0][:4] != b"\x7fELF" or ehdr[0][4] != 2 or ehdr[1] != 4 or ehdr[2] != 62:
            raise Fail(f"{path}: not an x86_64 ELF64 core file")
        self.ehdr = ehdr
        phoff, phnum = ehdr[5], ehdr[10]
        self.notes = b""
        self.kernel_seg = None
        self.dm_segs: List[Tuple[int, int, int]] = []  # (paddr, size, file offset)
        vaddr_off = set()
        for i in range(phnum):
            typ, _fl, off, vaddr, paddr, filesz, memsz, _al = PHDR.unpack_from(self.map, phoff + i * PHDR.size)
            if typ == PT_NOTE:
                self.notes += bytes(self.map[off:off + filesz])
            elif typ == PT_LOAD:
                if filesz != memsz:
                    raise Fail("PT_LOAD with p_filesz != p_memsz is not supported")
                if vaddr >= START_KERNEL_MAP:
                    self.kernel_seg = (vaddr, paddr, filesz, off)
                else:
                    self.dm_segs.append((paddr, filesz, off))
                    vaddr_off.add(vaddr - paddr)
        if len(vaddr_off) != 1:
            raise Fail("direct-map PT_LOADs disagree on page_offset_base")
        self.page_offset = vaddr_off.pop()
        self.dm_segs.sort()
        self.info = self._vmcoreinfo()
        self.phys_base = int(self.info["NUMBER(phys_base)"])
        if int(self.info.get("NUMBER(pgtable_l5_enabled)", "0")):
            raise Fail("5-level paging sources are not supported")
        self.max_pfn = max((p + s) // PAGE for p, s, _ in self.dm_segs)
        # Which source pfns hold data (not all zero): computed once.
        self.nonzero = np.zeros(self.max_pfn + 1, dtype=bool)
        for p, s, off in self.dm_segs:
            first, n = -(-p // PAGE), (p + s) // PAGE - -(-p // PAGE)
            a = np.frombuffer(self.map, dtype="<u8", count=n * 512, offset=off + first * PAGE - p)
            self.nonzero[first:first + n] = a.reshape(n, 512).any(axis=1)
            tail = (p + s) % PAGE
            if tail:  # partial last page (0x9fc00): data if any byte set
                self.nonzero[(p + s) // PAGE] = any(self.map[off + s - tail:off + s])

    def _vmcoreinfo(self) -> Dict[str, str]:
        pos = 0
        notes = self.notes
        while pos + 12 <= len(notes):
            namesz, descsz, _typ = struct.unpack_from("<III", notes, pos)
            name = notes[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            dpos = pos + 12 + (namesz + 3) // 4 * 4
            if name == b"VMCOREINFO":
                text = notes[dpos:dpos + descsz].decode("latin-1")
                return dict(l.split("=", 1) for l in text.splitlines() if "=" in l)
            pos = dpos + (descsz + 3) // 4 * 4
        raise Fail("no VMCOREINFO note")

    def num(self, key: str) -> int:
        return int(self.info[key])

    def seg_of(self, pa: int, n: int) -> Tuple[int, int, int]:
        for p, s, off in self.dm_segs:
            if p <= pa and pa + n <= p + s:
                return p, s, off
        raise Fail(f"physical range {pa:#x}+{n:#x} is not RAM in the source")

    def phys(self, pa: int, n: int) -> memoryview:
        p, _s, off = self.seg_of(pa, n)
        return self.view[off + pa - p:off + pa - p + n]

    def is_ram(self, pa: int, n: int) -> bool:
        return any(p <= pa and pa + n <= p + s for p, s, _ in self.dm_segs)


# ---------------------------------------------------------- page tables
class PhysEdits:
    """Pages of physical memory the generator edits or adds (page tables,
    mem_section), on top of the source; new pages come from a bump
    allocator in the metadata area."""

    def __init__(self, src: Source, root_pa: int):
        self.src = src
        self.root = root_pa
        self.pages: Dict[int, bytearray] = {}
        self.dirty = set()
        self.meta_base = None
        self.meta_used = 0

    def page(self, pa: int) -> bytearray:
        pa &= ~(PAGE - 1)
        pg = self.pages.get(pa)
        if pg is None:
            pg = self.pages[pa] = bytearray(self.src.phys(pa, PAGE))
        return pg

    def u64(self, pa: int) -> int:
        return struct.unpack_from("<Q", self.page(pa), pa % PAGE)[0]

    def set_u64(self, pa: int, value: int) -> None:
        self.dirty.add(pa & ~(PAGE - 1))
        struct.pack_into("<Q", self.page(pa), pa % PAGE, value)

    def alloc(self) -> int:
        if self.meta_base is None or self.meta_used + PAGE > META_BYTES:
            raise Fail("metadata area exhausted (or no second copy to hold it)")
        pa = self.meta_base + self.meta_used
        self.meta_used += PAGE
        self.pages[pa] = bytearray(PAGE)
        self.dirty.add(pa)
        return pa

    def walk(self, va: int) -> Tuple[int, int]:
        """(paddr, leaf size) of ``va`` through the (edited) page tables."""
        table = self.root
        for shift in (39, 30, 21, 12):
            e = self.u64(table + ((va >> shift) & 511) * 8)
            if not e & P_PRESENT:
                raise Fail(f"{va:#x} not mapped")
            if shift == 12 or (shift in (30, 21) and e & P_PSE):
                size = 1 << shift
                return (e & ADDR_MASK & ~(size - 1)) + (va & (size - 1)), size
            table = e & ADDR_MASK
        raise AssertionError

    def map_leaf(self, va: int, pa: int, shift: int) -> None:
        """Map [va, va + 2^shift) to pa with one 2 MiB (21) or 1 GiB (30) leaf,
        creating missing tables."""
        table = self.root
        for level in (39, 30, 21):
            slot = table + ((va >> level) & 511) * 8
            e = self.u64(slot)
            if level == shift:
                want = pa | LEAF_FLAGS
                if e & P_PRESENT and e != want:
                    raise Fail(f"{va:#x} already mapped differently ({e:#x})")
                self.set_u64(slot, want)
                return
            if not e & P_PRESENT:
                new = self.alloc()
                self.set_u64(slot, new | TABLE_FLAGS)
                table = new
            elif e & P_PSE:
                raise Fail(f"{va:#x}: a larger leaf already maps it")
            else:
                table = e & ADDR_MASK


# ------------------------------------------------------------ the model
class Model:
    """Layout of the tiled machine, derived from the source."""

    def __init__(self, src: Source):
        self.src = src
        info = src.info
        self.sizeof_page = src.num("SIZE(page)")
        self.off_lru = src.num("OFFSET(page.lru)")
        self.off_head = src.num("OFFSET(page.compound_head)")
        self.off_mapping = src.num("OFFSET(page.mapping)")
        if self.sizeof_page % 8 or not (self.off_head == self.off_lru and self.off_mapping % 8 == 0):
            raise Fail("unexpected struct page layout")
        section_bits = src.num("NUMBER(SECTION_SIZE_BITS)")
        self.pfns_per_section = 1 << (section_bits - 12)
        self.sizeof_section = src.num("SIZE(mem_section)")
        self.off_section_map = src.num("OFFSET(mem_section.section_mem_map)")
        self.sections_per_root = PAGE // self.sizeof_section
        root_sym = None
        for key in ("SYMBOL(init_top_pgt)", "SYMBOL(init_level4_pgt)", "SYMBOL(swapper_pg_dir)"):
            if key in info:
                root_sym = int(info[key], 16)
                break
        if root_sym is None:
            raise Fail("VMCOREINFO lacks SYMBOL(init_top_pgt)")
        self.ed = PhysEdits(src, root_sym - START_KERNEL_MAP + src.phys_base)
        self.pob = src.page_offset
        # mem_section root array and the present sections of the source.
        self.ms_root_va = int(info["SYMBOL(mem_section)"], 16)
        nsec = -(-src.max_pfn // self.pfns_per_section)
        self.src_sections: List[bytes] = []
        for nr in range(nsec):
            sec_va = self._root(nr // self.sections_per_root)
            if not sec_va:
                raise Fail(f"source section {nr} absent")
            pa = self.ed.walk(sec_va + (nr % self.sections_per_root) * self.sizeof_section)[0]
            raw = bytes(src.phys(pa, self.sizeof_section))
            self.src_sections.append(raw)
        words = [struct.unpack_from("<Q", s, self.off_section_map)[0] for s in self.src_sections]
        if not all(w & 1 for w in words) or len({w & SECTION_MAP_MASK for w in words}) != 1:
            raise Fail("source is not SPARSEMEM_VMEMMAP with all sections present")
        self.vmemmap = words[0] & SECTION_MAP_MASK
        self.tile_pfns = nsec * self.pfns_per_section
        self.tile = self.tile_pfns * PAGE
        self.memmap_bytes = self.tile_pfns * self.sizeof_page
        # Physical backing of the real vmemmap: 2 MiB leaves, contiguous.
        self.memmap_pa, size = self.ed.walk(self.vmemmap)
        for off in range(0, self.memmap_bytes, 2 * MIB):
            pa, size = self.ed.walk(self.vmemmap + off)
            if size != 2 * MIB or pa != self.memmap_pa + off:
                raise Fail("vmemmap is not mapped by physically contiguous 2 MiB pages")
        if self.memmap_bytes % (2 * MIB) or not src.is_ram(self.memmap_pa, self.memmap_bytes):
            raise Fail("vmemmap backing is not RAM in the source")
        # Largest hole inside the tile: metadata area + filled RAM.
        holes, pos = [], 0
        for p, s, _ in src.dm_segs:
            if p > pos:
                holes.append((pos, p))
            pos = max(pos, p + s)
        holes.append((pos, self.tile))
        h0, h1 = max(holes, key=lambda h: h[1] - h[0])
        self.meta_start = -(-h0 // ALIGN_FILL) * ALIGN_FILL
        self.fill_start = self.meta_start + META_BYTES
        self.fill_end = h1 // ALIGN_FILL * ALIGN_FILL
        if self.fill_end <= self.fill_start:
            raise Fail("source has no hole of >= 8 MiB to hold copy metadata")
        n = self.fill_end - self.fill_start
        self.fill_src = None
        for p, s, _ in src.dm_segs:
            start = -(-p // ALIGN_FILL) * ALIGN_FILL
            if start + n <= p + s:
                self.fill_src = start
                break
        if self.fill_src is None:
            raise Fail("no RAM stretch in the source large enough to fill the hole")
        # Regions of a copy k >= 1 (tile-relative): (start, end, kind, src)
        self.regions: List[Tuple[int, int, str, int]] = []
        for p, s, _ in src.dm_segs:
            self.regions.append((p, p + s, "src", p))
        self.regions.append((self.meta_start, self.fill_start, "meta", 0))
        self.regions.append((self.fill_start, self.fill_end, "src", self.fill_src))
        self.regions.sort()
        self.regions = self._split_memmap(self.regions)
        # RAM ranges of a copy k >= 1, merged.
        self.copy_ranges: List[List[int]] = []
        for a, b, _k, _s in self.regions:
            if self.copy_ranges and self.copy_ranges[-1][1] == a:
                self.copy_ranges[-1][1] = b
            else:
                self.copy_ranges.append([a, b])
        self._prepare_struct_pages()

    def _root(self, r: int) -> int:
        pa = self.ed.walk(self.ms_root_va + 8 * r)[0]
        return self.ed.u64(pa)

    def _split_memmap(self, regions):
        a0, a1 = self.memmap_pa, self.memmap_pa + self.memmap_bytes
        out = []
        for a, b, kind, s in regions:
            if kind == "src" and a <= a0 and a1 <= b:
                out += [(a, a0, kind, s), (a0, a1, "memmap", 0), (a1, b, kind, s + (a1 - a))]
            else:
                out.append((a, b, kind, s))
        return [r for r in out if r[1] > r[0]]

    # ------------------------------------------------------ struct pages
    def _prepare_struct_pages(self) -> None:
        """Per tile pfn: which real struct page it copies, and which of its
        words hold addresses to rewrite (computed once for all copies)."""
        words_per_page = self.sizeof_page // 8
        real = np.frombuffer(self.src.phys(self.memmap_pa, self.memmap_bytes), dtype="<u8")
        real = real.reshape(self.tile_pfns, words_per_page)
        pfn = np.arange(self.tile_pfns, dtype=np.int64)
        src_idx = pfn.copy()
        mm0 = self.memmap_pa // PAGE
        for a, b, kind, s in self.regions:
            lo, hi = a // PAGE, b // PAGE
            if kind == "src":
                src_idx[lo:hi] = pfn[lo:hi] - (a - s) // PAGE
            elif kind == "meta":  # reserved like the memmap's own pages
                src_idx[lo:hi] = mm0 + (pfn[lo:hi] - lo)
        self.base = real[src_idx].copy()
        self.self_shift = ((pfn - src_idx) * self.sizeof_page).astype(np.uint64)
        vm0, vm1 = np.uint64(self.vmemmap), np.uint64(self.vmemmap + self.memmap_bytes)
        dm0, dm1 = np.uint64(self.pob), np.uint64(self.pob + self.tile)
        w_head = self.off_head // 8
        tail = (self.base[:, w_head] & np.uint64(1)) != 0
        self.fix_vm, self.fix_dm = [], []
        for off in sorted({self.off_lru, self.off_lru + 8, self.off_mapping}):
            w = off // 8
            v = self.base[:, w] & ~np.uint64(3)
            if off == self.off_head:  # tails: compound_head; others: lru.next
                in_vm = tail | ((v >= vm0) & (v < vm1))
                in_dm = ~tail & (v >= dm0) & (v < dm1)
            else:  # page[1..] of a compound page reuse these words: leave them
                in_vm = ~tail & (v >= vm0) & (v < vm1)
                in_dm = ~tail & (v >= dm0) & (v < dm1)
            self.fix_vm.append((w, np.nonzero(in_vm)[0]))
            self.fix_dm.append((w, np.nonzero(in_dm)[0]))

    def struct_pages(self, k: int) -> bytes:
        """The memmap (struct pages of every pfn) of copy k, as bytes."""
        sp = self.base.copy()
        vm_shift = self.self_shift + np.uint64(k * self.tile_pfns * self.sizeof_page)
        dm_shift = np.uint64(k * self.tile)
        for w, idx in self.fix_vm:
            sp[idx, w] += vm_shift[idx]
        for w, idx in self.fix_dm:
            sp[idx, w] += dm_shift
        return sp.tobytes()

    # ------------------------------------------------- kernel metadata
    def extend_kernel(self, copies: int) -> None:
        ed = self.ed
        if copies > 1:
            ed.meta_base = self.tile + self.meta_start
        # direct map over the new RAM
        end = copies * self.tile
        pa = self.tile
        while pa < end:
            if pa % GIB == 0 and pa + GIB <= -(-end // GIB) * GIB:
                ed.map_leaf(self.pob + pa, pa, 30)
                pa += GIB
            else:
                ed.map_leaf(self.pob + pa, pa, 21)
                pa += 2 * MIB
        # vmemmap of copies 1.. (2 MiB pages at the copy's memmap backing)
        for k in range(1, copies):
            for off in range(0, self.memmap_bytes, 2 * MIB):
                va = self.vmemmap + k * self.memmap_bytes + off
                ed.map_leaf(va, k * self.tile + self.memmap_pa + off, 21)
        # mem_section entries
        nsec = len(self.src_sections)
        root_pages: Dict[int, int] = {}
        for k in range(1, copies):
            for j, raw in enumerate(self.src_sections):
                nr = k * nsec + j
                r = nr // self.sections_per_root
                if r not in root_pages:
                    slot = ed.walk(self.ms_root_va + 8 * r)[0]
                    cur = ed.u64(slot)
                    if not cur:
                        cur = self.pob + ed.alloc()
                        ed.set_u64(slot, cur)
                    root_pages[r] = ed.walk(cur)[0]
                pa = root_pages[r] + (nr % self.sections_per_root) * self.sizeof_section
                ed.page(pa)[pa % PAGE:pa % PAGE + self.sizeof_section] = raw
                ed.dirty.add(pa & ~(PAGE - 1))


# --------------------------------------------------------------- writer
class Writer:
    def __init__(self, path: str, src: Source, model: Model, copies: int):
        self.src, self.model, self.copies = src, model, copies
        # Output PT_LOADs: (vaddr, paddr, size) + a content plan per segment.
        segs = []
        kv, kp, ks, _ = src.kernel_seg
        segs.append((kv, kp, ks))
        for p, s, _ in src.dm_segs:
            segs.append((model.pob + p, p, s))
        for k in range(1, copies):
            for a, b in model.copy_ranges:
                segs.append((model.pob + k * model.tile + a, k * model.tile + a, b - a))
        self.segs = segs
        phnum = 1 + len(segs)
        notes_off = -(-(EHDR.size + phnum * PHDR.size) // PAGE) * PAGE
        off = -(-(notes_off + len(src.notes)) // PAGE) * PAGE
        self.offsets = []
        for _v, _p, s in segs:
            self.offsets.append(off)
            off = -(-(off + s) // PAGE) * PAGE
        self.total = off
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.written = 0
        e = list(src.ehdr)
        e[5], e[6], e[10], e[11], e[12], e[13] = EHDR.size, 0, phnum, 0, 0, 0
        head = bytearray(EHDR.pack(*e))
        head += PHDR.pack(PT_NOTE, 0, notes_off, 0, 0, len(src.notes), len(src.notes), 0)
        for (v, p, s), o in zip(segs, self.offsets):
            head += PHDR.pack(PT_LOAD, 7, o, v, p, s, s, 0)
        self._pwrite(bytes(head), 0)
        self._pwrite(src.notes, notes_off)

    def _pwrite(self, data, off: int) -> None:
        mv = memoryview(data)
        while len(mv):
            n = os.pwrite(self.fd, mv, off)
            mv, off = mv[n:], off + n
            self.written += n

    def _write_sparse(self, data: memoryview, off: int, nonzero=None) -> None:
        """Write ``data`` at ``off`` leaving all-zero pages as holes."""
        n = len(data)
        npages = -(-n // PAGE)
        if nonzero is None:
            full = n // PAGE
            nz = np.empty(npages, dtype=bool)
            nz[:full] = np.frombuffer(data, dtype="<u8", count=full * 512).reshape(full, 512).any(axis=1)
            if full < npages:
                nz[full] = any(data[full * PAGE:])
        else:
            nz = nonzero
        # runs of data pages
        edges = np.flatnonzero(np.diff(np.concatenate(([False], nz, [False])).astype(np.int8)))
        for a, b in zip(edges[::2], edges[1::2]):
            self._pwrite(data[a * PAGE:min(n, b * PAGE)], off + a * PAGE)

    def _src_range(self, spa: int, n: int, off: int) -> None:
        """Copy source physical [spa, spa+n) to file offset ``off``, sparse."""
        while n:
            p, s, _o = self.src.seg_of(spa, 1)
            m = min(n, p + s - spa)
            lo = spa // PAGE
            nz = self.src.nonzero[lo:lo + -(-m // PAGE)] if spa % PAGE == 0 else None
            self._write_sparse(self.src.phys(spa, m), off, nz)
            spa, off, n = spa + m, off + m, n - m

    def write(self, progress=None) -> None:
        model, src = self.model, self.src
        # kernel image alias + copy 0: the source as it is
        kv, kp, ks, koff = src.kernel_seg
        self._write_sparse(src.view[koff:koff + ks], self.offsets[0])
        ndm = len(src.dm_segs)
        for i in range(ndm):
            _v, p, s = self.segs[1 + i]
            self._src_range(p, s, self.offsets[1 + i])
        # copies 1..
        idx = 1 + ndm
        for k in range(1, self.copies):
            base = k * model.tile
            memmap = memoryview(model.struct_pages(k))
            for _ in model.copy_ranges:
                _v, p, s = self.segs[idx]
                off0 = self.offsets[idx]
                for ra, rb, kind, sa in model.regions:
                    a, b = max(ra + base, p), min(rb + base, p + s)
                    if a >= b:
                        continue
                    off, within = off0 + a - p, a - base - ra
                    if kind == "src":
                        self._src_range(sa + within, b - a, off)
                    elif kind == "memmap":
                        self._write_sparse(memmap[within:within + b - a], off)
                    # "meta": zero here; metadata pages are patched in below
                idx += 1
            if progress:
                progress(k)
        # page-table / mem_section edits and new metadata pages
        for pa in sorted(model.ed.dirty):
            data = model.ed.pages[pa]
            hit = False
            for (_v, p, s), o in zip(self.segs, self.offsets):
                if p <= pa < p + s:
                    self._pwrite(bytes(data[:min(PAGE, p + s - pa)]), o + pa - p)
                    hit = True
            if not hit:
                raise Fail(f"edited page {pa:#x} is not RAM in the output")
        os.ftruncate(self.fd, self.total)
        os.close(self.fd)


def generate(out: str, gib: float, source: str = DEFAULT_SOURCE, quiet: bool = False) -> dict:
    t0 = time.monotonic()
    src = Source(source)
    model = Model(src)
    copies = max(1, math.ceil(gib * GIB / model.tile - 1e-9))
    model.extend_kernel(copies)
    w = Writer(out, src, model, copies)

    def progress(k):
        if not quiet:
            print(f"\r  copy {k + 1}/{copies}", end="", file=sys.stderr, flush=True)

    w.write(progress)
    if not quiet and copies > 1:
        print(file=sys.stderr)
    st = os.stat(out)
    ram = sum(s for _v, p, s in w.segs[1:])
    return {
        "copies": copies, "tile_bytes": model.tile, "phys_end": copies * model.tile,
        "ram_bytes": ram, "pt_loads": len(w.segs), "file_bytes": st.st_size,
        "disk_bytes": st.st_blocks * 512, "data_written": w.written,
        "metadata_pages": model.ed.meta_used // PAGE, "edited_pages": len(model.ed.dirty),
        "seconds": time.monotonic() - t0,
        "layout": {"vmemmap_base": hex(model.vmemmap), "memmap_pa": hex(model.memmap_pa),
                   "meta": hex(model.meta_start), "fill": [hex(model.fill_start), hex(model.fill_end)],
                   "fill_src": hex(model.fill_src)},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output ELF vmcore (written sparse)")
    ap.add_argument("--gib", type=float, required=True,
                    help="physical memory size in GiB (rounded up to whole copies of the source)")
    ap.add_argument("--source", default=DEFAULT_SOURCE, help="real ELF vmcore to tile (default: %(default)s)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        r = generate(args.out, args.gib, args.source, args.quiet)
    except Fail as e:
        print(f"make_large_dump: {e}", file=sys.stderr)
        return 1
    print(f"{args.out}: {r['copies']} x {r['tile_bytes'] >> 20} MiB = {r['phys_end'] / GIB:g} GiB physical, "
          f"{r['ram_bytes'] / GIB:.2f} GiB RAM in {r['pt_loads'] - 1} PT_LOADs + the kernel-image alias; "
          f"file {r['file_bytes'] / GIB:.2f} GiB, on disk {r['disk_bytes'] / GIB:.2f} GiB; "
          f"{r['edited_pages']} kernel pages edited ({r['metadata_pages']} new); {r['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
