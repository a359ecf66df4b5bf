"""The arm64 memory model on the real arm64 capture: the kernel's own
PT_LOAD headers (virtual -> physical of the kernel image and the linear
map, written by the crashed kernel) and its page tables are the oracles."""
import pytest

from dumpfilter.errors import VmcoreInfoError
from dumpfilter.memory import kernel_memory, phys_base
from dumpfilter.memory.arm64 import Arm64Layout, Arm64Memory
from dumpfilter.memory.sparsemem import mem_map_ranges
from dumpfilter.readers import open_dump
from dumpfilter.vmcoreinfo import VmcoreInfo

pytestmark = pytest.mark.realdump


@pytest.fixture(scope="module")
def arm64(arm64_vmcore):
    src = open_dump(str(arm64_vmcore))
    info = VmcoreInfo.parse(src.vmcoreinfo_raw)
    yield src, info, kernel_memory(src, info)
    src.close()


def test_model_chosen_from_the_dump(arm64):
    src, info, mem = arm64
    assert src.e_machine == 183 and isinstance(mem, Arm64Memory)
    assert phys_base(info, src) == info.number("PHYS_OFFSET")


def test_pt_loads_translate(arm64):
    """Every PT_LOAD's first, middle and last page translate to its paddr,
    both by the linear-map/kimage arithmetic and by the page-table walk."""
    src, info, mem = arm64
    lay = mem.layout
    checked = 0
    for seg in src.load_segments():
        for off in (0x10000, seg.memsz // 2 & ~0xFFF, seg.memsz - 0x1000):
            va, pa = seg.vaddr + off, seg.paddr + off
            assert mem.walk(va)[0] == pa, hex(va)
            if lay.is_linear(va):
                assert mem.translate(va)[0] == pa
            else:
                assert mem.kernel_image_vtop(va) == pa
            checked += 1
    assert checked == 9


def test_linear_map_equals_page_tables(arm64):
    """The linear-map formula agrees with swapper_pg_dir across RAM."""
    src, info, mem = arm64
    lay = mem.layout
    for start, end in src.ram_pfn_ranges():
        for pfn in range(start, end, 4099):
            va = lay.phys_to_lm(pfn * 4096)
            assert lay.is_linear(va)
            assert mem.walk(va)[0] == pfn * 4096 == mem.translate(va)[0]


def test_vmemmap_from_mem_section(arm64):
    """SPARSEMEM sections give the vmemmap: struct page of pfn p at
    VMEMMAP_START + (p - (memstart_addr >> PAGE_SHIFT)) * sizeof(page);
    pfns below RAM have no memmap."""
    src, info, mem = arm64
    ranges = mem_map_ranges(mem, info, src.max_pfn)
    base_pfn = info.number("PHYS_OFFSET") >> 12
    assert ranges[0].start_pfn == base_pfn  # RAM does not start at 0
    for r in ranges:
        assert r.vaddr == info.number("VMEMMAP_START") + (r.start_pfn - base_pfn) * 64
        mem.walk(r.vaddr)  # mapped


def test_utsname_through_kernel_image(arm64):
    src, info, mem = arm64
    uts = mem.read(info.symbol("init_uts_ns") + info.offset("uts_namespace.name"), 390)
    fields = [uts[i * 65:(i + 1) * 65].split(b"\0")[0].decode() for i in range(6)]
    assert fields[2] == info.osrelease and fields[4] == "aarch64"


@pytest.mark.parametrize("key,value", [("PAGESIZE", "8192"), ("NUMBER(VA_BITS)", "40"),
                                       ("NUMBER(TCR_EL1_T1SZ)", "0x4"),
                                       ("NUMBER(MAX_PHYSMEM_BITS)", "50")])
def test_bad_layout_values_refused(arm64, key, value):
    src, info, mem = arm64
    text = info.raw.decode().replace(f"{key}={info.entries[key]}", f"{key}={value}")
    with pytest.raises(VmcoreInfoError, match=key.split("(")[-1].rstrip(")")):
        Arm64Layout(VmcoreInfo.parse(text.encode()))


def test_pre_5_4_layout():
    """Before the flip (14c127c957c1, v5.4) arch/arm64/include/asm/memory.h
    had PAGE_OFFSET = ~0 - (1 << (VA_BITS - 1)) + 1 (the linear map in the
    upper half) and KIMAGE_VADDR = MODULES_END = VA_START + 128 MiB below
    it: the model detects that from _stext, not from a version."""
    va_start = (-(1 << 48)) & (2**64 - 1)
    page_offset = (-(1 << 47)) & (2**64 - 1)
    stext = va_start + (128 << 20) + 0x81000
    text = (f"PAGESIZE=4096\nNUMBER(VA_BITS)=48\nNUMBER(kimage_voffset)=0x{stext - 0x40281000:x}\n"
            f"NUMBER(PHYS_OFFSET)=0x40000000\nSYMBOL(_stext)={stext:x}\n")
    lay = Arm64Layout(VmcoreInfo.parse(text.encode()))
    assert not lay.flipped
    assert lay.is_linear(page_offset) and not lay.is_linear(stext)
    assert lay.lm_to_phys(page_offset + 0x1000) == 0x40001000
    assert lay.kimg_to_phys(stext) == 0x40281000
