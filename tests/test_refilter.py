"""Re-filtering: a kdump-compressed (ours or makedumpfile's) or flattened
dump as input. Levels are OR'ed, the 2nd bitmap matches filtering the raw
capture, page contents and notes are carried over unchanged."""
import struct

import pytest

from clitools import page_sha1s, run_cli, set_pfns
from oracles import (
    crash_sys_fields,
    libkdumpfile_digest,
    read_kdump_bitmap2,
    read_kdump_header,
    run_crash,
    run_makedumpfile,
)

pytestmark = pytest.mark.realdump


@pytest.fixture(scope="module")
def mdf_d1(kdump_vmcore, tmp_path_factory):
    out = tmp_path_factory.mktemp("refilter") / "mdf-d1-c.kdump"
    run_makedumpfile(["-c", "-d", "1", kdump_vmcore, out])
    return out


@pytest.mark.oracle
def test_refilter_makedumpfile_d1(mdf_d1, kdump_vmcore, reference_dir, tmp_path):
    out = tmp_path / "d31.kdump"
    run_cli("-d", "31", "-z", mdf_d1, out)
    bm2 = read_kdump_bitmap2(out)
    assert bm2 == (reference_dir / "bitmap2-d31.bin").read_bytes()
    h, h_in = read_kdump_header(out), read_kdump_header(mdf_d1)
    assert h["dump_level"] == 31 and h["status"] & 0x20
    for k in ("utsname", "timestamp_sec", "nr_cpus", "phys_base", "size_note",
              "size_vmcoreinfo", "max_mapnr_64"):
        assert h[k] == h_in[k], k
    with open(out, "rb") as f, open(mdf_d1, "rb") as g:
        f.seek(h["offset_note"]); g.seek(h_in["offset_note"])
        assert f.read(h["size_note"]) == g.read(h_in["size_note"])
    # every kept page equals the raw capture (libkdumpfile reads ours)
    pfns = set_pfns(bm2)
    raw = page_sha1s(kdump_vmcore, pfns)
    got = libkdumpfile_digest(out)
    assert {p: got[p] for p in pfns} == raw
    assert sum(v is not None for v in got.values()) == len(pfns)


def test_refilter_ors_levels(mdf_d1, tmp_path):
    out = tmp_path / "d16.kdump"
    run_cli("-d", "16", "-c", mdf_d1, out)
    assert read_kdump_header(out)["dump_level"] == 17


def test_refilter_our_output_and_flat(kdump_vmcore, reference_dir, tmp_path):
    """ours at -d 2 (lzo) -> -d 31; and a -F stream of it as input."""
    a = tmp_path / "d2.kdump"
    run_cli("-l", "-d", "2", kdump_vmcore, a)
    b = tmp_path / "d31.kdump"
    run_cli("-c", "-d", "31", a, b)
    direct = tmp_path / "direct.kdump"
    run_cli("-c", "-d", "31", kdump_vmcore, direct)
    assert b.read_bytes() == direct.read_bytes()
    flat = tmp_path / "d2.flat"
    with open(flat, "wb") as f:
        run_cli("-F", "-p", "-d", "2", kdump_vmcore, stdout=f)
    c = tmp_path / "d31-from-flat.kdump"
    run_cli("-c", "-d", "31", flat, c)
    assert c.read_bytes() == direct.read_bytes()


def test_refilter_carries_eraseinfo(kdump_vmcore, tmp_path):
    """A dump with eraseinfo (made by appending one to ours) keeps it."""
    a = tmp_path / "a.kdump"
    run_cli("-c", "-d", "31", kdump_vmcore, a)
    text = b"erase jiffies size 8\n"
    data = bytearray(a.read_bytes())
    off = len(data)
    data += text
    struct.pack_into("<qQ", data, 4096 + 64, off, len(text))
    a.write_bytes(data)
    b = tmp_path / "b.kdump"
    run_cli("-c", "-d", "31", a, b)
    h = read_kdump_header(b)
    assert h["size_eraseinfo"] == len(text)
    with open(b, "rb") as f:
        f.seek(h["offset_eraseinfo"])
        assert f.read(len(text)) == text


@pytest.mark.oracle
@pytest.mark.parametrize("fixture", ["qemu_elf", "qemu_flat"])
def test_refilter_qemu(fixture, request, tmp_path, debug_vmlinux):
    src = request.getfixturevalue(fixture)
    out = tmp_path / "q.kdump"
    run_cli("-d", "31", "-c", src, out)
    h = read_kdump_header(out)
    assert h["dump_level"] == 31 and h["utsname"]["machine"] == "x86_64"
    text = run_crash(debug_vmlinux, [out], ["sys"])
    f = crash_sys_fields(text)
    assert f["RELEASE"] == "6.1.0-56-amd64", text
    assert "[PARTIAL DUMP]" in f["DUMPFILE"], text
    # pages kept equal the input's pages
    pfns = set_pfns(read_kdump_bitmap2(out))
    step = max(1, len(pfns) // 2000)
    sample = pfns[::step]
    assert page_sha1s(out, sample) == page_sha1s(src, sample)
