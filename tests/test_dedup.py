"""--dedup: identical pages share one stored block; every reader still gets
every page right (our reader, libkdumpfile, crash)."""
import re

import pytest

from dumpfilter.readers import open_dump
from dumpfilter.testing.synthetic import build_sample

from clitools import page_sha1s, run_cli
from oracles import libkdumpfile_digest, read_kdump_bitmap2, run_crash


def descriptor_offsets(path):
    with open_dump(str(path)) as src:
        return [(pfn, off, size) for pfn, off, size, _flags, _ in src.descriptors(0, src.max_pfn)]


def test_dedup_shares_blocks_and_reads_back(tmp_path):
    vmcore = tmp_path / "s.vmcore"
    info = build_sample(str(vmcore), mem_mib=64, seed=3)
    plain, dedup = tmp_path / "plain", tmp_path / "dedup"
    run_cli("-l", "-d", "1", "--message-level", "0", vmcore, plain)
    r = run_cli("-l", "-d", "1", "--dedup", "--num-threads", "2", "--message-level", "31", vmcore, dedup)
    assert read_kdump_bitmap2(plain) == read_kdump_bitmap2(dedup)
    # Shared blocks: several descriptors with the same offset besides zero pages.
    offs = descriptor_offsets(dedup)
    data_blocks = [o for _, o, s in offs]
    shared = len(data_blocks) - len(set(data_blocks))
    m = re.search(r"Deduplicated\s+: 0x([0-9a-f]+) pages", r.stdout)
    assert m and int(m.group(1), 16) > 0
    assert dedup.stat().st_size < plain.stat().st_size
    assert shared >= int(m.group(1), 16)
    with open_dump(str(dedup)) as a, open_dump(str(plain)) as b:
        for pfn, _, _ in offs:
            assert a.read_phys(pfn * 4096, 4096) == b.read_phys(pfn * 4096, 4096) == info.page_bytes(pfn)


def test_dedup_refused_for_streams_and_elf(tmp_path):
    vmcore = tmp_path / "s.vmcore"
    build_sample(str(vmcore), mem_mib=32, seed=1)
    for extra in (["-F"], ["-E"]):
        r = run_cli(*extra, "--dedup", "-d", "31", vmcore, *([] if extra == ["-F"] else [tmp_path / "o"]),
                    check=False)
        assert r.returncode == 1 and "--dedup" in r.stderr


@pytest.mark.realdump
@pytest.mark.oracle
def test_dedup_on_real_capture(kdump_vmcore, debug_vmlinux, tmp_path):
    out = tmp_path / "d1.kdump"
    r = run_cli("-z", "-d", "1", "--dedup", "--message-level", "31", kdump_vmcore, out)
    assert int(re.search(r"Deduplicated\s+: 0x([0-9a-f]+)", r.stdout).group(1), 16) > 1000
    pages = {p: h for p, h in libkdumpfile_digest(out).items() if h is not None}
    assert page_sha1s(str(kdump_vmcore), sorted(pages)) == pages
    text = run_crash(debug_vmlinux, [out], ["sys", "bt"])
    assert "sysrq_handle_crash" in text and "PANIC:" in text
