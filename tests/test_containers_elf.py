"""-E: ELF output with makedumpfile's PT_LOAD splitting, checked against
makedumpfile -E, crash and libkdumpfile."""
import functools
import hashlib
import os
import struct

import pytest

from dumpfilter.readers.elf import ElfSource
from dumpfilter.writers.elf import (
    PFN_EXCLUDED,
    PN_XNUM,
    OutLoad,
    assign_offsets,
    headers_size,
    pack_elf_headers,
    plan_load,
    set_runs,
)
from clitools import run_cli
from oracles import crash_sys_fields, libkdumpfile_digest, run_crash, run_makedumpfile

ZERO_SHA1 = hashlib.sha1(bytes(4096)).hexdigest()


# Output as bytes: some tests write the flattened stream to stdout.
cli = functools.partial(run_cli, text=False)


# ------------------------------------------------------------------ unit

def test_set_runs():
    bm = bytes([0b10110001, 0xFF, 0x01])
    assert list(set_runs(bm, 100)) == [(100, 101), (104, 106), (107, 117)]


def test_plan_load_rule():
    ps = 4096
    # dumpable 0-9, 200 excluded (kept), 210-219, 300 excluded (split), 520-529, tail
    runs = [(0, 10), (210, 220), (520, 530)]
    loads = plan_load(0, 0x1000_0000, 600 * ps, ps, runs)
    assert [(l.paddr // ps, l.filesz // ps, l.memsz // ps) for l in loads] == \
        [(0, 220, 520), (520, 10, 80)]
    assert loads[1].vaddr == 0x1000_0000 + 520 * ps
    # leading run >= PFN_EXCLUDED gives a file-less segment
    loads = plan_load(0, 0, 1000 * ps, ps, [(PFN_EXCLUDED, PFN_EXCLUDED + 1)])
    assert [(l.filesz, l.memsz) for l in loads] == [(0, PFN_EXCLUDED * ps), (ps, (1000 - PFN_EXCLUDED) * ps)]
    # nothing dumpable: one empty segment covering the load
    assert plan_load(ps, 0, 10 * ps, ps, []) == [OutLoad(ps, 0, 0, 10 * ps)]


def test_extended_numbering(tmp_path):
    """>= 65535 program headers: e_phnum = PN_XNUM, section 0 sh_info has
    the count; our reader (and readelf) read it back."""
    ps = 4096
    n = 70000
    planned = [OutLoad(i * 2 * ps, 0xffff888000000000 + i * 2 * ps, ps, 2 * ps) for i in range(n)]
    notes = b""
    hsize = headers_size(n)
    loads = assign_offsets(planned, hsize)
    head = pack_elf_headers(loads, 0)
    assert len(head) == hsize
    e = struct.unpack_from("<16sHHIQQQIHHHHHH", head)
    assert e[10] == PN_XNUM and e[12] == 1 and e[11] == 64
    sh = struct.unpack_from("<IIQQQQIIQQ", head, e[6])
    assert sh[0] == 0 and sh[7] == n + 1
    path = tmp_path / "x.elf"
    with open(path, "wb") as f:
        f.write(head)
        f.write(bytes(n * ps))
    src = ElfSource(str(path))
    assert len(src.load_segments()) == n
    assert src.load_segments()[-1].paddr == (n - 1) * 2 * ps and src.load_segments()[-1].filesz == ps
    src.close()


# ------------------------------------------------------------- real dump

@pytest.fixture(scope="module")
def elf31(kdump_vmcore, tmp_path_factory):
    d = tmp_path_factory.mktemp("elf")
    cli("-E", "-d", "31", kdump_vmcore, d / "ours.elf")
    return d / "ours.elf"


@pytest.mark.realdump
@pytest.mark.oracle
def test_elf_size_vs_makedumpfile(elf31, kdump_vmcore, tmp_path):
    ref = tmp_path / "mdf.elf"
    run_makedumpfile(["-E", "-d", "31", kdump_vmcore, ref])
    a, b = elf31.stat().st_size, ref.stat().st_size
    assert abs(a - b) <= b // 100
    # In fact the same bytes (same split rule, same layout).
    assert elf31.read_bytes() == ref.read_bytes()


@pytest.mark.realdump
@pytest.mark.oracle
def test_elf_crash_panic(elf31, kdump_vmcore, debug_vmlinux):
    raw = crash_sys_fields(run_crash(debug_vmlinux, [kdump_vmcore], ["sys"]))
    out = run_crash(debug_vmlinux, [elf31], ["sys"])
    got = crash_sys_fields(out)
    assert got["PANIC"] == raw["PANIC"] and "sysrq" in got["PANIC"], out
    assert got["RELEASE"] == raw["RELEASE"]


@pytest.mark.realdump
@pytest.mark.oracle
def test_elf_libkdumpfile_pages(elf31, kdump_vmcore, reference_dir):
    got = libkdumpfile_digest(elf31)
    raw = libkdumpfile_digest(kdump_vmcore)
    bm = (reference_dir / "bitmap2-d31.bin").read_bytes()
    kept = 0
    for pfn in range(len(bm) * 8):
        if bm[pfn >> 3] >> (pfn & 7) & 1 and raw.get(pfn) not in (None, ZERO_SHA1):
            assert got.get(pfn) == raw[pfn], pfn  # every non-zero kept page
            kept += 1
    assert kept == 15658  # README: 21,398 kept minus 5,740 zero pages
    for pfn, h in got.items():  # anything readable is the page or a zero fill
        if h is not None:
            assert h in (raw.get(pfn), ZERO_SHA1), pfn


@pytest.mark.realdump
def test_elf_flattened_roundtrip(elf31, kdump_vmcore, tmp_path):
    flat = tmp_path / "e.flat"
    with open(flat, "wb") as f:
        cli("-F", "-E", "-d", "31", kdump_vmcore, stdout=f)
    with open(flat, "rb") as f:
        cli("-R", tmp_path / "e.elf", stdin=f)
    assert (tmp_path / "e.elf").read_bytes() == elf31.read_bytes()


@pytest.mark.realdump
def test_elf_usage_errors(kdump_vmcore, mdf_d31_zlib, tmp_path):
    for args in (["-E", "-c", kdump_vmcore, tmp_path / "a"],
                 ["-E", "-z", kdump_vmcore, tmp_path / "a"],
                 ["-E", "-d", "31", mdf_d31_zlib, tmp_path / "a"],
                 ["-E", "--split", kdump_vmcore, tmp_path / "a", tmp_path / "b"]):
        r = cli(*args, check=False)
        lines = r.stderr.decode().strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("dumpfilter: "), lines
        assert not (tmp_path / "a").exists()
