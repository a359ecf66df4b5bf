"""The core pipeline on the real 6.1 capture, checked against the oracles:
makedumpfile 1.7.2 (stored references and the live binary), drgn's page
class ground truth, libkdumpfile, crash with the debug vmlinux, and our own
reader."""
import hashlib
import re

import pytest

from dumpfilter.formats.bitmap import count_bits
from dumpfilter.filter.classify import Classifier
from dumpfilter.readers.elf import ElfSource
from dumpfilter.vmcoreinfo import VmcoreInfo

from clitools import page_sha1s, run_cli, set_pfns
from oracles import (
    libkdumpfile_digest,
    read_kdump_bitmap1,
    read_kdump_bitmap2,
    read_kdump_header,
    run_crash,
    run_makedumpfile,
)

pytestmark = pytest.mark.realdump

LEVELS = (0, 1, 2, 4, 8, 16, 31)
CODECS = {"-c": 0x1, "-l": 0x2, "-p": 0x4, "-z": 0x20}
STAT_KEYS = {
    "Pages filled with zero": "zero",
    "Non-private cache pages": "cache",
    "Private cache pages": "cache_private",
    "User process data pages": "user",
    "Free pages": "free",
    "Hwpoison pages": "hwpoison",
    "Offline pages": "offline",
}


def parse_stats(text):
    """makedumpfile's page-count table -> {class: pages}."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"\s*(.+?)\s*:\s*0x([0-9a-f]+)$", line)
        if m and m.group(1) in STAT_KEYS:
            out[STAT_KEYS[m.group(1)]] = int(m.group(2), 16)
    return out


def bitmap2_of_classifier(path, level):
    src = ElfSource(str(path))
    info = VmcoreInfo.parse(src.vmcoreinfo_raw)
    clf = Classifier(src, info, level)
    bits = bytearray()
    for cyc in clf.cycles():
        bits += cyc.bitmap2
    return bytes(bits), clf.result.counts, src.max_pfn


def padded(bits, length):
    return bits + bytes(length - len(bits))


@pytest.mark.parametrize("level", LEVELS)
def test_bitmap2_equals_makedumpfile_reference(kdump_vmcore, reference_dir, level):
    ref = (reference_dir / f"bitmap2-d{level}.bin").read_bytes()
    ours, counts, max_pfn = bitmap2_of_classifier(kdump_vmcore, level)
    assert padded(ours, len(ref)) == ref
    # The struct-page classes cleared exactly what makedumpfile counted.
    stats = parse_stats((reference_dir / f"stats-d{level}.txt").read_text())
    from dumpfilter.filter.classify import CLASS_NAMES
    for cid, name in CLASS_NAMES.items():
        if name != "zero":
            assert counts[cid] == stats[name], name


def test_d31_agrees_with_drgn_ground_truth(kdump_vmcore, reference_dir):
    """Independent of makedumpfile: drgn's per-pfn classes imply the -d 31
    bitmap (zero pages left set, as kdump-compressed files store them)."""
    implied = (reference_dir / "implied-d31-kdumpfile.bitmap").read_bytes()
    ours, _, max_pfn = bitmap2_of_classifier(kdump_vmcore, 31)
    n = min(len(implied), len(ours))
    assert ours[:n] == implied[:n]
    assert count_bits(ours, max_pfn) == count_bits(implied, len(implied) * 8)


@pytest.fixture(scope="module")
def d31_outputs(kdump_vmcore, tmp_path_factory):
    """Our -d 31 output for each codec, plus the CLI's report text."""
    d = tmp_path_factory.mktemp("d31")
    outs = {}
    for opt in CODECS:
        out = d / f"d31{opt}.kdump"
        r = run_cli(opt, "-d", "31", "--message-level", "31", kdump_vmcore, out)
        outs[opt] = (out, r.stdout)
    return outs


def test_zlib_output_is_byte_identical_to_makedumpfile(kdump_vmcore, tmp_path, mdf_d31_zlib):
    out = tmp_path / "zlib.kdump"
    run_cli("-c", "--zlib-encoder", "zlib", "-d", "31", "--message-level", "0", kdump_vmcore, out)
    assert out.read_bytes() == mdf_d31_zlib.read_bytes()


@pytest.mark.parametrize("opt", sorted(CODECS))
def test_d31_header_and_bitmaps(d31_outputs, reference_dir, mdf_d31_zlib, opt):
    out, report = d31_outputs[opt]
    ours, theirs = read_kdump_header(out), read_kdump_header(mdf_d31_zlib)
    for key in ("signature", "header_version", "utsname", "timestamp_sec", "block_size",
                "sub_hdr_size", "bitmap_blocks", "max_mapnr", "nr_cpus", "dump_level",
                "phys_base", "offset_vmcoreinfo", "size_vmcoreinfo", "offset_note", "size_note",
                "max_mapnr_64"):
        assert ours[key] == theirs[key], key
    assert ours["status"] == CODECS[opt]
    assert read_kdump_bitmap2(out) == (reference_dir / "bitmap2-d31.bin").read_bytes()
    assert read_kdump_bitmap1(out) == read_kdump_bitmap1(mdf_d31_zlib)
    # The printed table matches makedumpfile's per-class counts.
    assert parse_stats(report) == parse_stats((reference_dir / "stats-d31.txt").read_text())


@pytest.fixture(scope="module")
def kept_pfns(reference_dir):
    return set_pfns((reference_dir / "bitmap2-d31.bin").read_bytes())


@pytest.fixture(scope="module")
def source_hashes(kdump_vmcore, kept_pfns):
    return page_sha1s(kdump_vmcore, kept_pfns)


@pytest.mark.parametrize("opt", sorted(CODECS))
def test_our_reader_reads_every_page_back(d31_outputs, kept_pfns, source_hashes, opt):
    from dumpfilter.readers import open_dump

    out, _ = d31_outputs[opt]
    with open_dump(str(out)) as src:
        present = bytearray((src.max_pfn + 7) // 8)
        src.present_bitmap(0, src.max_pfn, present)
        assert count_bits(present, src.max_pfn) == len(kept_pfns)
        buf = bytearray(4096 * 256)
        got = {}
        # Runs of pages, read in batches.
        for start in range(0, src.max_pfn, 256):
            n = min(256, src.max_pfn - start)
            src.read_pages(start, n, memoryview(buf)[: n * 4096])
            for i in range(n):
                if present[(start + i) >> 3] >> ((start + i) & 7) & 1:
                    got[start + i] = hashlib.sha1(buf[i * 4096:(i + 1) * 4096]).hexdigest()
    assert got == source_hashes


@pytest.mark.oracle
@pytest.mark.parametrize("opt", sorted(CODECS))
def test_libkdumpfile_reads_every_page(d31_outputs, source_hashes, opt):
    out, _ = d31_outputs[opt]
    pages = libkdumpfile_digest(out)
    readable = {pfn: h for pfn, h in pages.items() if h is not None}
    assert readable == source_hashes


@pytest.mark.oracle
@pytest.mark.slow
@pytest.mark.parametrize("opt", sorted(CODECS))
def test_crash_opens_output(d31_outputs, kdump_vmcore, debug_vmlinux, opt):
    out, _ = d31_outputs[opt]
    ours = run_crash(debug_vmlinux, [out], ["sys", "bt"])
    raw = run_crash(debug_vmlinux, [kdump_vmcore], ["sys"])
    assert re.search(r"DUMPFILE: \S+  \[PARTIAL DUMP\]", ours), ours
    panic = re.search(r"^\s+PANIC: (.*)$", raw, re.M).group(1)
    assert f"PANIC: {panic}" in ours
    assert "sysrq_handle_crash" in ours


@pytest.mark.oracle
@pytest.mark.parametrize("level", [1, 4, 31])
def test_live_makedumpfile_agrees(kdump_vmcore, tmp_path, level):
    theirs = tmp_path / "mdf.kdump"
    ours = tmp_path / "ours.kdump"
    run_makedumpfile(["-d", str(level), kdump_vmcore, theirs])
    run_cli("-d", level, kdump_vmcore, ours)
    assert read_kdump_bitmap1(ours) == read_kdump_bitmap1(theirs)
    assert read_kdump_bitmap2(ours) == read_kdump_bitmap2(theirs)
    # Uncompressed output: both files have the same layout and size.
    assert ours.stat().st_size == theirs.stat().st_size


def test_report_counts_zero_pages_like_makedumpfile(kdump_vmcore, reference_dir, tmp_path):
    for level in (1, 31):
        r = run_cli("-c", "-d", level, "--message-level", "31", kdump_vmcore, tmp_path / f"o{level}")
        ref = parse_stats((reference_dir / f"stats-d{level}.txt").read_text())
        assert parse_stats(r.stdout)["zero"] == ref["zero"]
