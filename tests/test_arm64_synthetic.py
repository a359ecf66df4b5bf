"""Synthetic arm64 vmcores (dumpfilter.testing.synthetic.arm64) for what no
real capture here covers: 16/64 KiB granules, 2-5 levels, 52-bit VA with
LPA2 on and folded, 64 KiB LVA/LPA, PAC on and off. The builder's own record
(what it mapped, which class it placed at each pfn) is the oracle; the
pure-Python classifier reference is checked against it on the same struct
pages; libkdumpfile reads our kdump outputs of the large granules."""
import hashlib

import pytest

from dumpfilter.errors import DumpFilterError
from dumpfilter.filter.classify import CLASS_NAMES, Classifier
from dumpfilter.filter.layout import build_page_layout
from dumpfilter.memory import kernel_memory
from dumpfilter.memory.arm64 import Arm64Memory
from dumpfilter.memory.sparsemem import mem_map_ranges
from dumpfilter.readers import open_dump
from dumpfilter.testing import pyref
from dumpfilter.testing.synthetic import truth
from dumpfilter.testing.synthetic.arm64 import CONFIGS, FRAMES, Arm64Builder, Arm64Spec, build_arm64_vmcore
from dumpfilter.vmcoreinfo import VmcoreInfo

from clitools import run_cli
from oracles import libkdumpfile_digest

LEVELS = (0, 1, 2, 4, 8, 16, 31)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def image(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("arm64syn") / f"{request.param}.elf"
    img = build_arm64_vmcore(str(path), config=request.param, seed=7)
    src = open_dump(str(path))
    info = VmcoreInfo.parse(src.vmcoreinfo_raw)
    yield img, src, info
    src.close()


def test_model_and_geometry(image):
    img, src, info = image
    mem = kernel_memory(src, info)
    assert isinstance(mem, Arm64Memory)
    assert src.page_size == img.page_size == mem.layout.page_size
    assert src.ram_pfn_ranges()[0][0] == img.spec.phys_offset // img.page_size  # RAM not at 0


def test_translation_equals_builder_mappings(image):
    """Kernel image (pages), linear map (blocks where aligned), vmemmap:
    every recorded mapping translates as the builder laid it out."""
    img, src, info = image
    mem = kernel_memory(src, info)
    for va, pa, size, _ in img.mappings:
        for off in sorted({0, img.page_size - 8, size // 2 & ~7, size - 8}):
            assert mem.walk(va + off)[0] == pa + off, hex(va + off)
            assert mem.translate(va + off)[0] == pa + off


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_descriptor_output_addresses(config):
    """High physical addresses (bits 48-51) through the builder's encoder
    and the model's decoder: LPA2 (bits 9:8) and 64 KiB LPA (bits 15:12)."""
    b = Arm64Builder(Arm64Spec(config=config))
    text = (f"PAGESIZE={b.P}\nNUMBER(VA_BITS)={b.va_bits}\nNUMBER(TCR_EL1_T1SZ)="
            f"{64 - b.vabits_actual}\nNUMBER(kimage_voffset)=0x1\nNUMBER(PHYS_OFFSET)=0x40000000\n"
            f"NUMBER(MAX_PHYSMEM_BITS)={b.max_physmem_bits}\nSYMBOL(_stext)=ffffffffc0010000\n")
    from dumpfilter.memory.arm64 import Arm64Layout

    lay = Arm64Layout(VmcoreInfo.parse(text.encode()))
    assert lay.levels == b.levels and lay.lpa2 == b.lpa2
    top = 52 if (b.lpa2 or b.lpa64) else 48
    for pa in (0x40000000, (1 << top) - b.P, 0xA_5A5A_0000_0000 & ((1 << top) - 1)):
        pa &= ~(b.P - 1)
        assert lay.output_address(b.encode(pa) | 3 | (0 if b.lpa2 else 3 << 8)) == pa


def test_bitmap2_equals_truth_at_every_level(image):
    img, src, info = image
    for level in LEVELS:
        clf = Classifier(src, info, level)
        bits = bytearray()
        for cyc in clf.cycles():
            bits += cyc.bitmap2
        exp = truth.expected_bitmap2(img, level)
        assert bytes(bits[:len(exp)]) == exp, level
        assert not clf.result.warnings
        counts = truth.expected_counts(img, level)
        for cid, name in CLASS_NAMES.items():
            if name != "zero":
                assert clf.result.counts[cid] == counts[name], (level, name)


def test_pure_python_reference_on_the_struct_pages(image):
    """pyref.classify_pages over each section's struct pages (read through
    the arm64 model) excludes exactly what the truth table says at -d 31."""
    img, src, info = image
    mem = kernel_memory(src, info)
    layout = build_page_layout(info)
    exp = truth.expected_bitmap2(img, 31)
    for mm in mem_map_ranges(mem, info, src.max_pfn):
        n = mm.end_pfn - mm.start_pfn
        pages = mem.read(mm.vaddr, n * 64)
        exists = bytearray((n + 7) // 8)
        src.present_bitmap(mm.start_pfn, n, exists)
        bm = bytearray(exists)
        counts = [0] * 8
        pyref.classify_pages(pages, n, 0, mm.start_pfn, bytes(exists), 31, layout, bm, counts, (0, 0))
        for i in range(n):
            pfn = mm.start_pfn + i
            assert (bm[i >> 3] >> (i & 7) & 1) == (exp[pfn >> 3] >> (pfn & 7) & 1), pfn


@pytest.mark.oracle
@pytest.mark.parametrize("config", ["16k-47", "64k-52on48"])
def test_kdump_output_read_by_libkdumpfile(config, tmp_path):
    elf = tmp_path / "in.elf"
    img = build_arm64_vmcore(str(elf), config=config, seed=3)
    out = tmp_path / "out.kdump"
    run_cli("-c", "-d", "31", elf, out)
    exp = truth.expected_bitmap2(img, 31)
    kept = [p for p in range(img.max_pfn) if exp[p >> 3] >> (p & 7) & 1]
    got = libkdumpfile_digest(out)
    assert sorted(p for p, h in got.items() if h is not None) == kept
    with open_dump(str(elf)) as raw:
        buf = bytearray(img.page_size)
        for pfn in kept:
            raw.read_pages(pfn, 1, memoryview(buf))
            assert got[pfn] == hashlib.sha1(buf).hexdigest(), pfn


class _Ctx:
    """What report.arm64.backtrace reads: memory, VMCOREINFO, symbols."""

    def __init__(self, img, src, info):
        self.info, self.mem = info, kernel_memory(src, info)
        self.syms = sorted((a, n) for n, a in img.text_symbols.items())

    def read(self, addr, n):
        return self.mem.read(addr, n)

    def symbolize(self, addr):
        for a, n in reversed(self.syms):
            if a <= addr < a + 0x100:
                return f"{n}+{addr - a:#x}", None
        return f"{addr:#x}", None

    @property
    def btf(self):
        raise DumpFilterError("no BTF in a synthetic image")


@pytest.mark.parametrize("pac", [True, False])
@pytest.mark.parametrize("config", ["4k-48", "4k-52", "64k-48"])
def test_backtrace_strips_pac(config, pac, tmp_path):
    from dumpfilter.report import arm64
    from dumpfilter.report.backtrace import Backtrace

    path = tmp_path / "bt.elf"
    img = build_arm64_vmcore(str(path), config=config, pac=pac, seed=5)
    with open_dump(str(path)) as src:
        info = VmcoreInfo.parse(src.vmcoreinfo_raw)
        assert (info.number("KERNELPACMASK") is not None) == pac
        ctx = _Ctx(img, src, info)
        bt = Backtrace(1, 0, 1, "init", "?")
        arm64.backtrace(ctx, bt, img.cpu_regs[-1])
        assert [f.symbol for f in bt.frames] == list(FRAMES) and not bt.errors
        if pac:  # without the mask the signed return addresses name nothing
            ctx.info = VmcoreInfo.parse(src.vmcoreinfo_raw.replace(b"KERNELPACMASK", b"NOPACMASK"))
            bt = Backtrace(1, 0, 1, "init", "?")
            arm64.backtrace(ctx, bt, img.cpu_regs[-1])
            assert [f.symbol for f in bt.frames] != list(FRAMES)


@pytest.mark.parametrize("key,bad,message", [
    (b"NUMBER(VA_BITS)=47", b"NUMBER(VA_BITS)=44", "NUMBER(VA_BITS)=44: not an arm64 VA size"),
    (b"NUMBER(TCR_EL1_T1SZ)=0x11", b"NUMBER(TCR_EL1_T1SZ)=0x01",
     "NUMBER(TCR_EL1_T1SZ)=0x1: 63-bit VA with VA_BITS=47"),
    (b"PAGESIZE=16384", b"PAGESIZE=32768", "PAGESIZE=32768: arm64 uses 4096, 16384 or 65536"),
])
def test_bad_layout_one_line_and_exit_1(tmp_path, key, bad, message):
    path = tmp_path / "in.elf"
    build_arm64_vmcore(str(path), config="16k-47", seed=2)
    data = path.read_bytes()
    assert data.count(key) == 1
    path.write_bytes(data.replace(key, bad))
    r = run_cli("-c", "-d", "31", path, tmp_path / "out", check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"dumpfilter: VMCOREINFO {message}"]
    assert not (tmp_path / "out").exists()
