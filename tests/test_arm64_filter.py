"""Filtering the real arm64 capture (Debian 6.1 arm64, KASLR, 1 GiB, RAM
from 0x40000000), checked against Debian's arm64 makedumpfile 1.7.2
(stored references), drgn's page-class ground truth and libkdumpfile."""
import functools
import hashlib
import struct

import pytest

from dumpfilter.filter.classify import CLASS_NAMES
from dumpfilter.formats.bitmap import count_bits
from dumpfilter.readers import open_dump
from clitools import page_sha1s, run_cli, set_pfns
from oracles import (
    libkdumpfile_digest,
    read_kdump_bitmap1,
    read_kdump_bitmap2,
    read_kdump_header,
)
from test_filter_realdump import CODECS, LEVELS, bitmap2_of_classifier, padded, parse_stats

pytestmark = pytest.mark.realdump

cli = functools.partial(run_cli, text=False)


@pytest.mark.parametrize("level", LEVELS)
def test_bitmap2_equals_makedumpfile_reference(arm64_vmcore, arm64_reference_dir, level):
    ref = (arm64_reference_dir / f"bitmap2-d{level}.bin").read_bytes()
    ours, counts, _ = bitmap2_of_classifier(arm64_vmcore, level)
    assert padded(ours, len(ref)) == ref
    stats = parse_stats((arm64_reference_dir / f"stats-d{level}.txt").read_text())
    for cid, name in CLASS_NAMES.items():
        if name != "zero":
            assert counts[cid] == stats[name], name


def test_d31_agrees_with_drgn_ground_truth(arm64_vmcore, arm64_reference_dir):
    implied = (arm64_reference_dir / "implied-d31-kdumpfile.bitmap").read_bytes()
    ours, _, max_pfn = bitmap2_of_classifier(arm64_vmcore, 31)
    n = min(len(implied), len(ours))
    assert ours[:n] == implied[:n]
    assert count_bits(ours, max_pfn) == count_bits(implied, len(implied) * 8)


def test_zlib_output_is_byte_identical_to_makedumpfile(arm64_vmcore, arm64_mdf_d31_zlib, tmp_path):
    out = tmp_path / "zlib.kdump"
    run_cli("-c", "--zlib-encoder", "zlib", "-d", "31", "--message-level", "0", arm64_vmcore, out)
    assert out.read_bytes() == arm64_mdf_d31_zlib.read_bytes()


@pytest.fixture(scope="module")
def outputs(arm64_vmcore, tmp_path_factory):
    d = tmp_path_factory.mktemp("arm64")
    outs = {}
    for opt in CODECS:
        out = d / f"d31{opt}.kdump"
        r = run_cli(opt, "-d", "31", "--message-level", "31", arm64_vmcore, out)
        outs[opt] = (out, r.stdout)
    return outs


@pytest.fixture(scope="module")
def source_hashes(arm64_vmcore, arm64_reference_dir):
    kept = set_pfns((arm64_reference_dir / "bitmap2-d31.bin").read_bytes())
    return page_sha1s(arm64_vmcore, kept)


@pytest.mark.parametrize("opt", sorted(CODECS))
def test_header_for_arm64(outputs, arm64_mdf_d31_zlib, arm64_reference_dir, opt):
    """utsname (aarch64), nr_cpus (two PRSTATUS notes), phys_base
    (PHYS_OFFSET), the notes and VMCOREINFO: as makedumpfile wrote them."""
    out, report = outputs[opt]
    ours, theirs = read_kdump_header(out), read_kdump_header(arm64_mdf_d31_zlib)
    for key in ("signature", "header_version", "utsname", "timestamp_sec", "block_size",
                "sub_hdr_size", "bitmap_blocks", "max_mapnr", "nr_cpus", "dump_level",
                "phys_base", "offset_vmcoreinfo", "size_vmcoreinfo", "offset_note", "size_note",
                "max_mapnr_64"):
        assert ours[key] == theirs[key], key
    assert ours["utsname"]["machine"] == "aarch64" and ours["nr_cpus"] == 2
    assert ours["status"] == CODECS[opt]
    assert read_kdump_bitmap1(out) == read_kdump_bitmap1(arm64_mdf_d31_zlib)
    assert read_kdump_bitmap2(out) == (arm64_reference_dir / "bitmap2-d31.bin").read_bytes()
    assert parse_stats(report) == parse_stats((arm64_reference_dir / "stats-d31.txt").read_text())
    with open(out, "rb") as f, open(arm64_mdf_d31_zlib, "rb") as g:
        for off, size in ((ours["offset_note"], ours["size_note"]),):
            f.seek(off), g.seek(off)
            assert f.read(size) == g.read(size)


@pytest.mark.oracle
@pytest.mark.parametrize("opt", sorted(CODECS))
def test_libkdumpfile_reads_every_kept_page(outputs, source_hashes, opt):
    out, _ = outputs[opt]
    pages = libkdumpfile_digest(out)
    assert {pfn: h for pfn, h in pages.items() if h is not None} == source_hashes


def test_flattened_roundtrip(outputs, arm64_vmcore, tmp_path):
    flat = tmp_path / "o.flat"
    with open(flat, "wb") as f:
        cli("-F", "-c", "-d", "31", arm64_vmcore, stdout=f)
    with open(flat, "rb") as f:
        cli("-R", tmp_path / "o.kdump", stdin=f)
    assert (tmp_path / "o.kdump").read_bytes() == outputs["-c"][0].read_bytes()


def test_split_and_reassemble(outputs, arm64_vmcore, source_hashes, tmp_path):
    pieces = [tmp_path / f"p{i}.kdump" for i in range(2)]
    cli("--split", "-c", "-d", "31", "--splitblock-size", "4096", arm64_vmcore, *pieces)
    starts = [read_kdump_header(p)["start_pfn_64"] for p in pieces]
    assert starts[0] == 0 and 0x40000 < starts[1] < 0x80000  # balanced over RAM, not pfn 0
    out = tmp_path / "merged.kdump"
    cli("--reassemble", *pieces, out)
    assert out.read_bytes() == outputs["-c"][0].read_bytes()


@pytest.mark.oracle
def test_elf_output(arm64_vmcore, source_hashes, tmp_path):
    """-E keeps e_machine EM_AARCH64 and the kernel's notes; libkdumpfile
    reads every kept non-zero page equal to the source."""
    out = tmp_path / "o.elf"
    cli("-E", "-d", "31", arm64_vmcore, out)
    head = out.read_bytes()[:64]
    assert struct.unpack_from("<H", head, 18)[0] == 183
    with open_dump(str(out)) as s, open_dump(str(arm64_vmcore)) as raw:
        assert s.notes == raw.notes
    got = libkdumpfile_digest(out)
    zero = hashlib.sha1(bytes(4096)).hexdigest()
    for pfn, h in source_hashes.items():
        if h != zero:
            assert got.get(pfn) == h, pfn


def test_dump_dmesg_equals_makedumpfile(arm64_vmcore, arm64_reference_dir, tmp_path):
    out = tmp_path / "dmesg.txt"
    cli("--dump-dmesg", arm64_vmcore, out)
    assert out.read_bytes() == (arm64_reference_dir / "dmesg.txt").read_bytes()
