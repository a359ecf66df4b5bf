"""Parallel compression and the faster zlib-format encoder keep the format:
output is byte-identical whatever the thread count, and isal's pages are
read by zlib's uncompress() (libkdumpfile, our reader)."""
import zlib

import pytest

from dumpfilter.readers import open_dump

from clitools import page_sha1s, run_cli
from oracles import libkdumpfile_digest

pytestmark = pytest.mark.realdump


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
    digest = libkdumpfile_digest(out)
    kept = {pfn: h for pfn, h in digest.items() if h is not None}
    assert len(kept) > 20000
    assert page_sha1s(kdump_vmcore, kept) == kept
    # Every compressed block is a zlib stream that plain zlib decodes.
    with open_dump(str(out)) as src:
        for pfn, off, size, flags, _ in src.descriptors(0, src.max_pfn):
            if flags & 1:
                with open(out, "rb") as f:
                    f.seek(off)
                    assert len(zlib.decompress(f.read(size))) == 4096
                break
