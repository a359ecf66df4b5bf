"""Values read from a dump are bounded before they size any work
(dumpfilter/limits.py, issue 9): each crafted header below used to end in
a traceback, an internal error, a hang or a runaway output; now both tools
print one line naming the field and its value and exit 1, quickly.

The dumps are the synthetic builder's, changed field by field with
``dumpfilter.testing.mutate`` (which does not use the readers).
"""
import subprocess
import sys
import time

import pytest

from dumpfilter.testing import mutate as M
from dumpfilter.testing.malformed import run_case
from dumpfilter.testing.synthetic import build_sample


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    d = tmp_path_factory.mktemp("limits")
    elf = d / "s.elf"
    build_sample(str(elf), mem_mib=16)
    kdump = d / "s.kdump"
    flat = d / "s.flat"
    subprocess.run([sys.executable, "-m", "dumpfilter", "-c", "-d", "31", "--message-level", "0",
                    str(elf), str(kdump)], check=True)
    with open(flat, "wb") as f:
        subprocess.run([sys.executable, "-m", "dumpfilter", "-F", "-l", "-d", "31",
                        "--message-level", "0", str(elf)], check=True, stdout=f)
    return {k: p.read_bytes() for k, p in (("elf", elf), ("kdump", kdump), ("flat", flat))}


def _last_load(data):
    return max(i for i, (_, f) in enumerate(M.elf_phdrs(data)) if f[0] == 1)


def _huge_flat(data):
    """A small stream whose kdump header claims 2**40 pfns, bitmaps to
    match, and one record far out so that the logical file is that big."""
    inner_bs = 4096
    out = data
    recs = M.flat_records(out)
    # header and sub header are in the first records: patch the stream bytes
    hdr = bytearray(out[recs[0][0] + 16:recs[0][0] + 16 + recs[0][2]])
    hdr = M.kdump_set_header(bytes(hdr) + bytes(max(0, 2 * inner_bs - len(hdr))),
                             "bitmap_blocks", (1 << 40) // 8 * 2 // inner_bs)
    hdr = M.kdump_set_sub(hdr, "max_mapnr_64", 1 << 40)
    out = bytearray(out)
    for pos, o, s in recs:
        for i in range(s):
            if o + i < len(hdr) and out[pos + 16 + i] != hdr[o + i]:
                out[pos + 16 + i] = hdr[o + i]
    return M.flat_set_record(bytes(out), len(recs) - 1, offset=1 << 41)


CASES = {
    "ELF PAGESIZE=0": ("elf", lambda d: M.elf_set_vmcoreinfo(d, {"PAGESIZE": "0"}), "PAGESIZE"),
    "ELF PAGESIZE=1 MiB": ("elf", lambda d: M.elf_set_vmcoreinfo(d, {"PAGESIZE": "1048576"}),
                           "PAGESIZE"),
    "SIZE(mem_section)=0": ("elf", lambda d: M.elf_set_vmcoreinfo(d, {"SIZE(mem_section)": "0"}),
                            "SIZE(mem_section)"),
    "SIZE(page)=0": ("elf", lambda d: M.elf_set_vmcoreinfo(d, {"SIZE(page)": "0"}), "SIZE(page)"),
    "LENGTH(zone.free_area)=100": (
        "elf", lambda d: M.elf_set_vmcoreinfo(d, {"LENGTH(zone.free_area)": "100"}),
        "LENGTH(zone.free_area)"),
    "OFFSET(page.mapping) past struct page": (
        "elf", lambda d: M.elf_set_vmcoreinfo(d, {"OFFSET(page.mapping)": "60"}),
        "OFFSET(page.mapping)"),
    "PT_NOTE p_filesz=2**62": ("elf", lambda d: M.elf_set_phdr(d, 0, "p_filesz", 1 << 62),
                               "p_filesz"),
    "PT_LOAD p_paddr=2**54": ("elf", lambda d: M.elf_set_phdr(d, _last_load(d), "p_paddr", 1 << 54),
                              "physical address"),
    "PT_LOAD p_memsz=64 TiB": ("elf", lambda d: M.elf_set_phdr(d, _last_load(d), "p_memsz", 1 << 46),
                               "physical address"),
    "PT_LOAD p_memsz=64 GiB": ("elf", lambda d: M.elf_set_phdr(d, _last_load(d), "p_memsz", 1 << 36),
                               "zero-filled"),
    # found by tools/fuzz.py: pread() cannot take an offset past 2**63
    "ELF e_phoff past 2**63": ("elf", lambda d: d[:32] + (0xFFFF000000000040).to_bytes(8, "little")
                               + d[40:], "truncated"),
    "kdump max_mapnr_64=2**62": ("kdump", lambda d: M.kdump_set_sub(d, "max_mapnr_64", 1 << 62),
                                 "max_mapnr"),
    "flattened, 2**40 pfns claimed": ("flat", _huge_flat, "max_mapnr"),
}


@pytest.mark.parametrize("tool", ["filter", "report"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bounded(seeds, tmp_path, case, tool):
    kind, change, needle = CASES[case]
    path = tmp_path / "case"
    path.write_bytes(change(seeds[kind]))
    t0 = time.monotonic()
    o = run_case(str(path), tool, str(tmp_path / "out") if tool == "filter" else None,
                 timeout=30)
    assert not o.problems, (o.problems, o.stderr)
    assert time.monotonic() - t0 < 20
    if tool == "report" and o.rc == 3:
        return  # the report printed what it could (the section that needs the value is partial)
    assert o.rc == 1, o.stderr
    line = [l for l in o.stderr.splitlines() if l.startswith("dumpfilter")][-1]
    assert needle in line, line


def test_arm64_page_sizes_accepted():
    """16 and 64 KiB pages (arm64, ppc64) are within the bounds; 128 KiB is not."""
    from dumpfilter.errors import VmcoreInfoError
    from dumpfilter.vmcoreinfo import VmcoreInfo

    for ps in (4096, 16384, 65536):
        assert VmcoreInfo.parse(f"PAGESIZE={ps}\n".encode()).page_size == ps
    for bad in (0, 2048, 12288, 131072):
        with pytest.raises(VmcoreInfoError, match="PAGESIZE"):
            VmcoreInfo.parse(f"PAGESIZE={bad}\n".encode())


def test_module_symbols_bound_st_name():
    """64 changed bytes of a module's symbol table used to make the report
    read max(st_name) + 128 bytes (4.2 GB); now such symbols are left out
    and said, the others are kept, and no read is larger than the bound."""
    import struct

    from dumpfilter.report.modules import STRTAB_READ_MAX, module_symbols

    sizes = []

    class Ctx:
        mem = {0x1000: struct.pack("<QIxxxxQ", 0x2000, 3, 0x3000),
               0x2000: b"".join(struct.pack("<IBBHQQ", n, 0, 0, 1, 0xffffffffc0000000 + i, 0)
                                for i, n in enumerate((1, 0xFFFFFF00, 5))),
               0x3000: b"\0foo\0bar\0" + bytes(200)}

        def read(self, addr, n):
            sizes.append(n)
            for base, data in self.mem.items():
                if base <= addr and addr + n <= base + len(data):
                    return data[addr - base:addr - base + n]
            from dumpfilter.errors import FaultError
            raise FaultError("not in the dump", addr)

        def u64(self, addr):
            return struct.unpack("<Q", self.read(addr, 8))[0]

        def u32(self, addr):
            return struct.unpack("<I", self.read(addr, 4))[0]

    errors = []
    syms = module_symbols(Ctx(), 0x1000, {"symtab": 0, "num_symtab": 8, "strtab": 16}, errors)
    assert [name for name, _ in syms] == ["foo", "bar"]
    assert len(errors) == 1 and "st_name=0xffffff00" in errors[0]
    assert max(sizes) <= STRTAB_READ_MAX
