"""Parallel compression and the faster zlib-format encoder keep the format:
output is byte-identical whatever the thread count, and isal's pages are
read by zlib's uncompress() (libkdumpfile, our reader)."""
import hashlib
import subprocess
import sys
import zlib

import pytest

from dumpfilter.readers import open_dump
from dumpfilter.readers.elf import ElfSource

from oracles import libkdumpfile_digest

pytestmark = pytest.mark.realdump


def run_cli(*args):
    r = subprocess.run([sys.executable, "-m", "dumpfilter", *map(str, args)],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r


@pytest.mark.parametrize("opt", ["-c", "-l", "-p", "-z"])
def test_thread_count_does_not_change_output(kdump_vmcore, tmp_path, opt):
    outs = []
    for n in (1, 2, 3):
        out = tmp_path / f"t{n}"
        run_cli(opt, "-d", "31", "--num-threads", n, "--message-level", "0", kdump_vmcore, out)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]


def test_isal_encoder_output_reads_back_with_zlib(kdump_vmcore, tmp_path):
    pytest.importorskip("isal", reason="isal not installed (pip install isal)")
    out = tmp_path / "isal.kdump"
    run_cli("-c", "--zlib-encoder", "isal", "-d", "31", "--num-threads", "2",
            "--message-level", "0", kdump_vmcore, out)
    raw = ElfSource(str(kdump_vmcore))
    digest = libkdumpfile_digest(out)
    kept = {pfn: h for pfn, h in digest.items() if h is not None}
    assert len(kept) > 20000
    buf = bytearray(4096)
    for pfn, h in kept.items():
        raw.read_pages(pfn, 1, memoryview(buf))
        assert hashlib.sha1(buf).hexdigest() == h, pfn
    # Every compressed block is a zlib stream that plain zlib decodes.
    with open_dump(str(out)) as src:
        for pfn, off, size, flags, _ in src.descriptors(0, src.max_pfn):
            if flags & 1:
                with open(out, "rb") as f:
                    f.seek(off)
                    assert len(zlib.decompress(f.read(size))) == 4096
                break
