"""The kernel memory model behind a synthetic x86_64 vmcore.

:func:`build_vmcore` lays out physical RAM (with holes and an optional
crashkernel range absent from the dump), loads a "kernel image" at a 2 MiB
aligned physical address mapped at ``0xffffffff81000000 + KASLR offset``,
allocates memblock-style (top down) the direct-map/vmemmap page tables, the
SPARSEMEM ``mem_section`` table and the vmemmap backing, places a workload of
page kinds (kernel, slab, page tables, anonymous, page cache with/without
PG_private, shmem, swap cache, buddy blocks, hugetlb/THP/large folios,
hwpoison, offline, unaccepted), writes a struct page for every pfn of every
present section in the chosen :mod:`profile <dumpfilter.testing.synthetic.profiles>`
layout, fills page contents (zero, text, random, small ints, repeated
structs) and writes an ELF core with NT_PRSTATUS + VMCOREINFO notes.

Everything is derived from ``random.Random(seed)``: the same spec gives the same
file byte for byte.  The returned :class:`ImageInfo` holds the truth table
(per-pfn class, zero content, present in dump) and the addresses the builder
used, for tests and for :func:`~dumpfilter.testing.synthetic.truth.expected_bitmap2`.
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from . import elfcore, profiles
from .profiles import PAGE_STRUCT_SIZE, pack_page, pack_tail
from .truth import ImageInfo
from .workload import (IMG_STATIC_MEMSECTION, MAX_ORDER, PAGE, PAGES_PER_SECTION,  # noqa: F401
                       SECTION_SIZE_BITS, UNASSIGNED, WorkloadMixin)
from .truth import (ANON, FILE, FILE_PRIVATE, FREE, HUGETLB, HWPOISON, KERNEL, KERNEL_ALLOC,
                    NOT_RAM, OFFLINE, PGTABLE, SHMEM, SLAB, SWAPCACHE, UNACCEPTED)

MIB, GIB = 1 << 20, 1 << 30
START_KERNEL_MAP = 0xFFFFFFFF80000000
START_KERNEL = 0xFFFFFFFF81000000  # link address of _stext (CONFIG_PHYSICAL_START 16 MiB)
KERNEL_IMAGE_SIZE = 1 << 30
# section_mem_map flag bits (include/linux/mmzone.h, 6.1..6.12): PRESENT 1, HAS_MEM_MAP 2,
# IS_ONLINE 4, IS_EARLY 8, TAINT_ZONE_DEVICE 16 -> SECTION_MAP_LAST_BIT = 5 (makedumpfile
# masks ~0x1f).  Kernels >= 6.15 may add SECTION_IS_VMEMMAP_PREINIT (6 bits); the encoded
# vmemmap address here is 2 MiB aligned, so any mask up to 21 bits decodes it.
SECTION_FLAGS = 1 | 2 | 4 | 8

# x86_64 page-table entry bits
P_PRESENT, P_RW, P_ACCESSED, P_DIRTY, P_PSE, P_GLOBAL = 0x1, 0x2, 0x20, 0x40, 0x80, 0x100
P_NX = 1 << 63
TABLE_FLAGS = P_PRESENT | P_RW | P_ACCESSED | P_DIRTY
LEAF_FLAGS = P_PRESENT | P_RW | P_ACCESSED | P_DIRTY | P_GLOBAL
ADDR_MASK = 0x000FFFFFFFFFF000

# kernel image layout (offsets from the image start = _stext)
IMG_PGD, IMG_UTS, IMG_NODE_ONLINE, IMG_NODE_DATA = 0x200000, 0x201000, 0x202000, 0x203000
BASE_IMAGE_SIZE = 0x400000

ZERO_PAGE = bytes(PAGE)


@dataclass
class ImageSpec:
    """What to build.  Defaults give a 64 MiB 6.1-like kdump vmcore."""

    profile: str = "6.1"
    seed: int = 0
    mem_mib: int = 64
    ram_ranges: Optional[List[Tuple[int, int]]] = None  # [(start, end)) bytes, page aligned
    crashkernel: Optional[Tuple[int, int]] = None  # (start, size): RAM left out of the dump
    five_level: bool = False
    direct_map_page: str = "1G"  # "1G" or "2M"
    vmemmap_page: str = "2M"  # "2M" or "4K" (PTE-mapped, physically scattered)
    sme_mask: int = 0  # e.g. 1 << 47: OR-ed into every page-table entry
    kaslr: bool = True
    sparsemem_extreme: bool = True
    mem_section_size: int = 32  # SIZE(mem_section): 32 (page_ext) or 16
    nr_cpus: int = 2
    elf_vaddrs: bool = True  # kexec-style p_vaddr; False = QEMU-style p_vaddr 0
    kernel_alias_load: bool = True  # extra PT_LOAD for the kernel image (needs elf_vaddrs)
    phdrs_after_shdrs: bool = False
    bad_ehsize: bool = False
    misalign: int = 0  # segment data at a non page aligned file offset
    short_last_load_pages: int = 0  # last PT_LOAD has p_filesz < p_memsz by this many pages
    straddle_buddy: bool = True  # an order-3 buddy block across each 65536-pfn boundary
    crashtime: int = 1795691979
    crash: Optional[object] = None  # crashes.CrashSpec or a name in crashes.CRASHES (tasks.py)

    def resolved_ram_ranges(self) -> List[Tuple[int, int]]:
        if self.ram_ranges:
            return sorted(self.ram_ranges)
        return [(0x1000, 0x9F000), (0x100000, self.mem_mib * MIB)]


# =========================================================================== builder

class _Builder(WorkloadMixin):
    #: Page size in bytes (the arm64 builder, synthetic/arm64.py, sets 16/64 KiB).
    P = PAGE

    def __init__(self, spec: ImageSpec):
        self.spec = spec
        self.prof = profiles.get_profile(spec.profile)
        self.rng = random.Random(spec.seed)
        self.ram = spec.resolved_ram_ranges()
        for a, b in self.ram:
            if a % PAGE or b % PAGE or a >= b:
                raise ValueError(f"bad RAM range {a:#x}-{b:#x}")
        self.max_pfn = self.ram[-1][1] // PAGE
        self.cls = bytearray(self.max_pfn)
        for a, b in self.ram:
            self.cls[a // PAGE:b // PAGE] = bytes([UNASSIGNED]) * ((b - a) // PAGE)
        self.pages: Dict[int, bytes] = {}
        self.structural = set()  # pfns whose content is written by the builder itself
        self.mappings: List[Tuple[int, int, int, int]] = []
        self.folios: List[Tuple[int, int, str]] = []
        self.buddy: List[Tuple[int, int]] = []
        self.unaccepted: List[int] = []
        self.page_kind: Dict[int, str] = {}  # extra per-pfn detail for struct pages
        self.mb_top = self.max_pfn
        self.sections = sorted({p >> 15 for a, b in self.ram for p in range(a // PAGE, b // PAGE, 1 << 12)}
                               | {(b // PAGE - 1) >> 15 for a, b in self.ram})
        self.sme = spec.sme_mask
        self.l5 = spec.five_level
        self.cpu_regs: Dict[int, Dict[str, int]] = {}  # NT_PRSTATUS overrides (tasks.py)
        self.cpu_pids: Dict[int, int] = {}
        self.crash: Optional[dict] = None

    # ------------------------------------------------------------------ memory helpers
    def wpage(self, pfn: int) -> bytearray:
        page = self.pages.get(pfn)
        if not isinstance(page, bytearray):
            page = bytearray(page) if page is not None else bytearray(PAGE)
            self.pages[pfn] = page
        return page

    def write_phys(self, addr: int, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            off = (addr + pos) % PAGE
            n = min(len(data) - pos, PAGE - off)
            self.wpage((addr + pos) // PAGE)[off:off + n] = data[pos:pos + n]
            pos += n

    def write_u64(self, addr: int, value: int) -> None:
        self.write_phys(addr, struct.pack("<Q", value & (2**64 - 1)))

    def memblock_alloc(self, npages: int, align: int = 1) -> int:
        """Top-down allocation of ``npages`` contiguous unassigned RAM pfns (marked KERNEL)."""
        p = (self.mb_top - npages) // align * align
        want = bytes([UNASSIGNED]) * npages
        while p >= 0:
            if self.cls[p:p + npages] == want:
                self.cls[p:p + npages] = bytes([KERNEL]) * npages
                self.structural.update(range(p, p + npages))
                self.mb_top = p
                return p
            p -= align
        raise ValueError("synthetic image too small for its kernel structures")

    # ------------------------------------------------------------------ layout
    def layout(self) -> None:
        rng, spec = self.rng, self.spec
        if self.l5:
            self.page_offset_base = 0xFF11000000000000
            self.vmalloc_start = 0xFFA0000000000000
            self.vmemmap_base = 0xFFD4000000000000
            self.max_physmem_bits = 52
        else:
            self.page_offset_base = 0xFFFF888000000000
            self.vmalloc_start = 0xFFFFC90000000000
            self.vmemmap_base = 0xFFFFEA0000000000
            self.max_physmem_bits = 46
        self.kaslr = 0
        if spec.kaslr:
            self.page_offset_base += rng.randrange(1, 1 << 13) * GIB
            self.vmalloc_start += rng.randrange(1, 1 << 12) * GIB
            self.vmemmap_base += rng.randrange(1, 1 << 10) * GIB
            self.kaslr = rng.randrange(1, 0x1C0) * 2 * MIB
        self.kernel_vaddr = START_KERNEL + self.kaslr
        nr_mem_sections = 1 << (self.max_physmem_bits - SECTION_SIZE_BITS)
        self.ksize = BASE_IMAGE_SIZE
        if not spec.sparsemem_extreme:
            if self.l5:
                raise ValueError("non-extreme SPARSEMEM with 5-level paging would need a 512 MiB array")
            self.ksize += -(-nr_mem_sections * spec.mem_section_size // (2 * MIB)) * 2 * MIB
        self.nr_mem_sections = nr_mem_sections

        # pages cut from the last PT_LOAD (p_filesz < p_memsz): firmware-reserved, so that no
        # kernel structure a reader needs lands there
        n = spec.short_last_load_pages
        if n:
            self.cls[self.max_pfn - n:self.max_pfn] = bytes([KERNEL]) * n
        # crashkernel first (so that nothing else lands there), then the kernel image
        ck = spec.crashkernel
        if ck:
            a, n = ck[0] // PAGE, ck[1] // PAGE
            if any(self.cls[p] != UNASSIGNED for p in range(a, a + n)):
                raise ValueError("crashkernel range must lie in RAM")
            self.cls[a:a + n] = bytes([KERNEL]) * n
        cands = [p for a, b in self.ram for p in range(-(-a // (2 * MIB)) * 2 * MIB, b - self.ksize + 1, 2 * MIB)
                 if all(self.cls[q] == UNASSIGNED for q in range(p // PAGE, (p + self.ksize) // PAGE, 64))]
        if not cands:
            raise ValueError("no room for the kernel image")
        high = [p for p in cands if p >= 16 * MIB] or cands
        self.kernel_paddr = rng.choice(high[: max(1, len(high) // 2)])
        kp, kn = self.kernel_paddr // PAGE, self.ksize // PAGE
        self.cls[kp:kp + kn] = bytes([KERNEL]) * kn
        self.phys_base = self.kernel_paddr - (self.kernel_vaddr - START_KERNEL_MAP)

    def kva(self, img_off: int) -> int:
        return self.kernel_vaddr + img_off

    def kpa(self, img_off: int) -> int:
        return self.kernel_paddr + img_off

    # ------------------------------------------------------------------ page tables
    def map_page(self, va: int, pa: int, psize: int, nx: bool = True) -> None:
        shifts = [48, 39, 30, 21, 12] if self.l5 else [39, 30, 21, 12]
        leaf_shift = {PAGE: 12, 2 * MIB: 21, GIB: 30}[psize]
        table = self.pgd_pa
        for shift in shifts:
            slot = table + ((va >> shift) & 511) * 8
            if shift == leaf_shift:
                flags = LEAF_FLAGS | (P_PSE if psize > PAGE else 0) | (P_NX if nx else 0)
                self.write_u64(slot, pa | flags | self.sme)
                return
            entry = struct.unpack_from("<Q", self.wpage(slot // PAGE), slot % PAGE)[0]
            if not entry & P_PRESENT:
                new = self.memblock_alloc(1) * PAGE
                self.wpage(new // PAGE)
                entry = new | TABLE_FLAGS | self.sme
                self.write_u64(slot, entry)
            table = entry & ADDR_MASK & ~self.sme

    def map_range(self, va: int, pa: int, size: int, psize: int, nx: bool = True) -> None:
        for off in range(0, size, psize):
            self.map_page(va + off, pa + off, psize, nx)
        self.mappings.append((va, pa, size, psize))

    def build_page_tables(self) -> None:
        self.pgd_pa = self.kpa(IMG_PGD)
        self.structural.add(self.pgd_pa // PAGE)
        self.wpage(self.pgd_pa // PAGE)
        # kernel image: 2 MiB pages, text executable
        self.map_range(self.kernel_vaddr, self.kernel_paddr, 2 * MIB, 2 * MIB, nx=False)
        self.map_range(self.kernel_vaddr + 2 * MIB, self.kernel_paddr + 2 * MIB, self.ksize - 2 * MIB, 2 * MIB)
        # direct map of all RAM
        if self.spec.direct_map_page == "1G":
            end = -(-self.ram[-1][1] // GIB) * GIB
            self.map_range(self.page_offset_base, 0, end, GIB)
        else:
            chunks = sorted({c for a, b in self.ram for c in range(a // (2 * MIB), -(-b // (2 * MIB)))})
            for c in chunks:
                self.map_range(self.page_offset_base + c * 2 * MIB, c * 2 * MIB, 2 * MIB, 2 * MIB)
        # vmemmap: one 2 MiB of struct pages per section
        self.vmemmap_pfns: Dict[int, int] = {}  # struct-page virtual page index -> pfn
        for s in self.sections:
            va = self.vmemmap_base + s * PAGES_PER_SECTION * PAGE_STRUCT_SIZE
            if self.spec.vmemmap_page == "2M":
                pa = self.memblock_alloc(512, 512) * PAGE
                self.map_range(va, pa, 2 * MIB, 2 * MIB)
                for i in range(512):
                    self.vmemmap_pfns[(va - self.vmemmap_base) // PAGE + i] = pa // PAGE + i
            else:  # 4 KiB pages, allocated one by one top-down (descending physical addresses)
                for i in range(512):
                    pa = self.memblock_alloc(1) * PAGE
                    self.map_range(va + i * PAGE, pa, PAGE, PAGE)
                    self.vmemmap_pfns[(va - self.vmemmap_base) // PAGE + i] = pa // PAGE

    # ------------------------------------------------------------------ sparsemem + nodes
    def build_mem_section(self) -> None:
        size = self.spec.mem_section_size
        per_root = PAGE // size
        usage = self.memblock_alloc(1) * PAGE
        if self.spec.sparsemem_extreme:
            nroots = -(-self.nr_mem_sections // per_root)
            root_pages = -(-nroots * 8 // PAGE)
            root = self.memblock_alloc(root_pages) * PAGE
            self.wpage(root // PAGE)
            self.mem_section_sym = self.page_offset_base + root
            self.mem_section_len = nroots
            root_tables: Dict[int, int] = {}
            for s in self.sections:
                r = s // per_root
                if r not in root_tables:
                    root_tables[r] = self.memblock_alloc(1) * PAGE
                    self.write_u64(root + 8 * r, self.page_offset_base + root_tables[r])
                self._write_section(root_tables[r] + (s % per_root) * size, s, usage)
        else:
            base = self.kpa(IMG_STATIC_MEMSECTION)
            self.mem_section_sym = self.kva(IMG_STATIC_MEMSECTION)
            self.mem_section_len = self.nr_mem_sections
            for s in self.sections:
                self._write_section(base + s * size, s, usage)
                self.structural.add((base + s * size) // PAGE)

    def _write_section(self, addr: int, s: int, usage: int) -> None:
        first_pfn = s * PAGES_PER_SECTION
        mem_map = self.vmemmap_base + first_pfn * PAGE_STRUCT_SIZE
        encoded = (mem_map - first_pfn * PAGE_STRUCT_SIZE) | SECTION_FLAGS
        self.write_u64(addr, encoded)
        self.write_u64(addr + 8, self.page_offset_base + usage + (s % 64) * 64)

    def build_kernel_data(self) -> Dict[str, int]:
        prof, spec = self.prof, self.spec
        uts = (
            "Linux", "synthetic", prof.osrelease,
            f"#1 SMP PREEMPT_DYNAMIC Synthetic {prof.name} seed {spec.seed}", "x86_64", "(none)",
        )
        self.utsname = uts
        self.write_phys(self.kpa(IMG_UTS), b"".join(f.encode().ljust(65, b"\0") for f in uts))
        self.write_u64(self.kpa(IMG_NODE_ONLINE), 1)
        # node_data[0] -> a pglist_data with node_start_pfn/spanned/id (nr_zones 0: no free lists)
        pgdat_pages = -(-174208 // PAGE)
        pgdat = self.memblock_alloc(pgdat_pages) * PAGE
        self.write_u64(self.kpa(IMG_NODE_DATA), self.page_offset_base + pgdat)
        self.write_u64(pgdat + 171560, 0)
        self.write_u64(pgdat + 171576, self.max_pfn)
        self.write_u64(pgdat + 171584, 0)
        for off in (IMG_UTS, IMG_NODE_ONLINE, IMG_NODE_DATA, IMG_NODE_DATA + PAGE):
            self.structural.add(self.kpa(off) // PAGE)
        # a page of kernel objects that struct pages point to (address_space, anon_vma, ...)
        obj = self.memblock_alloc(1)
        self.obj_va = self.page_offset_base + obj * PAGE
        self.write_phys(obj * PAGE, b"".join(struct.pack("<QQ", self.obj_va + 16 * i, i) for i in range(256)))
        return {
            "init_uts_ns": self.kva(IMG_UTS),
            "node_online_map": self.kva(IMG_NODE_ONLINE),
            "swapper_pg_dir": self.kva(IMG_PGD),
            "init_top_pgt": self.kva(IMG_PGD),
            "_stext": self.kernel_vaddr,
            "mem_section": self.mem_section_sym,
            "node_data": self.kva(IMG_NODE_DATA),
        }

    # ------------------------------------------------------------------ struct pages
    def write_struct_pages(self) -> None:
        prof, pg, types = self.prof, self.prof.pg, self.prof.types
        obj_va = self.obj_va
        head_of = {}
        for head, order, kind in self.folios:
            for i in range(1, 1 << order):
                head_of[head + i] = (head, i, order, kind)
        buddy_heads = {p: o for p, o in self.buddy}
        folio_heads = {h: (o, k) for h, o, k in self.folios}
        folio_heads.update((h, (MAX_ORDER, "unaccepted")) for h in self.unaccepted)
        F = lambda *names: sum(1 << pg[n] for n in names)  # noqa: E731
        rng = random.Random(self.spec.seed ^ 0x5EED)
        for s in self.sections:
            buf = bytearray(PAGES_PER_SECTION * PAGE_STRUCT_SIZE)
            first = s * PAGES_PER_SECTION
            for i in range(PAGES_PER_SECTION):
                pfn = first + i
                off = i * PAGE_STRUCT_SIZE
                zone = 0 if pfn < 4096 else (1 if pfn < (1 << 20) else 2)
                zf = zone << 52
                cls = self.cls[pfn] if pfn < self.max_pfn else NOT_RAM
                if pfn in head_of:
                    head, nth, order, kind = head_of[pfn]
                    pack_tail(buf, off, prof, zf, self.vmemmap_base + head * PAGE_STRUCT_SIZE, nth, order,
                              "hugetlb" if cls == HUGETLB else kind)
                    continue
                fields = self._page_fields(pfn, cls, zf, F, types, obj_va, rng, buddy_heads, folio_heads)
                pack_page(buf, off, **fields)
            base_vpage = (first * PAGE_STRUCT_SIZE) // PAGE
            for j in range(len(buf) // PAGE):
                self.pages[self.vmemmap_pfns[base_vpage + j]] = bytes(buf[j * PAGE:(j + 1) * PAGE])

    def _page_fields(self, pfn, cls, zf, F, types, obj_va, rng, buddy_heads, folio_heads) -> dict:
        pg = self.prof.pg
        sp_va = self.vmemmap_base + pfn * PAGE_STRUCT_SIZE
        aspace = obj_va + 0x100 * (pfn % 8)  # address_space-like objects
        anon = obj_va + 0x800 + 0x40 * (pfn % 16) + 1  # anon_vma | PAGE_MAPPING_ANON
        kind = self.page_kind.get(pfn, "")
        head = F("head") if pfn in folio_heads else 0
        if cls in (NOT_RAM, KERNEL):
            return dict(flags=zf | F("reserved"), lru_next=sp_va + 8, lru_prev=sp_va + 8, refcount=1)
        if cls == KERNEL_ALLOC:
            return dict(flags=zf, refcount=1)
        if cls == SLAB:
            flags = zf | head | (F("slab") if "slab" in pg else 0)
            mc = types["slab"] if types.get("slab") is not None else -1
            return dict(flags=flags, mapping=obj_va + 0xC00, private=(32 << 16) | rng.randrange(32),
                        mapcount=mc, refcount=1)
        if cls == PGTABLE:
            return dict(flags=zf, mapcount=types["table"], refcount=1)
        if cls == FREE:
            if pfn in buddy_heads:
                return dict(flags=zf, lru_next=sp_va + 8, lru_prev=sp_va + 8,
                            private=buddy_heads[pfn], mapcount=types["buddy"], refcount=0)
            return dict(flags=zf, refcount=0)
        if cls == UNACCEPTED:
            return dict(flags=zf, mapcount=types["unaccepted"] if pfn in folio_heads else -1, refcount=0)
        if cls == HWPOISON:
            return dict(flags=zf | F("hwpoison"), refcount=1)
        if cls == OFFLINE:
            return dict(flags=zf, mapcount=types["offline"], refcount=1)
        if cls == HUGETLB:
            mapping = anon if kind == "hugetlb_anon" else aspace
            mc = types["hugetlb"] if types.get("hugetlb") is not None else -1
            return dict(flags=zf | head | F("uptodate"), mapping=mapping, index=pfn >> 9,
                        mapcount=mc, refcount=1)
        index = rng.randrange(1 << 20)
        if cls == ANON:
            mc = -1 if head else 0  # a PMD-mapped THP counts in page[1]
            return dict(flags=zf | head | F("uptodate", "lru", "swapbacked", "active"), mapping=anon,
                        index=index, mapcount=mc, refcount=1)
        if cls == FILE:
            return dict(flags=zf | head | F("uptodate", "lru", "referenced"), mapping=aspace, index=index,
                        mapcount=rng.choice((-1, 0)), refcount=1 + bool(head))
        if cls == FILE_PRIVATE:
            return dict(flags=zf | F("uptodate", "lru", "private"), mapping=aspace, index=index,
                        private=obj_va + 0x400 + 8 * (pfn % 64), refcount=2)
        if cls == SHMEM:
            return dict(flags=zf | F("uptodate", "lru", "swapbacked", "dirty"), mapping=aspace + 0x80,
                        index=index, mapcount=rng.choice((-1, 0)), refcount=1)
        if cls == SWAPCACHE:
            return dict(flags=zf | F("uptodate", "swapcache", "swapbacked"), private=(index << 8) | 1,
                        refcount=1)
        raise AssertionError(cls)

    # ------------------------------------------------------------------ notes
    def vmcoreinfo(self, sym: Dict[str, int]) -> str:
        p, pg, t, spec = self.prof, self.prof.pg, self.prof.types, self.spec
        build_id = hashlib.sha1(f"{p.osrelease}/{spec.seed}".encode()).hexdigest()
        L = [f"OSRELEASE={p.osrelease}", f"BUILD-ID={build_id}", "PAGESIZE=4096"]
        S = lambda n: L.append(f"SYMBOL({n})={sym[n]:x}")  # noqa: E731
        S("init_uts_ns")
        L.append("OFFSET(uts_namespace.name)=0")
        for n in ("node_online_map", "swapper_pg_dir", "_stext"):
            S(n)
        if p.export_vmalloc_start:
            L.append(f"NUMBER(VMALLOC_START)=0x{self.vmalloc_start:x}")
        if p.export_vmemmap:
            L.append(f"SYMBOL(vmemmap)={self.vmemmap_base:x}")
        S("mem_section")
        L += [f"LENGTH(mem_section)={self.mem_section_len}", f"SIZE(mem_section)={spec.mem_section_size}",
              "OFFSET(mem_section.section_mem_map)=0", f"NUMBER(SECTION_SIZE_BITS)={SECTION_SIZE_BITS}",
              f"NUMBER(MAX_PHYSMEM_BITS)={self.max_physmem_bits}", "SIZE(page)=64", "SIZE(pglist_data)=174208",
              "SIZE(zone)=1536", "SIZE(free_area)=88", "SIZE(list_head)=16", "SIZE(nodemask_t)=128",
              "OFFSET(page.flags)=0", "OFFSET(page._refcount)=52", "OFFSET(page.mapping)=24",
              "OFFSET(page.lru)=8", "OFFSET(page._mapcount)=48", "OFFSET(page.private)=40"]
        if p.compound_style == "dtor":
            L += ["OFFSET(page.compound_dtor)=16", "OFFSET(page.compound_order)=17"]
        L.append(f"OFFSET(page.{p.compound_key})=8")
        L += ["OFFSET(pglist_data.node_zones)=0", "OFFSET(pglist_data.nr_zones)=171552",
              "OFFSET(pglist_data.node_start_pfn)=171560", "OFFSET(pglist_data.node_spanned_pages)=171576",
              "OFFSET(pglist_data.node_id)=171584", "OFFSET(zone.free_area)=256", "OFFSET(zone.vm_stat)=1344",
              "OFFSET(zone.spanned_pages)=144", "OFFSET(free_area.free_list)=0", "OFFSET(list_head.next)=0",
              "OFFSET(list_head.prev)=8", f"LENGTH(zone.free_area)={MAX_ORDER + 1}",
              f"LENGTH(free_area.free_list)={p.migrate_types}", "NUMBER(NR_FREE_PAGES)=0"]
        for n in ("lru", "private", "swapcache", "swapbacked"):
            L.append(f"NUMBER(PG_{n})={pg[n]}")
        if p.export_pg_slab:
            L.append(f"NUMBER(PG_slab)={pg['slab']}")
        if t.get("slab") is not None:
            L.append(f"NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)={t['slab']}")
        L += [f"NUMBER(PG_hwpoison)={pg['hwpoison']}", f"NUMBER(PG_head_mask)={p.head_mask}",
              f"NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)={t['buddy']}"]
        if t.get("hugetlb") is not None:
            L.append(f"NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)={t['hugetlb']}")
        if p.hugetlb_dtor is not None:
            L.append(f"NUMBER(HUGETLB_PAGE_DTOR)={p.hugetlb_dtor}")
        L.append(f"NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)={t['offline']}")
        if t.get("unaccepted") is not None:
            L.append(f"NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)={t['unaccepted']}")
        L += [f"NUMBER(phys_base)={self.phys_base}", f"SYMBOL(init_top_pgt)={sym['init_top_pgt']:x}",
              f"NUMBER(pgtable_l5_enabled)={int(self.l5)}", f"SYMBOL(node_data)={sym['node_data']:x}",
              "LENGTH(node_data)=1024", f"KERNELOFFSET={self.kaslr:x}",
              f"NUMBER(KERNEL_IMAGE_SIZE)={KERNEL_IMAGE_SIZE}", f"NUMBER(sme_mask)={spec.sme_mask}",
              f"CRASHTIME={spec.crashtime}"]
        return "\n".join(L) + "\n"

    def notes(self, vmcoreinfo: str) -> bytes:
        rng = random.Random(self.spec.seed ^ 0xC0DE)
        out = b""
        for cpu in range(self.spec.nr_cpus):
            regs = {name: rng.randrange(1 << 16) for name in elfcore.USER_REGS}
            regs.update(rip=self.kernel_vaddr + rng.randrange(0x100000, 0x180000), cs=0x10, ss=0x18,
                        eflags=0x246, rsp=self.page_offset_base + self.mb_top * PAGE - 8 * (cpu + 1),
                        orig_rax=(1 << 64) - 1, fs_base=0, gs_base=0, ds=0, es=0, fs=0, gs=0)
            regs.update(self.cpu_regs.get(cpu, {}))
            pid = self.cpu_pids.get(cpu, 1 if cpu == 0 else 0)
            out += elfcore.make_note("CORE", elfcore.NT_PRSTATUS, elfcore.make_prstatus(pid, regs))
        return out + elfcore.make_vmcoreinfo_note(vmcoreinfo)

    # ------------------------------------------------------------------ ELF
    def load_segments(self) -> List[elfcore.LoadSegment]:
        spec = self.spec
        ranges = []
        ck = spec.crashkernel
        for a, b in self.ram:
            if ck and a < ck[0] + ck[1] and ck[0] < b:
                if a < ck[0]:
                    ranges.append((a, ck[0]))
                if ck[0] + ck[1] < b:
                    ranges.append((ck[0] + ck[1], b))
            else:
                ranges.append((a, b))
        segs = []
        if spec.elf_vaddrs and spec.kernel_alias_load:
            segs.append(elfcore.LoadSegment(self.kernel_paddr, self.ksize, self.kernel_vaddr))
        for a, b in ranges:
            segs.append(elfcore.LoadSegment(a, b - a, self.page_offset_base + a if spec.elf_vaddrs else 0))
        if spec.short_last_load_pages:
            last = segs[-1]
            last.filesz = last.memsz - spec.short_last_load_pages * PAGE
        return segs


def build_vmcore(path: str, spec: Optional[ImageSpec] = None, **overrides) -> ImageInfo:
    """Build a synthetic vmcore at ``path`` and return what it contains.

    ``spec`` defaults to :class:`ImageSpec()`; keyword arguments override its fields.
    """
    spec = spec or ImageSpec()
    if overrides:
        spec = ImageSpec(**{**spec.__dict__, **overrides})
    b = _Builder(spec)
    b.layout()
    b.build_page_tables()
    b.build_mem_section()
    sym = b.build_kernel_data()
    crash_lines = []
    if spec.crash is not None:
        from .tasks import install_crash

        crash_lines = install_crash(b, spec.crash)
    b.place_workload()
    # any RAM still unassigned (tiny leftovers) becomes kernel memory
    for p in range(b.max_pfn):
        if b.cls[p] == UNASSIGNED:
            b.cls[p] = KERNEL_ALLOC
    b.make_corpus()
    b.fill_contents()
    b.write_struct_pages()
    info_text = b.vmcoreinfo(sym) + "".join(line + "\n" for line in crash_lines)
    segs = b.load_segments()

    pages = b.pages

    def read_page(pfn):
        data = pages.get(pfn)
        if data is None or data == ZERO_PAGE:
            return None
        return data

    written = elfcore.write_core(
        path, b.notes(info_text), segs, read_page,
        elfcore.CoreOptions(spec.phdrs_after_shdrs, spec.bad_ehsize, spec.misalign))

    in_dump = bytearray(b.max_pfn)
    for s in written:
        if s.vaddr and s.vaddr >= START_KERNEL_MAP:
            continue  # alias of direct-map memory
        a = s.paddr // PAGE
        n = s.file_bytes // PAGE
        in_dump[a:a + n] = b"\1" * n
    zero = bytearray(b.max_pfn)
    for p in range(b.max_pfn):
        d = pages.get(p)
        if d is None or d == ZERO_PAGE:
            zero[p] = 1
    sym["init_top_pgt"] = sym["swapper_pg_dir"]
    return ImageInfo(
        path=path, spec=spec, profile=b.prof, vmcoreinfo=info_text,
        page_offset_base=b.page_offset_base, vmemmap_base=b.vmemmap_base, vmalloc_start=b.vmalloc_start,
        kaslr_offset=b.kaslr, kernel_vaddr=b.kernel_vaddr, kernel_paddr=b.kernel_paddr, kernel_size=b.ksize,
        phys_base=b.phys_base, symbols=sym, ram_ranges=list(b.ram), crashkernel=spec.crashkernel,
        loads=written, max_pfn=b.max_pfn, sections=list(b.sections), page_class=b.cls, zero=zero,
        in_dump=in_dump, folios=list(b.folios), buddy_blocks=list(b.buddy), mappings=list(b.mappings),
        utsname=b.utsname, _pages=pages, crash=b.crash,
    )


def build_sample(path: str, profile: str = "6.1", mem_mib: int = 64, seed: int = 0, **kw) -> ImageInfo:
    """A demo vmcore: ``mem_mib`` MiB of RAM, kexec-style ELF, realistic page mix."""
    return build_vmcore(path, ImageSpec(profile=profile, mem_mib=mem_mib, seed=seed, **kw))
