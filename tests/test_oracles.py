"""The oracle helpers themselves, checked on the real reference files.

These tests prove that tests/oracles.py and the fixtures in tests/conftest.py
see what the reference outputs in shared/vmcores/reference say, so a later test
that trusts an oracle trusts something that has been checked.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oracles import (
    bitmap_pfns,
    crash_sys_fields,
    drgn_read_pages,
    libkdumpfile_digest,
    libkdumpfile_info,
    libkdumpfile_pages,
    read_kdump_bitmap1,
    read_kdump_bitmap2,
    read_kdump_header,
    run_crash,
    run_makedumpfile,
)

PAGE = 4096
TESTS_DIR = Path(__file__).resolve().parent

pytestmark = pytest.mark.realdump


# --------------------------------------------------------------------------- independent ELF reader

class ElfPhys:
    """Minimal ELF64 core reader by physical address (PT_LOAD p_paddr), independent of dumpfilter."""

    def __init__(self, path):
        self._fh = open(path, "rb")
        self.mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        mm = self.mm
        assert mm[:4] == b"\x7fELF" and mm[4] == 2 and mm[5] == 1, "not an ELF64 LE file"
        e_phoff, = struct.unpack_from("<Q", mm, 32)
        e_phentsize, e_phnum = struct.unpack_from("<HH", mm, 54)
        self.loads = []
        for i in range(e_phnum):
            p_type, _flags, p_offset, _vaddr, p_paddr, p_filesz, p_memsz = struct.unpack_from(
                "<IIQQQQQ", mm, e_phoff + i * e_phentsize)
            if p_type == 1:  # PT_LOAD
                self.loads.append((p_paddr, p_offset, p_filesz, p_memsz))

    def page(self, pfn: int) -> bytes | None:
        """The page at pfn, or None if no PT_LOAD covers all of it."""
        pa = pfn * PAGE
        for paddr, off, filesz, memsz in self.loads:
            if paddr <= pa and pa + PAGE <= paddr + memsz:
                rel = pa - paddr
                data = self.mm[off + rel: off + min(rel + PAGE, filesz)] if rel < filesz else b""
                return data.ljust(PAGE, b"\0")
        return None

    def close(self):
        self.mm.close()
        self._fh.close()


@pytest.fixture(scope="module")
def elf(kdump_vmcore):
    e = ElfPhys(kdump_vmcore)
    yield e
    e.close()


@pytest.fixture(scope="module")
def ref_bitmap2_d31(reference_dir) -> bytes:
    return (reference_dir / "bitmap2-d31.bin").read_bytes()


@pytest.fixture(scope="module")
def stats_d31_header(reference_dir) -> dict:
    """The JSON summary of the -d 31 output header that makedumpfile's reference run recorded."""
    text = (reference_dir / "stats-d31.txt").read_text()
    m = re.search(r"^# output file: (\d+) bytes; header: (\{.*\})$", text, re.M)
    assert m, "stats-d31.txt has no '# output file:' line"
    h = json.loads(m.group(2))
    h["file_size"] = int(m.group(1))
    m = re.search(r"makedumpfile .*-d (\d+)", text)
    h["dump_level"] = int(m.group(1))
    return h


@pytest.fixture(scope="module")
def digest_d31_zlib(mdf_d31_zlib):
    t0 = time.monotonic()
    d = libkdumpfile_digest(mdf_d31_zlib)
    print(f"libkdumpfile_digest(d31-zlib): {time.monotonic() - t0:.1f}s for {len(d)} pfns")
    return d


# --------------------------------------------------------------------------- independent parsers

def test_read_kdump_bitmap2_equals_reference(mdf_d31_zlib, mdf_d31_lzo, ref_bitmap2_d31):
    assert read_kdump_bitmap2(mdf_d31_zlib) == ref_bitmap2_d31
    assert read_kdump_bitmap2(mdf_d31_lzo) == ref_bitmap2_d31


def test_read_kdump_header_matches_reference(mdf_d31_zlib, stats_d31_header, groundtruth):
    h = read_kdump_header(mdf_d31_zlib)
    ref = stats_d31_header
    assert h["signature"].decode() == ref["signature"]
    for key in ("header_version", "status", "block_size", "sub_hdr_size", "bitmap_blocks",
                "max_mapnr", "nr_cpus", "dump_level"):
        assert h[key] == ref[key], key
    assert list(h["utsname"].values()) == ref["utsname"]
    assert h["utsname"] == groundtruth["utsname"]
    assert h["max_mapnr_64"] == ref["max_mapnr"]
    assert h["timestamp_sec"] == groundtruth["crash_time_unix"]
    assert os.path.getsize(mdf_d31_zlib) == ref["file_size"]
    assert sum(bin(b).count("1") for b in read_kdump_bitmap1(mdf_d31_zlib)) == ref["bits_bitmap1"]
    assert len(bitmap_pfns(read_kdump_bitmap2(mdf_d31_zlib))) == ref["bits_bitmap2"]
    # The VMCOREINFO descriptor the sub-header points at holds the dump's OSRELEASE.
    with open(mdf_d31_zlib, "rb") as fh:
        fh.seek(h["offset_vmcoreinfo"])
        vmcoreinfo = fh.read(h["size_vmcoreinfo"]).decode()
    assert f"OSRELEASE={groundtruth['utsname']['release']}\n" in vmcoreinfo
    assert h["offset_note"] <= h["offset_vmcoreinfo"] < h["offset_note"] + h["size_note"]


def test_bitmap_pfns():
    assert bitmap_pfns(b"\x01\x80\x00\x05") == [0, 15, 24, 26]
    assert bitmap_pfns(b"\x00" * 4) == []


# --------------------------------------------------------------------------- crash

@pytest.mark.oracle
@pytest.mark.slow
def test_crash_on_d31_zlib_matches_reference(debug_vmlinux, mdf_d31_zlib, reference_dir):
    t0 = time.monotonic()
    out = run_crash(debug_vmlinux, [mdf_d31_zlib], ["sys", "bt"])
    print(f"crash sys+bt: {time.monotonic() - t0:.1f}s")
    ref = (reference_dir / "crash-d31-zlib.txt").read_text()
    got_sys, ref_sys = crash_sys_fields(out), crash_sys_fields(ref)

    assert got_sys["DUMPFILE"] == f"{mdf_d31_zlib}  [PARTIAL DUMP]"
    assert got_sys["PANIC"] == '"Kernel panic - not syncing: sysrq triggered crash"'
    assert ref_sys["PANIC"] == got_sys["PANIC"]
    assert ref_sys["DUMPFILE"].endswith("  [PARTIAL DUMP]")
    assert {k: v for k, v in got_sys.items() if k not in ("KERNEL", "DUMPFILE")} == \
           {k: v for k, v in ref_sys.items() if k not in ("KERNEL", "DUMPFILE")}

    def bt_block(text):
        lines = text.splitlines()
        start = next(i for i, l in enumerate(lines) if l.startswith("PID: "))
        end = next(i for i in range(start, len(lines)) if lines[i].lstrip().startswith("ORIG_RAX:"))
        return lines[start:end + 1]

    got_bt = bt_block(out)
    assert any(" sysrq_handle_crash at " in l for l in got_bt)
    assert got_bt == bt_block(ref)


# --------------------------------------------------------------------------- libkdumpfile

@pytest.mark.oracle
def test_libkdumpfile_digest_matches_bitmap_and_elf(digest_d31_zlib, ref_bitmap2_d31, elf,
                                                     mdf_d31_zlib):
    readable = sorted(pfn for pfn, h in digest_d31_zlib.items() if h is not None)
    assert readable == bitmap_pfns(ref_bitmap2_d31)
    assert len(digest_d31_zlib) == read_kdump_header(mdf_d31_zlib)["max_mapnr_64"]
    mismatched = [pfn for pfn in readable
                  if hashlib.sha1(elf.page(pfn)).hexdigest() != digest_d31_zlib[pfn]]
    assert mismatched == []


@pytest.mark.oracle
def test_libkdumpfile_reads_lzo_like_zlib(mdf_d31_lzo, digest_d31_zlib):
    assert libkdumpfile_digest(mdf_d31_lzo) == digest_d31_zlib


@pytest.mark.oracle
def test_libkdumpfile_pages_and_info(mdf_d31_zlib, ref_bitmap2_d31, elf, groundtruth):
    kept = bitmap_pfns(ref_bitmap2_d31)
    kept_set = set(kept)
    excluded = [pfn for pfn in range(kept[-1]) if pfn not in kept_set][:3]
    want = kept[:2] + kept[len(kept) // 2: len(kept) // 2 + 2] + kept[-2:] + excluded
    pages = libkdumpfile_pages(mdf_d31_zlib, want)
    assert set(pages) == set(want)
    for pfn in want:
        assert pages[pfn] == (elf.page(pfn) if pfn in kept_set else None), pfn
    info = libkdumpfile_info(mdf_d31_zlib)
    assert info["uts"] == groundtruth["utsname"]
    assert info["max_pfn"] == read_kdump_header(mdf_d31_zlib)["max_mapnr_64"]


# --------------------------------------------------------------------------- drgn

@pytest.mark.oracle
def test_drgn_agrees_on_sample(mdf_d31_zlib, kdump_vmcore, ref_bitmap2_d31, elf, digest_d31_zlib):
    kept = set(bitmap_pfns(ref_bitmap2_d31))
    max_mapnr = read_kdump_header(mdf_d31_zlib)["max_mapnr_64"]
    sample = sorted(set(range(0, max_mapnr, 97)) | set(sorted(kept)[::53]))
    got = drgn_read_pages(mdf_d31_zlib, sample)
    for pfn in sample:
        if pfn in kept:
            assert got[pfn] == elf.page(pfn), pfn
            assert hashlib.sha1(got[pfn]).hexdigest() == digest_d31_zlib[pfn], pfn
        else:
            assert got[pfn] is None, pfn
    # drgn on the raw ELF vmcore reads the same bytes as the independent PT_LOAD reader.
    raw = drgn_read_pages(kdump_vmcore, sample)
    in_elf = [pfn for pfn in sample if elf.page(pfn) is not None]
    assert len(in_elf) > len(sample) // 2
    assert all(raw[pfn] == elf.page(pfn) for pfn in in_elf)


# --------------------------------------------------------------------------- makedumpfile

@pytest.mark.oracle
def test_run_makedumpfile_dump_dmesg(kdump_vmcore, reference_dir, tmp_path):
    out = tmp_path / "dmesg.txt"
    r = run_makedumpfile(["--dump-dmesg", kdump_vmcore, out])
    assert "makedumpfile Completed." in r.stdout + r.stderr
    assert out.read_bytes() == (reference_dir / "dmesg.txt").read_bytes()
    bad = run_makedumpfile(["--dump-dmesg", tmp_path / "missing", tmp_path / "x"], check=False)
    assert bad.returncode != 0


# --------------------------------------------------------------------------- the decompression cache

_CACHE_WORKER = """
import sys
sys.path.insert(0, sys.argv[1])
import conftest
print(conftest.real_vmcore(sys.argv[2]))
"""


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


MDF_D31_ZLIB = "kdump-6.1-512M.d31-zlib.kdump"


def test_real_vmcore_cache_is_concurrency_safe(tmp_path, shared_dir):
    """Several processes racing to fill an empty cache all get the verified file."""
    sums = (shared_dir / "vmcores" / "SHA256SUMS.decompressed").read_text().split()
    expected = sums[sums.index(f"reference/{MDF_D31_ZLIB}") - 1]
    env = dict(os.environ, DUMPFILTER_CACHE=str(tmp_path), DUMPFILTER_SHARED=str(shared_dir))
    procs = [subprocess.Popen([sys.executable, "-c", _CACHE_WORKER, str(TESTS_DIR), MDF_D31_ZLIB],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    for out, err, rc in results:
        assert rc == 0, err
        assert out.strip() == str(tmp_path / "vmcores" / MDF_D31_ZLIB)
    target = tmp_path / "vmcores" / MDF_D31_ZLIB
    assert _sha256(target) == expected
    assert not list((tmp_path / "vmcores").glob("*.part"))

    # A corrupted cache entry is detected and replaced.
    os.chmod(target, 0o644)
    with open(target, "r+b") as fh:
        fh.write(b"garbage")
    r = subprocess.run([sys.executable, "-c", _CACHE_WORKER, str(TESTS_DIR), MDF_D31_ZLIB],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert _sha256(target) == expected
