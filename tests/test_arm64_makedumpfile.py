"""Debian's arm64 makedumpfile 1.7.2, run live under qemu-user on the real
arm64 capture, against our outputs: -E, uncompressed and --split -c byte
for byte; -F streams rebuilt by the other tool's -R; -l
with equal headers and bitmaps (Debian's arm64 liblzo2 finds other matches
than the x86_64 one our LZO1X-1 follows: both streams decompress to the same
pages)."""
import functools
import hashlib

import pytest

from dumpfilter.readers import open_dump
from arm64tools import run_arm64_makedumpfile
from clitools import run_cli
from oracles import read_kdump_bitmap1, read_kdump_bitmap2, read_kdump_header

pytestmark = [pytest.mark.realdump, pytest.mark.oracle]

cli = functools.partial(run_cli, text=False)


@pytest.mark.parametrize("args", [("-E", "-d", "31"), ("-d", "31")], ids=["elf-d31", "none-d31"])
def test_byte_identical(arm64_vmcore, tmp_path, args):
    """(-c -d 31 against the stored reference: test_arm64_filter.py.)"""
    theirs, ours = tmp_path / "mdf", tmp_path / "ours"
    run_arm64_makedumpfile([*args, arm64_vmcore, theirs])
    cli(*args, arm64_vmcore, ours)
    assert ours.read_bytes() == theirs.read_bytes()


def test_split_byte_identical(arm64_vmcore, tmp_path):
    theirs = [tmp_path / f"m{i}" for i in range(2)]
    ours = [tmp_path / f"o{i}" for i in range(2)]
    run_arm64_makedumpfile(["--split", "-c", "-d", "31", arm64_vmcore, *theirs])
    cli("--split", "-c", "--zlib-encoder", "zlib", "-d", "31", arm64_vmcore, *ours)
    for a, b in zip(ours, theirs):
        assert a.read_bytes() == b.read_bytes()


def test_flattened_both_ways(arm64_vmcore, arm64_mdf_d31_zlib, tmp_path):
    theirs = run_arm64_makedumpfile(["-F", "-c", "-d", "31", arm64_vmcore]).stdout
    (tmp_path / "m.flat").write_bytes(theirs)
    with open(tmp_path / "m.flat", "rb") as f:
        cli("-R", tmp_path / "ours-R", stdin=f)
    with open(tmp_path / "o.flat", "wb") as f:
        cli("-F", "-c", "--zlib-encoder", "zlib", "-d", "31", arm64_vmcore, stdout=f)
    run_arm64_makedumpfile(["-R", tmp_path / "mdf-R"], stdin_path=tmp_path / "o.flat")
    ref = arm64_mdf_d31_zlib.read_bytes()
    assert (tmp_path / "ours-R").read_bytes() == ref
    assert (tmp_path / "mdf-R").read_bytes() == ref


def test_lzo_same_headers_bitmaps_and_pages(arm64_vmcore, tmp_path):
    theirs, ours = tmp_path / "mdf.kdump", tmp_path / "ours.kdump"
    run_arm64_makedumpfile(["-l", "-d", "31", arm64_vmcore, theirs])
    cli("-l", "-d", "31", arm64_vmcore, ours)
    h1, h2 = read_kdump_header(ours), read_kdump_header(theirs)
    assert h1 == h2
    assert read_kdump_bitmap1(ours) == read_kdump_bitmap1(theirs)
    assert read_kdump_bitmap2(ours) == read_kdump_bitmap2(theirs)
    digests = []
    for path in (ours, theirs):
        h = hashlib.sha1()
        with open_dump(str(path)) as src:
            buf = bytearray(src.page_size * 1024)
            for start in range(0, src.max_pfn, 1024):
                n = min(1024, src.max_pfn - start)
                src.read_pages(start, n, memoryview(buf)[:n * src.page_size])
                h.update(buf[:n * src.page_size])
        digests.append(h.hexdigest())
    assert digests[0] == digests[1]
