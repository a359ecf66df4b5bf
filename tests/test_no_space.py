"""A full output device (or -L SIZE): fallback dump levels are tried in
turn; with none left the dump is kept, marked INCOMPLETE in its header, and
every page descriptor on disk points at data that is there."""
import re
import subprocess

import pytest

from dumpfilter.readers import open_dump

from clitools import page_sha1s, run_cli
from oracles import crash_binary, read_kdump_header

pytestmark = pytest.mark.realdump


def test_size_limit_leaves_an_incomplete_but_readable_dump(kdump_vmcore, tmp_path):
    out = tmp_path / "cut.kdump"
    r = run_cli("-c", "-d", "31", "-L", "4M", "--message-level", "7", kdump_vmcore, out, check=False)
    assert r.returncode == 1
    errors = [l for l in r.stderr.splitlines() if l.startswith("dumpfilter: ")]
    assert len(errors) == 1 and "incomplete" in errors[0], r.stderr
    assert "Traceback" not in r.stderr
    assert out.stat().st_size <= 4 << 20
    h = read_kdump_header(out)
    assert h["status"] & 0x08 and h["status"] & 0x01
    with open_dump(str(out)) as src:
        assert src.header.incomplete
        present = bytearray((src.max_pfn + 7) // 8)
        src.present_bitmap(0, src.max_pfn, present)
        kept = [p for p in range(src.max_pfn) if present[p >> 3] >> (p & 7) & 1]
    # Some pages made it, not all; those that did are right.
    assert 0 < len(kept) < 21398
    assert page_sha1s(str(out), kept) == page_sha1s(str(kdump_vmcore), kept)


def test_fallback_level_when_the_first_does_not_fit(kdump_vmcore, tmp_path):
    out = tmp_path / "fb.kdump"
    r = run_cli("-c", "-d", "1,31", "-L", "20M", "--message-level", "7", kdump_vmcore, out)
    assert re.search(r"retrying with dump level 31", r.stdout)
    h = read_kdump_header(out)
    assert h["dump_level"] == 31 and not h["status"] & 0x08
    assert out.stat().st_size < 20 << 20


def test_size_option_is_checked(kdump_vmcore, tmp_path):
    r = run_cli("-c", "-d", "31", "-L", "12Q", kdump_vmcore, tmp_path / "o", check=False)
    assert r.returncode == 1 and "-L" in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.oracle
def test_crash_sees_an_incomplete_dump(kdump_vmcore, debug_vmlinux, tmp_path):
    """crash recognises the INCOMPLETE status (its own warning) and still
    reads the dump's identity; the pages cut off at the top of memory
    (mem_section lives there on this machine) keep a full session from
    starting, as with makedumpfile's incomplete dumps."""
    out = tmp_path / "cut.kdump"
    run_cli("-c", "-d", "31", "-L", "12M", "--message-level", "0", kdump_vmcore, out, check=False)
    r = subprocess.run([crash_binary(), "-s", str(debug_vmlinux), str(out)], input="quit\n",
                       capture_output=True, text=True, timeout=300)
    assert "This dumpfile is incomplete" in r.stdout + r.stderr
    r = subprocess.run([crash_binary(), "--osrelease", str(out)], capture_output=True, text=True,
                       timeout=60)
    assert r.stdout.strip() == read_osrelease(kdump_vmcore)


def read_osrelease(path):
    from dumpfilter.vmcoreinfo import VmcoreInfo

    with open_dump(str(path)) as src:
        return VmcoreInfo.parse(src.vmcoreinfo_raw).osrelease
