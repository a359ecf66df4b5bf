"""Synthetic arm64 vmcores: the translation regimes no real capture here
covers (16 and 64 KiB granules, 52-bit VA with LPA2 on and folded, 64 KiB
LVA, 2 and 3 levels), pointer authentication on or off.

The builder reuses the x86_64 builder's workload (page classes, buddy
blocks, slab, struct page fields: :mod:`.kernel`) and changes what is
arm64: RAM at ``PHYS_OFFSET`` (not 0) in two ranges one absent SPARSEMEM
section apart, a crashkernel-like hole left out of the dump, the kernel
image at ``KIMAGE_VADDR`` + KASLR, ``swapper_pg_dir`` tables in the ARMv8
descriptor format of the granule (table/block/page descriptors, AF and
shareability bits set, LPA2 / 64 KiB-LPA output-address encodings), the
flipped linear map, vmemmap at ``VMEMMAP_START - (memstart >> PAGE_SHIFT)``,
``NT_PRSTATUS`` in ``user_pt_regs`` order and a frame-record chain whose
return addresses are PAC-signed when ``pac`` is on. Layout facts are the
kernel's (arch/arm64/include/asm/memory.h, pgtable-hwdef.h as of 6.1/6.9);
the truth table is the builder's own record of what it placed.
"""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from . import elfcore, kernel
from .kernel import MAX_ORDER, UNASSIGNED
from .profiles import PAGE_STRUCT_SIZE
from .truth import KERNEL, NOT_RAM, ImageInfo

MIB = 1 << 20
U64 = (1 << 64) - 1
EM_AARCH64 = 183
AF, SH_INNER, NG = 1 << 10, 3 << 8, 1 << 11
PXN_UXN = 3 << 53

#: name -> (PAGESIZE, NUMBER(VA_BITS), vabits_actual, MAX_PHYSMEM_BITS)
CONFIGS: Dict[str, Tuple[int, int, int, int]] = {
    "4k-39": (4096, 39, 39, 48),
    "4k-48": (4096, 48, 48, 48),
    "4k-52": (4096, 52, 52, 52),        # LPA2 in use: 5 levels
    "4k-52on48": (4096, 52, 48, 52),    # LPA2 kernel, CPU without LPA2 (Debian 6.12)
    "16k-47": (16384, 47, 47, 48),
    "16k-48": (16384, 48, 48, 48),      # 4 levels, 2-entry root
    "16k-52": (16384, 52, 52, 52),
    "64k-42": (65536, 42, 42, 48),      # 2 levels
    "64k-48": (65536, 48, 48, 48),
    "64k-52": (65536, 52, 52, 52),      # LVA + LPA
    "64k-52on48": (65536, 52, 48, 52),
}
#: Fake kernel text the frame-record chain returns into, innermost first.
FRAMES = ("__crash_kexec", "panic", "sysrq_handle_crash", "__handle_sysrq",
          "write_sysrq_trigger", "vfs_write", "ksys_write")


def _neg(bits: int) -> int:
    return (-(1 << bits)) & U64


@dataclass
class Arm64Spec:
    config: str = "4k-48"
    pac: bool = True
    seed: int = 0
    profile: str = "6.1"
    ram_mib: Tuple[int, int] = (40, 16)  # the two RAM ranges
    hole_mib: int = 4  # RAM inside range 1 left out of the dump (a crashkernel)
    phys_offset: int = 0x40000000
    nr_cpus: int = 2
    crashtime: int = 1796187709
    # what the x86_64 builder's helpers read
    mem_section_size: int = 32
    sme_mask: int = 0
    straddle_buddy: bool = False


@dataclass
class Arm64Image(ImageInfo):
    page_size: int = 4096
    va_bits: int = 48
    lm_base: int = 0  # linear-map address of PHYS_OFFSET's memory
    pac_mask: int = 0
    frames: Tuple[str, ...] = FRAMES
    text_symbols: Dict[str, int] = field(default_factory=dict)
    cpu_regs: List[Dict[str, int]] = field(default_factory=list)

    def lm(self, paddr: int) -> int:
        return (self.lm_base + paddr - self.spec.phys_offset) & U64


class Arm64Builder(kernel._Builder):
    def __init__(self, spec: Arm64Spec):
        ps, va, actual, physmem = CONFIGS[spec.config]
        self.P, self.S = ps, ps.bit_length() - 1
        self.va_bits, self.vabits_actual, self.max_physmem_bits = va, actual, physmem
        self.section_bits = 29 if ps == 65536 else 27
        sec = 1 << self.section_bits
        po = spec.phys_offset
        ram = [(po, po + spec.ram_mib[0] * MIB), (po + 2 * sec, po + 2 * sec + spec.ram_mib[1] * MIB)]
        x86 = kernel.ImageSpec(ram_ranges=[(a * 4096 // ps, b * 4096 // ps) for a, b in ram],
                               seed=spec.seed, profile=spec.profile, straddle_buddy=False)
        super().__init__(x86)  # pfn arrays over [0, max_pfn) (ranges scaled to 4 KiB "pfns")
        self.spec = spec
        self.ram = ram
        self.sections = sorted({(a >> self.section_bits) for a, b in ram})
        self.l5 = False
        # the walk (memory/arm64.py documents the rules this mirrors)
        self.walk_bits = actual if ps != 65536 and va == 52 else va
        self.levels = (self.walk_bits - 4) // (self.S - 3)
        self.shifts = [self.S + (self.levels - 1 - i) * (self.S - 3) for i in range(self.levels)]
        self.lpa2 = ps != 65536 and self.walk_bits == 52
        self.lpa64 = ps == 65536 and physmem == 52

    # ------------------------------------------------------------ memory (P-sized pages)
    def wpage(self, pfn: int) -> bytearray:
        page = self.pages.get(pfn)
        if not isinstance(page, bytearray):
            page = bytearray(page) if page is not None else bytearray(self.P)
            self.pages[pfn] = page
        return page

    def write_phys(self, addr: int, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            off = (addr + pos) % self.P
            n = min(len(data) - pos, self.P - off)
            self.wpage((addr + pos) // self.P)[off:off + n] = data[pos:pos + n]
            pos += n

    def alloc(self, nbytes: int, align: int = 0) -> int:
        n = -(-nbytes // self.P)
        return self.memblock_alloc(n, max(1, align // self.P)) * self.P

    # ------------------------------------------------------------ layout
    def layout(self) -> None:
        rng, spec, P = self.rng, self.spec, self.P
        va, actual = self.va_bits, self.vabits_actual
        va_min = va if va < 52 else (47 if P == 16384 else 48)
        self.lm_base = _neg(actual)  # where PHYS_OFFSET's memory appears
        self.page_offset = _neg(va)
        # 5.11+: PHYS_OFFSET absorbs the 52 -> 48-bit fallback
        self.memstart = spec.phys_offset - ((self.lm_base - self.page_offset) & U64)
        self.vmemmap_start = _neg(va - (self.S - 6))
        self.vmemmap_base = (self.vmemmap_start - (self.memstart >> self.S) * PAGE_STRUCT_SIZE) & U64
        self.vmalloc_start = (_neg(va_min - 1) + 128 * MIB) & U64
        self.kaslr = rng.randrange(1, 256) * 2 * MIB
        self.kernel_vaddr = (self.vmalloc_start + self.kaslr) & U64  # KIMAGE_VADDR = MODULES_END
        self.ksize = 16 * P
        # the hole, then the image (above it), like the real capture
        h0 = spec.phys_offset + 8 * MIB
        self.hole = (h0, h0 + spec.hole_mib * MIB)
        a, n = h0 // P, spec.hole_mib * MIB // P
        self.cls[a:a + n] = bytes([KERNEL]) * n
        self.kernel_paddr = spec.phys_offset + 2 * MIB
        kp = self.kernel_paddr // P
        self.cls[kp:kp + 16] = bytes([KERNEL]) * 16
        self.structural.update(range(kp, kp + 16))
        self.kimage_voffset = (self.kernel_vaddr - self.kernel_paddr) & U64
        self.mappings = []

    def lm(self, paddr: int) -> int:
        return (self.lm_base + paddr - self.spec.phys_offset) & U64

    # ------------------------------------------------------------ page tables
    def encode(self, pa: int) -> int:
        """Output-address bits of a descriptor for ``pa``."""
        low = pa & ~((1 << self.S) - 1)
        if self.lpa2:
            return (low & ((1 << 50) - 1)) | ((pa >> 50) & 3) << 8
        if self.lpa64:
            return (low & ((1 << 48) - 1)) | ((pa >> 48) & 0xF) << 12
        return low & ((1 << 48) - 1)

    def _attrs(self) -> int:
        return AF | NG | (0 if self.lpa2 else SH_INNER)

    def map_page(self, va: int, pa: int, size: int, nx: bool = True) -> None:
        table = self.pgd_pa
        for level, shift in enumerate(self.shifts):
            width = self.walk_bits - shift if level == 0 else self.S - 3
            slot = table + ((va >> shift) & ((1 << width) - 1)) * 8
            last = level == self.levels - 1
            if size == 1 << shift:
                kind = 3 if last else 1  # page or block descriptor
                self.write_u64(slot, self.encode(pa) | kind | self._attrs() | (PXN_UXN if nx else 0))
                return
            if last:
                raise ValueError(f"no leaf of {size:#x} bytes")
            entry = struct.unpack_from("<Q", self.wpage(slot // self.P), slot % self.P)[0]
            if not entry & 1:
                new = self.alloc(self.P)
                self.wpage(new // self.P)
                entry = self.encode(new) | 3
                self.write_u64(slot, entry)
            table = self._decode(entry)

    def _decode(self, desc: int) -> int:
        if self.lpa2:
            return (desc & ((1 << 50) - 1) & ~((1 << self.S) - 1)) | ((desc >> 8) & 3) << 50
        addr = desc & ((1 << 48) - 1) & ~((1 << self.S) - 1)
        return addr | (((desc >> 12) & 0xF) << 48 if self.lpa64 else 0)

    def map_range(self, va: int, pa: int, size: int, psize: int, nx: bool = True) -> None:
        block = 1 << self.shifts[-2] if self.levels >= 2 else None
        off = 0
        while off < size:
            if block and (va + off) % block == 0 and (pa + off) % block == 0 and size - off >= block:
                self.map_page(va + off, pa + off, block, nx)
                off += block
            else:
                self.map_page(va + off, pa + off, self.P, nx)
                off += self.P
        self.mappings.append((va, pa, size, psize))

    def build_page_tables(self) -> None:
        self.pgd_pa = self.kernel_paddr  # swapper_pg_dir: first page of the image
        self.wpage(self.pgd_pa // self.P)
        self.map_range(self.kernel_vaddr, self.kernel_paddr, self.ksize, self.P, nx=False)
        for a, b in self.ram:
            self.map_range(self.lm(a), a, b - a, self.P)
        per_section = (1 << (self.section_bits - self.S)) * PAGE_STRUCT_SIZE
        self.vmemmap_pfns = {}
        for s in self.sections:
            first = (s << self.section_bits) >> self.S
            va = (self.vmemmap_base + first * PAGE_STRUCT_SIZE) & U64
            pa = self.alloc(per_section, align=min(per_section, 2 * MIB))
            self.map_range(va, pa, -(-per_section // self.P) * self.P, self.P)
            self.vmemmap_pfns[s] = pa

    # ------------------------------------------------------------ sparsemem, kernel data
    def build_mem_section(self) -> None:
        size, P = self.spec.mem_section_size, self.P
        per_root = P // size
        nr = 1 << (self.max_physmem_bits - self.section_bits)
        nroots = -(-nr // per_root)
        root = self.alloc(nroots * 8)
        self.mem_section_sym = self.lm(root)
        self.mem_section_len = nroots
        self.nr_mem_sections = nr
        tables: Dict[int, int] = {}
        for s in self.sections:
            r = s // per_root
            if r not in tables:
                tables[r] = self.alloc(P)
                self.write_u64(root + 8 * r, self.lm(tables[r]))
            self.write_u64(tables[r] + (s % per_root) * size, self.vmemmap_base | kernel.SECTION_FLAGS)

    def build_kernel_data(self) -> Dict[str, int]:
        P, rng = self.P, self.rng
        uts = ("Linux", "(none)", f"{self.prof.osrelease}-arm64-synthetic",
               f"#1 SMP synthetic {self.spec.config} seed {self.spec.seed}", "aarch64", "(none)")
        self.utsname = uts
        img = self.kernel_paddr
        self.write_phys(img + P, b"".join(f.encode().ljust(65, b"\0") for f in uts))
        self.write_u64(img + P + 512, 1)  # node_online_map
        # text: one 0x100-byte function per frame name, from _stext = image page 2
        self.stext = self.kernel_vaddr + 2 * P
        self.text_symbols = {name: self.stext + 0x100 * i for i, name in enumerate(FRAMES)}
        self.write_phys(img + 2 * P, bytes(rng.randrange(256) for _ in range(0x100 * len(FRAMES))))
        self.obj_va = self.lm(self.alloc(P))
        return {"init_uts_ns": self.kernel_vaddr + P, "node_online_map": self.kernel_vaddr + P + 512,
                "swapper_pg_dir": self.kernel_vaddr, "init_top_pgt": self.kernel_vaddr,
                "_stext": self.stext, "mem_section": self.mem_section_sym, "node_data": 0}

    def build_stack(self) -> None:
        """The panic CPU's frame-record chain (PAC-signed return addresses
        when ``pac``), on a stack page of the linear map."""
        rng = self.rng
        stack = self.lm(self.alloc(self.P))
        self.pac_mask = (_neg(self.vabits_actual)) if self.spec.pac else 0
        fps = [stack + 0x80 + 0x40 * i for i in range(len(FRAMES))]
        for i, fp in enumerate(fps):
            if i + 1 < len(FRAMES):
                lr = self.text_symbols[FRAMES[i + 1]] + 0x24 + 4 * i
                if self.pac_mask:
                    pac = rng.getrandbits(64) & self.pac_mask & ~(1 << 55)
                    lr = (lr & ~self.pac_mask) | pac | (1 << 55)
                rec = (fps[i + 1], lr)
            else:
                rec = (0, 0)
            self.write_phys(self._lm_pa(fp), struct.pack("<QQ", *rec))
        regs = [dict.fromkeys(elf_names(), 0) for _ in range(self.spec.nr_cpus)]
        regs[-1].update(pc=self.text_symbols[FRAMES[0]] + 0x10, x29=fps[0], sp=fps[0] - 0x60,
                        x30=self.text_symbols[FRAMES[0]] + 0x8, pstate=0x3C5)
        if len(regs) > 1:  # an idle CPU stopped by the crash IPI
            regs[0].update(pc=self.text_symbols["vfs_write"] + 0x40, pstate=0x60000005)
        self.cpu_regs_list = regs

    def _lm_pa(self, va: int) -> int:
        return (va - self.lm_base + self.spec.phys_offset) & U64

    # ------------------------------------------------------------ struct pages, contents
    def write_struct_pages(self) -> None:
        from .profiles import pack_page, pack_tail

        prof, types = self.prof, self.prof.types
        head_of = {}
        for head, order, kind in self.folios:
            for i in range(1, 1 << order):
                head_of[head + i] = (head, i, order, kind)
        buddy_heads = {p: o for p, o in self.buddy}
        folio_heads = {h: (o, k) for h, o, k in self.folios}
        F = lambda *names: sum(1 << prof.pg[n] for n in names)  # noqa: E731
        rng = random.Random(self.spec.seed ^ 0x5EED)
        n = 1 << (self.section_bits - self.S)
        for s in self.sections:
            first = (s << self.section_bits) >> self.S
            buf = bytearray(-(-n * PAGE_STRUCT_SIZE // self.P) * self.P)
            for i in range(n):
                pfn = first + i
                cls = self.cls[pfn] if pfn < self.max_pfn else NOT_RAM
                if pfn in head_of:
                    head, nth, order, kind = head_of[pfn]
                    pack_tail(buf, i * 64, prof, 0, self.vmemmap_base + head * 64, nth, order, kind)
                    continue
                fields = self._page_fields(pfn, cls, 0, F, types, self.obj_va, rng, buddy_heads, folio_heads)
                pack_page(buf, i * 64, **fields)
            self.write_phys(self.vmemmap_pfns[s], bytes(buf))

    def fill_contents(self) -> None:
        rng, P = self.rng, self.P
        for pfn in range(self.max_pfn):
            cls = self.cls[pfn]
            if cls == NOT_RAM or pfn in self.structural or cls == KERNEL:
                continue
            zero_p = kernel._Builder._CONTENT.get(cls, (0.5, ()))[0]
            if rng.random() >= zero_p:
                self.pages[pfn] = rng.randbytes(P)

    # ------------------------------------------------------------ notes
    def vmcoreinfo(self, sym: Dict[str, int]) -> str:
        drop = ("NUMBER(phys_base)", "SYMBOL(init_top_pgt)", "NUMBER(pgtable_l5_enabled)",
                "NUMBER(KERNEL_IMAGE_SIZE)", "NUMBER(sme_mask)", "SYMBOL(vmemmap)",
                "NUMBER(VMALLOC_START)", "SYMBOL(node_data)", "LENGTH(node_data)", "KERNELOFFSET",
                "CRASHTIME", "PAGESIZE", "NUMBER(SECTION_SIZE_BITS)", "OSRELEASE")
        self.phys_base = 0
        lines = [ln for ln in super().vmcoreinfo(sym).splitlines() if ln.split("=")[0] not in drop]
        lines.insert(0, f"OSRELEASE={self.utsname[2]}")
        lines.insert(2, f"PAGESIZE={self.P}")
        lines += [f"NUMBER(SECTION_SIZE_BITS)={self.section_bits}", f"NUMBER(VA_BITS)={self.va_bits}",
                  f"NUMBER(VMEMMAP_START)=0x{self.vmemmap_start:x}",
                  f"NUMBER(kimage_voffset)=0x{self.kimage_voffset:x}",
                  f"NUMBER(PHYS_OFFSET)=0x{self.memstart & U64:x}",
                  f"NUMBER(TCR_EL1_T1SZ)=0x{64 - self.vabits_actual:x}", f"KERNELOFFSET={self.kaslr:x}"]
        if self.pac_mask:
            lines.append(f"NUMBER(KERNELPACMASK)=0x{self.pac_mask:x}")
        lines.append(f"CRASHTIME={self.spec.crashtime}")
        return "\n".join(lines) + "\n"

    def notes(self, vmcoreinfo: str) -> bytes:
        out = b""
        for cpu, regs in enumerate(self.cpu_regs_list):
            pid = 1 if cpu == len(self.cpu_regs_list) - 1 else 0
            out += elfcore.make_note("CORE", elfcore.NT_PRSTATUS, make_prstatus(pid, regs))
        return out + elfcore.make_vmcoreinfo_note(vmcoreinfo)

    def load_segments(self) -> List[elfcore.LoadSegment]:
        h0, h1 = self.hole
        (a, b), (c, d) = self.ram
        segs = [elfcore.LoadSegment(self.kernel_paddr, self.ksize, self.kernel_vaddr)]
        for lo, hi in ((a, h0), (h1, b), (c, d)):
            segs.append(elfcore.LoadSegment(lo, hi - lo, self.lm(lo)))
        return segs


def elf_names() -> Tuple[str, ...]:
    return tuple(f"x{i}" for i in range(31)) + ("sp", "pc", "pstate")


def make_prstatus(pid: int, regs: Dict[str, int]) -> bytes:
    """A 392-byte arm64 ``struct elf_prstatus``: pr_pid @32, pr_reg
    (user_pt_regs: x0-x30, sp, pc, pstate) @112, pr_fpvalid @384."""
    buf = bytearray(392)
    struct.pack_into("<i", buf, 32, pid)
    for i, name in enumerate(elf_names()):
        struct.pack_into("<Q", buf, 112 + 8 * i, regs.get(name, 0) & U64)
    return bytes(buf)


def build_arm64_vmcore(path: str, spec: Optional[Arm64Spec] = None, **overrides) -> Arm64Image:
    """Build a synthetic arm64 ELF vmcore at ``path``; return its truth."""
    spec = spec or Arm64Spec()
    if overrides:
        spec = Arm64Spec(**{**spec.__dict__, **overrides})
    b = Arm64Builder(spec)
    b.layout()
    b.build_page_tables()
    b.build_mem_section()
    sym = b.build_kernel_data()
    b.build_stack()
    b.place_workload()
    for p in range(b.max_pfn):
        if b.cls[p] == UNASSIGNED:
            b.cls[p] = kernel.KERNEL_ALLOC
    b.fill_contents()
    b.write_struct_pages()
    text = b.vmcoreinfo(sym)
    P, sub = b.P, b.P // 4096

    def read_4k(n4k: int):
        page = b.pages.get(n4k // sub)
        if page is None:
            return None
        chunk = bytes(page[(n4k % sub) * 4096:(n4k % sub + 1) * 4096])
        return None if chunk == bytes(4096) else chunk

    segs = b.load_segments()
    written = elfcore.write_core(path, b.notes(text), segs, read_4k,
                                 elfcore.CoreOptions(e_machine=EM_AARCH64))
    in_dump = bytearray(b.max_pfn)
    for s in written[1:]:
        in_dump[s.paddr // P:(s.paddr + s.memsz) // P] = b"\1" * (s.memsz // P)
    zero = bytearray(b.max_pfn)
    for p in range(b.max_pfn):
        d = b.pages.get(p)
        zero[p] = d is None or not any(d)
    return Arm64Image(
        path=path, spec=spec, profile=b.prof, vmcoreinfo=text, page_offset_base=b.page_offset,
        vmemmap_base=b.vmemmap_base, vmalloc_start=b.vmalloc_start, kaslr_offset=b.kaslr,
        kernel_vaddr=b.kernel_vaddr, kernel_paddr=b.kernel_paddr, kernel_size=b.ksize, phys_base=0,
        symbols=sym, ram_ranges=list(b.ram), crashkernel=b.hole, loads=written, max_pfn=b.max_pfn,
        sections=list(b.sections), page_class=b.cls, zero=zero, in_dump=in_dump,
        folios=list(b.folios), buddy_blocks=list(b.buddy), mappings=list(b.mappings),
        utsname=b.utsname, _pages=b.pages, page_size=P, va_bits=b.va_bits, lm_base=b.lm_base,
        pac_mask=b.pac_mask, text_symbols=dict(b.text_symbols), cpu_regs=b.cpu_regs_list)
