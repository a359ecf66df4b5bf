"""Tests of the kdump-compressed reader (dumpfilter.readers.kdump), the
flattened-format reader/rebuilder (dumpfilter.readers.flattened) and
open_dump's probing, on the real dumps and on small synthetic files."""
from __future__ import annotations

import json
import mmap
import os
import random
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from dumpfilter.formats.bitmap import ranges_to_bitmap
from dumpfilter.errors import (
    CorruptDumpError,
    FaultError,
    NotAVmcoreError,
    TruncatedDumpError,
    UnsupportedDumpError,
)
from dumpfilter.readers import open_dump
from dumpfilter.readers.flattened import FlattenedFile
from dumpfilter.writers.rebuild import rebuild
from dumpfilter.readers.kdump import KdumpSource
from dumpfilter.readers.splitset import KdumpSplitSet

PS = 4096


# =========================================================== helpers

def elf_loads(path: Path):
    """(p_paddr, p_offset, p_filesz) of every PT_LOAD of an ELF64 LE core,
    parsed independently of dumpfilter."""
    with open(path, "rb") as f:
        eh = f.read(64)
        assert eh[:4] == b"\x7fELF" and eh[4] == 2 and eh[5] == 1
        (phoff,) = struct.unpack_from("<Q", eh, 32)
        phentsize, phnum = struct.unpack_from("<HH", eh, 54)
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
    loads = []
    for i in range(phnum):
        p_type, _fl, off, _va, pa, filesz, _memsz, _al = struct.unpack_from(
            "<IIQQQQQQ", ph, i * phentsize
        )
        if p_type == 1:
            loads.append((pa, off, filesz))
    return loads


def present_pfns(src, start: int = 0, n: int | None = None):
    n = src.max_pfn - start if n is None else n
    bm = bytearray((n + 7) // 8)
    src.present_bitmap(start, n, bm)
    return [start + i for i in range(n) if bm[i >> 3] >> (i & 7) & 1]


def runs_of(pfns):
    """Group sorted pfns into (start, count) batches of consecutive pfns
    (at most 1024 each)."""
    out = []
    for p in pfns:
        if out and p == out[-1][0] + out[-1][1] and out[-1][1] < 1024:
            out[-1][1] += 1
        else:
            out.append([p, 1])
    return out


def read_batch(src, pfn: int, n: int) -> bytes:
    buf = bytearray(n * src.page_size)
    src.read_pages(pfn, n, memoryview(buf))
    return bytes(buf)


def compare_with_elf(src, elf_path: Path) -> int:
    loads = elf_loads(elf_path)
    pfns = present_pfns(src)
    with open(elf_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        for start, n in runs_of(pfns):
            data = read_batch(src, start, n)
            for i in range(n):
                pa = (start + i) * PS
                for lpa, off, filesz in loads:
                    if lpa <= pa and pa + PS <= lpa + filesz:
                        want = m[off + pa - lpa : off + pa - lpa + PS]
                        break
                else:
                    pytest.fail(f"pfn {start + i:#x} present in the kdump file but not in the ELF")
                if data[i * PS : (i + 1) * PS] != want:
                    pytest.fail(f"pfn {start + i:#x} differs from the ELF vmcore")
    return len(pfns)


def stats_header(reference_dir: Path, level: int = 31):
    for line in (reference_dir / f"stats-d{level}.txt").read_text().splitlines():
        if line.startswith("# output file:"):
            size = int(line.split(":")[1].split()[0])
            return size, json.loads(line.split("header:", 1)[1])
    pytest.fail("no header line in stats file")


def one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg, repr(msg)
    return msg


# =========================================================== real dumps

@pytest.mark.realdump
def test_header_fields_match_independent_parse(mdf_d31_zlib, reference_dir):
    raw = open(mdf_d31_zlib, "rb").read(3 * PS)
    with KdumpSource(mdf_d31_zlib) as src:
        h, s = src.disk_header, src.sub_header
        assert h.signature == raw[:8] == b"KDUMP   "
        assert h.header_version == struct.unpack_from("<i", raw, 8)[0] == 6
        uts = [raw[12 + 65 * i : 12 + 65 * (i + 1)].split(b"\0")[0].decode() for i in range(6)]
        assert list(h.utsname) == uts
        assert (h.timestamp_sec, h.timestamp_usec) == struct.unpack_from("<qq", raw, 408)
        assert (h.status, h.block_size, h.sub_hdr_size, h.bitmap_blocks, h.max_mapnr) == (
            struct.unpack_from("<Iiiii", raw, 424)
        )
        assert h.nr_cpus == struct.unpack_from("<i", raw, 460)[0]
        sub = struct.unpack_from("<QiiQQqQqQqQQQQ", raw, PS)
        assert (s.phys_base, s.dump_level, s.split) == sub[:3]
        assert (s.offset_vmcoreinfo, s.size_vmcoreinfo, s.offset_note, s.size_note) == sub[5:9]
        assert (s.offset_eraseinfo, s.size_eraseinfo, s.max_mapnr_64) == (sub[9], sub[10], sub[13])

        size, ref = stats_header(reference_dir)
        assert os.path.getsize(mdf_d31_zlib) == size
        assert h.signature.decode() == ref["signature"]
        assert h.header_version == ref["header_version"]
        assert list(h.utsname) == ref["utsname"]
        keys = ("status", "block_size", "sub_hdr_size", "bitmap_blocks", "max_mapnr", "nr_cpus")
        for key in keys:
            assert getattr(h, key) == ref[key], key
        assert src.bitmap2_offset == ref["bitmap2_offset"]
        assert src.bitmap_bytes == ref["bitmap2_len"]
        assert sum(b - a for a, b in src.ram_pfn_ranges()) == ref["bits_bitmap1"]
        assert src.num_descriptors == ref["bits_bitmap2"] == 21398
        assert src.max_pfn == 131034 and src.page_size == 4096

        info = src.header
        assert info.dump_level == 31 and info.compression == "zlib"
        assert not info.incomplete and not info.excluded_vmemmap and info.eraseinfo == b""
        vmci = src.vmcoreinfo
        assert vmci.osrelease == "6.1.0-56-amd64"
        assert info.phys_base == vmci.number("phys_base") == -371195904
        vo, vs = s.offset_vmcoreinfo, s.size_vmcoreinfo
        assert src.vmcoreinfo_raw == raw[vo : vo + vs]
        assert src.notes == raw[s.offset_note : s.offset_note + s.size_note]
        assert src.format_name == "kdump" and not src.split


@pytest.mark.realdump
def test_lzo_header(mdf_d31_lzo):
    with KdumpSource(mdf_d31_lzo) as src:
        assert src.disk_header.status == 2 and src.header.compression == "lzo"
        assert src.num_descriptors == 21398


@pytest.mark.realdump
def test_present_bitmap_equals_reference(mdf_d31_zlib, reference_dir):
    ref = (reference_dir / "bitmap2-d31.bin").read_bytes()
    with KdumpSource(mdf_d31_zlib) as src:
        n = src.max_pfn
        bm = bytearray((n + 7) // 8)
        src.present_bitmap(0, n, bm)
        want = bytearray(ref[: len(bm)])
        if n % 8:
            want[-1] &= (1 << (n % 8)) - 1
        assert bm == want
        # Unaligned windows and windows across the end give the same bits.
        rng = random.Random(5)
        for _ in range(200):
            start = rng.randrange(0, n + 100)
            cnt = rng.randrange(1, 70000)
            part = bytearray((cnt + 7) // 8)
            src.present_bitmap(start, cnt, part)
            for i in range(0, cnt, 97):
                pfn = start + i
                exp = pfn < n and ref[pfn >> 3] >> (pfn & 7) & 1
                assert (part[i >> 3] >> (i & 7) & 1) == exp, (start, cnt, i)
        # 1st bitmap -> RAM ranges, checked against the raw bits.
        raw1 = open(mdf_d31_zlib, "rb").read()[src.bitmap1_offset : src.bitmap1_offset + len(bm)]
        mine = bytearray(len(bm))
        ranges_to_bitmap(src.ram_pfn_ranges(), 0, n, mine)
        want1 = bytearray(raw1)
        if n % 8:
            want1[-1] &= (1 << (n % 8)) - 1
        assert mine == want1


@pytest.mark.realdump
@pytest.mark.slow
def test_all_zlib_pages_equal_elf_vmcore(mdf_d31_zlib, kdump_vmcore):
    with KdumpSource(mdf_d31_zlib) as src:
        t = time.perf_counter()
        n = compare_with_elf(src, kdump_vmcore)
        dt = time.perf_counter() - t
    assert n == 21398
    print(f"compared {n} zlib pages with the ELF vmcore in {dt:.2f} s")
    assert dt < 60


@pytest.mark.realdump
@pytest.mark.slow
def test_all_lzo_pages_equal_elf_vmcore(mdf_d31_lzo, kdump_vmcore):
    try:
        import dumpfilter.codecs.lzo  # noqa: F401
    except Exception as e:  # being written elsewhere
        pytest.skip(f"dumpfilter.codecs.lzo not usable yet: {e}")
    with KdumpSource(mdf_d31_lzo) as src:
        assert compare_with_elf(src, kdump_vmcore) == 21398


@pytest.mark.realdump
def test_excluded_pages_zero_and_fault(mdf_d31_zlib, reference_dir):
    ref = (reference_dir / "bitmap2-d31.bin").read_bytes()
    with KdumpSource(mdf_d31_zlib) as src:
        absent = next(p for p in range(256, 86016) if not ref[p >> 3] >> (p & 7) & 1)
        present = next(p for p in range(absent, 86016) if ref[p >> 3] >> (p & 7) & 1)
        with pytest.raises(FaultError):
            src.read_phys(absent * PS + 8, 16)
        data = read_batch(src, absent, 1)
        assert data == bytes(PS)
        assert len(src.read_phys(present * PS + 100, 200)) == 200
        # Beyond max_mapnr: zeros, not an error.
        assert read_batch(src, src.max_pfn - 1, 3)[PS:] == bytes(2 * PS)


@pytest.mark.realdump
@pytest.mark.oracle
def test_zlib_pages_equal_drgn(mdf_d31_zlib):
    drgn = pytest.importorskip("drgn")
    prog = drgn.Program()
    try:
        prog.set_core_dump(str(mdf_d31_zlib))
    except Exception as e:
        pytest.skip(f"drgn cannot open the kdump file: {e}")
    with KdumpSource(mdf_d31_zlib) as src:
        pfns = present_pfns(src)[::23]
        for pfn in pfns:
            assert prog.read(pfn * PS, PS, True) == src.read_phys(pfn * PS, PS), hex(pfn)


@pytest.fixture(scope="module")
def qemu_rebuilt(qemu_flat, tmp_path_factory):
    """The QEMU flattened file rebuilt by makedumpfile -R (or by our
    rebuild() when makedumpfile is missing)."""
    out = tmp_path_factory.mktemp("qemu") / "qemu-rebuilt.kdump"
    mdf = shutil.which("makedumpfile")
    if mdf:
        with open(qemu_flat, "rb") as fin:
            r = subprocess.run([mdf, "-R", str(out)], stdin=fin, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    else:
        rebuild(qemu_flat, out)
    return out


@pytest.mark.realdump
def test_qemu_flattened_header(qemu_flat):
    with open_dump(qemu_flat) as src:
        assert isinstance(src, KdumpSource) and src.flattened
        assert src.format_name == "flattened kdump"
        h = src.disk_header
        assert h.header_version == 6 and h.block_size == 4096 and h.machine == "x86_64"
        assert h.nr_cpus == 2 and src.header.compression == "zlib"
        assert src.max_pfn == 1 << 20 and src.num_descriptors > 100000
        assert src.vmcoreinfo.osrelease == "6.1.0-56-amd64"
        assert src.vmcoreinfo.page_size == 4096
        assert src.file.nrecords > 1000
        pfns = present_pfns(src)
        assert len(pfns) == src.num_descriptors
        sample = read_batch(src, pfns[len(pfns) // 2], 64)
        assert sample.strip(b"\0")


@pytest.mark.realdump
@pytest.mark.oracle
def test_qemu_flattened_equals_rebuilt(qemu_flat, qemu_rebuilt, tmp_path):
    # Our rebuild() gives the same bytes as makedumpfile -R.
    ours = tmp_path / "ours.kdump"
    size = rebuild(qemu_flat, ours)
    assert size == os.path.getsize(qemu_rebuilt) == os.path.getsize(ours)
    with open(ours, "rb") as a, open(qemu_rebuilt, "rb") as b:
        while True:
            x, y = a.read(1 << 22), b.read(1 << 22)
            assert x == y
            if not x:
                break
    # The flattened file read in place equals the rebuilt one read as a plain file.
    with KdumpSource(qemu_flat) as flat, KdumpSource(qemu_rebuilt) as plain:
        assert flat.flattened and not plain.flattened
        assert flat.disk_header == plain.disk_header and flat.sub_header == plain.sub_header
        assert flat.notes == plain.notes and flat.vmcoreinfo_raw == plain.vmcoreinfo_raw
        assert flat.ram_pfn_ranges() == plain.ram_pfn_ranges()
        pfns = present_pfns(flat)
        assert pfns == present_pfns(plain)
        t = time.perf_counter()
        for start, n in runs_of(pfns):
            assert read_batch(flat, start, n) == read_batch(plain, start, n), hex(start)
        print(f"{len(pfns)} QEMU pages read twice in {time.perf_counter() - t:.2f} s")
    # Byte-level: random preads of the logical file equal the rebuilt file.
    with FlattenedFile(qemu_flat) as ff, open(qemu_rebuilt, "rb") as f:
        data = f.read()
        assert ff.size == len(data)
        rng = random.Random(1)
        for _ in range(300):
            off = rng.randrange(0, len(data) + 10)
            n = rng.randrange(0, 100000)
            assert ff.pread(off, n) == data[off : off + n]


@pytest.fixture(scope="module")
def mdf_made(kdump_vmcore, tmp_path_factory):
    """makedumpfile -F (flattened to stdout) and --split outputs of the raw
    vmcore at -d 31 -c, made by the installed makedumpfile."""
    mdf = shutil.which("makedumpfile")
    if mdf is None:
        pytest.skip("makedumpfile not installed")
    d = tmp_path_factory.mktemp("mdf")
    base = [mdf, "-c", "-d", "31"]
    with open(d / "flat", "wb") as out:
        r = subprocess.run(base + ["-F", str(kdump_vmcore)], stdout=out, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        pytest.skip(f"makedumpfile -F failed: {r.stderr.decode(errors='replace')[-300:]}")
    pieces = [d / f"piece{i}" for i in range(3)]
    r = subprocess.run(base + ["--split", "--splitblock-size", "16384", str(kdump_vmcore)]
                       + [str(p) for p in pieces], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        pytest.skip(f"makedumpfile --split failed: {r.stderr[-300:]}")
    return {"flat": d / "flat", "pieces": pieces}


def assert_same_dump(a, b):
    assert a.max_pfn == b.max_pfn
    assert a.ram_pfn_ranges() == b.ram_pfn_ranges()
    pfns = present_pfns(a)
    assert pfns == present_pfns(b)
    for start, n in runs_of(pfns):
        assert read_batch(a, start, n) == read_batch(b, start, n), hex(start)
    return len(pfns)


@pytest.mark.realdump
@pytest.mark.oracle
def test_makedumpfile_flattened_output(mdf_made, mdf_d31_zlib, tmp_path):
    flat = mdf_made["flat"]
    rebuilt = tmp_path / "rebuilt"
    rebuild(flat, rebuilt)
    with FlattenedFile(flat) as ff, open(rebuilt, "rb") as f:
        assert ff.size == os.path.getsize(rebuilt)
        for off in range(0, ff.size, 1 << 22):
            assert ff.pread(off, 1 << 22) == f.read(1 << 22)
    with open_dump(flat) as src, KdumpSource(mdf_d31_zlib) as ref:
        assert src.flattened and src.header == ref.header
        assert assert_same_dump(src, ref) == 21398


@pytest.mark.realdump
@pytest.mark.oracle
def test_makedumpfile_split_pieces(mdf_made, mdf_d31_zlib):
    paths = mdf_made["pieces"]
    pieces = [KdumpSource(p) for p in paths]
    try:
        ranges = [(p.start_pfn, p.end_pfn) for p in pieces]
        assert all(p.split for p in pieces)
        assert ranges[0][0] == 0 and ranges[-1][1] == pieces[0].max_pfn
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert sum(p.num_descriptors for p in pieces) == 21398
        with KdumpSource(mdf_d31_zlib) as ref:
            for p in pieces:  # one piece alone: its own range only
                lo, hi = p.start_pfn, p.end_pfn
                mine = present_pfns(p)
                assert mine == present_pfns(ref, lo, hi - lo)
                for start, n in runs_of(mine[:: max(1, len(mine) // 500)]):
                    assert read_batch(p, start, n) == read_batch(ref, start, n)
            with KdumpSplitSet(list(reversed(paths))) as sset:
                assert assert_same_dump(sset, ref) == 21398
    finally:
        for p in pieces:
            p.close()


@pytest.mark.realdump
def test_open_dump_probes(mdf_d31_zlib, qemu_flat, tmp_path):
    with open_dump(mdf_d31_zlib) as src:
        assert src.format_name == "kdump"
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello world" * 100)
    with pytest.raises(NotAVmcoreError) as ei:
        open_dump(junk)
    assert one_line(ei.value) == f"{junk}: not a vmcore (no ELF, KDUMP or flattened signature)"
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(NotAVmcoreError):
        open_dump(empty)


def test_open_dump_elf(tmp_path):
    elf = tmp_path / "x.elf"
    elf.write_bytes(b"\x7fELF" + bytes(200))
    try:
        import dumpfilter.readers.elf  # noqa: F401
    except ImportError:
        with pytest.raises(UnsupportedDumpError):
            open_dump(elf)
    else:  # the ELF reader exists: a bogus ELF must give one of our errors
        from dumpfilter.errors import DumpFilterError

        with pytest.raises(DumpFilterError):
            open_dump(elf)


# =========================================================== synthetic files

def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name) + 1, len(desc), ntype) + pad(name + b"\0") + pad(desc)


VMCI = b"OSRELEASE=6.1.0-test\nPAGESIZE=4096\nNUMBER(phys_base)=-4096\nCRASHTIME=1700000000\n"


def page_pattern(pfn: int) -> bytes:
    return (b"pfn %08x " % pfn) * (PS // 13) + bytes(PS % 13)


def build_kdump(
    pages,
    *,
    max_mapnr: int = 200,
    ram=((0, 150), (160, 200)),
    version: int = 6,
    signature: bytes = b"KDUMP   ",
    status: int = 1,
    dump_level: int = 31,
    split=None,
    bitmap_blocks=None,
    vmci_in_notes: bool = True,
    mutate=None,
) -> bytearray:
    """A small kdump-compressed file. ``pages`` maps pfn -> content (4096
    bytes): all-zero pages share one descriptor, others are zlib-compressed
    when that helps (else raw). ``mutate(descs)`` may edit the descriptor
    list [pfn, offset, size, flags, page_flags] before it is written."""
    bs = PS
    notes = _note(b"CORE", 1, bytes(336)) + _note(b"CORE", 1, bytes(336))
    if vmci_in_notes:
        notes += _note(b"VMCOREINFO", 0, VMCI)
    sub_size = 104
    sub_hdr_size = -(-(sub_size + len(notes) + (0 if vmci_in_notes else len(VMCI))) // bs)
    bm_len = -(-(-(-max_mapnr // 8)) // bs) * bs
    if bitmap_blocks is None:
        bitmap_blocks = 2 * bm_len // bs
    bm1, bm2 = bytearray(bm_len), bytearray(bm_len)
    for a, b in ram:
        for p in range(a, b):
            bm1[p >> 3] |= 1 << (p & 7)
    for p in pages:
        bm2[p >> 3] |= 1 << (p & 7)
    dumpable = sorted(pages)
    lo, hi = split if split else (0, max_mapnr)
    desc_off = (1 + sub_hdr_size + bitmap_blocks) * bs
    data_off = desc_off + len(dumpable) * 24
    data = bytearray(bytes(bs))  # the shared zero page comes first
    descs = []
    for p in dumpable:
        if not lo <= p < hi:
            continue
        c = pages[p]
        if c == bytes(bs):
            descs.append([p, data_off, bs, 0, 0])
            continue
        z = zlib.compress(c, 1)
        stored, flags = (z, 1) if len(z) < bs else (c, 0)
        descs.append([p, data_off + len(data), len(stored), flags, 0])
        data += stored
    if mutate:
        mutate(descs)
    out = bytearray(desc_off)
    uts = b"".join(
        s.ljust(65, b"\0") for s in (b"Linux", b"test", b"6.1.0-test", b"#1", b"x86_64", b"")
    )
    struct.pack_into("<8si390s6xqqIiiIIIIIIi", out, 0, signature, version, uts, 1700000000, 0,
                     status, bs, sub_hdr_size, bitmap_blocks, min(max_mapnr, 2**32 - 1),
                     0, 0, 0, 0, 2)
    note_off = bs + sub_size
    out[note_off : note_off + len(notes)] = notes
    if vmci_in_notes:
        vm_off = note_off + notes.index(VMCI)
    else:
        vm_off = note_off + len(notes)
        out[vm_off : vm_off + len(VMCI)] = VMCI
    sp = split or (0, 0)
    struct.pack_into("<QiiQQqQqQqQQQQ", out, bs, (-4096) % 2**64, dump_level, 1 if split else 0,
                     sp[0], sp[1], vm_off, len(VMCI), note_off, len(notes), 0, 0, sp[0], sp[1],
                     max_mapnr)
    b1 = (1 + sub_hdr_size) * bs
    half = bitmap_blocks * bs // 2
    out[b1 : b1 + bm_len] = bm1
    out[b1 + half : b1 + half + bm_len] = bm2
    out += b"".join(struct.pack("<qIIQ", *d[1:]) for d in descs)
    out += bytes(max(0, data_off - len(out)))  # (negative only for a bogus bitmap_blocks)
    out += data
    return out


def sample_pages():
    pages = {p: page_pattern(p) for p in range(0, 150, 3)}
    pages.update({p: bytes(PS) for p in range(1, 150, 9)})  # zero pages
    pages[170] = bytes(random.Random(7).getrandbits(8) for _ in range(PS))  # stored raw
    pages[199] = page_pattern(199)
    return pages


def write(tmp_path: Path, data, name: str = "dump.kdump") -> Path:
    p = tmp_path / name
    p.write_bytes(bytes(data))
    return p


def check_contents(src, pages, max_mapnr: int = 200):
    got = read_batch(src, 0, max_mapnr + 5)
    for p in range(max_mapnr + 5):
        want = pages.get(p, bytes(PS))
        assert got[p * PS : (p + 1) * PS] == want, p
    assert present_pfns(src, 0, max_mapnr + 5) == sorted(pages)


def test_synthetic_roundtrip(tmp_path):
    pages = sample_pages()
    path = write(tmp_path, build_kdump(pages))
    with open_dump(path) as src:
        assert isinstance(src, KdumpSource)
        check_contents(src, pages)
        assert src.ram_pfn_ranges() == ((0, 150), (160, 200))
        assert src.header.phys_base == -4096 and src.header.dump_level == 31
        assert src.vmcoreinfo.crashtime == 1700000000
        # Single pages and odd windows.
        for p in (0, 3, 10, 170, 199):
            assert read_batch(src, p, 1) == pages.get(p, bytes(PS))
        assert src.read_phys(170 * PS + 5, 10) == pages[170][5:15]
        with pytest.raises(FaultError):
            src.read_phys(2 * PS, 1)
        descs = src.descriptors(0, 200)
        assert [d[0] for d in descs] == sorted(pages)
        assert {d[3] for d in descs} == {0, 1}


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_synthetic_old_versions(tmp_path, version):
    pages = sample_pages()
    path = write(tmp_path, build_kdump(pages, version=version, vmci_in_notes=version >= 4))
    with KdumpSource(path) as src:
        check_contents(src, pages)
        assert src.vmcoreinfo_raw == (VMCI if version >= 3 else b"")
        if version < 4:
            assert src.notes == b""
        else:
            assert src.notes.count(b"CORE\0") == 2
        assert src.header.dump_level == 31


def test_synthetic_diskdump(tmp_path):
    # Old diskdump: raw pages in bitmap order right after the bitmaps.
    pages = {p: page_pattern(p) for p in (2, 5, 6, 100)}
    img = build_kdump({}, version=0, signature=b"DISKDUMP")
    sub_hdr_size = struct.unpack_from("<i", img, 432)[0]
    b2 = (1 + sub_hdr_size) * PS + PS
    for p in pages:
        img[b2 + (p >> 3)] |= 1 << (p & 7)
    img = img[: (1 + sub_hdr_size + 2) * PS]
    for p in sorted(pages):
        img += pages[p]
    with KdumpSource(write(tmp_path, img)) as src:
        assert src.format_name == "diskdump" and src.header.phys_base is None
        check_contents(src, pages)


def test_synthetic_split_pieces(tmp_path):
    pages = sample_pages()
    whole = write(tmp_path, build_kdump(pages), "whole")
    ranges = [(0, 64), (64, 160), (160, 200)]
    paths = [
        write(tmp_path, build_kdump(pages, split=r), f"piece{i}") for i, r in enumerate(ranges)
    ]
    with KdumpSource(paths[1]) as one:
        assert one.split and (one.start_pfn, one.end_pfn) == (64, 160)
        assert present_pfns(one, 0, 200) == [p for p in sorted(pages) if 64 <= p < 160]
        got = read_batch(one, 0, 200)
        for p in range(200):
            want = pages.get(p, bytes(PS)) if 64 <= p < 160 else bytes(PS)
            assert got[p * PS : (p + 1) * PS] == want, p
    with KdumpSplitSet(reversed(paths)) as sset, KdumpSource(whole) as ref:
        assert [p.start_pfn for p in sset.pieces] == [0, 64, 160]
        check_contents(sset, pages)
        assert sset.ram_pfn_ranges() == ref.ram_pfn_ranges()
        assert read_batch(sset, 50, 40) == read_batch(ref, 50, 40)
    # Missing middle piece: its pfns are absent.
    with KdumpSplitSet([paths[0], paths[2]]) as part:
        assert present_pfns(part, 0, 200) == [p for p in sorted(pages) if not 64 <= p < 160]
        assert read_batch(part, 64, 96) == bytes(96 * PS)
    with pytest.raises(CorruptDumpError):
        KdumpSplitSet([whole])
    with pytest.raises(CorruptDumpError):
        KdumpSplitSet([paths[0], paths[0]])


def test_synthetic_incomplete(tmp_path):
    pages = sample_pages()
    img = build_kdump(pages, status=1 | 8)
    sub_hdr_size = struct.unpack_from("<i", img, 432)[0]
    desc_off = (1 + sub_hdr_size + 2) * PS
    img = img[: desc_off + 10 * 24]  # only 10 descriptors, no data reached the disk...
    with KdumpSource(write(tmp_path, img)) as src:
        assert src.header.incomplete and src.incomplete
        # ...and those 10 point past the end: truncated data is still an error.
        with pytest.raises(TruncatedDumpError):
            read_batch(src, 0, 200)
    # Lost descriptors (never written, offset 0) read as zeros and absent.
    img = build_kdump(pages, status=1 | 8)
    img[desc_off + 5 * 24 : desc_off + len(pages) * 24] = bytes((len(pages) - 5) * 24)
    with KdumpSource(write(tmp_path, img, "b")) as src:
        first5 = sorted(pages)[:5]
        assert present_pfns(src, 0, 200) == first5
        got = read_batch(src, 0, 200)
        for p in range(200):
            want = pages[p] if p in first5 else bytes(PS)
            assert got[p * PS : (p + 1) * PS] == want, p


def _desc_off(img) -> int:
    sub_hdr_size, bitmap_blocks = struct.unpack_from("<iI", img, 432)
    return (1 + sub_hdr_size + bitmap_blocks) * PS


@pytest.mark.parametrize(
    "make, exc, words",
    [
        (lambda: b"NOTADUMP" + bytes(600), NotAVmcoreError, "signature"),
        (lambda: build_kdump(sample_pages())[:300], TruncatedDumpError, "too short"),
        (lambda: build_kdump(sample_pages())[: 3 * PS + 10], TruncatedDumpError, "bitmaps end"),
        (lambda: build_kdump(sample_pages())[: 4 * PS + 100], TruncatedDumpError,
         "descriptor table"),
        (lambda: build_kdump(sample_pages(), bitmap_blocks=0), CorruptDumpError, "bitmap_blocks"),
        (lambda: build_kdump(sample_pages(), max_mapnr=70000, bitmap_blocks=2), CorruptDumpError,
         "bitmap_blocks"),
        (lambda: build_kdump(sample_pages(), version=7), UnsupportedDumpError, "header_version"),
        (lambda: build_kdump(sample_pages(), split=(100, 50)), CorruptDumpError, "split"),
    ],
)
def test_corrupt_open(tmp_path, make, exc, words):
    with pytest.raises(exc) as ei:
        KdumpSource(write(tmp_path, make()))
    assert words in one_line(ei.value)


@pytest.mark.parametrize("bs", [0, 1000, 4095, 4097, 6144, 524288, -4096])
def test_bad_block_size(tmp_path, bs):
    img = build_kdump(sample_pages())
    struct.pack_into("<i", img, 428, bs)
    with pytest.raises(CorruptDumpError) as ei:
        KdumpSource(write(tmp_path, img))
    assert "block_size" in one_line(ei.value)


def test_other_layouts_rejected(tmp_path):
    img = build_kdump(sample_pages())
    be = bytearray(img)
    struct.pack_into(">i", be, 8, 6)
    with pytest.raises(UnsupportedDumpError) as ei:
        KdumpSource(write(tmp_path, be, "be"))
    assert "big-endian" in one_line(ei.value)
    l32 = bytearray(img)  # 32-bit layout: block_size at 416, bitmap_blocks at 424
    struct.pack_into("<iiII", l32, 416, 4096, 2, 2, 200)
    with pytest.raises(UnsupportedDumpError) as ei:
        KdumpSource(write(tmp_path, l32, "l32"))
    assert "32-bit" in one_line(ei.value)


def _set(field: int, value: int, pfn: int = 3):
    def mutate(descs):
        for d in descs:
            if d[0] == pfn:
                d[field] = value
    return mutate


@pytest.mark.parametrize(
    "mutate, exc, words",
    [
        (_set(1, 10**9), TruncatedDumpError, "past the end"),
        (_set(2, 5000), CorruptDumpError, "invalid page descriptor"),
        (_set(2, 0), CorruptDumpError, "invalid page descriptor"),
        (_set(1, 0), CorruptDumpError, "invalid page descriptor"),
        (_set(1, -5), CorruptDumpError, "invalid page descriptor"),
        (_set(3, 0x40), CorruptDumpError, "unknown flags 0x40"),
        (_set(3, 0x3), CorruptDumpError, "unknown flags 0x3"),
        (_set(3, 0x8), CorruptDumpError, "unknown flags 0x8"),
        (_set(3, 0), CorruptDumpError, "uncompressed page of"),  # zlib data flagged raw
        (_set(3, 0x20), CorruptDumpError, "zstd"),  # zlib data flagged zstd
    ],
)
def test_corrupt_descriptor(tmp_path, mutate, exc, words):
    pages = sample_pages()
    with KdumpSource(write(tmp_path, build_kdump(pages, mutate=mutate))) as src:
        read_batch(src, 0, 3)  # pfns before the bad one are fine
        with pytest.raises(exc) as ei:
            read_batch(src, 0, 200)
        msg = one_line(ei.value)
        assert "pfn 0x3" in msg and words in msg


def test_corrupt_compressed_data(tmp_path):
    pages = sample_pages()
    img = build_kdump(pages)
    with KdumpSource(write(tmp_path, img, "ok")) as src:
        (_pfn, off, size, flags, _pf), = src.descriptors(6, 1)
    assert flags == 1
    img[off + 2 : off + size] = bytes(size - 2)
    with KdumpSource(write(tmp_path, img)) as src:
        with pytest.raises(CorruptDumpError) as ei:
            read_batch(src, 0, 10)
        assert "pfn 0x6" in one_line(ei.value)


# ----------------------------------------------------------- flattened

FLAT_HEAD = b"makedumpfile".ljust(16, b"\0") + struct.pack(">qq", 1, 1)


def flatten(img: bytes, *, seed: int = 0, rewrite_header: bool = True, end: bool = True) -> bytes:
    """Flatten ``img`` into records of random sizes, in shuffled order, with
    a bogus header record first that a later one overwrites."""
    rng = random.Random(seed)
    recs, pos = [], 0
    while pos < len(img):
        n = rng.randrange(1, 9000)
        if img[pos : pos + n] != bytes(len(img[pos : pos + n])) or pos + n >= len(img):
            recs.append((pos, img[pos : pos + n]))  # all-zero records left out: holes
        pos += n
    rng.shuffle(recs)
    if rewrite_header:
        recs.insert(0, (100, b"\xee" * 5000))  # overwritten below, partly
        recs.insert(0, (0, b"\xdd" * 64))
    out = bytearray(FLAT_HEAD.ljust(4096, b"\0"))
    for off, data in recs:
        out += struct.pack(">qq", off, len(data)) + data
    if rewrite_header:  # later records win
        out += struct.pack(">qq", 0, 5100) + img[:5100]
    if end:
        out += b"\xff" * 16
    return bytes(out)


def test_flattened_synthetic(tmp_path):
    pages = sample_pages()
    img = bytes(build_kdump(pages))
    for seed in range(4):
        flat = write(tmp_path, flatten(img, seed=seed), f"flat{seed}")
        with FlattenedFile(flat) as ff:
            assert ff.size == len(img)
            assert ff.pread(0, len(img) + 100) == img
            rng = random.Random(seed)
            for _ in range(200):
                off, n = rng.randrange(len(img) + 10), rng.randrange(20000)
                assert ff.pread(off, n) == img[off : off + n]
        with open_dump(flat) as src:
            assert src.format_name == "flattened kdump"
            check_contents(src, pages)
        out = tmp_path / f"rebuilt{seed}"
        assert rebuild(flat, out) == len(img)
        assert out.read_bytes() == img
        with open(flat, "rb") as stream:  # from a stream, as -R reads stdin
            assert rebuild(stream, tmp_path / "r2") == len(img)
        assert (tmp_path / "r2").read_bytes() == img


def test_flattened_index_merges_and_overlaps(tmp_path):
    body = bytes(range(256)) * 64  # 16 KiB
    recs = [(0, body[:4096]), (8192, body[8192:]), (4096, body[4096:8192]), (2000, b"x" * 10000),
            (2000, body[2000:12000])]
    out = bytearray(FLAT_HEAD.ljust(4096, b"\0"))
    for off, data in recs:
        out += struct.pack(">qq", off, len(data)) + data
    out += b"\xff" * 16
    with FlattenedFile(write(tmp_path, out, "f")) as ff:
        assert ff.pread(0, 1 << 20) == body
        assert ff.nrecords == 5 and ff.nsegments <= 5


@pytest.mark.parametrize(
    "mutate, exc, words",
    [
        (lambda f: b"makedumpfilX" + f[12:], NotAVmcoreError, None),
        (lambda f: f[:16] + struct.pack(">q", 2) + f[24:], CorruptDumpError, "type 2"),
        (lambda f: f[:24] + struct.pack(">q", 3) + f[32:], CorruptDumpError, "version 3"),
        (lambda f: f[:2000], TruncatedDumpError, "flattened header"),
        (lambda f: f[:-16], TruncatedDumpError, "end marker"),
        (lambda f: f[:-30], TruncatedDumpError, "runs past"),
        (lambda f: f[:-16] + bytes(8), TruncatedDumpError, "cut short"),
        (lambda f: f[:-16] + struct.pack(">qq", -5, 10) + bytes(10) + b"\xff" * 16,
         CorruptDumpError, "offset -5"),
        (lambda f: f[:-16] + struct.pack(">qq", 2**63 - 4, 10) + bytes(10) + b"\xff" * 16,
         CorruptDumpError, "2**63"),
        (lambda f: f[:-16] + struct.pack(">qq", -1, 0), CorruptDumpError, "end marker"),
    ],
)
def test_flattened_corrupt(tmp_path, mutate, exc, words):
    img = bytes(build_kdump(sample_pages()))
    good = flatten(img, rewrite_header=False)
    bad = write(tmp_path, mutate(good), "bad")
    with pytest.raises(exc) as ei:
        FlattenedFile(bad)
    if words:
        assert words in one_line(ei.value)
    with pytest.raises(exc):
        rebuild(bad, tmp_path / "out")
    if exc is not NotAVmcoreError:
        with pytest.raises(exc):
            open_dump(bad)


def test_fuzzed_inputs_raise_only_our_errors(tmp_path):
    """Random corruption of a synthetic kdump file and of its flattened
    form: every failure is a DumpFilterError with a one-line message."""
    from dumpfilter.errors import DumpFilterError

    img = bytes(build_kdump(sample_pages()))
    flat = flatten(img, rewrite_header=False)
    rng = random.Random(1234)
    hot = [(0, 470), (4096, 4200), (4 * PS, 4 * PS + 2000)]
    path = tmp_path / "fuzz"
    for it in range(400):
        b = bytearray(img if it % 3 else flat)
        for _ in range(rng.randrange(1, 5)):
            lo, hi = rng.choice(hot + [(0, len(b) - 8)])
            pos = min(rng.randrange(lo, hi), len(b) - 8)
            if rng.random() < 0.5:
                b[pos] = rng.randrange(256)
            else:
                b[pos : pos + 8] = struct.pack(
                    "<q", rng.choice([-1, 0, 2**63 - 1, -(2**63), rng.randrange(1 << 20)])
                )
        if rng.random() < 0.2:
            b = b[: rng.randrange(100, len(b))]
        path.write_bytes(bytes(b))
        try:
            with open_dump(path) as src:
                src.ram_pfn_ranges()
                n = min(src.max_pfn, 300)
                src.present_bitmap(0, n, bytearray((n + 7) // 8))
                src.read_pages(0, 300, memoryview(bytearray(300 * src.page_size)))
        except DumpFilterError as e:
            one_line(e)
