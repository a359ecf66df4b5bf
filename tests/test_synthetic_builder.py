"""Tests for dumpfilter.testing.synthetic: the builder must produce what it claims.

Independent oracles: drgn (page-table walks, 4/5-level, 2M/1G, KASLR) reading
the files without vmlinux, makedumpfile 1.7.2 (page classification from struct
pages and mem_section), and small decoders written here from the docs.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import struct
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from dumpfilter.testing.synthetic import CLASS_NAMES, ImageSpec, build_vmcore, expected_bitmap2, expected_counts
from dumpfilter.testing.synthetic import truth

MIB = 1 << 20
START_KERNEL_MAP = 0xFFFFFFFF80000000
# RAM with holes: low 640K, 1-40 MiB, a range across the section 0/1 boundary (pfn 32768), a
# range across pfn 65536 (section 1/2, 64k batch) with a crashkernel inside, section 3 absent,
# section 4 present.
MULTI_RANGES = [(0x1000, 0x9F000), (MIB, 40 * MIB), (120 * MIB, 136 * MIB), (248 * MIB, 272 * MIB),
                (520 * MIB, 528 * MIB)]
CRASHKERNEL = (264 * MIB, 8 * MIB)


def multi_spec(**kw) -> ImageSpec:
    return ImageSpec(**{"ram_ranges": MULTI_RANGES, "crashkernel": CRASHKERNEL, "seed": 3, **kw})


def parse_vmcoreinfo(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition("=")
        out.setdefault(k, v)
    return out


def vnum(vi: dict, key: str) -> int:
    return int(vi[key], 0)


def vsym(vi: dict, name: str) -> int:
    return int(vi[f"SYMBOL({name})"], 16)


# ------------------------------------------------------------------ minimal ELF reader (independent)

def read_elf(path):
    with open(path, "rb") as f:
        data = f.read(1 << 16)
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    assert (e_type, e_machine) == (4, 62)
    phoff = struct.unpack_from("<Q", data, 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    phdrs = [struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize) for i in range(phnum)]
    notes = []
    for ph in phdrs:
        if ph[0] == 4:
            with open(path, "rb") as f:
                f.seek(ph[2])
                buf = f.read(ph[5])
            pos = 0
            while pos < len(buf):
                nsz, dsz, typ = struct.unpack_from("<III", buf, pos)
                pos += 12
                name = buf[pos:pos + nsz].rstrip(b"\0").decode()
                pos += (nsz + 3) & ~3
                notes.append((name, typ, buf[pos:pos + dsz]))
                pos += (dsz + 3) & ~3
    loads = [ph for ph in phdrs if ph[0] == 1]
    return phoff, loads, notes


class PhysFile:
    """Physical reads through the PT_LOADs (p_paddr/p_offset), for the sme walker."""

    def __init__(self, path):
        _, self.loads, _ = read_elf(path)
        self.f = open(path, "rb")

    def read(self, addr, size):
        for _t, _fl, off, _va, pa, fsz, _msz, _al in self.loads:
            if pa <= addr and addr + size <= pa + fsz:
                self.f.seek(off + addr - pa)
                return self.f.read(size)
        raise KeyError(hex(addr))

    def u64(self, addr):
        return struct.unpack("<Q", self.read(addr, 8))[0]


def walk(phys: PhysFile, vi: dict, vaddr: int) -> int:
    """x86_64 page-table walk per makedumpfile-reference §5.3, masking NUMBER(sme_mask)."""
    sme = vnum(vi, "NUMBER(sme_mask)")
    mask = 0x000FFFFFFFFFF000 & ~sme
    table = vsym(vi, "init_top_pgt") - START_KERNEL_MAP + vnum(vi, "NUMBER(phys_base)")
    shifts = [48, 39, 30, 21, 12] if vnum(vi, "NUMBER(pgtable_l5_enabled)") else [39, 30, 21, 12]
    for shift in shifts:
        entry = phys.u64(table + ((vaddr >> shift) & 511) * 8)
        assert entry & 1, f"not present at shift {shift}"
        if shift == 12 or (entry & 0x80 and shift in (21, 30)):
            return (entry & mask & ~((1 << shift) - 1)) | (vaddr & ((1 << shift) - 1))
        table = entry & mask
    raise AssertionError


# ------------------------------------------------------------------ basic properties

def test_fast_sparse_and_deterministic(tmp_path):
    t0 = time.perf_counter()
    a = build_vmcore(str(tmp_path / "a"), ImageSpec(seed=7, mem_mib=64))
    elapsed = time.perf_counter() - t0
    b = build_vmcore(str(tmp_path / "b"), ImageSpec(seed=7, mem_mib=64))
    c = build_vmcore(str(tmp_path / "c"), ImageSpec(seed=8, mem_mib=64))
    assert elapsed < 2.0
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert (tmp_path / "a").read_bytes() != (tmp_path / "c").read_bytes()
    assert a.page_class == b.page_class and a.page_class != c.page_class
    st = os.stat(tmp_path / "a")
    assert st.st_blocks * 512 < st.st_size  # zero pages are holes
    # every class the brief asks for is present
    names = set(a.class_counts())
    assert {"kernel", "slab", "pgtable", "anon", "file", "file_private", "shmem", "swapcache", "free",
            "hugetlb", "hwpoison", "offline"} <= names


def test_elf_layout_and_notes(tmp_path):
    info = build_vmcore(str(tmp_path / "v"), multi_spec(nr_cpus=3))
    phoff, loads, notes = read_elf(info.path)
    assert phoff == 64
    # kexec style: kernel-image alias first, then RAM minus the crashkernel, direct-map vaddrs
    alias = loads[0]
    assert alias[3] == info.kernel_vaddr and alias[4] == info.kernel_paddr
    ram = [(pa, pa + msz) for _t, _f, _o, va, pa, _fs, msz, _a in loads[1:]]
    ck0, ck1 = CRASHKERNEL[0], CRASHKERNEL[0] + CRASHKERNEL[1]
    want = []
    for a, b in MULTI_RANGES:
        want += [(a, min(b, ck0)), (ck1, b)] if a < ck0 < b else [(a, b)]
    want = [(a, b) for a, b in want if a < b]
    assert ram == want
    assert all(va == info.page_offset_base + pa for _t, _f, _o, va, pa, *_ in loads[1:])
    # page contents at the file offsets
    for _t, _f, off, _va, pa, fsz, _m, _a in loads:
        for pfn in random.Random(1).sample(range(pa >> 12, (pa + fsz) >> 12), 20):
            with open(info.path, "rb") as f:
                f.seek(off + (pfn << 12) - pa)
                assert f.read(4096) == info.page_bytes(pfn)
    core = [n for n in notes if n[0] == "CORE"]
    assert [n[1] for n in core] == [1, 1, 1] and all(len(n[2]) == 336 for n in core)
    assert [struct.unpack_from("<i", n[2], 32)[0] for n in core] == [1, 0, 0]
    rip = struct.unpack_from("<Q", core[0][2], 112 + 16 * 8)[0]
    assert info.kernel_vaddr <= rip < info.kernel_vaddr + info.kernel_size
    assert notes[-1][0] == "VMCOREINFO" and notes[-1][1] == 0
    assert notes[-1][2].decode() == info.vmcoreinfo
    # in_dump agrees with the PT_LOADs
    assert sum(info.in_dump) == sum(b - a for a, b in want) // 4096


def _real_61_keys():
    root = Path(os.environ.get("DUMPFILTER_CACHE", Path.home() / ".cache" / "dumpfilter")) / "vmcores"
    path = root / "kdump-6.1-512M.vmcore"
    if not path.exists():
        pytest.skip("real 6.1 vmcore not in the cache")
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    start = head.index(b"OSRELEASE=")
    text = head[start:head.index(b"\0", start)].decode()
    return [line.split("=")[0] for line in text.splitlines()]


def test_vmcoreinfo_keys_match_real_61(tmp_path):
    info = build_vmcore(str(tmp_path / "v"), ImageSpec(profile="6.1", mem_mib=32))
    ours = [line.split("=")[0] for line in info.vmcoreinfo.splitlines()]
    real = _real_61_keys()
    not_modelled = re.compile(r"printk|prb|clear_seq|latched_seq|atomic_long_t|kallsyms|vmap_area")
    assert [k for k in real if not not_modelled.search(k)] == ours
    vi = parse_vmcoreinfo(info.vmcoreinfo)
    assert vnum(vi, "NUMBER(phys_base)") == info.kernel_paddr - (info.kernel_vaddr - START_KERNEL_MAP)
    assert info.kernel_vaddr == 0xFFFFFFFF81000000 + int(vi["KERNELOFFSET"], 16)


def test_profile_keys(tmp_path):
    vis = {p: parse_vmcoreinfo(build_vmcore(str(tmp_path / p), ImageSpec(profile=p, mem_mib=32)).vmcoreinfo)
           for p in ("6.1", "6.9", "6.10", "6.12", "7.1")}
    assert "SYMBOL(vmemmap)" not in vis["6.1"] and "OFFSET(page.compound_order)" in vis["6.1"]
    assert vis["6.9"]["NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)"] == str(~0x800)
    assert "NUMBER(PG_slab)" in vis["6.9"] and "NUMBER(PG_slab)" not in vis["6.10"]
    assert vis["6.10"]["NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)"] == str(~0x1000)
    for p in ("6.12", "7.1"):
        for name, t in (("BUDDY", 0xF0), ("OFFLINE", 0xF1), ("HUGETLB", 0xF4), ("SLAB", 0xF5),
                        ("UNACCEPTED", 0xF7)):
            assert vnum(vis[p], f"NUMBER(PAGE_{name}_MAPCOUNT_VALUE)") == (t << 24) - (1 << 32)
    assert "OFFSET(page.compound_info)" in vis["7.1"] and "OFFSET(page.compound_head)" not in vis["7.1"]
    assert vis["6.12"]["SYMBOL(vmemmap)"] and vis["6.12"]["NUMBER(VMALLOC_START)"].startswith("0x")


# ------------------------------------------------------------------ drgn: page tables, KASLR, vmemmap

drgn = pytest.importorskip("drgn")

DRGN_CONFIGS = {
    "4l-1G": dict(profile="6.1"),
    "4l-2M-vmemmap4K": dict(profile="6.1", direct_map_page="2M", vmemmap_page="4K"),
    "5l-2M": dict(profile="6.12", five_level=True, direct_map_page="2M"),
    "5l-1G-nokaslr": dict(profile="6.9", five_level=True, kaslr=False),
    "4l-nonextreme-16": dict(profile="6.10", sparsemem_extreme=False, mem_section_size=16),
    "7.1-2M": dict(profile="7.1", direct_map_page="2M"),
    "qemu-quirks": dict(profile="6.1", phdrs_after_shdrs=True, bad_ehsize=True, misalign=0x520,
                        short_last_load_pages=3),
}


def decode_sections(read, vi, max_pfn):
    """Present section -> decoded mem_map, per makedumpfile-reference §5.2 (via ``read``)."""
    size = vnum(vi, "SIZE(mem_section)")
    nr_sections = 1 << (vnum(vi, "NUMBER(MAX_PHYSMEM_BITS)") - vnum(vi, "NUMBER(SECTION_SIZE_BITS)"))
    per_root = 4096 // size
    extreme = vnum(vi, "LENGTH(mem_section)") == -(-nr_sections // per_root)
    sym = vsym(vi, "mem_section")
    out = {}
    for nr in range(-(-max_pfn // 32768)):
        if extreme:
            root = struct.unpack("<Q", read(sym + 8 * (nr // per_root), 8))[0]
            if not root:
                continue
            addr = root + (nr % per_root) * size
        else:
            addr = sym + nr * size
        word = struct.unpack("<Q", read(addr, 8))[0]
        if word & 1:
            out[nr] = (word & ~0x1F) + nr * 32768 * 64
    return extreme, out


@pytest.mark.oracle
@pytest.mark.parametrize("name", sorted(DRGN_CONFIGS))
def test_drgn_reads_what_builder_wrote(tmp_path, name):
    kw = dict(DRGN_CONFIGS[name], ram_ranges=MULTI_RANGES, crashkernel=CRASHKERNEL, seed=11,
              elf_vaddrs=False, kernel_alias_load=False)  # p_vaddr 0: drgn must walk page tables
    info = build_vmcore(str(tmp_path / "v"), ImageSpec(**kw))
    vi = parse_vmcoreinfo(info.vmcoreinfo)
    phoff, loads, _ = read_elf(info.path)
    if info.spec.phdrs_after_shdrs:
        with open(info.path, "rb") as f:
            ehdr = f.read(64)
        assert phoff == 64 + 2 * 64 and struct.unpack_from("<Q", ehdr, 40)[0] == 64
        assert struct.unpack_from("<H", ehdr, 52)[0] == 8  # e_ehsize as QEMU 7.2 wrote it
        assert loads[0][2] % 4096 == 0x520 and loads[-1][5] == loads[-1][6] - 3 * 4096
    prog = drgn.Program()
    prog.set_core_dump(info.path)
    read = prog.read

    # kernel image through its KASLR'd virtual address
    uts = read(vsym(vi, "init_uts_ns") + int(vi["OFFSET(uts_namespace.name)"]), 6 * 65)
    fields = [uts[i * 65:(i + 1) * 65].rstrip(b"\0").decode() for i in range(6)]
    assert fields[0] == "Linux" and fields[2] == vi["OSRELEASE"] and fields[4] == "x86_64"
    for off in range(0, info.kernel_size, 0x80000):
        assert read(info.kernel_vaddr + off, 4096) == info.page_bytes((info.kernel_paddr + off) >> 12)
    # the page-table root is where the VMCOREINFO formula says
    assert vsym(vi, "init_top_pgt") == vsym(vi, "swapper_pg_dir")

    # direct map (virtual) and physical reads agree with the builder, incl. range edges
    rng = random.Random(5)
    dump_pfns = [p for p in range(info.max_pfn) if info.in_dump[p]]
    sample = rng.sample(dump_pfns, 150)
    for a, b in MULTI_RANGES:
        sample += [a >> 12, (b >> 12) - 1]
    sample = [p for p in sample if info.in_dump[p]]
    for pfn in sample:
        want = info.page_bytes(pfn)
        assert read(info.page_offset_base + pfn * 4096, 4096) == want, hex(pfn)
        assert read(pfn * 4096, 4096, True) == want
    # crashkernel is RAM but not in the dump: drgn reads zeros there (zerofill) or faults
    ck_pfn = CRASHKERNEL[0] >> 12
    assert not info.in_dump[ck_pfn] and info.page_class[ck_pfn] == truth.KERNEL

    # mem_section decode (through drgn's virtual reads) gives vmemmap_base + pfn * 64
    extreme, sections = decode_sections(read, vi, info.max_pfn)
    assert extreme == info.spec.sparsemem_extreme
    assert sorted(sections) == info.sections
    for nr, mem_map in sections.items():
        assert mem_map == info.vmemmap_base + nr * 32768 * 64
    if "SYMBOL(vmemmap)" in vi:
        assert vsym(vi, "vmemmap") == info.vmemmap_base

    # struct pages through vmemmap virtual addresses
    for pfn in sample[:60]:
        assert read(info.struct_page_vaddr(pfn), 64) == info.struct_page(pfn)
    check_struct_page_semantics(info, vi, lambda pfn: read(info.struct_page_vaddr(pfn), 64))


def check_struct_page_semantics(info, vi, sp):
    """Decode struct pages with the VMCOREINFO rules and compare with the truth lists."""
    i32 = lambda b, o: struct.unpack_from("<i", b, o)[0]  # noqa: E731
    u64 = lambda b, o: struct.unpack_from("<Q", b, o)[0]  # noqa: E731
    o_map, o_priv = int(vi["OFFSET(page._mapcount)"]), int(vi["OFFSET(page.private)"])
    key = "OFFSET(page.compound_head)" if "OFFSET(page.compound_head)" in vi else "OFFSET(page.compound_info)"
    o_head = int(vi[key])
    buddy = vnum(vi, "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)")
    head_mask = vnum(vi, "NUMBER(PG_head_mask)")
    for pfn, order in info.buddy_blocks[::7]:
        b = sp(pfn)
        assert i32(b, o_map) == buddy and u64(b, o_priv) == order
        if order:
            assert i32(sp(pfn + 1), o_map) != buddy
    for head, order, kind in info.folios:
        h, t1 = sp(head), sp(head + 1)
        assert u64(h, 0) & head_mask and not u64(h, o_head) & 1
        assert u64(t1, o_head) == info.struct_page_vaddr(head) | 1
        assert u64(sp(head + (1 << order) - 1), o_head) == info.struct_page_vaddr(head) | 1
        if "OFFSET(page.compound_order)" in vi:
            assert t1[int(vi["OFFSET(page.compound_order)"])] == order
            is_huge = t1[int(vi["OFFSET(page.compound_dtor)"])] == vnum(vi, "NUMBER(HUGETLB_PAGE_DTOR)")
        else:
            assert u64(t1, 0) & 0xFF == order
            is_huge = i32(h, o_map) == vnum(vi, "NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)")
        assert is_huge == (info.page_class[head] == truth.HUGETLB)
    pg_hw = 1 << vnum(vi, "NUMBER(PG_hwpoison)")
    offline = vnum(vi, "NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)")
    for pfn in range(info.max_pfn):
        c = info.page_class[pfn]
        if c == truth.HWPOISON:
            assert u64(sp(pfn), 0) & pg_hw
        elif c == truth.OFFLINE:
            assert i32(sp(pfn), o_map) == offline


@pytest.mark.oracle
def test_sme_mask_in_every_entry(tmp_path):
    """drgn (0.3.0 and mainline) does not mask NUMBER(sme_mask); check with our own walker."""
    base = dict(ram_ranges=MULTI_RANGES, seed=4, elf_vaddrs=False, kernel_alias_load=False,
                direct_map_page="2M", vmemmap_page="4K")
    sme = build_vmcore(str(tmp_path / "sme"), ImageSpec(sme_mask=1 << 47, **base))
    plain = build_vmcore(str(tmp_path / "plain"), ImageSpec(**base))
    vi = parse_vmcoreinfo(sme.vmcoreinfo)
    assert vnum(vi, "NUMBER(sme_mask)") == 1 << 47
    phys = PhysFile(sme.path)
    rng = random.Random(2)
    pfns = rng.sample([p for p in range(sme.max_pfn) if sme.in_dump[p]], 100)
    for pfn in pfns:
        assert walk(phys, vi, sme.page_offset_base + pfn * 4096 + 123) == pfn * 4096 + 123
        sp = walk(phys, vi, sme.struct_page_vaddr(pfn))
        assert phys.read(sp, 64) == sme.struct_page(pfn)
    assert walk(phys, vi, vsym(vi, "init_uts_ns")) == sme.kernel_paddr + 0x201000
    # the C-bit really is in the entries: a walker that does not mask it leaves the dump
    prog = drgn.Program()
    prog.set_core_dump(sme.path)
    with pytest.raises(drgn.FaultError):
        prog.read(sme.page_offset_base + pfns[0] * 4096, 8)
    prog2 = drgn.Program()
    prog2.set_core_dump(plain.path)
    assert prog2.read(plain.page_offset_base + pfns[0] * 4096, 4096) == plain.page_bytes(pfns[0])


# ------------------------------------------------------------------ makedumpfile 1.7.2

MDF = shutil.which("makedumpfile")
COUNT_LABELS = (("zero", "Pages filled with zero"), ("cache", "Non-private cache pages"),
                ("cache_private", "Private cache pages"), ("user", "User process data pages"),
                ("free", "Free pages"), ("hwpoison", "Hwpoison pages"), ("offline", "Offline pages"))


def run_makedumpfile(vmcore, level, tmp_path):
    out = tmp_path / f"out-d{level}"
    r = subprocess.run([MDF, "-c", "-d", str(level), "--message-level", "31", vmcore, str(out)],
                       capture_output=True, text=True, timeout=120)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text[-3000:]
    with open(out, "rb") as f:
        hdr = f.read(4096)
        block_size, sub_hdr_size, bitmap_blocks, max_mapnr = struct.unpack_from("<iiIi", hdr, 428)
        f.seek((1 + sub_hdr_size) * block_size + bitmap_blocks * block_size // 2)
        bitmap2 = f.read(bitmap_blocks * block_size // 2)
    counts = {}
    for key, label in COUNT_LABELS:
        m = re.search(re.escape(label) + r"\s*:\s*0x([0-9a-f]+)", text)
        counts[key] = int(m.group(1), 16)
    return bitmap2, counts, max_mapnr


def diff_pfns(info, got, want):
    return [p for p in range(info.max_pfn) if (got[p >> 3] >> (p & 7) ^ want[p >> 3] >> (p & 7)) & 1]


def assert_mdf_agrees(info, level, tmp_path, want_bitmap=None, want_counts=None):
    bitmap2, counts, max_mapnr = run_makedumpfile(info.path, level, tmp_path)
    assert max_mapnr == info.max_pfn
    want_bitmap = want_bitmap or expected_bitmap2(info, level)
    diffs = diff_pfns(info, bitmap2, want_bitmap)
    assert not diffs, Counter(CLASS_NAMES[info.page_class[p]] for p in diffs)
    assert not any(bitmap2[len(want_bitmap):])
    assert counts == (want_counts or expected_counts(info, level))


pytestmark_mdf = pytest.mark.skipif(MDF is None, reason="makedumpfile not installed")


@pytest.fixture(scope="module")
def multi61(tmp_path_factory):
    return build_vmcore(str(tmp_path_factory.mktemp("m61") / "v"), multi_spec(profile="6.1"))


@pytestmark_mdf
@pytest.mark.oracle
@pytest.mark.parametrize("level", [1, 2, 4, 8, 16, 31])
def test_makedumpfile_61_all_levels(multi61, level, tmp_path):
    assert_mdf_agrees(multi61, level, tmp_path)


def test_multi_image_has_edge_cases(multi61):
    info = multi61
    # buddy block straddling pfn 65536, hugetlb folio ending at 65536-512, folio ending at pfn 32767
    assert (65532, 3) in info.buddy_blocks
    assert (64512, 9, "hugetlb") in info.folios
    assert (32764, 2, "file_folio") in info.folios
    assert 3 not in info.sections and 4 in info.sections
    assert not info.in_dump[CRASHKERNEL[0] >> 12] and info.in_dump[(CRASHKERNEL[0] >> 12) - 1]
    level31 = expected_counts(info, 31)
    assert all(level31[k] for k in ("zero", "cache", "cache_private", "user", "free", "hwpoison", "offline"))
    # ELF-output semantics drop zero pages too
    kd, elf = expected_bitmap2(info, 31), expected_bitmap2(info, 31, kdump_format=False)
    ones = lambda b: bin(int.from_bytes(b, "little")).count("1")  # noqa: E731
    assert ones(kd) - ones(elf) == level31["zero"]


MDF_VARIANTS = {
    "5level-1G-sme": dict(five_level=True, sme_mask=1 << 47),
    "vmemmap4K-direct2M": dict(direct_map_page="2M", vmemmap_page="4K"),
    "nonextreme-16": dict(sparsemem_extreme=False, mem_section_size=16),
    "qemu-vaddr0-misaligned-short": dict(elf_vaddrs=False, kernel_alias_load=False, misalign=0x520,
                                         short_last_load_pages=5, crashkernel=None),
}


@pytestmark_mdf
@pytest.mark.oracle
@pytest.mark.parametrize("name", sorted(MDF_VARIANTS))
def test_makedumpfile_61_variants(name, tmp_path):
    info = build_vmcore(str(tmp_path / "v"), multi_spec(profile="6.1", seed=9, **MDF_VARIANTS[name]))
    if info.spec.short_last_load_pages:
        assert sum(info.in_dump[info.max_pfn - 5:]) == 0
    assert_mdf_agrees(info, 31, tmp_path)


def mdf172_model(info, level):
    """What makedumpfile 1.7.2 must do on a 6.9+ profile given what it does not know.

    1.7.2 reads the compound order only from OFFSET(page.compound_order) (absent since 6.6),
    so every large folio counts as order 0: its head is judged alone, tails are always kept.
    It does not know PAGE_HUGETLB_MAPCOUNT_VALUE (hugetlb heads are only excluded when their
    mapping is anonymous) nor PAGE_UNACCEPTED_MAPCOUNT_VALUE (unaccepted blocks are kept).
    """
    cls = bytearray(info.page_class)
    for head, order, kind in info.folios:
        for p in range(head + 1, head + (1 << order)):
            cls[p] = truth.KERNEL  # tail: skipped, kept
        if kind == "hugetlb":
            cls[head] = truth.KERNEL
    for p in range(len(cls)):
        if cls[p] == truth.UNACCEPTED:
            cls[p] = truth.KERNEL

    class View:
        page_class, zero, in_dump, max_pfn = cls, info.zero, info.in_dump, info.max_pfn
    return expected_bitmap2(View, level), expected_counts(View, level)


@pytestmark_mdf
@pytest.mark.oracle
@pytest.mark.parametrize("profile", ["6.9", "6.10", "6.12", "7.1"])
def test_makedumpfile_172_on_newer_profiles(profile, tmp_path):
    info = build_vmcore(str(tmp_path / "v"), multi_spec(profile=profile))
    bitmap, counts = mdf172_model(info, 31)
    assert bitmap != expected_bitmap2(info, 31)  # the model differs from the full rules...
    assert_mdf_agrees(info, 31, tmp_path, bitmap, counts)  # ...and 1.7.2 matches the model
